"""`--check-config` output: every default filled in, warnings as comments, and it loads back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.config.loader import POOL_KEYS, TOP_KEYS, load_config, load_config_text
from planctond.config.model import Config, DeviceMapping, PoolConfig, PullPolicy
from planctond.config.render import effective_dict, render_effective

FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"


def same(a: Config, b: Config) -> bool:
    return dataclasses.replace(a, source=None, warnings=()) == dataclasses.replace(
        b, source=None, warnings=()
    )


def test_defaults_render_every_key() -> None:
    data = yaml.safe_load(render_effective(Config()))
    assert set(data) == TOP_KEYS - {"defaults"}
    assert set(data["pools"]["default"]) == POOL_KEYS
    pool = data["pools"]["default"]
    assert pool["image"] == "busybox:latest"
    assert pool["command"] == ["sleep", "60"]
    assert pool["pull"] == {"policy": "missing", "refresh": "12h"}
    assert data["tick"] == "10s"
    assert data["owner"]["grace_kill"] == "2m"
    assert data["owner"]["reserve_memory"] == "512M"


def test_header_names_the_source() -> None:
    assert "built-in defaults" in render_effective(Config()).splitlines()[0]
    config = load_config(str(FIXTURES / "full.yaml"))
    assert str(FIXTURES / "full.yaml") in render_effective(config).splitlines()[0]


def test_warnings_are_yaml_comments_after_the_config() -> None:
    config = load_config(str(FIXTURES / "plancton-0.6.yaml"))
    text = render_effective(config)
    comments = [line for line in text.splitlines() if line.startswith("# warning: ")]
    assert len(comments) == len(config.warnings)
    assert yaml.safe_load(text) == effective_dict(config)


def test_fixtures_round_trip() -> None:
    for path in sorted(FIXTURES.glob("*.yaml")):
        config = load_config(str(path), missing_ok=False)
        again = load_config_text(render_effective(config), "rendered.yaml")
        assert same(config, again), path
        # The rendered form is pure new schema: only the pilot-safety warnings are left.
        assert all(": pool " in w for w in again.warnings), again.warnings


def test_builtin_defaults_round_trip() -> None:
    assert same(load_config_text(render_effective(Config()), "x"), Config())


_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
# Any text a value may hold: everything but surrogates and control characters (the loader
# refuses those, issue 9), except the tab and line breaks a script or a list may have.
_value = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\t\n\r"),
    max_size=10,
)
_pools = st.builds(
    PoolConfig,
    name=_text,
    image=st.sampled_from(["busybox:latest", "h:5000/a/b:1", "img@sha256:" + "c" * 64]),
    pull=st.sampled_from(list(PullPolicy)),
    pull_refresh=st.integers(min_value=1, max_value=10**7).map(float),
    command=st.lists(_value, max_size=4).map(tuple),
    entrypoint=st.none() | st.lists(_text, max_size=2).map(tuple),
    cpus=st.floats(min_value=0.01, max_value=64),
    memory=st.integers(min_value=1, max_value=2**40),
    swap=st.integers(min_value=0, max_value=2**40),
    max_pilots=st.sampled_from(["ncpus - 2", "4", "max(1, ncpus // 2)"]),
    run_when=st.sampled_from(["true", "false", "hour < 7", "not on_battery"]),
    per_tick=st.integers(min_value=1, max_value=100),
    ttl=st.floats(min_value=0.001, max_value=1e7),
    stop_grace=st.floats(min_value=0, max_value=1e4),
    network_mode=st.sampled_from(["bridge", "host", "none", "container:x", "mynet"]),
    env=st.lists(st.tuples(_text.map(str.upper), _value), max_size=3, unique_by=lambda kv: kv[0]).map(tuple),
    binds=st.lists(st.sampled_from(["/a:/b", "/c:/d:ro", "vol:/e:rw,z"]), max_size=2, unique=True).map(tuple),
    devices=st.lists(st.builds(DeviceMapping, host=st.just("/dev/fuse"), container=st.just("/dev/fuse"), perms=st.sampled_from(["r", "rw", "rwm"])), max_size=1).map(tuple),
    user=st.none() | st.sampled_from(["0:0", "1000", "nobody:nogroup", "1:10"]),
    privileged=st.booleans(),
    labels=st.lists(st.tuples(_text, _value), max_size=3, unique_by=lambda kv: kv[0]).map(tuple),
    nowork_exit_codes=st.frozensets(st.integers(min_value=0, max_value=255), max_size=3),
    pids_limit=st.integers(min_value=0, max_value=10**6),
    oom_score_adj=st.integers(min_value=-1000, max_value=1000),
    log_max_size=st.integers(min_value=1, max_value=2**50),
    log_max_files=st.integers(min_value=1, max_value=100),
)  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.lists(_pools, min_size=1, max_size=3, unique_by=lambda p: p.name))
def test_random_configs_round_trip(pools: list[PoolConfig]) -> None:
    config = Config(pools=tuple(pools))
    again = load_config_text(render_effective(config), "rendered.yaml")
    assert same(config, again)
