"""The InfluxDB dashboard's fleet rollups in the benchmark, run the way a site admin runs them:
contrib/grafana/influxdb-rollups.iql sent to `/query` as its one-liner sends it, the history
filled once by the backfill statements (tests/support/dashboards.py makes the same ones as the
README's sed recipe), and the continuous queries left to run on the server's clock while the
larger fleet writes live. Afterwards the minutes they wrote are compared with what the backfill
computes from the raw points of the same minutes, and their run times are read from the
server's log (influxd logs every run: name, database, points written, duration).
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.fleet_ingest import ServerUse, Watch
from bench.report import percentile
from tests.support import dashboards as D
from tests.support.dashboards import Agreement as Agreement

CHUNK: Final = 3600.0  # backfill one hour a statement: each stays well inside the query timeout
AGREE_MINUTES: Final = 10  # of the dashboard's rollup targets checked against their raw twins
DASHBOARD: Final = D.GRAFANA_DIR / "planctond-influxdb.json"
_RUN = re.compile(
    r'msg="Finished continuous query".* name=(\w+) db_instance=(\w+) written=(\d+) .*'
    r"duration=([\d.]+)(ns|µs|us|ms|s)\b"
)
_UNIT = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_INTO = re.compile(r' INTO "\w+"')


@dataclass
class Fill:
    """One backfill: the statements of every rollup over [start, end), in hourly chunks."""

    hosts: int
    hours: float
    statements: int = 0
    written: int = 0
    seconds: float = 0.0
    slowest: float = 0.0  # one statement (one rollup field over one hour)
    errors: list[str] = field(default_factory=list)
    use: ServerUse = field(default_factory=ServerUse)


@dataclass
class LiveCheck:
    """The continuous queries while the fleet wrote live: their runs, and their minutes
    against the raw points."""

    hosts: int
    runs: list[float] = field(default_factory=list)  # seconds, one per continuous query run
    minutes: int = 0  # rollup points (minute x field x pool) compared
    equal: int = 0
    unequal: list[str] = field(default_factory=list)
    missing: int = 0  # minutes the raw points have and the rollup lacks


def post(
    url: str, database: str, text: str, timeout: float = 600.0, epoch: str = ""
) -> dict[str, Any]:
    """What `curl -XPOST URL/query --data-urlencode q@-` sends (plus `db`, and `epoch` for
    times as numbers)."""
    fields = {"db": database, "q": text, **({"epoch": epoch} if epoch else {})}
    form = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"{url}/query", data=form, method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        document: dict[str, Any] = json.load(reply)
        return document


def errors_of(document: dict[str, Any]) -> list[str]:
    found = [str(document["error"])] if "error" in document else []
    return found + [str(r["error"]) for r in document.get("results", []) if "error" in r]


def install(url: str, database: str) -> list[str]:
    """The continuous queries into `database`; the server's complaints, if any."""
    return errors_of(post(url, database, D.rollup_install(database)))


def backfill(url: str, database: str, *, start: float, end: float, hosts: int, pid: int) -> Fill:
    """Fill the rollups over [start, end) (whole minutes), an hour a statement, in time order."""
    fill = Fill(hosts, (end - start) / 3600.0)
    watch = Watch(pid)
    began = time.monotonic()
    chunk = start
    while chunk < end:
        upper = min(end, chunk + CHUNK)
        for statement in D.rollup_backfill(chunk, upper):
            t0 = time.monotonic()
            document = post(url, database, statement)
            fill.slowest = max(fill.slowest, time.monotonic() - t0)
            fill.statements += 1
            fill.errors += errors_of(document)
            for result in document.get("results", []):
                for series in result.get("series", []):
                    fill.written += sum(int(row[1]) for row in series.get("values", []))
        chunk = upper
    fill.seconds = time.monotonic() - began
    fill.use = watch.stop()
    return fill


def agree(
    url: str, database: str, hosts: list[str], *, end: float, minutes: int = AGREE_MINUTES
) -> Agreement:
    """The InfluxDB dashboard's fleet panels as Grafana asks them, over the `minutes` whole
    minutes before `end`: each rollup target (All) against its raw twin with `hosts` picked by
    name; the server's errors count as differences."""
    errors: list[str] = []

    def series_of(query: str) -> list[dict[str, Any]]:
        document = post(url, database, query, epoch="ms")
        errors.extend(errors_of(document))
        return [s for r in document.get("results", []) for s in r.get("series", [])]

    found = D.rollups_against_raw(DASHBOARD, series_of, hosts, end - minutes * 60.0, end)
    found.unequal[:0] = errors
    return found


