"""`planctonctl bootstrap SOURCE`: take a config from a URL (or `github:user/repo`, as Plancton's
`plancton-bootstrap user/repo:branch` did) and make it this host's, after showing what changes.

    fetch once -> check it like a local file -> diff of the effective config -> confirm ->
    install (the main file, or a drop-in naming it as the `remote:` source) -> daemon reload

The fetch uses the daemon's own fetcher with the settings being installed (CA file, pins, token),
so what works here works for the daemon. The new effective config is computed exactly as the
daemon will (`config/layers.py`: drop-ins, main file, remote), before anything is written: a
document that would be refused is never installed. If the daemon still refuses the reload (a CA
file it cannot read as its own user), the previous files are put back.

Root or plancton-admin only, like every state change: the same `Authorizer` the daemon uses.
Writing under /etc still needs the file system's permission (root, as a rule).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import shutil
import sys
import time
from typing import Any, Final, TextIO

from planctond import constants as C
from planctond.cli.bootstrap import BootstrapError
from planctond.config.dropins import dropin_dir
from planctond.config.errors import ConfigError
from planctond.config.files import read_limited, write_atomic
from planctond.config.layers import Source, compose, local_sources, remote_layer
from planctond.config.loader import load_config_text
from planctond.config.model import Config, RemoteConfig
from planctond.config.remote import RemoteDocument
from planctond.config.render import render_effective
from planctond.control.authz import Authorizer
from planctond.remote.cache import RemoteCache
from planctond.remote.fetch import FetchError, fetch
from planctond.remote.sources import SourceError, resolve

DROPIN_NAME: Final = "50-bootstrap-remote.yaml"  # the drop-in `--as remote` writes (its own)
BACKUP_SUFFIX: Final = ".before-bootstrap"


def _remote_text(url: str, args: argparse.Namespace) -> str:
    """The `remote:` section as YAML (quoted scalars, so nothing from the command line can
    become YAML structure)."""
    lines = [
        f"# Written by `planctonctl bootstrap` on {time.strftime('%Y-%m-%d %H:%M:%S %z')}: this",
        "# host follows the site's config at the URL below; its own files still win.",
        "remote:",
        f"  url: {_quoted(url)}",
    ]
    for key in ("ca_file", "token_file", "interval", "timeout"):
        value = getattr(args, key)
        if value:
            lines.append(f"  {key}: {_quoted(value)}")
    if args.pin_sha256:
        lines.append("  pin_sha256: [" + ", ".join(_quoted(p) for p in args.pin_sha256) + "]")
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _settings(text: str) -> RemoteConfig:
    try:
        remote = load_config_text(text, "command line").remote
    except ConfigError as exc:
        raise BootstrapError(2, str(exc)) from None
    assert remote is not None
    return remote


def _effective(sources: list[Source], document: RemoteDocument | None, name: str) -> Config:
    return compose(sources, document, name=name).config


def _render(config: Config | None) -> list[str]:
    if config is None:
        return []
    return render_effective(dataclasses.replace(config, warnings=())).splitlines(keepends=True)[1:]


def _current(path: str, state_dir: str | None) -> tuple[list[Source], Config | None, str]:
    """The host's files and its effective config now (None and why, when it does not load)."""
    try:
        sources = local_sources(path)
        composed = compose(sources, None, name=path)
    except ConfigError as exc:
        return [], None, f"the current config does not load: {exc}"
    if composed.remote is None:
        return sources, composed.config, ""
    cache = RemoteCache(state_dir or composed.config.state_dir)
    document = cache.load(composed.remote.url)
    if document is None:
        return sources, composed.config, f"no readable cache of {composed.remote.url}: its values are not in the diff"  # fmt: skip
    return sources, _effective(sources, document, path), ""


