"""The new schema: defaults, every key typed and validated, pools, defaults block, files."""

from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import pytest

from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.loader import POOL_KEYS, config_keys, load_config, load_config_text
from planctond.config.model import (
    Config,
    DeviceMapping,
    DockerConfig,
    InfluxDBTarget,
    OwnerConfig,
    PoolConfig,
    PrometheusListen,
    PullPolicy,
)
from planctond.config.render import render_effective

FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"
GiB = 1024**3


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), "test.yaml")


def pool_of(text: str, name: str = "default") -> PoolConfig:
    pool = load(text).pool(name)
    assert pool is not None
    return pool


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value


# --- defaults -------------------------------------------------------------------------------------


def test_no_path_gives_the_builtin_dummy_pilots() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.source is None
    (pool,) = config.pools
    assert pool.name == "default"
    assert pool.image == "busybox:latest"
    assert pool.command == ("sleep", "60")


def test_missing_file_gives_defaults_with_a_warning(tmp_path: Path) -> None:
    config = load_config(str(tmp_path / "absent.yaml"))
    assert config.pools == Config().pools
    assert config.source is None
    assert any("not found" in w for w in config.warnings)


def test_missing_file_is_an_error_unless_missing_ok(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(path, missing_ok=False)
    assert info.value.file == path


def test_unreadable_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path))  # a directory
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"tick: 10s # caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(str(bad))
    if os.geteuid() != 0:  # root reads anything
        secret = tmp_path / "secret.yaml"
        secret.write_text("tick: 1s\n")
        secret.chmod(0)
        with pytest.raises(ConfigError, match="cannot read"):
            load_config(str(secret))


def test_empty_file_and_empty_mapping_are_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing but a comment\n")
    config = load_config(str(path))
    assert config.source == str(path)
    assert config.pools == Config().pools
    assert load("{}").pools == Config().pools


def test_fixture_full_config_loads() -> None:
    config = load_config(str(FIXTURES / "full.yaml"), missing_ok=False)
    (warning,) = config.warnings  # the one risky setting of the fixture, named with its line
    assert warning.endswith(
        "full.yaml:47: pools.night.batch.network_mode: pool 'night.batch': "
        "network_mode: host puts pilots on the host's network stack"
    )
    assert [p.name for p in config.pools] == ["default", "cvmfs", "night.batch"]


def test_issue_skeleton_loads_with_its_values() -> None:
    config = load_config(str(FIXTURES / "issue-skeleton.yaml"), missing_ok=False)
    assert config.tick == 10.0
    assert config.config_check == 60.0
    assert config.owner == OwnerConfig(reserve=0.5, grace_kill=120, grace_spawn=60, freeze=30)
    pool = config.pools[0]
    assert pool.image == "busybox:latest"
    assert pool.pull is PullPolicy.MISSING
    assert pool.command == ("sleep", "60")
    assert pool.memory == 2 * GiB  # "2G" as Docker reads it
    assert pool.max_pilots == "ncpus - 2"
    assert pool.ttl == 43200
    assert pool.network_mode == "bridge"


# --- top level and owner ------------------------------------------------------------------------


def test_top_level_and_owner_keys() -> None:
    config = load(
        """
        tick: 2s
        config_check: 5m
        state_dir: /srv/planctond
        owner:
          reserve: 1
          margin: 0.5
          reserve_memory: 1G
          grace_kill: 30s
          grace_spawn: 0
          freeze: 0
          cgroup: user.slice
        docker:
          url: unix:///run/docker.sock
          cgroup_parent: planctond.slice
          stop_pilots_on_exit: false
        """
    )
    assert config.tick == 2
    assert config.config_check == 300
    assert config.state_dir == "/srv/planctond"
    assert config.owner == OwnerConfig(
        reserve=1,
        margin=0.5,
        reserve_memory=GiB,
        grace_kill=30,
        grace_spawn=0,
        freeze=0,
        cgroup="user.slice",
    )
    assert config.docker == DockerConfig(
        url="unix:///run/docker.sock", cgroup_parent="planctond.slice", stop_pilots_on_exit=False
    )
    assert config.source == "test.yaml"


