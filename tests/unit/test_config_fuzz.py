"""Bad input never hurts a running host (issue 9): whatever a config file holds, loading it gives a
valid `Config` or a `ConfigError`, within about a second and a few MB, and a `Config` that loads
runs through the container spec, the policy and `--check-config` without an error.

Arbitrary bytes, arbitrary text, YAML-ish text made of the characters and tokens that matter to
YAML, arbitrary nested structures dumped as YAML (under the real keys too), and hand-made
adversarial shapes (merge and alias bombs, deep nesting, huge numbers, long expressions,
surrogates, special files).
"""

from __future__ import annotations

import dataclasses
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.loader import POOL_KEYS, load_config, load_config_text
from planctond.config.model import Config
from planctond.config.render import render_effective
from planctond.config.schema import OWNER, TOP
from planctond.engine.spec import build_spec, resource_limits, spec_hash
from planctond.policy.model import PilotPhase
from planctond.text import is_safe_text
from tests.support.policy_sim import HostSim, decide_once, snapshot, steady, view

MAX_SECONDS = 3.0  # "about a second": the slowest shape takes 0.75 s on a quiet 2-core host; room for a loaded one
MAX_PEAK = 20 * 1024 * 1024  # bytes, as tracemalloc counts them
MiB = 1024 * 1024
FILL = C.MAX_CONFIG_SIZE - 1024  # characters of one long value, leaving room for the rest


def outcome(load: Callable[[], Config]) -> Config | ConfigError:
    """Only a Config or a ConfigError may come out, and an error names its file and says what
    is wrong in printable one-line text."""
    try:
        config = load()
    except ConfigError as exc:
        for problem in exc.problems:
            for text in (problem.file, problem.path, problem.message):
                assert is_safe_text(text), text  # no surrogate, no control character
            assert "internal error" not in problem.message, problem
        return exc
    assert isinstance(config, Config)
    return config


def exercise(config: Config) -> None:
    """What the daemon does with a config that loaded: `--check-config` (which must load back
    to the same config), a spec per pool, decisions with pilots of every pool at every age."""
    rendered = render_effective(config)
    # A file at the size limit may render longer (a command string becomes a list): such a
    # rendering is for reading, and only the ones within the limit must load back.
    if len(rendered) <= C.MAX_CONFIG_SIZE:
        again = load_config_text(rendered, "rendered.yaml")
        assert dataclasses.replace(again, source=None, warnings=()) == dataclasses.replace(
            config, source=None, warnings=()
        )
    pilots = []
    for i, pool in enumerate(config.pools):
        resource_limits(pool)
        spec_hash(pool)
        build_spec(pool, instance="fuzz", cgroup_parent="planctond.slice")
        pilots.append(view(f"young{i}", pool_name=pool.name, age=1.0, cpus=pool.cpus))
        pilots.append(view(f"old{i}", pool_name=pool.name, age=1e9, cpus=pool.cpus))
        pilots.append(
            view(f"frozen{i}", pool_name=pool.name, cpus=pool.cpus, phase=PilotPhase.FROZEN)
        )
    for owner_cpu in (0.0, 3.9):
        decide_once(config, snapshot(owner_cpu=owner_cpu), pilots)
    sim = HostSim(config, owner=steady(2.0), lifetime=lambda _pool: (5.0, 0))
    sim.run(min(60.0, 5 * config.tick))


def within_bounds(load: Callable[[], Config]) -> Config | ConfigError:
    """`outcome`, timed on its own, then once more under tracemalloc for its peak. Timed in this
    thread's CPU time: a bomb costs CPU, and other work on a shared host stretches the wall
    clock without making the loader any slower."""
    start = time.thread_time()
    result = outcome(load)
    elapsed = time.thread_time() - start
    tracemalloc.start()
    try:
        outcome(load)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f}s"
    assert peak < MAX_PEAK, f"peak {peak / MiB:.1f} MiB"
    return result


# --- arbitrary input --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "config.yaml"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600))
def test_arbitrary_bytes(config_file: Path, data: bytes) -> None:
    config_file.write_bytes(data)
    result = outcome(lambda: load_config(str(config_file), missing_ok=False))
    if isinstance(result, Config):
        exercise(result)


