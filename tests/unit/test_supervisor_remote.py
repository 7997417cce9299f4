"""The remote config inside the supervisor (issue 11), on a fake engine, a scripted server and
virtual time: a change is picked up within its interval and applied like a local reload; a 304
costs no load; every failure keeps the config in force and is said once; a restart with the
server down runs the cached document; a new URL is in force only with its document.

The real HTTPS server and a real daemon: tests/integration/test_remote_config.py."""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planctond import constants as C
from planctond.config.layers import load_layered
from planctond.config.model import Config, RemoteConfig
from planctond.config.remote import RemoteDocument
from planctond.remote.fetch import FetchError
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import EventKind
from planctond.supervisor.remote_watch import RemotePort, first_delay, next_delay
from planctond.supervisor.supervisor import Supervisor
from tests.support.fake_engine import FakeRunner
from tests.support.supervisor_rig import CONFIG, INSTANCE, Rig, virtual
from tests.support.virtual_time import VirtualClock

URL = "https://site.example/fleet.yaml"
LOCAL = f"""
config_check: 5s
remote:
  url: {URL}
  interval: 60s
"""
SITE = CONFIG  # the rig's pool: 3 pilots on the fake 4-CPU host
TWO = CONFIG.replace('max_pilots: "3"', 'max_pilots: "2"')
BAD = CONFIG.replace("cpus: 1", "cpus: 0")
LOG = "planctond.supervisor.remote_watch"


class FakeSite:
    """The site's server, scripted: its document, or how it fails."""

    def __init__(self, text: str = SITE) -> None:
        self.text = text
        self.failure: str | None = None
        self.validators = True
        self.calls: list[float] = []  # loop time of each request
        self.urls: list[str] = []
        self.full = 0
        self.not_modified = 0

    def fetch(self, settings: RemoteConfig, seen: RemoteDocument | None) -> RemoteDocument | None:
        self.calls.append(asyncio.get_running_loop().time())
        self.urls.append(settings.url)
        if self.failure is not None:
            raise FetchError(self.failure)
        etag = f'"{hash(self.text) & 0xFFFFFF:x}"' if self.validators else None
        if seen is not None and etag is not None and seen.etag == etag and seen.url == settings.url:
            self.not_modified += 1
            return None
        self.full += 1
        return RemoteDocument(settings.url, self.text, etag, None, 1_800_000_000.0)


class RemoteRig(Rig):
    def __init__(
        self, tmp_path: Path, config: str, site: FakeSite, cached: RemoteDocument | None
    ) -> None:
        super().__init__(tmp_path, config)
        self.site = site
        self.cached = cached
        self.saved: list[RemoteDocument] = []
        self.loads = 0

    def load(self, path: str | None, document: RemoteDocument | None = None) -> Config:
        self.loads += 1
        return load_layered(path, document)

    def new_supervisor(self) -> Supervisor:
        cfg = load_layered(str(self.config_path), self.cached)
        port = RemotePort(self.site.fetch, self.saved.append, self.cached)
        self.sup = Supervisor(
            cfg,
            config_path=str(self.config_path),
            loader=self.load,
            engine=self.engine,
            store=self.store,
            instance=INSTANCE,
            host=self.host,
            runner=FakeRunner(self.engine),
            clock=VirtualClock(),
            remote=port,
        )
        self.sup.events.subscribe(self.events.append)
        return self.sup

    def max_pilots(self) -> str:
        pool = self.s.config.pool("default")
        return pool.max_pilots if pool is not None else "-"

    def remote_status(self) -> str:
        return self.s.status().extra.get("remote", "")


async def start(
    tmp_path: Path, site: FakeSite, local: str = LOCAL, cached: RemoteDocument | None = None
) -> RemoteRig:
    rig = RemoteRig(tmp_path, local, site, cached)
    rig.new_supervisor()
    rig.run()
    return rig


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == LOG and text in r.getMessage())


@virtual
async def test_without_a_document_nothing_runs_until_the_first_fetch_applies(
    tmp_path: Path,
) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    assert rig.s.config.pools == ()  # the host names a remote: no dummy pool meanwhile
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_LOADED), 1, "the first document applied")
    assert len(site.calls) == 1 and site.calls[0] < 0.01  # asked at once: nothing was in force
    await rig.filled()
    assert [d.text for d in rig.saved] == [SITE]  # kept on disk for a restart
    assert rig.remote_status().startswith(f"{URL}: ok")
    await rig.shutdown()


