"""The D-Bus error names of org.plancton.Manager1 and the one place exceptions become replies.

dbus-next answers an unexpected exception with its Python traceback; callers must instead get a
named error with a sentence, and the traceback belongs in the daemon's journal. Every error text
goes through `safe_text`: it may quote a config file, Docker or the caller, and an error reply that
cannot be sent is no answer at all.
"""

from __future__ import annotations

import logging
from typing import Final

from dbus_next.errors import DBusError

from planctond.constants import ERROR_PREFIX
from planctond.supervisor.api import ControlError
from planctond.text import safe_text

log = logging.getLogger(__name__)

ACCESS_DENIED: Final = f"{ERROR_PREFIX}.AccessDenied"
INVALID_ARGS: Final = f"{ERROR_PREFIX}.InvalidArgs"
FAILED: Final = f"{ERROR_PREFIX}.Failed"
OUR_ERRORS: Final = frozenset({ACCESS_DENIED, INVALID_ARGS, FAILED})


def error(name: str, text: str) -> DBusError:
    err: DBusError = DBusError(name, safe_text(text))  # type: ignore[no-untyped-call]  # untyped in 0.2.3
    return err


def access_denied(text: str) -> DBusError:
    return error(ACCESS_DENIED, text)


def invalid_args(text: str) -> DBusError:
    return error(INVALID_ARGS, text)


def failed(text: str) -> DBusError:
    return error(FAILED, text)


def translate(exc: BaseException, member: str) -> DBusError:
    """Map any exception raised while serving `member` to a named error fit for the caller."""
    if isinstance(exc, DBusError) and exc.type in OUR_ERRORS:
        return error(exc.type, exc.text)
    if isinstance(exc, ControlError):
        return failed(str(exc) or f"{member} refused")
    if isinstance(exc, DBusError):
        # A bus error from a call we made on the caller's behalf (e.g. the uid lookup).
        return failed(f"{member}: {exc.type}: {exc.text}")
    log.error("unexpected error serving %s", member, exc_info=exc)
    return failed(
        f"{member} failed: internal error ({type(exc).__name__}); see the daemon's journal"
    )
