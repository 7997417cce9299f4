"""The Outbox's rules with a fake backend: bounded, newest kept, drops counted, one log line per
outage and one when it is over, the backlog delivered on recovery, refused batches dropped, and
put() and close() never held up by a backend that hangs.

Most tests drive `Outbox.step()` by hand (no thread, no clock, no sleeping); the few that need
the real sender thread poll with short intervals and never assert tight timings."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.monitoring.outbox import Outbox, OutboxHealth, SinkError
from planctond.monitoring.point import Point
from tests.support.waiting import wait_for

LOGGER = "planctond.monitoring.outbox"
EPOCH = 1_700_000_000.0


def points(start: int, count: int) -> list[Point]:
    """Points numbered by their field n, so what arrives shows which points they were."""
    return [Point("m", {"n": i}, {"host": "h"}, i) for i in range(start, start + count)]


def numbers(body: bytes) -> list[int]:
    return [int(line.split(b" n=")[1].split(b"i ")[0]) for line in body.splitlines()]


@dataclass
class FakeBackend:
    """A send function whose answer the test sets; records what it took."""

    mode: str = "ok"  # ok | down | refuse | crash
    taken: list[int] = field(default_factory=list)
    calls: int = 0
    during: Callable[[], None] | None = None  # runs inside the send (a put() from elsewhere)

    def __call__(self, body: bytes) -> None:
        self.calls += 1
        if self.during is not None:
            self.during()
        if self.mode == "down":
            raise SinkError("connection refused")
        if self.mode == "refuse":
            raise SinkError("HTTP 400: unable to parse", retry=False)
        if self.mode == "crash":
            raise RuntimeError("a bug in the writer")
        self.taken.extend(numbers(body))


class FakeClock:
    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


def outbox(backend: FakeBackend, **options: object) -> Outbox:
    settings: dict[str, object] = {"limit": 100, "batch": 10, "clock": FakeClock()}
    settings.update(options)
    return Outbox("test", backend, **settings)  # type: ignore[arg-type]


def drain(box: Outbox, max_steps: int = 1000) -> list[float]:
    """Step until nothing is queued or an attempt fails; the delays the steps asked for."""
    delays: list[float] = []
    for _ in range(max_steps):
        delay = box.step()
        if delay is None:
            return delays
        delays.append(delay)
        if delay > 0:
            return delays
    raise AssertionError("the outbox never ran dry")


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and text in r.getMessage()]


@pytest.fixture(autouse=True)
def _log_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)


# --- the buffer ---------------------------------------------------------------------------------


def test_delivers_in_batches_in_order() -> None:
    backend = FakeBackend()
    box = outbox(backend)
    box.put(points(0, 25))
    assert box.health().backlog == 25
    assert drain(box) == [0.0, 0.0, 0.0]
    assert backend.taken == list(range(25)) and backend.calls == 3
    health = box.health()
    assert health == OutboxHealth("test", True, EPOCH, 0, 0, "")


def test_keeps_the_newest_up_to_the_limit_and_counts_the_rest() -> None:
    backend = FakeBackend()
    box = outbox(backend, limit=10)
    for start in range(0, 25, 5):
        box.put(points(start, 5))
    assert (box.health().backlog, box.health().dropped) == (10, 15)
    drain(box)
    assert backend.taken == list(range(15, 25))


def test_one_put_larger_than_the_limit() -> None:
    backend = FakeBackend()
    box = outbox(backend, limit=10)
    box.put(points(0, 35))
    assert (box.health().backlog, box.health().dropped) == (10, 25)
    drain(box)
    assert backend.taken == list(range(25, 35))


def test_nothing_to_do() -> None:
    box = outbox(FakeBackend())
    box.put([])
    assert box.step() is None
    assert box.health() == OutboxHealth("test", True, None, 0, 0, "")


@pytest.mark.parametrize(
    ("limit", "batch", "retry_min", "retry_max"),
    [(0, 1, 1.0, 2.0), (1, 0, 1.0, 2.0), (1, 1, 0.0, 1.0), (1, 1, 2.0, 1.0)],
)
def test_nonsense_settings_are_refused(
    limit: int, batch: int, retry_min: float, retry_max: float
) -> None:
    with pytest.raises(ValueError):
        Outbox(
            "x", FakeBackend(), limit=limit, batch=batch, retry_min=retry_min, retry_max=retry_max
        )


# --- outages ------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_max_and_starts_over_after_success() -> None:
    backend = FakeBackend(mode="down")
    box = outbox(backend, retry_min=1.0, retry_max=60.0)
    box.put(points(0, 1))
    delays = [box.step() for _ in range(9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    backend.mode = "ok"
    assert box.step() == 0.0
    backend.mode = "down"
    box.put(points(1, 1))
    assert box.step() == 1.0


def test_an_outage_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(mode="down")
    clock = FakeClock()
    box = outbox(backend, limit=30, clock=clock)
    box.put(points(0, 5))
    box.step()  # first success never happened: last_success stays None
    for i in range(1, 10):  # the daemon keeps putting; the backend keeps failing
        box.put(points(5 * i, 5))
        box.step()
    health = box.health()
    assert not health.ok and health.last_success is None
    assert health.backlog == 30 and health.dropped == 20
    assert health.last_error == "connection refused"
    assert said(caplog, "unreachable") == ["backend test unreachable: connection refused"]

    backend.mode = "ok"
    clock.now += 100
    drain(box)
    assert backend.taken == list(range(20, 50))  # the backlog, oldest first, none twice
    assert said(caplog, "is back") == [
        "backend test is back; 30 points delivered, 20 dropped meanwhile"
    ]
    health = box.health()
    assert health.ok and health.last_success == EPOCH + 100 and health.backlog == 0
    assert health.last_error == "connection refused"  # kept: what went wrong last

    box.put(points(50, 5))
    drain(box)
    assert len(said(caplog, "is back")) == 1 and len(said(caplog, "unreachable")) == 1

    backend.mode = "down"  # a new outage is told again
    box.put(points(55, 5))
    box.step()
    assert len(said(caplog, "unreachable")) == 2


def test_flapping_while_the_backlog_drains_is_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(mode="down")
    box = outbox(backend)
    box.put(points(0, 30))
    box.step()
    backend.mode = "ok"
    assert box.step() == 0.0  # one batch through, two still queued
    assert box.health().ok
    backend.mode = "down"
    assert box.step() == 1.0  # failures counted afresh after the success
    backend.mode = "ok"
    drain(box)
    assert len(said(caplog, "unreachable")) == 1
    assert said(caplog, "is back") == [
        "backend test is back; 30 points delivered, 0 dropped meanwhile"
    ]


def test_a_crashing_send_is_a_retryable_failure(caplog: pytest.LogCaptureFixture) -> None:
    box = outbox(FakeBackend(mode="crash"))
    box.put(points(0, 3))
    assert box.step() == 1.0
    assert box.health().last_error == "RuntimeError: a bug in the writer"
    assert box.health().backlog == 3
    assert len(said(caplog, "unreachable")) == 1


# --- what the backend will never take -----------------------------------------------------------


def test_a_refused_batch_is_dropped_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(mode="refuse")
    box = outbox(backend)
    box.put(points(0, 25))
    assert box.step() == 0.0  # no waiting: the rest must go on
    assert box.step() == 0.0
    assert (box.health().backlog, box.health().dropped) == (5, 20)
    assert box.health().last_error == "HTTP 400: unable to parse"
    backend.mode = "ok"
    drain(box)
    assert backend.taken == list(range(20, 25))
    [line] = said(caplog, "refused")
    assert "batch of 10 points" in line and "HTTP 400: unable to parse" in line
    assert not said(caplog, "unreachable")


def test_a_point_line_protocol_cannot_carry_is_dropped_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend()
    box = outbox(backend)
    bad = Point("#comment", {"n": 99})
    box.put([*points(0, 2), bad, *points(2, 2), bad])
    drain(box)
    assert backend.taken == [0, 1, 2, 3]
    assert box.health().dropped == 2
    assert len(said(caplog, "line protocol cannot carry")) == 1


def test_a_batch_of_only_bad_points_says_nothing_about_the_backend() -> None:
    backend = FakeBackend()
    box = outbox(backend)
    box.put([Point("#x", {"n": 1})])
    assert box.step() == 0.0
    assert backend.calls == 0
    health = box.health()
    assert health.ok and health.last_success is None and health.dropped == 1


# --- the batch in flight ------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "dropped"), [("ok", 5), ("down", 10)])
def test_points_evicted_while_in_flight(mode: str, dropped: int) -> None:
    """limit 10, batch 5: a put during the send evicts the whole batch in flight and 5 more. If
    the send then succeeds, the batch did arrive: only the 5 others are dropped."""
    backend = FakeBackend(mode=mode)
    box = outbox(backend, limit=10, batch=5)
    box.put(points(0, 10))
    backend.during = lambda: box.put(points(10, 10))
    box.step()
    backend.during = None
    health = box.health()
    assert (health.backlog, health.dropped) == (10, dropped)
    backend.mode = "ok"
    drain(box)
    assert backend.taken[-10:] == list(range(10, 20))
    assert len(backend.taken) + box.health().dropped == 20


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 30)),
        st.tuples(st.sampled_from(["ok", "down", "refuse"]), st.integers(0, 30)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(OPS, st.integers(1, 25), st.integers(1, 12))
def test_every_point_is_delivered_dropped_or_queued(
    ops: list[tuple[str, int]], limit: int, batch: int
) -> None:
    """Whatever happens: nothing is lost uncounted, nothing arrives twice or out of order, and
    the buffer never holds more than its limit."""
    backend = FakeBackend()
    box = outbox(backend, limit=limit, batch=batch)
    total = 0

    def put(count: int) -> None:
        nonlocal total
        box.put(points(total, count))
        total += count

    for op, count in ops:
        if op == "put":
            put(count)
        else:  # one attempt, maybe with points put while it runs
            backend.mode = op
            backend.during = (lambda c=count: put(c)) if count % 3 == 0 else None
            box.step()
            backend.during = None
        health = box.health()
        assert health.backlog <= limit
        assert len(backend.taken) + health.dropped + health.backlog == total
    assert backend.taken == sorted(set(backend.taken))


# --- the sender thread --------------------------------------------------------------------------


class Gate:
    """A send that blocks until the test opens the gate (a server that does not answer)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.taken: list[int] = []

    def __call__(self, body: bytes) -> None:
        self.entered.set()
        self.open.wait(30)
        self.taken.extend(numbers(body))


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.open.set()  # never leave a thread behind blocked