def test_null_sections_are_empty() -> None:
    config = load("owner:\ndocker:\nmonitoring:\n")
    assert config.owner == OwnerConfig()
    assert config.docker == DockerConfig()


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [
        ("tick: 0", "tick", "greater than 0"),
        ("tick: -1s", "tick", "duration"),
        ("tick: soon", "tick", "duration"),
        ("tick: true", "tick", "duration"),
        ("tick: [1]", "tick", "duration"),
        ("config_check: 0s", "config_check", "greater than 0"),
        ("tick: 1ms", "tick", "at least 0.1s"),
        ("config_check: 0.05", "config_check", "at least 0.1s"),
        ("state_dir: relative/dir", "state_dir", "absolute path"),
        ("owner: {reserve: -0.5}", "owner.reserve", "0..1024"),
        ("owner: {reserve: .inf}", "owner.reserve", "0..1024"),
        ("owner: {reserve: lots}", "owner.reserve", "number of CPUs"),
        ("owner: {margin: -1}", "owner.margin", "0..1024"),
        ("owner: {reserve_memory: -1}", "owner.reserve_memory", "size"),
        ("owner: {grace_kill: -1}", "owner.grace_kill", "duration"),
        ("owner: {grace_spawn: x}", "owner.grace_spawn", "duration"),
        ("owner: {freeze: -3s}", "owner.freeze", "duration"),
        ("owner: [1]", "owner", "mapping"),
        ("owner: {cgroup: /}", "owner.cgroup", "cgroup path"),
        ("owner: {cgroup: /a/../b}", "owner.cgroup", "cgroup path"),
        ("owner: {cgroup: users}", "owner.cgroup", "slice name"),
        ("owner: {cgroup: 3}", "owner.cgroup", "cgroup path"),
        ("docker: {url: /run/docker.sock}", "docker.url", "Docker URL"),
        ("docker: {stop_pilots_on_exit: maybe}", "docker.stop_pilots_on_exit", "true or false"),
        ("docker: {cgroup_parent: ''}", "docker.cgroup_parent", "cgroup"),
        ("monitoring: {host: 'a b'}", "monitoring.host", "host name"),
        ("monitoring: {hosts: x}", "monitoring.hosts", "unknown"),
        ("pools: []", "pools", "mapping"),
        ("pools: {}", "pools", "at least one pool"),
        ("pools: ~", "pools", "at least one pool"),
        ("- tick", "", "mapping"),
    ],
)
def test_top_level_values_are_validated(text: str, path: str, expected: str) -> None:
    error = error_of(text)
    problem = error.problems[0]
    assert problem.path == path
    assert expected in problem.message
    assert problem.line == 1
    assert problem.file == "test.yaml"


# --- pools ------------------------------------------------------------------------------------------


def test_every_pool_key() -> None:
    pool = pool_of(
        """
        pools:
          default:
            image: registry.example.org:5000/team/pilot
            pull: {policy: always, refresh: 6h}
            command: work_queue_worker --single-shot -t 30 "127.0.0.1" 9123
            entrypoint: [/sbin/tini, --]
            cpus: 0.5
            memory: 512M
            swap: 1G
            max_pilots: "min(ncpus - 1, ram_bytes // (2 * GiB))"
            run_when: "hour >= 22 or hour < 7"
            per_tick: 2
            ttl: 1d
            stop_grace: 10s
            network_mode: host
            env: {SITE: torino, DEBUG: yes, LEVEL: 3}
            binds: ["/cvmfs:/cvmfs:ro,rshared", "scratch:/scratch"]
            devices: [/dev/fuse, "/dev/kvm:/dev/kvm:rw"]
            capabilities: [SYS_ADMIN, +cap_net_admin, -NET_RAW, CAP_SYS_PTRACE]
            security_opts: [apparmor=unconfined, "label=disable"]
            user: "1000:1000"
            privileged: false
            labels: {site: torino, "com.example.team": alice}
            nowork_exit_codes: [3, 0]
            pids_limit: 0
            oom_score_adj: 500
            no_new_privileges: false
            init: false
            log_max_size: 1G
            log_max_files: 10
            fail_window: 2m
            backoff_min: 5s
            backoff_max: 1h
        """
    )
    assert pool.image == "registry.example.org:5000/team/pilot:latest"
    assert (pool.pull, pool.pull_refresh) == (PullPolicy.ALWAYS, 6 * 3600)
    assert pool.command == (
        "work_queue_worker", "--single-shot", "-t", "30", "127.0.0.1", "9123",
    )  # fmt: skip
    assert pool.entrypoint == ("/sbin/tini", "--")
    assert pool.cpus == 0.5
    assert pool.memory == 512 * 1024**2
    assert pool.swap == GiB
    assert pool.max_pilots == "min(ncpus - 1, ram_bytes // (2 * GiB))"
    assert pool.run_when == "hour >= 22 or hour < 7"
    assert pool.per_tick == 2
    assert pool.ttl == 86400
    assert pool.stop_grace == 10
    assert pool.network_mode == "host"
    assert pool.env == (("SITE", "torino"), ("DEBUG", "yes"), ("LEVEL", "3"))
    assert pool.binds == ("/cvmfs:/cvmfs:ro,rshared", "scratch:/scratch")
    assert pool.devices == (
        DeviceMapping("/dev/fuse", "/dev/fuse", "rwm"),
        DeviceMapping("/dev/kvm", "/dev/kvm", "rw"),
    )
    assert pool.cap_add == ("SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE")
    assert pool.cap_drop == ("NET_RAW",)
    assert pool.security_opts == ("apparmor=unconfined", "label=disable")
    assert pool.user == "1000:1000"
    assert pool.privileged is False
    assert pool.labels == (("site", "torino"), ("com.example.team", "alice"))
    assert pool.nowork_exit_codes == frozenset({0, 3})
    assert pool.pids_limit == 0
    assert pool.oom_score_adj == 500
    assert pool.no_new_privileges is False
    assert pool.init is False
    assert (pool.log_max_size, pool.log_max_files) == (GiB, 10)
    assert (pool.fail_window, pool.backoff_min, pool.backoff_max) == (120, 5, 3600)


