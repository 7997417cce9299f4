"""planctond.service under a real systemd (PID 1 of a Debian 12 container), installed from the
package: readiness, status line, reload, watchdog, journal fields, user and sandbox.

Issue 4's "Done when" for systemd, one test per claim. The host shares the suite's Docker
engine, so pilots are real containers of that engine.
"""

from __future__ import annotations

import re
import time

import pytest

from planctond import constants as C
from planctond.cli.daemon import EX_CONFIG
from tests.e2e.conftest import HostFactory
from tests.e2e.helpers import (
    UNIT,
    BuiltDebs,
    cursor,
    install,
    journal_events,
    main_pid,
    pilot_config,
    pilot_ids,
    status,
    timespan_seconds,
    unit_prop,
    unit_props,
    wait_active,
    wait_pilots,
    write_config,
    write_file,
)
from tests.e2e.systemd_host import SystemdHost

pytestmark = [pytest.mark.systemd, pytest.mark.docker]

PILOTS = 2
WATCHDOG_DROPIN = "/etc/systemd/system/planctond.service.d/50-test-watchdog.conf"


@pytest.fixture(scope="module")
def host(boot_host: HostFactory, built_debs: BuiltDebs) -> SystemdHost:
    """The package installed with a config that runs long pilots (the conffile is kept)."""
    h = boot_host()
    write_config(h, pilot_config(sleep=600, max_pilots=PILOTS))
    install(h, built_debs, built_debs.version)
    wait_active(h)
    wait_pilots(h, PILOTS)
    return h


def test_daemon_runs_as_plancton_with_the_docker_group(host: SystemdHost) -> None:
    pid = main_pid(host)
    assert host.check(["ps", "-o", "user=", "-p", str(pid)]).strip() == C.SERVICE_USER
    proc = host.check(["cat", f"/proc/{pid}/status"])
    uids = re.search(r"^Uid:\s+(.*)$", proc, re.M)
    groups = re.search(r"^Groups:\s*(.*)$", proc, re.M)
    assert uids and groups
    plancton_uid = host.check(["id", "-u", C.SERVICE_USER]).strip()
    assert uids.group(1).split() == [plancton_uid] * 4  # real, effective, saved, fs: never root
    docker_gid = host.check(["getent", "group", "docker"]).split(":")[2]
    assert docker_gid in groups.group(1).split()
    caps = re.search(r"^CapEff:\s+(\S+)$", proc, re.M)
    assert caps and int(caps.group(1), 16) == 0


def test_pilots_run_under_the_idle_parent_set_up_by_the_root_prestart(host: SystemdHost) -> None:
    pilot = pilot_ids(host)[0]
    parent = host.check(["docker", "inspect", "-f", "{{.HostConfig.CgroupParent}}", pilot]).strip()
    assert parent == C.CGROUP_PARENT_CGROUPFS  # the test engine uses the cgroupfs driver
    # Made by `ExecStartPre=+planctond --setup-cgroup` (root); the daemon itself cannot write there.
    rc, idle = host.exec(["cat", f"/sys/fs/cgroup/cpu{C.CGROUP_PARENT_CGROUPFS}/cpu.idle"])
    if rc == 0:
        assert idle.strip() == "1"
    else:
        shares = host.check(["cat", f"/sys/fs/cgroup/cpu{C.CGROUP_PARENT_CGROUPFS}/cpu.shares"])
        assert int(shares) <= 2
    # systemd 252 accepts the slice's CPUWeight=idle (the systemd-driver parent).
    assert (
        host.check(
            ["systemctl", "show", "-p", "CPUWeight", "--value", C.CGROUP_PARENT_SYSTEMD]
        ).strip()
        == "idle"
    )


