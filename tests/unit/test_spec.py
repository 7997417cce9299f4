"""A pool -> the pilot's create arguments: the safe defaults every pilot gets, and that nothing in
a pool's `security_opts` switches no-new-privileges off behind the pool's back.

Pure: no engine. docker-py's own create_host_config (5.0.3, Debian's) checks that it takes the
result; `tests/integration/test_daemon_pilots.py` reads the same defaults back from a real pilot.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import docker
import pytest

from planctond import constants as C
from planctond.config.loader import load_config_text
from planctond.config.model import Config, PoolConfig
from planctond.engine.spec import PilotSpec, build_spec, log_config, security_options

NNP = "no-new-privileges:true"


def spec_of(pool: PoolConfig) -> PilotSpec:
    return build_spec(pool, instance="inst", cgroup_parent=None)


def loaded_pool(extra: str = "") -> PoolConfig:
    """A pool as a config file with nothing but an image gives it (plus `extra` pool keys)."""
    return load_config_text(f"pools:\n  p:\n    image: busybox:latest\n{extra}").pools[0]


@pytest.mark.parametrize(
    "pool",
    [loaded_pool(), Config().pools[0]],
    ids=["from a file", "built-in defaults"],
)
def test_every_pilot_gets_the_safe_defaults(pool: PoolConfig) -> None:
    host = spec_of(pool).host
    assert host["log_config"] == {
        "Type": "json-file",
        "Config": {
            "max-size": str(C.DEFAULT_LOG_MAX_SIZE),
            "max-file": str(C.DEFAULT_LOG_MAX_FILES),
        },
    }
    assert set(C.DEFAULT_CAP_DROP) <= set(host["cap_drop"])
    assert "NET_RAW" in host["cap_drop"]
    assert host["cap_add"] is None
    assert host["security_opt"] == [NNP]
    assert host["pids_limit"] == C.DEFAULT_PIDS_LIMIT
    assert host["oom_score_adj"] == C.DEFAULT_OOM_SCORE_ADJ
    assert host["init"] is True
    assert host["privileged"] is False
    assert host["devices"] is None and host["binds"] is None


def test_log_bounds_follow_the_pool() -> None:
    pool = replace(Config().pools[0], log_max_size=512 * 1024, log_max_files=7)
    assert log_config(pool) == {
        "Type": "json-file",
        "Config": {"max-size": "524288", "max-file": "7"},
    }
    assert spec_of(pool).host["log_config"] == log_config(pool)


@pytest.mark.parametrize(
    "hidden",
    [
        "no-new-privileges:false",
        "no-new-privileges=false",
        "no-new-privileges = false",
        "no-new-privileges",
        "no-new-privileges:true",
    ],
)
def test_security_opts_never_decide_no_new_privileges(hidden: str) -> None:
    base = Config().pools[0]
    on = replace(base, security_opts=("apparmor=docker-cvmfs", hidden, "label=disable"))
    assert security_options(on) == ["apparmor=docker-cvmfs", "label=disable", NNP]
    off = replace(on, no_new_privileges=False)
    assert security_options(off) == ["apparmor=docker-cvmfs", "label=disable"]


def test_no_new_privileges_off_only_by_name() -> None:
    """Turned off, nothing is sent: an engine-wide no-new-privileges default still applies."""
    pool = replace(Config().pools[0], no_new_privileges=False)
    assert spec_of(pool).host["security_opt"] is None
    assert security_options(replace(pool, security_opts=("seccomp=x.json",))) == ["seccomp=x.json"]


def test_docker_py_takes_the_host_config() -> None:
    """docker-py builds the Engine API's HostConfig from the spec (no engine is contacted)."""
    pool = replace(
        Config().pools[0], cap_add=("SYS_PTRACE",), security_opts=("no-new-privileges:false",)
    )
    host = spec_of(pool).host
    api: Any = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version="1.41")
    hc = api.create_host_config(**{k: v for k, v in host.items() if v is not None})
    assert hc["LogConfig"] == {
        "Type": "json-file",
        "Config": {
            "max-size": str(C.DEFAULT_LOG_MAX_SIZE),
            "max-file": str(C.DEFAULT_LOG_MAX_FILES),
        },
    }
    assert hc["SecurityOpt"] == [NNP]
    assert hc["CapAdd"] == ["SYS_PTRACE"]
    assert "NET_RAW" in hc["CapDrop"]
    assert hc["PidsLimit"] == C.DEFAULT_PIDS_LIMIT
    assert hc["OomScoreAdj"] == C.DEFAULT_OOM_SCORE_ADJ
