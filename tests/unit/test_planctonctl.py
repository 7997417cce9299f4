"""planctonctl as users run it: a real process talking to a private system bus where a test
Controller is served, checking its output and its documented exit codes."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageType, NameFlag
from dbus_next.message import Message
from dbus_next.signature import Variant

from planctond.cli import planctonctl
from planctond.control.authz import Authorizer
from planctond.control.dbus_marshal import pilot_to_dbus, status_to_dbus
from planctond.control.dbus_service import serve
from planctond.supervisor.events import Event, EventKind
from tests.support.dbus_daemon import (
    ROOT,
    PrivateBus,
    as_user,
    code_root_for_others,
    private_system_bus,
    unavailable_reason,
)
from tests.support.fake_controller import FakeController

T = TypeVar("T")
F = TypeVar("F")


def needs_bus(fn: F) -> F:
    for mark in (
        pytest.mark.dbus,
        pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
        pytest.mark.timeout(120),
    ):
        fn = mark(fn)
    return fn


# --- no bus needed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59.9, "59s"), (125, "2m05s"), (3700, "1h01m"), (90000, "1d01h"), (-5, "0s")],
)
def test_age(seconds: float, text: str) -> None:
    assert planctonctl.age(seconds) == text


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert planctonctl.main([]) == planctonctl.EXIT_USAGE
    assert planctonctl.main(["frobnicate"]) == planctonctl.EXIT_USAGE
    assert planctonctl.main(["status", "extra"]) == planctonctl.EXIT_USAGE
    assert planctonctl.main(["--help"]) == 0
    out = capsys.readouterr().out
    for needle in (
        "exit status:",
        "3  the daemon is not running",
        "4  permission denied",
        "plancton-admin",
    ):
        assert needle in out


def test_logs_runs_journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "args"
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit 7\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    assert planctonctl.main(["logs"]) == 7  # journalctl's status is passed through
    assert record.read_text().split() == ["-u", "planctond.service", "-n", "100", "-x"]
    assert planctonctl.main(["logs", "-f", "PLANCTON_EVENT=pilot-killed"]) == 7
    assert record.read_text().split() == [
        "-u",
        "planctond.service",
        "-f",
        "PLANCTON_EVENT=pilot-killed",
    ]
    assert planctonctl.main(["--json", "logs", "-n", "5"]) == 7
    assert record.read_text().split() == ["-u", "planctond.service", "-o", "json", "-n", "5"]
    assert planctonctl.main(["logs", "--json"]) == 7
    assert record.read_text().split()[:4] == ["-u", "planctond.service", "-o", "json"]


# --- against the bus -------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 100))


async def ctl(
    bus: PrivateBus, *args: str, user: tuple[str, str] | None = None
) -> tuple[int, str, str]:
    argv = [sys.executable, "-m", "planctond.cli.planctonctl", *args]
    if user:
        argv = as_user(*user, argv)
    env = {
        **bus.env(),
        "PYTHONPATH": str(code_root_for_others()),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TZ": "UTC",
    }
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def with_service(bus: PrivateBus, ctrl: FakeController, authorizer: Authorizer | None = None) -> tuple[MessageBus, Any]:  # fmt: skip
    server = await MessageBus(bus_address=bus.address).connect()
    return server, await serve(ctrl, server, authorizer)


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    with private_system_bus() as b:
        yield b


@needs_bus
def test_status_table_and_json(bus: PrivateBus) -> None:
    async def scenario() -> None:
        ctrl = FakeController()
        ctrl.events.emit(
            Event(
                EventKind.PILOT_STARTED,
                "started busybox",
                pilot="plancton-default-3f2a",
                pool="default",
            )
        )
        server, svc = await with_service(bus, ctrl)
        try:
            rc, out, err = await ctl(bus, "status")
            assert rc == 0, err
            lines = out.splitlines()
            assert lines[0] == "planctond 0.1.0: active: 2/3 pilots, owner CPU 12 %"
            assert "  Owner CPU:  0.25 of 2 CPUs (12 %)" in lines
            assert "  Config:     /etc/plancton/config.yaml" in lines
            pool_header = next(i for i, line in enumerate(lines) if line.startswith("POOL"))
            assert lines[pool_header + 1].split() == ["default", "1", "0", "2"]
            assert lines[pool_header + 2].split()[:5] == ["wq", "0", "1", "1", "backing"]
            pilot_header = next(i for i, line in enumerate(lines) if line.startswith("PILOT"))
            row = lines[pilot_header + 1].split()
            assert row[:3] == ["plancton-default-3f2a", "default", "running"]
            assert row[3].startswith("2m0")  # started 125 s ago
            assert row[4:6] == ["0.93", "busybox:latest"]
            assert lines[pilot_header + 2].split()[3] == "1h01m"
            assert "Recent events:" in lines
            assert lines[-1].endswith(
                "pilot-started plancton-default-3f2a (pool default): started busybox"
            )

            rc, out, err = await ctl(bus, "status", "--json")
            assert rc == 0, err
            data = json.loads(out)
            assert data["status"]["state"] == "active"
            assert data["status"]["pools"][1]["name"] == "wq"
            assert [p["name"] for p in data["pilots"]] == [
                "plancton-default-3f2a",
                "plancton-wq-77aa",
            ]

            rc, out, err = await ctl(bus, "--json", "pilots")
            assert rc == 0, err
            pilots = json.loads(out)
            assert pilots[0]["id"] == "3f2a" * 16 and pilots[0]["cpu"] == pytest.approx(0.93)
            rc, out, _ = await ctl(bus, "pilots")
            assert out.splitlines()[0].split() == [
                "PILOT",
                "POOL",
                "PHASE",
                "AGE",
                "CPU",
                "IMAGE",
                "ID",
            ]
        finally:
            await svc.close()
            server.disconnect()

    run(scenario())


@needs_bus
def test_state_commands_and_failures(bus: PrivateBus) -> None:
    async def scenario() -> None:
        ctrl = FakeController()
        server, svc = await with_service(bus, ctrl)
        try:
            for cmd, state in [("drain", "draining"), ("stop", "stopped"), ("start", "active"),
                               ("drain", "draining"), ("resume", "active")]:  # fmt: skip
                rc, out, err = await ctl(bus, cmd)
                assert rc == 0, err
                assert out == f"{cmd}: done, planctond is {state}\n"
            rc, out, _ = await ctl(bus, "drain", "--json")
            assert rc == 0 and json.loads(out) == {
                "command": "drain",
                "ok": True,
                "state": "draining",
            }

            ctrl.reload_error = "config.yaml: line 3: pools.x.cpus: expected a number"
            rc, out, err = await ctl(bus, "reload")
            assert rc == planctonctl.EXIT_FAILED
            assert err == f"planctonctl: Reload failed: {ctrl.reload_error}\n"
            ctrl.reload_error = None
            rc, out, err = await ctl(bus, "reload")
            assert rc == 0, err
            assert ctrl.calls == [
                "drain",
                "stop",
                "start",
                "drain",
                "resume",
                "drain",
                "reload",
                "reload",
            ]
        finally:
            await svc.close()
            server.disconnect()

    run(scenario())


@needs_bus
def test_permission_denied_exit_4(bus: PrivateBus) -> None:
    async def scenario() -> None:
        ctrl = FakeController()
        server, svc = await with_service(bus, ctrl)
        try:
            # Refused by the bus policy: a second uid.
            rc, _, err = await ctl(bus, "drain", user=("nobody", "nogroup"))
            assert rc == planctonctl.EXIT_DENIED, err
            assert "permission denied" in err and "plancton-admin" in err
            # ... who may still read.
            rc, out, err = await ctl(bus, "status", user=("nobody", "nogroup"))
            assert rc == 0, err
            assert out.startswith("planctond 0.1.0: active")
        finally:
            await svc.close()
            server.disconnect()
        # Refused by the daemon's own check: root passes the policy, not this daemon's rule.
        server, svc = await with_service(
            bus, ctrl, Authorizer(admin_group="no-such-group-x", allowed_uids=frozenset())
        )
        try:
            rc, _, err = await ctl(bus, "stop")
            assert rc == planctonctl.EXIT_DENIED, err
            assert "no-such-group-x" in err
        finally:
            await svc.close()
            server.disconnect()
        assert ctrl.calls == []

    run(scenario())


@needs_bus
def test_read_denied_without_our_policy(tmp_path: Path) -> None:
    """A bus where only root may own the name and nothing else is allowed (policy not installed)."""
    bare = tmp_path / "bare.conf"
    bare.write_text(
        '<busconfig><policy user="root"><allow own="org.plancton"/></policy></busconfig>'
    )

    async def scenario(bus: PrivateBus) -> None:
        server, svc = await with_service(bus, FakeController())
        try:
            rc, _, err = await ctl(bus, "status", user=("nobody", "nogroup"))
            assert rc == planctonctl.EXIT_DENIED
            assert "org.plancton.conf installed?" in err
        finally:
            await svc.close()
            server.disconnect()

    with private_system_bus(policies=[bare]) as bus:
        run(scenario(bus))


@needs_bus
def test_not_running_exit_3(bus: PrivateBus) -> None:
    async def scenario() -> None:
        rc, _, err = await ctl(bus, "status")
        assert rc == planctonctl.EXIT_NOT_RUNNING
        assert (
            err == "planctonctl: planctond is not running (org.plancton is not on the system bus)\n"
        )
        rc, _, err = await ctl(bus, "drain")
        assert rc == planctonctl.EXIT_NOT_RUNNING
        gone = PrivateBus(
            "unix:path=/nonexistent/planctond-test-bus", Path("/nonexistent"), Path("/"), 0
        )
        rc, _, err = await ctl(gone, "status")
        assert rc == planctonctl.EXIT_NOT_RUNNING
        assert "cannot connect to the system bus" in err

    run(scenario())


# --- replies of an unexpected shape ------------------------------------------------------------


def good_status() -> dict[str, Variant]:
    ctrl = FakeController()
    ctrl.events.emit(Event(EventKind.PILOT_STARTED, "up", pilot="p", pool="default"))
    return status_to_dbus(ctrl.status(), ctrl.events.recent)


def good_pilots() -> list[Any]:
    return [pilot_to_dbus(p) for p in FakeController().pilot_list]


class Impostor:
    """Owns org.plancton and answers each member with the (signature, body) a test gives it: a
    daemon of another version, or something else entirely."""

    def __init__(self, replies: dict[str, tuple[str, list[Any]]]) -> None:
        self.replies = replies

    def on_message(self, msg: Message) -> Message | bool:
        if msg.message_type is MessageType.METHOD_CALL and msg.member in self.replies:
            signature, body = self.replies[msg.member]
            return Message.new_method_return(msg, signature, body)
        return False


def _with(status: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**status, **changes}


def _without(status: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != key}


def _pools(status: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
    return _with(status, pools=Variant("aa{sv}", [pool]))


S, P = good_status(), good_pilots()
STATE = ("v", [Variant("s", "draining")])
UNEXPECTED: list[tuple[list[str], dict[str, tuple[str, list[Any]]], str]] = [
    (["status"], {"Status": ("s", ["hello"])}, "Status answered (s), not (a{sv})"),
    (["status"], {"Status": ("a{sv}", [_without(S, "ncpus")])}, "Status has no ncpus"),
    (["status"], {"Status": ("a{sv}", [_with(S, ncpus=Variant("s", "2"))])},
     "Status.ncpus is not a variant of type u"),
    (["status"], {"Status": ("a{sv}", [_pools(S, {"running": Variant("u", 1)})])},
     "Status.pools[0] has no name, frozen, allowed, backoff_until_usec, note"),
    (["status"], {"Status": ("a{sv}", [_with(S, extra=Variant("a{sv}", {}))])},
     "Status.extra is not a variant of type a{ss}"),
    (["status", "--json"], {"Status": ("a{sv}", [S]), "ListPilots": ("as", [["x"]])},
     "ListPilots answered (as), not (a(ssssstd))"),
    (["pilots"], {"ListPilots": ("a(ssssstd)", [[["n", "i", "p", "running", "img", 1, 0.5]] * 2 + [["n", "i", "p", "x", "img", 2, 0.5]]])}, ""),
    (["pilots"], {"ListPilots": ("a(ssssstt)", [[["n", "i", "p", "r", "img", 1, 5]]])},
     "ListPilots answered (a(ssssstt)), not (a(ssssstd))"),
    (["drain"], {"Drain": ("s", ["ok"])}, "Drain answered (s), not ()"),
    (["drain"], {"Drain": ("", []), "Get": ("v", [Variant("u", 3)])},
     "State is not a variant of type s"),
    (["drain"], {"Drain": ("", []), "Get": ("s", ["active"])}, "Get answered (s), not (v)"),
]  # fmt: skip


@needs_bus
def test_unexpected_replies_are_one_clear_line_and_exit_1(bus: PrivateBus) -> None:
    async def scenario() -> None:
        server = await MessageBus(bus_address=bus.address).connect()
        impostor = Impostor({})
        server.add_message_handler(impostor.on_message)
        await server.request_name("org.plancton", NameFlag.DO_NOT_QUEUE)
        try:
            for args, replies, expected in UNEXPECTED:
                impostor.replies = replies
                rc, out, err = await ctl(bus, *args)
                if not expected:  # a well-formed reply: planctonctl must simply work
                    assert rc == 0, err
                    continue
                assert rc == planctonctl.EXIT_FAILED, (args, out, err)
                assert err == f"planctonctl: unexpected reply from planctond: {expected}\n"
                assert out == ""
        finally:
            server.disconnect()

    run(scenario())


@needs_bus
def test_huge_and_hostile_values_are_printed_safely(bus: PrivateBus) -> None:
    """Values a correct daemon never sends, yet well typed: planctonctl prints them, bounded and
    escaped, and neither the terminal nor the exit status suffers."""
    hostile = _with(
        S,
        uptime_s=Variant("d", float("inf")),
        owner_cpu=Variant("d", float("nan")),
        last_tick_usec=Variant("t", 2**64 - 1),
        ncpus=Variant("u", 2**32 - 1),
        last_error=Variant("s", "\x1b[2J\x1b]0;pwned\x07" + "x" * 100_000),
        config_path=Variant("s", "/etc/\u2028plancton\n.yaml"),
        recent_events=Variant("aa{sv}", [{**S["recent_events"].value[0], "time_usec": Variant("t", 2**64 - 1)}]),
        pools=Variant("aa{sv}", [{**S["pools"].value[1], "backoff_until_usec": Variant("t", 2**63)}]),
    )  # fmt: skip
    pilots = [["p\x1b[31m", "id", "pool", "running", "img", 2**64 - 1, float("inf")]]

    async def scenario() -> None:
        server = await MessageBus(bus_address=bus.address).connect()
        replies = {"Status": ("a{sv}", [hostile]), "ListPilots": ("a(ssssstd)", [pilots])}
        server.add_message_handler(Impostor(replies).on_message)
        await server.request_name("org.plancton", NameFlag.DO_NOT_QUEUE)
        try:
            for args in (["status"], ["status", "--json"], ["pilots"]):
                rc, out, err = await ctl(bus, *args)
                assert rc == 0, err
                assert "\x1b" not in out and "\u2028" not in out and "\x07" not in out
                assert max(len(line) for line in out.splitlines()) < 2200
            rc, out, _ = await ctl(bus, "status")
            assert "\\x1b[2J\\x1b]0;pwned\\x07xxx" in out and "/etc/\\u2028plancton\\n.yaml" in out
        finally:
            server.disconnect()

    run(scenario())


# --- completion and man page stay in step with the CLI ----------------------------------------


def _complete(*words: str) -> list[str]:
    script = (
        f"source {ROOT / 'contrib/completion/planctonctl.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        '_planctonctl; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    return proc.stdout.split()


def _parser_commands() -> set[str]:
    parser = planctonctl.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_bash_completion() -> None:
    assert set(_complete("planctonctl", "")) == _parser_commands()
    assert _complete("planctonctl", "dr") == ["drain"]
    assert _complete("planctonctl", "--js") == ["--json"]
    assert _complete("planctonctl", "--json", "pi") == ["pilots"]
    events = _complete("planctonctl", "logs", "PLANCTON_EVENT=")
    assert {e.split("=", 1)[1] for e in events} == {k.value for k in EventKind}


def test_man_page_documents_commands_and_exit_codes() -> None:
    man = (ROOT / "docs" / "planctonctl.1").read_text()
    for command in _parser_commands():
        assert f".B {command}\n" in man or f".BR {command} " in man, command
    for code in range(5):
        assert f".TP\n.B {code}\n" in man
    if shutil.which("groff"):
        proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(ROOT / "docs" / "planctonctl.1")],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_status_shows_each_monitoring_backend() -> None:
    """The daemon puts one `monitoring <target>` line per backend in Status()'s extra."""
    ctrl = FakeController()
    report = ctrl.status()
    report.extra["monitoring influxdb http://h:8086#fleet"] = (
        "failing: connection refused; last success never; backlog 12; dropped 3"
    )
    ctrl.report = report
    status = planctonctl.status_from_dbus([status_to_dbus(ctrl.status(), ())])
    out = io.StringIO()
    planctonctl.print_status(status, [], out, 0.0)
    assert (
        "  Monitoring: influxdb http://h:8086#fleet: failing: connection refused; last success "
        "never; backlog 12; dropped 3\n" in out.getvalue()
    ), out.getvalue()
