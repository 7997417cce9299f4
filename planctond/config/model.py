"""The validated, typed configuration every other layer consumes.

Frozen dataclasses so a reload swaps one object for another atomically and nothing can mutate the
config in force behind the supervisor's back. Units are normalised here: seconds, bytes, CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from planctond import constants as C


class GiveWayMode(StrEnum):
    """What makes pilots give way to the owner (`owner.give_way`)."""

    USAGE = C.GIVE_WAY_USAGE  # the owner's CPU use leaves too little for the pilots' CPUs
    PRESSURE = C.GIVE_WAY_PRESSURE  # the owner stalls (PSI) over its lines


DEFAULT_GIVE_WAY: Final = GiveWayMode(C.DEFAULT_GIVE_WAY)


class PullPolicy(StrEnum):
    ALWAYS = "always"
    MISSING = "missing"
    NEVER = "never"


@dataclass(frozen=True)
class DeviceMapping:
    host: str
    container: str
    perms: str = "rwm"

    def docker_form(self) -> str:
        return f"{self.host}:{self.container}:{self.perms}"


@dataclass(frozen=True)
class PoolConfig:
    name: str
    image: str = C.DEFAULT_IMAGE
    pull: PullPolicy = PullPolicy.MISSING
    pull_refresh: float = (
        C.DEFAULT_PULL_REFRESH
    )  # seconds between re-pulls under "always"/"missing"
    command: tuple[str, ...] = C.DEFAULT_COMMAND
    entrypoint: tuple[str, ...] | None = None
    cpus: float = C.DEFAULT_CPUS
    memory: int = C.DEFAULT_MEMORY  # bytes; 0 = no limit
    swap: int = 0  # bytes of swap on top of memory (MemorySwap = memory + swap)
    max_pilots: str = C.DEFAULT_MAX_PILOTS  # expression source, validated at load
    run_when: str = C.DEFAULT_RUN_WHEN  # expression source, validated at load
    per_tick: int = C.DEFAULT_PER_TICK
    ttl: float = C.DEFAULT_TTL
    stop_grace: float = C.DEFAULT_STOP_GRACE
    network_mode: str = "bridge"
    env: tuple[tuple[str, str], ...] = ()
    binds: tuple[str, ...] = ()  # docker "host:ctr[:ro|rw]" strings
    devices: tuple[DeviceMapping, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = C.DEFAULT_CAP_DROP  # see fields_docker.capabilities
    security_opts: tuple[str, ...] = ()
    user: str | None = None  # "uid:gid"
    privileged: bool = False
    labels: tuple[tuple[str, str], ...] = ()
    nowork_exit_codes: frozenset[int] = frozenset()
    # Safe defaults, each overridable.
    pids_limit: int = C.DEFAULT_PIDS_LIMIT
    oom_score_adj: int = C.DEFAULT_OOM_SCORE_ADJ
    no_new_privileges: bool = True
    init: bool = True
    log_max_size: int = C.DEFAULT_LOG_MAX_SIZE  # bytes of a pilot's log before Docker rotates it
    log_max_files: int = C.DEFAULT_LOG_MAX_FILES  # rotated log files kept per pilot
    # Back-off for pools whose pilots keep failing fast.
    fail_window: float = C.DEFAULT_FAIL_WINDOW  # a failing exit sooner than this counts
    backoff_min: float = C.DEFAULT_BACKOFF_MIN
    backoff_max: float = C.DEFAULT_BACKOFF_MAX

    def spec_fields(self) -> dict[str, object]:
        """What a pilot container is made of: a change here makes running pilots outdated."""
        return {
            "image": self.image,
            "command": list(self.command),
            "entrypoint": list(self.entrypoint) if self.entrypoint is not None else None,
            "network_mode": self.network_mode,
            "env": [list(kv) for kv in self.env],
            "binds": list(self.binds),
            "devices": [d.docker_form() for d in self.devices],
            "cap_add": list(self.cap_add),
            "cap_drop": list(self.cap_drop),
            "security_opts": list(self.security_opts),
            "user": self.user,
            "privileged": self.privileged,
            "labels": [list(kv) for kv in self.labels],
            "pids_limit": self.pids_limit,
            "oom_score_adj": self.oom_score_adj,
            "no_new_privileges": self.no_new_privileges,
            "init": self.init,
            "log_max_size": self.log_max_size,
            "log_max_files": self.log_max_files,
        }


@dataclass(frozen=True)
class OwnerConfig:
    reserve: float = C.DEFAULT_OWNER_RESERVE  # CPUs always left to the owner
    margin: float = C.DEFAULT_OWNER_MARGIN  # hysteresis between "fits" and "give way", CPUs
    reserve_memory: int = C.DEFAULT_RESERVE_MEMORY  # bytes of MemAvailable always left to the owner
    grace_kill: float = C.DEFAULT_GRACE_KILL
    grace_spawn: float = C.DEFAULT_GRACE_SPAWN
    freeze: float = C.DEFAULT_FREEZE  # 0 = never freeze, stop at once
    # Where the owner's CPU use is read: None = the whole host; else a cgroup (`/path` or a
    # systemd `NAME.slice`) whose use, less any pilots inside it, is the owner's.
    cgroup: str | None = None
    give_way: GiveWayMode = DEFAULT_GIVE_WAY
    # give_way: pressure only. Percent (PSI avg10) of the owner's stalls over which pilots give
    # way; None = that resource never makes them give way.
    cpu_pressure: float | None = C.DEFAULT_OWNER_CPU_PRESSURE
    memory_pressure: float | None = C.DEFAULT_OWNER_MEMORY_PRESSURE
    io_pressure: float | None = C.DEFAULT_OWNER_IO_PRESSURE
    # Seconds: the owner is at the keyboard while logind's owner_idle is below this (0 = never).
    active_within: float = C.DEFAULT_ACTIVE_WITHIN

    @property
    def variables(self) -> frozenset[str]:
        """The host variables the give-way rule itself reads, so the composition root starts
        their sensors (logind) even when no expression names them."""
        return frozenset({"owner_idle"}) if self.active_within > 0 else frozenset()


@dataclass(frozen=True)
class DockerConfig:
    url: str | None = None  # None = docker-py's from_env (DOCKER_HOST or the default socket)
    cgroup_parent: str | None = None  # None = derive from the engine's cgroup driver
    stop_pilots_on_exit: bool = True  # SIGTERM: stop pilots (False: leave them for adoption)


@dataclass(frozen=True)
class InfluxDBTarget:
    url: str  # base URL, e.g. https://influx.example.org:8086
    database: str  # the 1.x database, or the 2.x bucket
    verify_tls: bool = True  # False: Plancton's "insecure_https:" prefix
    # Also write Plancton 0.6's series (daemon, measurement, container), so the dashboards of a
    # site that upgraded keep drawing. On for targets written Plancton's way (`URL#database`).
    plancton_series: bool = False
    org: str | None = None  # set: the 2.x API (`/api/v2/write`, org and bucket)
    token: str | None = field(default=None, repr=False)  # 2.x API token; never shown
    ca_file: str | None = None  # PEM CA certificates trusted instead of the system's

    @property
    def v2(self) -> bool:
        return self.org is not None


DEFAULT_INDEX_PREFIX: Final = "planctond"  # indices planctond-YYYY.MM.DD


@dataclass(frozen=True)
class ElasticsearchTarget:
    """Documents into `<index_prefix>-YYYY.MM.DD` through the bulk API (Elasticsearch 7.8+ and
    8.x, OpenSearch). Credentials are basic auth or an API key, never both; never shown."""

    url: str  # base URL, e.g. https://es.example.org:9200 (a path prefix for a proxy allowed)
    index_prefix: str = DEFAULT_INDEX_PREFIX
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)  # "id:key" or its base64 form
    verify_tls: bool = True
    ca_file: str | None = None  # PEM CA certificates trusted instead of the system's


@dataclass(frozen=True)
class PrometheusListen:
    """Where `/metrics` is served. No port is assumed: Prometheus's list of exporter ports is
    full, so the admin picks one that is free on the fleet."""

    port: int
    host: str = "127.0.0.1"  # loopback unless the admin opens it


@dataclass(frozen=True)
class MonitoringConfig:
    influxdb: tuple[InfluxDBTarget, ...] = ()
    host: str | None = None  # the `host` tag of every point; None = this machine's name
    prometheus: PrometheusListen | None = None
    elasticsearch: tuple[ElasticsearchTarget, ...] = ()


@dataclass(frozen=True)
class RemoteConfig:
    """Where the site's config comes from (`remote:`, only ever from this host's own files). The
    bearer token stays in its file, read at each fetch: never in the config, never shown."""

    url: str  # https:// only: the document decides what runs on this host
    ca_file: str | None = None  # PEM CAs trusted instead of the system's
    pin_sha256: tuple[str, ...] = ()  # base64 SHA-256 of the server key's SPKI; any one matches
    token_file: str | None = None  # file holding a bearer token (Authorization: Bearer ...)
    interval: float = C.DEFAULT_REMOTE_INTERVAL
    timeout: float = C.DEFAULT_REMOTE_TIMEOUT
    # False: the remote's `owner` section is ignored, the host's own settings (or the defaults)
    # decide when the owner needs the CPU back.
    may_set_owner: bool = True


@dataclass(frozen=True)
class Config:
    pools: tuple[PoolConfig, ...] = (PoolConfig(name=C.DEFAULT_POOL_NAME),)
    tick: float = C.DEFAULT_TICK
    config_check: float = C.DEFAULT_CONFIG_CHECK
    owner: OwnerConfig = field(default_factory=OwnerConfig)
    docker: DockerConfig = field(default_factory=DockerConfig)
    state_dir: str = C.DEFAULT_STATE_DIR
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    remote: RemoteConfig | None = None
    source: str | None = None  # the file this came from; None = built-in defaults
    warnings: tuple[str, ...] = ()  # deprecations etc., logged once at load
    # Every file or URL the config was merged from, base first (remote, drop-ins, main file).
    layers: tuple[str, ...] = field(default=(), compare=False)

    def pool(self, name: str) -> PoolConfig | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None
