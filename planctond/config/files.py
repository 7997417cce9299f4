"""Reading a small file whose path someone else chose, without trusting what is at that path.

A config or state file is named by an admin (or left behind by an earlier run), and whatever sits
at the path is read by a daemon that must keep running: a FIFO would block it forever, `/dev/zero`
or a runaway log would eat its memory, a directory has no content. So the file is opened without
blocking, must be a regular file, and is read up to a limit, never further. Every refusal is an
`OSError`, so callers handle "cannot read" in one place.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile

from planctond import constants as C
from planctond.config.errors import ConfigError, Problem


class FileTooLarge(OSError):
    """The file holds more than the caller's limit: it is not what the caller expects there."""


class NotARegularFile(OSError):
    """A directory, FIFO, socket or device: reading it could block or never end."""


def read_limited(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole content of the regular file at `path`, at most `limit` bytes.

    Raises `NotARegularFile` (anything but a regular file, checked on the open descriptor, so a
    path swapped between check and read cannot fool it), `FileTooLarge` (more than `limit` bytes,
    whether its size says so or it grew while being read), or the `OSError` of the open or read
    (`FileNotFoundError`, `PermissionError`, ...). Symlinks are followed, as for any config file.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    # O_NOCTTY: a terminal device must not become the daemon's controlling terminal.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", os.fspath(path))
        if info.st_size > limit:
            raise _too_large(path, limit)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise _too_large(path, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: str | os.PathLike[str], limit: int) -> FileTooLarge:
    return FileTooLarge(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))


def read_config_text(path: str) -> str:
    """The text of the config file at `path`, read bounded (`read_limited`: a FIFO, a device or
    a huge file is refused at once); FileNotFoundError as is, any other failure a ConfigError."""
    try:
        data = read_limited(path, C.MAX_CONFIG_SIZE)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(
            [Problem(path, "", None, f"cannot read: {exc.strerror or exc}")]
        ) from None
    return decode_config(data, path)


def decode_config(data: bytes, name: str) -> str:
    """Bytes of a file or a response as text; ConfigError at the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise ConfigError([Problem(name, "", line, problem)]) from None


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace the file at `path` with `data` all at once: a reader (or the next start after a
    crash or power cut) sees the old content or the new, never a torn one."""
    directory = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(os.fspath(path))}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
