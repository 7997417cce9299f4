"""A config file that vanishes, turns into something unreadable, or crashes the loader never costs
a running host its pilots: the last good config stays and the rejection says why (issue 9,
class 5) — on a fake engine and virtual time.

test_supervisor_reload_fuzz.py writes arbitrary bytes and YAML between reloads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from planctond import constants as C
from planctond.config.model import Config
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import EventKind
from tests.support.supervisor_rig import CONFIG, Rig, virtual

FEWER = CONFIG.replace('max_pilots: "3"', 'max_pilots: "2"')


def rejected(rig: Rig) -> list[str]:
    return [e.message for e in rig.kinds(EventKind.CONFIG_REJECTED)]


def untouched(rig: Rig) -> None:
    """The pilots of the file's config run on; nothing of the built-in dummy pool appeared."""
    assert rig.alive()
    assert rig.s.config.source == str(rig.config_path)
    assert len(rig.running()) == 3, rig.say()
    assert not rig.kinds(EventKind.PILOT_STOPPED), rig.say()
    assert not rig.kinds(EventKind.CONFIG_LOADED), rig.say()
    assert rig.s.status().pilots == 3


@virtual
async def test_a_vanished_file_keeps_the_pilots_and_a_restored_one_applies(
    tmp_path: Path,
) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.unlink()
    await rig.until(lambda: rejected(rig), 10, "the vanished file noticed")
    (message,) = rejected(rig)
    assert "file is gone" in message and str(rig.config_path) in message
    assert "file is gone" in rig.s.status().last_error
    await rig.idle(120)
    untouched(rig)
    assert len(rejected(rig)) == 1, "said once while it stays gone"
    with pytest.raises(ControlError, match="file is gone"):
        await rig.s.reload()
    assert len(rejected(rig)) == 2, "and once per request"
    rig.config_path.write_text(FEWER)
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_LOADED), 10, "the restored file loaded")
    assert rig.s.status().last_error == ""
    assert rig.s.config.pool("default") is not None
    await rig.until(lambda: len(rig.pilots()) == 2, 60, "the restored file's max_pilots")
    await rig.shutdown()


@virtual
async def test_a_file_moved_away_and_back_loads_again(tmp_path: Path) -> None:
    """An admin moving the file aside for a moment: the same config is loaded back."""
    rig = await Rig.start(tmp_path)
    await rig.filled()
    moved = tmp_path / "planctond.yaml.bak"
    rig.config_path.rename(moved)
    with pytest.raises(ControlError, match="file is gone"):
        await rig.s.reload()
    moved.rename(rig.config_path)
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_LOADED), 10, "loaded again")
    (loaded,) = rig.kinds(EventKind.CONFIG_LOADED)
    assert "no change to pools" in loaded.message
    assert len(rig.running()) == 3
    assert not rig.kinds(EventKind.PILOT_STOPPED)
    await rig.shutdown()


@virtual
async def test_without_a_file_at_start_the_defaults_run_until_one_appears(
    tmp_path: Path,
) -> None:
    """The defaults are for a host that never had a file; once one was loaded, it is needed."""
    rig = Rig(tmp_path, CONFIG)
    rig.config_path.unlink()
    rig.new_supervisor()
    rig.run()
    assert rig.s.config.source is None
    assert rig.s.config.pools[0].command == C.DEFAULT_COMMAND
    await rig.s.reload()  # still no file: the defaults again, no rejection
    assert not rejected(rig)
    rig.config_path.write_text(CONFIG)
    await rig.until(lambda: rig.s.config.source is not None, 120, "the new file loaded")
    # a pilot per CPU under the defaults; the file's max_pilots (3) leaves them to finish
    assert len(rig.running()) == 4
    rig.config_path.unlink()
    with pytest.raises(ControlError, match="file is gone"):
        await rig.s.reload()
    assert rig.s.config.source == str(rig.config_path)
    await rig.shutdown()


@virtual
async def test_unreadable_things_in_place_of_the_file_are_rejections(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.unlink()
    rig.config_path.mkdir()
    await rig.until(lambda: rejected(rig), 10, "a directory rejected")
    rig.config_path.rmdir()
    rig.config_path.symlink_to(rig.config_path.name)
    await rig.until(lambda: len(rejected(rig)) == 2, 10, "a symlink loop rejected")
    await rig.idle(60)
    untouched(rig)
    assert len(rejected(rig)) == 2
    await rig.shutdown()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
@virtual
async def test_a_fifo_in_place_of_the_file_blocks_nothing(tmp_path: Path) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    rig.config_path.unlink()
    os.mkfifo(rig.config_path)
    await rig.until(lambda: rejected(rig), 10, "a FIFO rejected")
    await rig.idle(60)
    untouched(rig)
    await rig.shutdown()


@virtual
async def test_a_loader_bug_is_a_rejection_not_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await Rig.start(tmp_path)
    await rig.filled()
    good = rig.loader

    def broken(path: str | None) -> Config:
        raise RecursionError("maximum recursion depth exceeded")

    rig.loader = broken
    rig.config_path.write_text(FEWER)
    await rig.until(lambda: rejected(rig), 10, "the crash rejected")
    assert "RecursionError" in rejected(rig)[0]
    assert "RecursionError" in rig.s.status().last_error
    with pytest.raises(ControlError, match="RecursionError"):
        await rig.s.reload()
    await rig.idle(60)
    untouched(rig)
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert len(tracebacks) == 1, "the traceback is logged once, not per rejection"
    rig.loader = good
    await rig.s.reload()
    assert rig.s.config.pool("default") is not None and rig.s.status().last_error == ""
    await rig.until(lambda: len(rig.pilots()) == 2, 60, "the file's config applied")
    await rig.shutdown()
