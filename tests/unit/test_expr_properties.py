"""Property tests: random expression trees evaluate like an independent reference evaluator, and
nothing, however garbled, makes the evaluator raise anything but ExprError."""

from __future__ import annotations

import contextlib
import math
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from planctond.config.expr import ExprError, compile_expr

NAMES = ("a", "b", "c")
Tree = tuple[Any, ...]
Value = int | float | bool

_leaf = st.one_of(
    st.tuples(st.just("num"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("num"), st.floats(min_value=0, max_value=10, allow_nan=False)),
    st.tuples(st.just("bool"), st.booleans()),
    st.tuples(st.just("var"), st.sampled_from(NAMES)),
)


def _extend(children: st.SearchStrategy[Tree]) -> st.SearchStrategy[Tree]:
    return st.one_of(
        st.tuples(st.just("bin"), st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), children, children),
        st.tuples(st.just("un"), st.sampled_from(["-", "+", "not"]), children),
        st.tuples(
            st.just("cmp"),
            st.lists(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), min_size=1, max_size=3),
            st.lists(children, min_size=4, max_size=4),
        ),
        st.tuples(st.just("bool"), st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3)),
        st.tuples(st.just("if"), children, children, children),
        st.tuples(st.just("call"), st.sampled_from(["min", "max"]), st.lists(children, min_size=1, max_size=3)),
        st.tuples(st.just("call"), st.sampled_from(["abs", "floor", "ceil", "round"]), st.lists(children, min_size=1, max_size=1)),
    )  # fmt: skip


trees = st.recursive(_leaf, _extend, max_leaves=12)
envs = st.fixed_dictionaries(
    {
        name: st.one_of(
            st.integers(min_value=-5, max_value=5),
            st.floats(min_value=-5, max_value=5, allow_nan=False),
            st.booleans(),
        )
        for name in NAMES
    }
)


def render(tree: Tree) -> str:
    kind = tree[0]
    if kind == "num":
        return repr(tree[1])
    if kind == "bool":
        if isinstance(tree[1], bool):
            return "true" if tree[1] else "false"
        return "(" + f" {tree[1]} ".join(render(t) for t in tree[2]) + ")"
    if kind == "var":
        return str(tree[1])
    if kind == "bin":
        return f"({render(tree[2])} {tree[1]} {render(tree[3])})"
    if kind == "un":
        return f"({tree[1]} {render(tree[2])})"
    if kind == "cmp":
        ops, operands = tree[1], tree[2]
        text = render(operands[0])
        for op, operand in zip(ops, operands[1:], strict=False):
            text += f" {op} {render(operand)}"
        return f"({text})"
    if kind == "if":
        return f"({render(tree[2])} if {render(tree[1])} else {render(tree[3])})"
    return f"{tree[1]}({', '.join(render(t) for t in tree[2])})"


class Skip(Exception):
    """The reference left the range where float/int bounding could differ: not comparable."""


class Fails(Exception):
    """The reference says the real evaluator must raise ExprError."""


def _check(value: Value) -> Value:
    if isinstance(value, float) and not math.isfinite(value):
        raise Fails
    if not isinstance(value, bool) and abs(value) > 1e12:
        raise Skip
    return value


def reference(tree: Tree, env: dict[str, Value]) -> Value:
    """Straightforward Python semantics on the tree, independent of the evaluator's code."""
    kind = tree[0]
    if kind == "num":
        return _check(tree[1])
    if kind == "bool":
        if isinstance(tree[1], bool):
            return bool(tree[1])
        value: Value = tree[1] == "and"
        for child in tree[2]:
            value = reference(child, env)
            if bool(value) != (tree[1] == "and"):
                return value
        return value
    if kind == "var":
        return env[tree[1]]
    if kind == "un":
        operand = reference(tree[2], env)
        return not operand if tree[1] == "not" else _check(-operand if tree[1] == "-" else +operand)
    if kind == "bin":
        left, right = reference(tree[2], env), reference(tree[3], env)
        op = tree[1]
        if op in ("/", "//", "%") and right == 0:
            raise Fails
        if op == "**":
            if abs(right) > 10:
                raise Skip
            if left == 0 and right < 0:
                raise Fails
            if left < 0 and right != int(right):
                raise Fails
        try:
            result = {
                "+": lambda: left + right,
                "-": lambda: left - right,
                "*": lambda: left * right,
                "/": lambda: left / right,
                "//": lambda: left // right,
                "%": lambda: left % right,
                "**": lambda: left**right,
            }[op]()
        except OverflowError:
            raise Fails from None
        if isinstance(result, complex):
            raise Fails
        return _check(result)
    if kind == "cmp":
        ops, operands = tree[1], tree[2][: len(tree[1]) + 1]
        left = reference(operands[0], env)
        for op, operand in zip(ops, operands[1:], strict=True):
            right = reference(operand, env)
            holds = {
                "<": left < right,
                "<=": left <= right,
                ">": left > right,
                ">=": left >= right,
                "==": left == right,
                "!=": left != right,
            }[op]
            if not holds:
                return False
            left = right
        return True
    if kind == "if":
        return reference(tree[2] if reference(tree[1], env) else tree[3], env)
    args = [reference(t, env) for t in tree[2]]
    fn = {
        "min": min,
        "max": max,
        "abs": abs,
        "floor": math.floor,
        "ceil": math.ceil,
        "round": round,
    }[tree[1]]
    return _check(fn(*args) if tree[1] not in ("min", "max") else fn(args))


