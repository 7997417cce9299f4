"""The only module that speaks to Docker. Every method blocks: the supervisor calls them off the
event loop (a dedicated thread pool), never from a coroutine directly.

Pilots are found by label (managed + this daemon's instance id), never by name, so foreign and
nameless containers and another planctond's pilots are invisible here, not merely skipped.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import docker
import docker.errors

from planctond import constants as C
from planctond.config.imageref import parse_image
from planctond.engine.spec import PilotSpec

log = logging.getLogger(__name__)

_EXITED_RE = re.compile(r"Exited \((-?\d+)\)")


class EngineError(Exception):
    """Docker refused or failed a request; the message is meant for a person."""


class EngineUnavailable(EngineError):
    """Docker cannot be reached at all (socket missing, daemon down): wait and retry."""


@dataclass(frozen=True)
class EngineInfo:
    server_version: str
    api_version: str
    cgroup_driver: str  # "cgroupfs" | "systemd"
    cgroup_version: int
    docker_root: str
    ncpu: int


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    name: str
    state: str  # running | paused | exited | created | restarting | removing | dead
    created: float  # epoch seconds
    labels: dict[str, str] = field(default_factory=dict)
    image: str = ""
    exit_code: int | None = None

    @property
    def pool(self) -> str:
        return self.labels.get(C.LABEL_POOL, "")

    @property
    def cpus(self) -> float:
        try:
            return float(self.labels.get(C.LABEL_CPUS, "1"))
        except ValueError:
            return 1.0


class EventStream(Protocol):
    """docker-py's CancellableStream: decoded event dicts, closable from another thread."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


def _translate(exc: Exception, what: str) -> EngineError:
    if isinstance(exc, docker.errors.APIError):
        return EngineError(f"{what}: {exc.explanation or exc}")
    if isinstance(exc, docker.errors.DockerException | OSError | ConnectionError):
        return EngineUnavailable(f"{what}: {exc}")
    # requests' exceptions (connection refused, timeouts) do not share a base with docker's.
    if type(exc).__module__.startswith(("requests", "urllib3")):
        return EngineUnavailable(f"{what}: {exc}")
    return EngineError(f"{what}: {exc!r}")


class DockerEngine:
    def __init__(self, url: str | None, instance: str, timeout: float = 60.0) -> None:
        self.url = url
        self.instance = instance
        self._timeout = timeout
        self._api: Any = None
        self._lock = threading.Lock()
        self.calls = 0  # Docker API requests made, for the benchmark and Status

    # --- connection -------------------------------------------------------------------------
    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                try:
                    if self.url:
                        self._api = docker.APIClient(
                            base_url=self.url, version="auto", timeout=self._timeout
                        )
                    else:
                        self._api = docker.from_env(timeout=self._timeout).api
                except Exception as exc:
                    raise _translate(exc, "cannot connect to Docker") from exc
            return self._api

    def reset(self) -> None:
        with self._lock:
            if self._api is not None:
                with contextlib.suppress(Exception):
                    self._api.close()
            self._api = None

    def _call(self, what: str, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        api = self._client()
        self.calls += 1
        try:
            return getattr(api, fn_name)(*args, **kwargs)
        except Exception as exc:
            err = _translate(exc, what)
            if isinstance(err, EngineUnavailable):
                self.reset()
            raise err from exc

    def info(self) -> EngineInfo:
        info = self._call("docker info", "info")
        version = self._call("docker version", "version")
        return EngineInfo(
            server_version=str(version.get("Version", "?")),
            api_version=str(version.get("ApiVersion", "?")),
            cgroup_driver=str(info.get("CgroupDriver", "cgroupfs")),
            cgroup_version=int(info.get("CgroupVersion", "1") or 1),
            docker_root=str(info.get("DockerRootDir", "/var/lib/docker")),
            ncpu=int(info.get("NCPU", 0) or 0),
        )

    # --- pilots -----------------------------------------------------------------------------
    def _filters(self) -> dict[str, Any]:
        return {"label": [f"{C.LABEL_MANAGED}=1", f"{C.LABEL_INSTANCE}={self.instance}"]}

    def list_pilots(self) -> list[ContainerRecord]:
        """One API call: every container of this daemon, whatever its state."""
        rows = self._call("list pilots", "containers", all=True, filters=self._filters())
        out = []
        for row in rows:
            names = row.get("Names") or []
            name = names[0].lstrip("/") if names else row.get("Id", "")[:12]
            status = str(row.get("Status", ""))
            m = _EXITED_RE.search(status)
            out.append(
                ContainerRecord(
                    id=str(row["Id"]),
                    name=name,
                    state=str(row.get("State", "")),
                    created=float(row.get("Created", 0)),
                    labels=dict(row.get("Labels") or {}),
                    image=str(row.get("Image", "")),
                    exit_code=int(m.group(1)) if m else None,
                )
            )
        return out

    def create_and_start(self, spec: PilotSpec) -> str:
        api = self._client()
        host_config = api.create_host_config(
            **{k: v for k, v in spec.host.items() if v is not None}
        )
        created = self._call(
            f"create pilot {spec.name}", "create_container", host_config=host_config, **spec.create
        )
        cid = str(created["Id"])
        try:
            self._call(f"start pilot {spec.name}", "start", cid)
        except EngineError:
            try:
                self._call(
                    f"remove unstartable pilot {spec.name}", "remove_container", cid, force=True
                )
            except EngineError as exc:
                log.warning("%s", exc)
            raise
        return cid

    def signal(self, cid: str, sig: str) -> None:
        self._call(f"send {sig} to {cid[:12]}", "kill", cid, signal=sig)

    def pause(self, cid: str) -> None:
        self._call(f"freeze {cid[:12]}", "pause", cid)

    def unpause(self, cid: str) -> None:
        self._call(f"thaw {cid[:12]}", "unpause", cid)

    def remove(self, cid: str) -> None:
        try:
            self._call(f"remove {cid[:12]}", "remove_container", cid, force=True)
        except EngineError as exc:
            if "No such container" in str(exc) or "is already in progress" in str(exc):
                return
            raise

    def update_resources(self, cid: str, limits: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {}
        if "nano_cpus" in limits:
            # update_container in docker-py 5 has no nano_cpus: the quota form means the same.
            kwargs["cpu_period"] = 100000
            kwargs["cpu_quota"] = int(limits["nano_cpus"] / 1e9 * 100000)
        if "mem_limit" in limits:
            kwargs["mem_limit"] = limits["mem_limit"]
            kwargs["memswap_limit"] = limits["memswap_limit"]
        self._call(f"update {cid[:12]}", "update_container", cid, **kwargs)

    # --- events -------------------------------------------------------------------------------
    def events(self, since: float | None = None) -> EventStream:
        """Container events of this daemon's pilots; the iterator ends when Docker goes away.

        The returned iterator has a `close()` to stop it from another thread.
        """
        filters = {**self._filters(), "type": ["container"]}
        stream = self._call(
            "follow Docker events", "events", since=since, filters=filters, decode=True
        )
        return stream  # type: ignore[no-any-return]  # docker-py's CancellableStream

    # --- images -------------------------------------------------------------------------------
    def image_present(self, ref: str) -> bool:
        try:
            self._call(f"inspect image {ref}", "inspect_image", ref)
            return True
        except EngineUnavailable:
            raise
        except EngineError as exc:
            if "No such image" in str(exc) or "not found" in str(exc).lower():
                return False
            raise

    def pull(self, ref: str) -> None:
        parsed = parse_image(ref)
        self._call(f"pull {ref}", "pull", parsed.repository, tag=parsed.pull_tag)
