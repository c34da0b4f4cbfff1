"""Unknown is never healthy, and the right verdict wherever the driver lives:
one fake node per case, through the real binary. NixOS, GPU Operator and
cloud-image layouts found without --nvml; a hung nvmlInit; a client masking
persistence off; a laptop with runtime D3; NVML and the daemon disagreeing;
the seed's mismatch with no readable user space; reports of the wrong kind."""
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import harness as h

VERSION = "580.159.04"
SEED_MISMATCH = ["NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build",
                 "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                 "NVRM: has the version 580.95.05, but this kernel module has",
                 "NVRM: the version 580.159.04.  Please make sure that this",
                 "NVRM: kernel module and all NVIDIA driver components",
                 "NVRM: have the same version."]


def install_fake_nvml(root, libdir):
    """The fake libnvidia-ml as a driver package lays it out, under root + libdir."""
    real = f"libnvidia-ml.so.{VERSION}"
    with open(os.path.join(h.FAKE_NVML_DIR, real), "rb") as library:
        root.write(os.path.join(libdir, real), library.read(), 0o755)
    os.symlink(real, root.p(os.path.join(libdir, "libnvidia-ml.so.1")))


class Node(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)

    def scenario_file(self, obj):
        path = os.path.join(self.tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def run_raw(self, args, scenario_obj=None, timeout=60):
        """gpuwarm with no --nvml: the binary finds NVML itself."""
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        env["NO_COLOR"] = "1"
        if scenario_obj is not None:
            env["FAKE_NVML_SCENARIO"] = self.scenario_file(scenario_obj)
        return subprocess.run([h.BIN, *args], capture_output=True, text=True, env=env, timeout=timeout)

    def diagnose(self, *extra, scenario_obj=None, nvml=True, trust_root=True):
        """nvml=False: NVML is searched for under the root, which stands for this host (--trust-root) unless
        trust_root=False."""
        args = ["diagnose", "--json", "--no-systemd", "--root", self.root.path, *extra]
        if nvml:
            args += ["--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")]
        elif trust_root:
            args.append("--trust-root")
        r = self.run_raw(args, scenario_obj)
        self.assertNotIn("Sanitizer", r.stderr)
        return r.returncode, json.loads(r.stdout)


