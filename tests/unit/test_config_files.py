"""read_limited: a bounded read of a regular file, whatever sits at the path (issue 9, class 3)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from planctond import constants as C
from planctond.config.errors import ConfigError
from planctond.config.files import FileTooLarge, NotARegularFile, read_limited
from planctond.config.loader import load_config


def test_reads_a_regular_file_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_limited(path, 10) == b"x" * 10
    assert read_limited(str(path), 100) == b"x" * 10
    (tmp_path / "empty").write_bytes(b"")
    assert read_limited(tmp_path / "empty", 0) == b""


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 11)
    with pytest.raises(FileTooLarge) as info:
        read_limited(path, 10)
    assert isinstance(info.value, OSError)
    assert info.value.filename == str(path)
    assert "10 bytes" in str(info.value.strerror)


def test_a_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            read_limited(fifo, 100)
        except BaseException as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive(), "read_limited blocked on a FIFO"
    assert len(outcome) == 1 and isinstance(outcome[0], NotARegularFile)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_devices_are_refused_even_behind_a_symlink(tmp_path: Path, device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"{device} absent")
    link = tmp_path / "config.yaml"
    link.symlink_to(device)
    with pytest.raises(NotARegularFile):
        read_limited(link, 1024)


def test_directories_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(NotARegularFile):
        read_limited(tmp_path, 1024)
    with pytest.raises(FileNotFoundError):
        read_limited(tmp_path / "absent", 1024)
    with pytest.raises(ValueError):
        read_limited(tmp_path, -1)


def test_the_config_loader_reads_through_it(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file") as info:
        load_config(str(fifo))
    assert info.value.file == str(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(str(tmp_path))
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (C.MAX_CONFIG_SIZE + 1))
    with pytest.raises(ConfigError, match=f"larger than {C.MAX_CONFIG_SIZE} bytes"):
        load_config(str(big))