_any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF)  # surrogates included


@settings(max_examples=150, deadline=None)
@given(st.text(_any_char, max_size=300))
def test_arbitrary_text(text: str) -> None:
    result = outcome(lambda: load_config_text(text, "fuzz.yaml"))
    if isinstance(result, Config):
        exercise(result)


_YAML_CHARS = "-:{}[],&*!|>'\"#%@`?<=~ \n\t.0123456789abexyz_+\\/\x00\x85\u2028\ud800\ufeff"
_TOKENS = [
    "pools:", "default:", "p:", "defaults:", "owner:", "docker:", "monitoring:", "tick:",
    *(f"{k}:" for k in sorted(POOL_KEYS)), "<<:", "&a", "*a", "&b", "*b", "!!int", "!!float",
    "!!binary", "!!timestamp", "!!bool", "!!str", "!!set", "!!omap", "!!python/name:os.system",
    "2024-02-30", "2024-01-01", "1e400", "1.0e+400", ".nan", "-.inf", "0x" + "f" * 30,
    "9" * 60, "1:" * 40 + "0", "0b" + "1" * 90, '"\\ud800"', '"\\x00"', '"\\x1b[2J"', "'",
    '"', "[", "]", "{", "}", "-", "?", "~", "null", "true", "yes", "1G", "1P", "1025", "0.001",
    "10y", "ncpus", "ncpus * 1e300", "9**9**9", "1/0", "/dev/sda", "/var/run/docker.sock:/s",
    "host", "busybox", "\uff42\uff55\uff53\uff59\uff42\uff4f\uff58:\uff4c\uff41\uff54\uff45\uff53\uff54", "+NET_RAW", "-ALL", "\n", "\n  ", "\n    ", " ",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.sampled_from(_YAML_CHARS), max_size=200)
    | st.lists(st.sampled_from(_TOKENS), max_size=40).map(" ".join)
)
def test_yaml_ish_text(text: str) -> None:
    result = outcome(lambda: load_config_text(text, "fuzz.yaml"))
    if isinstance(result, Config):
        exercise(result)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(_any_char, max_size=20)
    | st.sampled_from(["1G", "2P", "1024P", "30s", "11000d", "ncpus - 2", "max(1, ncpus)", "0.001"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(_values, st.booleans())
def test_arbitrary_structures(value: object, unicode: bool) -> None:
    text = yaml.safe_dump(value, allow_unicode=unicode)
    result = outcome(lambda: load_config_text(text, "fuzz.yaml"))
    if isinstance(result, Config):
        exercise(result)


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(keys), _values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    _section(sorted(POOL_KEYS)),
    _section(sorted(OWNER)),
    _section(sorted(TOP)),
    _section(sorted(POOL_KEYS)),
)
def test_arbitrary_values_under_the_real_keys(
    pool: dict[str, object],
    owner: dict[str, object],
    top: dict[str, object],
    defaults: dict[str, object],
) -> None:
    document = {**top, "owner": owner, "defaults": defaults, "pools": {"p": pool, "q": {}}}
    result = outcome(lambda: load_config_text(yaml.safe_dump(document), "fuzz.yaml"))
    if isinstance(result, Config):
        exercise(result)


# --- adversarial shapes -----------------------------------------------------------------------------


def _merge_bomb(levels: int = 9, width: int = 10) -> str:
    """< 1 KB that PyYAML's flatten_mapping expands to width**levels merged pairs."""
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(width)) + "}"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} {{<<: [{', '.join([f'*a{n - 1}'] * width)}]}}")
    return "\n".join(lines) + "\n"


def _alias_bomb(levels: int = 9, width: int = 10) -> str:
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: x" for i in range(width)) + "}"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} {{{', '.join(f'k{i}: *a{n - 1}' for i in range(width))}}}")
    return "\n".join(lines) + "\npools: {p: {<<: *a8}}\n"


def _chain(kind: str, n: int) -> str:
    if kind == "alias":
        rest = [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, n)]
        return "a0: &a0 [x]\n" + "\n".join(rest) + "\n"
    rest = [f"a{i}: &a{i} {{<<: *a{i - 1}, k{i}: 1}}" for i in range(1, n)]
    return "a0: &a0 {k0: 1}\n" + "\n".join(rest) + "\n"


