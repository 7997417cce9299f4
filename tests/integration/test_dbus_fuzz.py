"""Manager1's dispatcher on a real dbus-daemon, fed arbitrary calls (any member, signature, body,
flags) and arbitrary controller outputs (text that is not UTF-8, NULs, NaNs, counts out of
range): every call gets a reply or a named error, never a traceback nor silence, and the service
stays on the bus and keeps answering.

One bus, one service and one client serve every example: they live on an event loop in a
thread of their own, and each example (a plain function, as hypothesis wants) runs its
coroutine there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from dbus_next.aio.message_bus import MessageBus
from dbus_next.constants import MessageFlag, MessageType
from dbus_next.signature import Variant
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planctond.control import dbus_errors
from planctond.control.dbus_service import DBusService, serve
from planctond.policy.model import RunState
from planctond.supervisor.api import PilotInfo, PoolStatus, StatusReport
from planctond.supervisor.events import Event, EventKind
from tests.integration.test_dbus_service import Client, unwrap
from tests.support.dbus_daemon import private_system_bus, unavailable_reason
from tests.support.fake_controller import FakeController

pytestmark = [
    pytest.mark.dbus,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.timeout(300),
]

T = TypeVar("T")
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Rig:
    loop: asyncio.AbstractEventLoop
    ctrl: FakeController
    service: DBusService
    client: Client

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dbus-fuzz", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    with private_system_bus() as bus:

        async def up() -> Rig:
            ctrl = FakeController()
            server = await MessageBus(bus_address=bus.address).connect()
            service = await serve(ctrl, server)
            return Rig(loop, ctrl, service, await Client.connect(bus.address))

        r = run(up())
        yield r

        async def down() -> None:
            await r.service.close()
            r.client.bus.disconnect()
            r.service.bus.disconnect()

        run(down())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def alive(r: Rig) -> None:
    """The service is still on the bus and answers a plain Status."""
    assert r.service.bus.connected and r.client.bus.connected
    r.ctrl.report, r.ctrl.reload_error = None, None
    state = unwrap(r.run(r.client.ok("Status"))[0])["state"]
    assert state in {s.value for s in RunState}


# --- arbitrary calls ------------------------------------------------------------------------

# What a client may send: D-Bus strings are UTF-8 without NUL (dbus-daemon drops a client that
# sends otherwise, so those never reach the service).
WIRE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)
ARGS: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("s", WIRE_TEXT),
    ("u", st.integers(0, 2**32 - 1)),
    ("x", st.integers(-(2**63), 2**63 - 1)),
    ("d", st.floats()),
    ("b", st.booleans()),
    ("y", st.integers(0, 255)),
    ("ay", st.binary(max_size=64)),
    ("as", st.lists(WIRE_TEXT, max_size=4)),
    ("a{sv}", st.dictionaries(WIRE_TEXT, WIRE_TEXT.map(lambda s: Variant("s", s)), max_size=3)),
    ("(si)", st.tuples(WIRE_TEXT, st.integers(-(2**31), 2**31 - 1)).map(list)),
    ("v", st.integers(0, 9).map(lambda n: Variant("u", n))),
]
MEMBERS = ["Status", "ListPilots", "Start", "Drain", "Resume", "Stop", "Reload", "NoSuchMember"]
OK_ERRORS = dbus_errors.OUR_ERRORS | {"org.freedesktop.DBus.Error.UnknownMethod"}


@FUZZ
@given(
    member=st.sampled_from(MEMBERS),
    args=st.lists(st.sampled_from(ARGS), max_size=3).flatmap(
        lambda picked: st.tuples(
            st.just("".join(sig for sig, _ in picked)),
            st.tuples(*(values for _, values in picked)).map(list),
        )
    ),
    one_way=st.booleans(),
    reload_error=st.none() | st.text(st.characters(blacklist_categories=()), max_size=30),
)
def test_any_call_gets_a_reply_or_a_named_error(
    rig: Rig, member: str, args: tuple[str, list[Any]], one_way: bool, reload_error: str | None
) -> None:
    signature, body = args
    rig.ctrl.reload_error = reload_error
    flags = MessageFlag.NO_REPLY_EXPECTED if one_way else MessageFlag.NONE
    reply = rig.run(rig.client.call(member, signature, body, flags=flags))
    if one_way:
        assert reply is None
    else:
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            assert reply.error_name in OK_ERRORS, reply.body
            assert "Traceback" not in str(reply.body)
        else:
            assert reply.message_type is MessageType.METHOD_RETURN
            assert signature == "" and member != "NoSuchMember"
    alive(rig)


# --- arbitrary controller outputs -------------------------------------------------------------

ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=30)
COUNTS = st.integers(-(2**70), 2**70)
TIMES = st.floats(allow_nan=True, allow_infinity=True) | st.none()
CPUS = st.floats(allow_nan=True, allow_infinity=True)


def wire_ok(*texts: str) -> bool:
    """Text dbus-daemon accepts as it is: UTF-8 without NUL."""
    try:
        return all("\x00" not in t and t.encode() is not None for t in texts)
    except UnicodeEncodeError:
        return False


POOLS = st.builds(PoolStatus, ANY_TEXT, COUNTS, COUNTS, COUNTS, TIMES, ANY_TEXT)
PILOTS = st.builds(
    PilotInfo,
    ANY_TEXT,
    ANY_TEXT,
    ANY_TEXT,
    ANY_TEXT,
    st.floats(allow_nan=True, allow_infinity=True),
    CPUS,
    ANY_TEXT,
)
REPORTS = st.builds(
    StatusReport,
    state=st.sampled_from(RunState),
    docker_ok=st.booleans(),
    docker_error=ANY_TEXT,
    pools=st.lists(POOLS, max_size=3).map(tuple),
    pilots=COUNTS,
    capacity_cpus=CPUS,
    owner_cpu=CPUS,
    host_cpu=CPUS,
    ncpus=COUNTS,
    started=st.floats(allow_nan=True, allow_infinity=True),
    version=ANY_TEXT,
    config_path=ANY_TEXT,
    last_error=ANY_TEXT,
    last_tick=st.floats(allow_nan=True, allow_infinity=True),
    extra=st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=2),
)


def report_texts(r: StatusReport) -> list[str]:
    texts = [r.docker_error, r.version, r.config_path, r.last_error, *r.extra, *r.extra.values()]
    return texts + [t for p in r.pools for t in (p.name, p.note)]


@FUZZ
@given(
    report=REPORTS,
    pilots=st.lists(PILOTS, max_size=4),
    events=st.lists(
        st.tuples(st.sampled_from(EventKind), ANY_TEXT, ANY_TEXT | st.none()), max_size=4
    ),
)
def test_any_controller_output_gets_a_reply_or_failed(
    rig: Rig, report: StatusReport, pilots: list[PilotInfo], events: list[tuple[Any, str, Any]]
) -> None:
    ctrl = rig.ctrl
    saved = list(ctrl.pilot_list)
    ctrl.report, ctrl.pilot_list = report, pilots
    for kind, message, pool in events:  # emitted from the service's own loop, as the daemon does
        rig.loop.call_soon_threadsafe(ctrl.events.emit, Event(kind, message, pool=pool))
    try:
        status = rig.run(rig.client.call("Status"))
        listed = rig.run(rig.client.call("ListPilots"))
    finally:
        ctrl.pilot_list = saved
    for reply, sendable in (
        (status, wire_ok(*report_texts(report))),
        (listed, wire_ok(*(t for p in pilots for t in (p.id, p.name, p.pool, p.phase, p.image)))),
    ):
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            assert reply.error_name == dbus_errors.FAILED, reply.body
            assert not sendable, reply.body  # only text D-Bus cannot carry costs the reply
        else:
            assert reply.message_type is MessageType.METHOD_RETURN
    alive(rig)
