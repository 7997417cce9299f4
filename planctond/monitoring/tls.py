"""TLS for every monitoring writer, made one way: verified by default, a target's own CA file
when it names one, verification off only when the admin says so.

The context is made at a writer's first connection, not when the writer is built: a CA file
that went missing or bad after the config was loaded is a failing send, said in `planctonctl
status` and retried, never an exception in the reload or the start that builds the writers.
`client_context` itself lives in `config/tls.py`, shared with the remote config's fetcher.
"""

from __future__ import annotations

import ssl

from planctond.config.tls import client_context
from planctond.monitoring.outbox import SinkError


class ClientTLS:
    """A target's TLS settings and, after the first connection, its context."""

    def __init__(self, *, verify: bool, ca_file: str | None) -> None:
        self.verify = verify
        self.ca_file = ca_file
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        """The context (made once); SinkError, retried, while the CA file is unusable."""
        if self._context is None:
            try:
                self._context = client_context(verify=self.verify, ca_file=self.ca_file)
            except ValueError as exc:
                raise SinkError(f"CA file {self.ca_file}: {exc}") from None
        return self._context


def tls_reason(exc: BaseException) -> str:
    """What a failed handshake means to the admin, OpenSSL's own words kept."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the server's TLS certificate is not trusted ({exc}): set ca_file to the CA that "
            "signed it (or verify_tls: false for a self-signed test server)"
        )
    return str(exc) or type(exc).__name__


__all__ = ["ClientTLS", "client_context", "tls_reason"]
