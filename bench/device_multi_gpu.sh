#!/usr/bin/env bash
# Issue 20's check on a lent GPU machine (several GPUs; it also runs on one):
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   cc -shared -fPIC -O1 -o .devbin/openlog.so bench/openlog.c -ldl      (for bench/cuinit_opens.py)
#   device: bash bench/device_multi_gpu.sh        (carry .devbin)
# Read-only on the GPUs: probes only, no setting is changed. Prints `gpuwarm probe`'s own table, then
# bench/probe_modes.py's (last, so that a cut log keeps them): the per-GPU table alone vs in parallel, the
# parallel/alone ratio, both job starts against the slowest GPU alone (medians of $ROUNDS rounds), and what
# two probe children on one GPU do to each other; then which GPUs' device files one process's cuInit opens.
# Made for one unattended run under a 600 s kill that returns only the output's tail: every probe gets
# --timeout $PROBE_TIMEOUT (20 s per GPU), `gpuwarm probe` is killed after 180 s, probe_modes.py starts
# nothing that the rest of $BUDGET (540 s in all) cannot hold, and each step says when it started.
# With $OUT set, everything printed also goes to $OUT/multi_gpu.log, `gpuwarm probe`'s run to
# $OUT/probe.json, and probe_modes' raw JSON of every run and its log to $OUT/probe_modes/.
# Expected: ~2 min on 8 x H200 with persistence on (~300 ms per GPU and stage set). On fake GPUs of that
# speed (cuInit 150, retain 120, release 60 ms, serialized across processes): ~32 s for 2 GPUs, ~145 s for 8.
# Not covered: the before/after of enabling persistence. It changes no setting, and the lent GPUs run with
# persistence Enabled (the legacy flag, FACTS.md 0b): every figure is the persistence-on side. It says so.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
budget=${BUDGET:-540}
probe_timeout=${PROBE_TIMEOUT:-20}

main() {
  . bench/device_unpack.sh
  echo "== budget ${budget} s, probes --timeout ${probe_timeout} s, ${rounds} rounds; files ${OUT:-not kept (\$OUT unset)}"
  nvidia-smi -L || true
  nvidia-smi --query-gpu=index,name,driver_version,persistence_mode,mig.mode.current --format=csv,noheader || true
  local persistence
  persistence=$( { nvidia-smi --query-gpu=persistence_mode --format=csv,noheader 2>/dev/null || true; } | sort -u | paste -sd/ - )
  local unmeasured="before/after of enabling persistence: NOT measured (persistence reads ${persistence:-unread} here and this script changes no setting): the figures are that side only"
  echo "== $unmeasured"
  local modes_rc=0 probe_rc=0 saved cap
  saved=$(mktemp -d /tmp/gpuwarm-probe.XXXXXX)  # private (0700): probe --save refuses a folder others can write
  cap=$(( budget / 3 ))
  echo "== gpuwarm probe --rounds $rounds --timeout $probe_timeout (the default: each GPU alone, then what a job pays; at ${SECONDS} s, killed after ${cap} s)"
  timeout -k 5 "$cap" "$gpuwarm" probe --rounds "$rounds" --timeout "$probe_timeout" --save "$saved/probe.json" || probe_rc=$?
  if [ "$probe_rc" = 124 ] || [ "$probe_rc" = 137 ]; then echo "(gpuwarm probe killed after ${cap} s: no table)"; fi
  if [ -n "${OUT:-}" ] && [ -f "$saved/probe.json" ]; then cp "$saved/probe.json" "$OUT/probe.json" && echo "(copied to \$OUT/probe.json)"; fi
  echo "== bench/probe_modes.py --rounds $rounds --contention (at ${SECONDS} s)"
  python3 -u bench/probe_modes.py --gpuwarm "$gpuwarm" --rounds "$rounds" --contention \
    --probe-timeout "$probe_timeout" --budget $(( b = budget - SECONDS - 15, b > 30 ? b : 30 )) || modes_rc=$?
  echo "== bench/cuinit_opens.py: which GPUs' device files one process's cuInit opens (at ${SECONDS} s)"
  python3 -u bench/cuinit_opens.py --preload .devbin/openlog.so || true
  echo "== done in ${SECONDS} s: gpuwarm probe exit $probe_rc, probe_modes exit $modes_rc$([ "$modes_rc" = 1 ] && echo ' (some runs failed: its ! lines)')${OUT:+; files in $OUT}"
  echo "== $unmeasured"
  [ "$modes_rc" = 0 ] && [ "$probe_rc" = 0 ]
}

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  main 2>&1 | tee -a "$OUT/multi_gpu.log"  # pipefail: the exit status is main's
  exit 0
fi
main
