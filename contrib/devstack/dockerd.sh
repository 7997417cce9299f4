#!/bin/bash
# Make sure a Docker engine answers, on hosts with or without systemd as PID 1.
#
#   dockerd.sh start|stop|status [--socket PATH] [--root DIR]
#
# With systemd running (a user's Debian machine) the packaged docker.service is the right
# engine: `systemctl start docker`. Without it (containers, CI sandboxes) a dockerd is started
# here, detached with setsid, logging to a file. A working engine already answering on the
# socket is reused, never replaced. A private socket (--socket) gets its own exec-root, data-root
# and pidfile under --root so it never collides with the host's engine.
#
# The engine runs with --bridge=none --iptables=false --ip-masq=false: pilots get loopback
# (or the host's network with network_mode: host) and the host's firewall is left alone.
set -euo pipefail

default_socket=/run/docker.sock
socket=$default_socket
root=""
action="${1:-}"
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
    case "$1" in
        --socket) socket="$2"; shift 2 ;;
        --root) root="$2"; shift 2 ;;
        *) echo "usage: $0 start|stop|status [--socket PATH] [--root DIR]" >&2; exit 2 ;;
    esac
done

log() { printf 'dockerd: %s\n' "$*" >&2; }

private=0
if [ "$socket" != "$default_socket" ] && [ "$socket" != /var/run/docker.sock ]; then
    private=1
    root="${root:-$(dirname "$socket")/dockerd}"
fi
if [ "$private" -eq 1 ]; then
    state="$root"
else
    state="${root:-/run/planctond-devstack}"
fi
pidfile="$state/dockerd.pid"
logfile="$state/dockerd.log"
url="unix://$socket"

answers() { docker -H "$url" info >/dev/null 2>&1; }

has_systemd() { [ -d /run/systemd/system ]; }

wait_answers() {
    local i
    for i in $(seq 1 "${1:-60}"); do
        answers && return 0
        if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            log "dockerd exited during start-up; last lines of $logfile:"
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        sleep 1
    done
    log "no answer on $url after ${1:-60} s; last lines of $logfile:"
    tail -n 20 "$logfile" >&2 || true
    return 1
}

start() {
    if answers; then
        log "an engine already answers on $url: reusing it"
        return 0
    fi
    if [ "$private" -eq 0 ] && has_systemd; then
        log "systemd is PID 1: systemctl start docker"
        systemctl start docker
        wait_answers 60
        return
    fi
    command -v dockerd >/dev/null || { log "dockerd not installed (contrib/devstack/deps.sh)"; exit 1; }
    mkdir -p "$state"
    local args=(--bridge=none --iptables=false --ip-masq=false -H "$url" --pidfile "$pidfile")
    if [ "$private" -eq 1 ]; then
        mkdir -p "$root/data" "$root/exec"
        # An empty config file: the host's /etc/docker/daemon.json must not leak in (its
        # "hosts" would even conflict with -H).
        [ -f "$root/daemon.json" ] || echo '{}' >"$root/daemon.json"
        args+=(--data-root "$root/data" --exec-root "$root/exec" --config-file "$root/daemon.json")
    fi
    # A stale pidfile from a dead dockerd makes it refuse to start.
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        rm -f "$pidfile"
    fi
    log "starting dockerd on $url (log: $logfile)"
    setsid dockerd "${args[@]}" </dev/null >>"$logfile" 2>&1 &
    wait_answers 60
    log "engine up on $url"
}

stop() {
    if [ "$private" -eq 0 ] && has_systemd && [ ! -f "$pidfile" ]; then
        log "engine is systemd's docker.service: leaving it to systemctl"
        return 0
    fi
    if [ ! -f "$pidfile" ]; then
        log "no $pidfile: this script did not start the engine on $url, not stopping it"
        return 0
    fi
    local pid i
    pid=$(cat "$pidfile")
    if ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$pidfile"
        log "not running"
        return 0
    fi
    kill -TERM "$pid"
    for i in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd $pid ignored SIGTERM for 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    [ "$private" -eq 0 ] || unmount_under "$root"
    log "stopped"
}

# dockerd leaves its default network namespace bind-mounted under exec-root; a private root
# must be removable after stop.
unmount_under() {
    local dir mnt
    dir=$(realpath "$1")
    awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
    done
}

status() {
    if answers; then
        echo "running: $url ($(docker -H "$url" version -f '{{.Server.Version}}' 2>/dev/null))"
        return 0
    fi
    echo "not answering: $url"
    return 3
}

case "$action" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status [--socket PATH] [--root DIR]" >&2; exit 2 ;;
esac
