"""A Debian 12 host with systemd as PID 1, booted as a container of the test engine.

End-to-end tests of the unit and the packages need a real service manager, a real system bus and
a real journal; a container that shares the test engine's socket gives all three in seconds. The
root file system comes from debootstrap (about 95 s), so it is cached as a tarball under
/var/cache/planctond-tests/ keyed by ROOT_VERSION: CI re-runs on the same machine skip it.

Run as a script (`python3 -m tests.e2e.systemd_host [--docker-url URL]`) to build the cache ahead
of time; the pytest fixtures in conftest.py call the same functions.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker

# Bump when the package list or the build steps change: the cached root is keyed by it.
ROOT_VERSION = "bookworm-3"
CACHE_DIR = Path(os.environ.get("PLANCTOND_TEST_CACHE", "/var/cache/planctond-tests"))
IMAGE_REPO = "planctond-test/systemd-host"
TEST_LABEL = "org.plancton.test"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")

BOOTSTRAP_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "ca-certificates")
# What a volunteer host already has (Docker) and what the .deb depends on, pre-installed so a
# test run does not download them; `apt install ./planctond_*.deb` still resolves them for real.
RUNTIME_PACKAGES = (
    "docker.io",
    "python3-docker",
    "python3-dbus-next",
    "python3-systemd",
    "python3-yaml",
    "python3-psutil",
    "procps",
    "less",
)
# The host's engine serves the container through the shared socket: never start another one.
MASKED_UNITS = ("docker.service", "docker.socket", "containerd.service")
# Units that cannot work in a container and would only make the system "degraded".
CONTAINER_MASKED_UNITS = (
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-modules-load.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "systemd-remount-fs.service",
    "getty@tty1.service",
    "console-getty.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)


def image_name() -> str:
    return f"{IMAGE_REPO}:{ROOT_VERSION}"


def debian_mirror(sources: Path = DEBIAN_SOURCES) -> str:
    """The main archive this machine already uses: the only mirror we know is reachable."""
    for stanza in sources.read_text().split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        suites = fields.get("suites", "").split()
        uris = fields.get("uris", "").split()
        if "bookworm" in suites and uris:
            return uris[0]
    raise RuntimeError(f"no bookworm mirror in {sources}")


def _run(cmd: Sequence[str], **kw: Any) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, **kw)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two test sessions on one machine must not debootstrap into the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _chroot_apt(root: Path, *args: str) -> None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C",
    }
    _run(["chroot", str(root), "apt-get", "-o", "Dpkg::Use-Pty=0", *args], env=env)


def _prepare_root(root: Path) -> None:
    """Turn a debootstrapped tree into a bootable container root with the runtime packages."""
    # No daemon may start while packages are installed into the chroot.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    shutil.copy(DEBIAN_SOURCES, root / "etc/apt/sources.list.d/debian.sources")
    with contextlib.suppress(FileNotFoundError):
        (root / "etc/apt/sources.list").unlink()
    _chroot_apt(root, "update")
    _chroot_apt(root, "install", "-y", "--no-install-recommends", *RUNTIME_PACKAGES)
    _chroot_apt(root, "clean")
    policy.unlink()
    system = root / "etc/systemd/system"
    for unit in (*MASKED_UNITS, *CONTAINER_MASKED_UNITS):
        link = system / unit
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to("/dev/null")
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("planctond-e2e\n")


def rootfs_tarball(cache_dir: Path = CACHE_DIR) -> Path:
    """The cached root tarball, built with debootstrap on first use."""
    tarball = cache_dir / f"systemd-host-{ROOT_VERSION}.tar"
    with _locked(cache_dir / "rootfs.lock"):
        if tarball.exists():
            return tarball
        debs = cache_dir / "debootstrap-debs"
        debs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix="rootfs-") as tmp:
            root = Path(tmp) / "root"
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--cache-dir={debs}",
                    "--include=" + ",".join(BOOTSTRAP_PACKAGES),
                    "bookworm",
                    str(root),
                    debian_mirror(),
                ]
            )
            _prepare_root(root)
            partial = tarball.with_suffix(".partial")
            _run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."])
            partial.rename(tarball)
    return tarball


def ensure_image(client: docker.DockerClient, cache_dir: Path = CACHE_DIR) -> str:
    """Import the cached root into the engine once per engine (the tarball outlives engines)."""
    name = image_name()
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    tarball = rootfs_tarball(cache_dir)
    repo, _, tag = name.partition(":")
    client.api.import_image(
        src=str(tarball),
        repository=repo,
        tag=tag,
        changes=['CMD ["/lib/systemd/systemd"]'],
    )
    client.images.get(name)
    return name


class SystemdHost:
    """One booted container: systemd PID 1, system bus, journal, and the test engine's socket."""

    def __init__(self, container: Any, client: docker.DockerClient) -> None:
        self.container = container
        self.client = client

    @property
    def id(self) -> str:
        return str(self.container.id)

    def exec(self, cmd: str | Sequence[str], user: str | None = None) -> tuple[int, str]:
        """Run a shell command line (str) or an argv (sequence); returns (exit code, output)."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        kwargs: dict[str, Any] = {"environment": {"LC_ALL": "C.UTF-8", "SYSTEMD_PAGER": ""}}
        if user is not None:
            kwargs["user"] = user
        rc, out = self.container.exec_run(argv, **kwargs)
        text = out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out)
        return int(rc), text

    def check(self, cmd: str | Sequence[str], user: str | None = None) -> str:
        """exec() that fails the caller with the command's output when it does not exit 0."""
        rc, out = self.exec(cmd, user=user)
        if rc != 0:
            raise AssertionError(f"{cmd!r} exited {rc}:\n{out}")
        return out

    def wait_until(
        self, cmd: str, timeout: float = 60.0, interval: float = 0.5, user: str | None = None
    ) -> str:
        """Poll a shell condition until it exits 0; the last output is in the error if it never does."""
        deadline = time.monotonic() + timeout
        rc, out = self.exec(cmd, user=user)
        while rc != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {cmd!r}:\n{out}")
            time.sleep(interval)
            rc, out = self.exec(cmd, user=user)
        return out

    def wait_booted(self, timeout: float = 120.0) -> str:
        """Wait for `running` or `degraded`; degraded prints the failed units for the log."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            _, out = self.exec(["systemctl", "is-system-running"])
            state = out.strip()
            if state in ("running", "degraded"):
                if state == "degraded":
                    _, failed = self.exec(["systemctl", "--failed", "--no-legend"])
                    print(f"systemd host degraded; failed units:\n{failed}", file=sys.stderr)
                return state
            time.sleep(0.5)
        raise AssertionError(f"systemd did not finish booting in {timeout}s (state {state!r})")

    def setup_docker_group(self) -> int:
        """The socket's group must be `docker` inside, or the service user cannot reach the engine."""
        gid = int(self.check(["stat", "-c", "%g", "/var/run/docker.sock"]).strip())
        if gid == 0:
            raise RuntimeError("the test engine's socket belongs to gid 0: start it with --group")
        rc, _ = self.exec(["getent", "group", "docker"])
        if rc == 0:
            self.check(["groupmod", "-o", "-g", str(gid), "docker"])
        else:
            self.check(["groupadd", "-o", "-g", str(gid), "docker"])
        return gid

    def journal(self, *args: str) -> str:
        return self.check(["journalctl", "--no-pager", *args])

    def remove(self) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)


