"""Config file -> validated `Config`, or a `ConfigError` listing every problem with its line.

Every load builds the config from scratch on top of the built-in defaults, so a key removed from
the file goes back to its default on the next reload (Plancton 0.6 kept the old value). Unknown keys
are errors with a "did you mean", except in a file that is purely Plancton 0.6, where they stay
warnings because Plancton ignored them and such a file must keep running unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from planctond import constants as C
from planctond.config import fields as F
from planctond.config import fields_docker as D
from planctond.config import fields_monitoring as M
from planctond.config import fields_owner as O
from planctond.config import fields_remote as R
from planctond.config.document import Node, child_path, parse_document
from planctond.config.errors import ConfigError, Problem, did_you_mean
from planctond.config.files import read_config_text
from planctond.config.legacy import LEGACY_KEYS, translate
from planctond.config.model import (
    Config,
    DockerConfig,
    ElasticsearchTarget,
    MonitoringConfig,
    OwnerConfig,
    PoolConfig,
    PullPolicy,
)
from planctond.config.safety import risk_warnings
from planctond.config.schema import (
    DOCKER,
    HOST_TAG,
    MONITORING_KEYS,
    OWNER,
    POOL_KEYS,
    POOL_NAME,
    POOL_SIMPLE,
    PULL_KEYS,
    TOP,
    TOP_KEYS,
    config_keys,
)
from planctond.text import safe_text

__all__ = ["POOL_KEYS", "TOP_KEYS", "config_keys", "load_config", "load_config_text", "load_tree"]

_FAILED: Final[Any] = object()  # a value that failed validation (already recorded)


class _Loader:
    def __init__(self, file: str, *, default_pool: bool = True) -> None:
        self.file = file
        # False while a remote config is awaited: no built-in dummy pool meanwhile.
        self.default_pool = default_pool
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.lenient = False  # a pure Plancton 0.6 file: unknown keys are warnings

    # -- bookkeeping --------------------------------------------------------------------------

    def problem(self, node: Node, message: str, path: str | None = None) -> None:
        """A problem at `node`, named with the file (or URL) the node was written in."""
        where = node.path if path is None else path
        self.problems.append(Problem(node.file or self.file, where, node.line, message))

    def read(self, node: Node, reader: Callable[[Node], Any]) -> Any:
        """reader(node), or _FAILED after recording why it is wrong at the value's line.

        Readers say what is wrong with `Invalid`. Anything else they raise is a bug in a reader,
        but it is still recorded as a problem of this value rather than crashing a reload."""
        try:
            return reader(node)
        except F.Invalid as exc:
            where = exc.node or node
            self.problem(where, str(exc))
        except Exception as exc:  # the boundary of load_config_text, at this value
            self.problem(node, _internal(exc))
        return _FAILED

    def mapping(self, node: Node | None) -> dict[str, Node]:
        """The entries of a section; null counts as empty, anything else but a mapping is wrong."""
        if node is None or node.is_null:
            return {}
        if not node.is_map:
            self.problem(node, f"expected a mapping of keys, got {node.shown()}")
            return {}
        return dict(node.value)

    def check_keys(
        self,
        entries: dict[str, Node],
        allowed: frozenset[str],
        where: str,
        suggest: frozenset[str] | None = None,
    ) -> None:
        for key, node in list(entries.items()):
            if key in allowed:
                continue
            message = f"unknown key{did_you_mean(key, suggest or allowed)}"
            if self.lenient:
                self.warnings.append(
                    f"{node.file or self.file}:{node.line}: {node.path}: {message} (ignored, as Plancton 0.6 did)"
                )
                del entries[key]
            else:
                self.problem(node, message, child_path(where, key))

    def fields(
        self, entries: dict[str, Node], readers: dict[str, Callable[[Node], Any]]
    ) -> dict[str, Any]:
        values = {}
        for key, reader in readers.items():
            if key in entries:
                value = self.read(entries[key], reader)
                if value is not _FAILED:
                    values[key] = value
        return values

    def conflict(self, legacy: Node, new_path: str, new: Node) -> None:
        self.problem(
            legacy,
            f"Plancton 0.6 key {legacy.path!r} and {new_path!r} ({_at(new, legacy)}) set the same "
            f"thing: keep only {new_path!r}",
        )

    def merge_legacy(
        self, entries: dict[str, Node], legacy: dict[str, Node], where: str
    ) -> dict[str, Node]:
        merged = dict(entries)
        for key, node in legacy.items():
            if key in entries:
                self.conflict(node, child_path(where, key), entries[key])
            else:
                merged[key] = node
        return merged

    # -- sections -----------------------------------------------------------------------------

    def build(self, root: Node) -> Config:
        if not root.is_map:
            self.problem(root, f"expected a mapping of config keys, got {root.shown()}")
            return Config()
        entries = dict(root.value)
        legacy = translate(entries, self.file)
        self.warnings.extend(legacy.warnings)
        self.lenient = bool(legacy.keys) and not (set(entries) & TOP_KEYS)
        suggest = TOP_KEYS | frozenset(LEGACY_KEYS) if self.lenient else TOP_KEYS
        self.check_keys(entries, TOP_KEYS, "", suggest)

        top = self.fields(self.merge_legacy(entries, legacy.top, ""), TOP)
        owner_entries = self.mapping(entries.get("owner"))
        self.check_keys(owner_entries, frozenset(OWNER), "owner")
        owner = self.owner(self.merge_legacy(owner_entries, legacy.owner, "owner"))
        docker_entries = self.mapping(entries.get("docker"))
        self.check_keys(docker_entries, frozenset(DOCKER), "docker")
        docker = DockerConfig(**self.fields(docker_entries, DOCKER))
        monitoring = self.monitoring(entries.get("monitoring"), legacy.monitoring)
        pools = self.pools(entries.get("pools"), entries.get("defaults"), legacy.pool)
        remote = None
        if "remote" in entries:
            remote = self.read(entries["remote"], R.remote_settings)
        return Config(
            pools=pools,
            owner=owner,
            docker=docker,
            monitoring=monitoring,
            remote=None if remote is _FAILED else remote,
            source=self.file,
            warnings=tuple(dict.fromkeys(safe_text(w) for w in self.warnings)),
            **top,
        )

    def owner(self, entries: dict[str, Node]) -> OwnerConfig:
        values = self.fields(entries, OWNER)
        owner = OwnerConfig(**values)
        if "give_way" not in entries or "give_way" in values:  # a bad mode is reported already
            for node, message in O.owner_problems(owner, entries):
                self.problem(node, message)
        return owner

    def pools(
        self, node: Node | None, defaults_node: Node | None, legacy: dict[str, Node]
    ) -> tuple[PoolConfig, ...]:
        defaults = self.mapping(defaults_node)
        self.check_keys(defaults, POOL_KEYS, "defaults")
        if node is None:
            default = Node(value={}, path=f"pools.{C.DEFAULT_POOL_NAME}", line=1, file=self.file)
            named: dict[str, Node] = {C.DEFAULT_POOL_NAME: default} if self.default_pool else {}
        else:
            # `pools: ~` (or a bare `pools:`) is read like `pools: {}`: whoever writes the key and
            # empties it most likely commented every pool out, and running the built-in dummy
            # pilots instead would be a surprise. Without the key, the default pool runs.
            named = self.mapping(node)
            if (node.is_map or node.is_null) and not named:
                self.problem(
                    node,
                    "expected at least one pool (remove the 'pools' key for the built-in "
                    "default pool)",
                )
        if legacy and C.DEFAULT_POOL_NAME not in named:
            for legacy_node in legacy.values():
                self.problem(
                    legacy_node,
                    f"Plancton 0.6 key for pool {C.DEFAULT_POOL_NAME!r}, which 'pools' does not "
                    "define: move it into a pool",
                )
        result = []
        for name, pool_node in named.items():
            if not POOL_NAME.fullmatch(name):
                self.problem(
                    pool_node,
                    f"bad pool name {name!r}: letters, digits, '_', '.', '-', not starting with "
                    "'_', '.' or '-' (it becomes part of container names)",
                )
                continue
            own = self.mapping(pool_node)
            self.check_keys(own, POOL_KEYS, pool_node.path)
            if name == C.DEFAULT_POOL_NAME and legacy:
                for key, legacy_node in legacy.items():
                    if key in defaults:
                        self.conflict(legacy_node, f"defaults.{key}", defaults[key])
                own = self.merge_legacy(own, legacy, pool_node.path)
            entries = {**defaults, **own}
            pool = self.pool(name, entries)
            self.warnings.extend(risk_warnings(self.file, pool, entries))
            result.append(pool)
        return tuple(result)

    def pool(self, name: str, entries: dict[str, Node]) -> PoolConfig:
        values = self.fields(entries, POOL_SIMPLE)
        if "pull" in entries:
            pull = self.pull(entries["pull"])
            if pull is not _FAILED:
                values["pull"], refresh = pull
                if refresh is not None:
                    values["pull_refresh"] = refresh
        if "capabilities" in entries:
            caps = self.read(entries["capabilities"], D.capabilities)
            if caps is not _FAILED:
                values["cap_add"], values["cap_drop"] = caps
        pool = PoolConfig(name=name, **values)
        if pool.swap and not pool.memory:
            node = entries["swap"]
            self.problem(node, "swap needs a memory limit (memory > 0)")
        if pool.backoff_max < pool.backoff_min:
            node = entries.get("backoff_max") or entries["backoff_min"]
            self.problem(node, "backoff_max must not be less than backoff_min")
        return pool

    def pull(self, node: Node) -> Any:
        """(policy, refresh or None), or _FAILED."""
        if not node.is_map:
            policy = self.read(node, D.pull_policy)
            return _FAILED if policy is _FAILED else (policy, None)
        entries = dict(node.value)
        self.check_keys(entries, PULL_KEYS, node.path)
        policy = PullPolicy.MISSING
        if "policy" in entries:
            policy = self.read(entries["policy"], D.pull_policy)
        refresh = None
        if "refresh" in entries:
            refresh = self.read(entries["refresh"], F.duration(positive=True))
        if policy is _FAILED or refresh is _FAILED:
            return _FAILED
        return policy, refresh

    def monitoring(self, node: Node | None, legacy: dict[str, Node]) -> MonitoringConfig:
        entries = self.mapping(node)
        self.check_keys(entries, MONITORING_KEYS, "monitoring")
        entries = self.merge_legacy(entries, legacy, "monitoring")
        host = None
        if "host" in entries:
            host = self.read(entries["host"], F.optional(F.text("a host name", HOST_TAG)))
            host = None if host is _FAILED else host
        prometheus = None
        if "prometheus" in entries and not entries["prometheus"].is_null:
            prometheus = self.read(entries["prometheus"], M.prometheus_listen)
            prometheus = None if prometheus is _FAILED else prometheus
        influx = entries.get("influxdb")
        targets = []
        if influx is not None and not influx.is_null:
            items = [influx] if influx.text() is not None or influx.is_map else influx.value
            targets = [self.read(item, M.influx_target) for item in items]
        return MonitoringConfig(
            influxdb=tuple(t for t in targets if t is not _FAILED),
            host=host,
            prometheus=prometheus,
            elasticsearch=self.elasticsearch(entries.get("elasticsearch")),
        )

    def elasticsearch(self, node: Node | None) -> tuple[ElasticsearchTarget, ...]:
        """A list of targets; a single mapping is read as a list of one."""
        if node is None or node.is_null:
            return ()
        if not (node.is_list or node.is_map):
            self.problem(
                node,
                f"expected a list of Elasticsearch targets, got {node.shown()}",
            )
            return ()
        items = [node] if node.is_map else node.value
        targets = [self.read(item, M.elasticsearch_target) for item in items]
        return tuple(t for t in targets if t is not _FAILED)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Pool defaults are read once per pool: the same mistake is reported once."""
    seen: set[Problem] = set()
    unique = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return unique


