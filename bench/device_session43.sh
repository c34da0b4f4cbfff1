#!/usr/bin/env bash
# Session 43 on a lent GPU machine, read-only (changes no GPU setting): a watch --load whose load child is killed
# mid-load is cannot tell (9) with the GPU named, not stable; the real NVML's pending MIG mode is recorded; every
# report's JSON has exit_code (and taken_at where it describes a node now); reset and reload-modules run only as
# dry-runs; verify without systemd skips the unit checks; then the multi-GPU bench end to end on this machine.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session43.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. bench/device_unpack.sh
work=$(mktemp -d)

echo "-- top-level exit_code / taken_at of each report on this node"
for cmd in "diagnose --json" "check --json" "guard --json" "verify --json --settle 1 --samples 2" \
           "reset --gpu 0 --dry-run --json" "reload-modules --dry-run --json" "lint --json /etc"; do
  # shellcheck disable=SC2086
  "$gpuwarm" $cmd > "$work/out.json" 2> "$work/err.txt"; rc=$?
  python3 - "$work/out.json" "$rc" "$cmd" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
extra = {k: d[k] for k in ("outcome", "daemon_running", "daemon_note") if k in d}
print(f"   {sys.argv[3]:<40} exit {sys.argv[2]:>2}  exit_code {d.get('exit_code')!s:>4}  "
      f"taken_at {d.get('taken_at')}  {extra if extra else ''}")
PY
done
echo "-- verify's unit checks here (no systemd booted this machine)"
"$gpuwarm" verify --settle 1 --samples 2 | grep -E "unit-|Verified|FAIL" | sed 's/^/   /'
echo "-- MIG mode as the real NVML answers (current and pending)"
"$gpuwarm" snapshot | python3 -c '
import json, sys
for g in json.load(sys.stdin)["nvml"]["gpus"]:
    print("   GPU", g["index"], "mig_mode", g.get("mig_mode"), "mig_mode_pending", g.get("mig_mode_pending"))'
echo "-- reset --gpu 0 --dry-run (text)"
"$gpuwarm" reset --gpu 0 --dry-run | sed 's/^/   /'; echo "   exit ${PIPESTATUS[0]}"

echo "-- watch --load 6 with the real libcuda; its load child killed (SIGKILL) 2 s into the load"
"$gpuwarm" watch --load 6 --interval 500ms --json > "$work/killed.json" 2> "$work/killed.err" &
watcher=$!
child=""
for _ in $(seq 1 100); do
  child=$(pgrep -f -- "--load-child" | head -n1)
  [ -n "$child" ] && break
  sleep 0.1
done
sleep 2
if [ -n "$child" ]; then kill -9 "$child"; echo "   killed load child pid $child"; else echo "   no load child seen"; fi
wait "$watcher"; rc=$?
python3 - "$work/killed.json" "$rc" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l, s = d["load"], d["summary"]
print(f"   exit {sys.argv[2]} (exit_code {d['exit_code']}); attribution {s['attribution']}; launches {l['launches']}; "
      f"load window {l['start_s']:.2f}-{l['end_s']:.2f} s")
print(f"   ended_early {l['ended_early']}")
for g in s["gpus"]:
    print(f"   GPU {g['index']}: {g['attribution']}; SM under load {g['sm_mhz_load']}; evidence {g['evidence'][-1:]}")
print(f"   notes {s['notes']}")
print(f"   next {s['next_step']}")
PY
echo "-- watch --load 3 with the real libcuda, undisturbed"
"$gpuwarm" watch --load 3 --interval 500ms --json > "$work/watch.json"; rc=$?
python3 - "$work/watch.json" "$rc" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["load"]
print(f"   exit {sys.argv[2]}; load error {l['error']!r}, ended_early {l['ended_early']}, launches {l['launches']}; "
      f"attribution {d['summary']['attribution']}; SM under load {d['summary']['gpus'][0]['sm_mhz_load']}")
PY
rm -rf "$work"

echo "-- bench/device_multi_gpu.sh on this machine"
ROUNDS=${ROUNDS:-5} bash bench/device_multi_gpu.sh
