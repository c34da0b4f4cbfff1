"""gpuwarm fleet-summary end to end over reports the real binary wrote:
diagnose, fix and probe JSON from fake nodes, plus broken ones; a directory,
JSON lines on stdin, a single JSON-lines file; text, JSON, exit codes."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness as h

FAKE_CUDA_DIR = os.environ.get("FAKE_CUDA_DIR", "")


class FleetSummary(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not h.BIN or not os.path.exists(h.BIN):
            raise unittest.SkipTest("GPUWARM_BIN not set: run through ctest")
        cls.tmp = tempfile.mkdtemp()
        root = h.FakeRoot()
        try:
            root.driver().daemon_binary().kmsg()
            off = h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
            hot = h.scenario([h.gpu(0, reasons=0x20), h.gpu(1)])  # SwThermalSlowdown
            cls.diag_off = cls.gpuwarm(["diagnose", "--json"], root, off)
            cls.diag_hot = cls.gpuwarm(["diagnose", "--json"], root, hot)
            cls.fix_off = cls.gpuwarm(["fix", "--json"], root, off)  # no systemd here: exit 6
            cls.probe = cls.probe_run(slow_ms=900)
            # Other output the same binary writes, which a reports folder may also hold.
            snap = os.path.join(cls.tmp, "snap.json")
            h.run(["snapshot", "--output", snap], root=root, scenario_obj=off)
            with open(snap) as f:
                cls.snapshot = json.load(f)
            cls.check = json.loads(h.run(["check", "--json"], root=root, scenario_obj=off).stdout)
        finally:
            root.cleanup()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def gpuwarm(cls, args, root, scenario):
        r = h.run(args, root=root, scenario_obj=scenario)
        return json.loads(r.stdout)

    @classmethod
    def probe_run(cls, slow_ms):
        cuda = os.path.join(cls.tmp, "cuda.json")
        nvml = os.path.join(cls.tmp, "nvml.json")
        baseline = os.path.join(cls.tmp, "baseline.json")
        lib = ["--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
               "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")]
        # The baseline with persistence off (slow), the run after enabling it (fast): a rollout's before/after.
        for delay, persistence, extra in ((slow_ms, 0, ["--save", baseline]), (5, 1, ["--compare", baseline, "--json"])):
            with open(nvml, "w") as f:
                json.dump(h.scenario([h.gpu(0, persistence=persistence), h.gpu(1, persistence=persistence)]), f)
            with open(cuda, "w") as f:
                json.dump({"*": {"delay_ms": {"cuInit": delay}}}, f)
            r = h.run(["probe", *lib, *extra], extra_env={"FAKE_CUDA_SCENARIO": cuda, "FAKE_NVML_SCENARIO": nvml},
                      raw=True)
            assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def setUp(self):
        self.dir = tempfile.mkdtemp(dir=self.tmp)

    def put(self, name, doc, host=None):
        if host is not None:
            doc = dict(doc, hostname=host)
        text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def summary(self, *args, stdin=None):
        r = subprocess.run([h.BIN, "fleet-summary", *args], input=stdin, capture_output=True, text=True,
                           env=dict(os.environ, NO_COLOR="1"), timeout=60)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def test_directory_table_and_bad_reports_listed(self):
        self.put("a/node-off.json", self.diag_off, "node-off")
        self.put("a/node-hot.json", self.diag_hot, "node-hot")
        self.put("b/node-fix.json", self.fix_off, "node-fix")
        self.put("b/node-off.probe.json", self.probe, "node-off")
        good = json.dumps(self.diag_off, indent=2)
        self.put("b/truncated.json", good[: len(good) // 3])
        self.put("b/empty.json", "")
        self.put("b/notes.txt", "not a report, not read")
        r = self.summary(self.dir)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        out = r.stdout
        self.assertIn("3 nodes from 6 reports (2 unreadable)", out)
        self.assertRegex(out, r"action-needed\s+2\n")
        self.assertRegex(out, r"ras\s+1\n")
        self.assertRegex(out, r"no-systemd\s+1\n")
        self.assertIn("Nodes with a GPU not Enabled: 2 (node-fix, node-off)", out)
        self.assertIn("Nodes pending reboot: 0", out)
        # The probe's baseline had cuInit 900 ms slower: before is the slow run, after the fast one.
        before = self.probe["compare"][0]["before_total_ms"]
        self.assertGreater(before, 900)
        self.assertIn("median per GPU: before ", out)
        self.assertIn("(2 GPUs on 1 node), after ", out)
        self.assertIn(f"{os.path.join(self.dir, 'b/truncated.json')}: not valid JSON", out)
        self.assertIn(f"{os.path.join(self.dir, 'b/empty.json')}: empty file", out)
        self.assertNotIn("notes.txt", out)

    def test_reports_of_the_same_second_are_ordered_by_file_name(self):
        # taken_at has whole seconds: at a tie the later file name is the newer report, whatever order the file
        # system lists the folder in (review-s57 L1: it decided, so the same reports could exit 0 or 3).
        def same_second(doc):
            return dict(doc, hostname="node-tie", snapshot=dict(doc["snapshot"], collected_at="2026-11-23T10:00:00Z"))

        for names, verdict in ((("a-off.json", "z-hot.json"), "ras"), (("z-off.json", "a-hot.json"), "action-needed")):
            with self.subTest(names=names):
                self.dir = tempfile.mkdtemp(dir=self.tmp)
                for k in range(20):  # a folder of other nodes' reports, so that listing order is not name order
                    self.put(f"m{k:02d}.json", self.diag_hot, f"other-{k}")
                self.put(names[0], same_second(self.diag_off))
                self.put(names[1], same_second(self.diag_hot))
                r = self.summary("--json", self.dir)
                node = [n for n in json.loads(r.stdout)["node_reports"] if n["hostname"] == "node-tie"]
                self.assertEqual([n["verdict"] for n in node], [verdict], r.stdout)

    def test_links_in_a_folder_are_read_or_named_never_dropped(self):
        # A report collected as a link is a node like any other; a linked folder of reports, or a link to nothing,
        # leaves nodes unknown: listed as unreadable, never a smaller fleet that reads as healthy.
        self.put("reports/node-ok.json", self.diag_hot, "node-hot")
        target = self.put("elsewhere/node-off.json", self.diag_off, "node-off")
        os.symlink(target, os.path.join(self.dir, "reports", "node-off.json"))
        os.symlink(target, os.path.join(self.dir, "reports", "again.json"))  # the same file: one node, read once
        r = self.summary("--json", os.path.join(self.dir, "reports"))
        d = json.loads(r.stdout)
        self.assertEqual((d["nodes"], d["exit_code"], d["unreadable"]), (2, 3, []), r.stdout)
        self.assertIn("node-off", d["needs_attention"]["hostnames"])
        # A link to a folder walked anyway (a `latest` beside the runs) names nothing left unread.
        self.put("reports/run-1205/n9.json", self.diag_hot, "node-9")
        os.symlink("run-1205", os.path.join(self.dir, "reports", "latest"))
        d = json.loads(self.summary("--json", os.path.join(self.dir, "reports")).stdout)
        self.assertEqual((d["nodes"], d["unreadable"]), (3, []), d["unreadable"])
        os.symlink(os.path.join(self.dir, "elsewhere"), os.path.join(self.dir, "reports", "rack7"))
        os.symlink("nothing-here.json", os.path.join(self.dir, "reports", "gone.json"))
        r = self.summary(os.path.join(self.dir, "reports"))
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("rack7: unreadable: a link to a folder, not followed (name it to read its reports)", r.stdout)
        self.assertIn("gone.json: unreadable: a link to nothing", r.stdout)

    def test_json_lines_on_stdin_and_in_a_file(self):
        lines = [json.dumps(dict(self.diag_off, hostname=f"n{i:02d}")) for i in range(20)]
        lines.insert(5, '{"kind": "gpuwarm-diagnosis", "hostname": "cut')
        lines.append(json.dumps(dict(self.diag_hot, hostname="n07")))  # taken after diag_off (or the same second)
        text = "\n".join(lines) + "\n"
        r = self.summary("--json", stdin=text)
        self.assertEqual(r.returncode, 3, r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual(d["kind"], "gpuwarm-fleet-summary")
        self.assertEqual(d["reports"], 22)
        self.assertEqual(d["nodes"], 20)
        self.assertEqual(d["unreadable"], [{"source": "<stdin>:6", "error": d["unreadable"][0]["error"]}])
        self.assertIn("not valid JSON", d["unreadable"][0]["error"])
        verdicts = {v["verdict"]: v["nodes"] for v in d["verdicts"]}
        self.assertEqual(verdicts, {"action-needed": 19, "ras": 1})  # n07's newer report wins
        n07 = next(n for n in d["node_reports"] if n["hostname"] == "n07")
        self.assertEqual((n07["reports"], n07["verdict"]), (2, "ras"))
        path = self.put("fleet.jsonl", text)
        r2 = self.summary("--json", path)
        d2 = json.loads(r2.stdout)
        self.assertEqual(d2["unreadable"][0]["source"], f"{path}:6")
        self.assertEqual(d2["nodes"], 20)

    def test_one_report_in_any_layout_and_arrays_of_them(self):
        # Nested objects at the start of a line (json.dumps(indent=0)) are still one report, and `jq -s`'s
        # array is one report per element; the JSON-lines split is for what is not one JSON text.
        self.put("flat.json", json.dumps(dict(self.diag_off, hostname="flat"), indent=0))
        self.put("all.json", json.dumps([dict(self.diag_off, hostname="a1"), dict(self.diag_hot, hostname="a2"),
                                         "not a report"]))
        r = self.summary("--json", self.dir)
        d = json.loads(r.stdout)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(d["reports"], 4)
        self.assertEqual(sorted(n["hostname"] for n in d["node_reports"]), ["a1", "a2", "flat"])
        self.assertEqual(d["unreadable"], [{"source": os.path.join(self.dir, "all.json[2]"),
                                            "error": "not a JSON object"}])
        # A whole fleet's array is read whole whatever its size (over the 64 MiB a report file may have when
        # it is one of several), and one cut short is said to be, not split into pieces.
        big = json.dumps([dict(self.diag_off, hostname=f"n{i:05d}") for i in range(5200)], indent=2)
        self.assertGreater(len(big), 64 << 20)
        r = self.summary("--json", "-", stdin=big)
        d = json.loads(r.stdout)
        self.assertEqual((d["reports"], d["nodes"], d["unreadable"]), (5200, 5200, []))
        r = self.summary("--json", "-", stdin=big[:len(big) // 2])
        d = json.loads(r.stdout)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(len(d["unreadable"]), 1, d["unreadable"])
        self.assertIn("an array of reports is read whole", d["unreadable"][0]["error"])

    def test_healthy_fleet_exits_0(self):
        healthy = dict(self.diag_off, verdict=dict(self.diag_off["verdict"], code="healthy"),
                       gpus=[dict(g, persistence="Enabled") for g in self.diag_off["gpus"]])
        for i in range(3):
            self.put(f"n{i}.json", healthy, f"n{i}")
        r = self.summary(self.dir)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("Needs attention: 0", r.stdout)
        # A snapshot beside them is listed as skipped, with what to run, and leaves it 0.
        self.put("n0.snapshot.json", self.snapshot)
        r = self.summary(self.dir)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("3 nodes from 3 reports; 1 other gpuwarm output skipped", r.stdout)
        self.assertIn(f"{os.path.join(self.dir, 'n0.snapshot.json')}: a snapshot, not a report: make one with "
                      "`gpuwarm diagnose --snapshot FILE --json`", r.stdout)
        self.assertNotIn("Unreadable", r.stdout)
        # A check answer that says drain (persistence off: exit 1) is skipped too, but not passed over: exit 3.
        self.put("n1.check.json", self.check)
        r = self.summary(self.dir)
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn(f"{os.path.join(self.dir, 'n1.check.json')}: a `gpuwarm check --json` answer", r.stdout)
        self.assertIn("! it reports exit 1: look at it (needs attention)", r.stdout)
        d = json.loads(self.summary(self.dir, "--json").stdout)
        self.assertEqual((d["reports"], len(d["skipped"]), d["unreadable"]), (3, 2, []))
        self.assertEqual([k["problem"] for k in d["skipped"]], [None, "it reports exit 1"])
        os.unlink(os.path.join(self.dir, "n1.check.json"))
        # Skipped output alone is not a fleet: nothing of a kind fleet-summary reads was found.
        only = tempfile.mkdtemp(dir=self.tmp)
        shutil.copy(os.path.join(self.dir, "n0.snapshot.json"), only)
        r = self.summary(only)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("Skipped: gpuwarm output fleet-summary does not read (1)", r.stdout)
        self.assertIn("no report of a kind it reads (diagnose, fix, verify, probe --json); 1 other gpuwarm output "
                      "skipped", r.stderr)
        self.assertIn("no report of a kind it reads", json.loads(self.summary(only, "--json").stdout)["error"])

    def test_errors(self):
        missing = self.summary(os.path.join(self.dir, "absent"))
        self.assertEqual(missing.returncode, 2)
        self.assertIn("absent: no such file or directory", missing.stderr)
        missing = self.summary(os.path.join(self.dir, "absent"), "--json")
        self.assertEqual(missing.returncode, 2)
        d = json.loads(missing.stdout)
        self.assertEqual((d["missing"], d["nodes"]), ([os.path.join(self.dir, "absent")], 0))
        empty = self.summary(self.dir)
        self.assertEqual(empty.returncode, 1)
        self.assertIn("no reports found", empty.stderr)
        empty = self.summary(self.dir, "--json")  # `| jq` still gets a document, and the reason
        self.assertEqual(empty.returncode, 1)
        d = json.loads(empty.stdout)
        self.assertEqual((d["nodes"], d["kind"]), (0, "gpuwarm-fleet-summary"))
        self.assertIn("no reports found", d["error"])
        self.put("only.json", "{ nope")
        bad_only = self.summary(self.dir)
        self.assertEqual(bad_only.returncode, 1, bad_only.stdout)
        self.assertIn("only.json: not valid JSON", bad_only.stdout)
        self.assertIn("--json", self.summary("--help").stdout)


if __name__ == "__main__":
    unittest.main()
