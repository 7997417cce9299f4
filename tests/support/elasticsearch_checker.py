"""A loopback HTTP(S) endpoint that answers the two Elasticsearch APIs planctond uses, and checks
every request against what Elastic documents for them, strictly.

No Elasticsearch or OpenSearch server can be installed here (none is in any reachable registry),
so this stands in for one. It was written from the documented request and reply shapes of
`PUT /_index_template/<name>` (composable templates) and `POST /_bulk` (NDJSON: an action line,
then a source line, a newline after the last), not from planctond's code, and it checks what a
real server would refuse or silently get wrong:
- Content-Type (`application/json`, `application/x-ndjson`), the Authorization header;
- the template: known keys only, `index_patterns`, a mapping type per property, `dynamic`;
  overlapping patterns of equal priority refused, as Elasticsearch does;
- each bulk action: `create` with `_index` and `_id` only; the index named `<prefix>-YYYY.MM.DD`
  and covered by a template put before it (else Elasticsearch would guess the mapping);
- each document: a JSON object, `@timestamp` ISO 8601 UTC in the index's day, `measurement`,
  every mapped field of its mapped type (a `long` an integer, a `double` a number, a `keyword`
  a string); the same `_id` never with another content.
Every breach is recorded in `violations` (tests assert it stays empty) and answered with 400.

It stores documents like `create` does (a second copy of an `_id`: 409) and can be told to answer
429 or 503 for whole requests or single items, to refuse chosen documents with a mapping error,
to store a batch and lose the reply, or to be down (the port closed) and back on the same port.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import http.server
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEMPLATE_KEYS = {"index_patterns", "template", "composed_of", "priority", "version", "_meta"}
TEMPLATE_PATH = re.compile(r"/_index_template/([a-z0-9][a-z0-9_.-]*)")
MAPPING_TYPES = {"long", "double", "keyword", "text", "date", "boolean", "integer", "float"}
DATED = re.compile(r"(?P<prefix>.+)-(?P<day>\d{4}\.\d{2}\.\d{2})")
TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
Document = dict[str, Any]


def _value_fits(kind: str, value: object) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind in ("long", "integer"):
        return isinstance(value, int) and -(2**63) <= value < 2**63
    if kind in ("double", "float"):
        return isinstance(value, int | float)
    return isinstance(value, str)  # keyword, text, date


class Handler(http.server.BaseHTTPRequestHandler):
    server: CheckerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        self.server.checker.handle(self, "PUT")

    def do_POST(self) -> None:
        self.server.checker.handle(self, "POST")

    def do_GET(self) -> None:
        self.server.checker.handle(self, "GET")

    def answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class CheckerServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, checker: ElasticsearchChecker, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.checker = checker
        if checker.tls is not None:
            self.socket = checker.tls.wrap_socket(self.socket, server_side=True)


class ElasticsearchChecker:
    def __init__(self, *, auth: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        """`auth`: the Authorization header every request must carry (None: none asked)."""
        self.auth = auth
        self.tls = tls
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.templates: dict[str, Document] = {}
        self.documents: dict[tuple[str, str], Document] = {}
        self.sent = collections.Counter[str]()  # _id -> times it came in a bulk request
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self.auth_seen: list[str | None] = []
        self.unmapped: set[str] = set()  # fields documents had that no template maps
        # Scripted trouble, consumed in order.
        self.fail_requests: list[int] = []  # statuses for the next bulk requests as a whole
        self.fail_items: list[int] = []  # statuses for the next documents (429, 503, ...)
        self.lose_replies = 0  # bulk requests to carry out and then hang up on
        self.refuse: Callable[[Document], bool] = lambda doc: False  # -> 400 mapping error
        self._server: CheckerServer | None = None
        self.port = 0

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Listen (again, on the same port after `down`)."""
        assert self._server is None
        self._server = CheckerServer(self, self.port)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        """Close the port: connections are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def docs(self, measurement: str | None = None) -> list[Document]:
        with self.lock:
            found = list(self.documents.values())
        return [d for d in found if measurement is None or d.get("measurement") == measurement]

    def indices(self) -> set[str]:
        with self.lock:
            return {index for index, _ in self.documents}

    # --- requests -----------------------------------------------------------------------------

    def handle(self, request: Handler, method: str) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length)
        path = request.path
        with self.lock:
            self.requests.append((method, path))
            self.auth_seen.append(request.headers.get("Authorization"))
        if self.auth is not None and request.headers.get("Authorization") != self.auth:
            request.answer(401, _error(401, "security_exception", "unable to authenticate user"))
            return
        template = TEMPLATE_PATH.fullmatch(path)
        if method == "PUT" and template:
            self._template(request, template[1], body)
        elif method == "POST" and path == "/_bulk":
            self._bulk(request, body)
        else:
            self._violation(request, f"unexpected request {method} {path}")

    def _violation(self, request: Handler, text: str) -> None:
        with self.lock:
            self.violations.append(text)
        request.answer(400, _error(400, "illegal_argument_exception", text))

    def _content_type(self, request: Handler, wanted: str) -> bool:
        got = (request.headers.get("Content-Type") or "").split(";")[0].strip()
        if got != wanted:
            self._violation(request, f"Content-Type {got!r}, expected {wanted!r}")
        return got == wanted

    def _template(self, request: Handler, name: str, body: bytes) -> None:
        if not self._content_type(request, "application/json"):
            return
        problem = _template_problem(body)
        if problem:
            return self._violation(request, f"template {name}: {problem}")
        template = json.loads(body)
        with self.lock:
            for other_name, other in self.templates.items():
                same = other.get("priority", 0) == template.get("priority", 0)
                if other_name != name and same and _overlap(other, template):
                    text = f"index template [{name}] has index patterns overlapping [{other_name}]"
                    request.answer(400, _error(400, "illegal_argument_exception", text))
                    return
            self.templates[name] = template
        request.answer(200, {"acknowledged": True})

    def _bulk(self, request: Handler, body: bytes) -> None:
        if not self._content_type(request, "application/x-ndjson"):
            return
        if not body.endswith(b"\n"):
            return self._violation(request, "the bulk request must be terminated by a newline")
        lines = body[:-1].split(b"\n")
        if len(lines) % 2 or not all(lines):
            return self._violation(request, "bulk lines are not action/source pairs")
        with self.lock:
            failure = self.fail_requests.pop(0) if self.fail_requests else None
        if failure is not None:
            kind = "es_rejected_execution_exception" if failure == 429 else "unavailable"
            request.answer(failure, _error(failure, kind, "scripted failure"))
            return
        items = []
        for action, source in zip(lines[::2], lines[1::2], strict=True):
            problem, item = self._item(action, source)
            if problem:
                return self._violation(request, problem)
            items.append(item)
        with self.lock:
            lose = self.lose_replies > 0
            self.lose_replies -= lose
        if lose:
            request.close_connection = True
            request.connection.shutdown(socket.SHUT_RDWR)  # done, but the client never hears it
            return
        errors = any(i["create"]["status"] >= 300 for i in items)
        request.answer(200, {"took": 1, "errors": errors, "items": items})

    def _item(self, action_line: bytes, source_line: bytes) -> tuple[str, Document]:
        """('', the reply item) or (what is wrong, {})."""
        try:
            action, doc = json.loads(action_line), json.loads(source_line)
        except ValueError as exc:
            return f"a bulk line is not JSON: {exc}", {}
        if not isinstance(action, dict) or list(action) != ["create"]:
            return f"expected a create action, got {action_line!r}", {}
        meta = action["create"]
        if not isinstance(meta, dict) or set(meta) != {"_index", "_id"}:
            return f"create needs exactly _index and _id, got {meta!r}", {}
        index, doc_id = meta["_index"], meta["_id"]
        problem = self._document_problem(index, doc)
        if problem:
            return f"{index}/{doc_id}: {problem}", {}
        with self.lock:
            self.sent[doc_id] += 1
            stored = self.documents.get((index, doc_id))
            if stored is not None and stored != doc:
                return f"_id {doc_id} reused for another document", {}
            status = self.fail_items.pop(0) if self.fail_items else 201
            if status == 201 and self.refuse(doc):
                status = 400
            if status == 201 and stored is not None:
                status = 409
            if status == 201:
                self.documents[(index, doc_id)] = doc
        item: Document = {"_index": index, "_id": doc_id, "status": status}
        if status == 201:
            item |= {"_version": 1, "result": "created"}
        else:
            item["error"] = _item_error(status, doc_id)
        return "", {"create": item}

    def _document_problem(self, index: object, doc: object) -> str:
        dated = DATED.fullmatch(index) if isinstance(index, str) else None
        if dated is None:
            return "index not named <prefix>-YYYY.MM.DD"
        with self.lock:
            templates = [t for t in self.templates.values() if _covers(t, index)]
        if not templates:
            return "no index template covers the index: its mapping would be guessed"
        if not isinstance(doc, dict):
            return "the source is not an object"
        stamp = TIMESTAMP.fullmatch(str(doc.get("@timestamp")))
        if stamp is None:
            return f"@timestamp {doc.get('@timestamp')!r} is not ISO 8601 UTC"
        if ".".join(stamp.groups()[:3]) != dated["day"]:
            return f"@timestamp {doc['@timestamp']} is not in the index's day"
        if not isinstance(doc.get("measurement"), str) or not doc["measurement"]:
            return "no measurement"
        mapping = templates[0]["template"]["mappings"]["properties"]
        for name, value in doc.items():
            if name not in mapping:
                with self.lock:
                    self.unmapped.add(name)
            elif not _value_fits(mapping[name]["type"], value):
                return f"field {name}={value!r} does not fit its mapping {mapping[name]['type']}"
        return ""


def _error(status: int, kind: str, reason: str) -> Document:
    cause = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def _item_error(status: int, doc_id: str) -> Document:
    if status == 409:
        return {
            "type": "version_conflict_engine_exception",
            "reason": f"[{doc_id}]: version conflict, document already exists",
        }
    if status == 400:
        return {
            "type": "mapper_parsing_exception",
            "reason": f"failed to parse field [x] in document with id '{doc_id}'",
        }
    if status == 429:
        return {"type": "es_rejected_execution_exception", "reason": "rejected execution"}
    return {"type": "unavailable_shards_exception", "reason": f"HTTP {status}"}


def _template_problem(body: bytes) -> str:
    try:
        template = json.loads(body)
    except ValueError:
        return "not JSON"
    if not isinstance(template, dict) or set(template) - TEMPLATE_KEYS:
        return f"unknown keys {sorted(set(template) - TEMPLATE_KEYS)}"
    patterns = template.get("index_patterns")
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        return "index_patterns must be a list of names"
    priority = template.get("priority", 0)
    if not isinstance(priority, int) or priority < 0:
        return "priority must be a whole number >= 0"
    mappings = template.get("template", {}).get("mappings", {})
    if mappings.get("dynamic") not in (False, "false", "strict", True, "true", "runtime"):
        return f"dynamic: {mappings.get('dynamic')!r}"
    for name, prop in mappings.get("properties", {}).items():
        if not isinstance(prop, dict) or prop.get("type") not in MAPPING_TYPES:
            return f"property {name}: no known type in {prop!r}"
        if set(prop) - {"type", "ignore_above", "fields", "format"}:
            return f"property {name}: unknown parameters in {prop!r}"
    return ""


def _covers(template: Document, index: str) -> bool:
    return any(re.fullmatch(p.replace("*", ".*"), index) for p in template["index_patterns"])


def _overlap(a: Document, b: Document) -> bool:
    """Whether two templates' patterns can match one index (exact for `prefix-*` patterns)."""
    heads_a = [p.split("*")[0] for p in a["index_patterns"]]
    heads_b = [p.split("*")[0] for p in b["index_patterns"]]
    return any(x.startswith(y) or y.startswith(x) for x in heads_a for y in heads_b)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- TLS: a CA and a server certificate made here with the openssl CLI -------------------------


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_tls_files(directory: Path) -> TLSFiles | None:
    """A test CA, a server certificate for 127.0.0.1 signed by it, and another CA; None without
    the openssl command."""
    if shutil.which("openssl") is None:
        return None
    key_args = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other_ca"):
        _openssl(
            *("req", "-x509", *key_args, "-days", "2", "-subj", f"/CN=planctond test {name}"),
            *("-keyout", str(directory / f"{name}.key"), "-out", str(directory / f"{name}.pem")),
        )
    ext = directory / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    csr, key, cert = directory / "server.csr", directory / "server.key", directory / "server.pem"
    _openssl("req", *key_args, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
    _openssl(
        *("x509", "-req", "-in", str(csr), "-days", "2", "-CA", str(directory / "ca.pem")),
        *("-CAkey", str(directory / "ca.key"), "-CAcreateserial", "-out", str(cert)),
        *("-extfile", str(ext)),
    )
    return TLSFiles(directory / "ca.pem", directory / "other_ca.pem", cert, key)


@contextlib.contextmanager
def running_checker(**options: Any) -> Iterator[ElasticsearchChecker]:
    checker = ElasticsearchChecker(**options)
    checker.up()
    try:
        yield checker
    finally:
        checker.down()
