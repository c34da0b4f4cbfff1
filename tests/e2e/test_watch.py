"""gpuwarm watch end to end: the real binary against the fake libnvidia-ml,
whose state changes over time (a scenario "timeline"), whose GPUs de-initialize
when the last client lets go (a "deinit" model), and the fake libcuda for the
built-in load, which marks the GPU busy while its kernels run."""
import fcntl
import json
import os
import pty
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness as h

FAKE_CUDA_DIR = os.environ.get("FAKE_CUDA_DIR", "")
NVML = os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")
UUID1 = "GPU-00000001-0000-0000-0000-000000000000"
PINNED = {"sm": 1500, "graphics": 1500, "mem": 2619}


class Watch(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    def write(self, name, obj):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def env(self, nvml_scenario, cuda_scenario=None):
        env = {"FAKE_NVML_SCENARIO": self.write("nvml.json", nvml_scenario)}
        if cuda_scenario is not None:
            env["FAKE_CUDA_SCENARIO"] = self.write("cuda.json", cuda_scenario)
        return env

    def watch(self, nvml_scenario, *args, cuda_scenario=None, nvml=NVML):
        r = h.run(["watch", "--nvml", nvml, "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1"), *args],
                  extra_env=self.env(nvml_scenario, cuda_scenario), raw=True)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def watch_json(self, nvml_scenario, *args, **kw):
        r = self.watch(nvml_scenario, "--json", *args, **kw)
        self.assertTrue(r.stdout.strip(), r.stderr)
        return r.returncode, json.loads(r.stdout)

    # A GPU a job holds through the first sample; then the job exits and, with persistence off, every later
    # attach (from the second init on) finds the GPU de-initialized. By count of inits, not by time: a slow
    # start under ASan must not miss the first sample.
    def job_leaves_scenario(self):
        g0 = h.gpu(0, persistence=0, app_clocks=PINNED, default_power_limit_mw=700000, power_limit_mw=500000)
        return h.scenario([g0, h.gpu(1)],
                          timeline=[{"after_inits": 2, "gpus": [{"deinit": {"attach_ms": 300}}, {}]}])

    def test_detached_sees_deinit_churn_that_held_hides(self):
        sc = self.job_leaves_scenario()
        rc, d = self.watch_json(sc, "--interval", "200ms", "--duration", "2.5s")
        self.assertEqual(rc, 3, d["summary"])
        self.assertEqual(d["mode"], "detached")
        g0, g1 = d["summary"]["gpus"]
        self.assertEqual(g0["attribution"], "deinit-churn")
        kinds = [e["kind"] for e in g0["deinit_events"]]
        self.assertIn("cold-attach", kinds)
        self.assertIn("app-clocks-reverted", kinds)
        self.assertIn("power-limit-reverted", kinds)
        # The pin was seen while the job held the GPU, then lost with it.
        first = d["samples"][0]["gpus"][0]
        self.assertEqual(first["app_sm_mhz"], 1500)
        self.assertLess(first["attach_ms"], 290)
        self.assertGreater(min(e["t_s"] for e in g0["deinit_events"]), 0)
        self.assertGreaterEqual(g0["attach_ms"]["max"], 290)
        self.assertIn("pinned-clocks", g0["causes"])
        self.assertEqual(g1["attribution"], "stable")
        self.assertEqual(g1["deinit_events"], [])
        # Every sample timed its own nvmlInit.
        self.assertTrue(all(s["init_ms"] is not None for s in d["samples"]))

        # The same node watched while holding NVML: the GPU never de-initializes.
        rc, d = self.watch_json(self.job_leaves_scenario(), "--interval", "200ms", "--duration", "2.5s",
                                "--mode", "held")
        self.assertEqual(rc, 5, d["summary"])  # what is left to see: the pinned clocks
        g0 = d["summary"]["gpus"][0]
        self.assertEqual(g0["deinit_events"], [])
        self.assertEqual(g0["causes"], ["pinned-clocks"])
        self.assertTrue(any("--mode detached" in n for n in d["summary"]["notes"]), d["summary"]["notes"])
        self.assertEqual([s["init_ms"] is not None for s in d["samples"]].count(True), 1)

    def test_back_to_back_samples_stop_at_the_duration(self):
        # --interval 0 ("back to back"): every slot is due at once, so the time elapsed ends the watch (before, it
        # sampled until a signal, its memory growing).
        started = time.monotonic()
        rc, r = self.watch_json(h.scenario([h.gpu(0)]), "--interval", "0", "--duration", "1s")
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual((rc, r["summary"]["exit_code"]), (0, 0), r["summary"])
        self.assertGreater(len(r["samples"]), 2)
        self.assertLess(r["duration_s"], 5)
        self.assertIsNone(r["sample_cap"])

    def test_count_is_samples_taken_even_when_attaches_overrun(self):
        # Every attach takes 300 ms against a 100 ms interval: the overrun slots are skipped, not the samples.
        sc = h.scenario([h.gpu(0, persistence=0)], timeline=[{"after_ms": 0, "gpus": [{"deinit": {"attach_ms": 300}}]}])
        rc, d = self.watch_json(sc, "--interval", "100ms", "--count", "4")
        self.assertEqual(len(d["samples"]), 4)
        self.assertEqual((rc, d["summary"]["gpus"][0]["attribution"]), (3, "deinit-churn"))

    def test_healthy_node_is_stable_in_both_modes(self):
        for mode in ("detached", "held"):
            with self.subTest(mode=mode):
                r = self.watch(h.scenario([h.gpu(0), h.gpu(1)]), "--interval", "100ms", "--count", "5",
                               "--mode", mode)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("Stable", r.stdout)
                self.assertIn("GpuIdle", r.stdout)
                self.assertEqual(r.stderr, "")  # no progress line when not on a terminal

    def test_a_watch_stands_aside_from_a_probe_and_a_probe_waits_for_it(self):
        # Watching while a probe times a cold start would initialize the GPUs it times: the watch does not start
        # (7, with the reason). While a watch runs it shares the timing lock, so a probe would wait for it.
        if os.geteuid() != 0:
            self.skipTest("the locks live in /run, which is root's")
        lock = "/run/gpuwarm-timing.lock"
        with open(lock, "a") as probe:
            fcntl.flock(probe, fcntl.LOCK_EX)
            r = self.watch(h.scenario([h.gpu(0)]), "--interval", "50ms", "--count", "2")
        self.assertEqual(r.returncode, 7, r.stdout + r.stderr)
        self.assertIn("`gpuwarm probe` or `watch --load` is timing the GPUs (lock /run/gpuwarm-timing.lock is held)",
                      r.stderr)
        watch = subprocess.Popen([h.BIN, "watch", "--nvml", NVML, "--interval", "100ms", "--count", "20"],
                                 env=dict(os.environ, **self.env(h.scenario([h.gpu(0)]))),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Seen in /proc/locks (taking the lock to test it could make the starting watch stand aside).
            inode = os.stat(lock).st_ino
            deadline = time.time() + 20
            shared = False
            while not shared and time.time() < deadline and watch.poll() is None:
                with open("/proc/locks") as f:
                    shared = any(l.split()[1:5] == ["FLOCK", "ADVISORY", "READ", str(watch.pid)] and
                                 l.split()[5].endswith(":" + str(inode)) for l in f if len(l.split()) > 5)
                time.sleep(0.02)
            self.assertTrue(shared, "the watch did not share the timing lock while it ran")
            with open(lock, "a") as probe:
                with self.assertRaises(BlockingIOError):  # a probe's exclusive take waits
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            out, err = watch.communicate(timeout=60)
        self.assertEqual(watch.returncode, 0, out + err)
        with open(lock, "a") as probe:  # and it is free again once the watch ended
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def test_a_reason_held_throughout_lasts_the_watch(self):
        # Every sample stands for its interval: a watch that runs to its end counts the last one whole, and never
        # more than the watch (GpuIdle is set in every sample of the fake).
        for args, expected in ((("--interval", "200ms", "--duration", "0.6s"), 0.6),
                               (("--interval", "200ms", "--count", "3"), 0.6),
                               (("--interval", "200ms", "--duration", "0.5s"), 0.5)):
            with self.subTest(args=args):
                rc, d = self.watch_json(h.scenario([h.gpu(0)]), *args)
                self.assertEqual(rc, 0)
                reasons = {r["reason"]: r["seconds"] for r in d["summary"]["gpus"][0]["reason_seconds"]}
                self.assertAlmostEqual(reasons["GpuIdle"], expected, delta=0.05)

    def test_thermal_event_mid_watch_routes_to_ras(self):
        sc = h.scenario([h.gpu(0), h.gpu(1)],
                        timeline=[{"after_ms": 0, "gpus": [{}, {}]},
                                  {"after_ms": 300, "gpus": [{}, {"event_reasons": 0x40, "clocks": {"sm": 1100}}]}])
        rc, d = self.watch_json(sc, "--interval", "100ms", "--count", "10")
        self.assertEqual(rc, 5)
        self.assertEqual(d["summary"]["attribution"], "thermal-power")
        g1 = d["summary"]["gpus"][1]
        self.assertEqual(g1["attribution"], "thermal-power")
        reasons = {r["reason"]: r["seconds"] for r in g1["reason_seconds"]}
        self.assertGreater(reasons["HwThermalSlowdown"], 0.3)
        self.assertEqual(g1["sm_mhz"]["min"], 1100)
        self.assertEqual(d["summary"]["gpus"][0]["attribution"], "stable")

    def test_load_steps_clocks_to_boost_and_back(self):
        busy = os.path.join(self.tmp, "busy")
        idle_then_busy = h.gpu(0, pstate=8, clocks={"sm": 345, "graphics": 345, "mem": 2619}, when_file_exists={
            "path": busy, "set": {"pstate": 0, "event_reasons": 0, "clocks": {"sm": 1980, "graphics": 1980}}})
        rc, d = self.watch_json(h.scenario([idle_then_busy]), "--interval", "250ms", "--load", "1",
                                cuda_scenario={"*": {"busy_file": busy, "launch_ms": 5}})
        self.assertEqual(rc, 0, d["summary"])
        load = d["load"]
        self.assertEqual(load["error"], "")
        self.assertGreater(load["launches"], 20)
        # 2 s idle lead-in, then about 1 s of load.
        self.assertGreaterEqual(load["start_s"], 1.9)
        self.assertAlmostEqual(load["end_s"] - load["start_s"], 1.0, delta=0.5)
        phases = [s["phase"] for s in d["samples"]]
        self.assertEqual(phases[0], "idle")
        self.assertIn("load", phases)
        self.assertEqual(phases[-1], "after-load")
        g = d["summary"]["gpus"][0]
        self.assertEqual(g["sm_mhz_load"]["median"], 1980)
        self.assertEqual(g["sm_mhz_idle"]["median"], 345)
        self.assertIsNotNone(g["settle_s"])
        self.assertEqual(g["pstates"], [0, 8])
        self.assertFalse(os.path.exists(busy), "the load child did not release its context")
        text = self.watch(h.scenario([idle_then_busy]), "--replay", self.write("run.json", d))
        self.assertIn("under load: SM median 1980 MHz", text.stdout)

    def test_load_that_cannot_compile_is_reported(self):
        rc, d = self.watch_json(h.scenario([h.gpu(0)]), "--interval", "500ms", "--load", "1", "--duration", "4s",
                                cuda_scenario={"*": {"returns": {"cuModuleLoadData": 218}}})
        # Clocks under load were never seen: not "stable" (0) but cannot tell (9), and the next step says why.
        self.assertEqual(rc, 9)
        self.assertEqual(d["summary"]["attribution"], "cannot-tell")
        self.assertIn("The load did not run", d["summary"]["next_step"])
        self.assertEqual(d["load"]["error"], "jit: CUDA_ERROR_INVALID_PTX")
        self.assertTrue(any("did not run" in n for n in d["summary"]["notes"]))
        self.assertNotIn("load", [s["phase"] for s in d["samples"]])

    def test_a_load_whose_libcuda_does_not_load_fails_before_the_lead_in(self):
        # No libcuda where --cuda points (a typo is a usage error; here a file that is no library): the load can
        # never start, which is known at once, not after a 2 s lead-in and the whole duration.
        # (How long it takes is not asserted: a probe of another test may hold the timing lock meanwhile.)
        not_a_library = self.write("libcuda.so.1", {})
        r = h.run(["watch", "--nvml", NVML, "--cuda", not_a_library, "--load", "5", "--interval", "500ms"],
                  extra_env=self.env(h.scenario([h.gpu(0)])), raw=True)
        self.assertEqual(r.returncode, 9, r.stdout + r.stderr)
        self.assertIn("the --load cannot run: load_libcuda: ", r.stderr)
        self.assertEqual(r.stdout, "", "it watched before giving up")
        r = h.run(["watch", "--json", "--nvml", NVML, "--cuda", not_a_library, "--load", "5"],
                  extra_env=self.env(h.scenario([h.gpu(0)])), raw=True)
        self.assertEqual(r.returncode, 9, r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual((d["kind"], d["exit_code"], d["gpus"]), ("gpuwarm-watch", 9, []))
        self.assertNotIn("samples", d)  # no sample taken: before, the whole watch ran and only its notes said so
        self.assertIn("load_libcuda", d["error"])
        # What the check's child prints besides its answer (the loader's LD_DEBUG on stderr, here) fails no good
        # libcuda: the watch goes on (two quick samples, ended before the lead-in).
        env = dict(self.env(h.scenario([h.gpu(0)])), LD_DEBUG="files")
        r = h.run(["watch", "--nvml", NVML, "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1"), "--load", "1",
                   "--count", "6", "--interval", "500ms"], extra_env=env, raw=True)
        self.assertNotIn("cannot run", r.stderr)
        self.assertIn("6 sample(s)", r.stdout)

    def test_a_load_that_ends_early_on_one_gpu_is_cannot_tell(self):
        # GPU 1's load stops on its own mid-window (a failed launch; a child killed outright): its samples after
        # that are not "under load", it cannot be judged, and the run is cannot tell (9), not stable (0).
        sc = h.scenario([h.gpu(0), h.gpu(1)])
        uuid1 = h.gpu(1)["uuid"]
        for fail_with, why in ((719, "launch: CUDA_ERROR_LAUNCH_FAILED"), ("SIGKILL", "load child killed by signal 9")):
            with self.subTest(fail_with=fail_with):
                rc, d = self.watch_json(sc, "--interval", "250ms", "--load", "2",
                                        cuda_scenario={uuid1: {"fail_after_launches": 150, "fail_with": fail_with}})
                self.assertEqual(rc, 9, d["summary"])
                ended = d["load"]["ended_early"]
                self.assertEqual([(e["gpu"], e["ran"], e["error"]) for e in ended], [(1, True, why)])
                # A killed child reports no count: the sum says which GPUs it leaves out.
                self.assertEqual(d["load"]["launches_uncounted"], [1] if fail_with == "SIGKILL" else [])
                self.assertEqual(sorted(st["gpu"] for st in d["load"]["started"]), [0, 1])
                self.assertLess(ended[0]["at_s"], d["load"]["end_s"])
                g0, g1 = d["summary"]["gpus"]
                self.assertEqual((g0["attribution"], g1["attribution"]), ("stable", "cannot-tell"))
                self.assertIn("its load ended early", " ".join(g1["evidence"]))
                self.assertLess(g1["sm_mhz_load"]["count"], g0["sm_mhz_load"]["count"])
                self.assertIn(f"GPU 1's load ended early, at {ended[0]['at_s']:.1f} s: {why}", d["summary"]["notes"])
                self.assertIn("load ended early", d["summary"]["next_step"])
                # The saved run replays to the same answer.
                r = h.run(["watch", "--replay", self.write("early.json", d), "--json"], raw=True)
                self.assertEqual((r.returncode, json.loads(r.stdout)["summary"]), (9, d["summary"]))

    def test_a_load_child_that_writes_without_end_does_not_stall_the_watch(self):
        # GPU 0's child writes to its stdout as fast as it is read, from its 20th launch on: the watch still
        # samples on time and ends when planned (before, it read that child and nothing else, for ever).
        started = time.monotonic()
        rc, d = self.watch_json(h.scenario([h.gpu(0)]), "--interval", "250ms", "--load", "2",
                                cuda_scenario={"*": {"fail_after_launches": 20, "fail_with": "FLOOD"}})
        self.assertLess(time.monotonic() - started, 30)
        self.assertGreaterEqual(len(d["samples"]), 30, d["summary"])  # 2 s lead-in + 2 s load + 5 s: 36 planned
        # Still running 5 s after its load's end, it loaded what no one knows: that GPU cannot be judged.
        self.assertEqual(d["load"]["launches_uncounted"], [0])
        self.assertEqual(rc, 9, d["summary"])
        ended = d["load"]["ended_early"]
        self.assertEqual([(e["gpu"], e["ran"]) for e in ended], [(0, True)])
        self.assertRegex(ended[0]["error"], r"^load child still running [4-9]\.\d s after its 2 s load should have "
                                            r"ended$")
        self.assertEqual(d["summary"]["gpus"][0]["attribution"], "cannot-tell")

    def test_a_watch_that_ends_during_the_load_is_no_load_failure(self):
        # --count ends the sampling 4 s in, while the 5 s load (after a 2 s lead-in) still runs: the watch stops
        # the load itself, which is not "the load did not run".
        rc, d = self.watch_json(h.scenario([h.gpu(0)]), "--interval", "500ms", "--load", "5", "--count", "8",
                                cuda_scenario={})
        self.assertIn("load", [s["phase"] for s in d["samples"]])
        self.assertEqual(d["load"]["error"], "")
        self.assertNotEqual(rc, 9, d["summary"])
        self.assertFalse(any("did not run" in n for n in d["summary"]["notes"]), d["summary"]["notes"])

    def test_replayed_names_are_escaped(self):
        with open(os.path.join(h.SOURCE_DIR, "examples/h100-watch-detached.json")) as f:
            d = json.load(f)
        d["gpus"][0]["name"] = "NVIDIA\x1b]0;pwn\x07\x1b[2J\nStable: forged"
        r = h.run(["watch", "--replay", self.write("evil.json", d)], raw=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\x1b", r.stdout)
        self.assertNotIn("\nStable: forged", r.stdout)  # no field can start a line of its own
        self.assertIn("GPU 0 NVIDIA\\x1b]0;pwn\\x07\\x1b[2J\\x0aStable: forged (GPU-", r.stdout)
        # A saved failure replays as that failure, not as a malformed run.
        r = h.run(["watch", "--replay", self.write("failed.json", {"kind": "gpuwarm-watch", "schema_version": 1,
                                                                    "error": "NVML unusable", "gpus": []})], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("a watch that did not run: NVML unusable", r.stderr)

    def test_replay_reproduces_the_summary(self):
        rc, d = self.watch_json(self.job_leaves_scenario(), "--interval", "200ms", "--duration", "2s")
        path = self.write("run.json", d)
        r = h.run(["watch", "--replay", path, "--json"], raw=True)
        self.assertEqual(r.returncode, rc)
        self.assertEqual(json.loads(r.stdout)["summary"], d["summary"])
        r = h.run(["watch", "--replay", path], raw=True)
        self.assertIn("deinit-churn", r.stdout)
        # A sampling option would change nothing in a saved run: refused, not ignored.
        r = h.run(["watch", "--replay", path, "--count", "3"], raw=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--count applies only when watching", r.stderr)
        # A long run (here padded past the old 4 MiB bound, half an hour of an 8-GPU node) still replays.
        long_run = dict(d, samples=d["samples"] * (6_000_000 // len(json.dumps(d["samples"])) + 1))
        big = self.write("long.json", long_run)
        self.assertGreater(os.path.getsize(big), 6_000_000)
        r = h.run(["watch", "--replay", big, "--json"], raw=True)
        self.assertEqual(r.returncode, rc, r.stderr)
        self.assertEqual(len(json.loads(r.stdout)["samples"]), len(long_run["samples"]))
        with open(path, "w") as f:
            f.write('{"kind": "probe"}')
        r = h.run(["watch", "--replay", path], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a gpuwarm watch run", r.stderr)
        # Past the bound (256 MiB, a sparse file here) the refusal says how to stay under it.
        huge = os.path.join(self.tmp, "huge.json")
        with open(huge, "w") as f:
            f.truncate((256 << 20) + 1)
        r = h.run(["watch", "--replay", huge], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("huge.json: larger than 256 MiB, the most gpuwarm reads from it (watch longer runs at a "
                      "longer --interval)", r.stderr)

    def test_a_gpu_that_answers_as_lost_is_a_fault_not_stable(self):
        # Attached, but every query answers GPU_IS_LOST (15), as a held handle does once the GPU is gone.
        lost = h.gpu(1, returns={"nvmlDeviceGetClockInfo": 15, "nvmlDeviceGetPerformanceState": 15,
                                 "nvmlDeviceGetCurrentClocksEventReasons": 15})
        for mode in ("held", "detached"):
            rc, d = self.watch_json(h.scenario([h.gpu(0), lost]), "--count", "3", "--interval", "0", "--mode", mode)
            self.assertEqual(rc, 5, mode)
            self.assertEqual(d["summary"]["attribution"], "gpu-fault", mode)

    def test_gpu_selection(self):
        rc, d = self.watch_json(h.scenario([h.gpu(0), h.gpu(1)]), "--count", "2", "--interval", "0", "--gpu",
                                UUID1.lower())
        self.assertEqual([g["index"] for g in d["gpus"]], [1])
        rc, d = self.watch_json(h.scenario([h.gpu(0), h.gpu(1)]), "--count", "2", "--interval", "0", "--gpu", "0")
        self.assertEqual([g["index"] for g in d["gpus"]], [0])
        r = self.watch(h.scenario([h.gpu(0)]), "--count", "2", "--gpu", "7")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--gpu 7 names no GPU; NVML sees 0\n", r.stderr)  # as probe says it
        r = self.watch(h.scenario([h.gpu(0), h.gpu(1)]), "--count", "2", "--gpu", "GPU-nope")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"--gpu GPU-nope names no GPU; NVML sees 0 \(GPU-[0-9a-f-]+\), 1 \(GPU-[0-9a-f-]+\)\n")

    def test_legacy_nvml_without_app_clocks(self):
        legacy = os.path.join(h.FAKE_NVML_LEGACY_DIR, "libnvidia-ml.so.1")
        rc, d = self.watch_json(h.scenario([h.gpu(0)]), "--count", "3", "--interval", "0", nvml=legacy)
        self.assertEqual(rc, 0, d["summary"])
        s = d["samples"][0]["gpus"][0]
        self.assertEqual(s["sm_mhz"], 1980)
        self.assertIsNone(s["app_sm_mhz"])
        self.assertEqual(s["event_reasons"], 1)  # through the old ...ThrottleReasons name

    def test_no_driver_and_bad_input(self):
        r = self.watch(h.scenario([], init={"return": 9}), "--count", "2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("DRIVER_NOT_LOADED", r.stderr)
        self.assertIn("No NVIDIA driver is loaded", r.stderr)
        # A library named by hand that is not there is a typo on the command line; one that does not load is not.
        r = h.run(["watch", "--nvml", os.path.join(self.tmp, "missing.so")], raw=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--nvml: File does not exist", r.stderr)
        not_a_library = os.path.join(self.tmp, "not-a-library.so")
        with open(not_a_library, "w") as f:
            f.write("not ELF\n")
        r = h.run(["watch", "--nvml", not_a_library], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("No usable NVML", r.stderr)
        r = h.run(["watch", "--json", "--nvml", not_a_library], raw=True)
        self.assertEqual(r.returncode, 1)
        d = json.loads(r.stdout)  # with --json every failure is a document too
        self.assertEqual((d["kind"], d["gpus"], d["exit_code"]), ("gpuwarm-watch", [], 1))
        self.assertIn("not-a-library.so", d["error"])
        for args, needle in [(["--interval", "fast"], "--interval"),
                             (["--duration", "0"], "--duration"),
                             (["--duration", "5s", "--count", "3"], "give one"),
                             (["--load", "5", "--duration", "4s"], "ends before the load"),
                             (["--interval", "1ms", "--duration", "1h"], "at most"),
                             # Slots are counted in nanoseconds: a sub-nanosecond or a huge interval used to loop
                             # until a signal (review-s49 W1).
                             (["--interval", "0.000000000000000000001", "--duration", "1s"], "1ms to 1h"),
                             (["--interval", "10000000h", "--duration", "2s"], "1ms to 1h"),
                             # A --count that ends in the lead-in never runs the load (W3).
                             (["--load", "5", "--count", "3", "--interval", "100ms"], "before the load starts"),
                             (["--load", "5", "--count", "3", "--interval", "0"], "give --duration"),
                             # A sample less often than half the load may miss it (review-s49-diff D1).
                             (["--load", "1", "--interval", "3s"], "too long for a 1 s --load"),
                             (["--mode", "sometimes"], "--mode")]:
            with self.subTest(args=args):
                r = h.run(["watch", "--nvml", NVML, *args], raw=True)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(needle, r.stderr)
                self.assertEqual(r.stdout, "")

    def wait_for_file(self, path, timeout=20):
        """Waits until the fake NVML has written `path` (an init began): no sleep races a slow start."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            self.assertLess(time.monotonic(), deadline, f"{path} never written")
            time.sleep(0.02)

    def test_progress_line_on_a_terminal_and_ctrl_c_keeps_the_summary(self):
        second = os.path.join(self.tmp, "second-init")
        env = dict(os.environ, NO_COLOR="1", **self.env(h.scenario(
            [h.gpu(0)], timeline=[{"after_inits": 1, "init": {"started_file": second}}])))
        primary, secondary = pty.openpty()
        p = subprocess.Popen([h.BIN, "watch", "--nvml", NVML, "--interval", "100ms", "--duration", "30s"],
                             stdout=subprocess.PIPE, stderr=secondary, env=env, text=True)
        os.close(secondary)
        self.wait_for_file(second)  # the first sample is done
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=10)
        progress = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            progress += chunk
        os.close(primary)
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("Stable", out)
        samples = int(out.split(" sample(s)")[0].rsplit(" ", 1)[-1])
        self.assertLess(samples, 30, "SIGINT did not end the watch early")
        self.assertIn(b"samples \xc2\xb7 GPU0 1980 MHz P0 GpuIdle", progress)
        self.assertTrue(progress.endswith(b"\r\x1b[K"), progress[-40:])


    def test_a_hangup_or_quit_ends_the_watch_and_keeps_the_summary(self):
        # A watch over ssh whose session drops gets SIGHUP: what it sampled is still printed. Ctrl-\ (SIGQUIT)
        # is a stop as well, not a core dump that loses the samples.
        for sig in (signal.SIGHUP, signal.SIGQUIT):
            with self.subTest(signal=sig.name):
                second = os.path.join(self.tmp, f"second-init-{sig.name}")
                env = dict(os.environ, NO_COLOR="1", **self.env(h.scenario(
                    [h.gpu(0)], timeline=[{"after_inits": 1, "init": {"started_file": second}}])))
                p = subprocess.Popen([h.BIN, "watch", "--nvml", NVML, "--interval", "100ms", "--duration", "30s",
                                      "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
                self.wait_for_file(second)  # the first sample is done
                p.send_signal(sig)
                out, err = p.communicate(timeout=10)
                self.assertEqual(p.returncode, 0, err)
                self.assertLess(len(json.loads(out)["samples"]), 30)

    def test_a_stop_while_nvml_hangs_ends_the_watch_on_a_second_signal(self):
        # Samples read fine for 0.8 s, then nvmlInit takes 60 s (a wedged driver). The first SIGTERM waits for
        # the sample in progress (a slow but healthy one still ends with its summary); a second one gives the
        # sample up at once, and the summary prints with the hang named. Before, the watch ran until NVML
        # returned, and later ended without a summary.
        hung = os.path.join(self.tmp, "hung-init")
        sc = h.scenario([h.gpu(0)], timeline=[{"after_inits": 4, "init": {"delay_ms": 60000, "started_file": hung}}])
        env = dict(os.environ, NO_COLOR="1", **self.env(sc))
        p = subprocess.Popen([h.BIN, "watch", "--nvml", NVML, "--interval", "200ms", "--count", "50"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.wait_for_file(hung)  # four samples read, the fifth stuck in nvmlInit
        started = time.monotonic()
        p.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(p.poll(), "the first stop signal waits for the sample in progress")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=10)
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(p.returncode, 9, out + err)
        self.assertRegex(out, r"The watch ended early: SIGTERM arrived and NVML had not answered sample \d+ by a "
                              r"second stop signal \(stuck in nvmlInit\): a hung GPU or driver\?")
        self.assertIn("then NVML stopped answering", out)  # the GPU is not called stable
        # Hung from the first sample: nothing to summarize; said on stderr, cannot tell.
        first = os.path.join(self.tmp, "first-init")
        env = dict(os.environ, NO_COLOR="1",
                   **self.env(h.scenario([h.gpu(0)], init={"delay_ms": 60000, "started_file": first})))
        p = subprocess.Popen([h.BIN, "watch", "--nvml", NVML, "--interval", "100ms", "--count", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.wait_for_file(first)
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)  # two at once would merge into one pending signal
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 9, err)
        self.assertIn("gpuwarm: error: SIGINT arrived and NVML had not answered sample 1 by a second stop signal "
                      "(stuck in nvmlInit)", err)
        # A slow sample that returns (2 s) within the grace: one SIGTERM still ends with the summary.
        slow = os.path.join(self.tmp, "slow-init")
        env = dict(os.environ, NO_COLOR="1",
                   **self.env(h.scenario([h.gpu(0)], init={"delay_ms": 2000, "started_file": slow})))
        p = subprocess.Popen([h.BIN, "watch", "--nvml", NVML, "--interval", "100ms", "--count", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.wait_for_file(slow)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=20)
        self.assertNotIn("NVML had not answered", out + err)
        self.assertIn("gpuwarm watch", out)

    def test_nvml_that_stops_answering_ends_the_watch_with_its_summary(self):
        # Two samples read fine, then nvmlInit hangs (a wedged driver): the watch gives up on that sample
        # after --nvml-timeout, prints what it saw and says it cannot tell, instead of hanging past its duration.
        sc = h.scenario([h.gpu(0)], timeline=[{"after_inits": 2, "init": {"delay_ms": 60000}}])
        started = time.monotonic()
        rc, d = self.watch_json(sc, "--interval", "200ms", "--count", "20", "--nvml-timeout", "1")
        self.assertLess(time.monotonic() - started, 15)
        self.assertEqual((rc, d["summary"]["attribution"]), (9, "cannot-tell"), d["summary"])
        self.assertGreaterEqual(len(d["samples"]), 2)
        self.assertLess(len(d["samples"]), 20)
        self.assertRegex(d["nvml_stopped"], r"^NVML did not answer sample \d+ within 1 s \(--nvml-timeout\) "
                                            r"\(stuck in nvmlInit\): a hung GPU or driver\?$")
        self.assertEqual(d["summary"]["notes"][-1], "The watch ended early: " + d["nvml_stopped"])
        self.assertIn("Xid", d["summary"]["next_step"])
        gpu = d["summary"]["gpus"][0]  # stable while it answered, but not called stable
        self.assertEqual(gpu["attribution"], "cannot-tell", gpu)
        # The time NVML did not answer was not watched.
        self.assertLessEqual(d["duration_s"], d["samples"][-1]["t_s"] + 0.2 + 1e-6)
        # The replay says the same.
        path = self.write("run.json", d)
        r = h.run(["watch", "--replay", path], raw=True)
        self.assertEqual(r.returncode, 9, r.stderr)
        self.assertIn("The watch ended early: NVML did not answer sample", r.stdout)
        # Hung from the first sample: nothing was seen, so nothing to summarize; cannot tell, said on stderr.
        r = self.watch(h.scenario([h.gpu(0)], init={"delay_ms": 60000}), "--count", "2", "--nvml-timeout", "0.5")
        self.assertEqual(r.returncode, 9, r.stderr)
        self.assertIn("gpuwarm: error: NVML did not answer sample 1 within 0.5 s (--nvml-timeout) (stuck in nvmlInit)",
                      r.stderr)

if __name__ == "__main__":
    unittest.main()
