#!/bin/bash
# phase.sh NAME COMMAND...: run one phase of a build, say how long it took and how it ended.
# With PLANCTOND_PHASE_LOG set, also append "NAME STATUS SECONDS" there (.ci/run's summary).
set -uo pipefail
name="$1"
shift
start=$(date +%s.%N)
printf '\n===== %s: %s\n' "$name" "$*" >&2
"$@"
rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
status=ok
[ "$rc" -eq 0 ] || status="FAILED($rc)"
printf '===== %s: %s in %s s\n' "$name" "$status" "$secs" >&2
[ -z "${PLANCTOND_PHASE_LOG:-}" ] || printf '%-12s %-12s %8s s\n' "$name" "$status" "$secs" >>"$PLANCTOND_PHASE_LOG"
exit "$rc"
