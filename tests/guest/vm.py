"""Boot the cached Debian 12 guest with QEMU, hand it the .deb and the checks, bring back what
they found.

Why a whole booted guest: most volunteer hosts run cgroup v2 with Docker's systemd driver, and
this machine runs cgroup v1, so only a real v2 kernel shows the idle slice, the freezer and
`cpu.stat` working. KVM does not work here: QEMU emulates (TCG), so one boot runs every check
and powers off (about 30 s to boot, minutes for the checks), and timings decide behaviour only.

The way in and out is two extra virtio disks holding raw tar archives: the cloud kernel has no
9p and the guest has no network. The image itself is built by contrib/guest/build-image.sh and
cached; each boot writes to a throw-away qcow2 overlay, so every run starts from the same disk.

Run as a script to build the image ahead of time, or to boot it once by hand:
`python3 -m tests.guest.vm [--deb dist/planctond_X_all.deb] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.guest.guest_main import CHECK_NAMES

TOP = Path(__file__).resolve().parents[2]
BUILDER = TOP / "contrib" / "guest" / "build-image.sh"
CACHE_DIR = Path(os.environ.get("PLANCTOND_TEST_CACHE", "/var/cache/planctond-tests"))
KERNEL_ARGS = (
    "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 apparmor=0 panic=-1 "
    "systemd.show_status=false"
)
CHECKS_LIMIT = 1200  # seconds the checks may take in the guest (its entry point enforces it)
BOOT_LIMIT = CHECKS_LIMIT + 300  # then QEMU is killed: boot, power-off and slack on top
OUTPUT_DISK_BYTES = 256 << 20
# The checks and what they need, as the guest finds them under its input directory.
GUEST_FILES = {
    "tests/guest/__init__.py": TOP / "tests" / "guest" / "__init__.py",
    "tests/guest/guest_lib.py": TOP / "tests" / "guest" / "guest_lib.py",
    "tests/guest/guest_checks.py": TOP / "tests" / "guest" / "guest_checks.py",
    "tests/guest/guest_ladder.py": TOP / "tests" / "guest" / "guest_ladder.py",
    "tests/guest/guest_pressure.py": TOP / "tests" / "guest" / "guest_pressure.py",
    "tests/guest/guest_main.py": TOP / "tests" / "guest" / "guest_main.py",
    "images.sh": TOP / "contrib" / "devstack" / "images.sh",
}
RUN_SCRIPT = '#!/bin/sh\ncd "$(dirname "$0")" && exec python3 -m tests.guest.guest_main "$@"\n'


def ensure_image() -> Path:
    """The cached image's directory, built from Debian packages first if it is missing."""
    proc = subprocess.run(
        ["bash", str(BUILDER)], stdout=subprocess.PIPE, text=True, check=False, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILDER} failed ({proc.returncode}); its log is above")
    return Path(proc.stdout.strip().splitlines()[-1])


@dataclass
class GuestRun:
    """What one boot left: a result per check (by name), the logs, and how long it took."""

    seconds: float
    ended: str  # how QEMU ended: "powered off", or why not
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # console, journal, run.log, diagnostics
    saved_in: Path | None = None

    def explain(self, name: str) -> str:
        """Everything a failed check needs said: its detail, where the full logs are, the tail of
        the serial console and the daemon's and Docker's part of the guest's journal."""
        result = self.results.get(name)
        if result is None:
            head = f"the guest gave no result for {name} ({self.ended} after {self.seconds:.0f} s)"
        else:
            head = f"{name} failed in the guest after {result['seconds']} s:\n{result['detail']}"
        journal = [
            line
            for line in self.logs.get("journal.txt", "").splitlines()
            if "planctond" in line or "docker" in line or "kernel:" in line
        ]
        return "\n".join(
            [
                head,
                f"----- full logs in {self.saved_in}",
                "----- serial console (last 60 lines)",
                *self.logs.get("console.log", "(none)").splitlines()[-60:],
                "----- guest journal: planctond, docker, kernel (last 150 lines)",
                *(journal[-150:] or ["(none)"]),
                "----- diagnostics",
                self.logs.get("diagnostics.txt", "(none)")[-4000:],
            ]
        )


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def make_input_disk(path: Path, image: Path, deb: Path) -> None:
    """The input disk: the checks, the .deb, the local package repository and the time limit."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "run", RUN_SCRIPT.encode(), 0o755)
        _add(tar, "tests/__init__.py", b"")
        for name, src in GUEST_FILES.items():
            tar.add(src, arcname=name)
        tar.add(deb, arcname=deb.name)
        tar.add(image / "repo", arcname="repo")
        _add(tar, "time-limit", f"{CHECKS_LIMIT}\n".encode())


def read_output_disk(path: Path) -> dict[str, str]:
    """The files the guest wrote (a tar at the start of the disk); none if it never got there."""
    out: dict[str, str] = {}
    with contextlib.suppress(tarfile.ReadError), tarfile.open(path, "r:") as tar:
        for member in tar.getmembers():
            f = tar.extractfile(member) if member.isfile() else None
            if f is not None:
                out[os.path.basename(member.name)] = f.read().decode("utf-8", "replace")
    return out


def new_log_dir(keep: int = 3) -> Path:
    """Where one boot's logs stay: beside the image, not in pytest's temporary directories,
    which every pytest run on the machine rotates. The newest `keep` boots' logs are kept."""
    base = CACHE_DIR / "guest-logs"
    base.mkdir(parents=True, exist_ok=True)
    for old in sorted(base.iterdir())[: -(keep - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base))


