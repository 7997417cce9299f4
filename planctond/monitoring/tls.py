"""TLS for every monitoring writer, made one way: verified by default, a target's own CA file
when it names one, verification off only when the admin says so.

The context is made at a writer's first connection, not when the writer is built: a CA file
that went missing or bad after the config was loaded is a failing send, said in `planctonctl
status` and retried, never an exception in the reload or the start that builds the writers.
"""

from __future__ import annotations

import ssl

from planctond.config.fields_monitoring import read_ca_file
from planctond.monitoring.outbox import SinkError


def client_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The SSLContext of a target; ValueError when its CA file is unusable.

    With `ca_file` only that file's CAs are trusted, not the system's: a site with its own CA
    pins its monitoring server to it. Without it, the system's store (ca-certificates)."""
    if ca_file is not None:
        context = ssl.create_default_context(cadata=read_ca_file(ca_file))
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:  # Plancton's "insecure_https:", `verify_tls: false`: self-signed servers
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
