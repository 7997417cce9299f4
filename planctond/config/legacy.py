"""Plancton 0.6 `config.yaml` keys, mapped onto the new schema with their old meaning.

A volunteer host that upgrades keeps its old file and keeps running: each legacy key becomes the
new key it always meant (on the single pool "default"), and says so once in a warning naming the new
key. The values are rewritten as `Node`s of the new schema but keep their own path and line, so an
error in `max_dock_mem` still points at the `max_dock_mem` line.

Plancton 0.6 semantics kept on purpose:
- `docker_image` was re-pulled every `image_expiration` seconds: `pull: {policy: always, refresh}`.
- `max_dock_swap` was the swap *on top of* `max_dock_mem` (MemorySwap = mem + swap): it is `swap`.
- `binds` were all mounted read-only: `:ro` is added to a bind that names no mode. (Plancton also
  added SELinux relabelling `Z`; relabelling shared host trees such as a CVMFS cache is harmful
  and it is a no-op without SELinux, so it is not carried over.)
- `capabilities`: `-CAP` drops, `+CAP` or `CAP` adds.
- `devices` as `host:ctr:perms` strings (or Docker's PathOnHost/... mappings of older files).
- `influxdb_url`: one string or a list of `URL#database`; entries without `#` were ignored.
- keys Plancton did not know were ignored: in a file that is purely Plancton 0.6 they are warnings
  here, not errors (see the loader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from planctond.config.document import Node

# legacy key -> (section, new key); section "" = top level, "pool" = pools.default
LEGACY_KEYS: Final[dict[str, tuple[str, str]]] = {
    "main_sleep": ("", "tick"),
    "updateconfig": ("", "config_check"),
    "grace_kill": ("owner", "grace_kill"),
    "grace_spawn": ("owner", "grace_spawn"),
    "influxdb_url": ("monitoring", "influxdb"),
    "image_expiration": ("pool", "pull"),
    "cpus_per_dock": ("pool", "cpus"),
    "max_docks": ("pool", "max_pilots"),
    "docks_per_loop": ("pool", "per_tick"),
    "max_ttl": ("pool", "ttl"),
    "docker_image": ("pool", "image"),
    "docker_cmd": ("pool", "command"),
    "docker_privileged": ("pool", "privileged"),
    "max_dock_mem": ("pool", "memory"),
    "max_dock_swap": ("pool", "swap"),
    "user_group": ("pool", "user"),
    "binds": ("pool", "binds"),
    "devices": ("pool", "devices"),
    "capabilities": ("pool", "capabilities"),
    "security_opts": ("pool", "security_opts"),
}

_NOTES: Final[dict[str, str]] = {
    "image_expiration": " (Plancton re-pulled the image this often: pull policy 'always')",
    "docker_cmd": " (a string is split like a shell would)",
    "max_dock_swap": " (swap on top of memory, as before: MemorySwap = memory + swap)",
    "binds": " (mounted read-only as Plancton did, ':ro' added where no mode is given)",
    "max_docks": " (now a safe expression, never eval'd)",
}

_DEVICE_KEYS: Final = ("PathOnHost", "PathInContainer", "CgroupPermissions")


def new_name(key: str, pool: str = "default") -> str:
    section, new = LEGACY_KEYS[key]
    if section == "pool":
        return f"pools.{pool}.{new}"
    if section == "monitoring":
        return f"monitoring.{new}"
    return f"{section}.{new}" if section else new


@dataclass
class LegacyParts:
    """The legacy keys of one file, rewritten: section -> new key -> Node."""

    top: dict[str, Node] = field(default_factory=dict)
    owner: dict[str, Node] = field(default_factory=dict)
    pool: dict[str, Node] = field(default_factory=dict)
    monitoring: dict[str, Node] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)  # the legacy keys found, in file order

    def section(self, name: str) -> dict[str, Node]:
        return {
            "": self.top,
            "owner": self.owner,
            "pool": self.pool,
            "monitoring": self.monitoring,
        }[name]


def _scalar(value: object, like: Node) -> Node:
    return Node(value=value, path=like.path, line=like.line, raw=None, file=like.file)


def _rewrite(key: str, node: Node) -> Node:
    """The legacy value as the new key's value (same path and line, for error messages)."""
    if key == "image_expiration":
        return Node(
            value={"policy": _scalar("always", node), "refresh": node},
            path=node.path,
            line=node.line,
            keys={"policy": node.line, "refresh": node.line},
            file=node.file,
        )
    if key == "binds" and node.is_list:
        items = []
        for item in node.value:
            text = item.text()
            if text is not None and text.count(":") == 1:
                item = Node(value=f"{text}:ro", path=item.path, line=item.line, file=item.file)
            items.append(item)
        return Node(value=items, path=node.path, line=node.line, file=node.file)
    if key == "devices" and node.is_list:
        items = []
        for item in node.value:
            if item.is_map and set(item.value) <= set(_DEVICE_KEYS):
                parts = [item.value[k].text() or "" for k in _DEVICE_KEYS if k in item.value]
                item = Node(value=":".join(parts), path=item.path, line=item.line, file=item.file)
            items.append(item)
        return Node(value=items, path=node.path, line=node.line, file=node.file)
    if key == "influxdb_url" and not node.is_map:
        entries = [node] if node.text() is not None else node.value if node.is_list else []
        kept = [e for e in entries if "#" in (e.text() or "")]
        return Node(value=kept, path=node.path, line=node.line, file=node.file)
    return node


def translate(entries: dict[str, Node], file: str) -> LegacyParts:
    """Take the legacy keys out of `entries` (top level of the file) and rewrite them."""
    parts = LegacyParts()
    for key in [k for k in entries if k in LEGACY_KEYS]:
        node = entries.pop(key)
        section, new = LEGACY_KEYS[key]
        parts.section(section)[new] = _rewrite(key, node)
        parts.keys.append(key)
        parts.warnings.append(
            f"{node.file or file}:{node.line}: {key} is a Plancton 0.6 key, read as "
            f"{new_name(key)}{_NOTES.get(key, '')}; please rename it"
        )
        if key == "influxdb_url":
            dropped = (node.value if node.is_list else [node]) if not node.is_map else []
            for entry in dropped:
                if "#" not in (entry.text() or ""):
                    parts.warnings.append(
                        f"{entry.file or file}:{entry.line}: {entry.path}: {entry.shown()} has no "
                        "'#database': ignored, as Plancton 0.6 did"
                    )
    return parts