@contextlib.contextmanager
def one_guest_at_a_time() -> Iterator[None]:
    """An emulated guest keeps both cores busy: two sessions on one machine take turns."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "guest-boot.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def qemu_command(image: Path, work: Path) -> list[str]:
    """2 vCPUs and 4 GiB as the measured guest had; the root disk first so it is /dev/vda. Every
    disk is throw-away, so the host never needs to flush them (cache=unsafe): dpkg's many
    fsyncs would otherwise wait on the host's disk."""

    def disk(file: Path, name: str, fmt: str, extra: str = "") -> list[str]:
        return [
            "-drive",
            f"file={file},if=none,id={name},format={fmt},cache=unsafe{extra}",
            "-device",
            f"virtio-blk-pci,drive={name}"
            + ("" if name == "root" else f",serial=planctond-{name}"),
        ]

    return [
        "qemu-system-x86_64",
        *("-accel", "tcg,thread=multi", "-cpu", "max", "-m", "4G", "-smp", "2"),
        *("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none"),
        *("-serial", f"file:{work / 'console.log'}"),
        *("-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img")),
        *("-append", KERNEL_ARGS),
        *disk(work / "overlay.qcow2", "root", "qcow2"),
        *disk(work / "in.tar", "in", "raw", ",readonly=on"),
        *disk(work / "out.img", "out", "raw"),
    ]


def boot(image: Path, deb: Path, work: Path) -> GuestRun:
    """One boot: every check, power-off, and what the guest left on its output disk. `work`
    keeps the console log and the guest's files afterwards."""
    work.mkdir(parents=True, exist_ok=True)
    overlay = work / "overlay.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image / "disk.raw"),
         str(overlay)],
        check=True,
    )  # fmt: skip
    make_input_disk(work / "in.tar", image, deb)
    with (work / "out.img").open("wb") as f:
        f.truncate(OUTPUT_DISK_BYTES)
    with one_guest_at_a_time():
        t0 = time.monotonic()
        proc = subprocess.Popen(
            qemu_command(image, work),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            qemu_said, _ = proc.communicate(timeout=BOOT_LIMIT)
            ended = "powered off" if proc.returncode == 0 else f"QEMU exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            proc.kill()
            qemu_said, _ = proc.communicate()
            ended = f"killed after {BOOT_LIMIT} s"
        seconds = time.monotonic() - t0
    overlay.unlink()  # up to a few GiB; the logs are what is worth keeping
    (work / "in.tar").unlink()
    files = read_output_disk(work / "out.img")
    (work / "out.img").unlink()
    for name, text in files.items():
        (work / name).write_text(text)
    console = (
        (work / "console.log").read_text(errors="replace")
        if (work / "console.log").exists()
        else ""
    )
    logs = {**files, "console.log": console + (f"\n[qemu] {qemu_said}" if qemu_said else "")}
    results = {
        r["name"]: r
        for r in (json.loads(line) for line in files.get("results.jsonl", "").splitlines() if line)
    }
    return GuestRun(seconds, ended, results, logs, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the guest image; boot it once if asked.")
    parser.add_argument("--deb", type=Path, help="boot with this .deb and run the checks")
    parser.add_argument("--keep", type=Path, help="where to leave the logs (default: the cache's)")
    args = parser.parse_args(argv)
    image = ensure_image()
    print(image)
    if args.deb:
        work = args.keep or new_log_dir()
        run = boot(image, args.deb.resolve(), work)
        for name in CHECK_NAMES:
            result = run.results.get(name, {"ok": False, "seconds": "-", "detail": "no result"})
            print(f"{'ok ' if result['ok'] else 'FAIL'} {name} ({result['seconds']} s)")
        print(f"{run.ended} after {run.seconds:.0f} s; logs in {work}")
        return 0 if all(run.results.get(n, {}).get("ok") for n in CHECK_NAMES) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
