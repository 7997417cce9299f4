"""The four measurements. Each returns plain numbers; report.py turns them into the table.

1. idle cost    one daemon per pilot count, behind the counting proxy: CPU % of one core and
                peak RSS over a steady window, plus Docker requests per tick (same window)
2. (in 1)       requests per tick, by endpoint
3. replacement  pilots that exit every ~1-2 s; Docker's `die` of a pilot to the `start` of the
                next pilot, on the engine's clock
4. spawn        0 -> N pilots: the daemon vs raw docker-py (sequential, and with the daemon's
                thread-pool width), rounds interleaved, the engine cleaned between runs
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from bench.events import ContainerEvent, EventRecorder
from bench.harness import (
    PYTHON,
    REPO,
    Daemon,
    pool_yaml,
    remove_labelled,
    running,
    start_daemon,
    wait_running,
)
from bench.procstat import CpuSample, cpu_seconds, percent_of_core, status_kib
from bench.proxy import CountingProxy
from planctond.config.loader import load_config
from planctond.engine.spec import build_spec
from planctond.supervisor.runner import THREADS

SLEEP_FOREVER = ["sleep", "3600"]
# A pilot's own start (runc init, docker-init) runs inside its CPU quota: at 0.01 CPU a start takes
# about 2 s on this VM, at 0.1 and more about 0.2 s. The idle pilots keep the tiny quota; the
# phases that time starts give each pilot what still lets N of them fit the host's 2 CPUs.
REPLACE_CPUS = 0.25  # x 4 pilots
# Idle pilots ramp up this many per tick: 100 starts at once at 0.01 CPU each overran the
# daemon's 20 s Docker timeout on this VM (and each timeout put the pool in back-off).
IDLE_PER_TICK = 20
SPAWN_CPUS = 0.06  # x 30 pilots
# The daemon's docker-py thread pool, for a raw baseline at the same concurrency.
DAEMON_POOL_WIDTH = THREADS


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- 1 + 2: idle cost and requests per tick ------------------------------------------------------
@dataclass
class IdleResult:
    pilots: int
    ramp_s: float  # first ramp daemon's launch -> all pilots running
    ramp_daemons: int  # how many ramp daemons it took (a ramp stuck in back-off is restarted)
    ramp_hwm_kib: int  # VmHWM of the last ramp daemon, which started pilots up to N
    window_s: float
    cpu_pct: float  # over the whole window
    cpu_pct_slices: list[float]  # per tick-long slice of the window
    hwm_kib: int  # VmHWM at the end of the window
    rss_kib: int  # VmRSS at the end of the window
    pilots_at_end: int
    ticks: float  # window / tick
    requests: Counter[str] = field(default_factory=Counter)  # endpoint -> count in the window


RAMP_TIMEOUT = 360.0
RAMP_STALL = 60.0


def _ramp(
    *, api: Any, workdir: Path, docker_url: str, config: str, pilots: int, state_dir: Path
) -> tuple[str, float, int, int]:
    """Bring `pilots` idle pilots up, however long the busy VM makes each start.

    Starts under the idle parent crawl when other sessions load the VM (runc init is starved
    like any pilot process), a start can overrun the daemon's 20 s Docker timeout, and each such
    timeout puts the pool in back-off. A ramp daemon that stalls is therefore replaced by a new
    one (same state directory: it adopts what runs and starts the rest).
    -> (instance, seconds, ramp daemons used, last ramp daemon's VmHWM in KiB)
    """
    began = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        d = start_daemon(f"ramp-{pilots}-{attempt}", workdir, config, docker_url, state_dir)
        try:
            inst = d.instance()
            best, best_at = -1, time.monotonic()
            while time.monotonic() - began < RAMP_TIMEOUT:
                n = running(api, inst)
                if n >= pilots:
                    return inst, time.monotonic() - began, attempt, status_kib(d.pid, "VmHWM")
                if n > best:
                    best, best_at = n, time.monotonic()
                stalled = time.monotonic() - best_at > RAMP_STALL
                if stalled or "backing off" in d.log_path.read_text(errors="replace"):
                    log(f"ramp {pilots}: {n} running, daemon {attempt} stalled; replacing it")
                    break
                if not d.alive():
                    raise RuntimeError(f"ramp daemon died:\n{d.tail()}")
                time.sleep(1.0)
            else:
                raise RuntimeError(
                    f"ramp {pilots}: {running(api, inst)} pilots after {RAMP_TIMEOUT:.0f}s"
                )
        finally:
            d.stop()


def idle_cost(
    *,
    engine_socket: str,
    api: Any,
    workdir: Path,
    run_id: str,
    pilots: int,
    settle: float,
    window: float,
    tick: float,
) -> IdleResult:
    """A ramp daemon brings the pilots up; the measured daemon (same state directory, behind
    the counting proxy) adopts them, settles, and is measured managing them."""
    config = pool_yaml(
        run_id=run_id,
        max_pilots=pilots,
        per_tick=min(pilots, IDLE_PER_TICK),
        command=SLEEP_FOREVER,
    )
    state_dir = workdir / f"state-idle-{pilots}"
    proxy = CountingProxy(str(workdir / f"proxy-{pilots}.sock"), engine_socket)
    proxy.start()
    d: Daemon | None = None
    try:
        inst, ramp_s, attempts, ramp_hwm = _ramp(
            api=api,
            workdir=workdir,
            docker_url=f"unix://{engine_socket}",
            config=config,
            pilots=pilots,
            state_dir=state_dir,
        )
        log(f"idle {pilots}: up after {ramp_s:.1f}s ({attempts} ramp daemons)")
        d = start_daemon(f"idle-{pilots}", workdir, config, proxy.url, state_dir)
        if d.instance() != inst:
            raise RuntimeError("the measured daemon has another instance id")
        wait_running(api, inst, pilots, 60, d)
        log(f"idle {pilots}: measured daemon running; settling {settle:.0f}s")
        time.sleep(settle)
        samples = [CpuSample(time.monotonic(), cpu_seconds(d.pid))]
        t0 = samples[0].at
        while samples[-1].at - t0 < window - 1e-3:
            time.sleep(max(0.0, t0 + tick * len(samples) - time.monotonic()))
            samples.append(CpuSample(time.monotonic(), cpu_seconds(d.pid)))
        t1 = samples[-1].at
        hwm, rss = status_kib(d.pid, "VmHWM"), status_kib(d.pid, "VmRSS")
        at_end = running(api, inst)
        reqs = Counter(r.endpoint for r in proxy.between(t0, t1))
        result = IdleResult(
            pilots=pilots,
            ramp_s=ramp_s,
            ramp_daemons=attempts,
            ramp_hwm_kib=ramp_hwm,
            window_s=t1 - t0,
            cpu_pct=percent_of_core(samples[0], samples[-1]),
            cpu_pct_slices=[percent_of_core(a, b) for a, b in itertools.pairwise(samples)],
            hwm_kib=hwm,
            rss_kib=rss,
            pilots_at_end=at_end,
            ticks=(t1 - t0) / tick,
            requests=reqs,
        )
        log(
            f"idle {pilots}: cpu {result.cpu_pct:.3f}% of a core, VmHWM {hwm / 1024:.1f} MiB "
            f"(ramp daemon {ramp_hwm / 1024:.1f} MiB), requests {dict(reqs)}"
        )
        return result
    finally:
        if d is not None:
            d.stop()
        remove_labelled(api, run_id)
        proxy.close()


# --- 3: replacement latency ----------------------------------------------------------------------
@dataclass
class ReplacementResult:
    pilots: int
    latencies: list[float]  # die -> start of the replacement, seconds
    reaction: list[float]  # die -> create of the replacement (the daemon's share)
    docker: list[float]  # create -> start of the replacement (Docker's share)
    duration_s: float


def _pair_next(
    dies: list[ContainerEvent], later: list[ContainerEvent]
) -> list[tuple[ContainerEvent, ContainerEvent]]:
    """Each die paired first-come first-served with the first unpaired event after it."""
    out = []
    j = 0
    for die in dies:
        while j < len(later) and later[j].at < die.at:
            j += 1
        if j >= len(later):
            break
        out.append((die, later[j]))
        j += 1
    return out


def replacement_latency(
    *,
    docker_url: str,
    api: Any,
    recorder: EventRecorder,
    workdir: Path,
    run_id: str,
    pilots: int,
    want: int,
    timeout: float,
) -> ReplacementResult:
    # A random lifetime of 1.0-1.9 s keeps the pilots' exits from lining up with each other.
    command = ["sh", "-c", "sleep 1.$((RANDOM % 10))"]
    d = start_daemon(
        "replace",
        workdir,
        # per_tick high: the policy's per-tick start cap is not what is measured here.
        pool_yaml(
            run_id=run_id,
            max_pilots=pilots,
            per_tick=1000,
            command=command,
            cpus=REPLACE_CPUS,
        ),
        docker_url,
    )
    try:
        inst = d.instance()
        wait_running(api, inst, pilots, 90, d)
        t0 = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and d.alive():
            dies = [e for e in recorder.of(inst, "die") if e.at >= t0]
            if len(dies) >= want + pilots:
                break
            time.sleep(0.5)
        t1 = time.time()
    finally:
        d.stop()
        remove_labelled(api, run_id)
    # Only dies whose replacement had time to come (not those in the last second).
    dies = [e for e in recorder.of(inst, "die") if t0 <= e.at <= t1 - 1.0]
    starts = [e for e in recorder.of(inst, "start") if e.at >= t0]
    creates = [e for e in recorder.of(inst, "create") if e.at >= t0]
    created_at = {e.cid: e.at for e in creates}
    pairs = _pair_next(dies, starts)
    res = ReplacementResult(
        pilots,
        latencies=[s.at - d.at for d, s in pairs],
        reaction=[c.at - d.at for d, c in _pair_next(dies, creates)],
        docker=[s.at - created_at[s.cid] for _, s in pairs if s.cid in created_at],
        duration_s=t1 - t0,
    )
    log(
        f"replacement: {len(res.latencies)} replacements, "
        f"p50 {statistics.median(res.latencies) * 1000:.0f} ms"
        if res.latencies
        else "replacement: none measured"
    )
    return res


# --- 4: spawn throughput -------------------------------------------------------------------------
@dataclass
class SpawnRun:
    contender: str  # daemon | raw-sequential | raw-concurrent
    round: int
    seconds: float  # first `create` -> N-th `start`, engine clock
    count: int


def _first_create_to_last_start(recorder: EventRecorder, instance: str, n: int) -> float:
    creates = recorder.of(instance, "create")
    starts = recorder.of(instance, "start")
    if not creates or len(starts) < n:
        raise RuntimeError(f"{instance}: {len(creates)} creates, {len(starts)}/{n} starts seen")
    return starts[n - 1].at - creates[0].at


def spawn_pool_yaml(run_id: str, n: int) -> str:
    """The one pool both spawn contenders use, so the daemon and raw docker-py start the same spec."""
    return pool_yaml(
        run_id=run_id,
        max_pilots=n,
        per_tick=n,
        command=SLEEP_FOREVER,
        cpus=SPAWN_CPUS,
        tick="1s",
    )


def spawn_daemon(
    *,
    docker_url: str,
    api: Any,
    recorder: EventRecorder,
    workdir: Path,
    run_id: str,
    n: int,
    rnd: int,
) -> SpawnRun:
    d = start_daemon(
        f"spawn-{rnd}",
        workdir,
        spawn_pool_yaml(run_id, n),
        docker_url,
    )
    try:
        inst = d.instance()
        # Waited for on the event stream, not by listing: the raw runs are not polled either,
        # and list calls during the run would contend with the creates inside dockerd.
        deadline = time.monotonic() + 180
        while not recorder.wait_count(inst, "start", n, 1.0):
            if not d.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"daemon {d.name}: not {n} pilots started:\n{d.tail()}")
    finally:
        d.stop()
    return SpawnRun("daemon", rnd, _first_create_to_last_start(recorder, inst, n), n)


def spawn_raw(
    *,
    docker_url: str,
    recorder: EventRecorder,
    workdir: Path,
    run_id: str,
    n: int,
    rnd: int,
    width: int,
    cgroup_parent: str,
) -> SpawnRun:
    """The baseline: the very spec planctond builds, sent with plain docker-py low-level calls
    (create_container + start), one APIClient shared by the threads, made like the daemon's."""
    cfg_path = workdir / f"raw-{rnd}-{width}.yaml"
    cfg_path.write_text(spawn_pool_yaml(run_id, n))
    pool = load_config(str(cfg_path), missing_ok=False).pools[0]
    instance = f"bench-raw-{run_id}-{rnd}-{width}"
    specs = [build_spec(pool, instance=instance, cgroup_parent=cgroup_parent) for _ in range(n)]

    def one(spec: Any) -> None:
        host_config = api.create_host_config(
            **{k: v for k, v in spec.host.items() if v is not None}
        )
        created = api.create_container(host_config=host_config, **spec.create)
        api.start(created["Id"])

    api = docker.APIClient(base_url=docker_url, version="auto", timeout=20)
    try:
        if width == 1:
            for s in specs:
                one(s)
        else:
            with ThreadPoolExecutor(width) as ex:
                list(ex.map(one, specs))
    finally:
        api.close()
    recorder.wait_count(instance, "start", n, 10)
    name = "raw-sequential" if width == 1 else "raw-concurrent"
    return SpawnRun(name, rnd, _first_create_to_last_start(recorder, instance, n), n)


# --- what the imports alone cost -----------------------------------------------------------------
@dataclass
class ImportCost:
    hwm_kib: int  # VmHWM of a python3 that only imports the daemon's modules
    hwm_stdlib_distutils_kib: int  # the same with SETUPTOOLS_USE_DISTUTILS=stdlib
    setuptools_loaded: bool  # whether `import docker` dragged setuptools/pkg_resources in


_PROBE = (
    "import re, sys\n"
    "import planctond.cli.daemon\n"
    "hwm = re.findall(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[0]\n"
    "print(hwm, int('pkg_resources' in sys.modules))\n"
)


def import_cost() -> ImportCost:
    """Peak RSS of the daemon's imports alone: the floor under every idle figure. Measured twice,
    the second time with setuptools' distutils shim off, because docker-py 5.0.3 imports
    `distutils.spawn` and, with Debian's python3-setuptools installed, that shim loads setuptools
    and pkg_resources into the daemon."""
    import os
    import subprocess

    def probe(extra: dict[str, str]) -> tuple[int, bool]:
        out = subprocess.run(
            [PYTHON, "-c", _PROBE],
            cwd=REPO,
            env={**os.environ, **extra},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return int(out[0]), out[1] == "1"

    hwm, loaded = probe({})
    hwm_std, _ = probe({"SETUPTOOLS_USE_DISTUTILS": "stdlib"})
    return ImportCost(hwm, hwm_std, loaded)
