#!/usr/bin/env python3
"""`gpuwarm lint` against `grep -rnE` with equivalent patterns, on one generated
tree (default 50,000 files: Ansible tasks, shell scripts, units, Nix, cron; about
1 in 200 with a finding). Each is run --runs times, interleaved; medians and
the ratio lint / grep are printed. Then one file of 20k, 40k, 80k and 160k
offending lines (half opted out): lint's time per 1,000 lines stays flat if it is
linear in file size. A benchmark, not a test: nothing is asserted."""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time

GREP_PATTERN = (r"nvidia-smi.*(-pm|--persistence-mode)[ =]*['\"]?(1|ENABLED|Enabled)|--no-persistence-mode"
                r"|StopWhenUnneeded=(true|yes)|PIDFile=/var/run|^Type=(simple|exec)|^Restart=")

TEMPLATES = {
    "yml": "- name: task {n}\n  command: /usr/bin/true --flag {n}\n  when: inventory_hostname in groups['gpu']\n"
           "- name: query {n}\n  shell: nvidia-smi --query-gpu=name --format=csv\n  register: out_{n}\n" * 3,
    "sh": "#!/bin/bash\nset -euo pipefail\n# node init {n}\nfor i in 1 2 3; do echo $i; done\n"
          "nvidia-smi -q -d CLOCK > /tmp/clk.{n}\nsystemctl is-active nvidia-persistenced\n" * 3,
    "service": "[Unit]\nDescription=Service {n}\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/true {n}\n"
               "[Install]\nWantedBy=multi-user.target\n",
    "nix": "{{ config, pkgs, ... }}:\n{{\n  services.foo{n}.enable = true;\n  environment.systemPackages = "
           "[ pkgs.htop ];\n}}\n",
    "cron": "# m h dom mon dow command\n*/5 * * * * root /usr/local/bin/check-{n}.sh\n",
}
BAD = {
    "yml": "- name: legacy\n  command: nvidia-smi -pm 1\n",
    "sh": "sudo nvidia-smi -i 0 -pm ENABLED\n",
    "service": "[Unit]\nStopWhenUnneeded=true\n[Service]\nType=forking\n"
               "ExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n",
    "nix": "  systemd.services.x.script = ''nvidia-smi -pm 1'';\n",
    "cron": "@reboot root nvidia-smi -pm 1\n",
}


def generate(root, count):
    rng = random.Random(42)
    kinds = list(TEMPLATES)
    for n in range(count):
        kind = kinds[n % len(kinds)]
        d = os.path.join(root, f"d{n // 1000:03d}", f"s{(n // 50) % 20:02d}")
        os.makedirs(d, exist_ok=True)
        text = TEMPLATES[kind].format(n=n)
        if rng.random() < 0.005:
            text += BAD[kind]
        name = {"cron": f"cron.d-job{n}", "service": f"unit{n}.service"}.get(kind, f"file{n}.{kind}")
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


def timed(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t, r.returncode


def linearity(args):
    print("one file of N offending lines, half with an opt-out comment (medians):")
    base = None
    with tempfile.TemporaryDirectory(prefix="gpuwarm-lint-lines-") as d:
        for n in (20000, 40000, 80000, 160000):
            path = os.path.join(d, f"init-{n}.sh")
            with open(path, "w") as f:
                for i in range(n):
                    f.write("nvidia-smi -pm 1  # gpuwarm: ignore LINT001\n" if i % 2 else "nvidia-smi -pm 1\n")
            times = []
            for _ in range(args.runs):
                t, rc = timed([args.gpuwarm, "lint", path])
                assert rc == 3, rc
                times.append(t)
            m = statistics.median(times)
            per_k = m * 1e3 / (n / 1000)
            base = base or per_k
            print(f"  {n:7d} lines  {m * 1e3:8.1f} ms   {per_k:.2f} ms per 1,000 lines ({per_k / base:.2f} x the 20k rate)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--files", type=int, default=50000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only-linearity", action="store_true", help="skip the 50,000-file tree")
    args = ap.parse_args()
    linearity(args)
    if args.only_linearity:
        return 0
    root = tempfile.mkdtemp(prefix="gpuwarm-lint-bench-")
    try:
        generate(root, args.files)
        subprocess.run(["grep", "-rqE", "x", root])  # warm the page cache for both
        lint_t, grep_t = [], []
        for _ in range(args.runs):
            t, rc = timed([args.gpuwarm, "lint", root, "--json"])
            assert rc in (0, 3), rc
            lint_t.append(t)
            t, rc = timed(["grep", "-rnE", GREP_PATTERN, root])
            assert rc in (0, 1), rc
            grep_t.append(t)
        lm, gm = statistics.median(lint_t), statistics.median(grep_t)
        print(f"{args.files} files, {args.runs} runs each, interleaved (medians):")
        print(f"  gpuwarm lint --json   {lm * 1e3:8.1f} ms   runs: " + ", ".join(f"{t * 1e3:.0f}" for t in lint_t))
        print(f"  grep -rnE (patterns)  {gm * 1e3:8.1f} ms   runs: " + ", ".join(f"{t * 1e3:.0f}" for t in grep_t))
        print(f"  ratio lint / grep: {lm / gm:.2f} (target <= 1.0)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