def _has_var(tree: Tree) -> bool:
    if tree[0] == "var":
        return True
    return any(
        _has_var(part)
        for part in tree[1:]
        for part in (part if isinstance(part, list) else [part])
        if isinstance(part, tuple)
    )


def _subtrees(tree: Tree) -> list[Tree]:
    found = [tree]
    for part in tree[1:]:
        for item in part if isinstance(part, list) else [part]:
            if isinstance(item, tuple):
                found.extend(_subtrees(item))
    return found


def _trim(tree: Tree) -> Tree:
    """Comparisons carry 4 operands for up to 3 operators: drop the unused ones."""
    if tree[0] == "cmp":
        return ("cmp", tree[1], [_trim(t) for t in tree[2][: len(tree[1]) + 1]])
    return tuple(
        [_trim(p) for p in part] if isinstance(part, list) else _trim(part) if isinstance(part, tuple) else part
        for part in tree
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(trees, envs)
def test_random_trees_match_the_reference(tree: Tree, env: dict[str, Value]) -> None:
    tree = _trim(tree)
    source = render(tree)
    assume(len(source) <= 1000)
    # Constant parts are folded (and checked) when compiling, even in branches not taken.
    compile_fails = False
    for sub in _subtrees(tree):
        if not _has_var(sub):
            try:
                reference(sub, {})
            except Fails:
                compile_fails = True
            except Skip:
                assume(False)
    try:
        expected: Value | None = reference(tree, env)
    except Fails:
        expected = None
    except Skip:
        assume(False)
        return
    try:
        expression = compile_expr(source, NAMES)
    except ExprError:
        assert compile_fails, source
        return
    assert not compile_fails, source
    assert expression.names == {t[1] for t in _subtrees(tree) if t[0] == "var"}
    try:
        result = expression.evaluate(env)
    except ExprError:
        assert expected is None, (source, env, expected)
        return
    assert expected is not None, (source, env, result)
    assert isinstance(result, bool) == isinstance(expected, bool), (source, result, expected)
    if isinstance(expected, float) or isinstance(result, float):
        assert math.isclose(result, expected, rel_tol=1e-9, abs_tol=1e-12), (
            source,
            result,
            expected,
        )
    else:
        assert result == expected, (source, env, result, expected)


TOKENS = [
    "ncpus", "pilots", "hour", "1", "2", "0", "9", "1e308", ".", "(", ")", "[", "]", "{", "}", ",", ":",
    "+", "-", "*", "/", "//", "%", "**", "<", ">", "==", "and", "or", "not", "if", "else", "lambda",
    "'x'", "__import__", "__class__", "os", "open", "min", "max", "round", "abs", "floor", "ceil",
    "true", "None", ":=", "=", ";", "@", "~", "&", "is", "in", "for", " ",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(TOKENS), max_size=25),
    st.fixed_dictionaries(
        {
            "ncpus": st.integers(min_value=0, max_value=64),
            "pilots": st.integers(min_value=0, max_value=10),
        }
    ),
)
def test_token_soup_raises_only_expr_error(tokens: list[str], env: dict[str, int]) -> None:
    source = " ".join(tokens)
    try:
        expression = compile_expr(source)
    except ExprError:
        return
    try:
        value = expression.evaluate({**env, "hour": 3})
    except ExprError:
        return
    assert isinstance(value, bool | int | float)
    assert isinstance(value, bool) or math.isfinite(value)
    assert not isinstance(value, int) or abs(value) <= 2**63


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_expr_error(source: str) -> None:
    try:
        expression = compile_expr(source)
    except ExprError:
        return
    with contextlib.suppress(ExprError):
        expression.evaluate(dict.fromkeys(expression.names, 1))
