"""The owner yield figures and the work lost, as the supervisor measures them: the latency from
the first reading that shows the owner short to the last chosen pilot out of the way, the CPU the
pilots' cgroup used meanwhile, and the CPU-seconds of every pilot we stop.

Virtual time and a scripted host make every figure exact: the pilots' parent counter is their
scripted load integrated over the loop's clock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from planctond.supervisor.events import Event, EventKind
from tests.support.supervisor_rig import CONFIG, Rig, virtual

BUSY = 2.0  # 4 CPUs, reserve 0.5, margin 0.25, 3 pilots of 1 CPU: the owner is in the way
TICK = 10.0
GRACE_KILL = 30.0
PAUSE_TAKES = 2.0
PILOTS_LOAD = 0.5  # CPUs the pilots' cgroup uses throughout (the idle parent keeps it small)


def figures(e: Event) -> tuple[float, float, int]:
    return (
        float(e.extra["latency_seconds"]),
        float(e.extra["pilot_cpu_seconds"]),
        int(e.extra["pilots"]),
    )


async def owner_arrives(rig: Rig) -> float:
    """Just after a tick, so the next reading is the first that shows the owner: returns when."""
    ticks = rig.s._ctx.ticks
    await rig.until(lambda: rig.s._ctx.ticks > ticks, TICK + 1, "a tick")
    await asyncio.sleep(0.5)
    rig.host.owner_cpu = BUSY
    return asyncio.get_running_loop().time()


@virtual
async def test_yield_latency_runs_from_the_reading_to_the_last_pilot_frozen(
    tmp_path: Path,
) -> None:
    rig = await Rig.start(tmp_path)
    rig.host.pilots_load = lambda: PILOTS_LOAD
    rig.engine.latency["pause"] = PAUSE_TAKES
    await rig.filled()
    await rig.idle(25)
    arrived = await owner_arrives(rig)
    await rig.until(lambda: rig.kinds(EventKind.OWNER_YIELD), 120, "the owner yield")
    frozen_at = asyncio.get_running_loop().time()
    (ev,) = rig.kinds(EventKind.OWNER_YIELD)
    latency, cpu, pilots = figures(ev)
    # The reading that first showed the owner began at the tick before it arrived (0.5 s
    # earlier); then grace_kill, the tick the freeze is decided at, and the pause.
    assert latency == pytest.approx(frozen_at - arrived + 0.5, abs=0.1)
    assert GRACE_KILL + PAUSE_TAKES <= latency <= GRACE_KILL + TICK + PAUSE_TAKES + 0.6
    assert cpu == pytest.approx(PILOTS_LOAD * latency, rel=0.02)
    assert (pilots, ev.reason) == (2, "owner-cpu")
    assert len(rig.kinds(EventKind.PILOT_FROZEN)) == 2
    # Stopping the frozen pilots later is no new yield: they were out of the way already.
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_STOPPED)) == 2, 40, "the stops")
    await rig.idle(5)
    assert len(rig.kinds(EventKind.OWNER_YIELD)) == 1
    await rig.shutdown()


@virtual
async def test_a_need_shorter_than_grace_kill_yields_nothing_and_starts_no_clock(
    tmp_path: Path,
) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    await owner_arrives(rig)
    await rig.idle(15)
    rig.host.owner_cpu = 0.0
    await rig.idle(60)
    assert not rig.kinds(EventKind.OWNER_YIELD)
    assert rig.s._yields.episode is None
    arrived = await owner_arrives(rig)
    await rig.until(lambda: rig.kinds(EventKind.OWNER_YIELD), 120, "the owner yield")
    (ev,) = rig.kinds(EventKind.OWNER_YIELD)
    took = asyncio.get_running_loop().time() - arrived
    assert figures(ev)[0] == pytest.approx(took + 0.5, abs=0.1), "from the second need's start"
    await rig.shutdown()


@virtual
async def test_without_freeze_the_yield_ends_when_the_pilots_have_stopped(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, CONFIG.replace("freeze: 15s", "freeze: 0s"))
    await rig.filled()
    arrived = await owner_arrives(rig)
    await rig.until(lambda: rig.kinds(EventKind.OWNER_YIELD), 120, "the owner yield")
    stops = rig.kinds(EventKind.PILOT_STOPPED)
    assert len(stops) == 2 and not rig.kinds(EventKind.PILOT_FROZEN)
    (ev,) = rig.kinds(EventKind.OWNER_YIELD)
    latency = figures(ev)[0]
    term_takes = 0.5  # the fake pilot's exit after SIGTERM
    assert GRACE_KILL + term_takes <= latency <= GRACE_KILL + TICK + term_takes + 1
    assert latency == pytest.approx(asyncio.get_running_loop().time() - arrived + 0.5, abs=0.2)
    await rig.shutdown()


@virtual
async def test_docker_lost_mid_yield_drops_the_episode(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    rig.engine.latency["pause"] = 20.0
    await rig.filled()
    await owner_arrives(rig)
    await rig.until(lambda: rig.s._yields.episode is not None, 60, "an episode")
    await rig.until(
        lambda: (ep := rig.s._yields.episode) is not None and ep.waiting, 60, "victims chosen"
    )
    rig.s._ctx.emit(EventKind.DOCKER_LOST, "gone (test)")
    assert rig.s._yields.episode is None
    await rig.idle(30)
    assert not rig.kinds(EventKind.OWNER_YIELD), "a pause Docker answered late is not measured"
    await rig.shutdown()


@virtual
async def test_pilots_we_stop_report_their_cpu_as_work_lost(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    for n, c in enumerate(rig.pilots()):
        rig.host.pilot_seconds[c.id] = 100.0 + n
    await owner_arrives(rig)
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_STOPPED)) == 2, 120, "two stops")
    lost = sorted(float(e.extra["cpu_seconds"]) for e in rig.kinds(EventKind.PILOT_STOPPED))
    assert len(lost) == 2 and set(lost) <= {100.0, 101.0, 102.0}
    await rig.shutdown(stop_pilots=True)
    (last,) = [e for e in rig.kinds(EventKind.PILOT_STOPPED) if e.reason == "shutdown"]
    assert float(last.extra["cpu_seconds"]) in {100.0, 101.0, 102.0}


@virtual
async def test_pilots_that_end_by_themselves_lose_nothing(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    (c, *_) = rig.pilots()
    rig.host.pilot_seconds[c.id] = 50.0
    rig.engine.exit(c.id, 0)
    await rig.until(lambda: rig.kinds(EventKind.PILOT_EXITED), 5, "the exit")
    (ev,) = rig.kinds(EventKind.PILOT_EXITED)
    assert "cpu_seconds" not in ev.extra
    await rig.shutdown()
