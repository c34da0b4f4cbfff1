#!/usr/bin/env python3
"""What one `gpuwarm metrics` costs against what nvidia_gpu_exporter pays per scrape: one
`nvidia-smi --query-gpu=persistence_mode,clocks.sm,clocks_event_reasons.active --format=csv` spawn.
Interleaved runs, medians of wall time and of CPU time (user + system of the child). Run it on a GPU node:

  bench/metrics_cost.py --gpuwarm build/src/gpuwarm --runs 21
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time


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
    ap.add_argument("gpuwarm_args", nargs="*", help="extra arguments for gpuwarm metrics (e.g. --no-systemd)")
    args = ap.parse_args()
    ours = [args.gpuwarm, "metrics", *args.gpuwarm_args]
    theirs = [args.nvidia_smi, "--query-gpu=persistence_mode,clocks.sm,clocks_event_reasons.active", "--format=csv"]
    results = {"gpuwarm metrics": [], "nvidia-smi --query-gpu": []}
    for _ in range(args.runs):
        for name, cmd in (("gpuwarm metrics", ours), ("nvidia-smi --query-gpu", theirs)):
            wall, cpu, rc = measure(cmd)
            if rc != 0:
                sys.exit(f"{' '.join(cmd)} exited {rc}")
            results[name].append((wall, cpu))
    print(f"{args.runs} runs each, interleaved (medians):")
    med = {}
    for name, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        med[name] = (wall, cpu)
        print(f"  {name:24s} wall {wall * 1e3:7.1f} ms   cpu {cpu * 1e3:7.1f} ms")
    (w1, c1), (w2, c2) = med["gpuwarm metrics"], med["nvidia-smi --query-gpu"]
    print(f"  ratio gpuwarm / nvidia-smi: wall {w1 / w2:.2f}, cpu {c1 / c2:.2f} (target <= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
