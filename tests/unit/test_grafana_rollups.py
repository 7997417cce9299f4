"""The InfluxDB fleet rollups (contrib/grafana/influxdb-rollups.iql) and the dashboard panels that
read them agree without a server: every rollup is read by a panel and reads the catalogue; each
panel reading a rollup has a raw twin for picked hosts computing the same figure from the same
per-host expression; and the README's install and backfill recipes make the very statements
the integration test and the fleet benchmark send (tests/integration/test_grafana_queries.py
checks the figures on a real influxd). The helpers those two use to compare a rollup target with
its raw twin, and the benchmark's reading of influxd's log of continuous query runs, are checked
here too, on answers and log lines made up in influxd's shape.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import fleet_rollups
from planctond.monitoring.series_spec import SERIES
from tests.support import dashboards as D

INFLUX = D.GRAFANA_DIR / "planctond-influxdb.json"
README = D.GRAFANA_DIR / "README.md"
ROLLUP_MEASUREMENTS = {r.measurement for r in D.rollups()}


def targets() -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """(panel, {refId: query}) of every InfluxDB panel."""
    for panel in D.all_panels(D.load(INFLUX)):
        found = {t["refId"]: t["query"] for t in panel.get("targets", [])}
        if found:
            yield panel, found


def reads_rollup(query: str) -> set[str]:
    return set(re.findall(r'FROM "(\w+)"', query)) & ROLLUP_MEASUREMENTS


def aliases(query: str) -> list[str]:
    """The outer query's column names: what the panel shows."""
    outer = query.split(" FROM ", 1)[0]
    return re.findall(r'AS "([^"]+)"', outer)


def test_every_line_of_the_file_is_a_one_minute_continuous_query_of_one_field() -> None:
    lines = [x for x in D.ROLLUPS.read_text().splitlines() if x and not x.startswith("--")]
    assert len(lines) == len(D.rollups()) == len({(r.measurement, r.field) for r in D.rollups()})
    for line, r in zip(lines, D.rollups(), strict=True):
        assert line.startswith(f'CREATE CONTINUOUS QUERY "{r.name}" '), line
        assert r.name == f"{r.measurement}_{r.field}", r
        # Each minute computed twice (at its end, and a minute later for late points); an
        # increase also reads the minute before.
        span = "3m" if r.expr.startswith("non_negative_difference(") else "2m"
        assert f'ON "{D.DATABASE_MARK}" RESAMPLE EVERY 1m FOR {span} BEGIN ' in line, line
    for r in D.rollups():  # per host (and pool) and minute, then summed per minute (and pool)
        per_host = '"host", "pool"' if r.tags else '"host"'
        assert r.group_by == "GROUP BY time(1m)" + "".join(f', "{t}"' for t in r.tags), r
        assert r.tags in ((), ("pool",)), r
        assert r.select.endswith(f"GROUP BY time(1m), {per_host} fill(none))"), r
    installed = D.rollup_install("site")
    assert D.DATABASE_MARK not in installed and installed.count('ON "site"') == len(lines)


def test_every_rollup_reads_the_catalogue_and_is_read_by_a_panel() -> None:
    catalogue = {(s.measurement, s.field) for s in SERIES}
    read = " ".join(q["A"] for _, q in targets() if "A" in q and reads_rollup(q["A"]))
    for r in D.rollups():
        (field,) = re.findall(r'"(\w+)"', r.expr)
        assert (r.source, field) in catalogue, r
        assert f'"{r.field}"' in read, f"no panel reads {r.measurement}.{r.field}"


