"""`planctonctl bootstrap SOURCE`: the command line and the link to the running daemon; what it
does is in `bootstrap_plan.py`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from planctond import constants as C


class BootstrapError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bootstrap",
        help="install a config from an https:// URL or github:USER/REPO[/PATH][:BRANCH]",
        description=(
            "Fetch a config once, check it, show how the effective config would change, and "
            "install it on confirmation: as the main config file (--as local, a copy) or as the "
            "remote config the daemon follows (--as remote, a drop-in in config.d); then ask "
            "the daemon to reload. github:USER/REPO[/PATH][:BRANCH] is "
            f"{C.GITHUB_RAW}/USER/REPO/BRANCH/PATH (default branch: the repository's default, "
            f"{C.GITHUB_DEFAULT_REF}; default path: {C.GITHUB_DEFAULT_PATH})."
        ),
    )
    p.add_argument("source", metavar="SOURCE", help="https:// URL or github:USER/REPO[/PATH][:BRANCH]")  # fmt: skip
    p.add_argument("--as", dest="install_as", choices=("local", "remote"), default="local",
                   help="install as the main config file (default, as Plancton did) or follow it as the remote config")  # fmt: skip
    p.add_argument("--yes", action="store_true", help="install without asking (for scripts)")
    p.add_argument("--dry-run", action="store_true", help="show the change, install nothing")
    p.add_argument("--config", metavar="FILE", help=f"the main config file (default: the running daemon's, else {C.DEFAULT_CONFIG_PATH})")  # fmt: skip
    p.add_argument("--state-dir", metavar="DIR", help="where the daemon keeps the cached remote config (default: the config's state_dir)")  # fmt: skip
    p.add_argument("--ca-file", metavar="PEM", help="trust only these CAs for the URL (also installed with --as remote)")  # fmt: skip
    p.add_argument("--pin-sha256", metavar="PIN", action="append", default=[], help="the server key's SHA-256 pin (base64; repeatable)")  # fmt: skip
    p.add_argument("--token-file", metavar="FILE", help="file holding a bearer token for the server")  # fmt: skip
    p.add_argument("--interval", metavar="DURATION", help="how often the daemon checks the URL (--as remote; default 5m)")  # fmt: skip
    p.add_argument("--timeout", metavar="DURATION", help="for a whole fetch (default 30s; also installed with --as remote)")  # fmt: skip


class _Daemon:
    """The running daemon, over planctonctl's D-Bus calls (imported here: planctonctl imports
    this module)."""

    def config_path(self) -> str | None:
        """The daemon's main config file; None when it is not running, "" without a file."""
        from planctond.cli import planctonctl as ctl
        from planctond.cli.planctonctl import _call as call  # its one D-Bus call path

        try:
            status = ctl.status_from_dbus(asyncio.run(call("Status", "a{sv}")))
        except ctl.CtlError as exc:
            if exc.code == ctl.EXIT_NOT_RUNNING:
                return None
            raise BootstrapError(exc.code, str(exc)) from None
        path = str(status["config_path"])
        return path if path.startswith("/") else ""

    def reload(self) -> None:
        from planctond.cli.planctonctl import _call as call

        asyncio.run(call("Reload"))


def main(args: argparse.Namespace, daemon: Any = None, out: TextIO | None = None) -> int:
    """The command; the work is in `bootstrap_plan` (imported only here, so that `planctonctl
    status` does not load the config machinery)."""
    from planctond.cli.bootstrap_plan import run

    try:
        return run(args, daemon or _Daemon(), out or sys.stdout)
    except BootstrapError as exc:
        sys.stderr.write(f"planctonctl: {exc}\n")
        return exc.code
