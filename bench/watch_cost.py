#!/usr/bin/env python3
"""What does `gpuwarm watch` cost? A benchmark, not a test: nothing is asserted.

1. CPU per sample of all GPUs, held and detached: the CPU time (user + sys, from
   wait4) of `watch --count 2+N` minus that of `watch --count 2` (the fewest it takes), over N.
2. The same CPU time for one spawn of
   `nvidia-smi --query-gpu=clocks.sm,clocks_event_reasons.active --format=csv`.
3. gpuwarm's own peak RSS (VmHWM, polled from /proc while it runs) during a
   held watch, a detached watch and, with --load, a watch with the built-in
   load (whose children are separate processes, not counted).

Each measurement is repeated --repeats times, interleaved, and reported as a
median; the ratio nvidia-smi / held sample is what the target (>= 20x) is about.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import time


def cpu_of(cmd):
    """(user+sys seconds, ru_maxrss KiB, peak VmHWM KiB) of one run of cmd, which must exit 0, 3 or 5."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    hwm = 0
    status_path = f"/proc/{p.pid}/status"
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid != 0:
            break
        try:
            with open(status_path) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.05)
    rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, 3, 5):
        raise SystemExit(f"{' '.join(cmd)} exited {rc}: {p.stderr.read().decode()[-500:]}")
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss, hwm


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--samples", type=int, default=200, help="N, samples per measuring run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rss-seconds", type=float, default=10, help="length of the RSS watches")
    ap.add_argument("--load", type=float, default=0, help="also measure RSS during watch --load SECONDS")
    args = ap.parse_args()
    gw = [args.gpuwarm, "watch", "--interval", "0", "--json"]
    smi = shutil.which("nvidia-smi")

    per_sample = {"held": [], "detached": []}
    smi_cpu = []
    for _ in range(args.repeats):
        for mode in per_sample:
            base, _, _ = cpu_of(gw + ["--mode", mode, "--count", "2"])
            many, _, _ = cpu_of(gw + ["--mode", mode, "--count", str(2 + args.samples)])
            per_sample[mode].append((many - base) / args.samples)
        if smi:
            cpu, _, _ = cpu_of([smi, "--query-gpu=clocks.sm,clocks_event_reasons.active", "--format=csv"])
            smi_cpu.append(cpu)

    print(f"CPU per sample of all GPUs (median of {args.repeats}, {args.samples} samples per run):")
    for mode, vals in per_sample.items():
        print(f"  watch --mode {mode:8s} {statistics.median(vals) * 1e3:8.3f} ms   runs: "
              + ", ".join(f"{v * 1e3:.3f}" for v in vals))
    if smi_cpu:
        smi_med = statistics.median(smi_cpu)
        print(f"  nvidia-smi spawn       {smi_med * 1e3:8.3f} ms   runs: " + ", ".join(f"{v * 1e3:.1f}" for v in smi_cpu))
        for mode, vals in per_sample.items():
            print(f"  ratio nvidia-smi / {mode} sample: {smi_med / statistics.median(vals):.1f}x")
    else:
        print("  nvidia-smi not found: no ratio")

    print(f"Peak RSS of gpuwarm itself (VmHWM), {args.rss_seconds:.0f} s watches at 1 s intervals:")
    runs = {
        "held": [args.gpuwarm, "watch", "--mode", "held", "--duration", f"{args.rss_seconds}s"],
        "detached": [args.gpuwarm, "watch", "--mode", "detached", "--duration", f"{args.rss_seconds}s"],
    }
    if args.load > 0:
        runs["detached --load"] = [args.gpuwarm, "watch", "--load", str(args.load)]
    for name, cmd in runs.items():
        # Not ru_maxrss: it keeps the peak of the forked Python from before exec.
        _, _, hwm = cpu_of(cmd)
        print(f"  {name:16s} VmHWM {hwm / 1024:6.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
