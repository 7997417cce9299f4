"""Readers for single config values: Node in, typed value out, or `Invalid` saying what was expected.

Each reader checks everything about one value (type, range, syntax) so the loader only wires keys
to readers. Values that Docker would refuse at container creation are refused here instead, at load
time, with the line number, because a pilot that fails to start at 3 a.m. tells nobody why.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from typing import Final, TypeVar

from planctond.config import units
from planctond.config.document import Node
from planctond.config.errors import did_you_mean
from planctond.config.expr import ExprError, compile_expr
from planctond.config.imageref import parse_image
from planctond.config.model import DeviceMapping, PullPolicy

T = TypeVar("T")


class Invalid(Exception):
    """The value at `node` is wrong; the message says what was expected."""

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.node = node


def expected(node: Node, what: str) -> Invalid:
    return Invalid(f"expected {what}, got {node.shown()}", node)


# --- scalars --------------------------------------------------------------------------------------


def duration(*, positive: bool = False, minimum: float = 0.0) -> Callable[[Node], float]:
    def read(node: Node) -> float:
        if node.is_map or node.is_list or node.is_null:
            raise expected(node, units.DURATION_HINT)
        try:
            seconds = units.parse_duration(node.value)
        except ValueError as exc:
            raise Invalid(str(exc), node) from None
        if positive and seconds <= 0:
            raise expected(node, "a duration greater than 0")
        if seconds < minimum:
            raise expected(node, f"a duration of at least {minimum:g}s")
        return seconds

    return read


def size(node: Node) -> int:
    if node.is_map or node.is_list or node.is_null:
        raise expected(node, units.SIZE_HINT)
    try:
        return units.parse_size(node.value)
    except ValueError as exc:
        raise Invalid(str(exc), node) from None


def number(*, low: float, low_inclusive: bool, what: str) -> Callable[[Node], float]:
    def read(node: Node) -> float:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise expected(node, what)
        if not math.isfinite(value) or value < low or (value == low and not low_inclusive):
            raise expected(node, what)
        return float(value)

    return read


def integer(*, low: int, high: int | None = None, what: str) -> Callable[[Node], int]:
    def read(node: Node) -> int:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise expected(node, what)
        if value < low or (high is not None and value > high):
            raise expected(node, what)
        return value

    return read


def boolean(node: Node) -> bool:
    if not isinstance(node.value, bool):
        raise expected(node, "true or false")
    return node.value


def text(what: str, pattern: re.Pattern[str] | None = None) -> Callable[[Node], str]:
    def read(node: Node) -> str:
        value = node.text()
        if value is None or not value or (pattern is not None and not pattern.fullmatch(value)):
            raise expected(node, what)
        return value

    return read


def optional(reader: Callable[[Node], T]) -> Callable[[Node], T | None]:
    def read(node: Node) -> T | None:
        return None if node.is_null else reader(node)

    return read


def expression(node: Node) -> str:
    """The expression's source, after it compiled: a bad one fails the load, never a tick."""
    source = node.text()
    if source is None:
        raise expected(node, 'an expression, e.g. "ncpus - 2" or "hour < 7"')
    try:
        compile_expr(source)
    except ExprError as exc:
        raise Invalid(f"bad expression {source!r}: {exc}", node) from None
    return source


# --- Docker-shaped values -------------------------------------------------------------------------


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


def string_list(item: Callable[[Node], T]) -> Callable[[Node], tuple[T, ...]]:
    def read(node: Node) -> tuple[T, ...]:
        if node.is_null:
            return ()
        if not node.is_list:
            raise expected(node, "a list")
        return tuple(item(i) for i in node.value)

    return read


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

    Stored without the prefix, the spelling every Docker version accepts.
    """
    add: list[str] = []
    drop: list[str] = []
    if node.is_null:
        return (), ()
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


def exit_codes(node: Node) -> frozenset[int]:
    read = string_list(integer(low=0, high=255, what="an exit code 0..255"))
    return frozenset(read(node))


def absolute_path(node: Node) -> str:
    value = node.text()
    if value is None or not value.startswith("/"):
        raise expected(node, "an absolute path")
    return value


DOCKER_URL: Final = re.compile(r"(unix|tcp|http|https|ssh|npipe)://\S+")
