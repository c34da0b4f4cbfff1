"""gpuwarm probe end to end: a child per GPU limited by CUDA_VISIBLE_DEVICES,
one at a time or in parallel, and a job's start on every GPU (one process; a
process per GPU launched together), against the fake libnvidia-ml and libcuda
(stage delays, a driver that serializes initialization across processes, CUDA
error codes, a hang), plus baselines saved and compared."""
import json
import re
import os
import sys
import shutil
import subprocess
import tempfile
import time
import unittest

import harness as h

FAKE_CUDA_DIR = os.environ.get("FAKE_CUDA_DIR", "")
UUID0 = "GPU-00000000-0000-0000-0000-000000000000"
UUID1 = "GPU-00000001-0000-0000-0000-000000000000"


class Probe(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    def scenario_env(self, cuda_scenario, gpus=None):
        path = os.path.join(self.tmp, "cuda.json")
        with open(path, "w") as f:
            json.dump(cuda_scenario, f)
        nvml = os.path.join(self.tmp, "nvml.json")
        with open(nvml, "w") as f:
            json.dump(h.scenario(gpus or [h.gpu(0), h.gpu(1)]), f)
        return {"FAKE_CUDA_SCENARIO": path, "FAKE_NVML_SCENARIO": nvml}

    def probe(self, cuda_scenario, *args, gpus=None):
        env = self.scenario_env(cuda_scenario, gpus)
        r = h.run(["probe", "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                   "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1"), *args], extra_env=env, raw=True)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def this_node(self):
        """A snapshot of a fake node taken here: its hostname is this machine's, as a saved baseline's is."""
        path = os.path.join(self.tmp, "this-node.json")
        if not os.path.exists(path):
            root = h.FakeRoot()
            self.addCleanup(root.cleanup)
            root.driver(gpus=2).daemon_binary()
            nvml = os.path.join(self.tmp, "this-node-nvml.json")
            with open(nvml, "w") as f:
                json.dump(h.scenario([h.gpu(0), h.gpu(1)]), f)
            r = h.run(["snapshot", "--root", root.path, "--no-systemd", "--nvml",
                       os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), "-o", path],
                      extra_env={"FAKE_NVML_SCENARIO": nvml}, raw=True)
            self.assertEqual(r.returncode, 0, r.stderr)
        return path

    def probe_json(self, cuda_scenario, *args, gpus=None):
        r = self.probe(cuda_scenario, "--json", *args, gpus=gpus)
        return r.returncode, json.loads(r.stdout)

    def test_a_gpu_nvml_cannot_hand_over_is_a_failure_not_a_smaller_node(self):
        # A lost GPU (no handle) or one whose UUID NVML does not give: listed as not probed, no job start timed
        # on the others (it would not be this node's start), and exit 1.
        lost = dict(h.gpu(2), handle_return=15)
        no_uuid = {k: v for k, v in h.gpu(1).items() if k != "uuid"}
        # MIG on: CUDA would see no device behind the GPU's UUID (review-s53-probe L5), said as such.
        mig = h.gpu(1, mig_mode=1, mig_mode_pending=1)
        for gpus, index, says in (([h.gpu(0), h.gpu(1), lost], 2, "NVML gave no handle for it (GPU_IS_LOST"),
                                  ([h.gpu(0), no_uuid], 1, "its UUID could not be read through NVML"),
                                  ([h.gpu(0), mig], 1, "MIG is enabled on it: CUDA sees its MIG devices")):
            rc, d = self.probe_json({}, gpus=gpus)
            self.assertEqual(rc, 1, d)
            self.assertEqual([g["index"] for g in d["gpus"]], list(range(len(gpus))))
            failed = d["gpus"][index]
            self.assertFalse(failed["ok"])
            self.assertIn("not probed: " + says, failed["child_error"])
            self.assertEqual(d["jobs"], [])
            self.assertIn(f"not probed: GPU {index} " + says, d["jobs_skipped"])
            r = self.probe({}, gpus=gpus)
            self.assertEqual(r.returncode, 1)
            self.assertIn("What a job pays was not measured: not probed: GPU", r.stdout)
        # Named with --gpu: the same failure, not a run of the other GPU alone.
        rc, d = self.probe_json({}, "--gpu", "0", "--gpu", "2", gpus=[h.gpu(0), h.gpu(1), lost])
        self.assertEqual((rc, [g["ok"] for g in d["gpus"]]), (1, [True, False]), d)
        rc, d = self.probe_json({}, "--gpu", "2", gpus=[h.gpu(0), h.gpu(1), lost])
        self.assertEqual(rc, 1, d)
        self.assertIn("no GPU to probe: GPU 2 NVML gave no handle", d["error"])

    def test_each_round_starts_at_the_next_gpu(self):
        # The first child of each round is slow (a cost of going first): it lands on each GPU in turn.
        sc = {"*": {"delay_ms": {"cuInit": [600, 10, 600, 10]}, "count_file": os.path.join(self.tmp, "calls")}}
        rc, d = self.probe_json(sc, "--per-gpu", "--rounds", "2")
        self.assertEqual(rc, 0, d)
        for g in d["gpus"]:
            slow = [t for t in g["total_samples_ms"] if t >= 590]
            self.assertEqual(len(slow), 1, (g["index"], g["total_samples_ms"]))

    def test_rounds_show_the_median_round_and_the_range(self):
        # cuInit waits 100, 900, then 400 ms in successive children: the round shown is the 400 ms one.
        sc = {"*": {"delay_ms": {"cuInit": [100, 900, 400]}, "count_file": os.path.join(self.tmp, "calls")}}
        rc, d = self.probe_json(sc, "--per-gpu", "--gpu", "0", "--rounds", "3")
        self.assertEqual(rc, 0, d)
        self.assertEqual(d["rounds"], 3)
        g = d["gpus"][0]
        cu_init = next(s["ms"] for s in g["stages"] if s["name"] == "cu_init")
        self.assertGreaterEqual(cu_init, 390)
        self.assertLess(cu_init, 890)
        samples = g["total_samples_ms"]
        self.assertEqual(len(samples), 3)
        self.assertEqual(sorted(samples)[1], g["total_ms"])  # the figure shown is the median round's
        self.assertLess(min(samples), 390)
        self.assertGreater(max(samples), 900)
        r = self.probe(sc, "--per-gpu", "--gpu", "0", "--rounds", "3")
        self.assertIn("each figure is the median round of 3", r.stdout)
        self.assertRegex(r.stdout, r"range ms\n.*\d+\.\d-\d+\.\d")
        # Job starts over rounds: READY is the median of every round's. On one GPU each start makes one cuInit
        # call; each round starts with the next method (one, per | per, one | one, per), so in call order one
        # process waits 100, 700, 1600 ms and a process per GPU 1600, 100, 700 ms. Each shows its 700 ms round.
        # (The rounds lie far apart: READY counts the process starts, whose overhead under ASan on a loaded CI
        # machine varies by 125-250 ms.)
        sc = {"*": {"delay_ms": {"cuInit": [100, 1600, 100, 700, 1600, 700]},
                    "count_file": os.path.join(self.tmp, "job-calls")}}
        rc, d = self.probe_json(sc, "--node", "--gpu", "0", "--rounds", "3")
        self.assertEqual(rc, 0, d)
        self.assertEqual((d["rounds"], d["job_rounds"]), (3, 3))
        for j in d["jobs"]:
            samples = j["ready_samples_ms"]
            self.assertEqual(len(samples), 3, j["method"])
            self.assertEqual(sorted(samples)[1], j["ready_ms"], j["method"])
            self.assertGreater(max(samples) - min(samples), 700, j["method"])
            cu_init = next(s["ms"] for s in j["stages"] if s["name"] == "cu_init")
            self.assertGreaterEqual(cu_init, 690, j["method"])
            self.assertLess(cu_init, 1590, j["method"])
        # One round (the default) has no samples: a baseline saved before rounds existed reads the same.
        rc, d = self.probe_json({}, "--per-gpu", "--gpu", "0")
        self.assertEqual((d["rounds"], d["gpus"][0]["total_samples_ms"]), (1, None))
        for bad in ("0", "21", "x"):
            r = self.probe({}, "--rounds", bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("--rounds", r.stderr, bad)

    def test_a_round_that_fails_is_shown_and_ends_the_rounds(self):
        # The second child hangs past --timeout: that round is the result, however fast the others were.
        sc = {"*": {"delay_ms": {"cuInit": [50, 20000]}, "count_file": os.path.join(self.tmp, "calls")}}
        # --timeout 2: a child under ASan takes up to half a second to start.
        rc, d = self.probe_json(sc, "--per-gpu", "--gpu", "0", "--rounds", "4", "--timeout", "2")
        self.assertEqual(rc, 1)
        g = d["gpus"][0]
        self.assertEqual((g["ok"], g["timed_out"], g["failed_round"], g["total_ms"]), (False, True, 2, None))
        self.assertEqual(g["failed_rounds"], 1)
        self.assertEqual(len(g["total_samples_ms"]), 1)  # the round that succeeded keeps its figure
        self.assertEqual(d["rounds"], 2)  # a hang would hang again: rounds 3 and 4 were not run
        self.assertLess(d["wall_ms"], 7000)
        r = self.probe(sc, "--per-gpu", "--gpu", "0", "--rounds", "4", "--timeout", "2")
        self.assertIn("GPU 0: timed out (round 2 of 2)", r.stdout)

    def test_job_starts_cut_short_by_a_later_timeout_say_so(self):
        # GPU 1's fourth cuInit hangs: round 1 measures everything, round 2's per-GPU probe of GPU 1 times out,
        # so the job starts have one round while the table has two. Said, never passed off as a median of 2.
        sc = {UUID1: {"delay_ms": {"cuInit": [10, 10, 10, 20000]}, "count_file": os.path.join(self.tmp, "calls")}}
        rc, d = self.probe_json(sc, "--rounds", "3", "--timeout", "2")
        self.assertEqual(rc, 1)
        self.assertEqual((d["rounds"], d["job_rounds"]), (2, 1))
        self.assertEqual(d["job_rounds_short"], "GPU 1 timed out on its own (--timeout 2 s) in round 2")
        self.assertIsNone(d["jobs_skipped"])
        self.assertTrue(all(j["ok"] for j in d["jobs"]), d["jobs"])
        with open(os.path.join(self.tmp, "calls.cuInit"), "w") as f:
            f.write("0")
        r = self.probe(sc, "--rounds", "3", "--timeout", "2")
        self.assertIn("Measured in 1 of 2 rounds (GPU 1 timed out on its own (--timeout 2 s) in round 2).", r.stdout)
        self.assertRegex(r.stdout, r"how the job starts .* READY ms\n")  # one round: no range column

    def test_persistence_is_recorded_and_the_comparison_says_when_it_did_not_change(self):
        mixed = [h.gpu(0, persistence=0), h.gpu(1)]
        rc, d = self.probe_json({}, "--per-gpu", gpus=mixed)
        self.assertEqual(rc, 0, d)
        self.assertEqual([(p["index"], p["enabled"]) for p in d["persistence"]], [(0, False), (1, True)])
        self.assertEqual(d["persistence_summary"], "mixed")
        r = self.probe({}, "--per-gpu", gpus=mixed)
        self.assertIn("Persistence when probed: Disabled on GPU 0; Enabled on GPU 1", r.stdout)
        off = os.path.join(self.tmp, "off.json")
        r = self.probe({}, "--save", off, gpus=[h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
        self.assertEqual(r.returncode, 0, r.stderr)
        rc, d = self.probe_json({}, "--compare", off)
        self.assertEqual(d["compare_persistence"], {"before": "disabled", "after": "enabled", "changed": True})
        r = self.probe({}, "--compare", off)
        self.assertIn("Persistence before: Disabled on every GPU. After: Enabled on every GPU.", r.stdout)
        self.assertNotIn("read the same in both runs", r.stdout)
        r = self.probe({}, "--compare", off, gpus=[h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
        self.assertIn("Persistence mode read the same in both runs: a change below did not come from switching it",
                      r.stdout)
        # A baseline from before persistence was recorded: said, and never taken for a change.
        rc, d = self.probe_json({}, "--compare", os.path.join(h.SOURCE_DIR, "examples", "h100-probe.json"))
        self.assertEqual(d["compare_persistence"]["before"], "not recorded")
        self.assertIsNone(d["compare_persistence"]["changed"])

    def test_parallel_stages_and_uuid_mapping(self):
        sc = {"*": {"delay_ms": {"cuInit": 400, "cuDevicePrimaryCtxRetain": 100}}}
        rc, d = self.probe_json(sc, "--parallel", "--per-gpu")
        self.assertEqual(rc, 0)
        self.assertEqual(d["method"], "parallel")
        self.assertEqual([g["uuid"] for g in d["gpus"]], [UUID0, UUID1])
        for g in d["gpus"]:
            self.assertTrue(g["ok"], g)
            names = [s["name"] for s in g["stages"]]
            self.assertEqual(names, ["load_libcuda", "nvml_init", "cu_init", "device_get", "ctx_retain", "alloc_sync",
                                     "ctx_release"])
            stages = {s["name"]: s["ms"] for s in g["stages"]}
            self.assertGreaterEqual(stages["cu_init"], 390)
            self.assertGreaterEqual(stages["ctx_retain"], 95)
            # The child saw only its own GPU, and CUDA reported that GPU's UUID back.
            self.assertEqual(g["cuda_uuid"].lower(), g["uuid"].lower())
        slowest = max(g["wall_ms"] for g in d["gpus"])
        self.assertLess(d["wall_ms"], slowest * 1.2 + 50, "GPUs were not probed in parallel")

    def test_gpu_selection(self):
        rc, d = self.probe_json({}, "--gpu", UUID1.lower())
        self.assertEqual([g["index"] for g in d["gpus"]], [1])
        rc, d = self.probe_json({}, "--gpu", "0")
        self.assertEqual([g["index"] for g in d["gpus"]], [0])
        r = self.probe({}, "--gpu", "7")
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"--gpu 7 names no GPU; NVML sees 0 ({UUID0}), 1 ({UUID1})", r.stderr)
        # One typo among good IDs is still a typo: refused, not a smaller run.
        r = self.probe({}, "--gpu", "0", "--gpu", "7")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--gpu 7 names no GPU", r.stderr)
        self.assertNotIn("cu_init", r.stdout)

    def test_one_at_a_time_is_the_default_and_takes_about_the_sum(self):
        sc = {"*": {"delay_ms": {"cuInit": 300}}}
        rc, d = self.probe_json(sc, "--per-gpu")
        self.assertEqual(rc, 0)
        self.assertEqual(d["method"], "isolated")
        self.assertTrue(d["sequential"])  # schema 1's name, kept for older readers
        self.assertGreaterEqual(d["wall_ms"], 600)
        self.assertEqual(d["jobs"], [])
        # --sequential (schema 1's flag) still works and is the same thing.
        rc, d = self.probe_json(sc, "--per-gpu", "--sequential")
        self.assertEqual((rc, d["method"]), (0, "isolated"))

    def test_a_serializing_driver_inflates_parallel_probes_but_not_the_default(self):
        # The real driver serializes cuInit and context creation across processes (2 x H200: 1.88x). Stage
        # times are taken inside each child, so they hold under a sanitizer's slow process start-up too.
        lock = os.path.join(self.tmp, "driver.lock")
        sc = {"*": {"delay_ms": {"cuInit": 600}, "serialize": lock}}
        rc, d = self.probe_json(sc, "--per-gpu")
        self.assertEqual(rc, 0)
        for g in d["gpus"]:
            self.assertLess(next(s["ms"] for s in g["stages"] if s["name"] == "cu_init"), 750, g)  # its own
        # The text states the method it used, as the JSON's "method" does.
        self.assertIn("2 GPU(s), each probed alone, one at a time", self.probe(sc, "--per-gpu").stdout)
        r = self.probe(sc, "--parallel", "--per-gpu")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("in parallel", r.stdout)
        self.assertIn("may include waiting", r.stdout)
        rc, d = self.probe_json(sc, "--parallel", "--per-gpu")
        cu_init = sorted(next(s["ms"] for s in g["stages"] if s["name"] == "cu_init") for g in d["gpus"])
        # The second waited for the first (1200 ms less however much later it started): the distortion.
        self.assertGreaterEqual(cu_init[1], 800, cu_init)

    def test_the_bench_script_for_issue_20_runs_through_against_the_fakes(self):
        # bench/probe_modes.py runs once, unattended, on a lent machine with several GPUs: kept working here.
        lock = os.path.join(self.tmp, "driver.lock")
        cuda = os.path.join(self.tmp, "cuda.json")
        nvml = os.path.join(self.tmp, "nvml.json")
        with open(cuda, "w") as f:
            # Serialized stages long beside a process's own start (up to about 1.5 s under ASan with the other
            # suites beside it: 400 + 300 ms gave 1.47x in CI), so the ratio shows them.
            json.dump({"*": {"delay_ms": {"cuInit": 800, "cuDevicePrimaryCtxRetain": 400}, "serialize": lock}}, f)
        with open(nvml, "w") as f:
            json.dump(h.scenario([h.gpu(0), h.gpu(1)]), f)
        r = subprocess.run([sys.executable, os.path.join(h.SOURCE_DIR, "bench", "probe_modes.py"), "--gpuwarm", h.BIN,
                            "--rounds", "1", "--contention", "--budget", "60", "--",
                            "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                            "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, FAKE_CUDA_SCENARIO=cuda, FAKE_NVML_SCENARIO=nvml))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # The serializing fake: parallel per-GPU probing distorts (about 2x), the isolated default does not.
        ratio = re.search(r"parallel per-GPU probe, wall .*?= (\d+\.\d+)x the slowest GPU alone", r.stdout)
        self.assertIsNotNone(ratio, r.stdout)
        self.assertGreater(float(ratio.group(1)), 1.35)  # (start + 2 x 1200) / (start + 1200): 2x without a start
        for line in ("one process, every GPU", "a process per GPU (2)", "a process per GPU, each seeing all",
                     "contention on GPU 0", "3 of 3 probe runs, 3 of 3 contention children succeeded"):
            self.assertIn(line, r.stdout)

    def test_the_cuinit_opens_bench_runs_through_against_the_fake(self):
        # bench/cuinit_opens.py also runs once, unattended, on the lent machine: its shim builds and its three
        # cases run (the fake libcuda opens no device file, so every count row is empty).
        cc = shutil.which("cc")
        if cc is None:
            self.skipTest("no C compiler to build bench/openlog.c")
        with open(os.path.join(FAKE_CUDA_DIR, "libcuda.so.1"), "rb") as f:
            if b"libasan" in f.read():
                self.skipTest("the fake libcuda is a sanitizer build: a plain python3 cannot load it")
        shim = os.path.join(self.tmp, "openlog.so")
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-o", shim,
                        os.path.join(h.SOURCE_DIR, "bench", "openlog.c"), "-ldl"], check=True)
        r = subprocess.run([sys.executable, os.path.join(h.SOURCE_DIR, "bench", "cuinit_opens.py"), "--preload", shim,
                            "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1"), "--uuids", f"{UUID0},{UUID1}"],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ, FAKE_CUDA_SCENARIO=""))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r'none \(""\) +100 *\n')
        self.assertRegex(r.stdout, r"GPU 0 alone +0 *\n")
        self.assertRegex(r.stdout, r"every GPU \(unset\) +0 *\n")

    def test_a_job_start_both_ways(self):
        lock = os.path.join(self.tmp, "driver.lock")
        sc = {"*": {"delay_ms": {"cuInit": 300, "cuDevicePrimaryCtxRetain": 100}, "serialize": lock}}
        rc, d = self.probe_json(sc)
        self.assertEqual(rc, 0, d)
        # Which process-per-GPU start that is, and how to time torchrun's: said under the table.
        text = self.probe({"*": {}}).stdout
        self.assertIn("A process per GPU here sees only its own GPU (MPI, srun --gpu-bind); torchrun's default", text)
        self.assertNotIn("torchrun's default", self.probe({"*": {}}, "--all-visible").stdout)
        self.assertEqual([j["method"] for j in d["jobs"]], ["one-process", "process-per-gpu"])
        one, each = d["jobs"]
        self.assertEqual((one["gpus"], len(one["processes"])), (2, 1))
        self.assertEqual((each["gpus"], len(each["processes"])), (2, 2))
        # One process saw both GPUs, in the order asked, and started them one after the other.
        p = one["processes"][0]
        self.assertEqual(p["uuid"], UUID0 + "," + UUID1)
        self.assertEqual([x["uuid"].lower() for x in p["cuda_devices"]], [UUID0.lower(), UUID1.lower()])
        self.assertEqual([(s["name"], s.get("device")) for s in p["stages"]][4:],
                         [("ctx_retain", 0), ("alloc_sync", 0), ("ctx_retain", 1), ("alloc_sync", 1),
                          ("ctx_release", 0), ("ctx_release", 1)])
        stages = {s["name"]: s["ms"] for s in one["stages"]}
        self.assertGreaterEqual(stages["cu_init"], 590)     # cuInit initializes both
        self.assertGreaterEqual(stages["ctx_retain"], 195)  # summed over the GPUs
        self.assertNotIn("ctx_release", stages)
        self.assertGreaterEqual(one["ready_ms"], 790)
        # A process per GPU, launched together, waits on the serializing driver (800 ms of locked stages in
        # all): READY is the last one ready, and the stages shown are that process's.
        self.assertGreaterEqual(each["ready_ms"], 790)
        last = max(each["processes"], key=lambda x: x["launch_to_ready_ms"])
        self.assertEqual(each["ready_ms"], last["launch_to_ready_ms"])
        self.assertEqual({s["name"]: s["ms"] for s in each["stages"]}["cu_init"],
                         next(s["ms"] for s in last["stages"] if s["name"] == "cu_init"))
        self.assertEqual(each["gpu_indices"], [0, 1])
        self.assertLessEqual(d["slowest_isolated_ready_ms"], min(one["ready_ms"], each["ready_ms"]))
        r = self.probe(sc)
        self.assertIn("What a job pays to start 2 GPU(s)", r.stdout)
        self.assertRegex(r.stdout, r"one process, every GPU\s+\d+\.\d\s+\d+\.\d\s+6\d\d\.\d")
        self.assertRegex(r.stdout, r"Against the slowest GPU started alone, also from launch to ready \(\d+\.\d ms, in the "
                                   r"round shown; its TOTAL above leaves out the launch and adds the release\): one process, every GPU "
                                   r"\d\.\d\dx; a process per GPU \(2\) \d\.\d\dx\.")

    def test_ranks_launched_together_hold_their_contexts_until_all_are_ready(self):
        # review-s53-probe H1: a rank that released its context and exited as soon as it was ready put its
        # release (serialized in the driver, as here) into the start of the ranks still initializing; a job's
        # ranks hold their contexts. Here a release takes 1500 ms: READY must not contain one.
        lock = os.path.join(self.tmp, "driver.lock")
        sc = {"*": {"delay_ms": {"cuInit": 100, "cuDevicePrimaryCtxRetain": 100,
                                 "cuDevicePrimaryCtxRelease_v2": 2500}, "serialize": lock}}
        for extra in ((), ("--all-visible",)):
            with self.subTest(extra=extra):
                rc, d = self.probe_json(sc, "--node", *extra)
                self.assertEqual(rc, 0, d)
                for job in d["jobs"][1:]:  # the process-per-GPU starts
                    self.assertTrue(job["method"].startswith("process-per-gpu"), job)
                    self.assertGreaterEqual(job["ready_ms"], 390, job)  # both ranks' cuInit and retain, one by one
                    self.assertLess(job["ready_ms"], 2400, job)  # not held: 2900 and more
                    # Each rank released after every rank was ready: its release waited for the other's.
                    releases = sorted(next(s["ms"] for s in p["stages"] if s["name"] == "ctx_release")
                                      for p in job["processes"])
                    self.assertGreaterEqual(releases[-1], 4900, job)
                    self.assertGreaterEqual(job["wall_ms"], 5000, job)

    def test_a_held_rank_let_go_when_another_times_out_is_still_timed(self):
        # review-s53-diff H1: GPU 1's rank hangs in cuInit past the timeout; GPU 0's, ready and held, is let go
        # when it is killed, and its release then hangs too: the probe must still end, at its deadline, not wait
        # for that release without end.
        sc = {UUID0: {"delay_ms": {"cuDevicePrimaryCtxRelease_v2": 600000}},
              UUID1: {"delay_ms": {"cuInit": 600000}}}
        started = time.monotonic()
        rc, d = self.probe_json(sc, "--node", "--timeout", "1")
        took = time.monotonic() - started
        self.assertEqual(rc, 1, d)
        self.assertLess(took, 60, d)
        each = next(j for j in d["jobs"] if j["method"] == "process-per-gpu")
        self.assertEqual([p["timed_out"] for p in each["processes"]], [True, True], each)

    def test_gpuwarm_lets_go_of_nvml_before_the_first_child_initializes_cuda(self):
        # review-s53-probe L6: the per-GPU figures are cold only if gpuwarm itself holds no GPU when a child starts:
        # its NVML (used to list the GPUs) must be shut down first. Both fakes log to one file in call order; before
        # each child's cuInit, every nvmlInit of another process has had its nvmlShutdown.
        log = os.path.join(self.tmp, "calls.log")
        env = self.scenario_env({"*": {"log_file": log}})
        with open(env["FAKE_NVML_SCENARIO"]) as f:
            nvml = json.load(f)
        nvml["init"] = {"log_file": log}
        with open(env["FAKE_NVML_SCENARIO"], "w") as f:
            json.dump(nvml, f)
        r = h.run(["probe", "--json", "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                   "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")], extra_env=env, raw=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(log) as f:
            calls = [line.split() for line in f]
        cu_inits = [pid for call, pid in calls if call == "cuInit"]
        self.assertEqual(len(cu_inits), 2 + 1 + 2, calls)  # two GPUs alone, one process, a process per GPU
        held = {}
        for call, pid in calls:
            if call == "nvmlInit":
                held[pid] = held.get(pid, 0) + 1
            elif call == "nvmlShutdown":
                held[pid] -= 1
            else:
                others = {p: n for p, n in held.items() if n > 0 and p != pid}
                self.assertFalse(others, f"cuInit of {pid} while NVML is held by {others}: {calls}")
                held = {p: n for p, n in held.items() if p == pid}  # a child that has run is gone by the next
        gpuwarm = calls[0][1]
        self.assertEqual(calls[0][0], "nvmlInit", calls)
        self.assertNotIn(gpuwarm, cu_inits)  # gpuwarm itself never initializes CUDA

    def test_a_rank_slow_to_exit_holds_up_no_other_ranks_figures(self):
        # review-s53-probe L2: a child that closed its output was reaped with a blocking wait of up to 5 s,
        # while the others of its group were neither read nor timed. GPU 0's process lingers 3 s after its
        # output closes (the kernel's teardown of its GPU files); GPU 1's releases 300 ms later and exits: its
        # figure must not include GPU 0's linger.
        sc = {UUID0: {"exit_linger_ms": 3000}, UUID1: {"delay_ms": {"cuDevicePrimaryCtxRelease_v2": 300}}}
        rc, d = self.probe_json(sc, "--node")
        self.assertEqual(rc, 0, d)
        each = next(j for j in d["jobs"] if j["method"] == "process-per-gpu")
        walls = [p["wall_ms"] for p in each["processes"]]
        self.assertGreaterEqual(walls[0], 3000, each)  # waited for, reaped when it ended
        # On its own clock: GPU 1's figure ends well before GPU 0's (a blocking reap made them equal), whatever the
        # processes' start-up costs on a loaded machine.
        self.assertGreaterEqual(walls[0] - walls[1], 1500, each)

    def test_a_child_the_kill_does_not_end_is_waited_for_once_and_nothing_runs_beside_it(self):
        # review-s53-probe L2: a child asleep in the kernel outlives SIGKILL; the next GPU was probed beside it.
        # Here GPU 0's child prints its figures, then does not end (its exit lingers; the test build's hook sends
        # SIGSTOP for SIGKILL, which leaves it unreaped the same way). GPU 1 is waited for, up to its --timeout,
        # then not probed, with the reason; every later probe (the job starts, round 2) is marked at once, not
        # after a wait of its own each (review-s56 M1: 3 s a GPU here, some 40 s in all).
        if "test hooks" not in h.run(["--version"], raw=True).stdout:
            self.skipTest("this gpuwarm has no test hooks")
        started = time.monotonic()
        r = h.run(["probe", "--json", "--rounds", "2", "--timeout", "3",
                   "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                   "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")],
                  extra_env=self.scenario_env({UUID0: {"exit_linger_ms": 600000}})
                  | {"GPUWARM_TEST_PROBE_KILL_STOPS": "1"}, raw=True)
        took = time.monotonic() - started
        d = json.loads(r.stdout)
        self.assertEqual(r.returncode, 1, d)
        not_probed = "not probed: an earlier probe child"
        self.assertTrue(d["gpus"][1]["child_error"].startswith(not_probed), d["gpus"][1])
        for job in d["jobs"]:
            self.assertFalse(job["ranks_held"], job)  # no rank ran
            for p in job["processes"]:
                self.assertTrue(p["child_error"].startswith(not_probed), p)
        self.assertRegex(d["gpus"][1]["child_error"],
                         r"^not probed: an earlier probe child \(pid \d+\) had not ended 5 s after it was killed")
        self.assertGreaterEqual(took, 12)  # 5 s before the kill, 5 s for it to end, GPU 1's 3 s wait
        self.assertLess(took, 25, d)

    def test_all_visible_times_each_process_seeing_every_gpu(self):
        # torchrun's default: every rank sees every GPU and starts its own; the fake's cuInit, like the driver's,
        # pays for every GPU it sees, so each process pays for both (review-s43-probe #2).
        sc = {"*": {"delay_ms": {"cuInit": 300, "cuDevicePrimaryCtxRetain": 50}}}
        rc, d = self.probe_json(sc, "--node", "--all-visible")
        self.assertEqual(rc, 0, d)
        self.assertEqual([j["method"] for j in d["jobs"]],
                         ["one-process", "process-per-gpu", "process-per-gpu-all-visible"])
        own, every = d["jobs"][1], d["jobs"][2]
        self.assertEqual((every["gpus"], len(every["processes"])), (2, 2))
        # Each process saw both GPUs, its own first, and started only that one.
        for k, p in enumerate(every["processes"]):
            mine, other = (UUID0, UUID1) if k == 0 else (UUID1, UUID0)
            self.assertEqual(p["uuid"], mine + "," + other)
            self.assertEqual([x["uuid"].lower() for x in p["cuda_devices"]], [mine.lower(), other.lower()])
            self.assertEqual([(s["name"], s.get("device")) for s in p["stages"]][4:],
                             [("ctx_retain", 0), ("alloc_sync", 0), ("ctx_release", 0)])
        cu_init = lambda j: {s["name"]: s["ms"] for s in j["stages"]}["cu_init"]
        self.assertGreaterEqual(cu_init(every), 590)
        self.assertLess(cu_init(own), 450)
        # READY counts that cuInit (not compared with `own`'s READY: two process starts apart, which a loaded
        # machine stretches by more than the 300 ms between them).
        self.assertGreater(every["ready_ms"], cu_init(every))
        r = self.probe(sc, "--node", "--all-visible")
        self.assertIn("a process per GPU (2), each seeing all", r.stdout)
        # A saved run with it compares it like with like.
        base = os.path.join(self.tmp, "base.json")
        self.assertEqual(self.probe(sc, "--node", "--all-visible", "--save", base).returncode, 0)
        rc, d = self.probe_json(sc, "--node", "--all-visible", "--compare", base)
        self.assertEqual([j["method"] for j in d["compare_jobs"]],
                         ["one-process", "process-per-gpu", "process-per-gpu-all-visible"])
        # A hung GPU: each of those processes starts one GPU, so the group gets --timeout once per GPU (2 s), not
        # once for every GPU each process sees (review-s43-diff F3: 4 s here, 64 timeouts on 8 GPUs).
        hung = {UUID1: {"delay_ms": {"cuInit": 20000}}}
        rc, d = self.probe_json(hung, "--node", "--all-visible", "--timeout", "1")
        self.assertEqual(rc, 1, d)
        every = d["jobs"][2]
        self.assertEqual(every["method"], "process-per-gpu-all-visible")
        self.assertTrue(all(p["timed_out"] for p in every["processes"]), every)
        self.assertLess(every["wall_ms"], 3500, every)
        # With one GPU it would be the same start as a process per GPU: not timed twice.
        rc, d = self.probe_json(sc, "--node", "--all-visible", gpus=[h.gpu(0)])
        self.assertEqual([j["method"] for j in d["jobs"]], ["one-process", "process-per-gpu"])

    def test_one_gpu_measures_a_job_only_when_asked(self):
        rc, d = self.probe_json({}, "--gpu", "0")
        self.assertEqual(d["jobs"], [])
        rc, d = self.probe_json({"*": {"delay_ms": {"cuInit": 100}}}, "--gpu", "0", "--node")
        self.assertEqual(rc, 0)
        self.assertEqual((d["gpus"], d["method"]), ([], None))
        self.assertEqual([(j["method"], j["gpus"], j["ok"]) for j in d["jobs"]],
                         [("one-process", 1, True), ("process-per-gpu", 1, True)])
        self.assertGreaterEqual(d["jobs"][0]["ready_ms"], 100)
        self.assertIsNone(d["slowest_isolated_ready_ms"])
        r = self.probe({}, "--node", "--per-gpu")
        self.assertEqual(r.returncode, 2)
        r = self.probe({}, "--node", "--parallel")
        self.assertEqual(r.returncode, 2)

    def test_a_job_that_fails_on_one_gpu_says_which(self):
        sc = {UUID1: {"returns": {"cuDevicePrimaryCtxRetain": 46}}}
        r = self.probe(sc, "--node")
        self.assertEqual(r.returncode, 1)
        # Named by NVML index, not by the CUDA ordinal inside the one process.
        self.assertIn("one process, every GPU, GPU 1: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE", r.stdout)
        self.assertIn("a process per GPU (2), GPU 1: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE", r.stdout)
        rc, d = self.probe_json(sc, "--node")
        self.assertEqual([(j["ok"], j["ready_ms"]) for j in d["jobs"]], [(False, None), (False, None)])
        self.assertEqual(d["jobs"][0]["processes"][0]["failed_device"], 1)
        # The row of a failed job shows the process that failed, with the time its failed stage took (review-s43-probe
        # #7: it showed GPU 0's process, which succeeded, and dropped the failed stage).
        sc = {UUID1: {"delay_ms": {"cuInit": 300, "cuDevicePrimaryCtxRetain": 200},
                      "returns": {"cuDevicePrimaryCtxRetain": 2}}}
        rc, d = self.probe_json(sc, "--node")
        each = d["jobs"][1]
        stages = {s["name"]: s["ms"] for s in each["stages"]}
        self.assertGreaterEqual(stages["cu_init"], 290, each)   # GPU 1's process, not GPU 0's (~0 ms)
        self.assertGreaterEqual(stages["ctx_retain"], 190, each)  # the failed stage's own time
        failed = [p for p in each["processes"] if p["failed_stage"]]
        self.assertEqual([(p["failed_stage"], p["failed_ms"] >= 190) for p in failed], [("ctx_retain", True)])

    def test_a_hung_gpu_skips_the_job_starts_or_times_them_out(self):
        sc = {UUID0: {"delay_ms": {"cuInit": 20000}}}
        # Hung alone: every job start would wait it out too, so they are skipped, and the output says why.
        # --timeout 2: a child under ASan takes up to half a second to start, and GPU 1's must finish.
        r = self.probe(sc, "--timeout", "2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("What a job pays was not measured: GPU 0 timed out on its own (--timeout 2 s)", r.stdout)
        rc, d = self.probe_json(sc, "--timeout", "2")
        self.assertEqual((rc, d["jobs"], d["jobs_skipped"][:5]), (1, [], "GPU 0"))
        self.assertLess(d["wall_ms"], 8000)
        # --node alone: each job gets --timeout once per GPU (4 s here), then is killed.
        rc, d = self.probe_json(sc, "--timeout", "2", "--node")
        self.assertEqual(rc, 1)
        for j in d["jobs"]:
            self.assertFalse(j["ok"], j["method"])
            self.assertIsNone(j["ready_ms"])
            self.assertGreaterEqual(j["wall_ms"], 3900, j["method"])
            self.assertLess(j["wall_ms"], 6500, j["method"])
        self.assertTrue(d["jobs"][0]["processes"][0]["timed_out"])
        self.assertTrue(d["jobs"][1]["processes"][0]["timed_out"])
        self.assertFalse(d["jobs"][1]["processes"][1]["timed_out"])  # GPU 1 finished within its budget

    def test_cuda_error_is_named(self):
        sc = {UUID1: {"returns": {"cuDevicePrimaryCtxRetain": 46}}}
        r = self.probe(sc)
        self.assertEqual(r.returncode, 1)
        self.assertIn("GPU 1: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE", r.stdout)
        self.assertIn("FAILED", r.stdout)

    def test_a_probe_that_lands_on_another_gpu_is_flagged(self):
        sc = {UUID1: {"report_uuid": "GPU-ffffffff-0000-0000-0000-000000000000"}}
        rc, d = self.probe_json(sc)
        self.assertEqual(rc, 1)
        self.assertIn("not the requested GPU", d["gpus"][1]["child_error"])

    def test_timeout_kills_a_hung_gpu(self):
        sc = {UUID0: {"delay_ms": {"cuInit": 20000}}}
        rc, d = self.probe_json(sc, "--timeout", "2", "--per-gpu")
        self.assertEqual(rc, 1)
        self.assertTrue(d["gpus"][0]["timed_out"])
        self.assertIsNone(d["gpus"][0]["total_ms"])  # a failure is no time
        self.assertTrue(d["gpus"][1]["ok"])
        self.assertLess(d["wall_ms"], 7000)

    def test_a_killed_probe_takes_its_child_with_it(self):
        """A health checker's timeout kills gpuwarm: the child stuck in cuInit must not outlive it."""
        path = os.path.join(self.tmp, "cuda.json")
        with open(path, "w") as f:
            json.dump({UUID0: {"delay_ms": {"cuInit": 30000}}}, f)
        nvml = os.path.join(self.tmp, "nvml.json")
        with open(nvml, "w") as f:
            json.dump(h.scenario([h.gpu(0)]), f)
        env = dict(os.environ, FAKE_CUDA_SCENARIO=path, FAKE_NVML_SCENARIO=nvml)
        parent = subprocess.Popen([h.BIN, "probe", "--per-gpu", "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                                   "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            child = None
            deadline = time.time() + 10
            while child is None and time.time() < deadline:
                for entry in os.listdir("/proc"):
                    if entry.isdigit():
                        try:
                            with open(f"/proc/{entry}/stat") as f:
                                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                        except (OSError, IndexError, ValueError):
                            continue
                        if ppid == parent.pid:
                            child = int(entry)
                time.sleep(0.05)
            self.assertIsNotNone(child, "no probe child started")
            time.sleep(0.3)  # the child is inside cuInit now
            parent.kill()
            parent.wait(timeout=10)
            def state():
                """The child's state letter; None once it is gone (reaped between two looks is gone too)."""
                try:
                    with open(f"/proc/{child}/stat") as f:
                        return f.read().rsplit(")", 1)[1].split()[0]
                except FileNotFoundError:
                    return None
            deadline = time.time() + 5
            while state() not in (None, "Z") and time.time() < deadline:  # Z: ended, waiting for its reaper
                time.sleep(0.05)
            self.assertIn(state(), (None, "Z"), f"probe child {child} outlived its parent")
        finally:
            if parent.poll() is None:
                parent.kill()

    def start_probe(self, cuda_scenario, name):
        path = os.path.join(self.tmp, name + "-cuda.json")
        with open(path, "w") as f:
            json.dump(cuda_scenario, f)
        nvml = os.path.join(self.tmp, name + "-nvml.json")
        with open(nvml, "w") as f:
            json.dump(h.scenario([h.gpu(0)]), f)
        env = dict(os.environ, FAKE_CUDA_SCENARIO=path, FAKE_NVML_SCENARIO=nvml)
        return subprocess.Popen([h.BIN, "probe", "--json", "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                                 "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def test_a_probe_beside_another_waits_for_it_instead_of_measuring_it(self):
        # Two probes at once on a driver that serializes initialization would each measure the other; the
        # second waits for the first (the timing lock in /run), then measures the GPU alone.
        if os.geteuid() != 0:
            self.skipTest("the locks live in /run, which is root's")
        lock = os.path.join(self.tmp, "driver.lock")
        sc = {"*": {"delay_ms": {"cuInit": 800}, "serialize": lock}}
        first = self.start_probe(sc, "first")
        deadline = time.time() + 30
        while not os.path.exists(lock) and time.time() < deadline:  # its child is in cuInit: the lock is held
            time.sleep(0.02)
        self.assertTrue(os.path.exists(lock), "the first probe never reached cuInit")
        second = self.start_probe(sc, "second")
        out1, err1 = first.communicate(timeout=60)
        out2, err2 = second.communicate(timeout=60)
        self.assertEqual((first.returncode, second.returncode), (0, 0), err1 + err2)
        self.assertIn("gpuwarm probe: waiting (up to 5 minutes): another `gpuwarm probe` or `watch --load` is "
                      "timing the GPUs, or `diagnose`, `check`, `metrics`, `snapshot`, `verify` or `watch` is reading them (lock "
                      "/run/gpuwarm-timing.lock is held)", err2)
        for out in (out1, out2):
            total = json.loads(out)["gpus"][0]["total_ms"]
            self.assertLess(total, 1500, "a probe measured the other one's cuInit as well")

    def test_a_reading_beside_a_probe_leaves_nvml_closed_and_a_probe_waits_for_a_reading(self):
        # metrics from its timer while a probe times a cold start would initialize the GPU being timed: it leaves
        # NVML closed (UNK009). The other way round, a probe started during a collection waits for it to end.
        if os.geteuid() != 0:
            self.skipTest("the locks live in /run, which is root's")
        opened = os.path.join(self.tmp, "metrics-opened-nvml")
        nvml = os.path.join(self.tmp, "metrics-nvml.json")

        def metrics(init):
            with open(nvml, "w") as f:
                json.dump(h.scenario([h.gpu(0)], init=dict(init, started_file=opened)), f)
            return subprocess.Popen([h.BIN, "metrics", "--no-systemd", "--nvml",
                                     os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                                    env=dict(os.environ, FAKE_NVML_SCENARIO=nvml), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)

        def wait_for(path):
            deadline = time.time() + 30
            while not os.path.exists(path) and time.time() < deadline:
                time.sleep(0.02)
            self.assertTrue(os.path.exists(path), path)

        lock = os.path.join(self.tmp, "driver.lock")
        probe = self.start_probe({"*": {"delay_ms": {"cuInit": 1500}, "serialize": lock}}, "timed")
        wait_for(lock)  # its child is in cuInit
        out, err = metrics({}).communicate(timeout=60)
        probe_out, probe_err = probe.communicate(timeout=60)
        self.assertEqual(probe.returncode, 0, probe_err)
        self.assertFalse(os.path.exists(opened), "metrics opened NVML while the probe timed the GPU")
        self.assertIn('gpuwarm_finding{rule_id="UNK009",severity="warning"} 1', out)

        reading = metrics({"delay_ms": 1500})
        wait_for(opened)  # the collection is in nvmlInit, holding its share of the locks
        probe = self.start_probe({"*": {"delay_ms": {"cuInit": 10}}}, "after-reading")
        out, err = reading.communicate(timeout=60)
        probe_out, probe_err = probe.communicate(timeout=60)
        self.assertEqual(probe.returncode, 0, probe_err)
        self.assertNotIn("UNK009", out)
        self.assertIn("gpuwarm_gpu_persistence_mode{", out)
        self.assertIn("gpuwarm probe: waiting (up to 5 minutes): another `gpuwarm probe` or `watch --load` is "
                      "timing the GPUs, or `diagnose`, `check`, `metrics`, `snapshot`, `verify` or `watch` is reading them", probe_err)

    def test_a_probe_waits_while_the_node_is_being_changed(self):
        # fix, reset and reload-modules hold the node lock: a probe then would time a daemon restart or a reset.
        if os.geteuid() != 0:
            self.skipTest("the locks live in /run, which is root's")
        import fcntl
        with open("/run/gpuwarm-fix.lock", "a+") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            p = self.start_probe({"*": {"delay_ms": {"cuInit": 10}}}, "during-fix")
            time.sleep(1.0)
            self.assertIsNone(p.poll(), "the probe ran while the node lock was held")
            fcntl.flock(held, fcntl.LOCK_UN)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn("waiting (up to 5 minutes): `gpuwarm fix`, `reset` or `reload-modules` is changing this node",
                      err)

    def test_saved_baseline_becomes_cold_start_metrics(self):
        baseline = os.path.join(self.tmp, "baseline.json")
        r = self.probe({"*": {"delay_ms": {"cuInit": 300}}}, "--save", baseline)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = h.run(["metrics", "--snapshot", self.this_node(),
                   "--probe-baseline", baseline], raw=True)
        self.assertEqual(m.returncode, 0, m.stderr)
        cu_init = re.findall(r'^gpuwarm_gpu_cold_start_seconds\{gpu="(\d)",uuid="([^"]+)",pci_bus_id="[^"]*",'
                             r'stage="cu_init"\} (\S+)$', m.stdout, re.M)
        self.assertEqual([(g, u) for g, u, _ in cu_init], [("0", UUID0), ("1", UUID1)])
        self.assertTrue(all(0.3 <= float(v) < 2 for _, _, v in cu_init), cu_init)
        # No baseline: no series and no unknown; a broken one: an unknown naming the file.
        m = h.run(["metrics", "--snapshot", self.this_node(),
                   "--probe-baseline", os.path.join(self.tmp, "none.json")], raw=True)
        self.assertNotIn("cold_start", m.stdout)
        self.assertNotIn('fact="probe_baseline"', m.stdout)
        with open(baseline, "w") as f:
            f.write("{")
        m = h.run(["metrics", "--snapshot", self.this_node(),
                   "--probe-baseline", baseline], raw=True)
        self.assertRegex(m.stdout, r'gpuwarm_fact_unknown\{fact="probe_baseline",reason="[^"]*baseline.json: not valid JSON"\} 1')
        # Another node's baseline (one baked into an image, say) is not this node's cold start.
        r = self.probe({"*": {"delay_ms": {"cuInit": 300}}}, "--save", baseline)
        with open(baseline) as f:
            other = json.load(f)
        other["hostname"] = "image-builder"
        with open(baseline, "w") as f:
            json.dump(other, f)
        m = h.run(["metrics", "--snapshot", self.this_node(), "--probe-baseline", baseline], raw=True)
        self.assertNotIn("gpuwarm_gpu_cold_start_seconds{", m.stdout)
        self.assertRegex(m.stdout, r'fact="probe_baseline",reason="[^"]*baseline.json: taken on image-builder, not this '
                                   r'node"\} 1')
        # The same hostname ("localhost", "vm": images copy it) on other GPUs is another node's too.
        with open(self.this_node()) as f:
            other["hostname"] = json.load(f)["hostname"]
        def elsewhere(uuids):
            return ",".join(u[:-4] + "beef" for u in uuids.split(","))
        for g in other["gpus"] + [p for j in other["jobs"] for p in j["processes"]]:
            g["uuid"] = elsewhere(g["uuid"])
        self.assertTrue(other["jobs"])
        with open(baseline, "w") as f:
            json.dump(other, f)
        m = h.run(["metrics", "--snapshot", self.this_node(), "--probe-baseline", baseline], raw=True)
        self.assertNotIn("gpuwarm_gpu_cold_start_seconds{", m.stdout)
        self.assertNotIn("gpuwarm_job_start_seconds{", m.stdout)
        self.assertRegex(m.stdout, r'fact="probe_baseline",reason="[^"]*baseline.json: none of its GPUs \(GPU-[0-9a-f-]*beef, '
                                   r'\.\.\.\) is on this node: it was taken on another one"\} 1')
        # `probe --node` saves job starts only: their GPUs are checked the same way.
        node_only = dict(other, gpus=[], method="")
        with open(baseline, "w") as f:
            json.dump(node_only, f)
        m = h.run(["metrics", "--snapshot", self.this_node(), "--probe-baseline", baseline], raw=True)
        self.assertNotIn("gpuwarm_job_start_seconds{", m.stdout)
        self.assertRegex(m.stdout, r'reason="[^"]*baseline.json: none of its GPUs \(GPU-[0-9a-f-]*beef,GPU-')
        # One GPU replaced since the baseline: the other's figures stay, the replaced one is named, and a job
        # start that used it is not this node's either.
        other["gpus"][0]["uuid"] = UUID0
        with open(baseline, "w") as f:
            json.dump(other, f)
        m = h.run(["metrics", "--snapshot", self.this_node(), "--probe-baseline", baseline], raw=True)
        self.assertEqual(set(re.findall(r'^gpuwarm_gpu_cold_start_seconds\{gpu="(\d)"', m.stdout, re.M)), {"0"})
        self.assertRegex(m.stdout, r'reason="[^"]*baseline.json: its GPU 1 \(GPU-[0-9a-f-]*beef\) is not on this node')
        self.assertNotIn("gpuwarm_job_start_seconds{", m.stdout)

    def test_no_driver_is_said_plainly_and_json_stays_json(self):
        import ctypes.util
        if os.path.exists("/proc/driver/nvidia") or os.path.exists("/sys/module/nvidia"):
            self.skipTest("this machine has an NVIDIA driver")
        if ctypes.util.find_library("nvidia-ml"):
            self.skipTest("this machine has a libnvidia-ml on the loader's path")
        r = h.run(["probe"], raw=True)
        self.assertEqual(r.returncode, 5)
        self.assertIn("No NVIDIA driver is present", r.stderr)
        r = h.run(["probe", "--json"], raw=True)
        self.assertEqual(r.returncode, 5)
        d = json.loads(r.stdout)
        self.assertEqual((d["kind"], d["gpus"], d["exit_code"]), ("gpuwarm-probe", [], 5))
        self.assertIn("No NVIDIA driver is present", d["error"])
        # A baseline that cannot be read: still one JSON document.
        r = h.run(["probe", "--json", "--compare", os.path.join(self.tmp, "missing.json")], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing.json", json.loads(r.stdout)["error"])

    def test_save_into_a_missing_folder_is_refused_before_probing_and_creates_nothing(self):
        target = os.path.join(self.tmp, "typo", "a", "baseline.json")
        r = self.probe({"*": {"delay_ms": {"cuInit": 600}}}, "--save", target)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("typo/a does not exist", r.stderr)
        self.assertNotIn("cu_init", r.stdout)  # refused before the GPUs were probed
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "typo")))
        rc, d = self.probe_json({}, "--save", target)
        self.assertEqual(rc, 1)
        self.assertIn("does not exist", d["error"])
        self.assertEqual(d["gpus"], [])

    def test_a_save_target_the_writer_would_refuse_is_refused_before_probing(self):
        # A probe can take minutes: a target that is a folder or a link is said before it, not after.
        os.mkdir(os.path.join(self.tmp, "a-folder"))
        os.symlink("/etc/hostname", os.path.join(self.tmp, "link.json"))
        for name, says in (("a-folder", "is a directory"), ("link.json", "is a symbolic link")):
            with self.subTest(name):
                r = self.probe({"*": {"delay_ms": {"cuInit": 600}}}, "--save", os.path.join(self.tmp, name))
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn(says + ": gpuwarm replaces only regular files", r.stderr)
                self.assertNotIn("cu_init", r.stdout)

    def test_a_baselines_text_is_escaped(self):
        baseline = os.path.join(self.tmp, "baseline.json")
        self.assertEqual(self.probe({}, "--save", baseline).returncode, 0)
        with open(baseline) as f:
            d = json.load(f)
        d["hostname"] = "h\x1b]0;pwn\x07\nforged line"
        with open(baseline, "w") as f:
            json.dump(d, f)
        r = self.probe({}, "--compare", baseline)
        self.assertNotIn("\x1b", r.stdout)
        self.assertNotIn("\nforged line", r.stdout)
        self.assertIn("Before: h\\x1b]0;pwn\\x07\\x0aforged line ", r.stdout)
        self.assertIn("from another node (h\\x1b]0;pwn\\x07\\x0aforged line)", r.stdout)

    def test_save_then_compare(self):
        os.mkdir(os.path.join(self.tmp, "sub"))
        baseline = os.path.join(self.tmp, "sub", "baseline.json")
        # 1000 ms before, 20 ms after: the change reads -9x% while the after figure stays under 100 ms (ASan).
        # Saved with persistence off, as before a rollout: fleet-summary's before/after is what enabling it did.
        r = self.probe({"*": {"delay_ms": {"cuInit": 1000}}}, "--save", baseline,
                       gpus=[h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("saved baseline to", r.stderr)
        r2 = self.probe({"*": {"delay_ms": {"cuInit": 20}}}, "--compare", baseline)
        self.assertEqual(r2.returncode, 0, r2.stderr)
        self.assertIn("Before:", r2.stdout)
        self.assertIn("cu_init", r2.stdout)
        self.assertRegex(r2.stdout, r"cu_init\s+1\d\d\d\.\d\s+\d+\.\d\s+-9\d%")
        rc, d = self.probe_json({}, "--compare", baseline)
        self.assertTrue(d["compare"][0]["in_baseline"])
        self.assertGreater(d["compare"][0]["before_total_ms"], d["compare"][0]["after_total_ms"])
        # The job starts are compared too, and fleet-summary and metrics read them.
        self.assertIn("Job start: one process, every GPU", r2.stdout)
        self.assertRegex(r2.stdout, r"READY\s+\d+\.\d\s+\d+\.\d\s+-\d+%")
        self.assertEqual([j["method"] for j in d["compare_jobs"]], ["one-process", "process-per-gpu"])
        self.assertGreater(d["compare_jobs"][0]["before_ready_ms"], 1200)
        report = os.path.join(self.tmp, "report.json")
        with open(report, "w") as f:
            json.dump(d, f)
        f = h.run(["fleet-summary", "--json", report], raw=True)
        s = json.loads(f.stdout)["job_start_ms"]["one_process"]
        self.assertGreater(s["before"]["median_ms"], 1200)
        # READY includes starting the process (about 0.5 s under ASan): compare with the baseline, whose
        # only difference is 2 x 550 ms more cuInit.
        self.assertLess(s["after"]["median_ms"], s["before"]["median_ms"] - 700)
        m = h.run(["metrics", "--snapshot", self.this_node(),
                   "--probe-baseline", baseline], raw=True)
        ready = re.findall(r'^gpuwarm_job_start_seconds\{method="([a-z-]+)",gpus="2"\} (\S+)$', m.stdout, re.M)
        self.assertEqual([name for name, _ in ready], ["one-process", "process-per-gpu"])
        self.assertGreater(float(ready[0][1]), 1.2)  # one process pays both GPUs' cuInit: 2 x 600 ms
        # A job start on one GPU against the baseline's two: shown, not compared (the count is no persistence).
        r3 = self.probe({}, "--compare", baseline, "--gpu", "0", "--node")
        self.assertIn("the baseline started 2 GPU(s), this run 1: no change is shown", r3.stdout)
        rc, d3 = self.probe_json({}, "--compare", baseline, "--gpu", "0", "--node")
        self.assertEqual([j["comparable"] for j in d3["compare_jobs"]], [False, False])
        self.assertEqual([j["comparable"] for j in d["compare_jobs"]], [True, True])

    def test_a_gpu_held_open_by_another_process_is_no_cold_baseline(self):
        # review-s53-probe M2: persistence reads Disabled, but a DCGM exporter (here a process holding a node
        # numbered as GPU 1's, 195:1) keeps the GPU initialized: the run says so, and its comparison does not
        # count as switching persistence on (fleet-summary would take the warm figure for "before").
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare to hold a device node in a mount namespace of its own")
        # The holder's /dev is a tmpfs of its own mount namespace (the host's /dev is left alone); gpuwarm
        # reads its open node through /proc/PID/fd all the same.
        script = ("mount -t tmpfs tmpfs /dev && mknod -m 600 /dev/nvidia1 c 195 1 && exec \"$0\" -c '"
                  "import os, time\nfd = os.open(\"/dev/nvidia1\", os.O_PATH)\nprint(\"open\", flush=True)\n"
                  "time.sleep(60)'")
        holder = subprocess.Popen(["unshare", "--mount", "sh", "-c", script, sys.executable],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(holder.communicate)  # after the kill: reaps it and closes its pipes
        self.addCleanup(holder.kill)
        if holder.stdout.readline() != "open\n":
            self.skipTest(f"cannot hold a device node in a mount namespace here: {holder.stderr.read()[:200]}")
        with open(f"/proc/{holder.pid}/comm") as f:
            comm = f.read().strip()
        off = [h.gpu(0, persistence=0), h.gpu(1, persistence=0)]
        baseline = os.path.join(self.tmp, "baseline.json")
        r = self.probe({}, "--per-gpu", "--save", baseline, gpus=off)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Other tests running beside this one may hold nodes numbered as GPUs too: only this holder is asserted.
        self.assertRegex(r.stdout, r"Persistence when probed: Disabled on every GPU;.* GPU 1 held open by [^;]*"
                         + re.escape(f"{comm} (pid {holder.pid})") + r"[^;]*, warm whatever persistence reads")
        with open(baseline) as f:
            saved = json.load(f)["persistence"]
        self.assertIn(f"{comm} (pid {holder.pid})", saved[1]["held_by"])
        self.assertNotIn(f"{comm} (pid {holder.pid})", saved[0]["held_by"])
        rc, d = self.probe_json({}, "--per-gpu", "--compare", baseline)
        self.assertEqual(d["compare_persistence"], {"before": "disabled", "after": "enabled", "changed": None})
        report = os.path.join(self.tmp, "report.json")
        with open(report, "w") as f:
            json.dump(d, f)
        s = json.loads(h.run(["fleet-summary", "--json", report], raw=True).stdout)
        self.assertEqual(s["cold_start_ms"]["before"]["nodes"], 0, s["cold_start_ms"])

    def test_a_failed_job_start_is_not_compared_by_its_cut_short_stage(self):
        # review-s53-probe M1: GPU 1's cuInit fails at once after an 800 ms baseline; the stage it failed in ran
        # for a moment and read as "-97 %". The run's own table keeps that moment; the comparison leaves it out.
        baseline = os.path.join(self.tmp, "baseline.json")
        r = self.probe({"*": {"delay_ms": {"cuInit": 800}}}, "--node", "--save", baseline)
        self.assertEqual(r.returncode, 0, r.stderr)
        failing = {"*": {}, UUID1: {"returns": {"cuInit": 100}}}
        r = self.probe(failing, "--node", "--compare", baseline)
        self.assertEqual(r.returncode, 1, r.stdout)
        one = r.stdout[r.stdout.index("Job start: one process, every GPU"):]
        self.assertIn("this run failed: the stage it failed in is not compared", one)
        self.assertRegex(one, r"cu_init\s+1[5-9]\d\d\.\d\s+-\s")
        self.assertNotRegex(one, r"cu_init[^\n]*-9\d%")
        rc, d = self.probe_json(failing, "--node", "--compare", baseline)
        job = d["compare_jobs"][0]
        self.assertEqual((job["method"], job["before_ok"], job["after_ok"]), ("one-process", True, False))
        cu_init = next(s for s in job["stages"] if s["name"] == "cu_init")
        self.assertGreater(cu_init["before_ms"], 1500)
        self.assertIsNone(cu_init["after_ms"])
        # The run's own table still shows how long the failed stage ran.
        failed = next(j for j in d["jobs"] if j["method"] == "one-process")
        self.assertIn("cu_init", [s["name"] for s in failed["stages"]])
        # One process on two GPUs whose second context fails: GPU 0's part of ctx_retain and alloc_sync is not
        # compared as the whole stage (review-s53-diff M1).
        retain = {"*": {}, UUID1: {"returns": {"cuDevicePrimaryCtxRetain": 2}}}
        rc, d = self.probe_json(retain, "--node", "--compare", baseline)
        job = next(j for j in d["compare_jobs"] if j["method"] == "one-process")
        after = {s["name"]: s["after_ms"] for s in job["stages"]}
        self.assertIsNotNone(after["cu_init"], job)
        self.assertEqual((after["ctx_retain"], after["alloc_sync"]), (None, None), job)

    def test_a_schema_1_baseline_still_compares(self):
        r = self.probe({}, "--compare", os.path.join(h.SOURCE_DIR, "examples", "h100-probe.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Job start: one process, every GPU\n  not in the baseline", r.stdout)

    def test_compare_with_bad_files(self):
        missing = self.probe({}, "--compare", os.path.join(self.tmp, "absent.json"))
        self.assertEqual(missing.returncode, 1)
        self.assertIn("No such file", missing.stderr)
        other = os.path.join(self.tmp, "other.json")
        with open(other, "w") as f:
            json.dump({"schema_version": 1}, f)
        wrong = self.probe({}, "--compare", other)
        self.assertEqual(wrong.returncode, 1)
        self.assertIn("not a gpuwarm probe result", wrong.stderr)

    def test_a_named_library_that_does_not_load_is_said_as_such(self):
        # Not "no driver" (exit 5): the library named by hand is the problem, with or without a driver here.
        not_a_library = os.path.join(self.tmp, "libnvidia-ml.so.1")
        with open(not_a_library, "w") as f:
            f.write("not ELF\n")
        r = h.run(["probe", "--nvml", not_a_library], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"cannot list GPUs through NVML: NVML library not loaded: cannot load {not_a_library}", r.stderr)
        self.assertNotIn("No NVIDIA driver", r.stderr)

    def test_help_documents_the_stages_and_hides_the_child_flag(self):
        r = h.run(["probe", "--help"], raw=True)
        self.assertIn("CUDA_VISIBLE_DEVICES=GPU-<uuid>", r.stdout)
        self.assertIn("--save", r.stdout)
        self.assertIn("--node", r.stdout)
        self.assertNotIn("--child", r.stdout)
        self.assertNotIn("--sequential", r.stdout)


if __name__ == "__main__":
    unittest.main()
