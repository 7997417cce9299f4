"""The fleet benchmark's pure parts: the simulated hosts' streams (what they send, how much, how
often), the renaming of a host's day into another host's, Grafana's interval, the estimate and
the report section; and a tiny backfill into a real influxd when one is installed. Fast and
independent of the machine's load: nothing here is timed."""

from __future__ import annotations

import argparse
import itertools
import re
from pathlib import Path

import pytest

from bench import fleet_ingest, fleet_queries, fleet_report, fleet_tables
from bench.fleet import grafana_interval
from bench.fleet_queries import ALL_HOSTS, FALLBACK, INFLUXDB, Case, Timed
from bench.fleet_sim import TICK, Request, SimHost, profile
from planctond.monitoring.series_spec import EVENT, HOST, POOL

T0 = 1_800_000_000.0
HOURS = 2
LINE = re.compile(rb"^[a-z_]+(,[a-z_]+=[^ ,]+)* [^ ].* \d{19}\n$")


def day(index: int, hours: float = HOURS, **kw: object) -> list[Request]:
    host = SimHost(profile(index, **kw), T0)  # type: ignore[arg-type]
    return sorted(host.advance(T0 + hours * 3600), key=lambda r: r.time)


def rate(requests: list[Request], hours: float = HOURS) -> float:
    return sum(len(line) for r in requests for line in r.lines) / (hours * 3600)


def test_a_host_sends_one_status_request_per_tick_and_events_beside() -> None:
    requests = day(1)
    status = [r for r in requests if r.status]
    assert len(status) == HOURS * 3600 / TICK
    gaps = {round(b.time - a.time, 6) for a, b in itertools.pairwise(status)}
    assert gaps == {TICK}
    assert all(r.time >= T0 for r in requests)
    for r in status:
        measurements = {line.split(b",", 1)[0] for line in r.lines}
        assert {HOST.encode(), POOL.encode()} <= measurements
    for line in (line for r in requests for line in r.lines):
        assert LINE.match(line), line


@pytest.mark.parametrize(("index", "pools"), [(1, 1), (2, 3)])
def test_write_load_is_under_a_kilobyte_per_second(index: int, pools: int) -> None:
    host = profile(index)
    assert len(host.pools) == pools
    assert 100 < rate(day(index)) < 1000


def test_three_pools_send_more_than_one() -> None:
    assert rate(day(2, pools=3)) > rate(day(2, pools=1))


def test_plancton_hosts_also_send_plancton_series() -> None:
    assert profile(0).legacy and not profile(1).legacy
    lines = [line for r in day(0) for line in r.lines]
    assert any(line.startswith(b"daemon,hostname=node-0000 ") for line in lines)
    assert any(line.startswith(b"measurement,hostname=node-0000 ") for line in lines)
    assert not any(line.startswith(b"daemon,") for r in day(1) for line in r.lines)


def test_pilots_come_and_go_at_a_plausible_pace() -> None:
    lines = [line for r in day(1, hours=12) for line in r.lines]
    events = [line for line in lines if line.startswith(EVENT.encode() + b",")]
    kinds = [re.search(rb"kind=([a-z-]+)", line).group(1) for line in events]  # type: ignore[union-attr]
    started, exited = kinds.count(b"pilot-started"), kinds.count(b"pilot-exited")
    # 30 pilots of 10 min-14 h (about 3 h on average): tens an hour at most, not hundreds.
    assert 10 < started < 400 and 10 < exited < 400


def test_the_stream_is_the_same_every_time() -> None:
    assert [r.lines for r in day(3, hours=0.5)] == [r.lines for r in day(3, hours=0.5)]


def test_a_copy_is_the_same_day_under_another_host_name(tmp_path: Path) -> None:
    start = T0
    hosts = fleet_ingest.generate(
        [profile(0), profile(1)],
        start=start,
        end=start + 1800,
        cut=start + 900,
        directory=tmp_path,
        procs=1,
        gzip_hosts=1,
    )
    assert hosts[0].gzip_bytes and not hosts[1].gzip_bytes
    for h in hosts:
        assert all(b.lines <= fleet_ingest.BATCH_LINES for b in h.batches)
        assert sum(b.lines for b in h.batches) == h.lines
        # no batch straddles the cut
        assert any(b.first >= start + 900 for b in h.batches)
    jobs = fleet_ingest.jobs(hosts, [(0, "node-{:04d}"), (1, "node-{:04d}")], since=start + 900)
    assert {j.rename for j in jobs} == {
        None,
        (b"=node-0000", b"=node-0002"),
        (b"=node-0001", b"=node-0003"),
    }
    job = next(j for j in jobs if j.rename == (b"=node-0000", b"=node-0002"))
    body = (tmp_path / "node-0000.lp").read_bytes()[
        job.batch.offset : job.batch.offset + job.batch.length
    ]
    assert job.rename is not None
    renamed = body.replace(*job.rename)
    assert b"node-0000" not in renamed and renamed.count(b"=node-0002") == body.count(b"=node-0000")
    assert [j.batch.first for j in jobs] == sorted(j.batch.first for j in jobs)


