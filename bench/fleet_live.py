"""The fleet at its real pace: N simulated hosts, each writing its own requests at its own tick
through the daemon's own InfluxDB writer (`InfluxV1Writer`: one HTTP request per batch, a fresh
connection each), as N daemons would. Not one big batch: a fleet is many small writers.

A host's event requests go out at its next tick rather than at the instant of the event (the
simulation runs tick by tick), which keeps the request count and sizes and moves them by a few
seconds.
"""

from __future__ import annotations

import heapq
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from bench.fleet_ingest import ServerUse, Watch
from bench.fleet_sim import TICK, SimHost, profile
from planctond.config.model import InfluxDBTarget
from planctond.monitoring.influxdb import InfluxV1Writer
from planctond.monitoring.outbox import SinkError

WARMUP = 1800.0  # simulated seconds before the phase: counters of a daemon up for a while


@dataclass
class LiveResult:
    hosts: int
    seconds: float = 0.0
    requests: int = 0
    lines: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds per request
    lags: list[float] = field(default_factory=list)  # a tick's start behind its due time
    client_cpu_s: float = 0.0
    use: ServerUse = field(default_factory=ServerUse)

    @property
    def server_cpu_pct(self) -> float:
        return 100.0 * self.use.cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def run(
    url: str, database: str, *, hosts: int, seconds: float, pid: int, threads: int = 32
) -> LiveResult:
    """`hosts` hosts writing to `url`/`database` (which exists) for `seconds`; the server is
    process `pid`."""
    result = LiveResult(hosts)
    lock = threading.Lock()
    began = time.time()
    sims = [SimHost(profile(i), began, warmup=WARMUP) for i in range(hosts)]
    for sim in sims:
        sim.advance(began)  # the warm-up: nothing before `began` is sent
    writer = InfluxV1Writer(InfluxDBTarget(url=url, database=database))

    def tick(sim: SimHost, due: float) -> None:
        lag = time.time() - due
        requests = sorted(sim.advance(due), key=lambda r: r.time)
        for request in requests:
            body = b"".join(request.lines)
            t0 = time.perf_counter()
            try:
                writer(body)
                error = ""
            except SinkError as exc:
                error = str(exc)
            elapsed = time.perf_counter() - t0
            with lock:
                result.latencies.append(elapsed)
                result.requests += 1
                result.lines += len(request.lines)
                result.bytes += len(body)
                if error:
                    result.errors.append(error)
        with lock:
            result.lags.append(lag)

    due = [(sim.now + TICK, i) for i, sim in enumerate(sims)]
    heapq.heapify(due)
    cpu0 = time.process_time()
    watch = Watch(pid)
    start = time.time()
    end = start + seconds
    with ThreadPoolExecutor(threads) as pool:
        while due and due[0][0] < end:
            when, index = heapq.heappop(due)
            wait = when - time.time()
            if wait > 0:
                time.sleep(wait)
            pool.submit(tick, sims[index], when)
            heapq.heappush(due, (when + TICK, index))
    result.seconds = time.time() - start
    result.use = watch.stop()
    result.client_cpu_s = time.process_time() - cpu0
    return result
