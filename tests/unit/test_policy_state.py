"""The per_tick window bookkeeping the supervisor adjusts when it cannot make a decided start."""

from planctond.policy.state import PolicyState


def test_uncounted_starts_are_given_back_within_the_window() -> None:
    st = PolicyState().count_starts("p", now=100.0, window=10.0, n=4)
    assert st.spawn_budget("p", now=101.0, window=10.0, per_tick=4) == 0
    st = st.uncount_starts("p", 3)
    assert st.spawn_budget("p", now=101.0, window=10.0, per_tick=4) == 3
    assert st.uncount_starts("p", 10).spawn_budget("p", 101.0, 10.0, 4) == 4  # never below 0
    assert st.uncount_starts("other", 2) is st
    assert st.uncount_starts("p", 0) is st
