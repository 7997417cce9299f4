"""Serving the series on `/metrics` for a Prometheus server to scrape.

Prometheus pulls, so this backend keeps no queue: `put` swaps in the latest values and a scrape
reads them. Names, HELP and TYPE come from the catalogue (`series_spec.SERIES`): a sample is
named `SeriesSpec.name`, its labels are the point's tags (`host` included: one Prometheus
server scrapes many hosts, and the `host` tag is what InfluxDB dashboards group by too). Only
GAUGE and COUNTER fields are samples; TEXT fields (strings) and EVENT fields (happenings, for
annotations) have no Prometheus form. `planctond_build_info` and `planctond_daemon_state` are
catalogued as gauges (an info and a state set in Prometheus's conventions), so they appear too.

Which series exist. A status batch (`SeriesRecorder.status`) is a complete picture of the host,
every counter so far included; it is told apart by its `planctond_daemon` point and replaces
everything exposed. A series absent from it is gone: a removed pool, a renamed host, a version
after an upgrade (`planctond_build_info`), a config series that lost a label. Keeping series
until some age would show a removed pool's last pilots for that long, and the exporter does not
know the tick to choose the age. Any other batch (an event's points) only updates or adds the
series it holds: it carries one `planctond_events_total` label set, not all of them, so it must
not hide the others until the next tick; the next status batch has everything it added.
Samples carry no timestamp: Prometheus stamps them at the scrape, and its staleness handling (a
series missing from a scrape ends at once) only works for samples without one.

The library's `process_*` collector is included: the daemon runs for months on hosts it is a
guest on, and its own memory, CPU and open files are what a fleet operator watches first. It reads
a few files under /proc/self per scrape (well under a millisecond). The platform and GC
collectors are not: what they say (the Python version, collections) is not a host's business.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from planctond.monitoring.outbox import ERROR_LIMIT, OutboxHealth
from planctond.monitoring.point import Point
from planctond.monitoring.series_spec import (
    DAEMON,
    SERIES,
    SERIES_BY_FIELD,
    SeriesSpec,
    SeriesType,
)
from planctond.text import safe_text

log = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"
EXPOSED_TYPES: Final = frozenset({SeriesType.GAUGE, SeriesType.COUNTER, SeriesType.HISTOGRAM})
HISTOGRAM_PARTS: Final = ("_bucket", "_sum", "_count")
# The measurement only a status batch has: such a batch is the whole picture (see above).
SNAPSHOT_MEASUREMENT: Final = DAEMON
# How long close() may have to wait for the server thread to notice it.
POLL_INTERVAL: Final = 0.1
# A client that sends no request, or reads no answer, for this long is dropped: it must not
# hold a thread (and a socket) for ever.
REQUEST_TIMEOUT: Final = 10.0
COUNTER_SUFFIX: Final = "_total"

InetAddress = tuple[str, int] | tuple[str, int, int, int]  # (host, port[, flowinfo, scope_id])
LabelValues = tuple[str, ...]  # in the order of SeriesSpec.tags; "" for a tag a point lacks
Samples = dict[SeriesSpec, dict[LabelValues, float]]


def resolve(host: str, port: int) -> tuple[InetAddress, socket.AddressFamily]:
    """The first IPv4 or IPv6 address `host` names; a literal address is taken as it is."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return cast(InetAddress, sockaddr), family  # what AF_INET(6) addresses are
    raise OSError(f"{host} has no IPv4 or IPv6 address")


def url_host(host: str) -> str:
    """An IPv6 address in a URL (health's name, a test's request) needs its brackets."""
    return f"[{host}]" if ":" in host else host


def samples_of(points: Iterable[Point]) -> Samples:
    """The exposable fields of `points`, the last value winning for a repeated label set. A field
    outside the catalogue (Plancton's legacy series) is not ours to name, so it is left out."""
    out: Samples = {}
    for point in points:
        for field, value in point.fields.items():
            spec = SERIES_BY_FIELD.get((point.measurement, field))
            if spec is None or spec.type not in EXPOSED_TYPES or isinstance(value, str):
                continue
            labels = tuple(point.tags.get(tag, "") for tag in spec.tags)
            out.setdefault(spec, {})[labels] = float(value)
    return out


