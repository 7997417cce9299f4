"""The guest tests' one boot: the .deb built from this checkout, the cached guest image (built
from Debian packages on first use) and the results every test of the module reads."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from _pytest.terminal import TerminalReporter  # pytest 7.2 (Debian 12) does not export it

from planctond import __version__
from tests.e2e.helpers import build_deb
from tests.guest import vm

TIMINGS: list[str] = []  # said at the end of the session, so CI's log keeps the guest's cost


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "guest: boots a cgroup v2 Debian 12 guest with QEMU (about 20 minutes)"
    )


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.write_sep("-", "guest (QEMU, emulated)")
        for line in TIMINGS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> vm.GuestRun:
    """Boot once (one guest at a time per machine) and keep what it found for every check."""
    if os.geteuid() != 0:
        pytest.skip("building and booting the guest needs root (debootstrap, mkfs)")
    for tool in ("qemu-system-x86_64", "qemu-img", "debootstrap", "dpkg-scanpackages"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run contrib/devstack/deps.sh", pytrace=False)
    prebuilt = os.environ.get("PLANCTOND_E2E_DEBS")  # the e2e tests' packages, if built already
    if prebuilt:
        deb = Path(prebuilt) / f"planctond_{__version__}_all.deb"
    else:
        dist = tmp_path_factory.mktemp("guest-dist")
        build_deb(dist, __version__)
        deb = dist / f"planctond_{__version__}_all.deb"
    t0 = time.monotonic()
    image = vm.ensure_image()
    built = time.monotonic() - t0
    TIMINGS.append(
        f"image {image.name}: ready in {built:.0f} s "
        f"(built in {(image / 'build-seconds').read_text().strip()} s when it was made)"
    )
    run = vm.boot(image, deb, vm.new_log_dir())
    TIMINGS.append(
        f"boot, checks and power-off: {run.seconds:.0f} s ({run.ended}); logs in {run.saved_in}"
    )
    TIMINGS.extend(
        f"  {r['seconds']:>6} s  {'ok' if r['ok'] else 'FAILED'}  {name}"
        for name, r in run.results.items()
    )
    return run
