"""The only module that speaks to Docker. Every method blocks: the supervisor calls them off the
event loop (a dedicated thread pool), never from a coroutine directly.

Pilots are found by label (managed + this daemon's instance id), never by name, so foreign and
nameless containers and another planctond's pilots are invisible here, not merely skipped.

docker-py's and requests' exceptions end here: each becomes one of `planctond.engine.errors`, by
type and HTTP status, so the rest of the daemon never sees a library exception nor reads a
message to learn what went wrong.

Docker's strings are text from outside: its JSON may carry lone surrogates (`"\ud800"`) and
control characters in names, labels and error explanations. Each is made safe here, where it
enters the daemon (`planctond.text.safe_text`), so no later log line, event or D-Bus reply can be
broken by it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import docker.errors
import urllib3.exceptions  # type: ignore[import-untyped]  # Debian's 1.26 ships no hints

from planctond import constants as C
from planctond.config.imageref import parse_image
from planctond.engine.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    NoSuchContainer,
    NoSuchImage,
)
from planctond.engine.port import (
    ContainerEvent,
    ContainerRecord,
    Engine,
    EngineInfo,
    EventStream,
)
from planctond.engine.spec import PilotSpec
from planctond.text import safe_text

log = logging.getLogger(__name__)

_EXITED_RE = re.compile(r"Exited \((-?\d+)\)")
_HTTP_CONFLICT = 409

# docker-py raises these before sending anything: this engine's API version cannot express an
# argument, or the argument is malformed. Reconnecting would not help, so they are not
# "unavailable".
_REFUSED_LOCALLY: tuple[type[BaseException], ...] = (
    docker.errors.InvalidVersion,
    docker.errors.InvalidArgument,
    docker.errors.InvalidRepository,
    docker.errors.DeprecatedMethod,
    docker.errors.NullResource,
)
# No answer from Docker at all. requests' exceptions are OSErrors; urllib3's escape docker-py's
# raw stream reads unwrapped; a bare DockerException is docker-py failing to connect.
_UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    urllib3.exceptions.HTTPError,
    docker.errors.DockerException,
)


def _explanation(exc: Any) -> object:
    return exc.explanation or exc


def _kind_and_detail(
    exc: BaseException, not_found: type[EngineError]
) -> tuple[type[EngineError], object]:
    if isinstance(exc, docker.errors.ImageNotFound):
        return NoSuchImage, _explanation(exc)
    if isinstance(exc, docker.errors.NotFound):
        return not_found, _explanation(exc)
    if isinstance(exc, docker.errors.APIError):  # before OSError: it is a requests exception
        return (Conflict if exc.status_code == _HTTP_CONFLICT else EngineError), _explanation(exc)
    if isinstance(exc, _REFUSED_LOCALLY):
        return EngineError, exc
    if isinstance(exc, _UNREACHABLE):
        return EngineUnavailable, exc
    return EngineError, repr(exc)


def _translate(
    exc: BaseException, what: str, not_found: type[EngineError] = NoSuchContainer
) -> EngineError:
    """The one mapping from library exceptions to ours. `not_found` is what a 404 that docker-py
    did not recognise as an image means for this request (a container, unless said otherwise)."""
    cls, detail = _kind_and_detail(exc, not_found)
    return cls(safe_text(f"{what}: {safe_text(detail)}"))


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def container_event(raw: object) -> ContainerEvent | None:
    """One decoded Docker event as ours; None for anything that names no container.

    Docker before API 1.22 sent only `status`, `id` and `from`; later ones add `Type`, `Action`
    and `Actor` (ID and Attributes: the labels, `name`, `image`, `exitCode` on die) and keep the
    old keys for containers. Either shape is read."""
    if not isinstance(raw, Mapping):
        return None
    if (raw.get("Type") or "container") != "container":
        return None
    actor = raw.get("Actor")
    actor = actor if isinstance(actor, Mapping) else {}
    cid = safe_text(raw.get("id") or actor.get("ID") or "")
    action = safe_text(raw.get("Action") or raw.get("status") or "")
    if not cid or not action:
        return None
    given = actor.get("Attributes")
    attrs = (
        {safe_text(k): safe_text(v) for k, v in given.items()} if isinstance(given, Mapping) else {}
    )
    if "image" not in attrs and raw.get("from"):
        attrs["image"] = safe_text(raw["from"])
    exit_code = _int_or_none(attrs["exitCode"]) if "exitCode" in attrs else None
    return ContainerEvent(action=action, id=cid, attrs=attrs, exit_code=exit_code)


class _DockerEventStream:
    """docker-py's CancellableStream, yielding `ContainerEvent`s.

    `close()` shuts the socket the iterating thread is blocked on, so that thread wakes and the
    iteration ends quietly; whatever the dying socket raises after a close is part of closing,
    not an error."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[ContainerEvent]:
        while not self._closed.is_set():
            try:
                raw = next(self._stream)
            except StopIteration:
                return
            except Exception as exc:
                if self._closed.is_set():
                    return
                raise _translate(exc, "follow Docker events") from exc
            event = container_event(raw)
            if event is not None:
                yield event

    def close(self) -> None:
        self._closed.set()
        try:
            self._stream.close()
        except Exception as exc:  # the socket is already gone (Docker went away first)
            log.debug("closing the Docker event stream: %s", exc)


