#!/bin/sh
# Baked into the test guest as /usr/local/sbin/planctond-guest-entry and run once per boot by
# planctond-guest.service: unpack the input disk, run the checks it carries, write what they
# left (and the guest's journal) to the output disk, power off.
#
# It knows nothing about the checks themselves, so changing them never rebuilds the image: the
# input disk's `run` does the work. The disks are raw tar images that QEMU attaches as virtio
# drives; the cloud kernel has no 9p and the guest no network, so that is the way in and out.
set -u
in=/dev/disk/by-id/virtio-planctond-in
out=/dev/disk/by-id/virtio-planctond-out
work=/var/tmp/planctond-guest  # not /run: the initramfs leaves it noexec

if [ ! -e "$in" ]; then
    echo "planctond-guest: no input disk, not a test boot: staying up"
    exit 0
fi
rm -rf "$work"
mkdir -p "$work/in" "$work/out"
tar -C "$work/in" -xf "$in"
limit=$(cat "$work/in/time-limit" 2>/dev/null || echo 1500)
echo "planctond-guest: running the checks (at most $limit s)"
# The checks' own output goes to the console (the host's serial log) and to a file.
timeout -k 10 "$limit" "$work/in/run" "$work/in" "$work/out" 2>&1 | tee "$work/out/run.log"
echo "planctond-guest: checks ended; saving the journal"
journalctl -b --no-pager -o short-monotonic >"$work/out/journal.txt" 2>&1
tar -C "$work/out" -cf "$out" .
sync
systemctl poweroff --no-block
