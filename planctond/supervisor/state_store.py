"""The admin's run state and the daemon's instance id, kept on disk so a drain or stop survives a
restart, a package upgrade and a reboot, and a restarted daemon recognises its own pilots."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from planctond import constants as C
from planctond.policy.model import RunState

log = logging.getLogger(__name__)


class StateStoreError(Exception):
    pass


@dataclass(frozen=True)
class PersistedState:
    run_state: RunState = RunState.ACTIVE
    since: float = 0.0  # epoch seconds of the last change
    by: str = ""  # who changed it ("dbus uid 0", "signal", ...)


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


class StateStore:
    def __init__(self, state_dir: str) -> None:
        self.dir = Path(state_dir)
        self.state_path = self.dir / C.STATE_FILE_NAME
        self.instance_path = self.dir / C.INSTANCE_FILE_NAME

    def instance_id(self) -> str:
        """Stable per state directory: two daemons on one host never share it."""
        try:
            value = self.instance_path.read_text().strip()
            if value:
                return value
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateStoreError(f"cannot read {self.instance_path}: {exc}") from exc
        value = secrets.token_hex(8)
        try:
            _atomic_write(self.instance_path, value + "\n")
        except OSError as exc:
            raise StateStoreError(f"cannot write {self.instance_path}: {exc}") from exc
        return value

    def load(self) -> PersistedState:
        try:
            data = json.loads(self.state_path.read_text())
            return PersistedState(
                run_state=RunState(data.get("state", "active")),
                since=float(data.get("since", 0.0)),
                by=str(data.get("by", "")),
            )
        except FileNotFoundError:
            return PersistedState()
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # A damaged file must not keep the daemon down; say so and fall back to "active".
            log.error("state file %s is unreadable (%s); assuming 'active'", self.state_path, exc)
            return PersistedState()

    def save(self, run_state: RunState, by: str = "") -> PersistedState:
        st = PersistedState(run_state=run_state, since=time.time(), by=by)
        payload = {"state": st.run_state.value, "since": st.since, "by": st.by}
        try:
            _atomic_write(self.state_path, json.dumps(payload) + "\n")
        except OSError as exc:
            raise StateStoreError(f"cannot write {self.state_path}: {exc}") from exc
        return st
