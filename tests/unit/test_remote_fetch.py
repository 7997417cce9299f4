"""The remote config's fetch against a real HTTPS server on loopback (certificates made with the
openssl CLI for the test), its on-disk cache, and the `github:` shorthand (no network: the URL it
would fetch)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planctond import constants as C
from planctond.config.model import RemoteConfig
from planctond.config.remote import RemoteDocument
from planctond.remote.cache import RemoteCache
from planctond.remote.fetch import FetchError, fetch
from planctond.remote.sources import SourceError, github_url, resolve
from tests.support.https_config import PKI, ConfigServer, make_pki, serving

DOC = "tick: 5s\npools: {a: {image: 'busybox:latest'}}\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def server(pki: PKI) -> Iterator[ConfigServer]:
    with serving(pki, DOC) as s:
        yield s


def settings(server: ConfigServer, **kw: object) -> RemoteConfig:
    kw.setdefault("ca_file", str(server.pki.ca))
    kw.setdefault("timeout", 5.0)
    return RemoteConfig(url=server.url, **kw)  # type: ignore[arg-type]


def refused(remote: RemoteConfig, seen: RemoteDocument | None = None) -> str:
    with pytest.raises(FetchError) as info:
        fetch(remote, seen)
    return str(info.value)


def test_a_document_then_304_then_the_changed_document(server: ConfigServer) -> None:
    first = fetch(settings(server))
    assert first is not None and first.text == DOC and first.etag and first.last_modified
    assert fetch(settings(server), first) is None  # not modified
    assert server.stats.not_modified == 1
    assert server.stats.headers[-1]["If-None-Match"] == first.etag
    server.document = "tick: 6s\n"
    second = fetch(settings(server), first)
    assert second is not None and second.text == "tick: 6s\n" and second.etag != first.etag
    # Validators of another URL are not sent.
    fetch(settings(server), RemoteDocument("https://other.example/x", DOC, '"x"'))
    assert "If-None-Match" not in server.stats.headers[-1]


def test_tls_is_verified_against_the_ca_file_or_the_systems(server: ConfigServer) -> None:
    assert "unable to get local issuer certificate" in refused(
        settings(server, ca_file=str(server.pki.other_ca))
    )
    assert "trusting the system's CAs" in refused(settings(server, ca_file=None))
    server.cert = server.pki.expired
    assert "certificate has expired" in refused(settings(server))
    server.cert = server.pki.wrong_name
    assert "mismatch" in refused(settings(server))


def test_pins_are_checked_before_the_token_is_sent(server: ConfigServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("T0KEN-abc\n")
    good = server.pki.pin(server.pki.good[0])
    doc = fetch(settings(server, pin_sha256=(good,), token_file=str(token)))
    assert doc is not None and server.stats.headers[-1]["Authorization"] == "Bearer T0KEN-abc"
    before = server.stats.requests
    message = refused(
        settings(server, pin_sha256=(server.pki.pin(server.pki.expired[0]),), token_file=str(token))
    )
    assert "none of pin_sha256" in message and good in message
    assert server.stats.requests == before  # no request, so no token, went to that server
    assert "T0KEN" not in message


def test_http_errors_redirects_and_a_token_problem(server: ConfigServer, tmp_path: Path) -> None:
    for status, said in ((404, "HTTP 404 Not Found"), (503, "HTTP 503"), (401, "token_file?")):
        server.behaviour.status = status
        assert said in refused(settings(server))
    server.behaviour.status = 301
    assert "not followed" in refused(settings(server))
    server.behaviour.status = 200
    token = tmp_path / "gone"
    assert "token file" in refused(settings(server, token_file=str(token)))


def test_slow_huge_and_binary_answers(server: ConfigServer) -> None:
    server.behaviour.delay = 3
    t0 = time.monotonic()
    assert "no complete answer within 1 s" in refused(settings(server, timeout=1.0))
    assert time.monotonic() - t0 < 2.5
    server.behaviour.delay = 0
    server.behaviour.body = b"a: " + b"x" * C.MAX_CONFIG_SIZE
    assert "not a config" in refused(settings(server))
    server.behaviour.body = b"\x89PNG\r\n\x1a\n\x00\x00"
    assert "NUL bytes" in refused(settings(server))
    server.behaviour.body = b"tick: \xff\n"
    assert "not UTF-8" in refused(settings(server))


def test_a_server_that_is_down(pki: PKI) -> None:
    server = ConfigServer(pki, DOC).up()
    remote = settings(server)
    server.down()
    assert "connection refused" in refused(remote)


# --- the cache ---------------------------------------------------------------------------------


def test_the_cache_keeps_a_document_and_refuses_a_damaged_one(tmp_path: Path) -> None:
    cache = RemoteCache(str(tmp_path))
    doc = RemoteDocument("https://s.example/c.yaml", "tick: 5s\n# é\n", '"e"', "Mon", 12.5)
    assert cache.load(doc.url) is None
    cache.save(doc)
    assert cache.load(doc.url) == doc
    assert cache.load("https://other.example/c.yaml") is None  # another remote's copy
    path = tmp_path / C.REMOTE_CACHE_NAME
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    data = json.loads(path.read_text())
    data["text"] = "tick: 1s\n"
    path.write_text(json.dumps(data))
    assert cache.load(doc.url) is None  # the digest no longer matches
    for junk in ("", "[]", "{", '{"format": 1}'):
        path.write_text(junk)
        assert cache.load(doc.url) is None


# --- github: -------------------------------------------------------------------------------------


def test_github_shorthand_builds_the_raw_url() -> None:
    raw = C.GITHUB_RAW
    assert (
        resolve("github:mconcas/plancton-conf") == f"{raw}/mconcas/plancton-conf/HEAD/config.yaml"
    )
    # Plancton's form: the branch last, slashes and all.
    assert (
        resolve("github:mconcas/plancton-conf:to-infn/dev")
        == f"{raw}/mconcas/plancton-conf/to-infn/dev/config.yaml"
    )
    assert (
        resolve("github:site/fleet/hosts/cern.yaml:prod")
        == f"{raw}/site/fleet/prod/hosts/cern.yaml"
    )
    assert resolve("github:a-b/c.d_e/sites/é.yaml") == f"{raw}/a-b/c.d_e/HEAD/sites/%C3%A9.yaml"
    assert resolve("https://h.example:8443/c.yaml?v=1") == "https://h.example:8443/c.yaml?v=1"


@pytest.mark.parametrize(
    "bad",
    [
        "github:user",
        "github:user/",
        "github:-user/repo",
        "github:user/repo:",
        "github:user/repo:bad..branch",
        "github:user/repo/../etc/passwd",
        "github:user/repo:a b",
        "http://h.example/c.yaml",
        "https://user:pw@h.example/c.yaml",
        "ftp://h.example/c.yaml",
        "user/repo",
    ],
)
def test_bad_sources_are_refused(bad: str) -> None:
    with pytest.raises(SourceError):
        resolve(bad)


_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,10}", fullmatch=True)
_branch = st.lists(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,6}", fullmatch=True), min_size=1, max_size=3
).map("/".join)


@given(_name, _name, _branch)
def test_any_branch_with_slashes_stays_the_branch(user: str, repo: str, branch: str) -> None:
    url = github_url(f"{user}/{repo}:{branch}")
    assert url == f"{C.GITHUB_RAW}/{user}/{repo}/{branch}/{C.GITHUB_DEFAULT_PATH}"
