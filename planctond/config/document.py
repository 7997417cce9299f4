"""YAML text -> a tree of values that remember their key path and line.

`yaml.safe_load` forgets where a value came from, and errors must name the line. So the document is
composed into PyYAML's node graph (safe tags only, nothing is constructed from custom tags), merge
keys (`<<: *defaults`) are expanded, and each value is wrapped in a `Node` with its path and line.
Duplicate keys, which PyYAML silently resolves to the last one, are refused here: with two
`memory:` lines nobody knows which one the admin meant.

This is where the file's text enters the daemon, so the rules that keep a hostile or broken file
harmless live here, each checked while the work it bounds is being done:
- the composer stops at `MAX_NODES` nodes and `MAX_DEPTH` levels (PyYAML's composer recurses, and
  its node graph costs hundreds of bytes a node);
- aliases and merge keys are expanded by us, not by PyYAML's `flatten_mapping`, which copies merged
  keys without limit before anything can count them: every value built and every merged key
  looked at is counted, so a 1 KB merge or alias bomb is refused after `MAX_NODES` steps;
- every key and scalar must be text (no lone surrogates, no control characters), because it ends
  up in Docker's JSON, the journal and D-Bus, which take nothing else;
- numbers longer than `MAX_NUMBER_TEXT` characters are refused before PyYAML computes them
  (`1:0:0:...` is evaluated digit by digit, `0x...` escapes Python's int-digit limit);
- a value PyYAML cannot construct (`2024-02-30`, `!!int abc`) is a problem at its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from planctond import constants as C
from planctond.config.errors import Problem

# Values of the document once aliases and merge keys are expanded (and merged keys looked at): a
# hand-written config has hundreds. Also the bound on nodes composed from the text.
MAX_NODES: Final = 20_000
# Characters of all key paths together: a long key under many aliases costs its length each time.
MAX_PATH_TEXT: Final = 2_000_000
MAX_DEPTH: Final = 32  # nesting levels, aliases and merge chains included (a config needs ~5)
MAX_NUMBER_TEXT: Final = 100  # characters of one YAML number
MAX_KEY_TEXT: Final = 256  # characters of one key: keys are names (pools, labels, variables)
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_PLAIN_COLLECTIONS: Final = frozenset({"tag:yaml.org,2002:seq", _MAP_TAG})
_NUMBER_TAGS: Final = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_VALUE_SPACE: Final = "\t\n\r"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_STR_TAG: Final = "tag:yaml.org,2002:str"
# Every character a YAML 1.1 number can be written with (decimal, hex, octal, binary,
# sexagesimal, exponent, `_` separators, signs).
_NUMBER_CHARS: Final = "0123456789_:.+-eExXoObBaAcCdDfF"
_NUMBER_STARTS: Final = frozenset(
    "0123456789."
)  # the only control characters a value may hold (scripts, lists)


@dataclass(slots=True)
class Node:
    """One value of the document: a scalar, a list of Nodes or a dict of Nodes."""

    value: Any
    path: str
    line: int  # 1-based; for a mapping entry the line of its key
    raw: str | None = None  # a scalar's text as written (so `user: 1:10` stays "1:10")
    keys: dict[str, int] = field(default_factory=dict)  # mapping: key -> line of the key
    # The file (or URL) the value was written in: a config merged from several (remote, drop-ins,
    # the main file) names the right one in each error.
    file: str = ""

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


def _not_text(value: str, allowed: str = "") -> str | None:
    """Why `value` is not text an admin can have meant, or None: a lone surrogate (a YAML escape
    like "\\ud800"; no encoding can carry it) or a control character other than `allowed`."""
    if value.isprintable():
        return None
    for index, ch in enumerate(value):
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return f"a lone surrogate U+{code:04X} at character {index + 1}"
        if (code < 0x20 or 0x7F <= code < 0xA0) and ch not in allowed:
            return f"the control character U+{code:04X} at character {index + 1}"
    return None


class _DocumentError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, whose composer gives up past MAX_NODES nodes or MAX_DEPTH levels."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.composed = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.composed += 1
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH or self.composed > MAX_NODES:
                what = (
                    f"nested deeper than {MAX_DEPTH} levels"
                    if self.depth > MAX_DEPTH
                    else f"more than {MAX_NODES} values: not a config file"
                )
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, what, mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        """The implicit tag of a plain scalar, without running PyYAML's regexes over a long one:
        they backtrack (a 400 KB `1:1:1:...` costs 25 MB and seconds). No bool, null or time is
        that long, so a long scalar is a number when it is made of number characters (and then
        refused as too long) and a string otherwise."""
        if kind is ScalarNode and implicit[0] and len(value) > MAX_NUMBER_TEXT:
            numeric = value.lstrip("+-")[:1] in _NUMBER_STARTS and not value.strip(_NUMBER_CHARS)
            return _INT_TAG if numeric else _STR_TAG
        tag: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return tag


_Entry = tuple[str, int, yaml.Node]  # key, line of the key, value


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.constructor = SafeConstructor()
        self.count = 0
        self.path_text = 0
        self.flat: dict[int, list[_Entry]] = {}  # mapping node -> its entries, merges expanded
        self.flattening: set[int] = set()

    def fail(self, path: str, line: int, message: str) -> _DocumentError:
        return _DocumentError(Problem(self.file, path, line, message))

    def spend(self, path: str, line: int, depth: int) -> None:
        """One more value built or merged key looked at: refuse the document past the bounds."""
        self.count += 1
        self.path_text += len(path)
        if self.count > MAX_NODES or self.path_text > MAX_PATH_TEXT:
            raise self.fail(
                path,
                line,
                f"document too large: more than {MAX_NODES} values once aliases and merge keys "
                "are expanded (alias bomb?)",
            )
        self.check_depth(path, line, depth)

    def check_depth(self, path: str, line: int, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(path, line, f"nested deeper than {MAX_DEPTH} levels (aliases included)")

    def build(self, node: yaml.Node, path: str, line: int, depth: int = 0) -> Node:
        self.spend(path, line, depth)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path, line)
        if node.tag not in _PLAIN_COLLECTIONS:
            raise self.fail(path, line, f"YAML tag {node.tag!r} not allowed here")
        if isinstance(node, SequenceNode):
            items = [
                self.build(item, f"{path}[{i}]", item.start_mark.line + 1, depth + 1)
                for i, item in enumerate(node.value)
            ]
            return Node(value=items, path=path, line=line, file=self.file)
        if isinstance(node, MappingNode):
            entries: dict[str, Node] = {}
            keys: dict[str, int] = {}
            for key, key_line, value in self.entries(node, path, depth):
                keys[key] = key_line
                entries[key] = self.build(value, child_path(path, key), key_line, depth + 1)
            return Node(value=entries, path=path, line=line, keys=keys, file=self.file)
        raise self.fail(path, line, f"unsupported YAML node {type(node).__name__}")

    def scalar(self, node: ScalarNode, path: str, line: int) -> Node:
        text = str(node.value)
        why = _not_text(text, _VALUE_SPACE)
        if why is not None:
            raise self.fail(path, line, f"{text!r} is not valid text: it holds {why}")
        if node.tag in _NUMBER_TAGS and len(text) > MAX_NUMBER_TEXT:
            raise self.fail(
                path, line, f"number {text[:20]!r}... too long ({len(text)} characters)"
            )
        try:
            value = self.constructor.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's constructors raise ValueError, KeyError, ...
            raise self.fail(path, line, f"cannot read value {text!r}: {yaml_reason(exc)}") from None
        return Node(value=value, path=path, line=line, raw=text, file=self.file)

    def key(self, node: yaml.Node, path: str, line: int) -> str:
        if not isinstance(node, ScalarNode) or node.value == "":
            raise self.fail(path, line, "keys must be plain names")
        key = str(node.value)
        why = _not_text(key)
        if why is not None:
            raise self.fail(path, line, f"key {key!r} is not valid text: it holds {why}")
        if len(key) > MAX_KEY_TEXT:
            raise self.fail(
                path, line, f"key {key[:40]!r}... longer than {MAX_KEY_TEXT} characters"
            )
        return key

    def entries(self, node: MappingNode, path: str, depth: int) -> list[_Entry]:
        """The mapping's entries with merge keys expanded, computed once per mapping (aliases
        share it). Keys written in the mapping beat merged ones and may not repeat; of the merged
        mappings the first given wins, as in YAML's merge key spec. Merged entries take the place
        of the first `<<`."""
        done = self.flat.get(id(node))
        if done is not None:
            return done
        line = node.start_mark.line + 1
        self.check_depth(path, line, depth)
        if id(node) in self.flattening:
            raise self.fail(path, line, "merge key refers to its own mapping")
        self.flattening.add(id(node))
        own: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag != _MERGE_TAG:
                key_line = key_node.start_mark.line + 1
                key = self.key(key_node, path, key_line)
                if key in own:
                    first = f"duplicate key (first given on line {own[key]})"
                    raise self.fail(child_path(path, key), key_line, first)
                own[key] = key_line
        result: list[_Entry] = []
        merged: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag != _MERGE_TAG:
                result.append((str(key_node.value), key_line, value_node))
                continue
            for source in self.merge_sources(value_node, path, key_line):
                for entry in self.entries(source, path, depth + 1):
                    self.spend(path, key_line, depth + 1)
                    if entry[0] not in own and entry[0] not in merged:
                        merged.add(entry[0])
                        result.append(entry)
        self.flattening.discard(id(node))
        self.flat[id(node)] = result
        return result

    def merge_sources(self, node: yaml.Node, path: str, line: int) -> list[MappingNode]:
        what = "a merge key (<<) takes a mapping or a list of mappings"
        sources = node.value if isinstance(node, SequenceNode) else [node]
        if not all(isinstance(s, MappingNode) and s.tag == _MAP_TAG for s in sources):
            raise self.fail(path, line, what)
        return list(sources)


def yaml_reason(exc: BaseException) -> str:
    """PyYAML's words for what is wrong, without its multi-line snippet of the file."""
    if isinstance(exc, yaml.MarkedYAMLError):
        return " ".join(p for p in (exc.context, exc.problem) if p) or type(exc).__name__
    if isinstance(exc, ReaderError):
        char = exc.character
        code = char if isinstance(char, int) else ord(char)
        return f"unacceptable character U+{code:04X}: {exc.reason}"
    return str(exc) or type(exc).__name__


def parse_document(text: str, file: str) -> Node | Problem:
    """The document's tree, or the Problem that stopped reading it. Empty text -> empty mapping."""
    if len(text) > C.MAX_CONFIG_SIZE:
        # The same bound whether the text came from a file or (later) from the network.
        return Problem(file, "", None, f"larger than {C.MAX_CONFIG_SIZE} bytes: not a config file")
    try:
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        return Problem(file, "", line, f"not valid YAML: {yaml_reason(exc)}")
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        return Problem(file, "", line, f"not valid YAML: {yaml_reason(exc)}")
    except yaml.YAMLError as exc:
        return Problem(file, "", None, f"not valid YAML: {yaml_reason(exc)}")
    if root is None:
        return Node(value={}, path="", line=1, file=file)
    try:
        return _Builder(file).build(root, "", root.start_mark.line + 1)
    except _DocumentError as exc:
        return exc.problem
