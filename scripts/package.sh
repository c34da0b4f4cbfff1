#!/usr/bin/env bash
# Builds the packages from this checkout into dist/ (or $GPUWARM_DIST):
#   gpuwarm_<version>_amd64.deb, gpuwarm-<version>-1.x86_64.rpm and the
#   relocatable gpuwarm-<version>-linux-x86_64.tar.gz.
# All three carry the portable binary (libstdc++ static, libsimdjson bundled in
# lib/gpuwarm/ with an $ORIGIN run path, glibc >= 2.34), the man page, bash and
# zsh completions and the guard's drop-in. Needs pandoc and rpm (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${GPUWARM_DIST:-$PWD/dist}
build=${GPUWARM_PACKAGE_BUILD:-build-package}
for tool in pandoc rpmbuild cmake ninja; do
  command -v "$tool" >/dev/null || { echo "package: $tool is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
mkdir -p "$dist"
configure() {
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGPUWARM_PORTABLE=ON -DGPUWARM_BUILD_TESTS=OFF -DGPUWARM_TEST_HOOKS=OFF \
    -DCMAKE_INSTALL_PREFIX=/usr "$@" >/dev/null
}
configure -DGPUWARM_ZSH_COMPLETION_DIR=share/zsh/vendor-completions
cmake --build "$build" -j "$(nproc)"
(cd "$build" && cpack -G "DEB;TGZ" -B "$dist" >/dev/null)
# RHEL and Fedora read zsh completions from site-functions.
configure -DGPUWARM_ZSH_COMPLETION_DIR=share/zsh/site-functions
(cd "$build" && cpack -G RPM -B "$dist" >/dev/null)
rm -rf "$dist/_CPack_Packages"
ls -1 "$dist"/gpuwarm*
