#!/usr/bin/env bash
# Session 46's check on a lent GPU machine (one GPU is enough): during a real `gpuwarm probe`, `check`'s one line
# names what kept NVML closed ("UNK009 nvml not opened: GPUs timed (probe, watch --load)") and the snapshot records which
# lock (nvml.not_opened_by); after it, check reads the GPU again. Also what diagnose records of systemd there
# (none runs: exec_condition unknown, so no PD009). Read-only on the GPU: a probe and readings, no setting changed.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session46.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
out=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true

echo "== 1. check alone"
"$gpuwarm" check --no-systemd; echo "check exit $?"

echo "== 2. check and diagnose while gpuwarm probe times the GPU"
start_probe_and_wait --rounds 3 --timeout 20
"$gpuwarm" check --no-systemd; echo "check exit $?"
"$gpuwarm" diagnose --json > "$out/diagnose-during.json"; echo "diagnose exit $?"
wait "$probe"; echo "probe exit $?"
python3 - "$out/diagnose-during.json" "$out/probe.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["snapshot"]
print("verdict", d["verdict"]["rule_id"], "| not_opened_by", s["nvml"]["not_opened_by"])
print("service reachable", s["service"]["reachable"], "| exec_condition", s["service"]["exec_condition"],
      "| manager_version", s["service"]["manager_version"])
print("PD009 among findings:", any(f["rule_id"] == "PD009" for f in d["findings"]))
p = json.load(open(sys.argv[2]))
for g in p.get("gpus", []):
    print("probe GPU", g.get("index"), "total_ms", g.get("total_ms"))
PY

echo "== 3. after the probe"
"$gpuwarm" check --no-systemd; echo "check exit $?"