def test_pool_defaults_match_the_model() -> None:
    assert pool_of("pools: {default: {}}") == PoolConfig(name="default")
    assert pool_of("pools: {default: }") == PoolConfig(name="default")


@pytest.mark.parametrize(
    ("value", "policy", "refresh"),
    [
        ("always", PullPolicy.ALWAYS, C.DEFAULT_PULL_REFRESH),
        ("missing", PullPolicy.MISSING, C.DEFAULT_PULL_REFRESH),
        ("never", PullPolicy.NEVER, C.DEFAULT_PULL_REFRESH),
        ("{policy: never}", PullPolicy.NEVER, C.DEFAULT_PULL_REFRESH),
        ("{refresh: 1h}", PullPolicy.MISSING, 3600),
        ("{policy: always, refresh: 30m}", PullPolicy.ALWAYS, 1800),
    ],
)
def test_pull(value: str, policy: PullPolicy, refresh: float) -> None:
    pool = pool_of(f"pools: {{default: {{pull: {value}}}}}")
    assert (pool.pull, pool.pull_refresh) == (policy, refresh)


@pytest.mark.parametrize(
    ("value", "command"),
    [
        ('"sleep 60"', ("sleep", "60")),
        ("[sleep, 60]", ("sleep", "60")),
        ("'sh -c \"echo a b; exit 3\"'", ("sh", "-c", "echo a b; exit 3")),
        ("[]", ()),
        ("", ()),
    ],
)
def test_command_forms(value: str, command: tuple[str, ...]) -> None:
    assert pool_of(f"pools: {{default: {{command: {value}}}}}").command == command


def test_env_as_list_and_yaml_scalars_kept_as_written() -> None:
    pool = pool_of(
        """
        pools:
          default:
            env: ["A=1", "B=x=y", "C="]
            user: 1:10
        """
    )
    assert pool.env == (("A", "1"), ("B", "x=y"), ("C", ""))
    assert pool.user == "1:10"  # YAML 1.1 would read 1:10 as the number 70


@pytest.mark.parametrize("value", ["1000", "1000:1000", "nobody", "nobody:nogroup", "app_user"])
def test_user_forms(value: str) -> None:
    assert pool_of(f"pools: {{default: {{user: '{value}'}}}}").user == value