ADVERSARIAL: dict[str, str | bytes] = {
    "merge bomb": _merge_bomb(),
    "alias bomb through merges": _alias_bomb(),
    "merge of itself": "a: &a {<<: *a, k: 1}\n",
    "alias of itself": "a: &a [*a]\n",
    "alias chain": _chain("alias", 5000),
    "merge chain": _chain("merge", 5000),
    "deep flow nesting": "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "deep flow mapping": "a: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n",
    "deep block nesting": "".join(" " * i + "a:\n" for i in range(2000)) + " " * 2000 + "b: 1\n",
    "deep block list": "- " * 50_000 + "x\n",
    "huge decimal": "pools: {p: {pids_limit: " + "9" * 5000 + "}}\n",
    "huge explicit int": "pools: {p: {per_tick: !!int " + "9" * 5000 + "}}\n",
    "huge hex": "pools: {p: {cpus: 0x" + "f" * FILL + "}}\n",
    "huge binary": "pools: {p: {memory: 0b" + "1" * FILL + "}}\n",
    "huge sexagesimal": "tick: " + "1:" * (FILL // 2) + "0\n",
    "huge float": "owner: {reserve: 1" + "0" * FILL + ".0}\n",
    "huge quoted size": 'pools: {p: {memory: "' + "1" * FILL + '"}}\n',
    "huge fraction size": 'pools: {p: {memory: ".' + "1" * FILL + 'k"}}\n',
    "long expression literal": 'pools: {p: {max_pilots: "' + "9" * 999 + '"}}\n',
    "long hex expression": 'pools: {p: {max_pilots: "0x' + "f" * 997 + '"}}\n',
    "long expression": 'pools: {p: {max_pilots: "' + "+".join(["ncpus"] * 2000) + '"}}\n',
    "nested expression": 'pools: {p: {run_when: "' + "-" * 999 + '1"}}\n',
    "parenthesised expression": 'pools: {p: {run_when: "' + "(" * 499 + "1" + ")" * 499 + '"}}\n',
    "surrogate value": 'pools: {p: {image: "\\ud800"}}\n',
    "surrogate key": '"\\udcff": 1\n',
    "control characters": 'pools: {p: {env: {A: "\\x1b[2J\\x00"}}}\n',
    "long key": "a" * FILL + ": 1\n",
    "long unknown keys": "".join(f"{'k' * 250}{i}: 1\n" for i in range(FILL // 260)),
    "long string value": "pools: {p: {command: '" + "x " * (FILL // 2) + "'}}\n",
    "many values": "- a\n" * (FILL // 4),
    "many keys": "".join(f"k{i}: {i}\n" for i in range(FILL // 16)),
    "a whole file of comment": "#" * (C.MAX_CONFIG_SIZE - 1) + "\n",
    "too large": "#" * C.MAX_CONFIG_SIZE + "\n",
    "not UTF-8": b"tick: 10s # caf\xe9\n",
    "UTF-16": "tick: 10s\n".encode("utf-16"),
    "NUL byte": b"tick: 10s\x00\n",
    "raw control character": b"tick: \x1b[2J\n",
    "timestamps": "pools: {p: {ttl: 2024-02-30, stop_grace: 2024-01-01 25:00:00}}\n",
    "bad tags": "a: !!int abc\nb: !!float x\nc: !!binary '@@'\nd: !!bool maybe\ne: !!timestamp x\n",
    "many documents": "a: 1\n---\nb: 2\n",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_shapes(name: str, tmp_path: Path) -> None:
    content = ADVERSARIAL[name]
    path = tmp_path / "config.yaml"
    path.write_bytes(
        content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    )
    result = within_bounds(lambda: load_config(str(path), missing_ok=False))
    if isinstance(result, Config):
        exercise(result)
    else:
        assert result.file == str(path)


def test_special_files_are_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero, tmp_path):
        result = within_bounds(lambda path=path: load_config(str(path), missing_ok=False))
        assert isinstance(result, ConfigError)
        assert "not a regular file" in str(result)
