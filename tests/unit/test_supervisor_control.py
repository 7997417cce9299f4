"""Drain, resume, stop and start through the Controller API, the run state surviving a restart,
config reloads, and what D-Bus reads (status, counts) — on a fake engine and virtual time.

tests/integration/test_supervisor_control.py runs the same control path against a real dockerd.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from planctond.policy.model import RunState
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import EventKind
from tests.support.fake_engine import Behaviour
from tests.support.supervisor_rig import CONFIG, Rig, virtual

SHORT = CONFIG.replace('command: ["sleep", "600"]', 'command: ["sleep", "3"]')


@virtual
async def test_drain_resume_stop_start_and_restart(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, SHORT)
    rig.engine.behaviour = lambda spec: Behaviour(runs_for=30)
    await rig.filled()
    await rig.s.drain()
    assert rig.s.status().state is RunState.DRAINING
    assert rig.s.status().summary().startswith("draining")
    await rig.until(lambda: not rig.pilots(), 40, "drained: pilots finish, none replaced")
    await rig.idle(60)
    assert not rig.pilots()
    assert not rig.kinds(EventKind.PILOT_STOPPED), "draining stops nothing"
    await rig.s.resume()
    await rig.until(lambda: len(rig.running()) == 3, 2, "resumed")
    await rig.s.stop()
    await rig.until(lambda: not rig.pilots(), 10, "stopped")
    assert {e.reason for e in rig.kinds(EventKind.PILOT_STOPPED)} == {"stop-requested"}
    await rig.idle(60)
    assert not rig.pilots()
    states = [e.state for e in rig.kinds(EventKind.STATE_CHANGED)]
    assert states == ["draining", "active", "stopped"]
    await rig.shutdown()

    restarted = rig.new_supervisor()
    assert restarted.run_state is RunState.STOPPED, "survived the restart"
    rig.run()
    await rig.idle(30)
    assert not rig.pilots()
    await restarted.start()
    await rig.until(lambda: len(rig.running()) == 3, 2, "started")
    await rig.shutdown()


@virtual
async def test_start_forgets_backoff_and_grace_spawn(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    rig.engine.behaviour = lambda spec: Behaviour(runs_for=1, exit_code=1)
    await rig.until(lambda: rig.kinds(EventKind.POOL_BACKOFF), 10, "back-off")
    rig.engine.behaviour = lambda spec: Behaviour()
    await rig.s.start()
    took = await rig.until(lambda: len(rig.running()) == 3, 5, "started at once")
    assert took < 2
    await rig.shutdown()


@virtual
async def test_status_and_counts_come_from_memory(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    await rig.idle(11)
    rig.engine.log.clear()
    status = rig.s.status()
    counts = rig.s.counts()
    pilots = rig.s.pilots()
    assert not rig.engine.log, "no Docker request to answer"
    assert status.docker_ok and status.pilots == 3
    assert status.pools[0].running == 3 and status.pools[0].allowed == 3
    assert (counts.running, counts.frozen, counts.stopping) == (3, 0, 0)
    assert [p.phase for p in pilots] == ["running"] * 3
    assert status.extra["instance"] == rig.s.instance
    assert status.summary().startswith("active: 3/3 pilots")
    await rig.shutdown()


@virtual
async def test_config_change_on_disk_is_picked_up(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.write_text(CONFIG.replace('max_pilots: "3"', 'max_pilots: "1"'))
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_LOADED), 10, "reload within config_check")
    # Two pilots too many: stopped after grace_kill, the youngest first.
    await rig.until(lambda: len(rig.pilots()) == 1, 60, "down to max_pilots")
    assert {e.reason for e in rig.kinds(EventKind.PILOT_STOPPED)} == {"over-max-pilots"}
    await rig.shutdown()


@virtual
async def test_bad_reload_keeps_the_last_good_config(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.write_text("pools:\n  default:\n    cpus: lots\n")
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_REJECTED), 10, "rejected")
    with pytest.raises(ControlError, match="cpus"):
        await rig.s.reload()
    assert "cpus" in rig.s.status().last_error
    await rig.idle(60)
    assert len(rig.running()) == 3
    assert len(rig.kinds(EventKind.CONFIG_REJECTED)) == 2, "once per change, once per request"
    rig.config_path.write_text(CONFIG)
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_LOADED), 10, "good again")
    assert rig.s.status().last_error == ""
    await rig.shutdown()


@virtual
async def test_reload_applies_limits_in_place_and_new_spec_to_new_pilots(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.write_text(
        CONFIG.replace("cpus: 1\n", "cpus: 0.5\n").replace('"sleep", "600"', '"sleep", "700"')
    )
    await rig.s.reload()
    (loaded,) = rig.kinds(EventKind.CONFIG_LOADED)
    assert "applied to running pilots in place" in loaded.message
    assert "running pilots finish their work" in loaded.message
    assert len(rig.engine.ops("update_resources")) == 3
    assert {c.cpu_quota for c in rig.running()} == {0.5}
    await rig.shutdown()


@virtual
async def test_removed_pool_pilots_are_stopped(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.write_text(CONFIG.replace("  default:", "  other:"))
    await rig.s.reload()
    await rig.until(
        lambda: len(rig.kinds(EventKind.PILOT_STOPPED)) == 3, 10, "the old pool's pilots stopped"
    )
    assert {e.reason for e in rig.kinds(EventKind.PILOT_STOPPED)} == {"pool-removed"}
    await rig.until(lambda: len(rig.running()) == 3, 10, "the new pool's pilots")
    assert {c.labels["org.plancton.pool"] for c in rig.running()} == {"other"}
    await rig.shutdown()


@virtual
async def test_stop_pilots_on_exit_follows_reloads(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.write_text(CONFIG + "docker:\n  stop_pilots_on_exit: false\n")
    await rig.s.reload()
    await rig.shutdown()
    assert len(rig.running()) == 3


PLANCTON_06 = (
    Path(__file__).parent.parent / "fixtures" / "configs" / "plancton-0.6-minimal.yaml"
).read_text()


@virtual
async def test_a_plancton_06_config_runs(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, PLANCTON_06)
    await rig.until(lambda: len(rig.running()) == 1, 5, "max_docks pilots")
    assert {c.cpu_quota for c in rig.running()} == {0.1}
    assert {c.image for c in rig.running()} == {"busybox:latest"}
    await rig.shutdown()