def test_grafana_interval_for_a_wide_panel() -> None:
    assert grafana_interval(24 * 3600) == 60
    assert grafana_interval(2 * 3600) == 5
    assert grafana_interval(3600) == 5


def test_the_fallback_queries_render_without_grafana_variables_left() -> None:
    for case in FALLBACK:
        text = fleet_queries._render_fallback(case.kind, case.expr, T0, T0 + 3600, 60, ALL_HOSTS)
        assert not re.search(r"\$\w|\$\{", text), text


def _timed(case: Case, hosts: str, seconds: float, error: str = "") -> Timed:
    return Timed(case, hosts, [seconds], 1, 1, error)


def test_the_estimate_adds_the_unwritten_hours_times_the_hosts_read() -> None:
    case = Case("d", "p", "A", INFLUXDB, "q", True, False)
    args = argparse.Namespace(small=100, large=1000, hours=24.0, large_hours=2.0)
    run = argparse.Namespace(
        args=args,
        timed={
            "100/24": [_timed(case, ALL_HOSTS, 0.5), _timed(case, "node-0001", 0.02)],
            "100/2": [_timed(case, ALL_HOSTS, 0.1), _timed(case, "node-0001", 0.01)],
            "1000/2": [_timed(case, ALL_HOSTS, 0.9), _timed(case, "node-0001", 0.01)],
        },
    )
    rows = {r.hosts: r for r in fleet_tables.rows(run, INFLUXDB)}  # type: ignore[arg-type]
    assert rows[ALL_HOSTS].estimate == pytest.approx(0.9 + 10 * 0.4)
    assert rows["node-0001"].estimate == pytest.approx(0.01 + 0.01)
    run.timed["1000/2"][0] = _timed(case, ALL_HOSTS, 20.0, "timeout")
    rows = {r.hosts: r for r in fleet_tables.rows(run, INFLUXDB)}  # type: ignore[arg-type]
    assert rows[ALL_HOSTS].estimate is None


def test_only_the_fleet_section_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(
        "# Benchmark results\n\n## Supervisor\n\nkept\n\n## Fleet\n\nold\n\n## Z\n\nz\n"
    )
    fleet_report.write_section(path, "## Fleet\n\nnew\n")
    assert path.read_text() == (
        "# Benchmark results\n\n## Supervisor\n\nkept\n\n## Fleet\n\nnew\n\n## Z\n\nz\n"
    )
    fleet_report.write_section(path, "## Fleet\n\nnewer\n")
    assert "newer" in path.read_text() and "new\n\n## Z" not in path.read_text()


def test_a_small_backfill_lands_in_a_real_influxd(tmp_path: Path) -> None:
    from bench.fleet_servers import DATABASE, FleetInflux
    from tests.support.influxdb_server import require_influxd

    require_influxd()
    hosts = fleet_ingest.generate(
        [profile(1)], start=T0, end=T0 + 600, cut=T0, directory=tmp_path / "s", procs=1
    )
    with FleetInflux(tmp_path / "influxdb") as server:
        server.query(f"CREATE DATABASE {DATABASE}")
        work = fleet_ingest.jobs(hosts, [(0, "node-{:04d}"), (1, "node-{:04d}")])
        result = fleet_ingest.write(
            server.http_port, server.write_path(), work, threads=2, pid=server.pid
        )
        assert not result.errors and result.lines == 2 * hosts[0].lines
        assert server.count(HOST, DATABASE, field="cpus") == 2 * 600 / TICK
        tags = server.query('SHOW TAG VALUES FROM "planctond_host" WITH KEY = "host"', DATABASE)
        assert {row["value"] for row in tags} == {"node-0001", "node-0002"}
