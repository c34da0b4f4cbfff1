"""The Ansible role, module and rollout playbook, run by the real
ansible-playbook (Debian's ansible-core) over four fake nodes with the local
connection. Each node has its own root, NVML scenario and systemd stand-in on
its own D-Bus (systemd_node_template.py): one healthy, one with persistence
off (the canary), one pending reboot after a driver update, one with thermal
clock events. Shown: check mode changes nothing; the rollout fixes the node it
should and leaves the routed ones unchanged but reported; a second run changes
nothing; a failing canary stops the run before the widen step."""
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h

try:
    import dbus
    from dbusmock import MOCK_IFACE
    from dbusmock.testcase import DBusTestCase
except ImportError:
    dbus = None

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_CUDA_DIR = os.environ.get("FAKE_CUDA_DIR", "")
ANSIBLE_DIR = os.path.join(h.SOURCE_DIR, "ansible")
PLAYBOOK = os.path.join(ANSIBLE_DIR, "playbooks", "gpuwarm-rollout.yml")
TEMPLATE = os.path.join(HERE, "systemd_node_template.py")
UNIT = "nvidia-persistenced.service"
DROPIN = "etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf"
GUARD = "etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"
INSTALLED = "usr/local/bin/gpuwarm"
BUNDLED_LIB = "usr/local/lib/gpuwarm/libsimdjson.so.14"
PACKAGED_UNIT = h.PACKAGED_UNIT
CLEAN_UNIT = PACKAGED_UNIT.replace("StopWhenUnneeded=true\n", "").replace(" --no-persistence-mode", "").replace(
    "Type=forking\n", "Type=forking\nRestart=on-failure\n")
OLD_MISMATCH = [
    "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  570.124.04  Tue Mar  4 2025",
    "NVRM: API mismatch: the client has the version 570.133.07, but",
    "NVRM: this kernel module has the version 570.124.04.  Please",
]
WRITE_METHODS = ("Reload", "EnableUnitFiles", "StartUnit", "RestartUnit", "ResetFailedUnit")


def missing_tools():
    if dbus is None:
        return "python3-dbus / python3-dbusmock not installed"
    for tool in ("ansible-playbook", "dbus-daemon", "objcopy"):
        if not shutil.which(tool):
            return f"{tool} not installed (apt-get install ansible-core dbus-daemon binutils)"
    return None


class Node:
    """One fake node: root, NVML scenario, and systemd on a bus of its own."""

    def __init__(self, name, kind, workdir, start_result="done", systemd_version=None, exec_condition=True):
        self.name, self.kind = name, kind
        self.root = h.FakeRoot()
        self.root.daemon_binary()
        self.root.write("etc/passwd", "root:x:0:0::/root:/bin/sh\nnvidia-persistenced:x:143:143::/:/usr/sbin/nologin\n")
        os.makedirs(self.root.p("run"), exist_ok=True)
        started = self.root.p("run/stand-in-daemon-started")
        params = {"root": self.root.path, "start_result": start_result}
        if systemd_version is not None:
            params["systemd_version"] = systemd_version
        params["exec_condition"] = exec_condition
        if kind == "healthy":
            self.root.driver().kmsg().daemon_process()
            self.root.write("lib/systemd/system/" + UNIT, CLEAN_UNIT)
            gpus = [h.gpu(0), h.gpu(1)]
            params.update(active_state="active", unit_file_state="enabled", stop_when_unneeded=False,
                          restart="on-failure", argv=["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced"])
            scenario = h.scenario(gpus)
        elif kind == "off":
            self.root.driver().kmsg()
            self.root.write("lib/systemd/system/" + UNIT, PACKAGED_UNIT)
            scenario = h.scenario([dict(h.gpu(i, persistence=0), enabled_when_file_exists=started) for i in range(2)])
        elif kind == "reboot":
            self.root.driver(version="570.124.04").kmsg(OLD_MISMATCH)
            self.root.write("lib/systemd/system/" + UNIT, PACKAGED_UNIT)
            scenario = h.scenario([], nvml_version="12.570.133.07", init={"return": 18})
        elif kind == "hot":
            self.root.driver().kmsg()
            self.root.write("lib/systemd/system/" + UNIT, PACKAGED_UNIT)
            scenario = h.scenario([h.gpu(0, persistence=0, reasons=0x20), h.gpu(1, persistence=0)])
        else:
            raise ValueError(kind)
        self.scenario_path = os.path.join(workdir, f"{name}.nvml.json")
        with open(self.scenario_path, "w") as f:
            json.dump(scenario, f)
        # Cold start for `gpuwarm probe`: seconds-ish while persistence is off, fast once the daemon runs.
        cold = {"delay_ms": {"cuInit": 5 if kind == "healthy" else 400},
                "when_file_exists": {"path": started, "set": {"delay_ms": {"cuInit": 5}}}}
        self.cuda_scenario_path = os.path.join(workdir, f"{name}.cuda.json")
        with open(self.cuda_scenario_path, "w") as f:
            json.dump({"*": cold}, f)
        self.bus_pid, self.bus = DBusTestCase.start_dbus()
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus)
        self.mock = subprocess.Popen(["/usr/bin/python3", "-m", "dbusmock", "--system", "-t", TEMPLATE,
                                      "-p", json.dumps(params)], env=env, stdout=subprocess.DEVNULL)
        self.connection = dbus.bus.BusConnection(self.bus)
        self.manager = None

    def wait_until_started(self):
        """Apart from __init__, so that the four nodes' stand-ins (a Python start each) come up side by side."""
        deadline = time.monotonic() + 20
        while not self.connection.name_has_owner("org.freedesktop.systemd1"):
            if time.monotonic() > deadline or self.mock.poll() is not None:
                raise RuntimeError(f"{self.name}: the systemd stand-in did not start")
            time.sleep(0.05)
        self.manager = dbus.Interface(self.connection.get_object("org.freedesktop.systemd1", "/org/freedesktop/systemd1"),
                                      MOCK_IFACE)

    def host_vars(self, probe):
        return {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_become": False,  # tests run as root or not at all; no sudo needed
                "gpuwarm_root": self.root.path,
                "gpuwarm_nvml_library": os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                "gpuwarm_environment": {"DBUS_SYSTEM_BUS_ADDRESS": self.bus, "FAKE_NVML_SCENARIO": self.scenario_path,
                                        "FAKE_CUDA_SCENARIO": self.cuda_scenario_path},
                "gpuwarm_probe": probe,
                "gpuwarm_probe_args": ["--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
                                       "--cuda", os.path.join(FAKE_CUDA_DIR, "libcuda.so.1")],
                "gpuwarm_settle": 0.2, "gpuwarm_samples": 2, "gpuwarm_sample_interval": 0.05,
                "gpuwarm_job_timeout": 10}

    def write_calls(self):
        return {m: len(self.manager.GetMethodCalls(m)) for m in WRITE_METHODS}

    def tree(self):
        """Every file under the root and its content, to compare before and after."""
        out = {}
        for dirpath, _, names in os.walk(self.root.path):
            for n in names:
                p = os.path.join(dirpath, n)
                rel = os.path.relpath(p, self.root.path)
                if os.path.islink(p):
                    out[rel] = os.readlink(p)
                else:
                    with open(p, "rb") as f:
                        out[rel] = f.read()
        return out

    def stop(self):
        self.mock.terminate()
        self.mock.wait()
        DBusTestCase.stop_dbus(self.bus_pid)
        self.root.cleanup()


