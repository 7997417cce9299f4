#!/bin/sh
# Build the planctond noarch RPM (and its SRPM) from this checkout's HEAD commit into dist/,
# with the version from planctond/__init__.py (RPM_VERSION overrides it).
#
#   packaging/build-rpm.sh            # or: make rpm
#
# On Debian, rpmbuild cannot see the build dependencies (they are dpkg packages), so it runs
# with --nodeps after checking for the tools itself; it installs them with apt-get as root.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

upstream=$(sh packaging/upstream-version.sh)
version=${RPM_VERSION:-$upstream}
dist=${DIST_DIR:-$top/dist}

nodeps=
if [ -f /etc/debian_version ]; then
    nodeps=--nodeps
    if ! command -v rpmbuild >/dev/null || ! python3 -c 'import installer, setuptools, pip' 2>/dev/null; then
        if [ "$(id -u)" = 0 ]; then
            apt-get install -y --no-install-recommends rpm python3-installer python3-setuptools \
                python3-pip python3-wheel >&2
        else
            echo "build-rpm: needs rpm, python3-installer, python3-setuptools, python3-pip, python3-wheel" >&2
            exit 1
        fi
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/SOURCES" "$work/src/planctond-$version"
# The committed tree (HEAD), as a clean checkout has it (see build-deb.sh).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git archive --format=tar HEAD | tar -C "$work/src/planctond-$version" -xf -
else
    tar --exclude=./dist --exclude=./.git -cf - . | tar -C "$work/src/planctond-$version" -xf -
fi
tar -C "$work/src" --owner=0 --group=0 -czf "$work/SOURCES/planctond-$version.tar.gz" "planctond-$version"
cp "$work/src/planctond-$version/systemd/planctond.sysusers" "$work/SOURCES/planctond.sysusers"

rpmbuild -ba $nodeps \
    --define "_topdir $work" \
    --define "planctond_version $version" \
    "$work/src/planctond-$version/packaging/rpm/planctond.spec" >&2

mkdir -p "$dist"
cp "$work"/RPMS/noarch/planctond-"$version"-*.noarch.rpm "$work"/SRPMS/planctond-"$version"-*.src.rpm "$dist/"
ls "$dist"/planctond-"$version"-*.noarch.rpm
