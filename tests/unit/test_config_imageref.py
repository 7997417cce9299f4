"""Image references: registry ports, tags and digests told apart (Plancton split at the first ':')."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planctond.config.imageref import ImageRef, parse_image

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("busybox", "busybox", "latest", None),
        ("busybox:1.36", "busybox", "1.36", None),
        ("library/busybox:stable-glibc", "library/busybox", "stable-glibc", None),
        ("host:5000/img", "host:5000/img", "latest", None),
        ("host:5000/img:tag", "host:5000/img", "tag", None),
        ("host.example.org/team/sub/img:v1_2", "host.example.org/team/sub/img", "v1_2", None),
        ("localhost/img", "localhost/img", "latest", None),
        ("localhost:5000/a/b:c", "localhost:5000/a/b", "c", None),
        (f"img@{DIGEST}", "img", None, DIGEST),
        (f"host:5000/img:1@{DIGEST}", "host:5000/img", "1", DIGEST),
        ("a__b/c--d/e.f:TAG", "a__b/c--d/e.f", "TAG", None),
        ("  busybox  ", "busybox", "latest", None),
    ],
)
def test_parse(text: str, repository: str, tag: str | None, digest: str | None) -> None:
    assert parse_image(text) == ImageRef(repository, tag, digest)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "image reference"),
        ("a b", "image reference"),
        ("Busybox", "bad name"),
        ("img:", "bad tag"),
        ("img:-x", "bad tag"),
        ("img:" + "t" * 129, "bad tag"),
        ("img@sha256:short", "bad digest"),
        ("img@md5", "bad digest"),
        ("host:5000/", "bad name"),
        ("a//b", "bad name"),
        ("-host.org/img", "bad registry host"),
        ("img/", "bad name"),
        ("_img", "bad name"),
    ],
)
def test_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_image(text)


def test_pull_tag_prefers_the_digest() -> None:
    assert parse_image("img").pull_tag == "latest"
    assert parse_image("img:7").pull_tag == "7"
    assert parse_image(f"img:7@{DIGEST}").pull_tag == DIGEST
    assert ImageRef("img", None, None).pull_tag == "latest"


_component = st.from_regex(r"[a-z0-9]{1,5}(?:[._-][a-z0-9]{1,5})?", fullmatch=True)


@given(
    st.none() | st.from_regex(r"[a-z0-9]{1,8}(?:\.[a-z]{2,4})(?::[0-9]{1,5})?", fullmatch=True),
    st.lists(_component, min_size=1, max_size=3),
    st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True).map(lambda h: f"sha256:{h}"),
)
def test_round_trip(host: str | None, path: list[str], tag: str | None, digest: str | None) -> None:
    repository = "/".join([host, *path] if host else path)
    text = repository + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = parse_image(text)
    assert ref.repository == repository
    assert ref.digest == digest
    assert ref.tag == (tag if tag or digest else "latest")
    assert parse_image(str(ref)) == ref
