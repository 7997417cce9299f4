"""The contenders that share the host with the owner, and how each is started and removed.

Every contender's pilots are the same spinning busybox container (built locally, never pulled)
that also holds a fixed amount of memory, so the memory hog has something to take back:

  trap 'exit 0' TERM; dd if=/dev/zero bs=<hold> count=1 iflag=fullblock | sleep ... &
  while :; do :; done

(dd keeps its buffer, filled from /dev/zero, while it waits on a pipe nobody reads; the loop
spins one core; SIGTERM ends it at once, as a batch system's pilot would end.)

Each contender's pilots live under a parent cgroup of their own, made for that one replay: its
counter is their CPU (it keeps what stopped pilots used), and no other container on the host is
ever counted. For the Docker and Plancton contenders it is an ordinary cgroup at the top level,
weighted like Docker's own `/docker`; planctond makes its own idle, as it does its default one.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.harness import (
    BENCH_LABEL_KEY,
    IMAGE,
    REAL_DAEMON,
    remove_labelled,
    start_daemon,
)
from bench.owner_plancton06 import Params, Plancton06
from planctond.engine.cgroup_parent import remove_idle_parent
from planctond.sensors.cgroups import CgroupLayout

CONTENDER_LABEL = "planctond.bench.owner"
MIB = 1024 * 1024
# Above what a pilot holds, for its own shell, dd and sleep (planctond pools, Plancton's
# max_dock_mem): a limit the pilot never reaches by itself.
MEMORY_SLACK = 256 * MIB
SLEEP_FOREVER = 2147483647


def pilot_command(hold_bytes: int) -> list[str]:
    hold = ""
    if hold_bytes > 0:
        mib = max(1, hold_bytes // MIB)
        hold = (
            f"dd if=/dev/zero bs={mib}M count=1 iflag=fullblock 2>/dev/null "
            f"| sleep {SLEEP_FOREVER} & "
        )
    return ["sh", "-c", f"trap 'exit 0' TERM; {hold}while :; do :; done"]


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str  # none | docker | plancton06 | planctond
    what: str  # for the report: what it is and how it is set
    cpu_shares: int | None = None
    overlay: dict[str, Any] = field(default_factory=dict)  # planctond config over the base


CONTENDERS: tuple[Spec, ...] = (
    Spec("none", "none", "no pilots: the baseline, and the idle CPU there is to harvest"),
    Spec(
        "docker",
        "docker",
        "`docker run --restart always`, one pilot per core, Docker's defaults (shares 1024)",
    ),
    Spec(
        "docker-shares2",
        "docker",
        "the same with `--cpu-shares 2`",
        cpu_shares=2,
    ),
    Spec(
        "plancton-0.6",
        "plancton06",
        "Plancton 0.6's rule (bench/owner_plancton06.py): main_sleep 30 s, grace_kill 120 s, "
        "grace_spawn 60 s, 1-CPU quota per pilot, max_docks ncpus",
    ),
    Spec(
        "planctond",
        "planctond",
        "planctond with its defaults (`give_way: pressure`, `reserve: 0`, `max_pilots: ncpus`)",
    ),
    Spec(
        "planctond-usage",
        "planctond",
        "planctond with the defaults it had before this benchmark: `give_way: usage` (Plancton's "
        "rule), `reserve: 0.5`, `max_pilots: max(1, ncpus - 2)`",
        overlay={
            "owner": {"give_way": "usage", "reserve": 0.5},
            "pools": {"default": {"max_pilots": "max(1, ncpus - 2)"}},
        },
    ),
    Spec(
        "planctond-owner",
        "planctond",
        "planctond tuned for the owner: `give_way: usage`, `reserve: 0.5`, `tick: 1s`, "
        "`grace_kill: 2s`, `freeze: 5s`, `grace_spawn: 15s`, `reserve_memory: 1G`",
        overlay={
            "tick": "1s",
            "owner": {
                "give_way": "usage",
                "reserve": 0.5,
                "grace_kill": "2s",
                "freeze": "5s",
                "grace_spawn": "15s",
                "reserve_memory": "1G",
            },
        },
    ),
)
BY_NAME = {s.name: s for s in CONTENDERS}


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on `base`, mappings key by key (as planctond merges its config layers)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def planctond_config(
    spec: Spec, *, parent: str, run_id: str, hold_bytes: int, labels: dict[str, str]
) -> str:
    """The contender's config: only what the benchmark must set (its pilots, their memory
    limit, where their cgroup is, the labels it finds them by), then the contender's overlay."""
    base: dict[str, Any] = {
        "docker": {"cgroup_parent": parent},
        "pools": {
            "default": {
                "image": IMAGE,
                "pull": "never",
                "command": pilot_command(hold_bytes),
                "memory": f"{(hold_bytes + MEMORY_SLACK) // MIB}M",
                "labels": {BENCH_LABEL_KEY: run_id, **labels},
            }
        },
    }
    return yaml.safe_dump(merged(base, spec.overlay), sort_keys=False)


