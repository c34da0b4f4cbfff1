# Sourced by the bench/device_*.sh scripts on a lent GPU machine: unpacks the tarball carried in .devbin/
# into a fresh folder and sets $gpuwarm to its binary; the driver's tools and libraries live in
# /usr/local/nvidia there (FACTS.md §0b).
tarball=$(ls .devbin/gpuwarm-*-linux-x86_64.tar.gz | head -n1)
dest=$(mktemp -d /tmp/gpuwarm-bench.XXXXXX)
tar -xzf "$tarball" -C "$dest" --strip-components=1
gpuwarm=$dest/bin/gpuwarm
export PATH=$PATH:/usr/local/nvidia/bin
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/nvidia/lib64  # no empty entry: the loader reads it as the working directory
# Every run says where, when and which build; `module` is the loaded kernel module's version ("" without one).
echo "== $(hostname) $(date -u +%FT%TZ) $("$gpuwarm" --version | head -n1)"
module=$(head -n1 /proc/driver/nvidia/version 2>/dev/null | grep -o '[0-9]\+\.[0-9]\+\(\.[0-9]\+\)\?' | head -n1 || true)
echo "== kernel module ${module:-(none loaded)}"
