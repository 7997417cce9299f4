"""What the end-to-end tests do on a booted host, in the words a host owner would use: install the
package, write the config, look at pilots in `docker ps`, ask systemd and the bus."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planctond import constants as C
from tests.e2e.systemd_host import SystemdHost

TOP = Path(__file__).resolve().parents[2]
DIST_IN_HOST = "/mnt/dist"
UNIT = C.UNIT_NAME
BUSCTL = ["busctl", "--system"]
MANAGER = [C.BUS_NAME, C.OBJECT_PATH, C.INTERFACE]
# Every instance id a test saw: the module's teardown removes their pilots even after a purge
# deleted the id from the host.
SEEN_INSTANCES: set[str] = set()


@dataclass(frozen=True)
class BuiltDebs:
    """The .deb of this checkout and a rebuild of it with a higher version (for upgrades)."""

    directory: Path
    version: str
    upgrade_version: str

    def name(self, version: str) -> str:
        return f"planctond_{version}_all.deb"


def build_deb(dist: Path, version: str) -> None:
    env = {**os.environ, "DIST_DIR": str(dist), "DEB_VERSION": version}
    proc = subprocess.run(
        ["sh", str(TOP / "packaging" / "build-deb.sh")],
        cwd=TOP,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise AssertionError(f"build-deb.sh failed ({proc.returncode}):\n{proc.stderr[-6000:]}")


def apt(host: SystemdHost, *args: str) -> str:
    """apt-get as a host owner runs it, non-interactive, keeping a changed conffile."""
    cmd = " ".join(args)
    return host.check(
        f"cd {DIST_IN_HOST} && DEBIAN_FRONTEND=noninteractive apt-get -y "
        f"-o Dpkg::Options::=--force-confold {cmd} 2>&1"
    )


def install(host: SystemdHost, debs: BuiltDebs, version: str) -> str:
    return apt(host, "install", f"./{debs.name(version)}")


# Pilots that start on a busy 2-core CI machine: tiny CPU share, no owner reserve, and a give-way
# grace longer than any test, so the owner's (other tests') load never stops them mid-test.
_CONFIG = """\
tick: 1s
config_check: 5s
owner:
  reserve: 0
  grace_kill: 1h
pools:
  default:
    image: busybox:latest
    pull: never
    command: ["sleep", "{sleep}"]
    cpus: 0.01
    memory: 32M
    max_pilots: "{max_pilots}"
    per_tick: 4
    stop_grace: 2s
docker:
  stop_pilots_on_exit: {stop_on_exit}
"""


def pilot_config(sleep: int = 600, max_pilots: int = 2, stop_on_exit: bool = True) -> str:
    return _CONFIG.format(
        sleep=sleep, max_pilots=max_pilots, stop_on_exit="true" if stop_on_exit else "false"
    )


def write_file(host: SystemdHost, path: str, text: str, mode: int = 0o644) -> None:
    directory, _, name = path.rpartition("/")
    buf = io.BytesIO()
    data = text.encode()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        tar.addfile(info, io.BytesIO(data))
    host.check(["mkdir", "-p", directory])
    assert host.container.put_archive(directory, buf.getvalue())


def write_config(host: SystemdHost, text: str) -> None:
    write_file(host, C.DEFAULT_CONFIG_PATH, text)


def instance_id(host: SystemdHost) -> str | None:
    rc, out = host.exec(["cat", f"{C.DEFAULT_STATE_DIR}/{C.INSTANCE_FILE_NAME}"])
    if rc != 0 or not out.strip():
        return None
    SEEN_INSTANCES.add(out.strip())
    return out.strip()


def pilot_ids(host: SystemdHost, all_states: bool = False) -> list[str]:
    """This host's pilots as `docker ps` inside the host shows them (running ones by default)."""
    inst = instance_id(host)
    assert inst, "the daemon has no instance id yet"
    argv = ["docker", "ps", "-q", "--no-trunc"]
    if all_states:
        argv.append("-a")
    argv += [
        "--filter",
        f"label={C.LABEL_MANAGED}=1",
        "--filter",
        f"label={C.LABEL_INSTANCE}={inst}",
    ]
    return sorted(host.check(argv).split())