def runs_from_log(log: Path, database: str) -> list[float]:
    """Seconds of each continuous query run on `database` the server logged."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        match = _RUN.search(line)
        if match is not None and match.group(2) == database:
            out.append(float(match.group(4)) * _UNIT[match.group(5)])
    return out


def _by_minute(rows: list[dict[str, Any]], name: str) -> dict[tuple[str, int], float]:
    return {
        (str(row.get("pool", "")), int(row["time"])): float(row[name])
        for row in rows
        if row.get(name) is not None
    }


def compare_live(
    query: Callable[[str], list[dict[str, Any]]], *, start: float, end: float, hosts: int
) -> LiveCheck:
    """The rollup minutes in [start, end) against the same figures computed now from the raw
    points (each rollup's SELECT without its INTO): equal within float rounding."""
    check = LiveCheck(hosts)
    lo, hi = f"{round(start * 1000)}ms", f"{round(end * 1000)}ms"
    for rollup in D.rollups():
        fresh = _INTO.sub("", rollup.select, count=1)
        # From a minute early: the first minute's increase needs the one before it.
        early = f"{round(start * 1000) - 60_000}ms"
        raw = query(f"{fresh} WHERE time >= {early} AND time < {hi} {rollup.group_by} fill(none)")
        kept = query(
            f'SELECT "{rollup.field}" FROM "{rollup.measurement}" '
            f"WHERE time >= {lo} AND time < {hi} GROUP BY *"
        )
        want = {k: v for k, v in _by_minute(raw, rollup.field).items() if k[1] >= start * 1e9}
        have = _by_minute(kept, rollup.field)
        for key, value in sorted(want.items()):
            if key not in have:
                check.missing += 1
                continue
            check.minutes += 1
            if math.isclose(have[key], value, rel_tol=1e-9, abs_tol=1e-9):
                check.equal += 1
            else:
                check.unequal.append(f"{rollup.field} {key}: rollup {have[key]}, raw {value}")
    return check


def wait_for_cq_round(margin: float = 15.0) -> None:
    """Until the continuous queries' next run (the start of the next minute) is over."""
    now = time.time()
    time.sleep(math.floor(now / 60.0) * 60.0 + 60.0 + margin - now)


def render(fills: list[Fill], live: LiveCheck | None, agreed: Agreement | None) -> list[str]:
    """The report's lines on the rollups."""
    if not fills and live is None and agreed is None:
        return []
    out = [
        "",
        "### Fleet rollups (InfluxDB): continuous queries and their backfill",
        "",
        "contrib/grafana/influxdb-rollups.iql installed as its one-liner does (the file sent to "
        "`/query`), then the history before it filled once by the backfill statements "
        "(contrib/grafana/README.md), an hour of one rollup field a statement, as influxd "
        "computes them from the raw points:",
        "",
        "| backfill | statements | wall | server CPU | slowest statement | points written |",
        "|---|---|---|---|---|---|",
    ]
    for f in fills:
        errors = f"; **{len(f.errors)} errors**: `{f.errors[0][:100]}`" if f.errors else ""
        out.append(
            f"| {f.hosts} hosts x {f.hours:g} h | {f.statements} | {f.seconds:.0f} s "
            f"| {f.use.cpu_s:.0f} s | {f.slowest:.2f} s | {f.written:,}{errors} |"
        )
    widest = max(fills, key=lambda f: f.hosts * f.hours, default=None)
    if widest is not None and widest.hosts * widest.hours > 0:
        per_day = widest.seconds / (widest.hosts * widest.hours) * 1000 * 24
        out += [
            "",
            "A backfill reads every raw point of its range once per rollup field, so its time "
            f"grows with hosts x hours: at the {widest.hosts}-host pace, a day of 1,000 hosts "
            f"takes about {per_day / 60:.0f} min (the README's recipe sends a day a request).",
        ]
    if live is not None:
        runs = live.runs
        per = len(D.rollups())
        timing = (
            f"{len(runs)} runs, median {percentile(runs, 50) * 1000:.0f} ms, p95 "
            f"{percentile(runs, 95) * 1000:.0f} ms, max {max(runs) * 1000:.0f} ms; {per} "
            f"queries a minute, so about {sum(runs) / len(runs) * per * 1000:.0f} ms of "
            "influxd's time a minute"
            if runs
            else "no run logged"
        )
        verdict = (
            f"{live.equal} of {live.minutes} equal"
            + (f", **{len(live.unequal)} not**: `{live.unequal[0][:120]}`" if live.unequal else "")
            + (f", **{live.missing} missing**" if live.missing else "")
        )
        out += [
            "",
            f"While the {live.hosts} hosts wrote live (above), the continuous queries ran on "
            f"influxd's clock, each once a minute over the last two or three minutes: {timing}. The rollup points "
            "they wrote for the minutes the hosts wrote whole (minute x field x pool), against "
            f"the same figures computed afterwards from the raw points: {verdict}.",
        ]
    return out
    if agreed is not None:
        compared = sum(agreed.compared.values())
        verdict = (
            f"**{len(agreed.unequal)} differ**: `{agreed.unequal[0][:160]}`"
            if agreed.unequal
            else "all equal"
        )
        out += [
            "",
            f"The dashboard's own two targets of its {len(agreed.compared)} fleet panels on the "
            f"larger fleet's backfilled rollups, at Grafana's 1-minute interval over the last "
            f"{AGREE_MINUTES} minutes of the history: the rollup target for All against the raw "
            f"twin with every host picked by name, {compared} figures: {verdict}.",
        ]
    return out
