"""Every public name and default in one place, so the daemon, the D-Bus skin, planctonctl and the
packages cannot drift apart (tuned keeps its names the same way)."""

from __future__ import annotations

from typing import Final

# --- files and directories -------------------------------------------------------------------
DEFAULT_CONFIG_PATH: Final = "/etc/plancton/config.yaml"
DEFAULT_STATE_DIR: Final = "/var/lib/planctond"
STATE_FILE_NAME: Final = "state.json"
INSTANCE_FILE_NAME: Final = "instance-id"
# Pieces of config next to the main file (`/etc/plancton/config.d/*.yaml`), merged in name order
# over the remote config and under the main file: packages and admins add a piece each.
DROPIN_DIR_NAME: Final = "config.d"
DROPIN_SUFFIX: Final = ".yaml"
MAX_DROPINS: Final = 100
# The last remote config in force, with its ETag, so a restart with the server down runs it.
REMOTE_CACHE_NAME: Final = "remote-config.json"

# --- Docker labels: pilots are found by label, never by name ----------------------------------
LABEL_MANAGED: Final = "org.plancton.managed"
LABEL_POOL: Final = "org.plancton.pool"
LABEL_INSTANCE: Final = "org.plancton.instance"
LABEL_SPEC: Final = "org.plancton.spec"
LABEL_CPUS: Final = "org.plancton.cpus"
PILOT_NAME_PREFIX: Final = "plancton-"

# --- cgroups -----------------------------------------------------------------------------------
# The idle parent of every pilot. cgroupfs driver: a path under each controller's root;
# systemd driver: a slice unit (Docker requires the ".slice" name there).
CGROUP_PARENT_CGROUPFS: Final = "/planctond"
CGROUP_PARENT_SYSTEMD: Final = "planctond.slice"

# --- talking to Docker -------------------------------------------------------------------------
DOCKER_TIMEOUT: Final = 20.0  # seconds for one API request before Docker counts as unreachable
DOCKER_RETRY_MIN: Final = 1.0  # first wait before reconnecting to a Docker that went away
DOCKER_RETRY_MAX: Final = 30.0  # the wait doubles up to this
# The supervisor's loop comes round at least this often, so watchdog pings reflect a live loop.
HEARTBEAT: Final = 1.0
# A full tick waits on Docker (one list call, queued behind stops and starts in flight) with the
# watchdog still fed; past this it stops being fed: the daemon is wedged, not waiting.
TICK_STALL_LIMIT: Final = 4 * DOCKER_TIMEOUT

# --- D-Bus -------------------------------------------------------------------------------------
BUS_NAME: Final = "org.plancton"
OBJECT_PATH: Final = "/org/plancton"
INTERFACE: Final = "org.plancton.Manager1"
ERROR_PREFIX: Final = "org.plancton.Error"
ADMIN_GROUP: Final = "plancton-admin"

# --- systemd -----------------------------------------------------------------------------------
UNIT_NAME: Final = "planctond.service"
SERVICE_USER: Final = "plancton"

# --- defaults of the public config schema (seconds, bytes, CPUs) -------------------------------
DEFAULT_TICK: Final = 10.0
DEFAULT_CONFIG_CHECK: Final = 60.0
# No CPU kept back by default: pilots are idle to the scheduler, which hands the owner a CPU the
# instant it wants one (the benchmark of issue 12: bench/RESULTS.md). An admin who wants cores
# never lent (heat, noise, a guaranteed share for services) sets it.
DEFAULT_OWNER_RESERVE: Final = 0.0
DEFAULT_OWNER_MARGIN: Final = 0.25
DEFAULT_GRACE_KILL: Final = 120.0
DEFAULT_GRACE_SPAWN: Final = 60.0
DEFAULT_FREEZE: Final = 30.0
DEFAULT_RESERVE_MEMORY: Final = 512 * 1024 * 1024
# owner.give_way: what makes pilots give way. "usage": the owner's CPU use leaves too little for
# the pilots' entitled CPUs (Plancton's rule); "pressure", the default: the owner's stalls (PSI)
# over the lines below, because under the idle parent cgroup the owner's CPU use costs the owner
# nothing. Chosen by the benchmark of issue 12 (bench/RESULTS.md, "The shipped default").
GIVE_WAY_USAGE: Final = "usage"
GIVE_WAY_PRESSURE: Final = "pressure"
DEFAULT_GIVE_WAY: Final = GIVE_WAY_PRESSURE
# The pressure lines, percent of the last 10 s (PSI avg10) in which the owner stalled: CPU from
# the owner's "full" line (every owner task waiting: the CPU went to someone else), memory and
# io from "some" (one stalled owner task is already a cost). Starting points for the benchmark.
DEFAULT_OWNER_CPU_PRESSURE: Final = 10.0
DEFAULT_OWNER_MEMORY_PRESSURE: Final = 10.0
DEFAULT_OWNER_IO_PRESSURE: Final = 25.0
# owner.active_within: the owner counts as at the keyboard while logind's owner_idle is below
# this (seconds); 0 = never.
DEFAULT_ACTIVE_WITHIN: Final = 0.0
DEFAULT_POOL_NAME: Final = "default"
DEFAULT_IMAGE: Final = "busybox:latest"
DEFAULT_COMMAND: Final = ("sleep", "60")
DEFAULT_CPUS: Final = 1.0
DEFAULT_MEMORY: Final = 2 * 1000 * 1000 * 1000
# A pilot per CPU: the idle cgroup, not a core left empty (Plancton's `ncpus - 2`), keeps them out
# of the owner's way; under `give_way: usage` the owner's use still caps them.
DEFAULT_MAX_PILOTS: Final = "ncpus"
DEFAULT_RUN_WHEN: Final = "true"
DEFAULT_PER_TICK: Final = 4
DEFAULT_TTL: Final = 12 * 3600.0
DEFAULT_STOP_GRACE: Final = 30.0
DEFAULT_PULL_REFRESH: Final = 12 * 3600.0
DEFAULT_PIDS_LIMIT: Final = 4096
DEFAULT_OOM_SCORE_ADJ: Final = 1000
DEFAULT_FAIL_WINDOW: Final = 60.0
DEFAULT_BACKOFF_MIN: Final = 10.0
DEFAULT_BACKOFF_MAX: Final = 1800.0
# A pilot's log (Docker's json-file driver): rotated at this size, this many files kept, so a
# chatty pilot cannot fill the volunteer's disk.
DEFAULT_LOG_MAX_SIZE: Final = 10 * 1024 * 1024
DEFAULT_LOG_MAX_FILES: Final = 3
# Capabilities Docker grants by default that a batch pilot has no use for: raw sockets (ping
# floods, ARP spoofing on the host's network), device nodes, writing the kernel audit log, file
# capabilities. Applied when a pool sets no drops of its own; a capability the pool adds back
# (`capabilities: [NET_RAW]`) is not dropped.
DEFAULT_CAP_DROP: Final = ("NET_RAW", "MKNOD", "AUDIT_WRITE", "SETFCAP")

