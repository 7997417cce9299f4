"""The monitoring hub: what the daemon does turned into points, handed to every backend.

The composition root builds one hub and connects it to the supervisor's event bus and tick hook;
the hub keeps the series' state (counters since start) and one backend per configured target.
Everything here runs on the supervisor's loop and only ever puts points into a backend's bounded
buffer, which its own thread sends: a slow or dead server never delays a tick, a pilot start or a
D-Bus reply. A reload that changes `monitoring` adds and closes backends; a target that stays
keeps its buffer and its backlog.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from planctond.config.model import Config, ElasticsearchTarget, InfluxDBTarget, PrometheusListen
from planctond.monitoring.legacy_series import legacy_event, legacy_status, plancton_hostname
from planctond.monitoring.outbox import OutboxHealth
from planctond.monitoring.point import Point
from planctond.monitoring.series import SeriesRecorder, pool_cpus_of
from planctond.supervisor.api import StatusReport
from planctond.supervisor.events import Event

log = logging.getLogger(__name__)

# A backend closed by a reload or at exit gets this long to deliver what it holds.
CLOSE_TIMEOUT: Final = 5.0


class Backend(Protocol):
    """A target's bounded buffer and sender (`outbox.Outbox`)."""

    def put(self, points: Sequence[Point]) -> None: ...

    def health(self) -> OutboxHealth: ...

    def close(self, timeout: float) -> None: ...


BackendFactory = Callable[[InfluxDBTarget], Backend]
PrometheusFactory = Callable[[PrometheusListen], Backend]
ElasticsearchFactory = Callable[[ElasticsearchTarget], Backend]
Target = InfluxDBTarget | PrometheusListen | ElasticsearchTarget


def target_name(target: Target) -> str:
    """How a target is shown (planctonctl, the journal): no credentials, ever."""
    if isinstance(target, PrometheusListen):
        host = f"[{target.host}]" if ":" in target.host else target.host
        return f"prometheus http://{host}:{target.port}/metrics"
    scheme, sep, rest = target.url.partition("://")
    host = rest.rpartition("@")[2] if sep else target.url
    if isinstance(target, ElasticsearchTarget):
        return f"elasticsearch {scheme}{sep}{host} {target.index_prefix}-*"
    if target.v2:
        return f"influxdb2 {scheme}{sep}{host} {target.org}/{target.database}"
    return f"influxdb {scheme}{sep}{host}#{target.database}"


class Unavailable:
    """A backend that could not be made (Prometheus's port taken): said in planctonctl status
    rather than stopping the daemon, which owes the host its pilots, not its metrics."""

    def __init__(self, name: str, error: str) -> None:
        self._name, self._error = name, error

    def put(self, points: Sequence[Point]) -> None:
        pass

    def health(self) -> OutboxHealth:
        return OutboxHealth(self._name, False, None, 0, 0, self._error)

    def close(self, timeout: float) -> None:
        pass


