"""Issue 9, pilot safety defaults on the config side: log rotation, default capability drops, and
one warning per load for each setting that hands a pilot a piece of the host."""

from __future__ import annotations

import pytest
import yaml

from planctond import constants as C
from planctond.config.loader import POOL_KEYS, load_config_text
from planctond.config.model import Config, PoolConfig
from planctond.config.render import render_effective

MiB = 1024 * 1024


def pool_of(body: str) -> PoolConfig:
    return load_config_text(f"pools:\n  p:\n{body}", "c.yaml").pools[0]


def warnings_of(text: str) -> tuple[str, ...]:
    return load_config_text(text, "c.yaml").warnings


# --- log rotation ------------------------------------------------------------------------------------


def test_log_options_default_and_are_read() -> None:
    pool = pool_of("    image: busybox\n")
    assert (pool.log_max_size, pool.log_max_files) == (10 * MiB, 3)
    assert (10 * MiB, 3) == (C.DEFAULT_LOG_MAX_SIZE, C.DEFAULT_LOG_MAX_FILES)
    pool = pool_of("    log_max_size: 512k\n    log_max_files: 7\n")
    assert (pool.log_max_size, pool.log_max_files) == (512 * 1024, 7)
    assert {"log_max_size", "log_max_files"} <= POOL_KEYS


def test_log_options_are_part_of_the_spec_and_rendered() -> None:
    pool = PoolConfig(name="p", log_max_size=MiB, log_max_files=5)
    assert pool.spec_fields()["log_max_size"] == MiB
    assert pool.spec_fields()["log_max_files"] == 5
    rendered = yaml.safe_load(render_effective(Config(pools=(pool,))))["pools"]["p"]
    assert (rendered["log_max_size"], rendered["log_max_files"]) == ("1M", 5)


# --- default capability drops ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capabilities", "add", "drop"),
    [
        (None, (), C.DEFAULT_CAP_DROP),
        ("[]", (), C.DEFAULT_CAP_DROP),
        ("~", (), C.DEFAULT_CAP_DROP),
        ("[SYS_ADMIN]", ("SYS_ADMIN",), C.DEFAULT_CAP_DROP),
        ("[NET_RAW]", ("NET_RAW",), ("MKNOD", "AUDIT_WRITE", "SETFCAP")),
        ("[+cap_mknod, NET_RAW]", ("MKNOD", "NET_RAW"), ("AUDIT_WRITE", "SETFCAP")),
        ("[ALL]", ("ALL",), ()),
        ("[-NET_ADMIN]", (), ("NET_ADMIN",)),
        ("[SYS_ADMIN, -NET_RAW]", ("SYS_ADMIN",), ("NET_RAW",)),
    ],
)
def test_default_cap_drop(
    capabilities: str | None, add: tuple[str, ...], drop: tuple[str, ...]
) -> None:
    body = f"    capabilities: {capabilities}\n" if capabilities is not None else "    cpus: 1\n"
    pool = pool_of(body)
    assert (pool.cap_add, pool.cap_drop) == (add, drop)
    assert C.DEFAULT_CAP_DROP == ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP")
    assert PoolConfig(name="x").cap_drop == C.DEFAULT_CAP_DROP


def test_default_drops_survive_check_config() -> None:
    config = load_config_text("pools: {a: {capabilities: [NET_RAW]}, b: {}}", "c.yaml")
    again = load_config_text(render_effective(config), "r.yaml")
    assert again.pools == config.pools


# --- risky settings are named, once, with file, line and pool --------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("privileged", "true", "root on the host"),
        ("devices", "[/dev/sda]", "/dev/sda"),
        ("devices", "['/dev/kvm:/dev/kvm:rw']", "/dev/kvm"),
        ("binds", "['/var/run/docker.sock:/var/run/docker.sock']", "Docker's socket"),
        ("binds", "['/run/docker.sock:/s:ro']", "Docker's socket"),
        ("binds", "['/run/user/1000/docker.sock:/s']", "Docker's socket"),
        ("binds", "['/:/host:ro']", "root on the host"),
        ("binds", "['/run:/run']", "root on the host"),
        ("binds", "['/var/run/:/x']", "root on the host"),
        ("network_mode", "host", "host's network"),
        ("no_new_privileges", "false", "gain root"),
        ("security_opts", "['no-new-privileges:false']", "gain root"),
        ("security_opts", "['no-new-privileges=false']", "gain root"),
    ],
)
def test_risky_settings_warn_once_by_name(key: str, value: str, words: str) -> None:
    warnings = warnings_of(f"tick: 5s\npools:\n  p:\n    {key}: {value}\n")
    (warning,) = warnings
    assert warning.startswith(f"c.yaml:4: pools.p.{key}: pool 'p': ")
    assert words in warning


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("devices", "[/dev/fuse, /dev/null, '/dev/urandom:/dev/random:r']"),
        ("binds", "['/cvmfs:/cvmfs:ro', '/run/condor:/run/condor', 'scratch:/scratch']"),
        ("network_mode", "bridge"),
        ("security_opts", "['no-new-privileges:true', 'apparmor=docker-cvmfs']"),
        ("privileged", "false"),
        ("capabilities", "[SYS_ADMIN]"),
    ],
)
def test_safe_settings_say_nothing(key: str, value: str) -> None:
    assert warnings_of(f"pools:\n  p:\n    {key}: {value}\n") == ()


def test_a_risky_default_names_every_pool_at_the_defaults_line() -> None:
    warnings = warnings_of("defaults:\n  privileged: true\npools:\n  a: {}\n  b: {}\n")
    assert len(warnings) == 2
    assert all(w.startswith("c.yaml:2: defaults.privileged: pool ") for w in warnings)
    assert "'a'" in warnings[0] and "'b'" in warnings[1]


def test_each_risk_is_named_once_per_load() -> None:
    warnings = warnings_of(
        "pools:\n  p:\n    devices: [/dev/sda, /dev/sda]\n    privileged: true\n"
    )
    assert len(warnings) == 2


def test_plancton_0_6_privileged_is_named_with_its_old_key() -> None:
    warnings = warnings_of("docker_privileged: true\n")
    assert any("docker_privileged: pool 'default': privileged: true" in w for w in warnings)
