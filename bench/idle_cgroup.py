#!/usr/bin/python3
"""How much slower is the owner's work when pilots spin next to it?

The owner: one process per core, each hashing a fixed amount of data (sha256), so it loads every
core (an owner on one core shows nothing on v1, where a spare core absorbs the pilots). Timed as
wall seconds until all finish. Contenders, interleaved round after round so the shared VM's drift
hits them alike:

  alone    no pilot running
  default  2 spinning pilots, Docker's default cgroup and shares
  shares2  2 spinning pilots with --cpu-shares 2
  idle     2 spinning pilots under planctond's idle parent cgroup (cpu.idle=1 / lowest weight)

Pilots are created once, and started/killed around their contender's runs. (Not paused: with
the host busy, `docker pause` of pilots under the idle parent fails with "unable to freeze",
because a starved SCHED_IDLE task does not get to run into the freezer before runc gives up.)
The idle parent gets a bench-only name and is removed at the end, with the bench's containers.

    sudo bench/idle_cgroup.py [--rounds 9] [--seconds 1.5] [--docker-url unix:///run/docker.sock]

Writes the results into bench/RESULTS.md under "## Idle parent cgroup" (replacing that section).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import docker.errors  # noqa: E402

from planctond.engine.cgroup_parent import ensure_idle_parent, remove_idle_parent  # noqa: E402
from planctond.sensors.cgroups import CgroupLayout, PilotCgroups  # noqa: E402

IMAGE = "planctond-bench/busybox:latest"
LABEL = "org.plancton.bench"
SPIN = ["sh", "-c", "while :; do :; done"]
CONFIGS = ("alone", "default", "shares2", "idle")
SECTION = "## Idle parent cgroup"
BLOCK = b"x" * 4096


def _hash_work(iterations: int) -> None:
    h = hashlib.sha256()
    for _ in range(iterations):
        h.update(BLOCK)


def owner_run(nproc: int, iterations: int) -> float:
    """Wall seconds for `nproc` processes to each hash `iterations` blocks."""
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_hash_work, args=(iterations,)) for _ in range(nproc)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def calibrate(nproc: int, seconds: float) -> int:
    probe = 20_000
    rates = [probe / owner_run(nproc, probe) for _ in range(3)]
    return max(1000, int(statistics.median(rates) * seconds))


def ensure_image(url: str) -> None:
    env = {**os.environ, "DOCKER_HOST": url}
    subprocess.run(
        ["bash", str(REPO / "contrib/devstack/images.sh"), "busybox", IMAGE], env=env, check=True
    )


def cpu_seconds(pcgs: list[tuple[PilotCgroups, str]]) -> float:
    return sum(pc.container_cpu_seconds(cid) or 0.0 for pc, cid in pcgs)


def _spin_forever() -> None:
    while True:
        pass


def freeze_under_load(pilots: list[Any], nproc: int, tries: int = 3) -> tuple[int, int]:
    """(successful, attempted) `docker pause` of running pilots while the owner loads every
    core: can planctond's freeze step work when the owner needs the CPU?"""
    ctx = mp.get_context("fork")
    owners = [ctx.Process(target=_spin_forever, daemon=True) for _ in range(nproc)]
    for p in owners:
        p.start()
    ok = 0
    try:
        time.sleep(0.5)
        for _ in range(tries):
            for c in pilots:
                try:
                    c.pause()
                except docker.errors.APIError:
                    continue
                ok += 1
                c.unpause()
    finally:
        for p in owners:
            p.kill()
            p.join()
    return ok, tries * len(pilots)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=1.5, help="owner run length when alone")
    ap.add_argument("--pilots", type=int, default=2)
    ap.add_argument(
        "--docker-url", default=os.environ.get("DOCKER_HOST", "unix:///run/docker.sock")
    )
    ap.add_argument("--results", default=str(REPO / "bench" / "RESULTS.md"))
    args = ap.parse_args(argv)

    nproc = os.cpu_count() or 1
    client = docker.DockerClient(base_url=args.docker_url, timeout=60)
    info = client.info()
    driver = info.get("CgroupDriver", "cgroupfs")
    if driver != "cgroupfs":
        print(f"this bench creates a cgroupfs parent; the engine uses {driver}", file=sys.stderr)
        return 2
    ensure_image(args.docker_url)
    layout = CgroupLayout.detect()
    tag = uuid.uuid4().hex[:8]
    parent = f"/planctond-bench-{tag}"
    try:
        setup = ensure_idle_parent(layout, parent, "cgroupfs")
    except Exception:
        with contextlib.suppress(Exception):  # what a half-done setup created
            remove_idle_parent(layout, parent)
        raise
    print(setup.describe(), flush=True)
    default_parent = "/docker"  # Docker's own parent with the cgroupfs driver
    pilots: dict[str, list[Any]] = {}
    readers: dict[str, list[tuple[PilotCgroups, str]]] = {}
    try:
        for cfg in CONFIGS[1:]:
            kwargs: dict[str, Any] = {}
            pc_parent = default_parent
            if cfg == "shares2":
                kwargs["cpu_shares"] = 2
            if cfg == "idle":
                kwargs["cgroup_parent"] = parent
                pc_parent = parent
            pc = PilotCgroups(layout, pc_parent, "cgroupfs")
            pilots[cfg] = []
            readers[cfg] = []
            for i in range(args.pilots):
                c = client.containers.create(
                    IMAGE,
                    SPIN,
                    name=f"planctond-bench-{tag}-{cfg}-{i}",
                    labels={LABEL: "idle_cgroup"},
                    **kwargs,
                )
                pilots[cfg].append(c)
                readers[cfg].append((pc, c.id))
        load_before = os.getloadavg()[0]
        iterations = calibrate(nproc, args.seconds)
        print(f"owner: {nproc} processes x {iterations} sha256 blocks of 4 KiB", flush=True)
        walls: dict[str, list[float]] = {c: [] for c in CONFIGS}
        pilot_cpu: dict[str, list[float]] = {c: [] for c in CONFIGS}
        for r in range(args.rounds):
            for cfg in CONFIGS:
                running = pilots.get(cfg, [])
                for c in running:
                    c.start()
                time.sleep(0.5)  # let the pilots take the CPU before the owner arrives
                before = cpu_seconds(readers.get(cfg, []))
                wall = owner_run(nproc, iterations)
                used = cpu_seconds(readers.get(cfg, [])) - before
                for c in running:
                    c.kill()
                for c in running:
                    c.wait(timeout=60)
                walls[cfg].append(wall)
                pilot_cpu[cfg].append(used / wall)
                print(
                    f"round {r + 1} {cfg:8s} {wall:6.2f} s  pilots {used / wall:4.2f} CPUs",
                    flush=True,
                )
        freezes: dict[str, tuple[int, int]] = {}
        for cfg in ("default", "idle"):
            for c in pilots[cfg]:
                c.start()
            freezes[cfg] = freeze_under_load(pilots[cfg], nproc)
            for c in pilots[cfg]:
                c.kill()
            for c in pilots[cfg]:
                c.wait(timeout=60)
            print(f"freeze under load {cfg}: {freezes[cfg][0]}/{freezes[cfg][1]} pauses worked")
    finally:
        for cs in pilots.values():
            for c in cs:
                with contextlib.suppress(Exception):
                    c.remove(force=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                remove_idle_parent(layout, parent)
                break
            except Exception:
                time.sleep(0.2)
        client.close()

    load_after = os.getloadavg()[0]
    base = statistics.median(walls["alone"])
    rows = []
    for cfg in CONFIGS:
        med = statistics.median(walls[cfg])
        # Per-round ratios: each run against the "alone" run of its own round, so that the
        # shared machine's drift between rounds cancels out.
        ratios = [w / a for w, a in zip(walls[cfg], walls["alone"], strict=True)]
        rows.append(
            f"| {cfg} | {med:.2f} | {statistics.median(ratios):.2f}x | {med / base:.2f}x "
            f"| {statistics.median(pilot_cpu[cfg]):.2f} "
            f"| {' '.join(f'{w:.2f}' for w in walls[cfg])} |"
        )
    text = "\n".join(
        [
            SECTION,
            "",
            f"`sudo bench/idle_cgroup.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
            f"{nproc} CPUs, kernel {platform.release()}, cgroup v{layout.version}, Docker "
            f"{info.get('ServerVersion')} ({driver} driver); idle parent: {setup.mode}.",
            f"Owner = {nproc} processes each hashing {iterations} x 4 KiB (sha256), about "
            f"{args.seconds:.1f} s alone; contenders = {args.pilots} busybox pilots spinning "
            f"`while :; do :; done`. Interleaved {args.rounds} rounds "
            f"({' '.join(CONFIGS)}, repeated); medians. Host load average (1 min) "
            f"{load_before:.1f} before, {load_after:.1f} after: with other work on the host the "
            "wall times drift; the pilots' CPU column (read from their cgroups) does not.",
            "",
            "| pilots | owner wall (s) | slowdown (median of per-round ratios) "
            "| slowdown (ratio of medians) | pilots' CPUs during the owner run | runs (s) |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "The per-round ratio divides each run by the `alone` run of the same round, so the "
            "shared machine's drift (other sessions' load; `alone` itself varies run to run) "
            "cancels out. Under the idle parent the pilots get almost no CPU while the owner "
            "runs: the kernel gives them only cycles the owner does not want, within "
            "milliseconds, before any policy tick. `--cpu-shares 2` does not do that: shares "
            "only rank a pilot against its siblings inside Docker's own parent cgroup, which as "
            "a whole still weighs as much as an owner task at the top level.",
            "",
            f"Freezing while the owner loads every core (`docker pause`, 3 tries per pilot): "
            f"default cgroup {freezes['default'][0]}/{freezes['default'][1]} worked, idle parent "
            f"{freezes['idle'][0]}/{freezes['idle'][1]}. Under the idle parent runc's freeze "
            'gives up ("unable to freeze") because starved SCHED_IDLE tasks do not get to run '
            "into the freezer within its deadline: the policy's freeze step cannot be relied on "
            "there (the pilots are not running anyway; stopping them still works).",
            "",
        ]
    )
    write_section(Path(args.results), text)
    print(text)
    return 0


def write_section(path: Path, text: str) -> None:
    """Replace our section in RESULTS.md (other benches own the rest of the file)."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == SECTION), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        new = (
            "".join(lines[:start])
            + text
            + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
        )
    path.write_text(new)


if __name__ == "__main__":
    sys.exit(main())
