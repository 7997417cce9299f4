"""org.plancton.Manager1 over a real dbus-daemon with the shipped policy, against a test Controller:
every method, property, signal and error, second-uid callers, malformed calls, introspection."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import logging
import pwd
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from dbus_next import introspection as intr
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageFlag, MessageType
from dbus_next.message import Message

from planctond.constants import BUS_NAME, INTERFACE, OBJECT_PATH
from planctond.control import dbus_errors, dbus_service
from planctond.control.authz import Authorizer
from planctond.control.dbus_private import harden
from planctond.control.dbus_service import BusNameError, DBusService, serve
from planctond.supervisor.api import PilotInfo
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

pytestmark = [
    pytest.mark.dbus,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.timeout(120),
]

T = TypeVar("T")
STATE_CHANGING = ["Start", "Drain", "Resume", "Stop", "Reload"]


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    with private_system_bus() as b:
        yield b


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))


class Client:
    """A plain dbus-next connection that records the signals from /org/plancton."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.signals: list[Message] = []
        self._arrived = asyncio.Event()

    @classmethod
    async def connect(cls, address: str) -> Client:
        bus = MessageBus(bus_address=address)
        harden(bus)  # the flood test sends hundreds of calls at once
        c = cls(await bus.connect())
        c.bus.add_message_handler(c._on_message)
        await c.call_bus("AddMatch", "s", [f"type='signal',path='{OBJECT_PATH}'"])
        return c

    def _on_message(self, msg: Message) -> bool:
        if msg.message_type is MessageType.SIGNAL and msg.path == OBJECT_PATH:
            self.signals.append(msg)
            self._arrived.set()
        return False

    async def call_bus(
        self, member: str, signature: str = "", body: list[Any] | None = None
    ) -> Message:
        reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        return reply

    async def call(
        self,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        interface: str = INTERFACE,
        flags: MessageFlag = MessageFlag.NONE,
    ) -> Message | None:
        return await self.bus.call(
            Message(
                destination=BUS_NAME,
                path=OBJECT_PATH,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
                flags=flags,
            )
        )

    async def ok(self, member: str, signature: str = "", body: list[Any] | None = None, interface: str = INTERFACE) -> list[Any]:  # fmt: skip
        reply = await self.call(member, signature, body, interface)
        assert reply is not None
        assert reply.message_type is MessageType.METHOD_RETURN, (reply.error_name, reply.body)
        return list(reply.body)

    async def error(self, member: str, signature: str = "", body: list[Any] | None = None, interface: str = INTERFACE) -> tuple[str, str]:  # fmt: skip
        reply = await self.call(member, signature, body, interface)
        assert reply is not None
        assert reply.message_type is MessageType.ERROR, reply.body
        return str(reply.error_name), str(reply.body[0] if reply.body else "")

    async def wait_signal(self, member: str, timeout: float = 10) -> Message:
        async def find() -> Message:
            while True:
                for m in self.signals:
                    if m.member == member:
                        self.signals.remove(m)
                        return m
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(find(), timeout)


@contextlib.asynccontextmanager
async def served(
    bus: PrivateBus, controller: FakeController | None = None, authorizer: Authorizer | None = None
) -> AsyncIterator[tuple[FakeController, DBusService, Client]]:
    ctrl = controller or FakeController()
    server = await MessageBus(bus_address=bus.address).connect()
    service = await serve(ctrl, server, authorizer)
    client = await Client.connect(bus.address)
    try:
        yield ctrl, service, client
    finally:
        await service.close()
        client.bus.disconnect()
        server.disconnect()


