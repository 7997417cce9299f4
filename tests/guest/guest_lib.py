"""What the in-guest checks use to look at the guest: commands, the daemon over the bus, the
journal, Docker and the cgroup files. Standard library only: this runs on the guest's python3
before planctond (and its Python dependencies) are installed.

Everything polls with generous limits: the guest is emulated (TCG), so a `docker run` takes 4-8 s
and every figure is about ±30 %. Limits decide whether something happened, never how fast.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

UNIT = "planctond.service"
BUS = ["busctl", "--system"]
MANAGER = ["org.plancton", "/org/plancton", "org.plancton.Manager1"]
SPIN_POOL = "spin"
PROBE_POOL = "pressure-probe"
CGROUP_ROOT = "/sys/fs/cgroup"


class CheckFailed(AssertionError):
    """A check's claim does not hold; the message says what was seen."""


def sh(
    argv: Sequence[str],
    timeout: float = 300,
    check: bool = True,
    cwd: str | None = None,
    live: bool = False,
) -> str:
    """Run a command; its output (stdout and stderr together) or CheckFailed naming both.
    `live` also prints each line as it comes, so the console log (and the journal) time-stamp a
    long command's steps."""
    env = {**os.environ, "LC_ALL": "C.UTF-8", "SYSTEMD_PAGER": ""}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    with subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
    ) as proc:
        killer = threading.Timer(timeout, proc.kill)  # a silent, hung command ends too
        killer.start()
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if live:
                sys.stdout.write("  | " + line)
                sys.stdout.flush()
        rc = proc.wait()
        killer.cancel()
    out = "".join(lines)
    if check and rc != 0:
        raise CheckFailed(f"{' '.join(argv)} exited {rc}:\n{out[-3000:]}")
    return out


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Poll until `probe` returns something true; its last value (or error) is in the failure."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except (CheckFailed, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise CheckFailed(f"no {what} within {timeout:.0f} s (last seen: {last!r})")
        time.sleep(interval)


def read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def flat_keyed(path: str) -> dict[str, str]:
    """A `key value` cgroup file (cpu.stat, cgroup.events) as a dict."""
    return dict(line.split(" ", 1) for line in read(path).splitlines() if " " in line)


def usage_seconds(cgroup_dir: str) -> float:
    """The cgroup's CPU time from v2 `cpu.stat`, the counter the daemon reads for its pilots."""
    return int(flat_keyed(os.path.join(cgroup_dir, "cpu.stat"))["usage_usec"]) / 1e6


def some_avg10(path: str, kind: str = "some") -> float:
    """`some avg10` (or `full`) of a pressure file (/proc/pressure/cpu, a cgroup's cpu.pressure)."""
    for line in read(path).splitlines():
        if line.startswith(f"{kind} "):
            return float(dict(f.split("=") for f in line.split()[1:])["avg10"])
    raise ValueError(f"no '{kind}' line in {path}")


def _unwrap(value: Any) -> Any:
    """busctl's JSON gives every variant as {"type", "data"}: keep the data, all the way down."""
    if isinstance(value, dict) and set(value) == {"type", "data"}:
        return _unwrap(value["data"])
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def call(method: str, json_out: bool = False) -> Any:
    """A Manager1 method over the system bus with busctl, as an admin would call it."""
    if not json_out:
        return sh([*BUS, "call", *MANAGER, method], timeout=60)
    out = sh([*BUS, "--json=short", "call", *MANAGER, method], timeout=60)
    return _unwrap(json.loads(out))[0]


def status() -> dict[str, Any]:
    return dict(call("Status", json_out=True))


def pool(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in report["pools"] if p["name"] == name)


def prop(name: str) -> str:
    """A Manager1 property as busctl prints it (`s "active"` -> active, `u 2` -> 2)."""
    out = sh([*BUS, "get-property", *MANAGER, name], timeout=60).strip()
    return out.split(" ", 1)[1].strip('"')


def unit_prop(name: str, unit: str = UNIT) -> str:
    return sh(["systemctl", "show", "-p", name, "--value", unit]).strip()


def cursor() -> str:
    """The journal's end now, to look only at what comes after it."""
    for line in sh(["journalctl", "--no-pager", "-n", "0", "--show-cursor"]).splitlines():
        if line.startswith("-- cursor: "):
            return line.removeprefix("-- cursor: ").strip()
    raise CheckFailed("journalctl gave no cursor")


