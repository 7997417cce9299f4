"""What can go wrong when we ask the engine something, as types.

The engine module translates docker-py's and requests' exceptions into these once, at its
boundary (firewalld's rule: one place turns library errors into the project's own), so the rest
of the daemon matches on types and never on message text. The messages stay meant for a person.
"""

from __future__ import annotations


class EngineError(Exception):
    """Docker refused or failed a request."""


class EngineUnavailable(EngineError):
    """Docker cannot be reached at all (socket missing, daemon down, a timeout): wait and retry."""


class NoSuchImage(EngineError):
    """The image a pilot needs is not in the engine (removed behind our back, never pulled)."""


class NoSuchContainer(EngineError):
    """The container is gone (removed by someone else, or its removal finished first)."""


class Conflict(EngineError):
    """The container is not in a state that allows the request (HTTP 409): a removal already in
    progress, a pause of a paused container, a name already taken."""