MODULE = os.path.join(ANSIBLE_DIR, "roles", "gpuwarm", "library", "gpuwarm.py")


@unittest.skipIf(shutil.which("ansible-doc") is None, "ansible-core not installed (apt-get install ansible-core)")
class ModuleAlone(unittest.TestCase):
    """The module as Ansible runs it (a JSON arguments file as argv[1]), one exit-code mapping per case."""

    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.root.driver(gpus=1).daemon_binary().kmsg()
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    def module(self, scenario, **args):
        nvml = os.path.join(self.tmp, "nvml.json")
        with open(nvml, "w") as f:
            json.dump(scenario, f)
        params = {"binary": h.BIN, "root": self.root.path,
                  "nvml_library": os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), **args}
        path = os.path.join(self.tmp, "args.json")
        with open(path, "w") as f:
            json.dump({"ANSIBLE_MODULE_ARGS": params}, f)
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        env.update(FAKE_NVML_SCENARIO=nvml, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/bus")
        r = subprocess.run(["/usr/bin/python3", MODULE, path], capture_output=True, text=True, env=env, timeout=60)
        return json.loads(r.stdout)

    def test_a_held_lock_is_tried_again(self):
        # Another fix holds the node's lock (exit 7 at once): the module runs gpuwarm again after the delay, and
        # here gets past the lock to the next answer (no systemd on this fake node).
        os.makedirs(self.root.p("run"), exist_ok=True)
        off = h.scenario([h.gpu(0, persistence=0)])
        with open(self.root.p("run/gpuwarm-fix.lock"), "w") as other_fix:
            fcntl.flock(other_fix, fcntl.LOCK_EX)
            given_up = self.module(off, state="persistent", lock_retries=1, lock_retry_delay=0.1)
            threading.Timer(0.5, other_fix.close).start()
            retried = self.module(off, state="persistent", lock_retries=5, lock_retry_delay=0.3)
        self.assertEqual(given_up["rc"], 7, given_up)
        self.assertIn("the node's lock is held", given_up["msg"])
        self.assertEqual(retried["rc"], 6, retried)
        self.assertIn("no systemd on this node", retried["msg"])

    @unittest.skipIf(shutil.which("ansible-lint") is None, "ansible-lint not installed (scripts/setup.sh installs it)")
    def test_role_and_playbook_pass_ansible_lint(self):
        r = subprocess.run(["ansible-lint", "-p", "roles/gpuwarm", "playbooks/gpuwarm-rollout.yml"], cwd=ANSIBLE_DIR,
                           capture_output=True, text=True, env=dict(os.environ, NO_COLOR="1"), timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_documentation_parses(self):
        r = subprocess.run(["ansible-doc", "-M", os.path.dirname(MODULE), "gpuwarm"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("fail_on_routed", r.stdout)

    def test_the_guard_names_the_binary_the_node_has(self):
        """Installed from a package, gpuwarm is /usr/bin/gpuwarm: the drop-in must name that, not gpuwarm_binary."""
        import jinja2
        path = os.path.join(ANSIBLE_DIR, "roles/gpuwarm/templates/40-gpuwarm-guard.conf.j2")
        env = jinja2.Environment(trim_blocks=True)
        template = env.from_string(open(path).read())
        for package, binary, user, expected, args in (
                ("", "/usr/local/bin/gpuwarm", "", "/usr/local/bin/gpuwarm", ""),
                ("/tmp/gpuwarm_0.1.0_amd64.deb", "/usr/local/bin/gpuwarm", "", "/usr/bin/gpuwarm", ""),
                ("", "/opt/gw/bin/gpuwarm", "nvidia-persistenced", "/opt/gw/bin/gpuwarm", " --user nvidia-persistenced")):
            text = template.render(ansible_managed="x", gpuwarm_package_src=package, gpuwarm_binary=binary,
                                   gpuwarm_guard_user=user)
            line = [l for l in text.splitlines() if l.startswith("ExecCondition=")]
            self.assertEqual(line, [f"ExecCondition=/bin/sh -c 'if [ -x {expected} ]; then exec {expected} guard{args}; fi; "
                                    f"echo \"gpuwarm guard: {expected} is missing: nvidia-persistenced starts "
                                    f"unguarded\"'"], text)

    def stub_gpuwarm(self, report, exit_code=0):
        """A stand-in for gpuwarm that prints `report` and exits `exit_code`."""
        stub = os.path.join(self.tmp, "gpuwarm")
        with open(stub, "w") as f:
            f.write(f"#!/bin/sh\necho '{report}'\nexit {exit_code}\n")
        os.chmod(stub, 0o755)
        return stub

    def test_a_report_of_an_unexpected_shape_fails_cleanly(self):
        # Found by tests/fuzz/fuzz_ansible_module.py: a GPU entry that is not an object ended in a traceback.
        stub = self.stub_gpuwarm('{"kind": "gpuwarm-diagnosis", "verdict": {"code": "healthy"}, "gpus": ["x"]}')
        for answer in ("diagnosed", "verified"):
            result = self.module(h.scenario([]), binary=stub, state=answer)
            self.assertTrue(result.get("failed"), result)
            self.assertIn("unexpected shape", result["msg"])

    def test_a_fix_cut_short_by_a_signal_says_what_it_changed(self):
        # gpuwarm fix on SIGTERM finishes the step it is in, writes its report and exits 128+15: the drop-in and
        # reload it did are changes, and the task says so.
        stub = self.stub_gpuwarm('{"kind": "gpuwarm-fix", "outcome": "act", "changed": true, '
                                 '"steps": [{"action": "write drop-in", "status": "done"}]}', exit_code=143)
        result = self.module(h.scenario([]), binary=stub, state="persistent")
        self.assertTrue(result.get("failed"), result)
        self.assertTrue(result["changed"], result)
        self.assertIn("gpuwarm fix exited 143", result["msg"])

    def test_exit_codes_become_results(self):
        hot = h.scenario([h.gpu(0, persistence=0, reasons=0x20)])
        off = h.scenario([h.gpu(0, persistence=0)])
        noperm = h.scenario([h.gpu(0)], init={"return": 4})  # NO_PERMISSION at nvmlInit: UNK001, exit 9
        cases = [
            # name, scenario, args, failed, routed, msg contains
            ("thermal is routed, not failed", hot, {"state": "diagnosed"}, False, True,
             "left unchanged: this node: Thermal"),
            ("fail_on_routed fails it", hot, {"state": "diagnosed", "fail_on_routed": True}, True, True, "Thermal"),
            ("action needed is an answer", off, {"state": "diagnosed"}, False, False, "Action needed"),
            ("no systemd fails the fix", off, {"state": "persistent", "_ansible_check_mode": True}, True, False,
             "no systemd on this node"),
            ("verification lists the failed checks", off, {"state": "verified", "settle": 0, "samples": 1}, True,
             False, "persistence: GPU 0: Disabled"),
            ("cannot tell fails the node", noperm, {"state": "diagnosed"}, True, True,
             "cannot tell: this node: Cannot tell"),
            ("fail_on_unknown unset warns", noperm, {"state": "diagnosed", "fail_on_unknown": False}, False, True,
             "cannot tell: this node: Cannot tell"),
            ("bad state", off, {"state": "warm"}, True, None, "value of state must be one of"),
            ("no binary", off, {"binary": "/nonexistent/gpuwarm"}, True, None, "gpuwarm is not installed at"),
        ]
        for name, scenario, args, failed, routed, msg in cases:
            result = self.module(scenario, **args)
            self.assertEqual(bool(result.get("failed")), failed, f"{name}: {result.get('msg')}")
            if routed is not None:
                self.assertEqual(result["routed"], routed, name)
            self.assertIn(msg, result["msg"], name)
        unknown = self.module(noperm, state="diagnosed", fail_on_unknown=False)
        self.assertEqual((unknown["rc"], unknown["unknown"], unknown["verdict"]), (9, True, "cannot-tell"))
        facts = self.module(off, state="diagnosed")["ansible_facts"]["gpuwarm"]
        self.assertEqual(facts["verdict"], "action-needed")
        # gpuwarm's own options, passed through as written.
        timed = self.module(off, state="diagnosed", nvml_timeout=5)
        self.assertIn("diagnose --json", timed["cmd"])
        self.assertIn("--nvml-timeout 5.0", timed["cmd"])
        # --trust-root only where asked (review-s54 M3: the role could not pass it, so a gpuwarm_root answered 9).
        self.assertNotIn("--trust-root", timed["cmd"])
        trusted = self.module(off, state="diagnosed", trust_root=True)
        self.assertIn(f"--root {self.root.path} --trust-root", trusted["cmd"])
        self.assertEqual(trusted["rc"], 3, trusted)
        with_dcgm = self.module(off, state="verified", settle=0, samples=1, dcgm_level=1)
        self.assertIn("--dcgm-level 1", with_dcgm["cmd"])
        self.assertNotIn("--dcgm-level", self.module(off, state="verified", settle=0, samples=1)["cmd"])
        self.assertEqual([(g["index"], g["persistence"]) for g in facts["gpus"]], [(0, "Disabled")])


@unittest.skipIf(missing_tools(), missing_tools())
class RolloutCase(unittest.TestCase):
    """Four fake nodes and the playbook; the tests are in the classes below (ctest runs them side by side)."""

    def setUp(self):
        h.require_binary(self)
        self.work = tempfile.mkdtemp(prefix="gpuwarm-ansible-")
        self.addCleanup(shutil.rmtree, self.work, True)
        # What an operator ships: the binary without debug sections, laid out as in the tarball, its bundled
        # library in ../lib/gpuwarm (the role copies that along).
        os.makedirs(os.path.join(self.work, "bundle", "bin"))
        os.makedirs(os.path.join(self.work, "bundle", "lib", "gpuwarm"))
        self.binary = os.path.join(self.work, "bundle", "bin", "gpuwarm")
        subprocess.run(["objcopy", "--strip-debug", h.BIN, self.binary], check=True)
        with open(os.path.join(self.work, "bundle", "lib", "gpuwarm", BUNDLED_LIB.split("/")[-1]), "w") as f:
            f.write("the tarball's bundled library\n")
        self.reports = os.path.join(self.work, "reports")

    def nodes(self, canary_start_result="done", canary="node-off", systemd_versions=None, without_exec_condition=(),
              probe=False, names=("node-off", "node-healthy", "node-reboot", "node-hot")):
        """names: the nodes a test needs (each node's run of the role costs some 10 s of CPU).
        probe: the role times cold start around the fix. Only the test that checks those figures asks for it:
        a probe times the GPUs under this machine's own /run lock, which keeps it apart from e2e.test_probe and
        the others of ctest's gpuwarm_run_locks, and the tests that leave it out may run beside them."""
        nodes = {}
        for name, kind in (("node-off", "off"), ("node-healthy", "healthy"), ("node-reboot", "reboot"),
                           ("node-hot", "hot")):
            if name not in names:
                continue
            nodes[name] = Node(name, kind, self.work, canary_start_result if kind == "off" else "done",
                               (systemd_versions or {}).get(name), name not in without_exec_condition)
            self.addCleanup(nodes[name].stop)
        for node in nodes.values():
            node.wait_until_started()
        inventory = {"all": {"children": {
            "gpu_nodes": {"hosts": {n: node.host_vars(probe) for n, node in nodes.items()}},
            "gpu_canary": {"hosts": {canary: None}}}}}
        self.inventory = os.path.join(self.work, "inventory.json")  # JSON is YAML: the yaml inventory plugin reads it
        with open(self.inventory, "w") as f:
            json.dump(inventory, f)
        return nodes

    def playbook(self, *extra, batches=False):
        """batches: the playbook's own widening batches after the canary (one node each here, one after the other).
        Otherwise the three other nodes go in one batch, side by side: the same tasks, in a third of the time."""
        if not batches:
            extra = ("-e", json.dumps({"gpuwarm_serial": ["100%"]}), *extra)
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ANSIBLE_DIR, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_PIPELINING="1", ANSIBLE_LOCAL_TEMP=os.path.join(self.work, "tmp-local"),
                   ANSIBLE_REMOTE_TMP=os.path.join(self.work, "tmp-remote"), ANSIBLE_INVENTORY_ENABLED="yaml")
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        r = subprocess.run(["ansible-playbook", "-i", self.inventory, PLAYBOOK, "-e", f"gpuwarm_binary_src={self.binary}",
                            "-e", f"gpuwarm_report_dir={self.reports}", *extra],
                           capture_output=True, text=True, env=env, timeout=600)
        self.assertNotIn("Sanitizer", r.stdout + r.stderr)
        return r

    @staticmethod
    def recap(output):
        """PLAY RECAP: {host: {ok:, changed:, failed:, ...}}."""
        out = {}
        for line in output.split("PLAY RECAP")[-1].splitlines():
            m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
            if m:
                out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        return out

    def report(self, name):
        with open(os.path.join(self.reports, name + ".json")) as f:
            return json.load(f)


class AnsibleRollout(RolloutCase):
    def test_check_mode_then_rollout_then_nothing_to_do(self):
        nodes = self.nodes(probe=True)
        before = {n: node.tree() for n, node in nodes.items()}

        # 1. --check --diff: every node diagnosed, the plan shown, nothing changed anywhere. gpuwarm is staged in
        # the scratch folder named (for nodes whose /tmp is noexec), and nothing of it stays there.
        # An existing shared folder keeps its mode (the staged copy gets a private folder inside it).
        scratch = os.path.join(self.work, "scratch")
        os.mkdir(scratch)
        os.chmod(scratch, 0o1777)
        r = self.playbook("--check", "--diff", "-e", f"gpuwarm_scratch_dir={scratch}")
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual(os.listdir(scratch), [])  # the staged copy's folder is gone again
        self.assertEqual(os.stat(scratch).st_mode & 0o7777, 0o1777)
        for n, node in nodes.items():
            self.assertEqual(node.tree(), before[n], f"{n} changed in check mode")
            self.assertEqual(set(node.write_calls().values()), {0}, n)
        self.assertEqual(self.report("node-off")["outcome"], "act")
        self.assertTrue(self.report("node-off")["dry_run"])
        self.assertIn("ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose", out)  # the diff
        self.assertIn("GPU 0 persistence: Disabled", out)
        self.assertRegex(out, r"would-fix\s+1")  # the fleet summary at the end
        self.assertRegex(out, re.compile(r"WARNING\]: left unchanged: node-reboot: Reboot pending.*?\[[A-Z]+\d+\]", re.S))
        self.assertRegex(out, r"WARNING\]: left unchanged: node-hot: Thermal/power")

        # 2. The rollout: the canary is fixed, the routed nodes reported and left as they were.
        r = self.playbook(batches=True)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        recap = self.recap(r.stdout)
        self.assertEqual({n: recap[n]["failed"] for n in nodes}, {n: 0 for n in nodes}, out)
        self.assertLess(out.index("PLAY [Roll out gpuwarm to the canary]"),
                        out.index("PLAY [Roll out gpuwarm to the rest of the fleet]"))
        # The default batches, 10 %, 50 % and the rest of three nodes: one node each (Ansible names each batch).
        self.assertEqual(out.count("PLAY [Roll out gpuwarm to the rest of the fleet]"), 3, out)
        off = nodes["node-off"]
        self.assertTrue(os.path.exists(off.root.p(DROPIN)))
        self.assertEqual(off.write_calls()["StartUnit"], 1)
        fixed = self.report("node-off")
        self.assertEqual((fixed["outcome"], fixed["changed"], fixed["node"]), ("act", True, "node-off"))
        self.assertEqual({c["id"]: c["status"] for c in fixed["verify"]["checks"]}["persistence"], "pass")
        self.assertEqual(self.report("node-healthy")["outcome"], "nothing-to-do")
        for name, verdict in (("node-reboot", "reboot-pending"), ("node-hot", "ras")):
            node = nodes[name]
            self.assertEqual(self.report(name)["verdict"]["code"], verdict)
            self.assertEqual(set(node.write_calls().values()), {0}, name)
            self.assertFalse(os.path.exists(node.root.p(DROPIN)), name)
            # The role's own files (binary and its bundled library, guard) are all that is new there.
            self.assertEqual(set(node.tree()) - set(before[name]), {INSTALLED, BUNDLED_LIB, GUARD}, name)
            self.assertEqual(node.tree()[BUNDLED_LIB], b"the tarball's bundled library\n", name)
        with open(nodes["node-reboot"].root.p(GUARD)) as f:
            self.assertIn("ExecCondition=/bin/sh -c 'if [ -x /usr/local/bin/gpuwarm ]; then exec /usr/local/bin/gpuwarm "
                          "guard; fi;", f.read())
        self.assertRegex(out, re.compile(r"WARNING\]: left unchanged: node-reboot: Reboot pending.*?\[[A-Z]+\d+\]", re.S))
        self.assertRegex(out, r"fixed\s+1")
        with open(os.path.join(self.reports, "node-off.probe.json")) as f:
            probe = json.load(f)  # before the fix every GPU paid the slow init; after it, none did
        self.assertEqual(probe["node"], "node-off")
        self.assertTrue(all(g["before_total_ms"] > 400 and g["after_total_ms"] < 200 for g in probe["compare"]), probe)
        self.assertIn("Cold start (a fresh process's CUDA start, probe TOTAL), median per GPU: before", out)
        self.assertFalse(os.path.exists(os.path.join(self.reports, "node-hot.probe.json")))  # routed: not probed
        self.assertIn("Nodes pending reboot: 1 (node-reboot)", out)
        summary = subprocess.run([self.binary, "fleet-summary", "--json", self.reports], capture_output=True, text=True)
        s = json.loads(summary.stdout)
        self.assertEqual(summary.returncode, 3)  # node-reboot and node-hot still need their own runbooks
        self.assertEqual(s["needs_attention"]["hostnames"], ["node-hot", "node-reboot"])
        self.assertEqual(s["nodes"], 4)

        # 3. Run again: nothing changes, on any node.
        calls = {n: node.write_calls() for n, node in nodes.items()}
        r = self.playbook()
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        recap = self.recap(r.stdout)
        self.assertEqual({n: recap[n]["changed"] for n in nodes}, {n: 0 for n in nodes}, out)
        self.assertEqual(out.count("PLAY [Roll out gpuwarm to the rest of the fleet]"), 1, out)  # one batch asked for
        self.assertEqual({n: node.write_calls() for n, node in nodes.items()}, calls)
        self.assertEqual(self.report("node-off")["outcome"], "nothing-to-do")
        with open(os.path.join(self.reports, "node-off.probe.json")) as f:
            probe = json.load(f)  # the cold "before" of the first run is kept, not replaced by a warm one
        self.assertTrue(all(g["before_total_ms"] > 400 and g["after_total_ms"] < 200 for g in probe["compare"]), probe)


class AnsibleStops(RolloutCase):
    """A run that must stop or fail: the other nodes are left as they were."""

    def test_failing_canary_stops_the_widen_step(self):
        # With the probes: the cold start timed before a fix that then fails is kept, and the run still stops.
        nodes = self.nodes(canary_start_result="failed", probe=True)
        r = self.playbook()
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        recap = self.recap(r.stdout)
        self.assertEqual(recap["node-off"]["failed"], 1, out)
        self.assertIn('job ended with result \\"failed\\"', out)
        self.assertNotIn("PLAY [Roll out gpuwarm to the rest of the fleet]", out)
        self.assertEqual(self.report("node-off")["outcome"], "act")  # kept although the node failed
        # The cold "before" stays on the node for the next run; no "after" was timed, so no comparison is kept.
        with open(nodes["node-off"].root.p("var/lib/gpuwarm/probe-baseline.json")) as f:
            self.assertTrue(all(g["total_ms"] > 400 for g in json.load(f)["gpus"]))
        self.assertFalse(os.path.exists(os.path.join(self.reports, "node-off.probe.json")))
        for name in ("node-healthy", "node-reboot", "node-hot"):
            self.assertNotIn(name, recap)
            self.assertFalse(os.path.exists(nodes[name].root.p(INSTALLED)), name)
            self.assertFalse(os.path.exists(os.path.join(self.reports, name + ".json")), name)

    def test_a_node_whose_lock_stays_held_keeps_its_diagnosis(self):
        # Another fix takes node-healthy's lock after the role diagnosed it (the guard, written next, says when):
        # its fix answers 7 without a diagnosis of its own, and the saved report keeps the role's, so
        # fleet-summary still knows the node's persistence. It is the canary: a node of the widen step fails the
        # same way, by the same tasks.
        nodes = self.nodes(canary="node-healthy", names=("node-healthy",))
        node = nodes["node-healthy"]
        other_fix = open(node.root.p("run/gpuwarm-fix.lock"), "w")
        self.addCleanup(other_fix.close)
        done = threading.Event()

        def take_the_lock_once_diagnosed():
            while not done.is_set() and not os.path.exists(node.root.p(GUARD)):
                time.sleep(0.005)
            fcntl.flock(other_fix, fcntl.LOCK_EX)
        taker = threading.Thread(target=take_the_lock_once_diagnosed)
        taker.start()
        try:
            r = self.playbook("-e", "gpuwarm_lock_retries=0")
        finally:
            done.set()
            taker.join()
        out = r.stdout + r.stderr
        self.assertEqual(self.recap(r.stdout)["node-healthy"]["failed"], 1, out)
        self.assertIn("the node's lock is held", out)
        saved = self.report("node-healthy")
        self.assertEqual((saved["kind"], saved["outcome"]), ("gpuwarm-fix", "locked"), saved)
        self.assertEqual(saved["diagnosis"]["verdict"]["code"], "healthy")
        summary = subprocess.run([self.binary, "fleet-summary", "--json", self.reports], capture_output=True, text=True)
        self.assertIn(summary.returncode, (0, 3), summary.stderr)
        fleet = json.loads(summary.stdout)
        self.assertNotIn("no-diagnosis", [v["verdict"] for v in fleet["verdicts"]])
        self.assertNotIn("node-healthy", fleet["persistence_not_reported"]["hostnames"])

    def test_a_canary_left_unchanged_stops_the_widen_step(self):
        # A canary whose driver awaits a reboot is left unchanged: it proves nothing about the rollout, so the
        # fleet is not touched.
        nodes = self.nodes(canary="node-reboot")
        r = self.playbook()
        out = r.stdout + r.stderr
        self.assertNotEqual(r.returncode, 0, out)
        recap = self.recap(r.stdout)
        self.assertEqual(recap["node-reboot"]["failed"], 1, out)
        self.assertIn("left unchanged: node-reboot: Reboot pending", out)
        self.assertNotIn("PLAY [Roll out gpuwarm to the rest of the fleet]", out)
        for name in ("node-off", "node-healthy", "node-hot"):
            self.assertNotIn(name, recap)
            self.assertFalse(os.path.exists(nodes[name].root.p(INSTALLED)), name)


class AnsibleGuardAndReportOnly(RolloutCase):
    def test_report_only_changes_nothing_but_the_binary(self):
        # gpuwarm_state: diagnosed reports; the guard's drop-in (a change to systemd) is not written. A node the
        # rollout would fix (the canary) and one it would leave to another runbook.
        nodes = self.nodes(names=("node-off", "node-hot"))
        before = {name: set(node.tree()) for name, node in nodes.items()}
        r = self.playbook("-e", "gpuwarm_state=diagnosed")
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        for name, node in nodes.items():
            self.assertEqual(set(node.tree()) - before[name], {INSTALLED, BUNDLED_LIB}, name)

    def test_the_guard_only_where_systemd_runs_it(self):
        # A systemd without ExecCondition= (before 243; RHEL 8 before 8.3) would ignore the guard, so the role leaves
        # it out and says so, and takes away one an earlier run put there. RHEL 8.10's 239 has it backported: the
        # guard goes in there as on any newer systemd.
        nodes = self.nodes(systemd_versions={"node-healthy": "239 (239-31.el8)", "node-hot": "239 (239-82.el8_10.2)"},
                           without_exec_condition={"node-healthy"}, names=("node-off", "node-healthy", "node-hot"))
        old = nodes["node-healthy"]
        old.root.write(GUARD, "[Service]\nExecCondition=/usr/local/bin/gpuwarm guard\n")
        r = self.playbook()
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertFalse(os.path.exists(old.root.p(GUARD)), "a guard this systemd ignores is removed")
        self.assertIn("node-healthy: this systemd (239 (239-31.el8)) does not know ExecCondition=, so the guard is not "
                      "installed", out)
        for name in ("node-off", "node-hot"):  # the template's v246, and RHEL 8.10's 239
            self.assertTrue(os.path.exists(nodes[name].root.p(GUARD)), name)
        self.assertEqual(self.report("node-healthy")["outcome"], "nothing-to-do")
        # Switched off: the role's drop-in goes from every node.
        r = self.playbook("-e", "gpuwarm_guard=false")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name, node in nodes.items():
            self.assertFalse(os.path.exists(node.root.p(GUARD)), name)


class ReadmeCommands(unittest.TestCase):
    """The README's Ansible command, copied from the README as it stands, from the checkout."""

    def readme_block(self):
        with open(os.path.join(h.SOURCE_DIR, "README.md")) as f:
            text = f.read()
        m = re.search(r"```sh\n(cd ansible\n.*?)```", text, re.S)
        self.assertIsNotNone(m, "README lost its Ansible block")
        return m.group(1)

    def setUp(self):
        if not shutil.which("ansible-playbook"):
            self.skipTest("ansible-playbook not installed (scripts/setup.sh installs ansible-core)")
        if os.geteuid() != 0:
            self.skipTest("the example inventory runs on this machine as root (ansible_become: false)")
        if not os.path.exists(os.path.join(h.SOURCE_DIR, "build", "src", "gpuwarm")):
            self.skipTest("build/src/gpuwarm not built (scripts/setup.sh builds it)")
        self.reports = os.path.join(ANSIBLE_DIR, "playbooks", "gpuwarm-reports")
        self.addCleanup(shutil.rmtree, self.reports, True)
        self.env = dict(os.environ, ANSIBLE_NOCOLOR="1")
        self.env.pop("ANSIBLE_CONFIG", None)

    def test_check_mode_command_runs_as_written(self):
        block = self.readme_block()
        self.assertIn("--check --diff", block)
        dropins = "/etc/systemd/system/nvidia-persistenced.service.d"
        before = sorted(os.listdir(dropins)) if os.path.isdir(dropins) else None
        r = subprocess.run(["bash", "-ec", block], cwd=h.SOURCE_DIR, capture_output=True, text=True,
                           env=self.env, timeout=600)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertRegex(out, r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0")
        self.assertIn("Summarize every node's report", out)
        with open(os.path.join(self.reports, "localhost.json")) as f:
            report = json.load(f)
        self.assertIn("verdict", report)
        if report["verdict"]["code"] not in ("healthy", "action-needed", "persistence-optional"):
            # Ansible wraps warnings at 80 columns.
            self.assertRegex(out, re.compile(r"WARNING\]: left unchanged: localhost: .*\[[A-Z]+\d+\]", re.S))
        self.assertEqual(sorted(os.listdir(dropins)) if os.path.isdir(dropins) else None, before,
                         "check mode wrote a drop-in")

    def test_check_mode_with_a_package(self):
        deb = [os.path.join(os.environ.get("GPUWARM_DIST", ""), f) for f in os.listdir(os.environ["GPUWARM_DIST"])
               if f.endswith(".deb")] if os.path.isdir(os.environ.get("GPUWARM_DIST", "")) else []
        if not deb or not shutil.which("dpkg"):
            self.skipTest("no .deb in GPUWARM_DIST (scripts/test.sh builds it) or no dpkg")
        if os.path.exists("/usr/bin/gpuwarm"):
            self.skipTest("gpuwarm is installed on this machine: check mode would diagnose with it")
        r = subprocess.run(["ansible-playbook", "-i", "inventory/example.yml", "playbooks/gpuwarm-rollout.yml",
                            "-e", f"gpuwarm_package_src={deb[0]}", "--check"], cwd=ANSIBLE_DIR, capture_output=True,
                           text=True, env=self.env, timeout=300)
        out = r.stdout + r.stderr
        # apt saw the package (check mode: nothing installed), and check mode says why it stops there.
        self.assertRegex(out, r"TASK \[gpuwarm : Install the gpuwarm package \(Debian, Ubuntu\)\][^\n]*\n(changed|ok): \[localhost\]")
        self.assertIn("check mode would install " + os.path.basename(deb[0]), out)
        self.assertFalse(os.path.exists("/usr/bin/gpuwarm"))
        import glob
        self.assertEqual(glob.glob("/tmp/ansible.*gpuwarm-package"), [], "the private directory was left behind")

    def test_check_mode_with_the_tarball_binary_on_a_node_without_simdjson(self):
        # What a node has: no libsimdjson of its own. The tarball's binary finds its bundled copy at
        # $ORIGIN/../lib/gpuwarm, so the role must stage (and install) that along with it (review-s49-first P1).
        dist = os.environ.get("GPUWARM_DIST", "")
        tarballs = [f for f in os.listdir(dist) if f.endswith("-linux-x86_64.tar.gz")] if os.path.isdir(dist) else []
        system_lib = "/usr/lib/x86_64-linux-gnu/libsimdjson.so.14"
        if not tarballs or not shutil.which("unshare") or not os.path.exists(system_lib):
            self.skipTest("no tarball in GPUWARM_DIST (scripts/test.sh builds it), no unshare, or no system "
                          "libsimdjson to hide")
        work = tempfile.mkdtemp(prefix="gpuwarm-tarball-")
        self.addCleanup(shutil.rmtree, work, True)
        subprocess.run(["tar", "-xzf", os.path.join(dist, tarballs[0]), "-C", work, "--strip-components=1"], check=True)
        binary = os.path.join(work, "bin", "gpuwarm")
        hidden = (f"mount --bind /dev/null {system_lib} && "
                  f"ansible-playbook -i inventory/example.yml playbooks/gpuwarm-rollout.yml --check "
                  f"-e gpuwarm_binary_src={binary}")
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec", hidden], cwd=ANSIBLE_DIR,
                           capture_output=True, text=True, env=self.env, timeout=600)
        out = r.stdout + r.stderr
        self.assertNotIn("error while loading shared libraries", out)
        self.assertEqual(r.returncode, 0, out)
        self.assertRegex(out, r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0")
        with open(os.path.join(self.reports, "localhost.json")) as f:
            self.assertIn("verdict", json.load(f))

    def test_the_summary_without_gpuwarm_on_the_controller(self):
        # A rollout from a package copies no binary, and the controller may have no gpuwarm: the last play says
        # where the reports are instead of failing the run. (No node here: only the summary play has hosts.)
        if any(os.path.exists(p) for p in ("/usr/bin/gpuwarm", "/usr/local/bin/gpuwarm")):
            self.skipTest("gpuwarm is installed on this machine: the summary would use it")
        with tempfile.TemporaryDirectory() as d:
            inventory = os.path.join(d, "inventory.json")
            with open(inventory, "w") as f:
                json.dump({"all": {"children": {"gpu_nodes": {"hosts": {}}, "gpu_canary": {"hosts": {}}}}}, f)
            r = subprocess.run(["ansible-playbook", "-i", inventory, "playbooks/gpuwarm-rollout.yml",
                                "-e", "gpuwarm_package_src=/tmp/gpuwarm.deb", "-e", f"gpuwarm_report_dir={d}"],
                               cwd=ANSIBLE_DIR, capture_output=True, text=True, env=self.env, timeout=300)
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("No gpuwarm on this controller to summarize with: each node's report is in " + d, out)
        self.assertNotIn("TASK [Show the fleet summary]\nok", out)

    def test_package_and_binary_together_are_refused(self):
        r = subprocess.run(["ansible-playbook", "-i", "inventory/example.yml", "playbooks/gpuwarm-rollout.yml",
                            "-e", "gpuwarm_binary_src=/usr/bin/true", "-e", "gpuwarm_package_src=/tmp/gpuwarm.deb",
                            "--check"], cwd=ANSIBLE_DIR, capture_output=True, text=True, env=self.env, timeout=300)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not both", r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