def metric_family(spec: SeriesSpec, values: Mapping[LabelValues, float]) -> Metric:
    """One metric family, exposed as `spec.name` in both formats: a CounterMetricFamily strips
    `_total` from its own name and puts it back on every sample and on the text format's
    HELP/TYPE lines (OpenMetrics names the family without it, as it should). An absent tag is
    an empty label value, which Prometheus stores as no label at all."""
    counter = spec.type is SeriesType.COUNTER
    base = spec.name.removesuffix(COUNTER_SUFFIX) if counter else spec.name
    # The library appends a unit the name lacks; it is metadata only, never a rename.
    unit = spec.unit if spec.unit and base.endswith(f"_{spec.unit}") else ""
    metric: CounterMetricFamily | GaugeMetricFamily
    if counter:
        metric = CounterMetricFamily(spec.name, spec.help, labels=spec.tags, unit=unit)
    else:
        metric = GaugeMetricFamily(spec.name, spec.help, labels=spec.tags, unit=unit)
    for labels, value in values.items():
        metric.add_metric(list(labels), value)
    return metric


def histogram_family(name: str) -> str:
    """`x` for the parts `x_bucket`, `x_sum` and `x_count` of a histogram."""
    for part in HISTOGRAM_PARTS:
        if name.endswith(part):
            return name.removesuffix(part)
    return name


def _le_order(le: str) -> float:
    try:
        return float(le)  # "+Inf" included
    except ValueError:
        return float("inf")


def histogram_families(samples: Samples) -> list[Metric]:
    """The histograms among `samples`, each from its parts: the `_bucket` spec carries the `le`
    tag beside the family's own tags; `_sum` and `_count` carry the family's tags. The library
    takes `_count` from the `+Inf` bucket, which is how the recorder makes it too."""
    parts: dict[str, dict[str, SeriesSpec]] = {}
    for spec in samples:
        if spec.type is SeriesType.HISTOGRAM:
            parts.setdefault(histogram_family(spec.name), {})[spec.name] = spec
    out: list[Metric] = []
    for family, specs in parts.items():
        bucket, total = specs.get(family + "_bucket"), specs.get(family + "_sum")
        if bucket is None or total is None:
            continue
        le_at = bucket.tags.index("le")
        labels = tuple(t for t in bucket.tags if t != "le")
        metric = HistogramMetricFamily(family, bucket.help, labels=labels, unit=bucket.unit)
        for label_values, sum_value in samples[total].items():
            buckets = sorted(
                (
                    (values[le_at], count)
                    for values, count in samples[bucket].items()
                    if values[:le_at] + values[le_at + 1 :] == label_values
                ),
                key=lambda b: _le_order(b[0]),
            )
            if buckets and buckets[-1][0] == "+Inf":
                metric.add_metric(list(label_values), buckets, sum_value)
        out.append(metric)
    return out


