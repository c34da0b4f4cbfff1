#!/usr/bin/env python3
"""gpuwarm diagnose vs the runbook's manual pre-checks, side by side, one run.

Each round runs, in rotating order: `gpuwarm diagnose --json`; the manual
sequence (three nvidia-smi calls, `which nvidia-persistenced`, and
`systemctl status nvidia-persistenced` where systemctl exists); and one bare
`nvidia-smi --query-gpu=persistence_mode`. Wall time per command; medians and
ratios are printed. Benchmarks are not tests: nothing here asserts.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import time


def timed(argv_list):
    start = time.perf_counter()
    for argv in argv_list:
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - start) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()

    smi = shutil.which("nvidia-smi")
    if not smi:
        print("nvidia-smi not found: this benchmark needs a GPU node")
        return 0
    manual = [
        [smi, "--query-gpu=index,name,persistence_mode,pstate", "--format=csv"],
        [smi, "-q", "-d", "PERFORMANCE"],
        [smi, "-q", "-d", "CLOCK"],
        ["sh", "-c", "command -v nvidia-persistenced"],
    ]
    if shutil.which("systemctl"):
        manual.append(["systemctl", "status", "--no-pager", "nvidia-persistenced"])
    cases = {
        "gpuwarm diagnose --json": [[args.gpuwarm, "diagnose", "--json"]],
        "manual pre-check sequence": manual,
        "nvidia-smi persistence_mode": [[smi, "--query-gpu=persistence_mode", "--format=csv"]],
    }
    names = list(cases)
    samples = {n: [] for n in names}
    for name in names:  # warm-up: page cache, first-exec costs
        timed(cases[name])
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            samples[name].append(timed(cases[name]))

    print(f"rounds: {args.rounds}  (host {os.uname().nodename})")
    if not shutil.which("systemctl"):
        print("note: no systemctl on this node, so the manual sequence has 4 steps")
    med = {n: statistics.median(samples[n]) for n in names}
    for n in names:
        s = sorted(samples[n])
        print(f"{n:32s} median {med[n]:8.1f} ms   min {s[0]:8.1f}   max {s[-1]:8.1f}")
    g = med["gpuwarm diagnose --json"]
    print(f"ratio gpuwarm / manual sequence     = {g / med['manual pre-check sequence']:.3f}  (target <= 0.25)")
    print(f"ratio gpuwarm / bare nvidia-smi     = {g / med['nvidia-smi persistence_mode']:.3f}  (target <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