# --- bounds of the public config schema ---------------------------------------------------------
# Every number a config may hold is bounded to what makes sense on a host and what the code that
# uses it can take (Docker's int64 fields, float arithmetic in the policy), so a value that loads
# can never fail on a later tick.
MIN_CPUS: Final = 0.01  # Docker refuses a NanoCPUs below 0.01 CPU
MAX_CPUS: Final = 1024.0  # per pilot, and for the owner's reserve and margin
MAX_SIZE: Final = 1024**5  # 1 PiB: memory, swap, reserve_memory, log size
MAX_DURATION: Final = 10 * 365 * 86400.0  # ten years: "practically never" with room to spare
MIN_INTERVAL: Final = 0.1  # tick and config_check: a daemon waking every ms spends the owner's CPU
# The shortest interval the host's CPU figures are read over: /proc/stat's jiffies (10 ms per
# CPU) are too coarse below it (one jiffy in 5 ms reads as 2 CPUs).
CPU_MIN_INTERVAL: Final = 0.25
MAX_PER_TICK: Final = 1000
MAX_PRESSURE: Final = 100.0  # PSI lines are percentages of time
MAX_PIDS_LIMIT: Final = 4 * 1024 * 1024  # the kernel's PID_MAX_LIMIT on 64-bit hosts
MAX_LOG_FILES: Final = 100
# A config file is read whole into memory: hand-written ones are a few KiB, anything past this is
# not a config file (a log, an image, /dev/zero behind a symlink).
# PyYAML's pure-Python reader takes about a second per 500 KiB on a small host: this keeps every
# file, whatever its shape, to a fraction of a second.
MAX_CONFIG_SIZE: Final = 256 * 1024

# --- remote config (`remote:`) -----------------------------------------------------------------
DEFAULT_REMOTE_INTERVAL: Final = 300.0  # seconds between two checks of the remote config
MIN_REMOTE_INTERVAL: Final = 1.0  # a conditional request answered 304 costs the server little
MAX_REMOTE_INTERVAL: Final = 7 * 86400.0
# Each wait is the interval times a random factor in 1 +- this, and the first check after a start
# comes within this fraction of the interval: a fleet restarted at once (a power cut, an upgrade)
# spreads its requests instead of hitting the server in lockstep.
REMOTE_JITTER: Final = 0.2
# While no document of the remote is in force (a first start with the server down) the host runs
# no pilots: it asks at least this often, whatever the interval.
REMOTE_PENDING_RETRY: Final = 60.0
DEFAULT_REMOTE_TIMEOUT: Final = 30.0  # seconds for a whole fetch: connect, TLS, headers, body
MAX_REMOTE_TIMEOUT: Final = 300.0
GITHUB_RAW: Final = "https://raw.githubusercontent.com"
# `github:user/repo` without a branch: the repository's default branch (what Plancton's
# `git clone` took), which raw.githubusercontent.com resolves from HEAD; without a path, the
# config.yaml at the top of the repository (Plancton cloned the repository into /etc/plancton).
GITHUB_DEFAULT_REF: Final = "HEAD"
GITHUB_DEFAULT_PATH: Final = "config.yaml"

# Exit codes Docker reports for pilots we stopped ourselves (SIGTERM / SIGKILL).
SIGNAL_EXIT_CODES: Final = frozenset({137, 143})
