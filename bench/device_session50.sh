#!/usr/bin/env bash
# Session 50 on a lent GPU machine (one GPU): this build's probe on the real GPU (the method stated, the job
# table's note on which process-per-GPU start it is, rounds that rotate the job starts, a --gpu naming no GPU)
# and issue 20's bench script end to end at a small budget (its new "not measured" lines). Read-only on the GPU.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session50.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
out=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true
echo "== probe --rounds 3 (text)"
"$gpuwarm" probe --rounds 3; echo "probe exit $?"
echo "== probe --rounds 3 --node --json: job READY samples per method (each round starts with the next method)"
"$gpuwarm" probe --rounds 3 --node --json > "$out/probe-node.json"; echo "probe exit $?"
python3 - "$out/probe-node.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for j in d["jobs"]:
    print(j["method"], "READY", j["ready_ms"], "samples", j["ready_samples_ms"], "ok", j["ok"])
print("jobs_skipped", d["jobs_skipped"])
PY
echo "== probe --gpu 7 (names no GPU here)"
"$gpuwarm" probe --gpu 7; echo "probe exit $?"
echo "== check"
"$gpuwarm" check; echo "check exit $?"
echo "== bench/device_multi_gpu.sh at ROUNDS=2 BUDGET=200 (one GPU: the script end to end)"
ROUNDS=2 BUDGET=200 OUT= bash bench/device_multi_gpu.sh 2>&1 | tail -n 40
