"""The small, safe expression language of `max_pilots` and `run_when`.

Plancton 0.6 `eval`'d `max_docks` as Python, so a config file could run anything as root. Here the
source is only parsed and checked against a whitelist (`expr_compile`), turned into a tiny tree of
our own that can compute nothing but numbers and booleans (`expr_tree`), with arithmetic that stays
bounded (`expr_arith`): `9**9**9` is refused instead of eating the daemon's memory. This module is
the one callers import; compiled expressions are cached because the same few sources are checked
at every config load and reload.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Final

from planctond.config.expr_arith import MAX_EXPONENT, ExprError, Value
from planctond.config.expr_compile import MAX_DEPTH, MAX_SOURCE_LENGTH, build_tree
from planctond.config.expr_tree import Node, run_checked
from planctond.config.variables import HOST_VARIABLES

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_SOURCE_LENGTH",
    "ExprError",
    "Expression",
    "Value",
    "compile_expr",
]


class Expression:
    """A checked expression: evaluate it as often as needed, it holds no state."""

    __slots__ = ("_root", "names", "source")

    def __init__(self, source: str, root: Node, names: frozenset[str]) -> None:
        self.source = source
        self.names = names  # the variables it reads (constants like GiB excluded)
        self._root = root

    def evaluate(self, variables: Mapping[str, float | bool]) -> float | bool:
        """The value; `ExprError` if a variable it needs is missing or the arithmetic fails."""
        try:
            return run_checked(self._root, variables)
        except ExprError as exc:
            raise ExprError(f"{self.source!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


_HOST_VARIABLE_SET: Final = frozenset(HOST_VARIABLES)


def compile_expr(source: str, allowed: Collection[str] = HOST_VARIABLES) -> Expression:
    """Check `source` and return an `Expression`; `ExprError` says what is wrong and where."""
    names = _HOST_VARIABLE_SET if allowed is HOST_VARIABLES else frozenset(allowed)
    return _compile_cached(source, names)


@lru_cache(maxsize=512)
def _compile_cached(source: str, allowed: frozenset[str]) -> Expression:
    root, names = build_tree(source, allowed)
    return Expression(source, root, names)
