"""How a pool becomes a container: pure, so the safe defaults are testable without an engine.

The result is the keyword arguments of docker-py's low-level `create_container` and
`create_host_config` (5.0.3 and newer): the low-level API costs exactly one create and one start
call per pilot, the same as the "raw" docker-py baseline the benchmark compares against.
"""

from __future__ import annotations

import hashlib
import json
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


def build_spec(pool: PoolConfig, *, instance: str, cgroup_parent: str | None) -> PilotSpec:
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
    security_opt = list(pool.security_opts)
    if pool.no_new_privileges and not any(o.startswith("no-new-privileges") for o in security_opt):
        security_opt.append("no-new-privileges:true")
    host: dict[str, Any] = {
        "network_mode": pool.network_mode,
        "init": pool.init,
        "oom_score_adj": pool.oom_score_adj,
        "pids_limit": pool.pids_limit,
        "security_opt": security_opt or None,
        "cap_add": list(pool.cap_add) or None,
        "cap_drop": list(pool.cap_drop) or None,
        "devices": [d.docker_form() for d in pool.devices] or None,
        "binds": list(pool.binds) or None,
        "privileged": pool.privileged,
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
