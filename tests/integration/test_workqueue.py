"""Pilots doing real work: cctools WorkQueue workers, started by planctond, run a makeflow.

The pilot model end to end: the manager (makeflow -T wq) runs on the host's loopback, planctond
keeps worker containers (network_mode: host) coming, each fetches tasks, exits when the manager
is gone, and is replaced. Nothing here is simulated: Debian's coop-computing-tools, an image built
locally from it, the daemon as a real process, the suite's own dockerd.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from planctond import constants as C
from tests.support.docker_engine import DIE_WITH_PARENT
from tests.support.scope import ContainerScope, list_containers
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]

N_TASKS = 6
MAKEFLOW_TIMEOUT = 300.0


def write_makeflow(directory: Path, n_tasks: int) -> None:
    """n independent rules, each a short task on a worker, and a gather rule depending on all."""
    outs = [f"out.{i}" for i in range(1, n_tasks + 1)]
    rules = [f"{out}:\n\tsleep 2; echo {i} > {out}\n" for i, out in enumerate(outs, 1)]
    rules.append(f"all.txt: {' '.join(outs)}\n\tcat {' '.join(outs)} > all.txt\n")
    (directory / "Makeflow").write_text("\n".join(rules))


def pool_config(scope: ContainerScope, image: str, port: int) -> str:
    # JSON is YAML: no quoting surprises in the command or the labels.
    pool: dict[str, Any] = {
        "image": image,
        "pull": "never",
        "command": [
            "work_queue_worker",
            "--single-shot",
            "-t",
            "30",
            "--cores",
            "1",
            "127.0.0.1",
            str(port),
        ],
        "network_mode": "host",
        # Small CPU share per pilot so two fit even while other work loads this shared machine.
        "cpus": 0.1,
        "memory": "512M",
        "max_pilots": "2",
        "per_tick": 2,
        "stop_grace": "5s",
        "labels": scope.labels,
        # A worker that finds no manager within -t exits 0: no work, not a failure.
        "nowork_exit_codes": [0],
    }
    config = {
        "tick": "1s",
        # Owner reserve 0 and a long grace_kill: the test is about pilots doing work, not about
        # giving way (other tests cover that), and this machine is shared and noisy.
        "owner": {"reserve": 0, "grace_kill": "1h", "grace_spawn": "2s", "freeze": "30s"},
        "pools": {scope.prefix: pool},
    }
    return json.dumps(config, indent=2)


def pilots(client: Any, pool: str) -> dict[str, str]:
    """id -> status of this pool's pilots, found by label like the daemon finds them."""
    flt = {"label": [f"{C.LABEL_MANAGED}=1", f"{C.LABEL_POOL}={pool}"]}
    return {c["Id"]: c["State"] for c in list_containers(client, flt)}


def test_makeflow_completes_on_planctond_wq_pilots(
    tmp_path: Path,
    wq_image: str,
    docker_client: Any,
    container_scope: ContainerScope,
    daemon_factory: Any,
) -> None:
    for tool in ("makeflow", "work_queue_worker"):
        assert shutil.which(tool), f"{tool} missing: contrib/devstack/deps.sh installs it"
    workflow = tmp_path / "workflow"
    workflow.mkdir()
    write_makeflow(workflow, N_TASKS)
    port_file = workflow / "port"
    manager_log = (tmp_path / "makeflow.log").open("w")
    manager = subprocess.Popen(
        [*DIE_WITH_PARENT, "makeflow", "-T", "wq", "-Z", str(port_file), "Makeflow"],
        cwd=workflow,
        stdin=subprocess.DEVNULL,
        stdout=manager_log,
        stderr=subprocess.STDOUT,
    )
    try:

        def port_written() -> str:
            return port_file.read_text().strip() if port_file.exists() else ""

        port = int(
            wait_for(port_written, timeout=60, message="makeflow to write the port it listens on")
        )
        pool = container_scope.prefix
        daemon = daemon_factory(
            pool_config(container_scope, wq_image, port), extra_args=("--no-dbus",)
        )

        seen: dict[str, float] = {}  # pilot id -> when first seen
        gone: set[str] = set()
        deadline = time.monotonic() + MAKEFLOW_TIMEOUT
        while manager.poll() is None:
            assert daemon.running(), f"planctond exited early:\n{daemon.tail()}"
            assert time.monotonic() < deadline, (
                f"makeflow did not finish in {MAKEFLOW_TIMEOUT:.0f} s:\n"
                f"{(tmp_path / 'makeflow.log').read_text()}\n--- planctond:\n{daemon.tail()}"
            )
            now = pilots(docker_client, pool)
            for cid in now:
                seen.setdefault(cid, time.monotonic())
            gone.update(seen.keys() - now.keys())
            assert len(now) <= 2, f"max_pilots 2 exceeded: {now}"
            time.sleep(0.2)
        manager_log.flush()
        log = (tmp_path / "makeflow.log").read_text()
        assert manager.returncode == 0, f"makeflow failed:\n{log}"
        assert "nothing left to do" in log, log
        for i in range(1, N_TASKS + 1):
            assert (workflow / f"out.{i}").read_text() == f"{i}\n"
        assert (workflow / "all.txt").read_text().split() == [str(i) for i in range(1, N_TASKS + 1)]
        during = set(seen)
        assert during, "makeflow completed but no pilot was ever seen"

        # The manager is gone: single-shot workers exit, planctond removes and replaces them.
        def came_and_went() -> bool:
            now = pilots(docker_client, pool)
            for cid in now:
                seen.setdefault(cid, time.monotonic())
            gone.update(seen.keys() - now.keys())
            return bool(gone & during) and len(seen) >= len(during) + 1

        wait_for(
            came_and_went,
            timeout=90,
            interval=0.2,
            message=lambda: (
                f"pilots of the workflow to exit and be replaced: seen {len(seen)}, "
                f"gone {len(gone)}\n{daemon.tail()}"
            ),
        )
        assert daemon.stop(timeout=60) == 0
        # Stopping the daemon stops its pilots by default.
        left = {cid: st for cid, st in pilots(docker_client, pool).items() if st == "running"}
        assert left == {}, left
    finally:
        if manager.poll() is None:
            manager.kill()
            manager.wait(30)
        manager_log.close()