def cgroup_tmpfs_read_only(mounts: str = "/proc/self/mounts") -> bool:
    """Whether the host's /sys/fs/cgroup tmpfs (cgroup v1/hybrid) is mounted read-only."""
    try:
        with open(mounts, encoding="utf-8") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) >= 4 and fields[1] == "/sys/fs/cgroup" and fields[2] == "tmpfs":
                    return "ro" in fields[3].split(",")
    except OSError:
        pass
    return False


def boot(
    client: docker.DockerClient,
    socket_path: str,
    *,
    name: str | None = None,
    binds: dict[str, str] | None = None,
    cache_dir: Path = CACHE_DIR,
) -> SystemdHost:
    """Boot a host as test-stack.md says (--privileged does not work here); `binds` maps
    host paths to read-only paths inside."""
    image = ensure_image(client, cache_dir)
    apt_archives = cache_dir / "apt-archives"
    (apt_archives / "partial").mkdir(parents=True, exist_ok=True)
    volumes: dict[str, dict[str, str]] = {
        socket_path: {"bind": "/var/run/docker.sock", "mode": "rw"},
        "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
        str(apt_archives): {"bind": "/var/cache/apt/archives", "mode": "rw"},
    }
    for src, dst in (binds or {}).items():
        volumes[src] = {"bind": dst, "mode": "ro"}
    host_config = client.api.create_host_config(
        binds=volumes,
        cap_add=["SYS_ADMIN"],
        security_opt=["seccomp=unconfined"],
        tmpfs={"/run": "", "/run/lock": ""},
        network_mode="host",
    )
    # docker-py 5.0.3 has no cgroupns argument; Engine API 1.41 has the field.
    host_config["CgroupnsMode"] = "host"
    created = client.api.create_container(
        image,
        command=["/lib/systemd/systemd"],
        name=name,
        environment={"container": "docker"},
        labels={TEST_LABEL: "systemd-host"},
        host_config=host_config,
        stop_signal="SIGRTMIN+3",
    )
    host = SystemdHost(client.containers.get(created["Id"]), client)
    was_read_only = cgroup_tmpfs_read_only()
    try:
        host.container.start()
        host.wait_booted()
        # systemd (v1/hybrid) remounts /sys/fs/cgroup read-only at boot; the bind shares the
        # host's tmpfs superblock, so that would turn the *host's* tmpfs read-only too and leave
        # stray directories for every later test. Give the host back what it had.
        if not was_read_only and cgroup_tmpfs_read_only():
            subprocess.run(["mount", "-o", "remount,rw", "/sys/fs/cgroup"], check=False)
        host.setup_docker_group()
    except BaseException:
        with contextlib.suppress(Exception):
            print(host.container.logs().decode("utf-8", "replace")[-4000:], file=sys.stderr)
        host.remove()
        raise
    return host


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Build (and optionally boot) the cached systemd host."
    )
    parser.add_argument("--docker-url", help="import the image into this engine too")
    parser.add_argument("--boot", action="store_true", help="boot it once and print its state")
    args = parser.parse_args(argv)
    print(rootfs_tarball())
    if args.docker_url:
        client = docker.DockerClient(base_url=args.docker_url)
        print(ensure_image(client))
        if args.boot:
            sock = args.docker_url.removeprefix("unix://")
            host = boot(client, sock)
            try:
                print(host.exec(["systemctl", "is-system-running"])[1])
            finally:
                host.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
