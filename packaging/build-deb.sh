#!/bin/sh
# Build the planctond .deb (plus the native source package) from this checkout's HEAD commit
# into dist/. The version comes from planctond/__init__.py; set DEB_VERSION to build the
# same tree under another package version (the end-to-end upgrade test does).
#
#   packaging/build-deb.sh            # or: make deb
#
# Installs the build dependencies with apt-get when run as root on a machine without them.
set -eu

# Debian's own tools and python3, whatever else (pyenv, venvs) is on PATH.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

upstream=$(sh packaging/upstream-version.sh)
version=${DEB_VERSION:-$upstream}
dist=${DIST_DIR:-$top/dist}

if ! dpkg-checkbuilddeps packaging/deb/debian/control >/dev/null 2>&1 || ! command -v lintian >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y --no-install-recommends debhelper dh-python pybuild-plugin-pyproject \
            python3-all python3-setuptools lintian >&2
    else
        dpkg-checkbuilddeps packaging/deb/debian/control
    fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/planctond-$version"
mkdir "$src"
# The committed tree (HEAD), as a clean checkout has it: never scratch files, caches, earlier
# dist/ output or half-done edits in the working tree.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git archive --format=tar HEAD | tar -C "$src" -xf -
    commit=$(git rev-parse --short HEAD)
    epoch=$(git log -1 --format=%ct)
else
    tar --exclude=./dist --exclude=./.git -cf - . | tar -C "$src" -xf -
    commit=unknown
    epoch=$(date +%s)
fi
# Everything the package installs besides the Python code: fail early and say what is missing.
for f in systemd/planctond.service systemd/planctond.slice systemd/planctond.sysusers \
         systemd/planctond.tmpfiles systemd/planctond.catalog dbus/org.plancton.conf \
         dbus/org.plancton.Manager1.xml packaging/config.yaml docs/planctonctl.1 \
         contrib/completion/planctonctl.bash README.md; do
    [ -f "$src/$f" ] || { echo "build-deb: $f is not in the built tree (committed?)" >&2; exit 1; }
done
rm -rf "$src/debian"
cp -a "$src/packaging/deb/debian" "$src/debian"

# debian/changelog is generated: the version lives in one place.
maintainer=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
cat > "$src/debian/changelog" <<CHANGELOG
planctond ($version) unstable; urgency=medium

  * Upstream release $upstream, built from commit $commit.

 -- $maintainer  $(date -u -R -d "@$epoch")
CHANGELOG

export SOURCE_DATE_EPOCH="$epoch"
(cd "$src" && dpkg-buildpackage -us -uc --build=full >&2)

mkdir -p "$dist"
for f in "$work"/planctond_"$version"*; do
    cp "$f" "$dist/"
done
changes="$dist/planctond_${version}_amd64.changes"
[ -f "$changes" ] || changes=$(ls "$dist"/planctond_"$version"_*.changes | head -n1)
lintian --pedantic --display-info --tag-display-limit 0 "$changes" \
    > "$dist/lintian-planctond_$version.txt" 2>&1 || true
echo "build-deb: lintian says:" >&2
cat "$dist/lintian-planctond_$version.txt" >&2
ls "$dist"/planctond_"$version"_all.deb