def test_a_panel_reading_a_rollup_has_a_raw_twin_for_picked_hosts() -> None:
    rollup = {(r.measurement, r.field): r for r in D.rollups()}
    pairs = 0
    for panel, queries in targets():
        if not reads_rollup(queries.get("A", "")):
            assert not any(D.PICKED_HOSTS in q for q in queries.values()), panel["title"]
            continue
        a, b = queries["A"], queries["B"]
        assert set(queries) == {"A", "B"}, panel["title"]
        assert '"host" =~ /^$host$/' in a and D.PICKED_HOSTS not in a, panel["title"]
        assert D.PICKED_HOSTS in b and not reads_rollup(b), panel["title"]
        assert aliases(a) == aliases(b), panel["title"]
        assert ('"pool" =~ /^$pool$/' in a) == ('"pool" =~ /^$pool$/' in b), panel["title"]
        # The raw twin takes each host's minute as the continuous query does.
        (measurement,) = reads_rollup(a)
        fields = [f for f in re.findall(r'\w+\("(\w+)"\)', a) if (measurement, f) in rollup]
        assert fields, panel["title"]
        for field in fields:
            r = rollup[(measurement, field)]
            assert r.expr in b and f'FROM "{r.source}"' in b, (panel["title"], r.expr)
        pairs += 1
    assert pairs >= 8


def test_the_drill_down_row_is_collapsed() -> None:
    """Grafana runs a collapsed row's queries only when it is opened (after picking hosts)."""
    rows = [p for p in D.load(INFLUX)["panels"] if p["type"] == "row"]
    drill = [p for p in rows if "drill" in p["title"].lower()]
    assert len(drill) == 1 and drill[0]["collapsed"] and drill[0]["panels"]


def _recipe(start: str) -> str:
    """The README's shell block that begins with `start` (its first line sets the variables)."""
    blocks: list[str] = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if b.startswith(start)]
    return block


