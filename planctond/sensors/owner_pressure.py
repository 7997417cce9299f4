"""The owner's stalls (PSI): how long the owner, not the pilots, waited for CPU, memory and I/O.

Why not /proc/pressure: it counts every task on the host, and pilots in an idle cgroup wait for
the CPU all the time (that is what idle means), so the host-wide CPU figure is high whenever
pilots run, whatever the owner suffers; the host-wide memory and I/O figures hold the pilots'
stalls too (a pilot reclaiming inside its own memory limit). What the owner suffers is read from
the owner's own cgroups instead.

Where: the cgroup v2 tree. On v2 that is the unified root; on a v1 "hybrid" host it is the v2
tree mounted beside the controllers (`/sys/fs/cgroup/unified`), which the kernel gives PSI files
for every cgroup without any controller, and where systemd and runc mirror their cgroups. The
owner's side is every cgroup that, together, holds the owner's scope (the whole tree, or
`owner.cgroup`) but the pilots: walking from the scope down to the pilots' parent, each sibling
of that path (scope = root, pilots = planctond.slice: init.scope, system.slice, user.slice, ...).
Per resource the worst of them counts (the max: the owner suffers where it suffers most), from
the line that means harm to the owner:

- CPU: "full", every owner task of that cgroup waiting at once: the CPU went to someone else. An
  owner running more threads than the host has CPUs shows "some" stalls of its own making, which
  pilots can neither cause nor cure. Kernels before 5.13 have no cgroup CPU "full" line: then the
  CPU is not measured (the policy says what it does instead).
- memory and io: "some", one owner task stalled is already a cost.

Host-wide fallback (`per_cgroup=False`): the memory and io "full" lines of /proc/pressure (every
non-idle task stalled at once, so they need the owner's tasks stalled while the owner runs any),
and no CPU figure. It is taken where the owner's side has no cgroup of its own to read: no v2 tree
(pure v1), a scope missing from it, or a whole-host scope on a host whose PID 1 lives in the root
cgroup (no systemd: the owner's processes sit in the root itself, not in its children). A host
without PSI at all (before 4.20, `psi=0`) reads None everywhere; the config still loads there, as
a fleet's config must, and the policy says once what it does without.

Cost: one read of /proc/1/cgroup, one directory listing per level between the scope and the
pilots' parent, and three small reads per owner cgroup: well under a millisecond.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Final

from planctond.policy.model import OwnerPressure

RESOURCES: Final = ("cpu", "memory", "io")
# The PSI line that means harm to the owner, per resource: read per cgroup, or host-wide.
CGROUP_LINES: Final = {"cpu": "full", "memory": "some", "io": "some"}
HOST_LINES: Final = {"memory": "full", "io": "full"}
# Owner cgroups named in the readings' source (for the logs); the rest are counted.
NAMED_PARTS: Final = 4

log = logging.getLogger(__name__)


def parse_psi(text: str) -> dict[str, float]:
    """Each line's avg10 by its kind ("some", "full"). A line without a readable avg10 is left
    out, so a kernel that lacks a line (cgroup CPU "full" before 5.13) reads as not measured."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        for field in rest.split():
            key, _, value = field.partition("=")
            if key == "avg10":
                with contextlib.suppress(ValueError):
                    out[kind] = float(value)
    return out


def read_psi(path: str) -> dict[str, float] | None:
    """None when the file is absent or refuses to be read (EOPNOTSUPP with `psi=0`)."""
    try:
        with open(path, encoding="ascii") as f:
            return parse_psi(f.read())
    except (OSError, ValueError):
        return None


def _join(base: str, name: str) -> str:
    return f"{base}/{name}" if base else name


def _below(scope: str, path: str) -> list[str] | None:
    """The steps from `scope` down to `path` (relative cgroup paths, "" = the root), or None
    when `path` is not below `scope`."""
    if not scope:
        return path.split("/") if path else []
    if path == scope:
        return []
    if path.startswith(scope + "/"):
        return path[len(scope) + 1 :].split("/")
    return None


