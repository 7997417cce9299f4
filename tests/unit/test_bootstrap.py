"""`planctonctl bootstrap` (issue 11) against a real HTTPS server on loopback, with a stand-in for
the daemon's D-Bus side; the `github:` form without the network (the URL it would fetch); and the
Remote line of `planctonctl status`.

With the real daemon on a private system bus: tests/integration/test_remote_config.py."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planctond import constants as C
from planctond.cli import bootstrap, bootstrap_plan, planctonctl
from planctond.config.layers import load_layered
from planctond.config.model import RemoteConfig
from planctond.config.remote import RemoteDocument
from tests.support.https_config import PKI, ConfigServer, make_pki, serving

SITE = """\
tick: 20s
pools:
  atlas:
    image: busybox:latest
    max_pilots: "2"
"""
LOCAL = "tick: 10s\npools:\n  default: {max_pilots: '1'}\n"


class Daemon:
    """The daemon as bootstrap sees it over D-Bus."""

    def __init__(self, path: str | None, refuse: str = "") -> None:
        self.path = path
        self.refuse = refuse
        self.reloads = 0

    def config_path(self) -> str | None:
        return self.path

    def reload(self) -> None:
        self.reloads += 1
        if self.refuse:
            raise RuntimeError(self.refuse)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: PKI) -> Iterator[ConfigServer]:
    with serving(pki, SITE) as s:
        yield s


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "etc" / "config.yaml"
    path.parent.mkdir()
    path.write_text(LOCAL + f"state_dir: {tmp_path / 'state'}\n")
    return path


def run(*argv: str, daemon: Any = None) -> tuple[int, str, str]:
    parser = planctonctl.build_parser()
    args = parser.parse_args(["bootstrap", *argv])
    out = io.StringIO()
    err = io.StringIO()
    import sys

    old, sys.stderr = sys.stderr, err
    try:
        code = bootstrap.main(args, daemon or Daemon(None), out)
    finally:
        sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def test_dry_run_shows_the_change_and_installs_nothing(server: ConfigServer, config: Path) -> None:
    before = config.read_text()
    code, out, _ = run(
        server.url, "--ca-file", str(server.pki.ca), "--config", str(config), "--dry-run"
    )
    assert code == 0, out
    assert f"fetching {server.url}" in out
    assert "-tick: 10s" in out and "+tick: 20s" in out and "+  atlas:" in out
    assert out.rstrip().endswith("nothing installed")
    assert config.read_text() == before


def test_as_local_installs_a_copy_and_reloads(server: ConfigServer, config: Path) -> None:
    daemon = Daemon(str(config))
    code, out, err = run(server.url, "--ca-file", str(server.pki.ca), "--yes", daemon=daemon)
    assert code == 0, err
    assert config.read_text() == SITE
    assert Path(str(config) + ".before-bootstrap").read_text().startswith(LOCAL)
    assert daemon.reloads == 1 and "planctond reloaded" in out
    assert oct(config.stat().st_mode & 0o777) == "0o644"


def test_as_remote_installs_a_dropin_the_daemon_follows(server: ConfigServer, config: Path) -> None:
    daemon = Daemon(str(config))
    code, _out, err = run(
        server.url,
        "--as",
        "remote",
        "--ca-file",
        str(server.pki.ca),
        "--interval",
        "2m",
        "--yes",
        daemon=daemon,
    )
    assert code == 0, err
    drop = config.parent / C.DROPIN_DIR_NAME / bootstrap_plan.DROPIN_NAME
    assert drop.exists() and config.read_text().startswith(LOCAL)  # the host's file untouched
    effective = load_layered(str(config), RemoteDocument(server.url, SITE))
    assert effective.remote == RemoteConfig(
        url=server.url, ca_file=str(server.pki.ca), interval=120.0
    )
    assert effective.tick == 10.0  # the host's file still wins
    assert effective.pool("atlas") is not None
    assert daemon.reloads == 1


def test_a_refused_reload_puts_the_previous_file_back(server: ConfigServer, config: Path) -> None:
    before = config.read_text()
    daemon = Daemon(str(config), refuse="config rejected: CA file not readable by uid 999")
    code, _, err = run(server.url, "--ca-file", str(server.pki.ca), "--yes", daemon=daemon)
    assert code == 1 and "the previous files are back" in err and "uid 999" in err
    assert config.read_text() == before


def test_a_document_that_fails_validation_is_never_installed(
    server: ConfigServer, config: Path
) -> None:
    server.document = SITE.replace('"2"', "'__import__(\"os\")'")
    before = config.read_text()
    code, _, err = run(
        server.url, "--ca-file", str(server.pki.ca), "--config", str(config), "--yes"
    )
    assert code == 1 and f"{server.url}:5: pools.atlas.max_pilots" in err
    assert config.read_text() == before


def test_the_wrong_ca_and_a_dead_server_are_said(server: ConfigServer, config: Path) -> None:
    code, _, err = run(
        server.url, "--ca-file", str(server.pki.other_ca), "--config", str(config), "--yes"
    )
    assert code == 1 and "not accepted" in err
    url = server.url
    server.down()
    code, _, err = run(url, "--ca-file", str(server.pki.ca), "--config", str(config), "--yes")
    assert code == 1 and "connection refused" in err


def test_no_terminal_and_no_yes_is_a_usage_error(server: ConfigServer, config: Path) -> None:
    code, _, err = run(server.url, "--ca-file", str(server.pki.ca), "--config", str(config))
    assert code == 2 and "--yes installs" in err


def test_without_a_running_daemon_the_config_waits_for_its_start(
    server: ConfigServer, config: Path
) -> None:
    code, out, _ = run(
        server.url, "--ca-file", str(server.pki.ca), "--config", str(config), "--yes"
    )
    assert code == 0 and "not running" in out and config.read_text() == SITE


def test_only_root_or_plancton_admin_may_bootstrap(
    monkeypatch: pytest.MonkeyPatch, config: Path
) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 54321)  # nobody, in no group
    code, _, err = run("https://127.0.0.1:1/x.yaml", "--config", str(config), "--yes")
    assert code == 4 and "root or membership in group plancton-admin" in err


def test_the_github_form_fetches_the_raw_url(monkeypatch: pytest.MonkeyPatch, config: Path) -> None:
    asked: list[str] = []

    def fake_fetch(settings: RemoteConfig, seen: object) -> RemoteDocument:
        asked.append(settings.url)
        return RemoteDocument(settings.url, SITE)

    monkeypatch.setattr(bootstrap_plan, "fetch", fake_fetch)
    for source, url in [
        (
            "github:mconcas/plancton-conf:to-infn/dev",
            "https://raw.githubusercontent.com/mconcas/plancton-conf/to-infn/dev/config.yaml",
        ),
        ("github:site/fleet", "https://raw.githubusercontent.com/site/fleet/HEAD/config.yaml"),
        (
            "github:site/fleet/hosts/a.yaml:prod",
            "https://raw.githubusercontent.com/site/fleet/prod/hosts/a.yaml",
        ),
    ]:
        code, out, _ = run(source, "--config", str(config), "--dry-run")
        assert code == 0 and asked[-1] == url and f"fetching {url}" in out
    code, _, err = run("github:nouser", "--config", str(config), "--dry-run")
    assert code == 2 and "github:USER/REPO" in err


def test_status_shows_the_remote_line() -> None:
    status = {
        "version": "x",
        "summary": "",
        "state": "active",
        "docker_ok": True,
        "docker_error": "",
        "uptime_s": 1.0,
        "owner_cpu": 0.0,
        "ncpus": 2,
        "host_cpu": 0.0,
        "capacity_cpus": 1.0,
        "config_path": "/etc/plancton/config.yaml",
        "last_error": "",
        "pools": [],
        "recent_events": [],
        "extra": {
            "remote": "https://s.example/c.yaml: failing since 12:00:00 (3 checks): HTTP 503"
        },
    }
    out = io.StringIO()
    planctonctl.print_status(status, [], out, 0.0)
    assert "  Remote:     https://s.example/c.yaml: failing since" in out.getvalue()
