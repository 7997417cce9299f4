"""Reading a small file whose path someone else chose, without trusting what is at that path.

A config or state file is named by an admin (or left behind by an earlier run), and whatever sits
at the path is read by a daemon that must keep running: a FIFO would block it forever, `/dev/zero`
or a runaway log would eat its memory, a directory has no content. So the file is opened without
blocking, must be a regular file, and is read up to a limit, never further. Every refusal is an
`OSError`, so callers handle "cannot read" in one place.
"""

from __future__ import annotations

import errno
import os
import stat


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
