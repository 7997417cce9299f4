"""`owner.cgroup`: the owner's CPU use read from one cgroup, less the pilots inside it.

On a fake /proc and fake cgroup trees (the real ones are in tests/integration/test_owner_first.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from planctond.sensors.cgroups import (
    CgroupError,
    CgroupLayout,
    OwnerScope,
    PilotCgroups,
    contains,
    scope_relpath,
)
from planctond.sensors.host import HostSensor
from tests.unit.test_sensors_host import FakeHost


class ScopedHost(FakeHost):
    """FakeHost, plus a cpuacct counter for the owner's cgroup at `scope` (relative path)."""

    def __init__(self, tmp: Path, scope: str, pilots_parent: str, scope_ns: int | None = 0) -> None:
        self.scope = scope
        self.parent = pilots_parent
        self.scope_ns = scope_ns
        super().__init__(tmp)

    def write(self) -> None:
        super().write()
        if getattr(self, "scope_ns", None) is None:
            return
        d = self.cg / "cpuacct" / self.scope
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpuacct.usage").write_text(f"{self.scope_ns}\n")
        if self.parent != "planctond" and self.pilot_ns is not None:
            p = self.cg / "cpuacct" / self.parent
            p.mkdir(parents=True, exist_ok=True)
            (p / "cpuacct.usage").write_text(f"{self.pilot_ns}\n")

    def burn(self, dt: float, *, others: float, owner: float, pilots: float) -> None:
        """dt seconds with `others` CPUs busy outside the scope, `owner` inside it (not pilots)
        and `pilots` in the pilots' cgroup."""
        inside = owner + (pilots if contains(self.scope, self.parent) else 0.0)
        assert self.scope_ns is not None
        self.scope_ns += round(inside * dt * 1e9)
        self.advance(dt, user=others + owner + pilots, pilots=pilots)

    def scoped_sensor(self) -> HostSensor:
        layout = CgroupLayout.detect(str(self.cg))
        pilots = PilotCgroups(layout, "/" + self.parent, "cgroupfs")
        return HostSensor(
            pilots,
            "/",
            str(self.proc),
            clock=lambda: self.now,
            wall_clock=lambda: 1_700_000_000.0,
            owner_scope=OwnerScope.of("/" + self.scope, pilots),
        )


@pytest.mark.parametrize(
    ("scope", "parent", "holds"),
    [("test", "test/pilots", True), ("user.slice", "planctond", False)],
)
def test_only_the_scope_counts_and_its_pilots_are_taken_out(
    tmp_path: Path, scope: str, parent: str, holds: bool
) -> None:
    host = ScopedHost(tmp_path, scope, parent)
    host.pilot_ns = 0
    host.write()
    sensor = host.scoped_sensor()
    assert sensor.owner_scope is not None and sensor.owner_scope.holds_pilots is holds
    # Other work loads the host heavily; the pilots burn a core; the owner is idle.
    host.burn(10, others=2.5, owner=0.0, pilots=1.0)
    snap = sensor.sample()
    assert snap.host_cpu == pytest.approx(3.5, abs=0.01)
    assert snap.owner_cpu == pytest.approx(0.0, abs=0.01)
    assert snap.variables["owner_cpu"] == pytest.approx(0.0, abs=0.01)
    # The owner, inside the scope, uses 1.5 CPUs: that, and only that, counts.
    host.burn(10, others=0.5, owner=1.5, pilots=1.0)
    snap = sensor.sample()
    assert snap.owner_cpu == pytest.approx(1.5, abs=0.01)
    assert snap.pilots_cpu == pytest.approx(1.0, abs=0.01)


def test_an_unreadable_scope_falls_back_to_the_whole_host_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cgroup that is not there (yet) must never hide the owner: the whole host counts."""
    caplog.set_level(logging.INFO)
    host = ScopedHost(tmp_path, "owner", "planctond", scope_ns=None)  # not created
    host.pilot_ns = 0
    host.write()
    sensor = host.scoped_sensor()
    for _ in range(3):
        host.advance(10, user=2.0, pilots=0.5)
        assert sensor.sample().owner_cpu == pytest.approx(1.5, abs=0.01)
    said = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(said) == 1 and "/owner" in said[0].getMessage()
    host.scope_ns = 0  # created: one interval to take a baseline, then the scope counts
    host.burn(10, others=2.0, owner=0.25, pilots=0.5)
    assert sensor.sample().owner_cpu == pytest.approx(2.25, abs=0.01)  # the whole host, once more
    host.burn(10, others=2.0, owner=0.25, pilots=0.5)
    assert sensor.sample().owner_cpu == pytest.approx(0.25, abs=0.01)
    assert any("can be read again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("user.slice", "user.slice"),
        ("user-1000.slice", "user.slice/user-1000.slice"),
        ("/user.slice", "user.slice"),
        ("/owner/inner", "owner/inner"),
    ],
)
def test_scope_names(name: str, rel: str) -> None:
    assert scope_relpath(name) == rel


def test_the_root_is_not_a_scope() -> None:
    with pytest.raises(CgroupError):
        scope_relpath("/")


@pytest.mark.parametrize(
    ("outer", "inner", "inside"),
    [
        ("a", "a", True),
        ("a", "a/b", True),
        ("a", "ab", False),
        ("a/b", "a", False),
        ("user.slice", "system.slice/docker", False),
    ],
)
def test_contains(outer: str, inner: str, inside: bool) -> None:
    assert contains(outer, inner) is inside
