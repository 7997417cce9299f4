"""planctonctl: a small client of org.plancton.Manager1 on the system bus.

Exit codes are part of the interface (scripts rely on them) and listed in EPILOG and the man page.

A reply is checked against the shape this version of the interface has (signature, every key of
Status with its type) before anything is printed: a daemon of another version, or anything else
that answers as org.plancton, gets a one-line "unexpected reply" and exit status 1, never a
traceback. Its text is made safe (`safe_text`) as it arrives, so it cannot rewrite the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, Final, TextIO

from planctond import __version__
from planctond.cli import bootstrap
from planctond.constants import ADMIN_GROUP, BUS_NAME, INTERFACE, OBJECT_PATH, UNIT_NAME
from planctond.text import safe_text

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NOT_RUNNING: Final = 3
EXIT_DENIED: Final = 4

CALL_TIMEOUT: Final = 60.0
STATE_COMMANDS: Final = {
    "start": ("Start", "leave drain/stopped and start pilots now"),
    "drain": ("Drain", "start no new pilots; running ones finish"),
    "resume": ("Resume", "back to active after drain or stop"),
    "stop": ("Stop", "stop all pilots and start none"),
    "reload": ("Reload", "re-read the configuration (the old one stays if the new is invalid)"),
}
NOT_RUNNING_ERRORS: Final = frozenset({"org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner", "org.freedesktop.DBus.Error.Disconnected"})  # fmt: skip
READ_MEMBERS: Final = frozenset({"Status", "ListPilots", "Get"})
DENIED_ERRORS: Final = frozenset(
    {"org.freedesktop.DBus.Error.AccessDenied", "org.plancton.Error.AccessDenied"}
)
# The reply shapes of org.plancton.Manager1 (dbus/org.plancton.Manager1.xml): the D-Bus type of
# each key, or for a list of records (aa{sv}) the keys of one record.
Shape = str | dict[str, Any]
POOL_KEYS: Final[dict[str, Shape]] = {"name": "s", "running": "u", "frozen": "u", "allowed": "u",
                                      "backoff_until_usec": "t", "note": "s"}  # fmt: skip
EVENT_KEYS: Final[dict[str, Shape]] = {"time_usec": "t", "event": "s", "message": "s",
                                       "pilot": "s", "pool": "s"}  # fmt: skip
STATUS_KEYS: Final[dict[str, Shape]] = {
    "state": "s", "summary": "s", "docker_ok": "b", "docker_error": "s", "pilots": "u",
    "pools": POOL_KEYS, "capacity_cpus": "d", "owner_cpu": "d", "host_cpu": "d", "ncpus": "u",
    "started_usec": "t", "uptime_s": "d", "last_tick_usec": "t", "version": "s",
    "config_path": "s", "last_error": "s", "recent_events": EVENT_KEYS, "extra": "a{ss}",
}  # fmt: skip
PILOT_FIELDS: Final = (("name", "s"), ("id", "s"), ("pool", "s"), ("phase", "s"), ("image", "s"),
                       ("started_usec", "t"), ("cpu", "d"))  # fmt: skip
PILOT_STRUCT: Final = "(" + "".join(sig for _, sig in PILOT_FIELDS) + ")"

EPILOG: Final = f"""\
logs passes its arguments to journalctl -u {UNIT_NAME}, e.g. `planctonctl logs -f` or
`planctonctl logs PLANCTON_EVENT=pilot-killed`; without any it shows the last 100 entries.

Anyone may run status and pilots; start, drain, resume, stop, reload and bootstrap need root
or membership in group {ADMIN_GROUP} (bootstrap also needs write access to the config files).

exit status:
  0  success
  1  the daemon refused or failed the request (the message says why)
  2  usage error
  3  the daemon is not running, or the system bus is not reachable
  4  permission denied

environment:
  DBUS_SYSTEM_BUS_ADDRESS  the system bus to use (default unix:path=/run/dbus/system_bus_socket)
