"""Plancton 0.6 config files run unchanged, each key mapped with its old meaning and one warning."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.legacy import LEGACY_KEYS, new_name
from planctond.config.loader import load_config, load_config_text
from planctond.config.model import Config, DeviceMapping, InfluxDBTarget, PoolConfig, PullPolicy

FIXTURE = Path(__file__).parent.parent / "fixtures" / "configs" / "plancton-0.6.yaml"


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), "plancton.yaml")


def default_pool(text: str) -> PoolConfig:
    pool = load(text).pool("default")
    assert pool is not None
    return pool


def test_real_plancton_config_maps_every_key() -> None:
    config = load_config(str(FIXTURE), missing_ok=False)
    assert config.tick == 5
    assert config.config_check == 10
    assert (config.owner.grace_kill, config.owner.grace_spawn) == (10, 20)
    (pool,) = config.pools
    assert pool.name == "default"
    assert pool.cpus == 1
    assert pool.max_pilots == "ncpus - 1"
    assert pool.per_tick == 2
    assert pool.ttl == 500
    assert (pool.pull, pool.pull_refresh) == (PullPolicy.ALWAYS, 3600)
    assert pool.memory == 2_000_000_000
    assert pool.swap == 1_000_000_000  # the extra amount: MemorySwap = memory + swap
    assert pool.binds == (
        "/opt/plancton/conf/condor/00-worker.config:/etc/condor/config.d/00-worker.config:ro",
        "/cvmfs:/cvmfs:rw",
    )
    assert pool.devices == (DeviceMapping("/dev/fuse", "/dev/fuse", "rw"),)
    assert (pool.cap_add, pool.cap_drop) == (("SYS_ADMIN",), ("NET_RAW",))
    assert pool.security_opts == ("apparmor:docker-cvmfs",)
    assert pool.command == ("/tmp/condor-container-pilot", "--verbose", "with spaces")
    assert pool.image == "registry.example.org:5000/plancton/slc6-fuse-ab:latest"
    assert pool.privileged is False
    assert pool.user == "0:0"
    assert config.monitoring.influxdb == (
        InfluxDBTarget(
            "https://influx.example.org:8086", "plancton", verify_tls=False, plancton_series=True
        ),
    )


def test_real_plancton_config_warns_once_per_key_naming_the_new_key() -> None:
    config = load_config(str(FIXTURE), missing_ok=False)
    text = FIXTURE.read_text()
    used = [key for key in LEGACY_KEYS if f"\n{key}:" in text]
    assert len(used) == 20
    for key in used:
        mentions = [w for w in config.warnings if f": {key} is a Plancton 0.6 key" in w]
        assert len(mentions) == 1, key
        assert new_name(key) in mentions[0]
        assert mentions[0].startswith(f"{FIXTURE}:")
    # and the URL Plancton ignored (no #database) is ignored again, with a word about it
    assert any("has no '#database'" in w for w in config.warnings)


def test_plancton_defaults_file_runs_with_the_default_pool() -> None:
    # Plancton 0.6's documented defaults written out: still a valid config.
    config = load(
        """
        updateconfig: 60
        image_expiration: 43200
        main_sleep: 30
        grace_kill: 120
        grace_spawn: 60
        cpus_per_dock: 1
        max_docks: "ncpus - 2"
        docks_per_loop: 4
        max_ttl: 43200
        docker_image: busybox
        docker_cmd: "/bin/sleep 60"
        docker_privileged: false
        max_dock_mem: 2000000000
        max_dock_swap: 0
        user_group: "0:0"
        binds: []
        devices: []
        capabilities: []
        security_opts: []
        """
    )
    pool = config.pools[0]
    assert pool.image == "busybox:latest"
    assert pool.command == ("/bin/sleep", "60")
    assert config.tick == 30


@pytest.mark.parametrize(
    ("image", "normalised"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("host:5000/img", "host:5000/img:latest"),
        ("host:5000/img:tag", "host:5000/img:tag"),
        ("localhost/team/img", "localhost/team/img:latest"),
        ("img@sha256:" + "a" * 64, "img@sha256:" + "a" * 64),
        ("host:5000/img:1@sha256:" + "b" * 64, "host:5000/img:1@sha256:" + "b" * 64),
    ],
)
def test_docker_image_parsed_right(image: str, normalised: str) -> None:
    assert default_pool(f"docker_image: '{image}'").image == normalised


def test_docker_cmd_list_is_kept_and_string_split_like_a_shell() -> None:
    assert default_pool("docker_cmd: [/bin/sh, -c, 'echo a  b']").command == (
        "/bin/sh",
        "-c",
        "echo a  b",
    )
    assert default_pool("docker_cmd: \"/bin/sh -c 'echo a  b'\"").command == (
        "/bin/sh",
        "-c",
        "echo a  b",
    )


def test_max_docks_as_int_or_expression() -> None:
    assert default_pool("max_docks: 3").max_pilots == "3"
    assert default_pool("max_docks: ram_bytes // max_dock_mem").max_pilots == (
        "ram_bytes // max_dock_mem"
    )


def test_max_docks_eval_injection_is_refused_with_key_and_text() -> None:
    with pytest.raises(ConfigError) as info:
        load("max_docks: \"__import__('os').system('touch /tmp/pwned')\"\n")
    problem = info.value.problems[0]
    assert problem.path == "max_docks"
    assert problem.line == 1
    assert "__import__" in problem.message


def test_capabilities_signs() -> None:
    pool = default_pool("capabilities: [SYS_ADMIN, +NET_ADMIN, -MKNOD, -CAP_NET_RAW]")
    assert pool.cap_add == ("SYS_ADMIN", "NET_ADMIN")
    assert pool.cap_drop == ("MKNOD", "NET_RAW")


def test_binds_read_only_unless_a_mode_is_given() -> None:
    pool = default_pool("binds: ['/a:/b', '/c:/d:rw', '/e:/f:ro']")
    assert pool.binds == ("/a:/b:ro", "/c:/d:rw", "/e:/f:ro")


def test_devices_strings_and_docker_mappings() -> None:
    pool = default_pool(
        """
        devices:
          - /dev/fuse
          - PathOnHost: /dev/kvm
            PathInContainer: /dev/kvm
            CgroupPermissions: rw
        """
    )
    assert pool.devices == (
        DeviceMapping("/dev/fuse", "/dev/fuse", "rwm"),
        DeviceMapping("/dev/kvm", "/dev/kvm", "rw"),
    )


def test_memory_and_swap() -> None:
    pool = default_pool("max_dock_mem: 1000000000\nmax_dock_swap: 500000000\n")
    assert (pool.memory, pool.swap) == (1_000_000_000, 500_000_000)


@pytest.mark.parametrize(
    ("value", "targets"),
    [
        ("'http://h:8086#db'", (InfluxDBTarget("http://h:8086", "db", True, True),)),
        ("['https://h#a', 'insecure_https://h2:8086#b']", (
            InfluxDBTarget("https://h", "a", True, True),
            InfluxDBTarget("https://h2:8086", "b", False, True),
        )),
        ("['http://no-database']", ()),
        ("[]", ()),
    ],
)  # fmt: skip
def test_influxdb_url(value: str, targets: tuple[InfluxDBTarget, ...]) -> None:
    assert load(f"influxdb_url: {value}").monitoring.influxdb == targets


@pytest.mark.parametrize(
    ("text", "legacy", "new"),
    [
        ("main_sleep: 5\ntick: 5s\n", "main_sleep", "tick"),
        ("updateconfig: 5\nconfig_check: 5s\n", "updateconfig", "config_check"),
        ("grace_kill: 5\nowner: {grace_kill: 5s}\n", "grace_kill", "owner.grace_kill"),
        ("grace_spawn: 5\nowner:\n  grace_spawn: 5s\n", "grace_spawn", "owner.grace_spawn"),
        ("max_dock_mem: 1\npools: {default: {memory: 1G}}\n", "max_dock_mem", "pools.default.memory"),
        ("docker_image: a\npools: {default: {image: b}}\n", "docker_image", "pools.default.image"),
        ("image_expiration: 5\npools: {default: {pull: never}}\n", "image_expiration", "pools.default.pull"),
        ("max_docks: 1\ndefaults: {max_pilots: 2}\n", "max_docks", "defaults.max_pilots"),
        ("influxdb_url: 'http://h#d'\nmonitoring: {influxdb: []}\n", "influxdb_url", "monitoring.influxdb"),
    ],
)  # fmt: skip
def test_mixing_legacy_and_new_keys_for_the_same_thing_names_both(
    text: str, legacy: str, new: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(text)
    problem = info.value.problems[0]
    assert problem.path == legacy
    assert problem.line == 1
    assert legacy in problem.message and new in problem.message


def test_legacy_and_new_keys_for_different_things_mix() -> None:
    config = load("max_dock_mem: 1G\ntick: 3s\nowner: {reserve: 1}\n")
    assert config.pools[0].memory == 1024**3
    assert (config.tick, config.owner.reserve) == (3, 1)
    assert len(config.warnings) == 1


def test_legacy_pool_keys_need_the_default_pool_when_pools_are_given() -> None:
    with pytest.raises(ConfigError, match="does not define") as info:
        load("cpus_per_dock: 2\npools: {other: {}}\n")
    assert info.value.problems[0].path == "cpus_per_dock"
    config = load("cpus_per_dock: 2\npools: {default: {memory: 1G}, other: {}}\n")
    assert config.pool("default").cpus == 2  # type: ignore[union-attr]
    assert config.pool("other").cpus == C.DEFAULT_CPUS  # type: ignore[union-attr]


def test_unknown_keys_in_a_pure_plancton_file_are_warnings_as_plancton_ignored_them() -> None:
    config = load("max_docks: 2\nsecopt: [apparmor:docker-cvmfs]\nmax_dock_memm: 5\n")
    assert config.pools[0].max_pilots == "2"
    ignored = [w for w in config.warnings if "ignored, as Plancton 0.6 did" in w]
    assert len(ignored) == 2
    assert any("did you mean 'max_dock_mem'" in w for w in ignored)


def test_unknown_keys_in_a_mixed_file_are_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        load("max_docks: 2\ntick: 5s\nsecopt: []\n")


def test_legacy_values_are_validated_at_their_own_line() -> None:
    with pytest.raises(ConfigError) as info:
        load("main_sleep: 5\ncpus_per_dock: -1\nmax_dock_mem: lots\n")
    problems = {(p.path, p.line) for p in info.value.problems}
    assert problems == {("cpus_per_dock", 2), ("max_dock_mem", 3)}


def test_removing_a_legacy_key_returns_the_default(tmp_path: Path) -> None:
    """Plancton 0.6 kept the old value of a removed key; planctond goes back to the default."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "max_dock_mem: 1000\nmain_sleep: 7\ndocker_image: other\ncapabilities: [SYS_ADMIN]\n"
    )
    before = load_config(str(path))
    assert (before.pools[0].memory, before.tick, before.pools[0].image) == (1000, 7, "other:latest")
    path.write_text("main_sleep: 7\n")
    after = load_config(str(path))
    assert after.pools[0] == PoolConfig(name="default")
    assert after.tick == 7
    path.write_text("")
    assert load_config(str(path)).tick == C.DEFAULT_TICK


def test_every_legacy_key_is_mapped_to_a_real_new_key() -> None:
    from planctond.config.loader import POOL_KEYS, TOP_KEYS

    for key, (section, new) in LEGACY_KEYS.items():
        if section == "pool":
            assert new in POOL_KEYS, key
        elif section == "":
            assert new in TOP_KEYS, key
        assert new_name(key).endswith(new)