def test_expressions_given_as_yaml_numbers_and_bools() -> None:
    pool = pool_of("pools: {default: {max_pilots: 4, run_when: true}}")
    assert pool.max_pilots == "4"
    assert pool.run_when == "true"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("image", "Busybox", "bad name"),
        ("image", "'img:'", "bad tag"),
        ("image", "[a]", "image reference"),
        ("pull", "sometimes", "always, missing or never"),
        ("pull", "{policy: sometimes}", "always, missing or never"),
        ("pull", "{refresh: 0}", "greater than 0"),
        ("pull", "{refrsh: 1h}", "did you mean 'refresh'"),
        ("command", "{a: 1}", "command"),
        ("command", "'sh -c \"unterminated'", "like a shell"),
        ("command", "[[a]]", "word of the command"),
        ("cpus", "0", "0.01..1024"),
        ("cpus", "-1", "0.01..1024"),
        ("cpus", "two", "0.01..1024"),
        ("cpus", "true", "0.01..1024"),
        ("cpus", ".nan", "0.01..1024"),
        ("memory", "-1", "size"),
        ("memory", "lots", "size"),
        ("swap", "1Q", "size"),
        ("max_pilots", "'ncpu - 2'", "did you mean 'ncpus'"),
        ("max_pilots", "\"__import__('os').system('x')\"", "not allowed"),
        ("max_pilots", "'9**9**9'", "too large"),
        ("max_pilots", "", "expression"),
        ("run_when", "'hour <'", "syntax error"),
        ("run_when", "'open(\"/etc/passwd\")'", "calling 'open' not allowed"),
        ("per_tick", "0", "1..1000"),
        ("per_tick", "1.5", "whole number"),
        ("per_tick", "true", "whole number"),
        ("ttl", "0", "greater than 0"),
        ("ttl", "forever", "duration"),
        ("stop_grace", "-1", "duration"),
        ("network_mode", "'container:'", "container:NAME"),
        ("network_mode", "'my net'", "network name"),
        ("network_mode", "''", "network name"),
        ("env", "[NOEQUALS]", "NAME=value"),
        ("env", "['=x']", "bad environment variable name"),
        ("env", "[A=1, A=2]", "given twice"),
        ("env", "{A: [1]}", "text value"),
        ("env", "42", "mapping NAME: value"),
        ("binds", "[/only/one]", "bind HOST:CONTAINER"),
        ("binds", "['/a:relative']", "bind HOST:CONTAINER"),
        ("binds", "['/a:/b:rx']", "unknown bind option 'rx'"),
        ("binds", "'/a:/b'", "a list"),
        ("devices", "[dev/fuse]", "absolute paths"),
        ("devices", "['/dev/fuse:/dev/fuse:rwx']", "PERMS"),
        ("devices", "['/dev/fuse:/dev/fuse:rr']", "PERMS"),
        ("devices", "['/a:/b:r:extra']", "device HOST"),
        ("devices", "['/a::r']", "device HOST"),
        ("capabilities", "[SYS_ADMN]", "did you mean 'SYS_ADMIN'"),
        ("capabilities", "[+SYS_ADMIN, -SYS_ADMIN]", "both added and dropped"),
        ("capabilities", "SYS_ADMIN", "list of capabilities"),
        ("security_opts", "['']", "security option"),
        ("user", "'a b'", "uid[:gid]"),
        ("user", "'1000:'", "uid[:gid]"),
        ("privileged", "yes please", "true or false"),
        ("privileged", "1", "true or false"),
        ("labels", "{org.plancton.pool: x}", "planctond's own"),
        ("labels", "{Org.Plancton.Managed: x}", "planctond's own"),
        ("labels", "[a]", "mapping of label"),
        ("labels", "{a: {b: c}}", "text value"),
        ("nowork_exit_codes", "[256]", "0..255"),
        ("nowork_exit_codes", "[-1]", "0..255"),
        ("nowork_exit_codes", "[true]", "0..255"),
        ("nowork_exit_codes", "3", "a list"),
        ("pids_limit", "-1", "0 = no limit"),
        ("oom_score_adj", "1001", "-1000..1000"),
        ("init", "'true'", "true or false"),
        ("backoff_min", "0", "greater than 0"),
    ],
)
def test_pool_values_are_validated(key: str, value: str, expected: str) -> None:
    error = error_of(f"pools:\n  default:\n    {key}: {value}\n")
    problem = error.problems[0]
    assert problem.path.startswith(f"pools.default.{key}")
    assert expected in problem.message, problem.message
    assert problem.line == 3
    assert len(error.problems) == 1


