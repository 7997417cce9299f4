"""The composition root: the one place that builds the daemon's parts and wires them together.

Everything with a lifetime of its own (the Docker engine client and its thread pool, the run-state
store, the host probe, the D-Bus service, logind, systemd's notify socket) is made here and handed
to the supervisor, which builds nothing it talks to. To add a part (an exporter, a sensor), build
it here and connect it to the supervisor's hooks or its event bus (tuned's `application.py` plays
the same role).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

from planctond import __version__
from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.expr import compile_expr
from planctond.config.layers import load_layered
from planctond.config.model import Config, ElasticsearchTarget, InfluxDBTarget, PrometheusListen
from planctond.config.remote import RemoteDocument
from planctond.control.journal import log_event
from planctond.control.notify import SystemdNotifier
from planctond.engine.docker_engine import DockerEngine
from planctond.monitoring.hub import Backend, MonitoringHub, target_name
from planctond.remote.cache import RemoteCache
from planctond.remote.fetch import fetch
from planctond.supervisor.api import ControlError
from planctond.supervisor.events import Event, EventKind
from planctond.supervisor.host_probe import CgroupHostProbe
from planctond.supervisor.ports import SystemClock
from planctond.supervisor.remote_watch import RemotePort
from planctond.supervisor.runner import ThreadRunner
from planctond.supervisor.state_store import StateStore
from planctond.supervisor.supervisor import Supervisor

if TYPE_CHECKING:
    from planctond.control.dbus_service import DBusService
    from planctond.sensors.logind import LogindIdleSource

log = logging.getLogger("planctond")


class Application:
    """The daemon for one run: built by `__init__`, served by `serve()`."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None,
        docker_url: str | None,
        state_dir_override: str | None,
        leave_pilots: bool,
        dbus: bool,
        remote_document: RemoteDocument | None = None,
    ) -> None:
        self._leave_pilots = leave_pilots
        self._dbus = dbus
        self._state_dir_override = state_dir_override
        store = StateStore(config.state_dir)  # StateStoreError: the caller reports it
        self.instance = store.instance_id()
        self.engine = DockerEngine(
            docker_url or config.docker.url, self.instance, timeout=C.DOCKER_TIMEOUT
        )
        self.runner = ThreadRunner()
        self.notifier = SystemdNotifier()
        self.supervisor = Supervisor(
            config,
            config_path=config_path,
            loader=self._load,
            engine=self.engine,
            store=store,
            instance=self.instance,
            host=CgroupHostProbe(),
            runner=self.runner,
            clock=SystemClock(),
            remote=RemotePort(fetch, RemoteCache(config.state_dir).save, remote_document),
        )
        self.supervisor.events.subscribe(log_event)
        self.monitoring = MonitoringHub(
            config,
            make_influx=influx_backend,
            make_prometheus=prometheus_backend,
            make_elasticsearch=elasticsearch_backend,
        )
        self.supervisor.events.subscribe(self.monitoring.on_event)
        self.supervisor.on_tick(self.monitoring.on_tick)
        self.supervisor.add_status_extra(self.monitoring.status_extra)
        self._bus_service: DBusService | None = None
        self._idle: LogindIdleSource | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _load(self, path: str | None, document: RemoteDocument | None = None) -> Config:
        """Reloads read the same file and its drop-ins, over the remote `document` when given;
        --state-dir keeps overriding what they say. A missing file gives the built-in defaults,
        as at a first start without one; once a file was loaded, the config watch refuses them
        (`ConfigWatch._refuse_gone_file`): the file has gone."""
        return load_layered(path, document, state_dir=self._state_dir_override)

    async def serve(self) -> int:
        sup, notifier = self.supervisor, self.notifier
        self._handle_signals()
        self._feed_watchdog()
        sup.on_tick(lambda report: notifier.status(report.summary()))
        bus_service = await self._start_dbus() if self._dbus else None
        self._bus_service = bus_service
        await self._start_logind_if_used()
        # A reload may bring the first expression that reads owner_idle.
        sup.events.subscribe(self._on_event)
        log.info(
            "planctond %s started (pid %d, instance %s, config %s, state %s, %s)",
            __version__,
            os.getpid(),
            self.instance,
            sup.config.source or "built-in defaults",
            sup.run_state.value,
            "D-Bus on" if bus_service else "no D-Bus",
        )
        notifier.ready(sup.status().summary())
        try:
            await sup.run()
        finally:
            if self._idle is not None:
                await self._idle.stop()
            if bus_service is not None:
                await bus_service.close()
            self.close()
        return 0

    def close(self) -> None:
        """Release the engine's connection and threads (after the supervisor's run); the
        monitoring backends get a few seconds to deliver the last events (pilots stopped)."""
        self.monitoring.close()
        self.engine.reset()
        self.runner.close()

    def _handle_signals(self) -> None:
        sup, notifier = self.supervisor, self.notifier
        loop = asyncio.get_running_loop()

        def on_term(signame: str) -> None:
            log.info("%s received; shutting down", signame)
            notifier.stopping()
            sup.request_shutdown(stop_pilots=False if self._leave_pilots else None)

        async def reload() -> None:
            notifier.reloading()
            try:
                await sup.reload()
            except ControlError:
                pass  # already logged as config-rejected; the last good config stays
            finally:
                notifier.ready(sup.status().summary())

        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, on_term, name)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))

    def _feed_watchdog(self) -> None:
        """Ping at a quarter of the watchdog interval, from the supervisor's own loop: a hung
        loop stops the pings and systemd restarts the daemon."""
        notifier = self.notifier
        interval = notifier.watchdog_interval()
        if interval is None:
            return
        last_ping = [0.0]

        def heartbeat() -> None:
            now = time.monotonic()
            if now - last_ping[0] >= interval / 4:
                last_ping[0] = now
                notifier.watchdog()

        self.supervisor.on_heartbeat(heartbeat)

    async def _start_dbus(self) -> DBusService | None:
        """Serve the API on the system bus. Under systemd (BusName=) a failure is fatal: the unit
        would never become ready. By hand without a system bus, run on without it."""
        from planctond.control.dbus_service import connect_system_bus, serve

        try:
            bus = await connect_system_bus()
            return await serve(self.supervisor, bus)
        except Exception as exc:
            if os.environ.get("NOTIFY_SOCKET"):
                raise
            log.warning("D-Bus API not available (%s); running without it", exc)
            return None

    def _on_event(self, event: Event) -> None:
        if event.kind is EventKind.CONFIG_LOADED:
            self.monitoring.reconfigure(self.supervisor.config)
        if event.kind is EventKind.CONFIG_LOADED and self._idle is None:
            self._tasks.add(
                task := asyncio.get_running_loop().create_task(self._start_logind_if_used())
            )
            task.add_done_callback(self._tasks.discard)

    async def _start_logind_if_used(self) -> None:
        """owner_idle is read from logind whether or not the API is served (over the API's
        connection when there is one), but only while an expression reads it: a host that never
        asks keeps no second bus connection and no poll every few seconds."""
        if self._idle is not None or not uses_variable(self.supervisor.config, "owner_idle"):
            return
        from planctond.sensors.logind import start_owner_idle

        bus = self._bus_service.bus if self._bus_service is not None else None
        self._idle = await start_owner_idle(bus)
        if self._idle is not None:
            self.supervisor.add_variable_source(self._idle.variables)


