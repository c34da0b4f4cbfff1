"""gpuwarm metrics end to end: the exposition for fake nodes (promtool-clean, unknown facts never 0),
the node_exporter textfile, de-initialization seen by successive runs (which a held NVML would hide),
the alert rules under promtool, and the systemd units under systemd-analyze."""
import datetime
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import harness as h

CONTRIB = os.path.join(h.SOURCE_DIR, "contrib")


def samples(text):
    """{(name, frozenset(labels)): value} from exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(parsed, name, **labels):
    found = [v for (n, l), v in parsed.items() if n == name and set(labels.items()) <= set(l)]
    return found[0] if len(found) == 1 else None if not found else found


class Metrics(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(shutil.rmtree, self.root.path, ignore_errors=True)
        self.root.driver(gpus=2)
        self.tmp = tempfile.mkdtemp(prefix="gpuwarm-metrics-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def metrics(self, scenario, *extra, wrap=None):
        args = ["metrics", "--root", self.root.path, "--no-systemd",
                "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), *extra]
        path = os.path.join(self.tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(scenario, f)
        if wrap:  # run under another program (setpriv): no harness
            env = dict(os.environ, NO_COLOR="1", FAKE_NVML_SCENARIO=path)
            return subprocess.run(wrap + [h.BIN] + args, env=env, capture_output=True, text=True, timeout=60)
        return h.run(args, raw=True, extra_env={"FAKE_NVML_SCENARIO": path})

    def test_exposition_for_a_node_with_persistence_off_and_an_unread_gpu(self):
        self.root.daemon_binary()
        scenario = h.scenario([h.gpu(0, persistence=0), h.gpu(1, returns={"nvmlDeviceGetPersistenceMode": 4})])
        r = self.metrics(scenario)
        self.assertEqual(r.returncode, 0, r.stderr)
        p = samples(r.stdout)
        self.assertEqual(value(p, "gpuwarm_gpu_persistence_mode", gpu="0"), 0)
        # GPU 1's persistence could not be read: no 0 for it, an unknown with the reason instead.
        self.assertIsNone(value(p, "gpuwarm_gpu_persistence_mode", gpu="1"))
        self.assertEqual(value(p, "gpuwarm_gpu_fact_unknown", gpu="1", fact="persistence_mode"), 1)
        # GPU 0 decides (a definite answer outranks GPU 1's unknown); the unknown is still exported.
        self.assertEqual(value(p, "gpuwarm_verdict", verdict="action-needed"), 1)
        self.assertEqual(value(p, "gpuwarm_finding", rule_id="UNK004"), 1)
        self.assertEqual(sum(v for (n, _), v in p.items() if n == "gpuwarm_verdict"), 1)
        self.assertEqual(value(p, "gpuwarm_persistenced_running"), 0)
        self.assertEqual(value(p, "gpuwarm_fact_unknown", fact="persistenced_unit_active"), 1)
        self.assertEqual(value(p, "gpuwarm_gpu_sm_clock_hertz", gpu="0"), 1980e6)
        self.assertEqual(value(p, "gpuwarm_gpu_clock_event_reason_active", gpu="0", reason="gpu_idle"), 1)
        self.assertEqual(value(p, "gpuwarm_driver_reboot_pending"), 0)
        self.assertRegex(r.stdout, r'gpuwarm_build_info\{version="\d+\.\d+\.\d+",commit="[^"]+"\} 1')
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=r.stdout, capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_textfile_is_replaced_whole_with_mode_0644(self):
        scenario = h.scenario([h.gpu(0)])
        old = os.path.join(self.tmp, "gpuwarm.prom")
        with open(old, "w") as f:
            f.write("stale\n")
        os.chmod(old, 0o600)
        r = self.metrics(scenario, "--textfile", self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(stat.S_IMODE(os.stat(old).st_mode), 0o644)
        with open(old) as f:
            text = f.read()
        self.assertIn("gpuwarm_gpu_persistence_mode{gpu=\"0\"", text)
        self.assertEqual(sorted(os.listdir(self.tmp)), ["gpuwarm.prom", "scenario.json"])  # no temporary left
        r = self.metrics(scenario, "--textfile", os.path.join(self.tmp, "missing"))
        self.assertEqual(r.returncode, 1)
        self.assertIn(os.path.join(self.tmp, "missing", "gpuwarm.prom"), r.stderr)
        self.assertIn("No such file or directory", r.stderr)
        # Relative DIR and --root, as a shell completes them: from the working directory.
        os.mkdir(os.path.join(self.tmp, "tf"))
        env = dict(os.environ, NO_COLOR="1", FAKE_NVML_SCENARIO=os.path.join(self.tmp, "scenario.json"))
        r = subprocess.run([h.BIN, "metrics", "--root", os.path.relpath(self.root.path, self.tmp), "--no-systemd",
                            "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), "--textfile", "tf"],
                           cwd=self.tmp, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(self.tmp, "tf", "gpuwarm.prom")) as f:
            self.assertIn("gpuwarm_gpu_persistence_mode{gpu=\"0\"", f.read())

    def test_textfile_folder_of_the_exporters_user(self):
        # Sites chown node_exporter's folder to the user it runs as: written there (the file root's, 0644), but
        # not into one that group or others can write.
        if os.geteuid() != 0:
            self.skipTest("needs root to give a folder to another user")
        folder = os.path.join(self.tmp, "prometheus")
        os.mkdir(folder, 0o755)
        os.chown(folder, 65534, 65534)
        r = self.metrics(h.scenario([h.gpu(0)]), "--textfile", folder)
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(folder, "gpuwarm.prom"))
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o644))
        # The same under the capabilities the shipped timer's unit leaves root (review-s57 M2: without
        # CAP_DAC_OVERRIDE, root may not create a file in another user's 0755 folder, and every run failed).
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            print("  (skipped: the unit's capability set; no setpriv here)")
        else:
            with open(os.path.join(h.SOURCE_DIR, "contrib", "systemd", "gpuwarm-metrics.service")) as f:
                caps = re.search(r"^CapabilityBoundingSet=(.*)$", f.read(), re.M).group(1).split()
            bounding = "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
            os.unlink(os.path.join(folder, "gpuwarm.prom"))
            r = self.metrics(h.scenario([h.gpu(0)]), "--textfile", folder, wrap=[setpriv, "--bounding-set", bounding])
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(os.path.exists(os.path.join(folder, "gpuwarm.prom")))
        os.chmod(folder, 0o775)
        r = self.metrics(h.scenario([h.gpu(0)]), "--textfile", folder)
        self.assertEqual(r.returncode, 1)
        self.assertIn("writable by group or others", r.stderr)

    def test_the_locks_are_made_at_boot_for_the_hardened_units(self):
        # The exporter's and the timer's units may not create files in /run (ProtectSystem=strict): the packages'
        # tmpfiles.d entry makes the lock files, which a reading then shares.
        tool = shutil.which("systemd-tmpfiles")
        if not tool:
            self.skipTest("systemd-tmpfiles not installed")
        if os.geteuid() != 0:
            self.skipTest("needs root: the files are made root's")
        os.makedirs(os.path.join(self.tmp, "boot", "run"))
        r = subprocess.run([tool, "--create", "--root", os.path.join(self.tmp, "boot"),
                            os.path.join(h.SOURCE_DIR, "contrib", "systemd", "gpuwarm.tmpfiles")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in ("gpuwarm-fix.lock", "gpuwarm-timing.lock", "gpuwarm-waiting.lock"):
            st = os.lstat(os.path.join(self.tmp, "boot", "run", name))
            self.assertTrue(stat.S_ISREG(st.st_mode), name)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600), name)

    def test_successive_runs_see_de_initialization(self):
        # GPU 0: persistence off, de-initializes whenever no client holds NVML; its application clock was
        # set to 1500 MHz and falls back to the 1980 MHz default once it de-initializes.
        g = h.gpu(0, persistence=0)
        g["deinit"] = {"attach_ms": 400}
        g["app_clocks"] = {"sm": 1500}
        g["default_app_clocks"] = {"sm": 1980}
        scenario = h.scenario([g])
        for run in range(2):
            p = samples(self.metrics(scenario).stdout)
            self.assertGreaterEqual(value(p, "gpuwarm_gpu_attach_seconds", gpu="0"), 0.4, f"run {run}")
            self.assertEqual(value(p, "gpuwarm_gpu_app_sm_clock_hertz", gpu="0"), 1980e6, f"run {run}")
        # The same GPU with persistence on stays initialized: a fast attach, the set clock kept.
        g["persistence"] = 1
        p = samples(self.metrics(h.scenario([g])).stdout)
        self.assertLess(value(p, "gpuwarm_gpu_attach_seconds", gpu="0"), 0.2)
        self.assertEqual(value(p, "gpuwarm_gpu_app_sm_clock_hertz", gpu="0"), 1500e6)

    def test_snapshot_of_a_recorded_node(self):
        r = h.run(["metrics", "--snapshot", os.path.join(h.SOURCE_DIR, "examples", "h100-legacy-flag.json")], raw=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        p = samples(r.stdout)
        self.assertEqual(value(p, "gpuwarm_verdict", verdict="action-needed"), 1)
        self.assertEqual(value(p, "gpuwarm_finding", rule_id="PM002"), 1)
        self.assertLess(value(p, "gpuwarm_gpu_attach_seconds", gpu="0"), 0.05)  # 6.7 ms: a warm GPU
        # Recorded by the first builds (the H200's): cannot tell (UNK010), the daemon's state unknown, not 0, and
        # no attach series (not timed then), never a 0 that reads as a warm GPU.
        old = h.run(["metrics", "--snapshot", os.path.join(h.SOURCE_DIR, "examples", "h200-legacy-flag.json")], raw=True)
        q = samples(old.stdout)
        self.assertEqual(value(q, "gpuwarm_verdict", verdict="cannot-tell"), 1)
        self.assertEqual(value(q, "gpuwarm_finding", rule_id="UNK010"), 1)
        self.assertNotIn("gpuwarm_persistenced_running ", old.stdout)
        self.assertNotIn("gpuwarm_gpu_attach_seconds{", old.stdout)
        # As old as the recording: a stale-metrics alert must see its age, not when it was rendered.
        with open(os.path.join(h.SOURCE_DIR, "examples", "h100-legacy-flag.json")) as f:
            taken = json.load(f)["collected_at"]
        when = datetime.datetime.strptime(taken, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        self.assertEqual(value(p, "gpuwarm_last_run_timestamp_seconds"), when.timestamp())
        # Printed only: written to node_exporter's folder or served, another node's series would be this one's.
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        for extra, other in ((["--textfile", folder], "--textfile"), (["--listen", "127.0.0.1:0"], "--listen")):
            r = h.run(["metrics", "--snapshot", os.path.join(h.SOURCE_DIR, "examples", "h100-legacy-flag.json"),
                       *extra], raw=True)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(f"--snapshot excludes {other}", r.stderr)
        self.assertEqual(os.listdir(folder), [])


class AlertRulesAndUnits(unittest.TestCase):
    def test_promtool_checks_and_tests_the_rules(self):
        if not shutil.which("promtool"):
            self.skipTest("promtool not installed (scripts/setup.sh installs prometheus)")
        d = os.path.join(CONTRIB, "prometheus")
        r = subprocess.run(["promtool", "check", "rules", "gpuwarm.rules.yml"], cwd=d, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("13 rules found", r.stdout + r.stderr)
        r = subprocess.run(["promtool", "test", "rules", "gpuwarm.rules.test.yml"], cwd=d, capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_help_names_every_metric_it_emits(self):
        # An operator writing an alert looks the names up in --help: every family the renderer declares (as
        # written in its source, including those emitted only on some nodes) and every one a recording emits.
        h.require_binary(self)
        help_text = h.run(["metrics", "--help"], raw=True).stdout.replace("\n", " ")
        help_text = help_text.replace("_unit_active/_enabled", "_unit_active gpuwarm_persistenced_unit_enabled")
        with open(os.path.join(h.SOURCE_DIR, "src", "output", "metrics.cpp")) as f:
            names = set(re.findall(r'"(gpuwarm_[a-z_]+)"', f.read()))
        for example in ("h100-legacy-flag.json", "h200-legacy-flag.json"):
            r = h.run(["metrics", "--snapshot", os.path.join(h.SOURCE_DIR, "examples", example)], raw=True)
            names |= {l.split()[2] for l in r.stdout.splitlines() if l.startswith("# TYPE ")}
        self.assertGreater(len(names), 20)
        self.assertEqual(sorted(n for n in names if not re.search(re.escape(n) + r"\b", help_text)), [])

    def test_units_verify(self):
        h.require_binary(self)
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed")
        tmp = tempfile.mkdtemp(prefix="gpuwarm-units-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        names = ("gpuwarm-metrics.service", "gpuwarm-metrics.timer", "gpuwarm-exporter.service")
        for name in names:
            with open(os.path.join(CONTRIB, "systemd", name)) as f:
                text = f.read().replace("/usr/bin/gpuwarm", h.BIN)
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", *names],
                           cwd=tmp, capture_output=True, text=True, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
        complaints = [l for l in (r.stdout + r.stderr).splitlines()
                      if "gpuwarm" in l and "Failed to" not in l and "No such" not in l]
        self.assertEqual(complaints, [], r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
