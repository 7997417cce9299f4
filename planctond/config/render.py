"""The effective config as YAML, every default filled in (`planctond --check-config FILE`).

An admin sees exactly what the daemon will do, in the new schema even when the file is a Plancton
0.6 one, so the output is also the migration: it loads back to the same `Config`.
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from planctond.config.model import (
    Config,
    ElasticsearchTarget,
    GiveWayMode,
    InfluxDBTarget,
    OwnerConfig,
    PoolConfig,
    RemoteConfig,
)
from planctond.config.units import format_duration, format_size

HIDDEN: Final = "(hidden)"  # a secret's place in the rendered config


def _size(value: int) -> int | str:
    text = format_size(value)
    return int(text) if text.isdigit() else text


def _pool(pool: PoolConfig) -> dict[str, Any]:
    capabilities = [f"+{c}" for c in pool.cap_add] + [f"-{c}" for c in pool.cap_drop]
    return {
        "image": pool.image,
        "pull": {"policy": str(pool.pull), "refresh": format_duration(pool.pull_refresh)},
        "command": list(pool.command),
        "entrypoint": list(pool.entrypoint) if pool.entrypoint is not None else None,
        "cpus": pool.cpus,
        "memory": _size(pool.memory),
        "swap": _size(pool.swap),
        "max_pilots": pool.max_pilots,
        "run_when": pool.run_when,
        "per_tick": pool.per_tick,
        "ttl": format_duration(pool.ttl),
        "stop_grace": format_duration(pool.stop_grace),
        "network_mode": pool.network_mode,
        "env": dict(pool.env),
        "binds": list(pool.binds),
        "devices": [d.docker_form() for d in pool.devices],
        "capabilities": capabilities,
        "security_opts": list(pool.security_opts),
        "user": pool.user,
        "privileged": pool.privileged,
        "labels": dict(pool.labels),
        "nowork_exit_codes": sorted(pool.nowork_exit_codes),
        "pids_limit": pool.pids_limit,
        "oom_score_adj": pool.oom_score_adj,
        "no_new_privileges": pool.no_new_privileges,
        "init": pool.init,
        "log_max_size": _size(pool.log_max_size),
        "log_max_files": pool.log_max_files,
        "fail_window": format_duration(pool.fail_window),
        "backoff_min": format_duration(pool.backoff_min),
        "backoff_max": format_duration(pool.backoff_max),
    }


def _influx(target: InfluxDBTarget) -> dict[str, Any]:
    """A 2.x token is shown as a mark: `--check-config` output gets pasted into tickets."""
    tls = {"verify_tls": target.verify_tls, "ca_file": target.ca_file}
    if not target.v2:
        return {"url": target.url, "database": target.database, **tls} | {
            "plancton_series": target.plancton_series
        }
    out: dict[str, Any] = {"url": target.url, "org": target.org, "bucket": target.database}
    if target.token is not None:
        out["token"] = HIDDEN
    return out | tls | {"plancton_series": target.plancton_series}


def _elasticsearch(target: ElasticsearchTarget) -> dict[str, Any]:
    """The password and API key are shown as a mark, like a 2.x token; the user name is not a
    secret and says which account writes."""
    out: dict[str, Any] = {"url": target.url, "index_prefix": target.index_prefix}
    if target.username is not None:
        out |= {"username": target.username, "password": HIDDEN}
    if target.api_key is not None:
        out["api_key"] = HIDDEN
    return out | {"verify_tls": target.verify_tls, "ca_file": target.ca_file}


def _prometheus(config: Config) -> dict[str, str] | None:
    listen = config.monitoring.prometheus
    if listen is None:
        return None
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return {"listen": f"{host}:{listen.port}"}


def _remote(remote: RemoteConfig | None) -> dict[str, Any] | None:
    """The token file's path is shown, never what it holds (the config never holds the token)."""
    if remote is None:
        return None
    return {
        "url": remote.url,
        "ca_file": remote.ca_file,
        "pin_sha256": list(remote.pin_sha256),
        "token_file": remote.token_file,
        "interval": format_duration(remote.interval),
        "timeout": format_duration(remote.timeout),
        "may_set_owner": remote.may_set_owner,
    }


def _owner(owner: OwnerConfig) -> dict[str, Any]:
    """The pressure lines only with `give_way: pressure`: that is the only rule that reads them,
    and the loader refuses a line beside `usage`, so the output still loads back."""
    out: dict[str, Any] = {
        "give_way": owner.give_way.value,
        "reserve": owner.reserve,
        "margin": owner.margin,
        "reserve_memory": _size(owner.reserve_memory),
        "grace_kill": format_duration(owner.grace_kill),
        "grace_spawn": format_duration(owner.grace_spawn),
        "freeze": format_duration(owner.freeze),
        "cgroup": owner.cgroup,
    }
    lines = {
        "cpu_pressure": owner.cpu_pressure,
        "memory_pressure": owner.memory_pressure,
        "io_pressure": owner.io_pressure,
    }
    if owner.give_way is GiveWayMode.PRESSURE:
        out |= lines
    else:  # a null line loads beside `usage` (it asks for nothing) and must load back the same
        out |= {key: None for key, line in lines.items() if line is None}
    return out | {"active_within": format_duration(owner.active_within)}


def effective_dict(config: Config) -> dict[str, Any]:
    """The config as plain YAML-able data in the new schema."""
    return {
        "tick": format_duration(config.tick),
        "config_check": format_duration(config.config_check),
        "state_dir": config.state_dir,
        "owner": _owner(config.owner),
        "docker": {
            "url": config.docker.url,
            "cgroup_parent": config.docker.cgroup_parent,
            "stop_pilots_on_exit": config.docker.stop_pilots_on_exit,
        },
        "monitoring": {
            "host": config.monitoring.host,
            "prometheus": _prometheus(config),
            "influxdb": [_influx(t) for t in config.monitoring.influxdb],
            "elasticsearch": [_elasticsearch(t) for t in config.monitoring.elasticsearch],
        },
        "remote": _remote(config.remote),
        "pools": {pool.name: _pool(pool) for pool in config.pools},
    }


def render_effective(config: Config) -> str:
    """YAML of the full effective config, then the load warnings as comments."""
    origin = config.source or "built-in defaults"
    header = f"# effective planctond configuration (from {origin})\n"
    body = yaml.safe_dump(effective_dict(config), sort_keys=False, default_flow_style=False)
    warnings = "".join(
        f"# warning: {line}\n" for warning in config.warnings for line in warning.splitlines()
    )
    return header + body + warnings
