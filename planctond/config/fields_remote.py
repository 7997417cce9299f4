"""The reader of the `remote:` section: where a site's shared config comes from.

Everything a fetch will need is checked here, at load, as the daemon's user, so a mistake is a
refused reload with its file and line rather than a fetch failing every interval: the URL
(https only, no credentials in it), the CA file (read and parsed), the pins (well-formed, and the
`cryptography` package present), the token file (readable, one line of text; its content is
never quoted in a message). The token itself is not kept: the fetcher reads the file each time,
so a rotated token needs no reload and the token is in no `Config` that could be printed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from planctond import constants as C
from planctond.config import fields as F
from planctond.config.document import Node
from planctond.config.errors import did_you_mean
from planctond.config.model import RemoteConfig
from planctond.config.schema import REMOTE_KEYS, REMOTE_URL
from planctond.config.tls import (
    PIN_PACKAGE,
    parse_pin,
    pinning_available,
    read_ca_file,
    read_small_file,
)

MAX_TOKEN_FILE: Final = 16 * 1024
MAX_PINS: Final = 16

_interval = F.duration(minimum=C.MIN_REMOTE_INTERVAL, maximum=C.MAX_REMOTE_INTERVAL)
_timeout = F.duration(positive=True, minimum=1.0, maximum=C.MAX_REMOTE_TIMEOUT)


def read_token(path: str) -> str:
    """The bearer token in the file at `path`; ValueError says why not, never quoting it."""
    data = read_small_file(path, MAX_TOKEN_FILE)
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("the token is not ASCII text (it is not shown)") from None
    if not token:
        raise ValueError("the file is empty")
    if not all(0x21 <= ord(ch) <= 0x7E for ch in token):
        raise ValueError("the token holds spaces or control characters (it is not shown)")
    return token


def _pins(node: Node) -> tuple[str, ...]:
    items = node.value if node.is_list else [node]
    if not items:
        return ()
    if len(items) > MAX_PINS:
        raise F.expected(node, f"a pin or a list of at most {MAX_PINS} pins")
    pins = []
    for item in items:
        text = item.text()
        try:
            pins.append(parse_pin(text or ""))
        except ValueError as exc:
            raise F.Invalid(
                f"expected the base64 SHA-256 of the server's public key (as curl's "
                f"--pinnedpubkey sha256//...), got {item.shown()}: {exc}",
                item,
            ) from None
    if not pinning_available():
        raise F.Invalid(PIN_PACKAGE, node)
    return tuple(dict.fromkeys(pins))


def _path_of(node: Node, what: str, check: Callable[[str], object]) -> str:
    path = F.absolute_path(node)
    try:
        check(path)
    except ValueError as exc:
        raise F.Invalid(f"{what} {path}: {exc}", node) from None
    return path


def remote_settings(node: Node) -> RemoteConfig | None:
    """`remote: {url: https://..., ...}`; a bare URL is read as `{url: URL}`; null is none."""
    if node.is_null:
        return None
    if not node.is_map:
        node = Node(value={"url": node}, path=node.path, line=node.line, file=node.file)
    entries = dict(node.value)
    for key, value in entries.items():
        if key not in REMOTE_KEYS:
            raise F.Invalid(f"unknown key{did_you_mean(key, REMOTE_KEYS)}", value)
    if "url" not in entries:
        raise F.Invalid("expected a mapping with url: https://... (missing url)", node)
    url_node = entries["url"]
    if "@" in (url_node.text() or ""):  # said without the URL: it may hold a password
        raise F.Invalid(
            "credentials in the URL are refused (it is shown in logs): use token_file", url_node
        )
    url = F.text("an https://host[:port]/path URL", REMOTE_URL)(url_node)
    try:
        urlsplit(url).port  # noqa: B018 (it checks the port)
    except ValueError:
        raise F.expected(url_node, "a URL with a port 1..65535") from None

    def given(key: str) -> Node | None:
        found = entries.get(key)
        return None if found is None or found.is_null else found

    ca, token, pins = given("ca_file"), given("token_file"), given("pin_sha256")
    interval, timeout, owner = given("interval"), given("timeout"), given("may_set_owner")
    return RemoteConfig(
        url=url,
        ca_file=None if ca is None else _path_of(ca, "CA file", read_ca_file),
        token_file=None if token is None else _path_of(token, "token file", read_token),
        pin_sha256=() if pins is None else _pins(pins),
        interval=C.DEFAULT_REMOTE_INTERVAL if interval is None else _interval(interval),
        timeout=C.DEFAULT_REMOTE_TIMEOUT if timeout is None else _timeout(timeout),
        may_set_owner=True if owner is None else F.boolean(owner),
    )
