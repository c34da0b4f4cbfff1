#!/usr/bin/env bash
# Read-only on a real GPU node: the commands whose NVML calls run on a background thread (diagnose, check,
# guard, probe, watch) after that thread is joined before its answer is used. Repeated runs must all end the
# same way, with nothing from a sanitizer or the C library on stderr; the guard's --verbose shows which of the
# daemon's parts it read. Changes no GPU setting.
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session38.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
nvidia-smi -L 2>/dev/null || true
work=$(mktemp -d)

# repeat N NAME CMD...: runs CMD N times; prints each exit code seen (with its count), the median wall time,
# and whether stderr ever held anything unexpected.
repeat() {
  local n=$1 name=$2
  shift 2
  python3 - "$n" "$name" "$work" "$@" <<'PY'
import collections, statistics, subprocess, sys, time
n, name, work, cmd = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
codes, walls, odd = collections.Counter(), [], []
for _ in range(n):
    t = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    walls.append((time.monotonic() - t) * 1000)
    codes[r.returncode] += 1
    for word in ("Sanitizer", "terminate called", "Aborted", "double free", "corrupted"):
        if word in r.stderr:
            odd.append(word)
print(f"{name}: {n} runs, exit codes {dict(codes)}, median wall {statistics.median(walls):.0f} ms "
      f"(min {min(walls):.0f}, max {max(walls):.0f}); stderr oddities: {odd or 'none'}")
PY
}

repeat 20 "diagnose --json" "$gpuwarm" diagnose --json
repeat 20 "check" "$gpuwarm" check
repeat 20 "guard" "$gpuwarm" guard
repeat 5 "probe --per-gpu" "$gpuwarm" probe --per-gpu
repeat 5 "watch --count 3" "$gpuwarm" watch --interval 200ms --count 3
# A watch started right after a job (here a probe) finds the clocks still coming down: busy, not an idle swing.
codes=""
for i in $(seq 1 15); do
  "$gpuwarm" probe --per-gpu > /dev/null 2>&1
  "$gpuwarm" watch --interval 200ms --count 3 --json > "$work/after-probe.json"
  codes="$codes $?"
  grep -o '"[0-9]* sample(s) outside the load found the GPU busy[^"]*"' "$work/after-probe.json" >> "$work/busy.txt"
done
echo "watch right after a probe, 15 times: exit codes$codes"
echo "of those, watches that left busy samples out: $(wc -l < "$work/busy.txt")"; sort "$work/busy.txt" | uniq -c
"$gpuwarm" watch --load 5 --interval 250ms | tail -n 6; echo "watch --load 5: exit ${PIPESTATUS[0]}"
"$gpuwarm" guard --verbose; echo "guard --verbose: exit $?"
"$gpuwarm" diagnose | tail -n 4; echo "diagnose: exit ${PIPESTATUS[0]}"
rm -rf "$work"