"""


class CtlError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="planctonctl",
        description="Control and inspect planctond over its D-Bus API (org.plancton).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"planctonctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("status", parents=[common], help="show the daemon's state")
    sub.add_parser("pilots", parents=[common], help="list pilots")
    for name, (_member, text) in STATE_COMMANDS.items():
        sub.add_parser(name, parents=[common], help=text)
    # "+" prefix: every "-x" after `logs` belongs to journalctl, not to us.
    logs = sub.add_parser("logs", help="show the daemon's journal", prefix_chars="+")
    logs.add_argument("journal_args", nargs=argparse.REMAINDER, help="passed to journalctl")
    bootstrap.add_parser(sub)
    return parser


# --- D-Bus -----------------------------------------------------------------------------------


async def _call(member: str, expect: str = "", interface: str = INTERFACE, signature: str = "", body: list[Any] | None = None) -> list[Any]:  # fmt: skip
    """The body of `member`'s reply, whose signature must be `expect`; CtlError otherwise."""
    from dbus_next.aio.message_bus import MessageBus
    from dbus_next.constants import BusType, MessageType
    from dbus_next.message import Message

    try:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), CALL_TIMEOUT)
    except Exception as exc:
        raise CtlError(
            EXIT_NOT_RUNNING,
            f"planctond is not reachable: cannot connect to the system bus ({safe_text(exc)})",
        ) from exc
    call = Message(destination=BUS_NAME, path=OBJECT_PATH, interface=interface, member=member,
                   signature=signature, body=body or [])  # fmt: skip
    try:
        reply = await asyncio.wait_for(bus.call(call), CALL_TIMEOUT)
    except TimeoutError as exc:
        raise CtlError(
            EXIT_FAILED, f"{member}: no answer from planctond within {CALL_TIMEOUT:.0f} s"
        ) from exc
    finally:
        bus.disconnect()  # type: ignore[no-untyped-call]
    if reply is None:
        raise CtlError(EXIT_FAILED, f"{member}: no reply")
    if reply.message_type is MessageType.ERROR:
        name = safe_text(reply.error_name or "")
        text = safe_text(reply.body[0] if reply.body else name)
        if name in NOT_RUNNING_ERRORS:
            raise CtlError(
                EXIT_NOT_RUNNING, f"planctond is not running ({BUS_NAME} is not on the system bus)"
            )
        if name in DENIED_ERRORS:
            hint = (
                "reading planctond's status is open to everyone: is the bus policy "
                "/usr/share/dbus-1/system.d/org.plancton.conf installed?"
                if member in READ_MEMBERS
                else f"changing planctond's state needs root or membership in group {ADMIN_GROUP}"
            )
            raise CtlError(EXIT_DENIED, f"permission denied: {text}\n({hint})")
        if name == "org.freedesktop.DBus.Error.NoReply":
            raise CtlError(EXIT_FAILED, f"{member}: planctond did not answer in time ({text})")
        raise CtlError(EXIT_FAILED, f"{member} failed: {text}")
    if reply.signature != expect:
        raise unexpected(f"{member} answered ({safe_text(reply.signature, 60)}), not ({expect})")
    return list(reply.body)


# --- replies -> checked plain data -----------------------------------------------------------


def unexpected(what: str) -> CtlError:
    return CtlError(EXIT_FAILED, f"unexpected reply from planctond: {what}")


def checked(value: Any, shape: Shape, where: str) -> Any:
    """`value` if it is what D-Bus type `shape` unmarshals to (text made safe), else CtlError."""
    if isinstance(shape, dict):
        if isinstance(value, list):
            return [record(v, shape, f"{where}[{i}]") for i, v in enumerate(value)]
        raise unexpected(f"{where} is not a list of records")
    sig = shape
    if sig == "s" and isinstance(value, str):
        return safe_text(value)
    if sig == "b" and isinstance(value, bool):
        return value
    if sig in ("u", "t") and type(value) is int and 0 <= value < 2**64:
        return value
    if sig == "d" and isinstance(value, float | int) and not isinstance(value, bool):
        return float(value)
    if sig == "a{ss}" and isinstance(value, dict):
        return {checked(k, "s", where): checked(v, "s", where) for k, v in value.items()}
    raise unexpected(f"{where} is not of type {sig}")


