"""How a pool becomes a container: pure, so the safe defaults are testable without an engine.

The result is the keyword arguments of docker-py's low-level `create_container` and
`create_host_config` (5.0.3 and newer): the low-level API costs exactly one create and one start
call per pilot, the same as the "raw" docker-py baseline the benchmark compares against.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from planctond import constants as C
from planctond.config.model import PoolConfig


def spec_hash(pool: PoolConfig) -> str:
    """A short stable digest of what a pilot is made of; stored as a label to spot outdated pilots."""
    blob = json.dumps(pool.spec_fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pilot_name(pool: str) -> str:
    return f"{C.PILOT_NAME_PREFIX}{pool}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class PilotSpec:
    name: str
    pool: str
    image: str
    create: dict[str, Any]  # create_container kwargs, without host_config
    host: dict[str, Any]  # create_host_config kwargs


def resource_limits(pool: PoolConfig) -> dict[str, Any]:
    """The limits `docker update` can change on a running pilot (also used at create)."""
    limits: dict[str, Any] = {"nano_cpus": round(pool.cpus * 1e9)}
    if pool.memory > 0:
        limits["mem_limit"] = pool.memory
        # Docker's MemorySwap is memory + swap; equal values mean "no swap".
        limits["memswap_limit"] = pool.memory + pool.swap
    return limits


def log_config(pool: PoolConfig) -> dict[str, Any]:
    """A bounded json-file log, whatever the engine's default driver keeps.

    Docker's json-file driver keeps every line a container writes until the container is
    removed: one chatty pilot over a 12 h ttl can fill the disk Docker lives on, and with it the
    owner's. Rotation caps a pilot at `log_max_size` x `log_max_files` bytes and still leaves the
    recent lines to `docker logs`. The Engine API's own field names (create_host_config takes
    this dict as a `LogConfig`); the values are strings because the API's Config is a
    string map.
    """
    return {
        "Type": "json-file",
        "Config": {"max-size": str(pool.log_max_size), "max-file": str(pool.log_max_files)},
    }


def _is_no_new_privileges(opt: str) -> bool:
    """Docker spells it `no-new-privileges`, `no-new-privileges:BOOL` or `no-new-privileges=BOOL`."""
    return re.split(r"[:=]", opt, maxsplit=1)[0].strip() == "no-new-privileges"


def security_options(pool: PoolConfig) -> list[str]:
    """`security_opts` plus no-new-privileges, which `no_new_privileges` alone decides.

    A setuid binary in a pilot image must not gain privileges, so it is on unless the pool turns
    it off by name (the loader warns about that). A `no-new-privileges:false` hidden in
    `security_opts` could otherwise turn it off without a word: such entries are dropped here.
    Turned off, nothing is sent, so an engine-wide `no-new-privileges` still applies.
    """
    opts = [o for o in pool.security_opts if not _is_no_new_privileges(o)]
    if pool.no_new_privileges:
        opts.append("no-new-privileges:true")
    return opts


def build_spec(pool: PoolConfig, *, instance: str, cgroup_parent: str | None) -> PilotSpec:
    """Everything a pilot is created with. The safe defaults (capabilities dropped by the loader,
    no-new-privileges, a bounded log, pids_limit, oom_score_adj, init) are always spelled out
    here rather than left to the engine's defaults, which a host admin may have changed."""
    name = pilot_name(pool.name)
    labels = {k: v for k, v in pool.labels}
    labels.update(
        {
            C.LABEL_MANAGED: "1",
            C.LABEL_POOL: pool.name,
            C.LABEL_INSTANCE: instance,
            C.LABEL_SPEC: spec_hash(pool),
            C.LABEL_CPUS: repr(pool.cpus),
        }
    )
    host: dict[str, Any] = {
        "network_mode": pool.network_mode,
        "init": pool.init,
        "oom_score_adj": pool.oom_score_adj,
        "pids_limit": pool.pids_limit,
        "security_opt": security_options(pool) or None,
        "cap_add": list(pool.cap_add) or None,
        "cap_drop": list(pool.cap_drop) or None,
        "devices": [d.docker_form() for d in pool.devices] or None,
        "binds": list(pool.binds) or None,
        "privileged": pool.privileged,
        "log_config": log_config(pool),
        **resource_limits(pool),
    }
    if cgroup_parent:
        host["cgroup_parent"] = cgroup_parent
    create: dict[str, Any] = {
        "image": pool.image,
        "command": list(pool.command) if pool.command else None,
        "name": name,
        "labels": labels,
        "environment": [f"{k}={v}" for k, v in pool.env] or None,
        "user": pool.user,
        "detach": True,
    }
    if pool.entrypoint is not None:
        create["entrypoint"] = list(pool.entrypoint)
    return PilotSpec(name=name, pool=pool.name, image=pool.image, create=create, host=host)
