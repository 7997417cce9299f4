"""The arithmetic that expressions may do, and the bounds on it.

A config file is written by an admin but evaluated inside the daemon every tick, so no operator or
function may be able to hang it or eat its memory: integers that grow past 2**63 become floats, a
float that overflows or a division by zero is an `ExprError`, and exponents are capped. Keeping the
operators and functions in one table makes the whole of what an expression can compute reviewable
at a glance; the compiler refuses anything not listed here.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from typing import Final

Value = int | float | bool

MAX_EXPONENT: Final = 1000  # |b| in a ** b
_INT_LIMIT: Final = 2**63  # beyond this integers turn into floats: no unbounded big ints


class ExprError(ValueError):
    """A bad expression (at compile time) or a failed evaluation (undefined variable, x/0...)."""


def bounded(value: Value) -> Value:
    """`value`, with a too-big integer turned float; `ExprError` if it is not finite."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_INT_LIMIT <= value <= _INT_LIMIT:
            return value
        try:
            value = float(value)  # a literal of 400 digits is past what a float holds
        except OverflowError:
            raise ExprError("the number is too large") from None
    if not math.isfinite(value):
        raise ExprError("the result is not a finite number")
    return value


def _power(base: Value, exponent: Value) -> Value:
    if abs(exponent) > MAX_EXPONENT:
        raise ExprError(f"exponent {exponent!r} is too large (at most {MAX_EXPONENT})")
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent >= 0
        and abs(base).bit_length() * exponent <= 64
    ):
        result: int = int(base) ** int(exponent)
        return result
    try:
        return math.pow(base, exponent)
    except OverflowError:
        raise ExprError(f"{base!r} ** {exponent!r} is too large") from None
    except ValueError:
        raise ExprError(f"{base!r} ** {exponent!r} is not a real number") from None


def _divide(kind: str, left: Value, right: Value) -> Value:
    if right == 0:
        raise ExprError("division by zero")
    if kind == "/":
        return left / right
    if kind == "//":
        return left // right
    return left % right


BINARY: Final[dict[type[ast.operator], tuple[str, Callable[[Value, Value], Value]]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: _divide("/", a, b)),
    ast.FloorDiv: ("//", lambda a, b: _divide("//", a, b)),
    ast.Mod: ("%", lambda a, b: _divide("%", a, b)),
    ast.Pow: ("**", _power),
}

COMPARE: Final[dict[type[ast.cmpop], tuple[str, Callable[[Value, Value], bool]]]] = {
    ast.Lt: ("<", lambda a, b: a < b),
    ast.LtE: ("<=", lambda a, b: a <= b),
    ast.Gt: (">", lambda a, b: a > b),
    ast.GtE: (">=", lambda a, b: a >= b),
    ast.Eq: ("==", lambda a, b: a == b),
    ast.NotEq: ("!=", lambda a, b: a != b),
}


def _round(args: Sequence[Value]) -> Value:
    if len(args) == 1:
        return round(args[0])
    digits = args[1]
    if isinstance(digits, bool) or not isinstance(digits, int) or abs(digits) > 30:
        raise ExprError(f"round()'s digits must be a whole number -30..30, got {digits!r}")
    return round(args[0], digits)


# name -> (min args, max args or None, implementation)
FUNCTIONS: Final[dict[str, tuple[int, int | None, Callable[[Sequence[Value]], Value]]]] = {
    "min": (1, None, lambda a: min(a)),
    "max": (1, None, lambda a: max(a)),
    "round": (1, 2, _round),
    "abs": (1, 1, lambda a: abs(a[0])),
    "floor": (1, 1, lambda a: math.floor(a[0])),
    "ceil": (1, 1, lambda a: math.ceil(a[0])),
}