def wait_pilots(host: SystemdHost, count: int, timeout: float = 90.0) -> list[str]:
    """Wait until exactly `count` pilots run; the last seen list is in the error."""
    deadline = time.monotonic() + timeout
    ids = pilot_ids(host)
    while len(ids) != count:
        if time.monotonic() > deadline:
            _, status = host.exec(["systemctl", "status", "--no-pager", UNIT])
            raise AssertionError(f"expected {count} pilots, have {len(ids)} ({ids}):\n{status}")
        time.sleep(0.5)
        ids = pilot_ids(host)
    return ids


def remove_pilots_of(client: Any, instance: str) -> None:
    """Pilots are siblings of the host in the test engine: they outlive it unless removed."""
    for ctr in client.containers.list(
        all=True,
        filters={"label": [f"{C.LABEL_MANAGED}=1", f"{C.LABEL_INSTANCE}={instance}"]},
    ):
        with contextlib.suppress(Exception):
            ctr.remove(force=True)


def unit_prop(host: SystemdHost, prop: str) -> str:
    return host.check(["systemctl", "show", "-p", prop, "--value", UNIT]).strip()


def unit_props(host: SystemdHost, *props: str) -> dict[str, str]:
    """Several properties read at one instant (one `systemctl show`), not one after another."""
    out = host.check(["systemctl", "show", *(f"--property={p}" for p in props), UNIT])
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


_TIMESPAN_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


def timespan_seconds(text: str) -> float:
    """`systemctl show`'s time spans ("5s", "1min 30s", "100ms") in seconds."""
    total = 0.0
    for part in text.split():
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(number) * _TIMESPAN_UNITS[part[len(number) :]]
    return total


def main_pid(host: SystemdHost) -> int:
    return int(unit_prop(host, "MainPID"))


def wait_active(host: SystemdHost, timeout: float = 60.0) -> None:
    host.wait_until(f"systemctl is-active --quiet {UNIT}", timeout=timeout)


def busctl(host: SystemdHost, *args: str, user: str | None = None) -> tuple[int, str]:
    return host.exec([*BUSCTL, *args], user=user)


def call(host: SystemdHost, method: str, user: str | None = None) -> tuple[int, str]:
    return busctl(host, "call", *MANAGER, method, user=user)


def status(host: SystemdHost, user: str | None = None) -> dict[str, Any]:
    """Status() as busctl's JSON: {key: value} with variants unwrapped."""
    rc, out = busctl(host, "--json=short", "call", *MANAGER, "Status", user=user)
    assert rc == 0, out
    data = json.loads(out)["data"][0]
    return {k: v["data"] for k, v in data.items()}


def state(host: SystemdHost, user: str | None = None) -> str:
    rc, out = busctl(host, "get-property", *MANAGER, "State", user=user)
    assert rc == 0, out
    kind, _, value = out.strip().partition(" ")
    assert kind == "s", out
    return str(json.loads(value))


def journal_events(
    host: SystemdHost, event: str, since_cursor: str | None = None
) -> list[dict[str, Any]]:
    """Journal entries of the unit with PLANCTON_EVENT=event, as JSON objects.

    After a cursor, the unit and the field are matched here, not by journalctl: systemd 252's
    `--after-cursor` skips one entry past the cursor on the assumption that it is the cursor's
    own; when the cursor's entry does not pass the matches, that skip drops the first entry that
    does, which is often the only one that matters."""
    if since_cursor:
        argv = ["journalctl", "--no-pager", "-o", "json", f"--after-cursor={since_cursor}"]
    else:
        argv = ["journalctl", "--no-pager", "-u", UNIT, f"PLANCTON_EVENT={event}", "-o", "json"]
    out = host.check(argv)
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [
        e for e in entries if e.get("PLANCTON_EVENT") == event and e.get("_SYSTEMD_UNIT") == UNIT
    ]


def cursor(host: SystemdHost) -> str:
    """The journal's current end, to look only at what happens after this point."""
    out = host.check(["journalctl", "--no-pager", "-n", "0", "--show-cursor"])
    for line in out.splitlines():
        if line.startswith("-- cursor: "):
            return line.removeprefix("-- cursor: ").strip()
    raise AssertionError(f"no cursor in {out!r}")
