"""From source text to an expression tree, refusing everything that is not on the whitelist.

`ast.parse` only parses: nothing here compiles or executes code. Every node of Python's tree is
checked against what the language allows and rebuilt as our own `Node`s, so an unknown construct
is an error rather than something that slipped through. Mistakes are reported with a column and,
for a misspelt variable, the closest known name, because they are found when the config loads and
the admin has to fix them from the message alone. Constant parts are folded here too, so that
`9**9**9` or `1/0` fail at load time, not on some later tick.
"""

from __future__ import annotations

import ast
import difflib
from typing import Final

from planctond.config.expr_arith import BINARY, COMPARE, FUNCTIONS, MAX_EXPONENT, ExprError, bounded
from planctond.config.expr_tree import (
    Binary,
    BoolOp,
    Call,
    Compare,
    Const,
    IfElse,
    Node,
    Unary,
    Var,
    is_constant,
    run_checked,
)
from planctond.config.variables import EXPRESSION_CONSTANTS

MAX_SOURCE_LENGTH: Final = 1000
MAX_DEPTH: Final = 100

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
_FUNCTION_LIST: Final = "/".join(FUNCTIONS)


def _where(node: ast.AST) -> str:
    column = getattr(node, "col_offset", None)
    return f" (at column {column + 1})" if column is not None else ""


class _Compiler:
    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.names: set[str] = set()

    def build(self, node: ast.AST, depth: int = 0) -> Node:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        built = self._build(node, depth + 1)
        if not isinstance(built, Const | Var) and is_constant(built):
            # Fold constant parts now, so that 9**9**9 or 1/0 are refused when the config loads.
            try:
                return Const(run_checked(built, {}))
            except ExprError as exc:
                raise ExprError(f"{exc}{_where(node)}") from None
        return built

    def _build(self, node: ast.AST, depth: int) -> Node:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            binary = BINARY.get(type(node.op))
            if binary is None:
                raise self._refuse_operator(node.op, node)
            left, right = self.build(node.left, depth), self.build(node.right, depth)
            if (
                isinstance(node.op, ast.Pow)
                and isinstance(right, Const)
                and abs(right.value) > MAX_EXPONENT
            ):
                raise ExprError(
                    f"exponent {right.value!r} is too large (at most {MAX_EXPONENT}){_where(node)}"
                )
            return Binary(binary[1], left, right)
        if isinstance(node, ast.UnaryOp):
            symbol = {ast.USub: "-", ast.UAdd: "+", ast.Not: "not"}.get(type(node.op))
            if symbol is None:
                raise self._refuse_operator(node.op, node)
            return Unary(symbol, self.build(node.operand, depth))
        if isinstance(node, ast.BoolOp):
            values = [self.build(v, depth) for v in node.values]
            return BoolOp(isinstance(node.op, ast.And), values)
        if isinstance(node, ast.Compare):
            rest = []
            for cmpop, comparator in zip(node.ops, node.comparators, strict=True):
                entry = COMPARE.get(type(cmpop))
                if entry is None:
                    raise self._refuse_operator(cmpop, node)
                rest.append((entry[1], self.build(comparator, depth)))
            return Compare(self.build(node.left, depth), rest)
        if isinstance(node, ast.IfExp):
            return IfElse(
                self.build(node.test, depth),
                self.build(node.body, depth),
                self.build(node.orelse, depth),
            )
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        what = _REFUSED.get(type(node), type(node).__name__)
        raise ExprError(f"{what} not allowed{_where(node)}")

    def _constant(self, node: ast.Constant) -> Node:
        value = node.value
        if isinstance(value, bool | int | float):
            return Const(bounded(value))
        kind = {str: "string literals", bytes: "bytes literals", complex: "complex numbers"}.get(
            type(value), repr(value)
        )
        raise ExprError(f"{kind} not allowed, only numbers and true/false{_where(node)}")

    def _name(self, node: ast.Name) -> Node:
        name = node.id
        if name.startswith("_"):
            raise ExprError(f"names starting with '_' not allowed: {name!r}{_where(node)}")
        if name in EXPRESSION_CONSTANTS:
            return Const(EXPRESSION_CONSTANTS[name])
        if name in self.allowed:
            self.names.add(name)
            return Var(name)
        if name in FUNCTIONS:
            raise ExprError(f"{name} is a function: call it, e.g. {name}(a, b){_where(node)}")
        known = sorted(self.allowed) + sorted(EXPRESSION_CONSTANTS)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
        raise ExprError(f"unknown variable {name!r}{_where(node)}{hint}")

    def _call(self, node: ast.Call, depth: int) -> Node:
        func = node.func
        if not isinstance(func, ast.Name) or func.id not in FUNCTIONS:
            if isinstance(func, ast.Attribute):
                raise ExprError(f"attribute access (x.y) not allowed{_where(func)}")
            shown = func.id if isinstance(func, ast.Name) else type(func).__name__
            raise ExprError(f"calling {shown!r} not allowed, only {_FUNCTION_LIST}{_where(node)}")
        if node.keywords:
            raise ExprError(f"keyword arguments not allowed in {func.id}(){_where(node)}")
        low, high, impl = FUNCTIONS[func.id]
        count = len(node.args)
        if count < low or (high is not None and count > high):
            wanted = f"{low}" if low == high else f"{low}..{high}" if high else f"at least {low}"
            raise ExprError(f"{func.id}() takes {wanted} argument(s), got {count}{_where(node)}")
        return Call(impl, [self.build(a, depth) for a in node.args])

    @staticmethod
    def _refuse_operator(op: ast.AST, node: ast.AST) -> ExprError:
        symbol = _REFUSED_OPERATORS.get(type(op), type(op).__name__)
        return ExprError(f"operator {symbol!r} not allowed{_where(node)}")


def build_tree(source: str, allowed: frozenset[str]) -> tuple[Node, frozenset[str]]:
    """The checked tree of `source` and the variables it reads; `ExprError` if it is refused."""
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
    return root, frozenset(compiler.names)
