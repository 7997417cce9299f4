"""The one rule for text that comes from outside (a config file, Docker, a D-Bus caller).

Python strings may hold what no transport can carry: a lone surrogate (`surrogateescape` file
names, `"\\ud800"` in JSON or YAML) cannot be encoded to UTF-8 at all, so a reply holding one is
never sent, and a NUL or another control character is refused by dbus-daemon, which then drops
the whole connection; control characters also rewrite a terminal or split a log line. So each
such string is made safe once, where it enters, by `safe_text`: every unsafe character becomes a
visible escape and the length is bounded. The result is plain UTF-8 on one line, and applying the
rule again changes nothing.

This module imports nothing from planctond, so every layer may use it.
"""

from __future__ import annotations

import re
from typing import Final

# Long enough for any message the daemon writes (config errors name a file, a key and a line),
# short enough that a huge string from outside cannot bloat the journal or a D-Bus reply.
DEFAULT_LIMIT: Final = 2000
ELLIPSIS: Final = "…"

_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 and C1 controls and DEL, line and paragraph separators, surrogates, and the noncharacters
# (U+FDD0..U+FDEF and the last two code points of every plane).
_NONCHARACTERS: Final = "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]"
)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """`value` as printable one-line UTF-8 text of at most `limit` characters.

    Unsafe characters become backslash escapes (`\\udcff`, `\\x00`, `\\n`); bytes are decoded as
    UTF-8 with escapes for invalid sequences; any other object is written with `str()`. Text
    longer than `limit` is cut and ends in an ellipsis."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    # The common case, ten times cheaper than the search below (it runs for every label of every
    # pilot on every tick): a printable string holds no control character, surrogate, line or
    # paragraph separator or noncharacter (categories Cc, Cs, Zl, Zp, Cn are all unprintable).
    if type(value) is str and len(value) <= limit and value.isprintable():
        return value
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", errors="backslashreplace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception as exc:  # a broken __str__ still leaves a readable placeholder
            text = f"<{type(value).__name__}: str() failed: {type(exc).__name__}>"
    if _UNSAFE.search(text) is not None:
        text = _UNSAFE.sub(_escape, text)
    if len(text) > limit:
        text = text[: limit - len(ELLIPSIS)] + ELLIPSIS
    return text


def is_safe_text(text: str, limit: int = DEFAULT_LIMIT) -> bool:
    """True when `safe_text` would leave `text` as it is (what a transport may send)."""
    return len(text) <= limit and (text.isprintable() or _UNSAFE.search(text) is None)


__all__ = ["DEFAULT_LIMIT", "is_safe_text", "safe_text"]
