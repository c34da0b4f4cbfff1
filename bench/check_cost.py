#!/usr/bin/env python3
"""What one `gpuwarm check` costs against one `nvidia-smi --query-gpu=persistence_mode --format=csv,noheader`
spawn (the cheapest way a health check can ask for persistence). Interleaved runs, medians of wall time and
of CPU time (user + system of the child). Run it on a GPU node:

  bench/check_cost.py --gpuwarm build/src/gpuwarm --runs 21

--baseline OTHER_GPUWARM times another build's check in the same interleaving (before/after a change).
--processes N starts N idle processes first (stopped afterwards): check walks /proc, and a busy node has
hundreds to thousands of processes where a test machine has a few.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys

from metrics_cost import measure


def count_processes():
    return sum(1 for e in os.listdir("/proc") if e.isdigit())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--baseline", help="another gpuwarm binary, timed side by side")
    ap.add_argument("--nvidia-smi", default=shutil.which("nvidia-smi") or "nvidia-smi")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--processes", type=int, default=0, help="idle processes to start first")
    ap.add_argument("gpuwarm_args", nargs="*", help="extra arguments for gpuwarm check")
    args = ap.parse_args()
    commands = {"gpuwarm check": [args.gpuwarm, "check", *args.gpuwarm_args]}
    if args.baseline:
        commands["gpuwarm check (baseline)"] = [args.baseline, "check", *args.gpuwarm_args]
    commands["nvidia-smi persistence_mode"] = [args.nvidia_smi, "--query-gpu=persistence_mode", "--format=csv,noheader"]

    idle = []
    try:
        for _ in range(args.processes):
            idle.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         start_new_session=True))
        results = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                wall, cpu, rc = measure(cmd)
                if name.startswith("nvidia-smi") and rc != 0:
                    sys.exit(f"{' '.join(cmd)} exited {rc}")
                results[name].append((wall, cpu))
        processes = count_processes()
    finally:
        for p in idle:
            p.send_signal(signal.SIGKILL)
        for p in idle:
            p.wait()

    print(f"{args.runs} runs each, interleaved (medians), {processes} processes under /proc:")
    med = {}
    for name, rows in results.items():
        med[name] = (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
        print(f"  {name:28s} wall {med[name][0] * 1e3:7.1f} ms   cpu {med[name][1] * 1e3:7.1f} ms")
    (w1, c1), (w2, c2) = med["gpuwarm check"], med["nvidia-smi persistence_mode"]
    print(f"  ratio gpuwarm check / nvidia-smi: wall {w1 / w2:.2f}, cpu {c1 / c2:.2f} (target <= 1.0)")
    if args.baseline:
        wb, cb = med["gpuwarm check (baseline)"]
        print(f"  ratio gpuwarm check / baseline: wall {w1 / wb:.2f}, cpu {c1 / cb:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
