"""The admin's run state and the daemon's instance id, kept on disk so a drain or stop survives a
restart, a package upgrade and a reboot, and a restarted daemon recognises its own pilots.

Whatever is found in the state directory, the daemon starts: pilots are found by the instance
label, so a lost id orphans them, and a traceback here would leave the host's pilots unmanaged.
So:

- both files are read with `read_limited` (regular files only, size capped): a FIFO, a symlink to
  /dev/zero or a runaway file never blocks the start or fills memory;
- a damaged file (unreadable, or not what this module writes) is renamed
  `<name>.damaged-<epoch>` for the admin to look at, and said once with the reason;
- the id is kept in both files, so either restores the other; only when neither holds one is a
  new id made, and if a file was there that is an error: the old id's pilots will not be adopted;
- the run state of a damaged state.json is "active", what a volunteer host is for.

Reading never raises; `save()` raises `StateStoreError` (the admin's request did not stick).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from planctond import constants as C
from planctond.config.files import read_limited
from planctond.policy.model import RunState

log = logging.getLogger(__name__)
T = TypeVar("T")

# What `save()` writes is a few dozen bytes; anything far bigger is not ours.
ID_LIMIT = 256
STATE_LIMIT = 64 * 1024
# Ids this version makes (`secrets.token_hex(8)`), and any other an older version or an admin may
# have written that is still a plain Docker label value and log word.
NEW_ID = re.compile(r"[0-9a-f]{16}")
OLD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class StateStoreError(Exception):
    pass


class Damaged(Exception):
    """A state file that is there but unusable; the message says why, for the admin."""


@dataclass(frozen=True)
class PersistedState:
    run_state: RunState = RunState.ACTIVE
    since: float = 0.0  # epoch seconds of the last change
    by: str = ""  # who changed it ("dbus uid 0", "signal", ...)


def valid_id(value: str) -> bool:
    return bool(NEW_ID.fullmatch(value) or OLD_ID.fullmatch(value))


def _show(value: object) -> str:
    """A bad value in a log line, cut short: the file may hold anything."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_id(data: bytes) -> str:
    """The instance-id file's content: one id and a newline."""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise Damaged("not ASCII text") from None
    if not text:
        raise Damaged("empty")
    if not valid_id(text):
        raise Damaged(f"not an instance id: {_show(text)}")
    return text