def variant(raw: Any, shape: Shape, where: str) -> Any:
    """The checked value of a variant of type `shape`."""
    sig = "aa{sv}" if isinstance(shape, dict) else shape
    if getattr(raw, "signature", None) != sig or not hasattr(raw, "value"):
        raise unexpected(f"{where} is not a variant of type {sig}")
    return checked(raw.value, shape, where)


def record(raw: Any, keys: dict[str, Shape], where: str) -> dict[str, Any]:
    """An a{sv} dict with every key of `keys`, each a variant of its type; others are ignored
    (a newer daemon may add some)."""
    if not isinstance(raw, dict):
        raise unexpected(f"{where} is not a dictionary")
    missing = [k for k in keys if k not in raw]
    if missing:
        raise unexpected(f"{where} has no {safe_text(', '.join(missing))}")
    return {k: variant(raw[k], shape, f"{where}.{k}") for k, shape in keys.items()}


def status_from_dbus(body: list[Any]) -> dict[str, Any]:
    return record(body[0] if body else None, STATUS_KEYS, "Status")


def state_from_dbus(body: list[Any]) -> str:
    state: str = variant(body[0] if body else None, "s", "State")
    return state


def pilots_from_dbus(body: list[Any]) -> list[dict[str, Any]]:
    raw = body[0] if body else None
    if not isinstance(raw, list):
        raise unexpected(f"the pilot list is not of type a{PILOT_STRUCT}")
    pilots = []
    for i, p in enumerate(raw):
        if not isinstance(p, list | tuple) or len(p) != len(PILOT_FIELDS):
            raise unexpected(f"pilot {i} is not of type {PILOT_STRUCT}")
        fields = zip(PILOT_FIELDS, p, strict=True)
        pilots.append({k: checked(v, sig, f"pilot {i} {k}") for (k, sig), v in fields})
    return pilots


# --- formatting ------------------------------------------------------------------------------


