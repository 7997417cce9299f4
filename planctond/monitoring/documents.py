"""Points as Elasticsearch documents: the bulk API's action and source lines, the dated index
each goes to, and the index template that maps every field of the series catalogue.

One document per point, flat, so a Kibana or Grafana query reads like the InfluxDB one:
`{"@timestamp": ..., "measurement": "planctond_pool", "host": ..., "pool": ..., "running_pilots":
2, ...}`: tags and fields under their own names, the measurement as a field of its own. Each goes
to `<prefix>-YYYY.MM.DD` by its own time (UTC), so a backlog delivered after midnight still lands
in the day it describes, and old days are deleted a whole index at a time.

The mapping is the catalogue's (`series_spec.SERIES`), put as a template before the first
document, never guessed by Elasticsearch from a first value (a float field first seen as `0`
would be mapped `long` and every later fraction truncated):
- integer -> `long`, float -> `double`; a name both are under in different measurements -> `double`
  (a double takes integers; a long would cut the fractions).
- tags and string fields -> `keyword`: short values from a small vocabulary (host, pool, kind,
  reason, states) or one-line texts that dashboards filter and count by exact value, which `text`
  cannot do without fielddata. `ignore_above` keeps a long value in the document's source instead
  of failing it. `message` (the event's sentence) is `text` as well, with a `keyword` sub-field,
  so Discover finds events by a word of it.
- `dynamic: false`: a field the template does not know (a newer daemon, a new series) is kept in
  `_source` and never fails a document; it becomes searchable with the template of a newer daemon
  from the next day's index on.

Each document's `_id` is a hash of its index and content, and the action is `create`: a batch the
daemon sends again (no reply seen, some items refused for a while) can never store a point twice;
Elasticsearch answers 409 for the copies, which the writer counts as delivered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final

from planctond.monitoring.point import Point
from planctond.monitoring.series_spec import SERIES, SeriesSpec, ValueType

TIMESTAMP: Final = "@timestamp"
MEASUREMENT: Final = "measurement"
RESERVED: Final = frozenset({TIMESTAMP, MEASUREMENT})
KEYWORD_LIMIT: Final = 4096  # characters indexed of a keyword (Lucene's term limit is 32766 bytes)
# Composable templates whose patterns overlap must differ in priority: the longer prefix wins.
BASE_PRIORITY: Final = 200


def index_name(prefix: str, time_ns: int) -> str:
    return f"{prefix}-{datetime.fromtimestamp(time_ns // 1_000_000_000, UTC):%Y.%m.%d}"


def timestamp(time_ns: int) -> str:
    """ISO 8601 UTC with microseconds: what `date` parses (and keeps to the millisecond)."""
    seconds, rest = divmod(time_ns, 1_000_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}.{rest // 1000:06d}Z"


def document(point: Point) -> dict[str, Any]:
    """The point as a flat document; ValueError for a name that would clash (the Outbox drops
    that point alone, counted)."""
    clash = RESERVED & (point.tags.keys() | point.fields.keys())
    if clash:
        raise ValueError(f"point {point.measurement!r}: {sorted(clash)[0]!r} is a reserved name")
    doc: dict[str, Any] = {TIMESTAMP: timestamp(point.time_ns), MEASUREMENT: point.measurement}
    for tag, text in point.tags.items():
        if text:  # like line protocol: an empty tag is no tag
            doc[tag] = text
    for name, value in point.fields.items():
        if name in doc:
            raise ValueError(f"point {point.measurement!r}: {name!r} is a tag and a field")
        doc[name] = value
    return doc


def _json(value: object) -> bytes:
    # ensure_ascii: the body is ASCII whatever a text holds; allow_nan=False: a point cannot hold
    # a NaN, and JSON has none.
    return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=True).encode()


def document_id(index: str, time_ns: int, source: bytes) -> str:
    """128 bits of SHA-256 over where the document goes and what it says, to the nanosecond
    (`@timestamp` stops at the microsecond)."""
    return hashlib.sha256(f"{index}\n{time_ns}\n".encode() + source).hexdigest()[:32]


class BulkEncoder:
    """An Outbox's `encode` for one index prefix: a point -> its `create` action and source."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, point: Point) -> bytes:
        source = _json(document(point))
        index = index_name(self.prefix, point.time_ns)
        doc_id = document_id(index, point.time_ns, source)
        action = _json({"create": {"_index": index, "_id": doc_id}})
        return action + b"\n" + source + b"\n"


def _field_mapping(value: ValueType, name: str) -> dict[str, Any]:
    if value is ValueType.INTEGER:
        return {"type": "long"}
    if value is ValueType.FLOAT:
        return {"type": "double"}
    if name == "message":
        return {
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": KEYWORD_LIMIT}},
        }
    return {"type": "keyword", "ignore_above": KEYWORD_LIMIT}


def _merge(name: str, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """One mapping per name across measurements: long and double make double; anything else
    differing is a catalogue bug, refused here (a unit test runs this on every catalogue)."""
    if old is None or old == new:
        return new
    if {old["type"], new["type"]} == {"long", "double"}:
        return {"type": "double"}
    raise ValueError(f"field {name!r} would be mapped both {old['type']} and {new['type']}")


def properties(specs: Iterable[SeriesSpec] = SERIES) -> dict[str, dict[str, Any]]:
    """Every tag and field of the catalogue -> its mapping."""
    props: dict[str, dict[str, Any]] = {
        TIMESTAMP: {"type": "date"},
        MEASUREMENT: {"type": "keyword"},
    }
    for spec in specs:
        if spec.field in RESERVED:
            raise ValueError(f"field {spec.field!r} of {spec.measurement} is a reserved name")
        for tag in spec.tags:
            props[tag] = _merge(tag, props.get(tag), _field_mapping(ValueType.STRING, tag))
        mapping = _field_mapping(spec.value, spec.field)
        props[spec.field] = _merge(spec.field, props.get(spec.field), mapping)
    return dict(sorted(props.items()))


def index_template(prefix: str) -> dict[str, Any]:
    """The body of `PUT /_index_template/<prefix>` (composable templates: Elasticsearch 7.8+,
    OpenSearch 1.0+), with only what 7.8 documents (no `_meta`). Settings are left to the
    cluster: shards and replicas are the admin's."""
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": BASE_PRIORITY + len(prefix),
        "template": {"mappings": {"dynamic": False, "properties": properties()}},
    }


__all__ = ["BulkEncoder", "document", "document_id", "index_name", "index_template", "timestamp"]
