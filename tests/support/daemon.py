"""planctond as a real process, the way systemd or a user runs it, for end-to-end tests.

Its stderr (the foreground log) is read by a thread into timestamped lines so tests can wait for
what the daemon says, and everything it said is there to print when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal as _signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from planctond import constants as C
from tests.support.docker_engine import DIE_WITH_PARENT
from tests.support.waiting import WaitTimeout

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LogLine:
    at: float  # time.monotonic() when read
    wall: float  # time.time() when read
    text: str


class DaemonProcess:
    """One `python -m planctond.cli.daemon --foreground` process.

    Not started by the constructor: call start() (or use it as a context manager) so a test can
    prepare files first. The process gets SIGTERM if the thread that started it ends (the test
    run dying included), so start it from the test's own thread."""

    INSTANCE_WAIT = 30.0

    def __init__(
        self,
        config_path: str | os.PathLike[str],
        state_dir: str | os.PathLike[str],
        docker_url: str,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.config_path = Path(config_path)
        self.state_dir = Path(state_dir)
        self.docker_url = docker_url
        self.extra_args = tuple(extra_args)
        self.env = env
        self.lines: list[LogLine] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.instance_ids: set[str] = set()  # every instance id it used, for container cleanup

    # --- life cycle -------------------------------------------------------------------------
    @property
    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "planctond.cli.daemon",
            "--foreground",
            "--config",
            str(self.config_path),
            "--state-dir",
            str(self.state_dir),
            "--docker-url",
            self.docker_url,
            *self.extra_args,
        ]

    def start(self) -> DaemonProcess:
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [*DIE_WITH_PARENT, *self.argv],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, args=(self._proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = LogLine(time.monotonic(), time.time(), raw.rstrip("\n"))
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def signal(self, sig: int) -> None:
        if self._proc is None:
            raise RuntimeError("not started")
        self._proc.send_signal(sig)

    def stop(self, signal: int = _signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `signal` and wait for the exit code. A daemon that ignores it is killed and the
        test fails: a hanging shutdown is a bug."""
        if self._proc is None:
            raise RuntimeError("not started")
        self._remember_instance()
        if self._proc.poll() is None:
            self._proc.send_signal(signal)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise WaitTimeout(
                    f"planctond ignored signal {signal} for {timeout:.0f} s; killed.\n{self.tail()}"
                ) from None
        self._join_reader()
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does. Pilots stay behind for adoption."""
        if self._proc is None:
            return
        self._remember_instance()
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(30)
        self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(10)

    def _remember_instance(self) -> None:
        found = self._read_instance()
        if found:
            self.instance_ids.add(found)

    def _read_instance(self) -> str | None:
        try:
            return (self.state_dir / C.INSTANCE_FILE_NAME).read_text().strip() or None
        except OSError:
            return None

    @property
    def instance_id(self) -> str | None:
        """The id the daemon labels its pilots with (`<state_dir>/instance-id`).

        A freshly started daemon writes it within its first second or so (longer on a loaded
        machine): while it runs, this waits up to INSTANCE_WAIT seconds for the file rather than
        race it. None only if the daemon never wrote one."""
        deadline = time.monotonic() + self.INSTANCE_WAIT
        while (found := self._read_instance()) is None and self.running():
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if found:
            self.instance_ids.add(found)
        return found

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running():
            with contextlib.suppress(WaitTimeout):
                self.stop()

    # --- what it said -------------------------------------------------------------------------
    def output(self) -> str:
        with self._cond:
            return "\n".join(line.text for line in self.lines)

    def tail(self, n: int = 40) -> str:
        with self._cond:
            return "\n".join(line.text for line in self.lines[-n:])

    def mark(self) -> int:
        """An index into `lines`: pass it as `since` to wait only for lines said after now."""
        with self._cond:
            return len(self.lines)

    def find_lines(self, pattern: str | re.Pattern[str], since: int = 0) -> list[LogLine]:
        rx = re.compile(pattern)
        with self._cond:
            return [line for line in self.lines[since:] if rx.search(line.text)]

    def wait_for_line(
        self, pattern: str | re.Pattern[str], timeout: float = 30.0, since: int = 0
    ) -> re.Match[str]:
        """The first line at index >= `since` matching `pattern` (re.search), waiting for it.

        Fails at once, with the log, if the daemon exits before saying it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = since
        with self._cond:
            while True:
                while index < len(self.lines):
                    m = rx.search(self.lines[index].text)
                    if m:
                        return m
                    index += 1
                exited = self._proc is not None and self._proc.poll() is not None
                if exited and (self._reader is None or not self._reader.is_alive()):
                    raise WaitTimeout(
                        f"planctond exited ({self.returncode}) without saying /{rx.pattern}/:\n"
                        f"{self.tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(
                        f"planctond did not say /{rx.pattern}/ within {timeout:.1f} s:\n{self.tail()}"
                    )
                self._cond.wait(min(left, 0.5))
