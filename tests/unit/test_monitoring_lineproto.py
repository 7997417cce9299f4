"""InfluxDB line protocol as planctond writes it: checked against a small parser that reads lines
the way InfluxDB 1.x does (escapes as influxd 1.6 unescapes them), for fixed examples from
InfluxDB's documentation and for arbitrary names, tags and values."""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.monitoring.lineproto import (
    MAX_TIME_NS,
    NAME_LIMIT,
    STRING_LIMIT,
    encode,
    encode_point,
)
from planctond.monitoring.point import FieldValue, Point
from planctond.text import ELLIPSIS, is_safe_text, safe_text

# --- a reference reader: InfluxDB 1.x's rules, written from its documentation and behaviour ----

MEASUREMENT_CODES = ", "
KEY_CODES = ", ="  # tag keys, tag values; field keys also unescape \"
FIELD_KEY_CODES = ', ="'


@dataclass
class Parsed:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int


class Unparsable(AssertionError):
    pass


def scan(line: str, i: int, stops: str) -> tuple[str, int]:
    """The raw token from `i` to the first unescaped stop character; a backslash always takes the
    next character with it, as InfluxDB's scanner does."""
    start = i
    while i < len(line) and line[i] not in stops:
        i += 2 if line[i] == "\\" else 1
    if i > len(line):
        raise Unparsable(f"backslash at the very end: {line!r}")
    return line[start:i], i


