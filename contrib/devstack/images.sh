#!/bin/bash
# Build planctond's pilot images locally, from Debian packages: no registry needed.
#
#   images.sh busybox [TAG]     default busybox:latest (what the default config runs)
#   images.sh wq-worker [TAG]   default planctond/wq-worker:latest (cctools WorkQueue worker)
#
# Talks to the engine DOCKER_HOST names (or the default socket). Does nothing when TAG exists,
# so it is cheap to call before every run. This script is the only implementation: the test
# suite calls it too (tests/support/images.py).
set -euo pipefail

log() { printf 'images: %s\n' "$*" >&2; }

# Marks images this script made, so `docker images --filter label=...` finds them.
label_key=org.plancton.devstack.image

tmp_trees=()
cleanup() { [ "${#tmp_trees[@]}" -eq 0 ] || rm -rf "${tmp_trees[@]}"; }
trap cleanup EXIT

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# An empty root holding Debian's static busybox, a link per applet, /tmp and the two users
# pilots may want (root, nobody).
busybox_tree() {
    local tree="$1" applet
    [ -x /bin/busybox ] || { log "/bin/busybox missing: apt-get install busybox-static"; exit 1; }
    if ! file_is_static /bin/busybox; then
        log "/bin/busybox is not static: apt-get install busybox-static"
        exit 1
    fi
    mkdir -p "$tree/bin" "$tree/tmp" "$tree/etc" "$tree/root" "$tree/proc" "$tree/sys" "$tree/dev"
    chmod 1777 "$tree/tmp"
    cp /bin/busybox "$tree/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$tree/bin/$applet"
    done
    # Some programs insist on /usr/bin/env or /usr/bin/<tool>; /usr/bin -> /bin keeps them happy.
    mkdir -p "$tree/usr"
    ln -s ../bin "$tree/usr/bin"
    ln -s bin "$tree/sbin"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
        >"$tree/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$tree/etc/group"
}

file_is_static() {
    # ldd says "not a dynamic executable" (exit 1) for static binaries.
    ! ldd "$1" >/dev/null 2>&1
}

import_tree() {
    local tree="$1" tag="$2" kind="$3"
    tar -C "$tree" --numeric-owner -c . |
        docker import -c 'CMD ["sh"]' -c "LABEL $label_key=$kind" - "$tag" >/dev/null
    log "built $tag"
}

build_busybox() {
    local tag="${1:-busybox:latest}" tree
    if exists "$tag"; then
        log "$tag present"
        return 0
    fi
    tree=$(mktemp -d /tmp/planctond-image.XXXXXX)
    tmp_trees+=("$tree")
    busybox_tree "$tree"
    import_tree "$tree" "$tag" busybox
}

# The busybox tree plus work_queue_worker and every shared library it loads, at the paths
# the loader looks for them. Its tasks run under busybox's sh.
build_wq_worker() {
    local tag="${1:-planctond/wq-worker:latest}" tree bin lib
    if exists "$tag"; then
        log "$tag present"
        return 0
    fi
    bin=$(command -v work_queue_worker || true)
    [ -n "$bin" ] || { log "work_queue_worker missing: apt-get install coop-computing-tools"; exit 1; }
    tree=$(mktemp -d /tmp/planctond-image.XXXXXX)
    tmp_trees+=("$tree")
    busybox_tree "$tree"
    cp "$bin" "$tree/bin/work_queue_worker"
    # ldd lines: "libx.so => /path/libx.so (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        mkdir -p "$tree$(dirname "$lib")"
        cp -L "$lib" "$tree$lib"
    done
    [ -e "$tree/lib64/ld-linux-x86-64.so.2" ] || [ "$(uname -m)" != x86_64 ] ||
        { log "ldd did not list the dynamic loader"; exit 1; }
    import_tree "$tree" "$tag" wq-worker
}

case "${1:-}" in
    busybox) build_busybox "${2:-}" ;;
    wq-worker) build_wq_worker "${2:-}" ;;
    *) echo "usage: $0 busybox|wq-worker [TAG]" >&2; exit 2 ;;
esac
