#!/usr/bin/env bash
# Who holds a GPU, on a real node, read-only (reset and reload-modules run as --dry-run only):
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   (optional: an earlier build's tarball in .devbin/old/, to show what it saw)
#   device: bash bench/device_gpu_holders.sh        (carry .devbin)
# Two processes hold GPU 0 through nodes that do not read /dev/nvidiaN: one through a node of another name (as
# a container may name it), one through a node removed after it was opened ("... (deleted)"). Each build's
# `reset --dry-run` should refuse, naming both, and `reload-modules --dry-run` should name both.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/device_unpack.sh
builds=("new=$gpuwarm")
if old=$(ls .devbin/old/*.tar.gz 2>/dev/null | head -n1) && [ -n "$old" ]; then
  olddir=$(mktemp -d /tmp/gpuwarm-old.XXXXXX)
  tar -xzf "$old" -C "$olddir" --strip-components=1
  builds+=("old=$olddir/bin/gpuwarm")
fi
echo "== $(hostname) $(date -u +%FT%TZ)"
nvidia-smi -L
info=$(ls /proc/driver/nvidia/gpus/*/information | head -n1)
minor=$(awk -F: '/Device Minor/ {gsub(/ /, "", $2); print $2}' "$info")
echo "GPU 0's node: /dev/nvidia$minor, $(stat -c '%t:%T' /dev/nvidia$minor | awk -F: '{printf "%d:%d", strtonum("0x"$1), strtonum("0x"$2)}')"
work=$(mktemp -d /tmp/gpu-holders.XXXXXX)
mknod "$work/gpu-renamed" c 195 "$minor"
mknod "$work/gpu-gone" c 195 "$minor"
hold='import os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR); print("ready", flush=True); time.sleep(120)'
python3 -c "$hold" "$work/gpu-renamed" > "$work/a.out" & a=$!
python3 -c "$hold" "$work/gpu-gone" > "$work/b.out" & b=$!
trap 'kill $a $b 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q ready "$work/a.out" "$work/b.out" 2>/dev/null && [ "$(cat "$work"/*.out | wc -l)" = 2 ] && break; sleep 0.05; done
rm "$work/gpu-gone"
for p in $a $b; do echo "holder pid $p: $(find /proc/$p/fd -lname "$work/*" -printf "%l\n" 2>/dev/null | head -n1)"; done
for entry in "${builds[@]}"; do
  name=${entry%%=*}; bin=${entry#*=}
  echo
  echo "== $name build: reset --gpu 0 --dry-run --no-systemd"
  set +e
  out=$("$bin" reset --gpu 0 --dry-run --no-systemd 2>&1); rc=$?
  set -e
  echo "$out" | sed -n '1,12p'
  echo "exit $rc; names pid $a: $(grep -qw "$a" <<<"$out" && echo yes || echo no); names pid $b: $(grep -qw "$b" <<<"$out" && echo yes || echo no)"
  echo "== $name build: reload-modules --dry-run"
  set +e
  out=$("$bin" reload-modules --dry-run 2>&1); rc=$?
  set -e
  grep -E "pid ($a|$b)\b|libkmod" <<<"$out" | head -6 || true
  echo "exit $rc; names pid $a: $(grep -qw "$a" <<<"$out" && echo yes || echo no); names pid $b: $(grep -qw "$b" <<<"$out" && echo yes || echo no)"
done
