"""The config schema: every key of every section, the reader that checks its value, and bounds.

One table per section, so what a config file may say is reviewable at a glance and `--help`, the
docs and the loader cannot disagree. The loader (`loader.py`) walks the file against these tables;
the readers (`fields.py`, `fields_docker.py`) check single values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields as dataclass_fields
from typing import Any, Final

from planctond import constants as C
from planctond.config import fields as F
from planctond.config import fields_docker as D
from planctond.config import fields_owner as O
from planctond.config.document import Node
from planctond.config.legacy import LEGACY_KEYS
from planctond.config.model import PoolConfig

POOL_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", re.ASCII)
_CPUS: Final = f"a number of CPUs, {C.MIN_CPUS:g}..{C.MAX_CPUS:g}"
_OWNER_CPUS: Final = f"a number of CPUs, 0..{C.MAX_CPUS:g}"
# A cgroup below the root, by path (`/user.slice`, `/owner`) or by systemd slice name; no `.` or
# `..` steps, so it names one place under every controller's mount.
OWNER_CGROUP: Final = re.compile(
    r"(?!.*(?:^|/)\.\.?(?:/|$))(?:/[A-Za-z0-9_.:@-]+)+|[A-Za-z0-9_.:@-]+\.slice", re.ASCII
)

# Pool keys that map 1:1 onto a PoolConfig field.
POOL_SIMPLE: Final[dict[str, Callable[[Node], Any]]] = {
    "image": D.image,
    "command": D.argv,
    "entrypoint": F.optional(D.argv),
    "cpus": F.number(low=C.MIN_CPUS, high=C.MAX_CPUS, what=_CPUS),
    "memory": F.size,
    "swap": F.size,
    "max_pilots": F.expression,
    "run_when": F.expression,
    "per_tick": F.integer(
        low=1, high=C.MAX_PER_TICK, what=f"a whole number of pilots, 1..{C.MAX_PER_TICK}"
    ),
    "ttl": F.duration(positive=True),
    "stop_grace": F.duration(),
    "network_mode": D.network_mode,
    "env": D.env,
    "binds": F.string_list(D.bind),
    "devices": F.string_list(D.device),
    "security_opts": F.string_list(F.text("a security option, e.g. apparmor=PROFILE")),
    "user": F.optional(F.text("a user: uid[:gid] or name[:group]", D.USER)),
    "privileged": F.boolean,
    "labels": D.labels,
    "nowork_exit_codes": F.exit_codes,
    "pids_limit": F.integer(
        low=0,
        high=C.MAX_PIDS_LIMIT,
        what=f"a whole number of processes, 0..{C.MAX_PIDS_LIMIT} (0 = no limit)",
    ),
    "oom_score_adj": F.integer(low=-1000, high=1000, what="a whole number -1000..1000"),
    "no_new_privileges": F.boolean,
    "init": F.boolean,
    "log_max_size": F.size_of(low=1),
    "log_max_files": F.integer(
        low=1, high=C.MAX_LOG_FILES, what=f"a whole number of files, 1..{C.MAX_LOG_FILES}"
    ),
    "fail_window": F.duration(positive=True),
    "backoff_min": F.duration(positive=True),
    "backoff_max": F.duration(positive=True),
}
POOL_KEYS: Final = frozenset({*POOL_SIMPLE, "pull", "capabilities"})

OWNER: Final[dict[str, Callable[[Node], Any]]] = {
    "reserve": F.number(low=0, high=C.MAX_CPUS, what=_OWNER_CPUS),
    "margin": F.number(low=0, high=C.MAX_CPUS, what=_OWNER_CPUS),
    "reserve_memory": F.size,
    "grace_kill": F.duration(),
    "grace_spawn": F.duration(),
    "freeze": F.duration(),
    "cgroup": F.optional(F.text("a cgroup path like /user.slice, or a slice name", OWNER_CGROUP)),
    "give_way": O.give_way_mode,
    "cpu_pressure": O.pressure_line(),
    "memory_pressure": O.pressure_line(),
    "io_pressure": O.pressure_line(),
    "active_within": F.duration(),
}
DOCKER: Final[dict[str, Callable[[Node], Any]]] = {
    "url": F.optional(F.text("a Docker URL like unix:///run/docker.sock", D.DOCKER_URL)),
    "cgroup_parent": F.optional(F.text("a cgroup path or a .slice name", re.compile(r"\S+"))),
    "stop_pilots_on_exit": F.boolean,
}
TOP: Final[dict[str, Callable[[Node], Any]]] = {
    # Floors, because a daemon that wakes up every millisecond spends the owner's CPU on watching.
    "tick": F.duration(positive=True, minimum=C.MIN_INTERVAL),
    "config_check": F.duration(positive=True, minimum=C.MIN_INTERVAL),
    "state_dir": F.absolute_path,
}
TOP_KEYS: Final = frozenset({*TOP, "owner", "pools", "defaults", "docker", "monitoring", "remote"})
REMOTE_KEYS: Final = frozenset(
    {"url", "ca_file", "pin_sha256", "token_file", "interval", "timeout", "may_set_owner"}
)
# Keys only this host's own files may set: where the remote config comes from (a remote must not
# redirect or unpin itself) and where the state (its cache included) is kept.
LOCAL_ONLY_KEYS: Final = frozenset({"remote", "state_dir"})
# The remote config's URL: https only (the document decides what runs here), no credentials
# (the URL is logged and shown; a token has a file of its own), no fragment.
REMOTE_URL: Final = re.compile(r"https://[^/\s#?@]+(?:/[^\s#@]*)?")
PULL_KEYS: Final = frozenset({"policy", "refresh"})
_TLS_KEYS: Final = frozenset({"verify_tls", "ca_file"})
INFLUX_KEYS: Final = frozenset({"url", "database", "plancton_series", *_TLS_KEYS})
INFLUX2_KEYS: Final = frozenset({"url", "org", "bucket", "token", "plancton_series", *_TLS_KEYS})
ELASTICSEARCH_KEYS: Final = frozenset(
    {"url", "index_prefix", "username", "password", "api_key", *_TLS_KEYS}
)
MONITORING_KEYS: Final = frozenset({"influxdb", "host", "prometheus", "elasticsearch"})
PROMETHEUS_KEYS: Final = frozenset({"listen"})
# `PORT`, `HOST:PORT` or `[IPv6]:PORT`; the host part a name or an address literal.
LISTEN: Final = re.compile(
    r"(?:(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]):)?(?P<port>[0-9]{1,5})", re.ASCII
)
# A host name as a tag value: what `hostname` may hold, plus the dots of a fully qualified name.
HOST_TAG: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", re.ASCII)
HTTP_URL: Final = re.compile(r"https?://[^/\s#]+(?:/\S*)?")
# Elasticsearch's URL holds no credentials (they have keys of their own, kept out of sight), no
# query and no fragment: the writer appends `/_bulk` and `/_index_template/...` to its path.
ES_URL: Final = re.compile(r"https?://[^/\s#?@]+(?:/[^\s#?@]*)?")
# `<prefix>-YYYY.MM.DD` must be an index name Elasticsearch and OpenSearch both take: lowercase,
# none of `\ / * ? " < > | , # :` or spaces, not starting with `-`, `_`, `+` (refused) or `.`
# (hidden and system indices), at most 255 bytes with the date.
INDEX_PREFIX: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,199}", re.ASCII)


def config_keys() -> dict[str, frozenset[str]]:
    """Every key of the schema by section, for `--help` and the docs."""
    return {
        "": TOP_KEYS,
        "owner": frozenset(OWNER),
        "docker": frozenset(DOCKER),
        "pools.<name>": POOL_KEYS,
        "monitoring": MONITORING_KEYS,
        "monitoring.influxdb[] (1.x)": INFLUX_KEYS,
        "monitoring.influxdb[] (2.x)": INFLUX2_KEYS,
        "monitoring.prometheus": PROMETHEUS_KEYS,
        "monitoring.elasticsearch[]": ELASTICSEARCH_KEYS,
        "remote": REMOTE_KEYS,
        "legacy (Plancton 0.6)": frozenset(LEGACY_KEYS),
    }


# The schema and the model must agree: a PoolConfig field nobody can set is a bug.
_UNSETTABLE: Final = (
    {f.name for f in dataclass_fields(PoolConfig)}
    - set(POOL_SIMPLE)
    - {"name", "pull", "pull_refresh", "cap_add", "cap_drop"}
)
assert not _UNSETTABLE, f"PoolConfig fields without a config key: {_UNSETTABLE}"
