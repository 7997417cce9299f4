"""DockerEngine against the suite's real dockerd: what Docker really answers, as our types.

The unit tests (tests/unit/test_engine_errors.py) hold the translation table; these prove the
table matches what dockerd sends for the requests the supervisor makes, and that the event
stream is typed and can be cut from another thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from planctond.config.loader import load_config_text
from planctond.engine.docker_engine import DockerEngine
from planctond.engine.errors import (
    Conflict,
    EngineError,
    EngineUnavailable,
    NoSuchContainer,
    NoSuchImage,
)
from planctond.engine.port import ContainerEvent
from planctond.engine.spec import PilotSpec, build_spec
from tests.support.scope import ContainerScope
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker]

UNKNOWN = "0123456789ab" * 5 + "cdef"  # a well-formed id no container has


@pytest.fixture
def engine(docker_engine: Any, container_scope: ContainerScope) -> Iterator[DockerEngine]:
    """An engine of a test-only instance: the scope removes its pilots afterwards."""
    instance = f"test-{container_scope.case_id}"
    container_scope.track_instances([instance])
    eng = DockerEngine(docker_engine.url, instance=instance, timeout=30)
    yield eng
    eng.reset()


def spec(engine: DockerEngine, command: str, image: str = "busybox:latest") -> PilotSpec:
    text = f"""
pools:
  p:
    image: {image}
    pull: never
    command: {command}
    cpus: 0.2
    memory: 64M
"""
    pool = load_config_text(text).pools[0]
    return build_spec(pool, instance=engine.instance, cgroup_parent=None)


def state(engine: DockerEngine, cid: str) -> str:
    return next((r.state for r in engine.list_pilots() if r.id == cid), "")


def test_missing_image(engine: DockerEngine, busybox_image: str) -> None:
    missing = "planctond-test/absent:nope"
    with pytest.raises(NoSuchImage, match="No such image"):
        engine.create_and_start(spec(engine, '["true"]', image=missing))
    assert engine.list_pilots() == []
    assert engine.image_present(missing) is False
    assert engine.image_present(busybox_image) is True


def test_unknown_container(engine: DockerEngine) -> None:
    for request in (
        lambda: engine.pause(UNKNOWN),
        lambda: engine.unpause(UNKNOWN),
        lambda: engine.signal(UNKNOWN, "SIGTERM"),
        lambda: engine.update_resources(UNKNOWN, {"nano_cpus": 100_000_000}),
    ):
        with pytest.raises(NoSuchContainer, match="No such container"):
            request()
    engine.remove(UNKNOWN)  # already gone: nothing to do


def test_requests_the_state_forbids(engine: DockerEngine, busybox_image: str) -> None:
    """What dockerd 20.10 answers, as the supervisor sees it."""
    cid = engine.create_and_start(spec(engine, '["sleep", "600"]'))
    engine.pause(cid)
    with pytest.raises(Conflict, match="is already paused"):  # 409
        engine.pause(cid)
    engine.unpause(cid)
    with pytest.raises(EngineError, match="is not paused") as caught:
        engine.unpause(cid)
    # dockerd 20.10 answers 500, not 409, to thawing a running container: not a Conflict.
    assert type(caught.value) is EngineError
    engine.signal(cid, "SIGKILL")
    wait_for(lambda: state(engine, cid) == "exited", 15, message="the pilot to exit")
    with pytest.raises(Conflict, match="is not running"):
        engine.signal(cid, "SIGTERM")
    with pytest.raises(Conflict, match="is not running"):
        engine.pause(cid)
    [record] = engine.list_pilots()
    assert record.exit_code == 137
    engine.remove(cid)
    engine.remove(cid)
    assert engine.list_pilots() == []


@pytest.mark.parametrize(
    "url", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"], ids=["unix", "tcp"]
)
@pytest.mark.filterwarnings("ignore:urllib.parse.splitnport:DeprecationWarning")  # docker-py 5
def test_unreachable_engine(url: str) -> None:
    eng = DockerEngine(url, instance="x", timeout=5)
    with pytest.raises(EngineUnavailable, match="cannot connect to Docker"):
        eng.info()
    with pytest.raises(EngineUnavailable):
        eng.list_pilots()


def test_event_stream(
    engine: DockerEngine, busybox_image: str, container_scope: ContainerScope
) -> None:
    events = engine.events(since=time.time())
    got: list[ContainerEvent] = []
    reader = threading.Thread(target=lambda: got.extend(events), daemon=True)
    reader.start()
    try:
        quick = spec(engine, '["sh", "-c", "exit 3"]')
        quick_id = engine.create_and_start(quick)
        slow_id = engine.create_and_start(spec(engine, '["sleep", "600"]'))
        container_scope.run(busybox_image, ["true"])  # not a pilot of ours: no events
        engine.signal(slow_id, "SIGKILL")

        def exit_codes() -> dict[str, int | None]:
            return {e.id: e.exit_code for e in got if e.action == "die"}

        wait_for(lambda: len(exit_codes()) == 2, 20, message=lambda: f"two deaths in {got}")
    finally:
        events.close()  # from this thread, while the reader is blocked on the socket
        reader.join(5)
    assert not reader.is_alive()
    assert exit_codes() == {quick_id: 3, slow_id: 137}
    start = next(e for e in got if e.id == quick_id and e.action == "start")
    assert start.name == quick.name and start.attrs["image"] == "busybox:latest"
    assert start.exit_code is None
