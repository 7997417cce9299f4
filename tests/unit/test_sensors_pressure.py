from __future__ import annotations

import os
from pathlib import Path

import pytest

from planctond.sensors.pressure import parse_some_avg10, read_pressure

CPU = "some avg10=12.50 avg60=3.36 avg300=1.35 total=11202838\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
MEM = "some avg10=0.75 avg60=0.10 avg300=0.00 total=123\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=99\n"
IO = "some avg10=3.02 avg60=2.00 avg300=1.00 total=5\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=4\n"


def test_reads_some_avg10(tmp_path: Path) -> None:
    (tmp_path / "cpu").write_text(CPU)
    (tmp_path / "memory").write_text(MEM)
    (tmp_path / "io").write_text(IO)
    assert read_pressure(str(tmp_path)) == {
        "cpu_pressure": 12.5,
        "mem_pressure": 0.75,
        "io_pressure": 3.02,
    }


def test_absent_files_are_zero(tmp_path: Path) -> None:
    (tmp_path / "memory").write_text(MEM)
    assert read_pressure(str(tmp_path)) == {
        "cpu_pressure": 0.0,
        "mem_pressure": 0.75,
        "io_pressure": 0.0,
    }
    assert read_pressure(str(tmp_path / "nope")) == dict.fromkeys(
        ("cpu_pressure", "mem_pressure", "io_pressure"), 0.0
    )


def test_garbage_is_zero(tmp_path: Path) -> None:
    (tmp_path / "cpu").write_text("some avg10=abc\n")
    assert read_pressure(str(tmp_path))["cpu_pressure"] == 0.0
    assert parse_some_avg10("full avg10=9.00\n") == 0.0


@pytest.mark.skipif(not os.path.exists("/proc/pressure/cpu"), reason="no PSI on this kernel")
def test_real_proc_pressure() -> None:
    values = read_pressure()
    assert set(values) == {"cpu_pressure", "mem_pressure", "io_pressure"}
    assert all(0.0 <= v <= 100.0 for v in values.values())
    with open("/proc/pressure/cpu") as f:
        assert f.read().startswith("some avg10=")
