"""`owner.give_way` and the keys that go with it: the pressure lines, read only by
`give_way: pressure` (refused beside `usage`, wherever each was written), and `active_within`.

The rule itself is tested in test_policy_pressure*.py, the owner's PSI in test_owner_pressure.py.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond import constants as C
from planctond.cli.application import uses_variable
from planctond.cli.daemon import main as planctond_main
from planctond.config.errors import ConfigError, Problem
from planctond.config.layers import compose, load_layered, local_sources
from planctond.config.loader import load_config, load_config_text
from planctond.config.model import DEFAULT_GIVE_WAY, Config, GiveWayMode, OwnerConfig
from planctond.config.remote import RemoteDocument
from planctond.config.render import effective_dict, render_effective
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import EventKind
from tests.support.supervisor_rig import CONFIG, Rig, virtual

FILE = "/etc/plancton/config.yaml"
LINES = ("cpu_pressure", "memory_pressure", "io_pressure")
MODES = "one of usage, pressure"
URL = "https://site.example/fleet.yaml"


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), FILE)


def problems_of(text: str) -> tuple[Problem, ...]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.problems


def same(a: Config, b: Config) -> bool:
    """Equal but for where each was read from (as in test_config_render)."""
    return dataclasses.replace(a, source=None, warnings=(), layers=()) == dataclasses.replace(
        b, source=None, warnings=(), layers=()
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def clean(problem: Problem) -> None:
    """An error an admin reads, not a crash report."""
    assert "Traceback" not in problem.message
    assert "internal error" not in problem.message


# --- the mode -----------------------------------------------------------------------------------


def test_pressure_is_the_default() -> None:
    """Chosen from the owner-impact benchmark (bench/RESULTS.md, "The shipped default")."""
    assert C.DEFAULT_GIVE_WAY == C.GIVE_WAY_PRESSURE == "pressure"
    assert DEFAULT_GIVE_WAY is GiveWayMode.PRESSURE
    assert OwnerConfig().give_way is GiveWayMode.PRESSURE
    assert Config().owner.give_way is GiveWayMode.PRESSURE
    for text in ("", "owner:\n", "owner: {}\n", "owner:\n  reserve: 1\n"):
        assert load(text).owner.give_way is GiveWayMode.PRESSURE, text
    # The lines' defaults, and nothing is read at the keyboard.
    owner = OwnerConfig()
    assert (owner.cpu_pressure, owner.memory_pressure, owner.io_pressure) == (
        C.DEFAULT_OWNER_CPU_PRESSURE,
        C.DEFAULT_OWNER_MEMORY_PRESSURE,
        C.DEFAULT_OWNER_IO_PRESSURE,
    )
    assert owner.active_within == C.DEFAULT_ACTIVE_WITHIN == 0.0
    assert owner.variables == frozenset()
    # ... with no CPU kept back and a pilot per CPU: the idle cgroup keeps them out of the way
    assert owner.reserve == 0.0 and Config().pools[0].max_pilots == "ncpus"


def test_give_way_pressure_written_out_is_the_default() -> None:
    assert load("owner:\n  give_way: pressure\n") == load("")


def test_usage_is_kept_for_who_asks() -> None:
    assert load("owner:\n  give_way: usage\n").owner.give_way is GiveWayMode.USAGE


def test_give_way_pressure_loads_with_its_lines() -> None:
    owner = load(
        """\
        owner:
          give_way: pressure
          cpu_pressure: 5
          memory_pressure: 12.5
          io_pressure: 40
        """
    ).owner
    assert owner.give_way is GiveWayMode.PRESSURE
    assert (owner.cpu_pressure, owner.memory_pressure, owner.io_pressure) == (5.0, 12.5, 40.0)
    assert all(isinstance(getattr(owner, key), float) for key in LINES)


def test_give_way_pressure_without_lines_has_the_default_lines() -> None:
    owner = load("owner:\n  give_way: 'pressure'\n").owner
    assert owner.give_way is GiveWayMode.PRESSURE
    assert (owner.cpu_pressure, owner.memory_pressure, owner.io_pressure) == (10.0, 10.0, 25.0)


@pytest.mark.parametrize("value", ["0", "0.0", "100", "100.0", "0.01", "99.99", "1.0e+1"])
@pytest.mark.parametrize("key", LINES)
def test_the_lines_bounds_are_included(key: str, value: str) -> None:
    owner = load(f"owner:\n  give_way: pressure\n  {key}: {value}\n").owner
    assert getattr(owner, key) == float(value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("pressur", "'pressur'"),
        ("Pressure", "'Pressure'"),
        ("PRESSURE", "'PRESSURE'"),
        ("' pressure'", "' pressure'"),
        ("''", "''"),
        ("null", "nothing (null)"),
        ("1", "1"),
        ("true", "true"),
        ("[pressure]", "a list"),
        ("{rule: pressure}", "a mapping"),
    ],
)
def test_a_bad_mode_names_file_key_line_and_the_modes(value: str, shown: str) -> None:
    (problem,) = problems_of(f"tick: 10s\nowner:\n  reserve: 1\n  give_way: {value}\n")
    assert (problem.file, problem.path, problem.line) == (FILE, "owner.give_way", 4)
    assert problem.message == f"expected {MODES}, got {shown}"
    assert str(problem) == f"{FILE}:4: owner.give_way: expected {MODES}, got {shown}"
    clean(problem)


def test_a_bad_mode_is_the_only_problem_beside_a_pressure_line() -> None:
    """The mode is not known, so a line beside it is not also said to be read only with
    `pressure`: the admin has one thing to fix."""
    (problem,) = problems_of("owner:\n  give_way: presure\n  cpu_pressure: 5\n")
    assert (problem.path, problem.line) == ("owner.give_way", 2)


def test_check_config_prints_a_bad_mode_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "config.yaml", "owner:\n  give_way: pressur\n")
    assert planctond_main(["--check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == f"planctond: {path}:2: owner.give_way: expected {MODES}, got 'pressur'\n"


# --- the pressure lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("-1", "-1"),
        ("-0.01", "-0.01"),
        ("100.01", "100.01"),
        ("101", "101"),
        ("1.5e+2", "1.5e+2"),
        ("1e1", "'1e1'"),  # YAML 1.1: no float without a dot and a signed exponent
        (".inf", ".inf"),
        ("-.inf", "-.inf"),
        (".nan", ".nan"),
        ("25%", "'25%'"),
        ("'25'", "'25'"),
        ("10 %", "'10 %'"),
        ("ten", "'ten'"),
        ("true", "true"),
        ("[10]", "a list"),
        ("{avg10: 10}", "a mapping"),
    ],
)
@pytest.mark.parametrize("key", LINES)
def test_a_bad_line_names_file_key_and_value(key: str, value: str, shown: str) -> None:
    (problem,) = problems_of(f"owner:\n  give_way: pressure\n  {key}: {value}\n")
    assert (problem.file, problem.path, problem.line) == (FILE, f"owner.{key}", 3)
    assert problem.message == (
        "expected a percentage 0..100 (PSI avg10), or null to ignore it, got " + shown
    )
    clean(problem)


@pytest.mark.parametrize("key", LINES)
def test_a_line_beside_usage_names_where_usage_was_chosen(key: str) -> None:
    (problem,) = problems_of(f"tick: 10s\nowner:\n  give_way: usage\n  {key}: 5\n")
    assert (problem.file, problem.path, problem.line) == (FILE, f"owner.{key}", 4)
    assert problem.message == (
        f"{key} is read only with give_way: pressure; give_way is usage (line 3)"
    )


def test_lines_beside_usage_are_each_refused() -> None:
    problems = problems_of(
        """\
        owner:
          give_way: usage
          reserve: 1
          cpu_pressure: 5
          memory_pressure: 0
          io_pressure: 100
        """
    )
    assert [(p.path, p.line) for p in problems] == [
        ("owner.cpu_pressure", 4),
        ("owner.memory_pressure", 5),
        ("owner.io_pressure", 6),
    ]
    for problem, key in zip(problems, LINES, strict=True):
        assert problem.message == (
            f"{key} is read only with give_way: pressure; give_way is usage (line 2)"
        )


def test_lines_beside_the_default_load() -> None:
    owner = load("owner:\n  reserve: 1\n  cpu_pressure: 5\n  io_pressure: 100\n").owner
    assert (owner.give_way, owner.cpu_pressure, owner.io_pressure) == (
        GiveWayMode.PRESSURE,
        5.0,
        100.0,
    )


def test_a_line_beside_usage_is_refused_even_at_its_default_value() -> None:
    """Written is written: a line the rule never reads is refused whatever it says."""
    (problem,) = problems_of(
        f"owner:\n  give_way: usage\n  cpu_pressure: {C.DEFAULT_OWNER_CPU_PRESSURE}\n"
    )
    assert problem.path == "owner.cpu_pressure"


@pytest.mark.parametrize("mode", ["", "  give_way: usage\n", "  give_way: pressure\n"])
def test_null_lines_load_in_both_modes(mode: str) -> None:
    owner = load(
        f"owner:\n{mode}  cpu_pressure: null\n  memory_pressure: ~\n  io_pressure:\n"
    ).owner
    assert (owner.cpu_pressure, owner.memory_pressure, owner.io_pressure) == (None, None, None)


def test_one_null_line_leaves_the_others_at_their_defaults() -> None:
    owner = load("owner:\n  give_way: pressure\n  io_pressure: null\n").owner
    assert (owner.cpu_pressure, owner.memory_pressure, owner.io_pressure) == (10.0, 10.0, None)


# --- across layers ------------------------------------------------------------------------------


def test_usage_in_a_dropin_refuses_a_line_in_the_main_file(tmp_path: Path) -> None:
    drop = write(tmp_path / "config.d" / "10-site.yaml", "tick: 10s\nowner:\n  give_way: usage\n")
    main = write(tmp_path / "config.yaml", "owner:\n  reserve: 1\n  memory_pressure: 5\n")
    with pytest.raises(ConfigError) as info:
        load_layered(str(main))
    (problem,) = info.value.problems
    assert (problem.file, problem.path, problem.line) == (str(main), "owner.memory_pressure", 3)
    assert problem.message == (
        f"memory_pressure is read only with give_way: pressure; give_way is usage ({drop}:3)"
    )


def test_usage_in_the_main_file_refuses_a_line_of_a_dropin(tmp_path: Path) -> None:
    """The drop-in chose pressure and its lines; the main file (which wins) goes back to usage:
    the drop-in's lines are refused at the drop-in's lines, naming the main file's choice."""
    drop = write(
        tmp_path / "config.d" / "10-site.yaml",
        "owner:\n  give_way: pressure\n  cpu_pressure: 5\n  io_pressure: null\n",
    )
    main = write(tmp_path / "config.yaml", "tick: 10s\nowner:\n  give_way: usage\n")
    with pytest.raises(ConfigError) as info:
        load_layered(str(main))
    (problem,) = info.value.problems  # the null line asks for nothing
    assert (problem.file, problem.path, problem.line) == (str(drop), "owner.cpu_pressure", 3)
    assert problem.message.endswith(f"give_way is usage ({main}:3)")