def initial_config(
    path: str, *, missing_ok: bool, state_dir: str | None
) -> tuple[Config, RemoteDocument | None]:
    """The config to start with: the host's files over the cached remote document, when the
    files name its URL and it still loads (a host that starts while the server is down runs
    what it ran before). ConfigError: the host's own files are bad."""
    config = load_layered(path, missing_ok=missing_ok, state_dir=state_dir)
    if config.remote is None:
        return config, None
    document = RemoteCache(config.state_dir).load(config.remote.url)
    if document is None:
        return config, None
    try:
        layered = load_layered(path, document, missing_ok=missing_ok, state_dir=state_dir)
    except ConfigError as exc:
        log.error("the cached remote config is refused; waiting for the server: %s", exc)
        return config, None
    return layered, document


def uses_variable(config: Config, name: str) -> bool:
    """Whether an expression, or the give-way rule itself (`owner.active_within`), reads it."""
    return name in config.owner.variables or any(
        name in compile_expr(source).names
        for pool in config.pools
        for source in (pool.max_pilots, pool.run_when)
    )


def influx_backend(target: InfluxDBTarget) -> Backend:
    """One InfluxDB target's buffer and sender thread (standard library only: nothing to install
    for InfluxDB)."""
    from planctond.monitoring.influxdb import writer_for
    from planctond.monitoring.outbox import Outbox

    outbox = Outbox(target_name(target), writer_for(target))
    outbox.start()
    return outbox


def elasticsearch_backend(target: ElasticsearchTarget) -> Backend:
    """One Elasticsearch target's buffer and sender thread: the same Outbox as InfluxDB's, fed
    bulk lines instead of line protocol (standard library only, like InfluxDB)."""
    from planctond.monitoring.elasticsearch import ElasticsearchWriter
    from planctond.monitoring.outbox import Outbox

    writer = ElasticsearchWriter(target)  # ValueError: the hub shows it in planctonctl status
    outbox = Outbox(target_name(target), writer, encode=writer.encode)
    outbox.start()
    return outbox


def prometheus_backend(listen: PrometheusListen) -> Backend:
    """`/metrics` on its own thread. prometheus_client is imported only here: a host without
    `monitoring.prometheus` never loads it (the loader refused the key if it is missing)."""
    from planctond.monitoring.prometheus import PrometheusExporter

    exporter = PrometheusExporter(listen.host, listen.port)
    exporter.start()  # OSError (port taken): the hub shows it in planctonctl status
    return exporter
