"""The located YAML tree: paths, lines, raw scalar text, merge keys, hostile documents."""

from __future__ import annotations

from planctond.config.document import Node, parse_document
from planctond.config.errors import Problem


def parse(text: str) -> Node:
    root = parse_document(text, "d.yaml")
    assert isinstance(root, Node), root
    return root


def test_paths_and_lines() -> None:
    root = parse("a: 1\nb:\n  c:\n    - x\n    - y: 2\n")
    b = root.value["b"]
    assert (b.path, b.line) == ("b", 2)
    c = b.value["c"]
    assert (c.path, c.line) == ("b.c", 3)
    first, second = c.value
    assert (first.path, first.line, first.value) == ("b.c[0]", 4, "x")
    assert (second.value["y"].path, second.value["y"].line) == ("b.c[1].y", 5)
    assert root.keys == {"a": 1, "b": 2}


def test_scalars_keep_their_text() -> None:
    root = parse("u: 1:10\nv: yes\nw: '007'\nx: 0x1F\nn: ~\n")
    u, v, w, x, n = (root.value[k] for k in "uvwxn")
    assert (u.value, u.text()) == (70, "1:10")  # YAML 1.1 sexagesimal, text kept
    assert (v.value, v.text()) == (True, "yes")
    assert (w.value, w.text()) == ("007", "007")
    assert (x.value, x.text()) == (31, "0x1F")
    assert n.is_null and n.text() is None and n.shown() == "nothing (null)"


def test_empty_document_is_an_empty_mapping() -> None:
    assert parse("").value == {}
    assert parse("# only a comment\n").value == {}


def test_merge_keys_and_overrides() -> None:
    root = parse("a: &x {k: 1, m: 2}\nb:\n  <<: *x\n  k: 3\n")
    b = root.value["b"].value
    assert (b["k"].value, b["m"].value) == (3, 2)


def test_merge_key_in_an_aliased_mapping_revisited() -> None:
    root = parse("a: &x {k: 1}\nb: &y\n  <<: *x\n  k: 2\nc: [*y, *y]\n")
    assert [item.value["k"].value for item in root.value["c"].value] == [2, 2]


def test_hostile_documents_give_problems() -> None:
    for text in [
        "a: &a [*a]\n",  # recursive alias
        "a: !!python/name:os.system x\n",
        "a: !!set {x}\n",
        "? [complex, key]\n: 1\n",
        "a: 1\na: 2\n",
        "{",
    ]:
        assert isinstance(parse_document(text, "d.yaml"), Problem), text