def test_a_mode_and_a_line_in_one_dropin_name_the_line(tmp_path: Path) -> None:
    drop = write(
        tmp_path / "config.d" / "10-site.yaml", "owner:\n  give_way: usage\n  io_pressure: 5\n"
    )
    main = write(tmp_path / "config.yaml", "tick: 10s\n")
    with pytest.raises(ConfigError) as info:
        load_layered(str(main))
    (problem,) = info.value.problems
    assert (problem.file, problem.line) == (str(drop), 3)
    assert problem.message.endswith("give_way is usage (line 2)")


def test_pressure_in_a_dropin_and_lines_in_the_main_file_load(tmp_path: Path) -> None:
    write(tmp_path / "config.d" / "10-site.yaml", "owner:\n  give_way: pressure\n")
    write(tmp_path / "config.d" / "20-host.yaml", "owner:\n  cpu_pressure: 3\n")
    main = write(tmp_path / "config.yaml", "owner:\n  io_pressure: null\n")
    owner = load_layered(str(main)).owner
    assert owner.give_way is GiveWayMode.PRESSURE
    assert (owner.cpu_pressure, owner.memory_pressure, owner.io_pressure) == (3.0, 10.0, None)


def test_usage_on_the_host_refuses_the_sites_lines(tmp_path: Path) -> None:
    """The remote document chose pressure with a line; the host's file goes back to usage: the
    line is named at the remote document's URL and line, the choice at the host's file."""
    main = write(tmp_path / "config.yaml", f"remote:\n  url: {URL}\nowner:\n  give_way: usage\n")
    text = "owner:\n  give_way: pressure\n  memory_pressure: 20\n"
    site = RemoteDocument(URL, text, None, None, 1.0)
    with pytest.raises(ConfigError) as info:
        compose(local_sources(str(main)), site, name=str(main))
    (problem,) = info.value.problems
    assert (problem.file, problem.path, problem.line) == (URL, "owner.memory_pressure", 3)
    assert problem.message.endswith(f"give_way is usage ({main}:4)")
    # Alone, the site's document is a valid config of its own.
    assert load_config_text(site.text, URL).owner.memory_pressure == 20.0


