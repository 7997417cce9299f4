"""Config file -> validated `Config`, or a `ConfigError` listing every problem with its line.

Every load builds the config from scratch on top of the built-in defaults, so a key removed from
the file goes back to its default on the next reload (Plancton 0.6 kept the old value). Unknown keys
are errors with a "did you mean", except in a file that is purely Plancton 0.6, where they stay
warnings because Plancton ignored them and such a file must keep running unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from typing import Any, Final

from planctond import constants as C
from planctond.config import fields as F
from planctond.config.document import Node, child_path, parse_document
from planctond.config.errors import ConfigError, Problem, did_you_mean
from planctond.config.legacy import LEGACY_KEYS, translate
from planctond.config.model import (
    Config,
    DockerConfig,
    InfluxDBTarget,
    MonitoringConfig,
    OwnerConfig,
    PoolConfig,
    PullPolicy,
)

MIN_INTERVAL: Final = 0.1  # seconds
POOL_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

# Pool keys that map 1:1 onto a PoolConfig field.
_POOL_SIMPLE: Final[dict[str, Callable[[Node], Any]]] = {
    "image": F.image,
    "command": F.argv,
    "entrypoint": F.optional(F.argv),
    "cpus": F.number(low=0, low_inclusive=False, what="a number of CPUs greater than 0"),
    "memory": F.size,
    "swap": F.size,
    "max_pilots": F.expression,
    "run_when": F.expression,
    "per_tick": F.integer(low=1, what="a whole number of pilots, at least 1"),
    "ttl": F.duration(positive=True),
    "stop_grace": F.duration(),
    "network_mode": F.network_mode,
    "env": F.env,
    "binds": F.string_list(F.bind),
    "devices": F.string_list(F.device),
    "security_opts": F.string_list(F.text("a security option, e.g. apparmor=PROFILE")),
    "user": F.optional(F.text("a user: uid[:gid] or name[:group]", F.USER)),
    "privileged": F.boolean,
    "labels": F.labels,
    "nowork_exit_codes": F.exit_codes,
    "pids_limit": F.integer(low=0, what="a whole number of processes (0 = no limit)"),
    "oom_score_adj": F.integer(low=-1000, high=1000, what="a whole number -1000..1000"),
    "no_new_privileges": F.boolean,
    "init": F.boolean,
    "fail_window": F.duration(positive=True),
    "backoff_min": F.duration(positive=True),
    "backoff_max": F.duration(positive=True),
}
POOL_KEYS: Final = frozenset({*_POOL_SIMPLE, "pull", "capabilities"})

_OWNER: Final[dict[str, Callable[[Node], Any]]] = {
    "reserve": F.number(low=0, low_inclusive=True, what="a number of CPUs, 0 or more"),
    "margin": F.number(low=0, low_inclusive=True, what="a number of CPUs, 0 or more"),
    "reserve_memory": F.size,
    "grace_kill": F.duration(),
    "grace_spawn": F.duration(),
    "freeze": F.duration(),
}
_DOCKER: Final[dict[str, Callable[[Node], Any]]] = {
    "url": F.optional(F.text("a Docker URL like unix:///run/docker.sock", F.DOCKER_URL)),
    "cgroup_parent": F.optional(F.text("a cgroup path or a .slice name", re.compile(r"\S+"))),
    "stop_pilots_on_exit": F.boolean,
}
_TOP: Final[dict[str, Callable[[Node], Any]]] = {
    # Floors, because a daemon that wakes up every millisecond spends the owner's CPU on watching.
    "tick": F.duration(positive=True, minimum=MIN_INTERVAL),
    "config_check": F.duration(positive=True, minimum=MIN_INTERVAL),
    "state_dir": F.absolute_path,
}
TOP_KEYS: Final = frozenset({*_TOP, "owner", "pools", "defaults", "docker", "monitoring"})
_PULL_KEYS: Final = frozenset({"policy", "refresh"})
_INFLUX_KEYS: Final = frozenset({"url", "database", "verify_tls"})
_HTTP_URL: Final = re.compile(r"https?://[^/\s#]+(?:/\S*)?")
_FAILED: Final[Any] = object()  # a value that failed validation (already recorded)


class _Loader:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.lenient = False  # a pure Plancton 0.6 file: unknown keys are warnings

    # -- bookkeeping --------------------------------------------------------------------------

    def problem(self, path: str, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, path, line, message))

    def read(self, node: Node, reader: Callable[[Node], Any]) -> Any:
        """reader(node), or None after recording why it is wrong (readers never return None
        for a bad value; optional ones return None only for an explicit null)."""
        try:
            return reader(node)
        except F.Invalid as exc:
            where = exc.node or node
            self.problem(where.path, where.line, str(exc))
            return _FAILED

    def mapping(self, node: Node | None) -> dict[str, Node]:
        """The entries of a section; null counts as empty, anything else but a mapping is wrong."""
        if node is None or node.is_null:
            return {}
        if not node.is_map:
            self.problem(node.path, node.line, f"expected a mapping of keys, got {node.shown()}")
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
                    f"{self.file}:{node.line}: {node.path}: {message} (ignored, as Plancton 0.6 did)"
                )
                del entries[key]
            else:
                self.problem(child_path(where, key), node.line, message)

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
            legacy.path,
            legacy.line,
            f"Plancton 0.6 key {legacy.path!r} and {new_path!r} (line {new.line}) set the same "
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
            self.problem("", root.line, f"expected a mapping of config keys, got {root.shown()}")
            return Config()
        entries = dict(root.value)
        legacy = translate(entries, self.file)
        self.warnings.extend(legacy.warnings)
        self.lenient = bool(legacy.keys) and not (set(entries) & TOP_KEYS)
        suggest = TOP_KEYS | frozenset(LEGACY_KEYS) if self.lenient else TOP_KEYS
        self.check_keys(entries, TOP_KEYS, "", suggest)

        top = self.fields(self.merge_legacy(entries, legacy.top, ""), _TOP)
        owner_entries = self.mapping(entries.get("owner"))
        self.check_keys(owner_entries, frozenset(_OWNER), "owner")
        owner = OwnerConfig(
            **self.fields(self.merge_legacy(owner_entries, legacy.owner, "owner"), _OWNER)
        )
        docker_entries = self.mapping(entries.get("docker"))
        self.check_keys(docker_entries, frozenset(_DOCKER), "docker")
        docker = DockerConfig(**self.fields(docker_entries, _DOCKER))
        monitoring = self.monitoring(entries.get("monitoring"), legacy.monitoring)
        pools = self.pools(entries.get("pools"), entries.get("defaults"), legacy.pool)
        return Config(
            pools=pools,
            owner=owner,
            docker=docker,
            monitoring=monitoring,
            source=self.file,
            warnings=tuple(self.warnings),
            **top,
        )

    def pools(
        self, node: Node | None, defaults_node: Node | None, legacy: dict[str, Node]
    ) -> tuple[PoolConfig, ...]:
        defaults = self.mapping(defaults_node)
        self.check_keys(defaults, POOL_KEYS, "defaults")
        if node is None:
            named: dict[str, Node] = {
                C.DEFAULT_POOL_NAME: Node(value={}, path=f"pools.{C.DEFAULT_POOL_NAME}", line=1)
            }
        else:
            named = self.mapping(node)
            if node.is_map and not named:
                self.problem(node.path, node.line, "expected at least one pool")
        if legacy and C.DEFAULT_POOL_NAME not in named:
            for legacy_node in legacy.values():
                self.problem(
                    legacy_node.path,
                    legacy_node.line,
                    f"Plancton 0.6 key for pool {C.DEFAULT_POOL_NAME!r}, which 'pools' does not "
                    "define: move it into a pool",
                )
        result = []
        for name, pool_node in named.items():
            if not POOL_NAME.fullmatch(name):
                self.problem(
                    pool_node.path,
                    pool_node.line,
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
            result.append(self.pool(name, {**defaults, **own}))
        return tuple(result)

    def pool(self, name: str, entries: dict[str, Node]) -> PoolConfig:
        values = self.fields(entries, _POOL_SIMPLE)
        if "pull" in entries:
            pull = self.pull(entries["pull"])
            if pull is not _FAILED:
                values["pull"], refresh = pull
                if refresh is not None:
                    values["pull_refresh"] = refresh
        if "capabilities" in entries:
            caps = self.read(entries["capabilities"], F.capabilities)
            if caps is not _FAILED:
                values["cap_add"], values["cap_drop"] = caps
        pool = PoolConfig(name=name, **values)
        if pool.swap and not pool.memory:
            node = entries["swap"]
            self.problem(node.path, node.line, "swap needs a memory limit (memory > 0)")
        if pool.backoff_max < pool.backoff_min:
            node = entries.get("backoff_max") or entries["backoff_min"]
            self.problem(node.path, node.line, "backoff_max must not be less than backoff_min")
        return pool

    def pull(self, node: Node) -> Any:
        """(policy, refresh or None), or _FAILED."""
        if not node.is_map:
            policy = self.read(node, F.pull_policy)
            return _FAILED if policy is _FAILED else (policy, None)
        entries = dict(node.value)
        self.check_keys(entries, _PULL_KEYS, node.path)
        policy = PullPolicy.MISSING
        if "policy" in entries:
            policy = self.read(entries["policy"], F.pull_policy)
        refresh = None
        if "refresh" in entries:
            refresh = self.read(entries["refresh"], F.duration(positive=True))
        if policy is _FAILED or refresh is _FAILED:
            return _FAILED
        return policy, refresh

    def monitoring(self, node: Node | None, legacy: dict[str, Node]) -> MonitoringConfig:
        entries = self.mapping(node)
        self.check_keys(entries, frozenset({"influxdb"}), "monitoring")
        entries = self.merge_legacy(entries, legacy, "monitoring")
        influx = entries.get("influxdb")
        if influx is None or influx.is_null:
            return MonitoringConfig()
        items = [influx] if influx.text() is not None or influx.is_map else influx.value
        targets = [self.read(item, self.influx_target) for item in items]
        return MonitoringConfig(influxdb=tuple(t for t in targets if t is not _FAILED))

    def influx_target(self, node: Node) -> InfluxDBTarget:
        what = "an InfluxDB target: URL#database, or a mapping with url and database"
        if node.is_map:
            entries = dict(node.value)
            self.check_keys(entries, _INFLUX_KEYS, node.path)
            for key in ("url", "database"):
                if key not in entries:
                    raise F.Invalid(f"{what} (missing {key})", node)
            url = F.text("an http(s):// URL", _HTTP_URL)(entries["url"])
            database = F.text("a database name")(entries["database"])
            verify = F.boolean(entries["verify_tls"]) if "verify_tls" in entries else True
            return InfluxDBTarget(url=url, database=database, verify_tls=verify)
        value = node.text()
        if value is None or "#" not in value:
            raise F.expected(node, what)
        url, _, database = value.partition("#")
        verify = True
        if url.startswith("insecure_https:"):
            verify = False
            rest = url.removeprefix("insecure_https:")
            url = f"https:{rest}" if rest.startswith("//") else rest
        if (
            not _HTTP_URL.fullmatch(url)
            or not database
            or (not verify and not url.startswith("https:"))
        ):
            raise F.expected(node, what)
        return InfluxDBTarget(url=url.rstrip("/"), database=database, verify_tls=verify)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Pool defaults are read once per pool: the same mistake is reported once."""
    seen: set[Problem] = set()
    unique = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return unique