def test_put_never_waits_for_a_hanging_send(gate: Gate) -> None:
    box = Outbox("hang", gate, limit=1000, batch=100)
    box.start()
    box.put(points(0, 1))
    assert gate.entered.wait(10)
    for i in range(2000):  # would hang here if put() waited for the send
        box.put(points(1 + i * 5, 5))
    health = box.health()
    # 10,001 points, 1,000 kept; point 0 was evicted in flight, so it counts once its send ends.
    assert health.backlog == 1000 and health.dropped == 9000
    gate.open.set()
    wait_for(lambda: box.health().backlog == 0, timeout=30, interval=0.01)
    assert gate.taken == [0, *range(9001, 10001)]
    box.close(5)


def test_close_gives_up_on_a_hanging_send(gate: Gate, caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox("hang", gate)
    box.start()
    box.put(points(0, 3))
    assert gate.entered.wait(10)
    started = time.monotonic()
    box.close(0.05)
    assert time.monotonic() - started < 5  # bounded by the timeout, with room for a busy host
    assert said(caplog, "3 points not delivered at shutdown")
    box.put(points(3, 2))  # after close: counted, not queued
    assert box.health().dropped == 2


def test_close_delivers_what_is_queued() -> None:
    backend = FakeBackend()
    box = Outbox("flush", backend, batch=7)
    box.start()
    box.put(points(0, 50))
    box.close(10)
    assert backend.taken == list(range(50)) and box.health().backlog == 0


class Waits:
    """The back-off wait, faked: records each delay and returns when the test says (or when
    the outbox is closing, as Event.wait would)."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.go = threading.Semaphore(0)

    def __call__(self, stop: threading.Event, delay: float) -> bool:
        self.delays.append(delay)
        while not stop.is_set():
            if self.go.acquire(timeout=0.01):
                break
        return stop.is_set()

    def reached(self, count: int) -> None:
        """Wait until the outbox has begun its `count`th back-off."""
        wait_for(lambda: len(self.delays) >= count, timeout=30, interval=0.01)


def test_the_thread_backs_off_and_delivers_the_backlog(caplog: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend(mode="down")
    waits = Waits()
    box = Outbox("bg", backend, batch=4, retry_min=2.0, retry_max=5.0, wait=waits)
    box.start()
    box.put(points(0, 10))
    for count in (1, 2, 3, 4):
        waits.reached(count)
        if count < 4:
            waits.go.release()
    assert waits.delays == [2.0, 4.0, 5.0, 5.0]
    assert backend.calls == 4  # one attempt per wait: puts do not cut a back-off short
    box.put(points(10, 2))
    assert backend.calls == 4
    assert not box.health().ok and box.health().backlog == 12
    backend.mode = "ok"
    waits.go.release()
    wait_for(lambda: box.health().backlog == 0, timeout=30, interval=0.01)
    assert backend.taken == list(range(12)) and box.health().ok
    wait_for(lambda: said(caplog, "is back"), timeout=30, interval=0.01)
    box.close(5)
    assert len(said(caplog, "unreachable")) == 1


def test_close_during_a_backoff_tries_once_more_and_returns() -> None:
    backend = FakeBackend(mode="down")
    waiting = threading.Event()

    def wait(stop: threading.Event, delay: float) -> bool:
        waiting.set()
        return stop.wait(delay)  # a real hour-long wait: close() must cut it short

    box = Outbox("bg", backend, retry_min=3600.0, retry_max=3600.0, wait=wait)
    box.start()
    box.put(points(0, 3))
    assert waiting.wait(30)
    started = time.monotonic()
    box.close(5)
    assert time.monotonic() - started < 5
    assert backend.calls == 2  # the last flush
    assert box.health().backlog == 3


def test_start_twice_is_a_bug() -> None:
    box = Outbox("twice", FakeBackend())
    box.start()
    with pytest.raises(RuntimeError):
        box.start()
    box.close(1)
