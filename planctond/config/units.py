"""Durations and sizes as people write them in a config file, and back.

Both parsers accept plain numbers too, because Plancton 0.6 configs say `max_ttl: 43200` and
`max_dock_mem: 2000000000`, and those must keep meaning seconds and bytes. The formatters give the
shortest exact spelling, so `--check-config` output parses back to the very same values.
"""

from __future__ import annotations

import math
import re
from typing import Final

# Duration units, seconds each. Lower case only: "M" could be read as months.
_DURATION_UNITS: Final[dict[str, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_NUMBER: Final = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART: Final = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d|w)")
_DURATION_WHOLE: Final = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d|w)\s*)+")
_PLAIN_NUMBER: Final = re.compile(rf"[+]?{_NUMBER}(?:[eE][+-]?[0-9]+)?")

# Size units, following Docker (`docker run --memory 2g` is 2 GiB): every prefix is binary.
_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "p": 1024**5,
}
_SIZE: Final = re.compile(rf"({_NUMBER})\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)

# Longer texts are refused before any arithmetic: "1" * 5000 would hit Python's int-digit limit
# and ".1" * 10**5 would compute 10**100000 before any bound could apply.
_MAX_TEXT: Final = 64

DURATION_HINT: Final = "a duration: seconds, or a number with ms/s/m/h/d/w, e.g. 30s, 12h, 1h30m"
SIZE_HINT: Final = "a size: bytes, or a number with K/M/G/T/P (binary, as Docker), e.g. 512M, 2G"


def _plain_number(value: object) -> float | None:
    """A YAML number (never a bool: `true` seconds is a mistake, not 1 s)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _short(value: str, hint: str) -> str:
    text = value.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"expected {hint}, got {len(text)} characters of text")
    return text


def parse_duration(value: object) -> float:
    """Seconds from `30s`, `2m`, `12h`, `1d`, `1h30m`, `250ms` or a plain number of seconds.

    Never negative, always finite: a negative or infinite interval is a mistake in a config file,
    not a feature.
    """
    number = _plain_number(value)
    if number is None:
        if not isinstance(value, str):
            raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
        text = _short(value, DURATION_HINT)
        if _PLAIN_NUMBER.fullmatch(text):
            number = float(text)
        elif text and _DURATION_WHOLE.fullmatch(text):
            number = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
        else:
            raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"expected {DURATION_HINT} (finite, not negative), got {value!r}")
    return number


def parse_size(value: object) -> int:
    """Bytes from `2G`, `512M`, `2GiB`, `1.5GB`, `64k` or a plain number of bytes.

    Units are binary whatever the spelling, exactly like Docker's `--memory` (K = KiB = KB = 1024,
    G = GiB = GB = 2**30), so a size copied from a `docker run` line means the same here. Fractional
    results are rounded down to whole bytes.
    """
    number = _plain_number(value)
    if number is not None:
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"expected {SIZE_HINT} (not negative), got {value!r}")
        return int(number)
    if not isinstance(value, str):
        raise ValueError(f"expected {SIZE_HINT}, got {value!r}")
    text = _short(value, SIZE_HINT)
    if text.isascii() and text.isdigit():
        return int(text)  # exact, however large: no detour through float
    if _PLAIN_NUMBER.fullmatch(text):
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"expected {SIZE_HINT}, got {value!r}")
        return int(number)
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected {SIZE_HINT}, got {value!r}")
    digits, unit = match.groups()
    multiplier = _SIZE_UNITS[unit.lower()]
    if "." in digits:
        # Exact for the usual "1.5G": scale the decimal digits as an integer, no float rounding.
        whole, _, frac = digits.partition(".")
        scale: int = 10 ** len(frac)
        return (int(whole or "0") * scale + int(frac or "0")) * multiplier // scale
    return int(digits) * multiplier


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 43200 -> "12h", 5400 -> "1h30m", 0.5 -> "0.5s"."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"not a valid duration: {seconds!r}")
    if seconds != int(seconds):
        # Fractions stay in plain seconds: repr() is the exact, shortest float spelling.
        text = repr(float(seconds))
        return text if "e" in text else f"{text}s"
    rest = int(seconds)
    if rest == 0:
        return "0s"
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = int(_DURATION_UNITS[unit])
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_size(size: int) -> str:
    """`2G` when exact in a binary unit from M up, otherwise the plain number of bytes."""
    if size < 0:
        raise ValueError(f"not a valid size: {size!r}")
    for unit in ("P", "T", "G", "M"):
        multiplier = _SIZE_UNITS[unit.lower()]
        if size and size % multiplier == 0:
            return f"{size // multiplier}{unit}"
    return str(size)