def events(kind: str, after: str) -> list[dict[str, Any]]:
    """The unit's PLANCTON_EVENT=kind entries after a cursor. Matched here, not by journalctl:
    systemd 252's --after-cursor with matches skips the first matching entry."""
    out = sh(["journalctl", "--no-pager", "-o", "json", f"--after-cursor={after}"])
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [
        e for e in entries if e.get("PLANCTON_EVENT") == kind and e.get("_SYSTEMD_UNIT") == UNIT
    ]


def unit_log(after: str) -> str:
    return sh(["journalctl", "--no-pager", "-o", "cat", f"--after-cursor={after}"])


@dataclass
class Pilot:
    """A pilot as Docker and the kernel see it: its id, its cgroup directory and its state."""

    id: str
    cgroup: str  # absolute directory under /sys/fs/cgroup

    def freeze_state(self) -> tuple[str, str]:
        """(cgroup.freeze as written, `frozen` as the kernel reports it in cgroup.events)."""
        return read(f"{self.cgroup}/cgroup.freeze"), flat_keyed(f"{self.cgroup}/cgroup.events")[
            "frozen"
        ]


class _UnixHTTP(http.client.HTTPConnection):
    """HTTP over Docker's socket. The API, not the docker CLI: under emulation each CLI call costs
    a second or two of CPU, which the daemon would rightly count as the owner's."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def docker(method: str, path: str) -> Any:
    conn = _UnixHTTP("/run/docker.sock")
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status >= 400:
        raise CheckFailed(f"Docker API {method} {path}: {resp.status} {body[:500]!r}")
    return json.loads(body) if body else None


def pilot_ids(pool_name: str = SPIN_POOL) -> list[str]:
    """Running (or paused) pilots of a pool, from Docker itself, not from the daemon's view."""
    labels = {"label": ["org.plancton.managed=1", f"org.plancton.pool={pool_name}"]}
    found = docker("GET", "/containers/json?filters=" + urllib.parse.quote(json.dumps(labels)))
    return sorted(c["Id"] for c in found)


def pilot(container_id: str) -> Pilot:
    """The pilot's cgroup, from its init process's /proc/PID/cgroup (v2: one `0::` line)."""
    pid = docker("GET", f"/containers/{container_id}/json")["State"]["Pid"]
    line = read(f"/proc/{pid}/cgroup")
    if not line.startswith("0::"):
        raise CheckFailed(f"not a cgroup v2 membership for {container_id[:12]}: {line!r}")
    return Pilot(container_id, CGROUP_ROOT + line[3:])


def wait_pilots(count: int, timeout: float = 300) -> list[Pilot]:
    """Exactly `count` pilots running, each with its cgroup (a pilot that ends while it is
    looked at, or a start still under way, is just another poll)."""
    found = wait_for(f"{count} running pilots", lambda: _exactly(count), timeout, 2.0)
    return list(found[0])


def _exactly(count: int) -> tuple[list[Pilot]] | None:
    """In a 1-tuple, so that "no pilots", when that is what is awaited, still counts as found."""
    ids = pilot_ids()
    return ([pilot(i) for i in ids],) if len(ids) == count else None


@dataclass
class OwnerLoad:
    """An owner keeping every vCPU busy, plus one: busybox loops in a transient unit of the given
    slice, as a logged-in user's job (user.slice) or a system service (system.slice) would be.
    One loop more than there are vCPUs keeps a task waiting, so CPU pressure shows too."""

    slice: str
    loops: int
    unit: str = field(init=False)

    def __post_init__(self) -> None:
        self.unit = f"owner-load-{self.slice.removesuffix('.slice')}"

    def start(self) -> None:
        spin = (
            f"i=0; while [ $i -lt {self.loops} ]; do (while :; do :; done) & i=$((i+1)); done; wait"
        )
        sh(
            [
                "systemd-run",
                f"--unit={self.unit}",
                f"--slice={self.slice}",
                "--quiet",
                "/bin/busybox",
                "sh",
                "-c",
                spin,
            ]
        )

    def stop(self) -> None:
        sh(["systemctl", "stop", f"{self.unit}.service"], check=False)