def _child_dirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def owner_parts(tree: str, scope: str, pilots: str | None) -> list[str]:
    """The owner's cgroups (relative paths): the scope itself when the pilots are not inside it,
    else every sibling of the path from the scope down to the pilots' parent. Levels below a
    step that does not exist (yet) hold nothing to read. The root is never one: its PSI is the
    host's, the pilots' included (a whole-host scope with the pilots unknown has none)."""
    steps = None if pilots is None else _below(scope, pilots)
    if steps is None:
        return [scope] if scope and os.path.isdir(os.path.join(tree, scope)) else []
    parts: list[str] = []
    here = scope
    for step in steps:
        parts += [_join(here, d) for d in _child_dirs(os.path.join(tree, here)) if d != step]
        here = _join(here, step)
        if not os.path.isdir(os.path.join(tree, here)):
            break
    return parts


def pid1_in_root(proc_root: str) -> bool:
    """Whether PID 1 lives in the root of the v2 tree: no systemd, so the root cgroup holds the
    host's processes itself. Unreadable: False (trust the tree)."""
    try:
        with open(os.path.join(proc_root, "1", "cgroup"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    return any(line.startswith("0::") and line[3:].strip() in ("", "/") for line in lines)


def _named(parts: list[str]) -> str:
    """Slices first: they are what an admin recognises (user.slice, system.slice), not the
    mount units that sort before them."""
    parts = sorted(parts, key=lambda p: (not p.split("/")[-1].endswith(".slice"), p))
    shown = ", ".join(parts[:NAMED_PARTS])
    more = len(parts) - NAMED_PARTS
    return f"cgroups {shown}" + (f" (+{more} more)" if more > 0 else "")


class OwnerPressureSensor:
    """One `OwnerPressure` per reading. `tree`: the v2 tree (None on a pure v1 host); `scope`:
    the owner's cgroup relative to it ("" = the whole host); `pilots`: the pilots' parent
    relative to it (None while unknown)."""

    def __init__(
        self, tree: str | None, scope: str, pilots: str | None, proc_root: str = "/proc"
    ) -> None:
        self.tree = tree
        self.scope = scope
        self.pilots = pilots
        self.proc_root = proc_root
        self._said = ""  # the kind of source last logged, so a change is said once

    def _parts(self) -> list[str]:
        if self.tree is None:
            return []
        if not self.scope and pid1_in_root(self.proc_root):
            return []
        return owner_parts(self.tree, self.scope, self.pilots)

    def _per_cgroup(self, tree: str, parts: list[str]) -> OwnerPressure | None:
        found: dict[str, list[float]] = {r: [] for r in RESOURCES}
        read: list[str] = []
        for part in parts:
            seen = False
            for resource in RESOURCES:
                psi = read_psi(os.path.join(tree, part, f"{resource}.pressure"))
                if psi is None:
                    continue
                seen = True
                value = psi.get(CGROUP_LINES[resource])
                if value is not None:
                    found[resource].append(value)
            if seen:
                read.append(part)
        if not read:
            return None
        worst = {r: max(v) if v else None for r, v in found.items()}
        return OwnerPressure(worst["cpu"], worst["memory"], worst["io"], True, _named(read))

    def _host_wide(self) -> OwnerPressure:
        root = os.path.join(self.proc_root, "pressure")
        values: dict[str, float | None] = {}
        for resource, line in HOST_LINES.items():
            psi = read_psi(os.path.join(root, resource))
            values[resource] = None if psi is None else psi.get(line)
        source = root if any(v is not None for v in values.values()) else "no PSI"
        return OwnerPressure(None, values["memory"], values["io"], False, source)

    def read(self) -> OwnerPressure:
        parts = self._parts()
        reading = None
        if parts and self.tree is not None:
            reading = self._per_cgroup(self.tree, parts)
        if reading is None:
            reading = self._host_wide()
        self._say(reading)
        return reading

    def _say(self, reading: OwnerPressure) -> None:
        kind = "cgroups" if reading.per_cgroup else reading.source
        if kind == self._said:
            return
        self._said = kind
        if reading.per_cgroup:
            log.info("the owner's stalls (PSI) are read from its %s", reading.source)
        elif reading.source == "no PSI":
            log.info("the owner's stalls cannot be read: no PSI on this host")
        else:
            log.info(
                "the owner's stalls (PSI) are read host-wide from %s (memory and io 'full'): "
                "no PSI of the owner's own cgroups here",
                reading.source,
            )
