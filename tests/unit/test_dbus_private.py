"""planctond.control.dbus_private leans on dbus-next internals that no release promises to keep.
These tests fail, naming what changed, as soon as the installed dbus-next differs from the shapes
it relies on, and keep every other module under planctond/ off dbus-next's private names."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import hashlib
import inspect
import io
import socket
import textwrap
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dbus_next
import pytest
from dbus_next.__version__ import __version__ as VERSION
from dbus_next.aio.message_bus import MessageBus
from dbus_next.errors import SignatureBodyMismatchError
from dbus_next.message import Message
from dbus_next.service import ServiceInterface, method
from dbus_next.signature import SignatureTree

from planctond.control import dbus_private
from planctond.control.dbus_private import (
    BUS_FIELDS,
    METHOD_FIELDS,
    WRITER_FIELDS,
    IncompatibleDBusNext,
    declared_methods,
    harden,
    result_to_body,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "planctond"
PRIVATE_MODULE = Path(dbus_private.__file__).resolve()
DBUS_NEXT = Path(dbus_next.__file__).resolve().parent
FIX_HINT = "update planctond/control/dbus_private.py"

# 0.2.3's `_MessageWriter.write_callback`, tokens without comments or layout. `_write_callback`
# in dbus_private is a copy of it with one change; a different loop upstream means redoing that.
WRITE_CALLBACK_DIGEST = "02ccf59a2b314bdf"


def _missing(obj: object, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not hasattr(obj, n)]


class Sample(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.plancton.Test")

    # dbus-next reads D-Bus signatures from the annotations.
    def Pair(self, a: Any, b: Any) -> Any:
        return [a, b]

    Pair.__annotations__ = {"a": "s", "b": "u", "return": "(su)"}
    Pair = method()(Pair)

    @method(disabled=True)
    def Hidden(self):  # no return annotation: dbus-next reads one as an out-arg
        pass


# --- the shapes relied on ---------------------------------------------------------------------


def test_service_interface_internals_are_there() -> None:
    for name in ("_get_methods", "_fn_result_to_body"):
        assert callable(getattr(ServiceInterface, name, None)), (
            f"dbus-next {VERSION}: ServiceInterface.{name} is gone; {FIX_HINT}"
        )
        params = list(inspect.signature(getattr(ServiceInterface, name)).parameters)
        expected = ["interface"] if name == "_get_methods" else ["result", "signature_tree"]
        assert params == expected, (
            f"dbus-next {VERSION}: ServiceInterface.{name} now takes {params}, not {expected}; "
            f"{FIX_HINT}"
        )


def test_method_objects_have_the_fields_read() -> None:
    declared = ServiceInterface._get_methods(Sample())
    by_name = {getattr(m, "name", None): m for m in declared}
    assert set(by_name) == {"Pair", "Hidden"}, (
        f"dbus-next {VERSION}: _get_methods() returned {declared!r}; {FIX_HINT}"
    )
    pair = by_name["Pair"]
    lost = _missing(pair, METHOD_FIELDS)
    assert not lost, (
        f"dbus-next {VERSION}: the items of ServiceInterface._get_methods() lost {lost}; {FIX_HINT}"
    )
    fields = {f: getattr(pair, f) for f in METHOD_FIELDS}
    assert fields["disabled"] is False and by_name["Hidden"].disabled is True
    assert (fields["in_signature"], fields["out_signature"]) == ("su", "(su)"), fields
    assert isinstance(fields["out_signature_tree"], SignatureTree), fields
    assert fields["out_signature_tree"].signature == "(su)", fields
    assert fields["fn"](Sample(), "x", 1) == ["x", 1], "method.fn is no longer the plain function"


@pytest.mark.parametrize(
    ("result", "signature", "body"),
    [
        (None, "", []),  # no out-args
        ({"a": 1}, "a{su}", [{"a": 1}]),  # a single out-arg is wrapped
        (["x", 1], "(su)", [["x", 1]]),  # ... even when it is itself a list (a struct)
        (["x", 1], "su", ["x", 1]),  # several out-args come as a list
    ],
)
def test_fn_result_to_body_behaves_as_relied_on(
    result: Any, signature: str, body: list[Any]
) -> None:
    got = ServiceInterface._fn_result_to_body(result, SignatureTree(signature))
    assert got == (body, []), (
        f"dbus-next {VERSION}: _fn_result_to_body({result!r}, {signature!r}) gave {got!r}, "
        f"not {(body, [])!r}; {FIX_HINT}"
    )
    assert result_to_body(result, SignatureTree(signature)) == (body, [])


def test_fn_result_to_body_refuses_a_mismatch() -> None:
    """The dispatcher counts on it: a method returning the wrong shape is an error reply."""
    with pytest.raises(SignatureBodyMismatchError):
        ServiceInterface._fn_result_to_body(["x"], SignatureTree("su"))


def test_declared_methods_are_the_enabled_ones() -> None:
    methods = declared_methods(Sample())
    assert list(methods) == ["Pair"]
    m = methods["Pair"]
    assert (m.name, m.in_signature, m.out_signature) == ("Pair", "su", "(su)")
    assert m.out_signature_tree.signature == "(su)"


def test_a_missing_internal_is_a_named_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(ServiceInterface, "_get_methods")
    with pytest.raises(IncompatibleDBusNext, match=r"ServiceInterface\._get_methods"):
        declared_methods(Sample())


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[socket.socket]:
    """A socket a MessageBus can connect to that never reads: sends fill it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "bus"))
    server.listen(1)
    yield server
    server.close()


