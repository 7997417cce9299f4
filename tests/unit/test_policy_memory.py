"""What the policy remembers between decisions: pilots' ends, failed and skipped starts, Start.

The rules one by one, then hypothesis sequences of those events checked against a reference
model written independently of `policy.backoff`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planctond.config.model import PoolConfig
from planctond.policy.backoff import Backoff
from planctond.policy.memory import (
    after_admin_start,
    after_pilot_end,
    after_start_failure,
    after_start_skipped,
)
from planctond.policy.model import Reason
from planctond.policy.state import PolicyState
from tests.support.policy_sim import T0_MONOTONIC, decide_once, make_config, pool, snapshot

POOL = pool(
    "bad", fail_window=60.0, backoff_min=10.0, backoff_max=80.0, nowork_exit_codes=frozenset({3})
)
OTHER = pool("other", fail_window=60.0, backoff_min=10.0, backoff_max=80.0)
NOW = 1000.0
# A state with something in every field, to see that each function touches only its own.
BUSY = PolicyState(
    overload_since=900.0,
    overload_reason=Reason.OWNER_CPU,
    frozen_since={"f1": 950.0},
    frozen_reason={"f1": Reason.OWNER_CPU},
    gave_way_at=990.0,
    excess_since={"bad": 980.0},
    backoff={"other": Backoff(failures=2, until=NOW + 15.0, last_reason="other reason")},
    window_start={"bad": NOW - 1.0, "other": NOW - 1.0},
    window_count={"bad": 3, "other": 1},
)


def end(
    state: PolicyState,
    now: float = NOW,
    *,
    code: int | None = 1,
    lifetime: float = 2.0,
    by_us: bool = False,
    p: PoolConfig = POOL,
) -> tuple[PolicyState, Backoff | None]:
    return after_pilot_end(state, p, now, exit_code=code, lifetime=lifetime, stopped_by_us=by_us)


def only_backoff_of(before: PolicyState, after: PolicyState, name: str) -> bool:
    """Whether `after` differs from `before` in nothing but the back-off of pool `name`."""
    others = {k: v for k, v in after.backoff.items() if k != name}
    same_others = others == {k: v for k, v in before.backoff.items() if k != name}
    return same_others and replace(after, backoff=before.backoff) == before


# --- a pilot's end ------------------------------------------------------------------------------


def test_a_fast_failing_end_starts_the_backoff_and_is_news() -> None:
    state, news = end(BUSY, code=1, lifetime=2.0)
    assert state.backoff["bad"] == Backoff(
        failures=1, until=NOW + 10.0, last_reason="pilot exited with code 1 after 2.0s"
    )
    assert news == state.backoff["bad"]
    assert only_backoff_of(BUSY, state, "bad")


def test_every_failing_end_doubles_the_wait_even_while_backing_off() -> None:
    """Pilots started before the back-off may still be failing: each is news and each doubles."""
    state, delays = PolicyState(), []
    for i in range(6):
        now = NOW + i
        state, news = end(state, now)
        assert news is not None and news.failures == i + 1
        assert state.backoff["bad"].active(now)
        delays.append(news.until - now)
    assert delays == [10.0, 20.0, 40.0, 80.0, 80.0, 80.0]


@pytest.mark.parametrize(
    ("code", "lifetime", "by_us"),
    [(0, 1.0, False), (3, 1.0, False), (1, 60.0, False), (143, 1.0, True), (None, 0.0, True)],
    ids=["exit-0", "nowork", "lived-its-fail-window", "stopped-by-us", "stopped-before-start"],
)
def test_a_normal_end_resets_the_backoff_and_is_not_news(
    code: int | None, lifetime: float, by_us: bool
) -> None:
    failing, _ = end(end(BUSY)[0], NOW + 1)
    assert failing.backoff["bad"].failures == 2
    state, news = end(failing, NOW + 2, code=code, lifetime=lifetime, by_us=by_us)
    assert news is None
    assert state.backoff.get("bad", Backoff()) == Backoff()
    assert only_backoff_of(failing, state, "bad")
    _, news = end(state, NOW + 3)
    assert news is not None and news.failures == 1 and news.until == NOW + 13.0


def test_a_normal_end_of_a_healthy_pool_is_not_news() -> None:
    state, news = end(PolicyState(), code=0)
    assert news is None
    assert state.backoff.get("bad", Backoff()) == Backoff()


def test_an_end_in_one_pool_leaves_the_others_alone() -> None:
    state, _ = end(BUSY, p=OTHER, code=0)
    assert state.backoff["other"] == Backoff()
    assert "bad" not in state.backoff
    assert only_backoff_of(BUSY, state, "other")


# --- a start the engine refused ----------------------------------------------------------------


def test_a_failed_start_is_one_failure_with_its_reason() -> None:
    state, news = after_start_failure(BUSY, POOL, NOW, "no such image: busybox:nope")
    assert news == Backoff(
        failures=1,
        until=NOW + 10.0,
        last_reason="cannot start a pilot: no such image: busybox:nope",
    )
    assert state.backoff["bad"] == news
    assert only_backoff_of(BUSY, state, "bad")


def test_the_rest_of_a_failed_burst_changes_nothing() -> None:
    """A decision asked for 4 pilots, all four fail for the same reason: one failure, not four
    doublings of the wait."""
    state, first = after_start_failure(PolicyState(), POOL, NOW, "refused")
    assert first is not None
    for _ in range(3):
        again, news = after_start_failure(state, POOL, NOW, "refused")
        assert again is state and news is None
    assert state.backoff["bad"].failures == 1 and state.backoff["bad"].until == NOW + 10.0


def test_a_failed_start_once_the_backoff_ran_out_doubles_the_wait() -> None:
    state, _ = after_start_failure(PolicyState(), POOL, NOW, "refused")
    just_before, news = after_start_failure(state, POOL, NOW + 9.999, "refused")
    assert just_before is state and news is None
    state, news = after_start_failure(state, POOL, NOW + 10.0, "refused")  # `until` is not active
    assert news is not None and news.failures == 2 and news.until == NOW + 30.0


def test_a_failed_start_while_a_pilot_failure_holds_the_pool_is_part_of_that_burst() -> None:
    state, _ = end(PolicyState())
    again, news = after_start_failure(state, POOL, NOW + 1.0, "refused")
    assert again is state and news is None


def test_a_failed_start_counts_right_after_a_normal_end() -> None:
    state, _ = end(end(PolicyState())[0], NOW, code=0)
    state, news = after_start_failure(state, POOL, NOW, "refused")
    assert news is not None and news.failures == 1


def test_a_failed_burst_is_what_the_next_decision_reports() -> None:
    cfg = make_config(pool("bad", max_pilots="2", backoff_min=10.0))
    state = PolicyState()
    for _ in range(2):
        state, _ = after_start_failure(state, cfg.pools[0], T0_MONOTONIC, "refused")
    decision, _, verdicts = decide_once(cfg, snapshot(ncpus=8), (), state)
    assert not decision.start
    assert verdicts["bad"].note == "backing off 10s: cannot start a pilot: refused"


# --- starts decided but not made ---------------------------------------------------------------


def test_skipped_starts_give_the_per_tick_allowance_back() -> None:
    state = after_start_skipped(BUSY, "bad", 2)
    assert state.window_count == {"bad": 1, "other": 1}
    assert state.spawn_budget("bad", NOW, 10.0, per_tick=3) == 2
    assert replace(state, window_count=BUSY.window_count) == BUSY
    assert after_start_skipped(BUSY, "bad", 10).window_count["bad"] == 0  # never below zero


@pytest.mark.parametrize(("name", "n"), [("unknown", 2), ("bad", 0), ("bad", -1)])
def test_skipping_nothing_or_an_uncounted_pool_is_identity(name: str, n: int) -> None:
    assert after_start_skipped(BUSY, name, n) is BUSY


# --- the admin's Start -------------------------------------------------------------------------


def test_admin_start_forgets_grace_spawn_and_every_backoff_only() -> None:
    failing, _ = end(BUSY)
    state = after_admin_start(failing)
    assert state.gave_way_at is None and not state.backoff
    assert replace(state, gave_way_at=BUSY.gave_way_at, backoff=failing.backoff) == failing


def test_admin_start_lets_a_failing_pool_start_at_once_and_from_backoff_min() -> None:
    cfg = make_config(pool("bad", max_pilots="1", backoff_min=10.0), grace_spawn=600.0)
    p = cfg.pools[0]
    state = PolicyState(gave_way_at=T0_MONOTONIC - 1.0)
    for i in range(4):
        state, _ = after_pilot_end(
            state, p, T0_MONOTONIC + i, exit_code=1, lifetime=1.0, stopped_by_us=False
        )
    now = T0_MONOTONIC + 5.0
    decision, _, _ = decide_once(cfg, snapshot(ncpus=8, now=now), (), state)
    assert not decision.start
    state = after_admin_start(state)
    decision, _, _ = decide_once(cfg, snapshot(ncpus=8, now=now), (), state)
    assert [(s.pool, s.count) for s in decision.start] == [("bad", 1)]
    _, news = after_start_failure(state, p, now, "refused")
    assert news is not None and news.failures == 1 and news.until == now + 10.0


# --- sequences of events ------------------------------------------------------------------------


@dataclass(frozen=True)
class End:
    pool: str
    dt: float
    code: int | None
    lifetime: float
    by_us: bool


@dataclass(frozen=True)
class StartFailed:
    pool: str
    dt: float
    why: str


@dataclass(frozen=True)
class Counted:  # a decision counted n starts (what `decide` does), for skips to give back
    pool: str
    dt: float
    n: int


@dataclass(frozen=True)
class Skipped:
    pool: str
    n: int


@dataclass(frozen=True)
class AdminStart:
    dt: float


Event = End | StartFailed | Counted | Skipped | AdminStart
NAMES = ("a", "b")
WINDOW = 10.0


@st.composite
def pool_configs(draw: st.DrawFn, name: str) -> PoolConfig:
    low = draw(st.sampled_from([1.0, 5.0, 10.0]))
    return pool(
        name,
        fail_window=draw(st.sampled_from([1.0, 30.0, 60.0])),
        backoff_min=low,
        backoff_max=draw(st.sampled_from([low, 4 * low, 300.0])),
        nowork_exit_codes=draw(st.sampled_from([frozenset(), frozenset({3})])),
        per_tick=draw(st.integers(1, 5)),
    )


names = st.sampled_from(NAMES)
dts = st.sampled_from([0.0, 0.0, 0.5, 1.0, 5.0, 10.0, 40.0, 301.0])
events = st.one_of(
    st.builds(
        End,
        names,
        dts,
        st.sampled_from([None, 0, 1, 3, 137, 143]),
        st.sampled_from([0.0, 0.5, 1.0, 29.9, 30.0, 60.0, 3600.0]),
        st.booleans(),
    ),
    st.builds(StartFailed, names, dts, st.sampled_from(["refused", "no such image"])),
    st.builds(Counted, names, dts, st.integers(0, 5)),
    st.builds(Skipped, names, st.integers(-1, 6)),
    st.builds(AdminStart, dts),
)
SEQUENCES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Model:
    """The back-off as the supervisor promises it, restated without `policy.backoff`."""

    failures: int = 0
    until: float = 0.0
    reason: str = ""

    def fail(self, p: PoolConfig, now: float, reason: str) -> None:
        self.failures += 1
        self.until = now + min(p.backoff_max, p.backoff_min * 2.0 ** (self.failures - 1))
        self.reason = reason

    def as_backoff(self) -> Backoff:
        return Backoff(self.failures, self.until, self.reason)


def fails(p: PoolConfig, e: End) -> bool:
    normal = e.by_us or e.code == 0 or e.code in p.nowork_exit_codes or e.lifetime >= p.fail_window
    return not normal


@SEQUENCES
@given(
    st.tuples(pool_configs("a"), pool_configs("b")),
    st.lists(events, max_size=40),
    st.sampled_from([None, NOW - 50.0]),
)
def test_event_sequences_follow_the_model(
    configs: tuple[PoolConfig, PoolConfig], seq: list[Event], gave_way_at: float | None
) -> None:
    pools = {p.name: p for p in configs}
    state = replace(BUSY, backoff={}, gave_way_at=gave_way_at, window_start={}, window_count={})
    model = {name: Model() for name in NAMES}
    now = NOW
    for e in seq:
        now += getattr(e, "dt", 0.0)
        before = state
        frozen_copy = copy.deepcopy(state)
        news: Backoff | None = None
        if isinstance(e, End):
            p = pools[e.pool]
            failures = before.backoff.get(p.name, Backoff()).failures
            state, news = after_pilot_end(
                state, p, now, exit_code=e.code, lifetime=e.lifetime, stopped_by_us=e.by_us
            )
            if fails(p, e):
                model[p.name].fail(
                    p, now, f"pilot exited with code {e.code} after {e.lifetime:.1f}s"
                )
                assert news is not None and news.failures == failures + 1  # monotone in a burst
            else:
                model[p.name] = Model()  # any normal end resets
                assert news is None
            assert only_backoff_of(before, state, p.name)
        elif isinstance(e, StartFailed):
            p = pools[e.pool]
            state, news = after_start_failure(state, p, now, e.why)
            if now < model[p.name].until:
                assert state is before and news is None  # one failure per burst
            else:
                model[p.name].fail(p, now, f"cannot start a pilot: {e.why}")
                assert news is not None
            assert only_backoff_of(before, state, p.name)
        elif isinstance(e, Counted):
            state = state.count_starts(e.pool, now, WINDOW, e.n)
        elif isinstance(e, Skipped):
            state = after_start_skipped(state, e.pool, e.n)
            counted = before.window_count.get(e.pool)
            if e.n <= 0 or counted is None:
                assert state is before
            else:
                assert state.window_count[e.pool] == max(0, counted - e.n)
                per_tick = pools[e.pool].per_tick
                assert state.spawn_budget(e.pool, now, WINDOW, per_tick) >= before.spawn_budget(
                    e.pool, now, WINDOW, per_tick
                )
            assert replace(state, window_count=before.window_count) == before
        else:
            state = after_admin_start(state)
            model = {name: Model() for name in NAMES}
            assert state.gave_way_at is None and not state.backoff
            assert replace(state, gave_way_at=before.gave_way_at, backoff=before.backoff) == before

        assert before == frozen_copy, "an input state was changed"
        if news is not None:
            p = pools[news_pool(e)]
            assert news == state.backoff[p.name]
            assert p.backoff_min <= news.until - now <= p.backoff_max
            assert news.active(now)
        for name in NAMES:
            assert state.backoff.get(name, Backoff()) == model[name].as_backoff()
            assert all(n >= 0 for n in state.window_count.values())


def news_pool(e: Event) -> str:
    assert isinstance(e, End | StartFailed)
    return e.pool


@SEQUENCES
@given(pool_configs("a"), st.integers(1, 30), st.lists(st.sampled_from([0.0, 0.1, 1.0])))
def test_a_burst_is_one_failure_however_many_starts_fail(
    p: PoolConfig, n: int, gaps: list[float]
) -> None:
    """Any number of failed starts within the wait they caused add nothing to it."""
    state, first = after_start_failure(PolicyState(), p, NOW, "refused")
    assert first is not None
    now = NOW
    for gap in [*gaps, *([0.0] * n)]:
        now += gap
        if now >= first.until:
            break
        again, news = after_start_failure(state, p, now, "refused")
        assert again is state and news is None
