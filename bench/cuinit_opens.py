#!/usr/bin/env python3
"""Which GPUs' device files a process's cuInit opens, by what CUDA_VISIBLE_DEVICES shows it: none, GPU 0 alone,
every GPU. On driver 580 with one H100, cuInit with no GPU visible still opened /dev/nvidia0 six times
(device-s56.log). If a process that sees one GPU opens every /dev/nvidiaN, then without persistence its cuInit
initializes every GPU of the node, and `gpuwarm probe`'s per-GPU cuInit is the node's, not its GPU's.

Each case runs in a fresh python3 process with bench/openlog.c's shim preloaded (--preload), which logs every
open of a /dev/nvidia* file. Read-only: cuInit only, no context, no setting.
Usage: bench/cuinit_opens.py --preload .devbin/openlog.so [--cuda LIBCUDA] [--uuids GPU-a,GPU-b,...]"""
import argparse
import collections
import os
import subprocess
import sys

CHILD = r"""
import ctypes, sys
cuda = ctypes.CDLL(sys.argv[1])
print("cuInit", cuda.cuInit(0), flush=True)
"""


def gpu_uuids():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preload", required=True, help="the built bench/openlog.c")
    ap.add_argument("--cuda", default="libcuda.so.1", help="the CUDA driver library to load (default: the loader's)")
    ap.add_argument("--uuids", default="", help="the GPUs' UUIDs in NVML order (default: nvidia-smi's)")
    args = ap.parse_args()
    if not os.path.isfile(args.preload):
        print(f"cuinit_opens: no {args.preload} (build it: cc -shared -fPIC -O1 -o {args.preload} "
              "bench/openlog.c -ldl): skipped")
        return 0
    uuids = [u for u in args.uuids.split(",") if u] or gpu_uuids()
    cases = [("none (\"\")", ""), ("GPU 0 alone", uuids[0] if uuids else None), ("every GPU (unset)", None)]
    print(f"cuinit_opens: {len(uuids)} GPU(s); opens of each /dev/nvidia* file during one process's cuInit")
    rows = []
    nodes = set()
    for name, visible in cases:
        env = dict(os.environ, LD_PRELOAD=os.path.abspath(args.preload))
        env.pop("CUDA_VISIBLE_DEVICES", None)
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        try:
            r = subprocess.run([sys.executable, "-c", CHILD, args.cuda], env=env, capture_output=True, text=True,
                               timeout=120)
        except subprocess.TimeoutExpired:
            rows.append((name, "timed out", {}))
            continue
        opens = collections.Counter(line.split(" ", 1)[1] for line in r.stderr.splitlines()
                                    if line.startswith("[openlog] "))
        nodes.update(opens)
        answer = next((line.split()[1] for line in r.stdout.splitlines() if line.startswith("cuInit ")),
                      f"no answer (exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]})")
        rows.append((name, answer, opens))
    columns = sorted(nodes, key=lambda n: (len(n), n))
    print("CUDA_VISIBLE_DEVICES    cuInit  " + "  ".join(columns))
    for name, answer, opens in rows:
        print(f"{name:<22}  {answer:>6}  " + "  ".join(f"{opens.get(c, 0):>{len(c)}}" for c in columns))
    print("(cuInit 0: success, 100: no device visible; a count is how often that file was opened)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