class _SeriesCollector(Collector):
    def __init__(self, latest: Callable[[], Samples]) -> None:
        self._latest = latest

    def collect(self) -> Iterable[Metric]:
        """In catalogue order, so a scrape reads like the catalogue and diffs stay small."""
        samples = self._latest()
        plain = [
            metric_family(spec, samples[spec])
            for spec in SERIES
            if samples.get(spec) and spec.type is not SeriesType.HISTOGRAM
        ]
        return [*plain, *histogram_families(samples)]


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (journald would keep one line per scrape), and a bounded wait on
    each client."""

    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per request, so a slow client never holds up Prometheus; none of them joined at
    close, so close() cannot wait on a client (each is bounded by REQUEST_TIMEOUT anyway)."""

    daemon_threads = True
    block_on_close = False
    timeout = POLL_INTERVAL  # handle_request()'s wait, so the serving loop sees close()

    def __init__(self, address: InetAddress, family: socket.AddressFamily) -> None:
        self.address_family = family
        super().__init__(address, _QuietHandler)

    def server_bind(self) -> None:
        """HTTPServer's server_bind asks DNS for the address's name (getfqdn), which can take
        seconds on a host without DNS, all for a CGI variable: the address is name enough."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def handle_error(self, request: object, client_address: object) -> None:
        log.debug("prometheus: error serving %s", client_address, exc_info=True)


class PrometheusExporter:
    def __init__(self, host: str, port: int, *, clock: Callable[[], float] = time.time) -> None:
        """`port` 0 picks a free port at start() (for tests; `address` then tells which).
        `clock` gives the epoch time of health()'s last_success."""
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self._host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: Samples = {}
        self._ok = True
        self._last_success: float | None = None
        self._last_error = ""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._registry = CollectorRegistry()
        self._registry.register(_SeriesCollector(self._latest))
        ProcessCollector(registry=self._registry)
        self._metrics_app: WSGIApplication = make_wsgi_app(self._registry)

    @property
    def address(self) -> tuple[str, int]:
        """Where /metrics is served: the port actually bound once started."""
        if self._server is None:
            return self._host, self._port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def name(self) -> str:
        host, port = self.address
        return f"prometheus http://{url_host(host)}:{port}{METRICS_PATH}"

    # --- the daemon's side ---------------------------------------------------------------------

    def put(self, points: Sequence[Point]) -> None:
        """Swap in the values of `points` (see the module's docstring for which series stay).
        The dicts a scrape may be reading are never changed, only replaced: the lock is held
        for a reference swap (or, for an event, a copy of a few dozen references)."""
        snapshot = any(p.measurement == SNAPSHOT_MEASUREMENT for p in points)
        fresh = samples_of(points)
        if snapshot:
            with self._lock:
                self._samples = fresh
            return
        if not fresh:
            return
        with self._lock:
            merged = dict(self._samples)
            for spec, values in fresh.items():
                merged[spec] = {**merged.get(spec, {}), **values}
            self._samples = merged

    def health(self) -> OutboxHealth:
        with self._lock:
            ok, last_success, last_error = self._ok, self._last_success, self._last_error
        return OutboxHealth(self.name, ok, last_success, 0, 0, last_error)

    def start(self) -> None:
        """Listen, and serve from a thread of our own. OSError (naming the address) when the
        address cannot be resolved or bound: the port is taken, or the address is not this
        host's."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} was already started")
        shown = f"{url_host(self._host)}:{self._port}"
        try:
            server = _Server(*resolve(self._host, self._port))
        except OSError as exc:
            message = f"cannot listen on {shown} for Prometheus: {exc.strerror or exc}"
            if exc.errno is None:
                raise OSError(message) from exc
            raise OSError(exc.errno, message) from exc
        self._server = server
        self._stop.clear()
        server.set_app(self._app)
        self._thread = threading.Thread(
            target=self._serve, args=(server,), name="prometheus-exporter", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop serving and free the port, waiting at most `timeout` seconds for the serving
        thread (it looks every POLL_INTERVAL); scrapes in flight finish on their own threads."""
        self._stop.set()
        thread, server = self._thread, self._server
        if thread is not None:
            thread.join(max(0.0, timeout))
            if thread.is_alive():
                log.warning("prometheus: %s still serving after %.1f s", self.name, timeout)
        if server is not None:
            server.server_close()

    # --- the scraper's side --------------------------------------------------------------------

    def _latest(self) -> Samples:
        with self._lock:
            return self._samples

    def _serve(self, server: _Server) -> None:
        while not self._stop.is_set():
            try:
                server.handle_request()
            except Exception as exc:  # the socket closed under us, or worse
                if not self._stop.is_set():
                    self._failed("the HTTP server stopped", exc)
                return

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"planctond serves its metrics at {METRICS_PATH}\n".encode()]
        try:
            # The library renders the whole answer before calling start_response.
            body = self._metrics_app(environ, start_response)
        except Exception as exc:  # a bug in a collector: a 500, said in health() and the log
            self._failed("a scrape failed", exc)
            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain; charset=utf-8")]
            )
            return [b"planctond could not render its metrics; see its journal\n"]
        with self._lock:
            self._ok, self._last_success = True, self._clock()
        return body

    def _failed(self, what: str, exc: Exception) -> None:
        """Logged when the endpoint goes from working to failing, not at every scrape."""
        error = safe_text(f"{what}: {type(exc).__name__}: {exc}", ERROR_LIMIT)
        with self._lock:
            was_ok, self._ok, self._last_error = self._ok, False, error
        if was_ok:
            log.error("prometheus: %s: %s", self.name, error, exc_info=exc)
