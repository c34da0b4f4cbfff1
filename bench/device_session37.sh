#!/usr/bin/env bash
# Read-only on a real GPU node: what `check` says and writes (its line where diagnose would say healthy, its
# JSON kind, the facts it left unread), `fleet-summary` and `--snapshot` refusing a check answer, and `watch`
# sampling under its per-sample --nvml-timeout (a healthy watch is unchanged; a tiny deadline ends it with its
# summary and "cannot tell"). Changes no GPU setting.
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session37.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
nvidia-smi -L 2>/dev/null || true
work=$(mktemp -d)

"$gpuwarm" diagnose | tail -n 4; echo "diagnose: exit ${PIPESTATUS[0]}"
"$gpuwarm" check; echo "check: exit $?"
"$gpuwarm" check --json > "$work/check.json"; echo "check --json: exit $?"
python3 - "$work/check.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
g = d["snapshot"]["nvml"]["gpus"][0]
print("kind:", d["kind"], "| check:", d["check"], "| has a verdict:", "verdict" in d)
print("GPU 0 persistence:", g["persistence"], "| event reasons:", g["event_reasons_active"])
PY
"$gpuwarm" fleet-summary "$work/check.json"; echo "fleet-summary of a check answer: exit $?"
"$gpuwarm" check --snapshot "$work/check.json"; echo "check --snapshot of a check answer: exit $?"

# watch: the default deadline (45 s) changes nothing on a node that answers.
/usr/bin/time -f "watch wall %e s" "$gpuwarm" watch --interval 200ms --count 5 --json > "$work/watch.json"
echo "watch: exit $?"
python3 - "$work/watch.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
print("samples:", len(d["samples"]), "| attribution:", s["attribution"], "| exit:", s["exit_code"],
      "| nvml_stopped:", d["nvml_stopped"], "| init ms:", s["init_ms"])
PY
# A deadline shorter than one detached sample on this GPU: the watch ends at the first sample, cannot tell.
"$gpuwarm" watch --interval 200ms --count 3 --nvml-timeout 0.1; echo "watch --nvml-timeout 0.1: exit $?"
# A stop signal mid-watch: the summary of what was seen still prints (samples now run on their own thread).
timeout -s INT 1.5 "$gpuwarm" watch --interval 200ms --count 100 | head -n 3; echo "watch stopped by SIGINT: exit ${PIPESTATUS[0]}"
rm -rf "$work"
