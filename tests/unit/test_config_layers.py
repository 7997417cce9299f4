"""Config from layers (issue 11): the remote document under the drop-ins under the main file,
merged key by key and checked as one, each value knowing where it was written."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond import constants as C
from planctond.config import fields_remote, tls
from planctond.config.document import Node, parse_document
from planctond.config.dropins import dropin_paths, layers_digest, read_dropins
from planctond.config.errors import ConfigError
from planctond.config.explain import origins, render_explained
from planctond.config.layers import compose, load_layered, local_sources
from planctond.config.loader import load_config_text
from planctond.config.remote import RemoteDocument, merge

URL = "https://site.example/fleet.yaml"
SITE = """\
tick: 20s
owner:
  reserve: 2
  grace_kill: 5m
pools:
  atlas:
    image: registry.example/atlas:2
    cpus: 2
    max_pilots: "4"
    env: {SITE: cern, MODE: prod}
  cms:
    image: registry.example/cms:1
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def main(tmp_path: Path) -> Path:
    return write(
        tmp_path / "config.yaml",
        f"""\
        remote:
          url: {URL}
        pools:
          atlas:
            max_pilots: "1"
            env: {{MODE: test}}
        """,
    )


def site(text: str = SITE, url: str = URL) -> RemoteDocument:
    return RemoteDocument(url, text, '"e1"', None, 1.0)


# --- the merge ---------------------------------------------------------------------------------


def test_the_host_overrides_key_by_key_and_keeps_the_rest(main: Path) -> None:
    config = load_layered(str(main), site())
    atlas, cms = config.pool("atlas"), config.pool("cms")
    assert atlas is not None and cms is not None
    assert atlas.max_pilots == "1"  # the host lowered it
    assert (atlas.image, atlas.cpus) == ("registry.example/atlas:2", 2.0)  # the site's
    assert dict(atlas.env) == {"SITE": "cern", "MODE": "test"}  # mappings merge per key
    assert cms.image == "registry.example/cms:1"
    assert (config.tick, config.owner.reserve) == (20.0, 2.0)
    assert config.source == str(main)
    assert config.layers == (URL, str(main))
    assert config.remote is not None and config.remote.url == URL


def test_dropins_go_between_the_remote_and_the_main_file_in_name_order(main: Path) -> None:
    d = main.parent / C.DROPIN_DIR_NAME
    write(d / "20-b.yaml", "owner: {reserve: 3, freeze: 1m}\npools: {atlas: {max_pilots: '9'}}\n")
    write(d / "10-a.yaml", "owner: {reserve: 1}\ntick: 15s\n")
    write(d / "30-c.yml", "tick: 1s\n")  # not .yaml: not a drop-in
    write(d / ".40-d.yaml", "tick: 2s\n")  # hidden: an editor's
    write(d / "50-e.yaml.dpkg-old", "tick: 3s\n")
    config = load_layered(str(main), site())
    assert config.owner.reserve == 3.0 and config.owner.freeze == 60.0  # 20-b over 10-a
    assert config.tick == 15.0  # 10-a over the site
    assert config.pool("atlas").max_pilots == "1"  # type: ignore[union-attr]  # main file wins
    assert [Path(p).name for p in config.layers[1:3]] == ["10-a.yaml", "20-b.yaml"]


def test_dropins_alone_make_a_config_without_a_main_file(tmp_path: Path) -> None:
    write(tmp_path / "config.d" / "site.yaml", f"remote: {{url: {URL}}}\n")
    config = load_layered(str(tmp_path / "config.yaml"), site())
    assert config.source is None  # no main file: the config watch's rules stay those of no file
    assert config.pool("cms") is not None


def test_may_set_owner_false_keeps_the_remote_out_of_the_owner_section(main: Path) -> None:
    text = main.read_text().replace(f"url: {URL}", f"url: {URL}\n  may_set_owner: false")
    main.write_text(text + "owner: {freeze: 10s}\n")
    config = load_layered(str(main), site())
    assert config.owner.reserve == C.DEFAULT_OWNER_RESERVE  # not the site's 2
    assert config.owner.grace_kill == C.DEFAULT_GRACE_KILL
    assert config.owner.freeze == 10.0  # the host's own
    assert config.tick == 20.0  # the rest of the site's document still applies
    assert any("may_set_owner: false" in w for w in config.warnings)