class DockerEngine:
    """`planctond.engine.port.Engine` against a real dockerd."""

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

    def _call(
        self,
        what: str,
        request: Callable[[Any], Any],
        not_found: type[EngineError] = NoSuchContainer,
    ) -> Any:
        """Run `request(api)`, translating whatever it raises; a lost connection is dropped so
        the next call reconnects."""
        api = self._client()
        self.calls += 1
        try:
            return request(api)
        except EngineError:
            raise  # already ours: what a pull's progress stream reported
        except Exception as exc:
            err = _translate(exc, what, not_found)
            if isinstance(err, EngineUnavailable):
                self.reset()
            raise err from exc

    def info(self) -> EngineInfo:
        info = self._call("docker info", lambda api: api.info())
        version = self._call("docker version", lambda api: api.version())
        return EngineInfo(
            server_version=safe_text(version.get("Version", "?")),
            api_version=safe_text(version.get("ApiVersion", "?")),
            cgroup_driver=safe_text(info.get("CgroupDriver", "cgroupfs")),
            cgroup_version=int(info.get("CgroupVersion", "1") or 1),
            docker_root=str(info.get("DockerRootDir", "/var/lib/docker")),
            ncpu=int(info.get("NCPU", 0) or 0),
        )

    # --- pilots -----------------------------------------------------------------------------
    def _filters(self) -> dict[str, Any]:
        return {"label": [f"{C.LABEL_MANAGED}=1", f"{C.LABEL_INSTANCE}={self.instance}"]}

    def list_pilots(self) -> list[ContainerRecord]:
        """One API call: every container of this daemon, whatever its state."""
        rows = self._call(
            "list pilots", lambda api: api.containers(all=True, filters=self._filters())
        )
        out = []
        for row in rows:
            names = row.get("Names") or []
            name = str(names[0]).lstrip("/") if names else str(row.get("Id", ""))[:12]
            status = str(row.get("Status", ""))
            m = _EXITED_RE.search(status)
            labels = row.get("Labels") or {}
            out.append(
                ContainerRecord(
                    id=safe_text(row["Id"]),
                    name=safe_text(name),
                    state=safe_text(row.get("State", "")),
                    created=float(row.get("Created", 0)),
                    labels={safe_text(k): safe_text(v) for k, v in labels.items()},
                    image=safe_text(row.get("Image", "")),
                    exit_code=int(m.group(1)) if m else None,
                )
            )
        return out

    def _host_config(self, spec: PilotSpec) -> Any:
        """docker-py checks the arguments against the engine's API version here, before any
        request: a refusal is the pool's settings against this engine, never Docker being
        away, whatever docker-py raises for it."""
        api = self._client()
        try:
            return api.create_host_config(**{k: v for k, v in spec.host.items() if v is not None})
        except Exception as exc:
            raise EngineError(
                f"create pilot {spec.name}: Docker API {api.api_version} cannot take this "
                f"pool's settings: {safe_text(exc)}"
            ) from exc

    def create_and_start(self, spec: PilotSpec) -> str:
        host_config = self._host_config(spec)
        # A 404 on create that is not the image is some other missing piece (a network, a
        # volume driver): the container it would mean does not exist yet.
        created = self._call(
            f"create pilot {spec.name}",
            lambda api: api.create_container(host_config=host_config, **spec.create),
            not_found=EngineError,
        )
        cid = str(created["Id"])
        try:
            self._call(f"start pilot {spec.name}", lambda api: api.start(cid))
        except EngineError:
            try:
                self.remove(cid)
            except EngineError as exc:
                log.warning("cannot remove unstartable pilot %s: %s", spec.name, exc)
            raise
        return cid

    def signal(self, cid: str, sig: str) -> None:
        self._call(f"send {sig} to {cid[:12]}", lambda api: api.kill(cid, signal=sig))

    def pause(self, cid: str) -> None:
        self._call(f"freeze {cid[:12]}", lambda api: api.pause(cid))

    def unpause(self, cid: str) -> None:
        self._call(f"thaw {cid[:12]}", lambda api: api.unpause(cid))

    def remove(self, cid: str) -> None:
        # Gone already, or Docker is removing it right now (409): either way it goes.
        with contextlib.suppress(NoSuchContainer, Conflict):
            self._call(f"remove {cid[:12]}", lambda api: api.remove_container(cid, force=True))

    def update_resources(self, cid: str, limits: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {}
        if "nano_cpus" in limits:
            # update_container in docker-py 5 has no nano_cpus: the quota form means the same.
            kwargs["cpu_period"] = 100000
            kwargs["cpu_quota"] = int(limits["nano_cpus"] / 1e9 * 100000)
        if "mem_limit" in limits:
            kwargs["mem_limit"] = limits["mem_limit"]
            kwargs["memswap_limit"] = limits["memswap_limit"]
        self._call(f"update {cid[:12]}", lambda api: api.update_container(cid, **kwargs))

    # --- events -------------------------------------------------------------------------------
    def events(self, since: float | None = None) -> EventStream:
        """Container events of this daemon's pilots; the iteration ends when Docker goes away
        or another thread calls `close()`."""
        filters = {**self._filters(), "type": ["container"]}
        stream = self._call(
            "follow Docker events",
            lambda api: api.events(since=since, filters=filters, decode=True),
        )
        return _DockerEventStream(stream)

    # --- images -------------------------------------------------------------------------------
    def image_present(self, ref: str) -> bool:
        try:
            self._call(
                f"inspect image {ref}", lambda api: api.inspect_image(ref), not_found=NoSuchImage
            )
        except NoSuchImage:
            return False
        return True

    def pull(self, ref: str) -> None:
        """Docker reports a pull that fails once under way (a registry dropping mid-layer) in the
        progress stream of an HTTP 200, so the stream is read to its end and checked."""
        parsed = parse_image(ref)

        def pull(api: Any) -> None:
            for message in api.pull(
                parsed.repository, tag=parsed.pull_tag, stream=True, decode=True
            ):
                if isinstance(message, Mapping) and message.get("error"):
                    raise EngineError(f"pull {ref}: {safe_text(message['error'])}")

        self._call(f"pull {ref}", pull, not_found=NoSuchImage)


# mypy proves here that DockerEngine keeps the port's contract.
_CONFORMS: type[Engine] = DockerEngine
