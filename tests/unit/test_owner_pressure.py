"""The owner's stalls (PSI) read from the owner's own cgroups, never the pilots'.

On fake cgroup v2 trees and a fake /proc in tmp_path, the files in the kernel's formats; the real
kernel's files are read in tests/integration/test_owner_pressure_real.py.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planctond.policy.model import OwnerPressure
from planctond.sensors import owner_pressure as op
from planctond.sensors.owner_pressure import (
    OwnerPressureSensor,
    owner_parts,
    parse_psi,
    pid1_in_root,
    read_psi,
)

LOGGER = "planctond.sensors.owner_pressure"
HUGE = 99.99  # the pilots' stalls: anything of theirs in a reading shows as this


def psi_text(some: float, full: float | None = None) -> str:
    """A pressure file as the kernel prints it; no full line = a cgroup cpu.pressure before 5.13."""
    text = f"some avg10={some:.2f} avg60=1.00 avg300=0.50 total=123456\n"
    if full is not None:
        text += f"full avg10={full:.2f} avg60=0.00 avg300=0.00 total=654\n"
    return text


Pair = tuple[float, float | None]  # (some, full)


def cgroup(
    tree: Path,
    rel: str,
    cpu: Pair | None = (0.0, 0.0),
    memory: Pair | None = (0.0, 0.0),
    io: Pair | None = (0.0, 0.0),
) -> Path:
    """A cgroup directory with its three pressure files (None: that file is absent) and the
    interface files every v2 cgroup has, which are files, not cgroups."""
    d = tree / rel if rel else tree
    d.mkdir(parents=True, exist_ok=True)
    (d / "cgroup.procs").write_text("")
    (d / "cgroup.controllers").write_text("")
    for name, pair in (("cpu", cpu), ("memory", memory), ("io", io)):
        path = d / f"{name}.pressure"
        if pair is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(psi_text(*pair))
    return d


def proc(tmp: Path, pid1: str = "0::/init.scope", host: dict[str, str] | None = None) -> Path:
    """A fake /proc: PID 1's cgroup file and /proc/pressure (host-wide) when `host` is given."""
    root = tmp / "proc"
    (root / "1").mkdir(parents=True, exist_ok=True)
    (root / "1" / "cgroup").write_text(pid1)
    if host is not None:
        (root / "pressure").mkdir(exist_ok=True)
        for name, text in host.items():
            (root / "pressure" / name).write_text(text)
    return root


HOST_PSI = {
    "cpu": psi_text(40.0, 0.0),
    "memory": psi_text(30.0, 2.5),
    "io": psi_text(20.0, 1.25),
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A systemd host's v2 tree, the pilots under planctond.slice (Docker's systemd driver)."""
    root = cgroup(tmp_path / "cgroup", "")
    for rel in ("init.scope", "system.slice", "user.slice", "planctond.slice"):
        cgroup(root, rel)
    return root


# --- parse_psi / read_psi ----------------------------------------------------------------------


def test_parse_psi_reads_avg10_of_each_line() -> None:
    assert parse_psi(psi_text(12.5, 3.25)) == {"some": 12.5, "full": 3.25}
    assert parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n") == {"some": 0.0}


def test_a_cgroup_cpu_file_without_a_full_line_has_no_full() -> None:
    """Kernels before 5.13 print only "some" in a cgroup's cpu.pressure: CPU not measured."""
    assert "full" not in parse_psi(psi_text(55.0))


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("", {}),
        ("\n\n", {}),
        ("garbage", {}),
        ("some avg10=abc avg60=1.00\n", {}),
        ("some avg10= avg60=1.00\n", {}),
        ("some total=5\nfull avg60=3.00\n", {}),
        ("some avg10=1.50\nfull avg10=oops\n", {"some": 1.5}),  # a bad line does not spoil another
        ("avg10=3.00\n", {}),
        ("some avg103=4.00 xavg10=5.00\n", {}),
    ],
)
def test_parse_psi_skips_what_it_cannot_read(text: str, parsed: dict[str, float]) -> None:
    assert parse_psi(text) == parsed


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_psi_never_raises(text: str) -> None:
    out = parse_psi(text)
    assert all(isinstance(v, float) for v in out.values())
    assert set(out) <= {line.partition(" ")[0] for line in text.splitlines()}


