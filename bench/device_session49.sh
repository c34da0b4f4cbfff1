#!/usr/bin/env bash
# Session 49 on a lent GPU machine (one GPU): records examples/<h100|h200>-legacy-flag.json again with this build
# (the first gpuwarm's snapshots lack facts read since: whether the host was booted with systemd, whether /proc
# was listed in full, and a snapshot now reads such a missing fact as unknown), then shows what diagnose, check
# and metrics say on the real GPU, and that a back-to-back watch ends at its duration. Read-only on the GPU:
# readings only, no setting changed.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session49.sh        (carry .devbin; kind nvidia-h100-x1 for the H100 example)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
out=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true
model=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1 | grep -o 'H[0-9]00' | tr H h)
example="$out/${model:-gpu}-legacy-flag.json"

echo "== snapshot -> $(basename "$example")"
"$gpuwarm" snapshot -o "$example"; echo "snapshot exit $?"
python3 - "$example" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("manager_booted", s["service"].get("manager_booted"), "| processes_unread", repr(s["daemon"].get("processes_unread")),
      "| kernel_gpus_unread", repr(s["driver"].get("kernel_gpus_unread")), "| nvml", s["nvml"].get("library_path"),
      "(" + str(s["nvml"].get("library_found_by")) + ")")
PY
echo "== diagnose --snapshot (what the README shows)"
"$gpuwarm" diagnose --snapshot "$example"; echo "diagnose exit $?"
echo "== check, live"
"$gpuwarm" check; echo "check exit $?"
echo "== metrics, live (verdict and per-GPU persistence)"
"$gpuwarm" metrics | grep -E '^gpuwarm_(verdict\{|persistenced_running|gpu_persistence_mode|fact_unknown)' | grep -v ' 0$'
echo "== watch --interval 0 --duration 2s (back to back: it must end at 2 s; review-s49 W1)"
start=$(date +%s.%N)
"$gpuwarm" watch --interval 0 --duration 2s --json > "$out/watch-b2b.json"; rc=$?
python3 - "$out/watch-b2b.json" "$start" "$rc" <<'PY'
import json, sys, time
d = json.load(open(sys.argv[1]))
s = d["summary"]
print(f"watch exit {sys.argv[3]} after {time.time() - float(sys.argv[2]):.1f} s | samples {len(d['samples'])} | "
      f"duration_s {d['duration_s']:.2f} | sample_cap {d.get('sample_cap')} | attribution {s['attribution']} | "
      f"init_ms median {(s.get('init_ms') or {}).get('median')}")
PY
echo "== watch --count 5 --interval 200ms (text)"
"$gpuwarm" watch --count 5 --interval 200ms; echo "watch exit $?"
