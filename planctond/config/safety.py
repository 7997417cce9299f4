"""Pool settings that give a pilot more than CPU time: allowed, and named at every load.

Each has a real use (CVMFS pilots need /dev/fuse and SYS_ADMIN, a WorkQueue worker may want the
host's network), so none is refused. But each hands whoever controls the pilot's image a piece of
the volunteer's host, so every load names it in `Config.warnings`, with file, line and pool, logged
once per load (and shown by `--check-config`): an admin who copied a snippet sees what it grants.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from typing import Final

from planctond.config.document import Node
from planctond.config.model import PoolConfig

# Devices a pilot may get without a word: /dev/fuse (CVMFS and other FUSE pilots; it reaches only
# the FUSE mounts made in the container itself) and the pseudo-devices every container already
# has. Anything else (disks, /dev/mem, /dev/kvm, GPUs, terminals) is the host's hardware.
SAFE_DEVICES: Final = frozenset(
    {"/dev/fuse", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}
)
# Whoever reaches Docker's socket can start a privileged container: a bind of it, or of a
# directory holding it, or of the whole root, makes a pilot root on the host.
DOCKER_SOCKETS: Final = frozenset({"/var/run/docker.sock", "/run/docker.sock"})
_HOLDS_THE_HOST: Final = frozenset({"/", "/run", "/var/run"})
_ROOT: Final = "makes a pilot root on the host"


def _bind_risk(bind: str) -> str | None:
    host = bind.split(":", 1)[0]
    if not host.startswith("/"):
        return None  # a named volume
    path = posixpath.normpath(host)
    if path.startswith("//"):
        path = path[1:]
    if path in DOCKER_SOCKETS or posixpath.basename(path) == "docker.sock":
        return f"binds {host}, Docker's socket: that {_ROOT}"
    if path in _HOLDS_THE_HOST:
        return f"binds {host} of the host: that {_ROOT} (Docker's socket is under it)"
    return None


def _risks(pool: PoolConfig) -> Iterator[tuple[str, str]]:
    """(key, what it grants) for every risky setting of the pool."""
    if pool.privileged:
        yield (
            "privileged",
            f"privileged: true gives pilots every capability and device: that {_ROOT}",
        )
    for device in pool.devices:
        if device.host not in SAFE_DEVICES:
            yield "devices", f"gives pilots the host's device {device.host}"
    for bind in pool.binds:
        risk = _bind_risk(bind)
        if risk is not None:
            yield "binds", risk
    if pool.network_mode == "host":
        yield "network_mode", "network_mode: host puts pilots on the host's network stack"
    if not pool.no_new_privileges:
        yield (
            "no_new_privileges",
            "no_new_privileges: false lets setuid programs in pilots gain root",
        )
    for option in pool.security_opts:
        if option.replace("=", ":") == "no-new-privileges:false":
            yield "security_opts", f"{option} lets setuid programs in pilots gain root"


def risk_warnings(file: str, pool: PoolConfig, entries: Mapping[str, Node]) -> list[str]:
    """One warning per risky setting, at the line of the key that asked for it (the pool's own
    or the `defaults` block's)."""
    warnings = []
    for key, what in _risks(pool):
        node = entries.get(key)
        where = f"{node.file or file}:{node.line}: {node.path}" if node is not None else file
        warnings.append(f"{where}: pool {pool.name!r}: {what}")
    return list(dict.fromkeys(warnings))
