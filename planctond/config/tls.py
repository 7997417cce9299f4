"""TLS material a config names (CA files, public-key pins) and the client context made from it,
shared by every HTTPS client of the daemon: the monitoring writers and the remote config.

Both are checked when the config is loaded, as the daemon's user, so an unusable CA file or a
malformed pin is refused with the reload (file, key, line) instead of failing every request
later; the clients read the CA file again when they connect, so a CA renewed on disk is used
without a reload.

Pinning compares the SHA-256 of the server certificate's SubjectPublicKeyInfo (base64, the form
of HPKP and `curl --pinnedpubkey sha256//...`). The standard library's `ssl` hands out the
certificate but cannot take its public key out of it, so pinning needs the `cryptography`
package: an optional feature with an optional dependency, refused at load (naming the package)
where it is missing, like Prometheus without prometheus_client.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
import os
import re
import ssl
from typing import Final

from planctond.config.files import read_limited

MAX_CA_FILE: Final = 4 * 1024 * 1024  # Debian's whole ca-certificates bundle is ~0.2 MiB
# Only the certificate blocks are handed to OpenSSL: bundles carry comments (in UTF-8, which
# `cadata` refuses) between them.
_PEM_CERT: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]*?-----END CERTIFICATE-----"
)
PIN_PREFIX: Final = "sha256//"  # curl's spelling, accepted so a pin can be pasted from curl
PIN_PACKAGE: Final = (
    "pinning a public key needs the Python package cryptography: install python3-cryptography "
    "(Debian, Ubuntu, Fedora) or `pip install cryptography`"
)


def read_small_file(path: str, limit: int) -> bytes:
    """A file a config names (a CA bundle, a token): ValueError says why it cannot be read, in
    words for the config error. `read_limited`: a FIFO or a device must not hang the daemon."""
    try:
        return read_limited(path, limit)
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except PermissionError:
        raise ValueError(f"not readable by uid {os.geteuid()}") from None
    except OSError as exc:
        raise ValueError(f"cannot read it: {exc.strerror or exc}") from None


def read_ca_file(path: str) -> str:
    """The CA certificates in the PEM file at `path`, checked by OpenSSL; ValueError says why
    not."""
    data = read_small_file(path, MAX_CA_FILE)
    blocks = _PEM_CERT.findall(data)
    if not blocks:
        raise ValueError("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
    pem = b"\n".join(blocks).decode("ascii")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"OpenSSL cannot use its certificates: {exc}") from None
    return pem


def client_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The SSLContext of a client; ValueError when its CA file is unusable.

    With `ca_file` only that file's CAs are trusted, not the system's: a site with its own CA
    pins its servers to it. Without it, the system's store (ca-certificates)."""
    if ca_file is not None:
        context = ssl.create_default_context(cadata=read_ca_file(ca_file))
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:  # Plancton's "insecure_https:", `verify_tls: false`: self-signed servers
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def pinning_available() -> bool:
    return importlib.util.find_spec("cryptography") is not None


def parse_pin(text: str) -> str:
    """A pin as written (`BASE64` or `sha256//BASE64`) -> the canonical base64 of 32 bytes;
    ValueError says what is wrong."""
    value = text.strip().removeprefix(PIN_PREFIX)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != hashlib.sha256().digest_size:
        raise ValueError(f"{len(raw)} bytes, not the 32 of a SHA-256")
    return base64.b64encode(raw).decode("ascii")


def spki_pin(der_certificate: bytes) -> str:
    """The pin of a DER certificate: base64(sha256(SubjectPublicKeyInfo)), as `openssl x509
    -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_der_x509_certificate(der_certificate).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


__all__ = [
    "PIN_PACKAGE",
    "client_context",
    "parse_pin",
    "pinning_available",
    "read_ca_file",
    "spki_pin",
]
