#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests on the normal build, a check
# that every source file compiles on its own (the builds compile them in batches),
# then the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer, then
# every parser under libFuzzer.
# Tests that need what this machine lacks (root, dbus-daemon) print why they skip.
#
# The end-to-end tests spend most of their time waiting (for daemons, timers, children),
# so the next builds run beside each suite at the lowest priority (nice 19): they take
# the cores the tests leave idle and yield them whenever a test wants one. Each build's
# output is printed once it ends; a failed build fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
logs=$(mktemp -d)
background=()
# A run that stops early (a failed suite, Ctrl-C) takes its background builds with it.
stop_background() {
  local pid
  for pid in "${background[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$logs"
}
trap stop_background EXIT

# in_background NAME FUNCTION: runs one of the functions above at nice 19 in a process group of its own (job
# control, `set -m`, gives it one). Not in a session of its own: with the kernel's autogroup scheduling a new
# session is a new group that competes as an equal with the tests, whatever its nice value.
in_background() {
  local name=$1
  set -m
  nice -n 19 bash -c "set -euo pipefail; $2" < /dev/null > "$logs/$name" 2>&1 &
  set +m
  background+=($!)
  echo "$!" > "$logs/$name.pid"
}

# finish NAME: waits for it, prints what it printed, fails the run if it failed.
finish() {
  local name=$1 rc=0 started=$SECONDS
  wait "$(cat "$logs/$name.pid")" || rc=$?
  echo "== $name  (waited $((SECONDS - started)) s for it; ${SECONDS} s so far)"
  cat "$logs/$name"
  if ((rc != 0)); then
    echo "$name FAILED (exit $rc)" >&2
    exit 1
  fi
}

configure_asan() {
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGPUWARM_SANITIZE=ON >/dev/null
  cmake --build build-asan -j "$jobs"
}

each_file_alone_then_fuzzer() {
  echo "-- every source file compiles on its own (the builds compile them in batches)"
  cmake -S . -B build-single -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUWARM_BUILD_TESTS=ON -DGPUWARM_UNITY_BUILD=OFF >/dev/null
  cmake --build build-single --target gpuwarm_version_info >/dev/null
  python3 scripts/each_file_alone.py build-single
  echo "-- the libFuzzer build (clang, ASan + UBSan)"
  if command -v clang++ >/dev/null; then
    scripts/fuzz.sh --build-only
    echo "  built build-fuzz/fuzz_parsers"
  else
    echo "  skipped: clang++ not installed (scripts/setup.sh installs it)"
  fi
}

export jobs
export -f configure_asan each_file_alone_then_fuzzer

run_suite() {
  local dir=$1
  # --no-tests=error: a suite that collects nothing must fail, not pass.
  ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$jobs"
  # ctest hides passing output; surface every skipped case and its reason.
  grep -hoE "\(?[a-zA-Z_.]+\)? \.\.\. skipped .*" "$dir/Testing/Temporary/LastTest.log" | sed 's/^/  skipped: /' || true
}

echo "== packages: scripts/package.sh into build-package/dist (e2e.test_package checks them)"
if command -v pandoc >/dev/null && command -v rpmbuild >/dev/null; then
  export GPUWARM_DIST=$PWD/build-package/dist
  rm -rf "$GPUWARM_DIST"
  scripts/package.sh
else
  echo "  skipped: pandoc or rpmbuild not installed (scripts/setup.sh installs them)"
fi

echo "== build/ (Release, as scripts/setup.sh builds it)  [${SECONDS} s so far]"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUWARM_BUILD_TESTS=ON >/dev/null
cmake --build build -j "$jobs"
echo "   beside it: the ASan + UBSan build"
in_background build-asan configure_asan
run_suite build
finish build-asan

echo "== build-asan/ (ASan + UBSan)  [${SECONDS} s so far]"
echo "   beside it: each source file alone, then the libFuzzer build"
in_background single-and-fuzz-build each_file_alone_then_fuzzer
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build-asan
finish single-and-fuzz-build

echo "== every parser under libFuzzer (10 s each)  [${SECONDS} s so far]"
if command -v clang++ >/dev/null; then
  scripts/fuzz.sh 10
else
  echo "  skipped: clang++ not installed (scripts/setup.sh installs it)"
fi
echo "== test.sh done in ${SECONDS} s"
