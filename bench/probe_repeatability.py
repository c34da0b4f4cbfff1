#!/usr/bin/env python3
"""How repeatable is `gpuwarm probe`? Runs it N times (default 5) and prints,
per GPU and stage, each run, the median and the spread (max - min). A
benchmark, not a test: nothing is asserted."""
import argparse
import json
import statistics
import subprocess


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = []
    for _ in range(args.runs):
        r = subprocess.run([args.gpuwarm, "probe", "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            print("probe failed:", r.stderr.strip() or r.stdout[-500:])
            return 1
        runs.append(json.loads(r.stdout))
    for gi, gpu in enumerate(runs[0]["gpus"]):
        print(f"GPU {gpu['index']} {gpu['uuid']}")
        names = [s["name"] for s in gpu["stages"]] + ["TOTAL"]
        print(f"  {'stage':14s}" + "".join(f"{'run' + str(i + 1):>8s}" for i in range(args.runs)) +
              f"{'median':>9s}{'spread':>9s}")
        for name in names:
            vals = []
            for run in runs:
                stages = run["gpus"][gi]["stages"]
                vals.append(sum(s["ms"] for s in stages) if name == "TOTAL"
                            else next(s["ms"] for s in stages if s["name"] == name))
            med = statistics.median(vals)
            print(f"  {name:14s}" + "".join(f"{v:8.1f}" for v in vals) + f"{med:9.1f}{max(vals) - min(vals):9.1f}")
    walls = [r["wall_ms"] for r in runs]
    print(f"wall ms per run (all GPUs in parallel): {[round(w, 1) for w in walls]}, median {statistics.median(walls):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
