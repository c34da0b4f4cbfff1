"""gpuwarm fix and verify against a real systemd (Debian 12's 252) booted in a
container: mmdebstrap builds a minimal Debian rootfs (cached under /var/tmp),
systemd-nspawn boots it, and gpuwarm runs on the host with --root at the
container's root and DBUS_SYSTEM_BUS_ADDRESS at the container's bus. The
nvidia-persistenced in the container is a stand-in script that forks like the
real one and holds /dev/nvidia0 and /dev/nvidia1 open unless given
--no-persistence-mode. systemd is never booted on the host's own root (see
shared/design/FACTS.md §7 for what that destroyed)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import harness as h

ROOTFS_CACHE = "/var/tmp/gpuwarm-test-rootfs-bookworm"
UNIT = "nvidia-persistenced.service"
VENDOR_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (test stand-in)
StopWhenUnneeded=true

[Service]
Type=forking
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose
ExecStopPost=/bin/rm -rf /run/nvidia-persistenced

[Install]
WantedBy=multi-user.target
"""
STAND_IN = """#!/bin/bash
# Test stand-in for nvidia-persistenced: forks like the real daemon; with persistence on
# it holds the GPU device nodes open, as the real one holds /dev/nvidiaN.
# --version answers as the real daemon does (the guard compares it with the module).
[ "$1" = --version ] && { echo "nvidia-persistenced:  version 580.159.04"; exit 0; }
[ -e /run/daemon-refuse-start ] && { echo "refusing to start (test)" >&2; exit 1; }
persistence=on
for a in "$@"; do [ "$a" = --no-persistence-mode ] && persistence=off; done
mkdir -p /run/nvidia-persistenced
touch /dev/nvidia0 /dev/nvidia1
# The process must look like the daemon to gpuwarm: its command name (/proc/PID/comm, from the name it was
# executed by), its argv[0], and its executable (/proc/PID/exe: a root-owned file of that name, so a copy).
cp /bin/sleep /run/nvidia-persistenced/nvidia-persistenced
daemon=/run/nvidia-persistenced/nvidia-persistenced
if [ $persistence = on ]; then
  # /run/stand-in-hold-delay: the forked child opens the GPUs a moment after the start job is done, as a busy
  # real daemon may.
  ( [ -e /run/stand-in-hold-delay ] && sleep 1.5
    exec 3<>/dev/nvidia0 4<>/dev/nvidia1; touch /run/stand-in-persistence-on; exec -a nvidia-persistenced $daemon infinity ) &
else
  ( exec -a nvidia-persistenced $daemon infinity ) &
fi
echo $! > /run/nvidia-persistenced/nvidia-persistenced.pid
"""


def build_rootfs():
    """Returns (path, None) or (None, reason to skip)."""
    if os.path.exists(os.path.join(ROOTFS_CACHE, ".gpuwarm-complete")):
        return ROOTFS_CACHE, None
    shutil.rmtree(ROOTFS_CACHE, ignore_errors=True)
    r = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase",
                        "--include=systemd,systemd-sysv,dbus,libsystemd0", "bookworm", ROOTFS_CACHE],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        shutil.rmtree(ROOTFS_CACHE, ignore_errors=True)
        return None, "mmdebstrap could not build a Debian rootfs: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    open(os.path.join(ROOTFS_CACHE, ".gpuwarm-complete"), "w").close()
    return ROOTFS_CACHE, None


