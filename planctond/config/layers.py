"""The daemon's config: the site's remote config, the drop-ins, the main file, merged and checked
as one (`load_layered`, the one entry point the daemon, `--check-config` and bootstrap use).

    remote document (base)  <-  config.d/*.yaml in name order  <-  config.yaml (wins)

The host's own files win, so a host owner can always lower `max_pilots` or set `run_when`, and
`remote: {may_set_owner: false}` keeps the remote out of the `owner` section altogether. Only the
host's files may say `remote:` and `state_dir:` (`remote.local_only_problems`).

The remote document is checked twice: alone, exactly like a local file (the same loader, its URL
standing where a file name stands), so the site's document is a valid config by itself and its
mistakes are named at its own lines; then merged with the host's files. A host that names a
remote but has no document of it yet (first start, server down) runs no built-in dummy pool
meanwhile: the dummy pilots are for a host with no config at all, not one awaiting its site's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from planctond.config import fields as F
from planctond.config.document import Node, parse_document
from planctond.config.dropins import read_dropins
from planctond.config.errors import ConfigError, Problem
from planctond.config.fields_remote import remote_settings
from planctond.config.files import read_config_text
from planctond.config.loader import load_config_text, load_tree, missing_warning
from planctond.config.model import Config, RemoteConfig
from planctond.config.remote import RemoteDocument, local_only_problems, merge_all, without


@dataclass(frozen=True)
class Source:
    """One layer's text: the main file or a drop-in (a remote document comes separately)."""

    name: str
    text: str
    main: bool = False


@dataclass(frozen=True)
class Composed:
    config: Config
    root: Node  # the merged document: each node knows its file and line (provenance)
    remote: RemoteConfig | None  # where the remote config comes from, per the host's files
    used: RemoteDocument | None  # the remote document in the config (None: none, or awaited)


def local_sources(path: str | None, *, missing_ok: bool = True) -> list[Source]:
    """The drop-ins in merge order, then the main file if it is there."""
    if path is None:
        return []
    sources = [Source(piece.path, piece.text) for piece in read_dropins(path)]
    try:
        sources.append(Source(path, read_config_text(path), main=True))
    except FileNotFoundError:
        if not missing_ok:
            raise ConfigError([Problem(path, "", None, "file not found")]) from None
    return sources


def _parse(text: str, name: str) -> Node:
    root = parse_document(text, name)
    if isinstance(root, Problem):
        raise ConfigError([root])
    if not root.is_map:
        raise ConfigError([Problem(name, "", root.line, "expected a mapping of config keys")])
    return root


def _remote_of(root: Node) -> RemoteConfig | None:
    node = root.value.get("remote")
    if node is None:
        return None
    try:
        return remote_settings(node)
    except F.Invalid as exc:
        bad = exc.node or node
        raise ConfigError([Problem(bad.file, bad.path, bad.line, str(exc))]) from None


def remote_layer(document: RemoteDocument, settings: RemoteConfig) -> tuple[Node, list[str]]:
    """The remote document as a layer, after checking it alone like a local file."""
    load_config_text(document.text, document.url)  # ConfigError names the URL and lines
    root = _parse(document.text, document.url)
    problems = local_only_problems(root)
    if problems:
        raise ConfigError(problems)
    if settings.may_set_owner or "owner" not in root.value:
        return root, []
    note = (
        f"{document.url}: its owner section is not used (remote.may_set_owner: false): this "
        "host's own owner settings apply"
    )
    return without(root, "owner"), [note]


def compose(
    sources: Sequence[Source], document: RemoteDocument | None, *, name: str | None = None
) -> Composed:
    """The config of these layers; ConfigError (every problem, each with its file or URL and
    line) when it is not valid. A document whose URL is not the one the host's files name is
    not used: it belongs to a remote the host has left."""
    try:
        return _compose(sources, document, name)
    except ConfigError:
        raise
    except Exception as exc:  # RecursionError, MemoryError: a problem, never a traceback
        what = f"internal error while merging the config (please report it): {exc!r}"
        raise ConfigError([Problem(name or "<config>", "", None, what)]) from None


def _compose(
    sources: Sequence[Source], document: RemoteDocument | None, name: str | None
) -> Composed:
    problems: list[Problem] = []
    roots: list[Node] = []
    for source in sources:
        try:
            roots.append(_parse(source.text, source.name))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    local = merge_all(roots)
    settings = _remote_of(local)
    main = next((s.name for s in sources if s.main), None)
    warnings: list[str] = []
    layers = [s.name for s in sources]
    used = None
    if settings is not None and document is not None and document.url == settings.url:
        base, warnings = remote_layer(document, settings)
        local = merge_all([base, local])
        layers.insert(0, document.url)
        used = document
    elif settings is not None:
        # Which pools the host's files only adjust is known once the site's document is here:
        # none runs before (a pool the host adjusts would otherwise run on the defaults).
        local = without(without(local, "pools"), "defaults")
        warnings.append(
            f"remote config {settings.url}: no document of it yet (fetched in the background); "
            "no pilots until it is here"
        )
    elif not sources and name is not None:
        warnings.append(missing_warning(name))
    config = load_tree(local, main or name or "<config>", default_pool=settings is None)
    config = dataclasses.replace(
        config,
        source=main,
        layers=tuple(layers),
        warnings=tuple(dict.fromkeys((*warnings, *config.warnings))),
    )
    return Composed(config, local, settings, used)


def load_layered(
    path: str | None,
    document: RemoteDocument | None = None,
    *,
    missing_ok: bool = True,
    state_dir: str | None = None,
) -> Config:
    """The daemon's config from the main file at `path`, its drop-ins and the remote `document`
    (when the host's files name its URL). `state_dir` (the --state-dir option) overrides the
    files' own, as for a single file."""
    config = compose(local_sources(path, missing_ok=missing_ok), document, name=path).config
    return dataclasses.replace(config, state_dir=state_dir) if state_dir else config
