"""Points on their way to one monitoring backend, without ever holding up the daemon.

The daemon's loop only calls `put`, which queues and returns: no I/O, no waiting on the backend,
O(len(points)). One thread per backend encodes and sends batches. A backend that is slow, down
or refusing costs the daemon nothing but the bounded buffer: when it is full the oldest points
go first (the newest say most about the host now), each counted. An outage is logged once when
it starts and once when its backlog is through, never per point or per retry.

The queue keeps the batch being sent until the send ends, so `limit` bounds everything held
(the encoded body aside), and the back-off waits go through an injectable function, so the rules
can be tested with a fake backend and no real sleeping (`step` runs one attempt by hand).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from planctond.monitoring.lineproto import encode_point
from planctond.monitoring.point import Point
from planctond.text import safe_text

log = logging.getLogger(__name__)

DEFAULT_LIMIT: Final = 10_000  # points held per backend while it is away
DEFAULT_BATCH: Final = 1_000  # points per request: InfluxDB's advice is 5,000 at most
DEFAULT_RETRY_MIN: Final = 1.0  # seconds before the first retry; doubles up to the max
DEFAULT_RETRY_MAX: Final = 60.0
ERROR_LIMIT: Final = 500  # characters of an error kept for the log and health()


class SinkError(Exception):
    """A batch the backend did not take. `retry=False`: it never will (the batch is malformed
    for it), so the batch is dropped instead of blocking the queue. The message is logged and
    shown in health(), so it must never hold credentials."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Refused:
    """What a send returns when the backend judged the batch point by point (Elasticsearch's
    bulk API) and refused `points` of it for good: those are dropped and counted like a refused
    batch, the rest were delivered. `error` is logged and shown, so no credentials in it."""

    points: int
    error: str


@dataclass(frozen=True)
class OutboxHealth:
    name: str
    ok: bool  # the last attempt succeeded (or none failed yet)
    last_success: float | None  # epoch seconds of the last delivery
    backlog: int  # points waiting, the batch in flight included
    dropped: int  # points that will never be delivered (full buffer, refused, unencodable)
    last_error: str  # the latest failure, kept after recovery; "" when there was none


Send = Callable[[bytes], Refused | None]
Wait = Callable[[threading.Event, float], bool]


