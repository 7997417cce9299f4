"""Durations and sizes: the spellings admins use, Docker's size convention, exact round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planctond.config.units import format_duration, format_size, parse_duration, parse_size

GiB = 1024**3
MiB = 1024**2


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("12h", 43200.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        (" 1h 30m ", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("0", 0.0),
        ("45", 45.0),
        ("1e3", 1000.0),
        (45, 45.0),
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", " ", "abc", "-1", "-1s", "1x", "1M", "1 hour", "h", "1h-", "inf", "nan", True,
            None, [], {}, float("inf"), float("nan"), -5]
)  # fmt: skip
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("2G", 2 * GiB),
        ("2g", 2 * GiB),  # Docker: --memory 2g is 2 GiB
        ("2GiB", 2 * GiB),
        ("2GB", 2 * GiB),  # Docker's convention: every unit is binary
        ("1.5GB", 3 * GiB // 2),
        ("512M", 512 * MiB),
        ("512m", 512 * MiB),
        ("64k", 65536),
        ("64KiB", 65536),
        ("1T", 1024**4),
        ("1P", 1024**5),
        ("100b", 100),
        ("100", 100),
        ("2 G", 2 * GiB),
        ("0.5k", 512),
        ("1e3", 1000),
        (2000000000, 2000000000),
        (0, 0),
        (1.9, 1),
    ],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "bad", ["", "G", "2X", "2GG", "-1", "-2G", "two", True, None, [], "inf", float("inf"), -1]
)
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(bad)


def test_parse_size_is_exact_for_decimals() -> None:
    # No float rounding on big values: 1.1 TiB is computed with integers.
    assert parse_size("1.1T") == 11 * 1024**4 // 10
    assert parse_size("123456789.123456789k") == 123456789123456789 * 1024 // 10**9


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (30, "30s"), (90, "1m30s"), (5400, "1h30m"), (43200, "12h"), (90061, "1d1h1m1s"),
     (0.5, "0.5s"), (1e-05, "1e-05")],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0"), (1024, "1024"), (2 * GiB, "2G"), (512 * MiB, "512M"), (2000000000, "2000000000"),
     (3 * 1024**4, "3T"), (1024**5, "1P")],
)  # fmt: skip
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_formatters_refuse_impossible_values() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)
    with pytest.raises(ValueError):
        format_duration(math.inf)
    with pytest.raises(ValueError):
        format_size(-1)


@given(st.integers(min_value=0, max_value=10**12))
def test_duration_round_trip_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_duration_round_trip_any_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=2**62))
def test_size_round_trip(size: int) -> None:
    assert parse_size(format_size(size)) == size


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=10_000), st.sampled_from("smhdw")),
        min_size=1,
        max_size=5,
    )
)
def test_composed_durations_add_up(parts: list[tuple[int, str]]) -> None:
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * unit[u] for n, u in parts)


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["k", "M", "G", "T"]))
def test_size_units_are_binary_powers(count: int, unit: str) -> None:
    power = {"k": 1, "M": 2, "G": 3, "T": 4}[unit]
    for suffix in ("", "B", "iB"):
        assert parse_size(f"{count}{unit}{suffix}") == count * 1024**power


@given(st.text(max_size=20))
def test_parsers_only_raise_value_error(text: str) -> None:
    for parse in (parse_duration, parse_size):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert value >= 0
        assert math.isfinite(value)
