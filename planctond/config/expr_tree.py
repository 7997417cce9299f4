"""The tree a compiled expression is evaluated from.

Evaluating Python's own `ast` (or compiling it) would put every feature of the language one
missed check away; these few node kinds can do nothing but numbers and booleans, whatever the
source said. The tree is immutable and holds no state, so one compiled expression is safely
evaluated again every tick with fresh host variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from planctond.config.expr_arith import ExprError, Value, bounded


class Node:
    __slots__ = ()

    def run(self, env: Mapping[str, Value]) -> Value:
        raise NotImplementedError


class Const(Node):
    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        self.value = value

    def run(self, env: Mapping[str, Value]) -> Value:
        return self.value


class Var(Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, env: Mapping[str, Value]) -> Value:
        try:
            value = env[self.name]
        except KeyError:
            raise ExprError(f"undefined variable {self.name!r}") from None
        if isinstance(value, bool | int | float):
            return bounded(value)
        raise ExprError(f"variable {self.name!r} is not a number: {value!r}")


class Unary(Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node) -> None:
        self.op = op
        self.operand = operand

    def run(self, env: Mapping[str, Value]) -> Value:
        value = self.operand.run(env)
        if self.op == "not":
            return not value
        if self.op == "-":
            return bounded(-value)
        return bounded(+value)


class Binary(Node):
    __slots__ = ("fn", "left", "right")

    def __init__(self, fn: Callable[[Value, Value], Value], left: Node, right: Node) -> None:
        self.fn = fn
        self.left = left
        self.right = right

    def run(self, env: Mapping[str, Value]) -> Value:
        return bounded(self.fn(self.left.run(env), self.right.run(env)))


class Compare(Node):
    __slots__ = ("first", "rest")

    def __init__(
        self, first: Node, rest: Sequence[tuple[Callable[[Value, Value], bool], Node]]
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


class BoolOp(Node):
    __slots__ = ("is_and", "values")

    def __init__(self, is_and: bool, values: Sequence[Node]) -> None:
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


class IfElse(Node):
    __slots__ = ("body", "orelse", "test")

    def __init__(self, test: Node, body: Node, orelse: Node) -> None:
        self.test = test
        self.body = body
        self.orelse = orelse

    def run(self, env: Mapping[str, Value]) -> Value:
        return self.body.run(env) if self.test.run(env) else self.orelse.run(env)


class Call(Node):
    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[[Sequence[Value]], Value], args: Sequence[Node]) -> None:
        self.fn = fn
        self.args = tuple(args)

    def run(self, env: Mapping[str, Value]) -> Value:
        return bounded(self.fn([a.run(env) for a in self.args]))


def run_checked(node: Node, env: Mapping[str, Value]) -> Value:
    """`node.run(env)`, with every way arithmetic can fail turned into an `ExprError`: the bounds
    in `expr_arith` should leave none, and this is the one place that makes sure of it, for the
    evaluation of every tick and the constant folding at load alike."""
    try:
        return node.run(env)
    except ExprError:
        raise
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise ExprError(str(exc) or type(exc).__name__) from None


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Unary):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Compare):
        return (node.first, *(n for _, n in node.rest))
    if isinstance(node, BoolOp):
        return node.values
    if isinstance(node, Call):
        return node.args
    if isinstance(node, IfElse):
        return (node.test, node.body, node.orelse)
    return ()


def is_constant(node: Node) -> bool:
    """Children are folded before their parent, so looking one level down is enough."""
    return all(isinstance(child, Const) for child in _children(node))
