"""YAML text -> a tree of values that remember their key path and line.

`yaml.safe_load` forgets where a value came from, and errors must name the line. So the document is
composed into PyYAML's node graph (safe tags only, nothing is constructed from custom tags), merge
keys (`<<: *defaults`) are expanded, and each value is wrapped in a `Node` with its path and line.
Duplicate keys, which PyYAML silently resolves to the last one, are refused here: with two
`memory:` lines nobody knows which one the admin meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from planctond.config.errors import Problem

# Aliases let a tiny file expand into a huge tree ("billion laughs"): stop long before that hurts.
MAX_NODES: Final = 100_000
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_PLAIN_COLLECTIONS: Final = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


@dataclass
class Node:
    """One value of the document: a scalar, a list of Nodes or a dict of Nodes."""

    value: Any
    path: str
    line: int  # 1-based; for a mapping entry the line of its key
    raw: str | None = None  # a scalar's text as written (so `user: 1:10` stays "1:10")
    keys: dict[str, int] = field(default_factory=dict)  # mapping: key -> line of the key

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    @property
    def is_null(self) -> bool:
        return self.value is None

    def text(self) -> str | None:
        """The scalar as text (None for null, lists and mappings)."""
        if self.value is None or self.is_map or self.is_list:
            return None
        return self.raw if self.raw is not None else str(self.value)

    def shown(self) -> str:
        """How the bad value is quoted back in an error message."""
        if self.is_map:
            return "a mapping"
        if self.is_list:
            return "a list"
        if self.value is None:
            return "nothing (null)"
        if isinstance(self.value, str):
            return repr(self.value)
        return self.raw if self.raw is not None else repr(self.value)


def child_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


class _DocumentError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = SafeConstructor()
        self.count = 0
        self.own_keys: dict[int, set[int]] = {}

    def fail(self, path: str, line: int, message: str) -> _DocumentError:
        return _DocumentError(Problem(self.file, path, line, message))

    def build(self, node: yaml.Node, path: str, line: int | None = None) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(path, node.start_mark.line + 1, "document too large (alias bomb?)")
        here = line if line is not None else node.start_mark.line + 1
        if isinstance(node, ScalarNode):
            try:
                value = self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise self.fail(path, here, f"cannot read value: {exc}") from None
            return Node(value=value, path=path, line=here, raw=node.value)
        if not isinstance(node, ScalarNode) and node.tag not in _PLAIN_COLLECTIONS:
            raise self.fail(path, here, f"YAML tag {node.tag!r} not allowed here")
        if isinstance(node, SequenceNode):
            items = [
                self.build(item, f"{path}[{i}]", item.start_mark.line + 1)
                for i, item in enumerate(node.value)
            ]
            return Node(value=items, path=path, line=here)
        if isinstance(node, MappingNode):
            return self.mapping(node, path, here)
        raise self.fail(path, here, f"unsupported YAML node {type(node).__name__}")

    def mapping(self, node: MappingNode, path: str, here: int) -> Node:
        # Keys written in this mapping beat keys merged in with `<<:`; only those may not repeat.
        # (flatten_mapping rewrites the node in place, so remember them for aliased revisits.)
        own = self.own_keys.get(id(node))
        if own is None:
            own = {id(k) for k, _ in node.value if k.tag != _MERGE_TAG}
            self.own_keys[id(node)] = own
            try:
                self.constructor.flatten_mapping(node)
            except yaml.YAMLError as exc:
                raise self.fail(path, here, f"bad merge key: {exc}") from None
        written = {str(k.value) for k, _ in node.value if id(k) in own}
        entries: dict[str, Node] = {}
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode) or key_node.value == "":
                raise self.fail(path, key_line, "keys must be plain names")
            key = str(key_node.value)
            merged = id(key_node) not in own
            if merged and key in written:
                continue
            if key in entries and not merged:
                raise self.fail(
                    child_path(path, key),
                    key_line,
                    f"duplicate key (first given on line {keys[key]})",
                )
            keys[key] = key_line
            entries[key] = self.build(value_node, child_path(path, key), key_line)
        return Node(value=entries, path=path, line=here, keys=keys)
        raise self.fail(path, here, f"unsupported YAML node {type(node).__name__}")


def parse_document(text: str, file: str) -> Node | Problem:
    """The document's tree, or the Problem that stopped reading it. Empty text -> empty mapping."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        return Problem(file, "", line, f"not valid YAML: {what}")
    except yaml.YAMLError as exc:
        return Problem(file, "", None, f"not valid YAML: {exc}")
    if root is None:
        return Node(value={}, path="", line=1)
    try:
        return _Builder(file).build(root, "")
    except _DocumentError as exc:
        return exc.problem
    except RecursionError:
        return Problem(file, "", None, "document nested too deeply")
