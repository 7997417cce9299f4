"""The real host: the pilots' cgroups as the engine lays them out, their idle parent, and one
`HostSensor` reading per tick. Rebuilt when the engine's cgroup driver changes (a Docker restart
with another driver), since that moves the pilots' cgroups."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from planctond.engine.cgroup_parent import CgroupSetupError, ensure_idle_parent
from planctond.engine.port import EngineInfo
from planctond.policy.model import HostSnapshot
from planctond.sensors.cgroups import (
    CgroupError,
    CgroupLayout,
    OwnerScope,
    PilotCgroups,
    scope_relpath,
)
from planctond.sensors.host import HostSensor
from planctond.sensors.owner_pressure import OwnerPressureSensor

log = logging.getLogger(__name__)


class CgroupHostProbe:
    def __init__(self, cgroup_root: str = "/sys/fs/cgroup") -> None:
        self._cgroup_root = cgroup_root
        self._cgroups: PilotCgroups | None = None
        self._sensor: HostSensor | None = None

    def attach(self, info: EngineInfo, parent: str, owner_cgroup: str | None = None) -> str:
        problem = ""
        idle = False
        layout: CgroupLayout | None = None
        try:
            layout = CgroupLayout.detect(self._cgroup_root)
            self._cgroups = PilotCgroups(layout, parent, info.cgroup_driver)
            problem, idle = self._setup_idle_parent(layout, parent, info.cgroup_driver)
        except CgroupError as exc:  # no cgroup fs (odd container): pilots' CPU unknown
            log.warning(
                "cannot read cgroups under %s: %s; pilots' CPU counts as the owner's",
                self._cgroup_root,
                exc,
            )
            self._cgroups = None
        scope, scope_problem = self._owner_scope(owner_cgroup)
        self._sensor = HostSensor(
            self._cgroups,
            info.docker_root,
            owner_scope=scope,
            owner_pressure=self._owner_pressure(layout, owner_cgroup),
            pilots_idle=idle,
        )
        problem = problem or scope_problem
        log.info(
            "Docker %s (API %s), cgroup v%d with the %s driver; pilots go under %s",
            info.server_version,
            info.api_version,
            info.cgroup_version,
            info.cgroup_driver,
            parent,
        )
        return problem

    def _owner_scope(self, name: str | None) -> tuple[OwnerScope | None, str]:
        """`owner.cgroup` on this layout; (None, why) when cgroups cannot be read at all, and
        then the whole host is the owner, as without the key."""
        if name is None:
            return None, ""
        if self._cgroups is None:
            problem = f"owner.cgroup {name}: no cgroups to read; the owner is the whole host"
            log.warning("%s", problem)
            return None, problem
        scope = OwnerScope.of(name, self._cgroups)
        log.info(
            "the owner's CPU use is read from cgroup /%s%s",
            scope.relpath,
            " (less the pilots inside it)" if scope.holds_pilots else "",
        )
        return scope, ""

    def _owner_pressure(
        self, layout: CgroupLayout | None, owner_cgroup: str | None
    ) -> OwnerPressureSensor:
        """Where the owner's stalls are read: the v2 tree (on a v1 host the hybrid one beside
        the controllers, if mounted), within `owner.cgroup` or the whole host, the pilots taken
        out; host-wide /proc/pressure where no such tree can be read."""
        tree = None
        if layout is not None:
            tree = layout.root if layout.version == 2 else layout.unified
        pilots = None if self._cgroups is None else self._cgroups.relpath
        scope = ""
        if owner_cgroup is not None:
            try:
                scope = scope_relpath(owner_cgroup)
            except CgroupError:  # the config checks the name: not expected
                tree = None
        return OwnerPressureSensor(tree, scope, pilots)

    @staticmethod
    def _setup_idle_parent(layout: CgroupLayout, parent: str, driver: str) -> tuple[str, bool]:
        """(problem or "", whether the parent is idle to the scheduler: cpu.idle=1, not merely
        the lowest weight). Root (by hand, tests) sets the idle parent itself; as `plancton`
        under systemd the unit's `ExecStartPre=+planctond --setup-cgroup` has done it and we
        only check."""
        try:
            setup = ensure_idle_parent(layout, parent, driver)
        except CgroupSetupError as exc:
            log.warning(
                "pilots are not in an idle cgroup, the owner is protected by the policy only: %s",
                exc,
            )
            return str(exc), False
        log.info("%s", setup.describe())
        return "", setup.mode == "cpu.idle"

    def sample(self, extra: Mapping[str, float | bool]) -> HostSnapshot | None:
        return None if self._sensor is None else self._sensor.sample(extra)

    def pilot_cpu_seconds(self, cid: str) -> float | None:
        return None if self._cgroups is None else self._cgroups.container_cpu_seconds(cid)

    def pilots_cpu_seconds(self) -> float | None:
        return None if self._sensor is None else self._sensor.pilots_cpu_seconds()
