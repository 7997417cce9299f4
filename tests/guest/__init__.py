"""Tests in a booted Debian 12 guest (QEMU): cgroup v2 with Docker's systemd and cgroupfs drivers.

`guest_checks.py`, `guest_ladder.py` and `guest_lib.py` run inside the guest (standard library
only), in the order of `guest_main.py`; `vm.py` builds the inputs, boots the guest and reads its
results; `test_guest_v2.py` turns them into tests.
"""