def unescape(raw: str, codes: str) -> str:
    """Only `\\` + a code is an escape; any other backslash is kept as it is."""
    if raw.endswith("\\") and not raw.endswith("\\\\"):
        raise Unparsable(f"{raw!r} ends in a backslash that ate its separator")
    out, i = [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in codes:
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def lone_backslash_before(raw: str, specials: str) -> bool:
    """A literal backslash right before a special character: InfluxDB's look-behind checks read
    the special as escaped, so the line would not mean what was written."""
    i = 0
    while i < len(raw) - 1:
        if raw[i] == "\\":
            if raw[i + 1] == "\\" and (i + 2 == len(raw) or raw[i + 2] in specials):
                return True
            i += 2
        else:
            i += 1
    return False


def string_value(line: str, i: int) -> tuple[str, int]:
    assert line[i] == '"'
    i += 1
    out: list[str] = []
    while True:
        if i >= len(line):
            raise Unparsable(f"unterminated string: {line!r}")
        c = line[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < len(line) and line[i + 1] in '\\"':
            out.append(line[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1


def number_value(raw: str) -> FieldValue:
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith("i"):
        if not re.fullmatch(r"-?[0-9]+", raw[:-1]):
            raise Unparsable(f"bad integer {raw!r}")
        return int(raw[:-1])
    if not re.fullmatch(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", raw):
        raise Unparsable(f"bad float {raw!r}")
    return float(raw)


def parse_line(line: str) -> Parsed:
    raw, i = scan(line, 0, ", ")
    if not raw or raw.startswith("#") or lone_backslash_before(raw, ", "):
        raise Unparsable(f"bad measurement {raw!r}")
    measurement = unescape(raw, MEASUREMENT_CODES)
    tags: dict[str, str] = {}
    while line[i] == ",":
        key, i = scan(line, i + 1, "=, ")
        if line[i] != "=":
            raise Unparsable(f"tag without value in {line!r}")
        value, i = scan(line, i + 1, ", ")
        for part in (key, value):
            if not part or lone_backslash_before(part, ", ="):
                raise Unparsable(f"bad tag part {part!r}")
        name = unescape(key, KEY_CODES)
        if name in tags:
            raise Unparsable(f"duplicate tag {name!r}")
        tags[name] = unescape(value, KEY_CODES)
    if line[i] != " ":
        raise Unparsable(f"no fields in {line!r}")
    fields: dict[str, FieldValue] = {}
    while True:
        key, i = scan(line, i + 1, "= ,")
        if not key or line[i] != "=" or lone_backslash_before(key, ', ="'):
            raise Unparsable(f"bad field key {key!r}")
        if line[i + 1] == '"':
            value, i = string_value(line, i + 1)
            fields[unescape(key, FIELD_KEY_CODES)] = value
        else:
            raw_value, i = scan(line, i + 1, ", ")
            fields[unescape(key, FIELD_KEY_CODES)] = number_value(raw_value)
        if line[i] == " ":
            break
        if line[i] != ",":
            raise Unparsable(f"junk after a field in {line!r}")
    stamp = line[i + 1 :]
    if not re.fullmatch(r"[0-9]+", stamp):
        raise Unparsable(f"bad time {stamp!r}")
    return Parsed(measurement, tags, fields, int(stamp))


def parse(data: bytes) -> list[Parsed]:
    text = data.decode("utf-8")  # strict: what we send must be valid UTF-8
    assert text == "" or text.endswith("\n")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text), text
    return [parse_line(line) for line in text.splitlines()]


# --- what a name, a tag or a string becomes -------------------------------------------------


def expected_name(text: str) -> str:
    """safe_text's rule, then a backslash that would escape a separator becomes `\\x5c`."""
    return re.sub(r'\\(?=[,= "]|\Z)', r"\\x5c", safe_text(text, NAME_LIMIT))


def expected_tags(tags: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in sorted(tags.items()):
        if key and value:
            out.setdefault(expected_name(key), expected_name(value))
    return out


def expected_value(value: FieldValue) -> FieldValue:
    return safe_text(value, STRING_LIMIT) if isinstance(value, str) else value


def same_values(got: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Equal, with floats compared bit for bit (-0.0 is not 0.0) and types kept (1 is not 1.0,
    True is not 1)."""
    if list(got) != list(want):
        return False
    for key, value in want.items():
        other = got[key]
        if type(other) is not type(value):
            return False
        if isinstance(value, float):
            if struct.pack("<d", value) != struct.pack("<d", other):
                return False
        elif other != value:
            return False
    return True


def check_round_trip(point: Point) -> Parsed:
    [parsed] = parse(encode_point(point))
    assert parsed.measurement == expected_name(point.measurement)
    assert parsed.tags == expected_tags(point.tags)
    want_fields: dict[str, FieldValue] = {}
    for key, value in point.fields.items():
        want_fields.setdefault(expected_name(key), expected_value(value))
    assert same_values(parsed.fields, want_fields), (parsed.fields, want_fields)
    assert parsed.time_ns == point.time_ns
    return parsed


# --- fixed examples -----------------------------------------------------------------------------

T = 1465839830100400200  # the time InfluxDB's documentation uses


@pytest.mark.parametrize(
    ("point", "line"),
    [
        # InfluxDB 1.x line protocol reference and tutorial (floats are written as Python does)
        (
            Point("weather", {"temperature": 82.0}, {"location": "us-midwest"}, T),
            f"weather,location=us-midwest temperature=82.0 {T}",
        ),
        (
            Point("weather", {"temperature": 82}, {"location": "us-midwest"}, T),
            f"weather,location=us-midwest temperature=82i {T}",
        ),
        (
            Point("weather", {"temperature": 82.0}, {"location": "us,midwest"}, T),
            f"weather,location=us\\,midwest temperature=82.0 {T}",
        ),
        (
            Point("weather", {"temp=rature": 82.0}, {"location": "us-midwest"}, T),
            f"weather,location=us-midwest temp\\=rature=82.0 {T}",
        ),
        (
            Point("weather", {"temperature": 82.0}, {"location place": "us-midwest"}, T),
            f"weather,location\\ place=us-midwest temperature=82.0 {T}",
        ),
        (
            Point("wea,ther", {"temperature": 82.0}, {"location": "us-midwest"}, T),
            f"wea\\,ther,location=us-midwest temperature=82.0 {T}",
        ),
        (
            Point("wea ther", {"temperature": 82.0}, {"location": "us-midwest"}, T),
            f"wea\\ ther,location=us-midwest temperature=82.0 {T}",
        ),
        (
            Point("weather", {"temperature": 'too"hot"'}, {"location": "us-midwest"}, T),
            f'weather,location=us-midwest temperature="too\\"hot\\"" {T}',
        ),
        (
            Point("weather", {"temperature_str": "too hot\\cold"}, {"location": "us-midwest"}, T),
            f'weather,location=us-midwest temperature_str="too hot\\\\cold" {T}',
        ),
        (
            Point("weather", {"bool": True, "other": False}, {"location": "us-midwest"}, T),
            f"weather,location=us-midwest bool=true,other=false {T}",
        ),
        # a measurement keeps = as it is; a tag value escapes it
        (Point("a=b", {"f": 1}, {"t": "x=y"}, 5), "a=b,t=x\\=y f=1i 5"),
        # tags sorted by key; empty values and keys left out
        (
            Point("m", {"f": 1}, {"zone": "z", "host": "h", "empty": "", "": "v", "arch": "x"}, 0),
            "m,arch=x,host=h,zone=z f=1i 0",
        ),
        # floats that must read back as the same number
        (Point("m", {"a": 1e16, "b": 5e-324, "c": -0.0, "d": 0.1}, {}, 1), None),
        (Point("m", {"big": 2**63 - 1, "small": -(2**63)}, {}, MAX_TIME_NS), None),
    ],
)
def test_documented_examples(point: Point, line: str | None) -> None:
    encoded = encode_point(point)
    if line is not None:
        assert encoded == (line + "\n").encode()
    check_round_trip(point)


def test_float_text() -> None:
    line = encode_point(Point("m", {"a": 1e16, "b": 5e-324, "c": -0.0, "d": 0.1}, {}, 1))
    assert line == b"m a=1e+16,b=5e-324,c=-0.0,d=0.1 1\n"


def test_bool_is_not_an_integer() -> None:
    assert encode_point(Point("m", {"b": True, "i": 1}, {}, 0)) == b"m b=true,i=1i 0\n"


def test_several_points_are_several_lines() -> None:
    points = [Point("m", {"n": i}, {"k": str(i)}, i) for i in range(3)]
    assert encode(points) == b"m,k=0 n=0i 0\nm,k=1 n=1i 1\nm,k=2 n=2i 2\n"
    assert encode([]) == b""


@pytest.mark.parametrize(
    ("text", "as_name"),
    [
        ("a\\", "a\\x5c"),  # would escape the separator after it
        ("a\\,b", "a\\x5c,b"),
        ("a\\ b", "a\\x5c b"),
        ("a\\=b", "a\\x5c=b"),
        ('a\\"b', 'a\\x5c"b'),
        ("a\\b", "a\\b"),  # nothing to escape: kept
        ("a\\\\", "a\\\\x5c"),
        ("C:\\Windows\\", "C:\\Windows\\x5c"),
    ],
)
def test_backslashes_in_names(text: str, as_name: str) -> None:
    parsed = check_round_trip(Point(text, {text: 1}, {text: text}, 0))
    assert parsed.measurement == as_name
    assert parsed.tags == {as_name: as_name}
    assert list(parsed.fields) == [as_name]


@pytest.mark.parametrize("text", ["a\\", '\\"', "\\\\", 'x"y', "end\\"])
def test_backslashes_and_quotes_in_strings_are_kept(text: str) -> None:
    parsed = check_round_trip(Point("m", {"s": text}, {}, 0))
    assert parsed.fields["s"] == text


@pytest.mark.parametrize("bad", ["\n", "\r", "\r\n", "\u2028", "\x00", "\x85", "\ud800"])
def test_line_breaks_and_unencodable_text_stay_on_one_line(bad: str) -> None:
    """Newlines (and what UTF-8 cannot carry) become visible escapes, as everywhere else in the
    daemon: names have no escape for a newline, and a point must stay one line."""
    text = f"a{bad}b"
    point = Point(text, {text: text, "n": 1}, {text: text}, 7)
    encoded = encode_point(point)
    assert encoded.count(b"\n") == 1 and encoded.endswith(b"\n")
    assert b"\r" not in encoded
    parsed = check_round_trip(point)
    assert parsed.measurement == safe_text(text) != text


def test_empty_tags_only_means_no_tags() -> None:
    assert encode_point(Point("m", {"f": 1}, {"a": "", "": "b"}, 1)) == b"m f=1i 1\n"


def test_escaping_collisions_keep_one_tag() -> None:
    """A raw newline and the text "\\n" are the same once escaped; InfluxDB refuses a line with
    the same tag twice, so only the first (in key order) is written."""
    line = encode_point(Point("m", {"f": 1}, {"a\nb": "raw", "a\\nb": "text"}, 1))
    assert line == b"m,a\\nb=raw f=1i 1\n"
    parse(line)


def test_overlong_text_is_bounded() -> None:
    huge = "x" * (NAME_LIMIT * 3)
    [parsed] = parse(encode_point(Point(huge, {huge: "y" * STRING_LIMIT * 2}, {huge: huge}, 1)))
    assert len(parsed.measurement) == NAME_LIMIT and parsed.measurement.endswith(ELLIPSIS)
    assert len(next(iter(parsed.tags.values()))) == NAME_LIMIT
    [value] = parsed.fields.values()
    assert isinstance(value, str) and len(value) == STRING_LIMIT


@pytest.mark.parametrize(
    ("point", "why"),
    [
        (Point("#m", {"f": 1}, {}, 0), "comment"),
        (Point("m", {"": 1}, {}, 0), "empty name"),
        (Point("m", {"f": 2**63}, {}, 0), "64 bits"),
        (Point("m", {"f": -(2**63) - 1}, {}, 0), "64 bits"),
        (Point("m", {"f": 1}, {}, MAX_TIME_NS + 1), "out of range"),
    ],
)
def test_what_line_protocol_cannot_carry_is_refused(point: Point, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        encode_point(point)
    with pytest.raises(ValueError, match=why):
        encode([Point("ok", {"f": 1}), point])


def test_a_value_of_another_type_is_refused() -> None:
    point = Point("m", {"f": [1]}, {}, 0)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="list"):
        encode_point(point)


def test_a_measurement_starting_with_hash_after_an_escape_is_fine() -> None:
    check_round_trip(Point(" #m", {"f": 1}, {}, 0))
    check_round_trip(Point("m#", {"#": 1}, {"#": "#"}, 0))


# --- properties --------------------------------------------------------------------------------

ANY_CHAR = st.characters(blacklist_categories=())  # surrogates and controls included
ANY_TEXT = st.text(ANY_CHAR, max_size=30)
# The characters line protocol cares about, often, plus anything else now and then.
TRICKY = st.text(st.one_of(st.sampled_from(list(',= "\\#\n\tiItf.-e0')), ANY_CHAR), max_size=20)
NAMES = st.one_of(TRICKY, ANY_TEXT)
MEASUREMENTS = NAMES.map(lambda s: s if s and not s.startswith("#") else f"m{s}")
FIELD_VALUES: st.SearchStrategy[FieldValue] = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    NAMES,
)
POINTS = st.builds(
    Point,
    measurement=MEASUREMENTS,
    fields=st.dictionaries(NAMES.filter(bool), FIELD_VALUES, min_size=1, max_size=5),
    tags=st.dictionaries(NAMES, NAMES, max_size=5),
    time_ns=st.integers(min_value=0, max_value=MAX_TIME_NS),
)


@settings(max_examples=400, deadline=None)
@given(POINTS)
def test_every_point_reads_back_as_written(point: Point) -> None:
    check_round_trip(point)


@settings(max_examples=100, deadline=None)
@given(st.lists(POINTS, max_size=8))
def test_one_line_per_point(points: list[Point]) -> None:
    data = encode(points)
    assert data.count(b"\n") == len(points)
    assert len(parse(data)) == len(points)


# Text a name keeps exactly: safe, and no backslash that would escape a separator.
SAFE_CHAR = st.one_of(
    st.sampled_from(list(',= "\\#')),
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Cn")).filter(is_safe_text),
)
PLAIN = st.text(SAFE_CHAR, max_size=20).map(lambda s: re.sub(r'\\(?=[,= "]|\Z)', "/", s))


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        Point,
        measurement=PLAIN.map(lambda s: s if s and not s.startswith("#") else f"m{s}"),
        fields=st.dictionaries(PLAIN.filter(bool), FIELD_VALUES, min_size=1, max_size=5),
        tags=st.dictionaries(PLAIN, PLAIN, max_size=5),
        time_ns=st.integers(min_value=0, max_value=MAX_TIME_NS),
    )
)
def test_safe_text_is_written_exactly(point: Point) -> None:
    """Text made safe where it entered the daemon (the normal case) comes back unchanged."""
    assert all(expected_name(s) == s for s in (point.measurement, *point.tags, *point.fields))
    [parsed] = parse(encode_point(point))
    assert parsed.measurement == point.measurement
    assert parsed.tags == {k: v for k, v in point.tags.items() if k and v}
    assert list(parsed.fields) == list(point.fields)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_read_back_bit_for_bit(value: float) -> None:
    [parsed] = parse(encode_point(Point("m", {"v": value}, {}, 0)))
    got = parsed.fields["v"]
    assert isinstance(got, float) and math.copysign(1, got) == math.copysign(1, value)
    assert got == value


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
def test_strings_read_back_as_safe_text(value: str) -> None:
    [parsed] = parse(encode_point(Point("m", {"s": value}, {}, 0)))
    assert parsed.fields["s"] == safe_text(value, STRING_LIMIT)