async def run_as(user: str, group: str, argv: list[str], bus: PrivateBus, login_groups: bool = False) -> tuple[int, str, str]:  # fmt: skip
    """Run a client as another uid without blocking the loop the service runs on."""
    proc = await asyncio.create_subprocess_exec(
        *as_user(user, group, argv, login_groups),
        env=bus.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


_CALL_SCRIPT = """
import asyncio, json, sys
from dbus_next import BusType, Message, MessageType
from dbus_next.aio.message_bus import MessageBus
async def main():
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    reply = await bus.call(Message(destination="org.plancton", path="/org/plancton",
                                   interface="org.plancton.Manager1", member=sys.argv[1]))
    print(json.dumps([reply.error_name, reply.body[0] if reply.body else None],
                     default=lambda v: v.value))  # Variants
asyncio.run(main())
"""


async def call_as(user: str, group: str, member: str, bus: PrivateBus, login_groups: bool = False) -> tuple[str | None, Any]:  # fmt: skip
    """(error name or None, first reply value) of a Manager1 call made by another uid."""
    argv = [sys.executable, "-c", _CALL_SCRIPT, member]
    rc, out, err = await run_as(user, group, argv, bus, login_groups)
    assert rc == 0, err
    name, value = json.loads(out)
    return name, value


def busctl(bus: PrivateBus, *args: str) -> list[str]:
    return ["busctl", f"--address={bus.address}", *args]


def manager(bus: PrivateBus, method: str, *args: str) -> list[str]:
    return busctl(bus, "call", BUS_NAME, OBJECT_PATH, INTERFACE, method, *args)


async def busctl_root(argv: list[str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def unwrap(value: Any) -> Any:
    if hasattr(value, "signature") and hasattr(value, "value"):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


# --- methods, properties, signals ------------------------------------------------------------


def test_state_changing_methods_signals_and_properties(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            got = await client.ok(
                "Get", "ss", [INTERFACE, "State"], "org.freedesktop.DBus.Properties"
            )
            assert unwrap(got[0]) == "active"
            for member, state in [("Drain", "draining"), ("Stop", "stopped"), ("Start", "active"),
                                  ("Drain", "draining"), ("Resume", "active")]:  # fmt: skip
                assert await client.ok(member) == []
                sig = await client.wait_signal("StateChanged")
                assert sig.interface == INTERFACE and sig.body == [state]
                changed = await client.wait_signal("PropertiesChanged")
                assert changed.body[0] == INTERFACE
                assert unwrap(changed.body[1]) == {"State": state}
                got = await client.ok(
                    "Get", "ss", [INTERFACE, "State"], "org.freedesktop.DBus.Properties"
                )
                assert unwrap(got[0]) == state
            assert await client.ok("Reload") == []
            assert ctrl.calls == ["drain", "stop", "start", "drain", "resume", "reload"]
            props = unwrap(
                (await client.ok("GetAll", "s", [INTERFACE], "org.freedesktop.DBus.Properties"))[0]
            )
            assert props == {"State": "active", "RunningPilots": 1}

    run(scenario())


def test_status_and_list_pilots(bus: PrivateBus) -> None:
    async def scenario() -> None:
        ctrl = FakeController()
        ctrl.events.emit(Event(EventKind.PILOT_STARTED, "started", pilot="p1", pool="default"))
        async with served(bus, ctrl) as (_ctrl, _svc, client):
            (status,) = await client.ok("Status")
            s = unwrap(status)
            assert s["state"] == "active"
            assert s["summary"] == ctrl.status().summary()
            assert s["docker_ok"] is True
            assert s["pilots"] == 2
            assert s["ncpus"] == 2
            assert s["owner_cpu"] == pytest.approx(0.25)
            assert s["capacity_cpus"] == pytest.approx(0.5)
            assert s["version"] == "0.1.0"
            assert s["config_path"] == "/etc/plancton/config.yaml"
            assert 40 <= s["uptime_s"] < 600
            assert s["started_usec"] == round(ctrl.started * 1e6)
            assert [p["name"] for p in s["pools"]] == ["default", "wq"]
            assert s["pools"][1]["note"] == "backing off"
            assert s["pools"][1]["backoff_until_usec"] > s["pools"][0]["backoff_until_usec"] == 0
            assert s["recent_events"][-1]["event"] == "pilot-started"
            assert s["recent_events"][-1]["pilot"] == "p1"

            (pilots,) = await client.ok("ListPilots")
            assert pilots[0][:5] == [
                "plancton-default-3f2a",
                "3f2a" * 16,
                "default",
                "running",
                "busybox:latest",
            ]
            assert pilots[0][5] == round(ctrl.pilot_list[0].started * 1e6)
            assert pilots[0][6] == pytest.approx(0.93)
            assert pilots[1][3] == "frozen"

    run(scenario())


def test_pilot_signals_and_running_pilots(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            ev = ctrl.events
            ctrl.pilot_list.append(
                PilotInfo(
                    "abcd" * 16, "plancton-default-abcd", "default", "running", 0.0, 0.0, "busybox"
                )
            )
            ev.emit(
                Event(
                    EventKind.PILOT_STARTED,
                    "up",
                    pilot="plancton-default-abcd",
                    pilot_id="abcd" * 16,
                    pool="default",
                )
            )
            sig = await client.wait_signal("PilotStarted")
            assert sig.body == ["plancton-default-abcd", "abcd" * 16, "default"]
            changed = await client.wait_signal("PropertiesChanged")
            assert unwrap(changed.body[1]) == {"RunningPilots": 2}

            ev.emit(
                Event(
                    EventKind.PILOT_EXITED, "done", pilot="a", pilot_id="1", pool="x", exit_code=3
                )
            )
            assert (await client.wait_signal("PilotExited")).body == ["a", "1", "x", 3]
            ev.emit(
                Event(
                    EventKind.PILOT_STOPPED, "ttl", pilot="b", pilot_id="2", pool="x", reason="ttl"
                )
            )
            assert (await client.wait_signal("PilotStopped")).body == ["b", "2", "x", "ttl", -1]
            ev.emit(
                Event(
                    EventKind.PILOT_KILLED,
                    "owner",
                    pilot="c",
                    pilot_id="3",
                    pool="x",
                    reason="owner-cpu",
                    exit_code=137,
                )
            )
            assert (await client.wait_signal("PilotKilled")).body == [
                "c",
                "3",
                "x",
                "owner-cpu",
                137,
            ]
            ev.emit(
                Event(
                    EventKind.PILOT_FROZEN,
                    "owner",
                    pilot="d",
                    pilot_id="4",
                    pool="x",
                    reason="owner-cpu",
                )
            )
            assert (await client.wait_signal("PilotFrozen")).body == ["d", "4", "x", "owner-cpu"]
            ev.emit(
                Event(
                    EventKind.PILOT_THAWED,
                    "gone",
                    pilot="d",
                    pilot_id="4",
                    pool="x",
                    reason="owner-gone",
                )
            )
            assert (await client.wait_signal("PilotThawed")).body == ["d", "4", "x", "owner-gone"]
            # Events without a D-Bus signal are silently fine.
            ev.emit(Event(EventKind.DOCKER_LOST, "gone"))
            (props,) = await client.ok(
                "Get", "ss", [INTERFACE, "RunningPilots"], "org.freedesktop.DBus.Properties"
            )
            assert unwrap(props) == 2

    run(scenario())


def test_properties_cost_one_count_per_event_burst(bus: PrivateBus) -> None:
    """status() and pilots() cost the real supervisor Docker and cgroup reads: they are read once,
    for the seed. After that a burst of events costs one counts(), from memory."""

    async def recounted(ctrl: FakeController, n: int) -> None:
        for _ in range(200):
            if ctrl.reads["counts"] >= n:
                return
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            assert ctrl.reads == {"status": 1, "counts": 1}
            for i in range(10):  # one tick starts ten pilots
                name = f"plancton-default-{i}"
                ctrl.pilot_list.append(
                    PilotInfo(f"{i:064x}", name, "default", "running", 0.0, 0.0, "busybox")
                )
                ctrl.events.emit(Event(EventKind.PILOT_STARTED, "up", pilot=name, pool="default"))
            changed = await client.wait_signal("PropertiesChanged")
            assert unwrap(changed.body[1]) == {"RunningPilots": 11}
            assert ctrl.reads == {"status": 1, "counts": 2}

            for i in range(5):  # a burst that leaves the count as it was: no PropertiesChanged
                ctrl.events.emit(
                    Event(
                        EventKind.PILOT_THAWED,
                        "gone",
                        pilot=f"plancton-default-{i}",
                        pool="default",
                    )
                )
            await recounted(ctrl, 3)
            assert ctrl.reads == {"status": 1, "counts": 3}
            assert await client.ok("Drain") == []
            await client.wait_signal("StateChanged")  # sent after everything the burst sent
            changed_after = [m for m in client.signals if m.member == "PropertiesChanged"]
            assert [unwrap(m.body[1]) for m in changed_after] == [{"State": "draining"}]
            await recounted(ctrl, 4)  # the state change is a burst of its own
            assert ctrl.reads["status"] == 1 and ctrl.reads["pilots"] == 0
            (running,) = await client.ok(
                "Get", "ss", [INTERFACE, "RunningPilots"], "org.freedesktop.DBus.Properties"
            )
            assert unwrap(running) == 11

    run(scenario())


def test_state_change_while_taking_the_name_is_not_lost(bus: PrivateBus) -> None:
    """State is read once and then follows events: one sent while serve() waits for the bus
    must still reach the property."""

    async def scenario() -> None:
        ctrl = FakeController()
        server = await MessageBus(bus_address=bus.address).connect()
        serving = asyncio.ensure_future(serve(ctrl, server))
        await asyncio.sleep(0)  # serve() now waits for the RequestName reply
        assert not serving.done()
        await ctrl.drain()
        service = await serving
        client = await Client.connect(bus.address)
        (state,) = await client.ok(
            "Get", "ss", [INTERFACE, "State"], "org.freedesktop.DBus.Properties"
        )
        assert unwrap(state) == "draining"
        assert ctrl.reads["status"] == 1
        await service.close()
        client.bus.disconnect()
        server.disconnect()

    run(scenario())


# --- errors ----------------------------------------------------------------------------------


def test_reload_error_and_unexpected_exception_are_named_errors(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            ctrl.reload_error = (
                "/etc/plancton/config.yaml: pools.default.cpus: line 4: expected a number"
            )
            name, text = await client.error("Reload")
            assert name == dbus_errors.FAILED
            assert text == ctrl.reload_error

            ctrl.crash = ZeroDivisionError("boom")
            for member in ["Drain", "Status", "ListPilots"]:
                name, text = await client.error(member)
                assert name == dbus_errors.FAILED
                assert "ZeroDivisionError" in text
                assert "Traceback" not in text and "File " not in text
            ctrl.crash = None
            assert unwrap((await client.ok("Status"))[0])["state"] == "active"

    run(scenario())


def test_malformed_calls_are_rejected_and_the_service_lives_on(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            name, text = await client.error("Drain", "s", ["now"])
            assert name == dbus_errors.INVALID_ARGS and "(s)" in text
            name, _ = await client.error("Status", "a{sv}", [{}])
            assert name == dbus_errors.INVALID_ARGS
            name, _ = await client.error("NoSuchMethod")
            assert name == "org.freedesktop.DBus.Error.UnknownMethod"
            name, _ = await client.error(
                "Set",
                "ssv",
                [INTERFACE, "State", _variant("s", "x")],
                "org.freedesktop.DBus.Properties",
            )
            assert name == "org.freedesktop.DBus.Error.PropertyReadOnly"
            # The same through the standard tools.
            rc, _, err = await busctl_root(manager(bus, "Stop", "u", "7"))
            assert rc != 0 and "Stop takes ()" in err
            proc = await asyncio.create_subprocess_exec(
                "dbus-send", f"--bus={bus.address}", "--print-reply", f"--dest={BUS_NAME}", OBJECT_PATH,
                f"{INTERFACE}.Resume", "string:x", "int32:3",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err_b = await proc.communicate()
            assert proc.returncode != 0 and dbus_errors.INVALID_ARGS in err_b.decode()
            # A call whose reply nobody waits for still acts, and sends nothing back.
            assert await client.call("Drain", flags=MessageFlag.NO_REPLY_EXPECTED) is None
            await client.wait_signal("StateChanged")
            assert ctrl.calls == ["drain"]
            assert unwrap((await client.ok("Status"))[0])["state"] == "draining"

    run(scenario())


# --- text that cannot be sent, one-way calls ----------------------------------------------------


def test_unsendable_text_gets_an_answer_and_fixing_it_cures_status(bus: PrivateBus) -> None:
    """A lone surrogate (a config key read with surrogateescape) in last_error and in an event:
    Status answers Failed instead of nothing, the event was made safe as it entered, and once
    the text is fixed Status answers normally again. A NUL never reaches the wire either: the bus
    would drop planctond for it."""

    async def scenario() -> None:
        async with served(bus) as (ctrl, service, client):
            good = ctrl.status()
            ctrl.report = dataclasses.replace(good, last_error="config.yaml: pools.\udcff: unknown")
            ctrl.events.emit(Event(EventKind.CONFIG_REJECTED, "key '\udcff\x00' is unknown"))
            name, text = await client.error("Status")
            assert name == dbus_errors.FAILED
            assert "last_error" in text and "not UTF-8" in text and "journal" in text
            assert (await client.ok("ListPilots"))[0]  # the other members go on as before

            ctrl.report = dataclasses.replace(good, docker_error="a\x00b")
            name, text = await client.error("Status")
            assert name == dbus_errors.FAILED and "docker_error: a NUL character" in text
            assert service.bus.connected

            # Text that got past the Event's own check (here by force) is still caught.
            sneaky = Event(EventKind.IMAGE, "fine")
            object.__setattr__(sneaky, "message", "pull \udcff")
            ctrl.events.recent.append(sneaky)
            name, text = await client.error("Status")
            assert name == dbus_errors.FAILED and "recent_events" in text
            ctrl.events.recent.remove(sneaky)

            ctrl.report = None  # the config is fixed
            s = unwrap((await client.ok("Status"))[0])
            assert s["last_error"] == ""
            assert s["recent_events"][-1]["message"] == "key '\\udcff\\x00' is unknown"

    run(scenario())


def test_a_reply_that_fails_to_marshal_is_answered_failed(
    bus: PrivateBus, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the check before the wire, dbus-next's marshaller raises while sending: the caller
    still gets Failed, and the journal says why."""
    monkeypatch.setattr(dbus_service, "unsendable", lambda body: None)

    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            ctrl.report = dataclasses.replace(ctrl.status(), version="0.1\udcff")
            name, text = await client.error("Status")
            assert name == dbus_errors.FAILED
            assert "could not be sent (UnicodeEncodeError)" in text
            ctrl.report = None
            assert unwrap((await client.ok("Status"))[0])["version"] == "0.1.0"

    run(scenario())
    assert any(
        "reply to Status" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    )


def _one_way(member: str) -> Message:
    return Message(destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member=member,
                   flags=MessageFlag.NO_REPLY_EXPECTED)  # fmt: skip


def test_one_way_calls_from_callers_that_leave_act_or_say_why(
    bus: PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    """`dbus-send` without --print-reply, and a connection that sends and hangs up at once: the
    bus forgets who they were, so their uid may no longer be checkable. Either the action happens
    or a warning names the member, the sender and why; never silence."""
    caplog.set_level(logging.INFO, logger=dbus_service.__name__)

    def refusal(member: str, sender: str = ":1.") -> str | None:
        for r in caplog.records:
            line = r.getMessage()
            if r.levelno == logging.WARNING and f"refused {member} from {sender}" in line:
                return line
        return None

    async def settled(ctrl: FakeController, member: str, sender: str = ":1.") -> str | None:
        for _ in range(500):
            if member.lower() in ctrl.calls or refusal(member, sender):
                return refusal(member, sender)
            await asyncio.sleep(0.01)
        raise AssertionError(f"one-way {member}: neither done nor refused in the log")

    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, client):
            proc = await asyncio.create_subprocess_exec(
                # --type=method_call: without it (and without --print-reply) dbus-send sends a
                # signal, which is nobody's call.
                "dbus-send", f"--bus={bus.address}", "--type=method_call", f"--dest={BUS_NAME}",
                OBJECT_PATH, f"{INTERFACE}.Drain",
            )  # fmt: skip
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            line = await settled(ctrl, "Drain")
            assert line is None or "left the bus" in line, line

            gone = await MessageBus(bus_address=bus.address).connect()
            sender = str(gone.unique_name)
            await gone.send(_one_way("Stop"))  # written to the socket; then hang up at once
            gone.disconnect()
            line = await settled(ctrl, "Stop", sender)
            assert line is None or "left the bus" in line, line

            # A one-way caller that stays is checked, and what fails is logged, not dropped.
            ctrl.reload_error = "config.yaml: line 3: expected a number"
            assert await client.call("Reload", flags=MessageFlag.NO_REPLY_EXPECTED) is None
            for _ in range(500):
                if any("(one-way call) failed" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
            (failed,) = [
                r.getMessage() for r in caplog.records if "(one-way call) failed" in r.getMessage()
            ]
            assert failed.startswith(f"Reload from {client.bus.unique_name} ")
            assert failed.endswith(ctrl.reload_error)
            assert unwrap((await client.ok("Status"))[0])["state"] in (
                "active",
                "draining",
                "stopped",
            )

    run(scenario())


def _variant(sig: str, value: Any) -> Any:
    from dbus_next.signature import Variant

    return Variant(sig, value)


def test_many_concurrent_calls_and_vanishing_callers(bus: PrivateBus) -> None:
    """Anyone may call Status: a burst from several callers must not knock the service off the
    bus (dbus-next 0.2.3 drops a connection whose socket buffer fills; see dbus_private)."""

    async def flood(n: int) -> list[Message | None]:
        c = await Client.connect(bus.address)
        try:
            # Below the bus's 128 pending replies per connection.
            return await asyncio.gather(
                *(c.call("Status" if i % 3 else "ListPilots") for i in range(n))
            )
        finally:
            c.bus.disconnect()

    async def scenario() -> None:
        ctrl = FakeController()
        ctrl.pilot_list *= 100  # big ListPilots replies fill the socket sooner
        async with served(bus, ctrl) as (ctrl, service, client):
            batches = await asyncio.wait_for(asyncio.gather(*(flood(100) for _ in range(8))), 60)
            replies = [r for batch in batches for r in batch]
            assert len(replies) == 800
            assert all(
                r is not None and r.message_type is MessageType.METHOD_RETURN for r in replies
            )
            assert service.bus.connected
            # Callers that hang up before the answer do not hurt the service.
            ctrl.hang = asyncio.Event()
            for _ in range(5):
                gone = await Client.connect(bus.address)
                gone.bus.send(
                    Message(
                        destination=BUS_NAME, path=OBJECT_PATH, interface=INTERFACE, member="Drain"
                    )
                )
                await asyncio.sleep(0.05)
                gone.bus.disconnect()
            ctrl.hang.set()
            ctrl.hang = None
            await asyncio.sleep(0.2)
            assert unwrap((await client.ok("Status"))[0])["state"] == "draining"
            assert service._dispatcher._tasks == set()  # nothing left running

    run(scenario())


def test_call_in_flight_at_close_gets_an_answer(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (ctrl, service, client):
            ctrl.hang = asyncio.Event()
            pending = asyncio.ensure_future(client.error("Drain"))
            for _ in range(200):
                if ctrl.calls:
                    break
                await asyncio.sleep(0.01)
            assert ctrl.calls == ["drain"] and not pending.done()
            await service.close()
            name, text = await asyncio.wait_for(pending, 10)
            assert name == dbus_errors.FAILED and "shutting down" in text

    run(scenario())


# --- authorization ---------------------------------------------------------------------------


def test_unprivileged_caller_refused_by_policy(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (ctrl, _svc, _client):
            for member in STATE_CHANGING:
                name, text = await call_as("nobody", "nogroup", member, bus)
                assert name == "org.freedesktop.DBus.Error.AccessDenied", text  # the bus said no
            rc, _, err = await run_as("nobody", "nogroup", manager(bus, "Drain"), bus)
            assert rc != 0 and "Access denied" in err, err
            # Reading stays open to everyone.
            rc, out, err = await run_as("nobody", "nogroup", manager(bus, "Status"), bus)
            assert rc == 0, err
            assert '"state" s "active"' in out
            rc, out, err = await run_as("nobody", "nogroup", manager(bus, "ListPilots"), bus)
            assert rc == 0 and "plancton-default-3f2a" in out, err
            rc, out, err = await run_as(
                "nobody",
                "nogroup",
                busctl(bus, "get-property", BUS_NAME, OBJECT_PATH, INTERFACE, "State"),
                bus,
            )
            assert rc == 0 and out.strip() == 's "active"', err
            rc, out, err = await run_as(
                "nobody",
                "nogroup",
                busctl(bus, "introspect", BUS_NAME, OBJECT_PATH, INTERFACE),
                bus,
            )
            assert rc == 0 and ".Drain" in out, err
            assert ctrl.calls == []

    run(scenario())


def test_daemon_checks_the_uid_again(bus: PrivateBus) -> None:
    """Root passes the policy; a daemon configured to trust nobody still refuses it."""

    async def scenario() -> None:
        strict = Authorizer(admin_group="planctond-test-no-such-group", allowed_uids=frozenset())
        async with served(bus, authorizer=strict) as (ctrl, _svc, client):
            for member in STATE_CHANGING:
                name, text = await client.error(member)
                assert name == dbus_errors.ACCESS_DENIED
                assert member in text and "planctond-test-no-such-group" in text
            assert unwrap((await client.ok("Status"))[0])["state"] == "active"
            assert ctrl.calls == []

    run(scenario())


def test_admin_group_member_may_control() -> None:
    """With the policy's admin group mapped to `nogroup`, nobody (primary group nogroup) is an
    admin for both the bus and the daemon; `daemon` (not in it) is still refused by the policy."""

    async def scenario(bus: PrivateBus) -> None:
        async with served(bus, authorizer=Authorizer(admin_group="nogroup")) as (ctrl, _svc, _c):
            rc, _, err = await run_as("nobody", "nogroup", manager(bus, "Drain"), bus)
            assert rc == 0, err
            assert ctrl.calls == ["drain"]
            name, _ = await call_as("daemon", "daemon", "Stop", bus)
            assert name == "org.freedesktop.DBus.Error.AccessDenied"
            assert ctrl.calls == ["drain"]

    with private_system_bus(admin_group="nogroup") as bus:
        run(scenario(bus))


def test_admin_group_member_refused_by_daemon_when_not_in_its_group() -> None:
    """Policy lets nobody through (group nogroup), the daemon's own group check does not."""

    async def scenario(bus: PrivateBus) -> None:
        async with served(bus) as (ctrl, _svc, _c):  # default Authorizer: plancton-admin
            name, text = await call_as("nobody", "nogroup", "Drain", bus)
            assert name == dbus_errors.ACCESS_DENIED, text
            assert "plancton-admin" in text
            assert ctrl.calls == []

    with private_system_bus(admin_group="nogroup") as bus:
        run(scenario(bus))


def _supplementary_member() -> tuple[str, str, str] | None:
    """(user, primary group, other group) for some user that is a supplementary member of a
    group on this machine, found in the real user database."""
    for g in grp.getgrall():
        for user in g.gr_mem:
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                continue
            if pw.pw_gid != g.gr_gid:
                return user, grp.getgrgid(pw.pw_gid).gr_name, g.gr_name
    return None


def test_authorizer_rule() -> None:
    default = Authorizer()
    assert default.may_control(0)
    assert not default.may_control(65534)
    assert not default.may_control(4_000_000)  # no such user
    assert not Authorizer(allowed_uids=frozenset()).may_control(0)
    assert Authorizer(admin_group="nogroup").may_control(65534)  # primary group counts


def test_supplementary_group_member_is_admin_for_bus_and_daemon() -> None:
    """A supplementary member (as after `usermod -aG plancton-admin USER` and a new login) may
    control. The bus checks the calling process's groups, the daemon the user database: a
    process started before the user joined the group is refused by the bus."""
    found = _supplementary_member()
    if found is None:
        pytest.skip("no user with a supplementary group on this machine")
    user, primary, group = found
    uid = pwd.getpwnam(user).pw_uid
    assert Authorizer(admin_group=group).may_control(uid)
    assert not Authorizer(admin_group=primary + "-not").may_control(uid)

    async def scenario(bus: PrivateBus) -> None:
        async with served(bus, authorizer=Authorizer(admin_group=group)) as (ctrl, _svc, _c):
            name, text = await call_as(user, primary, "Drain", bus, login_groups=True)
            assert name is None, text
            assert ctrl.calls == ["drain"]
            name, _ = await call_as(user, primary, "Resume", bus)  # groups not (yet) in creds
            assert name == "org.freedesktop.DBus.Error.AccessDenied"
            assert ctrl.calls == ["drain"]

    with private_system_bus(admin_group=group) as bus:
        run(scenario(bus))


_OWN_SCRIPT = """
import asyncio
from dbus_next.aio.message_bus import MessageBus
from dbus_next.errors import DBusError
async def main():
    bus = await MessageBus(bus_type=__import__("dbus_next").BusType.SYSTEM).connect()
    try:
        print(await bus.request_name("org.plancton"))
    except DBusError as e:
        print(e.type)
asyncio.run(main())
"""


_SERVE_SCRIPT = """
import asyncio, sys
from dbus_next import BusType
from dbus_next.aio.message_bus import MessageBus
from planctond.control.dbus_service import serve
from tests.support.fake_controller import FakeController
async def main():
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    await serve(FakeController(), bus)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def test_service_runs_as_the_unprivileged_service_user() -> None:
    """As in production: the daemon is not root (`plancton`, mapped to nobody here), owns the
    name by policy, and still tells root (allowed) from another uid (refused)."""

    async def scenario(bus: PrivateBus) -> None:
        env = {
            **bus.env(),
            "PYTHONPATH": str(code_root_for_others()),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        proc = await asyncio.create_subprocess_exec(
            *as_user("nobody", "nogroup", [sys.executable, "-c", _SERVE_SCRIPT]),
            cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line == b"ready\n", (await proc.stderr.read()).decode() if proc.stderr else ""
            client = await Client.connect(bus.address)
            owner = (await client.call_bus("GetNameOwner", "s", [BUS_NAME])).body[0]
            uid = (await client.call_bus("GetConnectionUnixUser", "s", [owner])).body[0]
            assert uid == 65534
            assert await client.ok("Drain") == []  # root
            assert unwrap((await client.ok("Status"))[0])["state"] == "draining"
            name, _ = await call_as("daemon", "daemon", "Resume", bus)
            assert name == "org.freedesktop.DBus.Error.AccessDenied"
            name, value = await call_as("daemon", "daemon", "Status", bus)
            assert name is None and value["state"] == "draining"
            client.bus.disconnect()
        finally:
            proc.stdin.close()
            await asyncio.wait_for(proc.wait(), 30)

    with private_system_bus(service_user="nobody") as bus:
        run(scenario(bus))


def test_only_root_may_own_the_name(bus: PrivateBus) -> None:
    async def scenario() -> None:
        rc, out, err = await run_as("nobody", "nogroup", [sys.executable, "-c", _OWN_SCRIPT], bus)
        assert rc == 0, err
        assert out.strip() == "org.freedesktop.DBus.Error.AccessDenied"

    run(scenario())


def test_name_taken_is_a_clear_error_and_close_releases_it(bus: PrivateBus) -> None:
    async def scenario() -> None:
        async with served(bus) as (_ctrl, service, client):
            other = await MessageBus(bus_address=bus.address).connect()
            with pytest.raises(BusNameError, match="already owned"):
                await serve(FakeController(), other)
            # The failed attempt left the first service intact.
            assert unwrap((await client.ok("Status"))[0])["state"] == "active"
            await service.close()
            for _ in range(100):
                (has,) = (await client.call_bus("NameHasOwner", "s", [BUS_NAME])).body
                if not has:
                    break
                await asyncio.sleep(0.05)
            assert not has
            second = await serve(FakeController(), other)  # now it can take over
            assert unwrap((await client.ok("Status"))[0])["state"] == "active"
            await second.close()
            other.disconnect()

    run(scenario())


def test_policy_denial_of_ownership_is_a_clear_error(bus: PrivateBus) -> None:
    async def scenario() -> None:
        server = await MessageBus(bus_address=bus.address).connect()
        with pytest.raises(BusNameError, match=r"not allowed to own org\.plancton\.Test"):
            await serve(FakeController(), server, name="org.plancton.Test")
        server.disconnect()

    run(scenario())


# --- introspection ---------------------------------------------------------------------------


def _members(iface: intr.Interface) -> dict[str, Any]:
    def args(a: list[intr.Arg]) -> list[tuple[str | None, str, str]]:
        return [(x.name, x.signature, x.direction.value) for x in a]

    return {
        "methods": sorted((m.name, args(m.in_args), args(m.out_args)) for m in iface.methods),
        "signals": sorted((s.name, args(s.args)) for s in iface.signals),
        "properties": sorted((p.name, p.signature, p.access.value) for p in iface.properties),
    }


def test_running_service_matches_introspection_xml(bus: PrivateBus) -> None:
    shipped = intr.Node.parse((ROOT / "dbus" / "org.plancton.Manager1.xml").read_text())
    (expected,) = [i for i in shipped.interfaces if i.name == INTERFACE]

    async def scenario() -> None:
        async with served(bus) as (_ctrl, _svc, client):
            node = await client.bus.introspect(BUS_NAME, OBJECT_PATH)
            (live,) = [i for i in node.interfaces if i.name == INTERFACE]
            assert _members(live) == _members(expected)

    run(scenario())
