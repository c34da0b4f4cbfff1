#!/usr/bin/env bash
# Session 45's check on a lent GPU machine (one GPU is enough): a reading (diagnose, check, metrics, verify,
# fix --dry-run) beside a real `gpuwarm probe` leaves NVML closed (UNK009) instead of initializing the GPU the
# probe times; alone, the same reading opens NVML as before. Read-only on the GPU: a probe and readings, no
# setting changed.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session45.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
out=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true

echo "== 1. a reading alone"
"$gpuwarm" diagnose --no-systemd --json > "$out/diagnose-alone.json"; echo "diagnose exit $?"
python3 - "$out/diagnose-alone.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("verdict", d["verdict"]["rule_id"], "| nvml_init", d["driver"]["nvml_init"], "| nvml_not_opened",
      d["driver"]["nvml_not_opened"], "| gpus", [(g["index"], g["persistence"]) for g in d["gpus"]])
PY
ls -l /run/gpuwarm-*.lock

echo "== 2. the same readings while gpuwarm probe times the GPU"
start_probe_and_wait --rounds 5 --timeout 20
"$gpuwarm" diagnose --no-systemd; echo "diagnose exit $?"
"$gpuwarm" check --no-systemd; echo "check exit $?"
"$gpuwarm" metrics --no-systemd > "$out/metrics-during.prom"; echo "metrics exit $?"
grep -E '^gpuwarm_(verdict|finding|fact_unknown)' "$out/metrics-during.prom"
grep -c '^gpuwarm_gpu_persistence_mode' "$out/metrics-during.prom" || true
"$gpuwarm" verify --no-systemd --settle 0 --samples 1 | tail -2; echo "verify exit ${PIPESTATUS[0]}"
"$gpuwarm" fix --dry-run --no-systemd | tail -2; echo "fix --dry-run exit ${PIPESTATUS[0]}"
alive=no; kill -0 "$probe" 2>/dev/null && alive=yes
echo "probe still running after the readings: $alive ($(( SECONDS - probe_started )) s)"
wait "$probe"; echo "probe exit $?"
python3 - "$out/probe.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
for g in p.get("gpus", []):
    print("probe GPU", g.get("index"), "total_ms", g.get("total_ms"), "method", p.get("method"))
for j in p.get("jobs", []):
    print("job", j.get("method"), "wall_ms", j.get("wall_ms"))
PY
cat "$out/probe.err"

echo "== 3. after the probe: the reading opens NVML again"
"$gpuwarm" check --no-systemd; echo "check exit $?"
