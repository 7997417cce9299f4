"""The run state and instance id on disk: whatever is in the state directory, the daemon starts,
keeps its instance id when either file survives, and moves damaged files aside (issue 9, class 8).

tests/unit/test_state_store_fuzz.py feeds the same store arbitrary bytes and file kinds.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from planctond.policy.model import RunState
from planctond.supervisor.state_store import (
    NEW_ID,
    PersistedState,
    StateStore,
    StateStoreError,
    parse_id,
    parse_state,
)

OLD = "0123456789abcdef"


def store(tmp_path: Path) -> StateStore:
    return StateStore(str(tmp_path / "state"))


def write_id(s: StateStore, text: str = OLD) -> None:
    s.dir.mkdir(parents=True, exist_ok=True)
    s.instance_path.write_text(text + "\n")


def write_state(s: StateStore, doc: object) -> None:
    s.dir.mkdir(parents=True, exist_ok=True)
    s.state_path.write_text(json.dumps(doc))


def aside(s: StateStore, name: str) -> list[Path]:
    return sorted(s.dir.glob(f"{name}.damaged-*"))


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def healthy(s: StateStore, instance: str) -> None:
    """Both files are regular and say `instance`: either can restore the other next time."""
    assert not s.instance_path.is_symlink() and not s.state_path.is_symlink()
    assert parse_id(s.instance_path.read_bytes()) == instance
    assert parse_state(s.state_path.read_bytes())[1] == instance
    again = StateStore(str(s.dir))
    assert again.instance_id() == instance, "stable across restarts"


# Ways a file can be damaged: each writes something unusable at `path`.
def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _huge(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: a gigabyte that costs nothing to make


def _full_dir(path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("x")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "blank": _bytes(b"  \n\n"),
    "not utf-8": _bytes(b"\xff\xfe\x00garbage"),
    "garbage": _bytes(b"hello world; rm -rf /\n"),
    "huge": _huge,
    "fifo": os.mkfifo,
    "dev zero": lambda path: path.symlink_to("/dev/zero"),
    "symlink loop": lambda path: path.symlink_to(path.name),
    "directory": _full_dir,
}


def test_a_fresh_directory_gets_a_new_id_in_both_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = store(tmp_path)
    caplog.set_level(logging.INFO)
    value = s.instance_id()
    assert NEW_ID.fullmatch(value)
    assert s.load() == PersistedState()
    healthy(s, value)
    assert not errors(caplog), "a first start is no error"


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_id_file_is_restored_from_state_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]
) -> None:
    s = store(tmp_path)
    write_state(s, {"state": "draining", "since": 5.0, "by": "signal", "instance": OLD})
    damage(s.instance_path)
    assert s.instance_id() == OLD
    assert s.load().run_state is RunState.DRAINING
    assert len(aside(s, "instance-id")) == 1
    (said,) = errors(caplog)
    assert "instance-id is damaged" in said and "moved aside" in said
    healthy(s, OLD)


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_state_file_means_active_and_the_id_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: Callable[[Path], None]
) -> None:
    s = store(tmp_path)
    write_id(s)
    damage(s.state_path)
    assert s.instance_id() == OLD
    assert s.load() == PersistedState()
    assert len(aside(s, "state.json")) == 1
    (said,) = errors(caplog)
    assert "state.json is damaged" in said
    healthy(s, OLD)


WRONG_STATE = {
    "array": [],
    "string": "active",
    "null": None,
    "state a number": {"state": 5},
    "unknown state": {"state": "paused"},
    "since a string": {"state": "stopped", "since": "yesterday"},
    "since true": {"since": True},
    "since infinite": {"since": 1e400},
    "by a list": {"by": ["x"]},
    "instance garbage": {"instance": "../../etc"},
    "instance a number": {"instance": 12},
}


@pytest.mark.parametrize("doc", WRONG_STATE.values(), ids=WRONG_STATE.keys())
def test_wrong_json_types_are_damage(tmp_path: Path, doc: object) -> None:
    s = store(tmp_path)
    write_id(s)
    write_state(s, doc)
    assert s.load() == PersistedState()
    assert len(aside(s, "state.json")) == 1


def test_deep_nesting_is_refused_in_bounded_time(tmp_path: Path) -> None:
    s = store(tmp_path)
    write_id(s)
    s.state_path.write_text("[" * 30_000 + "]" * 30_000)
    assert s.load() == PersistedState()
    assert len(aside(s, "state.json")) == 1


def test_unknown_keys_and_missing_keys_are_not_damage(tmp_path: Path) -> None:
    """A newer version may add keys, an older one wrote no instance: neither is damage."""
    s = store(tmp_path)
    write_id(s)
    write_state(s, {"state": "stopped", "future": {"x": [1]}})
    assert s.instance_id() == OLD
    assert s.load().run_state is RunState.STOPPED
    assert not aside(s, "state.json")
    healthy(s, OLD)


def test_both_files_unusable_make_a_new_id_and_say_the_old_pilots_are_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = store(tmp_path)
    write_id(s, "")
    write_state(s, {"state": 1})
    value = s.instance_id()
    assert NEW_ID.fullmatch(value)
    assert any("will not be adopted" in m for m in errors(caplog))
    healthy(s, value)


def test_a_lost_id_file_beside_an_old_state_file_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = store(tmp_path)
    write_state(s, {"state": "stopped"})  # written by a version that kept no id in it
    value = s.instance_id()
    assert NEW_ID.fullmatch(value)
    assert s.load().run_state is RunState.STOPPED, "the admin's stop survives"
    assert any("will not be adopted" in m for m in errors(caplog))


def test_an_older_id_format_is_kept(tmp_path: Path) -> None:
    s = store(tmp_path)
    write_id(s, "host-7.planctond")
    assert s.instance_id() == "host-7.planctond"
    healthy(s, "host-7.planctond")


def test_the_id_file_wins_over_a_different_id_in_state_json(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = store(tmp_path)
    write_id(s)
    write_state(s, {"state": "draining", "instance": "fedcba9876543210"})
    assert s.instance_id() == OLD
    assert s.load().run_state is RunState.DRAINING
    assert "keeping" in caplog.text
    healthy(s, OLD)


def test_the_run_state_and_the_id_survive_a_restart(tmp_path: Path) -> None:
    s = store(tmp_path)
    value = s.instance_id()
    s.save(RunState.STOPPED, "dbus uid 0")
    s.instance_path.unlink()
    again = store(tmp_path)
    assert again.instance_id() == value
    loaded = again.load()
    assert (loaded.run_state, loaded.by) == (RunState.STOPPED, "dbus uid 0")


def test_a_state_dir_that_is_a_file_still_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing can be kept: the daemon runs on an id in memory, says so, and a save fails."""
    (tmp_path / "state").write_text("not a directory")
    s = store(tmp_path)
    assert NEW_ID.fullmatch(s.instance_id())
    assert s.load() == PersistedState()
    assert any("cannot write" in m for m in errors(caplog))
    with pytest.raises(StateStoreError):
        s.save(RunState.DRAINING)


def test_a_file_that_cannot_be_moved_aside_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A directory holding files cannot be replaced: it stays, said once, and the daemon runs."""
    s = store(tmp_path)
    write_id(s)
    s.state_path.mkdir()
    (s.state_path / "keep").write_text("x")
    os.chmod(s.dir, 0o555)  # a read-only state directory: nothing moves, nothing is written
    try:
        assert s.instance_id() == OLD
        assert s.load() == PersistedState()
        assert s.load() == PersistedState()
    finally:
        os.chmod(s.dir, 0o755)
    if os.geteuid() != 0:  # root ignores the mode: the directory was moved aside
        said = [m for m in errors(caplog) if "state.json is damaged" in m]
        assert len(said) == 1 and "cannot be moved aside" in said[0]
