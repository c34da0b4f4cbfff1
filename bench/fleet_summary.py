#!/usr/bin/env python3
"""`gpuwarm fleet-summary` over a generated fleet (default 10,000 nodes of 8 GPUs),
one report file per node, against Python's json module reading the same files
(the obvious script an operator would write). The reports are real gpuwarm
output, made once by running gpuwarm against fake 8-GPU roots and the fake NVML
from the build tree: half `diagnose --json`, most of the rest `fix --json` (no
systemd there, so the fix report carries its diagnosis but no verification),
1 in 10 `probe --json` from the H100 example; hostnames are rewritten per node.
Also timed: the same reports as JSON lines on standard input. Each is run
--runs times, interleaved; medians and ratios are printed. A benchmark, not a
test: nothing is asserted but the exit codes."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "e2e"))

PY_BASELINE = r"""
import json, os, sys, collections
verdicts = collections.Counter()
for dirpath, _, names in os.walk(sys.argv[1]):
    for n in names:
        with open(os.path.join(dirpath, n)) as f:
            try:
                d = json.load(f)
            except ValueError:
                continue
        v = d.get("verdict")
        verdicts[v.get("code") if isinstance(v, dict) else v] += 1
print(dict(verdicts))
"""


def templates(gpuwarm, build):
    os.environ.setdefault("GPUWARM_BIN", gpuwarm)
    os.environ.setdefault("FAKE_NVML_DIR", os.path.join(build, "tests", "fake_nvml", "full"))
    import harness as h  # noqa: E402 (needs the environment above)
    h.BIN, h.FAKE_NVML_DIR = os.environ["GPUWARM_BIN"], os.environ["FAKE_NVML_DIR"]
    root = h.FakeRoot()
    try:
        root.driver(gpus=8).daemon_binary().kmsg()
        off = h.scenario([h.gpu(i, persistence=0) for i in range(8)])
        on = h.scenario([h.gpu(i) for i in range(8)])
        out = []
        for args, scen in ((["diagnose", "--json"], off), (["diagnose", "--json"], on),
                           (["fix", "--json"], off)):
            r = h.run(args, root=root, scenario_obj=scen)
            out.append(json.loads(r.stdout))
        with open(os.path.join(SOURCE, "examples", "h100-probe.json")) as f:
            out.append(json.load(f))
        return out
    finally:
        root.cleanup()


def generate(directory, nodes, gpuwarm, build):
    diag_off, diag_on, fix, probe = templates(gpuwarm, build)
    lines = []
    sizes = []
    for n in range(nodes):
        host = f"gpu-node-{n:05d}"
        kind = n % 10
        doc = probe if kind == 9 else fix if kind >= 5 else diag_off if kind % 2 else diag_on
        text = json.dumps(doc, indent=2).replace(json.dumps(doc["hostname"]), json.dumps(host))
        sizes.append(len(text))
        sub = os.path.join(directory, f"batch{n // 1000:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, host + ".json"), "w") as f:
            f.write(text)
        lines.append(json.dumps(json.loads(text), separators=(",", ":")))
    return "\n".join(lines) + "\n", sizes


def timed(cmd, stdin_path=None):
    """Wall time of cmd; stdin comes from a file through `cat`, as in `cat fleet.jsonl | gpuwarm ...`
    (subprocess's own input= writes 512 bytes at a time and would time Python, not gpuwarm)."""
    t = time.perf_counter()
    if stdin_path is None:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        cat = subprocess.Popen(["cat", stdin_path], stdout=subprocess.PIPE)
        r = subprocess.run(cmd, stdin=cat.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cat.stdout.close()
        cat.wait()
    return time.perf_counter() - t, r.returncode, r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gpuwarm", default=os.path.join(SOURCE, "build", "src", "gpuwarm"))
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    gpuwarm = os.path.abspath(args.gpuwarm)
    directory = tempfile.mkdtemp(prefix="gpuwarm-fleet-bench-")
    try:
        jsonl, sizes = generate(directory, args.nodes, gpuwarm, os.path.abspath(args.build))
        jsonl_path = os.path.join(directory, "fleet.jsonl.txt")  # not *.json*: the directory runs skip it
        with open(jsonl_path, "w") as f:
            f.write(jsonl)
        subprocess.run(f"cat {directory}/*/* {jsonl_path} > /dev/null", shell=True)  # warm the page cache for all
        dir_t, stdin_t, py_t = [], [], []
        for _ in range(args.runs):
            t, rc, err = timed([gpuwarm, "fleet-summary", directory, "--json"])
            assert rc in (0, 3), (rc, err)
            dir_t.append(t)
            t, rc, err = timed([gpuwarm, "fleet-summary", "-"], stdin_path=jsonl_path)
            assert rc in (0, 3), (rc, err)
            stdin_t.append(t)
            t, rc, err = timed([sys.executable, "-c", PY_BASELINE, directory])
            assert rc == 0, err
            py_t.append(t)
        dm, sm, pm = (statistics.median(x) for x in (dir_t, stdin_t, py_t))
        total_mb = sum(sizes) / 1e6
        print(f"{args.nodes} reports ({total_mb:.0f} MB, median {statistics.median(sizes) / 1e3:.1f} kB each), "
              f"{os.cpu_count()} cores, {args.runs} runs each, interleaved (medians):")
        row = "  {:44s} {:8.1f} ms   runs: {}"
        print(row.format("gpuwarm fleet-summary DIR --json", dm * 1e3, ", ".join(f"{t * 1e3:.0f}" for t in dir_t)))
        print(row.format("gpuwarm fleet-summary - (JSON lines on stdin)", sm * 1e3,
                         ", ".join(f"{t * 1e3:.0f}" for t in stdin_t)))
        print(row.format("python3 json.load per file (verdicts only)", pm * 1e3,
                         ", ".join(f"{t * 1e3:.0f}" for t in py_t)))
        print(f"  target: {args.nodes} reports <= 1000 ms: directory {dm * 1e3:.0f} ms "
              f"({'met' if dm <= 1 else 'NOT met'}), stdin {sm * 1e3:.0f} ms ({'met' if sm <= 1 else 'NOT met'})")
        print(f"  ratio gpuwarm / python: directory {dm / pm:.3f}, stdin {sm / pm:.3f}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
