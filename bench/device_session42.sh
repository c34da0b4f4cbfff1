#!/usr/bin/env bash
# Session 42 on a lent GPU machine, read-only (changes no GPU setting): watch --load asks a child whether libcuda
# loads before its idle lead-in (the real library: the load runs; a file that is no library: exit 9 at once);
# a kern.log that spans a reboot, built from this machine's own dmesg, makes the earlier boot's refusal
# history; fleet-summary over this node's real diagnose, snapshot and watch output lists the last two as skipped.
#   bash scripts/package.sh && rm -rf .devbin && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   device: bash bench/device_session42.sh        (carry .devbin)
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
work=$(mktemp -d)
echo "module version: ${module:-?}"

echo "-- diagnose / check / guard on this node"
"$gpuwarm" diagnose --json > "$work/diagnose.json"; echo "   diagnose exit $?"
"$gpuwarm" check; echo "   check exit $?"
"$gpuwarm" guard; echo "   guard exit $?"

echo "-- watch --load 3 with the real libcuda"
"$gpuwarm" watch --load 3 --interval 500ms --json > "$work/watch.json"; rc=$?
python3 - "$work/watch.json" "$rc" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["load"]
print(f"   exit {sys.argv[2]}; load error {l['error']!r}, launches {l['launches']}, start {l['start_s']:.2f} s, "
      f"end {l['end_s']:.2f} s; samples {len(d['samples'])}; attribution {d['summary']['attribution']}")
PY
echo "-- watch --load 3 with --cuda naming a file that is no library"
start=$(date +%s.%N)
"$gpuwarm" watch --load 3 --interval 500ms --cuda /etc/hostname > "$work/bad.out" 2> "$work/bad.err"; rc=$?
end=$(date +%s.%N)
echo "   exit $rc in $(python3 -c "print(f'{$end - $start:.2f}')") s; stdout $(wc -c < "$work/bad.out") bytes; stderr: $(head -c 300 "$work/bad.err")"

echo "-- a kern.log spanning a reboot, built from this machine's dmesg"
dmesg > "$work/dmesg.txt"
as_kern() { sed -e 's/^\[/Dec  4 07:00:00 gpu1 kernel: [/' "$1"; }
refusal() {
  for line in "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)" \
              "NVRM: has the version 999.1.1, but this kernel module has" \
              "NVRM: the version $module.  Please make sure that this" \
              "NVRM: kernel module and all NVIDIA driver components" "NVRM: have the same version."; do
    echo "Dec  4 09:00:00 gpu1 kernel: [99999.100000] $line"
  done
}
{ as_kern "$work/dmesg.txt"; refusal; } > "$work/one-boot.log"
{ as_kern "$work/dmesg.txt"; refusal; as_kern "$work/dmesg.txt"; } > "$work/two-boots.log"
{ as_kern "$work/dmesg.txt"; refusal; as_kern "$work/dmesg.txt" | grep -v 'NVRM: loading'; } > "$work/two-boots-no-load.log"
# As journalctl -k (and rsyslog by default) write it: no kernel stamps, so only the banner marks the reboot.
unstamped() { sed -e 's/^\[ *[0-9.]*\] /Dec 04 07:00:00 gpu1 kernel: /' "$1"; }
{ unstamped "$work/dmesg.txt"; refusal | sed -e 's/\[99999.100000\] //'; unstamped "$work/dmesg.txt"; } > "$work/two-boots-unstamped.log"
echo "   banner lines in this dmesg: $(grep -c '\] Linux version ' "$work/dmesg.txt")"
for log in one-boot two-boots two-boots-no-load two-boots-unstamped; do
  echo "   $log.log: $(wc -l < "$work/$log.log") lines"
  "$gpuwarm" guard --verbose --kernel-log "$work/$log.log" | sed 's/^/     /'; echo "     guard exit $?"
  "$gpuwarm" snapshot --kernel-log "$work/$log.log" | python3 -c '
import json, sys
k = json.load(sys.stdin)["kernel_log"]
print("     records", k["records"], "loaded_version", k["loaded_version"],
      "mismatches", [(m["client_version"], m["after_module_load"]) for m in k["mismatches"]])'
done

echo "-- fleet-summary over this node's diagnose, snapshot and watch output"
mkdir -p "$work/reports"
cp "$work/diagnose.json" "$work/reports/node.json"
"$gpuwarm" snapshot > "$work/reports/node.snapshot.json"
cp "$work/watch.json" "$work/reports/node.watch.json"
"$gpuwarm" fleet-summary "$work/reports"; echo "   fleet-summary exit $?"
rm -rf "$work"
