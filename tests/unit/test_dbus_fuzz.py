"""planctonctl's reply parsing against arbitrary and adversarial replies: whatever a daemon of
another version (or an impostor) sends, planctonctl either prints well-formed text or fails with
one clear line and exit status 1, never a traceback. No bus needed: the parsing is fed the values
dbus-next would unmarshal."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from dbus_next.signature import Variant
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.cli import planctonctl
from planctond.control.dbus_marshal import pilot_to_dbus, status_to_dbus
from planctond.supervisor.events import Event, EventKind
from planctond.text import is_safe_text
from tests.support.fake_controller import FakeController

pytestmark = pytest.mark.timeout(120)

ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=40) | st.just("x" * 50_000)
FLOATS = st.floats(allow_nan=True, allow_infinity=True)
# (signature, values) of what may stand in a variant: right types with hostile values, wrong
# types, containers.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "s": ANY_TEXT,
    "b": st.booleans(),
    "u": st.integers(0, 2**32 - 1),
    "t": st.integers(0, 2**64 - 1),
    "i": st.integers(-(2**31), 2**31 - 1),
    "d": FLOATS,
    "as": st.lists(ANY_TEXT, max_size=3),
    "a{ss}": st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3),
    "a{sv}": st.dictionaries(ANY_TEXT, st.builds(Variant, st.just("u"), st.integers(0, 9))),
}
VARIANTS = st.one_of(*(v.map(lambda x, sig=sig: Variant(sig, x)) for sig, v in VALUES.items()))


def _good() -> tuple[dict[str, Variant], list[list[Any]]]:
    ctrl = FakeController()
    ctrl.events.emit(Event(EventKind.PILOT_STARTED, "up", pilot="p", pool="default"))
    return status_to_dbus(ctrl.status(), ctrl.events.recent), [
        pilot_to_dbus(p) for p in ctrl.pilot_list
    ]


GOOD_STATUS, GOOD_PILOTS = _good()


def _same_type(data: st.DataObject, shape: planctonctl.Shape) -> Variant:
    """A variant of the right type with an arbitrary (often hostile) value."""
    if isinstance(shape, dict):
        n = data.draw(st.integers(0, 3))
        good = {k: _same_type(data, s) for k, s in shape.items()}
        return Variant("aa{sv}", [_mutated(data, good, VARIANTS) for _ in range(n)])
    return Variant(shape, data.draw(VALUES[shape]))


def _mutated(
    data: st.DataObject, good: dict[str, Any], others: st.SearchStrategy[Any]
) -> dict[str, Any]:
    """`good` with some keys dropped, some of another type (drawn from `others`), some added."""
    raw = dict(good)
    for key in data.draw(st.lists(st.sampled_from(sorted(good)), max_size=3)):
        if data.draw(st.booleans()):
            raw.pop(key, None)
        else:
            raw[key] = data.draw(others)
    raw.update(data.draw(st.dictionaries(ANY_TEXT, VARIANTS, max_size=2)))
    return raw


def _renders(status: dict[str, Any] | None, pilots: list[dict[str, Any]]) -> None:
    """Text and JSON output, written as strict UTF-8: a surrogate would raise here."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    if status is None:
        planctonctl.print_pilots(pilots, out, time.time())
    else:
        planctonctl.print_status(status, pilots, out, time.time())
    json.dump({"status": status, "pilots": pilots}, out)
    out.flush()
    assert "\x1b" not in out.buffer.getvalue().decode()  # type: ignore[attr-defined]


def _clear_failure(exc: planctonctl.CtlError) -> None:
    assert exc.code == planctonctl.EXIT_FAILED
    assert str(exc).startswith("unexpected reply from planctond: ")
    assert is_safe_text(str(exc))  # one line, printable


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_status_reply_prints_or_fails_clearly(data: st.DataObject) -> None:
    raw = _mutated(data, GOOD_STATUS, VARIANTS | st.none() | ANY_TEXT)
    for key, shape in planctonctl.STATUS_KEYS.items():
        if key in raw and data.draw(st.booleans()):
            raw[key] = _same_type(data, shape)
    body = data.draw(st.sampled_from([[raw], [], [raw, raw], ["text"], [[raw]]]))
    try:
        status = planctonctl.status_from_dbus(body)
    except planctonctl.CtlError as exc:
        _clear_failure(exc)
        return
    assert body[0] is raw and set(status) == set(planctonctl.STATUS_KEYS)
    _renders(status, [])


PILOT_VALUES = st.one_of(ANY_TEXT, FLOATS, st.integers(-(2**70), 2**70), st.none(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(GOOD_PILOTS),
            st.tuples(
                ANY_TEXT, ANY_TEXT, ANY_TEXT, ANY_TEXT, ANY_TEXT, st.integers(0, 2**64 - 1), FLOATS
            ).map(list),
            st.lists(PILOT_VALUES, max_size=9),
            PILOT_VALUES,
        ),
        max_size=6,
    ),
    st.booleans(),
)
def test_any_pilot_list_prints_or_fails_clearly(pilots: list[Any], wrap: bool) -> None:
    try:
        parsed = planctonctl.pilots_from_dbus([pilots] if wrap else pilots)
    except planctonctl.CtlError as exc:
        _clear_failure(exc)
        return
    assert len(parsed) == len(pilots if wrap else pilots[0])
    _renders(None, parsed)
