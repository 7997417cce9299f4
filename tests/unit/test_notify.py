"""SystemdNotifier against a real notify socket: libsystemd's sd_notify writes the datagrams."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planctond.control.notify import SystemdNotifier, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_status_reload_stopping_watchdog(notify_socket: socket.socket) -> None:
    n = SystemdNotifier()
    n.ready("active: 0/2 pilots")
    assert recv(notify_socket) == {"READY": "1", "STATUS": "active: 0/2 pilots"}

    n.status("draining: 2 pilots left\nsecond line")
    assert recv(notify_socket) == {"STATUS": "draining: 2 pilots left second line"}

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    msg = recv(notify_socket)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert msg["RELOADING"] == "1"
    assert before <= int(msg["MONOTONIC_USEC"]) <= after

    n.watchdog()
    assert recv(notify_socket) == {"WATCHDOG": "1"}
    n.stopping()
    assert recv(notify_socket) == {"STOPPING": "1"}
    # The environment survives the messages (unset_environment=False).
    assert os.environ.get("NOTIFY_SOCKET")


def test_unchanged_status_is_not_resent(notify_socket: socket.socket) -> None:
    n = SystemdNotifier()
    n.status("a")
    n.status("a")
    n.status("b")
    assert recv(notify_socket) == {"STATUS": "a"}
    assert recv(notify_socket) == {"STATUS": "b"}


def test_noop_without_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    n.ready("x")
    n.watchdog()
    n.reloading()
    n.stopping()


def test_dead_socket_is_tolerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    SystemdNotifier().watchdog()  # must not raise


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert SystemdNotifier().watchdog_interval() == 20.0
