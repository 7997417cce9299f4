"""planctond.text.safe_text, the one rule for text from outside: whatever goes in, what comes out
is UTF-8 a transport can carry (no surrogate, no NUL, no control character), on one line, bounded,
and the rule applied twice changes nothing."""

from __future__ import annotations

import ast
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond import text
from planctond.text import DEFAULT_LIMIT, ELLIPSIS, is_safe_text, safe_text

# Every code point, lone surrogates and controls included (hypothesis leaves surrogates out
# unless asked).
ANY_CHAR = st.characters(blacklist_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=300)


def sendable(s: str) -> bool:
    """What dbus-daemon, journald and a terminal all take, on one line."""
    s.encode("utf-8")  # raises on a surrogate
    return not any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in s)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT, st.integers(min_value=1, max_value=400))
def test_any_text_comes_out_sendable_bounded_and_stable(value: str, limit: int) -> None:
    out = safe_text(value, limit)
    assert sendable(out)
    assert "\n" not in out and "\r" not in out and "\u2028" not in out
    assert len(out) <= limit
    assert is_safe_text(out, limit)
    assert safe_text(out, limit) == out  # applied again: nothing changes


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=200))
def test_ordinary_text_is_left_alone(value: str) -> None:
    assert safe_text(value) == value
    assert is_safe_text(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("pool \udcff", "pool \\udcff"),  # a lone surrogate (surrogateescape, JSON "\ud800")
        ("a\x00b", "a\\x00b"),  # NUL: dbus-daemon drops the connection of whoever sends it
        ("line\nnext\ttab\r", "line\\nnext\\ttab\\r"),
        ("\x1b[2Jcleared", "\\x1b[2Jcleared"),  # a terminal escape
        ("\x85\u2028\u2029", "\\x85\\u2028\\u2029"),
        ("\ufffe\U0010ffff", "\\ufffe\\U0010ffff"),  # noncharacters
        ("é ✓ 漢字 🐙", "é ✓ 漢字 🐙"),
        (b"caf\xc3\xa9 \xff", "café \\xff"),  # bytes: UTF-8, escapes for the rest
        (42, "42"),
        (None, "None"),
    ],
)
def test_escapes(value: object, expected: str) -> None:
    assert safe_text(value) == expected


def test_length_is_bounded_with_a_visible_cut() -> None:
    assert safe_text("x" * 10, 10) == "x" * 10
    assert safe_text("x" * 11, 10) == "x" * 9 + ELLIPSIS
    assert safe_text("\x00" * 5, 6) == "\\x00\\" + ELLIPSIS  # escapes count
    assert len(safe_text("y" * 10**6)) == DEFAULT_LIMIT
    assert safe_text("abc", 1) == ELLIPSIS
    with pytest.raises(ValueError, match="limit"):
        safe_text("abc", 0)


def test_an_object_whose_str_fails_still_gives_text() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert safe_text(Broken()) == "<Broken: str() failed: RuntimeError>"


def test_the_module_imports_nothing_from_planctond() -> None:
    """Every layer imports it; an import of planctond here would tie the layers together."""
    tree = ast.parse(Path(text.__file__).read_text())
    imported = [
        n.module if isinstance(n, ast.ImportFrom) else alias.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for alias in n.names
    ]
    assert imported and not [m for m in imported if m and m.startswith("planctond")]


def test_the_printable_fast_path_is_exact() -> None:
    """safe_text returns a printable string untouched without searching it: that is only right
    if no code point Python calls printable is one the rule escapes. Checked for all of them."""
    from planctond.text import _UNSAFE

    unsafe_but_printable = [
        hex(c) for c in range(0x110000) if chr(c).isprintable() and _UNSAFE.match(chr(c))
    ]
    assert unsafe_but_printable == []
