"""docs/json.md against the binary: every table of keys there is compared with what the commands print.

Each kind's commands run against fake nodes (a fake root, the fake NVML and libcuda). For every document
printed, the keys of each object a table describes must lie between the table's always-present keys and
all its keys. Over all the runs of a kind, the keys seen must be exactly the keys the table lists, less the
few named in UNPRODUCED (keys only a real node or a badly timed signal gives). A key added to or removed
from a report therefore fails here until docs/json.md says so.

The tables' convention (docs/json.md, top): a key whose "Null or absent" cell says "absent" may be left out
of a document; every other key is always there. Heading paths say which objects a table describes:
"Top-level keys" is the document, "`gpus[]` objects" each element of its "gpus", "`summary.gpus[]`" each
element of summary's "gpus", and so on.

probe and watch take the node's /run locks: they run inside `unshare -m` with a tmpfs on /run, so this
machine's /run is never touched (root and util-linux's unshare needed, else those kinds are skipped).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import harness as h

DOC = os.path.join(h.SOURCE_DIR, "docs", "json.md")
FAKE_CUDA_DIR = os.environ.get("FAKE_CUDA_DIR", "")
NVML = os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")

KINDS = ["gpuwarm-snapshot", "gpuwarm-diagnosis", "gpuwarm-check", "gpuwarm-fix", "gpuwarm-verify",
         "gpuwarm-probe", "gpuwarm-watch", "gpuwarm-guard", "gpuwarm-reload-modules", "gpuwarm-lint",
         "gpuwarm-fleet-summary", "gpuwarm-reset"]
COMMAND = {"gpuwarm-diagnosis": "diagnose", "gpuwarm-check": "check", "gpuwarm-fix": "fix",
           "gpuwarm-verify": "verify", "gpuwarm-probe": "probe", "gpuwarm-watch": "watch", "gpuwarm-guard": "guard",
           "gpuwarm-reload-modules": "reload-modules", "gpuwarm-lint": "lint",
           "gpuwarm-fleet-summary": "fleet-summary", "gpuwarm-reset": "reset"}
# Kinds whose usage-error (and failure) document always lists GPUs: docs/json.md, "Usage-error document".
LISTS_GPUS = {"gpuwarm-probe", "gpuwarm-watch"}

TOP = "."
FAILURE = "failure"
USAGE = ("Failure documents", "usage")

# Documented keys and tables no run here produces, with why. Everything else must be seen.
UNPRODUCED = {
    ("gpuwarm-fix", TOP): {"interrupted", "interrupted_during"},  # a signal while fix changes the node
    ("gpuwarm-probe", TOP): {"error"},  # --save failing after the GPUs were probed (its folder checked before)
    # reset acts only on this host's GPUs, as root, through systemd: only its plan runs here.
    ("gpuwarm-reset", TOP): {"reset_ran", "daemon_hold", "daemon_running_after", "verify", "reset_checks",
                             "interrupted", "interrupted_during"},
    ("gpuwarm-reset", "daemon_hold"): None,  # None: the whole table
    ("gpuwarm-reset", "reset_checks[]"): None,
}


def parse_doc(path):
    """{section: {table: {key: optional}}}. A section is a kind ("gpuwarm-fix") or another "## " title; a table
    is TOP ("Top-level keys", or a table right under the section's title), FAILURE ("Failure document"),
    "usage" ("Usage-error document") or the backticked path of its heading ("gpus[].unread[]")."""
    doc = {}
    section = table = None
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("## "):
                m = re.match(r"## `(gpuwarm-[a-z-]+)`\s*$", line)
                section = m.group(1) if m else line[3:].strip()
                table = TOP
                doc.setdefault(section, {})
            elif line.startswith("### "):
                title = line[4:]
                m = re.search(r"`([^`]+)`", title)
                table = (TOP if title.startswith("Top-level keys") else FAILURE if title.startswith("Failure document")
                         else "usage" if title.startswith("Usage-error document") else m.group(1) if m else title)
            elif line.startswith("| `") and section is not None:
                cells = [c.strip() for c in line.strip().strip("|").split("|")]
                if len(cells) != 4:
                    raise AssertionError(f"{path}:{n}: a key's row needs 4 cells (key, type, meaning, null or "
                                         f"absent), has {len(cells)}")
                key = re.fullmatch(r"`([^`]+)`", cells[0])
                if key is None:
                    raise AssertionError(f"{path}:{n}: the first cell is not one `key`: {cells[0]}")
                keys = doc[section].setdefault(table, {})
                if key.group(1) in keys:
                    raise AssertionError(f"{path}:{n}: `{key.group(1)}` twice in one table")
                keys[key.group(1)] = re.search(r"\babsent\b", cells[3], re.IGNORECASE) is not None
    return doc


def objects_at(document, path):
    """The objects a table's path names in `document`: TOP is the document, "a.b[]" each element of a's b."""
    found = [document]
    if path in (TOP, FAILURE, "usage"):
        return found
    for part in path.split("."):
        many = part.endswith("[]")
        name = part[:-2] if many else part
        nxt = []
        for obj in found:
            value = obj.get(name) if isinstance(obj, dict) else None
            if many:
                nxt += [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
            elif isinstance(value, dict):
                nxt.append(value)
        found = nxt
    return found


def can_unshare():
    if os.geteuid() != 0:
        return "needs root (a private mount namespace with a tmpfs on /run)"
    if shutil.which("unshare") is None:
        return "needs util-linux's unshare"
    r = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /run"], capture_output=True, text=True)
    return "" if r.returncode == 0 else "unshare -m with a tmpfs on /run failed: " + r.stderr.strip()


class JsonDocs(unittest.TestCase):
    """One run of every cheap command, then a test per kind comparing its documents with the tables."""

    @classmethod
    def setUpClass(cls):
        if not h.BIN or not os.path.exists(h.BIN):
            raise unittest.SkipTest("GPUWARM_BIN not set: run through ctest")
        cls.doc = parse_doc(DOC)
        cls.tmp = tempfile.mkdtemp(prefix="gpuwarm-json-docs-")
        cls.runs = []       # (kind, table, document, what ran)
        cls.skipped = {}    # kind -> why its commands did not run
        cls.usage_runs = []  # (kind, document or None, stdout)
        cls.live_unavailable = can_unshare()
        for kind in ("gpuwarm-probe", "gpuwarm-watch"):
            if cls.live_unavailable:
                cls.skip(kind, cls.live_unavailable)
        if not FAKE_CUDA_DIR:
            cls.skip("gpuwarm-probe", "FAKE_CUDA_DIR not set: run through ctest")
        try:
            cls.produce()
        except Exception:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def skip(cls, kind, why):
        if kind not in cls.skipped:
            cls.skipped[kind] = why
            print(f"test_json_docs: {kind} not checked: {why}", file=sys.stderr)

    # --- running the commands -------------------------------------------------------------------------

    @classmethod
    def path(cls, name):
        return os.path.join(cls.tmp, name)

    @classmethod
    def write_json(cls, name, obj):
        with open(cls.path(name), "w") as f:
            json.dump(obj, f)
        return cls.path(name)

    @classmethod
    def record(cls, kind, table, r, what):
        """Parses a run's stdout as one document and files it under (kind, table)."""
        try:
            document = json.loads(r.stdout)
        except ValueError:
            raise AssertionError(f"{what}: stdout is not one JSON document (exit {r.returncode}):\n"
                                 f"{r.stdout[:500]}\n{r.stderr[:500]}")
        if not isinstance(document, dict) or document.get("kind") != kind:
            raise AssertionError(f"{what}: expected a {kind} document, got {str(document)[:300]}")
        cls.runs.append((kind, table, document, what))
        return document

    @classmethod
    def live(cls, args, env):
        """gpuwarm in a private mount namespace whose /run is an empty tmpfs: the locks it takes are its own."""
        e = {k: v for k, v in os.environ.items() if k not in ("FAKE_NVML_SCENARIO", "FAKE_CUDA_SCENARIO")}
        e["NO_COLOR"] = "1"
        e.update(env)
        cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs /run && exec "$@"', "sh", h.BIN, *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=60)

    @classmethod
    def produce(cls):
        os.makedirs(cls.path("root"))
        root = h.FakeRoot(cls.path("root"))
        root.driver().daemon_binary().daemon_process().kmsg()
        os.makedirs(root.p("run"), exist_ok=True)  # where fix's lock lives, as on every node
        os.makedirs(root.p("sys/bus/pci/devices"), exist_ok=True)  # no NVSwitch (reset reads it)
        healthy = h.scenario([h.gpu(0), h.gpu(1)])
        # GPU 0 reads Disabled (the daemon holds it), GPU 1 is lost: a gpus[] entry with "error".
        lost = h.scenario([h.gpu(0, persistence=0), h.gpu(1, handle_return=15)])
        fast_verify = ["--settle", "0", "--samples", "2", "--sample-interval", "0"]

        # snapshot, diagnose, check, verify, fix on the fake root.
        snapshot = cls.record("gpuwarm-snapshot", TOP, h.run(["snapshot"], root=root, scenario_obj=healthy),
                              "snapshot")
        for name, sc in (("healthy", healthy), ("lost", lost)):
            d = cls.record("gpuwarm-diagnosis", TOP, h.run(["diagnose", "--json"], root=root, scenario_obj=sc),
                           f"diagnose --json ({name})")
            cls.runs.append(("gpuwarm-snapshot", TOP, d["snapshot"], f"diagnose --json ({name}): snapshot"))
            c = cls.record("gpuwarm-check", TOP, h.run(["check", "--json"], root=root, scenario_obj=sc),
                           f"check --json ({name})")
            cls.runs.append(("gpuwarm-snapshot", TOP, c["snapshot"], f"check --json ({name}): snapshot"))
        cls.record("gpuwarm-verify", TOP, h.run(["verify", "--json", *fast_verify], root=root, scenario_obj=healthy),
                   "verify --json")
        fixed = cls.record("gpuwarm-fix", TOP, h.run(["fix", "--json", *fast_verify], root=root,
                                                     scenario_obj=healthy), "fix --json (nothing to do)")
        cls.runs.append(("gpuwarm-verify", TOP, fixed["verify"], "fix --json: verify"))
        cls.runs.append(("gpuwarm-diagnosis", TOP, fixed["diagnosis"], "fix --json: diagnosis"))
        cls.record("gpuwarm-fix", TOP, h.run(["fix", "--json", "--dry-run"], root=root, scenario_obj=healthy),
                   "fix --dry-run --json")
        # A recorded node whose systemd answered, with persistence off and the packaged unit: a plan of steps.
        off = json.loads(json.dumps(snapshot))
        for g in off["nvml"]["gpus"]:
            g["persistence"] = False
        off["daemon"].update({"processes": [], "processes_unread": "", "user_exists": True})
        off["service"].update({
            "reachable": True, "unreachable": "", "not_asked": False, "manager_booted": True,
            "load_state": "loaded", "active_state": "inactive", "sub_state": "dead", "unit_file_state": "disabled",
            "exec_start": ["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced",
                           "--no-persistence-mode", "--verbose"],
            "control_group": "", "manager_control_group": "", "manager_version": "252", "exec_condition": True,
            "stop_when_unneeded": True, "restart": "no", "result": "success",
            "fragment_path": "/lib/systemd/system/nvidia-persistenced.service", "need_daemon_reload": False,
            "drop_in_paths": [], "wanted_by": [], "unit_text": h.PACKAGED_UNIT, "gpuwarm_dropin_text": "",
            "gpuwarm_dropin_exists": False, "later_dropins": {}})
        recorded = cls.write_json("recorded-off.json", off)
        plan = cls.record("gpuwarm-fix", TOP, h.run(["fix", "--json", "--dry-run", "--snapshot", recorded], raw=True),
                          "fix --dry-run --snapshot --json (persistence off)")
        if not plan["steps"]:
            raise AssertionError(f"fix planned no steps for the recorded node: {plan['reason']}")
        # Failure documents: a --snapshot that is no snapshot.
        not_json = cls.path("not-json.json")
        with open(not_json, "w") as f:
            f.write("not json\n")
        cls.record("gpuwarm-diagnosis", FAILURE, h.run(["diagnose", "--json", "--snapshot", not_json], raw=True),
                   "diagnose --json --snapshot (not JSON)")
        cls.record("gpuwarm-check", FAILURE, h.run(["check", "--json", "--snapshot", not_json], raw=True),
                   "check --json --snapshot (not JSON)")
        cls.record("gpuwarm-fix", FAILURE, h.run(["fix", "--json", "--dry-run", "--snapshot", not_json], raw=True),
                   "fix --dry-run --json --snapshot (not JSON)")

        # reset: only its plan (a refusal here: no nvidia-smi in this machine's system folders, or one that names
        # no GPU, which stops before any plan).
        cls.record("gpuwarm-reset", TOP, h.run(["reset", "--json", "--dry-run", "--gpu", "0"], root=root,
                                               scenario_obj=healthy), "reset --dry-run --json")
        cls.record("gpuwarm-reset", TOP, h.run(["reset", "--json", "--dry-run", "--gpu", "7"], root=root,
                                               scenario_obj=healthy), "reset --dry-run --json --gpu 7 (no such GPU)")

        # guard
        cls.record("gpuwarm-guard", TOP, h.run(["guard", "--json", "--root", root.path, "--nvml", NVML,
                                                "--kernel-log", root.p("dev/kmsg")], raw=True), "guard --json")

        # lint: a finding, one set aside by a later drop-in, a binary skipped; and a PATH that does not exist.
        tree = cls.path("lint")
        files = {"roles/gpu/tasks/main.yml": "- command: nvidia-smi -pm 1\n",
                 "etc/systemd/system/nvidia-persistenced.service":
                     "[Unit]\nStopWhenUnneeded=true\n[Service]\nType=forking\n"
                     "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced\n",
                 "etc/systemd/system/nvidia-persistenced.service.d/override.conf": "[Unit]\nStopWhenUnneeded=no\n",
                 "bin/tool": "\x7fELF\x00\x00nvidia-smi -pm 1\n"}
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(tree, rel)), exist_ok=True)
            with open(os.path.join(tree, rel), "w") as f:
                f.write(text)
        cls.record("gpuwarm-lint", TOP, h.run(["lint", "--json", tree], raw=True), "lint --json")
        cls.record("gpuwarm-lint", TOP, h.run(["lint", "--json", os.path.join(tree, "nowhere")], raw=True),
                   "lint --json (missing PATH)")

        # probe and watch, each in its own /run.
        probe_docs = []
        if "gpuwarm-probe" not in cls.skipped:
            env = {"FAKE_NVML_SCENARIO": cls.write_json("nvml.json", healthy),
                   "FAKE_CUDA_SCENARIO": cls.write_json("cuda.json", {})}
            lib = ["--nvml", NVML, "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")]
            baseline = cls.path("baseline.json")
            probe_docs.append(cls.record("gpuwarm-probe", TOP, cls.live(["probe", "--json", *lib, "--save", baseline],
                                                                        env), "probe --json --save"))
            probe_docs.append(cls.record("gpuwarm-probe", TOP, cls.live(["probe", "--json", *lib, "--compare", baseline],
                                                                        env), "probe --json --compare"))
            cls.record("gpuwarm-probe", TOP, cls.live(["probe", "--json", *lib, "--node"], env), "probe --json --node")
            cls.record("gpuwarm-probe", FAILURE, cls.live(["probe", "--json", *lib, "--compare", not_json], env),
                       "probe --json --compare (not JSON)")
        if "gpuwarm-watch" not in cls.skipped:
            # GPU 1's clocks answer GPU_IS_LOST (a "fault"), GPU 2 gives no handle (an "error"), and from the third
            # sample on nvmlInit fails (a sample with an "error").
            sc = h.scenario([h.gpu(0), h.gpu(1, returns={"nvmlDeviceGetClockInfo": 15}), h.gpu(2, handle_return=15)],
                            timeline=[{"after_inits": 2, "init": {"return": 999}}])
            env = {"FAKE_NVML_SCENARIO": cls.write_json("watch-nvml.json", sc)}
            cls.record("gpuwarm-watch", TOP, cls.live(["watch", "--json", "--nvml", NVML, "--count", "3",
                                                       "--interval", "0"], env), "watch --json")
            cls.record("gpuwarm-watch", FAILURE, cls.live(["watch", "--json", "--replay", not_json], {}),
                       "watch --json --replay (not JSON)")
        # A saved run with a --load, summarized again (no NVML, no lock).
        load_run = os.path.join(h.SOURCE_DIR, "examples", "h100-watch-load.json")
        cls.record("gpuwarm-watch", TOP, h.run(["watch", "--json", "--replay", load_run], raw=True),
                   "watch --json --replay examples/h100-watch-load.json")

        # fleet-summary over the reports above, a snapshot (skipped) and a truncated report (unreadable).
        reports = cls.path("reports")
        os.makedirs(reports)
        saved = [("diagnosis.json", d), ("fix.json", fixed), ("snapshot.json", snapshot)] + \
                [(f"probe-{i}.json", p) for i, p in enumerate(probe_docs)]
        for name, obj in saved:
            with open(os.path.join(reports, name), "w") as f:
                json.dump(obj, f)
        with open(os.path.join(reports, "truncated.json"), "w") as f:
            f.write('{"kind": "gpuwarm-diagnosis", "hostname": "n1", "verdict": {')
        cls.record("gpuwarm-fleet-summary", TOP, h.run(["fleet-summary", "--json", reports], raw=True),
                   "fleet-summary --json")
        cls.record("gpuwarm-fleet-summary", TOP, h.run(["fleet-summary", "--json", cls.path("nowhere")], raw=True),
                   "fleet-summary --json (missing PATH)")

        cls.produce_reload_modules()

        # A bad command line, for every command that prints JSON (and snapshot, which must print nothing).
        for kind, command in COMMAND.items():
            r = h.run([command, "--json", "--no-such-option"], raw=True)
            cls.usage_runs.append((kind, r))
        cls.snapshot_usage = h.run(["snapshot", "--json", "--no-such-option"], raw=True)

    @classmethod
    def produce_reload_modules(cls):
        kind = "gpuwarm-reload-modules"
        if shutil.which("gcc") is None or shutil.which("objcopy") is None:
            cls.skip(kind, "gcc and objcopy are needed to build stand-in .ko files")
            return
        os.makedirs(cls.path("modroot"))
        root = h.FakeRoot(cls.path("modroot"))
        root.write("proc/modules", "nvidia_uvm 1830912 0 - Live 0xffffffffc080c000 (O)\n"
                                   "nvidia 14299136 1 nvidia_uvm, Live 0xffffffffc0400000 (O)\n")
        root.write("sys/module/nvidia/version", "580.95.05\n")
        os.makedirs(root.p("run"), exist_ok=True)  # where the node lock lives
        kernel = os.uname().release
        moddir = cls.path(f"lib/modules/{kernel}/updates/dkms")
        os.makedirs(moddir)
        src, obj, info = cls.path("m.c"), cls.path("m.o"), cls.path("modinfo")
        with open(src, "w") as f:
            f.write("int gpuwarm_test_module;\n")
        subprocess.run(["gcc", "-c", src, "-o", obj], check=True)
        for name in ("nvidia", "nvidia-uvm"):
            with open(info, "wb") as f:
                f.write(f"version=580.159.04\0vermagic={kernel} SMP preempt mod_unload modversions \0"
                        f"name={name.replace('-', '_')}\0license=NVIDIA\0".encode())
            subprocess.run(["objcopy", "--add-section", f".modinfo={info}", "--set-section-flags",
                            ".modinfo=alloc,readonly", obj, os.path.join(moddir, f"{name}.ko")], check=True)
        # --yes acts through the test stand-in for libkmod, which only exists under a fake --root.
        env = {"GPUWARM_FAKE_MODULE_OPS": cls.path("module-ops.log")}
        for extra in (["--dry-run"], ["--yes"]):
            r = h.run(["reload-modules", "--json", "--root", root.path, "--module-dir", os.path.dirname(moddir),
                       *extra], extra_env=env, raw=True)
            document = cls.record(kind, TOP, r, "reload-modules --json " + extra[0])
            if extra == ["--yes"] and not document.get("carried_out"):
                raise AssertionError(f"reload-modules --yes under the fake root did not act: {document}")

    # --- checking --------------------------------------------------------------------------------------

    def tables(self, kind):
        self.assertIn(kind, self.doc, f"docs/json.md has no section ## `{kind}`")
        return self.doc[kind]

    def check_document(self, kind, table, keys_doc, document, what, extra_required=()):
        optional = {k for k, o in keys_doc.items() if o}
        documented = set(keys_doc)
        required = (documented - optional) | set(extra_required)
        keys = set(document)
        self.assertFalse(keys - documented,
                         f"{what}: {kind} {table!r} keys printed but not in docs/json.md: {sorted(keys - documented)}")
        self.assertFalse(required - keys,
                         f"{what}: {kind} {table!r} keys docs/json.md says are always there, missing: "
                         f"{sorted(required - keys)}")
        return keys

    def check_kind(self, kind):
        if kind in self.skipped:
            self.skipTest(self.skipped[kind])
        tables = self.tables(kind)
        self.assertIn(TOP, tables, f"docs/json.md: {kind} has no \"Top-level keys\" table")
        seen = {table: set() for table in tables if table != FAILURE}
        exercised = set()
        for run_kind, table, document, what in self.runs:
            if run_kind != kind:
                continue
            if table == FAILURE:
                # Its own failure table, else the usage-error shape (docs/json.md says which).
                keys_doc = tables.get(FAILURE) or self.doc[USAGE[0]][USAGE[1]]
                extra = {"gpus"} if kind in LISTS_GPUS else ()
                self.check_document(kind, FAILURE, keys_doc, document, what, extra)
                self.assertNotEqual(document["exit_code"], 0, what)
                exercised.add(FAILURE)
                continue
            for name, keys_doc in tables.items():
                if name == FAILURE:
                    continue
                for obj in objects_at(document, name):
                    seen[name] |= self.check_document(kind, name, keys_doc, obj, what)
                    exercised.add(name)
        self.assertIn(TOP, exercised, f"no {kind} document was produced")
        if FAILURE in tables:
            self.assertIn(FAILURE, exercised, f"{kind}: its failure document was not produced")
        # Over every run, each table's keys are exactly the documented ones (less what no run here gives).
        for name, keys_doc in tables.items():
            if name == FAILURE:
                continue
            if (kind, name) in UNPRODUCED and UNPRODUCED[(kind, name)] is None:
                self.assertNotIn(name, exercised, f"{kind} {name!r} was produced: take it out of UNPRODUCED")
                continue
            unproduced = UNPRODUCED.get((kind, name), set())
            self.assertTrue(unproduced <= set(keys_doc), f"UNPRODUCED names keys docs/json.md does not list: "
                                                         f"{sorted(unproduced - set(keys_doc))}")
            self.assertEqual(seen[name] | unproduced, set(keys_doc),
                             f"{kind} {name!r}: documented but never printed here: "
                             f"{sorted(set(keys_doc) - seen[name] - unproduced)}")
            self.assertFalse(seen[name] & unproduced, f"{kind} {name!r}: printed after all, take it out of "
                                                      f"UNPRODUCED: {sorted(seen[name] & unproduced)}")

    def test_doc_has_a_section_per_kind(self):
        for kind in KINDS:
            self.assertIn(TOP, self.tables(kind), f"docs/json.md: {kind} has no \"Top-level keys\" table")
        sections = {s for s in self.doc if s.startswith("gpuwarm-")}
        self.assertEqual(sections, set(KINDS), "docs/json.md's kind sections")
        # The envelope's list of kinds is the same list.
        with open(DOC) as f:
            text = f.read()
        row = next(line for line in text.splitlines() if line.startswith("| `kind` |"))
        self.assertEqual(set(re.findall(r"`(gpuwarm-[a-z-]+)`", row)), set(KINDS), "the envelope's `kind` row")
        for kind in KINDS:
            self.assertIn("kind", self.doc[kind][TOP], kind)
            self.assertIn("schema_version", self.doc[kind][TOP], kind)
            if kind != "gpuwarm-snapshot":
                self.assertIn("exit_code", self.doc[kind][TOP], kind)

    def test_usage_error_documents(self):
        usage = self.doc[USAGE[0]][USAGE[1]]
        for kind, r in self.usage_runs:
            what = f"{COMMAND[kind]} --json --no-such-option"
            self.assertEqual(r.returncode, 2, what)
            document = json.loads(r.stdout)
            self.assertEqual(document["kind"], kind, what)
            self.assertEqual(document["exit_code"], 2, what)
            self.check_document(kind, "usage", usage, document, what, {"gpus"} if kind in LISTS_GPUS else ())
            if kind not in LISTS_GPUS:
                self.assertNotIn("gpus", document, what)
        self.assertEqual((self.snapshot_usage.returncode, self.snapshot_usage.stdout), (2, ""),
                         "snapshot prints no document for a usage error")

    def test_snapshot(self):
        self.check_kind("gpuwarm-snapshot")

    def test_diagnosis(self):
        self.check_kind("gpuwarm-diagnosis")

    def test_check(self):
        self.check_kind("gpuwarm-check")

    def test_fix(self):
        self.check_kind("gpuwarm-fix")

    def test_verify(self):
        self.check_kind("gpuwarm-verify")

    def test_probe(self):
        self.check_kind("gpuwarm-probe")

    def test_watch(self):
        self.check_kind("gpuwarm-watch")

    def test_guard(self):
        self.check_kind("gpuwarm-guard")

    def test_reload_modules(self):
        self.check_kind("gpuwarm-reload-modules")

    def test_lint(self):
        self.check_kind("gpuwarm-lint")

    def test_fleet_summary(self):
        self.check_kind("gpuwarm-fleet-summary")

    def test_reset(self):
        self.check_kind("gpuwarm-reset")


if __name__ == "__main__":
    unittest.main()
