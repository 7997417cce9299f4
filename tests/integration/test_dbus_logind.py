"""owner_idle from logind: the pure rule, and LogindIdleSource against a fake login1 served on a
private system bus with logind's real policy file (and against a bus without logind)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageType, NameFlag, RequestNameReply
from dbus_next.message import Message
from dbus_next.signature import Variant

from planctond.control.logind import LogindIdleSource, owner_idle
from tests.support.dbus_daemon import (
    LOGIN1_POLICY,
    POLICY_FILE,
    private_system_bus,
    unavailable_reason,
)

NOW = 1_800_000_000.0


def session(cls: str = "user", typ: str = "x11", idle: bool = True, since: float = NOW - 300) -> dict[str, Any]:  # fmt: skip
    return {"Class": cls, "Type": typ, "IdleHint": idle, "IdleSinceHint": int(since * 1e6)}


@pytest.mark.parametrize(
    ("sessions", "expected"),
    [
        ([], 9999.0),  # nobody logged in: away since (at least) boot
        ([session()], 300.0),
        ([session(), session(typ="tty", since=NOW - 60)], 60.0),
        ([session(), session(typ="wayland", idle=False)], 0.0),
        ([session(cls="greeter", idle=False), session()], 300.0),
        ([session(typ="unspecified", idle=False)], 9999.0),  # e.g. a cron/systemd --user session
        ([session(since=0)], 0.0),  # idle but no timestamp: do not pretend it is long idle
    ],
)
def test_owner_idle_rule(sessions: list[dict[str, Any]], expected: float) -> None:
    assert owner_idle(sessions, NOW, no_session=9999.0) == pytest.approx(expected)


class FakeLogind:
    """Answers ListSessions and Session GetAll like logind does, from a mutable table."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.sessions: dict[str, dict[str, Variant]] = {}

    def add(self, sid: str, typ: str, idle: bool, since: float) -> None:
        self.sessions[sid] = {
            "Id": Variant("s", sid),
            "Class": Variant("s", "user"),
            "Type": Variant("s", typ),
            "IdleHint": Variant("b", idle),
            "IdleSinceHint": Variant("t", int(since * 1e6)),
        }

    def on_message(self, msg: Message) -> Message | None:
        if msg.message_type is not MessageType.METHOD_CALL:
            return None
        if msg.member == "ListSessions":
            body = [
                [
                    [sid, 1000, "owner", "seat0", f"/org/freedesktop/login1/session/_3{sid}"]
                    for sid in self.sessions
                ]
            ]
            return Message.new_method_return(msg, "a(susso)", body)
        if msg.member == "GetAll" and msg.path.startswith("/org/freedesktop/login1/session/_3"):
            sid = msg.path.rsplit("_3", 1)[1]
            if sid not in self.sessions:
                return Message.new_error(msg, "org.freedesktop.DBus.Error.UnknownObject", "gone")
            return Message.new_method_return(msg, "a{sv}", [self.sessions[sid]])
        return None


@pytest.mark.dbus
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
@pytest.mark.timeout(60)
def test_idle_source_against_fake_logind() -> None:
    async def scenario(address: str) -> None:
        server = await MessageBus(bus_address=address).connect()
        fake = FakeLogind(server)
        server.add_message_handler(fake.on_message)
        reply = await server.request_name("org.freedesktop.login1", NameFlag.DO_NOT_QUEUE)
        assert reply is RequestNameReply.PRIMARY_OWNER
        now = time.time()
        fake.add("1", "x11", True, now - 600)
        fake.add("2", "tty", True, now - 120)

        client = await MessageBus(bus_address=address).connect()
        source = LogindIdleSource(interval=0.1)
        await source.start(client)
        assert source.variables()["owner_idle"] == pytest.approx(120, abs=5)

        fake.sessions["2"]["IdleHint"] = Variant("b", False)  # the owner types
        await asyncio.sleep(0.5)
        assert source.variables() == {"owner_idle": 0.0}

        fake.sessions.clear()  # everyone logged out
        await asyncio.sleep(0.5)
        assert source.variables()["owner_idle"] > 0

        await source.stop()
        client.disconnect()
        server.disconnect()

    with private_system_bus(policies=[POLICY_FILE, LOGIN1_POLICY]) as bus:
        asyncio.run(asyncio.wait_for(scenario(bus.address), 50))


@pytest.mark.dbus
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
@pytest.mark.timeout(60)
def test_absent_logind_leaves_variable_undefined(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(address: str) -> None:
        client = await MessageBus(bus_address=address).connect()
        source = LogindIdleSource(interval=0.05)
        await source.start(client)
        await asyncio.sleep(0.4)  # several polls
        assert source.variables() == {}
        await source.stop()
        client.disconnect()

    with caplog.at_level("INFO", logger="planctond.control.logind"), private_system_bus() as bus:
        asyncio.run(asyncio.wait_for(scenario(bus.address), 50))
    warnings = [r for r in caplog.records if "owner_idle is undefined" in r.getMessage()]
    assert len(warnings) == 1  # said once, not every poll
    assert "ServiceUnknown" in warnings[0].getMessage()