def test_start_reaches_active_only_after_ready(host: SystemdHost) -> None:
    host.check(["systemctl", "stop", UNIT])
    mark = cursor(host)
    # Poll from inside the host (no docker exec round trip per sample): the unit must be seen
    # "activating" while the daemon loads its config and takes its bus name, then "active", and
    # at the first "active" sample the bus name is already owned (READY=1 comes after it).
    script = (
        f"systemctl start --no-block {UNIT}; "
        "seen=; while :; do "
        f"s=$(systemctl show -p ActiveState --value {UNIT}); "
        'case "$s" in active) break;; failed) echo FAILED; exit 1;; esac; '
        'seen="$seen $s"; done; '
        f"busctl --system status {C.BUS_NAME} >/dev/null 2>&1 && echo NAME-OWNED; "
        'echo "seen:$seen"'
    )
    out = host.check(["timeout", "60", "sh", "-c", script])
    assert "NAME-OWNED" in out, out
    seen = out.split("seen:", 1)[1].split()
    assert "activating" in seen, out
    # The daemon's own "started" line (config loaded, bus name owned) precedes systemd's "Started".
    log = host.check(
        ["journalctl", "--no-pager", "-o", "cat", f"--after-cursor={mark}", "-u", UNIT]
    ).splitlines()
    started = next(i for i, line in enumerate(log) if line.startswith("Started planctond"))
    serving = next(i for i, line in enumerate(log) if "serving" in line and C.BUS_NAME in line)
    assert serving < started, "\n".join(log)
    wait_pilots(host, PILOTS)


