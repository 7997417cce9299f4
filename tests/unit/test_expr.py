"""The expression language of max_pilots/run_when: what it computes and everything it refuses."""

from __future__ import annotations

import pytest

from planctond.config.expr import (
    MAX_SOURCE_LENGTH,
    ExprError,
    Expression,
    compile_expr,
)
from planctond.config.variables import HOST_VARIABLES

GiB = 1024**3
HOST: dict[str, float | bool] = {
    "ncpus": 8,
    "ram_bytes": 16 * GiB,
    "swap_bytes": 2 * GiB,
    "mem_available": 10 * GiB,
    "load1": 1.5,
    "owner_cpu": 0.25,
    "owner_cpu_5m": 0.5,
    "pilots": 3,
    "on_battery": False,
    "hour": 23,
    "weekday": 5,
    "max_dock_mem": 2_000_000_000,
    "max_dock_swap": 0,
}


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("ncpus - 2", 6),
        ("ncpus - 1", 7),
        ("4", 4),
        ("2.5", 2.5),
        ("true", True),
        ("false", False),
        ("True", True),
        ("hour >= 22 or hour < 6", True),
        ("weekday >= 5", True),
        ("not on_battery", True),
        ("not on_battery and owner_cpu_5m < 0.5", False),
        ("1 < ncpus < 10", True),
        ("1 < ncpus < 4", False),
        ("ncpus == 8 != 9", True),
        ("min(ncpus - 1, ram_bytes // (2 * GiB))", 7),
        ("max(1, ncpus - 10)", 1),
        ("min(ncpus)", 8),
        ("min(ram_bytes // max_dock_mem, ncpus - 2)", 6),
        ("ram_bytes / (max_dock_mem + max_dock_swap)", 16 * GiB / 2_000_000_000),
        ("round(ncpus / 3)", 3),
        ("round(ncpus / 3, 2)", 2.67),
        ("abs(1 - ncpus)", 7),
        ("floor(load1)", 1),
        ("ceil(load1)", 2),
        ("ncpus % 3", 2),
        ("-ncpus", -8),
        ("+ncpus", 8),
        ("2 ** 10", 1024),
        ("ncpus ** 2", 64),
        ("2 ** -1", 0.5),
        ("ncpus if on_battery else 2", 2),
        ("pilots * 2 if hour > 20 else 0", 6),
        ("(ncpus - 2) * (1 if hour < 7 else 0)", 0),
        ("KB + MB + GB", 1000 + 1000**2 + 1000**3),
        ("KiB * MiB", 1024 * 1024**2),
        ("on_battery or pilots", 3),  # Python's and/or: the deciding operand
        ("pilots and 0", 0),
        ("true + 1", 2),
        ("  ncpus  ", 8),
    ],
)
def test_evaluates(source: str, value: float | bool) -> None:
    result = compile_expr(source).evaluate(HOST)
    assert result == value
    assert type(result) is type(value)


def test_names_are_the_variables_read() -> None:
    assert compile_expr("min(ncpus - 1, ram_bytes // GiB)").names == {"ncpus", "ram_bytes"}
    assert compile_expr("true").names == frozenset()
    assert compile_expr("hour < 7 or weekday > 4").names == {"hour", "weekday"}


def test_source_is_kept_and_compiles_are_cached() -> None:
    first = compile_expr("ncpus - 2")
    assert first.source == "ncpus - 2"
    assert compile_expr("ncpus - 2") is first
    assert first == compile_expr("ncpus - 2", ["ncpus"])
    assert repr(first) == "Expression('ncpus - 2')"
    assert isinstance(first, Expression)


def test_every_host_variable_is_allowed() -> None:
    for name in HOST_VARIABLES:
        assert compile_expr(name).names == {name}


def test_allowed_restricts_the_names() -> None:
    assert compile_expr("a + b", ["a", "b"]).evaluate({"a": 1, "b": 2}) == 3
    with pytest.raises(ExprError, match="unknown variable 'ncpus'"):
        compile_expr("ncpus", {"a"})


def test_undefined_variable_at_evaluation_is_named() -> None:
    expression = compile_expr("ncpus - pilots")
    with pytest.raises(ExprError, match="undefined variable 'pilots'"):
        expression.evaluate({"ncpus": 4})


def test_short_circuit_skips_undefined_variables() -> None:
    # on_battery may be undefined on a desktop: "hour < 7 or on_battery" still works at night.
    assert compile_expr("hour < 7 or on_battery").evaluate({"hour": 3}) is True
    with pytest.raises(ExprError, match="on_battery"):
        compile_expr("hour < 7 or on_battery").evaluate({"hour": 12})


@pytest.mark.parametrize(
    "source", ["ncpus / pilots", "ncpus // pilots", "ncpus % pilots", "ncpus / (pilots - pilots)"]
)
def test_division_by_zero_at_evaluation(source: str) -> None:
    with pytest.raises(ExprError, match="division by zero"):
        compile_expr(source).evaluate({"ncpus": 4, "pilots": 0})


def test_variables_must_be_numbers() -> None:
    with pytest.raises(ExprError, match="not a number"):
        compile_expr("ncpus").evaluate({"ncpus": "8"})  # type: ignore[dict-item]
    with pytest.raises(ExprError, match="finite"):
        compile_expr("load1 + 1").evaluate({"load1": float("nan")})


