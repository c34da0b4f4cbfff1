#!/usr/bin/env bash
# The resident exporter on a real GPU node, read-only (it only reads NVML):
#   bash scripts/package.sh && mkdir -p .devbin && cp dist/gpuwarm-*-linux-x86_64.tar.gz .devbin/
#   (where the node has no libmicrohttpd.so.12: also copy it, and what it needs, into .devbin/lib/)
#   device: bash bench/device_exporter.sh        (carry .devbin)
# Prints, medians of $ROUNDS rounds: a scrape's time alone; /healthz alone; /healthz while four scrapes
# wait for one collection (and its ratio to /healthz alone); then, per round, whether a scrape in flight
# when SIGTERM came still got its answer; then bench/exporter_pressure.py (hosts holding connections) for this
# build and, where .devbin/old/ has an earlier tarball, that one.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-7}
. bench/device_unpack.sh
if ! ldconfig -p | grep -q 'libmicrohttpd.so.12 '; then
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$PWD/.devbin/lib
  echo "(libmicrohttpd.so.12 from .devbin/lib: the node has none)"
fi
nvidia-smi -L 2>/dev/null || true
python3 - "$gpuwarm" "$rounds" <<'EOF'
import concurrent.futures, http.client, os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.parse

gpuwarm, rounds = sys.argv[1], int(sys.argv[2])

def start():
    log = tempfile.NamedTemporaryFile("w+", delete=False)
    p = subprocess.Popen([gpuwarm, "metrics", "--listen", "127.0.0.1:0", "--min-interval", "0"],
                         stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(500):
        m = re.search(r"serving http://127\.0\.0\.1:(\d+)/", open(log.name).read())
        if m:
            return p, f"http://127.0.0.1:{m.group(1)}", log.name
        if p.poll() is not None:
            sys.exit("exporter did not start: " + open(log.name).read())
        time.sleep(0.02)
    sys.exit("exporter did not start in 10 s")

def get(url, timeout=60, source="127.0.0.1"):
    # From `source`: the exporter limits connections per client address (all of 127/8 is loopback).
    parts = urllib.parse.urlsplit(url)
    t = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", parts.path or "/")
        r = conn.getresponse()
        body = r.read().decode()
        return r.status, time.monotonic() - t, body
    finally:
        conn.close()

p, url, log = start()
status, _, body = get(url + "/metrics")
print("metrics:", status, "gpus:", len(re.findall(r"^gpuwarm_gpu_persistence_mode\{", body, re.M)),
      "| verdict line:", next((l for l in body.splitlines() if l.startswith("gpuwarm_verdict{")), "?"))
alone, health_alone, health_busy, busy_scrapes = [], [], [], []
for _ in range(rounds):
    alone.append(get(url + "/metrics")[1])
    health_alone.append(get(url + "/healthz")[1])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        scrapes = [pool.submit(get, url + "/metrics", 60, f"127.0.0.{2 + n}") for n in range(4)]
        time.sleep(min(alone) / 3)
        s, took, _ = get(url + "/healthz")
        in_flight = sum(not f.done() for f in scrapes)
        health_busy.append((took, in_flight))
        busy_scrapes.append(max(f.result()[1] for f in scrapes))
med = statistics.median
print(f"scrape alone           median {med(alone)*1000:8.1f} ms")
print(f"/healthz alone         median {med(health_alone)*1000:8.1f} ms")
print(f"/healthz during 4 scrapes median {med(t for t, _ in health_busy)*1000:8.1f} ms "
      f"(scrapes still in flight when it was answered, per round: {[n for _, n in health_busy]})")
print(f"4 concurrent scrapes   median {med(busy_scrapes)*1000:8.1f} ms (slowest of the four)")
print(f"ratio /healthz during scrapes ÷ alone: {med(t for t, _ in health_busy) / med(health_alone):.2f}")
p.send_signal(signal.SIGTERM)
print("exit after SIGTERM:", p.wait(timeout=30))

answered = []
for i in range(rounds):
    p, url, log = start()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        f = pool.submit(get, url + "/metrics")
        time.sleep(min(alone) / 4)
        already = f.done()
        p.send_signal(signal.SIGTERM)
        try:
            s, took, _ = f.result()
            answered.append(f"{s}" if not already else "answered before the signal")
        except Exception as e:  # noqa: BLE001 (printed)
            answered.append(type(e).__name__)
        rc = p.wait(timeout=30)
    print(f"SIGTERM round {i + 1}: scrape -> {answered[-1]}, exporter exit {rc}")
print(f"scrapes in flight at SIGTERM that got 200: {answered.count('200')}/{rounds}")
EOF
echo "== guard (runs nvidia-persistenced --version in run_child's clean environment)"
"$gpuwarm" guard --json 2>&1 | head -c 1500 || true
echo
echo "== connection pressure (bench/exporter_pressure.py): this build beside .devbin/old's, real NVML"
pressure=("new=$gpuwarm")
if old=$(ls .devbin/old/*.tar.gz 2>/dev/null | head -n1) && [ -n "$old" ]; then
  olddir=$(mktemp -d /tmp/gpuwarm-old.XXXXXX)
  tar -xzf "$old" -C "$olddir" --strip-components=1
  pressure+=("old=$olddir/bin/gpuwarm")
fi
ROUNDS=${ROUNDS_PRESSURE:-5} python3 bench/exporter_pressure.py "${pressure[@]}"