@pytest.mark.parametrize("key", ["remote: {url: 'https://evil.example/x.yaml'}", "state_dir: /tmp"])
def test_the_remote_may_not_say_where_it_comes_from_or_where_state_lives(
    main: Path, key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_layered(str(main), site(SITE + key + "\n"))
    (problem,) = info.value.problems
    assert problem.file == URL and problem.line == SITE.count("\n") + 1
    assert "only the host's own config" in problem.message


def test_a_bad_remote_document_is_named_by_its_url_and_line(main: Path) -> None:
    bad = SITE.replace("cpus: 2", "cpus: 0")
    with pytest.raises(ConfigError) as info:
        load_layered(str(main), site(bad))
    assert str(info.value) == (
        f"{URL}:8: pools.atlas.cpus: expected a number of CPUs, 0.01..1024, got 0"
    )


def test_a_problem_of_the_merge_names_the_file_that_has_it(main: Path) -> None:
    main.write_text(main.read_text() + "    cpus: lots\n")
    drop = write(main.parent / "config.d" / "x.yaml", "owner:\n  margin: -1\n")
    with pytest.raises(ConfigError) as info:
        load_layered(str(main), site())
    where = {(p.file, p.path, p.line) for p in info.value.problems}
    assert where == {(str(main), "pools.atlas.cpus", 7), (str(drop), "owner.margin", 2)}


def test_awaiting_the_remote_runs_no_pools(main: Path) -> None:
    config = load_layered(str(main), None)
    assert config.pools == ()  # not a busybox "atlas" made of the host's max_pilots alone
    assert any("no document of it yet" in w for w in config.warnings)
    # A document of another URL (a remote the host has left) is not used either.
    assert load_layered(str(main), site(url="https://old.example/x.yaml")).pools == ()


def test_without_any_file_the_builtin_defaults_run(tmp_path: Path) -> None:
    config = load_layered(str(tmp_path / "config.yaml"), None)
    assert [p.name for p in config.pools] == [C.DEFAULT_POOL_NAME]
    assert "not found" in config.warnings[0]
    with pytest.raises(ConfigError, match="file not found"):
        load_layered(str(tmp_path / "config.yaml"), missing_ok=False)


def test_a_host_without_remote_loads_as_before(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "pools: {a: {max_pilots: '2'}}\n")
    layered = load_layered(str(path), site())  # a document the files do not ask for: unused
    single = load_config_text(path.read_text(), str(path))
    assert dataclasses.replace(layered, layers=()) == single


def _node(value: object) -> Node:
    root = parse_document(yaml.safe_dump(value), "x")
    assert isinstance(root, Node)
    return root


def _plain(node: Node) -> object:
    if node.is_map:
        return {k: _plain(v) for k, v in node.value.items()}
    if node.is_list:
        return [_plain(v) for v in node.value]
    return node.value


_keys = st.sampled_from(["a", "b", "c", "pools", "owner"])
_trees = st.recursive(
    st.integers(0, 9) | st.text("xyz", max_size=2),
    lambda inner: st.dictionaries(_keys, inner, max_size=4) | st.lists(inner, max_size=2),
    max_leaves=12,
)


def _reference(base: object, upper: object) -> object:
    if isinstance(base, dict) and isinstance(upper, dict):
        out = dict(base)
        for k, v in upper.items():
            out[k] = _reference(base[k], v) if k in base else v
        return out
    return upper


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _trees, max_size=4), st.dictionaries(_keys, _trees, max_size=4))
def test_merge_is_the_recursive_mapping_merge(
    base: dict[str, object], upper: dict[str, object]
) -> None:
    merged = merge(_node(base), _node(upper))
    assert _plain(merged) == _reference(base, upper)


# --- where each value came from -----------------------------------------------------------------


def test_check_config_says_where_each_value_came_from(main: Path) -> None:
    drop = write(main.parent / "config.d" / "10-x.yaml", "owner:\n  freeze: 1m\n")
    composed = compose(local_sources(str(main)), site(), name=str(main))
    found = origins(composed)
    assert found[("pools", "atlas", "max_pilots")] == f"{main}:5"
    assert found[("pools", "atlas", "image")] == f"{URL}:7"
    assert found[("pools", "atlas", "env", "MODE")] == f"{main}:6"
    assert found[("pools", "atlas", "env", "SITE")] == f"{URL}:10"
    assert found[("owner", "freeze")] == f"{drop}:2"
    assert found[("owner", "reserve")] == f"{URL}:3"
    assert found[("owner", "margin")] == "default"
    assert found[("remote", "url")] == f"{main}:2"
    text = render_explained(composed)
    assert f"max_pilots: '1'  # {main}:5" in text
    assert f"# layers, lowest first: {URL}, {drop}, {main}" in text
    # Still YAML that loads back to the same config.
    again = load_config_text(text, "rendered.yaml")
    assert again.pools == composed.config.pools and again.owner == composed.config.owner


def test_provenance_of_pool_defaults_legacy_keys_and_a_scalar_pull(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "defaults:\n  memory: 1G\npools:\n  p:\n    pull: always\n",
    )
    found = origins(compose(local_sources(str(path)), None, name=str(path)))
    assert found[("pools", "p", "memory")] == f"{path}:2 (defaults)"
    assert found[("pools", "p", "pull", "policy")] == f"{path}:5"
    legacy = write(tmp_path / "old.yaml", "max_docks: 2\ndocker_image: busybox:latest\n")
    found = origins(compose(local_sources(str(legacy)), None, name=str(legacy)))
    assert found[("pools", "default", "max_pilots")] == f"{legacy}:1 (Plancton 0.6 key max_docks)"


# --- the remote section itself --------------------------------------------------------------------


