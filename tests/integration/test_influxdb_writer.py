"""Points through Outbox + InfluxV1Writer into a real InfluxDB 1.x on loopback, read back with
InfluxQL: escaped names, the database created on demand, a refused batch, basic auth, and an
outage (the server stopped mid-run, then started again on the same data) that the daemon's side
never notices. A scripted HTTP server covers what a real one will not readily do: TLS, a path
prefix, 5xx and 413 answers, a server that never answers."""

from __future__ import annotations

import contextlib
import http.server
import logging
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planctond.config.model import InfluxDBTarget
from planctond.monitoring.influxdb import InfluxV1Writer, quote_identifier
from planctond.monitoring.outbox import Outbox, SinkError
from planctond.monitoring.point import Point
from tests.support.influxdb_server import InfluxDBServer, influxdb_server
from tests.support.server_process import free_port
from tests.support.waiting import wait_for

LOGGER = "planctond.monitoring.outbox"
T0 = 1_700_000_000_000_000_000


def writer(server: InfluxDBServer, db: str, **options: object) -> InfluxV1Writer:
    return InfluxV1Writer(InfluxDBTarget(server.url, db), **options)  # type: ignore[arg-type]


def series(measurement: str, count: int, start: int = 0) -> list[Point]:
    return [
        Point(measurement, {"n": i}, {"host": "h"}, T0 + i) for i in range(start, start + count)
    ]


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDBServer]:
    with influxdb_server(tmp_path_factory.mktemp("influxdb")) as server:
        yield server


# --- a real server ------------------------------------------------------------------------------


def test_points_read_back_as_written(influx: InfluxDBServer) -> None:
    measurement = 'cpu load,x "y"'
    point = Point(
        measurement,
        {
            "msg": 'say "hi" \\ there\nnext line',
            "n": 3,
            "ratio": 0.1,
            "up": True,
            "odd key=, ": 1.5,
        },
        {"host name": "a=b,c d", "pool": "x\\y", "empty": "", "end": "back\\"},
        T0,
    )
    box = Outbox("influx", writer(influx, "roundtrip"))
    box.start()
    try:
        box.put([point])
        wait_for(lambda: box.health().last_success is not None, timeout=30)
    finally:
        box.close(5)
    [row] = influx.query(f"SELECT * FROM {quote_identifier(measurement)}", "roundtrip")
    assert row["name"] == measurement
    assert row["time"] == T0
    assert row["msg"] == 'say "hi" \\ there\\nnext line'  # the newline made visible
    assert (row["n"], row["ratio"], row["up"], row["odd key=, "]) == (3, 0.1, True, 1.5)
    assert (row["host name"], row["pool"], row["end"]) == ("a=b,c d", "x\\y", "back\\x5c")
    assert "empty" not in row
    types = {r["fieldKey"]: r["fieldType"] for r in influx.query("SHOW FIELD KEYS", "roundtrip")}
    assert types == {
        "msg": "string",
        "n": "integer",
        "ratio": "float",
        "up": "boolean",
        "odd key=, ": "float",
    }


def test_the_database_is_created_on_demand(influx: InfluxDBServer) -> None:
    db = 'made "here", on demand'
    names = [r["name"] for r in influx.query("SHOW DATABASES")]
    assert db not in names
    write = writer(influx, db)
    write(b"m n=1i 1\n")
    write(b"m n=2i 2\n")  # the second write needs nothing created
    assert db in [r["name"] for r in influx.query("SHOW DATABASES")]
    assert influx.count("m", db) == 2


def test_a_database_name_influxdb_refuses(influx: InfluxDBServer) -> None:
    with pytest.raises(SinkError, match="invalid name") as caught:
        writer(influx, "back\\slash")(b"m n=1i 1\n")
    assert caught.value.retry


