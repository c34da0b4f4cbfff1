#!/usr/bin/env bash
# Fuzzes the lint scanner with libFuzzer (clang from Debian) for SECONDS
# (default 60), starting from the lint test inputs; exits non-zero on a crash.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
out=build-fuzz
mkdir -p "$out/corpus"
clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc \
  $(pkg-config --cflags fmt) tests/fuzz/fuzz_lint.cpp src/lint/lint.cpp $(pkg-config --libs fmt) -o "$out/fuzz_lint"
# Seeds: realistic configs with and without findings.
printf 'nvidia-smi -i 0 -pm 1\n' > "$out/corpus/shell"
printf -- '- command:\n    argv:\n      - nvidia-smi\n      - -pm\n      - "1"\n' > "$out/corpus/yaml"
printf '[Unit]\nStopWhenUnneeded=true\n[Service]\nType=simple\nPIDFile=/var/run/x.pid\nExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n' > "$out/corpus/unit"
printf "/* c */ x = ''\n  nvidia-smi -pm 1 \\\\\n''; # gpuwarm: ignore LINT001\n" > "$out/corpus/nix"
"$out/fuzz_lint" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "$out/corpus" 2>&1 | tail -12
echo "fuzz: no crash in ${seconds} s"
