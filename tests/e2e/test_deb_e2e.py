"""Issue 5, proven the way a host owner uses planctond: the .deb built from this checkout on a
freshly booted Debian 12 host (systemd PID 1) that shares the suite's Docker engine.

The steps share one host and run in file order, each starting where the previous one left it:
install, status, control over the bus (root, an unprivileged user, planctonctl), journal,
upgrade, remove, purge.
"""

from __future__ import annotations

import re
import time

import pytest

from planctond import constants as C
from tests.e2e.conftest import HostFactory
from tests.e2e.helpers import (
    TOP,
    UNIT,
    BuiltDebs,
    apt,
    call,
    cursor,
    install,
    instance_id,
    journal_events,
    main_pid,
    pilot_config,
    pilot_ids,
    state,
    status,
    unit_prop,
    wait_active,
    wait_pilots,
    write_config,
)
from tests.e2e.systemd_host import SystemdHost

pytestmark = [pytest.mark.systemd, pytest.mark.docker, pytest.mark.slow]

PILOTS = 2
# Short pilots: they exit by themselves, so "no new pilots while draining" shows within seconds.
SHORT = pilot_config(sleep=6, max_pilots=PILOTS)
OWNER = "alice"  # an ordinary user of the host, not in plancton-admin


@pytest.fixture(scope="module")
def host(boot_host: HostFactory) -> SystemdHost:
    h = boot_host()
    h.check(["useradd", "--create-home", "--shell", "/bin/sh", OWNER])
    return h


def ctl(host: SystemdHost, *args: str, user: str | None = None) -> tuple[int, str]:
    return host.exec(["planctonctl", *args], user=user)


def wait_state(host: SystemdHost, want: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := state(host)) != want:
        assert time.monotonic() < deadline, f"state {got!r}, expected {want!r}"
        time.sleep(0.3)


def test_1_install_enables_and_starts_it_unprivileged_with_pilots(
    host: SystemdHost, built_debs: BuiltDebs
) -> None:
    out = install(host, built_debs, built_debs.version)
    assert "Setting up planctond" in out, out
    assert host.check(["systemctl", "is-enabled", UNIT]).strip() == "enabled"
    wait_active(host)
    # The shipped, commented default config is in place, as a conffile.
    shipped = (TOP / "packaging" / "config.yaml").read_text()
    assert host.check(["cat", C.DEFAULT_CONFIG_PATH]) == shipped
    assert C.DEFAULT_CONFIG_PATH in host.check(["dpkg-query", "-W", "-f=${Conffiles}", "planctond"])
    # User plancton exists, is in the docker group, and runs the daemon; root does not.
    groups = host.check(["id", "-nG", C.SERVICE_USER]).split()
    assert "docker" in groups, groups
    pid = main_pid(host)
    assert host.check(["ps", "-o", "user=", "-p", str(pid)]).strip() == C.SERVICE_USER
    # The host owner sets the pool up: pilots small enough to fit a busy 2-core CI machine.
    write_config(host, SHORT)
    host.check(["systemctl", "reload", UNIT])
    wait_pilots(host, PILOTS)
    names = host.check(["docker", "ps", "--format", "{{.Names}}"]).split()
    assert sum(n.startswith(C.PILOT_NAME_PREFIX + "default-") for n in names) >= PILOTS, names


def test_2_systemctl_status_shows_active_with_its_status_line(host: SystemdHost) -> None:
    out = host.exec(["systemctl", "status", "--no-pager", UNIT])[1]
    assert re.search(r"Active: active \(running\)", out), out
    assert re.search(r'Status: "active: \d+/\d+ pilots, owner CPU \d+ %"', out), out


def test_3_drain_and_resume_over_the_bus_as_root(host: SystemdHost) -> None:
    wait_pilots(host, PILOTS)
    rc, out = call(host, "Drain")
    assert rc == 0, out
    assert state(host) == "draining"
    mark = cursor(host)
    wait_pilots(host, 0, timeout=60)  # the 6 s pilots finish and are not replaced
    time.sleep(3)
    assert pilot_ids(host) == []
    assert journal_events(host, "pilot-started", mark) == []
    rc, out = call(host, "Resume")
    assert rc == 0, out
    assert state(host) == "active"
    wait_pilots(host, PILOTS)


def test_3_unprivileged_user_may_read_but_not_drain(host: SystemdHost) -> None:
    rc, out = call(host, "Drain", user=OWNER)
    assert rc != 0
    assert "AccessDenied" in out or "Access denied" in out, out
    assert state(host) == "active"
    info = status(host, user=OWNER)
    assert info["state"] == "active"
    rc, out = call(host, "ListPilots", user=OWNER)
    assert rc == 0, out


