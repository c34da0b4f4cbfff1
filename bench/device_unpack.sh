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
echo "== $(hostname) $(date -u +%FT%TZ) $("$gpuwarm" --version | head -n2 | tr '\n' ' ')"  # version and commit
module=$(head -n1 /proc/driver/nvidia/version 2>/dev/null | grep -o '[0-9]\+\.[0-9]\+\(\.[0-9]\+\)\?' | head -n1 || true)
echo "== kernel module ${module:-(none loaded)}"

# Starts `gpuwarm probe ARGS...` in the background (JSON to $out/probe.json, stderr to $out/probe.err), sets $probe
# to its pid ($probe_started to when it began) and returns once it holds the timing lock exclusively (a shared
# try fails from then on), or after 30 s.
start_probe_and_wait() {
  "$gpuwarm" probe "$@" --json > "$out/probe.json" 2> "$out/probe.err" &
  probe=$!
  probe_started=$SECONDS
  while flock -n -s /run/gpuwarm-timing.lock true 2>/dev/null && (( SECONDS - probe_started < 30 )); do sleep 0.02; done
  echo "probe holds the timing lock after $(( SECONDS - probe_started )) s"
}
