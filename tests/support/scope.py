"""Each test's own corner of the engine: a unique label and name prefix, and a cleanup that
removes exactly what the test created (or what the daemons it ran created), nothing else.

That matters because the daemon's own promise is "never touch containers that are not yours":
the tests must keep the same discipline, and must not leak pilots into the next test."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from planctond import constants as C

LABEL_RUN = "test.planctond.run"
LABEL_CASE = "test.planctond.case"

_counter = itertools.count(1)
RUN_ID = f"{os.getpid():x}"


@dataclass
class ContainerScope:
    client: Any  # docker.DockerClient
    case_id: str
    prefix: str  # for container names and pool names: unique per test in this run
    tracked: set[str] = field(default_factory=set)
    instance_ids: set[str] = field(default_factory=set)

    @classmethod
    def new(cls, client: Any) -> ContainerScope:
        n = next(_counter)
        case_id = f"{RUN_ID}-{n}"
        return cls(client=client, case_id=case_id, prefix=f"t{RUN_ID}x{n}")

    @property
    def labels(self) -> dict[str, str]:
        """Put these on every container the test creates (and in pools' `labels:`)."""
        return {LABEL_RUN: RUN_ID, LABEL_CASE: self.case_id}

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def track(self, container_or_id: Any) -> None:
        """Remove this container at cleanup even if it carries no label of ours."""
        self.tracked.add(getattr(container_or_id, "id", container_or_id))

    def track_instances(self, ids: Iterable[str]) -> None:
        """Pilots of these planctond instances were created by this test's daemons."""
        self.instance_ids.update(i for i in ids if i)

    def run(self, image: str, command: Any = None, **kwargs: Any) -> Any:
        """client.containers.run, detached, labelled and tracked."""
        labels = {**self.labels, **kwargs.pop("labels", {})}
        c = self.client.containers.run(image, command, detach=True, labels=labels, **kwargs)
        self.track(c)
        return c

    def containers(self) -> list[str]:
        """Ids of every container this scope owns, running or not."""
        found: set[str] = set()
        for flt in (
            {"label": f"{LABEL_CASE}={self.case_id}"},
            {"name": self.prefix},
            *({"label": f"{C.LABEL_INSTANCE}={i}"} for i in sorted(self.instance_ids)),
        ):
            for c in list_containers(self.client, flt):
                # Docker's name filter is a substring match: keep only true prefixes.
                if "name" in flt and not any(
                    n.lstrip("/").startswith(self.prefix) for n in c.get("Names") or ()
                ):
                    continue
                found.add(c["Id"])
        for cid in self.tracked - found:
            with contextlib.suppress(docker.errors.NotFound):
                found.add(self.client.api.inspect_container(cid)["Id"])
        return sorted(found)

    def cleanup(self) -> list[str]:
        removed = []
        for cid in self.containers():
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.client.api.remove_container(cid, force=True)
                removed.append(cid)
        return removed


def list_containers(client: Any, filters: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers as the engine lists them (Id, Names, State, Labels...), all states.

    The low-level call on purpose: docker-py's `containers.list()` inspects each container after
    listing and raises NotFound when one is removed in between, which the daemon under test does
    all the time."""
    result: list[dict[str, Any]] = client.api.containers(all=True, filters=filters)
    return result
