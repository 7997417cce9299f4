"""Back-off for pools whose pilots keep failing fast.

A bad image, bad credentials or a broken batch pool make every pilot exit within seconds; starting
a replacement at once would turn the host into a container-churning loop. Only *failures* count:
a pilot we stopped ourselves, a clean exit, a "no work" exit code or a pilot that lived longer than
the pool's fail window are all normal ends of a pilot's life and reset the back-off.
"""

from __future__ import annotations

from dataclasses import dataclass

from planctond.config.model import PoolConfig


@dataclass(frozen=True)
class Backoff:
    failures: int = 0
    until: float = 0.0  # monotonic time before which the pool starts nothing
    last_reason: str = ""

    def active(self, now: float) -> bool:
        return now < self.until


def is_failure(
    pool: PoolConfig, *, exit_code: int | None, lifetime: float, stopped_by_us: bool
) -> bool:
    if stopped_by_us:
        return False
    if exit_code == 0 or (exit_code is not None and exit_code in pool.nowork_exit_codes):
        return False
    return lifetime < pool.fail_window


def after_exit(
    current: Backoff,
    pool: PoolConfig,
    now: float,
    *,
    exit_code: int | None,
    lifetime: float,
    stopped_by_us: bool,
    why: str = "",
) -> Backoff:
    """The pool's back-off after one of its pilots ended (or failed to start: exit_code None)."""
    if not is_failure(pool, exit_code=exit_code, lifetime=lifetime, stopped_by_us=stopped_by_us):
        return Backoff()
    failures = current.failures + 1
    delay = min(pool.backoff_max, pool.backoff_min * (2.0 ** min(failures - 1, 30)))
    reason = why or f"pilot exited with code {exit_code} after {lifetime:.1f}s"
    return Backoff(failures=failures, until=now + delay, last_reason=reason)
