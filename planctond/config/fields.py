"""Readers for single config values: Node in, typed value out, or `Invalid` saying what was expected.

Each reader checks everything about one value (type, range, syntax) so the loader only wires keys
to readers. Every number is bounded (`constants.MAX_*`) to what a host can use and what the code
downstream can compute with: a value that loads must never make a later tick fail. Docker-shaped
values (images, binds, devices, ...) have their readers in `fields_docker`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeVar

from planctond import constants as C
from planctond.config import units
from planctond.config.document import Node
from planctond.config.expr import ExprError, compile_expr

T = TypeVar("T")


class Invalid(Exception):
    """The value at `node` is wrong; the message says what was expected."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.node = node


def expected(node: Node, what: str) -> Invalid:
    return Invalid(f"expected {what}, got {node.shown()}", node)


# --- scalars --------------------------------------------------------------------------------------


def duration(
    *, positive: bool = False, minimum: float = 0.0, maximum: float = C.MAX_DURATION
) -> Callable[[Node], float]:
    def read(node: Node) -> float:
        if node.is_map or node.is_list or node.is_null:
            raise expected(node, units.DURATION_HINT)
        try:
            seconds = units.parse_duration(node.value)
        except ValueError as exc:
            raise Invalid(str(exc), node) from None
        if positive and seconds <= 0:
            raise expected(node, "a duration greater than 0")
        if seconds < minimum:
            raise expected(node, f"a duration of at least {minimum:g}s")
        if seconds > maximum:
            raise expected(node, f"a duration of at most {units.format_duration(maximum)}")
        return seconds

    return read


def size_of(*, low: int = 0, maximum: int = C.MAX_SIZE) -> Callable[[Node], int]:
    def read(node: Node) -> int:
        if node.is_map or node.is_list or node.is_null:
            raise expected(node, units.SIZE_HINT)
        try:
            value = units.parse_size(node.value)
        except ValueError as exc:
            raise Invalid(str(exc), node) from None
        if value < low:
            raise expected(node, f"a size of at least {units.format_size(low)}")
        if value > maximum:
            raise expected(node, f"a size of at most {units.format_size(maximum)}")
        return value

    return read


size = size_of()


def number(*, low: float, high: float, what: str) -> Callable[[Node], float]:
    """A finite number in low..high (`what` says so: it is the whole message)."""

    def read(node: Node) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise expected(node, what)
        if not (math.isfinite(value) and low <= value <= high):
            raise expected(node, what)
        return float(value)

    return read


def integer(*, low: int, high: int, what: str) -> Callable[[Node], int]:
    """A whole number in low..high (`what` says so: it is the whole message)."""

    def read(node: Node) -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise expected(node, what)
        return value

    return read


def boolean(node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise expected(node, "true or false")
    return node.value


def text(what: str, pattern: re.Pattern[str] | None = None) -> Callable[[Node], str]:
    def read(node: Node) -> str:
        value = node.text()
        if value is None or not value or (pattern is not None and not pattern.fullmatch(value)):
            raise expected(node, what)
        return value

    return read


def optional(reader: Callable[[Node], T]) -> Callable[[Node], T | None]:
    def read(node: Node) -> T | None:
        return None if node.is_null else reader(node)

    return read


def expression(node: Node) -> str:
    """The expression's source, after it compiled: a bad one fails the load, never a tick."""
    source = node.text()
    if source is None:
        raise expected(node, 'an expression, e.g. "ncpus - 2" or "hour < 7"')
    try:
        compile_expr(source)
    except ExprError as exc:
        raise Invalid(f"bad expression {source!r}: {exc}", node) from None
    return source


def string_list(item: Callable[[Node], T]) -> Callable[[Node], tuple[T, ...]]:
    def read(node: Node) -> tuple[T, ...]:
        if node.is_null:
            return ()
        if not node.is_list:
            raise expected(node, "a list")
        return tuple(item(i) for i in node.value)

    return read


def exit_codes(node: Node) -> frozenset[int]:
    read = string_list(integer(low=0, high=255, what="an exit code 0..255"))
    return frozenset(read(node))


def absolute_path(node: Node) -> str:
    value = node.text()
    if value is None or not value.startswith("/"):
        raise expected(node, "an absolute path")
    return value