def test_cross_field_checks() -> None:
    error = error_of("pools: {default: {memory: 0, swap: 1G}}")
    assert "swap needs a memory limit" in str(error)
    error = error_of("pools: {default: {backoff_min: 1h, backoff_max: 1m}}")
    assert "backoff_max must not be less than backoff_min" in str(error)


@pytest.mark.parametrize("name", ["default", "a", "cvmfs", "night.batch", "p-1", "A_2", "1"])
def test_good_pool_names(name: str) -> None:
    assert load(f"pools: {{'{name}': {{}}}}").pools[0].name == name


@pytest.mark.parametrize("name", ["-a", ".a", "_a", "a b", "a/b", "a:b", "é"])
def test_bad_pool_names(name: str) -> None:
    assert "bad pool name" in str(error_of(f"pools: {{'{name}': {{}}}}"))


def test_several_pools_keep_file_order() -> None:
    config = load(
        """
        pools:
          zeta: {cpus: 2}
          alpha: {cpus: 1}
        """
    )
    assert [p.name for p in config.pools] == ["zeta", "alpha"]
    assert config.pool("zeta") is not None and config.pool("zeta").cpus == 2  # type: ignore[union-attr]
    assert config.pool("nope") is None


def test_defaults_block_applies_to_every_pool_and_pools_override_it() -> None:
    config = load(
        """
        defaults:
          image: example/pilot:1
          memory: 1G
          binds: ["/cvmfs:/cvmfs:ro"]
        pools:
          a: {}
          b: {memory: 3G}
        """
    )
    a, b = config.pools
    assert a.image == b.image == "example/pilot:1"
    assert a.binds == b.binds == ("/cvmfs:/cvmfs:ro",)
    assert (a.memory, b.memory) == (GiB, 3 * GiB)


def test_defaults_block_without_pools_shapes_the_default_pool() -> None:
    (pool,) = load("defaults: {cpus: 2}").pools
    assert (pool.name, pool.cpus) == ("default", 2)


def test_a_bad_default_is_reported_once_at_its_own_line() -> None:
    error = error_of(
        """\
        defaults:
          cpus: -1
        pools:
          a: {}
          b: {}
        """
    )
    assert len(error.problems) == 1
    assert (error.problems[0].path, error.problems[0].line) == ("defaults.cpus", 2)


def test_yaml_merge_keys_work_for_shared_blocks() -> None:
    config = load(
        """
        pools:
          a: &common
            image: example/pilot:2
            cpus: 2
          b:
            <<: *common
            cpus: 1
        """
    )
    a, b = config.pools
    assert a.image == b.image == "example/pilot:2"
    assert (a.cpus, b.cpus) == (2, 1)


def test_monitoring_influxdb_forms() -> None:
    config = load(
        """
        monitoring:
          influxdb:
            - https://influx.example.org:8086/#plancton
            - insecure_https://self-signed.example.org:8086#db2
            - {url: "http://127.0.0.1:8086", database: local}
            - {url: "https://h:8086", database: x, verify_tls: false, plancton_series: true}
          host: node-17.example.org
        """
    )
    # Plancton's way of writing a target (URL#database) keeps Plancton's series coming.
    assert config.monitoring.influxdb == (
        InfluxDBTarget("https://influx.example.org:8086", "plancton", True, True),
        InfluxDBTarget("https://self-signed.example.org:8086", "db2", False, True),
        InfluxDBTarget("http://127.0.0.1:8086", "local", True, False),
        InfluxDBTarget("https://h:8086", "x", False, True),
    )
    assert config.monitoring.host == "node-17.example.org"
    single = load("monitoring: {influxdb: 'http://h:8086#d'}")
    assert single.monitoring.influxdb == (InfluxDBTarget("http://h:8086", "d", True, True),)
    assert single.monitoring.host is None


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("'http://h:8086'", "URL#database"),
        ("'ftp://h#d'", "URL#database"),
        ("'http://h#'", "URL#database"),
        ("'insecure_https:http://h#d'", "URL#database"),
        ("{url: 'http://h'}", "missing database"),
        ("{url: 'http://h', database: d, plancton_series: maybe}", "true or false"),
        ("{url: 'h', database: d}", "http(s)://"),
        ("{url: 'http://h', database: d, tls: no}", "did you mean 'verify_tls'"),
    ],
)
def test_bad_influxdb_targets(entry: str, expected: str) -> None:
    error = error_of(f"monitoring:\n  influxdb:\n    - {entry}\n")
    assert expected in str(error)
    assert error.problems[0].line == 3