def test_start_with_an_invalid_config_fails_with_78_and_is_not_restarted(
    host: SystemdHost,
) -> None:
    """A config that cannot be used is not fixed by restarting: the unit ends `failed` with
    EX_CONFIG at once and stays there (no restart every RestartSec), whatever the root prestart,
    which reads the same file, made of it."""
    good = host.check(["cat", C.DEFAULT_CONFIG_PATH])
    host.check(["systemctl", "stop", UNIT])
    write_config(host, "pools:\n  default:\n    cpus: lots\n")
    try:
        host.exec(["systemctl", "reset-failed", UNIT])
        rc, out = host.exec(["systemctl", "start", UNIT])
        assert rc != 0, out
        restart_sec = timespan_seconds(unit_prop(host, "RestartUSec"))
        assert restart_sec > 0
        time.sleep(restart_sec * 2 + 2)  # a restart, had there been one, has happened by now
        props = unit_props(host, "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
        assert props == {
            "ActiveState": "failed",
            "Result": "exit-code",
            "ExecMainCode": "1",  # CLD_EXITED: the daemon itself exited, nobody killed it
            "ExecMainStatus": str(EX_CONFIG),
        }, props
        assert unit_prop(host, "NRestarts") == "0"
        assert "cpus" in host.check(
            ["journalctl", "--no-pager", "-o", "cat", "-u", UNIT, "-n", "30"]
        )
    finally:
        write_config(host, good)
        host.exec(["systemctl", "reset-failed", UNIT])
        host.check(["systemctl", "start", UNIT])
    wait_pilots(host, PILOTS)


def test_systemctl_status_shows_the_status_line(host: SystemdHost) -> None:
    host.wait_until(
        f"systemctl show -p StatusText --value {UNIT} | grep -q '^active: {PILOTS}/{PILOTS} pilots'",
        timeout=60,
    )
    out = host.exec(["systemctl", "status", "--no-pager", UNIT])[1]
    assert "Active: active (running)" in out, out
    line = re.search(r'^\s*Status: "(.*)"$', out, re.M)
    assert line, out
    assert re.match(rf"active: {PILOTS}/{PILOTS} pilots, owner CPU \d+ %", line.group(1)), (
        line.group(1)
    )


def test_reload_with_a_broken_config_keeps_the_daemon_on_the_old_one(host: SystemdHost) -> None:
    good = host.check(["cat", C.DEFAULT_CONFIG_PATH])
    pilots = wait_pilots(host, PILOTS)
    pid = main_pid(host)
    mark = cursor(host)
    write_config(host, good.replace(f'max_pilots: "{PILOTS}"', 'max_pilots: "ncpus +* 2"'))
    try:
        host.check(["systemctl", "reload", UNIT])
        deadline = time.monotonic() + 30
        while not journal_events(host, "config-rejected", mark):
            assert time.monotonic() < deadline, "no config-rejected event after reload"
            time.sleep(0.5)
        rejected = journal_events(host, "config-rejected", mark)[0]
        assert "max_pilots" in rejected["MESSAGE"], rejected["MESSAGE"]
        time.sleep(3)  # a few ticks on the old config
        assert unit_prop(host, "ActiveState") == "active"
        assert main_pid(host) == pid
        assert pilot_ids(host) == pilots
        assert status(host)["state"] == "active"
    finally:
        write_config(host, good)
        host.check(["systemctl", "reload", UNIT])
    assert main_pid(host) == pid


def test_watchdog_kills_a_frozen_loop_and_the_restart_adopts_the_pilots(host: SystemdHost) -> None:
    write_file(host, WATCHDOG_DROPIN, "[Service]\nWatchdogSec=4s\nRestartSec=1s\n")
    try:
        host.check(["systemctl", "daemon-reload"])
        host.check(["systemctl", "restart", UNIT])
        before = wait_pilots(host, PILOTS)
        restarts = int(unit_prop(host, "NRestarts"))
        pid = main_pid(host)
        mark = cursor(host)
        host.check(["kill", "-STOP", str(pid)])
        host.wait_until(
            f'[ "$(systemctl show -p NRestarts --value {UNIT})" -gt {restarts} ] && '
            f"systemctl is-active --quiet {UNIT}",
            timeout=60,
        )
        assert main_pid(host) != pid
        log = host.check(["journalctl", "--no-pager", "-o", "cat", f"--after-cursor={mark}"])
        assert "Watchdog timeout" in log, log
        assert "Failed with result 'watchdog'" in log, log
        # Same containers, now the new daemon's: nothing was stopped or started for the restart.
        host.wait_until(
            f"busctl --system get-property {C.BUS_NAME} {C.OBJECT_PATH} {C.INTERFACE} RunningPilots | grep -qx 'u {PILOTS}'",
            timeout=30,
        )
        assert pilot_ids(host) == before
        assert not journal_events(host, "pilot-stopped", mark)
        assert not journal_events(host, "pilot-killed", mark)
    finally:
        host.exec(["rm", "-f", WATCHDOG_DROPIN])
        host.check(["systemctl", "daemon-reload"])


def test_journal_lists_pilot_started_with_structured_fields(host: SystemdHost) -> None:
    names = {
        host.check(["docker", "inspect", "-f", "{{.Name}}", cid]).strip().lstrip("/")
        for cid in wait_pilots(host, PILOTS)
    }
    out = host.check(
        ["journalctl", "--no-pager", "-u", UNIT, "PLANCTON_EVENT=pilot-started", "-o", "cat"]
    )
    for name in names:
        assert name in out, out
    entries = journal_events(host, "pilot-started")
    by_pilot = {e.get("PLANCTON_PILOT"): e for e in entries}
    for name in names:
        entry = by_pilot[name]
        assert entry["PLANCTON_POOL"] == C.DEFAULT_POOL_NAME
        assert re.fullmatch(r"[0-9a-f]{32}", entry["MESSAGE_ID"])
        assert entry["_SYSTEMD_UNIT"] == UNIT
    # The catalog is installed and compiled: the entry explains itself.
    explained = host.check(
        ["journalctl", "--no-pager", "-x", "-u", UNIT, "PLANCTON_EVENT=pilot-started", "-n", "1"]
    )
    assert "░░" in explained, explained


def test_sandbox_exposure_as_recorded_in_the_readme(host: SystemdHost) -> None:
    out = host.exec(["systemd-analyze", "security", "--no-pager", UNIT])[1]
    print(out)
    level = re.search(r"Overall exposure level for planctond.service: ([\d.]+)", out)
    assert level, out
    assert float(level.group(1)) <= 1.5, out
    verify = host.exec(["systemd-analyze", "verify", "--man=no", f"/lib/systemd/system/{UNIT}"])
    assert verify[0] == 0, verify[1]