def load_config_text(text: str, source_name: str = "<config>") -> Config:
    """Parse and validate `text`; `ConfigError` lists every problem found."""
    root = parse_document(text, source_name)
    if isinstance(root, Problem):
        raise ConfigError([root])
    loader = _Loader(source_name)
    config = loader.build(root)
    if loader.problems:
        raise ConfigError(_dedupe(loader.problems))
    return config


def load_config(path: str | None, *, missing_ok: bool = True) -> Config:
    """The config in `path`; None, or a missing file when `missing_ok`, gives the built-in defaults.

    The defaults run real dummy pilots (busybox `sleep 60`), so a fresh install visibly works.
    """
    if path is None:
        return Config()
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except FileNotFoundError:
        if missing_ok:
            return Config(
                warnings=(f"{path} not found: running the built-in defaults (dummy pilots)",)
            )
        raise ConfigError([Problem(path, "", None, "file not found")]) from None
    except OSError as exc:
        raise ConfigError(
            [Problem(path, "", None, f"cannot read: {exc.strerror or exc}")]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, "", None, f"not UTF-8 text: {exc}")]) from None
    return load_config_text(text, path)


def config_keys() -> dict[str, frozenset[str]]:
    """Every key of the schema by section, for `--help` and the docs."""
    return {
        "": TOP_KEYS,
        "owner": frozenset(_OWNER),
        "docker": frozenset(_DOCKER),
        "pools.<name>": POOL_KEYS,
        "monitoring": frozenset({"influxdb"}),
        "legacy (Plancton 0.6)": frozenset(LEGACY_KEYS),
    }


# The schema and the model must agree: a PoolConfig field nobody can set is a bug.
_UNSETTABLE: Final = (
    {f.name for f in dataclass_fields(PoolConfig)}
    - set(_POOL_SIMPLE)
    - {"name", "pull", "pull_refresh", "cap_add", "cap_drop"}
)
assert not _UNSETTABLE, f"PoolConfig fields without a config key: {_UNSETTABLE}"
