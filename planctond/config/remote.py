"""What a remote config is to the loader, and how layers of config merge: pure, no I/O.

A site keeps one config for its whole fleet; each host keeps the last good copy of it and puts
its own files on top. The merge is on parsed documents (`Node` trees), before validation, so the
result is checked once as a whole and every value still knows its file (or URL) and line: errors
and `--check-config` name where each value was written.

The rule is the one of systemd drop-ins and Kubernetes' strategic merge, kept small enough to
predict: a mapping merges key by key, recursively (a host sets `pools.atlas.max_pilots` and keeps
every other key of the site's pool `atlas`); anything else (a scalar, a list) from the upper
layer replaces the lower one's whole. Nothing is deleted by an upper layer: a host that wants
less of a pool says `max_pilots: "0"` or `run_when: "false"`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from planctond.config.document import Node, child_path
from planctond.config.errors import Problem
from planctond.config.schema import LOCAL_ONLY_KEYS


@dataclass(frozen=True)
class RemoteDocument:
    """One answer of the remote config's server, as fetched and as cached."""

    url: str
    text: str
    etag: str | None = None
    last_modified: str | None = None
    fetched: float = 0.0  # epoch seconds of the response that brought this text

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def merge(base: Node, upper: Node) -> Node:
    """`upper` laid over `base`: mappings merge key by key, anything else is replaced whole.
    The result shares the unchanged subtrees of both (nodes are never modified)."""
    if not (base.is_map and upper.is_map):
        return upper
    value = dict(base.value)
    keys = dict(base.keys)
    for key, node in upper.value.items():
        below = value.get(key)
        value[key] = node if below is None else merge(below, node)
        keys[key] = upper.keys.get(key, node.line)
    return Node(value=value, path=upper.path, line=upper.line, keys=keys, file=upper.file)


def merge_all(layers: list[Node]) -> Node:
    """The layers merged in order, the first the lowest; an empty mapping for none."""
    merged = Node(value={}, path="", line=1)
    for layer in layers:
        merged = merge(merged, layer)
    return merged


def without(root: Node, key: str) -> Node:
    """The mapping `root` without `key` (a section the host does not take from the remote)."""
    if not root.is_map or key not in root.value:
        return root
    value = {k: v for k, v in root.value.items() if k != key}
    keys = {k: v for k, v in root.keys.items() if k != key}
    return Node(value=value, path=root.path, line=root.line, keys=keys, file=root.file)


def local_only_problems(root: Node) -> list[Problem]:
    """A remote document may not say where the remote config comes from (it would redirect or
    unpin itself) nor where the host keeps its state (the cache of the remote config is there)."""
    if not root.is_map:
        return []
    return [
        Problem(
            node.file,
            key,
            node.line,
            f"only the host's own config may set {key!r}, not the remote config (remove it "
            "from the site's document)",
        )
        for key, node in root.value.items()
        if key in LOCAL_ONLY_KEYS and not node.is_null
    ]


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before their children."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current.is_map:
            stack.extend(reversed(list(current.value.values())))
        elif current.is_list:
            stack.extend(reversed(current.value))


def index(root: Node) -> dict[str, Node]:
    """Node by key path (`pools.atlas.memory`), for provenance."""
    return {node.path: node for node in walk(root)}


def where(node: Node) -> str:
    return f"{node.file}:{node.line}" if node.file else f"line {node.line}"


def key_path(parts: tuple[str, ...]) -> str:
    path = ""
    for part in parts:
        path = child_path(path, part)
    return path