def test_3_the_same_through_planctonctl(host: SystemdHost) -> None:
    rc, out = ctl(host, "status", user=OWNER)
    assert rc == 0, out
    assert "active" in out, out
    rc, out = ctl(host, "drain", user=OWNER)
    assert rc == 4, out  # EXIT_DENIED, documented in planctonctl(1)
    assert state(host) == "active"
    rc, out = ctl(host, "drain")
    assert rc == 0, out
    assert state(host) == "draining"
    rc, out = ctl(host, "status", "--json", user=OWNER)
    assert rc == 0 and '"draining"' in out, out
    rc, out = ctl(host, "resume")
    assert rc == 0, out
    assert state(host) == "active"
    wait_pilots(host, PILOTS)


def test_4_journal_shows_structured_pilot_events(host: SystemdHost) -> None:
    started = journal_events(host, "pilot-started")
    exited = journal_events(host, "pilot-exited")
    changed = journal_events(host, "state-changed")
    assert len(started) >= 2 * PILOTS
    assert exited, "6 s pilots exit by themselves"
    for entry in started + exited:
        assert entry["PLANCTON_POOL"] == "default"
        assert entry["PLANCTON_PILOT"].startswith(C.PILOT_NAME_PREFIX)
        assert entry["_SYSTEMD_UNIT"] == UNIT
        assert re.fullmatch(r"[0-9a-f]{32}", entry["MESSAGE_ID"])
    assert any(e.get("PLANCTON_EXIT_CODE") == "0" for e in exited), exited
    assert {e.get("PLANCTON_STATE") for e in changed} >= {"draining", "active"}
    text = host.check(["journalctl", "--no-pager", "-u", UNIT, "-o", "cat"])
    assert "pilot-started" in text or "started" in text


def test_5_upgrade_restarts_it_keeping_drain_state_and_no_orphans(
    host: SystemdHost, built_debs: BuiltDebs
) -> None:
    wait_pilots(host, PILOTS)
    rc, out = call(host, "Drain")
    assert rc == 0, out
    pid = main_pid(host)
    instance = instance_id(host)
    out = install(host, built_debs, built_debs.upgrade_version)
    assert f"Unpacking planctond ({built_debs.upgrade_version})" in out, out
    assert (
        host.check(["dpkg-query", "-W", "-f=${Version}", "planctond"]) == built_debs.upgrade_version
    )
    wait_active(host)
    assert main_pid(host) != pid, "the upgrade must restart the daemon"
    assert state(host) == "draining"
    assert instance_id(host) == instance
    # No orphans: every container of this instance is one the running daemon manages.
    deadline = time.monotonic() + 30
    while True:
        rc, listed = call(host, "ListPilots")
        assert rc == 0, listed
        orphans = [cid for cid in pilot_ids(host, all_states=True) if cid[:12] not in listed]
        if not orphans:
            break
        assert time.monotonic() < deadline, f"orphaned pilots after the upgrade: {orphans}"
        time.sleep(1)
    assert call(host, "Resume")[0] == 0
    wait_pilots(host, PILOTS)


def test_5_remove_keeps_the_config_and_leaves_no_pilots(host: SystemdHost) -> None:
    # Long pilots the daemon leaves behind when it stops: the package must take them down.
    config = pilot_config(sleep=600, max_pilots=PILOTS, stop_on_exit=False)
    write_config(host, config)
    # A restart, not a reload: the daemon reads docker.stop_pilots_on_exit at start only.
    host.check(["systemctl", "restart", UNIT])
    wait_pilots(host, PILOTS)
    out = apt(host, "remove", "planctond")
    # The daemon left them (stop_pilots_on_exit: false); the prerm removed them.
    assert out.count("planctond: removed pilot") == PILOTS, out
    assert unit_prop(host, "ActiveState") in ("inactive", "")
    assert pilot_ids(host, all_states=True) == []
    assert host.check(["cat", C.DEFAULT_CONFIG_PATH]) == config
    assert "rc  planctond" in host.check(["dpkg", "-l", "planctond"])


def test_5_purge_stops_it_and_leaves_no_pilot_and_no_config(
    host: SystemdHost, built_debs: BuiltDebs
) -> None:
    install(host, built_debs, built_debs.upgrade_version)
    wait_active(host)
    wait_pilots(host, PILOTS)  # the kept config (long pilots, left running on stop) is back
    instance = instance_id(host)
    out = apt(host, "purge", "planctond")
    assert out.count("planctond: removed pilot") == PILOTS, out
    rc, _ = host.exec(["systemctl", "is-active", "--quiet", UNIT])
    assert rc != 0
    rc, _ = host.exec(["pgrep", "-f", "/usr/bin/planctond"])
    assert rc == 1, "no planctond process may survive the purge"
    leftover = host.check(
        ["docker", "ps", "-aq", "--filter", f"label={C.LABEL_INSTANCE}={instance}"]
    ).split()
    assert leftover == []
    for path in ("/etc/plancton", C.DEFAULT_STATE_DIR):
        rc, _ = host.exec(["test", "-e", path])
        assert rc != 0, f"{path} survived the purge"
    rc, _ = host.exec(["dpkg", "-s", "planctond"])
    assert rc != 0
