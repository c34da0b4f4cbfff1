#!/usr/bin/env bash
# Read-only on a real GPU node: which copies of libnvidia-cfg.so.1 / libnvidia-ml.so.1 the guard finds where
# the loader looks, and what it decides for a logged "NVRM: API mismatch" (given as a --kernel-log file, so
# nothing is asked of the driver) from a process named like the daemon or not named: for a version no installed
# copy has (go), and for the module's own (go: the kernel never refuses it); and what the search costs. A stale
# copy (skip, 12, naming it) is staged in tests/e2e/test_guard.py with the real ldconfig. Changes no GPU setting.
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_guard_loadable.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
work=$(mktemp -d)
echo "module version: ${module:-?}"
echo "copies on disk:"
for f in /etc/ld.so.cache; do [ -e "$f" ] && echo "  $f: $(stat -c %s "$f") bytes"; done
ldconfig -p 2>/dev/null | grep -E 'libnvidia-(cfg|ml)\.so\.1 ' | sed 's/^/  ldconfig: /'
ls -l /usr/local/nvidia/lib64/libnvidia-cfg.so.1 /usr/local/nvidia/lib64/libnvidia-ml.so.1 2>&1 | sed 's/^/  /'

# The lent machines put a wrapper script at /usr/bin/nvidia-persistenced that sets LD_LIBRARY_PATH and runs the
# real daemon: the guard cannot tell where that would load from (shown once below). The other cases name the
# real binary with --daemon, as a cloud image's unit would run it.
daemon=()
if [ -x /usr/local/nvidia/bin/nvidia-persistenced ]; then
  daemon=(--daemon /usr/local/nvidia/bin/nvidia-persistenced)
fi

# kmsg LINE...: a --kernel-log file of /dev/kmsg records, one a line (as drivers before 575 print a mismatch),
# the module's load line first (only what follows it counts). Bare lines would be no log gpuwarm reads.
kmsg() {
  local file=$work/kmsg.$RANDOM seq=1 line
  { echo "6,1,1000,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module  $module  Release Build"
    for line in "$@"; do seq=$((seq + 1)); echo "3,$seq,${seq}000,-;$line"; done
  } > "$file"
  echo "$file"
}
run() {
  local name=$1
  shift
  echo "-- $name"
  "$gpuwarm" guard --verbose "${daemon[@]}" "$@"
  echo "   exit $?"
}
run "this node's own /dev/kmsg"
run "nothing logged" --kernel-log "$(kmsg)"
# As the kernel writes it: the driver prints the whole mismatch at once, one /dev/kmsg record, new lines escaped.
record=$work/kmsg.record
{ echo "6,1,1000,-;NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  $module  Release Build"
  printf '%s\n' "3,2,2000,-;NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)\\x0aNVRM: has the version x, but this kernel module has\\x0aNVRM: the version $module.  Please make sure that this\\x0aNVRM: kernel module and all NVIDIA driver components\\x0aNVRM: have the same version."
} > "$record"
run "one kmsg record, named like the daemon, asking with 'x'" --kernel-log "$record"
echo "-- the same, with the daemon the guard finds in the usual directories (here the wrapper script)"
"$gpuwarm" guard --verbose --kernel-log "$record"
echo "   exit $?"
run "named like the daemon, a version no copy has (999.1.1)" --kernel-log "$(kmsg \
  "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)" \
  "NVRM: has the version 999.1.1, but this kernel module has" "NVRM: the version $module.  Please make sure")"
run "not named, a version no copy has (999.1.1)" --kernel-log "$(kmsg \
  "NVRM: API mismatch: the client has the version 999.1.1, but" \
  "NVRM: this kernel module has the version $module.  Please")"