def _unconnected_bus(listener: socket.socket) -> MessageBus:
    """A bus with its socket and writer but no hello: enough to look at the writer."""
    return MessageBus(bus_address=f"unix:path={listener.getsockname()}")


def _tokens(fn: Any) -> str:
    src = textwrap.dedent(inspect.getsource(fn))
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
    return "\x00".join(
        t.string or tokenize.tok_name[t.type]
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type not in skip
    )


def test_writer_has_the_shape_harden_replaces(listener: socket.socket) -> None:
    async def scenario() -> None:
        bus = _unconnected_bus(listener)
        try:
            lost = _missing(bus, BUS_FIELDS)
            assert not lost, f"dbus-next {VERSION}: MessageBus lost {lost}; {FIX_HINT}"
            writer = bus._writer
            lost = _missing(writer, WRITER_FIELDS)
            assert not lost, f"dbus-next {VERSION}: the bus's writer lost {lost}; {FIX_HINT}"
            upstream = type(writer).write_callback
            digest = hashlib.sha256(_tokens(upstream).encode()).hexdigest()[:16]
            assert digest == WRITE_CALLBACK_DIGEST, (
                f"dbus-next {VERSION} changed {type(writer).__name__}.write_callback: compare it "
                f"with dbus_private._write_callback (it may not need the fix any more), then "
                f"{FIX_HINT} and WRITE_CALLBACK_DIGEST here:\n{inspect.getsource(upstream)}"
            )
            assert harden(bus) and harden(bus)  # idempotent
            assert writer.write_callback.__func__ is dbus_private._write_callback
        finally:
            bus.disconnect()

    asyncio.run(scenario())


def test_hardened_writer_waits_on_a_full_socket(listener: socket.socket) -> None:
    """The point of harden(): a send that would block leaves the message queued and the
    connection up, and the rest goes out once the peer reads."""

    async def scenario() -> None:
        bus = _unconnected_bus(listener)
        peer, _ = listener.accept()
        try:
            assert harden(bus)
            writer = bus._writer
            sent = asyncio.get_running_loop().create_future()
            big = Message(
                path="/a", interface="a.b", member="C", signature="s", body=["x" * 4_000_000]
            )
            writer.buffer_message(big, sent)
            writer.write_callback()  # a partial send fills the socket
            writer.write_callback()  # the socket is full: 0.2.3 itself would drop the bus here
            assert writer.buf is not None and not sent.done()
            assert not bus._disconnected, "a full socket finalized the bus"
            peer.setblocking(False)
            received = 0
            for _ in range(10_000):
                with contextlib.suppress(BlockingIOError):
                    received += len(peer.recv(1 << 20))
                writer.write_callback()
                if sent.done():
                    break
            sent.result()  # no exception
            while True:
                try:
                    chunk = peer.recv(1 << 20)
                except BlockingIOError:
                    break
                received += len(chunk)
            assert received >= 4_000_000
        finally:
            peer.close()
            bus.disconnect()

    asyncio.run(scenario())


