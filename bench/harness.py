"""What every benchmark phase needs: a planctond child process, its config, and a clean engine.

Everything the benchmark creates carries the label `planctond.bench.run=<run id>` (pool labels
for the daemon's pilots, the same spec for the raw baseline), and only containers with that
label are ever removed, so a shared engine's other containers are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from planctond import constants as C

REPO = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"  # the runtime the daemon ships for (Debian's, with its packages)
BENCH_LABEL_KEY = "planctond.bench.run"
IMAGE = "busybox:latest"
# (daemon run, log line) of every warning or error any benchmark daemon logged: the report
# shows them, since a daemon that struggled makes its figures mean something else.
DAEMON_WARNINGS: list[tuple[str, str]] = []


def pool_yaml(
    *,
    run_id: str,
    max_pilots: int,
    per_tick: int,
    command: list[str],
    cpus: float = 0.01,
    tick: str | None = None,
) -> str:
    """A pool of tiny idle pilots that the policy admits however many the benchmark wants."""
    cmd = "[" + ", ".join(f'"{c}"' for c in command) + "]"
    tick_line = f"tick: {tick}\n" if tick else ""  # None: the daemon's default (10 s)
    return f"""{tick_line}owner:
  reserve: 0
  reserve_memory: 0
  grace_kill: 1d
pools:
  default:
    image: {IMAGE}
    pull: never
    command: {cmd}
    cpus: {cpus}
    memory: 16M
    max_pilots: "{max_pilots}"
    per_tick: {per_tick}
    stop_grace: 2s
    labels:
      {BENCH_LABEL_KEY}: "{run_id}"
"""


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    config_path: Path
    launched: float  # time.monotonic() at Popen
    _log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def instance(self, timeout: float = 20.0) -> str:
        path = self.state_dir / "instance-id"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                return path.read_text().strip()
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon {self.name} exited:\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"daemon {self.name} wrote no instance id:\n{self.tail()}")

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM; the daemon runs with --leave-pilots, so this is quick and the benchmark
        removes the pilots itself (in parallel, the same way for every contender)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        for line in self.log_path.read_text(errors="replace").splitlines():
            if " WARNING " in line or " ERROR " in line:
                DAEMON_WARNINGS.append((self.name, line))
        return self.proc.returncode


@dataclass
class Engine:
    """The Docker engine a benchmark runs against: its URL, how RESULTS.md describes it, and the
    private dockerd to stop at the end (None for an engine the caller named)."""

    url: str
    description: str
    private: Any = None

    def stop(self) -> None:
        if self.private is not None:
            self.private.stop()


def open_engine(docker_url: str | None, log: Callable[[str], None] = print) -> Engine:
    """The engine at `docker_url`, or a private dockerd (the test suite's helper) started now."""
    if docker_url:
        return Engine(docker_url, f"the engine at {docker_url}")
    from tests.support.docker_engine import start_private_engine

    log("starting a private dockerd")
    private = start_private_engine()
    return Engine(
        private.url,
        "a private dockerd started for the run (tests/support/docker_engine.py)",
        private,
    )


QUIET_DAEMON = "bench.quiet_daemon"
REAL_DAEMON = "planctond.cli.daemon"


def start_daemon(
    name: str,
    workdir: Path,
    config_text: str,
    docker_url: str,
    state_dir: Path | None = None,
    module: str = QUIET_DAEMON,
) -> Daemon:
    """A fresh daemon; with `state_dir` of an earlier one it has the same instance id and
    adopts the pilots that one left running. `module`: the quiet daemon by default, which hides
    the owner's CPU from the policy (right for measuring the daemon's own cost); the real one
    where the owner is the point (bench/owner.py)."""
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(config_text)
    state_dir = state_dir or workdir / f"state-{name}"
    state_dir.mkdir(exist_ok=True)
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    argv = [
        PYTHON,
        "-m",
        module,
        "--foreground",
        "--no-dbus",
        "--leave-pilots",
        "--config",
        str(config_path),
        "--state-dir",
        str(state_dir),
        "--docker-url",
        docker_url,
    ]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    launched = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    return Daemon(name, proc, state_dir, log_path, config_path, launched, log)


def running(api: Any, instance: str) -> int:
    return len(
        api.containers(filters={"label": f"{C.LABEL_INSTANCE}={instance}", "status": "running"})
    )


def wait_running(api: Any, instance: str, count: int, timeout: float, daemon: Daemon) -> float:
    """Seconds (monotonic) when `count` pilots of `instance` were seen running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running(api, instance) >= count:
            return time.monotonic()
        if not daemon.alive():
            raise RuntimeError(f"daemon {daemon.name} died:\n{daemon.tail()}")
        time.sleep(0.25)
    raise RuntimeError(
        f"daemon {daemon.name}: {running(api, instance)}/{count} pilots after {timeout:.0f}s:\n"
        + daemon.tail()
    )


def remove_labelled(api: Any, run_id: str) -> int:
    """Force-remove this run's containers (8 at a time); wait until none is listed."""
    flt = {"label": f"{BENCH_LABEL_KEY}={run_id}"}
    removed = 0
    for _ in range(5):
        ids = [c["Id"] for c in api.containers(all=True, filters=flt)]
        if not ids:
            return removed

        def rm(cid: str) -> None:
            with contextlib.suppress(Exception):
                api.remove_container(cid, force=True)

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(rm, ids))
        removed += len(ids)
        time.sleep(0.5)
    return removed
