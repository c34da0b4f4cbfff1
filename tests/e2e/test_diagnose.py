"""gpuwarm diagnose / snapshot end to end: one scenario per verdict, the
recorded H100 snapshot, bad input, non-root, golden text and JSON."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness as h

OLD_MISMATCH = [
    "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  570.124.04  Tue Mar  4 2025",
    "NVRM: API mismatch: the client has the version 570.133.07, but",
    "NVRM: this kernel module has the version 570.124.04.  Please",
    "NVRM: make sure that this kernel module and all NVIDIA driver",
    "NVRM: components have the same version.",
]


class Diagnose(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)

    def diagnose_json(self, **kw):
        r = h.run(["diagnose", "--json"], root=self.root, **kw)
        self.assertIn(r.returncode, (0, 3, 4, 5), r.stderr)
        return r.returncode, json.loads(r.stdout)

    def test_healthy_node(self):
        self.root.driver().daemon_binary().daemon_process().kmsg(["NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  x"])
        rc, d = self.diagnose_json(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual(rc, 0)
        self.assertEqual(d["verdict"]["code"], "healthy")
        self.assertEqual([g["held_by_daemon"] for g in d["gpus"]], ["yes", "yes"])
        self.assertEqual([f["rule_id"] for f in d["findings"]], ["OK000", "NOTE002"])
        h.check_golden(self, "diagnose-healthy.json", json.dumps(h.normalize_json(d, self.root), indent=2, sort_keys=True) + "\n")


    def test_every_unread_fact_says_why(self):
        # A fact without its reason is an unknown nobody can act on: none, whether systemd is not asked, has no
        # bus, or the node has no driver at all.
        self.root.driver().daemon_binary().daemon_process().kmsg()
        bare = h.FakeRoot()
        self.addCleanup(bare.cleanup)

        def reasonless(node, path="snapshot"):
            if isinstance(node, dict):
                if set(node) == {"missing"}:
                    return [path] if not node["missing"].strip() else []
                return [p for k, v in node.items() for p in reasonless(v, f"{path}.{k}")]
            if isinstance(node, list):
                return [p for i, v in enumerate(node) for p in reasonless(v, f"{path}[{i}]")]
            return []
        for root, systemd in ((self.root, False), (self.root, True), (bare, True)):
            r = h.run(["diagnose", "--json"], root=root, systemd=systemd, scenario_obj=h.scenario([h.gpu(0)]),
                      extra_env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
            d = json.loads(r.stdout)
            self.assertEqual(reasonless(d["snapshot"]), [], (root.path, systemd))

    def test_check_says_what_it_read_not_healthy(self):
        # A GPU slowed by thermal events: diagnose calls the node RAS. check does not read clocks (nor the unit),
        # so it must not call the node healthy: its line says what it confirmed, and its JSON is its own kind,
        # which fleet-summary and --snapshot refuse rather than count as a diagnosis.
        self.root.driver().daemon_binary().daemon_process().kmsg()
        scenario = h.scenario([h.gpu(0, reasons=0x20), h.gpu(1)])
        rc, d = self.diagnose_json(scenario_obj=scenario)
        self.assertEqual((rc, d["verdict"]["rule_id"]), (5, "CLK001"))
        r = h.run(["check"], root=self.root, scenario_obj=scenario)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("OK 2 GPU(s) persistent"), r.stdout)
        self.assertNotIn("healthy", r.stdout.lower())
        r = h.run(["check", "--json"], root=self.root, scenario_obj=scenario)
        self.assertEqual(r.returncode, 0, r.stderr)
        c = json.loads(r.stdout)
        self.assertEqual(c["kind"], "gpuwarm-check")
        self.assertTrue(c["check"]["line"].startswith("OK 2 GPU(s) persistent"), c["check"])
        self.assertNotIn("verdict", c)  # decided without clocks or the unit: the "check" object is the answer
        self.assertNotIn("CLK001", [f["rule_id"] for f in c["findings"]])
        unread = {u["fact"]: u["meaning"] for u in c["gpus"][0]["unread"]}
        self.assertEqual(unread["active clock-event reasons"], "not-read", unread)
        reasons = c["snapshot"]["nvml"]["gpus"][0]["event_reasons_active"]
        self.assertEqual(reasons, {"missing": "not read by check (gpuwarm diagnose reads it)"})
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "check.json")
            with open(path, "w") as f:
                f.write(r.stdout)
            s = h.run(["fleet-summary", path], raw=True)
            self.assertEqual(s.returncode, 1, s.stdout + s.stderr)  # nothing readable
            self.assertIn(f"{path}: a `gpuwarm check --json` answer (clocks and the unit left unread): fleet-summary "
                          "reads diagnose, fix, verify and probe reports", s.stdout)
            s = h.run(["check", "--snapshot", path, "--max-length", "400"], raw=True)
            self.assertEqual(s.returncode, 2, s.stdout + s.stderr)
            self.assertIn("a `gpuwarm check --json` answer", s.stdout)
            # One written before check had a kind of its own ("gpuwarm-diagnosis" with a "check" object) too.
            c["kind"] = "gpuwarm-diagnosis"
            c["verdict"] = {"code": "healthy"}
            with open(path, "w") as f:
                json.dump(c, f)
            s = h.run(["fleet-summary", path], raw=True)
            self.assertEqual(s.returncode, 1, s.stdout + s.stderr)
            self.assertIn("a `gpuwarm check --json` answer", s.stdout)
            s = h.run(["check", "--snapshot", path, "--max-length", "400"], raw=True)
            self.assertEqual(s.returncode, 2, s.stdout + s.stderr)
    def test_persistence_off_runbook_applies(self):
        self.root.driver().daemon_binary().kmsg()
        r = h.run(["diagnose"], root=self.root, scenario_obj=h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)]))
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        h.check_golden(self, "diagnose-persistence-off.txt", h.normalize_text(r.stdout, self.root))

    def test_blog_case_reboot_pending(self):
        self.root.driver(version="570.124.04").daemon_binary().kmsg(OLD_MISMATCH)
        sc = h.scenario([], nvml_version="12.570.133.07", init={"return": 18})
        rc, d = self.diagnose_json(scenario_obj=sc)
        self.assertEqual(rc, 4)
        self.assertEqual(d["verdict"]["code"], "reboot-pending")
        drv = [f for f in d["findings"] if f["rule_id"] == "DRV003"][0]
        self.assertIn("570.124.04", drv["message"])
        self.assertIn("570.133.07", drv["message"])
        self.assertTrue(any("API mismatch" in e for e in drv["evidence"]))

    def test_new_mismatch_form_from_a_journal_file(self):
        self.root.driver(version="580.82.07").daemon_binary()
        log = os.path.join(self.root.path, "journal.txt")
        with open(log, "w") as f:
            f.write("Jun 01 12:00:00 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 271345)\n"
                    "Jun 01 12:00:00 gpu1 kernel: NVRM: has the version 580.95.05, but this kernel module has\n"
                    "Jun 01 12:00:00 gpu1 kernel: NVRM: the version 580.82.07.  Please make sure that this\n")
        rc, d = self.diagnose_json(scenario_obj=h.scenario([], nvml_version="13.580.95.05", init={"return": 18}),
                                   kernel_log=log)
        self.assertEqual(rc, 4)
        mm = d["snapshot"]["kernel_log"]["mismatches"][0]
        self.assertEqual((mm["client_version"], mm["kernel_version"]), ("580.95.05", "580.82.07"))

    def test_thermal_routes_to_ras(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        sc = h.scenario([h.gpu(0), h.gpu(1, reasons=0x40 | 0x1, temperature=92)])
        rc, d = self.diagnose_json(scenario_obj=sc)
        self.assertEqual(rc, 5)
        self.assertEqual(d["verdict"]["code"], "ras")
        clk = [f for f in d["findings"] if f["rule_id"] == "CLK001"][0]
        self.assertEqual(clk["gpu"], 1)
        # Read only because the thermal reason fired (decision depth).
        self.assertIn("temperature 92 C", clk["evidence"])

    def test_pinned_application_clocks(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        pinned = h.gpu(0, app_clocks={"sm": 1410, "graphics": 1410, "mem": 2619})
        rc, d = self.diagnose_json(scenario_obj=h.scenario([pinned, h.gpu(1)]))
        self.assertEqual((rc, d["verdict"]["code"]), (5, "pinned-clocks"))

    def test_no_driver_at_all_says_so_plainly(self):
        r = h.run(["diagnose"], root=self.root, nvml_dir=h.NO_NVML)
        self.assertEqual(r.returncode, 5)
        self.assertIn("No NVIDIA driver is present", r.stdout)
        self.assertIn("Driver-install problem", r.stdout)

    def test_a_gpu_node_without_its_driver_is_told_from_a_cpu_only_one(self):
        # A kernel update whose DKMS build failed: GPUs on the bus, no module. Metrics carry the count that
        # the alert rules use to tell this node from a CPU-only one (both say driver-install).
        r = h.run(["diagnose"], root=self.root, nvml_dir=h.NO_NVML)
        self.assertNotIn("on a GPU node", r.stdout)
        metrics = ["metrics", "--root", self.root.path, "--no-systemd"]  # no library under the root
        m = h.run(metrics, raw=True)
        self.assertRegex(m.stdout, r'gpuwarm_fact_unknown\{fact="gpus_without_driver",reason="[^"]+"\} 1')
        self.root.pci_gpus_without_driver(("3b", "5e"))
        r = h.run(["diagnose"], root=self.root, nvml_dir=h.NO_NVML)
        self.assertEqual(r.returncode, 5)
        self.assertIn("No NVIDIA driver is present on a GPU node: 2 NVIDIA GPU(s) on the PCI bus", r.stdout)
        self.assertIn("PCI 0000:5e:00.0: NVIDIA display/3D controller, no driver bound", r.stdout)
        m = h.run(metrics, raw=True)
        self.assertIn("\ngpuwarm_gpus_without_driver 2\n", m.stdout)
        self.assertIn('gpuwarm_verdict{verdict="driver-install"} 1', m.stdout)

    def test_gpus_nouveau_took_are_gpus_without_the_nvidia_driver(self):
        # nouveau not blacklisted: a driver is bound, but not NVIDIA's. The same node as one with its GPUs
        # unbound, told apart in the evidence and the next step.
        self.root.pci_gpus_without_driver(("3b", "5e"), driver="nouveau")
        r = h.run(["diagnose"], root=self.root, nvml_dir=h.NO_NVML)
        self.assertEqual(r.returncode, 5)
        self.assertIn("No NVIDIA driver is present on a GPU node: 2 NVIDIA GPU(s) on the PCI bus", r.stdout)
        self.assertIn("PCI 0000:3b:00.0: NVIDIA display/3D controller, driven by nouveau", r.stdout)
        self.assertIn("`blacklist nouveau`", r.stdout)
        metrics = ["metrics", "--root", self.root.path, "--no-systemd"]  # no library under the root
        m = h.run(metrics, raw=True)
        self.assertIn("\ngpuwarm_gpus_without_driver 2\n", m.stdout)

    def test_a_gpu_nouveau_took_beside_the_nvidia_driver_is_a_driver_install(self):
        # The NVIDIA module took GPU 0; nouveau (not blacklisted) took another first. Jobs see one GPU fewer:
        # a driver-install verdict (DRV005) with the modprobe.d fix, never a hardware fault, and `check` drains.
        self.root.driver(gpus=1).daemon_binary().daemon_process(holds=(0,)).kmsg()
        self.root.pci_gpus_without_driver(("5e",), driver="nouveau")
        rc, d = self.diagnose_json(scenario_obj=h.scenario([h.gpu(0, persistence=1)]))
        self.assertEqual((rc, d["verdict"]["rule_id"], d["verdict"]["route"]), (5, "DRV005", "driver-install"))
        finding = next(f for f in d["findings"] if f["rule_id"] == "DRV005")
        self.assertEqual(finding["evidence"], ["PCI 0000:5e:00.0: NVIDIA display/3D controller, driven by nouveau"])
        self.assertIn("`blacklist nouveau` and `options nouveau modeset=0` in /etc/modprobe.d/blacklist-nouveau.conf",
                      d["verdict"]["next_step"])
        self.assertNotIn("GPU001", [f["rule_id"] for f in d["findings"]])
        scenario = h.scenario([h.gpu(0, persistence=1)])
        r = h.run(["check"], root=self.root, scenario_obj=scenario)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stdout.startswith("DRV005 "), r.stdout)
        # Asked only about persistence, the GPU nouveau holds is one whose persistence went unread: unknown.
        r = h.run(["check", "--rules", "PM001"], root=self.root, scenario_obj=scenario)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)

    def test_daemon_binary_missing(self):
        self.root.driver(gpus=1).kmsg()
        rc, d = self.diagnose_json(scenario_obj=h.scenario([h.gpu(0, persistence=0)]))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (5, "PD001"))

    def test_daemon_with_no_persistence_mode_and_gpu_not_held(self):
        self.root.driver().daemon_binary().daemon_process(args=("--no-persistence-mode",), holds=()).kmsg()
        rc, d = self.diagnose_json(scenario_obj=h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)]))
        self.assertEqual(rc, 3)
        ids = [f["rule_id"] for f in d["findings"]]
        self.assertEqual(ids, ["PM001", "PM001", "PD002", "PD005", "PD005", "NOTE002"])

    def test_lost_gpu_and_nvml_error_codes(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        sc = h.scenario([h.gpu(0, returns={"nvmlDeviceGetPersistenceMode": 4}), h.gpu(1, handle_return=15)])
        rc, d = self.diagnose_json(scenario_obj=sc)
        self.assertEqual((rc, d["verdict"]["rule_id"]), (5, "GPU001"))
        self.assertEqual(d["gpus"][1]["error"], "GPU_IS_LOST")
        self.assertIsNone(d["gpus"][0]["persistence"])

    def test_older_driver_library_through_fallback_symbols(self):
        self.root.driver(version="470.256.02").daemon_binary().daemon_process().kmsg()
        sc = h.scenario([h.gpu(0), h.gpu(1)])
        rc, d = self.diagnose_json(scenario_obj=sc, nvml_dir=h.FAKE_NVML_LEGACY_DIR)
        self.assertEqual(rc, 0, json.dumps(d["findings"]))
        self.assertEqual(d["driver"]["user_space"], "470.256.02")  # from the library's file name
        self.assertEqual(d["gpus"][0]["event_reasons_active"], ["GpuIdle"])

    def test_slow_nvml_init_is_measured(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        sc = h.scenario([h.gpu(0), h.gpu(1)], init={"delay_ms": 300})
        rc, d = self.diagnose_json(scenario_obj=sc)
        self.assertGreaterEqual(d["snapshot"]["nvml"]["init_ms"], 290)

    def test_binary_junk_in_kernel_log(self):
        self.root.driver().daemon_binary().daemon_process()
        self.root.write("dev/kmsg", bytes(range(256)) * 64 + b"\n[    1.000000] NVRM: API mismatch \xff\xfe\n")
        rc, d = self.diagnose_json(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual(rc, 0)
        self.assertEqual(len(d["snapshot"]["kernel_log"]["mismatches"]), 1)

    def test_snapshot_round_trip_through_a_file(self):
        self.root.driver(gpus=1).daemon_binary().kmsg()
        out = os.path.join(self.root.path, "snap.json")
        r = h.run(["snapshot", "-o", out], root=self.root, scenario_obj=h.scenario([h.gpu(0, persistence=0)]))
        self.assertEqual(r.returncode, 0, r.stderr)
        r2 = h.run(["diagnose", "--snapshot", out, "--json"])
        self.assertEqual(r2.returncode, 3, r2.stderr)
        self.assertEqual(json.loads(r2.stdout)["verdict"]["rule_id"], "PM001")
        # snapshot reads every fact, diagnose only the decisive ones.
        with open(out) as f:
            snap = json.load(f)
        self.assertEqual(snap["nvml"]["gpus"][0]["max_clocks"]["sm"], 1980)
        # "-o -" is standard output, as everywhere: no file named "-" appears.
        cwd = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, cwd)
        r3 = subprocess.run([h.BIN, "snapshot", "-o", "-", "--root", self.root.path, "--no-systemd"],
                            capture_output=True, text=True, cwd=cwd, timeout=60)
        self.assertEqual(r3.returncode, 0, r3.stderr)
        self.assertEqual(json.loads(r3.stdout)["kind"], "gpuwarm-snapshot")
        self.assertEqual(os.listdir(cwd), [])


class RecordedH100(unittest.TestCase):
    """The snapshot recorded on the real H100 (2026-12-05, this build's facts): legacy flag, daemon not running."""

    def setUp(self):
        h.require_binary(self)
        self.example = os.path.join(h.SOURCE_DIR, "examples", "h100-legacy-flag.json")

    def test_text(self):
        r = h.run(["diagnose", "--snapshot", self.example])
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("legacy kernel flag", r.stdout)
        h.check_golden(self, "diagnose-h100-legacy.txt", h.normalize_text(r.stdout))

    def test_json(self):
        r = h.run(["diagnose", "--snapshot", self.example, "--json"])
        d = json.loads(r.stdout)
        self.assertEqual(d["schema_version"], 1)
        self.assertEqual(d["verdict"]["rule_id"], "PM002")
        self.assertEqual(d["verdict"]["exit_code"], 3)
        self.assertEqual(d["gpus"][0]["persistence"], "Enabled")
        self.assertEqual(d["snapshot"]["absent_keys"], [])
        legacy = d["findings"][0]
        self.assertIn("kernel: NVRM: Persistence mode is deprecated and will be removed in a future release",
                      legacy["evidence"])


class RecordedByTheFirstBuild(unittest.TestCase):
    """The H200's snapshot, recorded by gpuwarm's first builds: it lacks facts read since, so it is cannot tell
    (UNK010), naming them, never diagnosed on their defaults."""

    def setUp(self):
        h.require_binary(self)
        self.example = os.path.join(h.SOURCE_DIR, "examples", "h200-legacy-flag.json")

    def test_json(self):
        r = h.run(["diagnose", "--snapshot", self.example, "--json"])
        d = json.loads(r.stdout)
        self.assertEqual((d["verdict"]["rule_id"], d["verdict"]["exit_code"]), ("UNK010", 9))
        self.assertEqual(d["gpus"][0]["persistence"], "Enabled")  # what it did record still reads
        for key in ("daemon.processes_unread", "service.manager_booted", "nvml.not_opened", "kernel_log.named"):
            self.assertIn(key, d["snapshot"]["absent_keys"])
        # Saved again (diagnose --json embeds it), it still says what it lacked.
        again = os.path.join(tempfile.mkdtemp(), "again.json")
        self.addCleanup(shutil.rmtree, os.path.dirname(again))
        with open(again, "w") as f:
            f.write(r.stdout)
        d2 = json.loads(h.run(["diagnose", "--snapshot", again, "--json"]).stdout)
        self.assertEqual((d2["verdict"]["rule_id"], d2["snapshot"]["absent_keys"]),
                         ("UNK010", d["snapshot"]["absent_keys"]))


class BadInput(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_truncated_snapshot(self):
        path = os.path.join(self.tmp, "t.json")
        with open(path, "w") as f:
            f.write('{"schema_version": 1, "nvml": {"gpus": [')
        r = h.run(["diagnose", "--snapshot", path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("not valid JSON", r.stderr)
        self.assertEqual(r.stdout, "")
        # With --json, `| jq` still gets a document, and the reason (diagnose and fix alike).
        for args in (["diagnose", "--json"], ["fix", "--dry-run", "--json"]):
            r = h.run([*args, "--snapshot", path])
            self.assertEqual(r.returncode, 1, args)
            d = json.loads(r.stdout)
            self.assertEqual(d["exit_code"], 1, args)
            self.assertIn("not valid JSON", d.get("error", d.get("reason")), args)

    def test_snapshot_of_the_wrong_shape(self):
        path = os.path.join(self.tmp, "w.json")
        with open(path, "w") as f:
            json.dump({"schema_version": 1, "nvml": {"gpus": 7}}, f)
        r = h.run(["diagnose", "--snapshot", path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("malformed snapshot", r.stderr)

    def test_usage_errors_exit_2(self):
        cases = [
            (["diagnos"], "Did you mean `gpuwarm diagnose`?"),
            (["diagnose", "--root", "/nonexistent/dir"], "Directory does not exist"),
            (["diagnose", "--snapshot", "/nonexistent.json"], "File does not exist"),
            (["diagnose", "--snapshot", h.BIN, "--root", "/"], "excludes"),
            (["diagnose", "--bogus"], "--bogus"),
            (["--color", "sometimes", "diagnose"], "--color: sometimes not in {auto,always,never}\nRun `gpuwarm --help`"),
            (["diagnose", "--color", "sometimes"], "Run `gpuwarm --help`"),  # gpuwarm's own option
            ([], "no command given"),
            (["diagnose", "--nvml-timeout", "abc"], "abc is not a number (give one from 0.1 to 3600)"),
            (["check", "--max-length", "abc"], "abc is not a whole number (give one from 16 to 4096)"),
            (["watch", "--count", "1"], "--count: 1 is out of range (give one from 2 to 100000)"),
            (["probe", "--rounds", "-1"], "--rounds: -1 is out of range (give one from 1 to 20)"),
            (["diagnose", "--root", "/", "--root", "/"], "--root is given more than once: give it once"),
            (["watch", "x", "y"], "not expected here: x y"),
            # An option the command lacks is said first, before a required argument CLI11 then misses.
            (["reset", "--bogus"], "gpuwarm reset has no option --bogus\nRun `gpuwarm reset --help`"),
            (["lint", "--bogus", "x"], "gpuwarm lint has no option --bogus\nRun `gpuwarm lint --help`"),  # no "did you mean --docs"
            # A value that begins with '-' is the option's value, not an option it lacks.
            (["snapshot", "-o/tmp/gpuwarm-none.json", "--nvml-timeout", "abc"], "--nvml-timeout: abc is not a number"),
            (["diagnose", "--kernel-log", "-dmesg.txt"], "--kernel-log: File does not exist"),
            (["diagnose", "a b", "c"], 'not expected here: "a b" c'),
            (["diagnose", "x\ngpuwarm: note: all good"], 'not expected here: "x\\x0agpuwarm: note: all good"'),
            # A library or binary named by hand that is not there is a typo, not a node without a driver: in a
            # health check's arguments it would otherwise drain every node as "driver-install" (DRV002).
            (["check", "--nvml", "/nonexistent/libnvidia-ml.so.1"], "--nvml: File does not exist"),
            (["diagnose", "--nvml", "libnvidia-ml.so.1"], f"File does not exist: {os.getcwd()}/libnvidia-ml.so.1"),
            (["probe", "--nvml", "/nonexistent/libnvidia-ml.so.1"], "--nvml: File does not exist"),
            (["watch", "--cuda", "/nonexistent/libcuda.so.1"], "--cuda: File does not exist"),
            (["guard", "--daemon", "/nonexistent/nvidia-persistenced"], "--daemon: File does not exist"),
            (["snapshot", "-o", ""], "an empty FILE (use - for standard output)"),
            (["--bogus"], '"--bogus" is no option of gpuwarm itself, and no command was given'),
            (["--bogus", "diagnose"], "a command's options go after its name\nRun `gpuwarm --help`"),
            # The command line is quoted back escaped: it may carry what a terminal obeys.
            (["diagnose", "--root", "/x\x1b[31m"], "Directory does not exist: /x\\x1b[31m"),
            (["--color", "\x1b[2J", "diagnose"], "--color: \\x1b[2J not in"),
        ]
        for args, needle in cases:
            r = h.run(args, raw=True)
            self.assertEqual(r.returncode, 2, (args, r.stdout, r.stderr))
            self.assertIn(needle, r.stderr, args)
            self.assertNotIn("\x1b", r.stderr, args)

    def test_usage_errors_of_a_json_run_are_a_document_too(self):
        cases = [(["diagnose", "--json", "--bogus"], "gpuwarm-diagnosis", "gpuwarm diagnose has no option --bogus"),
                 (["check", "--json", "--max-length", "1"], "gpuwarm-check", "--max-length: 1 is out of range"),
                 (["watch", "--json", "--interval", "5x"], "gpuwarm-watch", "--interval: cannot read \"5x\""),
                 (["reset", "--gpu", "0", "--yes", "--dry-run", "--json"], "gpuwarm-reset", "contradict"),
                 (["lint", "--json"], "gpuwarm-lint", "give at least one PATH"),
                 (["check", "--json=1", "--nvml-timeout", "abc"], "gpuwarm-check", "abc is not a number"),
                 (["diagnose", "--json", "--color", "bogus"], "gpuwarm-diagnosis", "--color: bogus not in")]
        for args, kind, error in cases:
            r = h.run(args, raw=True)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            d = json.loads(r.stdout)
            self.assertEqual((d["kind"], d["exit_code"]), (kind, 2), args)
            self.assertIn(error, d["error"], args)
            self.assertIn(error, r.stderr, args)
        # Without --json (or with it after "--", where it is no option), stdout stays empty.
        for args in (["diagnose", "--bogus"], ["lint", "--bogus", "--", "--json"]):
            r = h.run(args, raw=True)
            self.assertEqual((r.returncode, r.stdout), (2, ""), args)

    def test_help_is_complete(self):
        r = h.run(["diagnose", "--help"])
        self.assertEqual(r.returncode, 0)
        for needle in ["--root", "--kernel-log", "--nvml", "--no-systemd", "--snapshot", "--json", "--full",
                       "--list-rules", "Exit codes", "reboot pending", "routed elsewhere"]:
            self.assertIn(needle, r.stdout)
        top = h.run(["--help"])
        self.assertIn("diagnose", top.stdout)
        self.assertIn("snapshot", top.stdout)

    def test_list_rules(self):
        r = h.run(["diagnose", "--list-rules", "--json"])
        ids = [x["id"] for x in json.loads(r.stdout)]
        # UNK010 first: a recording that lacks facts decides before any rule reads their defaults.
        self.assertEqual(ids[:6], ["UNK010", "DRV001", "NVML001", "DRV002", "DRV005", "DRV003"])
        for rule in ("PM002", "UNK001", "UNK004", "UNK009", "PM003", "PM004", "PM005"):
            self.assertIn(rule, ids)
        text = h.run(["diagnose", "--list-rules"]).stdout
        # The NVML return-code table: GPU_IS_LOST at init is RAS, NO_PERMISSION cannot tell.
        self.assertRegex(text, r"15 GPU_IS_LOST\s+gpu-fault\s+ras ")
        self.assertRegex(text, r" 4 NO_PERMISSION\s+permission\s+cannot-tell ")


class NonRoot(unittest.TestCase):
    """Read-only without root: it works and says which facts needed root."""

    def setUp(self):
        h.require_binary(self)
        if os.geteuid() != 0:
            self.skipTest("needs root to drop to another user (run as root, e.g. in CI)")
        if not shutil.which("setpriv"):
            self.skipTest("setpriv not installed")
        for path in (h.BIN, os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")):
            probe = h.subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                                      "test", "-r", path])
            if probe.returncode != 0:
                self.skipTest(f"{path} is not readable by an unprivileged user here")
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)

    def test_reports_what_needed_root(self):
        self.root.driver().daemon_binary().daemon_process().kmsg(mode=0o600)
        os.chmod(self.root.p("proc/4242/fd"), 0o500)
        r = h.run(["diagnose", "--json"], root=self.root, scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]),
                  user=65534)
        self.assertEqual(r.returncode, 0, r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual(d["verdict"]["code"], "healthy")
        note = [f for f in d["findings"] if f["rule_id"] == "NOTE001"][0]
        self.assertTrue(any("kernel log" in e for e in note["evidence"]), note)
        self.assertTrue(any("open files of nvidia-persistenced" in e for e in note["evidence"]), note)
        self.assertEqual(d["gpus"][0]["held_by_daemon"], "?")

    def test_reset_without_root_says_so_before_anything(self):
        # Not "cannot open lock ...: Permission denied": the reason, before the lock or any reading (review-s43 L9).
        # On the live tree (a reset acts only there), which this user cannot change anyway.
        r = h.run(["reset", "--gpu", "0", "--yes", "--json"], user=65534)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual((d["outcome"], d["exit_code"], d["steps"]), ("error", 1, []))
        self.assertIn("resetting GPUs needs root", d["reason"])
        self.assertTrue(d["hostname"] and d["taken_at"])
        self.assertIn("Nothing was changed", r.stderr)
        # reload-modules alike: the reason first, not the refusal its unreadable /proc would give (cannot tell).
        r = h.run(["reload-modules", "--yes", "--json"], user=65534)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual((json.loads(r.stdout)["error"], json.loads(r.stdout)["carried_out"]), ("needs root", False))
        self.assertIn("reloading kernel modules needs root (nothing changed)", r.stderr)


if __name__ == "__main__":
    unittest.main()
