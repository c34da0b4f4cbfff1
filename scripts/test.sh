#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests on the normal build, a check
# that every source file compiles on its own (the builds compile them in batches),
# then the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer.
# Tests that need what this machine lacks (root, dbus-daemon) print why they skip.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

run_suite() {
  local dir=$1
  shift
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
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
run_suite build -DCMAKE_BUILD_TYPE=Release -DGPUWARM_BUILD_TESTS=ON

echo "== every source file compiles on its own (the builds compile them in batches)  [${SECONDS} s so far]"
cmake -S . -B build-single -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUWARM_BUILD_TESTS=ON -DGPUWARM_UNITY_BUILD=OFF >/dev/null
cmake --build build-single --target gpuwarm_version_info >/dev/null
python3 scripts/each_file_alone.py build-single

echo "== build-asan/ (ASan + UBSan)  [${SECONDS} s so far]"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DGPUWARM_SANITIZE=ON

echo "== every parser under libFuzzer (10 s each)  [${SECONDS} s so far]"
if command -v clang++ >/dev/null; then
  scripts/fuzz.sh 10
else
  echo "  skipped: clang++ not installed (scripts/setup.sh installs it)"
fi
echo "== test.sh done in ${SECONDS} s"