def _remote_error(tmp_path: Path, body: str) -> str:
    path = write(tmp_path / "r.yaml", body)
    with pytest.raises(ConfigError) as info:
        load_layered(str(path))
    return str(info.value)


def test_remote_settings_are_checked_at_load(tmp_path: Path) -> None:
    assert "https://" in _remote_error(tmp_path, "remote: {url: 'http://site.example/x'}\n")
    err = _remote_error(tmp_path, "remote: {url: 'https://u:secret@site.example/x'}\n")
    assert "credentials" in err and "secret" not in err
    assert "did you mean 'interval'" in _remote_error(
        tmp_path, f"remote: {{url: {URL}, intervall: 1m}}\n"
    )
    assert "at least 1s" in _remote_error(tmp_path, f"remote: {{url: {URL}, interval: 0.5s}}\n")
    assert "no such file" in _remote_error(
        tmp_path, f"remote: {{url: {URL}, ca_file: /nope.pem}}\n"
    )
    assert "not base64" in _remote_error(tmp_path, f"remote: {{url: {URL}, pin_sha256: 'x!'}}\n")
    assert "32 of a SHA-256" in _remote_error(
        tmp_path, f"remote: {{url: {URL}, pin_sha256: 'AAAA'}}\n"
    )


def test_the_token_file_is_checked_and_never_quoted(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret with space\n")
    err = _remote_error(tmp_path, f"remote: {{url: {URL}, token_file: {token}}}\n")
    assert "spaces or control characters" in err and "s3cret" not in err
    token.write_text("")
    assert "empty" in _remote_error(tmp_path, f"remote: {{url: {URL}, token_file: {token}}}\n")
    token.write_text("abc.DEF-123\n")
    assert fields_remote.read_token(str(token)) == "abc.DEF-123"
    config = load_layered(
        str(write(tmp_path / "ok.yaml", f"remote: {{url: {URL}, token_file: {token}}}\n"))
    )
    assert config.remote is not None and config.remote.token_file == str(token)
    assert "abc.DEF" not in repr(config)


def test_a_pin_without_the_cryptography_package_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = "sha256//" + "A" * 43 + "="
    config = load_layered(
        str(write(tmp_path / "p.yaml", f"remote: {{url: {URL}, pin_sha256: '{pin}'}}\n"))
    )
    assert config.remote is not None and config.remote.pin_sha256 == ("A" * 43 + "=",)
    monkeypatch.setattr(fields_remote, "pinning_available", lambda: False)
    err = _remote_error(tmp_path, f"remote: {{url: {URL}, pin_sha256: ['{pin}']}}\n")
    assert "python3-cryptography" in err and ":1: remote.pin_sha256:" in err
    assert tls.PIN_PACKAGE in err


def test_a_bare_url_is_a_remote_with_the_defaults(tmp_path: Path) -> None:
    config = load_layered(str(write(tmp_path / "b.yaml", f"remote: {URL}\n")))
    assert config.remote is not None
    assert (config.remote.url, config.remote.interval) == (URL, C.DEFAULT_REMOTE_INTERVAL)


# --- the drop-in directory ---------------------------------------------------------------------


def test_dropins_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    main = tmp_path / "config.yaml"
    d = tmp_path / "config.d"
    d.mkdir()
    (d / "a.yaml").write_text("x" * (C.MAX_CONFIG_SIZE // 2) + ": 1\n")
    (d / "b.yaml").write_text("y" * (C.MAX_CONFIG_SIZE // 2) + ": 1\n")
    with pytest.raises(ConfigError, match="together hold more than"):
        read_dropins(str(main))
    monkeypatch.setattr(C, "MAX_DROPINS", 1)
    with pytest.raises(ConfigError, match="more than 1 drop-ins"):
        dropin_paths(str(main))


def test_an_unlistable_dropin_dir_is_an_error_and_a_missing_one_is_none(tmp_path: Path) -> None:
    main = tmp_path / "config.yaml"
    assert dropin_paths(str(main)) == []
    (tmp_path / "config.d").write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot list the drop-ins"):
        dropin_paths(str(main))


def test_a_change_of_a_dropin_changes_the_digest(tmp_path: Path) -> None:
    main = write(tmp_path / "config.yaml", "tick: 5s\n")
    alone = layers_digest(str(main))
    drop = write(tmp_path / "config.d" / "a.yaml", "tick: 6s\n")
    with_one = layers_digest(str(main))
    drop.write_text("tick: 7s\n")
    assert len({alone, with_one, layers_digest(str(main))}) == 3
    drop.unlink()
    assert layers_digest(str(main)) == alone


def test_the_packages_make_the_dropin_directory() -> None:
    tmpfiles = Path(__file__).parents[2] / "systemd" / "planctond.tmpfiles"
    entries = [line.split() for line in tmpfiles.read_text().splitlines() if line.startswith("d ")]
    where = str(Path(C.DEFAULT_CONFIG_PATH).parent / C.DROPIN_DIR_NAME)
    assert ["d", where, "0755", "root", "root", "-"] in entries