def _internal(exc: BaseException) -> str:
    return f"internal error while checking this (please report it): {type(exc).__name__}: {exc}"


def _at(node: Node, other: Node) -> str:
    return f"line {node.line}" if node.file == other.file else f"{node.file}:{node.line}"


def load_tree(root: Node, source_name: str, *, default_pool: bool = True) -> Config:
    """The config of a document already parsed (or merged from several: `layers.py`); each
    problem names the file of the node it is about, `source_name` where a node names none."""
    loader = _Loader(source_name, default_pool=default_pool)
    config = loader.build(root)
    if loader.problems:
        raise ConfigError(_dedupe(loader.problems))
    return config


def _load(text: str, source_name: str) -> Config:
    root = parse_document(text, source_name)
    if isinstance(root, Problem):
        raise ConfigError([root])
    return load_tree(root, source_name)


def load_config_text(text: str, source_name: str = "<config>") -> Config:
    """Parse and validate `text`; `ConfigError` lists every problem found.

    The one boundary between a config's text and the daemon: whatever the text, the result is a
    valid `Config` or a `ConfigError`. Each kind of bad input is refused where it is understood
    (the document layer, a value's reader), with the key and line; anything that still escapes
    is a bug, and is reported as a problem of the file instead of a traceback that would end a
    reload, or the daemon."""
    try:
        return _load(text, source_name)
    except ConfigError:
        raise
    except Exception as exc:  # RecursionError and MemoryError included
        raise ConfigError([Problem(source_name, "", None, _internal(exc))]) from None


def load_config(path: str | None, *, missing_ok: bool = True) -> Config:
    """The config in `path`; None, or a missing file when `missing_ok`, gives the built-in defaults.

    The defaults run real dummy pilots (busybox `sleep 60`), so a fresh install visibly works.
    One file alone: the daemon reads its drop-ins and remote config with it (`layers.py`).
    """
    if path is None:
        return Config()
    try:
        text = read_config_text(path)
    except FileNotFoundError:
        if missing_ok:
            return Config(warnings=(missing_warning(path),))
        raise ConfigError([Problem(path, "", None, "file not found")]) from None
    return load_config_text(text, path)


def missing_warning(path: str) -> str:
    return f"{path} not found: running the built-in defaults (dummy pilots)"
