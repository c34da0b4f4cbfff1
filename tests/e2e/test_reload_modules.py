"""gpuwarm reload-modules end to end: a fake root (/proc/modules, /sys/module,
/proc/PID/fd) and new module files that are real ELF objects with a .modinfo
section (built here with gcc and objcopy), read through libkmod like a real
nvidia.ko. Acting goes through the test stand-in for libkmod, which only
exists under a fake --root: no real module is ever loaded."""
import fcntl
import glob
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest

import harness as h

OLD = "580.95.05"
NEW = "580.159.04"
PROC_MODULES = (
    "nvidia_uvm 1830912 0 - Live 0xffffffffc080c000 (O)\n"
    "nvidia_drm 126976 0 - Live 0xffffffffc0700000 (O)\n"
    "nvidia_modeset 1638400 1 nvidia_drm, Live 0xffffffffc0600000 (O)\n"
    "nvidia 14299136 2 nvidia_uvm,nvidia_modeset, Live 0xffffffffc0400000 (O)\n"
    "ext4 1024000 1 - Live 0xffffffffc0000000\n")


class ReloadModules(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        if shutil.which("gcc") is None or shutil.which("objcopy") is None:
            self.skipTest("gcc and objcopy are needed to build stand-in .ko files")
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.root.write("proc/modules", PROC_MODULES)
        self.root.write("sys/module/nvidia/version", OLD + "\n")
        os.makedirs(self.root.p("run"), exist_ok=True)  # where the node lock lives, as on every node
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp)
        self.kernel = os.uname().release
        self.moddir = os.path.join(self.tmp, "lib/modules", self.kernel, "updates/dkms")
        os.makedirs(self.moddir)
        for name in ("nvidia", "nvidia-modeset", "nvidia-uvm", "nvidia-drm"):
            self.make_ko(name, NEW, self.kernel)
        self.log = os.path.join(self.tmp, "ops.log")

    def make_ko(self, name, version, kernel):
        src = os.path.join(self.tmp, "m.c")
        with open(src, "w") as f:
            f.write("int gpuwarm_test_module;\n")
        obj = os.path.join(self.tmp, "m.o")
        subprocess.run(["gcc", "-c", src, "-o", obj], check=True)
        info = os.path.join(self.tmp, "modinfo")
        with open(info, "wb") as f:
            f.write(f"version={version}\0vermagic={kernel} SMP preempt mod_unload modversions \0"
                    f"name={name.replace('-', '_')}\0license=NVIDIA\0".encode())
        subprocess.run(["objcopy", "--add-section", f".modinfo={info}", "--set-section-flags", ".modinfo=alloc,readonly",
                        obj, os.path.join(self.moddir, f"{name}.ko")], check=True)

    def reload(self, *args, fail_on=None):
        env = {"GPUWARM_FAKE_MODULE_OPS": self.log}
        if fail_on:
            env["GPUWARM_FAKE_MODULE_FAIL"] = fail_on
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", os.path.dirname(self.moddir), *args],
                  extra_env=env, raw=True)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def ops(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().split("\n")[:-1]

    def proc_modules(self):
        with open(self.root.p("proc/modules")) as f:
            return f.read()

    def test_dry_run_plans_and_changes_nothing(self):
        for args in (["--dry-run"], []):
            with self.subTest(args=args):
                r = self.reload(*args)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("not carried out", r.stdout)
                lines = [l.strip() for l in r.stdout.splitlines() if l.strip()[:2] in ("1.", "4.", "5.", "8.")]
                self.assertEqual(lines[0], "1. unload nvidia_drm")
                self.assertEqual(lines[1], "4. unload nvidia")
                self.assertTrue(lines[2].startswith("5. load ") and lines[2].endswith(f"nvidia.ko ({NEW})"), lines)
                self.assertTrue(lines[3].startswith("8. load ") and "nvidia-drm.ko" in lines[3], lines)
                self.assertEqual(self.ops(), [])
                self.assertEqual(self.proc_modules(), PROC_MODULES)

    def test_dry_run_with_yes_is_a_usage_error(self):
        r = self.reload("--dry-run", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertIn("contradict", r.stderr)
        self.assertEqual(self.ops(), [])

    def test_precise_refusals(self):
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", os.path.join(self.tmp, "typo")],
                  extra_env={"GPUWARM_FAKE_MODULE_OPS": self.log}, raw=True)
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("check --module-dir", r.stdout)
        self.root.write("proc/modules", "ext4 1024000 1 - Live 0xffffffffc0000000\n")
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty)
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", empty],
                  extra_env={"GPUWARM_FAKE_MODULE_OPS": self.log}, raw=True)
        self.assertEqual(r.returncode, 6, r.stdout + r.stderr)
        self.assertIn("no NVIDIA driver", r.stdout)
        # /proc/modules unread: what is loaded is unknown, never "none".
        os.remove(self.root.p("proc/modules"))
        os.makedirs(self.root.p("proc/modules"))
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", empty],
                  extra_env={"GPUWARM_FAKE_MODULE_OPS": self.log}, raw=True)
        self.assertTrue(r.stdout.startswith("Loaded: unknown ("), r.stdout)
        self.assertIn("which NVIDIA modules are loaded could not be read", r.stdout)

    def test_the_build_modprobe_prefers_wins_over_directory_order(self):
        # An old nvidia.ko under kernel/drivers/video sorts before updates/dkms: modprobe takes the DKMS one.
        tree = os.path.dirname(os.path.dirname(self.moddir))  # lib/modules/<kernel>
        video = os.path.join(tree, "kernel/drivers/video")
        os.makedirs(video)
        keep = self.moddir
        self.moddir = video
        self.make_ko("nvidia", "535.216.03", self.kernel)
        self.moddir = keep
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", tree, "--json"],
                  extra_env={"GPUWARM_FAKE_MODULE_OPS": self.log}, raw=True)
        plan = json.loads(r.stdout)["plan"]
        self.assertEqual(plan["target_version"], NEW)
        loads = [s["path"] for s in plan["steps"] if s["path"]]
        self.assertTrue(loads and all("/updates/dkms/" in p for p in loads), loads)
        # With depmod's index naming the old copy, the index wins (as modprobe would).
        with open(os.path.join(tree, "modules.dep"), "w") as f:
            f.write("kernel/drivers/video/nvidia.ko:\n")
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", tree, "--json"],
                  extra_env={"GPUWARM_FAKE_MODULE_OPS": self.log}, raw=True)
        plan = json.loads(r.stdout)["plan"]
        self.assertIn("mixes driver versions", plan["refusal"])
        # The same folder written with a trailing slash (as a shell completes it): the index still matches
        # (review-s57 L5: "X//kernel/..." matched no entry, and depmod's choice was silently ignored).
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", tree + "/", "--json"],
                  extra_env={"GPUWARM_FAKE_MODULE_OPS": self.log}, raw=True)
        self.assertIn("mixes driver versions", json.loads(r.stdout)["plan"]["refusal"])

    def test_yes_swaps_in_dependency_order_and_checks_the_version(self):
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.ops(), ["unload nvidia_drm", "unload nvidia_uvm", "unload nvidia_modeset", "unload nvidia",
                                      "load nvidia", "load nvidia_modeset", "load nvidia_uvm", "load nvidia_drm",
                                      "udev-trigger"])
        with open(self.root.p("sys/module/nvidia/version")) as f:
            self.assertEqual(f.read().strip(), NEW)
        self.assertIn(f"Reloaded: nvidia {NEW} is loaded", r.stdout)
        self.assertIn("ext4", self.proc_modules())
        # Run again: the new version is loaded, nothing to do.
        os.unlink(self.log)
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 0)
        self.assertIn("Nothing to do", r.stdout)
        self.assertEqual(self.ops(), [])

    def test_a_packaged_binary_has_no_test_stand_in(self):
        # The packages are built without test hooks: $GPUWARM_FAKE_MODULE_OPS means nothing to the binary that
        # runs as root on nodes; the plan a stand-in would carry out here is refused as a --root one.
        tgz = glob.glob(os.path.join(os.environ.get("GPUWARM_DIST", "/nonexistent"), "gpuwarm-*-linux-x86_64.tar.gz"))
        if os.geteuid() != 0:
            self.skipTest("--yes needs root (as on a node)")
        if len(tgz) != 1:
            self.skipTest("no packaged tarball in $GPUWARM_DIST (scripts/test.sh builds it with scripts/package.sh)")
        with tarfile.open(tgz[0]) as t:
            t.extractall(self.tmp)
        packaged = glob.glob(os.path.join(self.tmp, "gpuwarm-*", "bin", "gpuwarm"))[0]
        r = subprocess.run([packaged, "reload-modules", "--root", self.root.path, "--module-dir",
                            os.path.dirname(self.moddir), "--yes"],
                           env={**os.environ, "GPUWARM_FAKE_MODULE_OPS": self.log, "NO_COLOR": "1"},
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("--root is for reading a recorded tree; modules are only reloaded on the live system", r.stderr)
        self.assertEqual(self.ops(), [])
        self.assertIn("nvidia_uvm", self.proc_modules())  # nothing unloaded
        # The test build honours it (what the tests above rely on), and says so in --version.
        self.assertIn("test hooks compiled in", h.run(["--version"], raw=True).stdout)
        self.assertNotIn("test hooks", subprocess.run([packaged, "--version"], capture_output=True, text=True).stdout)

    def test_refuses_while_a_process_holds_the_gpus(self):
        self.root.daemon_process(pid=812)
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("Refused: 1 process(es) hold the GPUs", r.stdout)
        self.assertIn("pid 812 ", r.stdout)
        self.assertIn("/dev/nvidia0", r.stdout)
        self.assertEqual(self.ops(), [])

    def test_shares_the_node_lock_with_fix_and_reset(self):
        # While a fix or reset holds the lock it may be starting nvidia-persistenced: no unload then.
        with open(self.root.p("run/gpuwarm-fix.lock"), "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            r = self.reload("--yes")
        self.assertEqual(r.returncode, 7, r.stdout + r.stderr)  # locked, as for fix and reset
        self.assertIn("is held", r.stderr)
        self.assertEqual(self.ops(), [])

    def test_module_files_another_user_could_replace_are_not_loaded(self):
        os.chmod(self.moddir, 0o777)
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("writable by group or others", r.stdout)
        self.assertIn("loads into the kernel only what no user but root can replace", r.stdout)
        self.assertEqual(self.ops(), [])

    def test_process_names_are_shown_escaped(self):
        self.root.daemon_process(pid=812)
        with open(self.root.p("proc/812/comm"), "w") as f:
            f.write("x\x1b]0;owned\x07\n")
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("pid 812 x?]0;owned?: /dev/nvidiactl", r.stdout)  # as reset and diagnose show a comm

    def test_refuses_modules_built_for_another_kernel(self):
        for name in ("nvidia", "nvidia-modeset", "nvidia-uvm", "nvidia-drm"):
            self.make_ko(name, NEW, "6.1.0-99-amd64")
        r = self.reload("--yes", "--json")
        self.assertEqual(r.returncode, 4, r.stdout)
        d = json.loads(r.stdout)
        self.assertTrue(d["plan"]["needs_reboot"])
        self.assertIn("built for kernel 6.1.0-99-amd64", d["plan"]["refusal"])
        self.assertFalse(d["carried_out"])
        # A report like every other gpuwarm report: its kind, version, node and how it ended.
        self.assertEqual((d["kind"], d["schema_version"], d["exit_code"]), ("gpuwarm-reload-modules", 1, 4))
        self.assertTrue(d["hostname"])
        self.assertEqual(self.ops(), [])

    def test_failure_reports_what_is_loaded_and_how_to_recover(self):
        r = self.reload("--yes", fail_on="load nvidia_uvm")
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("step 7 (load ", r.stderr)
        self.assertIn("Loaded now: nvidia, nvidia_modeset", r.stderr)
        self.assertIn("To recover: the old modules are unloaded; load the rest of the new driver by name: "
                      "`modprobe -a nvidia_uvm nvidia_drm`", r.stderr)
        # The loads after the failed one are left to the advice (nvidia_drm may need what failed).
        self.assertEqual(self.ops()[-2:], ["load nvidia_uvm", "udev-trigger"])

    def test_a_failed_unload_says_the_old_modules_cannot_come_back(self):
        r = self.reload("--yes", "--json", fail_on="unload nvidia")
        self.assertEqual(r.returncode, 1, r.stdout)
        d = json.loads(r.stdout)
        self.assertEqual((d["kind"], d["exit_code"], d["carried_out"]), ("gpuwarm-reload-modules", 1, True))
        self.assertEqual(d["steps_done"], 3)
        self.assertEqual(d["loaded_now"], "nvidia")
        self.assertIn("the old modules nvidia are still loaded", d["recovery"])
        self.assertIn("Find what holds nvidia (", d["recovery"])
        self.assertIn("`modprobe -r nvidia` and `modprobe -a nvidia nvidia_modeset nvidia_uvm nvidia_drm`", d["recovery"])

    def test_a_failed_optional_load_still_checks_the_version_and_recreates_the_nodes(self):
        # nvidia is in: /dev/nvidia-uvm's major is the new module's only once udev made the node again.
        r = self.reload("--yes", fail_on="load nvidia_drm")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.ops()[-2:], ["load nvidia_drm", "udev-trigger"])
        self.assertIn("done: check that /sys/module/nvidia/version reads", r.stdout)
        self.assertIn("done: udevadm trigger", r.stdout)
        self.assertIn("`modprobe -a nvidia_drm`, then have udev recreate /dev/nvidia*: `udevadm trigger --action=add "
                      "--attr-match=vendor=0x10de` and `udevadm settle`", r.stderr)
        os.unlink(self.log)
        self.root.write("proc/modules", PROC_MODULES)
        self.root.write("sys/module/nvidia/version", OLD + "\n")
        d = json.loads(self.reload("--yes", "--json", fail_on="load nvidia_drm").stdout)
        self.assertEqual((d["exit_code"], d["steps_done"]), (1, 7))
        self.assertEqual(len(d["done_after_failure"]), 2, d)
        self.assertTrue(d["done_after_failure"][1].startswith("udevadm trigger"), d)
        # Without nvidia itself there is nothing to check or trigger: the advice says what to run.
        os.unlink(self.log)
        self.root.write("proc/modules", PROC_MODULES)
        self.root.write("sys/module/nvidia/version", OLD + "\n")
        r = self.reload("--yes", fail_on="load nvidia")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.ops()[-1], "load nvidia")
        self.assertIn("`modprobe -a nvidia nvidia_modeset nvidia_uvm nvidia_drm`, then have udev recreate", r.stderr)

    def test_a_module_built_on_any_module_unloaded_refuses(self):
        # review-s43-safety M3: vendor_mod uses nvidia_uvm, not nvidia. rmmod nvidia_uvm would fail with EBUSY
        # after nvidia_drm was gone; the refusal names the module gpuwarm cannot reload.
        self.root.write("proc/modules", "vendor_mod 16384 0 - Live 0xffffffffc0900000 (O)\n" +
                        PROC_MODULES.replace("nvidia_uvm 1830912 0 - ", "nvidia_uvm 1830912 1 vendor_mod, "))
        for args in (["--dry-run"], ["--yes"]):
            with self.subTest(args=args):
                r = self.reload(*args)
                self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
                self.assertIn("Refused: module vendor_mod uses nvidia_uvm and gpuwarm does not know how to reload it",
                              r.stdout)
                self.assertEqual(self.ops(), [])

    def test_every_outcome_says_when_nvidia_persistenced_is_not_running(self):
        # The swap needs the daemon stopped and never starts it: a refusal after `systemctl stop` would leave
        # the node without persistence, unsaid (review-s43-safety M4).
        note = ("nvidia-persistenced is not running: if it was stopped for this, start it again: "
                "`systemctl start nvidia-persistenced`")
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(note, r.stderr)
        for name in ("nvidia", "nvidia-modeset", "nvidia-uvm", "nvidia-drm"):
            self.make_ko(name, "580.999.01", "6.1.0-99-amd64")
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        self.assertIn(note, r.stderr)
        d = json.loads(self.reload("--yes", "--json").stdout)
        self.assertEqual((d["exit_code"], d["daemon_running"], d["daemon_note"]), (4, False, note))
        # Running (and holding the GPUs): nothing to start again.
        self.root.daemon_binary().daemon_process(pid=812)
        r = self.reload("--yes", "--json")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual((d["daemon_running"], d["daemon_note"]), (True, ""))
        self.assertNotIn("nvidia-persistenced is not running", r.stderr)

    def test_module_names_and_versions_are_shown_escaped(self):
        # review-s43-safety L12: /proc/modules, sysfs and modinfo text reach a root terminal.
        self.root.write("proc/modules", PROC_MODULES + "nvidia_evil\x1b]0;pwned\x07 100 0 - Live 0x0 (O)\n")
        self.root.write("sys/module/nvidia/version", OLD + "\x1b[31mRED\n")
        for name in ("nvidia", "nvidia-modeset", "nvidia-uvm", "nvidia-drm"):
            self.make_ko(name, NEW + "\x1b[31mX", self.kernel)
        r = self.reload("--yes", fail_on="load nvidia_drm")  # "Loaded now:" too
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stdout + r.stderr)
        self.assertIn("Loaded: nvidia_uvm, nvidia_drm, nvidia_modeset, nvidia, nvidia_evil\\x1b]0;pwned\\x07 (nvidia "
                      f"{OLD}\\x1b[31mRED)", r.stdout)
        self.assertIn("Loaded now: nvidia_evil\\x1b]0;pwned\\x07, nvidia, ", r.stderr)
        os.unlink(self.log)
        self.root.write("proc/modules", PROC_MODULES)
        self.root.write("sys/module/nvidia/version", OLD + "\n")
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stdout + r.stderr)
        self.assertIn(f"Reloaded: nvidia {NEW}\\x1b[31mX is loaded.", r.stdout)

    def test_a_reference_the_kernel_counts_but_no_process_shows_refuses(self):
        # A console or display server on nvidia_drm's /dev/dri node: no /proc/PID/fd names /dev/nvidia*, but
        # rmmod nvidia_drm would fail with EBUSY after nothing else was touched -- or, for nvidia, after three.
        for module, busy in (("nvidia_drm", "nvidia_drm 126976 1 - Live"), ("nvidia", "nvidia 14299136 3 ")):
            with self.subTest(module=module):
                text = PROC_MODULES.replace(busy.replace(" 1 - ", " 0 - ").replace(" 3 ", " 2 "), busy)
                self.assertNotEqual(text, PROC_MODULES)
                self.root.write("proc/modules", text)
                r = self.reload("--yes")
                self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
                self.assertIn(f"Refused: {module} is in use by something gpuwarm cannot name", r.stdout)
                self.assertEqual(self.ops(), [])

    def test_a_kernel_without_module_unloading_refuses(self):
        # What the H200 machine's kernel shows (FACTS.md §0): "-" for the count, as a kernel built without
        # module unloading prints it. rmmod cannot work there; only a reboot finishes an update.
        self.root.write("proc/modules", "nvidia_uvm 1875968 - - Live 0xffffffffc080c000 (O)\n"
                                        "nvidia 14299136 - - Live 0xffffffffc0400000 (O)\n")
        self.make_ko("nvidia-uvm", NEW, self.kernel)
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)  # only a reboot finishes the update
        self.assertIn("Refused: the kernel's reference count of nvidia_uvm is not shown in /proc/modules", r.stdout)
        self.assertEqual(self.ops(), [])

    def test_linked_module_files_are_loaded_from_where_they_lead(self):
        # The check and the load must see the same file: a link could be repointed between the two.
        links = os.path.join(self.tmp, "links", self.kernel)
        os.makedirs(links)
        for name in ("nvidia", "nvidia-modeset", "nvidia-uvm", "nvidia-drm"):
            os.symlink(os.path.join(self.moddir, f"{name}.ko"), os.path.join(links, f"{name}.ko"))
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", links, "--json"], raw=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        loads = [s["path"] for s in json.loads(r.stdout)["plan"]["steps"] if s["path"]]
        self.assertEqual(len(loads), 4)
        for path in loads:
            self.assertTrue(path.startswith(os.path.realpath(self.moddir) + "/"), path)

    def test_module_files_whose_modinfo_cannot_be_read_are_not_swapped_in(self):
        # A half-finished DKMS build or package install: libkmod reads no version and no vermagic. Unknown is
        # neither "the same version" nor "this kernel": the old driver must not be unloaded for them.
        for name in ("nvidia", "nvidia-modeset", "nvidia-uvm", "nvidia-drm"):
            with open(os.path.join(self.moddir, f"{name}.ko"), "r+b") as f:
                f.truncate(64)
        for args in (["--dry-run"], ["--yes"]):
            with self.subTest(args=args):
                r = self.reload(*args)
                self.assertEqual(r.returncode, 9, r.stdout + r.stderr)  # cannot tell
                self.assertIn("Refused: ", r.stdout)
                self.assertIn("nvidia.ko: its modinfo could not be read (", r.stdout)
                self.assertNotIn("unload", r.stdout)
                self.assertEqual(self.ops(), [])
                self.assertEqual(self.proc_modules(), PROC_MODULES)

    def test_an_unreadable_loaded_version_refuses(self):
        # /sys/module/nvidia/version unread is not "another version than the new one".
        os.unlink(self.root.p("sys/module/nvidia/version"))
        os.mkdir(self.root.p("sys/module/nvidia/version"))
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 9, r.stdout + r.stderr)
        self.assertIn("Refused: the loaded nvidia module's version could not be read (", r.stdout)
        self.assertEqual(self.ops(), [])
        self.assertEqual(self.proc_modules(), PROC_MODULES)

    def test_the_stand_in_follows_no_link_out_of_the_root(self):
        # It runs as root: a linked sys/module must not send its removal of sys/module/nvidia elsewhere.
        outside = os.path.join(self.tmp, "outside")
        shutil.copytree(self.root.p("sys/module"), outside)
        shutil.rmtree(self.root.p("sys/module"))
        os.symlink(outside, self.root.p("sys/module"))
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("symbolic link", r.stderr)
        with open(os.path.join(outside, "nvidia/version")) as f:
            self.assertEqual(f.read(), OLD + "\n")

    def test_the_stand_in_log_is_written_without_following_a_link(self):
        target = os.path.join(self.tmp, "not-the-log")
        with open(target, "w") as f:
            f.write("keep\n")
        os.symlink(target, self.log)
        r = self.reload("--yes")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("symbolic link", r.stderr)
        with open(target) as f:
            self.assertEqual(f.read(), "keep\n")
        self.assertEqual(self.proc_modules(), PROC_MODULES)  # the first step's record failed: nothing changed

    def test_acting_on_a_recorded_root_without_the_stand_in_is_refused(self):
        r = h.run(["reload-modules", "--root", self.root.path, "--module-dir", os.path.dirname(self.moddir), "--yes"],
                  raw=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("only reloaded on the live system", r.stderr)
        self.assertEqual(self.proc_modules(), PROC_MODULES)


if __name__ == "__main__":
    unittest.main()