# --- active_within ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("1h30m", 5400.0), ("250ms", 0.25)],
)
@pytest.mark.parametrize("mode", ["usage", "pressure"])
def test_active_within_durations(mode: str, value: str, seconds: float) -> None:
    owner = load(f"owner:\n  give_way: {mode}\n  active_within: {value}\n").owner
    assert owner.active_within == seconds
    assert owner.variables == (frozenset({"owner_idle"}) if seconds > 0 else frozenset())


@pytest.mark.parametrize("value", ["-1", "-5s", "soon", "null", "[1]", ".inf"])
def test_bad_active_within_is_refused(value: str) -> None:
    (problem,) = problems_of(f"owner:\n  active_within: {value}\n")
    assert (problem.file, problem.path, problem.line) == (FILE, "owner.active_within", 2)
    assert "expected a duration" in problem.message
    clean(problem)


def test_active_within_makes_owner_idle_used() -> None:
    """The composition root starts logind's reading for the give-way rule itself, with no
    expression naming owner_idle."""
    never = load("pools:\n  p:\n    max_pilots: '2'\n    run_when: 'true'\n")
    assert not uses_variable(never, "owner_idle")
    assert not uses_variable(load("owner:\n  active_within: 0\n"), "owner_idle")
    for mode in ("usage", "pressure"):
        config = load(f"owner:\n  give_way: {mode}\n  active_within: 5m\n")
        assert uses_variable(config, "owner_idle")
        assert not uses_variable(config, "on_battery")


