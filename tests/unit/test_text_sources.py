"""Text is made safe where it enters the daemon: Docker's names, labels, events and error
explanations (engine/docker_engine.py), every event (supervisor/events.py), every D-Bus error
text (control/dbus_errors.py); and the D-Bus dispatcher's last check before the wire
(control/dbus_marshal.unsendable) finds whatever slipped through."""

from __future__ import annotations

from typing import Any

import pytest
from dbus_next.signature import Variant

from planctond.control import dbus_errors
from planctond.control.dbus_marshal import MAX_REPLY_BYTES, unsendable
from planctond.engine.docker_engine import DockerEngine, _translate, container_event
from planctond.engine.errors import EngineError
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import Event, EventBus, EventKind
from planctond.text import is_safe_text
from tests.unit.test_engine_errors import http_error

BAD = "bad \udcff\x00\x1b[2J\n"
ESCAPED = "bad \\udcff\\x00\\x1b[2J\\n"


def test_events_only_ever_hold_safe_text() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    bus.emit(
        Event(
            EventKind.CONFIG_REJECTED,
            BAD,
            pilot=BAD,
            pilot_id=BAD,
            pool=BAD,
            reason=BAD,
            state=BAD,
            extra={BAD: BAD},
        )
    )
    (event,) = bus.recent
    assert seen == [event]
    assert event.message == event.pilot == event.reason == event.state == ESCAPED
    assert event.extra == {ESCAPED: ESCAPED}
    assert all(is_safe_text(v) for v in event.fields().values())
    assert Event(EventKind.IMAGE, "fine", pool=None).pool is None  # absent stays absent


def test_docker_event_strings_are_made_safe() -> None:
    raw = {
        "Type": "container",
        "Action": "die\x00",
        "Actor": {"ID": "abc\udcff", "Attributes": {"name": BAD, BAD: "x", "exitCode": "3"}},
        "from": "img\n",
    }
    event = container_event(raw)
    assert event is not None
    assert event.id == "abc\\udcff" and event.action == "die\\x00"
    assert event.attrs == {"name": ESCAPED, ESCAPED: "x", "exitCode": "3", "image": "img\\n"}
    assert event.exit_code == 3


def test_docker_error_explanations_are_made_safe() -> None:
    err = _translate(http_error(500, f"driver failed: {BAD}"), "freeze x")
    assert type(err) is EngineError
    assert str(err) == f"freeze x: driver failed: {ESCAPED}"
    assert is_safe_text(str(_translate(RuntimeError(BAD * 1000), "start pilot p")))


class _Stub:
    """docker-py's APIClient, answering the one call a test makes."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.answers[name]

    def close(self) -> None:
        pass


def _engine(**answers: Any) -> DockerEngine:
    engine = DockerEngine(None, "instance-1")
    engine._api = _Stub(**answers)  # as if connected
    return engine


def test_container_names_and_labels_from_docker_are_made_safe() -> None:
    row = {"Id": "9d3f", "Names": [f"/{BAD}"], "State": "running\x07", "Created": 1,
           "Labels": {BAD: BAD}, "Image": "busybox\x00", "Status": "Up 3 seconds"}  # fmt: skip
    (record,) = _engine(containers=[row]).list_pilots()
    assert record.name == ESCAPED and record.state == "running\\x07"
    assert record.labels == {ESCAPED: ESCAPED} and record.image == "busybox\\x00"


def test_a_pull_error_in_the_progress_stream_is_made_safe() -> None:
    engine = _engine(pull=iter([{"status": "Pulling"}, {"error": BAD}]))
    with pytest.raises(EngineError) as caught:
        engine.pull("busybox:latest")
    assert str(caught.value) == f"pull busybox:latest: {ESCAPED}"


@pytest.mark.parametrize(
    "exc",
    [ControlError(BAD), dbus_errors.failed(BAD), dbus_errors.access_denied(BAD), ValueError(BAD)],
)
def test_every_dbus_error_text_is_safe(exc: Exception) -> None:
    err = dbus_errors.translate(exc, "Reload")
    assert err.type in dbus_errors.OUR_ERRORS
    assert is_safe_text(err.text)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ([{"last_error": Variant("s", "x\udcff")}], "last_error: text that is not UTF-8"),
        ([{"a": Variant("aa{sv}", [{"m": Variant("s", "\x00")}])}], "a[0].m: a NUL character"),
        ([[["p\udcff", "id"]]], "[0][0]: text that is not UTF-8"),
        ([{"k\udcff": Variant("s", "v")}], "text that is not UTF-8"),
        (["x" * (MAX_REPLY_BYTES + 1)], f"more than {MAX_REPLY_BYTES} bytes"),
    ],
)
def test_unsendable_names_where(body: list[Any], where: str) -> None:
    found = unsendable(body)
    assert found is not None and found.endswith(where)


def test_sendable_bodies_pass() -> None:
    assert unsendable([]) is None
    assert (
        unsendable([{"s": Variant("s", "é\n\\udcff"), "n": Variant("u", 3)}, [1.5, b"\x00"]])
        is None
    )
