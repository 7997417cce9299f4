"""The Elasticsearch writer behind a real Outbox, against a loopback endpoint that checks every
request the way the documented API would take it (tests/support/elasticsearch_checker.py): the
template first, status and event documents in dated indices with every field of its mapped type,
an outage that ends with the backlog delivered once, busy and refused documents, TLS with a CA
file, credentials that never show. Then a real daemon with real pilots writing to it.

No real Elasticsearch or OpenSearch server runs here: none is in any registry this machine can
reach. What these tests prove is that the requests are what the documented API asks for."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from planctond.config.loader import load_config_text
from planctond.config.model import ElasticsearchTarget, InfluxDBTarget
from planctond.monitoring.documents import BulkEncoder
from planctond.monitoring.elasticsearch import ElasticsearchWriter
from planctond.monitoring.hub import target_name
from planctond.monitoring.influxdb import InfluxV1Writer
from planctond.monitoring.outbox import Outbox, SinkError
from planctond.monitoring.point import Point
from planctond.monitoring.series import SeriesRecorder
from planctond.supervisor.events import EventKind
from tests.conftest import DaemonFactory
from tests.integration.test_daemon_pilots import pilots, pool_config
from tests.support.elasticsearch_checker import (
    ElasticsearchChecker,
    TLSFiles,
    basic,
    make_tls_files,
    running_checker,
)
from tests.support.waiting import wait_for
from tests.unit.test_monitoring_series import T0, event, report

HOST = "test-node"
T0_NS = int(T0) * 1_000_000_000


@pytest.fixture
def checker() -> Iterator[ElasticsearchChecker]:
    with running_checker() as server:
        yield server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    files = make_tls_files(tmp_path_factory.mktemp("tls"))
    if files is None:
        pytest.skip("openssl is not installed (needed to make a test CA)")
    return files


def outbox(target: ElasticsearchTarget, **options: Any) -> tuple[Outbox, ElasticsearchWriter]:
    writer = ElasticsearchWriter(target, timeout=5.0)
    return Outbox(target_name(target), writer, encode=writer.encode, **options), writer


def numbered(count: int, start: int = 0, pool: str = "p") -> list[Point]:
    return [
        Point("planctond_pool", {"running_pilots": i}, {"host": HOST, "pool": pool}, T0_NS + i)
        for i in range(start, start + count)
    ]


def delivered(box: Outbox) -> bool:
    health = box.health()
    return health.ok and health.backlog == 0 and health.last_success is not None


# --- documents ----------------------------------------------------------------------------------


def test_status_and_events_land_in_dated_indices_after_the_template(
    checker: ElasticsearchChecker,
) -> None:
    recorder = SeriesRecorder(HOST)
    day_one = recorder.status(report(), T0)  # 2023-11-14T22:13:20Z
    events = recorder.on_event(event(EventKind.PILOT_STARTED))
    events += recorder.on_event(event(EventKind.PILOT_EXITED, extra={"lifetime_seconds": "12.5"}))
    day_two = recorder.status(report(), T0 + 7200)  # past midnight UTC
    total = len(day_one) + len(events) + len(day_two)
    box, _ = outbox(ElasticsearchTarget(checker.url), batch=7)
    box.start()
    try:
        for points in (day_one, events, day_two):
            box.put(points)
        wait_for(lambda: delivered(box) and len(checker.docs()) == total, 30, message=box.health)
    finally:
        box.close(5)
    assert checker.violations == []
    assert checker.requests[0] == ("PUT", "/_index_template/planctond")
    assert [m for m, _ in checker.requests].count("PUT") == 1, "the template is put once"
    assert checker.templates["planctond"]["index_patterns"] == ["planctond-*"]
    assert checker.indices() == {"planctond-2023.11.14", "planctond-2023.11.15"}
    assert checker.unmapped == set(), "every field the series make is in the template"
    started, exited = sorted(checker.docs("planctond_event"), key=lambda d: d["kind"])[::-1]
    assert started["kind"] == "pilot-started" and started["pool"] == "default"
    assert exited["lifetime_seconds"] == 12.5 and exited["host"] == HOST
    assert exited["@timestamp"] == "2023-11-14T22:13:20.000000Z"
    (pool_doc, _) = sorted(checker.docs("planctond_pool"), key=lambda d: d["@timestamp"])
    assert (pool_doc["running_pilots"], pool_doc["allowed_pilots"]) == (2, 4)


# --- failures -----------------------------------------------------------------------------------


def test_an_outage_delivers_the_backlog_once(
    checker: ElasticsearchChecker, caplog: pytest.LogCaptureFixture
) -> None:
    """The server away for a few seconds (the daemon's minute, shortened), then a reply lost
    after the documents were stored: everything arrives, nothing twice."""
    caplog.set_level(logging.INFO, logger="planctond.monitoring.outbox")
    name = target_name(ElasticsearchTarget(checker.url))
    box, _ = outbox(ElasticsearchTarget(checker.url), retry_min=0.05, retry_max=0.2)
    box.start()
    try:
        box.put(numbered(10))
        wait_for(lambda: len(checker.docs()) == 10, 30, message=box.health)
        checker.down()
        slowest = 0.0
        for i in range(30):
            before = time.monotonic()
            box.put(numbered(10, start=10 + 10 * i))
            slowest = max(slowest, time.monotonic() - before)
            time.sleep(0.1)
        assert not box.health().ok and "no reply" in box.health().last_error
        assert slowest < 0.5, f"put() took {slowest:.3f} s with the server down"
        checker.lose_replies = 1  # the first request after the outage is carried out, unheard
        checker.up()
        wait_for(lambda: delivered(box) and len(checker.docs()) == 310, 30, message=box.health)
    finally:
        box.close(5)
    assert checker.violations == []
    assert box.health().dropped == 0
    assert max(checker.sent.values()) == 2, "the batch whose reply was lost, sent again"
    assert len(checker.docs()) == 310 and len(checker.sent) == 310, "each document once"
    down = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    back = [r.getMessage() for r in caplog.records if "is back" in r.getMessage()]
    assert len(down) == 1 and down[0].startswith(f"backend {name} unreachable: no reply")
    assert back == [f"backend {name} is back; 300 points delivered, 0 dropped meanwhile"]


def test_busy_documents_are_sent_again_and_a_refused_one_is_dropped_and_counted(
    checker: ElasticsearchChecker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="planctond.monitoring.outbox")
    box, _ = outbox(ElasticsearchTarget(checker.url))  # stepped by hand
    checker.fail_requests = [429]  # the whole request first
    checker.fail_items = [201, 429, 201, 503]
    checker.refuse = lambda doc: doc.get("pool") == "bad"
    box.put([*numbered(3), *numbered(1, start=3, pool="bad"), *numbered(2, start=4)])
    assert box.step() == 1.0  # 429 for the request: back off
    assert "HTTP 429: es_rejected_execution_exception" in box.health().last_error
    assert box.step() == 2.0  # two documents busy: the batch waits, nothing is dropped
    health = box.health()
    assert (health.ok, health.backlog, health.dropped) == (False, 6, 0)
    assert "2 of 6 documents not taken yet (HTTP 429: " in health.last_error
    assert len(checker.docs()) == 4  # the other four were taken
    assert box.step() == 0.0  # the rest taken; the copies answered 409; the bad one refused
    health = box.health()
    assert (health.ok, health.backlog, health.dropped) == (True, 0, 1)
    assert "document refused: HTTP 400: mapper_parsing_exception" in health.last_error
    assert sorted(d["running_pilots"] for d in checker.docs()) == [0, 1, 2, 4, 5]
    assert checker.violations == [] and len(checker.sent) == 6
    box.put(numbered(1, start=6, pool="bad"))
    assert box.step() == 0.0 and box.health().dropped == 2
    told = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(told) == 1 and "refused 1 points of a batch" in told[0], "later ones are counted"


# --- TLS and credentials ------------------------------------------------------------------------


def _target(url: str, extra: str) -> ElasticsearchTarget:
    """Through the loader, as the daemon reads it (the CA file checked there too)."""
    config = load_config_text(f"monitoring:\n  elasticsearch:\n    - {{url: '{url}'{extra}}}\n")
    (target,) = config.monitoring.elasticsearch
    return target


def test_tls_verified_with_the_ca_file_and_a_wrong_ca_refused(tls_files: TLSFiles) -> None:
    with running_checker(tls=tls_files.server_context()) as server:
        good = ElasticsearchWriter(_target(server.url, f", ca_file: '{tls_files.ca}'"))
        good(BulkEncoder("planctond")(numbered(1)[0]))
        for extra in (f", ca_file: '{tls_files.other_ca}'", ""):
            wrong = ElasticsearchWriter(_target(server.url, extra), timeout=5.0)
            with pytest.raises(SinkError) as caught:
                wrong(BulkEncoder("planctond")(numbered(1)[0]))
            message = str(caught.value)
            assert message.startswith(f"no reply from {server.url}: the server's TLS certificate")
            assert "CERTIFICATE_VERIFY_FAILED" in message and "set ca_file" in message
            assert caught.value.retry
        unverified = ElasticsearchWriter(_target(server.url, ", verify_tls: false"))
        unverified(BulkEncoder("planctond")(numbered(1, start=1)[0]))
        assert len(server.docs()) == 2 and server.violations == []


def test_influxdb_targets_use_the_same_tls_helper(tls_files: TLSFiles) -> None:
    """The InfluxDB writer's TLS is made by the same helper from its target's ca_file: the
    handshake with the test CA goes through (the checker then refuses an InfluxDB write with a
    400, which is not what is tested here), with another CA it does not."""
    with running_checker(tls=tls_files.server_context()) as server:
        trusted = InfluxV1Writer(InfluxDBTarget(server.url, "db", ca_file=str(tls_files.ca)))
        with pytest.raises(SinkError, match=r"^write: HTTP 400"):
            trusted(b"m n=1i 1\n")
        other = InfluxDBTarget(server.url, "db", ca_file=str(tls_files.other_ca))
        with pytest.raises(SinkError, match="TLS certificate is not trusted"):
            InfluxV1Writer(other, timeout=5.0)(b"m n=1i 1\n")
        assert server.requests == [("POST", "/write?db=db&precision=ns")]


@pytest.mark.parametrize(
    ("given", "header"),
    [
        (", username: writer, password: 's3cr3t-pw'", basic("writer", "s3cr3t-pw")),
        (
            ", api_key: 'kid:s3cr3t-key'",
            "ApiKey " + base64.b64encode(b"kid:s3cr3t-key").decode(),
        ),
    ],
)
def test_credentials_are_sent_and_never_shown(
    given: str, header: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_checker(auth=header) as server:
        target = _target(server.url, given)
        box, _ = outbox(target)
        box.put(numbered(2))
        box.step()
        assert delivered(box) and len(server.docs()) == 2
        wrong = _target(server.url, given.replace("s3cr3t", "guess3d"))
        bad_box, _ = outbox(wrong)
        bad_box.put(numbered(1))
        bad_box.step()
        health = bad_box.health()
        assert not health.ok and health.backlog == 1
        assert "not authenticated (HTTP 401; check username and password, or api_key)" in (
            health.last_error
        )
        assert set(server.auth_seen) >= {header}
    shown = f"{caplog.text} {health} {box.health()} {target_name(target)} {target!r} {wrong!r}"
    assert "s3cr3t" not in shown and "guess3d" not in shown
    assert header.split()[1] not in shown


# --- a real daemon ------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_daemon_writes_status_and_pilot_events(
    daemon_factory: DaemonFactory,
    docker_client: Any,
    busybox_image: str,
    checker: ElasticsearchChecker,
    tmp_path: Path,
) -> None:
    top = (
        f"monitoring:\n  host: {HOST}\n  elasticsearch:\n"
        f"    - {{url: '{checker.url}', index_prefix: fleet}}\n"
    )
    d = daemon_factory(pool_config(extra_top=top, command='["sleep", "2"]', max_pilots="2"))
    wait_for(lambda: len(pilots(docker_client, d.instance_id)) == 2, 30, message=d.tail)

    def events(kind: str) -> list[dict[str, Any]]:
        return [doc for doc in checker.docs("planctond_event") if doc["kind"] == kind]

    wait_for(lambda: len(events("pilot-exited")) >= 2, 60, message=d.tail)
    assert all(e["host"] == HOST and e["pool"] == "default" for e in events("pilot-started"))
    assert all(e["exit_code"] == 0 for e in events("pilot-exited"))
    daemon = checker.docs("planctond_daemon")
    assert daemon and all(doc["uptime_seconds"] >= 0 for doc in daemon)
    pools = checker.docs("planctond_pool")
    assert pools and {doc["pool"] for doc in pools} == {"default"}
    assert all(index.startswith("fleet-") for index in checker.indices())
    assert checker.requests[0] == ("PUT", "/_index_template/fleet")
    assert checker.violations == [] and checker.unmapped == set()
    d.wait_for_line(r"index template fleet put", 5)
