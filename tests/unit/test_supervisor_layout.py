"""Rules of the supervisor's layout that a reader relies on, checked on the source: if one of
these fails, the map in docs/architecture.md has become wrong."""

from __future__ import annotations

import ast
from pathlib import Path

import planctond

PACKAGE = Path(planctond.__file__).parent
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_only_pilot_ops_changes_a_pilots_phase() -> None:
    writers = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for t in targets:
                elts = t.elts if isinstance(t, ast.Tuple) else [t]
                if any(isinstance(e, ast.Attribute) and e.attr == "phase" for e in elts):
                    writers.add(path.relative_to(PACKAGE).as_posix())
    assert writers == {"supervisor/pilot_ops.py"}


def test_no_module_is_a_monolith() -> None:
    big = {
        p.relative_to(PACKAGE).as_posix(): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"split these by job (docs/architecture.md): {big}"


def test_no_docker_error_is_recognised_by_its_text() -> None:
    """Engine errors are matched by type (planctond/engine/errors.py), never by message."""
    phrases = ("No such image", "No such container", "already in progress")
    found = [
        f"{p.relative_to(PACKAGE)}: {phrase}"
        for p in _modules()
        for phrase in phrases
        if phrase in p.read_text()
    ]
    assert not found