def _describe(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
    return safe_text(text, ERROR_LIMIT)


class Outbox:
    def __init__(
        self,
        name: str,
        send: Send,
        *,
        limit: int = DEFAULT_LIMIT,
        batch: int = DEFAULT_BATCH,
        clock: Callable[[], float] = time.time,
        retry_min: float = DEFAULT_RETRY_MIN,
        retry_max: float = DEFAULT_RETRY_MAX,
        wait: Wait = threading.Event.wait,
        encode: Callable[[Point], bytes] = encode_point,
    ) -> None:
        """`clock` gives the epoch time of health()'s last_success; `wait(stop, seconds)` sleeps
        between retries and returns early (True) once `stop` is set, as Event.wait does."""
        if limit < 1 or batch < 1:
            raise ValueError(f"limit and batch must be at least 1, got {limit} and {batch}")
        if not 0 < retry_min <= retry_max:
            raise ValueError(f"need 0 < retry_min <= retry_max, got {retry_min}, {retry_max}")
        self.name = name
        self._send = send
        self._limit = limit
        self._batch = batch
        self._clock = clock
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._wait = wait
        self._encode = encode
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._close_deadline = 0.0  # time.monotonic(); bounds the last flush
        # Points carry sequence numbers: _queue[0] is number _head. The batch in flight is
        # [_flight_start, _flight_end); put() may evict part of it, counted apart until the send
        # says whether those points arrived after all.
        self._queue: deque[Point] = deque()
        self._head = 0
        self._flight_start = 0
        self._flight_end = 0
        self._evicted_in_flight = 0
        self._dropped = 0
        self._failures = 0  # consecutive retryable failures
        self._ok = True
        self._last_success: float | None = None
        self._last_error = ""
        # One outage = from the first failure until the backlog queued then is through.
        self._in_outage = False
        self._outage_dropped = 0  # _dropped when the outage began
        self._outage_delivered = 0
        self._recovery_mark: int | None = None  # backlog's end, set by the first success
        self._told_refused = False
        self._told_unencodable = False

    # --- the daemon's side ---------------------------------------------------------------------

    def put(self, points: Sequence[Point]) -> None:
        """Queue `points` for sending; never blocks on the backend and never raises for it."""
        if not points:
            return
        with self._lock:
            if self._closing:
                self._dropped += len(points)
                return
            self._queue.extend(points[-self._limit :])
            self._count_evicted(len(points) - min(len(points), self._limit))
            excess = len(self._queue) - self._limit
            if excess > 0:
                for _ in range(excess):
                    self._queue.popleft()
                self._count_evicted(excess, self._head)
                self._head += excess
            self._wakeup.notify()

    def health(self) -> OutboxHealth:
        with self._lock:
            return OutboxHealth(
                name=self.name,
                ok=self._ok,
                last_success=self._last_success,
                backlog=len(self._queue),
                dropped=self._dropped,
                last_error=self._last_error,
            )

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"outbox {self.name} was already started")
        # A daemon thread: a send stuck in a dead server's TCP timeout never holds up exit.
        self._thread = threading.Thread(target=self._run, name=f"outbox {self.name}", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop taking points and try to deliver what is queued for at most `timeout` seconds;
        whatever is still queued then is given up (and logged), so shutdown never hangs here."""
        with self._lock:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            self._wakeup.notify()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left = len(self._queue)
        if left:
            log.warning("backend %s: %d points not delivered at shutdown", self.name, left)

    # --- the sender's side ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wakeup.wait()
                if self._closing and (not self._queue or time.monotonic() >= self._close_deadline):
                    return
            delay = self.step()
            if delay is None:
                continue
            if self._closing and delay > 0:
                return  # shutting down and the backend is away: no retrying now
            if delay > 0:
                self._wait(self._stop, delay)

    def step(self) -> float | None:
        """One attempt at the head of the queue: the seconds to wait before the next attempt
        (0: go on at once), or None when nothing was queued. The sender thread's work; tests
        call it by hand instead (never both)."""
        with self._lock:
            if not self._queue:
                return None
            points = list(itertools.islice(self._queue, self._batch))
            self._flight_start = self._head
            self._flight_end = self._head + len(points)
            self._evicted_in_flight = 0
        lines: list[bytes] = []
        unencodable: list[str] = []
        for point in points:
            try:
                lines.append(self._encode(point))
            except ValueError as exc:
                unencodable.append(_describe(exc))
        if unencodable:
            self._tell_unencodable(unencodable)
        refused: Refused | None = None
        try:
            if lines:
                refused = self._send(b"".join(lines))
        except Exception as exc:  # the sender must outlive any backend (and any bug in send)
            if isinstance(exc, SinkError) and not exc.retry:
                self._refused(_describe(exc), len(lines))
                return 0.0
            return self._failed(_describe(exc))
        if refused is not None and refused.points > 0:
            count = min(refused.points, len(lines))
            self._refused_points(safe_text(refused.error, ERROR_LIMIT), count)
            self._delivered(len(lines) - count, len(unencodable) + count)
        else:
            self._delivered(len(lines), len(unencodable))
        return 0.0

    def _count_evicted(self, count: int, first: int | None = None) -> None:
        """Count `count` points leaving the buffer unsent, the first being number `first` (None:
        new points that never entered it). Those of the batch in flight wait for its outcome."""
        in_flight = 0
        if first is not None and first < self._flight_end:
            in_flight = min(first + count, self._flight_end) - first
        self._evicted_in_flight += in_flight
        self._dropped += count - in_flight

    def _finish_flight(self) -> None:
        """With the lock held: take what is left of the batch in flight out of the queue."""
        done = max(0, self._flight_end - self._head)
        for _ in range(done):
            self._queue.popleft()
        self._head += done
        self._flight_start = self._flight_end = self._head
        self._evicted_in_flight = 0

    def _delivered(self, sent: int, dropped: int) -> None:
        """`sent` points arrived; `dropped` of the batch never will (unencodable, refused)."""
        back: tuple[int, int] | None = None
        with self._lock:
            self._finish_flight()  # evicted while in flight but delivered: not dropped
            self._dropped += dropped
            if not sent:
                return  # nothing was sent, so nothing is known about the backend
            self._failures = 0
            self._ok = True
            self._last_success = self._clock()
            if self._in_outage:
                self._outage_delivered += sent
                if self._recovery_mark is None:
                    self._recovery_mark = self._head + len(self._queue)
                if self._head >= self._recovery_mark:
                    self._in_outage = False
                    self._recovery_mark = None
                    back = (self._outage_delivered, self._dropped - self._outage_dropped)
        if back is not None:
            log.info(
                "backend %s is back; %d points delivered, %d dropped meanwhile", self.name, *back
            )

    def _refused(self, error: str, sent: int) -> None:
        """The backend will never take this batch: drop it rather than block all that follow."""
        with self._lock:
            taken = self._flight_end - self._flight_start
            self._finish_flight()
            self._dropped += taken
            self._last_error = error
            first = not self._told_refused
            self._told_refused = True
        if first:
            log.warning(
                "backend %s refused a batch of %d points, dropped it (later refusals are only "
                "counted): %s",
                self.name,
                sent,
                error,
            )

    def _refused_points(self, error: str, count: int) -> None:
        """Some points of a batch the backend took will never be: said once, then counted."""
        with self._lock:
            self._last_error = error
            first = not self._told_refused
            self._told_refused = True
        if first:
            log.warning(
                "backend %s refused %d points of a batch, dropped them (later refusals are only "
                "counted): %s",
                self.name,
                count,
                error,
            )

    def _failed(self, error: str) -> float:
        """A retryable failure: the batch stays queued; returns the back-off delay."""
        with self._lock:
            self._dropped += self._evicted_in_flight
            self._flight_start = self._flight_end = self._head
            self._evicted_in_flight = 0
            self._last_error = error
            self._failures += 1
            self._ok = False
            self._recovery_mark = None
            starts = not self._in_outage
            if starts:
                # One outage runs until the backlog is through, so a backend that flaps while
                # the backlog drains is still one outage: one line when down, one when back.
                self._in_outage = True
                self._outage_dropped = self._dropped
                self._outage_delivered = 0
            delay = min(self._retry_max, self._retry_min * 2.0 ** min(self._failures - 1, 62))
        if starts:
            log.warning("backend %s unreachable: %s", self.name, error)
        return delay

    def _tell_unencodable(self, errors: list[str]) -> None:
        with self._lock:
            first = not self._told_unencodable
            self._told_unencodable = True
        if first:
            log.warning(
                "backend %s: dropping %d points line protocol cannot carry (later ones are only "
                "counted): %s",
                self.name,
                len(errors),
                errors[0],
            )


__all__ = ["Outbox", "OutboxHealth", "Refused", "SinkError"]
