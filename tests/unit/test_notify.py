"""SystemdNotifier against a real notify socket bound by the test: libsystemd's sd_notify writes
the datagrams where python3-systemd is installed, planctond's own `send_datagram` where it is not
(a pip install without the C extension). Both paths run every test below that takes `code_path`."""

from __future__ import annotations

import os
import secrets
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planctond.control import notify
from planctond.control.notify import SystemdNotifier, watchdog_interval


@pytest.fixture(params=["libsystemd", "protocol"])
def code_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which sender SystemdNotifier() picks: "protocol" hides python3-systemd as if absent."""
    if request.param == "libsystemd":
        pytest.importorskip("systemd.daemon")
    else:
        monkeypatch.setitem(sys.modules, "systemd.daemon", None)  # import raises ImportError
    return str(request.param)


def bound(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    return sock


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = bound(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield sock
    sock.close()


def recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_the_protocol_is_used_without_python3_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "systemd.daemon", None)
    assert notify.default_sender() is notify.send_datagram


def test_ready_status_reload_stopping_watchdog(
    code_path: str, notify_socket: socket.socket
) -> None:
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


def test_abstract_socket(code_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd may hand out an abstract socket, written with a leading '@'."""
    name = f"planctond-test-{secrets.token_hex(8)}"
    sock = bound("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        SystemdNotifier().ready("up")
        assert recv(sock) == {"READY": "1", "STATUS": "up"}
    finally:
        sock.close()


def test_datagram_carries_our_pid_for_notify_access_main(
    code_path: str, notify_socket: socket.socket
) -> None:
    """NotifyAccess=main accepts a message only from the main pid, which the kernel attaches."""
    notify_socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    SystemdNotifier().watchdog()
    ucred = struct.calcsize("3i")
    data, ancillary, _, _ = notify_socket.recvmsg(4096, socket.CMSG_SPACE(ucred))
    assert data == b"WATCHDOG=1"
    creds = [
        d
        for level, kind, d in ancillary
        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS)
    ]
    assert creds and struct.unpack("3i", creds[0][:ucred])[0] == os.getpid()


def test_unchanged_status_is_not_resent(code_path: str, notify_socket: socket.socket) -> None:
    n = SystemdNotifier()
    n.status("a")
    n.status("a")
    n.status("b")
    assert recv(notify_socket) == {"STATUS": "a"}
    assert recv(notify_socket) == {"STATUS": "b"}


def test_noop_without_socket(code_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = SystemdNotifier()
    assert not n.enabled
    n.ready("x")
    n.watchdog()
    n.reloading()
    n.stopping()


@pytest.mark.parametrize("address", ["/nonexistent/nobody-listens", "relative/socket"])
def test_dead_or_odd_socket_is_tolerated(
    code_path: str, address: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    SystemdNotifier().watchdog()  # must not raise
    assert "sd_notify(WATCHDOG=1) failed" in caplog.text


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
