"""Event logging: the stderr line, the journald fields on the wire, and the catalog's ids."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from planctond.control import journal
from planctond.supervisor.events import Event, EventKind

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def started_event() -> Event:
    return Event(
        EventKind.PILOT_STARTED,
        "started busybox:latest, 1 CPU",
        pilot="plancton-default-3f2a",
        pilot_id="3f2a" * 16,
        pool="default",
    )


def test_catalog_matches_message_ids() -> None:
    text = (ROOT / "systemd" / "planctond.catalog").read_text()
    ids = re.findall(r"^-- ([0-9a-f]{32})$", text, re.M)
    assert len(ids) == len(set(ids))
    assert {uuid.UUID(i) for i in ids} == set(journal.MESSAGE_IDS.values())
    assert set(journal.MESSAGE_IDS) == set(EventKind)
    assert len(set(journal.MESSAGE_IDS.values())) == len(EventKind)
    # Every @FIELD@ substitution names a field the events actually carry.
    used = set(re.findall(r"@([A-Z_]+)@", text))
    assert used <= {"PLANCTON_PILOT", "PLANCTON_PILOT_ID", "PLANCTON_POOL", "PLANCTON_REASON",
                    "PLANCTON_EXIT_CODE", "PLANCTON_STATE",
                    "PLANCTON_LATENCY_SECONDS"}  # owner-yield's extra  # fmt: skip


def test_foreground_line(restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    journal.setup_logging(foreground=True)
    journal.setup_logging(foreground=True)  # idempotent: still one line per record
    journal.log_event(started_event())
    journal.log_event(
        Event(
            EventKind.PILOT_KILLED,
            "owner needed 100% CPU",
            pilot="p1",
            pool="x",
            reason="owner-cpu",
        )
    )
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO pilot-started plancton-default-3f2a \(pool default\): "
        r"started busybox:latest, 1 CPU",
        lines[0],
    )
    assert lines[1].endswith("WARNING pilot-killed p1 (pool x): owner needed 100% CPU")


def test_no_journald_falls_back_to_stderr(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", str(tmp_path / "absent"))
    journal.setup_logging(foreground=False)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_planctond_handler", False)]
    assert len(ours) == 1
    assert isinstance(ours[0], logging.StreamHandler)


def test_record_carries_journal_fields(restore_logging: None) -> None:
    """The mapping LogRecord -> JournalHandler fields, checked with the real handler class."""
    JournalHandler = pytest.importorskip("systemd.journal").JournalHandler

    sent: list[tuple[str, dict[str, object]]] = []

    def sender(message: str, /, **fields: object) -> None:
        sent.append((message, fields))

    handler = JournalHandler(sender_function=sender, SYSLOG_IDENTIFIER="planctond")
    logger = logging.getLogger(journal.EVENT_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        journal.log_event(
            Event(
                EventKind.PILOT_EXITED, "exit 3", pilot="p", pilot_id="abc", pool="q", exit_code=3
            )
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert len(sent) == 1
    message, fields = sent[0]
    assert message == "pilot-exited p (pool q): exit 3"
    assert fields["MESSAGE_ID"] == journal.MESSAGE_IDS[EventKind.PILOT_EXITED]
    assert fields["PLANCTON_EVENT"] == "pilot-exited"
    assert fields["PLANCTON_EXIT_CODE"] == "3"
    assert fields["PLANCTON_PILOT_ID"] == "abc"
    assert fields["SYSLOG_IDENTIFIER"] == "planctond"
    assert fields["PRIORITY"] == "6"


def parse_entry(data: bytes) -> dict[str, str]:
    """One native-protocol datagram -> its fields (both the KEY=value and the binary-safe form)."""
    fields = {}
    while data:
        nl = data.index(b"\n")
        line, data = data[:nl], data[nl + 1 :]
        if b"=" in line:
            k, v = line.split(b"=", 1)
        else:  # binary-safe form: KEY\n<le64 size><value>\n
            k = line
            (n,) = struct.unpack("<Q", data[:8])
            v, data = data[8 : 8 + n], data[8 + n + 1 :]
        fields[k.decode()] = v.decode()
    return fields


def killed_event() -> Event:
    return Event(
        EventKind.PILOT_KILLED,
        "owner needs the CPU",
        pilot="plancton-default-3f2a",
        pilot_id="c0ffee",
        pool="default",
        reason="owner-cpu",
        exit_code=137,
    )


def assert_killed_entry(f: dict[str, str]) -> None:
    assert f["MESSAGE"] == "pilot-killed plancton-default-3f2a (pool default): owner needs the CPU"
    assert f["MESSAGE_ID"] == journal.MESSAGE_IDS[EventKind.PILOT_KILLED].hex
    assert f["PRIORITY"] == "4"
    assert f["SYSLOG_IDENTIFIER"] == "planctond"
    assert f["LOGGER"] == journal.EVENT_LOGGER
    assert f["PLANCTON_EVENT"] == "pilot-killed"
    assert f["PLANCTON_PILOT"] == "plancton-default-3f2a"
    assert f["PLANCTON_PILOT_ID"] == "c0ffee"
    assert f["PLANCTON_POOL"] == "default"
    assert f["PLANCTON_REASON"] == "owner-cpu"
    assert f["PLANCTON_EXIT_CODE"] == "137"
    assert f["CODE_FUNC"] == "log_event"


# Runs inside a private mount namespace with a fresh /run, so the real libsystemd sd_journal_sendv
# writes to our socket at the one path it knows, without touching the host.
_WIRE_SCRIPT = textwrap.dedent(
    """
    import base64, json, logging, os, socket, subprocess
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    os.makedirs("/run/systemd/journal")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/run/systemd/journal/socket")
    sock.settimeout(10)
    from planctond.control import journal
    from tests.unit.test_journal import killed_event
    journal.setup_logging(foreground=False)
    kinds = [type(h).__name__ for h in logging.getLogger().handlers]
    journal.log_event(killed_event())
    data = base64.b64encode(sock.recv(65536)).decode()
    print(json.dumps({"handlers": kinds, "datagram": data}))
    """
)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_fields_arrive_on_journald_socket() -> None:
    pytest.importorskip("systemd.journal")
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", _WIRE_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 and "unshare failed" in proc.stderr:
        pytest.skip(f"no mount namespaces here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "JournalHandler" in out["handlers"]
    assert_killed_entry(parse_entry(base64.b64decode(out["datagram"])))


@pytest.fixture
def without_python3_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """As after a plain `pip install`: importing systemd.journal raises ImportError."""
    monkeypatch.setitem(sys.modules, "systemd.journal", None)


@pytest.fixture
def journald(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A socket standing in for journald's, at the path setup_logging looks at."""
    path = tmp_path / "journal.socket"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", str(path))
    yield sock
    sock.close()


