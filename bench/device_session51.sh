#!/usr/bin/env bash
# Session 51 on a lent GPU machine (one GPU): what this session changed that meets the real node, read-only.
# The kernel log as root (NOTE003 where /dev/kmsg is refused: a container without CAP_SYSLOG), the daemon's open
# files (verify's daemon-holds-gpus: skipped only where not being root is why), the no-systemd next step of
# PM002 (a container without systemd), metrics' driver and kernel-log facts, fix as a dry run, and watch --load
# (its children's output now read in bounded turns) for 6 s.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session51.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
nvidia-smi --query-gpu=index,name,driver_version,persistence_mode --format=csv,noheader || true
echo "== id; ls -l /dev/kmsg; capabilities"
id; ls -l /dev/kmsg 2>&1; grep -E '^Cap(Eff|Bnd)' /proc/self/status
echo "== diagnose"
"$gpuwarm" diagnose; echo "diagnose exit $?"
echo "== check"
"$gpuwarm" check; echo "check exit $?"
echo "== verify --samples 2"
"$gpuwarm" verify --samples 2; echo "verify exit $?"
echo "== metrics (driver, kernel log, unknown facts)"
"$gpuwarm" metrics | grep -E '^gpuwarm_(driver|fact_unknown|verdict\{|finding)' ; echo "metrics exit ${PIPESTATUS[0]}"
echo "== fix --dry-run"
"$gpuwarm" fix --dry-run; echo "fix exit $?"
echo "== watch --load 2 --interval 250ms (2 s lead-in, 2 s load, 5 s after)"
"$gpuwarm" watch --load 2 --interval 250ms | tail -n 12; echo "watch exit ${PIPESTATUS[0]}"