def plan(args: argparse.Namespace, path: str, out: TextIO) -> tuple[str, str]:
    """Fetch, check, print the diff; the (file, text) to install."""
    try:
        url = resolve(args.source)
    except SourceError as exc:
        raise BootstrapError(2, str(exc)) from None
    remote_text = _remote_text(url, args)
    settings = _settings(remote_text)
    out.write(f"fetching {url}\n")
    try:
        document = fetch(settings, None)
    except FetchError as exc:
        raise BootstrapError(1, f"cannot fetch {url}: {exc}") from None
    assert document is not None
    sources, current, note = _current(path, args.state_dir)
    try:
        if args.install_as == "local":
            target, text = path, document.text
            load_config_text(text, url)  # alone, exactly like a local file: errors name the URL
            new_sources = [s for s in sources if not s.main] + [Source(path, text, main=True)]
            cached = None
            new = compose(new_sources, None, name=path)
            if new.remote is not None:
                cached = RemoteCache(args.state_dir or new.config.state_dir).load(new.remote.url)
            after = _effective(new_sources, cached, path)
        else:
            target, text = os.path.join(dropin_dir(path), DROPIN_NAME), remote_text
            remote_layer(document, settings)  # alone, like a local file, and no local-only keys
            new_sources = [s for s in sources if s.name != target]
            new_sources.insert(_dropin_position(new_sources, target), Source(target, text))
            composed = compose(new_sources, document, name=path)
            if composed.used is None:
                raise BootstrapError(1, f"{path} (or a later drop-in) names another remote url, which wins over {target}: remove it there first")  # fmt: skip
            after = composed.config
    except ConfigError as exc:
        raise BootstrapError(1, f"refused, nothing installed:\n{exc}") from None
    diff = list(difflib.unified_diff(_render(current), _render(after), "effective config now", "effective config after"))  # fmt: skip
    if note:
        out.write(f"note: {note}\n")
    out.writelines(diff or ["no change to the effective config\n"])
    for warning in after.warnings:
        out.write(f"warning: {warning}\n")
    return target, text


def _dropin_position(sources: list[Source], target: str) -> int:
    names = [s.name for s in sources if not s.main]
    return sum(1 for n in names if os.fsencode(os.path.basename(n)) < os.fsencode(os.path.basename(target)))  # fmt: skip


def _confirm(args: argparse.Namespace, target: str, out: TextIO) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise BootstrapError(2, "no terminal to ask on: --yes installs, --dry-run only shows")
    out.write(f"install {target}? [y/N] ")
    out.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _install(target: str, text: str) -> str | None:
    """Write `target`; the path of the backup of what was there (None: nothing was)."""
    os.makedirs(os.path.dirname(target) or ".", mode=0o755, exist_ok=True)
    backup = None
    if os.path.exists(target):
        backup = target + BACKUP_SUFFIX
        shutil.copy2(target, backup)
    write_atomic(target, text.encode("utf-8"), mode=0o644)
    return backup


def _restore(target: str, backup: str | None) -> None:
    if backup is None:
        os.unlink(target)
    else:
        write_atomic(target, read_limited(backup, C.MAX_CONFIG_SIZE), mode=0o644)


def run(args: argparse.Namespace, daemon: Any, out: TextIO) -> int:
    """`daemon`: config_path() -> str | None (None: not running), reload() raising on refusal."""
    if not Authorizer().may_control(os.getuid()):
        raise BootstrapError(4, f"permission denied: bootstrap needs root or membership in group {C.ADMIN_GROUP}")  # fmt: skip
    if args.yes and args.dry_run:
        raise BootstrapError(2, "--yes and --dry-run contradict each other")
    running_path = daemon.config_path()
    path = args.config or running_path or C.DEFAULT_CONFIG_PATH
    target, text = plan(args, path, out)
    if args.dry_run or not _confirm(args, target, out):
        out.write("nothing installed\n")
        return 0
    try:
        backup = _install(target, text)
    except OSError as exc:
        raise BootstrapError(1, f"cannot write {target}: {exc.strerror or exc} (root is needed under /etc)") from None  # fmt: skip
    out.write(f"installed {target}" + (f" (the previous one is {backup})\n" if backup else "\n"))
    if running_path is None:
        out.write("planctond is not running: it reads the new config when it starts\n")
        return 0
    if running_path != path:
        out.write(f"planctond runs {running_path}, not {path}: not reloaded\n")
        return 0
    try:
        daemon.reload()
    except Exception as exc:
        _restore(target, backup)
        raise BootstrapError(1, f"planctond refused the new config, the previous files are back: {exc}") from None  # fmt: skip
    out.write("planctond reloaded: the new config is in force\n")
    return 0
