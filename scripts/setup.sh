#!/usr/bin/env bash
# Fresh Debian 12 -> built gpuwarm. Installs the Debian packages the build (and,
# unless --build-only, the tests and packaging) need, builds build/ (Release, no
# debug info), and runs `gpuwarm diagnose` once so you see what it says about
# this machine. Works as root, or as a user with sudo (asked only when packages
# are missing).
#   scripts/setup.sh               build, tests, packaging
#   scripts/setup.sh --build-only  just what building gpuwarm needs
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=0
case "${1:-}" in
  --build-only) build_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  *) echo "setup: unknown option $1 (use --build-only or nothing)" >&2; exit 2 ;;
esac

packages=(
  build-essential cmake ninja-build pkg-config git
  libcli11-dev nlohmann-json3-dev libfmt-dev libexpected-dev libsimdjson-dev
)
if ((build_only == 0)); then
  packages+=(
    libgtest-dev libgmock-dev libbenchmark-dev
    python3 python3-dbus python3-gi python3-dbusmock dbus-daemon util-linux
    mmdebstrap systemd-container nix-bin clang libclang-rt-14-dev
    ansible-core ansible-lint libsystemd0 libkmod2 kmod
    pandoc rpm man-db prometheus prometheus-node-exporter libmicrohttpd12
    slurmctld slurmd slurm-client munge iproute2 shellcheck python3-yaml zsh
  )
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
      echo "setup: need root to install: ${missing[*]} (no sudo here: run this script as root)" >&2
      exit 1
    fi
    as_root=(sudo)
  fi
  echo "setup: installing ${missing[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

tests=ON
((build_only == 0)) || tests=OFF
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUWARM_BUILD_TESTS=$tests >/dev/null
cmake --build build

echo
echo "setup: built build/src/gpuwarm ($(du -h build/src/gpuwarm | cut -f1)). What it says about this machine:"
echo
set +e
build/src/gpuwarm diagnose
rc=$?
set -e
echo
echo "setup: done (diagnose exit code $rc; see README for what the codes mean)."
