#!/usr/bin/env python3
"""Fuzzes the Ansible module's arguments and what it reads back, for SECONDS.

Each run hands ansible/roles/gpuwarm/library/gpuwarm.py random ANSIBLE_MODULE_ARGS
(every documented option plus unknown ones, values of every JSON type: shell
metacharacters, control characters, huge and negative numbers, nested lists) and
a stand-in `binary` that records its argv and answers with random output
(valid reports, truncated JSON, a JSON list or number, binary junk, nothing).
Checked each time: the module prints exactly one JSON object (never a Python
traceback), the stand-in got its arguments as separate argv words (no shell),
and a run that did not fail carries a report. Usage: fuzz_ansible_module.py SECONDS [SEED]."""
import glob
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(HERE, "..", "..", "ansible", "roles", "gpuwarm", "library", "gpuwarm.py")
OPTIONS = ["state", "binary", "settle", "samples", "sample_interval", "job_timeout", "fail_on_routed", "node_name",
           "root", "nvml_library", "kernel_log", "_ansible_check_mode", "_ansible_diff", "fail_on_unknown",
           "lock_retries", "lock_retry_delay"]
NASTY = ["", " ", "$(touch /tmp/gpuwarm-fuzz-pwned)", "`id`", "a;b", "'\"", "\x1b]0;x\x07", "\n", "-" * 3000,
         "../../etc", "/dev/zero", "persistent", "diagnosed", "verified", "ünïcødé", "\x00"]


def value(rng, depth=0):
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return rng.choice(NASTY)
    if kind == 1:
        return rng.choice([0, 1, -1, 2**63, -(2**63), 10**30, 3, 90])
    if kind == 2:
        return rng.choice([0.0, -0.5, 1e308, float("inf") if rng.random() < 0.1 else 2.5])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return "".join(chr(rng.randrange(1, 0x250)) for _ in range(rng.randrange(0, 40)))
    if kind == 6:
        return [value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(OPTIONS + ["x"]): value(rng, depth + 1) for _ in range(rng.randrange(0, 3))}


def stand_in_output(rng):
    report = {"kind": "gpuwarm-diagnosis", "verdict": {"code": "healthy", "title": "Healthy", "next_step": "-"},
              "gpus": [], "steps": [], "outcome": rng.choice(["act", "nothing-to-do", "refused", 7, None]),
              "checks": [{"id": "persistence", "status": rng.choice(["pass", "fail", None]), "detail": "x"}]}
    choice = rng.randrange(7)
    if choice == 0:
        return json.dumps(report)
    if choice == 1:
        return json.dumps(report)[: rng.randrange(1, 60)]
    if choice == 2:
        return json.dumps(rng.choice([[1, 2], 3, "s", None, {"verdict": 5, "steps": "x", "checks": [3]}]))
    if choice == 3:
        return "".join(chr(rng.randrange(0, 256)) for _ in range(rng.randrange(0, 200)))
    if choice == 4:
        return ""
    if choice == 5:
        r = dict(report, diagnosis={"verdict": [], "gpus": "x"}, verify={"checks": None})
        return json.dumps(r)
    return json.dumps(dict(report, gpus=[{"index": "x", "persistence": 5}]))


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    tmp = tempfile.mkdtemp(prefix="gpuwarm-fuzz-module-")
    argv_log = os.path.join(tmp, "argv.json")
    out_file = os.path.join(tmp, "out")
    stub = os.path.join(tmp, "gpuwarm")
    with open(stub, "w") as f:
        f.write("#!/usr/bin/env python3\nimport json, sys\n"
                f"json.dump(sys.argv[1:], open({argv_log!r}, 'w'))\n"
                f"sys.stdout.buffer.write(open({out_file!r}, 'rb').read())\n"
                "sys.exit(int(open(%r).read() or 0))\n" % (out_file + ".rc"))
    os.chmod(stub, 0o755)
    runs = failures = 0
    # Inputs that once failed run first, every time (their "params" only).
    regressions = []
    for name in sorted(glob.glob(os.path.join(HERE, "regressions", "ansible_module-*.json"))):
        with open(name) as f:
            regressions.append(json.load(f)["params"])
    deadline = time.monotonic() + seconds
    while regressions or time.monotonic() < deadline:
        if regressions:
            params = regressions.pop(0)
        else:
            params = {k: value(rng) for k in rng.sample(OPTIONS, rng.randrange(0, len(OPTIONS)))}
            if rng.random() < 0.8:
                params["binary"] = stub
            if rng.random() < 0.3:
                params["unknown_option_%d" % rng.randrange(9)] = value(rng)
            # A stand-in that answers 7 is asked again after lock_retry_delay: keep the runs short.
            if params.get("lock_retry_delay") not in (0, 1):
                params["lock_retry_delay"] = 0
        with open(out_file, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(stand_in_output(rng))
        with open(out_file + ".rc", "w") as f:
            f.write(str(rng.choice([0, 1, 3, 4, 5, 6, 7, 8, 9, 255])))
        if os.path.exists(argv_log):
            os.unlink(argv_log)
        args_path = os.path.join(tmp, "args.json")
        with open(args_path, "w") as f:
            json.dump({"ANSIBLE_MODULE_ARGS": params}, f, allow_nan=True)
        r = subprocess.run(["/usr/bin/python3", MODULE, args_path], capture_output=True, text=True,
                           errors="replace", timeout=60, env=dict(os.environ, ANSIBLE_LOCAL_TEMP=tmp))
        runs += 1
        problem = None
        try:
            result = json.loads(r.stdout)
            if not isinstance(result, dict):
                problem = "the module printed JSON that is not an object"
            elif not result.get("failed") and "report" not in result:
                problem = "a run that did not fail carries no report"
        except ValueError:
            problem = "the module printed no JSON result"
        if "Traceback" in r.stdout + r.stderr:
            problem = "a Python traceback"
        if os.path.exists(argv_log):
            with open(argv_log) as f:
                words = json.load(f)
            if words and words[0] not in ("diagnose", "verify", "fix"):
                problem = f"the stand-in ran with argv {words[:3]}"
        if os.path.exists("/tmp/gpuwarm-fuzz-pwned"):
            problem = "a shell substitution in an argument ran"
        if problem:
            failures += 1
            crash = os.path.join(HERE, "..", "..", "build-fuzz", f"ansible_module-crash-{runs}.json")
            os.makedirs(os.path.dirname(crash), exist_ok=True)
            with open(crash, "w") as f:
                json.dump({"params": params, "stdout": r.stdout[-2000:], "stderr": r.stderr[-2000:]}, f, default=str)
            print(f"fuzz ansible_module: {problem} (input saved to {crash})")
            break
    print(f"stat::number_of_executed_units: {runs}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
