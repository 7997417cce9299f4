"""The supervisor's pilot life cycle on a fake engine and virtual time: spawning to fit,
replacement, ttl, kill after stop_grace, adoption, foreign containers, back-off, shutdown.

The same behaviour is proven against a real dockerd in tests/integration/test_daemon_pilots.py;
here each case runs in milliseconds and can be driven into orderings a real engine rarely shows.
"""

from __future__ import annotations

from pathlib import Path

from planctond import constants as C
from planctond.engine.errors import EngineError
from planctond.supervisor.events import EventKind
from tests.support.fake_engine import Behaviour
from tests.support.supervisor_rig import CONFIG, INSTANCE, Rig, virtual


def ours(pool: str = "default") -> dict[str, str]:
    return {
        C.LABEL_MANAGED: "1",
        C.LABEL_INSTANCE: INSTANCE,
        C.LABEL_POOL: pool,
        C.LABEL_CPUS: "1.0",
    }


@virtual
async def test_pilots_spawn_to_fit_with_labels_and_idle_parent(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.until(lambda: len(rig.running()) == 3, 2, "3 pilots (max_pilots)")
    await rig.idle(30)
    assert len(rig.running()) == 3, rig.say()
    for c in rig.running():
        assert c.labels[C.LABEL_POOL] == "default"
        assert c.labels[C.LABEL_MANAGED] == "1"
        assert c.cpu_quota == 1.0
    assert len(rig.kinds(EventKind.PILOT_STARTED)) == 3
    assert rig.host.attached[0][1] == C.CGROUP_PARENT_CGROUPFS
    await rig.shutdown()


@virtual
async def test_capacity_limits_pilots_below_max(tmp_path: Path) -> None:
    rig = Rig(tmp_path, CONFIG)
    rig.host.owner_cpu = 1.6  # 4 - 0.5 reserve - 1.6 = 1.9 spare: one pilot of 1 CPU
    rig.new_supervisor()
    rig.run()
    await rig.until(lambda: len(rig.running()) == 1, 2, "1 pilot")
    await rig.idle(60)
    assert len(rig.running()) == 1, rig.say()
    assert "no spare CPU" in rig.s.status().pools[0].note
    await rig.shutdown()


@virtual
async def test_exited_pilot_is_replaced_within_a_second_without_a_list(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    await rig.idle(2)
    lists = len(rig.engine.ops("list_pilots"))
    rig.engine.exit(rig.running()[0].id, 0)
    took = await rig.until(lambda: len(rig.running()) == 3, 1, "a replacement")
    assert took < 1.0
    assert len(rig.engine.ops("list_pilots")) == lists, "replaced from the event, no list call"
    (exited,) = rig.kinds(EventKind.PILOT_EXITED)
    assert exited.exit_code == 0
    assert float(exited.extra["lifetime_seconds"]) >= 2.0  # what monitoring reports
    assert not rig.kinds(EventKind.POOL_BACKOFF)
    await rig.shutdown()


@virtual
async def test_one_list_and_no_inspect_per_tick(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.log.clear()
    await rig.idle(100)  # ten ticks of 10 s
    ops = {name for name, _ in rig.engine.log}
    assert ops == {"list_pilots"}, ops
    assert 9 <= len(rig.engine.ops("list_pilots")) <= 11
    await rig.shutdown()


@virtual
async def test_ttl_stops_a_pilot_gracefully_and_replaces_it(tmp_path: Path) -> None:
    rig = await Rig.start(
        tmp_path, CONFIG.replace("    stop_grace: 5s", "    stop_grace: 5s\n    ttl: 60s")
    )
    await rig.filled()
    first = {c.id for c in rig.running()}
    await rig.until(lambda: rig.kinds(EventKind.PILOT_STOPPED), 80, "a ttl stop")
    stopped = rig.kinds(EventKind.PILOT_STOPPED)
    assert {e.reason for e in stopped} == {"ttl"}
    assert all(e.exit_code == 143 for e in stopped), "SIGTERM, not SIGKILL"
    assert ("signal", (stopped[0].pilot_id, "SIGTERM")) in rig.engine.log
    await rig.until(lambda: {c.id for c in rig.running()}.isdisjoint(first), 20, "replacements")
    assert len(rig.running()) == 3
    assert not rig.kinds(EventKind.POOL_BACKOFF), "our own stops are not failures"
    await rig.shutdown()


@virtual
async def test_pilot_ignoring_sigterm_is_killed_after_stop_grace(tmp_path: Path) -> None:
    rig = await Rig.start(
        tmp_path, CONFIG.replace("    stop_grace: 5s", "    stop_grace: 5s\n    ttl: 60s")
    )
    rig.engine.behaviour = lambda spec: Behaviour(ignores_term=True)
    await rig.until(lambda: rig.kinds(EventKind.PILOT_KILLED), 90, "a kill")
    killed = rig.kinds(EventKind.PILOT_KILLED)[0]
    assert killed.reason == "ttl" and killed.exit_code == 137
    term = next(i for i, (op, a) in enumerate(rig.engine.log) if a == (killed.pilot_id, "SIGTERM"))
    kill = next(i for i, (op, a) in enumerate(rig.engine.log) if a == (killed.pilot_id, "SIGKILL"))
    assert term < kill
    await rig.shutdown()


@virtual
async def test_restarted_daemon_adopts_its_pilots_and_thaws_a_frozen_one(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, run=False)
    a = rig.engine.run_container("plancton-default-aaaa", ours(), Behaviour())
    b = rig.engine.run_container("plancton-default-bbbb", ours(), Behaviour())
    rig.engine.containers[b].state = "paused"
    rig.run()
    await rig.until(lambda: len(rig.kinds(EventKind.PILOT_STARTED)) >= 2, 2, "adoption")
    adopted = {e.pilot_id for e in rig.kinds(EventKind.PILOT_STARTED) if e.reason == "adopted"}
    assert adopted == {a, b}
    # Paused by the earlier daemon for an owner who has gone since: thawed, not left frozen.
    await rig.until(lambda: rig.kinds(EventKind.PILOT_THAWED), 2, "the frozen one thawed")
    assert rig.kinds(EventKind.PILOT_THAWED)[0].pilot_id == b
    assert rig.engine.containers[b].state == "running"
    await rig.shutdown(stop_pilots=False)
    assert rig.engine.containers[a].state == "running", "left for the next daemon"


@virtual
async def test_foreign_and_other_instances_containers_are_untouched(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, run=False)
    other = {**ours(), C.LABEL_INSTANCE: "0ther0ther0ther0"}
    foreign = rig.engine.run_container("web", {}, Behaviour())
    sibling = rig.engine.run_container("plancton-default-other", other, Behaviour())
    rig.run()
    await rig.until(lambda: len(rig.running()) == 3, 2, "3 own pilots")
    await rig.shutdown()
    assert rig.engine.containers[foreign].state == "running"
    assert rig.engine.containers[sibling].state == "running"
    assert not rig.pilots(), "our own were stopped at shutdown"
    touched = {a[0] for _, a in rig.engine.log if a}
    assert foreign not in touched and sibling not in touched


@virtual
async def test_failing_pilots_back_off_and_nowork_exits_do_not(tmp_path: Path) -> None:
    config = CONFIG.replace(
        "    stop_grace: 5s",
        "    stop_grace: 5s\n    fail_window: 60s\n    backoff_min: 30s\n    backoff_max: 120s\n    nowork_exit_codes: [3]",
    )
    rig = await Rig.start(tmp_path, config)
    rig.engine.behaviour = lambda spec: Behaviour(runs_for=2, exit_code=1)
    await rig.until(lambda: rig.kinds(EventKind.POOL_BACKOFF), 10, "back-off")
    starts = len(rig.engine.ops("create_and_start"))
    await rig.idle(20)
    assert len(rig.engine.ops("create_and_start")) == starts, "nothing starts while backing off"
    assert rig.s.status().pools[0].backoff_until is not None
    # The pool recovers: pilots that exit with a no-work code are a normal end.
    rig.engine.behaviour = lambda spec: Behaviour(runs_for=2, exit_code=3)
    await rig.until(lambda: len(rig.engine.ops("create_and_start")) > starts, 120, "a retry")
    backoffs = len(rig.kinds(EventKind.POOL_BACKOFF))
    await rig.idle(30)
    assert len(rig.kinds(EventKind.POOL_BACKOFF)) == backoffs, rig.say()
    assert len(rig.kinds(EventKind.PILOT_EXITED)) > 6, "no-work pilots replaced at once"
    await rig.shutdown()


@virtual
async def test_a_failed_burst_of_starts_is_one_backoff_step(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, run=False)
    rig.engine.fail("create_and_start", EngineError("create pilot: runtime exploded"), times=3)
    rig.run()
    await rig.until(lambda: rig.kinds(EventKind.POOL_BACKOFF), 2, "back-off")
    await rig.idle(1)
    assert len(rig.kinds(EventKind.POOL_BACKOFF)) == 1
    assert "runtime exploded" in rig.s.status().last_error
    # The back-off (10 s default backoff_min) ends and the pool fills.
    await rig.until(lambda: len(rig.running()) == 3, 30, "3 pilots after the back-off")
    await rig.shutdown()


@virtual
async def test_missing_image_with_pull_never_starts_nothing_and_says_so_once(
    tmp_path: Path,
) -> None:
    rig = await Rig.start(tmp_path, CONFIG.replace("busybox:latest", "nosuch:1"))
    await rig.idle(60)
    assert not rig.pilots()
    (image,) = rig.kinds(EventKind.IMAGE)
    assert "nosuch:1" in image.message and "pull: never" in image.message
    assert not rig.engine.ops("create_and_start")
    await rig.shutdown()


@virtual
async def test_failing_pull_of_a_present_image_does_not_block_pilots(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path, CONFIG.replace("pull: never", "pull: always"))
    await rig.until(lambda: len(rig.running()) == 3, 5, "3 pilots despite the failing pull")
    (image,) = rig.kinds(EventKind.IMAGE)
    assert "running the image already present" in image.message
    await rig.shutdown()


@virtual
async def test_image_removed_behind_our_back_is_checked_again(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.images.clear()
    rig.engine.exit(rig.running()[0].id, 0)
    await rig.until(lambda: rig.kinds(EventKind.IMAGE), 30, "the image found missing")
    assert len(rig.engine.ops("image_present")) == 2, "checked again after NoSuchImage"
    assert len(rig.running()) == 2
    await rig.shutdown()


@virtual
async def test_shutdown_stops_pilots_or_leaves_them(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    await rig.shutdown()
    assert not rig.pilots()
    assert {e.reason for e in rig.kinds(EventKind.PILOT_STOPPED)} == {"shutdown"}
    assert not rig.engine.containers, "stopped pilots are removed"

    rig2 = await Rig.start(tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path)
    await rig2.until(lambda: len(rig2.running()) == 3, 2, "3 pilots")
    await rig2.shutdown(stop_pilots=False)
    assert len(rig2.running()) == 3


@virtual
async def test_shutdown_removes_a_pilot_that_survives_sigkill(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.engine.behaviour = lambda spec: Behaviour(ignores_term=True)
    victim = rig.running()[0]
    victim.behaviour = Behaviour(ignores_term=True)
    rig.engine.fail("signal", EngineError("kill: permission denied"), times=0)
    rig.engine.fail_always["signal"] = EngineError("kill: permission denied")
    await rig.shutdown()
    assert not rig.engine.containers, "removed when its exit never showed"
    assert len(rig.kinds(EventKind.PILOT_KILLED)) == 3
