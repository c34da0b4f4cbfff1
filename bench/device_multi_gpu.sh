#!/usr/bin/env bash
# Issue 20's check on a lent GPU machine (several GPUs; it also runs on one):
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_multi_gpu.sh        (carry .devbin)
# Read-only on the GPUs: probes only, no setting is changed. Prints the per-GPU table alone vs in
# parallel, the parallel/alone ratio, both job starts against the slowest GPU alone (medians of
# $ROUNDS rounds), and what two probe children on one GPU do to each other.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
. bench/device_unpack.sh
nvidia-smi -L || true
nvidia-smi --query-gpu=index,persistence_mode --format=csv,noheader || true
echo "== gpuwarm probe (default: each GPU alone, then what a job pays)"
"$gpuwarm" probe --rounds "$rounds" || echo "(probe exit $?)"
echo "== bench/probe_modes.py --rounds $rounds --contention"
python3 bench/probe_modes.py --gpuwarm "$gpuwarm" --rounds "$rounds" --contention