class RealSystemd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not h.BIN:
            raise unittest.SkipTest("GPUWARM_BIN not set: run through ctest")
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to boot a container with systemd-nspawn")
        for tool in ("mmdebstrap", "systemd-nspawn"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} not installed (scripts/setup.sh installs it)")
        rootfs, why = build_rootfs()
        if rootfs is None:
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="gpuwarm-nspawn-", dir="/var/tmp")
        cls.machine = os.path.join(cls.tmp, "root")
        subprocess.run(["cp", "-a", "--reflink=auto", rootfs, cls.machine], check=True)
        with open(os.path.join(cls.machine, "lib/systemd/system", UNIT), "w") as f:
            f.write(VENDOR_UNIT)
        daemon = os.path.join(cls.machine, "usr/bin/nvidia-persistenced")
        with open(daemon, "w") as f:
            f.write(STAND_IN)
        os.chmod(daemon, 0o755)
        cls.nspawn = subprocess.Popen(
            ["systemd-nspawn", "-D", cls.machine, "--register=no", "--keep-unit", "--console=passive",
             "--tmpfs=/sys/module", "-b"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        cls.root = cls.wait_for_boot()

    @classmethod
    def wait_for_boot(cls):
        deadline = time.time() + 60
        while time.time() < deadline:
            if cls.nspawn.poll() is not None:
                raise unittest.SkipTest(f"systemd-nspawn exited with {cls.nspawn.returncode}: cannot boot here")
            children = subprocess.run(["pgrep", "-P", str(cls.nspawn.pid)], capture_output=True, text=True).stdout.split()
            if children:
                root = f"/proc/{children[0]}/root"
                if os.path.exists(root + "/run/dbus/system_bus_socket"):
                    r = subprocess.run(["busctl", "--system", "call", "org.freedesktop.systemd1",
                                        "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                        "GetUnitFileState", "s", UNIT],
                                       env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": cls.bus(root)},
                                       capture_output=True, text=True)
                    if r.returncode == 0:
                        return root
            time.sleep(0.2)
        raise AssertionError("the container's systemd did not come up within 60 s")

    @staticmethod
    def bus(root):
        return f"unix:path={root}/run/dbus/system_bus_socket"

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "nspawn", None) is not None:
            cls.nspawn.send_signal(signal.SIGTERM)  # nspawn halts the container cleanly
            try:
                cls.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(cls.nspawn.pid, signal.SIGKILL)
                cls.nspawn.wait()
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def gpuwarm(self, *args):
        root = self.root
        os.makedirs(root + "/sys/module/nvidia", exist_ok=True)
        with open(root + "/sys/module/nvidia/version", "w") as f:
            f.write("580.159.04\n")
        sc = h.scenario([dict(h.gpu(i, persistence=0), enabled_when_file_exists=root + "/run/stand-in-persistence-on")
                         for i in range(2)])
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(sc, f)
        try:
            env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus(root), "FAKE_NVML_SCENARIO": f.name,
                   "NO_COLOR": "1"}
            cmd = [h.BIN, *args, "--root", root, "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")]
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        finally:
            os.unlink(f.name)

    def test_1_diagnose_sees_the_real_unit(self):
        r = self.gpuwarm("diagnose", "--json")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        d = json.loads(r.stdout)
        svc = d["snapshot"]["service"]
        self.assertEqual((svc["load_state"], svc["active_state"], svc["unit_file_state"]),
                         ("loaded", "inactive", "disabled"))
        self.assertIn("--no-persistence-mode", svc["exec_start"])
        self.assertTrue(svc["stop_when_unneeded"])
        self.assertEqual(d["verdict"]["rule_id"], "PM001")

    def test_1b_a_recorded_node_plans_as_the_live_one(self):
        # snapshot -o records the unit's text and gpuwarm's drop-in with the facts: `fix --dry-run --snapshot`
        # on the recording prints the same steps (files and D-Bus calls) as `fix --dry-run` on the node.
        path = os.path.join(self.tmp, "node.json")
        r = self.gpuwarm("snapshot", "-o", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        live = self.gpuwarm("fix", "--dry-run", "--json")
        recorded = subprocess.run([h.BIN, "fix", "--dry-run", "--json", "--snapshot", path], capture_output=True,
                                  text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=60)
        self.assertEqual(live.returncode, recorded.returncode, recorded.stdout + recorded.stderr)
        live_steps, recorded_steps = json.loads(live.stdout)["steps"], json.loads(recorded.stdout)["steps"]
        self.assertGreaterEqual(len(live_steps), 3)
        self.assertEqual(recorded_steps, live_steps)
        self.assertIn("planned for the node recorded in", " ".join(json.loads(recorded.stdout)["notes"]))

    def test_2_fix_enables_writes_the_drop_in_starts_and_verifies(self):
        r = self.gpuwarm("fix", "--json", "--settle", "0.5", "--samples", "2", "--sample-interval", "0.1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rep = json.loads(r.stdout)
        self.assertTrue(rep["changed"])
        self.assertEqual([s["kind"] for s in rep["steps"]], ["write-file", "reload", "enable", "reload", "start"])
        enable = rep["steps"][2]
        self.assertIn("multi-user.target.wants/nvidia-persistenced.service", enable["detail"])
        self.assertTrue(os.path.islink(self.root + "/etc/systemd/system/multi-user.target.wants/" + UNIT))
        self.assertTrue(os.path.exists(self.root + "/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf"))
        checks = {c["id"]: c["status"] for c in rep["verify"]["checks"]}
        self.assertEqual(checks, {"unit-active": "pass", "unit-enabled": "pass", "daemon-running": "pass",
                                  "persistence": "pass", "daemon-holds-gpus": "pass", "clocks": "pass",
                                  "dcgm": "skip"})

        d = json.loads(self.gpuwarm("diagnose", "--json").stdout)
        svc = d["snapshot"]["service"]
        # systemd itself now reports the drop-in's values.
        self.assertNotIn("--no-persistence-mode", svc["exec_start"])
        self.assertEqual((svc["stop_when_unneeded"], svc["restart"]), (False, "on-failure"))
        self.assertEqual(d["verdict"]["code"], "healthy", json.dumps(d["findings"]))

    def test_2b_a_daemon_lookalike_outside_the_units_cgroup_is_set_apart(self):
        # A second process runs the daemon's own root-owned executable, as root, under another unit: everything
        # about it passes for the daemon but where systemd put it (on NixOS, any user's store path would).
        r = self.systemd("StartTransientUnit", "ssa(sv)a(sa(sv))", "lookalike.service", "fail", "1",
                         "ExecStart", "a(sasb)", "1", "/run/nvidia-persistenced/nvidia-persistenced", "2",
                         "nvidia-persistenced", "infinity", "false", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(self.systemd, "StopUnit", "ss", "lookalike.service", "replace")
        deadline = time.time() + 20
        d = {}
        while time.time() < deadline:
            d = json.loads(self.gpuwarm("diagnose", "--json").stdout)
            if d["snapshot"]["daemon"]["not_daemon"]:
                break
            time.sleep(0.2)
        daemon, svc = d["snapshot"]["daemon"], d["snapshot"]["service"]
        self.assertEqual(svc["control_group"], "/system.slice/nvidia-persistenced.service")
        self.assertEqual(len(daemon["processes"]), 1, daemon)
        unit_cgroup = daemon["manager_cgroup"].rstrip("/") + svc["control_group"]
        self.assertEqual(daemon["processes"][0]["cgroup"], unit_cgroup)
        self.assertEqual(len(daemon["not_daemon"]), 1, daemon)
        self.assertIn("lookalike.service, outside nvidia-persistenced.service", daemon["not_daemon"][0]["why"])
        self.assertEqual(d["verdict"]["code"], "healthy", json.dumps(d["findings"]))

    def test_3_second_run_changes_nothing(self):
        r = self.gpuwarm("fix", "--json", "--samples", "1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rep = json.loads(r.stdout)
        self.assertFalse(rep["changed"])
        self.assertEqual(rep["steps"], [])

    def test_3b_a_drop_in_systemd_never_loaded_is_loaded_by_the_next_run(self):
        # An earlier run wrote the drop-in, then was killed (or its Reload timed out) before systemd loaded it:
        # systemd still runs the vendor unit, with --no-persistence-mode. The next run must reload, not merely
        # restart into the old configuration at every run.
        dropin = self.root + "/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf"
        os.rename(dropin, dropin + ".away")
        self.addCleanup(lambda: os.path.exists(dropin + ".away") and os.rename(dropin + ".away", dropin))
        self.systemd("Reload")
        self.systemd("RestartUnit", "ss", UNIT, "replace")
        deadline = time.time() + 20
        while time.time() < deadline and self.unit_property("ActiveState") != "active":
            time.sleep(0.1)
        os.rename(dropin + ".away", dropin)
        self.assertEqual(self.unit_property("NeedDaemonReload"), "true")
        before = json.loads(self.gpuwarm("diagnose", "--json").stdout)["snapshot"]["service"]
        self.assertIn("--no-persistence-mode", before["exec_start"])

        r = self.gpuwarm("fix", "--json", "--settle", "0.5", "--samples", "2", "--sample-interval", "0.1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rep = json.loads(r.stdout)
        self.assertEqual([s["kind"] for s in rep["steps"]], ["reload", "restart"])
        self.assertIn("NeedDaemonReload", rep["steps"][0]["why"])
        self.assertTrue(all(c["status"] in ("pass", "skip") for c in rep["verify"]["checks"]), rep["verify"])
        self.assertEqual(self.unit_property("NeedDaemonReload"), "false")

    def test_7_a_static_unit_nothing_wants_is_added_to_multi_user_target(self):
        # Ubuntu's unit has no [Install] section: `enable` cannot work on it. Where nothing pulls it in at boot
        # (no udev rule here), fix has multi-user.target want it, as `systemctl add-wants` would.
        vendor = os.path.join(self.root, "lib/systemd/system", UNIT)
        with open(vendor, "w") as f:
            f.write(VENDOR_UNIT.split("[Install]")[0])
        wants = os.path.join(self.root, "etc/systemd/system/multi-user.target.wants", UNIT)
        if os.path.lexists(wants):
            os.unlink(wants)
        self.systemd("Reload")
        self.assertEqual(self.unit_property("UnitFileState"), "static")
        d = json.loads(self.gpuwarm("diagnose", "--json").stdout)
        self.assertIn("PD004", [f["rule_id"] for f in d["findings"]])
        r = self.gpuwarm("fix", "--json", "--settle", "0.5", "--samples", "2", "--sample-interval", "0.1")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        rep = json.loads(r.stdout)
        self.assertEqual([s["kind"] for s in rep["steps"]], ["add-wants", "reload"])
        self.assertTrue(os.path.islink(wants))
        checks = {c["id"]: c for c in rep["verify"]["checks"]}
        # systemd 252 then reports the unit "enabled" (a link in /etc points at it); either way it starts at boot.
        self.assertEqual(checks["unit-enabled"]["status"], "pass", checks["unit-enabled"])
        self.assertIn("multi-user.target", self.unit_property("WantedBy"))

    def test_9_lint_judges_the_unit_systemd_loads(self):
        # The vendor unit (--no-persistence-mode, StopWhenUnneeded, no Restart=) with fix's drop-in from test 2:
        # lint reads them as systemd does, and nothing it found in the vendor unit is in force.
        vendor = os.path.join(self.root, "lib/systemd/system", UNIT)
        r = subprocess.run([h.BIN, "lint", "--json", vendor], capture_output=True, text=True, timeout=60)
        rep = json.loads(r.stdout)
        self.assertEqual((r.returncode, rep["findings"]), (0, []), r.stdout + r.stderr)
        self.assertEqual(sorted(a["rule_id"] for a in rep["set_aside"]), ["LINT002", "LINT010", "LINT011"], rep["set_aside"])
        self.assertNotIn("--no-persistence-mode", self.unit_property("ExecStart"))
        # A drop-in that adds an ExecStart= without clearing the unit's: this systemd refuses the unit, and lint
        # names the line.
        extra = os.path.join(self.root, "etc/systemd/system", UNIT + ".d", "90-extra.conf")
        with open(extra, "w") as f:
            f.write("[Service]\nExecStart=/usr/bin/nvidia-persistenced --verbose\n")
        try:
            self.assertEqual(self.systemd("Reload").returncode, 0)
            self.assertEqual(self.unit_property("LoadState"), "bad-setting")
            r = subprocess.run([h.BIN, "lint", "--json", vendor], capture_output=True, text=True, timeout=60)
            rep = json.loads(r.stdout)
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertEqual([(f["path"], f["line"], f["rule_id"]) for f in rep["findings"]], [(extra, 2, "LINT015")])
        finally:
            os.unlink(extra)
            self.systemd("Reload")
        self.assertEqual(self.unit_property("LoadState"), "loaded")

    def systemd(self, *args):
        """busctl against the container's systemd Manager."""
        return subprocess.run(["busctl", "--system", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", *args],
                              env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus(self.root)},
                              capture_output=True, text=True, timeout=60)

    def unit_property(self, name):
        r = subprocess.run(["busctl", "--system", "get-property", "org.freedesktop.systemd1",
                            "/org/freedesktop/systemd1/unit/nvidia_2dpersistenced_2eservice",
                            "org.freedesktop.systemd1.Service" if name == "Result" else "org.freedesktop.systemd1.Unit",
                            name], env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus(self.root)},
                           capture_output=True, text=True, timeout=30)
        return r.stdout.split(" ", 1)[-1].strip().strip('"')

    def start_and_wait(self):
        self.systemd("StartUnit", "ss", UNIT, "replace")
        deadline = time.time() + 20
        while time.time() < deadline and self.unit_property("ActiveState") in ("activating", "deactivating"):
            time.sleep(0.1)
        # Type=forking is "active" once the script's parent exits; its child may still be the script (bash,
        # holding the device nodes) for a moment before it execs the daemon. A reset then would see a holder.
        while time.time() < deadline and self.stand_in_scripts_running():
            time.sleep(0.05)

    def stand_in_scripts_running(self):
        proc = os.path.join(self.root, "proc")
        for pid in os.listdir(proc):
            try:
                with open(os.path.join(proc, pid, "cmdline"), "rb") as f:
                    if f.read().startswith(b"/bin/bash\0/usr/bin/nvidia-persistenced"):
                        return True
            except (OSError, ValueError):
                continue
        return False

    def install_gpuwarm(self):
        """The real gpuwarm, with the libraries it links (and libmicrohttpd, which it loads for --listen), inside
        the container as /usr/local/bin/gpuwarm."""
        libs = os.path.join(self.root, "opt/gpuwarm/lib")
        os.makedirs(libs, exist_ok=True)
        mhd = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout
        mhd = [l.split("=>")[1].strip() for l in mhd.splitlines() if "libmicrohttpd.so.12 " in l][:1]
        for binary in [h.BIN, *mhd]:
            if binary != h.BIN:
                shutil.copy(binary, os.path.join(libs, "libmicrohttpd.so.12"))
            ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
            for line in ldd.splitlines():
                if "=>" in line and "/" in line.split("=>")[1]:
                    lib = line.split("=>")[1].split()[0]
                    if "libc.so" not in lib and "ld-linux" not in lib:
                        shutil.copy(lib, libs)
        shutil.copy(h.BIN, os.path.join(self.root, "opt/gpuwarm/gpuwarm"))
        os.makedirs(os.path.join(self.root, "usr/local/bin"), exist_ok=True)
        wrapper = os.path.join(self.root, "usr/local/bin/gpuwarm")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nASAN_OPTIONS=detect_leaks=0 LD_LIBRARY_PATH=/opt/gpuwarm/lib exec /opt/gpuwarm/gpuwarm \"$@\"\n")
        os.chmod(wrapper, 0o755)
        return bool(mhd)

    def test_4_guard_drop_in_skips_the_unit_instead_of_failing_it(self):
        # contrib's drop-in is installed unchanged.
        self.install_gpuwarm()
        dropin_dir = os.path.join(self.root, "etc/systemd/system", UNIT + ".d")
        shutil.copy(os.path.join(h.SOURCE_DIR, "contrib/systemd/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"),
                    dropin_dir)
        os.makedirs(self.root + "/sys/module/nvidia", exist_ok=True)
        with open(self.root + "/sys/module/nvidia/version", "w") as f:
            f.write("580.159.04\n")
        for node in ("dev/nvidiactl", "dev/nvidia0"):
            if os.path.exists(os.path.join(self.root, node)):
                os.unlink(os.path.join(self.root, node))
        self.assertEqual(self.systemd("Reload").returncode, 0)
        self.systemd("StopUnit", "ss", UNIT, "replace")
        time.sleep(0.5)

        # The loaded module is another version than the daemon's, and no driver library says they agree: the
        # guard says no (11).
        with open(self.root + "/sys/module/nvidia/version", "w") as f:
            f.write("575.57.08\n")
        self.start_and_wait()
        self.assertEqual(self.unit_property("ActiveState"), "inactive")  # skipped, not failed
        self.assertEqual(self.unit_property("Result"), "exec-condition")
        # diagnose names the skip and the guard's drop-in, as systemd reports them.
        d = json.loads(self.gpuwarm("diagnose", "--json").stdout)
        skipped = [f for f in d["findings"] if f["rule_id"] == "PD008"]
        self.assertEqual(len(skipped), 1, d["findings"])
        self.assertIn("gpuwarm guard (its ExecCondition) skipped the last start", skipped[0]["message"])
        self.assertIn("drop-in /etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf",
                      skipped[0]["evidence"])
        # The running manager's own Version, as busctl reads it.
        version = subprocess.run(["busctl", "--system", "get-property", "org.freedesktop.systemd1",
                                  "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "Version"],
                                 env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus(self.root)},
                                 capture_output=True, text=True, timeout=30).stdout.split(" ", 1)[-1].strip().strip('"')
        self.assertEqual(d["snapshot"]["service"]["manager_version"], version)
        # This systemd ran the ExecCondition= just now: its unit has the property, as gpuwarm reads it.
        self.assertIs(d["snapshot"]["service"]["exec_condition"], True)
        self.assertNotIn("PD009", [f["rule_id"] for f in d["findings"]])

        # The module's version agrees, device nodes not there yet: the guard lets the start go on (the daemon's
        # libnvidia-cfg creates the nodes through nvidia-modprobe; here the stand-in makes them).
        with open(self.root + "/sys/module/nvidia/version", "w") as f:
            f.write("580.159.04\n")
        self.start_and_wait()
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # gpuwarm removed while the drop-in stays: the daemon starts unguarded (a missing program would exit
        # 203, which ExecCondition= takes for "skip"), even where the guard would have said no.
        self.systemd("StopUnit", "ss", UNIT, "replace")
        time.sleep(0.5)
        wrapper = os.path.join(self.root, "usr/local/bin/gpuwarm")
        os.rename(wrapper, wrapper + ".away")
        with open(self.root + "/sys/module/nvidia/version", "w") as f:
            f.write("575.57.08\n")
        try:
            self.start_and_wait()
            self.assertEqual(self.unit_property("ActiveState"), "active")
        finally:
            os.rename(wrapper + ".away", wrapper)
            with open(self.root + "/sys/module/nvidia/version", "w") as f:
                f.write("580.159.04\n")

    def unit_prop(self, unit, interface, name):
        path = "/org/freedesktop/systemd1/unit/" + "".join(
            c if c.isalnum() else f"_{ord(c):02x}" for c in unit)
        r = subprocess.run(["busctl", "--system", "get-property", "org.freedesktop.systemd1", path,
                            f"org.freedesktop.systemd1.{interface}", name],
                           env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus(self.root)},
                           capture_output=True, text=True, timeout=30)
        return r.stdout.split(" ", 1)[-1].strip().strip('"')

    def fake_nvml(self, scenario_name, scenario):
        """The fake NVML in the container at /opt/gpuwarm/fake, with a scenario file there; returns its path on the host."""
        fake = os.path.join(self.root, "opt/gpuwarm/fake")
        os.makedirs(fake, exist_ok=True)
        shutil.copy(os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), fake)
        path = os.path.join(fake, scenario_name)
        with open(path, "w") as f:
            json.dump(scenario, f)
        return path

    def install_contrib_unit(self, unit, dropin):
        """contrib/systemd's `unit` unchanged in the container's /etc/systemd/system, with a test drop-in."""
        shutil.copy(os.path.join(h.SOURCE_DIR, "contrib/systemd", unit), os.path.join(self.root, "etc/systemd/system"))
        os.makedirs(os.path.join(self.root, "etc/systemd/system", unit + ".d"), exist_ok=True)
        with open(os.path.join(self.root, "etc/systemd/system", unit + ".d", "test.conf"), "w") as f:
            f.write(dropin)

    def test_5_exporter_unit_notifies_ready_feeds_the_watchdog_and_is_restarted_when_nvml_hangs(self):
        # contrib's gpuwarm-exporter.service, hardening included, under the container's systemd; only the
        # ExecStart (port, fake NVML) and a short watchdog come from a drop-in.
        if not self.install_gpuwarm():
            self.skipTest("libmicrohttpd12 not installed on the host (scripts/setup.sh installs it)")
        scenario = self.fake_nvml("scenario.json", h.scenario([h.gpu(0)]))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        unit = "gpuwarm-exporter.service"
        self.install_contrib_unit(unit, "[Service]\nExecStart=\n"
                                  f"ExecStart=/usr/local/bin/gpuwarm metrics --listen 127.0.0.1:{port} --min-interval 0 "
                                  "--nvml-timeout 1 --nvml /opt/gpuwarm/fake/libnvidia-ml.so.1\n"
                                  "Environment=FAKE_NVML_SCENARIO=/opt/gpuwarm/fake/scenario.json\n"
                                  "WatchdogSec=3\nRestartSec=1\n")
        self.assertEqual(self.systemd("Reload").returncode, 0)
        self.addCleanup(self.systemd, "StopUnit", "ss", unit, "replace")
        # Type=notify: StartUnit's job ends only once READY=1 arrived.
        started = time.time()
        r = self.systemd("StartUnit", "ss", unit, "replace")
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.time() + 20
        while time.time() < deadline and self.unit_prop(unit, "Unit", "ActiveState") == "activating":
            time.sleep(0.1)
        self.assertEqual(self.unit_prop(unit, "Unit", "ActiveState"), "active",
                         self.unit_prop(unit, "Service", "Result"))
        self.assertIn("serving http://127.0.0.1:", self.unit_prop(unit, "Service", "StatusText"))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        self.assertIn('gpuwarm_gpu_persistence_mode{gpu="0"', body)
        # Past two watchdog periods: still the first process (the pings arrive).
        time.sleep(max(0, started + 7 - time.time()))
        self.assertEqual(self.unit_prop(unit, "Service", "NRestarts"), "0")
        first_pid = self.unit_prop(unit, "Service", "MainPID")

        # NVML now hangs in nvmlInit: the scrape still answers (cannot tell, after --nvml-timeout), the
        # pings stop, and systemd's watchdog restarts the exporter.
        with open(scenario, "w") as f:
            json.dump(h.scenario([h.gpu(0)], init={"delay_ms": 600000}), f)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20) as resp:
            body = resp.read().decode()
        self.assertIn('gpuwarm_verdict{verdict="cannot-tell"} 1', body)
        deadline = time.time() + 20
        while time.time() < deadline and self.unit_prop(unit, "Service", "NRestarts") == "0":
            time.sleep(0.2)
        self.assertEqual(self.unit_prop(unit, "Service", "NRestarts"), "1")
        deadline = time.time() + 20
        while time.time() < deadline and self.unit_prop(unit, "Unit", "ActiveState") != "active":
            time.sleep(0.2)
        self.assertEqual(self.unit_prop(unit, "Unit", "ActiveState"), "active")
        self.assertNotEqual(self.unit_prop(unit, "Service", "MainPID"), first_pid)

        # A clean stop: SIGTERM, STOPPING=1, exit 0 (inactive, not failed).
        self.systemd("StopUnit", "ss", unit, "replace")
        deadline = time.time() + 20
        while time.time() < deadline and self.unit_prop(unit, "Unit", "ActiveState") != "inactive":
            time.sleep(0.1)
        self.assertEqual(self.unit_prop(unit, "Unit", "ActiveState"), "inactive")
        self.assertEqual(self.unit_prop(unit, "Service", "Result"), "success")

    def run_oneshot(self, unit):
        """Starts a Type=oneshot unit and waits for its job to end (done, or skipped by a condition)."""
        r = self.inside("systemctl", "start", unit, timeout=90)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_8_metrics_unit_writes_the_textfile_and_is_skipped_without_its_folder(self):
        # contrib's gpuwarm-metrics.service, hardening included (ProtectSystem=strict: only its folder is
        # writable); a drop-in only adds the fake NVML.
        self.install_gpuwarm()
        self.fake_nvml("metrics-scenario.json", h.scenario([h.gpu(0)]))
        unit = "gpuwarm-metrics.service"
        self.install_contrib_unit(unit, "[Service]\nExecStart=\n"
                                  "ExecStart=/usr/local/bin/gpuwarm metrics --textfile /var/lib/prometheus/node-exporter "
                                  "--nvml /opt/gpuwarm/fake/libnvidia-ml.so.1\n"
                                  "Environment=FAKE_NVML_SCENARIO=/opt/gpuwarm/fake/metrics-scenario.json\n")
        folder = os.path.join(self.root, "var/lib/prometheus/node-exporter")
        shutil.rmtree(os.path.join(self.root, "var/lib/prometheus"), ignore_errors=True)
        self.assertEqual(self.systemd("Reload").returncode, 0)

        # No node_exporter folder: skipped by its condition, not failed (a timer would fail it every minute).
        # (ConditionResult is no witness: systemd unloads a finished oneshot unit and forgets it.)
        self.run_oneshot(unit)
        journal = self.inside("journalctl", "-u", unit, "-o", "cat").stdout
        self.assertIn("skipped because of an unmet condition check (ConditionPathIsDirectory=/var/lib/prometheus/"
                      "node-exporter)", journal)
        self.assertEqual(self.inside("systemctl", "is-failed", unit).stdout.strip(), "inactive")

        os.makedirs(folder)
        self.run_oneshot(unit)
        self.assertEqual(self.inside("systemctl", "is-failed", unit).stdout.strip(), "inactive")
        with open(os.path.join(folder, "gpuwarm.prom")) as f:
            text = f.read()
        self.assertIn('gpuwarm_gpu_persistence_mode{gpu="0"', text)
        self.assertEqual(oct(os.stat(os.path.join(folder, "gpuwarm.prom")).st_mode & 0o777), "0o644")
        self.assertEqual([n for n in os.listdir(folder) if n != "gpuwarm.prom"], [], "a temporary file was left")

    def inside(self, *argv, scenario=None, timeout=120, popen=False):
        """Runs a command in the container's mount and PID namespaces: what a root shell on the node sees."""
        leader = subprocess.run(["pgrep", "-P", str(self.nspawn.pid)], capture_output=True, text=True).stdout.split()[0]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NO_COLOR": "1",
               "FAKE_NVML_SCENARIO": "/opt/gpuwarm/fake/reset-scenario.json"}
        cmd = ["nsenter", "-t", leader, "-m", "-p", "--", "env", *[f"{k}={v}" for k, v in env.items()], *argv]
        if popen:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def wait_for_stand_ins(self):
        # A reset before may have started the daemon: its stand-in is bash, holding the device nodes, until it
        # execs the daemon a moment later. A reset now would see that as a holder and refuse (seen in CI s38,
        # and in s39 for the interrupted reset, which then ended before it could be interrupted).
        deadline = time.time() + 20
        while time.time() < deadline and self.stand_in_scripts_running():
            time.sleep(0.05)

    def reset(self, *args):
        self.wait_for_stand_ins()
        r = self.inside("/usr/local/bin/gpuwarm", "reset", "--gpu", "0", "--settle", "1", "--samples", "1",
                        "--nvml", "/opt/gpuwarm/fake/libnvidia-ml.so.1", "--json", *args)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {"raw": r.stdout + r.stderr})

    def interrupted_reset(self, during="reset"):
        """`reset --yes` with SIGINT sent while the stand-in nvidia-smi resets (it sleeps 3 s), or while the daemon
        stops (a drop-in makes that slow): exit 130, the report."""
        if during == "reset":
            open(os.path.join(self.root, "run/smi-sleep"), "w").close()
        self.wait_for_stand_ins()
        p = self.inside("/usr/local/bin/gpuwarm", "reset", "--gpu", "0", "--yes", "--json", "--nvml",
                        "/opt/gpuwarm/fake/libnvidia-ml.so.1", popen=True)
        deadline = time.time() + 20
        while time.time() < deadline and (
                self.unit_property("ActiveState") != "deactivating" if during == "stop" else
                not subprocess.run(["pgrep", "-f", "^/bin/bash /usr/bin/nvidia-smi --gpu-reset"],
                                   capture_output=True).stdout):
            time.sleep(0.05)
        pid = subprocess.run(["pgrep", "-f", "^/opt/gpuwarm/gpuwarm reset"], capture_output=True, text=True).stdout.split()
        if not pid:
            out, err = p.communicate(timeout=60)
            self.fail(f"gpuwarm reset not found running (exit {p.returncode}): {out} {err}")
        os.kill(int(pid[0]), signal.SIGINT)
        out, err = p.communicate(timeout=60)
        self.assertIn("gpuwarm reset: SIGINT received: the steps run to their end first, and nvidia-persistenced is "
                      "started again before gpuwarm exits", err)
        if during == "reset":
            os.unlink(os.path.join(self.root, "run/smi-sleep"))
        self.assertEqual(p.returncode, 130, out + err)
        return json.loads(out)

    def test_6_reset_stops_resets_and_always_starts_the_daemon(self):
        # gpuwarm runs inside the container as root on a node would: its /proc, its bus, its /usr/bin/nvidia-smi
        # (a stand-in that records its argv and, like the real one, refuses while anything holds the GPU).
        self.install_gpuwarm()
        scenario_path = self.fake_nvml("reset-scenario.json", h.scenario(
            [dict(h.gpu(i, persistence=0), enabled_when_file_exists="/run/stand-in-persistence-on") for i in range(2)]))
        smi = os.path.join(self.root, "usr/bin/nvidia-smi")
        with open(smi, "w") as f:
            f.write("""#!/bin/bash
echo "$*" >> /run/nvidia-smi.log
[ -e /run/smi-sleep ] && sleep 3
case "$1" in
  --gpu-reset)
    for fd in /proc/[0-9]*/fd/*; do
      if [ "$(readlink "$fd" 2>/dev/null)" = /dev/nvidia0 ]; then
        echo "GPU 00000000:06:00.0: In use by another client"; exit 255
      fi
    done
    [ -e /run/smi-fail ] && { echo "GPU 00000000:06:00.0: reset failed (test)"; exit 3; }
    touch /run/settings-at-default   # the fake NVML then reads the defaults, as after a real reset
    [ -e /run/fail-next-start ] && touch /run/daemon-refuse-start
    echo "GPU 00000000:06:00.0 was successfully reset." ;;
  -i)
    [ "$3" = -pl ] && [ -e /run/smi-pl-fail ] && { echo "Failed to set power management limit (test)"; exit 4; }
    # Set while nothing holds the GPU, a setting is lost when this process lets go of it, as on a real node.
    held=
    for fd in /proc/[0-9]*/fd/*; do
      [ "$(readlink "$fd" 2>/dev/null)" = /dev/nvidia0 ] && held=1
    done
    [ -z "$held" ] && { echo "set $3 $4 for GPU $2, lost as nothing held it"; exit 0; }
    touch "/run/set$3"
    [ -e /run/set-ac ] && [ -e /run/set-pl ] && rm -f /run/settings-at-default /run/set-ac /run/set-pl
    echo "set $3 $4 for GPU $2" ;;
esac
""")
        os.chmod(smi, 0o755)
        os.makedirs(self.root + "/sys/module/nvidia", exist_ok=True)
        with open(self.root + "/sys/module/nvidia/version", "w") as f:
            f.write("580.159.04\n")
        for node in ("dev/nvidiactl", "dev/nvidia0", "dev/nvidia1"):
            if not os.path.exists(os.path.join(self.root, node)):
                open(os.path.join(self.root, node), "w").close()
        self.start_and_wait()
        self.assertEqual(self.unit_property("ActiveState"), "active")
        log = os.path.join(self.root, "run/nvidia-smi.log")

        # Another fix, reset or reload-modules holds the node's lock: nothing is done, exit 7, in JSON too.
        r = self.inside("flock", "/run/gpuwarm-fix.lock", "/usr/local/bin/gpuwarm", "reset", "--gpu", "0", "--yes",
                        "--json", "--nvml", "/opt/gpuwarm/fake/libnvidia-ml.so.1")
        self.assertEqual(r.returncode, 7, r.stdout + r.stderr)
        locked = json.loads(r.stdout)
        self.assertEqual((locked["outcome"], locked["exit_code"], locked["steps"]), ("locked", 7, []))
        self.assertIn("is held", locked["reason"])
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # A stop signal before the first step changes nothing (review-s57: the daemon was stopped and started
        # again, de-initializing the GPUs, for a reset that was then skipped). The test build raises it there.
        main_pid = self.unit_property("MainPID")
        r = self.inside("env", "GPUWARM_TEST_SIGNAL_BEFORE_STEPS=1", "/usr/local/bin/gpuwarm", "reset", "--gpu", "0",
                        "--yes", "--json", "--nvml", "/opt/gpuwarm/fake/libnvidia-ml.so.1")
        self.assertEqual(r.returncode, 128 + signal.SIGTERM, r.stdout + r.stderr)
        early = json.loads(r.stdout)
        self.assertEqual({s["status"] for s in early["steps"]}, {"not-run"}, early["steps"])
        self.assertEqual((early["interrupted"], early["reset_ran"]), ("SIGTERM", False))
        self.assertEqual((self.unit_property("ActiveState"), self.unit_property("MainPID")), ("active", main_pid))
        self.assertFalse(os.path.exists(log), "nvidia-smi ran")

        # The happy path: stop, reset (the GPU free by then), start, verified.
        code, rep = self.reset("--yes")
        self.assertEqual(code, 0, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "done"), ("start-daemon", "done")])
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), ["--gpu-reset -i 00000000:06:00.0"])
        self.assertTrue(rep["verify"]["passed"], rep["verify"])
        self.assertTrue(all(c["passed"] for c in rep["reset_checks"]), rep["reset_checks"])
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # A unit that Requires= the daemon (a site pins its slurmd so) is stopped with it, and the daemon's start
        # does not start it again: the plan names it and starts it last (review-s53-root M2).
        gate = os.path.join(self.root, "etc/systemd/system/gpu-job-gate.service")
        with open(gate, "w") as f:
            f.write("[Unit]\nRequires=nvidia-persistenced.service\nAfter=nvidia-persistenced.service\n"
                    "[Service]\nExecStart=/bin/sleep infinity\n")
        self.assertEqual(self.systemd("Reload").returncode, 0)
        self.assertEqual(self.inside("systemctl", "start", "gpu-job-gate.service").returncode, 0)
        open(log, "w").close()
        code, rep = self.reset("--yes")
        self.assertEqual(code, 0, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "done"), ("start-daemon", "done"),
                          ("start-unit", "done")])
        self.assertIn("StartUnit(gpu-job-gate.service, replace)", rep["steps"][3]["action"])
        self.assertIn("stops gpu-job-gate.service too", " ".join(rep["notes"]))
        self.assertEqual(self.inside("systemctl", "is-active", "gpu-job-gate.service").stdout.strip(), "active")
        # Stopped before, it is not started: only what the reset stopped is started again.
        self.assertEqual(self.inside("systemctl", "stop", "gpu-job-gate.service").returncode, 0)
        code, rep = self.reset("--yes")
        self.assertEqual(code, 0, rep)
        self.assertNotIn("start-unit", [s["kind"] for s in rep["steps"]])
        self.assertEqual(self.inside("systemctl", "is-active", "gpu-job-gate.service").stdout.strip(), "inactive")
        os.unlink(gate)
        self.assertEqual(self.systemd("Reload").returncode, 0)

        # Application clocks and a power limit set away from their defaults: the reset returns them to the
        # defaults, and they are set again once the daemon holds the GPU; verified as before.
        at_default = {"app_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619}, "requested_power_limit_mw": 700000}
        pinned = dict(h.gpu(0, persistence=0), enabled_when_file_exists="/run/stand-in-persistence-on",
                      app_clocks={"sm": 1500, "graphics": 1500, "mem": 2619}, requested_power_limit_mw=450000,
                      default_power_limit_mw=700000,
                      when_file_exists={"path": "/run/settings-at-default", "set": at_default})
        with open(scenario_path) as f:
            original = f.read()
        with open(scenario_path, "w") as f:
            json.dump(h.scenario([pinned, dict(h.gpu(1, persistence=0),
                                               enabled_when_file_exists="/run/stand-in-persistence-on")]), f)
        open(log, "w").close()
        os.unlink(os.path.join(self.root, "run/settings-at-default"))  # left by the reset above
        code, rep = self.reset("--yes")
        self.assertEqual(code, 0, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "done"), ("start-daemon", "done"),
                          ("restore-setting", "done"), ("restore-setting", "done")])
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), ["--gpu-reset -i 00000000:06:00.0",
                                                     "-i 00000000:06:00.0 -ac 2619,1500",
                                                     "-i 00000000:06:00.0 -pl 450"])
        checks = {c["check"]: c for c in rep["reset_checks"]}
        self.assertEqual(checks["GPU 0 application clocks"]["detail"], "still 1500 MHz (SM)")
        self.assertEqual(checks["GPU 0 power limit"]["detail"], "still 450 W")
        self.assertTrue(all(c["passed"] for c in rep["reset_checks"]), rep["reset_checks"])
        self.assertEqual((rep["daemon_hold"]["awaited_minors"], rep["daemon_hold"]["held"]), ([0], True))

        # The daemon's child opens the GPUs 1.5 s after its start job is done: the settings wait for it (set at
        # once, nothing would hold the GPU and they would be lost: review-s43 M6).
        open(os.path.join(self.root, "run/stand-in-hold-delay"), "w").close()
        open(log, "w").close()
        code, rep = self.reset("--yes")
        os.unlink(os.path.join(self.root, "run/stand-in-hold-delay"))
        self.assertEqual(code, 0, rep)
        self.assertTrue(rep["daemon_hold"]["held"], rep["daemon_hold"])
        self.assertGreaterEqual(rep["daemon_hold"]["waited_s"], 1.0, rep["daemon_hold"])
        with open(log) as f:
            self.assertNotIn("lost", f.read())
        self.assertTrue(all(c["passed"] for c in rep["reset_checks"]), rep["reset_checks"])

        # Setting the power limit fails: the step says why, the check says it was lost and how to set it, exit 1.
        open(os.path.join(self.root, "run/smi-pl-fail"), "w").close()
        code, rep = self.reset("--yes")
        os.unlink(os.path.join(self.root, "run/smi-pl-fail"))
        self.assertEqual(code, 1, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]][3:],
                         [("restore-setting", "done"), ("restore-setting", "failed")])
        self.assertIn("Failed to set power management limit (test)", rep["steps"][4]["detail"])
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # --no-restore: the defaults stay, as asked (the checks pass), and say how to set each again.
        for leftover in ("run/settings-at-default", "run/set-ac", "run/set-pl"):
            if os.path.exists(os.path.join(self.root, leftover)):
                os.unlink(os.path.join(self.root, leftover))
        code, rep = self.reset("--yes", "--no-restore")
        self.assertEqual(code, 0, rep)
        self.assertEqual([s["kind"] for s in rep["steps"]], ["stop-daemon", "reset", "start-daemon"])
        checks = {c["check"]: c for c in rep["reset_checks"]}
        self.assertTrue(checks["GPU 0 power limit"]["passed"])
        self.assertIn("at the default, as --no-restore asked", checks["GPU 0 power limit"]["detail"])
        self.assertIn("set it again: nvidia-smi -i 00000000:06:00.0 -pl 450", checks["GPU 0 power limit"]["detail"])
        os.unlink(os.path.join(self.root, "run/settings-at-default"))

        # The daemon does not start again after the reset: the settings are not set (nothing would hold the GPU
        # to keep them); each restore step says so, the report says the daemon is down, exit 1.
        open(log, "w").close()
        open(os.path.join(self.root, "run/fail-next-start"), "w").close()
        code, rep = self.reset("--yes")
        for leftover in ("run/fail-next-start", "run/daemon-refuse-start", "run/settings-at-default"):
            if os.path.exists(os.path.join(self.root, leftover)):
                os.unlink(os.path.join(self.root, leftover))
        self.assertEqual(code, 1, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "done"), ("start-daemon", "failed"),
                          ("restore-setting", "not-run"), ("restore-setting", "not-run")])
        self.assertIn("nvidia-persistenced is not running again, so the setting would not stay", rep["steps"][3]["detail"])
        self.assertFalse(rep["daemon_running_after"])
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), ["--gpu-reset -i 00000000:06:00.0"])
        # Not running: failed, or activating where the drop-in's Restart=on-failure tries again.
        self.assertIn(self.unit_property("ActiveState"), ("failed", "activating"))
        self.systemd("ResetFailedUnit", "s", UNIT)
        self.start_and_wait()
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # Ctrl-C while the reset runs: the reset finishes, the daemon starts, and the settings are set again all
        # the same (a lowered power cap must not stay at its default), exit 130.
        open(log, "w").close()
        rep = self.interrupted_reset()
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "done"), ("start-daemon", "done"),
                          ("restore-setting", "done"), ("restore-setting", "done")])
        with open(log) as f:
            self.assertEqual(f.read().splitlines()[1:], ["-i 00000000:06:00.0 -ac 2619,1500",
                                                         "-i 00000000:06:00.0 -pl 450"])
        self.assertEqual(self.unit_property("ActiveState"), "active")
        self.assertTrue(rep["reset_ran"])

        # Ctrl-C while the daemon stops: the reset is skipped, the daemon is started again, and the settings are
        # set again all the same: stopping the daemon alone returns them to their defaults (review-s43 H1).
        slow_stop = os.path.join(self.root, "etc/systemd/system", UNIT + ".d", "90-test-slow-stop.conf")
        with open(slow_stop, "w") as f:
            f.write("[Service]\nExecStopPost=/bin/sleep 3\n")
        self.assertEqual(self.systemd("Reload").returncode, 0)
        open(log, "w").close()
        rep = self.interrupted_reset(during="stop")
        os.unlink(slow_stop)
        self.assertEqual(self.systemd("Reload").returncode, 0)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "not-run"), ("start-daemon", "done"),
                          ("restore-setting", "done"), ("restore-setting", "done")])
        self.assertEqual(rep["steps"][1]["detail"], "a signal arrived before the reset")
        self.assertFalse(rep["reset_ran"])
        self.assertTrue(rep["daemon_running_after"])
        with open(log) as f:
            self.assertEqual(f.read().splitlines(), ["-i 00000000:06:00.0 -ac 2619,1500",
                                                     "-i 00000000:06:00.0 -pl 450"])
        self.assertEqual(self.unit_property("ActiveState"), "active")
        with open(scenario_path, "w") as f:
            f.write(original)

        # The reset fails: the daemon is started again all the same, exit 1.
        open(os.path.join(self.root, "run/smi-fail"), "w").close()
        code, rep = self.reset("--yes")
        os.unlink(os.path.join(self.root, "run/smi-fail"))
        self.assertEqual(code, 1, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "done"), ("reset", "failed"), ("start-daemon", "done")])
        self.assertIn("reset failed (test)", rep["steps"][1]["detail"])
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # SIGINT while the reset runs: the reset finishes, the daemon is started again, exit 130.
        rep = self.interrupted_reset()
        self.assertEqual(rep["interrupted"], "SIGINT")
        self.assertEqual(rep["steps"][2]["status"], "done")
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # A stop the service manager refuses: nothing is reset, the daemon keeps running.
        dropin = os.path.join(self.root, "etc/systemd/system", UNIT + ".d", "90-test-refuse-stop.conf")
        with open(dropin, "w") as f:
            f.write("[Unit]\nRefuseManualStop=yes\n")
        self.assertEqual(self.systemd("Reload").returncode, 0)
        lines_before = len(open(log).read().splitlines())
        code, rep = self.reset("--yes")
        os.unlink(dropin)
        self.assertEqual(self.systemd("Reload").returncode, 0)
        self.assertEqual(code, 1, rep)
        self.assertEqual([(s["kind"], s["status"]) for s in rep["steps"]],
                         [("stop-daemon", "failed"), ("reset", "not-run"), ("start-daemon", "done")])
        self.assertEqual(len(open(log).read().splitlines()), lines_before, "nvidia-smi ran after a failed stop")
        self.assertEqual(self.unit_property("ActiveState"), "active")

        # Another process holds GPU 0: refused, listed with its command line, nothing stopped.
        holder = self.inside("bash", "-c", "exec 3</dev/nvidia0; exec -a python3 sleep 60", popen=True)
        self.addCleanup(holder.kill)
        time.sleep(0.5)
        code, rep = self.reset("--yes")
        holder.kill()
        self.assertEqual(code, 3, rep)
        self.assertEqual(rep["outcome"], "refused")
        # comm is the program (sleep), the command line what it was started as.
        self.assertRegex(rep["reason"], r"\n  pid \d+ \(sleep\): python3 60$")
        self.assertEqual(rep["steps"], [])
        self.assertEqual(self.unit_property("ActiveState"), "active")
        self.assertEqual(len(open(log).read().splitlines()), lines_before)


if __name__ == "__main__":
    unittest.main()
