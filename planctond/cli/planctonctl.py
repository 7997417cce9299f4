"""planctonctl: a small client of org.plancton.Manager1 on the system bus.

Exit codes are part of the interface (scripts rely on them) and listed in EPILOG and the man page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, Final, TextIO

from planctond import __version__
from planctond.constants import ADMIN_GROUP, BUS_NAME, INTERFACE, OBJECT_PATH, UNIT_NAME

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
NOT_RUNNING_ERRORS: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.ServiceUnknown",
        "org.freedesktop.DBus.Error.NameHasNoOwner",
        "org.freedesktop.DBus.Error.Disconnected",
    }
)
READ_MEMBERS: Final = frozenset({"Status", "ListPilots", "Get"})
DENIED_ERRORS: Final = frozenset(
    {"org.freedesktop.DBus.Error.AccessDenied", "org.plancton.Error.AccessDenied"}
)

EPILOG: Final = f"""\
logs passes its arguments to journalctl -u {UNIT_NAME}, e.g. `planctonctl logs -f` or
`planctonctl logs PLANCTON_EVENT=pilot-killed`; without any it shows the last 100 entries.

Anyone may run status and pilots; start, drain, resume, stop and reload need root or
membership in group {ADMIN_GROUP}.

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
    return parser


# --- D-Bus -----------------------------------------------------------------------------------


async def _call(member: str, interface: str = INTERFACE, signature: str = "", body: list[Any] | None = None) -> list[Any]:  # fmt: skip
    from dbus_next.aio.message_bus import MessageBus
    from dbus_next.constants import BusType, MessageType
    from dbus_next.message import Message

    try:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), CALL_TIMEOUT)
    except Exception as exc:
        raise CtlError(
            EXIT_NOT_RUNNING,
            f"planctond is not reachable: cannot connect to the system bus ({exc})",
        ) from exc
    try:
        reply = await asyncio.wait_for(
            bus.call(
                Message(
                    destination=BUS_NAME,
                    path=OBJECT_PATH,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=body or [],
                )
            ),
            CALL_TIMEOUT,
        )
    except TimeoutError as exc:
        raise CtlError(
            EXIT_FAILED, f"{member}: no answer from planctond within {CALL_TIMEOUT:.0f} s"
        ) from exc
    finally:
        bus.disconnect()  # type: ignore[no-untyped-call]
    if reply is None:
        raise CtlError(EXIT_FAILED, f"{member}: no reply")
    if reply.message_type is MessageType.ERROR:
        name = reply.error_name or ""
        text = str(reply.body[0]) if reply.body else name
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
    return list(reply.body)


def plain(value: Any) -> Any:
    """dbus-next Variants and structs -> JSON-ready Python."""
    if hasattr(value, "signature") and hasattr(value, "value"):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def pilots_from_dbus(raw: list[Any]) -> list[dict[str, Any]]:
    keys = ("name", "id", "pool", "phase", "image", "started_usec", "cpu")
    return [dict(zip(keys, plain(p), strict=True)) for p in raw]


# --- formatting ------------------------------------------------------------------------------


def age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(usec: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(usec / 1e6)) if usec else "-"


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
    ncpus = s.get("ncpus", 0) or 1
    out.write(f"planctond {s.get('version', '?')}: {s.get('summary', s.get('state', '?'))}\n")
    docker = "ok" if s.get("docker_ok") else f"unreachable: {s.get('docker_error', '')}"
    fields = [
        ("State", s.get("state", "?")),
        ("Docker", docker),
        ("Uptime", age(s.get("uptime_s", 0.0))),
        ("Owner CPU", f"{s.get('owner_cpu', 0.0):.2f} of {ncpus} CPUs ({s.get('owner_cpu', 0.0) * 100 / ncpus:.0f} %)"),
        ("Host CPU", f"{s.get('host_cpu', 0.0):.2f}"),
        ("Spare CPUs", f"{s.get('capacity_cpus', 0.0):.2f}"),
        ("Config", s.get("config_path") or "built-in defaults"),
        ("Last error", s.get("last_error") or "-"),
    ]  # fmt: skip
    for label, value in fields:
        out.write(f"  {label + ':':<12}{value}\n")
    pools = s.get("pools", [])
    if pools:
        out.write("\n")
        rows = [("POOL", "RUNNING", "FROZEN", "ALLOWED", "NOTE")]
        for p in pools:
            note = p.get("note", "")
            if p.get("backoff_until_usec"):
                note = f"{note} (back-off until {clock(p['backoff_until_usec'])})".strip()
            rows.append((p["name"], str(p["running"]), str(p["frozen"]), str(p["allowed"]), note))
        table(rows, out)
    out.write("\n")
    print_pilots(pilots, out, now)
    events = s.get("recent_events", [])
    if events:
        out.write("\nRecent events:\n")
        for e in events[-5:]:
            who = f" {e['pilot']}" if e.get("pilot") else ""
            pool = f" (pool {e['pool']})" if e.get("pool") else ""
            out.write(f"  {clock(e.get('time_usec', 0))} {e['event']}{who}{pool}: {e['message']}\n")


# --- commands --------------------------------------------------------------------------------


async def _run(command: str, as_json: bool, out: TextIO) -> int:
    now = time.time()
    if command == "status":
        status = plain((await _call("Status"))[0])
        pilots = pilots_from_dbus((await _call("ListPilots"))[0])
        if as_json:
            json.dump({"status": status, "pilots": pilots}, out, indent=2, sort_keys=True)
            out.write("\n")
        else:
            print_status(status, pilots, out, now)
        return EXIT_OK
    if command == "pilots":
        pilots = pilots_from_dbus((await _call("ListPilots"))[0])
        if as_json:
            json.dump(pilots, out, indent=2, sort_keys=True)
            out.write("\n")
        else:
            print_pilots(pilots, out, now)
        return EXIT_OK
    member = STATE_COMMANDS[command][0]
    await _call(member)
    state = plain(
        (await _call("Get", "org.freedesktop.DBus.Properties", "ss", [INTERFACE, "State"]))[0]
    )
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
    try:
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


if __name__ == "__main__":
    sys.exit(main())
