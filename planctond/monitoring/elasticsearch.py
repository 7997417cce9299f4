"""Writing documents to Elasticsearch (7.8+, 8.x) or OpenSearch, as an Outbox's `send`: the
index template once, then `POST /_bulk` per batch (`documents.py` makes the lines).

Plain HTTP with the standard library (http.client and ssl), like the InfluxDB writer, not the
`elasticsearch` client: Debian 12's python3-elasticsearch is 7.17, and the two calls used here
(the bulk API's NDJSON, the composable index template) are the same on Elasticsearch 7.x, 8.x
and OpenSearch; the Outbox already does the batching, the bounded buffer and the retries a
client library would add; and the daemon keeps one dependency fewer to install and audit.

The bulk API answers per document. What the writer makes of it:
- every document taken (201), or already there (409: a copy of a batch sent again, whose first
  attempt got no reply): delivered;
- some rejected for now (429: the cluster is busy; 5xx; 401/403/404: privileges or an index the
  cluster may not create, which the admin can fix): SinkError(retry=True), and the Outbox sends
  the whole batch again later. The documents already taken answer 409 then: a document's `_id`
  is its content's hash, so nothing is stored twice and the writer keeps no state between
  attempts that could go stale when the batch changes;
- refused for good (400: a mapping error, a value its field cannot take): dropped and counted
  (`Refused`), never blocking the queue.

Credentials (basic auth or an API key) are sent in the Authorization header only: never in a log
line, an error or a name (`display`), and scrubbed from any message as well.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from planctond.config.model import ElasticsearchTarget
from planctond.monitoring.documents import BulkEncoder, index_template
from planctond.monitoring.outbox import Refused, SinkError
from planctond.monitoring.tls import ClientTLS, tls_reason
from planctond.text import safe_text

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT: Final = 10.0  # seconds for each connect, send and read of one request
REPLY_LIMIT: Final = 16 * 1024 * 1024  # a bulk reply: ~150 bytes per document of a batch
ERROR_BODY_LIMIT: Final = 8192  # bytes of an error reply read for its message
MESSAGE_LIMIT: Final = 300  # characters of a server's message kept in an error
# Item statuses worth sending again: the cluster busy or failing, or a privilege or an index the
# admin can still give. Any other 4xx is about the document itself and will never change.
RETRY_ITEM: Final = frozenset({401, 403, 404, 408, 429})


def server_message(body: bytes) -> str:
    """Elasticsearch explains errors as {"error": {"type": ..., "reason": ...}} (older
    versions and proxies: a string): `type: reason`, or the reply as it is."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return safe_text(text.strip(), MESSAGE_LIMIT)
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    return safe_text(_error_text(error) or text.strip(), MESSAGE_LIMIT)


def _error_text(error: object) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        kind, reason = error.get("type"), error.get("reason")
        if isinstance(reason, str):
            return f"{kind}: {reason}" if isinstance(kind, str) else reason
        if isinstance(kind, str):
            return kind
    return ""


@dataclass(frozen=True)
class BulkOutcome:
    """How the documents of one bulk request fared."""

    documents: int
    delivered: int
    retry: int  # rejected for now
    refused: int  # refused for good
    retry_error: str  # the first of each kind, for the log and planctonctl
    refused_error: str


def bulk_outcome(reply: bytes, documents: int) -> BulkOutcome:
    """The bulk API's reply to `documents` actions; ValueError when it is not one."""
    parsed = json.loads(reply)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("errors"), bool):
        raise ValueError("not a bulk reply (no errors flag)")
    if parsed["errors"] is False:
        return BulkOutcome(documents, documents, 0, 0, "", "")
    items = parsed.get("items")
    if not isinstance(items, list) or len(items) != documents:
        raise ValueError(f"{documents} documents sent, but the reply is not one item each")
    retry = refused = 0
    retry_error = refused_error = ""
    for item in items:
        result = next(iter(item.values()), None) if isinstance(item, dict) and item else None
        if not isinstance(result, dict):
            raise ValueError("a bulk reply item that is not {action: {...}}")
        status = result.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError("a bulk reply item without a status")
        if 200 <= status < 300 or status == 409:  # 409: already stored by an earlier attempt
            continue
        error = safe_text(_error_text(result.get("error")) or f"HTTP {status}", MESSAGE_LIMIT)
        if status in RETRY_ITEM or status >= 500:
            retry += 1
            retry_error = retry_error or f"HTTP {status}: {error}"
        else:
            refused += 1
            refused_error = refused_error or f"HTTP {status}: {error}"
    delivered = documents - retry - refused
    return BulkOutcome(documents, delivered, retry, refused, retry_error, refused_error)