def test_config_keys_lists_every_section() -> None:
    keys = config_keys()
    assert keys["pools.<name>"] == POOL_KEYS
    assert "tick" in keys[""]
    assert "max_dock_mem" in keys["legacy (Plancton 0.6)"]
    assert "token" in keys["monitoring.influxdb[] (2.x)"]
    assert keys["monitoring.prometheus"] == {"listen"}


def test_reloading_after_removing_a_key_returns_its_default(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tick: 3s\npools:\n  default:\n    cpus: 0.5\n    memory: 1G\n")
    first = load_config(str(path))
    assert (first.tick, first.pools[0].cpus, first.pools[0].memory) == (3, 0.5, GiB)
    path.write_text("pools:\n  default:\n    cpus: 0.5\n")
    second = load_config(str(path))
    assert second.tick == C.DEFAULT_TICK
    assert second.pools[0].memory == C.DEFAULT_MEMORY
    assert second.pools[0].cpus == 0.5


def test_config_is_frozen_and_comparable() -> None:
    assert load("tick: 5s") == load("tick: 5")
    assert load("tick: 5s") != load("tick: 6s")
    with pytest.raises(AttributeError):
        load("tick: 5s").tick = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("9839", "127.0.0.1", 9839),
        ("'0.0.0.0:9839'", "0.0.0.0", 9839),
        ("'node-1.example.org:80'", "node-1.example.org", 80),
        ("'[::1]:9839'", "::1", 9839),
    ],
)
def test_prometheus_listen(listen: str, host: str, port: int) -> None:
    config = load(f"monitoring: {{prometheus: {{listen: {listen}}}}}")
    assert config.monitoring.prometheus == PrometheusListen(port=port, host=host)
    again = load_config_text(render_effective(config), "again.yaml")
    assert again.monitoring == config.monitoring


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("monitoring: {prometheus: 9839}", "monitoring.prometheus", "listen"),
        ("monitoring: {prometheus: {}}", "monitoring.prometheus", "missing listen"),
        ("monitoring: {prometheus: {listen: 0}}", "monitoring.prometheus.listen", "1..65535"),
        ("monitoring: {prometheus: {listen: 65536}}", "monitoring.prometheus.listen", "1..65535"),
        ("monitoring: {prometheus: {listen: 'a b:1'}}", "monitoring.prometheus.listen", "PORT"),
        ("monitoring: {prometheus: {listen: 1, port: 2}}", "monitoring.prometheus.port", "unknown"),
    ],
)
def test_prometheus_listen_is_checked(text: str, path: str, words: str) -> None:
    problem = error_of(text).problems[0]
    assert (problem.path, problem.line) == (path, 1)
    assert words in problem.message, problem.message


def test_prometheus_without_its_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend whose library is missing is a config error naming what to install."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "prometheus_client" else real(name, *a),
    )
    problem = error_of("monitoring: {prometheus: {listen: 9839}}").problems[0]
    assert "python3-prometheus-client" in problem.message


def test_influxdb_2x_targets_and_their_token_stays_out_of_sight() -> None:
    config = load(
        """
        monitoring:
          influxdb:
            - {url: "https://h:8086", org: site, bucket: fleet, token: s3cret}
            - {url: "http://vm:8428", org: o, bucket: b}
        """
    )
    first, second = config.monitoring.influxdb
    assert (first.v2, first.org, first.database, first.token) == (True, "site", "fleet", "s3cret")
    assert (second.token, second.plancton_series) == (None, False)
    assert "s3cret" not in repr(first)
    rendered = render_effective(config)
    assert "s3cret" not in rendered and "token: (hidden)" in rendered


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("{url: 'http://h', org: o}", "missing bucket"),
        ("{url: 'http://h', bucket: b}", "missing org"),
        ("{url: 'http://h', org: o, bucket: b, database: d}", "unknown"),
        ("{url: 'http://h', database: d, token: t}", "unknown"),
    ],
)
def test_influxdb_2x_targets_are_checked(entry: str, words: str) -> None:
    problem = error_of(f"monitoring: {{influxdb: [{entry}]}}").problems[0]
    assert words in problem.message, problem.message
