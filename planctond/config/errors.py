"""One exception for every way a config file can be wrong.

A `ConfigError` carries one or more `Problem`s, each naming the file, the key path
(`pools.default.memory`), the line, the bad value and what was expected, so `--check-config` can list
every mistake in one run and a refused reload logs something an admin can act on.

A problem's text is made of what the file says, and it ends up in the journal, on a terminal and
in D-Bus replies, none of which take every string: a lone surrogate cannot even be encoded, a
control character can rewrite a terminal line. So a `Problem` holds its text as `safe_text` makes
it (every such character escaped, the length bounded), whoever built its message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from planctond.text import safe_text


@dataclass(frozen=True)
class Problem:
    file: str
    path: str  # dotted key path, "" for the document itself
    line: int | None  # 1-based
    message: str  # what is wrong and what was expected, bad value included

    def __post_init__(self) -> None:
        # Frozen: the cleaned text replaces the raw one once, here, for every way of building one.
        object.__setattr__(self, "file", safe_text(self.file))
        object.__setattr__(self, "path", safe_text(self.path))
        object.__setattr__(self, "message", safe_text(self.message))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """The config is refused; `str()` lists every problem, one per line."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = (Problem(file="<config>", path="", line=None, message=problems),)
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def file(self) -> str:
        return self.problems[0].file

    @property
    def path(self) -> str:
        return self.problems[0].path

    @property
    def line(self) -> int | None:
        return self.problems[0].line


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`; did you mean 'memory'?` for a near miss, else the list of what is allowed."""
    known = sorted(candidates)
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if not close and len(word) >= 3:
        close = [k for k in known if word.lower() in k.lower() or k.lower() in word.lower()][:1]
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of: {', '.join(known)}"