def test_a_refused_batch_is_dropped_and_the_rest_goes_on(
    influx: InfluxDBServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A field that changes type is refused (HTTP 400, partial write): that batch is dropped,
    counted and told once, and the queue does not stall behind it."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    box = Outbox("influx", writer(influx, "refusals"))  # stepped by hand: no thread
    box.put([Point("conflict", {"f": 1}, {}, T0)])
    assert box.step() == 0.0
    box.put([Point("conflict", {"f": 1.5}, {}, T0 + 1)])
    assert box.step() == 0.0  # refused: no back-off
    health = box.health()
    assert health.dropped == 1 and health.ok and "HTTP 400" in health.last_error
    assert "type conflict" in health.last_error
    box.put([Point("conflict", {"f": 2}, {}, T0 + 2)])
    assert box.step() == 0.0
    assert influx.count("conflict", "refusals", "f") == 2
    assert len([r for r in caplog.records if "refused a batch" in r.getMessage()]) == 1


def test_an_outage_is_invisible_to_the_caller_and_the_backlog_arrives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with influxdb_server(tmp_path / "influxdb") as server:
        write = writer(server, "outage", timeout=5.0)
        failures: list[str] = []

        def send(body: bytes) -> None:
            try:
                write(body)
            except SinkError as exc:
                failures.append(str(exc))
                raise

        box = Outbox("influx", send, retry_min=0.05, retry_max=0.2)
        box.start()
        try:
            box.put(series("load", 10))
            wait_for(lambda: server.count("load", "outage") == 10, timeout=30)

            started = time.monotonic()
            server.stop(kill=True)  # a crash: what it acknowledged must survive in its WAL
            slowest = 0.0
            for i in range(20):  # the daemon's ticks go on while the server is away
                before = time.monotonic()
                box.put(series("load", 10, start=10 + 10 * i))
                slowest = max(slowest, time.monotonic() - before)
                time.sleep(0.01)
            wait_for(lambda: len(failures) >= 5, timeout=30)  # retried, backed off, stayed quiet
            health = box.health()
            assert not health.ok
            assert health.backlog == 200 and "no reply" in health.last_error
            assert slowest < 0.5, f"put() took {slowest:.3f} s with the server down"

            server.start()
            restarted = time.monotonic()
            wait_for(lambda: server.count("load", "outage") == 210, timeout=60)
            delivered = time.monotonic()
            wait_for(lambda: box.health().ok and box.health().backlog == 0, timeout=30)
        finally:
            box.close(5)
        down = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        back = [r.getMessage() for r in caplog.records if "is back" in r.getMessage()]
        assert len(down) == 1 and down[0].startswith("backend influx unreachable: no reply")
        assert back == ["backend influx is back; 200 points delivered, 0 dropped meanwhile"]
        print(
            f"outage: put() slowest {slowest * 1000:.2f} ms; server away "
            f"{restarted - started:.2f} s; backlog in {delivered - restarted:.2f} s after restart"
        )


def test_basic_auth_from_the_url(tmp_path: Path) -> None:
    password = "p@ss:w/rd"
    with influxdb_server(tmp_path / "influxdb", auth=True) as server:
        server.query(f"CREATE USER admin WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
        port = server.http_port
        good = InfluxV1Writer(
            InfluxDBTarget(f"http://admin:p%40ss%3Aw%2Frd@127.0.0.1:{port}", "secured")
        )
        assert "p%40ss" not in good.display and "admin" not in good.display
        good(b"m n=1i 1\n")  # the database is created with the same credentials
        rows = server.query(
            'SELECT count("n") FROM "m"', "secured", user="admin", password=password
        )
        assert rows[0]["count"] == 1

        wrong = InfluxV1Writer(InfluxDBTarget(f"http://admin:guess3d@127.0.0.1:{port}", "secured"))
        with pytest.raises(SinkError, match="unauthorized") as caught:
            wrong(b"m n=2i 2\n")
        assert caught.value.retry and "guess3d" not in str(caught.value)
        with pytest.raises(SinkError, match="unauthorized"):
            writer(server, "secured")(b"m n=3i 3\n")  # no credentials at all


# --- no server, or a scripted one ---------------------------------------------------------------


def test_a_closed_port_fails_at_once_and_retryably() -> None:
    port = free_port()  # nothing listens there
    write = InfluxV1Writer(
        InfluxDBTarget(f"http://alice:s3cr3t@127.0.0.1:{port}", "db"), timeout=5.0
    )
    started = time.monotonic()
    with pytest.raises(SinkError) as caught:
        write(b"m n=1i 1\n")
    assert time.monotonic() - started < 5.0
    assert caught.value.retry
    assert "refused" in str(caught.value) and "s3cr3t" not in str(caught.value)
    assert "alice" not in str(caught.value)


def test_a_silent_server_costs_the_caller_nothing() -> None:
    """A server that accepts and never answers: the writer gives up after its timeout, and the
    daemon's put() meanwhile returns as always."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the backlog; nobody reads them
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        write = InfluxV1Writer(InfluxDBTarget(url, "db"), timeout=0.3)
        started = time.monotonic()
        with pytest.raises(SinkError, match="timed out") as caught:
            write(b"m n=1i 1\n")
        assert 0.25 < time.monotonic() - started < 5.0 and caught.value.retry

        box = Outbox("silent", write, retry_min=60.0, retry_max=60.0)
        box.start()
        try:
            slowest = 0.0
            for i in range(50):
                before = time.monotonic()
                box.put(series("m", 1, start=i))
                slowest = max(slowest, time.monotonic() - before)
            assert slowest < 0.2
            wait_for(lambda: not box.health().ok, timeout=30)
            assert box.health().backlog == 50
        finally:
            box.close(0.1)


class Script(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next (status, body) of the server's `answers`."""

    server: ScriptedServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.requests.append((self.path, self.rfile.read(length)))
        status, body = self.server.answers.pop(0) if self.server.answers else (204, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class ScriptedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Script)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.requests: list[tuple[str, bytes]] = []
        self.answers: list[tuple[int, bytes]] = []

    def url(self, path: str = "") -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}{path}"


@contextlib.contextmanager
def scripted_server(tls: ssl.SSLContext | None = None) -> Iterator[ScriptedServer]:
    server = ScriptedServer(tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


def test_a_path_prefix_and_the_answers_mapped(scripted: ScriptedServer) -> None:
    write = InfluxV1Writer(InfluxDBTarget(scripted.url("/influx/"), "my db"))
    scripted.answers = [
        (500, b'{"error":"timeout"}'),
        (413, b"too big"),
        (400, b'{"error":"unable to parse"}'),
        (404, b'{"error":"database not found: \\"my db\\""}'),
        (200, b'{"results":[{"statement_id":0}]}'),
        (204, b""),
        (503, b"<html>maintenance</html>"),
    ]
    expected = [("HTTP 500: timeout", True), ("HTTP 413: too big", False)]
    expected += [("HTTP 400: unable to parse", False)]
    for message, retry in expected:
        with pytest.raises(SinkError) as caught:
            write(b"m n=1i 1\n")
        assert str(caught.value) == f"write: {message}" and caught.value.retry is retry
    write(b"m n=1i 1\n")  # 404 database not found, created, written
    with pytest.raises(SinkError, match="HTTP 503: <html>maintenance</html>"):
        write(b"m n=1i 1\n")
    paths = [path for path, _ in scripted.requests]
    assert paths[0] == "/influx/write?db=my+db&precision=ns"
    assert paths[4] == "/influx/query"
    assert scripted.requests[4][1] == b"q=CREATE+DATABASE+%22my+db%22"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_verified_or_not(certificate: tuple[Path, Path]) -> None:
    """A self-signed server: refused by default (retryably: the admin may fix it), taken with
    its CA file, or with verification off (Plancton's "insecure_https:")."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with scripted_server(context) as server:
        url = server.url()
        with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            InfluxV1Writer(InfluxDBTarget(url, "db"), timeout=5.0)(b"m n=1i 1\n")
        assert caught.value.retry
        InfluxV1Writer(InfluxDBTarget(url, "db"), ca_file=str(cert))(b"m n=1i 1\n")
        InfluxV1Writer(InfluxDBTarget(url, "db", verify_tls=False))(b"m n=1i 1\n")
        assert len(server.requests) == 2


@pytest.mark.parametrize(
    "url", ["ftp://host/", "http://", "influx.example.org:8086", "http://h:x/"]
)
def test_urls_that_are_not_http_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        InfluxV1Writer(InfluxDBTarget(url, "db"))
