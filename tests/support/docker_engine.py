"""The suite's own Docker engine: a real dockerd on a private socket, started and stopped here.

Why private: the tests start, kill and count containers, so they must not share an engine with
anything else on the host (nor disturb it). Why a cached data-root: imported images persist, so a
second run does not rebuild them. Only one run at a time may use that cache (dockerd locks its
databases); a concurrent run gets a throwaway data-root instead of blocking.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors

CACHE_DIR = Path("/var/cache/planctond-tests")
CACHED_DATA_ROOT = CACHE_DIR / "docker"
CACHED_PIDFILE = CACHE_DIR / "docker.pid"  # the dockerd currently using CACHED_DATA_ROOT
ENV_REUSE_URL = "PLANCTOND_TEST_DOCKER_URL"
# Prefix for processes the suite starts: they get SIGTERM when the test process dies, even by
# SIGKILL, instead of living on as orphans (util-linux's setpriv, always on Debian).
DIE_WITH_PARENT: tuple[str, ...] = ("setpriv", "--pdeathsig", "TERM")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# The daemon flags every engine of this project runs with: containers get loopback (or the
# host's network when they ask for it) and the host's firewall is never touched.
DOCKERD_NET_ARGS = ("--bridge=none", "--iptables=false", "--ip-masq=false")


class EngineStartError(RuntimeError):
    """dockerd did not come up: a test error with dockerd's own last words, never a skip."""


@dataclass
class DockerEngine:
    url: str
    client: Any  # docker.DockerClient (docker-py ships no type hints)
    owned: bool  # True: we started it and may remove anything in it
    run_dir: Path | None = None
    data_root: Path | None = None
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = None
    _lock: IO[str] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def socket_path(self) -> str:
        return self.url.removeprefix("unix://")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def remove_all_containers(self) -> None:
        """Only for an engine we own: every container in it is the suite's."""
        if not self.owned:
            raise RuntimeError("refusing to remove all containers of an engine we did not start")
        for c in self.client.containers.list(all=True):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL; then release the cache lock and the run directory."""
        with contextlib.suppress(Exception):
            self.client.close()
        proc = self._process
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
        if self.log_path is not None and self.log_path.exists():
            # Kept for the post-mortem of a failed run; the run directory goes away.
            with contextlib.suppress(OSError):
                shutil.copyfile(self.log_path, CACHE_DIR / "last-dockerd.log")
        if self._lock is not None:
            CACHED_PIDFILE.unlink(missing_ok=True)
            self._lock.close()  # releases the flock
        if self.run_dir is not None:
            _unmount_under(self.run_dir)  # dockerd may leave its netns bind mount behind
            shutil.rmtree(self.run_dir, ignore_errors=True)


def _unmount_under(directory: Path) -> None:
    prefix = str(directory.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _client(url: str) -> Any:
    return docker.DockerClient(base_url=url, version="auto", timeout=120)


def connect_existing(url: str) -> DockerEngine:
    """Use an engine someone else runs (PLANCTOND_TEST_DOCKER_URL): nothing in it is ours."""
    client = _client(url)
    client.ping()
    return DockerEngine(url=url, client=client, owned=False)


def _lock_cache() -> IO[str] | None:
    """The cached data-root for this run, or None if another run holds it."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    lock = (CACHE_DIR / "docker.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    _stop_orphan()
    return lock


def _stop_orphan() -> None:
    """A run killed outright (SIGKILL, CI timeout) may leave its dockerd running on the cached
    data-root (a second dockerd there would fight it) and its run directory behind. We hold the
    lock, so what CACHED_PIDFILE records ("PID RUN_DIR") is such a leftover: clean it up."""
    try:
        pid_text, run_dir_text = CACHED_PIDFILE.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        CACHED_PIDFILE.unlink(missing_ok=True)
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        cmdline = []
    if (
        cmdline
        and Path(cmdline[0].decode()).name == "dockerd"
        and str(CACHED_DATA_ROOT).encode() in cmdline
    ):
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.1)
            if not Path(f"/proc/{pid}").exists():
                break
    run_dir = Path(run_dir_text)
    if run_dir.parent == Path("/tmp") and run_dir.name.startswith("pdt-") and run_dir.is_dir():
        _unmount_under(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    CACHED_PIDFILE.unlink(missing_ok=True)


def start_private_engine() -> DockerEngine:
    """Start a dockerd of our own and wait until it answers; raise EngineStartError if it won't."""
    if shutil.which("dockerd") is None:
        raise EngineStartError("dockerd is not installed: run contrib/devstack/deps.sh")
    # Short path: unix socket paths are limited to 108 bytes, containerd's live under exec-root.
    run_dir = Path(tempfile.mkdtemp(prefix="pdt-", dir="/tmp"))
    lock = _lock_cache()
    # Without the cache lock: a data-root inside the run directory, removed with it.
    data_root = CACHED_DATA_ROOT if lock is not None else run_dir / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    (run_dir / "exec").mkdir()
    config = run_dir / "daemon.json"
    config.write_text("{}\n")  # the host's /etc/docker/daemon.json must not leak in
    socket_path = run_dir / "docker.sock"
    url = f"unix://{socket_path}"
    log_path = run_dir / "dockerd.log"
    log = log_path.open("wb")
    argv = [
        *DIE_WITH_PARENT,
        "dockerd",
        *DOCKERD_NET_ARGS,
        "--host",
        url,
        "--data-root",
        str(data_root),
        "--exec-root",
        str(run_dir / "exec"),
        "--pidfile",
        str(run_dir / "dockerd.pid"),
        "--config-file",
        str(config),
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    if lock is not None:
        CACHED_PIDFILE.write_text(f"{proc.pid} {run_dir}\n")
    engine = DockerEngine(
        url=url,
        client=None,
        owned=True,
        run_dir=run_dir,
        data_root=data_root,
        log_path=log_path,
        _process=proc,
        _lock=lock,
        _log=log,
    )
    deadline = time.monotonic() + START_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = engine.log_tail()
            engine.stop()
            raise EngineStartError(f"dockerd exited with {proc.returncode}:\n{tail}")
        if socket_path.exists():
            try:
                client = _client(url)
                client.ping()
            except Exception as exc:  # not up yet: connection refused, 5xx while starting
                last_error = exc
            else:
                engine.client = client
                return engine
        time.sleep(0.2)
    tail = engine.log_tail()
    engine.stop()
    raise EngineStartError(
        f"dockerd did not answer on {url} within {START_TIMEOUT:.0f} s ({last_error}):\n{tail}"
    )
