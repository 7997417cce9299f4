"""Issue 13: planctond where volunteer hosts live, on a booted kernel. A Debian 12 guest
(QEMU) with cgroup v2, first with Docker's systemd driver, then with its cgroupfs driver: the
.deb installed as a host owner would, then the daemon's behaviour on the kernel's own files.

The checks themselves run inside the guest (`guest_checks.py`, in the order of `guest_main.py`);
each becomes one test here, named PHASE/CHECK. A failure says what the guest saw and shows the
serial console and the daemon's part of the guest's journal.
"""

from __future__ import annotations

import pytest

from tests.guest.guest_main import CHECK_NAMES
from tests.guest.vm import GuestRun

# The first test waits for the image (minutes when it must be built) and the whole boot.
pytestmark = [pytest.mark.guest, pytest.mark.slow, pytest.mark.timeout(3600)]


@pytest.mark.parametrize("name", CHECK_NAMES)
def test_in_guest(guest_run: GuestRun, name: str) -> None:
    result = guest_run.results.get(name)
    if result is None or not result["ok"]:
        pytest.fail(guest_run.explain(name), pytrace=False)


def test_the_guest_reported_only_known_checks(guest_run: GuestRun) -> None:
    """A result under a name no test has would pass unseen."""
    assert set(guest_run.results) <= set(CHECK_NAMES)
