#!/usr/bin/env python3
"""Per-GPU truth and what a job pays, side by side (issue 20's check).

Each round runs, interleaved: `probe --per-gpu` (each GPU alone, one at a time),
`probe --per-gpu --parallel` (every GPU at once) and `probe --node` (a job's start
as one process and as a process per GPU). Prints medians over the rounds and the
ratios that say whether parallel per-GPU probing distorts (parallel wall / slowest
GPU alone, target <= 1.2) and what a job pays against one GPU.

--contention also starts two probe children at once on the SAME GPU (so it runs
on a one-GPU machine) against one alone: if the driver serializes cold-start
stages across processes, each child's cuInit / context retain grows.

A benchmark, not a test: nothing is asserted. Extra arguments after -- go to
every probe (e.g. --nvml/--cuda for the fakes)."""
import argparse
import json
import os
import statistics
import subprocess
import sys


def probe(gpuwarm, extra, *args):
    r = subprocess.run([gpuwarm, "probe", "--json", *args, *extra], capture_output=True, text=True, timeout=900)
    d = json.loads(r.stdout)
    if r.returncode != 0:
        sys.exit(f"probe {' '.join(args)} failed (exit {r.returncode}): {d.get('error') or d}")
    return d


def stage(stages, name):
    return sum(s["ms"] for s in stages if s["name"] == name)


def med(values):
    """Median of the figures present: a failed probe has none (null), and is not a zero."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def child_pair(gpuwarm, extra, uuid, together):
    """Probe children on one GPU: alone (1) or two at once; their cu_init and ctx_retain."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=uuid)
    procs = [subprocess.Popen([gpuwarm, "probe", "--child", *extra], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2 if together else 1)]
    out = []
    for p in procs:
        d = json.loads(p.communicate(timeout=300)[0])
        out.append((stage(d["stages"], "cu_init"), stage(d["stages"], "ctx_retain")))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--contention", action="store_true")
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()

    isolated, parallel, node = [], [], []
    for _ in range(args.rounds):
        isolated.append(probe(args.gpuwarm, args.extra, "--per-gpu"))
        parallel.append(probe(args.gpuwarm, args.extra, "--per-gpu", "--parallel"))
        node.append(probe(args.gpuwarm, args.extra, "--node"))
    gpus = [(g["index"], g["uuid"]) for g in isolated[0]["gpus"]]
    print(f"{len(gpus)} GPU(s), {args.rounds} rounds, medians in ms\n")
    print(f"{'GPU':4s}{'alone cu_init':>15s}{'alone ctx':>11s}{'alone ready':>13s}"
          f"{'parallel cu_init':>18s}{'parallel ctx':>14s}{'parallel total':>16s}")
    for i, (index, _) in enumerate(gpus):
        a = [r["gpus"][i] for r in isolated]
        p = [r["gpus"][i] for r in parallel]
        print(f"{index:<4d}{med([stage(g['stages'], 'cu_init') for g in a]):15.1f}"
              f"{med([stage(g['stages'], 'ctx_retain') for g in a]):11.1f}"
              f"{med([g['launch_to_ready_ms'] for g in a]):13.1f}"
              f"{med([stage(g['stages'], 'cu_init') for g in p]):18.1f}"
              f"{med([stage(g['stages'], 'ctx_retain') for g in p]):14.1f}{med([g['total_ms'] for g in p]):16.1f}")
    slowest_alone = med([max(g["launch_to_ready_ms"] for g in r["gpus"]) for r in isolated])
    slowest_alone_wall = med([max(g["wall_ms"] for g in r["gpus"]) for r in isolated])
    parallel_wall = med([r["wall_ms"] for r in parallel])
    print(f"\nslowest GPU alone: ready {slowest_alone:.1f}, spawn-to-exit {slowest_alone_wall:.1f}")
    print(f"parallel per-GPU probe, wall: {parallel_wall:.1f}  ->  {parallel_wall / slowest_alone_wall:.2f}x the "
          "slowest GPU alone (spawn to exit; target <= 1.2 if parallel were the default)")
    print(f"\n{'job start':26s}{'cu_init':>9s}{'ctx_retain':>12s}{'alloc_sync':>12s}{'READY':>9s}{'x alone':>9s}")
    for k, title in enumerate(["one process, every GPU", "a process per GPU"]):
        jobs = [r["jobs"][k] for r in node]
        ready = med([j["ready_ms"] for j in jobs])
        print(f"{title:26s}{med([stage(j['stages'], 'cu_init') for j in jobs]):9.1f}"
              f"{med([stage(j['stages'], 'ctx_retain') for j in jobs]):12.1f}"
              f"{med([stage(j['stages'], 'alloc_sync') for j in jobs]):12.1f}{ready:9.1f}{ready / slowest_alone:9.2f}")

    if args.contention:
        uuid = gpus[0][1]
        alone, pair = [], []
        for _ in range(args.rounds):
            alone += child_pair(args.gpuwarm, args.extra, uuid, together=False)
            pair += child_pair(args.gpuwarm, args.extra, uuid, together=True)
        a_init, a_ctx = med([x[0] for x in alone]), med([x[1] for x in alone])
        p_init, p_ctx = med([x[0] for x in pair]), med([x[1] for x in pair])
        print(f"\ncontention on GPU {gpus[0][0]} (two probe children at once vs one alone, medians of "
              f"{len(pair)} vs {len(alone)} children):")
        print(f"  cu_init    alone {a_init:8.1f}  two at once {p_init:8.1f}  ->  {p_init / a_init:.2f}x")
        print(f"  ctx_retain alone {a_ctx:8.1f}  two at once {p_ctx:8.1f}  ->  {p_ctx / a_ctx:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
