"""Points as Elasticsearch documents, the index template from the series catalogue, the bulk
reply read item by item, the writer's credentials, the Outbox's count of refused documents and
the hub's Elasticsearch targets. The requests against an endpoint that checks them:
tests/integration/test_elasticsearch_bulk.py."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from planctond.config.loader import load_config_text
from planctond.config.model import ElasticsearchTarget, InfluxDBTarget
from planctond.monitoring import documents as D
from planctond.monitoring.elasticsearch import (
    ElasticsearchWriter,
    bulk_outcome,
    server_message,
)
from planctond.monitoring.hub import MonitoringHub, Unavailable, target_name
from planctond.monitoring.outbox import Outbox, OutboxHealth, Refused
from planctond.monitoring.point import Point
from planctond.monitoring.series import SeriesRecorder
from planctond.monitoring.series_spec import SERIES, SeriesSpec, SeriesType, ValueType
from planctond.supervisor.events import EventKind
from tests.unit.test_monitoring_series import T0, event, report

NS = 1_000_000_000
MIDNIGHT = 1_700_006_400 * NS  # 2023-11-15T00:00:00Z


def point(**fields: Any) -> Point:
    return Point("planctond_pool", fields or {"running_pilots": 2}, {"host": "h", "pool": "p"}, 5)


# --- documents ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time_ns", "stamp", "index"),
    [
        (0, "1970-01-01T00:00:00.000000Z", "planctond-1970.01.01"),
        (MIDNIGHT - 1, "2023-11-14T23:59:59.999999Z", "planctond-2023.11.14"),
        (MIDNIGHT, "2023-11-15T00:00:00.000000Z", "planctond-2023.11.15"),
        (MIDNIGHT + 1_234_567_891, "2023-11-15T00:00:01.234567Z", "planctond-2023.11.15"),
    ],
)
def test_each_point_goes_to_the_utc_day_of_its_own_time(
    time_ns: int, stamp: str, index: str
) -> None:
    assert D.timestamp(time_ns) == stamp
    assert D.index_name("planctond", time_ns) == index


def test_a_document_is_flat_tags_and_fields_under_their_own_names() -> None:
    p = Point("planctond_event", {"message": "m", "exit_code": 3}, {"host": "h", "pool": ""}, 7)
    assert D.document(p) == {
        "@timestamp": "1970-01-01T00:00:00.000000Z",
        "measurement": "planctond_event",
        "host": "h",  # an empty tag is no tag, as in line protocol
        "message": "m",
        "exit_code": 3,
    }


@pytest.mark.parametrize(
    "bad",
    [
        Point("m", {"measurement": 1}, {}, 0),
        Point("m", {"x": 1}, {"@timestamp": "t"}, 0),
        Point("m", {"host": 1}, {"host": "h"}, 0),
    ],
)
def test_a_point_a_document_cannot_carry_is_refused_alone(bad: Point) -> None:
    with pytest.raises(ValueError):
        D.document(bad)
    box = Outbox("es", lambda body: None, encode=D.BulkEncoder("planctond"))
    box.put([bad, point()])
    box.step()
    assert (box.health().dropped, box.health().backlog) == (1, 0)


def test_bulk_lines_create_with_an_id_from_the_content() -> None:
    encode = D.BulkEncoder("site-a")
    body = encode(point())
    action_line, source_line, end = body.split(b"\n")
    assert end == b""
    action = json.loads(action_line)
    assert list(action) == ["create"] and set(action["create"]) == {"_index", "_id"}
    assert action["create"]["_index"] == "site-a-1970.01.01"
    assert json.loads(source_line) == D.document(point())
    assert encode(point()) == body, "the same point, the same _id: a copy sent again is a 409"
    ids = {json.loads(encode(p).split(b"\n")[0])["create"]["_id"] for p in _variants()}
    assert len(ids) == 4, "content, tags, time and index all change the _id"


def _variants() -> list[Point]:
    base = point()
    return [
        base,
        Point(base.measurement, {"running_pilots": 3}, base.tags, base.time_ns),
        Point(base.measurement, base.fields, {"host": "h", "pool": "q"}, base.time_ns),
        Point(base.measurement, base.fields, base.tags, base.time_ns + 1),
    ]


def test_bulk_body_is_ascii_whatever_a_text_holds() -> None:
    body = D.BulkEncoder("p")(Point("m", {"note": "caf\u00e9 \u2603 \n"}, {"host": "h"}, 0))
    body.decode("ascii")
    assert json.loads(body.split(b"\n")[1])["note"] == "caf\u00e9 \u2603 \n"


# --- the template -------------------------------------------------------------------------------


def test_every_catalogue_field_and_tag_is_mapped_by_its_type() -> None:
    props = D.properties()
    assert props["@timestamp"] == {"type": "date"}
    assert props["measurement"] == {"type": "keyword"}
    kinds = {"long", "double"}
    for spec in SERIES:
        mapped = props[spec.field]["type"]
        if spec.value is ValueType.STRING:
            assert mapped in ("keyword", "text"), spec
        else:
            assert mapped in kinds and (spec.value is ValueType.INTEGER or mapped == "double")
        for tag in spec.tags:
            assert props[tag]["type"] == "keyword"
    assert props["message"]["type"] == "text" and "keyword" in props["message"]["fields"]
    assert props["host"] == {"type": "keyword", "ignore_above": D.KEYWORD_LIMIT}


def _spec(field: str, value: ValueType, tags: tuple[str, ...] = ("host",)) -> SeriesSpec:
    return SeriesSpec("m", field, SeriesType.GAUGE, value, "", "", tags)


def test_a_field_both_integer_and_float_is_a_double_and_a_string_number_clash_is_refused() -> None:
    both = [_spec("x", ValueType.INTEGER), _spec("x", ValueType.FLOAT)]
    assert D.properties(both)["x"] == {"type": "double"}
    with pytest.raises(ValueError, match="'x' would be mapped"):
        D.properties([_spec("x", ValueType.INTEGER), _spec("x", ValueType.STRING)])
    with pytest.raises(ValueError, match="would be mapped"):
        D.properties([_spec("host", ValueType.FLOAT)])  # a tag elsewhere
    with pytest.raises(ValueError, match="reserved"):
        D.properties([_spec("measurement", ValueType.STRING)])


def test_the_template_covers_the_prefix_maps_every_field_and_never_fails_a_new_one() -> None:
    body = D.index_template("planctond")
    assert body["index_patterns"] == ["planctond-*"]
    mappings = body["template"]["mappings"]
    assert mappings["dynamic"] is False
    assert mappings["properties"] == D.properties()
    assert set(body) == {"index_patterns", "priority", "template"}, "what 7.8 documents"
    # Overlapping patterns (planctond-* and planctond-test-*) must differ in priority.
    assert D.index_template("planctond-test")["priority"] > body["priority"]


# --- the bulk reply ----------------------------------------------------------------------------


def _reply(*statuses: int, errors: bool | None = None) -> bytes:
    items = []
    for status in statuses:
        item: dict[str, Any] = {"_index": "i", "_id": "x", "status": status}
        if status >= 300:
            item["error"] = {"type": f"t{status}", "reason": f"r{status}"}
        items.append({"create": item})
    flag = any(s >= 300 for s in statuses) if errors is None else errors
    return json.dumps({"took": 3, "errors": flag, "items": items}).encode()


def test_bulk_outcome_item_by_item() -> None:
    assert bulk_outcome(_reply(201, 201), 2).delivered == 2
    outcome = bulk_outcome(_reply(201, 409, 429, 503, 400, 400, 403), 7)
    assert (outcome.delivered, outcome.retry, outcome.refused) == (2, 3, 2)
    assert outcome.retry_error == "HTTP 429: t429: r429"
    assert outcome.refused_error == "HTTP 400: t400: r400"
    assert bulk_outcome(_reply(404, 408, 500, 401), 4).retry == 4


@pytest.mark.parametrize(
    "reply",
    [
        b"<html>bad gateway</html>",
        b"{}",
        b'{"errors": "no"}',
        _reply(201, 400)[:-5],
        json.dumps({"errors": True, "items": [{"create": {"status": 201}}]}).encode(),
        json.dumps({"errors": True, "items": [{"create": {}}, {"create": {}}]}).encode(),
        json.dumps({"errors": True, "items": [[], {}]}).encode(),
    ],
)
def test_what_is_not_a_bulk_reply_is_said_so(reply: bytes) -> None:
    with pytest.raises(ValueError):
        bulk_outcome(reply, 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error":{"root_cause":[],"type":"security_exception","reason":"no"},"status":401}',
         "security_exception: no"),
        (b'{"error":"Incorrect HTTP method","status":405}', "Incorrect HTTP method"),
        (b"<html>\n  gateway\n</html>", "<html>\\n  gateway\\n</html>"),
        (b'{"error":{"type":"x"}}', "x"),
    ],
)  # fmt: skip
def test_server_messages(body: bytes, message: str) -> None:
    assert server_message(body) == message


# --- the writer's credentials -------------------------------------------------------------------


def test_credentials_are_headers_and_never_shown() -> None:
    basic = ElasticsearchWriter(
        ElasticsearchTarget("https://es:9200/x/", username="u", password="pw")
    )
    assert basic._auth == "Basic dTpwdw=="
    assert basic.display == "https://es:9200/x" and basic._scrub("a pw dTpwdw==") == "a *** ***"
    raw = ElasticsearchWriter(ElasticsearchTarget("http://es:9200", api_key="kid:s3cret"))
    assert raw._auth == "ApiKey a2lkOnMzY3JldA=="  # base64 of id:key, what the API wants
    assert raw._scrub("s3cret a2lkOnMzY3JldA==") == "*** ***"
    encoded = ElasticsearchWriter(ElasticsearchTarget("http://es:9200", api_key="ZW5jb2RlZA=="))
    assert encoded._auth == "ApiKey ZW5jb2RlZA=="
    target = ElasticsearchTarget("https://es:9200", username="u", password="pw", api_key="k:s")
    assert "pw" not in repr(target) and "k:s" not in repr(target)
    assert target_name(target) == "elasticsearch https://es:9200 planctond-*"


@pytest.mark.parametrize("url", ["ftp://h", "http://", "es:9200", "http://h:x/"])
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ElasticsearchWriter(ElasticsearchTarget(url))


# --- the Outbox's count of documents refused one by one -----------------------------------------


def test_refused_documents_are_dropped_counted_and_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="planctond.monitoring.outbox")
    answers: list[Refused | None] = [
        Refused(2, "mapper_parsing_exception: x"),
        Refused(1, "y"),
        None,
    ]
    box = Outbox("es", lambda body: answers.pop(0), batch=3)
    for _ in range(3):
        box.put([point(), point(), point()])
        assert box.step() == 0.0
    health = box.health()
    assert (health.ok, health.dropped, health.backlog) == (True, 3, 0)
    assert health.last_error == "y" and health.last_success is not None
    told = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert told == [
        "backend es refused 2 points of a batch, dropped them (later refusals are only counted): "
        "mapper_parsing_exception: x"
    ]


# --- the hub ------------------------------------------------------------------------------------


@dataclass
class Recorder:
    target: object
    points: list[Point] = field(default_factory=list)
    closed: float | None = None

    def put(self, points: Sequence[Point]) -> None:
        self.points.extend(points)

    def health(self) -> OutboxHealth:
        return OutboxHealth("x", True, None, 0, 0, "")

    def close(self, timeout: float) -> None:
        self.closed = timeout


ES1 = "    - {url: 'https://es.example.org:9200', username: u, password: pw}\n"
ES2 = "    - {url: 'http://127.0.0.1:9201', index_prefix: lab, api_key: 'id:key'}\n"
ES = "  elasticsearch:\n" + ES1
INFLUX = "  influxdb: ['http://127.0.0.1:8086#plancton']\n"


def test_the_hub_feeds_elasticsearch_targets_and_follows_reloads() -> None:
    made: list[Recorder] = []

    def make(target: Any) -> Recorder:
        made.append(Recorder(target))
        return made[-1]

    def cfg(text: str) -> Any:
        return load_config_text(f"tick: 10s\nmonitoring:\n{text}", "c.yaml")

    hub = MonitoringHub(
        cfg(ES + INFLUX),
        make_influx=make,
        make_elasticsearch=make,
        clock=lambda: T0,
        hostname=lambda: "n1",
    )
    es, _ = sorted(made, key=lambda r: isinstance(r.target, InfluxDBTarget))
    hub.on_tick(report())
    hub.on_event(event(EventKind.PILOT_STARTED))
    assert {p.measurement for p in es.points} >= {"planctond_daemon", "planctond_event"}
    assert "daemon" not in {p.measurement for p in es.points}, "Plancton's series: InfluxDB only"
    names = list(hub.status_extra())
    assert "monitoring elasticsearch https://es.example.org:9200 planctond-*" in names
    assert all("pw" not in n for n in names)
    hub.reconfigure(cfg(ES + ES2))
    assert es.closed is None and len(made) == 3, "a kept target keeps its backlog"
    assert made[2].target == ElasticsearchTarget("http://127.0.0.1:9201", "lab", api_key="id:key")
    hub.reconfigure(cfg("  elasticsearch:\n" + ES2))
    assert es.closed is not None or _closed_soon(es)
    hub.close(1.0)
    assert not hub.active


def _closed_soon(backend: Recorder) -> bool:
    """Retired backends are closed off the reloading thread."""
    deadline = time.monotonic() + 10
    while backend.closed is None:
        assert time.monotonic() < deadline, "a retired backend was never closed"
        time.sleep(0.001)
    return True


def test_without_a_writer_or_with_a_bad_url_the_target_is_said_unavailable() -> None:
    config = load_config_text("monitoring:\n" + ES, "c.yaml")
    hub = MonitoringHub(config, make_influx=lambda t: Unavailable("x", ""))
    assert "no Elasticsearch writer" in next(iter(hub.status_extra().values()))

    def refuse(target: ElasticsearchTarget) -> Recorder:
        raise ValueError("the Elasticsearch URL has an invalid port")

    hub = MonitoringHub(
        config, make_influx=lambda t: Unavailable("x", ""), make_elasticsearch=refuse
    )
    assert "invalid port" in next(iter(hub.status_extra().values()))


def test_the_composition_root_builds_an_outbox_with_the_bulk_encoder() -> None:
    from planctond.cli.application import elasticsearch_backend

    backend = elasticsearch_backend(ElasticsearchTarget("http://127.0.0.1:9", "p"))
    try:
        assert isinstance(backend, Outbox)
        assert backend.name == "elasticsearch http://127.0.0.1:9 p-*"
        assert isinstance(backend._encode, D.BulkEncoder) and backend._encode.prefix == "p"
    finally:
        backend.close(0.0)


def test_series_points_all_encode() -> None:
    recorder = SeriesRecorder("h")
    points = recorder.status(report(), T0)
    points += [p for k in EventKind for p in recorder.on_event(event(k))]
    encode = D.BulkEncoder("planctond")
    for p in points:
        source = json.loads(encode(p).split(b"\n")[1])
        assert source["measurement"] == p.measurement
