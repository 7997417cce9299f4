"""`--check-config`: the effective config with, on each value, where it came from.

A value of a layered config (remote document, drop-ins, main file) may come from any of them or
be a default; when a host runs something unexpected the first question is "who set this?". So
each value is followed by a comment naming the file or URL and line it was written at, or
`default`. The output is still YAML that loads back to the same config (comments are comments).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from planctond.config.document import Node
from planctond.config.layers import Composed
from planctond.config.legacy import LEGACY_KEYS, new_name
from planctond.config.remote import index, key_path, where
from planctond.config.render import effective_dict

DEFAULT: Final = "default"


class _Origins:
    def __init__(self, root: Node) -> None:
        self.nodes = index(root)

    def scalar_ancestor(self, parts: tuple[str, ...]) -> Node | None:
        """`pull: always` sets what the effective config spells `pull: {policy: always}`."""
        for end in range(len(parts) - 1, 0, -1):
            node = self.nodes.get(key_path(parts[:end]))
            if node is not None:
                return None if node.is_map else node
        return None

    def of(self, parts: tuple[str, ...]) -> str:
        found = self.nodes.get(key_path(parts)) or self.scalar_ancestor(parts)
        if found is not None:
            return where(found)
        if parts[0] == "pools" and len(parts) > 2:
            shared = ("defaults", *parts[2:])
            found = self.nodes.get(key_path(shared)) or self.scalar_ancestor(shared)
            if found is not None:
                return f"{where(found)} (defaults)"
        path = key_path(parts)
        for key in LEGACY_KEYS:
            node = self.nodes.get(key)
            target = new_name(key)
            if node is not None and (path == target or path.startswith(target + ".")):
                return f"{where(node)} (Plancton 0.6 key {key})"
        return DEFAULT


def origins(composed: Composed) -> dict[tuple[str, ...], str]:
    """Where each value of the effective config came from, by its key path."""
    found = _Origins(composed.root)
    out: dict[tuple[str, ...], str] = {}

    def visit(value: Any, parts: tuple[str, ...]) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                visit(item, (*parts, str(key)))
        else:
            out[parts] = found.of(parts)

    visit(effective_dict(composed.config), ())
    return out


def _lines(value: Any, parts: tuple[str, ...], depth: int, said: dict[tuple[str, ...], str]) -> list[str]:  # fmt: skip
    indent = "  " * depth
    lines: list[str] = []
    for key, item in value.items():
        here = (*parts, str(key))
        if isinstance(item, dict) and item:
            lines.append(f"{indent}{yaml.safe_dump(key).splitlines()[0]}:")
            lines.extend(_lines(item, here, depth + 1, said))
            continue
        # Lists of scalars on one line (`command: [sleep, '60']`); a scalar in block style.
        flow = None if isinstance(item, list | dict) else False
        dumped = yaml.safe_dump({key: item}, sort_keys=False, default_flow_style=flow)
        block = [indent + line for line in dumped.rstrip("\n").splitlines()]
        note = f"# {said.get(here, DEFAULT)}"
        if len(block) == 1:
            lines.append(f"{block[0]}  {note}")
        else:  # a comment after the first line could land inside a quoted scalar
            lines.extend([indent + note, *block])
    return lines


def render_explained(composed: Composed) -> str:
    """YAML of the effective config, each value followed by where it came from; the load's
    warnings as comments at the end."""
    config = composed.config
    layers = ", ".join(config.layers) or "built-in defaults"
    header = [
        "# effective planctond configuration",
        f"# layers, lowest first: {layers}",
        "# each value: the file (or URL) and line it comes from, or `default`",
    ]
    body = _lines(effective_dict(config), (), 0, origins(composed))
    warnings = [f"# warning: {line}" for w in config.warnings for line in w.splitlines()]
    return "\n".join([*header, *body, *warnings]) + "\n"