def test_the_readme_backfill_recipe_makes_the_statements_the_tests_send() -> None:
    block = _recipe("DB=fleet URL=http://localhost:8086 DAYS=")
    (sed,) = [line.strip().rstrip("|").strip() for line in block.splitlines() if "sed -n" in line]
    start, end = (
        1_796_000_000 - 1_796_000_000 % 86400,
        1_796_000_000 - 1_796_000_000 % 86400 + 86400,
    )
    script = f"from={start}000ms to={end}000ms\n{sed}\n"
    made = subprocess.run(
        ["bash", "-c", script], cwd=D.GRAFANA_DIR, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert made == D.rollup_backfill(start, end)
    assert (
        "from=$(( today - day * 86400 ))000ms to=$(( today - day * 86400 + 86400 ))000ms" in block
    )


def test_the_readme_install_recipe_sends_the_file_with_the_database_put_in() -> None:
    block = _recipe("DB=fleet URL=http://localhost:8086\n")
    (sed,) = [line.split(" | ")[0] for line in block.splitlines() if line.startswith("sed ")]
    made = subprocess.run(
        ["bash", "-c", f"DB=site\n{sed}"], cwd=D.GRAFANA_DIR, capture_output=True, text=True
    ).stdout
    assert made == D.rollup_install("site")


def test_the_picked_hosts_mark_shuts_its_target_for_all_and_only_for_all() -> None:
    """With All, the mark reads `"all_hosts" !~ /^.*$/`, false for every series (the tag is
    empty everywhere, and `.*` matches the empty value); with hosts picked, a list of names the
    empty value never matches, so it holds for every series."""
    span = {"start_s": 0.0, "end_s": 60.0, "interval_s": 60.0}
    for chosen in (D.ALL, ["node-1"], ["node-1", "node-2"]):
        text = D.render_influxql(D.PICKED_HOSTS, **span, variables={"host": chosen})
        pattern = re.fullmatch(r'"all_hosts" !~ /(.*)/', text)
        assert pattern is not None, text
        assert bool(re.search(pattern.group(1), "")) == (chosen == D.ALL), text


T0 = 1_796_000_000 - 1_796_000_000 % 60  # a whole minute


def test_the_backfill_is_each_rollup_as_a_plain_select_into_from_a_minute_early() -> None:
    made = D.rollup_backfill(T0, T0 + 3600)
    assert len(made) == len(D.rollups())
    for statement, r in zip(made, D.rollups(), strict=True):
        assert statement == (
            f"{r.select} WHERE time >= {T0}000ms - 1m AND time < {T0 + 3600}000ms {r.group_by};"
        )
        assert statement.startswith("SELECT ") and f' INTO "{r.measurement}" ' in statement
        assert "CONTINUOUS" not in statement and D.DATABASE_MARK not in statement


def test_a_line_that_is_not_a_rollup_of_one_field_is_refused(tmp_path: Path) -> None:
    (good, *_) = [x for x in D.ROLLUPS.read_text().splitlines() if x.startswith("CREATE")]
    two = good.replace(
        'AS "v" FROM "planctond_daemon"', 'AS "v", last("x") FROM "planctond_daemon"'
    )
    for bad in (two, good.replace('SELECT count("v")', 'SELECT count("w")')):
        path = tmp_path / "rollups.iql"
        path.write_text(f"-- a comment\n{good}\n{bad}\n")
        with pytest.raises(ValueError, match="not a rollup of one field"):
            D.rollups(path)
    path.write_text(f"-- a comment\n\n{good}\n")
    assert [r.name for r in D.rollups(path)] == ["planctond_fleet_hosts"]


def _answers(queries: list[str], *, raw_value: float) -> Callable[[str], list[dict[str, Any]]]:
    """A server that answers every query with one figure at T0 (the raw twin also with the
    minute before, which its range includes), keeping the queries it was asked."""

    def series_of(query: str) -> list[dict[str, Any]]:
        queries.append(query)
        raw = D.PICKED_HOSTS.split(" !~")[0] in query
        rows = [[(T0 - 60) * 1000, 99.0]] if raw else []
        rows.append([T0 * 1000, raw_value if raw else 1.0])
        return [{"name": "x", "columns": ["time", "v"], "values": rows}]

    return series_of


def test_a_rollup_and_its_raw_twin_are_compared_over_the_same_minutes() -> None:
    asked: list[str] = []
    same = D.rollups_against_raw(INFLUX, _answers(asked, raw_value=1.0), ["a", "b"], T0, T0 + 60)
    twins = D.rollup_twins(INFLUX)
    assert not same.unequal and same.compared == {title: 1 for title, *_ in twins}
    assert len(asked) == 2 * len(twins)
    last = f"time <= {(T0 + 60) * 1000 - 1}ms"
    for rollup, raw in zip(asked[::2], asked[1::2], strict=True):
        assert f"time >= {T0 * 1000}ms and {last}" in rollup and "/^.*$/" in rollup
        # A raw increase needs the minute before: the twin starts there, for the hosts picked.
        assert f"time >= {(T0 - 60) * 1000}ms and {last}" in raw and "/^(a|b)$/" in raw
    other = D.rollups_against_raw(INFLUX, _answers([], raw_value=2.0), ["a"], T0, T0 + 60)
    assert len(other.unequal) == len(twins)


def test_the_benchmark_reads_each_continuous_query_run_from_influxd_s_log(tmp_path: Path) -> None:
    """Lines as influxd 1.6 logs them (its continuous querier at level info)."""
    line = (
        'ts=2026-12-02T00:55:00.489796Z lvl=info msg="Finished continuous query" '
        "log_id=16u3kxOl000 service=continuous_querier trace_id=16u3oCXl000 "
        "op_name=continuous_querier_execute name=planctond_fleet_pool_pilot_cpu_seconds "
        "db_instance={db} written=1 start=2026-12-02T00:53:00.000000Z "
        "end=2026-12-02T00:55:00.000000Z duration={d}"
    )
    log = tmp_path / "influxd.log"
    log.write_text(
        "\n".join(
            [
                line.format(db="fleet_live", d="2ms"),
                line.format(db="fleet", d="7ms"),
                'ts=x lvl=info msg="Executing continuous query" name=a db_instance=fleet_live',
                line.format(db="fleet_live", d="1.5s"),
                line.format(db="fleet_live", d="250µs"),
            ]
        )
    )
    assert fleet_rollups.runs_from_log(log, "fleet_live") == pytest.approx([0.002, 1.5, 0.00025])