@virtual
async def test_a_change_is_picked_up_within_its_interval_and_applied_like_a_reload(
    tmp_path: Path,
) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    await rig.filled()
    site.text = TWO
    took = await rig.until(lambda: rig.max_pilots() == "2", 60 * 1.2 + 1, "the change applied")
    assert took <= 60 * (1 + C.REMOTE_JITTER)
    (_, loaded) = rig.kinds(EventKind.CONFIG_LOADED)
    assert "config loaded from" in loaded.message
    await rig.until(lambda: len(rig.running()) == 2, 60, "max_pilots applied to the pilots")
    assert [d.text for d in rig.saved] == [SITE, TWO]
    gaps = [b - a for a, b in zip(site.calls[1:], site.calls[2:], strict=False)]
    assert all(60 * 0.8 - 0.01 <= g <= 60 * 1.2 + 0.01 for g in gaps), gaps
    await rig.shutdown()


@virtual
async def test_not_modified_costs_no_load_and_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    await rig.filled()
    loads = rig.loads
    await rig.idle(60 * 10)
    assert site.not_modified >= 7
    assert rig.loads == loads, "a 304 is not parsed again"
    assert len(rig.kinds(EventKind.CONFIG_LOADED)) == 1
    assert not [r for r in caplog.records if r.name == LOG and r.levelno >= logging.INFO]
    # A server without validators that sends the same text: not loaded again either.
    site.validators = False
    await rig.idle(60 * 3)
    assert site.full >= 3 and rig.loads == loads
    await rig.shutdown()


@virtual
async def test_each_failure_keeps_the_config_and_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    await rig.filled()
    caplog.set_level(logging.INFO, LOG)
    failures = [
        "connection refused by site.example:443",
        "no complete answer within 30 s",
        "TLS: the server's certificate is not accepted (certificate has expired)",
        "HTTP 503 Service Unavailable",
        "the response is 300000 bytes: more than 262144, not a config",
    ]
    for failure in failures:
        site.failure = failure
        await rig.idle(60 * 4)
        assert warnings(caplog, failure) == 1, failure
        assert rig.max_pilots() == "3" and len(rig.running()) == 3
        assert failure in rig.remote_status() and "failing since" in rig.remote_status()
        assert "keeping the document fetched at" in rig.remote_status()
    site.failure = None
    await rig.idle(60 * 3)
    assert warnings(caplog, "answering again") == 1
    assert rig.remote_status().startswith(f"{URL}: ok")
    assert len(rig.kinds(EventKind.CONFIG_LOADED)) == 1 and not rig.kinds(EventKind.CONFIG_REJECTED)
    assert not rig.kinds(EventKind.PILOT_STOPPED)
    await rig.shutdown()


@virtual
async def test_a_document_that_fails_validation_is_rejected_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    await rig.filled()
    loads = rig.loads
    site.text = BAD
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_REJECTED), 80, "the bad document refused")
    (rejected,) = rig.kinds(EventKind.CONFIG_REJECTED)
    assert f"{URL}:" in rejected.message and "pools.default.cpus" in rejected.message
    assert rig.s.status().last_error.startswith(URL)
    await rig.idle(60 * 3)  # answered 304 from now on: still the refused document, still said
    assert site.not_modified >= 2 and "was refused" in rig.remote_status()
    site.validators = False  # even re-sent in full every time, it is not loaded again
    await rig.idle(60 * 5)
    assert len(rig.kinds(EventKind.CONFIG_REJECTED)) == 1 and rig.loads == loads + 1
    assert warnings(caplog, "was refused") == 1
    assert "was refused" in rig.remote_status()
    assert rig.max_pilots() == "3" and len(rig.running()) == 3
    assert [d.text for d in rig.saved] == [SITE]  # the cache keeps the good one
    # The server back to the document in force: nothing to load, and no stale error left.
    site.text = SITE
    await rig.until(lambda: rig.s.status().last_error == "", 80, "the refusal's error cleared")
    assert rig.remote_status().startswith(f"{URL}: ok") and rig.loads == loads + 1
    # The next good document applies, and the status says all is well again.
    site.text = TWO
    await rig.until(lambda: rig.max_pilots() == "2", 80, "the fixed document applied")
    assert rig.remote_status().startswith(f"{URL}: ok")
    await rig.shutdown()


@virtual
async def test_a_restart_with_the_server_down_runs_the_cached_document(tmp_path: Path) -> None:
    site = FakeSite()
    site.failure = "connection refused by site.example:443"
    cached = RemoteDocument(URL, TWO, '"old"', None, 1_799_999_000.0)
    rig = await start(tmp_path, site, cached=cached)
    assert rig.max_pilots() == "2"
    await rig.until(lambda: len(rig.running()) == 2, 5, "the cached config's pilots")
    await rig.until(lambda: site.calls, 60 * C.REMOTE_JITTER + 1, "a check within the start spread")
    assert "keeping the document fetched at" in rig.remote_status()
    site.failure = None  # the server is back with a newer document
    await rig.until(lambda: rig.max_pilots() == "3", 80, "the newer document applied")
    await rig.shutdown()


