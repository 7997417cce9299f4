"""Errors an admin can act on: file, key path, line, bad value, what was expected, did-you-mean."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.config.errors import ConfigError, Problem, did_you_mean
from planctond.config.loader import POOL_KEYS, TOP_KEYS, load_config_text


def problems_of(text: str) -> tuple[Problem, ...]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "/etc/plancton/config.yaml")
    return info.value.problems


def test_message_names_file_line_path_value_and_expectation() -> None:
    text = """\
        tick: 10s
        pools:
          default:
            image: busybox:latest
            memory: lots
        """
    (problem,) = problems_of(text)
    assert (problem.file, problem.line, problem.path) == (
        "/etc/plancton/config.yaml",
        5,
        "pools.default.memory",
    )
    message = str(problem)
    assert message.startswith("/etc/plancton/config.yaml:5: pools.default.memory: expected a size")
    assert "'lots'" in message
    assert "2G" in message


def test_config_error_exposes_the_first_problem() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("tick: never\n", "c.yaml")
    error = info.value
    assert (error.file, error.path, error.line) == ("c.yaml", "tick", 1)
    assert str(error) == str(error.problems[0])


def test_every_problem_is_listed_in_one_go() -> None:
    text = """\
        tick: 0
        owner:
          reserve: -1
        pools:
          default:
            cpus: 0
            per_tick: 0
          bad name: {}
        """
    found = {(p.path, p.line) for p in problems_of(text)}
    assert found == {
        ("tick", 1),
        ("owner.reserve", 3),
        ("pools.default.cpus", 6),
        ("pools.default.per_tick", 7),
        ("pools.bad name", 8),
    }


@pytest.mark.parametrize(
    ("text", "path", "suggestion"),
    [
        ("tikc: 5s", "tikc", "tick"),
        ("config_chek: 1m", "config_chek", "config_check"),
        ("pool: {}", "pool", "pools"),
        ("owner: {reserv: 1}", "owner.reserv", "reserve"),
        ("owner: {grace_kil: 1}", "owner.grace_kil", "grace_kill"),
        ("docker: {uri: 'unix:///x'}", "docker.uri", "url"),
        ("pools: {default: {memroy: 1G}}", "pools.default.memroy", "memory"),
        ("pools: {default: {max_pilot: 1}}", "pools.default.max_pilot", "max_pilots"),
        ("pools: {default: {capabilites: []}}", "pools.default.capabilites", "capabilities"),
        ("pools: {default: {nowork_exit_code: []}}", "pools.default.nowork_exit_code", "nowork_exit_codes"),
        ("defaults: {imag: x}", "defaults.imag", "image"),
        ("monitoring: {influx: []}", "monitoring.influx", "influxdb"),
    ],
)  # fmt: skip
def test_unknown_keys_say_did_you_mean(text: str, path: str, suggestion: str) -> None:
    (problem,) = problems_of(text)
    assert problem.path == path
    assert problem.line == 1
    assert f"did you mean '{suggestion}'?" in problem.message


def test_unknown_key_without_a_near_miss_lists_what_is_allowed() -> None:
    (problem,) = problems_of("zzzzzz: 1")
    assert "expected one of:" in problem.message
    assert "pools" in problem.message


def test_did_you_mean_helper() -> None:
    assert did_you_mean("memroy", POOL_KEYS) == "; did you mean 'memory'?"
    assert did_you_mean("tls", ["verify_tls", "url"]) == "; did you mean 'verify_tls'?"
    assert did_you_mean("q", ["a", "b"]) == "; expected one of: a, b"


def test_yaml_syntax_errors_carry_the_line() -> None:
    (problem,) = problems_of("tick: 10s\npools:\n  default:\n    image: [unclosed\n")
    assert "not valid YAML" in problem.message
    assert problem.line is not None and problem.line >= 4
    (problem,) = problems_of("tick: 10s\n  bad indent: 1\n")
    assert problem.line == 2


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    (problem,) = problems_of("tick: 1s\nowner: {}\ntick: 2s\n")
    assert (problem.path, problem.line) == ("tick", 3)
    assert "first given on line 1" in problem.message


def test_unsafe_yaml_tags_are_refused() -> None:
    (problem,) = problems_of("tick: !!python/object/apply:os.system ['true']\n")
    assert problem.line == 1
    assert "python/object" in str(problem)


def test_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    (problem,) = problems_of("\n".join(lines) + "\n")
    assert "too large" in problem.message


def test_string_config_error_for_other_callers() -> None:
    error = ConfigError("something broke")
    assert str(error) == "<config>: something broke"
    assert error.line is None


def test_expression_errors_name_key_and_text() -> None:
    (problem,) = problems_of("pools:\n  default:\n    run_when: 'hour < seven'\n")
    assert (problem.path, problem.line) == ("pools.default.run_when", 3)
    assert "'hour < seven'" in problem.message
    assert "unknown variable 'seven'" in problem.message


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=30),
    st.sampled_from(sorted(POOL_KEYS)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=3),
)
def test_errors_point_at_the_line_of_the_bad_key(blank: int, near: str, noise: str) -> None:
    key = near + noise  # never a real key: every real key is shorter or differs
    if key in POOL_KEYS:
        return
    text = "tick: 5s\n" + "\n" * blank + f"pools:\n  default:\n    {key}: 1\n"
    (problem,) = problems_of(text)
    assert problem.line == blank + 4
    assert problem.path == f"pools.default.{key}"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    try:
        load_config_text(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")


def test_top_keys_documented() -> None:
    assert {
        "tick",
        "config_check",
        "owner",
        "pools",
        "docker",
        "state_dir",
        "monitoring",
    } <= TOP_KEYS