def test_big_numbers_stay_bounded() -> None:
    # Integers past 2**63 turn into floats, floats that overflow are errors: no huge ints.
    result = compile_expr("ram_bytes ** 5").evaluate({"ram_bytes": 2**40})
    assert isinstance(result, float)
    with pytest.raises(ExprError, match=r"too large|finite"):
        compile_expr("ram_bytes ** 50").evaluate({"ram_bytes": 2**40})
    with pytest.raises(ExprError, match="finite"):
        compile_expr("ram_bytes * 1e300 * 1e300").evaluate({"ram_bytes": 2})
    with pytest.raises(ExprError, match="exponent"):
        compile_expr("ncpus ** pilots").evaluate({"ncpus": 2, "pilots": 10**6})
    with pytest.raises(ExprError, match="not a real number"):
        compile_expr("load1 ** 0.5").evaluate({"load1": -1.0})
    with pytest.raises(ExprError, match="digits"):
        compile_expr("round(load1, pilots)").evaluate({"load1": 1.0, "pilots": 10**9})


INJECTIONS = [
    "__import__('os').system('x')",
    "__import__",
    "().__class__",
    "().__class__.__bases__[0].__subclasses__()",
    "open('/etc/passwd')",
    "open",
    "exec('1')",
    "eval('1')",
    "compile('1', 'x', 'eval')",
    "getattr(ncpus, 'real')",
    "ncpus.real",
    "ncpus.__class__",
    "globals()",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in (1, 2)]",
    "{x for x in (1, 2)}",
    "(x for x in (1, 2))",
    "{1: 2}",
    "[1][0]",
    "'abc'",
    "b'abc'",
    "f'{ncpus}'",
    "None",
    "...",
    "1j",
    "(x := 1)",
    "ncpus & 1",
    "ncpus | 1",
    "ncpus ^ 1",
    "ncpus << 70",
    "ncpus >> 1",
    "~ncpus",
    "ncpus is 1",
    "ncpus in (1, 2)",
    "min(*[1, 2])",
    "min(ncpus, key=abs)",
    "_",
    "__builtins__",
    "_x",
    "9**9**9",
    "10 ** 1001",
    "2 ** 100000",
    "1 / 0",
    "1 // 0",
    "1 % 0",
    "ncpus ** 5000",
    "1e308 * 10",
    "import os",
    "ncpus; 1",
    "",
    "   ",
    "ncpus -",
    "min()",
    "abs(1, 2)",
    "round(1, 2, 3)",
    "min",
    "ncpu",
    "yield 1",
    "await x",
    "\0",
    "ncpus if true",
    "1 +" * 400 + "1",
    "(" * 300 + "1" + ")" * 300,
    "-" * 500 + "1",
    "x" * (MAX_SOURCE_LENGTH + 1),
]


@pytest.mark.parametrize("source", INJECTIONS)
def test_refused(source: str) -> None:
    with pytest.raises(ExprError):
        compile_expr(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("ncpus.real", "attribute access"),
        ("().__class__", "attribute access"),
        ("[1][0]", "subscripts"),
        ("lambda: 1", "lambda"),
        ("[x for x in (1, 2)]", "comprehensions"),
        ("'abc'", "string literals"),
        ("(x := 1)", "assignment expressions"),
        ("open('/etc/passwd')", "calling 'open' not allowed"),
        ("__import__('os')", "calling '__import__' not allowed"),
        ("__import__", "names starting with '_'"),
        ("ncpus & 1", "operator '&'"),
        ("ncpus in (1, 2)", "operator 'in'"),
        ("9**9**9", "exponent 387420489 is too large"),
        ("10 ** 1001", "too large"),
        ("1 / 0", "division by zero"),
        ("ncpu + 1", "did you mean 'ncpus'"),
        ("min", "is a function"),
        ("min(ncpus, key=abs)", "keyword arguments"),
        ("abs(1, 2)", "abs() takes 1 argument"),
        ("ncpus -", "syntax error"),
        ("x" * (MAX_SOURCE_LENGTH + 1), "longer than"),
        ("-" * 500 + "1", "nested too deeply"),
    ],
)
def test_refusals_name_the_construct(source: str, message: str) -> None:
    with pytest.raises(ExprError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_expr(source)


def test_expr_error_is_a_value_error() -> None:
    assert issubclass(ExprError, ValueError)


def test_non_string_source_is_refused() -> None:
    with pytest.raises(ExprError, match="text"):
        compile_expr(42)  # type: ignore[arg-type]


def test_constant_parts_are_folded_at_compile_time() -> None:
    # A constant error anywhere, even in a branch rarely taken, fails when the config loads.
    with pytest.raises(ExprError, match="division by zero"):
        compile_expr("ncpus if hour < 7 else 1 / 0")
    assert compile_expr("ncpus * (2 ** 10)").evaluate({"ncpus": 2}) == 2048


def test_no_code_is_ever_compiled_or_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsing may build an AST, nothing more: eval/exec are never reached, compile only for ASTs."""
    import ast
    import builtins

    real_compile = builtins.compile

    def ast_only(
        source: object, filename: object, mode: str, flags: int = 0, *a: object, **k: object
    ) -> object:
        assert flags & ast.PyCF_ONLY_AST, "compile() asked for a code object"
        return real_compile(source, filename, mode, flags, *a, **k)  # type: ignore[call-overload]

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "compile", ast_only)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    source = "min(ncpus - 1, ram_bytes // GiB) if not on_battery else 0  # fresh, uncached"
    expression = compile_expr(source.split("  #")[0] + " + 0")
    assert expression.evaluate(HOST) == 7
    with pytest.raises(ExprError):
        compile_expr("__import__('os').system('true') or 1")
