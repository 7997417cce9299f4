"""The owner-first ladder as the supervisor carries it out (freeze, thaw, stop, grace_spawn),
including what only a fake engine can show on demand: a pause that hangs, a pause the freezer
cannot complete, a decision taken while a pause is under way.

tests/integration/test_owner_first.py proves the same against a real dockerd and a real load.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from planctond.engine.errors import Conflict, EngineError
from planctond.policy.model import PilotPhase
from planctond.supervisor.events import EventKind
from tests.support.supervisor_rig import CONFIG, Rig, virtual
from tests.support.virtual_time import EPOCH

# 4 CPUs, reserve 0.5, margin 0.25, 3 pilots of 1 CPU: an owner above 0.75 CPU is in the way.
BUSY = 2.0
CONFIG_MEM = CONFIG.replace("reserve_memory: 0", "reserve_memory: 512M")


@virtual
async def test_owner_load_freezes_then_stops_pilots_and_they_come_back(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.host.owner_cpu = BUSY
    took = await rig.until(lambda: rig.kinds(EventKind.PILOT_FROZEN), 60, "a freeze")
    assert 30 <= took <= 45, "after grace_kill (30 s), at a tick"
    frozen = rig.kinds(EventKind.PILOT_FROZEN)
    assert len(frozen) == 2, "as many as needed: 1.5 spare for 3 entitled"
    assert {e.reason for e in frozen} == {"owner-cpu"}
    assert len(rig.pilots("paused")) == 2
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_STOPPED)) == 2, 30, "stops after freeze")
    assert {e.reason for e in rig.kinds(EventKind.PILOT_STOPPED)} == {"owner-cpu"}
    assert len(rig.pilots()) == 1
    starts = len(rig.engine.ops("create_and_start"))
    rig.host.owner_cpu = 0.0
    took = await rig.until(lambda: len(rig.running()) == 3, 60, "pilots back")
    assert took >= 10, "not before grace_spawn (20 s from the stop)"
    assert len(rig.engine.ops("create_and_start")) == starts + 2
    await rig.shutdown()


@virtual
async def test_owner_leaving_within_freeze_thaws_pilots(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.host.owner_cpu = BUSY
    await rig.until(lambda: rig.kinds(EventKind.PILOT_FROZEN), 60, "a freeze")
    rig.host.owner_cpu = 0.0
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_THAWED)) == 2, 15, "thaws")
    assert len(rig.running()) == 3
    assert not rig.kinds(EventKind.PILOT_STOPPED)
    assert rig.s.counts().frozen == 0
    await rig.shutdown()


@virtual
async def test_brief_owner_spike_shorter_than_grace_kill_changes_nothing(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.host.owner_cpu = BUSY
    await rig.idle(20)
    rig.host.owner_cpu = 0.0
    await rig.idle(60)
    assert not rig.engine.ops("pause")
    assert len(rig.running()) == 3
    await rig.shutdown()


@virtual
async def test_slow_pause_is_not_repeated_and_the_freeze_clock_holds(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.latency["pause"] = 12.0  # Docker takes 12 s to answer each pause
    rig.host.owner_cpu = BUSY
    await rig.until(lambda: rig.s.counts().frozen == 2, 60, "the freeze decided")
    decided = asyncio.get_running_loop().time()
    # An exit elsewhere makes the policy decide again while both pauses are under way.
    other = next(p for p in rig.s.registry.live() if p.phase is PilotPhase.RUNNING)
    rig.engine.exit(other.id, 0)
    await rig.until(lambda: len(rig.engine.ops("pause")) == 2, 15, "the two pauses")
    await rig.idle(5)
    assert len(rig.engine.ops("pause")) == 2, "each victim paused once, not again while pending"
    assert len(rig.kinds(EventKind.PILOT_FROZEN)) == 2
    # The exit made room for one: its thaw, decided while the pauses were pending, waited for
    # its pause to finish and then unpaused it (no unpause of a not-yet-paused container).
    (thawed,) = rig.kinds(EventKind.PILOT_THAWED)
    assert rig.engine.containers[thawed.pilot_id].state == "running"
    await rig.until(lambda: rig.kinds(EventKind.PILOT_STOPPED), 30, "the other one stopped")
    took = rig.kinds(EventKind.PILOT_STOPPED)[0].time - (EPOCH + decided)
    assert 15 <= took < 27, f"freeze (15 s) counts from the decision, not the pause: {took}"
    await rig.shutdown()


@virtual
async def test_pause_the_freezer_cannot_complete_counts_as_frozen_then_stops(
    tmp_path: Path,
) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.fail_always["pause"] = EngineError("freeze: timed out waiting for the freezer")
    rig.host.owner_cpu = BUSY
    await rig.until(lambda: rig.kinds(EventKind.PILOT_FROZEN), 60, "frozen (starved)")
    assert all("starved" in e.message for e in rig.kinds(EventKind.PILOT_FROZEN))
    assert not rig.pilots("paused")
    assert rig.s.counts().frozen == 2, "still frozen for the policy while Docker says running"
    await rig.idle(10)  # full ticks list them as running: they stay frozen for the policy
    assert rig.s.counts().frozen == 2
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_STOPPED)) == 2, 30, "stops")
    assert not rig.engine.ops("unpause"), "a starved pilot was never paused: no unpause before TERM"
    await rig.shutdown()


@virtual
async def test_starved_pilot_thaws_without_an_unpause(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.fail_always["pause"] = Conflict("container is not running")
    rig.host.owner_cpu = BUSY
    await rig.until(lambda: rig.kinds(EventKind.PILOT_FROZEN), 60, "frozen (starved)")
    rig.host.owner_cpu = 0.0
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_THAWED)) == 2, 15, "thaws")
    assert not rig.engine.ops("unpause")
    assert rig.s.counts().running == 3
    await rig.shutdown()


@virtual
async def test_a_frozen_pilot_is_thawed_before_its_sigterm(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.host.owner_cpu = BUSY
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_STOPPED)) == 2, 90, "stops")
    for stop in rig.kinds(EventKind.PILOT_STOPPED):
        ops = [op for op, a in rig.engine.log if a and a[0] == stop.pilot_id]
        assert ops[-3:] == ["unpause", "signal", "remove"], ops
        assert stop.exit_code == 143
    await rig.shutdown()


@virtual
async def test_owner_memory_shortage_stops_one_pilot_per_grace(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, CONFIG_MEM)
    await rig.filled()
    rig.host.mem_available = 100 * 2**20  # below reserve_memory
    await rig.until(lambda: rig.kinds(EventKind.PILOT_FROZEN), 60, "a freeze")
    assert {e.reason for e in rig.kinds(EventKind.PILOT_FROZEN)} == {"owner-memory"}
    assert len(rig.kinds(EventKind.PILOT_FROZEN)) == 1
    await rig.shutdown()


@virtual
async def test_single_pilot_burning_its_cpu_is_not_flapped(tmp_path: Path) -> None:
    """Plancton 0.6 counted the pilot's own load as the owner's and killed it, over and over."""
    rig = Rig(tmp_path, CONFIG.replace('max_pilots: "3"', 'max_pilots: "1"'))
    rig.host.ncpus = 2
    rig.host.pilots_load = lambda: sum(c.cpu_quota or 0.0 for c in rig.running())
    rig.new_supervisor()
    rig.run()
    await rig.until(lambda: len(rig.running()) == 1, 2, "1 pilot")
    await rig.idle(600)
    assert len(rig.kinds(EventKind.PILOT_STARTED)) == 1
    assert not rig.engine.ops("pause") and not rig.engine.ops("signal"), rig.say()
    await rig.shutdown()


@virtual
async def test_owner_cgroup_is_read_from_connect_and_follows_reloads(tmp_path: Path) -> None:
    """`owner.cgroup` reaches the host probe when Docker answers, and again on a reload that
    changes it (and only then), so the owner is measured where the config says from the next
    tick on."""
    scoped = CONFIG.replace("  freeze: 15s\n", "  freeze: 15s\n  cgroup: user.slice\n")
    rig = await Rig.start(tmp_path, scoped)
    await rig.filled()
    assert [owner for _, _, owner in rig.host.attached] == ["user.slice"]
    rig.config_path.write_text(scoped.replace("tick: 10s", "tick: 5s"))
    await rig.s.reload()
    assert [owner for _, _, owner in rig.host.attached] == ["user.slice"]
    rig.config_path.write_text(CONFIG)
    await rig.s.reload()
    assert [owner for _, _, owner in rig.host.attached] == ["user.slice", None]
    (_, loaded) = rig.kinds(EventKind.CONFIG_LOADED)
    assert "owner.cgroup changed; the owner's CPU use is read from the whole host" in loaded.message
    assert len(rig.running()) == 3  # the pilots did not notice
    await rig.shutdown()


@virtual
async def test_the_first_reading_starts_nothing_and_the_next_comes_at_once(tmp_path: Path) -> None:
    """The sensor's first reading after Docker answers covers no time and reads zeros: an owner
    already on every CPU must not meet pilots because of it (`give_way: usage`), and the next
    reading comes within half a second, not a whole 10-s tick later."""
    rig = await Rig.start(tmp_path, run=False)
    rig.host.unmeasured_first = True
    rig.host.owner_cpu = 4.0
    rig.run()
    await rig.idle(30)
    assert not rig.engine.ops("create_and_start"), rig.say()
    t = rig.host.sampled_at
    assert [round(b - a, 1) for a, b in itertools.pairwise(t)][:3] == [0.5, 10.0, 10.0], t
    rig.host.owner_cpu = 0.0
    await rig.until(lambda: len(rig.running()) == 3, 11, "the pool once the owner left")
    await rig.shutdown()


@virtual
async def test_an_idle_host_is_filled_half_a_second_after_the_first_reading(
    tmp_path: Path,
) -> None:
    rig = await Rig.start(tmp_path, run=False)
    rig.host.unmeasured_first = True
    rig.run()
    took = await rig.until(lambda: len(rig.running()) == 3, 5, "the pool")
    assert 0.4 <= took <= 1.5, took
    await rig.shutdown()


@virtual
async def test_a_note_that_comes_back_is_said_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A host-wide note (here: `active_within` with no reading from logind) is said once while
    it holds, and again when it comes back after it stopped holding."""
    caplog.set_level(logging.INFO)
    config = CONFIG.replace("  give_way: usage\n", "  give_way: usage\n  active_within: 60s\n")
    rig = await Rig.start(tmp_path, config)
    await rig.filled()

    def said() -> int:
        return sum("no owner_idle reading from logind" in r.getMessage() for r in caplog.records)

    await rig.idle(30)  # three ticks with the note holding
    assert said() == 1
    rig.host.variables["owner_idle"] = 3600.0  # logind answers: the note no longer holds
    await rig.idle(30)
    assert said() == 1
    del rig.host.variables["owner_idle"]  # and stops answering
    await rig.idle(30)
    assert said() == 2, rig.say()
    await rig.shutdown()