@virtual
async def test_the_hosts_own_key_wins(tmp_path: Path) -> None:
    local = LOCAL + 'pools:\n  default:\n    max_pilots: "1"\n'
    rig = await start(tmp_path, FakeSite(), local)
    await rig.until(lambda: len(rig.running()) == 1, 5, "1 pilot, the host's max_pilots")
    await rig.idle(30)
    assert len(rig.pilots()) == 1
    await rig.shutdown()


@virtual
async def test_a_dropin_change_is_a_reload(tmp_path: Path) -> None:
    rig = await start(tmp_path, FakeSite())
    await rig.filled()
    drop = tmp_path / C.DROPIN_DIR_NAME / "50-host.yaml"
    drop.parent.mkdir()
    drop.write_text('pools:\n  default:\n    max_pilots: "2"\n')
    await rig.until(lambda: rig.max_pilots() == "2", 10, "the drop-in noticed and applied")
    await rig.shutdown()


@virtual
async def test_first_start_with_the_server_down_retries_within_a_minute(tmp_path: Path) -> None:
    site = FakeSite()
    site.failure = "connection refused by site.example:443"
    local = LOCAL.replace("interval: 60s", "interval: 1h")
    rig = await start(tmp_path, site, local)
    await rig.idle(300)
    assert len(site.calls) >= 5 and not rig.pilots()  # not once an hour while nothing runs
    assert "no document of it in force yet" in rig.remote_status()
    site.failure = None
    await rig.until(lambda: len(rig.running()) == 3, 80, "the first document, then pilots")
    calls = len(site.calls)
    await rig.idle(1800)
    assert len(site.calls) == calls  # in force now: back to the hourly interval
    await rig.shutdown()


@virtual
async def test_a_new_url_is_in_force_only_with_its_document(tmp_path: Path) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    await rig.filled()
    other = "https://other.example/fleet.yaml"
    rig.config_path.write_text(LOCAL.replace(URL, other))
    site.failure = "connection refused by other.example:443"
    with pytest.raises(ControlError, match="cannot be fetched"):
        await rig.s.reload()
    assert rig.s.config.remote is not None and rig.s.config.remote.url == URL
    assert len(rig.running()) == 3
    site.failure = None
    site.text = TWO
    await rig.s.reload()
    assert rig.s.config.remote is not None and rig.s.config.remote.url == other
    assert rig.max_pilots() == "2" and rig.saved[-1].url == other
    await rig.shutdown()


@virtual
async def test_a_reload_gives_a_refused_document_another_chance(tmp_path: Path) -> None:
    """A document that is fine alone but refused with the host's files (a backoff_min above the
    site's backoff_max) loads once the host's file is fixed."""
    site = FakeSite()
    rig = await start(tmp_path, site, LOCAL + "pools:\n  default:\n    backoff_min: 1h\n")
    await rig.until(lambda: rig.kinds(EventKind.CONFIG_REJECTED), 5, "refused with the file")
    (rejected,) = rig.kinds(EventKind.CONFIG_REJECTED)
    assert f"{rig.config_path}:" in rejected.message  # the merge's problem is the file's
    await rig.idle(60 * 3)
    assert len(rig.kinds(EventKind.CONFIG_REJECTED)) == 1 and not rig.pilots()
    rig.config_path.write_text(LOCAL + "pools:\n  default:\n    backoff_min: 1m\n")
    await rig.until(lambda: len(rig.running()) == 3, 20, "the file's fix lets the site's load")
    await rig.shutdown()


@virtual
async def test_a_slow_server_never_stalls_the_ticks(tmp_path: Path) -> None:
    site = FakeSite()
    rig = await start(tmp_path, site)
    await rig.filled()
    rig.engine.latency["fetch"] = 45.0  # each request hangs for 45 s of a 60 s interval
    ticks = rig.s._ctx.ticks  # type: ignore[attr-defined]
    await rig.idle(300)
    assert rig.s._ctx.ticks - ticks >= 25  # type: ignore[attr-defined]  # 10 s ticks went on
    await rig.shutdown()


@given(st.floats(min_value=C.MIN_REMOTE_INTERVAL, max_value=C.MAX_REMOTE_INTERVAL), st.integers())
def test_jitter_stays_within_its_bounds(interval: float, seed: int) -> None:
    rng = random.Random(seed)
    assert (
        interval * (1 - C.REMOTE_JITTER)
        <= next_delay(interval, rng)
        <= interval * (1 + C.REMOTE_JITTER)
    )
    assert 0 <= first_delay(interval, rng) <= interval * C.REMOTE_JITTER


def test_jitter_spreads_a_fleet() -> None:
    """A thousand hosts started at once do not ask in the same second."""
    rng = random.Random(11)
    firsts = sorted(first_delay(300.0, rng) for _ in range(1000))
    per_second = max(sum(1 for f in firsts if s <= f < s + 1) for s in range(60))
    assert per_second < 40