def test_native_protocol_without_python3_systemd(
    restore_logging: None, without_python3_systemd: None, journald: socket.socket
) -> None:
    """The same entry libsystemd sends (test above), spoken by planctond itself."""
    journal.setup_logging(foreground=False)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_planctond_handler", False)]
    assert [type(h) for h in ours] == [journal.JournalSocketHandler]
    journal.log_event(killed_event())
    assert_killed_entry(parse_entry(journald.recv(65536)))


def test_native_protocol_keeps_newlines_and_tracebacks(
    restore_logging: None, without_python3_systemd: None, journald: socket.socket
) -> None:
    journal.setup_logging(foreground=False)
    log = logging.getLogger("planctond.test")
    log.warning("first line\nsecond line = still the message")
    assert parse_entry(journald.recv(65536))["MESSAGE"] == (
        "first line\nsecond line = still the message"
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    f = parse_entry(journald.recv(65536))
    assert f["PRIORITY"] == "3"
    assert f["MESSAGE"].startswith("failed\nTraceback")
    assert "RuntimeError: boom" in f["EXCEPTION_TEXT"]


def test_native_protocol_falls_back_to_stderr_when_journald_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """journald gone after start-up, or an entry too large for a datagram: the line is not lost."""
    handler = journal.JournalSocketHandler(str(tmp_path / "gone"), SYSLOG_IDENTIFIER="planctond")
    try:
        handler.handle(logging.makeLogRecord({"msg": "pilot-killed p", "levelno": logging.WARNING}))
    finally:
        handler.close()
    assert capsys.readouterr().err == "<4>pilot-killed p\n"


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="needs journalctl")
def test_catalog_compiles_with_journalctl(tmp_path: Path) -> None:
    """journalctl itself parses the catalog (in a scratch root, never the host's database)."""
    catalog_dir = tmp_path / "usr/lib/systemd/catalog"
    catalog_dir.mkdir(parents=True)
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    (catalog_dir / "planctond.catalog").write_text(
        (ROOT / "systemd" / "planctond.catalog").read_text()
    )
    root = f"--root={tmp_path}"
    subprocess.run(["journalctl", root, "--update-catalog"], check=True, timeout=60)
    listed = subprocess.run(
        ["journalctl", root, "--list-catalog"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    ids = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert ids == {m.hex for m in journal.MESSAGE_IDS.values()}
    assert all(" planctond: " in line for line in listed.splitlines() if line.strip())
