#!/usr/bin/env bash
# Session 48's check on a lent GPU machine (one GPU is enough), for what session 47 changed on the GPU path:
# a reader that is not root (the lock files are root's 0600) sees a running `gpuwarm probe` through /proc/locks
# and leaves NVML closed (UNK009) instead of spoiling the probe's cold start; before and after the probe it reads
# the GPU as usual. Then `check --boot-grace` on a real GPU, and issue 20's modes on this one GPU.
# Read-only on the GPU: probes and readings, no setting changed.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session48.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
out=${OUT:-$(mktemp -d)}
chmod -R a+rX "$dest"  # mktemp made it 0700: uid 65534 must reach the binary
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true
ls -l /run/gpuwarm-*.lock 2>/dev/null || echo "(no gpuwarm lock files yet)"

echo "== 1. check as uid 65534, no probe running"
as_nobody "$gpuwarm" check --no-systemd; echo "check exit $?"

echo "== 2. as uid 65534 while gpuwarm probe (root) times the GPU"
start_probe_and_wait --rounds 3 --timeout 20
ls -l /run/gpuwarm-timing.lock
grep -c FLOCK /proc/locks | sed 's/^/FLOCK lines in \/proc\/locks: /'
as_nobody "$gpuwarm" check --no-systemd; echo "check exit $?"
as_nobody "$gpuwarm" diagnose --json > "$out/diagnose-nobody-during.json"; echo "diagnose exit $?"
wait "$probe"; echo "probe exit $?"
python3 - "$out/diagnose-nobody-during.json" "$out/probe.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
n = d["snapshot"]["nvml"]
print("verdict", d["verdict"]["rule_id"], "| nvml.not_opened_by", n.get("not_opened_by"), "| gpus read", len(n.get("gpus") or []))
p = json.load(open(sys.argv[2]))
for g in p.get("gpus", []):
    print("probe GPU", g.get("index"), "total_ms", g.get("total_ms"), "samples", g.get("total_samples_ms"))
PY

echo "== 3. as uid 65534 after the probe"
as_nobody "$gpuwarm" check --no-systemd; echo "check exit $?"

echo "== 4. check --boot-grace 300 (root)"
echo "uptime $(cut -d' ' -f1 /proc/uptime) s"
"$gpuwarm" check --no-systemd --boot-grace 300; echo "check exit $?"

echo "== 5. issue 20's modes on this one GPU"
ROUNDS=3 BUDGET=240 bash bench/device_multi_gpu.sh 2>&1 | tail -n 45
