#!/usr/bin/env python3
"""What one `gpuwarm metrics` costs against what nvidia_gpu_exporter pays per scrape: one
`nvidia-smi --query-gpu=persistence_mode,clocks.sm,clocks_event_reasons.active --format=csv` spawn.
Interleaved runs, medians of wall time and of CPU time (user + system of the child). With --exporter, also
one scrape of a resident `gpuwarm metrics --listen` (--min-interval 0: every scrape collects, NVML opened
and shut down each time): wall per scrape (median) and CPU per scrape (the exporter's utime + stime over all
scrapes, divided), and its resident set between scrapes. Run it on a GPU node:

  bench/metrics_cost.py --gpuwarm build/src/gpuwarm --runs 21 --exporter
"""
import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request


def process_cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def rss_kib(pid):
    m = re.search(r"^VmRSS:\s+(\d+) kB", open(f"/proc/{pid}/status").read(), re.M)
    return int(m.group(1))


def start_exporter(gpuwarm, extra):
    proc = subprocess.Popen([gpuwarm, "metrics", "--listen", "127.0.0.1:0", "--min-interval", "0", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"http://(127\.0\.0\.1:\d+)/metrics", line)
    if not m:
        proc.kill()
        sys.exit("exporter did not start: " + line)
    return proc, f"http://{m.group(1)}/metrics"


def scrape(url):
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as r:
        r.read()
    return time.perf_counter() - t0


def measure(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--nvidia-smi", default=shutil.which("nvidia-smi") or "nvidia-smi")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--exporter", action="store_true", help="also time scrapes of a resident --listen exporter")
    ap.add_argument("gpuwarm_args", nargs="*", help="extra arguments for gpuwarm metrics (e.g. --no-systemd)")
    args = ap.parse_args()
    exporter = url = None
    scrapes = []
    if args.exporter:
        exporter, url = start_exporter(args.gpuwarm, args.gpuwarm_args)
        scrape(url)  # the first collection loads what later ones reuse; not counted
        cpu_start = process_cpu_seconds(exporter.pid)
    ours = [args.gpuwarm, "metrics", *args.gpuwarm_args]
    theirs = [args.nvidia_smi, "--query-gpu=persistence_mode,clocks.sm,clocks_event_reasons.active", "--format=csv"]
    # The facts a gpuwarm collection reads from NVML at decision depth, asked of nvidia-smi: what the
    # same answer costs that way (the application clocks alone are about 7 ms of NVML on an H200).
    same_facts = [args.nvidia_smi, "--query-gpu=uuid,pci.bus_id,persistence_mode,pstate,clocks.sm,clocks.mem,"
                  "clocks.applications.graphics,clocks.default_applications.graphics,clocks_event_reasons.active,"
                  "clocks_event_reasons.supported,display_active", "--format=csv"]
    results = {"gpuwarm metrics": [], "nvidia-smi --query-gpu": [], "nvidia-smi, same facts": []}
    for _ in range(args.runs):
        for name, cmd in (("gpuwarm metrics", ours), ("nvidia-smi --query-gpu", theirs),
                          ("nvidia-smi, same facts", same_facts)):
            wall, cpu, rc = measure(cmd)
            if rc != 0:
                sys.exit(f"{' '.join(cmd)} exited {rc}")
            results[name].append((wall, cpu))
        if exporter:
            scrapes.append(scrape(url))
    print(f"{args.runs} runs each, interleaved (medians):")
    med = {}
    for name, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        med[name] = (wall, cpu)
        print(f"  {name:24s} wall {wall * 1e3:7.1f} ms   cpu {cpu * 1e3:7.1f} ms")
    (w1, c1), (w2, c2) = med["gpuwarm metrics"], med["nvidia-smi --query-gpu"]
    w3, c3 = med["nvidia-smi, same facts"]
    print(f"  ratio gpuwarm / nvidia-smi: wall {w1 / w2:.2f}, cpu {c1 / c2:.2f} (target <= 1.0)")
    print(f"  ratio gpuwarm / nvidia-smi asking the same facts: wall {w1 / w3:.2f}, cpu {c1 / c3:.2f}")
    if exporter:
        cpu = (process_cpu_seconds(exporter.pid) - cpu_start) / len(scrapes)
        wall = statistics.median(scrapes)
        time.sleep(1)
        rss = rss_kib(exporter.pid)
        fds = [os.readlink(f"/proc/{exporter.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{exporter.pid}/fd")]
        exporter.terminate()
        exporter.wait(timeout=10)
        print(f"  {'exporter scrape':24s} wall {wall * 1e3:7.1f} ms   cpu {cpu * 1e3:7.1f} ms (mean of {len(scrapes)})")
        print(f"  ratio exporter scrape / nvidia-smi: wall {wall / w2:.2f}, cpu {cpu / c2:.2f} (target <= 1.0)")
        print(f"  ratio exporter scrape / nvidia-smi asking the same facts: wall {wall / w3:.2f}, cpu {cpu / c3:.2f}")
        print(f"  exporter resident set between scrapes: {rss / 1024:.1f} MiB; "
              f"GPU device files held between scrapes: {[f for f in fds if '/dev/nvidia' in f] or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