class DriverLocations(Node):
    """NVML found under --root where each layout puts it, with no --nvml."""

    def check_found(self, libdir, layout):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        install_fake_nvml(self.root, libdir)
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]), nvml=False)
        self.assertEqual(rc, 0, d["findings"])
        self.assertEqual(d["verdict"]["code"], "healthy")
        nvml = d["snapshot"]["nvml"]
        self.assertEqual(nvml["library_path"], self.root.p(os.path.join(libdir, f"libnvidia-ml.so.{VERSION}")))
        self.assertIn(layout, nvml["library_found_by"])
        self.assertIn(libdir, d["driver"]["nvml_found_by"])

    def test_nixos(self):
        self.check_found("/run/opengl-driver/lib", "NixOS")

    def test_gpu_operator_driver_root(self):
        self.check_found("/run/nvidia/driver/usr/lib/x86_64-linux-gnu", "GPU Operator")

    def test_cloud_image(self):
        self.check_found("/usr/local/nvidia/lib64", "cloud-image")

    def test_nixos_links_are_followed_inside_the_root(self):
        # /run/opengl-driver -> /nix/store/...: an absolute link, resolved under --root, not the caller's /.
        self.root.driver().daemon_binary().daemon_process().kmsg()
        install_fake_nvml(self.root, "/nix/store/abc-nvidia-x11-580.159.04/lib")
        os.makedirs(self.root.p("/run"), exist_ok=True)
        os.symlink("/nix/store/abc-nvidia-x11-580.159.04", self.root.p("/run/opengl-driver"))
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]), nvml=False)
        self.assertEqual(rc, 0, d["findings"])
        self.assertEqual(d["snapshot"]["nvml"]["library_path"],
                         self.root.p(f"/nix/store/abc-nvidia-x11-580.159.04/lib/libnvidia-ml.so.{VERSION}"))

    @unittest.skipUnless(os.geteuid() == 0, "the ownership checks apply to root only")
    def test_root_passes_over_a_library_others_can_replace(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        install_fake_nvml(self.root, "/run/opengl-driver/lib")
        os.chmod(self.root.p(f"/run/opengl-driver/lib/libnvidia-ml.so.{VERSION}"), 0o777)
        install_fake_nvml(self.root, "/usr/local/nvidia/lib64")
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]), nvml=False)
        self.assertEqual(rc, 0, d["findings"])
        nvml = d["snapshot"]["nvml"]
        self.assertIn("/usr/local/nvidia/lib64", nvml["library_found_by"])
        self.assertTrue(any("writable by group or others" in p for p in nvml["library_passed_over"]),
                        nvml["library_passed_over"])

    def test_a_fifo_or_device_where_a_library_belongs_is_passed_over_unopened(self):
        # A root is anyone's (a container's image): opening a FIFO there blocks, a device acts on being opened.
        self.root.driver().daemon_binary().daemon_process().kmsg()
        os.makedirs(self.root.p("/run/opengl-driver/lib"), exist_ok=True)
        os.mkfifo(self.root.p("/run/opengl-driver/lib/libnvidia-ml.so.1"))
        install_fake_nvml(self.root, "/usr/local/nvidia/lib64")
        start = time.monotonic()
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]), nvml=False)
        self.assertLess(time.monotonic() - start, 10)
        self.assertEqual(rc, 0, d["findings"])
        nvml = d["snapshot"]["nvml"]
        self.assertIn("/usr/local/nvidia/lib64", nvml["library_found_by"])
        self.assertIn(self.root.p("/run/opengl-driver/lib/libnvidia-ml.so.1") + ": not a regular file",
                      nvml["library_passed_over"])

    def test_none_found_says_where_it_looked(self):
        self.root.driver().daemon_binary().kmsg()
        # Vouched for or not (as root): a tree with no library has no code to refuse, and reads as missing its
        # library (review-s54-trust-root M2), not as "cannot tell".
        for trust_root in (True, False):
            rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0)]), nvml=False, trust_root=trust_root)
            self.assertEqual(rc, 5, trust_root)
            self.assertEqual(d["verdict"]["rule_id"], "DRV002")
            self.assertIn("known driver locations", d["findings"][0]["evidence"][0])

    def test_an_untrusted_roots_library_is_not_loaded_as_root(self):
        """As root, a --root tree not vouched for may be a container's: its library is named, not loaded, and
        the answer is cannot tell, never healthy (review-s53-root H1)."""
        if os.geteuid() != 0:
            self.skipTest("needs root: as another user the tree's library is loaded as that user")
        self.root.driver().daemon_binary().daemon_process().kmsg()
        install_fake_nvml(self.root, "/usr/local/nvidia/lib64")
        scenario = h.scenario([h.gpu(0)])
        rc, d = self.diagnose(scenario_obj=scenario, nvml=False, trust_root=False)
        # Cannot tell, saying why and what to do: not "install the driver" (the library is there), never healthy,
        # and not UNK009, which helpers wait out as another gpuwarm command's (review-s54 M1).
        self.assertEqual((rc, d["verdict"]["rule_id"]), (9, "UNK011"), d["findings"])
        self.assertEqual([f["rule_id"] for f in d["findings"] if f["severity"] != "info"], ["UNK011"])
        nvml = d["snapshot"]["nvml"]
        self.assertIn("missing", nvml["library_path"])
        self.assertEqual(nvml["not_opened_by"], "untrusted-root")
        self.assertIn(f"its libnvidia-ml would run as root: --root {self.root.path} may be a container's or an "
                      "image's tree", nvml["not_opened"])
        self.assertIn("--trust-root", d["findings"][0]["next_step"])
        base = ["--no-systemd", "--root", self.root.path]
        check = self.run_raw(["check", *base], scenario)
        self.assertEqual(check.stdout.strip(), "UNK011 root not trusted: --trust-root not given", check.stderr)
        # The exporter's log says why, once, where a deployment copied before --trust-root would otherwise only
        # see "cannot tell" (review-s54 M3).
        metrics = self.run_raw(["metrics", *base], scenario)
        self.assertEqual(metrics.returncode, 0, metrics.stderr)
        self.assertIn('gpuwarm_finding{rule_id="UNK011",severity="warning"} 1', metrics.stdout)
        self.assertEqual(metrics.stderr.count("NVML left closed (UNK011)"), 1, metrics.stderr)
        # A library named with --nvml inside the tree is the tree's code all the same (review-s54 L6).
        named = self.root.p("/usr/local/nvidia/lib64/libnvidia-ml.so.1")
        rc, d = self.diagnose("--nvml", named, scenario_obj=scenario, nvml=False, trust_root=False)
        self.assertEqual((rc, d["verdict"]["rule_id"]), (9, "UNK011"), d["findings"])
        self.assertIn(f"--nvml {named}, in the tree, would run as root", d["snapshot"]["nvml"]["not_opened"])
        # Vouched for, the same tree's library is loaded.
        rc, d = self.diagnose(scenario_obj=scenario, nvml=False)
        self.assertEqual(d["snapshot"]["nvml"]["library_path"],
                         self.root.p(f"/usr/local/nvidia/lib64/libnvidia-ml.so.{VERSION}"))

    def test_guard_finds_the_roots_nvml(self):
        self.root.driver(VERSION).kmsg()
        install_fake_nvml(self.root, "/run/opengl-driver/lib")
        self.root.write("/run/current-system/sw/bin/nvidia-persistenced",
                        f"#!/bin/sh\necho 'nvidia-persistenced:  version {VERSION}'\n", 0o755)
        open(self.root.p(f"/run/opengl-driver/lib/libnvidia-cfg.so.{VERSION}"), "w").close()
        os.symlink(f"libnvidia-cfg.so.{VERSION}", self.root.p("/run/opengl-driver/lib/libnvidia-cfg.so.1"))
        r = self.run_raw(["guard", "--root", self.root.path, "--trust-root", "--kernel-log", self.root.p("dev/kmsg"), "--verbose"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"libnvidia-ml {VERSION}", r.stdout)


class CannotTell(Node):
    def test_hung_init_ends_with_a_finding(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        start = time.monotonic()
        rc, d = self.diagnose("--nvml-timeout", "1",
                              scenario_obj=h.scenario([h.gpu(0)], init={"delay_ms": 20000}))
        elapsed = time.monotonic() - start
        self.assertLess(elapsed, 10)
        self.assertEqual(rc, 9)
        self.assertEqual((d["verdict"]["code"], d["verdict"]["rule_id"]), ("cannot-tell", "NVML001"))
        self.assertIn("did not answer in 1 s", d["findings"][0]["message"])
        self.assertIn("nvmlInit", d["findings"][0]["message"])

    def test_hung_init_does_not_hang_verify_or_fix(self):
        self.root.driver(gpus=1).daemon_binary().daemon_process(holds=(0,)).kmsg()
        sc = h.scenario([h.gpu(0)], init={"delay_ms": 20000})
        lib = os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")
        start = time.monotonic()
        r = self.run_raw(["verify", "--no-systemd", "--root", self.root.path, "--nvml", lib, "--nvml-timeout", "1",
                          "--settle", "0", "--samples", "5", "--sample-interval", "0"], sc)
        # One deadline, not one per sample: later samples fail fast behind the stuck call.
        self.assertLess(time.monotonic() - start, 6)
        self.assertEqual(r.returncode, 8, r.stdout + r.stderr)
        self.assertIn("did not answer", r.stdout)
        r = self.run_raw(["fix", "--dry-run", "--no-systemd", "--root", self.root.path, "--nvml", lib,
                          "--nvml-timeout", "1"], sc)
        self.assertEqual(r.returncode, 9, r.stdout + r.stderr)

    def test_persistence_unread_is_never_healthy(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        sc = h.scenario([h.gpu(0), h.gpu(1, returns={"nvmlDeviceGetPersistenceMode": 999})])
        rc, d = self.diagnose(scenario_obj=sc)
        self.assertEqual(rc, 9)
        self.assertEqual(d["verdict"]["rule_id"], "UNK004")
        gpu1 = d["gpus"][1]
        self.assertIsNone(gpu1["persistence"])
        unread = [u for u in gpu1["unread"] if u["fact"] == "persistence mode"][0]
        self.assertEqual((unread["reason"], unread["effect"]), ("UNKNOWN", "cannot-tell"))
        text = self.run_raw(["diagnose", "--no-systemd", "--root", self.root.path, "--nvml",
                             os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")], sc)
        self.assertIn("unknown (UNKNOWN)", text.stdout)
        self.assertIn("Cannot tell", text.stdout)

    def test_count_fails_while_the_kernel_lists_gpus(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)], returns={"nvmlDeviceGetCount_v2": 999}))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (9, "UNK002"))

    def test_init_lost_gpu_is_ras_not_a_reinstall(self):
        self.root.driver().daemon_binary().kmsg()
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0)], init={"return": 15}))
        self.assertEqual((rc, d["verdict"]["code"], d["verdict"]["rule_id"]), (5, "ras", "GPU001"))
        self.assertNotIn("Reinstall", d["verdict"]["next_step"])

    def test_init_no_permission_is_not_a_driver_install(self):
        self.root.driver().daemon_binary().kmsg()
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0)], init={"return": 4}))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (9, "UNK001"))
        self.assertIn("permissions problem", d["verdict"]["next_step"])

    def test_fix_refuses_cannot_tell(self):
        self.root.driver(gpus=1).daemon_binary().kmsg()
        r = self.run_raw(["fix", "--dry-run", "--no-systemd", "--root", self.root.path, "--nvml",
                          os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                         h.scenario([h.gpu(0, returns={"nvmlDeviceGetPersistenceMode": 999})]))
        self.assertEqual(r.returncode, 9, r.stdout + r.stderr)
        self.assertIn("Cannot tell", r.stdout)


class SeedMismatchWithoutNvml(Node):
    def test_reboot_pending_from_the_kernel_log(self):
        self.root.driver(VERSION).daemon_binary().kmsg(SEED_MISMATCH)
        rc, d = self.diagnose(nvml=False)  # no libnvidia-ml anywhere under the root
        self.assertEqual(rc, 4, d["findings"])
        self.assertEqual((d["verdict"]["code"], d["verdict"]["rule_id"]), ("reboot-pending", "DRV003"))
        drv = d["findings"][0]
        self.assertIn("580.95.05", drv["message"])
        self.assertNotIn("DRV002", [f["rule_id"] for f in d["findings"]])
        r = self.run_raw(["fix", "--dry-run", "--no-systemd", "--root", self.root.path])
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn("Reboot", r.stdout)
        self.assertNotIn("Reinstall", r.stdout)

    def test_a_mismatch_of_another_module_generation_is_ignored(self):
        older = [line.replace("580.159.04", "575.64.05") for line in SEED_MISMATCH[1:]]
        self.root.driver(VERSION).daemon_binary().kmsg([SEED_MISMATCH[0], *older])
        rc, d = self.diagnose(nvml=False)
        self.assertEqual((rc, d["verdict"]["rule_id"]), (5, "DRV002"))


class Masking(Node):
    def client(self, pid, comm, minors):
        self.root.write(f"proc/{pid}/comm", comm + "\n")
        self.root.write(f"proc/{pid}/cmdline", f"/usr/bin/{comm}\0-n\0")
        os.makedirs(self.root.p(f"proc/{pid}/fd"), exist_ok=True)
        os.symlink("/dev/nvidiactl", self.root.p(f"proc/{pid}/fd/3"))
        for n, minor in enumerate(minors):
            os.symlink(f"/dev/nvidia{minor}", self.root.p(f"proc/{pid}/fd/{4 + n}"))

    def test_a_process_posing_as_the_daemon_is_a_client_not_the_daemon(self):
        # Name, argv[0] and --user are a process's own to choose (exec -a, /proc/self/comm): what it runs decides.
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
        self.root.driver().daemon_binary().kmsg().daemon_process(pid=4242, holds=(0, 1))
        rc, d = self.diagnose(scenario_obj=off)
        self.assertEqual(d["snapshot"]["daemon"]["processes"][0]["executable"], "/usr/bin/nvidia-persistenced")
        self.assertNotEqual(d["verdict"]["rule_id"], "PM001")  # the real daemon holds both GPUs
        os.remove(self.root.p("proc/4242/exe"))
        self.root.write("usr/bin/python3.11", "\x7fELF", 0o755)
        os.symlink("/usr/bin/python3.11", self.root.p("proc/4242/exe"))
        rc, d = self.diagnose(scenario_obj=off)
        self.assertEqual((rc, d["verdict"]["rule_id"]), (3, "PM001"))
        self.assertEqual(d["snapshot"]["daemon"]["processes"], [])
        self.assertEqual(d["snapshot"]["daemon"]["not_daemon"],
                         [{"pid": 4242, "why": "runs /usr/bin/python3.11, not nvidia-persistenced: not the daemon"}])
        masked = [f for f in d["findings"] if f["rule_id"] == "PM003"]
        self.assertEqual([f["gpu"] for f in masked], [0, 1])  # it holds the GPUs: a client that masks the problem
        # The text says it too, on the daemon's line, not only the JSON.
        recorded = os.path.join(self.root.path, "recorded.json")
        with open(recorded, "w") as f:
            json.dump(d["snapshot"], f)
        text = h.run(["diagnose", "--snapshot", recorded], raw=True).stdout
        self.assertRegex(text, r"Daemon .*· not running · pid 4242: runs /usr/bin/python3\.11, not nvidia-persistenced: "
                               r"not the daemon\n")

    def test_a_persistence_answer_that_is_no_enable_state_is_unknown(self):
        # nvmlEnableState_t is 0 or 1; anything else is not "Disabled" (live and replayed alike).
        self.root.driver().daemon_binary().kmsg().daemon_process(holds=(0, 1))
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1, persistence=7)]))
        self.assertEqual(d["verdict"]["rule_id"], "UNK004")
        self.assertEqual(d["snapshot"]["nvml"]["gpus"][1]["persistence"],
                         {"missing": "answered 7, neither Enabled (1) nor Disabled (0)"})
        self.assertNotIn("PM004", [f["rule_id"] for f in d["findings"]])

    def test_a_client_holding_the_gpu_masks_persistence_off(self):
        self.root.driver().daemon_binary().kmsg()
        self.client(777, "nv-hostengine", [0, 1])
        self.client(778, "bash", [])
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)]))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (3, "PM001"))
        masked = [f for f in d["findings"] if f["rule_id"] == "PM003"]
        self.assertEqual([f["gpu"] for f in masked], [0, 1])
        self.assertIn("masked, not fixed", masked[0]["message"])
        self.assertIn("pid 777 (nv-hostengine) holds /dev/nvidia0", masked[0]["evidence"])
        # Only the command name: another user's arguments are not copied into reports.
        self.assertEqual(d["snapshot"]["host"]["gpu_clients"], [{"comm": "nv-hostengine", "minors": [0, 1], "pid": 777}])

    def test_nvml_and_the_daemon_disagree(self):
        self.root.driver().daemon_binary().daemon_process(holds=(0, 1)).kmsg()
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0, persistence=0), h.gpu(1)]))
        self.assertEqual((rc, d["verdict"]["code"]), (0, "healthy"))
        views = [f for f in d["findings"] if f["rule_id"] == "PM004"][0]
        self.assertEqual(views["gpu"], 0)
        self.assertIn("trusts the daemon", views["message"])
        self.assertIn("NVML view: nvmlDeviceGetPersistenceMode = Disabled", views["evidence"])