def age(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(usec: int) -> str:
    if not usec:
        return "-"
    try:
        return time.strftime("%H:%M:%S", time.localtime(usec / 1e6))
    except (OverflowError, OSError, ValueError):  # past what the C library can express
        return "?"


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def print_pilots(pilots: list[dict[str, Any]], out: TextIO, now: float) -> None:
    if not pilots:
        out.write("no pilots\n")
        return
    rows = [("PILOT", "POOL", "PHASE", "AGE", "CPU", "IMAGE", "ID")]
    for p in pilots:
        started = p["started_usec"] / 1e6
        rows.append((p["name"], p["pool"], p["phase"], age(now - started) if started else "-",
                     f"{p['cpu']:.2f}", p["image"], p["id"][:12]))  # fmt: skip
    table(rows, out)


def print_status(s: dict[str, Any], pilots: list[dict[str, Any]], out: TextIO, now: float) -> None:
    """`s` as `status_from_dbus` checked it: every key is there with its type."""
    ncpus = s["ncpus"] or 1
    out.write(f"planctond {s['version']}: {s['summary'] or s['state']}\n")
    docker = "ok" if s["docker_ok"] else f"unreachable: {s['docker_error']}"
    fields = [
        ("State", s["state"]),
        ("Docker", docker),
        ("Uptime", age(s["uptime_s"])),
        ("Owner CPU", f"{s['owner_cpu']:.2f} of {ncpus} CPUs ({s['owner_cpu'] * 100 / ncpus:.0f} %)"),
        ("Host CPU", f"{s['host_cpu']:.2f}"),
        ("Spare CPUs", f"{s['capacity_cpus']:.2f}"),
        ("Config", s["config_path"] or "built-in defaults"),
        ("Last error", s["last_error"] or "-"),
    ]  # fmt: skip
    for key, value in sorted(s["extra"].items()):
        if key.startswith("monitoring "):  # one line per backend: health, backlog, drops
            fields.append(("Monitoring", f"{key.removeprefix('monitoring ')}: {value}"))
        elif key == "remote":  # the remote config: its URL, health and what is in force
            fields.append(("Remote", value))
    for label, value in fields:
        out.write(f"  {label + ':':<12}{value}\n")
    if s["pools"]:
        out.write("\n")
        rows = [("POOL", "RUNNING", "FROZEN", "ALLOWED", "NOTE")]
        for p in s["pools"]:
            note = p["note"]
            if p["backoff_until_usec"]:
                note = f"{note} (back-off until {clock(p['backoff_until_usec'])})".strip()
            rows.append((p["name"], str(p["running"]), str(p["frozen"]), str(p["allowed"]), note))
        table(rows, out)
    out.write("\n")
    print_pilots(pilots, out, now)
    if s["recent_events"]:
        out.write("\nRecent events:\n")
        for e in s["recent_events"][-5:]:
            who = f" {e['pilot']}" if e["pilot"] else ""
            pool = f" (pool {e['pool']})" if e["pool"] else ""
            out.write(f"  {clock(e['time_usec'])} {e['event']}{who}{pool}: {e['message']}\n")


# --- commands --------------------------------------------------------------------------------


async def _run(command: str, as_json: bool, out: TextIO) -> int:
    now = time.time()
    if command in ("status", "pilots"):
        status = status_from_dbus(await _call("Status", "a{sv}")) if command == "status" else None
        pilots = pilots_from_dbus(await _call("ListPilots", f"a{PILOT_STRUCT}"))
        if as_json:
            json.dump(pilots if status is None else {"status": status, "pilots": pilots},
                      out, indent=2, sort_keys=True)  # fmt: skip
            out.write("\n")
        elif status is None:
            print_pilots(pilots, out, now)
        else:
            print_status(status, pilots, out, now)
        return EXIT_OK
    await _call(STATE_COMMANDS[command][0])
    props = "org.freedesktop.DBus.Properties"
    state = state_from_dbus(await _call("Get", "v", props, "ss", [INTERFACE, "State"]))
    if as_json:
        json.dump({"command": command, "ok": True, "state": state}, out)
        out.write("\n")
    else:
        out.write(f"{command}: done, planctond is {state}\n")
    return EXIT_OK


def journalctl_argv(extra: list[str], as_json: bool) -> list[str]:
    argv = ["journalctl", "-u", UNIT_NAME]
    if as_json:
        argv += ["-o", "json"]
    # Without arguments: the last page with explanations from the catalog.
    return argv + (extra if extra else ["-n", "100", "-x"])


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse: 0 for --help/--version, 2 for usage errors
        return int(exc.code or 0)
    as_json = bool(getattr(args, "json", False))
    if args.command == "logs":
        extra = list(args.journal_args)
        if extra[:1] == ["--json"]:  # `planctonctl logs --json` as well as `--json logs`
            extra, as_json = extra[1:], True
        argv_j = journalctl_argv(extra, as_json)
        if shutil.which(argv_j[0]) is None:
            sys.stderr.write("planctonctl: journalctl not found\n")
            return EXIT_FAILED
        try:
            return subprocess.call(argv_j)
        except KeyboardInterrupt:
            return EXIT_OK
    if isinstance(sys.stdout, io.TextIOWrapper):  # a terminal in a non-UTF-8 locale
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        if args.command == "bootstrap":
            return bootstrap.main(args)
        return asyncio.run(_run(args.command, as_json, sys.stdout))
    except CtlError as exc:
        sys.stderr.write(f"planctonctl: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `planctonctl status | head`: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # whatever nobody foresaw: still one line, and "failed"
        sys.stderr.write(f"planctonctl: internal error: {safe_text(repr(exc), 300)}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
