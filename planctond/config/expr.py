"""The small, safe expression language of `max_pilots` and `run_when`.

Plancton 0.6 `eval`'d `max_docks` as Python, so a config file could run anything as root. Here the
source is parsed with `ast.parse` (parsing only: nothing is ever compiled to code or executed) and
every node is checked against a whitelist, then turned into a tiny tree of our own that evaluates
numbers and booleans. Numbers stay bounded: integers that grow past 2**63 become floats, a float that
overflows or a division by zero is an `ExprError`, and exponents are capped, so `9**9**9` is refused
instead of eating the daemon's memory.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from functools import lru_cache
from typing import Final

from planctond.config.variables import EXPRESSION_CONSTANTS, HOST_VARIABLES

Value = int | float | bool

MAX_SOURCE_LENGTH: Final = 1000
MAX_DEPTH: Final = 100
MAX_EXPONENT: Final = 1000  # |b| in a ** b
_INT_LIMIT: Final = 2**63  # beyond this integers turn into floats: no unbounded big ints


class ExprError(ValueError):
    """A bad expression (at compile time) or a failed evaluation (undefined variable, x/0...)."""


# --- evaluation helpers -----------------------------------------------------------------------


def _bounded(value: Value) -> Value:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT_LIMIT <= value <= _INT_LIMIT else float(value)
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


_BINARY: Final[dict[type[ast.operator], tuple[str, Callable[[Value, Value], Value]]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: _divide("/", a, b)),
    ast.FloorDiv: ("//", lambda a, b: _divide("//", a, b)),
    ast.Mod: ("%", lambda a, b: _divide("%", a, b)),
    ast.Pow: ("**", _power),
}

_COMPARE: Final[dict[type[ast.cmpop], tuple[str, Callable[[Value, Value], bool]]]] = {
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
_FUNCTIONS: Final[dict[str, tuple[int, int | None, Callable[[Sequence[Value]], Value]]]] = {
    "min": (1, None, lambda a: min(a)),
    "max": (1, None, lambda a: max(a)),
    "round": (1, 2, _round),
    "abs": (1, 1, lambda a: abs(a[0])),
    "floor": (1, 1, lambda a: math.floor(a[0])),
    "ceil": (1, 1, lambda a: math.ceil(a[0])),
}


# --- the evaluable tree -------------------------------------------------------------------------


class _Node:
    __slots__ = ()

    def run(self, env: Mapping[str, Value]) -> Value:
        raise NotImplementedError


class _Const(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        self.value = value

    def run(self, env: Mapping[str, Value]) -> Value:
        return self.value


class _Var(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, env: Mapping[str, Value]) -> Value:
        try:
            value = env[self.name]
        except KeyError:
            raise ExprError(f"undefined variable {self.name!r}") from None
        if isinstance(value, bool | int | float):
            return _bounded(value)
        raise ExprError(f"variable {self.name!r} is not a number: {value!r}")


class _Unary(_Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: _Node) -> None:
        self.op = op
        self.operand = operand

    def run(self, env: Mapping[str, Value]) -> Value:
        value = self.operand.run(env)
        if self.op == "not":
            return not value
        if self.op == "-":
            return _bounded(-value)
        return _bounded(+value)


class _Binary(_Node):
    __slots__ = ("fn", "left", "right")

    def __init__(self, fn: Callable[[Value, Value], Value], left: _Node, right: _Node) -> None:
        self.fn = fn
        self.left = left
        self.right = right

    def run(self, env: Mapping[str, Value]) -> Value:
        return _bounded(self.fn(self.left.run(env), self.right.run(env)))


class _Compare(_Node):
    __slots__ = ("first", "rest")

    def __init__(
        self, first: _Node, rest: Sequence[tuple[Callable[[Value, Value], bool], _Node]]
    ) -> None:
        self.first = first
        self.rest = tuple(rest)

    def run(self, env: Mapping[str, Value]) -> Value:
        left = self.first.run(env)
        for fn, node in self.rest:
            right = node.run(env)
            if not fn(left, right):
                return False
            left = right
        return True


class _BoolOp(_Node):
    __slots__ = ("is_and", "values")

    def __init__(self, is_and: bool, values: Sequence[_Node]) -> None:
        self.is_and = is_and
        self.values = tuple(values)

    def run(self, env: Mapping[str, Value]) -> Value:
        # Python's semantics: short-circuit, and the deciding operand is the result.
        value: Value = self.is_and
        for node in self.values:
            value = node.run(env)
            if bool(value) != self.is_and:
                return value
        return value


class _IfElse(_Node):
    __slots__ = ("body", "orelse", "test")

    def __init__(self, test: _Node, body: _Node, orelse: _Node) -> None:
        self.test = test
        self.body = body
        self.orelse = orelse

    def run(self, env: Mapping[str, Value]) -> Value:
        return self.body.run(env) if self.test.run(env) else self.orelse.run(env)


class _Call(_Node):
    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[[Sequence[Value]], Value], args: Sequence[_Node]) -> None:
        self.fn = fn
        self.args = tuple(args)

    def run(self, env: Mapping[str, Value]) -> Value:
        return _bounded(self.fn([a.run(env) for a in self.args]))


# --- compiling: ast -> our tree -----------------------------------------------------------------

_REFUSED: Final[dict[type[ast.AST], str]] = {
    ast.Attribute: "attribute access (x.y)",
    ast.Subscript: "subscripts (x[...])",
    ast.Slice: "slices",
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.NamedExpr: "assignment expressions (:=)",
    ast.List: "list literals",
    ast.Tuple: "tuples",
    ast.Set: "set literals",
    ast.Dict: "dict literals",
    ast.JoinedStr: "f-strings",
    ast.FormattedValue: "f-strings",
    ast.Starred: "starred arguments (*x)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_REFUSED_OPERATORS: Final[dict[type[ast.AST], str]] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
_FUNCTION_LIST: Final = "/".join(_FUNCTIONS)


def _where(node: ast.AST) -> str:
    column = getattr(node, "col_offset", None)
    return f" (at column {column + 1})" if column is not None else ""


class _Compiler:
    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.names: set[str] = set()

    def build(self, node: ast.AST, depth: int = 0) -> _Node:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        built = self._build(node, depth + 1)
        if not isinstance(built, _Const | _Var) and _is_constant(built):
            # Fold constant parts now, so that 9**9**9 or 1/0 are refused when the config loads.
            try:
                return _Const(built.run({}))
            except ExprError as exc:
                raise ExprError(f"{exc}{_where(node)}") from None
        return built

    def _build(self, node: ast.AST, depth: int) -> _Node:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            binary = _BINARY.get(type(node.op))
            if binary is None:
                raise self._refuse_operator(node.op, node)
            left, right = self.build(node.left, depth), self.build(node.right, depth)
            if (
                isinstance(node.op, ast.Pow)
                and isinstance(right, _Const)
                and abs(right.value) > MAX_EXPONENT
            ):
                raise ExprError(
                    f"exponent {right.value!r} is too large (at most {MAX_EXPONENT}){_where(node)}"
                )
            return _Binary(binary[1], left, right)
        if isinstance(node, ast.UnaryOp):
            symbol = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}.get(type(node.op))
            if symbol is None:
                raise self._refuse_operator(node.op, node)
            return _Unary(symbol, self.build(node.operand, depth))
        if isinstance(node, ast.BoolOp):
            values = [self.build(v, depth) for v in node.values]
            return _BoolOp(isinstance(node.op, ast.And), values)
        if isinstance(node, ast.Compare):
            rest = []
            for cmpop, comparator in zip(node.ops, node.comparators, strict=True):
                entry = _COMPARE.get(type(cmpop))
                if entry is None:
                    raise self._refuse_operator(cmpop, node)
                rest.append((entry[1], self.build(comparator, depth)))
            return _Compare(self.build(node.left, depth), rest)
        if isinstance(node, ast.IfExp):
            return _IfElse(
                self.build(node.test, depth),
                self.build(node.body, depth),
                self.build(node.orelse, depth),
            )
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        what = _REFUSED.get(type(node), type(node).__name__)
        raise ExprError(f"{what} not allowed{_where(node)}")

    def _constant(self, node: ast.Constant) -> _Node:
        value = node.value
        if isinstance(value, bool | int | float):
            return _Const(_bounded(value))
        kind = {str: "string literals", bytes: "bytes literals", complex: "complex numbers"}.get(
            type(value), repr(value)
        )
        raise ExprError(f"{kind} not allowed, only numbers and true/false{_where(node)}")

    def _name(self, node: ast.Name) -> _Node:
        name = node.id
        if name.startswith("_"):
            raise ExprError(f"names starting with '_' not allowed: {name!r}{_where(node)}")
        if name in EXPRESSION_CONSTANTS:
            return _Const(EXPRESSION_CONSTANTS[name])
        if name in self.allowed:
            self.names.add(name)
            return _Var(name)
        if name in _FUNCTIONS:
            raise ExprError(f"{name} is a function: call it, e.g. {name}(a, b){_where(node)}")
        known = sorted(self.allowed) + sorted(EXPRESSION_CONSTANTS)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        raise ExprError(f"unknown variable {name!r}{_where(node)}{hint}")

    def _call(self, node: ast.Call, depth: int) -> _Node:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in _FUNCTIONS:
            if isinstance(func, ast.Attribute):
                raise ExprError(f"attribute access (x.y) not allowed{_where(func)}")
            shown = func.id if isinstance(func, ast.Name) else type(func).__name__
            raise ExprError(f"calling {shown!r} not allowed, only {_FUNCTION_LIST}{_where(node)}")
        if node.keywords:
            raise ExprError(f"keyword arguments not allowed in {func.id}(){_where(node)}")
        low, high, impl = _FUNCTIONS[func.id]
        count = len(node.args)
        if count < low or (high is not None and count > high):
            wanted = f"{low}" if low == high else f"{low}..{high}" if high else f"at least {low}"
            raise ExprError(f"{func.id}() takes {wanted} argument(s), got {count}{_where(node)}")
        return _Call(impl, [self.build(a, depth) for a in node.args])

    @staticmethod
    def _refuse_operator(op: ast.AST, node: ast.AST) -> ExprError:
        symbol = _REFUSED_OPERATORS.get(type(op), type(op).__name__)
        return ExprError(f"operator {symbol!r} not allowed{_where(node)}")


def _children(node: _Node) -> tuple[_Node, ...]:
    if isinstance(node, _Unary):
        return (node.operand,)
    if isinstance(node, _Binary):
        return (node.left, node.right)
    if isinstance(node, _Compare):
        return (node.first, *(n for _, n in node.rest))
    if isinstance(node, _BoolOp):
        return node.values
    if isinstance(node, _Call):
        return node.args
    if isinstance(node, _IfElse):
        return (node.test, node.body, node.orelse)
    return ()


def _is_constant(node: _Node) -> bool:
    """Children are folded before their parent, so looking one level down is enough."""
    return all(isinstance(child, _Const) for child in _children(node))


class Expression:
    """A checked expression: evaluate it as often as needed, it holds no state."""

    __slots__ = ("_root", "names", "source")

    def __init__(self, source: str, root: _Node, names: frozenset[str]) -> None:
        self.source = source
        self.names = names  # the variables it reads (constants like GiB excluded)
        self._root = root

    def evaluate(self, variables: Mapping[str, float | bool]) -> float | bool:
        """The value; `ExprError` if a variable it needs is missing or the arithmetic fails."""
        try:
            return self._root.run(variables)
        except ExprError as exc:
            raise ExprError(f"{self.source!r}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError) as exc:  # belt and braces
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
    if not isinstance(source, str):
        raise ExprError(f"an expression must be text, got {source!r}")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExprError(f"expression longer than {MAX_SOURCE_LENGTH} characters")
    if not source.strip():
        raise ExprError("empty expression")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise ExprError(f"syntax error{column}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExprError(f"cannot parse: {type(exc).__name__}") from None
    compiler = _Compiler(allowed)
    root = compiler.build(tree.body)
    return Expression(source, root, frozenset(compiler.names))
