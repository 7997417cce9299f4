#!/bin/bash
# Build the Debian 12 guest that tests/guest/ boots with QEMU: cgroup v2, systemd as PID 1,
# Docker on the systemd driver. Made from Debian packages only, on the mirror this machine uses.
#
#   contrib/guest/build-image.sh        prints the image's directory (built first if missing)
#
# Why a booted guest: volunteer hosts run cgroup v2 with Docker's systemd driver, and this
# machine (and CI) run cgroup v1. Only a real kernel proves the idle slice, the v2 freezer and
# cpu.stat. KVM does not work here, so QEMU emulates (TCG): about 30 s to multi-user.
#
# The result is cached in $PLANCTOND_TEST_CACHE (default /var/cache/planctond-tests), like the
# systemd test root, under guest-<version>-<hash>: the hash covers this script, the files it bakes
# into the image and the package's Depends, so any change to them rebuilds it; older builds are
# deleted once a new one is ready. It holds:
#   disk.raw            the root file system (ext4, sparse), booted through a throw-away overlay
#   vmlinuz, initrd.img Debian's cloud kernel and its initramfs, booted directly by QEMU
#   repo/               a local apt repository with what the .deb needs and the image lacks:
#                       the guest has no network, so `apt install ./planctond_*.deb` resolves
#                       its dependencies from there, as from a mirror
#   build-seconds       how long the build took
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C

# Bump for changes the hash cannot see (e.g. to rebuild against newer Debian point releases).
GUEST_VERSION=bookworm-1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_top=$(cd "$here/../.." && pwd)
cache=${PLANCTOND_TEST_CACHE:-/var/cache/planctond-tests}
control=$repo_top/packaging/deb/debian/control
sources=/etc/apt/sources.list.d/debian.sources

# What a volunteer host has before it installs planctond: systemd, D-Bus, Docker and the CA
# certificates every Debian install has (also the slowest package to set up under emulation,
# about 3 minutes). udev, kmod and the kernel boot it; busybox-static builds the pilot image in
# the guest (no registry); python3 runs the checks. Nothing else planctond depends on is there.
packages=(
    systemd systemd-sysv dbus udev kmod iproute2 procps python3 docker.io busybox-static
    ca-certificates linux-image-cloud-amd64 initramfs-tools
)

log() { printf 'guest-image: %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root (debootstrap, chroot)"; exit 1; }
for tool in debootstrap mkfs.ext4 dpkg-scanpackages; do
    command -v "$tool" >/dev/null || { log "$tool missing: run contrib/devstack/deps.sh"; exit 1; }
done

key=$(cat "${BASH_SOURCE[0]}" "$here/guest-entry.sh" "$here/planctond-guest.service" "$control" |
    sha256sum | cut -c1-12)
name="guest-$GUEST_VERSION-$key"
out="$cache/$name"
if [ -f "$out/build-seconds" ]; then
    echo "$out"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/guest-image.lock"
flock 9  # another test session may be building the same image: wait for it, then reuse it
if [ -f "$out/build-seconds" ]; then
    echo "$out"
    exit 0
fi

# The bookworm archive of this machine's deb822 sources: the only mirror known to be reachable.
mirror=$(awk '
    BEGIN { RS = ""; FS = "\n" }
    /(^|\n)Suites:[^\n]*bookworm([ \n]|$)/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, f, " "); print f[2]; exit }
    }' "$sources")
[ -n "$mirror" ] || { log "no bookworm mirror in $sources"; exit 1; }

start=$SECONDS
work=$(mktemp -d "$cache/guest-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
debs=$cache/guest-debootstrap-debs
mkdir -p "$debs"

log "debootstrap from $mirror (a few minutes)"
include=$(IFS=,; echo "${packages[*]}")
debootstrap --variant=minbase --cache-dir="$debs" --include="$include" bookworm "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }

chroot_apt() {
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q -o Dpkg::Use-Pty=0 "$@"
}

# The .deb's own dependencies (debian/control's Depends, first of each alternative, no
# substitution variables), downloaded but not installed: the local repository the guest installs
# from. apt skips those the image already has (systemd, dbus, docker.io).
mapfile -t depends < <(awk '
    /^Depends:/ { on = 1; sub(/^Depends:/, "") }
    on && /^[A-Za-z-]+:/ && !/^Depends:/ { on = 0 }
    on { print }' "$control" | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
    grep -v -e '^$' -e '^[$]{')
log "downloading the package's dependencies for the guest's local repository: ${depends[*]}"
chroot_apt clean  # debootstrap leaves its own downloads there: the repository gets only the new
cp "$sources" "$root/etc/apt/sources.list.d/debian.sources"
rm -f "$root/etc/apt/sources.list"
chroot_apt update >&2
chroot_apt install -y --no-install-recommends --download-only "${depends[@]}" >&2
mkdir -p "$work/repo"
mv "$root"/var/cache/apt/archives/*.deb "$work/repo/"
(cd "$work/repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
chroot_apt clean
rm -rf "$root"/var/lib/apt/lists/*

# Boot straight to the test: the entry point runs once multi-user is up and powers the guest off
# (it does nothing on a boot without the test's input disk, to allow a look around by hand).
install -m 0755 "$here/guest-entry.sh" "$root/usr/local/sbin/planctond-guest-entry"
install -m 0644 "$here/planctond-guest.service" "$root/etc/systemd/system/planctond-guest.service"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/planctond-guest.service \
    "$root/etc/systemd/system/multi-user.target.wants/planctond-guest.service"
# Timers and jobs that only cost emulated CPU during a test boot, and would blur its figures.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer systemd-tmpfiles-clean.timer man-db.timer dpkg-db-backup.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
echo planctond-guest >"$root/etc/hostname"
: >"$root/etc/machine-id"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$root/etc/fstab"
# Let the root log in on the serial console without a password, for a look around by hand.
sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow"

cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
log "making the ext4 disk"
mkfs.ext4 -q -F -L planctond-guest -d "$root" "$work/disk.raw" 6G
rm -rf "$root"

echo "$((SECONDS - start))" >"$work/build-seconds"
mv "$work" "$out"
trap - EXIT
# Earlier builds are of no use once a newer one is ready: each holds a couple of GiB.
for old in "$cache"/guest-*-*/; do
    old=${old%/}
    [ "$old" = "$out" ] || [ "$old" = "$debs" ] || [ ! -f "$old/build-seconds" ] || rm -rf "$old"
done
log "built $out in $((SECONDS - start)) s"
echo "$out"
