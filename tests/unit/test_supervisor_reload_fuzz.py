"""Arbitrary bytes, arbitrary YAML, a deleted file or a directory in its place, written to the
config file of a running supervisor between reloads (asked for, or noticed by the watch): the
supervisor never dies, keeps answering, keeps its pilots, and the config in force is always the
last one the loader accepted (issue 9's "Done when", on a fake engine and virtual time).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planctond.config.loader import POOL_KEYS, TOP_KEYS, load_config
from planctond.config.model import Config
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import EventKind
from tests.support.supervisor_rig import CONFIG, Rig
from tests.support.virtual_time import run_virtual

# Two good configs that differ in nothing the pilots feel: the one in force tells them apart.
GOOD = (CONFIG, CONFIG.replace("tick: 10s", "tick: 15s"))
LINES = CONFIG.splitlines()

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
KEYS = st.sampled_from(sorted(TOP_KEYS | POOL_KEYS)) | st.text(max_size=8)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutants(draw: st.DrawFn) -> str:
    """The good config with one line changed, dropped or doubled."""
    lines = list(LINES)
    i = draw(st.integers(0, len(lines) - 1))
    how = draw(st.sampled_from(["value", "drop", "double", "indent"]))
    if how == "value" and ":" in lines[i]:
        key = lines[i].split(":", 1)[0]
        lines[i] = f"{key}: {draw(st.text(max_size=16))}"
    elif how == "drop":
        del lines[i]
    elif how == "double":
        lines.insert(i, lines[i])
    else:
        lines[i] = " " + lines[i]
    return "\n".join(lines) + "\n"


# What is put at the config path: bytes to write, None to delete it, "dir" for a directory.
CONTENTS = st.one_of(
    st.binary(max_size=200),
    DOCS.map(lambda d: yaml.safe_dump(d).encode()),
    mutants().map(str.encode),
    st.sampled_from([GOOD[0].encode(), GOOD[1].encode(), None, "dir"]),
)


@dataclass(frozen=True)
class Step:
    content: bytes | str | None
    ask: bool  # reload on request; else wait for the watch to notice
    wait: float  # virtual seconds before (ticks run, pilots live)


STEPS = st.builds(Step, CONTENTS, st.booleans(), st.sampled_from([0.0, 1.0, 7.0]))


def put(path: Path, content: bytes | str | None) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)


def verdict(path: Path) -> Config | None:
    """What the loader makes of the file now: None when it refuses it (any way it does)."""
    try:
        return load_config(str(path), missing_ok=False)
    except Exception:
        return None


async def scenario(tmp: Path, steps: list[Step]) -> None:
    rig = await Rig.start(tmp)
    await rig.filled()
    expected = verdict(rig.config_path)
    assert expected is not None and rig.s.config == expected
    # An accepted config other than the good ones may rightly stop pilots, change config_check.
    disturbed = False
    for step in steps:
        await rig.idle(step.wait)
        put(rig.config_path, step.content)
        new = verdict(rig.config_path)
        if step.ask or disturbed:
            try:
                await rig.s.reload()
            except ControlError:
                assert new is None, "a config the loader accepts is not rejected"
        else:
            await rig.idle(rig.s.config.config_check + 1)
        if new is not None:
            expected = new
            disturbed = disturbed or step.content not in {g.encode() for g in GOOD}
        assert rig.alive()
        status = rig.s.status()
        assert rig.s.config == expected, f"not the last good config\n{rig.say()}"
        if new is None:
            assert status.last_error, "a rejection says why"
        if not disturbed:
            assert not rig.kinds(EventKind.PILOT_STOPPED), rig.say()
            assert len(rig.pilots()) == 3 and status.pilots == 3, rig.say()
            assert new is None or status.last_error == ""
    put(rig.config_path, GOOD[0].encode())
    await rig.s.reload()
    assert rig.s.config == verdict(rig.config_path)
    await rig.shutdown()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEPS, min_size=1, max_size=8))
def test_no_config_file_content_hurts_a_running_supervisor(steps: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_virtual(scenario(Path(tmp), steps))
