"""The engine's one boundary for library exceptions, with docker-py's and requests' own exception
objects (made the way docker-py makes them from an HTTP answer), and Docker's event dicts in
both shapes the engine has sent over the years. No dockerd: tests/integration/test_docker_engine.py
checks the same against a real one."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest
import requests
import urllib3.exceptions

from planctond import constants as C
from planctond.config.loader import load_config_text
from planctond.engine import docker_engine
from planctond.engine.docker_engine import DockerEngine, _translate, container_event
from planctond.engine.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    NoSuchContainer,
    NoSuchImage,
)
from planctond.engine.port import ContainerEvent
from planctond.engine.spec import PilotSpec, build_spec

CID = "9d3f" + "c" * 60
RealAPIClient = docker.APIClient  # before the `made` fixture stands in for it
REASONS = {404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}


def http_error(status: int, message: str, path: str = "/containers/x/pause") -> Exception:
    """What docker-py raises for an HTTP error answer of dockerd (its own classification)."""
    response = requests.Response()
    response.status_code = status
    response.reason = REASONS[status]
    response.url = f"http+docker://localhost/v1.41{path}"
    response._content = json.dumps({"message": message}).encode()
    try:
        docker.errors.create_api_error_from_http_exception(
            requests.exceptions.HTTPError(response=response)
        )
    except docker.errors.APIError as exc:
        return exc
    raise AssertionError("docker-py raised nothing")


# --- the translation table ----------------------------------------------------------------------
TABLE = [
    # dockerd 20.10's real answers (see tests/integration/test_docker_engine.py)
    (http_error(404, "No such image: busybox:nope"), NoSuchImage),
    (http_error(404, "No such container: deadbeef"), NoSuchContainer),
    (http_error(409, f"Container {CID} is already paused"), Conflict),
    (http_error(409, f"removal of container {CID} is already in progress"), Conflict),
    (http_error(409, 'Conflict. The container name "/p" is already in use'), Conflict),
    (http_error(500, f"Container {CID} is not paused"), EngineError),
    (docker.errors.APIError("no response at all"), EngineError),
    (docker.errors.ImageNotFound("gone"), NoSuchImage),
    (docker.errors.NotFound("gone"), NoSuchContainer),
    (requests.exceptions.ConnectionError("Connection aborted."), EngineUnavailable),
    (requests.exceptions.ReadTimeout("Read timed out. (read timeout=20)"), EngineUnavailable),
    (urllib3.exceptions.ProtocolError("Connection broken"), EngineUnavailable),
    (FileNotFoundError(2, "No such file or directory"), EngineUnavailable),
    (docker.errors.DockerException("Error while fetching server API version"), EngineUnavailable),
    (docker.errors.InvalidVersion("init param is not supported in API < 1.25"), EngineError),
    (docker.errors.InvalidArgument("bad"), EngineError),
    (TypeError("create_container() got an unexpected keyword argument"), EngineError),
]


@pytest.mark.parametrize(("exc", "expected"), TABLE, ids=lambda v: type(v).__name__)
def test_translation_table(exc: Exception, expected: type[EngineError]) -> None:
    err = _translate(exc, "freeze 9d3fcccccccc")
    assert type(err) is expected
    assert str(err).startswith("freeze 9d3fcccccccc: ")


def test_messages_carry_dockers_explanation() -> None:
    err = _translate(http_error(409, f"Container {CID} is already paused"), "freeze x")
    assert str(err) == f"freeze x: Container {CID} is already paused"


def test_what_a_404_means_is_the_callers() -> None:
    """A 404 docker-py did not see as an image means what was asked about (a missing tag on
    pull, a missing network on create), not always a container."""
    manifest = http_error(404, "manifest for busybox:nope not found", "/images/create")
    assert type(manifest) is docker.errors.NotFound
    assert type(_translate(manifest, "pull", not_found=NoSuchImage)) is NoSuchImage
    assert type(_translate(manifest, "create", not_found=EngineError)) is EngineError
    image = http_error(404, "No such image: busybox:nope", "/containers/create")
    assert type(_translate(image, "create", not_found=EngineError)) is NoSuchImage


# --- DockerEngine over a stand-in for docker-py's APIClient -------------------------------------
class FakeAPI:
    """Answers or raises per method; records the calls made."""

    api_version = "1.41"

    def __init__(self, **behaviour: Any) -> None:
        self.behaviour = behaviour
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.closed = False

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            what = self.behaviour.get(name)
            if isinstance(what, BaseException):
                raise what
            return what(*args, **kwargs) if callable(what) else what

        return method

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """docker.APIClient(...) hands out the next of these (an object or an exception)."""
    queue_: list[Any] = []

    def client(**kwargs: Any) -> Any:
        nxt = queue_.pop(0)
        if isinstance(nxt, BaseException):
            raise nxt
        return nxt

    monkeypatch.setattr(docker_engine.docker, "APIClient", client)
    return queue_


def engine() -> DockerEngine:
    return DockerEngine("unix:///run/test-docker.sock", instance="inst", timeout=5)


def pilot_spec(**pool_keys: str) -> PilotSpec:
    extra = "".join(f"    {k}: {v}\n" for k, v in pool_keys.items())
    text = f"pools:\n  p:\n    image: busybox:latest\n    pull: never\n{extra}"
    return build_spec(load_config_text(text).pools[0], instance="inst", cgroup_parent=None)


def test_remove_of_a_gone_or_going_container_is_fine(made: list[Any]) -> None:
    made.append(FakeAPI(remove_container=http_error(404, f"No such container: {CID}")))
    engine().remove(CID)
    made.append(FakeAPI(remove_container=http_error(409, "removal already in progress")))
    engine().remove(CID)
    made.append(FakeAPI(remove_container=http_error(500, "driver failed")))
    with pytest.raises(EngineError, match="remove 9d3fcccccccc: driver failed"):
        engine().remove(CID)


def test_image_present(made: list[Any]) -> None:
    made.append(FakeAPI(inspect_image={"Id": "sha256:1"}))
    assert engine().image_present("busybox:latest") is True
    made.append(FakeAPI(inspect_image=http_error(404, "No such image: busybox:nope")))
    assert engine().image_present("busybox:nope") is False
    made.append(FakeAPI(inspect_image=http_error(404, "reference does not exist")))
    assert engine().image_present("busybox:nope") is False
    made.append(FakeAPI(inspect_image=requests.exceptions.ConnectionError("refused")))
    with pytest.raises(EngineUnavailable):
        engine().image_present("busybox:latest")


def test_unavailable_drops_the_connection(made: list[Any]) -> None:
    first = FakeAPI(pause=requests.exceptions.ReadTimeout("read timed out"))
    second = FakeAPI(pause=None)
    made += [first, second]
    e = engine()
    with pytest.raises(EngineUnavailable, match="freeze 9d3fcccccccc: read timed out"):
        e.pause(CID)
    assert first.closed
    e.pause(CID)  # reconnected
    assert second.calls == [("pause", (CID,), {})]
    assert e.calls == 2


def test_no_connection_is_unavailable(made: list[Any]) -> None:
    made.append(docker.errors.DockerException("Error while fetching server API version"))
    with pytest.raises(EngineUnavailable, match="cannot connect to Docker"):
        engine().info()


def test_an_api_too_old_for_the_spec_is_an_engine_error(made: list[Any]) -> None:
    """docker-py refuses `init` below API 1.25 before sending anything: the pool's settings
    against this engine, so not EngineUnavailable (which would make the daemon wait for a
    Docker that is there)."""
    made.append(RealAPIClient(base_url="unix:///run/test-docker.sock", version="1.24"))
    with pytest.raises(EngineError) as caught:
        engine().create_and_start(pilot_spec())
    assert type(caught.value) is EngineError
    assert isinstance(caught.value.__cause__, docker.errors.InvalidVersion)
    assert "API 1.24" in str(caught.value) and "init" in str(caught.value)


def test_a_missing_image_on_create(made: list[Any]) -> None:
    made.append(
        FakeAPI(
            create_host_config=dict,
            create_container=http_error(404, "No such image: busybox:latest"),
        )
    )
    with pytest.raises(NoSuchImage, match="create pilot"):
        engine().create_and_start(pilot_spec())


def test_an_unstartable_pilot_is_removed(made: list[Any]) -> None:
    api = FakeAPI(
        create_host_config=dict,
        create_container={"Id": CID},
        start=http_error(500, "OCI runtime create failed"),
        remove_container=None,
    )
    made.append(api)
    with pytest.raises(EngineError, match=r"start pilot .*OCI runtime create failed"):
        engine().create_and_start(pilot_spec())
    assert [c[0] for c in api.calls][1:] == ["create_container", "start", "remove_container"]


def test_pull_reads_the_progress_stream_for_errors(made: list[Any]) -> None:
    ok = [{"status": "Pulling from library/busybox"}, {"status": "Downloaded newer image"}]
    broken = [{"status": "Pulling fs layer"}, {"errorDetail": {}, "error": "unexpected EOF"}]
    made += [
        FakeAPI(pull=lambda *a, **kw: iter(ok)),
        FakeAPI(pull=lambda *a, **kw: iter(broken)),
        FakeAPI(pull=http_error(404, "manifest for busybox:nope not found", "/images/create")),
    ]
    engine().pull("busybox:latest")
    with pytest.raises(EngineError, match=r"^pull busybox:latest: unexpected EOF$") as caught:
        engine().pull("busybox:latest")
    assert type(caught.value) is EngineError
    with pytest.raises(NoSuchImage):
        engine().pull("busybox:nope")


# --- events ------------------------------------------------------------------------------------
ATTRS = {
    C.LABEL_MANAGED: "1",
    C.LABEL_INSTANCE: "inst",
    "image": "busybox:latest",
    "name": "plancton-p-1234abcd",
}


def test_event_current_shape() -> None:
    raw = {
        "status": "die",
        "id": CID,
        "from": "busybox:latest",
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": CID, "Attributes": {**ATTRS, "exitCode": "3"}},
        "scope": "local",
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }
    ev = container_event(raw)
    assert ev == ContainerEvent("die", CID, {**ATTRS, "exitCode": "3"}, exit_code=3)
    assert ev.name == "plancton-p-1234abcd"


def test_event_without_the_old_keys() -> None:
    raw = {"Type": "container", "Action": "start", "Actor": {"ID": CID, "Attributes": ATTRS}}
    assert container_event(raw) == ContainerEvent("start", CID, ATTRS)


def test_event_old_shape() -> None:
    ev = container_event({"status": "start", "id": CID, "from": "busybox:latest", "time": 1})
    assert ev == ContainerEvent("start", CID, {"image": "busybox:latest"})
    assert ev.name == CID[:12]


@pytest.mark.parametrize("code", ["", "x", "1.5", None])
def test_event_bad_exit_code(code: str | None) -> None:
    attrs = {**ATTRS, "exitCode": code}
    ev = container_event(
        {"Type": "container", "Action": "die", "Actor": {"ID": CID, "Attributes": attrs}}
    )
    assert ev is not None and ev.action == "die" and ev.exit_code is None


def test_event_without_exit_code() -> None:
    ev = container_event({"Action": "die", "Actor": {"ID": CID, "Attributes": ATTRS}})
    assert ev is not None and ev.exit_code is None


@pytest.mark.parametrize(
    "raw",
    [
        {"status": "start", "from": "busybox"},  # no id
        {"Type": "container", "Action": "start", "Actor": {"ID": "", "Attributes": ATTRS}},
        {"Type": "container", "Action": "start", "Actor": None},
        {"Type": "container", "id": CID},  # no action
        {"Type": "network", "Action": "connect", "Actor": {"ID": "n1", "Attributes": {}}},
        ["not", "a", "dict"],
        None,
    ],
)
def test_events_that_name_no_container_are_skipped(raw: object) -> None:
    assert container_event(raw) is None


class BlockingStream:
    """Like docker-py's CancellableStream: next() blocks until Docker sends; close() from
    another thread breaks the read (here: with what a shut socket raises)."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = self.q.get(timeout=10)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.q.put(ValueError("I/O operation on closed file"))