@given(st.integers(0, 10000), st.none() | st.integers(0, 10000))
def test_parse_psi_reads_back_what_the_kernel_prints(some: int, full: int | None) -> None:
    parsed = parse_psi(psi_text(some / 100, None if full is None else full / 100))
    assert parsed == {"some": some / 100} | ({} if full is None else {"full": full / 100})


def test_read_psi_of_an_absent_file_is_none(tmp_path: Path) -> None:
    assert read_psi(str(tmp_path / "cpu.pressure")) is None
    assert read_psi(str(tmp_path / "no" / "such" / "cgroup" / "cpu.pressure")) is None


def test_read_psi_of_what_cannot_be_read_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dir.pressure").mkdir()
    assert read_psi(str(tmp_path / "dir.pressure")) is None  # EISDIR
    (tmp_path / "bytes.pressure").write_bytes(b"some avg10=1.00 \xff\xfe\n")
    assert read_psi(str(tmp_path / "bytes.pressure")) is None  # not ASCII
    good = tmp_path / "cpu.pressure"
    good.write_text(psi_text(1.0, 2.0))
    assert read_psi(str(good)) == {"some": 1.0, "full": 2.0}

    class Refusing(io.StringIO):
        def read(self, *args: Any) -> str:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")  # psi=0

    monkeypatch.setattr(op, "open", lambda *a, **k: Refusing(), raising=False)
    assert read_psi(str(good)) is None


# --- owner_parts ------------------------------------------------------------------------------


def test_whole_host_with_pilots_under_a_slice(tree: Path) -> None:
    """scope = the root, pilots = planctond.slice (systemd driver): every other top-level cgroup,
    and no interface file taken for a cgroup."""
    assert owner_parts(str(tree), "", "planctond.slice") == [
        "init.scope",
        "system.slice",
        "user.slice",
    ]


def test_whole_host_with_pilots_under_a_cgroupfs_parent(tmp_path: Path) -> None:
    root = cgroup(tmp_path / "cgroup", "")
    for rel in ("docker", "init.scope", "planctond", "system.slice", "user.slice"):
        cgroup(root, rel)
    cgroup(root, "planctond/" + "a" * 64)  # a pilot: below the pilots' parent, never listed
    parts = owner_parts(str(root), "", "planctond")
    assert parts == ["docker", "init.scope", "system.slice", "user.slice"]


def test_owner_cgroup_with_the_pilots_outside_it(tree: Path) -> None:
    cgroup(tree, "user.slice/user-1000.slice/session-2.scope")
    assert owner_parts(str(tree), "user.slice", "planctond.slice") == ["user.slice"]
    assert owner_parts(str(tree), "user.slice", None) == ["user.slice"]


def test_owner_cgroup_with_the_pilots_inside_it(tree: Path) -> None:
    cgroup(tree, "user.slice/user-1000.slice")
    cgroup(tree, "user.slice/user-1001.slice")
    cgroup(tree, "user.slice/planctond/" + "b" * 64)
    parts = owner_parts(str(tree), "user.slice", "user.slice/planctond")
    assert parts == ["user.slice/user-1000.slice", "user.slice/user-1001.slice"]


def test_nested_pilots_parent_takes_every_sibling_along_the_path(tree: Path) -> None:
    cgroup(tree, "system.slice/cron.service")
    cgroup(tree, "system.slice/docker.service")
    cgroup(tree, "system.slice/docker/planctond")
    cgroup(tree, "system.slice/docker/" + "c" * 64)  # someone else's container: the owner's
    parts = owner_parts(str(tree), "", "system.slice/docker/planctond")
    assert parts == [
        "init.scope",
        "planctond.slice",
        "user.slice",
        "system.slice/cron.service",
        "system.slice/docker.service",
        "system.slice/docker/" + "c" * 64,
    ]


