"""Points as InfluxDB 1.x line protocol: `measurement[,tag=v...] field=v[,...] time_ns`.

The escaping follows what InfluxDB 1.x really parses (checked against influxd 1.6), not only
what its documentation lists, because a point the server reads differently from what we meant
is worse than a point it refuses:

- measurement: `,` and space are escaped; tag keys, tag values and field keys: `,`, `=` and
  space. String field values are double-quoted with `"` and `\\` escaped.
- A backslash in a name has no escape of its own: InfluxDB keeps `\\\\` as two backslashes, and a
  backslash before `,`, `=`, space, `"` or the end of the name would escape the separator (or
  be read as escaping it) and break the line. Such a backslash is written as the visible text `\\x5c` (how `planctond.text`
  writes characters it cannot keep); every other backslash is written as it is.
- Newlines and other control characters, and lone surrogates (which UTF-8 cannot carry), are
  escaped by `planctond.text.safe_text` in every name, tag and string. Names have no escape for
  a newline at all; InfluxDB would take one inside a quoted string, but line-based tools
  (relays, logs, a dump read with grep) would not, so one rule for every text keeps each point
  on one line. Text made safe where it entered the daemon is left exactly as it is.
- Tags are sorted by key, which InfluxDB recommends for speed. A tag with an empty key or value
  is left out: InfluxDB refuses it, and an empty tag means the same as no tag there.
- Each text is bounded (`safe_text`'s ellipsis), so one absurd string cannot push a line over
  InfluxDB's 64 KiB series key or string limits and get the whole batch refused.

What line protocol cannot carry at all raises ValueError for that one point: a measurement that
starts with `#` (InfluxDB reads the line as a comment and drops it without an error), an empty
field key, an integer outside int64 or a time past InfluxDB's last representable instant.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Final

from planctond.monitoring.point import FieldValue, Point
from planctond.text import safe_text

# In characters, each at most four bytes of UTF-8: a name stays within 16 KiB, so even a point with
# a few long tags fits InfluxDB's 65535-byte series key, and a string stays under its 64 KiB.
NAME_LIMIT: Final = 4096
STRING_LIMIT: Final = 16_000
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
MAX_TIME_NS: Final = 2**63 - 2  # InfluxDB 1.x's last valid instant (2262-04-11T23:47:16Z)
CACHE_SIZE: Final = 4096  # escaped names remembered...
CACHED_LENGTH: Final = 256  # ...if at most this long: at most a few MiB

# A backslash that would escape what follows it (or the separator after the name).
_LONE_BACKSLASH: Final = re.compile(r'\\(?=[,= "]|\Z)')
_VISIBLE_BACKSLASH: Final = "\\\\x5c"  # the replacement template: the text \x5c
_MEASUREMENT: Final = str.maketrans({",": "\\,", " ": "\\ "})
_KEY: Final = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING: Final = str.maketrans({"\\": "\\\\", '"': '\\"'})


def _name(text: str, table: dict[int, str]) -> str:
    safe = safe_text(text, NAME_LIMIT)
    if "\\" in safe:
        safe = _LONE_BACKSLASH.sub(_VISIBLE_BACKSLASH, safe)
    return safe.translate(table)


# The same few names (measurements, field keys, host and pool tags) come in every batch: each is
# escaped once. Only short ones are kept, so the cache stays small whatever it is fed.
@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached(text: str, measurement: bool) -> str:
    return _name(text, _MEASUREMENT if measurement else _KEY)


def _measurement(text: str) -> str:
    return _cached(text, True) if len(text) <= CACHED_LENGTH else _name(text, _MEASUREMENT)


def _key(text: str) -> str:
    return _cached(text, False) if len(text) <= CACHED_LENGTH else _name(text, _KEY)


def _field_value(value: FieldValue) -> str:
    # bool before int: True is an int to Python but a boolean to InfluxDB.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"integer {value} does not fit InfluxDB's 64 bits")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"float {value} has no line protocol form")
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, str):
        return '"' + safe_text(value, STRING_LIMIT).translate(_STRING) + '"'
    raise ValueError(f"a field value of type {type(value).__name__} has no line protocol form")


def _tags(tags: Mapping[str, str]) -> str:
    # After escaping, two keys may have become one (a raw newline and the text "\n"): InfluxDB
    # refuses duplicate tags, so the first in sorted order wins.
    kept: dict[str, str] = {}
    for key, value in sorted(tags.items()):
        if key and value:
            kept.setdefault(_key(key), _key(value))
    return "".join(f",{key}={value}" for key, value in sorted(kept.items()))


def _fields(point: Point) -> str:
    kept: dict[str, str] = {}
    for key, value in point.fields.items():
        if not key:
            raise ValueError(f"point {point.measurement!r} has a field with an empty name")
        kept.setdefault(_key(key), _field_value(value))
    return ",".join(f"{key}={value}" for key, value in kept.items())


def encode_point(point: Point) -> bytes:
    """One point as one `\\n`-terminated line; ValueError when line protocol cannot carry it."""
    if point.measurement.startswith("#"):
        raise ValueError(f"measurement {point.measurement!r} would be read as a comment")
    if not 0 <= point.time_ns <= MAX_TIME_NS:
        raise ValueError(f"point {point.measurement!r}: time {point.time_ns} is out of range")
    head = _measurement(point.measurement) + _tags(point.tags)
    return f"{head} {_fields(point)} {point.time_ns}\n".encode()


def encode(points: Iterable[Point]) -> bytes:
    """All points, one line each; ValueError on the first that line protocol cannot carry."""
    return b"".join(encode_point(point) for point in points)


__all__ = ["MAX_TIME_NS", "NAME_LIMIT", "STRING_LIMIT", "encode", "encode_point"]
