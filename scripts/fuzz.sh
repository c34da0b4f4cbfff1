#!/usr/bin/env bash
# Fuzzes every parser of untrusted input with libFuzzer (Debian's clang,
# ASan+UBSan): the kernel log, /proc/driver/nvidia files, unit files, snapshot
# JSON (and the rules over it), fleet reports, watch replays, probe baselines
# and the lint scanner; and the Ansible module's arguments and the output it
# reads back (a Python driver: tests/fuzz/fuzz_ansible_module.py). Each target runs SECONDS (default 60) with inputs up to
# 1 MiB and a 10 s per-input limit, so quadratic behaviour shows as a timeout.
# Targets run side by side, one per core. Exits non-zero on a crash or timeout; prints runs per target.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#        scripts/fuzz.sh --build-only     (builds the fuzzer and its seed corpora, runs nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=false
if [ "${1:-}" = --build-only ]; then
  build_only=true
  shift
fi
seconds=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(kernel_log proc_driver unit_file snapshot fleet watch_replay probe_baseline lint listen loader proc_locks
           dcgm ansible_module)
fi
out=build-fuzz
mkdir -p "$out/obj"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -Isrc
       $(pkg-config --cflags fmt))
sources=(
  tests/fuzz/fuzz_parsers.cpp
  src/core/strings.cpp src/core/fs.cpp src/core/paths.cpp src/core/elf.cpp
  src/sysfs/kernel_log.cpp src/sysfs/driver.cpp src/sysfs/processes.cpp src/sysfs/daemon.cpp src/systemd/unit_file.cpp
  src/snapshot/snapshot_json.cpp src/snapshot/clock_reasons.cpp
  src/rules/helpers.cpp src/rules/registry.cpp src/rules/driver.cpp src/rules/daemon.cpp src/rules/clocks.cpp
  src/rules/persistence.cpp src/rules/nvml.cpp src/rules/notes.cpp src/rules/snapshot.cpp
  src/nvml/errors.cpp src/nvml/nvml_library.cpp
  src/fleet/fleet.cpp src/output/table.cpp src/output/style.cpp
  src/watch/watch_json.cpp src/watch/summarize.cpp src/watch/watch_text.cpp
  src/probe/probe.cpp src/cuda/cold_start.cpp src/lint/lint.cpp src/lint/words.cpp src/lint/units.cpp src/output/metrics.cpp
  src/exporter/http_server.cpp src/exporter/mhd_api.cpp src/fix/plan.cpp src/guard/guard.cpp
  src/cli/node_lock.cpp src/verify/verify.cpp src/output/diagnosis_output.cpp
)
# Compiled in four batches, each one file that includes its share of the sources, side by side: each batch parses
# the shared headers once (about 90 s of CPU less than a file at a time). That each source compiles on its own is
# checked apart (scripts/each_file_alone.py, run by scripts/test.sh). A batch is rebuilt when one of its sources or
# any header is newer than its object, or when it would list other sources.
rm -f "$out"/obj/*_cpp.o  # objects of the file-at-a-time build this replaced
batches=4
for ((b = 0; b < batches; b++)); do
  list=$(for ((i = b; i < ${#sources[@]}; i += batches)); do printf '#include "%s/%s"\n' "$PWD" "${sources[i]}"; done)
  if [ "$(cat "$out/obj/batch$b.cpp" 2>/dev/null)" != "$list" ]; then
    printf '%s\n' "$list" > "$out/obj/batch$b.cpp"
  fi
done
for ((b = 0; b < batches; b++)); do
  o="$out/obj/batch$b.o"
  mapfile -t mine < <(grep -oE '"[^"]+"' "$out/obj/batch$b.cpp" | tr -d '"')
  if [ ! -e "$o" ] || [ "$out/obj/batch$b.cpp" -nt "$o" ] || [ -n "$(find "${mine[@]}" -newer "$o" -print -quit)" ] ||
     [ -n "$(find src tests/fuzz -name '*.h' -newer "$o" -print -quit)" ]; then
    echo "$b"
  fi
done | xargs -r -P "$(nproc)" -I{} clang++ "${flags[@]}" -c "$out/obj/batch{}.cpp" -o "$out/obj/batch{}.o"
# Linked beside and renamed over: another run may be executing the old binary.
if [ ! -e "$out/fuzz_parsers" ] || [ -n "$(find "$out/obj" -name '*.o' -newer "$out/fuzz_parsers" -print -quit)" ]; then
  clang++ -fsanitize=fuzzer,address,undefined "$out"/obj/*.o $(pkg-config --libs fmt) -lsimdjson -ldl -lpthread \
    -o "$out/fuzz_parsers.$$"
  mv -f "$out/fuzz_parsers.$$" "$out/fuzz_parsers"
fi

# Seeds: real inputs of each kind.
seed() { mkdir -p "$out/corpus/$1"; cp "${@:2}" "$out/corpus/$1/" 2>/dev/null || true; }
mkdir -p "$out/corpus/kernel_log" "$out/corpus/proc_driver" "$out/corpus/unit_file" "$out/corpus/lint" "$out/corpus/listen"
printf '6,1,1,-;NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\nNVRM: API mismatch: the client '"'"'nvidia-persiste'"'"' (pid 812)\nNVRM: has the version 580.95.05, but this kernel module has\nNVRM: the version 580.159.04.  Please make sure that this\nNVRM: Persistence mode is deprecated and will be removed in a future release.\n' > "$out/corpus/kernel_log/kmsg"
printf 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.216.03  Thu Apr  3 01:14:19 UTC 2025\nModel: \t NVIDIA H100\nDevice Minor: \t 0\nGPU Excluded:\t No\nRuntime D3 status:          Enabled (fine-grained)\n' > "$out/corpus/proc_driver/info"
printf '[Unit]\nStopWhenUnneeded=true\n[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced --user "nv user" --no-persistence-mode \\\n  --verbose\n' > "$out/corpus/unit_file/unit"
printf 'nvidia-smi -i 0 -pm 1\n' > "$out/corpus/lint/shell"
printf '127.0.0.1:9839' > "$out/corpus/listen/v4"
printf '[::1]:0' > "$out/corpus/listen/v6"
printf '9839' > "$out/corpus/listen/port"
printf '[Unit]\nStopWhenUnneeded=true\n[Service]\nType=simple\nPIDFile=/var/run/x.pid\nExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n' > "$out/corpus/lint/unit"
seed snapshot examples/h100-legacy-flag.json examples/h200-legacy-flag.json
seed fleet examples/h100-fix-check-mode.json examples/h100-probe.json examples/h200-legacy-flag.json
seed watch_replay examples/h100-watch-detached.json examples/h100-watch-load.json
seed probe_baseline examples/h100-probe.json
mkdir -p "$out/corpus/dcgm"
printf '{"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [{"name": "Denylist", "results": [{"status": "Pass"}, {"gpu_id": "1", "status": "Warn"}]}]}]}}' > "$out/corpus/dcgm/diag"
mkdir -p "$out/corpus/proc_locks"
printf '1: FLOCK  ADVISORY  WRITE 5143 fe:00:10952763 0 EOF\n1: -> FLOCK  ADVISORY  READ 5149 fe:00:10952763 0 EOF\n2: POSIX  ADVISORY  WRITE 812 00:19:1029 0 EOF\n3: OFDLCK ADVISORY  READ -1 00:06:1040 0 EOF\n' > "$out/corpus/proc_locks/locks"
seed loader /etc/ld.so.cache /usr/bin/true  # this machine's, as ldconfig and a linker wrote them
# Inputs that once crashed a parser stay in its corpus.
for f in tests/fuzz/regressions/*; do
  [ -e "$f" ] && seed "$(basename "$f" | cut -d- -f1)" "$f"
done

$build_only && exit 0

# One target: its log in $out/$t.log, its line in $out/$t.result; fails on a crash or timeout.
fuzz_one() {
  local t=$1 log="$out/$1.log" rc runs
  if [ "$t" = ansible_module ]; then
    # The Ansible module is Python: its own random driver (tests/fuzz/fuzz_ansible_module.py).
    if ! /usr/bin/python3 -c "import ansible.module_utils.basic" 2>/dev/null; then
      echo "fuzz $t: skipped: ansible-core not installed (scripts/setup.sh installs it)"
      return 0
    fi
    rc=0
    /usr/bin/python3 tests/fuzz/fuzz_ansible_module.py "$seconds" > "$log" 2>&1 || rc=$?
    runs=$(grep -oE 'number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    if ((rc != 0)); then
      echo "fuzz $t: FAILED after $runs runs; see $log"
      head -3 "$log"
      return 1
    fi
    echo "fuzz $t: $runs runs in ${seconds} s, no failure"
    return 0
  fi
  rc=0
  GPUWARM_FUZZ_TARGET=$t "$out/fuzz_parsers" -max_total_time="$seconds" -max_len=1048576 -timeout=10 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$out/$t-" "$out/corpus/$t" > "$log" 2>&1 || rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  if ((rc != 0)); then
    echo "fuzz $t: FAILED after $runs runs (exit $rc); see $log"
    grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
    return 1
  fi
  echo "fuzz $t: $runs runs in ${seconds} s, no crash"
}

# As many targets at once as there are cores (each fuzzer uses one); the lines print in target order. A target
# named twice runs once (two runs would share its corpus, log and result).
mapfile -t targets < <(printf '%s\n' "${targets[@]}" | awk '!seen[$0]++')
declare -A pids
running=0
for t in "${targets[@]}"; do
  if ((running >= $(nproc))); then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" > "$out/$t.result" 2>&1 &
  pids[$t]=$!
  running=$((running + 1))
done
status=0
for t in "${targets[@]}"; do
  wait "${pids[$t]}" || status=1
  cat "$out/$t.result"
done
exit $status