def test_a_missing_level_holds_nothing_below_it(tree: Path) -> None:
    """system.slice/docker not made yet (no pilot ever ran): system.slice's children are the
    owner's, and nothing is listed below the missing level."""
    cgroup(tree, "system.slice/cron.service")
    parts = owner_parts(str(tree), "", "system.slice/docker/planctond")
    assert parts == ["init.scope", "planctond.slice", "user.slice", "system.slice/cron.service"]
    # The pilots' parent itself missing: its siblings still are the owner's.
    assert owner_parts(str(tree), "", "nothere.slice") == [
        "init.scope",
        "planctond.slice",
        "system.slice",
        "user.slice",
    ]


def test_a_scope_missing_from_the_tree_has_no_parts(tree: Path) -> None:
    assert owner_parts(str(tree), "owner.slice", "planctond.slice") == []
    assert owner_parts(str(tree), "owner.slice", "owner.slice/planctond") == []
    assert owner_parts(str(tree / "absent"), "", "planctond.slice") == []


def test_the_pilots_parent_as_the_scope_leaves_nothing(tree: Path) -> None:
    assert owner_parts(str(tree), "planctond.slice", "planctond.slice") == []


def test_the_root_is_never_a_part_of_its_own(tree: Path) -> None:
    """The root cgroup's PSI is the host's, the pilots' stalls included: with the pilots' parent
    unknown a whole-host scope has no part to read, rather than the root."""
    assert owner_parts(str(tree), "", None) == []


Tree = dict[str, "Tree"]
_names = st.sampled_from(["a", "b", "c.slice", "d.scope"])
_trees: st.SearchStrategy[Tree] = st.recursive(
    st.just({}), lambda sub: st.dictionaries(_names, sub, max_size=3), max_leaves=12
)


def _dirs(t: Tree, base: str = "") -> Iterator[str]:
    for name, sub in t.items():
        rel = f"{base}/{name}" if base else name
        yield rel
        yield from _dirs(sub, rel)


def _under(path: str, top: str) -> bool:
    return not top or path == top or path.startswith(top + "/")


@settings(max_examples=150, deadline=None)
@given(_trees, st.lists(_names, min_size=1, max_size=4), st.integers(0, 2))
def test_owner_parts_split_the_scope_around_the_pilots(
    shape: Tree, pilot_steps: list[str], scope_depth: int
) -> None:
    """Every cgroup under the scope is on the way to the pilots, under the pilots, or under
    exactly one part; no part is the pilots' or holds them."""
    pilots = "/".join(pilot_steps)
    scope = "/".join(pilot_steps[: min(scope_depth, len(pilot_steps) - 1)])
    with tempfile.TemporaryDirectory() as tmp:
        for rel in _dirs(shape):
            os.makedirs(os.path.join(tmp, rel), exist_ok=True)
        if not os.path.isdir(os.path.join(tmp, scope)):
            assert owner_parts(tmp, scope, pilots) == []
            return
        parts = owner_parts(tmp, scope, pilots)
        assert len(parts) == len(set(parts))
        for part in parts:
            assert os.path.isdir(os.path.join(tmp, part))
            assert _under(part, scope) and part != scope
            assert not _under(pilots, part), (part, pilots)
        for rel in _dirs(shape):
            if not _under(rel, scope) or rel == scope:
                continue
            on_the_way = _under(pilots, rel)
            holders = [p for p in parts if _under(rel, p)]
            if on_the_way or _under(rel, pilots):
                assert holders == [], (rel, holders)
            else:
                # Below a missing step nothing is listed, and nothing below it exists either.
                assert len(holders) == 1, (rel, parts)


# --- pid1_in_root -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "in_root"),
    [
        ("0::/\n", True),
        ("0::\n", True),
        ("0::/init.scope\n", False),
        ("12:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n", False),
        ("9:name=systemd:/\n1:cpu:/\n0::/\n", True),  # v1 hybrid, no systemd (a container)
        ("1:cpu,cpuacct:/\n1:name=systemd:/\n", False),  # pure v1: nothing to say about v2
        ("", False),
    ],
)
def test_pid1_in_root(tmp_path: Path, text: str, in_root: bool) -> None:
    assert pid1_in_root(str(proc(tmp_path, text))) is in_root


def test_pid1_unreadable_trusts_the_tree(tmp_path: Path) -> None:
    assert pid1_in_root(str(tmp_path / "noproc")) is False


