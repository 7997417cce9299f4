"""Docker image references, parsed the way the registry does.

Plancton 0.6 split `docker_image` at the first colon, so `registry:5000/img:tag` pulled the wrong
thing and `img@sha256:...` failed. Here the registry host, the tag and the digest are told apart
with the distribution reference grammar, and a reference without tag or digest gets `:latest`, so
the pool spec (and its hash on running pilots) does not change when someone adds the default tag.
The grammar is ASCII only, as Docker's is: `\\w` here never matches a non-ASCII letter that the
registry would refuse at pull time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

_DOMAIN_PART: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?", re.ASCII)
_PATH_COMPONENT: Final = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG: Final = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST: Final = re.compile(
    r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}", re.ASCII
)
_NAME_MAX: Final = 255  # the registry's limit on a repository name, registry host included


@dataclass(frozen=True)
class ImageRef:
    repository: str  # registry host included when given: "host:5000/team/img"
    tag: str | None
    digest: str | None  # "sha256:..."

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def pull_tag(self) -> str:
        """What to pass as docker-py's `tag=`: the digest pins harder than a tag."""
        return self.digest or self.tag or "latest"


def parse_image(reference: str) -> ImageRef:
    """Parse and normalise (`busybox` -> `busybox:latest`); ValueError says what is wrong."""
    text = reference.strip()
    if not text or not text.isascii() or any(c.isspace() for c in text):
        raise ValueError(
            f"expected an image reference like busybox:latest (ASCII, no spaces), got {reference!r}"
        )
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"bad digest {digest!r} in image {reference!r} (sha256:<hex>)")
    tag = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise ValueError(f"bad tag {tag!r} in image {reference!r}")
    components = text.split("/")
    first = components[0]
    if len(components) > 1 and ("." in first or ":" in first or first == "localhost"):
        if not _DOMAIN.fullmatch(first):
            raise ValueError(f"bad registry host {first!r} in image {reference!r}")
        components = components[1:]
    for component in components:
        if not _PATH_COMPONENT.fullmatch(component):
            raise ValueError(
                f"bad name {component!r} in image {reference!r} "
                "(lower-case letters, digits and . _ - separators)"
            )
    if len(text) > _NAME_MAX:
        raise ValueError(f"image name longer than {_NAME_MAX} characters in {reference!r}")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(repository=text, tag=tag, digest=digest)
