"""Docker going away and coming back, calls that time out, and events that arrive late, twice,
out of order or for pilots we never saw: what only a fake engine can produce on demand.

tests/integration/test_daemon_pilots.py covers Docker unreachable at start and lost while
running against a real dockerd behind a cuttable socket proxy.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from planctond import constants as C
from planctond.engine.errors import EngineUnavailable
from planctond.engine.port import ContainerEvent
from planctond.supervisor.events import EventKind
from tests.support.fake_engine import Behaviour
from tests.support.supervisor_rig import INSTANCE, Rig, virtual


@virtual
async def test_docker_unreachable_at_start_is_waited_out(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, run=False)
    rig.engine.go_down()
    rig.run()
    await rig.idle(120)
    assert len(rig.kinds(EventKind.DOCKER_LOST)) == 1, "said once, not per retry"
    assert not rig.s.status().docker_ok
    assert "cannot connect" in rig.s.status().docker_error
    assert rig.s.status().summary().startswith("waiting for Docker")
    tries = len(rig.engine.ops("info"))
    assert 5 <= tries <= 10, f"retries back off to {C.DOCKER_RETRY_MAX}s: {tries}"
    rig.engine.come_back()
    took = await rig.until(lambda: len(rig.running()) == 3, 60, "pilots once Docker is back")
    assert took <= C.DOCKER_RETRY_MAX + 2
    assert len(rig.kinds(EventKind.DOCKER_BACK)) == 1
    await rig.shutdown()


@virtual
async def test_docker_lost_while_running_keeps_pilots_and_reconciles(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.go_down()
    await rig.until(lambda: rig.kinds(EventKind.DOCKER_LOST), 2, "lost")
    # While it is away one pilot ends; nobody can tell us.
    victim = rig.running()[0]
    rig.engine.exit(victim.id, 0)
    await rig.idle(60)
    assert len(rig.kinds(EventKind.DOCKER_LOST)) == 1
    assert not rig.kinds(EventKind.PILOT_STOPPED), "pilots are kept while Docker is away"
    rig.engine.come_back()
    await rig.until(lambda: rig.kinds(EventKind.DOCKER_BACK), 40, "back")
    await rig.until(lambda: len(rig.running()) == 3, 5, "the ended pilot replaced")
    (exited,) = rig.kinds(EventKind.PILOT_EXITED)
    assert exited.pilot_id == victim.id, "found by the reconciling list"
    assert len(rig.pilots()) == 3
    await rig.shutdown()


@virtual
async def test_a_timed_out_list_hands_the_question_to_the_connection_loop(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    infos = len(rig.engine.ops("info"))
    rig.engine.fail("list_pilots", EngineUnavailable("list pilots: read timed out"))
    await rig.until(lambda: len(rig.engine.ops("info")) > infos, 20, "a re-check with info")
    await rig.idle(20)
    assert rig.s.status().docker_ok, "Docker answered the re-check: not lost"
    assert len(rig.running()) == 3
    await rig.shutdown()


@virtual
async def test_early_exit_before_create_returns_is_reported_once(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, run=False)
    rig.engine.latency["create_and_start"] = 0.0
    rig.engine.behaviour = lambda spec: Behaviour(runs_for=0.0, exit_code=0)
    rig.run()
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_EXITED)) >= 3, 5, "exits")
    await rig.idle(1)
    ids = [e.pilot_id for e in rig.kinds(EventKind.PILOT_EXITED)]
    assert len(ids) == len(set(ids)), "each exit once"
    started = {e.pilot_id for e in rig.kinds(EventKind.PILOT_STARTED)}
    assert set(ids) <= started
    await rig.shutdown()


@virtual
async def test_duplicate_and_out_of_order_events_change_nothing(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    c = rig.running()[0]
    attrs = {**c.labels, "name": c.name, "image": c.image}
    rig.engine.hold_events = True
    rig.engine.exit(c.id, 0)
    rig.engine.inject(ContainerEvent("die", c.id, attrs, 0))  # a duplicate
    rig.engine.release_events(lambda held: list(reversed(held)))
    await rig.until(lambda: rig.kinds(EventKind.PILOT_EXITED), 2, "the exit")
    # Late events for the pilot that is gone: a start and an unpause must not revive it.
    rig.engine.inject(ContainerEvent("start", c.id, attrs))
    rig.engine.inject(ContainerEvent("unpause", c.id, attrs))
    await rig.idle(30)
    assert len(rig.kinds(EventKind.PILOT_EXITED)) == 1
    assert rig.s.registry.get(c.id) is None or rig.s.registry.get(c.id).ended is False
    assert len(rig.running()) == 3
    await rig.shutdown()


@virtual
async def test_pilot_removed_behind_our_back_is_no_failure(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    c = rig.running()[0]
    attrs = {**c.labels, "name": c.name, "image": c.image}
    del rig.engine.containers[c.id]
    rig.engine.inject(ContainerEvent("destroy", c.id, attrs))
    await rig.until(lambda: len(rig.running()) == 3, 2, "replaced")
    (exited,) = rig.kinds(EventKind.PILOT_EXITED)
    assert exited.exit_code is None
    assert not rig.kinds(EventKind.POOL_BACKOFF)
    await rig.shutdown()


@virtual
async def test_start_event_of_an_unknown_pilot_adopts_it(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    await rig.idle(2)
    labels = {
        C.LABEL_MANAGED: "1",
        C.LABEL_INSTANCE: INSTANCE,
        C.LABEL_POOL: "default",
        C.LABEL_CPUS: "nan",  # a forged label must not poison the accounting
    }
    cid = rig.engine.run_container("plancton-default-late", labels, Behaviour())
    await rig.idle(1)
    assert rig.s.registry.get(cid) is not None
    assert rig.s.registry.get(cid).cpus == 1.0
    await rig.until(lambda: len(rig.pilots()) == 3, 60, "back to max_pilots")
    assert len(rig.kinds(EventKind.PILOT_STOPPED)) == 1
    await rig.shutdown()


@virtual
async def test_a_slow_docker_does_not_starve_the_watchdog(tmp_path: Path) -> None:
    """A dockerd restarting under load may take longer than WatchdogSec to answer a list call:
    the loop is alive meanwhile, so the watchdog is fed; a tick stuck past the stall limit is
    not fed (that is a wedged daemon, which systemd should restart)."""
    rig = await Rig.start(tmp_path)
    await rig.filled()
    beats: list[float] = []
    rig.s.on_heartbeat(lambda: beats.append(asyncio.get_running_loop().time()))
    rig.engine.latency["list_pilots"] = 45.0
    t0 = asyncio.get_running_loop().time()
    await rig.idle(60)
    gaps = [b - a for a, b in zip([t0, *beats], beats, strict=False)]
    assert beats and max(gaps) <= C.HEARTBEAT + 0.5, f"longest silence {max(gaps):.1f} s"
    rig.engine.latency["list_pilots"] = C.TICK_STALL_LIMIT + 60
    await rig.idle(30)  # the slow list above ends; the next full tick hangs past the limit
    beats.clear()
    await rig.idle(C.TICK_STALL_LIMIT + 20)
    t_end = asyncio.get_running_loop().time()
    assert not beats or t_end - beats[-1] >= 15, "a wedged tick went on feeding the watchdog"
    rig.engine.latency["list_pilots"] = 0.0
    await rig.shutdown()