class Laptop(Node):
    def test_runtime_d3_laptop_needs_no_persistence(self):
        self.root.driver(gpus=1).kmsg()
        self.root.write("usr/bin/nvidia-persistenced", "#!/bin/sh\n", 0o755)
        self.root.write("proc/driver/nvidia/gpus/0000:06:00.0/power",
                        "Runtime D3 status:          Enabled (fine-grained)\nVideo Memory:               Off\n")
        self.root.write("sys/class/dmi/id/chassis_type", "10\n")
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0, persistence=0, display_active=1)]))
        self.assertEqual(rc, 0, d["findings"])
        self.assertEqual((d["verdict"]["code"], d["verdict"]["rule_id"]), ("persistence-optional", "PM005"))
        self.assertIn("idle power", d["findings"][0]["message"])
        self.assertTrue(all(f["route"] != "fix" for f in d["findings"]))

    def test_the_same_laptop_running_slurmd_needs_it(self):
        self.root.driver(gpus=1).kmsg()
        self.root.write("usr/bin/nvidia-persistenced", "#!/bin/sh\n", 0o755)
        self.root.write("sys/class/dmi/id/chassis_type", "10\n")
        self.root.write("proc/4100/comm", "slurmd\n")
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0, persistence=0)]))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (3, "PM001"))


