#!/usr/bin/env bash
# Fresh Debian 12 -> built gpuwarm. Installs the Debian packages the build and
# the tests need, builds build/ (Release with debug info), and runs
# `gpuwarm diagnose` once so you see what it says about this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libcli11-dev nlohmann-json3-dev libfmt-dev libexpected-dev libsystemd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-dbus python3-gi python3-dbusmock dbus-daemon util-linux
  mmdebstrap systemd-container nix-bin libkmod-dev clang libclang-rt-14-dev
  libsimdjson-dev ansible-core ansible-lint
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install: ${missing[*]} (run: sudo $0)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build

echo
echo "setup: built build/src/gpuwarm. What it says about this machine:"
echo
set +e
build/src/gpuwarm diagnose
rc=$?
set -e
echo
echo "setup: done (diagnose exit code $rc; see README for what the codes mean)."