# --- nobody else touches them ---------------------------------------------------------------


def _is_private(name: str) -> bool:
    """`_x` and `__x`, not dunders nor the throwaway `_`."""
    dunder = name.startswith("__") and name.endswith("__")
    return name.startswith("_") and name.strip("_") != "" and not dunder


def _dbus_next_private_names() -> frozenset[str]:
    """Every private name dbus-next's source defines or uses, with class-mangled forms."""
    names: set[str] = set()
    for path in DBUS_NEXT.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("__")
                    and _is_private(node.attr)
                ):
                    names.add(f"_{cls.name.lstrip('_')}{node.attr}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name):
                names.add(node.id)
    return frozenset(n for n in names if _is_private(n))


def _uses_of_private_names(path: Path, private: frozenset[str]) -> list[str]:
    """`file:line: what` for each reach into dbus-next's private names: imports, attributes and
    strings naming them (getattr). Own attributes (`self._x`) are ours, except in a subclass of
    a dbus-next class, where they could shadow its private ones."""
    tree = ast.parse(path.read_text(), str(path))
    rel = path.relative_to(ROOT)
    found: list[str] = []
    from_dbus_next: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dbus_next":
            assert node.module is not None
            from_dbus_next.update(a.asname or a.name for a in node.names)
            if any(_is_private(part) for part in node.module.split(".")):
                found.append(f"{rel}:{node.lineno}: from {node.module} import ...")
            found += [
                f"{rel}:{node.lineno}: import {a.name}" for a in node.names if _is_private(a.name)
            ]
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "dbus_next" and any(_is_private(p) for p in parts):
                    found.append(f"{rel}:{node.lineno}: import {a.name}")

    def dbus_next_class(cls: ast.ClassDef) -> bool:
        return any(
            (isinstance(b, ast.Name) and b.id in from_dbus_next)
            or (isinstance(b, ast.Attribute) and ast.unparse(b).startswith("dbus_next."))
            for b in cls.bases
        )

    def visit(node: ast.AST, own_ok: bool) -> None:
        if isinstance(node, ast.ClassDef):
            own_ok = not dbus_next_class(node)
            if not own_ok:
                found.extend(
                    f"{rel}:{item.lineno}: defines {node.name}.{item.name}"
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                    and item.name in private
                )
        elif isinstance(node, ast.Attribute) and node.attr in private:
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not (own and own_ok):
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in private:  # getattr(bus, "_x")
            found.append(f"{rel}:{node.lineno}: {node.value!r}")
        for child in ast.iter_child_nodes(node):
            visit(child, own_ok)

    visit(tree, True)
    return found


def test_the_scan_finds_the_known_uses() -> None:
    """Without this the next test could pass by seeing nothing."""
    uses = "\n".join(_uses_of_private_names(PRIVATE_MODULE, _dbus_next_private_names()))
    for name in ("_get_methods", "_fn_result_to_body", "_writer", "_finalize"):
        assert name in uses, f"the scan missed {name} in dbus_private.py:\n{uses}"


def test_only_dbus_private_touches_dbus_next_internals() -> None:
    private = _dbus_next_private_names()
    assert {"_writer", "_get_methods", "_fn_result_to_body"} <= private
    found = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.resolve() != PRIVATE_MODULE
        for use in _uses_of_private_names(path, private)
    ]
    assert not found, (
        "dbus-next internals used outside planctond/control/dbus_private.py (add a small typed "
        "function there instead):\n" + "\n".join(found)
    )
