"""Backfill: each simulated host's day made once (in worker processes, into files), then written
into a server as fast as it takes it, in batches of 5,000 lines over HTTP `/write`.

A larger fleet reuses the simulated days: host `node-0137` of a 1,000-host fleet built on 100
simulated hosts is `node-0037`'s day with its `host` (and Plancton `hostname`) tag renamed, the
bytes otherwise as the daemon's encoder wrote them. Each renamed host is a separate set of
series to the server; only the values repeat.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.fleet_sim import HostProfile, SimHost, stream
from bench.procstat import cpu_seconds, status_kib

BATCH_LINES: Final = 5000
RETRIES: Final = 30
HTTP_TIMEOUT: Final = 300.0


@dataclass(frozen=True)
class Batch:
    offset: int
    length: int
    lines: int
    first: float  # time of its first line


@dataclass
class HostData:
    """One simulated host's stream, in `path`, cut into batches that never straddle `cut`."""

    name: str
    path: str
    batches: list[Batch]
    lines: int = 0
    bytes: int = 0
    requests: int = 0
    series: int = 0
    gzip_bytes: int = 0  # for the hosts asked for it
    profile: HostProfile | None = None


def _generate(job: tuple[HostProfile, float, float, float, str, bool]) -> HostData:
    profile, start, end, cut, directory, with_gzip = job
    path = os.path.join(directory, f"{profile.name}.lp")
    data = HostData(profile.name, path, [], profile=profile)
    keys: set[bytes] = set()
    pending: list[bytes] = []
    first = start
    offset = 0
    with open(path, "wb") as out:

        def flush() -> None:
            nonlocal offset
            if pending:
                body = b"".join(pending)
                out.write(body)
                data.batches.append(Batch(offset, len(body), len(pending), first))
                offset += len(body)
                pending.clear()

        for request in stream(SimHost(profile, start), end):
            if request.time >= cut > first or len(pending) >= BATCH_LINES:
                flush()
            if not pending:
                first = request.time
            data.requests += 1
            if with_gzip:  # what the request would weigh gzip'ed (the writer sends it plain)
                data.gzip_bytes += len(gzip.compress(b"".join(request.lines)))
            for line in request.lines:
                keys.add(line.split(b" ", 1)[0])
                pending.append(line)
                data.lines += 1
                data.bytes += len(line)
                if len(pending) >= BATCH_LINES:
                    flush()
                    first = request.time
        flush()
    data.series = len(keys)
    return data


def generate(
    profiles: Sequence[HostProfile],
    *,
    start: float,
    end: float,
    cut: float,
    directory: Path,
    procs: int,
    gzip_hosts: int = 0,
) -> list[HostData]:
    """Each host's [start, end) into `directory`, `procs` hosts at a time; the first
    `gzip_hosts` also count what their requests would weigh gzip'ed."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(p, start, end, cut, str(directory), i < gzip_hosts) for i, p in enumerate(profiles)]
    if procs <= 1:
        return [_generate(j) for j in jobs]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        return pool.map(_generate, jobs, chunksize=1)


@dataclass(frozen=True)
class Job:
    host: HostData
    batch: Batch
    rename: tuple[bytes, bytes] | None  # (=old-name, =new-name) for a copy


def jobs(
    hosts: Sequence[HostData], copies: Sequence[tuple[int, str]], *, since: float = 0.0
) -> list[Job]:
    """Batches of `hosts` renamed to each copy (copy index, new-name format taking the host's
    number), those from `since` on, in time order so the servers see the day go by."""
    out: list[Job] = []
    for host in hosts:
        number = int(host.name.rsplit("-", 1)[1])
        for index, fmt in copies:
            new = fmt.format(number + index * len(hosts))
            rename = None if new == host.name else (f"={host.name}".encode(), f"={new}".encode())
            out.extend(Job(host, b, rename) for b in host.batches if b.first >= since)
    out.sort(key=lambda j: j.batch.first)
    return out


@dataclass
class ServerUse:
    """What a server process used over a phase, from /proc."""

    cpu_s: float = 0.0
    peak_rss_kib: int = 0  # the highest VmRSS seen (sampled every 0.5 s)
    hwm_kib: int = 0  # VmHWM at the end: the kernel's own peak since the server started
    rss_kib: int = 0  # VmRSS at the end


class Watch:
    """Samples a server's RSS while a phase runs; `stop()` returns its CPU and memory."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu0 = cpu_seconds(pid)
        self._peak = status_kib(pid, "VmRSS")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.5):
            self._peak = max(self._peak, status_kib(self.pid, "VmRSS"))

    def stop(self) -> ServerUse:
        self._done.set()
        self._thread.join()
        rss = status_kib(self.pid, "VmRSS")
        return ServerUse(
            cpu_seconds(self.pid) - self._cpu0,
            max(self._peak, rss),
            status_kib(self.pid, "VmHWM"),
            rss,
        )


@dataclass
class WriteResult:
    lines: int = 0
    bytes: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    use: ServerUse = field(default_factory=ServerUse)

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


def write(port: int, path: str, work: Sequence[Job], *, threads: int, pid: int) -> WriteResult:
    """POST every job's batch to 127.0.0.1:`port``path` (`threads` keep-alive connections);
    a 5xx or a broken connection is retried after a pause, counted."""
    result = WriteResult()
    lock = threading.Lock()
    feed: Iterator[Job] = iter(work)
    files: dict[str, int] = {}
    for job in work:
        if job.host.path not in files:
            files[job.host.path] = os.open(job.host.path, os.O_RDONLY)

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
        while True:
            with lock:
                job = next(feed, None)
            if job is None:
                conn.close()
                return
            body = os.pread(files[job.host.path], job.batch.length, job.batch.offset)
            if job.rename is not None:
                body = body.replace(*job.rename)
            for attempt in range(RETRIES + 1):
                try:
                    conn.request("POST", path, body=body)
                    reply = conn.getresponse()
                    text = reply.read()
                    if reply.status < 300:
                        break
                    if reply.status < 500 or attempt == RETRIES:
                        with lock:
                            result.errors.append(f"HTTP {reply.status}: {text[:300]!r}")
                        break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
                    if attempt == RETRIES:
                        with lock:
                            result.errors.append(f"{type(exc).__name__}: {exc}")
                        break
                with lock:
                    result.retries += 1
                time.sleep(min(5.0, 0.2 * (attempt + 1)))
            with lock:
                result.lines += job.batch.lines
                result.bytes += len(body)
                result.requests += 1

    watch = Watch(pid)
    began = time.monotonic()
    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    result.seconds = time.monotonic() - began
    result.use = watch.stop()
    for fd in files.values():
        os.close(fd)
    return result


def idle(pid: int, seconds: float) -> ServerUse:
    """The server left alone for `seconds` (compactions after a backfill show here)."""
    watch = Watch(pid)
    time.sleep(seconds)
    return watch.stop()


def disk_bytes(path: Path) -> int:
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):  # gone meanwhile (a compaction)
                total += os.lstat(os.path.join(root, name)).st_size
    return total
