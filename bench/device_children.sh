#!/usr/bin/env bash
# Read-only on a real GPU node: the programs and children gpuwarm starts die with it, and what it is told to
# load or run must exist. Changes no GPU setting (guard, diagnose and check only read; probe times cuInit).
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_children.sh        (carry .devbin)
# Prints: guard's answer (it runs `nvidia-persistenced --version` through the launcher); how many
# `probe --child` processes outlive a probe killed with SIGKILL at several moments (want 0 every time);
# exit codes for a mistyped --nvml; guard's answer with stdin and stdout closed.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
nvidia-smi -L 2>/dev/null || true

"$gpuwarm" guard --verbose; echo "guard exit $?"

# The children run /proc/self/exe with argv[0] "gpuwarm": their command line starts "gpuwarm probe --child".
children() { pgrep -f -- "^gpuwarm probe --child" | wc -l; }
for delay in 0.05 0.1 0.15 0.2 0.3 0.6; do
  "$gpuwarm" probe >/dev/null 2>&1 &
  parent=$!
  sleep "$delay"
  during=$(children)
  kill -KILL "$parent" 2>/dev/null
  wait "$parent" 2>/dev/null
  sleep 0.5
  echo "probe SIGKILLed after ${delay}s: children running then $during, 0.5 s later $(children)"
done
"$gpuwarm" probe | tail -n 4; echo "probe alone after: exit ${PIPESTATUS[0]}"

lib=$(ls /usr/local/nvidia/lib64/libnvidia-ml.so.1 2>/dev/null || true)
"$gpuwarm" check --nvml "${lib:-/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1}.typo"; echo "check with a mistyped --nvml: exit $?"
"$gpuwarm" check; echo "check: exit $?"
"$gpuwarm" diagnose | tail -n 3; echo "diagnose: exit ${PIPESTATUS[0]}"
"$gpuwarm" guard <&- >&-; echo "guard with stdin and stdout closed: exit $? (stderr above)"
