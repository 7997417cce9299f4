"""`planctond`: the daemon's entry point. Parses the command line and loads the config; the
parts are built and wired in `application.py`.

It never forks: under systemd it is a `Type=notify` service, by hand it runs with `--foreground`
(readable lines on stderr). Exit codes: 0 clean stop, 1 runtime failure (systemd restarts it),
78 (EX_CONFIG) a config that cannot be used at start-up (the unit does not restart on it: a
restart would not fix the file).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from planctond import __version__
from planctond import constants as C
from planctond.cli.application import Application, initial_config
from planctond.config.errors import ConfigError
from planctond.config.variables import HOST_VARIABLES
from planctond.control.journal import setup_logging
from planctond.supervisor.state_store import StateStoreError

log = logging.getLogger("planctond")

EX_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="planctond",
        description=(
            "Keep short-lived pilot containers on this host's spare CPU, owner first. "
            "Runs in the foreground; under systemd it is a Type=notify service controlled over "
            "D-Bus (org.plancton) and with planctonctl."
        ),
        epilog=(
            "Signals: SIGHUP reloads the config (a bad one is refused, the last good one stays); "
            "SIGTERM/SIGINT stop the daemon, stopping pilots gracefully unless --leave-pilots. "
            "Exit codes: 0 clean stop, 1 failure, 78 unusable config at start."
        ),
    )
    p.add_argument(
        "--config",
        default=C.DEFAULT_CONFIG_PATH,
        metavar="FILE",
        help=f"config file (default {C.DEFAULT_CONFIG_PATH}; if the default file is "
        "absent, built-in defaults run busybox 'sleep 60' dummy pilots)",
    )
    p.add_argument(
        "--foreground", action="store_true", help="log readable lines to stderr instead of journald"
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where the run state and instance id live (default: config's state_dir, {C.DEFAULT_STATE_DIR})",
    )
    p.add_argument(
        "--docker-url",
        metavar="URL",
        help="Docker API endpoint, e.g. unix:///run/docker.sock (default: config's docker.url, then DOCKER_HOST, then the default socket)",
    )
    p.add_argument(
        "--check-config",
        metavar="FILE",
        help="validate FILE with its drop-ins (config.d/*.yaml next to it) and the cached remote "
        "config, print the effective config with every default and where each value came from, "
        "exit 0 (valid) or 1",
    )
    p.add_argument(
        "--setup-cgroup",
        action="store_true",
        help="create the pilots' idle parent cgroup and exit (needs root; the systemd unit runs it as ExecStartPre=+)",
    )
    p.add_argument(
        "--leave-pilots",
        action="store_true",
        help="on SIGTERM leave pilots running for the next daemon to adopt (default: stop them; config docker.stop_pilots_on_exit)",
    )
    p.add_argument(
        "--no-dbus",
        action="store_true",
        help="do not serve the D-Bus API (default: serve it on the system bus when one is reachable)",
    )
    p.add_argument(
        "--help-variables",
        action="store_true",
        help="list the host variables max_pilots and run_when expressions may use, and exit",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--version", action="version", version=f"planctond {__version__}")
    return p


def check_config(path: str, state_dir: str | None) -> int:
    """`--check-config`: the host's files over the remote document in the cache (when there is
    one of the URL they name: nothing is fetched here), each value with its origin."""
    from planctond.config.explain import render_explained
    from planctond.config.layers import compose, local_sources
    from planctond.remote.cache import RemoteCache

    try:
        sources = local_sources(path, missing_ok=False)
        composed = compose(sources, None, name=path)
        document = None
        if composed.remote is not None:
            cache = RemoteCache(state_dir or composed.config.state_dir)
            document = cache.load(composed.remote.url)
            if document is not None:
                composed = compose(sources, document, name=path)
    except ConfigError as exc:
        print(f"planctond: {exc}", file=sys.stderr)
        return 1
    text = render_explained(composed)
    if composed.remote is not None and document is None:
        text += f"# note: no cached document of {composed.remote.url}: the remote's values are not shown (planctonctl bootstrap --dry-run fetches one)\n"  # fmt: skip
    print(text, end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.help_variables:
        for name, doc in HOST_VARIABLES.items():
            print(f"{name:16} {doc}")
        return 0
    if args.check_config:
        return check_config(args.check_config, args.state_dir)
    setup_logging(args.foreground, getattr(logging, args.log_level.upper()))
    explicit = "--config" in (argv if argv is not None else sys.argv[1:]) or any(
        a.startswith("--config=") for a in (argv if argv is not None else sys.argv[1:])
    )
    try:
        # The default path may be absent (fresh install without a config): run the dummy pilots.
        cfg, document = initial_config(
            args.config, missing_ok=not explicit, state_dir=args.state_dir
        )
    except ConfigError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    if args.setup_cgroup:
        from planctond.cli.setup_cgroup import main as setup_main

        setup_args = []
        if cfg.docker.cgroup_parent:
            setup_args += ["--parent", cfg.docker.cgroup_parent]
        url = args.docker_url or cfg.docker.url
        if url:
            setup_args += ["--docker-url", url]
        return setup_main(setup_args)
    try:
        app = Application(
            cfg,
            config_path=args.config,
            docker_url=args.docker_url,
            state_dir_override=args.state_dir,
            leave_pilots=args.leave_pilots,
            dbus=not args.no_dbus,
            remote_document=document,
        )
        return asyncio.run(app.serve())
    except StateStoreError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
