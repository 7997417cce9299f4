"""Back-off of pools whose pilots keep failing fast, alone and as the policy applies it."""

from __future__ import annotations

import itertools

import pytest

from planctond.policy.backoff import Backoff, after_exit, is_failure
from planctond.policy.model import PilotPhase
from planctond.policy.state import PolicyState
from tests.support.policy_sim import (
    T0_MONOTONIC,
    HostSim,
    decide_once,
    make_config,
    pool,
    snapshot,
)

POOL = pool(
    fail_window=60.0, backoff_min=10.0, backoff_max=80.0, nowork_exit_codes=frozenset({3, 99})
)


def fail(
    current: Backoff, now: float = 0.0, code: int | None = 1, lifetime: float = 2.0
) -> Backoff:
    return after_exit(current, POOL, now, exit_code=code, lifetime=lifetime, stopped_by_us=False)


@pytest.mark.parametrize(
    ("exit_code", "lifetime", "stopped_by_us", "expected"),
    [
        (1, 2.0, False, True),  # fast non-zero exit: the typical bad image
        (None, 0.0, False, True),  # could not even start
        (137, 5.0, False, True),  # killed by someone else (OOM) fast
        (1, 59.9, False, True),
        (1, 60.0, False, False),  # lived its fail window: a normal end
        (1, 3600.0, False, False),
        (0, 0.5, False, False),  # clean exit, however fast
        (3, 0.5, False, False),  # "no work" codes are not failures
        (99, 0.5, False, False),
        (143, 0.5, True, False),  # we stopped it
        (1, 0.5, True, False),
        (None, 0.0, True, False),
    ],
)
def test_is_failure(
    exit_code: int | None, lifetime: float, stopped_by_us: bool, expected: bool
) -> None:
    assert (
        is_failure(POOL, exit_code=exit_code, lifetime=lifetime, stopped_by_us=stopped_by_us)
        is expected
    )


def test_fast_failures_back_off_exponentially_up_to_backoff_max() -> None:
    bo = Backoff()
    delays = []
    for i in range(8):
        now = 1000.0 + i
        bo = fail(bo, now)
        delays.append(bo.until - now)
        assert bo.failures == i + 1
        assert bo.active(now) and not bo.active(bo.until)
    assert delays == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0, 80.0, 80.0]


def test_backoff_does_not_overflow_after_many_failures() -> None:
    bo = Backoff(failures=10_000, until=0.0)
    bo = fail(bo, 5.0)
    assert bo.until == 85.0 and bo.failures == 10_001


def test_backoff_min_equal_max_is_a_constant_delay() -> None:
    p = pool(backoff_min=30.0, backoff_max=30.0)
    bo = Backoff()
    for _ in range(5):
        bo = after_exit(bo, p, 0.0, exit_code=2, lifetime=1.0, stopped_by_us=False)
        assert bo.until == 30.0


def test_the_reason_says_what_happened() -> None:
    bo = fail(Backoff(), code=125, lifetime=1.25)
    assert bo.last_reason == "pilot exited with code 125 after 1.2s"
    bo = after_exit(
        Backoff(), POOL, 0.0, exit_code=None, lifetime=0.0, stopped_by_us=False, why="no such image"
    )
    assert bo.last_reason == "no such image"


@pytest.mark.parametrize(
    ("code", "lifetime", "stopped_by_us"),
    [(0, 1.0, False), (3, 1.0, False), (1, 600.0, False), (143, 1.0, True)],
    ids=["exit-0", "nowork", "long-lived", "stopped-by-us"],
)
def test_normal_ends_reset_the_backoff(code: int, lifetime: float, stopped_by_us: bool) -> None:
    bo = fail(fail(fail(Backoff())))
    assert bo.failures == 3
    reset = after_exit(
        bo, POOL, 10.0, exit_code=code, lifetime=lifetime, stopped_by_us=stopped_by_us
    )
    assert reset == Backoff()
    assert not reset.active(10.0)
    assert fail(reset, 10.0).until == 20.0  # starts again from backoff_min


# --- as the policy applies it -----------------------------------------------------------------


def test_a_backing_off_pool_starts_nothing_and_says_why() -> None:
    cfg = make_config(pool("bad", max_pilots="2"), pool("good", max_pilots="2"))
    bo = Backoff(
        failures=2, until=T0_MONOTONIC + 20.0, last_reason="pilot exited with code 1 after 0.3s"
    )
    state = PolicyState().with_backoff("bad", bo)
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=16), (), state)
    assert [s.pool for s in decision.start] == ["good"]
    assert verdicts["bad"].note == "backing off 20s: pilot exited with code 1 after 0.3s"
    later = snapshot(ncpus=16, now=T0_MONOTONIC + 20.0)
    decision, _, _ = decide_once(cfg, later, (), state)
    assert {s.pool for s in decision.start} == {"bad", "good"}


def test_sim_failing_pool_waits_exponentially_longer_between_starts() -> None:
    p = pool(max_pilots="1", fail_window=60.0, backoff_min=10.0, backoff_max=40.0)
    cfg = make_config(p, tick=1.0)
    sim = HostSim(cfg, ncpus=8, lifetime=lambda _p: (1.0, 1))
    steps = sim.run(400)
    starts = [s.now - T0_MONOTONIC for s in steps if s.decision.start]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # each pilot lives 1 s; then the pool waits 10, 20, 40, 40... (the next tick after `until`)
    assert gaps[:5] == [11.0, 21.0, 41.0, 41.0, 41.0]
    assert all(g == 41.0 for g in gaps[3:])


def test_sim_nowork_exits_are_replaced_without_backoff() -> None:
    p = pool(max_pilots="1", nowork_exit_codes=frozenset({7}), per_tick=1)
    cfg = make_config(p, tick=10.0)
    sim = HostSim(cfg, ncpus=8, lifetime=lambda _p: (12.0, 7))
    steps = sim.run(120)
    assert all(not bo.failures for bo in sim.state.backoff.values())
    # replaced the moment it exits (event-driven), every 12 s
    starts = [s.now - T0_MONOTONIC for s in steps if s.decision.start]
    assert starts[:5] == [0.0, 12.0, 24.0, 36.0, 48.0]


def test_sim_our_own_stops_never_cause_backoff() -> None:
    p = pool(max_pilots="2", ttl=5.0, stop_grace=2.0)
    cfg = make_config(p, tick=1.0)
    sim = HostSim(cfg, ncpus=8)
    sim.run(60)
    assert sim.exits and all(e.stopped_by_us for e in sim.exits)
    assert all(e.lifetime < p.fail_window for e in sim.exits)
    assert all(not bo.failures for bo in sim.state.backoff.values())
    assert sim.count("default", PilotPhase.RUNNING, PilotPhase.STOPPING) >= 1
