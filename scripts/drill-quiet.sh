#!/usr/bin/env bash
# The drill's wall time on a quiet machine: each run starts only once the 1-minute load average has
# fallen below LOAD (what the run before left decays within about two minutes), and its line gives the
# load at its start beside the drill's own figures and the process's CPU time, which tells a slow VM
# (more CPU for the identical work) from a busy one. `npx tsc -b` first.
#   scripts/drill-quiet.sh [RUNS=3] [LOAD=0.3]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
limit=${2:-0.3}
TIMEFORMAT="%U s user, %S s system CPU"
for _ in $(seq 1 "$runs"); do
  while awk -v limit="$limit" '{ exit !($1 >= limit) }' /proc/loadavg; do sleep 5; done
  started="$(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  out=$( { time node --max-semi-space-size=64 packages/testkit/build/bin/drill.js --quiet; } 2>&1 | tail -3 | tr '\n' ' ')
  echo "$started: $out"
done