# --- the sensor ---------------------------------------------------------------------------------


def test_worst_of_the_owners_cgroups_from_the_line_of_each_resource(
    tmp_path: Path, tree: Path
) -> None:
    """CPU from "full", memory and io from "some"; the other line of each is made the larger, so
    reading the wrong one shows."""
    cgroup(tree, "user.slice", cpu=(90.0, 3.0), memory=(2.0, 50.0), io=(7.5, 60.0))
    cgroup(tree, "system.slice", cpu=(5.0, 7.0), memory=(4.0, 0.0), io=(1.0, 70.0))
    cgroup(tree, "init.scope", cpu=(80.0, 0.5), memory=(0.25, 40.0), io=(0.0, 0.0))
    cgroup(tree, "planctond.slice", cpu=(HUGE, HUGE), memory=(HUGE, HUGE), io=(HUGE, HUGE))
    sensor = OwnerPressureSensor(str(tree), "", "planctond.slice", str(proc(tmp_path)))
    reading = sensor.read()
    assert reading == OwnerPressure(
        7.0, 4.0, 7.5, True, "cgroups system.slice, user.slice, init.scope"
    )


def test_the_pilots_cgroup_is_never_read(
    tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Huge stalls in the pilots' parent and in a pilot below it change nothing, and no file of
    theirs is even opened."""
    pilot = cgroup(tree, "planctond.slice/docker-" + "d" * 64 + ".scope")
    for d in (tree / "planctond.slice", pilot):
        cgroup(tree, str(d.relative_to(tree)), (HUGE, HUGE), (HUGE, HUGE), (HUGE, HUGE))
    sensor = OwnerPressureSensor(str(tree), "", "planctond.slice", str(proc(tmp_path)))
    opened: list[str] = []

    def spy(path: str) -> dict[str, float] | None:
        opened.append(path)
        return read_psi(path)

    monkeypatch.setattr(op, "read_psi", spy)
    reading = sensor.read()
    assert (reading.cpu, reading.memory, reading.io) == (0.0, 0.0, 0.0)
    assert "planctond" not in reading.source
    assert opened and not [p for p in opened if "planctond.slice" in p]


def test_a_kernel_without_the_cgroup_cpu_full_line(tmp_path: Path, tree: Path) -> None:
    """Before 5.13: CPU not measured (None, not 0), memory and io still are."""
    for rel in ("init.scope", "system.slice", "user.slice"):
        cgroup(tree, rel, cpu=(50.0, None), memory=(1.0, 0.0), io=(2.0, 0.0))
    reading = OwnerPressureSensor(str(tree), "", "planctond.slice", str(proc(tmp_path))).read()
    assert (reading.cpu, reading.memory, reading.io, reading.per_cgroup) == (None, 1.0, 2.0, True)


def test_cgroups_missing_a_file_or_a_line_count_with_what_they_have(
    tmp_path: Path, tree: Path
) -> None:
    cgroup(tree, "user.slice", cpu=(10.0, None), memory=None, io=(3.0, 0.0))
    cgroup(tree, "system.slice", cpu=(1.0, 2.0), memory=(6.0, 0.0), io=None)
    cgroup(tree, "init.scope", cpu=None, memory=None, io=None)  # no PSI files: not named
    reading = OwnerPressureSensor(str(tree), "", "planctond.slice", str(proc(tmp_path))).read()
    assert reading == OwnerPressure(2.0, 6.0, 3.0, True, "cgroups system.slice, user.slice")


def test_owner_cgroup_scope_reads_only_inside_it(tmp_path: Path, tree: Path) -> None:
    cgroup(tree, "system.slice", cpu=(0.0, 80.0), memory=(80.0, 0.0), io=(80.0, 0.0))
    cgroup(tree, "user.slice/user-1000.slice", cpu=(0.0, 1.5), memory=(2.5, 0.0), io=(3.5, 0.0))
    cgroup(tree, "user.slice/planctond", (HUGE, HUGE), (HUGE, HUGE), (HUGE, HUGE))
    pilots = "user.slice/planctond"
    sensor = OwnerPressureSensor(str(tree), "user.slice", pilots, str(proc(tmp_path)))
    assert sensor.read() == OwnerPressure(1.5, 2.5, 3.5, True, "cgroups user.slice/user-1000.slice")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(*(st.integers(0, 10000) for _ in range(3)), st.none() | st.integers(0, 10000)),
        min_size=1,
        max_size=6,
    ),
    st.integers(0, 10000),
)
def test_each_resource_is_the_max_over_the_owners_cgroups(
    values: list[tuple[int, int, int, int | None]], pilots: int
) -> None:
    """(memory some, io some, cpu some, cpu full) per owner cgroup: memory and io are the max of
    "some", CPU the max of "full" where there is one; the pilots' values never count."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cgroup"
        for i, (mem, io_, cpu_some, cpu_full) in enumerate(values):
            cpu = (cpu_some / 100, None if cpu_full is None else cpu_full / 100)
            cgroup(root, f"owner-{i}", cpu, (mem / 100, 100.0), (io_ / 100, 100.0))
        p = pilots / 100
        cgroup(root, "pilots", (p, p), (p, p), (p, p))
        reading = OwnerPressureSensor(str(root), "", "pilots", str(proc(Path(tmp)))).read()
    fulls = [v[3] / 100 for v in values if v[3] is not None]
    assert reading.cpu == (max(fulls) if fulls else None)
    assert reading.memory == max(v[0] / 100 for v in values)
    assert reading.io == max(v[1] / 100 for v in values)
    assert reading.per_cgroup
    assert "pilots" not in reading.source


# --- host-wide fallback -------------------------------------------------------------------------

HOST_WIDE = (None, 2.5, 1.25, False)


def _fields(r: OwnerPressure) -> tuple[float | None, float | None, float | None, bool]:
    return r.cpu, r.memory, r.io, r.per_cgroup


def test_no_v2_tree_reads_host_wide_full_lines(tmp_path: Path) -> None:
    """Pure v1: /proc/pressure's memory and io "full" (not "some"), and no CPU figure."""
    root = proc(tmp_path, host=HOST_PSI)
    reading = OwnerPressureSensor(None, "", "planctond.slice", str(root)).read()
    assert _fields(reading) == HOST_WIDE
    assert reading.source == str(root / "pressure")


def test_pid1_in_the_root_reads_host_wide(tmp_path: Path, tree: Path) -> None:
    """No systemd: the owner's processes sit in the root itself, which no child holds."""
    cgroup(tree, "user.slice", (0.0, 50.0), (50.0, 50.0), (50.0, 50.0))
    root = proc(tmp_path, "0::/\n", host=HOST_PSI)
    whole = OwnerPressureSensor(str(tree), "", "planctond.slice", str(root)).read()
    assert _fields(whole) == HOST_WIDE
    # ... but an owner.cgroup is a cgroup of the owner's own, wherever PID 1 is.
    scoped = OwnerPressureSensor(str(tree), "user.slice", "planctond.slice", str(root)).read()
    assert _fields(scoped) == (50.0, 50.0, 50.0, True)


def test_no_psi_files_in_the_tree_reads_host_wide(tmp_path: Path) -> None:
    root = cgroup(tmp_path / "cgroup", "", None, None, None)
    for rel in ("init.scope", "system.slice", "planctond.slice"):
        cgroup(root, rel, None, None, None)
    proc_root = str(proc(tmp_path, host=HOST_PSI))
    reading = OwnerPressureSensor(str(root), "", "planctond.slice", proc_root).read()
    assert _fields(reading) == HOST_WIDE


def test_a_missing_scope_reads_host_wide(tmp_path: Path, tree: Path) -> None:
    proc_root = str(proc(tmp_path, host=HOST_PSI))
    reading = OwnerPressureSensor(str(tree), "owner.slice", "planctond.slice", proc_root).read()
    assert _fields(reading) == HOST_WIDE


def test_pilots_unknown_on_a_whole_host_scope_reads_host_wide(tmp_path: Path, tree: Path) -> None:
    """The pilots' parent unknown (Docker's parent not a cgroup path the sensors can use): the
    root's own pressure files are the host's, every pilot's stalls in its "some" lines and its
    CPU "full" line always 0, so they are not read as the owner's cgroup."""
    cgroup(tree, "", cpu=(HUGE, 0.0), memory=(HUGE, 2.5), io=(HUGE, 1.25))
    reading = OwnerPressureSensor(str(tree), "", None, str(proc(tmp_path, host=HOST_PSI))).read()
    assert _fields(reading) == HOST_WIDE
    assert reading.source == str(tmp_path / "proc" / "pressure")


def test_no_psi_anywhere(tmp_path: Path) -> None:
    """A kernel before 4.20, or psi=0: nothing read, said so."""
    empty = tmp_path / "cgroup"
    empty.mkdir()
    for tree in (None, str(empty)):
        reading = OwnerPressureSensor(tree, "", "planctond.slice", str(proc(tmp_path))).read()
        assert reading == OwnerPressure(None, None, None, False, "no PSI")
    # /proc/pressure there but without the lines read host-wide (only "some"): nothing either.
    root = proc(tmp_path / "b", host={"memory": psi_text(9.0), "io": psi_text(9.0)})
    assert OwnerPressureSensor(None, "", None, str(root)).read().source == "no PSI"


def test_host_wide_with_one_resource(tmp_path: Path) -> None:
    root = proc(tmp_path, host={"memory": psi_text(9.0, 4.0)})
    reading = OwnerPressureSensor(None, "", None, str(root)).read()
    assert _fields(reading) == (None, 4.0, None, False)
    assert reading.source == str(root / "pressure")


# --- what the reading says --------------------------------------------------------------------


def test_the_source_names_at_most_four_cgroups_slices_first(tmp_path: Path) -> None:
    root = cgroup(tmp_path / "cgroup", "")
    names = ["-.mount", "dev-hugepages.mount", "init.scope", "planctond.slice", "sys-fs.mount"]
    names += ["system.slice", "user.slice", "machine.slice"]
    for rel in names:
        cgroup(root, rel)
    reading = OwnerPressureSensor(str(root), "", "planctond.slice", str(proc(tmp_path))).read()
    assert reading.source == "cgroups machine.slice, system.slice, user.slice, -.mount (+3 more)"
    # Four or fewer: all named, no count.
    few = OwnerPressureSensor(str(root), "system.slice", None, str(proc(tmp_path))).read()
    assert few.source == "cgroups system.slice"


def test_the_source_counts_every_cgroup_read(tmp_path: Path) -> None:
    root = cgroup(tmp_path / "cgroup", "")
    for i in range(11):
        cgroup(root, f"c{i:02}")
    cgroup(root, "pilots")
    reading = OwnerPressureSensor(str(root), "", "pilots", str(proc(tmp_path))).read()
    assert reading.source == "cgroups c00, c01, c02, c03 (+7 more)"


def test_a_change_of_source_is_logged_once(
    tmp_path: Path, tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    proc_root = proc(tmp_path, host=HOST_PSI)
    sensor = OwnerPressureSensor(str(tree), "", "planctond.slice", str(proc_root))

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER]

    for _ in range(3):
        assert sensor.read().per_cgroup
    assert said() == [
        "the owner's stalls (PSI) are read from its cgroups system.slice, user.slice, init.scope"
    ]
    cgroup(tree, "machine.slice")  # another cgroup: still the cgroups, nothing new to say
    sensor.read()
    assert len(said()) == 1
    sensor.tree = None  # the tree gone: host-wide, said once
    for _ in range(3):
        assert not sensor.read().per_cgroup
    assert len(said()) == 2
    host_wide = f"the owner's stalls (PSI) are read host-wide from {proc_root}/pressure"
    assert said()[1].startswith(host_wide)
    for name in HOST_PSI:
        (proc_root / "pressure" / name).unlink()
    for _ in range(3):
        assert sensor.read().source == "no PSI"
    assert said()[2:] == ["the owner's stalls cannot be read: no PSI on this host"]
    sensor.tree = str(tree)  # and back
    sensor.read()
    sensor.read()
    assert len(said()) == 4 and said()[3] == said()[0].replace(
        "cgroups system.slice, user.slice, init.scope",
        "cgroups machine.slice, system.slice, user.slice, init.scope",
    )
