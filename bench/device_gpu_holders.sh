#!/usr/bin/env bash
# Who holds a GPU, on a real node, read-only (reset and reload-modules run as --dry-run only):
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   (optional: an earlier build's tarball in .devbin/old/, to show what it saw)
#   device: bash bench/device_gpu_holders.sh        (carry .devbin)
# Three processes hold GPU 0 in ways a name does not show: through a node of another name (as a container
# may name it), through a node removed after it was opened ("... (deleted)"), and posing as nvidia-persistenced
# (argv[0], command name, --user). Each build's `reset --dry-run` should refuse naming all three (the impostor
# is a client, not the daemon), and `reload-modules --dry-run` should name all three as holders.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
builds=("new=$gpuwarm")
if old=$(ls .devbin/old/*.tar.gz 2>/dev/null | head -n1) && [ -n "$old" ]; then
  olddir=$(mktemp -d /tmp/gpuwarm-old.XXXXXX)
  tar -xzf "$old" -C "$olddir" --strip-components=1
  builds+=("old=$olddir/bin/gpuwarm")
fi
nvidia-smi -L
info=$(ls /proc/driver/nvidia/gpus/*/information | head -n1)
minor=$(awk -F: '/Device Minor/ {gsub(/[ \t]/, "", $2); print $2}' "$info")
echo "GPU 0's node: /dev/nvidia$minor, $(stat -c '%Hr:%Lr' "/dev/nvidia$minor")"
work=$(mktemp -d /tmp/gpu-holders.XXXXXX)
mknod "$work/gpu-renamed" c 195 "$minor"
mknod "$work/gpu-gone" c 195 "$minor"
hold='import os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); print("ready", flush=True); time.sleep(120)'
python3 -c "$hold" "$work/gpu-renamed" > "$work/a.out" & a=$!
python3 -c "$hold" "$work/gpu-gone" > "$work/b.out" & b=$!
trap 'kill $a $b ${c:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q ready "$work/a.out" "$work/b.out" 2>/dev/null && [ "$(cat "$work"/*.out | wc -l)" = 2 ] && break; sleep 0.05; done
rm "$work/gpu-gone"
# A third poses as the daemon (argv[0], command name and --user are its own to set): a client, not the daemon.
( exec -a /usr/bin/nvidia-persistenced python3 -c 'import os, sys, time
open("/proc/self/comm", "w").write("nvidia-persistenced")
fd = os.open("/dev/nvidia'"$minor"'", os.O_RDWR); print("ready", flush=True); time.sleep(120)' --user root ) > "$work/c.out" &
c=$!
for _ in $(seq 100); do grep -q ready "$work/c.out" 2>/dev/null && break; sleep 0.05; done
for p in $a $b; do echo "holder pid $p: $(find /proc/$p/fd -lname "$work/*" -printf "%l\n" 2>/dev/null | head -n1)"; done
for entry in "${builds[@]}"; do
  name=${entry%%=*}; bin=${entry#*=}
  echo
  echo "== $name build: reset --gpu 0 --dry-run --no-systemd"
  set +e
  out=$("$bin" reset --gpu 0 --dry-run --no-systemd 2>&1); rc=$?
  set -e
  echo "$out" | sed -n '1,12p'
  echo "exit $rc; names pid $a: $(grep -qw "$a" <<<"$out" && echo yes || echo no); names pid $b: $(grep -qw "$b" <<<"$out" && echo yes || echo no); names pid $c: $(grep -qw "$c" <<<"$out" && echo yes || echo no)"
  echo "== $name build: diagnose --json: the daemon's processes, and who only looks like it"
  "$bin" diagnose --json --no-systemd 2>/dev/null | python3 -c 'import json, sys
d = json.load(sys.stdin)["snapshot"]["daemon"]
print("processes:", [(p["pid"], p.get("executable")) for p in d["processes"]], "not_daemon:", d.get("not_daemon", "(no such field)"))' || true
  echo "== $name build: reload-modules --dry-run"
  set +e
  out=$("$bin" reload-modules --dry-run 2>&1); rc=$?
  set -e
  grep -E "pid ($a|$b|$c)\b|libkmod" <<<"$out" | head -6 || true
  echo "exit $rc; names pid $a: $(grep -qw "$a" <<<"$out" && echo yes || echo no); names pid $b: $(grep -qw "$b" <<<"$out" && echo yes || echo no); names pid $c: $(grep -qw "$c" <<<"$out" && echo yes || echo no)"
done