# As rsyslog's kern.log keeps them, the kernel's time stamp after "kernel:": the line is read (with the
# wrapper daemon, whose search path is unknown, a daemon-named refusal skips: 12); diagnose reads it too (DRV004).
kernlog=$work/kern.log
{ echo "Dec  4 07:00:00 gpu1 kernel: [    5.100000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  $module  Release Build"
  echo "Dec  4 07:10:00 gpu1 kernel: [  605.200000] NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)"
  echo "Dec  4 07:10:00 gpu1 kernel: [  605.200000] NVRM: has the version 999.1.1, but this kernel module has"
  echo "Dec  4 07:10:00 gpu1 kernel: [  605.200000] NVRM: the version $module.  Please make sure that this"
  echo "Dec  4 07:10:00 gpu1 kernel: [  605.200000] NVRM: kernel module and all NVIDIA driver components"
  echo "Dec  4 07:10:00 gpu1 kernel: [  605.200000] NVRM: have the same version."
} > "$kernlog"
echo "-- kern.log shape, named like the daemon, 999.1.1, the wrapper daemon"
"$gpuwarm" guard --verbose --kernel-log "$kernlog"
echo "   exit $?"
run "kern.log shape, named like the daemon, 999.1.1" --kernel-log "$kernlog"
# The same refusal logged in the microsecond of another record (the lent H200's own dmesg has 70 records sharing a
# stamp with the one before): it may be that record's text, so it is read, never exactly: 12.
stamped=$work/kern.log.stamped
{ head -n 1 "$kernlog"
  echo "Dec  4 07:10:00 gpu1 kernel: [  605.200000] nvidia-uvm: Loaded the UVM driver, major device number 509."
  tail -n +2 "$kernlog"
} > "$stamped"
run "kern.log shape, the refusal sharing the stamp of the record before it, 999.1.1" --kernel-log "$stamped"
# dmesg text with a line a user can cause after the refusal: a program run with an empty argv, whose path the
# kernel quotes, holding " kernel: " and a load line. It is no load: still 12 (with the wrapper daemon).
injected=$work/dmesg.injected
{ sed -e 's/^.* kernel: //' "$kernlog"
  echo "[  700.000000] process 'x' launched '/tmp/a gpu1 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  $module  Release Build' with NULL argv: empty string added"
} > "$injected"
echo "-- dmesg shape, the daemon's refusal, then a user's path holding a load line; the wrapper daemon"
"$gpuwarm" guard --kernel-log "$injected"
echo "   exit $?"
printf 'this is\nno kernel log\n' > "$work/not-a-log"
echo "-- a --kernel-log file in no known shape"
"$gpuwarm" guard --kernel-log "$work/not-a-log"
echo "   exit $?"
echo "-- diagnose --kernel-log (kern.log shape): the findings it gives"
"$gpuwarm" diagnose --json --kernel-log "$kernlog" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  exit", d["verdict"]["exit_code"], [(f["rule_id"], f["message"][:110]) for f in d["findings"] if f["rule_id"].startswith("DRV")])'
# The installed copies carry the module's version; a line claiming it for the client is one the kernel never
# logs (it refuses only a version other than its own): not a refusal, so the guard goes on.
run "named like the daemon, the installed version" --kernel-log "$(kmsg \
  "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)" \
  "NVRM: has the version $module, but this kernel module has" "NVRM: the version $module.  Please make sure")"
# What the search costs at boot: the guard with a line that needs it against one that does not (medians of 20).
spoofed=$(kmsg "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)" \
  "NVRM: has the version 999.1.1, but this kernel module has" "NVRM: the version $module.  Please make sure")
python3 - "$gpuwarm" "$(kmsg)" "$spoofed" "${daemon[@]}" <<'PY'
import statistics, subprocess, sys, time
gpuwarm, quiet, spoofed = sys.argv[1:4]
extra = sys.argv[4:]
def median_ms(log):
    walls = []
    for _ in range(20):
        t = time.monotonic()
        subprocess.run([gpuwarm, "guard", *extra, "--kernel-log", log], capture_output=True)
        walls.append((time.monotonic() - t) * 1000)
    return statistics.median(walls)
a, b = median_ms(quiet), median_ms(spoofed)
print(f"guard wall, median of 20: nothing logged {a:.1f} ms; a daemon-named line (copies searched) {b:.1f} ms; ratio {b / a:.2f}")
PY
"$gpuwarm" guard --json --kernel-log "$(kmsg)" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("json:", d["exit_code"], d["reason"], [x for x in d["details"] if "copies" in x or "libnvidia" in x])'
rm -rf "$work"