@dataclass
class Bench:
    """What every contender is started with."""

    api: Any  # docker.APIClient
    url: str
    run_id: str
    workdir: Path
    ncpus: int
    hold_bytes: int
    layout: CgroupLayout
    driver: str


@dataclass
class Running:
    """A started contender; `stop` removes everything it made."""

    spec: Spec
    parent: str
    stop_fn: Callable[[], list[str]]
    notes: list[str] = field(default_factory=list)

    def stop(self) -> list[str]:
        return self.stop_fn()


def _create(bench: Bench, parent: str, labels: dict[str, str], host: dict[str, Any]) -> str:
    host_config = bench.api.create_host_config(cgroup_parent=parent, **host)
    created = bench.api.create_container(
        IMAGE,
        pilot_command(bench.hold_bytes),
        labels={BENCH_LABEL_KEY: bench.run_id, **labels},
        host_config=host_config,
    )
    return str(created["Id"])


def remove_parent(bench: Bench, parent: str, timeout: float = 20.0) -> None:
    """The replay's parent cgroup, once Docker has removed its pilots' cgroups."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            remove_idle_parent(bench.layout, parent, bench.driver)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start(spec: Spec, bench: Bench, parent: str, tag: str) -> Running:
    labels = {CONTENDER_LABEL: tag}

    def cleanup(extra: Callable[[], list[str]] = list) -> Callable[[], list[str]]:
        def stop() -> list[str]:
            notes = extra()
            remove_labelled(bench.api, bench.run_id)
            with contextlib.suppress(Exception):
                remove_parent(bench, parent)
            return notes

        return stop

    if spec.kind == "none":
        return Running(spec, parent, list)
    if spec.kind == "docker":
        host: dict[str, Any] = {"restart_policy": {"Name": "always"}}
        if spec.cpu_shares is not None:
            host["cpu_shares"] = spec.cpu_shares
        for _ in range(bench.ncpus):
            bench.api.start(_create(bench, parent, labels, host))
        return Running(spec, parent, cleanup())
    if spec.kind == "plancton06":
        params = Params(max_docks=bench.ncpus, max_dock_mem=bench.hold_bytes + MEMORY_SLACK)
        loop = Plancton06(
            bench.api,
            params,
            bench.ncpus,
            {BENCH_LABEL_KEY: bench.run_id, **labels},
            lambda extra: _create(bench, parent, labels, extra),
        )
        loop.start()

        def stop_loop() -> list[str]:
            loop.stop()
            notes = [f"plancton-0.6: {loop.launches} launched, {loop.kills} killed"]
            notes += [f"plancton-0.6 error: {e}" for e in loop.errors[:3]]
            return notes

        return Running(spec, parent, cleanup(stop_loop))
    if spec.kind == "planctond":
        config = planctond_config(
            spec, parent=parent, run_id=bench.run_id, hold_bytes=bench.hold_bytes, labels=labels
        )
        daemon = start_daemon(tag, bench.workdir, config, bench.url, module=REAL_DAEMON)

        def stop_daemon() -> list[str]:
            alive = daemon.alive()
            daemon.stop()
            lines = daemon.log_path.read_text(errors="replace").splitlines()
            notes = [
                f"{spec.name}: {ln.split(' ', 2)[-1][:200]}"
                for ln in lines
                if " WARNING " in ln or " ERROR " in ln
            ]
            if not alive:
                notes.append(f"{spec.name}: the daemon had exited: {daemon.tail(5)}")
            return notes

        return Running(spec, parent, cleanup(stop_daemon))
    raise ValueError(f"unknown contender kind {spec.kind!r}")
