"""Issue 9, one regression test per class of bad input: each ends as a `ConfigError` naming the
file, the key and the line, never as another exception, a hang or a memory blow-up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from planctond.cli.daemon import main as planctond_main
from planctond.config.document import MAX_DEPTH, MAX_NODES
from planctond.config.errors import ConfigError, Problem
from planctond.config.imageref import parse_image
from planctond.config.loader import load_config, load_config_text
from planctond.text import is_safe_text


def problem_of(text: str) -> Problem:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "c.yaml")
    assert info.value.file == "c.yaml"
    return info.value.problems[0]


# --- class 1: whatever fails while loading is a ConfigError with its key and line ----------------


@pytest.mark.parametrize(
    ("text", "path", "line", "words"),
    [
        ("tick: 1s\npools:\n  p:\n    ttl: 2024-02-30\n", "pools.p.ttl", 4, "day is out of range"),
        ("pools: {p: {per_tick: !!int abc}}", "pools.p.per_tick", 1, "invalid literal"),
        ("pools: {p: {cpus: !!float x}}", "pools.p.cpus", 1, "could not convert"),
        ("pools: {p: {privileged: !!bool maybe}}", "pools.p.privileged", 1, "cannot read value"),
        ("pools: {p: {image: !!binary 'é'}}", "pools.p.image", 1, "base64"),
        ("pools: {p: {ttl: !!timestamp never}}", "pools.p.ttl", 1, "cannot read value"),
        ("\n\npools: {p: {pids_limit: " + "9" * 5000 + "}}", "pools.p.pids_limit", 3, "too long"),
        ("pools: {p: {cpus: 0x" + "f" * 5000 + "}}", "pools.p.cpus", 1, "too long"),
        ("tick: " + "1:" * 5000 + "0", "tick", 1, "too long"),
        ("a:\n  b: " + "[" * 100 + "]" * 100, "", 2, "nested deeper"),
        ("a: &a [*a]", "a" + "[0]" * MAX_DEPTH, 1, "nested deeper"),
        ("a: &a {<<: *a}", "a", 1, "refers to its own mapping"),
        ('pools: {p: {max_pilots: "' + "9" * 999 + '"}}', "pools.p.max_pilots", 1, "too large"),
        ('pools: {p: {max_pilots: "0x' + "f" * 400 + '"}}', "pools.p.max_pilots", 1, "too large"),
        ('pools: {p: {memory: "' + "9" * 5000 + '"}}', "pools.p.memory", 1, "5000 characters"),
        ("a: 1\n---\nb: 2\n", "", 2, "single document"),
        ("a: [1\n", "", 2, "not valid YAML"),
    ],
)
def test_values_pyyaml_cannot_build_are_config_errors(
    text: str, path: str, line: int, words: str
) -> None:
    problem = problem_of(text)
    assert (problem.path, problem.line) == (path, line), problem
    assert words in problem.message, problem.message


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"tick: 10s\nowner: {}\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        load_config(str(path))
    assert (info.value.file, info.value.line) == (str(path), 3)


def test_raw_control_characters_name_their_line() -> None:
    problem = problem_of("tick: 10s\nstate_dir: /a\x1bb\n")
    assert problem.line == 2
    assert "U+001B" in problem.message


def test_check_config_prints_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for content in ["ttl: 2024-02-30\n", "pools: {p: {cpus: 0x" + "f" * 5000 + "}}\n", "[" * 5000]:
        path = tmp_path / "c.yaml"
        path.write_text(content)
        assert planctond_main(["--check-config", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"planctond: {path}:")
        assert "Traceback" not in err
        assert len(err.splitlines()) == 1


# --- class 3: merge keys and aliases are counted while they are expanded -------------------------


def test_merge_key_bomb_is_cheap() -> None:
    # Under 1 KB; PyYAML's own flatten_mapping builds 10**9 merged pairs from it.
    lines = ["a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    lines += [f"a{n}: &a{n} {{<<: [{', '.join([f'*a{n - 1}'] * 10)}]}}" for n in range(1, 10)]
    text = "\n".join(lines) + "\n"
    assert len(text) < 1024
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="unknown key"):  # loaded; a0..a9 are not config keys
        load_config_text(text, "c.yaml")
    assert time.perf_counter() - start < 1.0


def test_expanded_merges_count_against_the_node_limit() -> None:
    wide = "a0: &a0 {" + ", ".join(f"k{i}: {i}" for i in range(200)) + "}\n"
    users = "".join(f"b{i}: {{<<: *a0}}\n" for i in range(MAX_NODES // 200 + 1))
    problem = problem_of(wide + users)
    assert "document too large" in problem.message
    assert problem.line is not None


# --- class 4: keys and values must be text ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "shown"),
    [
        ('pools: {p: {image: "busy\\ud800box"}}', "pools.p.image", "\\ud800"),
        ('pools: {"p\\udcff": {}}', "pools", "\\udcff"),
        ('pools: {p: {env: {A: "\\x1b[2J"}}}', "pools.p.env.A", "\\x1b"),
        ('pools: {p: {labels: {a: "x\\x00y"}}}', "pools.p.labels.a", "\\x00"),
        ('"tick\\n": 1s', "", "\\n"),
    ],
)
def test_strings_that_cannot_be_sent_are_refused_escaped(text: str, path: str, shown: str) -> None:
    problem = problem_of(text)
    assert problem.path == path
    assert "not valid text" in problem.message
    assert shown in problem.message
    assert is_safe_text(str(problem))  # no surrogate, no control character


def test_tabs_and_newlines_stay_allowed_in_values() -> None:
    config = load_config_text('pools: {p: {command: ["sh", "-c", "a\\tb\\nc"]}}', "c.yaml")
    assert config.pools[0].command[2] == "a\tb\nc"


def test_file_names_in_errors_are_escaped() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("tick: soon", "/etc/plancton/\udcff.yaml")
    assert "\\udcff" in str(info.value)
    str(info.value).encode("utf-8")


# --- class 5: consistent empty pools, ASCII image references ---------------------------------------


@pytest.mark.parametrize("text", ["pools: {}", "pools: ~", "pools:", "pools: null"])
def test_empty_pools_are_refused_however_written(text: str) -> None:
    problem = problem_of(text)
    assert (problem.path, problem.line) == ("pools", 1)
    assert "at least one pool" in problem.message


def test_no_pools_key_runs_the_default_pool() -> None:
    assert [p.name for p in load_config_text("tick: 5s", "c.yaml").pools] == ["default"]


@pytest.mark.parametrize(
    "image",
    [
        "busybox:\uff4c\uff41\uff54\uff45\uff53\uff54",
        "busybox:lätest",
        "bü/box",
        "registry.exämple.org/a/b",
        "\uff42\uff55\uff53\uff59\uff42\uff4f\uff58",
    ],
)
def test_image_references_are_ascii(image: str) -> None:
    with pytest.raises(ValueError):
        parse_image(image)
    assert problem_of(f"pools: {{p: {{image: '{image}'}}}}").path == "pools.p.image"


def test_image_names_are_at_most_255_characters() -> None:
    assert parse_image("a" * 255).repository == "a" * 255
    with pytest.raises(ValueError, match="255"):
        parse_image("a" * 256)
