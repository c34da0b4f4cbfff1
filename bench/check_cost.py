#!/usr/bin/env python3
"""What one `gpuwarm check` costs against one `nvidia-smi --query-gpu=persistence_mode --format=csv,noheader`
spawn (the cheapest way a health check can ask for persistence). Interleaved runs, medians of wall time and
of CPU time (user + system of the child). Run it on a GPU node:

  bench/check_cost.py --gpuwarm build/src/gpuwarm --runs 21
"""
import argparse
import shutil
import statistics
import sys

from metrics_cost import measure


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--nvidia-smi", default=shutil.which("nvidia-smi") or "nvidia-smi")
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("gpuwarm_args", nargs="*", help="extra arguments for gpuwarm check")
    args = ap.parse_args()
    commands = {
        "gpuwarm check": [args.gpuwarm, "check", *args.gpuwarm_args],
        "nvidia-smi persistence_mode": [args.nvidia_smi, "--query-gpu=persistence_mode", "--format=csv,noheader"],
    }
    results = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            wall, cpu, rc = measure(cmd)
            if name != "gpuwarm check" and rc != 0:
                sys.exit(f"{' '.join(cmd)} exited {rc}")
            results[name].append((wall, cpu))
    print(f"{args.runs} runs each, interleaved (medians):")
    med = {}
    for name, rows in results.items():
        med[name] = (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
        print(f"  {name:28s} wall {med[name][0] * 1e3:7.1f} ms   cpu {med[name][1] * 1e3:7.1f} ms")
    (w1, c1), (w2, c2) = med["gpuwarm check"], med["nvidia-smi persistence_mode"]
    print(f"  ratio gpuwarm check / nvidia-smi: wall {w1 / w2:.2f}, cpu {c1 / c2:.2f} (target <= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