class MonitoringHub:
    def __init__(
        self,
        config: Config,
        *,
        make_influx: BackendFactory,
        make_prometheus: PrometheusFactory | None = None,
        make_elasticsearch: ElasticsearchFactory | None = None,
        clock: Callable[[], float] = time.time,
        hostname: Callable[[], str] = socket.gethostname,
    ) -> None:
        self._make_influx = make_influx
        self._make_prometheus = make_prometheus
        self._make_elasticsearch = make_elasticsearch
        self._clock = clock
        self._hostname = hostname
        self._backends: dict[Target, Backend] = {}
        self._host = ""
        self._legacy_host = ""
        self._recorder: SeriesRecorder | None = None
        self._interval = config.tick
        self._last_status = -float("inf")
        self.reconfigure(config)

    @property
    def host(self) -> str:
        return self._host

    def reconfigure(self, config: Config) -> None:
        """Make the backends match `config.monitoring`: new targets start, gone ones are closed
        (their buffer gets CLOSE_TIMEOUT to drain), kept ones keep their backlog."""
        monitoring = config.monitoring
        host = monitoring.host or self._hostname() or "localhost"
        if host != self._host or self._recorder is None:
            # The counters are per host tag: a renamed host starts its series over.
            self._host, self._recorder = host, SeriesRecorder(host)
        # Plancton tagged the short name; an admin's own `host` is used as given.
        self._legacy_host = monitoring.host or plancton_hostname(host)
        self._recorder.set_pool_cpus(pool_cpus_of(config))
        self._interval = config.tick
        wanted: list[Target] = [*monitoring.influxdb, *monitoring.elasticsearch]
        if monitoring.prometheus is not None:
            wanted.append(monitoring.prometheus)
        for target in [t for t in self._backends if t not in wanted]:
            log.info("monitoring: no longer feeding %s", target_name(target))
            self._retire(target, self._backends.pop(target))
        for target in wanted:
            if target not in self._backends:
                log.info("monitoring: feeding %s as host %s", target_name(target), host)
                self._backends[target] = self._make(target)

    def _make(self, target: Target) -> Backend:
        if isinstance(target, InfluxDBTarget):
            return self._make_influx(target)
        if isinstance(target, ElasticsearchTarget):
            if self._make_elasticsearch is None:
                return Unavailable(target_name(target), "no Elasticsearch writer in this build")
            try:
                return self._make_elasticsearch(target)
            except ValueError as exc:  # a URL the writer cannot use: said, not fatal
                return Unavailable(target_name(target), str(exc))
        if self._make_prometheus is None:
            return Unavailable(target_name(target), "no Prometheus exporter in this build")
        try:
            return self._make_prometheus(target)
        except OSError as exc:
            log.error("monitoring: cannot serve %s: %s", target_name(target), exc)
            return Unavailable(target_name(target), f"cannot listen: {exc}")

    def _retire(self, target: Target, backend: Backend) -> None:
        """A dropped InfluxDB or Elasticsearch target gets CLOSE_TIMEOUT to deliver what it holds,
        in a thread of its own: a reload runs on the supervisor's loop, which a dead server must
        never stall. A Prometheus endpoint holds nothing and is shut at once, so a new one may
        take its port."""
        if isinstance(target, PrometheusListen):
            backend.close(1.0)
            return
        threading.Thread(
            target=backend.close, args=(CLOSE_TIMEOUT,), name="monitoring-retire", daemon=True
        ).start()

    @property
    def active(self) -> bool:
        return bool(self._backends)

    def on_event(self, event: Event) -> None:
        """EventBus subscriber: one point per event, plus Plancton's for targets that want it."""
        if not self._backends or self._recorder is None:
            return
        points = self._recorder.on_event(event)
        legacy: list[Point] | None = None
        for target, backend in self._backends.items():
            if isinstance(target, InfluxDBTarget) and target.plancton_series:
                if legacy is None:
                    legacy = legacy_event(event, self._legacy_host)
                backend.put([*points, *legacy])
            else:
                backend.put(points)

    def on_tick(self, report: StatusReport) -> None:
        """Tick hook: the status series, at most once per `interval` (the config's tick)."""
        if not self._backends or self._recorder is None:
            return
        now = self._clock()
        if now - self._last_status < self._interval * 0.9:
            return
        self._last_status = now
        points = self._recorder.status(report, now)
        legacy: list[Point] | None = None
        for target, backend in self._backends.items():
            if isinstance(target, InfluxDBTarget) and target.plancton_series:
                if legacy is None:
                    legacy = legacy_status(report, now, self._legacy_host)
                backend.put([*points, *legacy])
            else:
                backend.put(points)

    def health(self) -> list[tuple[str, OutboxHealth]]:
        return [(target_name(t), b.health()) for t, b in self._backends.items()]

    def status_extra(self) -> Mapping[str, str]:
        """For `planctonctl status` (the Status() reply's `extra`): one line per backend."""
        out = {}
        for name, h in self.health():
            last = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h.last_success))
                if h.last_success is not None
                else "never"
            )
            state = "ok" if h.ok else f"failing: {h.last_error}"
            out[f"monitoring {name}"] = (
                f"{state}; last success {last}; backlog {h.backlog}; dropped {h.dropped}"
            )
        return out

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """At exit: each backend gets a share of `timeout` to deliver what it holds."""
        share = timeout / max(1, len(self._backends))
        for backend in self._backends.values():
            backend.close(share)
        self._backends.clear()
