"""Logging setup and the event log: structured journald entries, or one readable stderr line each.

journald gets every supervisor event with a MESSAGE_ID per kind and the PLANCTON_* fields, so
`journalctl -u planctond PLANCTON_EVENT=pilot-killed` and `journalctl -x` (catalog in
systemd/planctond.catalog) answer questions without grepping text.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from typing import Final

from planctond.supervisor.events import Event, EventKind

JOURNAL_SOCKET: Final = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER: Final = "planctond"
EVENT_LOGGER: Final = "planctond.events"
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

# One fixed id per event kind. Never change an id once released: the catalog and people's
# `journalctl MESSAGE_ID=...` queries depend on them. systemd/planctond.catalog must match.
MESSAGE_IDS: Final[dict[EventKind, uuid.UUID]] = {
    EventKind.PILOT_STARTED: uuid.UUID("f316964a96da45b08ba69046fae5bc89"),
    EventKind.PILOT_EXITED: uuid.UUID("5211c9ebe8da450299a91bd309d87480"),
    EventKind.PILOT_FROZEN: uuid.UUID("df16b97d26d24bdeb2cb12cbe7e8f725"),
    EventKind.PILOT_THAWED: uuid.UUID("310079fc9b3041e99af795cf381aea36"),
    EventKind.PILOT_STOPPED: uuid.UUID("9d9c07c0611e49e4bf4dd947e34e2a6a"),
    EventKind.PILOT_KILLED: uuid.UUID("67e42a9efc5d4b93b37c3f9b543363e4"),
    EventKind.STATE_CHANGED: uuid.UUID("55c142bb6e1b4ba7a863e76b5e7a4071"),
    EventKind.CONFIG_LOADED: uuid.UUID("afdf1e367df347d8bb9ea271e173d39a"),
    EventKind.CONFIG_REJECTED: uuid.UUID("28587db7c01245138351ab68f01b21d2"),
    EventKind.DOCKER_LOST: uuid.UUID("3f585549b32f40ce837162a917eb69eb"),
    EventKind.DOCKER_BACK: uuid.UUID("2c076c791b204722a2035a9118c26db6"),
    EventKind.POOL_BACKOFF: uuid.UUID("970e278621d940eab6e5759d1fc3fe07"),
    EventKind.IMAGE: uuid.UUID("d7d58c2bf9a6432999fa3a6c32b1d0f0"),
}

# Events an admin should notice in `journalctl -p warning`; the rest is routine.
_WARNING_KINDS: Final = frozenset(
    {
        EventKind.PILOT_KILLED,
        EventKind.CONFIG_REJECTED,
        EventKind.DOCKER_LOST,
        EventKind.POOL_BACKOFF,
    }
)

_HANDLER_MARK: Final = "_planctond_handler"


def journald_available() -> bool:
    return os.path.exists(JOURNAL_SOCKET)


def setup_logging(foreground: bool, level: int = logging.INFO) -> None:
    """Route the root logger to stderr (foreground or no journald) or to journald.

    Idempotent: calling it again (e.g. in tests or after a reload) replaces our handler instead of
    doubling every line.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    handler: logging.Handler
    if not foreground and journald_available():
        from systemd.journal import JournalHandler

        handler = JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
        # journald stamps time and priority itself; the message stays the plain sentence.
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", TIME_FORMAT)
        )
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)


def event_text(event: Event) -> str:
    """The readable line: `pilot-started plancton-default-3f2a (pool default): <message>`."""
    parts = [event.kind.value]
    if event.pilot:
        parts.append(event.pilot)
    if event.pool:
        parts.append(f"(pool {event.pool})")
    head = " ".join(parts)
    return f"{head}: {event.message}" if event.message else head


def journal_fields(event: Event) -> dict[str, object]:
    """What journald receives besides MESSAGE/PRIORITY: MESSAGE_ID and the PLANCTON_* fields."""
    fields: dict[str, object] = {"MESSAGE_ID": MESSAGE_IDS[event.kind]}
    fields.update(event.fields())
    return fields


def log_event(event: Event) -> None:
    """EventBus subscriber. The fields ride on the LogRecord; JournalHandler sends them as fields,
    the stderr formatter ignores them."""
    level = logging.WARNING if event.kind in _WARNING_KINDS else logging.INFO
    # No %-args: a "%" in a pilot message stays literal and no CODE_ARGS field is sent.
    logging.getLogger(EVENT_LOGGER).log(level, event_text(event), extra=journal_fields(event))