def test_event_stream_translates_and_closes_from_another_thread(made: list[Any]) -> None:
    stream = BlockingStream()
    api = FakeAPI(events=stream)
    made.append(api)
    events = engine().events(since=1700000000.0)
    assert api.calls == [
        (
            "events",
            (),
            {
                "since": 1700000000.0,
                "filters": {
                    "label": [f"{C.LABEL_MANAGED}=1", f"{C.LABEL_INSTANCE}=inst"],
                    "type": ["container"],
                },
                "decode": True,
            },
        )
    ]
    got: list[ContainerEvent] = []
    reader = threading.Thread(target=lambda: got.extend(events))
    reader.start()
    stream.q.put({"status": "start", "id": CID})
    stream.q.put({"status": "start"})  # skipped: no id
    stream.q.put({"Action": "die", "Actor": {"ID": CID, "Attributes": {"exitCode": "0"}}})
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        reader.join(0.01)
    events.close()
    reader.join(5)
    assert not reader.is_alive()
    assert got == [
        ContainerEvent("start", CID),
        ContainerEvent("die", CID, {"exitCode": "0"}, exit_code=0),
    ]
    events.close()  # twice is fine


def test_event_stream_errors_are_ours(made: list[Any]) -> None:
    stream = BlockingStream()
    made.append(FakeAPI(events=stream))
    events = engine().events()
    stream.q.put(urllib3.exceptions.ReadTimeoutError(None, "/events", "read timed out"))
    with pytest.raises(EngineUnavailable, match="follow Docker events"):
        list(events)


def test_event_stream_ends_with_dockers(made: list[Any]) -> None:
    made.append(FakeAPI(events=iter([{"status": "start", "id": CID}])))
    assert [e.action for e in engine().events()] == ["start"]
