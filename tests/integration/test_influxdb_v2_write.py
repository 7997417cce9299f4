"""The InfluxDB 2.x write API (`/api/v2/write`, org, bucket, token) against a real server that
speaks it here, VictoriaMetrics: what a daemon's recorder makes arrives, and is queried back with
PromQL under the names a Prometheus user expects (`<measurement>_<field>`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from planctond.config.loader import load_config_text
from planctond.monitoring.hub import target_name
from planctond.monitoring.influxdb import InfluxV2Writer, writer_for
from planctond.monitoring.outbox import Outbox, SinkError
from planctond.monitoring.series import SeriesRecorder
from tests.support.victoria_metrics import VictoriaMetrics, victoria_metrics
from tests.support.waiting import wait_for
from tests.unit.test_monitoring_series import report


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    with victoria_metrics(tmp_path / "vm") as server:
        yield server


def test_status_points_arrive_through_the_2x_api(vm: VictoriaMetrics) -> None:
    config = load_config_text(
        "monitoring:\n  influxdb:\n"
        f"    - {{url: '{vm.url}', org: site, bucket: fleet, token: s3cret-token}}\n",
        "c.yaml",
    )
    (target,) = config.monitoring.influxdb
    assert target.v2 and "s3cret" not in repr(target) and "s3cret" not in target_name(target)
    writer = writer_for(target)
    assert isinstance(writer, InfluxV2Writer)
    outbox = Outbox(target_name(target), writer)
    outbox.start()
    try:
        recorder = SeriesRecorder("vm-node")
        outbox.put(recorder.status(report(), time.time()))
        wait_for(lambda: vm.query("planctond_pool_running_pilots"), 30, message=vm.log_tail)
        ((labels, value),) = vm.query("planctond_pool_running_pilots")
        assert labels["host"] == "vm-node" and labels["pool"] == "default" and value == 2
        health = outbox.health()
        assert health.ok and health.backlog == 0 and health.dropped == 0
    finally:
        outbox.close(5)


def test_a_2x_server_that_is_away_is_a_retryable_error_without_the_token() -> None:
    config = load_config_text(
        "monitoring:\n  influxdb:\n"
        "    - {url: 'http://127.0.0.1:1', org: site, bucket: fleet, token: s3cret-token}\n",
        "c.yaml",
    )
    writer = writer_for(config.monitoring.influxdb[0])
    with pytest.raises(SinkError) as info:
        writer(b"m v=1 1\n")
    assert info.value.retry and "s3cret" not in str(info.value)
