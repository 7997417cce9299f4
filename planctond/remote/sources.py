"""What `planctonctl bootstrap SOURCE` fetches: an https:// URL, or Plancton's GitHub shorthand.

    github:USER/REPO[/PATH][:BRANCH]  ->  https://raw.githubusercontent.com/USER/REPO/BRANCH/PATH

Plancton's `plancton-bootstrap user/repo:branch` cloned the repository into /etc/plancton, so
its config was `config.yaml` at the top of the branch; without a branch `git clone` took the
repository's default branch. Both stay the defaults here: PATH `config.yaml`, BRANCH `HEAD`
(raw.githubusercontent.com serves the default branch under it, `master` for Plancton-era
repositories and `main` for newer ones, so neither has to be guessed).

The branch comes last and may hold slashes (Plancton's own examples: `to-infn/dev`), so the
path is written before it: `github:site/fleet/hosts/cern.yaml:production`. Git refuses `:` in
branch names, which makes the split unambiguous.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote

from planctond import constants as C
from planctond.config.schema import REMOTE_URL

GITHUB_PREFIX: Final = "github:"
# GitHub's rules: user names are letters, digits and single hyphens; repositories add . and _.
_USER: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})", re.ASCII)
_REPO: Final = re.compile(r"[A-Za-z0-9._-]{1,100}", re.ASCII)
# A subset of `git check-ref-format`: no spaces, controls, `~^:?*[\`, `..`, `@{`, no leading
# or trailing slash or dot.
_BRANCH: Final = re.compile(r"(?!.*\.\.)(?!.*@\{)(?![/.])[^\s~^:?*\[\\\x00-\x1f\x7f]+(?<![/.])")
_PATH_PART: Final = re.compile(r"[^\s/\\\x00-\x1f\x7f]+")


class SourceError(ValueError):
    """The SOURCE argument is not a URL or shorthand this command understands."""


def github_url(spec: str) -> str:
    """`USER/REPO[/PATH][:BRANCH]` (after `github:`) -> its raw.githubusercontent.com URL."""
    where, _, branch = spec.partition(":")
    if _ and not branch:
        raise SourceError("github: a ':' must be followed by a branch")
    parts = where.split("/")
    if len(parts) < 2 or not _USER.fullmatch(parts[0]) or not _REPO.fullmatch(parts[1]):
        raise SourceError(f"github:{spec}: expected github:USER/REPO[/PATH][:BRANCH]")
    if parts[1] in (".", ".."):
        raise SourceError(f"github:{spec}: bad repository name {parts[1]!r}")
    path = parts[2:] or [C.GITHUB_DEFAULT_PATH]
    if any(p in ("", ".", "..") or not _PATH_PART.fullmatch(p) for p in path):
        raise SourceError(f"github:{spec}: bad path {'/'.join(path)!r}")
    ref = branch or C.GITHUB_DEFAULT_REF
    if not _BRANCH.fullmatch(ref):
        raise SourceError(f"github:{spec}: bad branch name {ref!r}")
    quoted = "/".join(quote(p, safe="") for p in path)
    return f"{C.GITHUB_RAW}/{parts[0]}/{parts[1]}/{quote(ref, safe='/')}/{quoted}"


def resolve(source: str) -> str:
    """The https:// URL a SOURCE stands for; SourceError says what is wrong with it."""
    text = source.strip()
    if text.startswith(GITHUB_PREFIX):
        return github_url(text.removeprefix(GITHUB_PREFIX))
    if text.startswith("http://"):
        raise SourceError(
            f"{text}: plain http is refused: the config decides what runs on this host (https://)"
        )
    if "@" in text:
        raise SourceError(
            "'@' is refused in the URL (credentials there would be logged): --token-file"
        )
    if not REMOTE_URL.fullmatch(text):
        raise SourceError(f"{text}: expected an https:// URL or github:USER/REPO[/PATH][:BRANCH]")
    return text
