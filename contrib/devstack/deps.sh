#!/bin/bash
# Install everything planctond needs to be run, tested and packaged on Debian 12, as root.
#
# Idempotent and cheap when there is nothing to do: apt is only touched when a package is
# missing (and its lists only refreshed when they are older than a day, or when an install
# fails on stale lists), and the dev venv is only rebuilt when its pinned tools changed.
# Runtime libraries come from Debian on purpose: the daemon ships against exactly those.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv="${PLANCTOND_VENV:-$repo/.venv}"

# Debian packages. Runtime, tests (docker, makeflow + openmpi, debootstrap, dbus), packaging.
packages=(
    # the basics a minimal install may lack
    ca-certificates git make xz-utils procps
    # the engine and the pilot images
    docker.io busybox-static
    # a real batch system for pilots: makeflow needs MPI's runtime or it aborts in MPI_Init
    coop-computing-tools openmpi-bin
    # systemd/D-Bus end-to-end tests
    debootstrap dbus dbus-daemon systemd
    # monitoring: the optional exporter library, and servers the tests start on loopback
    python3-prometheus-client influxdb prometheus victoria-metrics
    # runtime libraries (the .deb depends on exactly these) and the test tools from Debian
    python3 python3-venv python3-pip python3-docker python3-dbus-next python3-systemd
    python3-yaml python3-psutil python3-hypothesis python3-pytest
    # packaging
    debhelper dh-python pybuild-plugin-pyproject python3-setuptools python3-all
    rpm lintian devscripts fakeroot python3-installer python3-wheel
    # the cgroup v2 guest (tests/guest/): emulator, overlay disks, the guest's local apt repository
    qemu-system-x86 qemu-utils dpkg-dev
    # the owner-impact benchmark (bench/owner.py): owner workloads and its plots
    stress-ng rt-tests python3-matplotlib
)

# Dev tools pinned to versions known to work with Debian 12's Python 3.11 and pytest 7.2.
pip_pins=(
    ruff==0.17.6
    mypy==2.4.1
    import-linter==2.16
    pytest-timeout==2.4.0
    types-PyYAML==6.0.12.20261113
    types-psutil==7.2.2.20261111
    # Grafana's dashboard schema as Python types (its 11.6 line): tests/unit/test_grafana_dashboards.py
    'grafana-foundation-sdk==1769699379!11.6.0'
)

log() { printf 'deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (apt-get, dockerd); try: sudo $0"
    exit 1
fi

missing_packages() {
    local p status
    for p in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
        [ "${status:0:2}" = "ii" ] || printf '%s\n' "$p"
    done
}

lists_are_fresh() {
    # Fresh = some InRelease/Release file younger than a day.
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 \( -name '*InRelease' -o -name '*_Release' \) \
        -mmin -1440 -print -quit 2>/dev/null)" ]
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

t0=$SECONDS
mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${#missing[@]} Debian packages: ${missing[*]}"
    if ! lists_are_fresh; then
        log "apt lists older than a day: apt-get update"
        apt-get update -q
    fi
    if ! apt_install "${missing[@]}"; then
        log "install failed, refreshing apt lists and retrying once"
        apt-get update -q
        apt_install "${missing[@]}"
    fi
    # The tests start their own servers on free loopback ports; a booted dev box would
    # otherwise keep the packaged services running (8086, 9090, 8428) for nothing.
    if [ -d /run/systemd/system ]; then
        for server in influxdb prometheus victoria-metrics; do
            if printf '%s\n' "${missing[@]}" | grep -qx "$server"; then
                systemctl disable --now "$server.service" >/dev/null 2>&1 || true
            fi
        done
    fi
    log "Debian packages done in $((SECONDS - t0)) s"
else
    log "Debian packages: all ${#packages[@]} present"
fi

# The dev venv sees Debian's runtime libraries (--system-site-packages) so tests and lint run
# against the very versions the package depends on; only dev tools come from pip.
t1=$SECONDS
stamp="$venv/.planctond-pins"
want=$(printf '%s\n' "${pip_pins[@]}")
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c 'import docker, yaml, psutil, pytest, pytest_timeout' 2>/dev/null; then
    log "dev venv $venv: up to date"
else
    if [ ! -x "$venv/bin/python" ]; then
        log "creating dev venv $venv"
        /usr/bin/python3 -m venv --system-site-packages "$venv"
    fi
    log "installing pinned dev tools: ${pip_pins[*]}"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pip_pins[@]}"
    printf '%s\n' "$want" >"$stamp"
    log "dev venv done in $((SECONDS - t1)) s"
fi