def parse_state(data: bytes) -> tuple[PersistedState, str | None]:
    """state.json's content: the run state, and the instance id when the file records one.

    Keys may be missing (older versions wrote no "instance") or unknown (a newer version's);
    a known key of the wrong type makes the file damaged: `save()` never wrote it.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:  # bounded: the input is at most STATE_LIMIT bytes
        raise Damaged("JSON nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError included
        raise Damaged(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Damaged(f"a JSON {type(doc).__name__}, not an object")
    state = _field(doc, "state", str, RunState.ACTIVE.value)
    since = _field(doc, "since", (int, float), 0.0)
    by = _field(doc, "by", str, "")
    instance = _field(doc, "instance", str, None)
    if state not in {s.value for s in RunState}:
        raise Damaged(f"state: {_show(state)} is not one of active, draining, stopped")
    try:
        when = float(since)
    except OverflowError:
        when = math.inf
    if not math.isfinite(when):
        raise Damaged(f"since: {_show(since)} is not a time")
    if instance is not None and not valid_id(instance):
        raise Damaged(f"instance: {_show(instance)} is not an instance id")
    return PersistedState(RunState(state), when, by), instance


def _field(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], default: object) -> Any:
    """`doc[key]`, `default` when missing; Damaged when it is of another kind (bool is no number)."""
    value = doc.get(key, default)
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
        raise Damaged(f"{key}: {_show(value)} has the wrong type")
    return value


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _aside_name(path: Path) -> Path:
    """`<name>.damaged-<epoch>`, never over an earlier one (two damages in one second)."""
    base = f"{path.name}.damaged-{int(time.time())}"
    target = path.with_name(base)
    n = 0
    while os.path.lexists(target) and n < 100:
        n += 1
        target = path.with_name(f"{base}.{n}")
    return target


class StateStore:
    def __init__(self, state_dir: str) -> None:
        self.dir = Path(state_dir)
        self.state_path = self.dir / C.STATE_FILE_NAME
        self.instance_path = self.dir / C.INSTANCE_FILE_NAME
        self._instance: str | None = None
        self._said: set[tuple[Path, str]] = set()

    def instance_id(self) -> str:
        """Stable per state directory: two daemons on one host never share it. Never raises."""
        if self._instance is None:
            self._instance = self._recover_id()
        return self._instance

    def load(self) -> PersistedState:
        """The admin's last run state; "active" when there is none or its file is damaged."""
        found = self._read(self.state_path, STATE_LIMIT, parse_state)
        return found[0] if found is not None else PersistedState()

    def save(self, run_state: RunState, by: str = "") -> PersistedState:
        st = PersistedState(run_state=run_state, since=time.time(), by=by)
        try:
            self._write_state(st, self._instance)
        except OSError as exc:
            raise StateStoreError(f"cannot write {self.state_path}: {exc}") from exc
        return st

    # --- the id --------------------------------------------------------------------------------
    def _recover_id(self) -> str:
        """The id from instance-id, else from state.json, else a new one; then both files say
        it, so the next damage to either loses nothing."""
        there = [p for p in (self.instance_path, self.state_path) if os.path.lexists(p)]
        in_file = self._read(self.instance_path, ID_LIMIT, parse_id)
        found = self._read(self.state_path, STATE_LIMIT, parse_state)
        state, in_state = found if found is not None else (PersistedState(), None)
        value = in_file or in_state
        if value is None:
            value = secrets.token_hex(8)
            if there:
                log.error(
                    "no usable instance id in %s: made a new one, %s; pilots of the old id will "
                    "not be adopted (stop them with docker if they are still running)",
                    self.dir,
                    value,
                )
            else:
                log.info("new instance id %s in %s", value, self.dir)
        elif in_file is None:
            log.warning("%s restored from %s: %s", self.instance_path, self.state_path, value)
        elif in_state is not None and in_state != value:
            log.warning(
                "%s says instance %s, %s says %s; keeping %s",
                self.instance_path,
                value,
                self.state_path,
                in_state,
                value,
            )
        if in_file != value:
            try:
                _atomic_write(self.instance_path, value + "\n")
            except OSError as exc:
                log.error(
                    "cannot write %s (%s): after a restart the pilots of instance %s may not be "
                    "adopted",
                    self.instance_path,
                    exc,
                    value,
                )
        if in_state != value:
            try:
                self._write_state(state, value)
            except OSError as exc:
                log.warning("cannot record the instance id in %s: %s", self.state_path, exc)
        return value

    # --- files ---------------------------------------------------------------------------------
    def _read(self, path: Path, limit: int, parse: Callable[[bytes], T]) -> T | None:
        """The parsed file; None when it is absent, or damaged (then moved aside and said)."""
        try:
            return parse(read_limited(str(path), limit))
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._set_aside(path, exc.strerror or str(exc))
        except Damaged as exc:
            self._set_aside(path, str(exc))
        return None

    def _set_aside(self, path: Path, reason: str) -> None:
        target = _aside_name(path)
        try:
            os.rename(path, target)
        except OSError as exc:
            if (path, reason) not in self._said:
                self._said.add((path, reason))
                log.error("%s is damaged (%s) and cannot be moved aside: %s", path, reason, exc)
            return
        log.error("%s is damaged (%s): moved aside to %s", path, reason, target.name)

    def _write_state(self, st: PersistedState, instance: str | None) -> None:
        payload: dict[str, Any] = {"state": st.run_state.value, "since": st.since, "by": st.by}
        if instance is not None:
            payload["instance"] = instance
        _atomic_write(self.state_path, json.dumps(payload) + "\n")
