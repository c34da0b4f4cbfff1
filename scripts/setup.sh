#!/usr/bin/env bash
# Fresh Debian 12 -> built gpuwarm. Installs the Debian packages the build (and,
# unless --build-only, the tests and packaging) need, builds build/ (Release, no
# debug info), and runs `gpuwarm diagnose` once so you see what it says about
# this machine. Works as root, or as a user with sudo (asked only when packages
# are missing). Meant for a development or CI machine: on GPU nodes install the
# packages (scripts/package.sh) instead.
#   scripts/setup.sh               build, tests, packaging
#   scripts/setup.sh --build-only  just what building gpuwarm needs
# The test tools include daemons (Prometheus, node_exporter, Slurm, munge) that
# the tests start themselves, on loopback: the ones this script installs are
# neither started nor enabled.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=0
case "${1:-}" in
  --build-only) build_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
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
  # Debian starts and enables a daemon's service when its package is installed. Those the tests bring along
  # (Prometheus and node_exporter on every interface without authentication, a Slurm controller) have no place
  # running on this machine: a policy-rc.d that refuses starts keeps them stopped during the install (unless
  # one is in place already, as in container images), and the ones installed now are disabled after it.
  policy=/usr/sbin/policy-rc.d
  placed_policy=0
  if [[ ! -e $policy ]]; then
    # Called as `policy-rc.d [--quiet] NAME ACTION`, NAME an init script or a unit: only the test daemons are
    # refused; the services the install upgrades on the way (systemd, dbus) restart as usual.
    "${as_root[@]}" install -m 0755 /dev/stdin "$policy" <<'POLICY'
#!/bin/sh
# scripts/setup.sh: the test daemons it installs do not start
for arg; do
  case $arg in
    --*) ;;
    *) name=${arg%.service}; break ;;
  esac
done
case ${name:-} in
  prometheus | prometheus-node-exporter | slurmctld | slurmd | munge) exit 101 ;;
esac
exit 0
POLICY
    placed_policy=1
  fi
  # The test daemons this run installs are stopped and disabled however the install ends: one that failed or was
  # interrupted part way has configured (and enabled) some of them already.
  quiet_test_daemons() {
    local p
    for p in "${missing[@]}"; do
      case $p in
        prometheus | prometheus-node-exporter | slurmctld | slurmd | munge)
          [[ -e /lib/systemd/system/$p.service || -e /usr/lib/systemd/system/$p.service ]] || continue
          # Stopped in case a policy-rc.d of this machine's own let it start; systemctl edits the links without
          # a running systemd too, and the packages' upgrades keep a unit disabled.
          if [[ -d /run/systemd/system ]]; then
            "${as_root[@]}" systemctl stop "$p.service" 2>/dev/null || true
          fi
          "${as_root[@]}" systemctl disable --quiet "$p.service" 2>/dev/null || true
          echo "setup: installed $p for the tests, its service stopped and disabled"
          ;;
      esac
    done
  }
  remove_policy() { if ((placed_policy)); then "${as_root[@]}" rm -f "$policy"; fi; }
  trap 'quiet_test_daemons; remove_policy' EXIT
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  quiet_test_daemons
  remove_policy
  trap - EXIT
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
