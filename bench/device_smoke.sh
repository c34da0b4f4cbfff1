#!/usr/bin/env bash
# Every GPU-facing command of one build on a lent GPU machine, read-only: what a user meets there, and each exit
# code. Nothing changes the GPU's settings (fix, reset and reload-modules run as dry runs only; no -pm, no clocks).
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_smoke.sh        (carry .devbin; the log is also in $OUT/smoke.log)
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/smoke.log
exec > >(tee "$log") 2>&1
. bench/device_unpack.sh
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true
t0=$SECONDS
step() {  # step TITLE COMMAND...: runs it, prints its output (at most 40 lines) and its exit code
  local title=$1
  shift
  echo "== $title"
  "$@" > /tmp/smoke.out 2>&1
  local rc=$?
  head -n 40 /tmp/smoke.out
  (( $(wc -l < /tmp/smoke.out) > 40 )) && echo "   ... ($(wc -l < /tmp/smoke.out) lines)"
  echo "-- exit $rc"
}
step "diagnose" "$gpuwarm" diagnose --color never
step "diagnose --json (verdict)" bash -c "'$gpuwarm' diagnose --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"verdict\"][\"code\"], [f[\"rule_id\"] for f in d[\"findings\"]])'"
step "check" "$gpuwarm" check
step "check --json" "$gpuwarm" check --json
step "verify --samples 3" "$gpuwarm" verify --samples 3 --color never
step "metrics (gpuwarm_ lines, no comments)" bash -c "'$gpuwarm' metrics | grep -v '^#' | grep -E '^gpuwarm_(verdict|gpu_|persistence|driver|fact_unknown|finding)' | head -n 30"
step "snapshot (keys)" bash -c "'$gpuwarm' snapshot | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sorted(d))'"
echo "== metrics --listen: one scrape and /healthz over loopback, then SIGTERM"
"$gpuwarm" metrics --listen 127.0.0.1:0 > /dev/null 2> /tmp/smoke.exporter &
exporter=$!
for _ in $(seq 200); do grep -q 'serving http' /tmp/smoke.exporter && break; sleep 0.05; done
url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' /tmp/smoke.exporter | head -n1)
python3 - "$url" <<'EOF'
import sys, time, urllib.request
base = sys.argv[1]
for path, headers in (("metrics", {}), ("metrics", {"X-Prometheus-Scrape-Timeout-Seconds": "10"}), ("healthz", {})):
    t = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=60) as r:
        body = r.read().decode()
    print(f"GET /{path} {headers or ''}: {r.status} {len(body)} bytes in {1000 * (time.monotonic() - t):.0f} ms;",
          [l for l in body.splitlines() if l.startswith("gpuwarm_verdict")][:3] or body.strip()[:80])
EOF
kill -TERM $exporter; wait $exporter; echo "-- exporter exit $?"
step "probe --rounds 3" "$gpuwarm" probe --rounds 3 --color never
step "probe --node --rounds 3" "$gpuwarm" probe --node --rounds 3 --color never
step "watch --count 4 --interval 250ms" "$gpuwarm" watch --count 4 --interval 250ms --color never
step "watch --load 2 --interval 250ms" "$gpuwarm" watch --load 2 --interval 250ms --color never
step "guard --verbose" "$gpuwarm" guard --verbose
step "guard --json" "$gpuwarm" guard --json
step "fix --dry-run" "$gpuwarm" fix --dry-run --color never
step "reset --gpu 0 --dry-run" "$gpuwarm" reset --gpu 0 --dry-run --color never
step "reload-modules --dry-run" "$gpuwarm" reload-modules --dry-run
printf '#!/bin/sh\nnvidia-smi -pm 1\n' > /tmp/smoke-rc.local
step "lint (a legacy rc.local line)" "$gpuwarm" lint /tmp/smoke-rc.local
nvidia-smi --query-gpu=index,persistence_mode,clocks.applications.graphics,power.limit --format=csv,noheader || true
echo "== done in $((SECONDS - t0)) s"
