"""Whatever lies in the state directory, the store gives a run state and an instance id, never
raises, never blocks, and leaves both files healthy with damaged ones moved aside (issue 9's "Done
when", class 8). tests/unit/test_state_store.py has the cases one by one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.policy.model import RunState
from planctond.supervisor.state_store import (
    Damaged,
    PersistedState,
    StateStore,
    parse_id,
    parse_state,
    valid_id,
)

IDS = st.from_regex(r"[0-9a-f]{16}", fullmatch=True) | st.sampled_from(["host-7", "a", "X_1.b:c"])
STATES = st.sampled_from([s.value for s in RunState])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
# state.json's keys with values of the right kind or any JSON at all.
STATE_DOCS = st.fixed_dictionaries(
    {},
    optional={
        "state": STATES | JSON,
        "since": st.floats() | st.integers() | JSON,
        "by": st.text(max_size=20) | JSON,
        "instance": IDS | JSON,
    },
)
# Things that are not regular files, or not readable as one.
SPECIAL = ["directory", "empty directory", "fifo", "dev zero", "dangling", "loop", "huge", "deep"]

Entry = tuple[str, Any]
ENTRIES: st.SearchStrategy[Entry] = st.one_of(
    st.just(("absent", None)),
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
    st.tuples(st.just("text"), st.text(max_size=40)),
    st.tuples(st.just("json"), STATE_DOCS | JSON),
    st.tuples(st.just("valid"), st.tuples(IDS, STATES)),
    st.tuples(st.just("special"), st.sampled_from(SPECIAL)),
)


def make(path: Path, entry: Entry, as_state: bool) -> None:
    """Put `entry` at `path`; "valid" is what this version writes into that file."""
    kind, value = entry
    if kind == "bytes":
        path.write_bytes(value)
    elif kind == "text":
        path.write_text(value, encoding="utf-8", errors="surrogatepass")
    elif kind == "json":
        path.write_text(json.dumps(value))
    elif kind == "valid":
        instance, state = value
        doc = {"state": state, "since": 1.0, "by": "test", "instance": instance}
        path.write_text(json.dumps(doc) if as_state else instance + "\n")
    elif kind == "special":
        special(path, value)


def special(path: Path, what: str) -> None:
    if what in ("directory", "empty directory"):
        path.mkdir()
        if what == "directory":
            (path / "inside").write_text("x")
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "dev zero":
        path.symlink_to("/dev/zero")
    elif what == "dangling":
        path.symlink_to("nowhere")
    elif what == "loop":
        path.symlink_to(path.name)
    elif what == "huge":
        with open(path, "wb") as fh:
            fh.truncate(1 << 30)
    elif what == "deep":
        path.write_text("[" * 20_000 + "]" * 20_000)


def usable(path: Path, entry: Entry, as_state: bool) -> bool:
    """Does the file hold what the store can use (by the store's own parsers)?"""
    kind, _ = entry
    if kind == "absent" or (kind == "special" and entry[1] != "deep"):
        return False
    try:
        data = path.read_bytes()
        if as_state:
            parse_state(data)
        else:
            parse_id(data)
    except Damaged:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(id_entry=ENTRIES, state_entry=ENTRIES)
def test_any_state_directory_gives_a_state_and_an_id(id_entry: Entry, state_entry: Entry) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(tmp)
        make(store.instance_path, id_entry, as_state=False)
        make(store.state_path, state_entry, as_state=True)
        id_ok = usable(store.instance_path, id_entry, as_state=False)
        state_ok = usable(store.state_path, state_entry, as_state=True)
        id_before = parse_id(store.instance_path.read_bytes()) if id_ok else None
        state_before = parse_state(store.state_path.read_bytes()) if state_ok else None

        value = store.instance_id()
        loaded = store.load()

        assert valid_id(value)
        assert isinstance(loaded.run_state, RunState)
        # Either file restores the id; the id file comes first.
        if id_before is not None:
            assert value == id_before
        elif state_before is not None and state_before[1] is not None:
            assert value == state_before[1]
        assert loaded == (state_before[0] if state_before is not None else PersistedState())
        # Damaged files are moved aside, not lost; absent ones leave nothing behind.
        for path, entry, ok in (
            (store.instance_path, id_entry, id_ok),
            (store.state_path, state_entry, state_ok),
        ):
            set_aside = list(Path(tmp).glob(f"{path.name}.damaged-*"))
            damaged = not ok and entry[0] != "absent" and entry[1] != "dangling"
            assert len(set_aside) == damaged, (path.name, entry)
        # Both files now healthy, each able to restore the other; a restart sees the same.
        assert parse_id(store.instance_path.read_bytes()) == value
        assert parse_state(store.state_path.read_bytes()) == (loaded, value)
        again = StateStore(tmp)
        assert again.instance_id() == value
        assert again.load() == loaded