class ElasticsearchWriter:
    def __init__(
        self,
        target: ElasticsearchTarget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """ValueError for a URL that is not http(s)://host[:port][/prefix]."""
        parts = urlsplit(target.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an Elasticsearch URL must be http(s)://host[:port][/path]")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the Elasticsearch URL has an invalid port") from None
        self.prefix = target.index_prefix
        self.encode = BulkEncoder(target.index_prefix)
        self._timeout = timeout
        self._host = parts.hostname
        self._port = port
        self._path = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        netloc = host if port is None else f"{host}:{port}"
        self.display = f"{parts.scheme}://{netloc}{self._path}"  # what logs may show
        self._auth, self._secrets = _authorization(target)
        self._tls: ClientTLS | None = None
        if parts.scheme == "https":
            self._tls = ClientTLS(verify=target.verify_tls, ca_file=target.ca_file)
        self._template = json.dumps(index_template(self.prefix)).encode()
        self._template_put = False

    def __call__(self, body: bytes) -> Refused | None:
        """Write one batch of bulk lines: None when all arrived, `Refused` for the documents
        refused for good; SinkError when the batch is to be sent again (retry=False: never)."""
        if not self._template_put:
            self._put_template()
        status, reply = self._request("POST", "/_bulk", body, "application/x-ndjson", REPLY_LIMIT)
        needs = f"create_doc and create_index on {self.prefix}-*"
        # 400: a body the API cannot parse, 413: a batch too big for it: never, as they are.
        self._check(status, reply, "bulk write", needs, final=(400, 413))
        documents = body.count(b"\n") // 2
        try:
            outcome = bulk_outcome(reply, documents)
        except ValueError as exc:  # a proxy's page, a cut reply: nothing is known, send again
            raise SinkError(self._scrub(f"bulk write: unexpected reply: {exc}")) from None
        if outcome.retry:
            raise SinkError(
                self._scrub(
                    f"bulk write: {outcome.retry} of {documents} documents not taken yet "
                    f"({outcome.retry_error})"
                )
            )
        if outcome.refused:
            return Refused(
                outcome.refused,
                self._scrub(f"bulk write: document refused: {outcome.refused_error}"),
            )
        return None

    def _put_template(self) -> None:
        """Before the first document: an index created without it would be mapped by guesses."""
        path = f"/_index_template/{self.prefix}"
        status, reply = self._request(
            "PUT", path, self._template, "application/json", ERROR_BODY_LIMIT
        )
        # Whatever the refusal, the documents wait for the template (retried): dropping them
        # would lose data for a setup problem the admin fixes (a privilege, an overlapping
        # template of the same priority, a server older than composable templates).
        doing = f"putting the index template {self.prefix}"
        self._check(status, reply, doing, "the manage_index_templates cluster privilege")
        self._template_put = True
        log.info("elasticsearch %s: index template %s put", self.display, self.prefix)

    def _check(
        self, status: int, reply: bytes, doing: str, needs: str, final: tuple[int, ...] = ()
    ) -> None:
        """SinkError for a reply that is not 2xx; retry=False for the `final` statuses."""
        if 200 <= status < 300:
            return
        message = server_message(reply)
        if status == 401:
            raise SinkError(
                self._scrub(
                    f"{doing}: not authenticated (HTTP 401; check username and password, or "
                    f"api_key): {message}"
                )
            )
        if status == 403:
            raise SinkError(
                self._scrub(f"{doing}: not allowed (HTTP 403; needs {needs}): {message}")
            )
        retry = status not in final
        raise SinkError(self._scrub(f"{doing}: HTTP {status}: {message}"), retry=retry)

    def _request(
        self, method: str, path: str, body: bytes, content_type: str, limit: int
    ) -> tuple[int, bytes]:
        """(status, the reply's first `limit` bytes); SinkError when there is no reply."""
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if self._auth is not None:
            headers["Authorization"] = self._auth
        connection = self._connect()
        try:
            connection.request(method, self._path + path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(limit)
        except (OSError, http.client.HTTPException) as exc:
            reason = safe_text(tls_reason(exc), MESSAGE_LIMIT)
            raise SinkError(self._scrub(f"no reply from {self.display}: {reason}")) from exc
        finally:
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._tls.context()
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def _scrub(self, text: str) -> str:
        """Belt and braces: no message may carry a credential, whatever a server put in it."""
        for secret in sorted(self._secrets, key=len, reverse=True):  # a password is in its token
            text = text.replace(secret, "***")
        return text


def _authorization(target: ElasticsearchTarget) -> tuple[str | None, tuple[str, ...]]:
    """The Authorization header, and every form of the secrets in it (to scrub)."""
    if target.api_key is not None:
        key = target.api_key
        # Kibana shows an API key encoded; the API answers id and key apart: take both.
        encoded = base64.b64encode(key.encode()).decode("ascii") if ":" in key else key
        return f"ApiKey {encoded}", tuple(s for s in (key, encoded, key.partition(":")[2]) if s)
    if target.username is not None and target.password is not None:
        token = base64.b64encode(f"{target.username}:{target.password}".encode()).decode("ascii")
        return f"Basic {token}", (target.password, token)
    return None, ()


__all__ = ["BulkOutcome", "ElasticsearchWriter", "bulk_outcome", "server_message"]
