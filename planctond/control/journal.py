"""Logging setup and the event log: structured journald entries, or one readable stderr line each.

journald gets every supervisor event with a MESSAGE_ID per kind and the PLANCTON_* fields, so
`journalctl -u planctond PLANCTON_EVENT=pilot-killed` and `journalctl -x` (catalog in
systemd/planctond.catalog) answer questions without grepping text.

python3-systemd's JournalHandler sends them where it is installed. A plain `pip install` has no
compiler-built systemd-python; `JournalSocketHandler` then speaks journald's native protocol
itself, so the structured fields survive that install route too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
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
    EventKind.OWNER_YIELD: uuid.UUID("0b55007355f94189b97626734721fa81"),
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


# journald keeps only fields named like this (uppercase, digits, '_'; no leading '_', which marks
# the fields journald itself vouches for). LogRecord's own attributes are lowercase: never sent.
_FIELD_NAME: Final = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
# Python levels -> syslog priorities, as python3-systemd's JournalHandler maps them.
_PRIORITIES: Final = (
    (logging.DEBUG, 7),
    (logging.INFO, 6),
    (logging.WARNING, 4),
    (logging.ERROR, 3),
    (logging.CRITICAL, 2),
)
_SNDBUF: Final = 8 * 1024 * 1024  # libsystemd's size: an entry fits unless it is huge


def syslog_priority(levelno: int) -> int:
    return next((pri for level, pri in _PRIORITIES if levelno <= level), 1)


def encode_entry(fields: dict[str, str]) -> bytes:
    """journald's native datagram: `KEY=value` lines, or `KEY`, a little-endian 64-bit length and
    the raw value where the value has a newline (a traceback, a multi-line message)."""
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class JournalSocketHandler(logging.Handler):
    """Log records as journal entries over journald's socket, without libsystemd.

    The entry carries what JournalHandler sends (MESSAGE, PRIORITY, LOGGER, THREAD_NAME, CODE_*)
    plus every record attribute named like a journal field: `extra=` in `log_event` puts
    MESSAGE_ID and the PLANCTON_* fields there. A record journald does not take (socket gone, an
    entry larger than a datagram) is written to stderr instead, which systemd also keeps.
    """

    def __init__(self, path: str, **fields: str) -> None:
        super().__init__()
        self.path = path
        self._fields = fields
        self._sock: socket.socket | None = None

    def entry(self, record: logging.LogRecord) -> dict[str, str]:
        fields = {
            "MESSAGE": self.format(record),
            "PRIORITY": str(syslog_priority(record.levelno)),
            **self._fields,
            "LOGGER": str(record.name or ""),
            "THREAD_NAME": record.threadName or "",
            "CODE_FILE": str(record.pathname or ""),
            "CODE_LINE": str(record.lineno or 0),
            "CODE_FUNC": str(record.funcName or ""),
        }
        if record.exc_text:
            fields["EXCEPTION_TEXT"] = record.exc_text
        for key, value in vars(record).items():
            if _FIELD_NAME.fullmatch(key):
                fields[key] = value.hex if isinstance(value, uuid.UUID) else str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.entry(record)
        except Exception:
            self.handleError(record)
            return
        try:
            self._socket().sendto(encode_entry(fields), self.path)
        except OSError:
            # `<N>` is the syslog priority prefix systemd reads on a service's stderr.
            sys.stderr.write(f"<{fields['PRIORITY']}>{fields['MESSAGE']}\n")
            sys.stderr.flush()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Capped by net.core.wmem_max; the kernel's default size still carries ordinary entries.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        self.acquire()
        try:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        finally:
            self.release()
        super().close()


def journal_handler() -> logging.Handler:
    """python3-systemd's JournalHandler where it is installed, else `JournalSocketHandler`."""
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return JournalSocketHandler(JOURNAL_SOCKET, SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    handler: logging.Handler = JournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    return handler


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
        handler = journal_handler()
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
