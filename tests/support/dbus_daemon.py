"""A private "system" bus: the real dbus-daemon with Debian's system.conf policy and our
dbus/org.plancton.conf, listening on a socket in a temp dir (clients use DBUS_SYSTEM_BUS_ADDRESS).

Needs root like the real thing: the policy is about uids, and the tests switch uid with setpriv.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "dbus" / "org.plancton.conf"
SYSTEM_CONF = Path("/usr/share/dbus-1/system.conf")
LOGIN1_POLICY = Path("/usr/share/dbus-1/system.d/org.freedesktop.login1.conf")

# Elements of system.conf that belong to the machine's real bus, not to a private one.
_DROP = {
    "user",
    "fork",
    "pidfile",
    "syslog",
    "servicehelper",
    "standard_system_servicedirs",
    "listen",
    "include",
    "includedir",
}


@dataclass(frozen=True)
class PrivateBus:
    address: str
    socket_path: Path
    config_path: Path
    pid: int

    def env(self) -> dict[str, str]:
        """An environment for child processes that points them at this bus."""
        return {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.address}


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the private system bus tests need root (policies are per uid)"
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon is not installed"
    if not SYSTEM_CONF.exists():
        return f"{SYSTEM_CONF} is missing"
    return None


def write_config(
    directory: Path,
    socket_path: Path,
    policies: list[Path],
    admin_group: str | None = None,
    service_user: str | None = None,
) -> Path:
    """system.conf minus machine specifics, plus `policies`. `admin_group` / `service_user`
    rewrite the group and user names in our policy, so tests can give those roles to accounts
    that exist on this machine (plancton-admin and plancton usually do not)."""
    tree = ET.parse(SYSTEM_CONF)
    root = tree.getroot()
    for child in list(root):
        if child.tag in _DROP:
            root.remove(child)
    listen = ET.Element("listen")
    listen.text = f"unix:path={socket_path}"
    root.insert(1, listen)
    for i, policy in enumerate(policies):
        text = policy.read_text()
        if admin_group is not None and policy == POLICY_FILE:
            text = text.replace('group="plancton-admin"', f'group="{admin_group}"')
        if service_user is not None and policy == POLICY_FILE:
            text = text.replace('user="plancton"', f'user="{service_user}"')
        copy = directory / f"policy-{i}-{policy.name}"
        copy.write_text(text)
        include = ET.Element("include")
        include.text = str(copy)
        root.append(include)
    config = directory / "bus.conf"
    tree.write(config, encoding="unicode")
    return config


@contextlib.contextmanager
def private_system_bus(
    policies: list[Path] | None = None,
    admin_group: str | None = None,
    service_user: str | None = None,
) -> Iterator[PrivateBus]:
    # Not under pytest's tmp_path: that is 0700, and the second uid must reach the socket.
    directory = Path(tempfile.mkdtemp(prefix="planctond-bus-"))
    directory.chmod(0o755)
    socket_path = directory / "system_bus_socket"
    config = write_config(
        directory,
        socket_path,
        [POLICY_FILE] if policies is None else policies,
        admin_group,
        service_user,
    )
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"dbus-daemon did not start: {err}")
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("dbus-daemon socket did not appear")
            time.sleep(0.02)
        socket_path.chmod(0o777)
        yield PrivateBus(address, socket_path, config, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(directory, ignore_errors=True)


@functools.cache
def code_root_for_others() -> Path:
    """A PYTHONPATH entry from which another uid can import planctond.

    The checkout itself when every directory above it lets others through; otherwise (a CI clone
    under a 0700 `mktemp -d`, say) a world-readable copy of the packages, made once per run.
    """
    if all(os.stat(d).st_mode & 0o001 for d in (ROOT, *ROOT.parents)):
        return ROOT
    copy = Path(tempfile.mkdtemp(prefix="planctond-code-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    for package in ("planctond", "tests"):  # scripts run as that uid use test doubles too
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for d, _, files in os.walk(copy):
        os.chmod(d, 0o755)
        for f in files:
            os.chmod(os.path.join(d, f), 0o644)
    return copy


def as_user(user: str, group: str, argv: list[str], login_groups: bool = False) -> list[str]:
    """argv run as another uid: with only its primary group, or with the supplementary groups
    the user database gives it (`login_groups`, as after a fresh login)."""
    groups = "--init-groups" if login_groups else "--clear-groups"
    return ["setpriv", f"--reuid={user}", f"--regid={group}", groups, *argv]
