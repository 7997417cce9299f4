"""The `owner:` keys that choose what makes pilots give way, and the checks between them.

`give_way: pressure` has lines of its own (`cpu_pressure`, `memory_pressure`, `io_pressure`);
with `give_way: usage` nothing reads them, so a file that sets one there is refused rather than
left to believe it protects the owner. What a host can measure is not checked here: a fleet's
config must load on every host, and the policy says once on each host what it cannot read there.
"""

from __future__ import annotations

from collections.abc import Callable

from planctond import constants as C
from planctond.config.document import Node
from planctond.config.fields import expected, number, optional
from planctond.config.model import GiveWayMode, OwnerConfig

PRESSURE_LINES = ("cpu_pressure", "memory_pressure", "io_pressure")
_MODES = ", ".join(m.value for m in GiveWayMode)


def give_way_mode(node: Node) -> GiveWayMode:
    value = node.text()
    try:
        return GiveWayMode(value or "")
    except ValueError:
        raise expected(node, f"one of {_MODES}") from None


def pressure_line() -> Callable[[Node], float | None]:
    """A percentage of time (PSI avg10), or null: that resource never makes pilots give way.
    A bare number, as PSI prints it: `25`, not `25%` or `0.25`."""
    return optional(
        number(
            low=0.0,
            high=C.MAX_PRESSURE,
            what=f"a percentage 0..{C.MAX_PRESSURE:g} (PSI avg10), or null to ignore it",
        )
    )


def owner_problems(owner: OwnerConfig, entries: dict[str, Node]) -> list[tuple[Node, str]]:
    """(node, message) for each key written where the chosen give-way rule never reads it."""
    if owner.give_way is GiveWayMode.PRESSURE:
        return []
    mode = entries.get("give_way")
    out: list[tuple[Node, str]] = []
    for key in PRESSURE_LINES:
        node = entries.get(key)
        if node is None or node.is_null:
            continue
        if mode is None:
            where = "the default"
        elif mode.file and mode.file != node.file:
            where = f"{mode.file}:{mode.line}"
        else:
            where = f"line {mode.line}"
        out.append(
            (node, f"{key} is read only with give_way: pressure; give_way is usage ({where})")
        )
    return out
