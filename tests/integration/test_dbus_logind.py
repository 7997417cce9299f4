"""owner_idle from logind: the pure rule, and LogindIdleSource against a fake login1 served on a
private system bus with logind's real policy file (and against a bus without logind, and without
any bus), on a connection it is lent or on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageType, NameFlag, RequestNameReply
from dbus_next.message import Message
from dbus_next.signature import Variant

from planctond.sensors.logind import LogindIdleSource, owner_idle, start_owner_idle
from tests.support.dbus_daemon import (
    LOGIN1_POLICY,
    POLICY_FILE,
    PrivateBus,
    private_system_bus,
    unavailable_reason,
)

NOW = 1_800_000_000.0
LOGGER = "planctond.sensors.logind"
NO_BUS = unavailable_reason()


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


async def serve_fake_logind(address: str) -> FakeLogind:
    """A fake login1 with two idle sessions: x11 for 600 s, tty for 120 s."""
    server = await MessageBus(bus_address=address).connect()
    fake = FakeLogind(server)
    server.add_message_handler(fake.on_message)
    reply = await server.request_name("org.freedesktop.login1", NameFlag.DO_NOT_QUEUE)
    assert reply is RequestNameReply.PRIMARY_OWNER
    now = time.time()
    fake.add("1", "x11", True, now - 600)
    fake.add("2", "tty", True, now - 120)
    return fake


async def connections(bus: MessageBus, expected: int | None = None) -> int:
    """How many clients the bus daemon has (waiting a little for it to reach `expected`: it
    notices a closed connection asynchronously)."""
    for _ in range(100):
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="ListNames",
            )
        )
        assert reply is not None
        n = sum(1 for name in reply.body[0] if name.startswith(":"))
        if expected is None or n == expected:
            break
        await asyncio.sleep(0.02)
    return n


def undefined_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "owner_idle is undefined" in r.getMessage()]


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, 50))


@pytest.fixture
def logind_bus() -> Iterator[PrivateBus]:
    with private_system_bus(policies=[POLICY_FILE, LOGIN1_POLICY]) as bus:
        yield bus


@pytest.fixture
def bare_bus() -> Iterator[PrivateBus]:
    """A system bus where nobody serves login1."""
    with private_system_bus() as bus:
        yield bus


@pytest.mark.dbus
@pytest.mark.skipif(NO_BUS is not None, reason=str(NO_BUS))
@pytest.mark.timeout(60)
def test_idle_source_against_fake_logind(logind_bus: PrivateBus) -> None:
    async def scenario() -> None:
        fake = await serve_fake_logind(logind_bus.address)
        client = await MessageBus(bus_address=logind_bus.address).connect()
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
        assert client.connected  # lent, not closed
        client.disconnect()
        fake.bus.disconnect()

    run(scenario())


@pytest.mark.dbus
@pytest.mark.skipif(NO_BUS is not None, reason=str(NO_BUS))
@pytest.mark.timeout(60)
def test_absent_logind_leaves_variable_undefined(
    bare_bus: PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        client = await MessageBus(bus_address=bare_bus.address).connect()
        source = LogindIdleSource(interval=0.05)
        await source.start(client)
        await asyncio.sleep(0.4)  # several polls
        assert source.variables() == {}
        await source.stop()
        client.disconnect()

    with caplog.at_level("INFO", logger=LOGGER):
        run(scenario())
    (said,) = undefined_messages(caplog)  # said once, not every poll
    assert "ServiceUnknown" in said


@pytest.mark.dbus
@pytest.mark.skipif(NO_BUS is not None, reason=str(NO_BUS))
@pytest.mark.timeout(60)
def test_start_owner_idle_on_its_own_connection(
    logind_bus: PrivateBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No bus lent (the D-Bus API is off): the source connects to the system bus itself, and
    stop() closes that connection."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", logind_bus.address)

    async def scenario() -> None:
        fake = await serve_fake_logind(logind_bus.address)
        before = await connections(fake.bus)
        source = await start_owner_idle(interval=0.1)
        assert source is not None
        assert await connections(fake.bus) == before + 1
        assert source.variables()["owner_idle"] == pytest.approx(120, abs=5)
        fake.sessions["2"]["IdleHint"] = Variant("b", False)
        await asyncio.sleep(0.5)
        assert source.variables() == {"owner_idle": 0.0}
        await source.stop()
        assert await connections(fake.bus, before) == before
        fake.bus.disconnect()

    run(scenario())


@pytest.mark.dbus
@pytest.mark.skipif(NO_BUS is not None, reason=str(NO_BUS))
@pytest.mark.timeout(60)
def test_start_owner_idle_on_a_lent_connection(logind_bus: PrivateBus) -> None:
    async def scenario() -> None:
        fake = await serve_fake_logind(logind_bus.address)
        client = await MessageBus(bus_address=logind_bus.address).connect()
        before = await connections(fake.bus)
        source = await start_owner_idle(client, interval=0.1)
        assert source is not None
        assert source.variables()["owner_idle"] == pytest.approx(120, abs=5)
        assert await connections(fake.bus) == before  # no connection of its own
        await source.stop()
        assert client.connected
        client.disconnect()
        fake.bus.disconnect()

    run(scenario())


@pytest.mark.dbus
@pytest.mark.skipif(NO_BUS is not None, reason=str(NO_BUS))
@pytest.mark.timeout(60)
@pytest.mark.parametrize("lend", [False, True])
def test_start_owner_idle_without_logind_is_none(
    bare_bus: PrivateBus,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    lend: bool,
) -> None:
    """Nothing to poll: None, said once, and no connection of its own left open."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bare_bus.address)

    async def scenario() -> None:
        watcher = await MessageBus(bus_address=bare_bus.address).connect()
        lent = await MessageBus(bus_address=bare_bus.address).connect() if lend else None
        before = await connections(watcher)
        assert await start_owner_idle(lent, interval=0.05) is None
        await asyncio.sleep(0.2)  # no poll left behind to say it again
        assert await connections(watcher, before) == before
        if lent is not None:
            assert lent.connected
            lent.disconnect()
        watcher.disconnect()

    with caplog.at_level("INFO", logger=LOGGER):
        run(scenario())
    (said,) = undefined_messages(caplog)
    assert "ServiceUnknown" in said


def test_start_owner_idle_without_a_system_bus_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    with caplog.at_level("INFO", logger=LOGGER):
        assert asyncio.run(start_owner_idle()) is None
    (said,) = undefined_messages(caplog)
    assert "no system bus" in said
