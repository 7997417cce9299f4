"""Image freshness per pool, without ever letting a registry outage stop pilots.

The keeper answers two questions each tick, cheaply and without Docker calls in the common case:
may pilots of this image start now, and is a (background) pull due? Pulls run off the loop; while
one runs, or after one failed, the image already present keeps being used, and the admin is told
once, not every tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from planctond.config.model import PullPolicy
from planctond.engine.errors import EngineError, EngineUnavailable
from planctond.engine.port import Engine

log = logging.getLogger(__name__)


@dataclass
class _ImageState:
    present: bool | None = None  # None = not checked yet
    last_pull_ok: float | None = None  # monotonic
    last_attempt: float | None = None
    failing: str = ""  # last pull error, "" when fine
    told: bool = False  # the admin has been told about the current failure


class ImageKeeper:
    RETRY_AFTER_FAILURE = 300.0

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._images: dict[str, _ImageState] = {}

    def _state(self, ref: str) -> _ImageState:
        return self._images.setdefault(ref, _ImageState())

    def forget(self, ref: str) -> None:
        """The engine said the image is gone (a create raised `NoSuchImage`)."""
        self._images.pop(ref, None)

    def pull_due(self, ref: str, policy: PullPolicy, refresh: float, now: float) -> bool:
        st = self._state(ref)
        if policy is PullPolicy.NEVER:
            return False
        if (
            st.failing
            and st.last_attempt is not None
            and now - st.last_attempt < self.RETRY_AFTER_FAILURE
        ):
            return False
        if policy is PullPolicy.MISSING:
            return st.present is False
        return st.last_pull_ok is None or now - st.last_pull_ok >= refresh

    def usable(self, ref: str) -> bool | None:
        """True/False once known; None before the first check."""
        return self._state(ref).present

    def check_present(self, ref: str) -> bool:
        """Blocking: one inspect, cached until `forget`."""
        st = self._state(ref)
        st.present = self._engine.image_present(ref)
        return st.present

    def pull(self, ref: str, now: float) -> str | None:
        """Blocking. Returns a message for the admin when something is worth saying once."""
        st = self._state(ref)
        st.last_attempt = now
        try:
            self._engine.pull(ref)
        except EngineUnavailable:
            raise
        except EngineError as exc:
            st.failing = str(exc)
            if st.present is None:
                try:
                    st.present = self._engine.image_present(ref)
                except EngineUnavailable:
                    raise  # unknown, not absent: a cached False would hold pilots back
                except EngineError:
                    st.present = False
            if st.told:
                return None
            st.told = True
            if st.present:
                return f"cannot pull {ref} ({exc}); running the image already present"
            return f"cannot pull {ref} and it is not present: {exc}"
        st.present, st.last_pull_ok, st.failing = True, now, ""
        was_told, st.told = st.told, False
        return f"pulled {ref} (registry reachable again)" if was_told else None