class RecordedH200(Node):
    """The snapshot gpuwarm took on the lent H200 (driver in /usr/local/nvidia, no --nvml)."""

    def test_diagnoses_the_same_here(self):
        path = os.path.join(h.SOURCE_DIR, "examples", "h200-legacy-flag.json")
        r = self.run_raw(["diagnose", "--snapshot", path, "--json"])
        # Recorded before facts gpuwarm reads now: cannot tell, never their defaults (UNK010); what it did
        # record reads the same here.
        self.assertEqual(r.returncode, 9, r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual(d["verdict"]["rule_id"], "UNK010")
        self.assertEqual(d["driver"]["nvml_library"], "/usr/local/nvidia/lib64/libnvidia-ml.so.580.159.04")
        self.assertEqual(d["driver"]["nvml_found_by"], "default loader path")
        self.assertEqual(d["gpus"][0]["unread"], [])


class WrongReportKind(Node):
    def saved(self, name, obj):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def test_diagnose_refuses_other_reports_by_name(self):
        for kind, named in [("gpuwarm-fix", "gpuwarm fix --json"), ("gpuwarm-probe", "gpuwarm probe --json"),
                            ("gpuwarm-watch", "gpuwarm watch --json"), ("watch", "gpuwarm watch --json"),
                            ("gpuwarm-verify", "gpuwarm verify --json")]:
            path = self.saved("r.json", {"kind": kind, "schema_version": 1, "snapshot": {"schema_version": 1}})
            r = self.run_raw(["diagnose", "--snapshot", path])
            self.assertEqual(r.returncode, 1, kind)
            self.assertIn(named, r.stderr, kind)
            self.assertIn("not a snapshot", r.stderr, kind)
            self.assertEqual(r.stdout, "", kind)

    def test_a_real_fix_report_is_refused(self):
        self.root.driver().daemon_binary().kmsg()
        fix = self.run_raw(["fix", "--dry-run", "--json", "--no-systemd", "--root", self.root.path, "--nvml",
                            os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")], h.scenario([h.gpu(0, persistence=0)]))
        path = self.saved("fix.json", json.loads(fix.stdout))
        r = self.run_raw(["diagnose", "--snapshot", path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("a `gpuwarm fix --json` report, not a snapshot", r.stderr)

    def test_snapshot_and_diagnosis_still_load(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        snap = self.run_raw(["snapshot", "--no-systemd", "--root", self.root.path, "--nvml",
                             os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")], h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual(json.loads(snap.stdout)["kind"], "gpuwarm-snapshot")
        path = self.saved("snap.json", json.loads(snap.stdout))
        self.assertEqual(self.run_raw(["diagnose", "--snapshot", path]).returncode, 0)

    def test_replay_and_compare_name_what_they_got(self):
        path = self.saved("d.json", {"kind": "gpuwarm-diagnosis", "schema_version": 1})
        r = self.run_raw(["watch", "--replay", path])
        self.assertEqual(r.returncode, 1)
        self.assertIn("`gpuwarm diagnose --json` output, not a gpuwarm watch run", r.stderr)
        r = self.run_raw(["probe", "--compare", path, "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")])
        self.assertEqual(r.returncode, 1)
        self.assertIn("`gpuwarm diagnose --json` output, not a probe result", r.stderr)


class VerifyTruth(Node):
    """verify passes nothing it did not see: zero GPUs is no pass, and a container's daemon is not this host's."""

    def verify(self, scenario_obj):
        args = ["verify", "--json", "--no-systemd", "--settle", "0", "--samples", "1", "--root", self.root.path,
                "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")]
        r = self.run_raw(args, scenario_obj)
        self.assertNotIn("Sanitizer", r.stderr)
        return r.returncode, {c["id"]: c for c in json.loads(r.stdout)["checks"]}

    def test_zero_gpus_is_not_every_gpu_held(self):
        self.root.driver(gpus=0).kmsg().daemon_binary().daemon_process(holds=())
        rc, checks = self.verify(h.scenario([]))
        self.assertEqual(rc, 8)
        self.assertEqual((checks["daemon-holds-gpus"]["status"], checks["daemon-holds-gpus"]["detail"]),
                         ("fail", "NVML sees no GPU"))

    def test_a_daemon_in_another_mount_namespace_is_named_not_counted(self):
        self.root.driver(gpus=2).kmsg().daemon_binary().daemon_process(pid=4242, holds=(0, 1))
        for pid, mnt in ((1, "mnt:[4026531841]"), (4242, "mnt:[4026532301]")):
            os.makedirs(self.root.p(f"proc/{pid}/ns"), exist_ok=True)
            os.symlink(mnt, self.root.p(f"proc/{pid}/ns/mnt"))
        rc, checks = self.verify(h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual(rc, 8)
        self.assertEqual(checks["daemon-running"]["status"], "fail")
        self.assertIn("pid 4242 runs in another mount namespace (mnt:[4026532301], the host's mnt:[4026531841]): "
                      "a container's daemon, not this host's", checks["daemon-running"]["detail"])
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual(d["snapshot"]["daemon"]["processes"], [])
        self.assertEqual(d["snapshot"]["daemon"]["foreign"][0]["pid"], 4242)


class ProcessListUnread(Node):
    """No process list is not "the daemon is not running": the legacy-flag verdict (PM002) would be a guess."""

    def test_a_root_without_processes_cannot_tell(self):
        self.root.driver().daemon_binary().kmsg()
        shutil.rmtree(self.root.p("proc/1"))
        rc, d = self.diagnose(scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (9, "UNK006"))
        self.assertNotIn("PM002", [f["rule_id"] for f in d["findings"]])
        self.assertEqual(d["snapshot"]["daemon"]["processes_unread"], "no process listed under /proc")
        self.assertEqual(d["snapshot"]["host"]["schedulers"], {"missing": "no process listed under /proc"})

    def test_hidepid_hides_the_daemon_from_a_user(self):
        """The live /proc remounted with hidepid=2 in a private mount and PID namespace, read as nobody."""
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
            self.skipTest("needs root, unshare and setpriv to mount a private /proc with hidepid=2")
        # gpuwarm is not the namespace's PID 1 (which no signal without a handler reaches: a sanitizer's abort there
        # spins), and --kill-child ends the namespace with unshare when the timeout kills it.
        script = 'mount -o remount,hidepid=2 /proc && setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"'
        r = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", script,
                            "sh", h.BIN, "diagnose", "--json", "--no-systemd", "--nvml",
                            os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0 and not r.stdout.startswith("{"):
            self.skipTest(f"no private /proc with hidepid here: {r.stderr.strip()[:200]}")
        self.assertEqual(r.returncode, 9, r.stderr)  # cannot tell, and not a sanitizer's report after the JSON
        d = json.loads(r.stdout)
        unread = d["snapshot"]["daemon"]["processes_unread"]
        # Kernels before 5.8 print the option as hidepid=2.
        self.assertRegex(unread, r"^/proc is mounted with hidepid=(invisible|2) and gpuwarm runs as uid 65534")
        self.assertIn("UNK006", [f["rule_id"] for f in d["findings"]])
        self.assertEqual(d["snapshot"]["host"]["schedulers"], {"missing": unread})
        # As root the same mount hides nothing.
        r = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
                            'mount -o remount,hidepid=2 /proc && "$@"', "sh", h.BIN, "snapshot", "--no-systemd",
                            "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["daemon"]["processes_unread"], "", r.stderr)


class NvmlLeftClosed(Node):
    """A reading (diagnose, check, metrics) never opens NVML while a probe times the GPUs or a reset needs them
    free: its answer is cannot tell (UNK009) with the reason, and the fake NVML is never initialized."""

    def setUp(self):
        super().setUp()
        self.root.driver(gpus=1).daemon_binary().daemon_process(holds=(0,)).kmsg()
        os.makedirs(self.root.p("run"), exist_ok=True)
        self.opened = os.path.join(self.tmp, "nvml-opened")
        self.sc = h.scenario([h.gpu(0)], init={"started_file": self.opened})

    def hold(self, name, operation):
        f = open(self.root.p("run/" + name), "w")
        self.addCleanup(f.close)
        fcntl.flock(f, operation | fcntl.LOCK_NB)
        return f

    def read_all(self):
        lib = os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")
        where = ["--no-systemd", "--root", self.root.path, "--nvml", lib]
        rc, d = self.diagnose(scenario_obj=self.sc)
        check = self.run_raw(["check", *where], self.sc)
        metrics = self.run_raw(["metrics", *where], self.sc)
        self.assertEqual(metrics.returncode, 0, metrics.stderr)
        return rc, d, check, metrics.stdout

    def test_a_probe_timing_the_gpus_leaves_nvml_closed(self):
        self.hold("gpuwarm-fix.lock", fcntl.LOCK_SH)  # a probe holds both: the node's shared, the timing's alone
        self.hold("gpuwarm-timing.lock", fcntl.LOCK_EX)
        rc, d, check, metrics = self.read_all()
        self.assertFalse(os.path.exists(self.opened), "NVML was initialized during the probe")
        self.assertEqual(rc, 9)
        self.assertEqual((d["verdict"]["code"], d["verdict"]["rule_id"]), ("cannot-tell", "UNK009"))
        self.assertIn("`gpuwarm probe` or `watch --load` is timing the GPUs (lock /run/gpuwarm-timing.lock is held)",
                      d["driver"]["nvml_not_opened"])
        self.assertEqual([f["rule_id"] for f in d["findings"] if f["severity"] != "info"], ["UNK009"])
        self.assertEqual(check.returncode, 2, check.stdout + check.stderr)  # node-problem-detector's unknown
        # The one line (a drain reason, a condition message) says which command kept NVML closed.
        self.assertEqual(check.stdout.strip(), "UNK009 nvml not opened: GPUs timed (probe, watch --load)")
        self.assertEqual(d["snapshot"]["nvml"]["not_opened_by"], "timing")
        self.assertIn('gpuwarm_verdict{verdict="cannot-tell"} 1', metrics)
        self.assertIn('gpuwarm_finding{rule_id="UNK009",severity="warning"} 1', metrics)
        self.assertNotIn("gpuwarm_gpu_persistence_mode{", metrics)
        self.assertIn('gpuwarm_fact_unknown{fact="gpu_count",reason="NVML not opened: `gpuwarm probe`', metrics)

    def test_a_reset_changing_the_node_leaves_nvml_closed(self):
        self.hold("gpuwarm-fix.lock", fcntl.LOCK_EX)
        rc, d, check, metrics = self.read_all()
        self.assertFalse(os.path.exists(self.opened), "NVML held the GPUs during the reset")
        self.assertEqual(rc, 9)
        self.assertIn("`reset` or `reload-modules` is changing this node", d["driver"]["nvml_not_opened"])
        self.assertEqual(check.stdout.strip(), "UNK009 nvml not opened: fix, reset or reload-modules running")
        self.assertIn('gpuwarm_finding{rule_id="UNK009",severity="warning"} 1', metrics)

    def test_verify_and_dry_runs_cannot_tell_during_a_probe(self):
        self.hold("gpuwarm-fix.lock", fcntl.LOCK_SH)
        self.hold("gpuwarm-timing.lock", fcntl.LOCK_EX)
        lib = os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")
        where = ["--no-systemd", "--root", self.root.path, "--nvml", lib]
        verify = self.run_raw(["verify", "--json", "--settle", "0", "--samples", "2", "--sample-interval", "0",
                               "--dcgm-level", "1", *where], self.sc)
        rep = json.loads(verify.stdout)
        self.assertEqual((verify.returncode, rep["exit_code"], rep["passed"]), (9, 9, False), verify.stderr)
        self.assertIn("`gpuwarm probe` or `watch --load` is timing the GPUs", rep["nvml_not_opened"])
        dcgm = [c for c in rep["checks"] if c["id"] == "dcgm"][0]
        self.assertEqual(dcgm["status"], "skip")
        self.assertTrue(dcgm["detail"].startswith("not available: not run: `gpuwarm probe`"), dcgm["detail"])
        fix = self.run_raw(["fix", "--dry-run", "--json", *where], self.sc)
        self.assertEqual(fix.returncode, 9, fix.stdout + fix.stderr)
        self.assertEqual(json.loads(fix.stdout)["diagnosis"]["verdict"]["rule_id"], "UNK009")
        reset = self.run_raw(["reset", "--gpu", "0", *where], self.sc)
        self.assertEqual(reset.returncode, 9, reset.stdout + reset.stderr)
        self.assertFalse(os.path.exists(self.opened), "NVML was initialized during the probe")

    def test_shared_holders_alone_do_not_keep_nvml_closed(self):
        # Another reading (its share of both locks), or a timing that has not yet taken the timing lock.
        self.hold("gpuwarm-fix.lock", fcntl.LOCK_SH)
        self.hold("gpuwarm-timing.lock", fcntl.LOCK_SH)
        rc, d, check, metrics = self.read_all()
        self.assertTrue(os.path.exists(self.opened))
        self.assertEqual((rc, d["verdict"]["code"], d["driver"]["nvml_not_opened"]), (0, "healthy", None))
        self.assertEqual(check.returncode, 0, check.stdout)
        self.assertIn("gpuwarm_gpu_persistence_mode{", metrics)
        self.assertNotIn("UNK009", metrics)


class SystemdUnanswered(unittest.TestCase):
    """On a host booted with systemd (/run/systemd/system) whose system bus does not answer, the unit's state is
    unknown (UNK008), not "no systemd here" (NOTE002). Live tree only: a --root tree's /run is another host's."""

    def diagnose(self, *extra):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare for a /run of its own")
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        r = subprocess.run(["unshare", "--mount", "sh", "-c",
                            'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec "$@"', "sh",
                            h.BIN, "diagnose", "--json", *extra], capture_output=True, text=True, timeout=60, env=env)
        self.assertNotIn("Sanitizer", r.stderr)
        return {f["rule_id"]: f for f in json.loads(r.stdout)["findings"]}

    def test_a_systemd_host_whose_bus_does_not_answer_is_cannot_tell(self):
        found = self.diagnose()
        self.assertIn("UNK008", found)
        self.assertNotIn("NOTE002", found)
        self.assertIn("systemd runs here (/run/systemd/system), but its bus did not answer",
                      found["UNK008"]["evidence"][0])
        self.assertEqual(found["UNK008"]["route"], "unknown")
        # Not asked (--no-systemd) is the caller's choice: a note, not an unknown.
        found = self.diagnose("--no-systemd")
        self.assertIn("NOTE002", found)
        self.assertNotIn("UNK008", found)


class NamedKernelLogUnread(Node):
    """A log the caller names for its driver lines and gpuwarm cannot read is cannot tell (UNK007), never an
    empty log that lets the verdict say healthy; /dev/kmsg closed to a user stays NOTE001's."""

    def check(self, log):
        r = self.run_raw(["check", "--root", self.root.path, "--kernel-log", log,
                          "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                         h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertNotIn("Sanitizer", r.stderr)
        return r.returncode, r.stdout.strip()

    def test_a_log_in_no_format_gpuwarm_reads(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        log = os.path.join(self.tmp, "app.log")
        with open(log, "w") as f:
            f.write("started worker 3\nNVRM: API mismatch: the client 'x' (pid 1)\n")
        rc, d = self.diagnose("--kernel-log", log, scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual((rc, d["verdict"]["rule_id"]), (9, "UNK007"), d["findings"])
        unk = next(f for f in d["findings"] if f["rule_id"] == "UNK007")
        self.assertIn("none of its 2 lines is in a format gpuwarm reads", unk["evidence"][0])
        self.assertTrue(d["snapshot"]["kernel_log"]["named"])
        self.assertEqual(self.check(log), (2, "UNK007 kernel log unread"))

    def test_a_named_log_that_is_read_decides_nothing_by_itself(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        log = os.path.join(self.tmp, "kern.log")
        with open(log, "w") as f:
            f.write("[    1.000000] Linux version 6.1.0\n")
        rc, d = self.diagnose("--kernel-log", log, scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual((rc, d["verdict"]["code"]), (0, "healthy"), d["findings"])
        self.assertEqual(self.check(log)[0], 0)

    def test_a_fifo_is_not_opened(self):
        self.root.driver().daemon_binary().daemon_process().kmsg()
        fifo = os.path.join(self.tmp, "log.fifo")
        os.mkfifo(fifo)
        rc, out = self.check(fifo)
        self.assertEqual(rc, 2, out)
        self.assertIn("UNK007", out)


if __name__ == "__main__":
    unittest.main()