# --- the effective config loads back ---------------------------------------------------------


@pytest.mark.parametrize(
    "owner",
    [
        "{}",
        "{give_way: usage}",
        "{give_way: usage, cpu_pressure: null, active_within: 10m}",
        "{cpu_pressure: null, memory_pressure: null, io_pressure: null}",
        "{give_way: pressure}",
        "{give_way: pressure, cpu_pressure: 0, memory_pressure: 100, io_pressure: 12.34}",
        "{give_way: pressure, cpu_pressure: null, io_pressure: null, active_within: 90}",
    ],
)
def test_the_effective_config_loads_back_the_same(owner: str) -> None:
    config = load(f"owner: {owner}\n")
    text = render_effective(config)
    again = load_config_text(text, "rendered.yaml")
    assert same(config, again)
    assert again.owner == config.owner
    rendered = yaml.safe_load(text)["owner"]
    assert rendered["give_way"] == config.owner.give_way.value
    for key in LINES:
        if config.owner.give_way is GiveWayMode.PRESSURE or getattr(config.owner, key) is None:
            assert rendered[key] == getattr(config.owner, key), key
        else:  # usage: a line it never reads is not shown (and would not load back)
            assert key not in rendered, key


def test_check_config_output_loads_back_in_both_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`planctond --check-config` on a drop-in and a main file: what it prints (values with
    their origins as comments) is a config that loads back to the same one."""
    drop = write(tmp_path / "config.d" / "10-site.yaml", "owner:\n  active_within: 2m\n")
    main = tmp_path / "config.yaml"
    for owner in ("{give_way: pressure, cpu_pressure: 7, io_pressure: null}", "{cpu_pressure: ~}"):
        write(main, f"tick: 10s\nowner: {owner}\n")
        assert planctond_main(["--check-config", str(main)]) == 0
        out = capsys.readouterr().out
        again = load_config_text(out, "rendered.yaml")
        assert same(again, load_layered(str(main)))
        assert again.owner.active_within == 120.0
        assert f"active_within: 2m  # {drop}:2" in out
        assert f"give_way: {again.owner.give_way.value}  #" in out


_line = st.one_of(st.none(), st.integers(0, 10000).map(lambda n: n / 100))


@st.composite
def owner_sections(draw: st.DrawFn) -> dict[str, object]:
    """An owner section that loads: any mode (or none), lines only where the mode reads them
    (null anywhere), a duration for active_within."""
    section: dict[str, object] = {}
    mode = draw(st.sampled_from([None, "usage", "pressure"]))
    if mode is not None:
        section["give_way"] = mode
    for key in LINES:
        if draw(st.booleans()):
            section[key] = draw(_line) if mode == "pressure" else None
    if draw(st.booleans()):
        section["active_within"] = draw(st.integers(0, 10**6))
    return section


@settings(max_examples=80, deadline=None)
@given(owner_sections())
def test_random_owner_sections_round_trip(section: dict[str, object]) -> None:
    config = load_config_text(yaml.safe_dump({"owner": section}), "c.yaml")
    again = load_config_text(yaml.safe_dump(effective_dict(config)), "rendered.yaml")
    assert same(config, again)
    for key, value in section.items():
        expected = GiveWayMode(str(value)) if key == "give_way" else value
        assert getattr(config.owner, key) == expected, key


# --- reloads --------------------------------------------------------------------------------


def test_a_reload_without_give_way_goes_back_to_pressure_and_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("owner:\n  give_way: usage\n  reserve: 1\n")
    assert load_config(str(path)).owner.give_way is GiveWayMode.USAGE
    path.write_text("owner:\n  reserve: 1\n  cpu_pressure: 5\n")  # the mode removed
    owner = load_config(str(path)).owner
    assert owner == OwnerConfig(reserve=1.0, cpu_pressure=5.0)
    assert owner.give_way is GiveWayMode.PRESSURE
    path.write_text("owner:\n  give_way: usage\n  cpu_pressure: 5\n")  # a line left behind
    with pytest.raises(ConfigError, match=r"give_way is usage \(line 2\)") as info:
        load_config(str(path))
    assert (info.value.file, info.value.line) == (str(path), 3)


USAGE = "  give_way: usage\n"
PRESSURE = CONFIG.replace(USAGE, "  give_way: pressure\n  io_pressure: null\n")
LEFT_OVER = CONFIG.replace(USAGE, USAGE + "  cpu_pressure: 5\n")


@virtual
async def test_a_running_supervisor_takes_pressure_and_keeps_it_over_a_bad_reload(
    tmp_path: Path,
) -> None:
    """A reload switches the rule with the pilots running on; a file then left with a line
    beside `usage` is rejected, naming the file and line, and the pressure rule stays."""
    rig = await Rig.start(tmp_path)
    await rig.filled()
    assert rig.s.config.owner.give_way is GiveWayMode.USAGE
    rig.config_path.write_text(PRESSURE)
    await rig.s.reload()
    owner = rig.s.config.owner
    assert (owner.give_way, owner.io_pressure) == (GiveWayMode.PRESSURE, None)
    rig.config_path.write_text(LEFT_OVER)
    line = LEFT_OVER.splitlines().index("  cpu_pressure: 5") + 1
    with pytest.raises(ControlError) as info:
        await rig.s.reload()
    assert str(info.value) == (
        f"{rig.config_path}:{line}: owner.cpu_pressure: cpu_pressure is read only with "
        f"give_way: pressure; give_way is usage (line {line - 1})"
    )
    (rejected,) = rig.kinds(EventKind.CONFIG_REJECTED)
    assert f"{rig.config_path}:{line}" in rejected.message
    assert rig.s.config.owner == owner
    assert len(rig.running()) == 3 and not rig.kinds(EventKind.PILOT_STOPPED), rig.say()
    await rig.shutdown()
