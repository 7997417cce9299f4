"""Readers for the values that become part of a pilot container: images, commands, binds,
devices, capabilities, labels.

Values that Docker would refuse at container creation are refused here instead, at load time,
with the line number, because a pilot that fails to start at 3 a.m. tells nobody why.
"""

from __future__ import annotations

import re
import shlex
from typing import Final

from planctond import constants as C
from planctond.config.document import Node
from planctond.config.errors import did_you_mean
from planctond.config.fields import Invalid, expected, text
from planctond.config.imageref import parse_image
from planctond.config.model import DeviceMapping, PullPolicy


def image(node: Node) -> str:
    value = node.text()
    if value is None:
        raise expected(node, "an image reference like busybox:latest")
    try:
        return str(parse_image(value))
    except ValueError as exc:
        raise Invalid(str(exc), node) from None


def pull_policy(node: Node) -> PullPolicy:
    value = node.text()
    try:
        return PullPolicy(value or "")
    except ValueError:
        raise expected(node, "always, missing or never") from None


def argv(node: Node) -> tuple[str, ...]:
    """A command: a list of words, or one string split like a shell would."""
    if node.is_null:
        return ()
    if node.is_list:
        words = []
        for item in node.value:
            word = item.text()
            if word is None:
                raise expected(item, "a word of the command (text)")
            words.append(word)
        return tuple(words)
    value = node.text()
    if value is None:
        raise expected(node, "a command: a list of words or a string")
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise Invalid(f"cannot split command {value!r} like a shell: {exc}", node) from None


NETWORK_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def network_mode(node: Node) -> str:
    value = node.text()
    what = "bridge, host, none, container:NAME or a network name"
    if value is None:
        raise expected(node, what)
    if value.startswith("container:"):
        if not NETWORK_NAME.fullmatch(value.removeprefix("container:")):
            raise expected(node, what)
        return value
    if not NETWORK_NAME.fullmatch(value):
        raise expected(node, what)
    return value


_ENV_NAME: Final = re.compile(r"[^=\s]+")


def env(node: Node) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(key: str, value: str, where: Node) -> None:
        if not _ENV_NAME.fullmatch(key):
            raise Invalid(f"bad environment variable name {key!r}", where)
        if key in seen:
            raise Invalid(f"environment variable {key!r} given twice", where)
        seen.add(key)
        pairs.append((key, value))

    if node.is_null:
        return ()
    if node.is_map:
        for key, item in node.value.items():
            if item.is_map or item.is_list:
                raise expected(item, "a text value")
            add(key, item.text() or "", item)
        return tuple(pairs)
    if node.is_list:
        for item in node.value:
            value = item.text()
            if value is None or "=" not in value:
                raise expected(item, "NAME=value")
            key, _, rest = value.partition("=")
            add(key, rest, item)
        return tuple(pairs)
    raise expected(node, "a mapping NAME: value, or a list of NAME=value")


_BIND_OPTIONS: Final = frozenset(
    [
        "ro",
        "rw",
        "z",
        "Z",
        "shared",
        "rshared",
        "slave",
        "rslave",
        "private",
        "rprivate",
        "nocopy",
        "consistent",
        "cached",
        "delegated",
    ]
)
_VOLUME_NAME: Final = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


def bind(node: Node) -> str:
    value = node.text()
    what = "a bind HOST:CONTAINER[:ro|rw], paths absolute (or a volume name as HOST)"
    if value is None:
        raise expected(node, what)
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise expected(node, what)
    host, container = parts[0], parts[1]
    if not (host.startswith("/") or _VOLUME_NAME.fullmatch(host)) or not container.startswith("/"):
        raise expected(node, what)
    if len(parts) == 3:
        bad = [o for o in parts[2].split(",") if o not in _BIND_OPTIONS]
        if bad:
            raise Invalid(
                f"unknown bind option {bad[0]!r} in {value!r}{did_you_mean(bad[0], _BIND_OPTIONS)}",
                node,
            )
    return value


def device(node: Node) -> DeviceMapping:
    value = node.text()
    what = "a device HOST[:CONTAINER[:PERMS]], e.g. /dev/fuse:/dev/fuse:rwm"
    if value is None:
        raise expected(node, what)
    parts = value.split(":")
    if len(parts) > 3 or not all(parts):
        raise expected(node, what)
    host = parts[0]
    container = parts[1] if len(parts) > 1 else host
    perms = parts[2] if len(parts) > 2 else "rwm"
    if not host.startswith("/") or not container.startswith("/"):
        raise expected(node, what + " (absolute paths)")
    if not perms or set(perms) - set("rwm") or len(set(perms)) != len(perms):
        raise expected(node, what + " (PERMS from r, w, m)")
    return DeviceMapping(host=host, container=container, perms=perms)


# Linux capabilities Docker knows (as in capabilities(7)), without the CAP_ prefix.
CAPABILITIES: Final = frozenset(
    [
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "AUDIT_WRITE",
        "BLOCK_SUSPEND",
        "BPF",
        "CHECKPOINT_RESTORE",
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "IPC_LOCK",
        "IPC_OWNER",
        "KILL",
        "LEASE",
        "LINUX_IMMUTABLE",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "MKNOD",
        "NET_ADMIN",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_RAW",
        "PERFMON",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYSLOG",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_CHROOT",
        "SYS_MODULE",
        "SYS_NICE",
        "SYS_PACCT",
        "SYS_PTRACE",
        "SYS_RAWIO",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "WAKE_ALARM",
        "ALL",
    ]
)


def capabilities(node: Node) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(add, drop) from `+CAP`, `-CAP` or `CAP` (= add), `CAP_` prefix optional, any case.

    Stored without the prefix, the spelling every Docker version accepts. A list without any
    `-CAP` drops `constants.DEFAULT_CAP_DROP`, less what it adds (`[NET_RAW]` gets raw sockets
    back): the safe default is kept unless asked for. A list with drops of its own is the whole
    drop list: whoever writes one has taken charge of it (`--check-config` shows it).
    """
    add: list[str] = []
    drop: list[str] = []
    if node.is_null:
        return (), C.DEFAULT_CAP_DROP
    if not node.is_list:
        raise expected(node, "a list of capabilities")
    read = text("a capability like SYS_ADMIN, +SYS_ADMIN or -NET_RAW")
    for item in node.value:
        word = read(item)
        sign, name = ("-", word[1:]) if word.startswith("-") else ("+", word.removeprefix("+"))
        name = name.strip().upper().removeprefix("CAP_")
        if name not in CAPABILITIES:
            raise Invalid(f"unknown capability {word!r}{did_you_mean(name, CAPABILITIES)}", item)
        target, other = (add, drop) if sign == "+" else (drop, add)
        if name in other:
            raise Invalid(f"capability {name} is both added and dropped", item)
        if name not in target:
            target.append(name)
    if not drop and "ALL" not in add:
        drop = [c for c in C.DEFAULT_CAP_DROP if c not in add]
    return tuple(add), tuple(drop)


USER: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]*)?")


def labels(node: Node) -> tuple[tuple[str, str], ...]:
    if node.is_null:
        return ()
    if not node.is_map:
        raise expected(node, "a mapping of label: value")
    pairs = []
    for key, item in node.value.items():
        if key.lower().startswith("org.plancton."):
            raise Invalid(f"label {key!r}: org.plancton.* labels are planctond's own", item)
        if item.is_map or item.is_list:
            raise expected(item, "a text value")
        pairs.append((key, item.text() or ""))
    return tuple(pairs)


DOCKER_URL: Final = re.compile(r"(unix|tcp|http|https|ssh|npipe)://\S+")
