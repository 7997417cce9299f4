"""Issue 9, class 2: every number a config may hold is bounded to what a host can use and what
the code downstream computes with, so a config that loads never fails later, on a tick.

Each field at its largest and smallest allowed value goes through the container spec, the policy
(one decision and a simulated run) and `--check-config`; one step past a bound is refused at load.
"""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.loader import load_config_text
from planctond.config.model import Config
from planctond.config.units import format_duration
from planctond.policy.memory import after_pilot_end
from planctond.policy.state import PolicyState
from tests.unit.test_config_fuzz import exercise

LONGEST = format_duration(C.MAX_DURATION)
TINY = "5e-324"  # the smallest positive float: the smallest positive duration


def extremes() -> Config:
    return load_config_text(
        f"""
tick: {LONGEST}
config_check: {LONGEST}
owner: {{reserve: {C.MAX_CPUS}, margin: {C.MAX_CPUS}, reserve_memory: 1P,
         grace_kill: {LONGEST}, grace_spawn: {LONGEST}, freeze: {LONGEST}}}
pools:
  largest:
    pull: {{policy: always, refresh: {LONGEST}}}
    cpus: {C.MAX_CPUS}
    memory: 1P
    swap: 1P
    max_pilots: "1e308"
    run_when: "ncpus * 1e300 > 0"
    per_tick: {C.MAX_PER_TICK}
    ttl: {LONGEST}
    stop_grace: {LONGEST}
    pids_limit: {C.MAX_PIDS_LIMIT}
    oom_score_adj: 1000
    log_max_size: 1P
    log_max_files: {C.MAX_LOG_FILES}
    fail_window: {LONGEST}
    backoff_min: {LONGEST}
    backoff_max: {LONGEST}
  smallest:
    pull: {{refresh: {TINY}}}
    cpus: {C.MIN_CPUS}
    memory: 0
    swap: 0
    max_pilots: "-1e308"
    per_tick: 1
    ttl: {TINY}
    stop_grace: 0
    pids_limit: 0
    oom_score_adj: -1000
    log_max_size: 1
    log_max_files: 1
    fail_window: {TINY}
    backoff_min: {TINY}
    backoff_max: {TINY}
  tiny_memory: {{cpus: {C.MIN_CPUS}, memory: 1, swap: 1P, max_pilots: "ncpus * 1e300"}}
""",
        "bounds.yaml",
    )


def small_intervals() -> Config:
    return load_config_text(
        "tick: 0.1\nconfig_check: 0.1\nowner: {reserve: 0, margin: 0, reserve_memory: 0, "
        "grace_kill: 0, grace_spawn: 0, freeze: 0}\npools: {p: {cpus: 0.01, ttl: 0.1}}\n",
        "small.yaml",
    )


def test_every_field_at_its_bounds_runs_through_spec_policy_and_render() -> None:
    config = extremes()
    exercise(config)
    exercise(small_intervals())


def test_back_off_at_the_bounds() -> None:
    for pool in extremes().pools:
        state = PolicyState()
        for n in range(100):
            state, _ = after_pilot_end(
                state, pool, 1e9 + n, exit_code=1, lifetime=0.0, stopped_by_us=False
            )
        assert state.backoff[pool.name].until >= 1e9


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("cpus", "1025", "0.01..1024"),
        ("cpus", "0.009", "0.01..1024"),
        ("cpus", "1e-300", "0.01..1024"),
        ("memory", "1025P", "at most 1P"),
        ("swap", "99999999999999999999", "at most 1P"),
        ("log_max_size", "0", "at least 1"),
        ("log_max_size", "2P", "at most 1P"),
        ("log_max_files", "0", "1..100"),
        ("log_max_files", "101", "1..100"),
        ("per_tick", "1001", "1..1000"),
        ("pids_limit", "4194305", "0..4194304"),
        ("pids_limit", "9223372036854775808", "0..4194304"),
        ("oom_score_adj", "-1001", "-1000..1000"),
        ("ttl", "3651d", "at most 3650d"),
        ("ttl", "1e300", "at most 3650d"),
        ("stop_grace", "100000w", "at most 3650d"),
        ("backoff_max", ".inf", "duration"),
        ("fail_window", ".nan", "duration"),
        ("pull", "{refresh: 3651d}", "at most 3650d"),
    ],
)
def test_one_step_past_a_bound_is_refused(key: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(f"pools:\n  p:\n    {key}: {value}\n", "c.yaml")
    (problem,) = info.value.problems
    assert problem.path.startswith(f"pools.p.{key}")
    assert problem.line == 3
    assert words in problem.message, problem.message


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("tick: 3651d", "tick", "at most 3650d"),
        ("config_check: 1e20", "config_check", "at most 3650d"),
        ("owner: {reserve: 1025}", "owner.reserve", "0..1024"),
        ("owner: {margin: .inf}", "owner.margin", "0..1024"),
        ("owner: {reserve_memory: 2P}", "owner.reserve_memory", "at most 1P"),
        ("owner: {freeze: 3651d}", "owner.freeze", "at most 3650d"),
    ],
)
def test_top_and_owner_bounds(text: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    (problem,) = info.value.problems
    assert problem.path == path
    assert words in problem.message, problem.message


_durations = st.floats(min_value=C.MIN_INTERVAL, max_value=C.MAX_DURATION)
_sizes = st.integers(min_value=0, max_value=C.MAX_SIZE)


@settings(max_examples=60, deadline=None)
@given(
    cpus=st.floats(min_value=C.MIN_CPUS, max_value=C.MAX_CPUS),
    reserve=st.floats(min_value=0, max_value=C.MAX_CPUS),
    memory=st.integers(min_value=1, max_value=C.MAX_SIZE),
    swap=_sizes,
    per_tick=st.integers(min_value=1, max_value=C.MAX_PER_TICK),
    pids=st.integers(min_value=0, max_value=C.MAX_PIDS_LIMIT),
    tick=_durations,
    ttl=_durations,
    grace=_durations,
    log_size=st.integers(min_value=1, max_value=C.MAX_SIZE),
    log_files=st.integers(min_value=1, max_value=C.MAX_LOG_FILES),
)
def test_any_value_in_bounds_runs(
    cpus: float,
    reserve: float,
    memory: int,
    swap: int,
    per_tick: int,
    pids: int,
    tick: float,
    ttl: float,
    grace: float,
    log_size: int,
    log_files: int,
) -> None:
    document = {
        "tick": tick,
        "owner": {"reserve": reserve, "grace_kill": grace, "freeze": grace},
        "pools": {
            "p": {
                "cpus": cpus,
                "memory": memory,
                "swap": swap,
                "per_tick": per_tick,
                "pids_limit": pids,
                "ttl": ttl,
                "stop_grace": grace,
                "log_max_size": log_size,
                "log_max_files": log_files,
                "backoff_min": ttl,
                "backoff_max": C.MAX_DURATION,
            }
        },
    }
    exercise(load_config_text(yaml.safe_dump(document), "c.yaml"))
