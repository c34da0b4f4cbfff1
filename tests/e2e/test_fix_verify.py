"""gpuwarm fix and verify end to end against a systemd stand-in on a private
bus (python-dbusmock, with the methods its template lacks added here) and the
fake NVML, whose GPUs read persistence Enabled once the stand-in daemon has
"started". Failure paths a real systemd makes hard to stage are staged here:
missing method, masked unit, failed job, job timeout, permission denied."""
import fcntl
import json
import subprocess
import signal
import os
import shutil
import threading
import time
import unittest

import harness as h

from systemd_mock import DBUS_MISSING, MANAGER, SERVICE_IFACE, UNIT, UNIT_IFACE, SystemdMockCase, dbus, exec_start

VENDOR_UNIT = h.PACKAGED_UNIT
DROPIN = "etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf"


def job_method(result):
    """Code for a StartUnit/RestartUnit stand-in whose job ends with `result` (None: never ends)."""
    code = "ret = '/org/freedesktop/systemd1/job/%d' % (len(self.GetCalls()) + 100)\n"
    if result is not None:
        code += ("self.EmitSignal('org.freedesktop.systemd1.Manager', 'JobRemoved', 'uoss', "
                 f"[dbus.UInt32(1), ret, args[0], '{result}'])\n")
    return code


@unittest.skipIf(dbus is None, DBUS_MISSING)
class FixAndVerify(SystemdMockCase):
    def setUp(self):
        h.require_binary(self)
        self.start_mock()
        self.stop_watch = threading.Event()
        self.addCleanup(self.stop_mock)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.root.driver().daemon_binary().kmsg()
        self.root.write("lib/systemd/system/" + UNIT, VENDOR_UNIT)
        self.root.write("etc/passwd", "root:x:0:0::/root:/bin/sh\nnvidia-persistenced:x:143:143::/:/usr/sbin/nologin\n")
        os.makedirs(self.root.p("run"), exist_ok=True)
        self.started_flag = self.root.p("run/stand-in-daemon-started")

    def stop_mock(self):
        self.stop_watch.set()
        super().stop_mock()

    def add_unit(self, active="inactive", file_state="disabled", with_enable=True, start_result="done",
                 load_state="loaded", drop_ins=()):
        """The Ubuntu-style unit (--no-persistence-mode, StopWhenUnneeded) plus the write methods fix uses."""
        unit = super().add_unit(load_state=load_state, active=active, sub="dead", file_state=file_state,
                                stop_when_unneeded=True, drop_ins=drop_ins,
                                argv=["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced",
                                      "--no-persistence-mode", "--verbose"])
        self.mock.AddMethod(MANAGER, "Subscribe", "", "", "")
        self.mock.AddMethod(MANAGER, "Reload", "", "", "")
        self.mock.AddMethod(MANAGER, "ResetFailedUnit", "s", "", "")
        if with_enable:
            self.mock.AddMethod(MANAGER, "EnableUnitFiles", "asbb", "ba(sss)",
                                "ret = (True, [('symlink', '/etc/systemd/system/multi-user.target.wants/%s' % args[0][0],"
                                " '/lib/systemd/system/%s' % args[0][0])])")
        if start_result != "done":
            self.mock.AddMethod(MANAGER, "StartUnit", "ss", "o", job_method(start_result))
        self.mock.AddMethod(MANAGER, "RestartUnit", "ss", "o", job_method("done"))
        self.unit = unit
        self.start_result = start_result
        return unit

    def watch_systemd(self, gpus_that_start=(0, 1)):
        """Plays the part of systemd's side effects: enabling flips UnitFileState, a start job
        'starts' the daemon (a /proc entry holding the GPUs, and the fake NVML's Enabled flag).
        The start job ends (JobRemoved) only once those are in place, as systemd's does once the
        daemon is up: fix's verification, however soon it looks, finds what a started unit leaves."""
        start_result = self.start_result
        # The k-th start or restart (counted across both) returns job 300+k and ends when the loop below says.
        pending_job = ("self.jobs_started = getattr(self, 'jobs_started', 0) + 1\n"
                       "ret = '/org/freedesktop/systemd1/job/%d' % (300 + self.jobs_started)\n")
        self.mock.AddMethod(MANAGER, "StartUnit", "ss", "o", pending_job)
        self.mock.AddMethod(MANAGER, "RestartUnit", "ss", "o", pending_job)

        def loop():
            enabled = started = False
            jobs_ended = 0
            while not self.stop_watch.is_set():
                try:
                    # One read of the calls for the whole pass: a start job seen here ends only after the
                    # enabling that came before it in the same list has taken effect.
                    calls = [(str(method), args) for _, method, args in self.mock.GetCalls()]
                    called = {method for method, _ in calls}
                    if not enabled and "EnableUnitFiles" in called:
                        self.unit.UpdateProperties(UNIT_IFACE, {"UnitFileState": "enabled"})
                        enabled = True
                    if not enabled and "AddDependencyUnitFiles" in called:
                        self.unit.UpdateProperties(UNIT_IFACE, {"WantedBy": dbus.Array(["multi-user.target"],
                                                                                       signature="s")})
                        enabled = True
                    jobs = [(method, args) for method, args in calls
                            if method in ("StartUnit", "RestartUnit")]  # in the order they were made
                    if jobs and not started:
                        self.unit.UpdateProperties(UNIT_IFACE, {"ActiveState": "active", "SubState": "running"})
                        self.root.daemon_process(holds=gpus_that_start)
                        open(self.started_flag, "w").close()
                        started = True
                    for method, args in jobs[jobs_ended:]:
                        jobs_ended += 1
                        result = start_result if method == "StartUnit" else "done"
                        self.mock.EmitSignal(MANAGER, "JobRemoved", "uoss",
                                             [dbus.UInt32(1), dbus.ObjectPath("/org/freedesktop/systemd1/job/%d"
                                                                              % (300 + jobs_ended)),
                                              args[0], result])
                except dbus.exceptions.DBusException:
                    return
                time.sleep(0.01)
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.addCleanup(t.join, 2)

    def scenario(self, stays_off=()):
        gpus = []
        for i in range(2):
            g = h.gpu(i, persistence=0)
            if i not in stays_off:
                g["enabled_when_file_exists"] = self.started_flag
            gpus.append(g)
        return h.scenario(gpus)

    def fix(self, *extra, scenario=None):
        args = ["fix", "--json", "--settle", "0", "--samples", "2", "--sample-interval", "0.05", *extra]
        r = h.run(args, root=self.root, systemd=True, scenario_obj=scenario or self.scenario())
        self.assertNotIn("AddressSanitizer", r.stderr)
        return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), r

    def start_fix(self, *extra):
        """`fix --json` in the background, to be signalled."""
        env = {k: v for k, v in os.environ.items() if k != "FAKE_NVML_SCENARIO"}
        scenario = os.path.join(self.root.path, "scenario.json")
        with open(scenario, "w") as f:
            json.dump(self.scenario(), f)
        env.update({"NO_COLOR": "1", "FAKE_NVML_SCENARIO": scenario})
        return subprocess.Popen([h.BIN, "fix", "--json", "--root", self.root.path, "--nvml",
                                 os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def write_calls(self):
        return {m: len(self.mock.GetMethodCalls(m)) for m in ("Reload", "EnableUnitFiles", "StartUnit", "RestartUnit")}

    def test_dry_run_prints_the_plan_and_changes_nothing(self):
        self.add_unit()
        r = h.run(["fix", "--dry-run"], root=self.root, systemd=True, scenario_obj=self.scenario())
        self.assertEqual(r.returncode, 0, r.stderr)
        for needle in ["write /etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf",
                       "| ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose",
                       "| StopWhenUnneeded=no", "| Restart=on-failure", "Manager.Reload()",
                       "Manager.EnableUnitFiles([nvidia-persistenced.service], runtime=false, force=false)",
                       "Manager.StartUnit(nvidia-persistenced.service, \"replace\")", "Dry run: nothing was changed"]:
            self.assertIn(needle, r.stdout)
        self.assertFalse(os.path.exists(self.root.p(DROPIN)))
        self.assertEqual(self.write_calls(), {"Reload": 0, "EnableUnitFiles": 0, "StartUnit": 0, "RestartUnit": 0})

    def test_a_drop_in_that_cannot_be_read_is_not_taken_for_absent(self):
        self.add_unit()
        os.makedirs(self.root.p(DROPIN))  # there, but no file to read
        r = h.run(["snapshot", "--json"], root=self.root, systemd=True, scenario_obj=self.scenario())
        service = json.loads(r.stdout)["service"]
        self.assertTrue(service["gpuwarm_dropin_exists"])
        self.assertIn("missing", service["gpuwarm_dropin_text"])
        r = h.run(["fix", "--dry-run"], root=self.root, systemd=True, scenario_obj=self.scenario())
        self.assertIn("gpuwarm's drop-in could not be read", r.stdout + r.stderr)
        self.assertIn("write /etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf", r.stdout)

    def test_fix_then_verify_then_idempotent_second_run(self):
        self.add_unit()
        self.watch_systemd()
        # lint reads the vendor unit with the drop-ins systemd reads after it: the fix's settles its findings.
        vendor_unit = self.root.p("lib/systemd/system/" + UNIT)
        lint_before = h.run(["lint", vendor_unit], raw=True)
        self.assertEqual(lint_before.returncode, 3, lint_before.stdout + lint_before.stderr)
        rc, rep, r = self.fix()
        self.assertEqual(rc, 0, r.stdout + r.stderr)
        lint_after = h.run(["lint", vendor_unit, self.root.p("etc/systemd")], raw=True)
        self.assertEqual(lint_after.returncode, 0, lint_after.stdout + lint_after.stderr)
        self.assertIn("0 finding(s) in 2 file(s) scanned; 3 set aside", lint_after.stderr)
        self.assertTrue(rep["changed"])
        self.assertEqual([s["kind"] for s in rep["steps"]], ["write-file", "reload", "enable", "reload", "start"])
        self.assertTrue(all(s["status"] == "done" for s in rep["steps"]), rep["steps"])
        with open(self.root.p(DROPIN)) as f:
            dropin = f.read()
        self.assertIn("ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose\n", dropin)
        self.assertIn("StopWhenUnneeded=no", dropin)
        self.assertIn("Restart=on-failure", dropin)
        self.assertEqual({c["id"]: c["status"] for c in rep["verify"]["checks"]},
                         {"unit-active": "pass", "unit-enabled": "pass", "daemon-running": "pass",
                          "persistence": "pass", "daemon-holds-gpus": "pass", "clocks": "pass", "dcgm": "skip"})
        self.assertEqual([(g["persistence_before"], g["persistence_after"]) for g in rep["verify"]["gpus"]],
                         [("Disabled", "Enabled")] * 2)
        # Idempotent: the vendor unit still carries the flag, but the drop-in is already right.
        calls_before = self.write_calls()
        # systemd would now report the drop-in's effective values.
        argv = ["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "--verbose"]
        self.unit.UpdateProperties(UNIT_IFACE, {"StopWhenUnneeded": dbus.Boolean(False)})
        self.unit.UpdateProperties(SERVICE_IFACE, {"Restart": "on-failure", "ExecStart": exec_start(argv)})
        rc2, rep2, r2 = self.fix()
        self.assertEqual(rc2, 0, r2.stdout)
        self.assertFalse(rep2["changed"])
        self.assertEqual(rep2["outcome"], "nothing-to-do")
        self.assertEqual(self.write_calls(), calls_before)

    def test_one_gpu_staying_disabled_fails_verify(self):
        self.add_unit()
        self.watch_systemd(gpus_that_start=(0,))
        rc, rep, r = self.fix(scenario=self.scenario(stays_off=(1,)))
        self.assertEqual(rc, 8, r.stdout)
        checks = {c["id"]: c for c in rep["verify"]["checks"]}
        self.assertEqual(checks["persistence"]["status"], "fail")
        self.assertIn("GPU 1: Disabled", checks["persistence"]["detail"])
        self.assertEqual(checks["daemon-holds-gpus"]["status"], "fail")

    def test_refuses_thermal_and_changes_nothing(self):
        self.add_unit()
        sc = h.scenario([h.gpu(0, persistence=0, reasons=0x20), h.gpu(1, persistence=0)])
        rc, rep, r = self.fix(scenario=sc)
        self.assertEqual(rc, 5)
        self.assertEqual(rep["outcome"], "refused")
        self.assertIn("RAS", rep["reason"])
        self.assertEqual(self.write_calls(), {"Reload": 0, "EnableUnitFiles": 0, "StartUnit": 0, "RestartUnit": 0})

    def test_dry_run_says_when_its_write_would_be_refused(self):
        # A drop-in folder that is a link: the real run refuses to write through it, and the dry run says so.
        self.add_unit()
        elsewhere = os.path.join(self.root.path, "elsewhere")
        os.makedirs(elsewhere)
        os.makedirs(self.root.p("etc/systemd/system"), exist_ok=True)
        os.symlink(elsewhere, self.root.p(os.path.dirname(DROPIN)))
        r = h.run(["fix", "--dry-run"], root=self.root, systemd=True, scenario_obj=self.scenario())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"a real run would stop at its first write: .*nvidia-persistenced\.service\.d is a "
                                   r"symbolic link")
        self.assertIn("would fail: ", json.loads(h.run(["fix", "--dry-run", "--json"], root=self.root, systemd=True,
                                                       scenario_obj=self.scenario()).stdout)["steps"][0]["detail"])
        self.assertEqual(os.listdir(elsewhere), [])
        rc, rep, r = self.fix()
        self.assertEqual(rc, 1, r.stdout)
        self.assertEqual(os.listdir(elsewhere), [])
        self.assertEqual(self.write_calls(), {"Reload": 0, "EnableUnitFiles": 0, "StartUnit": 0, "RestartUnit": 0})

    def test_under_root_only_a_named_bus_is_acted_on(self):
        # Without DBUS_SYSTEM_BUS_ADDRESS, Reload and StartUnit would reach this host's systemd while the files
        # went into the tree: refused before anything, as a usage error.
        self.add_unit()
        env_unset = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        r = subprocess.run([h.BIN, "fix", "--root", self.root.path, "--nvml",
                            os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                           capture_output=True, text=True, env=env_unset, timeout=60)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("set DBUS_SYSTEM_BUS_ADDRESS to the bus of the systemd that runs that tree", r.stderr)
        self.assertFalse(os.path.exists(self.root.p(DROPIN)))
        self.assertEqual(self.write_calls(), {"Reload": 0, "EnableUnitFiles": 0, "StartUnit": 0, "RestartUnit": 0})
        dry = subprocess.run([h.BIN, "fix", "--dry-run", "--root", self.root.path, "--nvml",
                              os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                             capture_output=True, text=True, env=env_unset, timeout=60)
        self.assertNotEqual(dry.returncode, 2, dry.stderr)

    def test_a_later_drop_in_that_would_undo_the_fix_is_refused_before_any_change(self):
        # systemctl edit's override.conf sorts after 50-gpuwarm.conf and sets the flag again: refused on the first
        # run, nothing written, not found after a restart that changed nothing.
        override = "/etc/systemd/system/nvidia-persistenced.service.d/override.conf"
        self.root.write(override.lstrip("/"), "[Service]\nExecStart=\n"
                        "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode\n")
        self.add_unit(drop_ins=(override,))
        rc, rep, r = self.fix()
        self.assertEqual(rc, 3, r.stdout + r.stderr)
        self.assertEqual(rep["outcome"], "refused")
        self.assertIn(override + " sets ExecStart= with --no-persistence-mode", rep["reason"])
        self.assertEqual(rep["steps"], [])
        self.assertFalse(os.path.exists(self.root.p(DROPIN)))
        self.assertEqual(set(self.write_calls().values()), {0})

    def test_a_drop_in_applied_before_gpuwarms_keeps_its_exec_start_less_the_flag(self):
        # 10-local.conf sorts before 50-gpuwarm.conf: its ExecStart= (another path to the library the daemon loads)
        # is what systemd runs, so it is what gpuwarm's drop-in takes over, less the flag; not the unit file's.
        early = "/etc/systemd/system/nvidia-persistenced.service.d/10-local.conf"
        self.root.write(early.lstrip("/"), "[Service]\nExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user "
                        "nvidia-persistenced --no-persistence-mode --nvidia-cfg-path=/opt/nv/lib\n")
        self.add_unit(drop_ins=(early,))
        self.watch_systemd()
        rc, rep, r = self.fix()
        self.assertEqual(rc, 0, r.stdout + r.stderr)
        with open(self.root.p(DROPIN)) as f:
            self.assertIn("ExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced "
                          "--nvidia-cfg-path=/opt/nv/lib\n", f.read())

    def refused_as_masked(self, file_state, unmask):
        self.add_unit(load_state="masked", file_state=file_state)  # systemd's shape of a mask: LoadState=masked
        rc, rep, r = self.fix()
        self.assertEqual(rc, 3, r.stdout + r.stderr)
        self.assertEqual(rep["outcome"], "refused")
        self.assertIn(unmask, rep["reason"])
        self.assertFalse(os.path.exists(self.root.p(DROPIN)))
        self.assertEqual(set(self.write_calls().values()), {0})
        d = h.run(["diagnose", "--json"], root=self.root, systemd=True, scenario_obj=self.scenario())
        self.assertIn("PD004", [f["rule_id"] for f in json.loads(d.stdout)["findings"]], d.stdout)

    def test_masked_unit_is_refused(self):
        self.refused_as_masked("masked", "systemctl unmask nvidia-persistenced.service")

    def test_unit_masked_until_reboot_is_refused_before_any_change(self):
        self.refused_as_masked("masked-runtime", "systemctl unmask --runtime nvidia-persistenced.service")

    def test_start_job_failed(self):
        self.add_unit(start_result="failed")
        self.watch_systemd()
        rc, rep, r = self.fix()
        self.assertEqual(rc, 1, r.stdout)
        last = rep["steps"][-1]
        self.assertEqual((last["kind"], last["status"]), ("start", "failed"))
        self.assertIn('job ended with result "failed"', last["detail"])
        self.assertEqual([s["status"] for s in rep["steps"][:-1]], ["done"] * 4)

    def test_start_job_timeout(self):
        self.add_unit(start_result=None)
        rc, rep, r = self.fix("--job-timeout", "1")
        self.assertEqual(rc, 1)
        self.assertIn("no job result within 1000 ms", rep["steps"][-1]["detail"])

    def test_ctrl_c_mid_fix_finishes_the_step_and_writes_the_report(self):
        self.add_unit(start_result=None)  # a start job that never ends: fix waits in its critical section
        p = self.start_fix("--job-timeout", "2")
        deadline = time.monotonic() + 10
        while not self.mock.GetMethodCalls("StartUnit") and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(self.mock.GetMethodCalls("StartUnit"), "fix never reached StartUnit")
        p.send_signal(signal.SIGINT)
        # Said at once, while the step still waits (its job timeout is 2 s), not only when the run ends.
        said = ""
        while "received" not in said:
            line = p.stderr.readline()
            self.assertTrue(line, "stderr ended without a word on the signal")
            said += line
        self.assertIsNone(p.poll(), "the notice came only as the run ended")
        self.assertIn("gpuwarm fix: SIGINT received: the steps run to their end first", said)
        out, err = p.communicate(timeout=20)
        self.assertNotIn("AddressSanitizer", err)
        rep = json.loads(out)  # the report is whole although Ctrl-C came mid-step
        self.assertEqual(rep["interrupted"], "SIGINT")
        self.assertEqual(rep["interrupted_during"], "steps")
        self.assertEqual([s["status"] for s in rep["steps"]], ["done"] * 4 + ["failed"])
        self.assertIn("no job result within 2000 ms", rep["steps"][-1]["detail"])
        self.assertEqual(p.returncode, 1)
        self.assertNotIn("verify", rep)

    def signal_while_verifying(self, sig):
        # The node is changed by then: `fix --json > report` and the Ansible module must still learn that.
        self.add_unit()
        self.watch_systemd()
        p = self.start_fix("--settle", "30")
        deadline = time.monotonic() + 10
        while not os.path.exists(self.started_flag) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(os.path.exists(self.started_flag), "fix never started the unit")
        time.sleep(0.5)  # past the last step: settling now
        started = time.monotonic()
        p.send_signal(sig)
        out, err = p.communicate(timeout=20)
        self.assertLess(time.monotonic() - started, 5, "the settle wait was not cut short")
        self.assertNotIn("AddressSanitizer", err)
        self.assertEqual(p.returncode, 128 + sig, err)
        rep = json.loads(out)
        self.assertEqual(rep["interrupted"], sig.name)
        self.assertEqual(rep["interrupted_during"], "verification")
        self.assertTrue(rep["changed"])
        self.assertEqual([s["status"] for s in rep["steps"]], ["done"] * 5)
        self.assertNotIn("verify", rep)

    def test_a_signal_while_verifying_ends_the_verification_not_the_report(self):
        self.signal_while_verifying(signal.SIGTERM)

    def test_ctrl_backslash_while_verifying_is_a_stop_too(self):
        # SIGQUIT is held as a stop during the steps; a moment later it must not end the run without its report.
        self.signal_while_verifying(signal.SIGQUIT)

    def test_a_slow_daemon_reload_is_waited_for(self):
        # A daemon-reload on a busy node takes longer than the 5 s other calls get.
        self.add_unit()
        self.mock.AddMethod(MANAGER, "Reload", "", "", "import time; time.sleep(6)")
        self.watch_systemd()
        rc, rep, r = self.fix()
        self.assertEqual(rc, 0, r.stdout + r.stderr)
        reload = [s for s in rep["steps"] if s["kind"] == "reload"][0]
        self.assertEqual(reload["status"], "done")

    def test_permission_denied(self):
        self.add_unit()
        self.mock.AddMethod(MANAGER, "Reload", "", "",
                            "raise dbus.exceptions.DBusException('Access denied', "
                            "name='org.freedesktop.DBus.Error.AccessDenied')")
        rc, rep, r = self.fix()
        self.assertEqual(rc, 1)
        failed = [s for s in rep["steps"] if s["status"] == "failed"][0]
        self.assertEqual(failed["kind"], "reload")
        self.assertIn("AccessDenied", failed["detail"])
        self.assertTrue(all(s["status"] == "not-run" for s in rep["steps"][2:]))

    def test_manager_without_enable_unit_files(self):
        self.add_unit(with_enable=False)
        rc, rep, r = self.fix()
        self.assertEqual(rc, 1)
        failed = [s for s in rep["steps"] if s["status"] == "failed"][0]
        self.assertEqual(failed["kind"], "enable")

    def test_a_static_unit_is_wanted_by_multi_user_target_not_enabled(self):
        # Ubuntu's unit has no [Install] section (UnitFileState=static): EnableUnitFiles would change nothing.
        # Where nothing wants it, fix has multi-user.target want it (systemctl add-wants), then starts it.
        self.add_unit(file_state="static")
        self.mock.AddMethod(MANAGER, "EnableUnitFiles", "asbb", "ba(sss)", "ret = (False, [])")
        self.mock.AddMethod(MANAGER, "AddDependencyUnitFiles", "asssbb", "a(sss)",
                            "ret = [('symlink', '/etc/systemd/system/multi-user.target.wants/' + args[0][0], "
                            "'/lib/systemd/system/' + args[0][0])]")
        r = h.run(["fix", "--dry-run"], root=self.root, systemd=True, scenario_obj=self.scenario())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("AddDependencyUnitFiles([nvidia-persistenced.service], multi-user.target, Wants", r.stdout)
        self.assertNotIn("EnableUnitFiles", r.stdout)
        self.watch_systemd()
        rc, rep, r = self.fix()
        self.assertEqual(rc, 0, r.stdout + r.stderr)
        self.assertEqual([s["kind"] for s in rep["steps"]], ["write-file", "reload", "add-wants", "reload", "start"])
        self.assertEqual(self.write_calls()["EnableUnitFiles"], 0)
        checks = {c["id"]: c for c in rep["verify"]["checks"]}
        self.assertEqual(checks["unit-enabled"]["status"], "pass")
        self.assertEqual(checks["unit-enabled"]["detail"], "static, wanted by multi-user.target")

    def test_a_static_unit_a_udev_rule_pulls_in_starts_at_boot(self):
        # Ubuntu: the driver's udev rule makes its device unit want the service (SYSTEMD_WANTS).
        self.add_unit(file_state="static")
        self.unit.UpdateProperties(UNIT_IFACE, {"WantedBy": dbus.Array(["sys-bus-pci-drivers-nvidia.device"],
                                                                       signature="s")})
        r = h.run(["fix", "--dry-run"], root=self.root, systemd=True, scenario_obj=self.scenario())
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("EnableUnitFiles", r.stdout)
        self.assertNotIn("AddDependencyUnitFiles", r.stdout)
        d = json.loads(h.run(["diagnose", "--json"], root=self.root, systemd=True, scenario_obj=self.scenario()).stdout)
        self.assertNotIn("PD004", [f["rule_id"] for f in d["findings"]])

    def test_a_daemon_outside_systemd_is_not_started_beside(self):
        # Started by rc.local: the unit's start would fail on the daemon's lock, and its ExecStopPost would
        # delete the running daemon's socket and PID file.
        self.add_unit()
        self.root.daemon_process(holds=[0, 1], cgroup="/system.slice/rc-local.service")
        rc, rep, r = self.fix(scenario=h.scenario([h.gpu(0, persistence=1), h.gpu(1, persistence=1)]))
        self.assertEqual(rc, 3, r.stdout + r.stderr)
        self.assertIn("outside systemd", rep["reason"])
        self.assertIn("PD010", [f["rule_id"] for f in rep["diagnosis"]["findings"]])
        self.assertFalse(os.path.exists(self.root.p(DROPIN)))
        self.assertEqual(self.write_calls(), {"Reload": 0, "EnableUnitFiles": 0, "StartUnit": 0, "RestartUnit": 0})

    def test_lock_keeps_two_runs_apart(self):
        self.add_unit()
        with open(self.root.p("run/gpuwarm-fix.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            rc, rep, r = self.fix()
            # reset shares the lock (test_real_systemd shows it on a live tree); with --root it never acts, so it
            # refuses --yes before it takes the lock or writes a lock file into the tree.
            os.rename(self.root.p("run/gpuwarm-fix.lock"), self.root.p("run/held.lock"))
            reset = h.run(["reset", "--gpu", "0", "--yes", "--json"], root=self.root, systemd=True,
                          scenario_obj=self.scenario())
        self.assertEqual(rc, 7)
        self.assertIn("another `gpuwarm fix`, `reset` or `reload-modules` is running", r.stdout + json.dumps(rep))
        self.assertEqual(self.write_calls()["Reload"], 0)
        self.assertEqual(reset.returncode, 2, reset.stdout + reset.stderr)
        self.assertIn("--root reads another tree", json.loads(reset.stdout)["error"])
        self.assertFalse(os.path.exists(self.root.p("run/gpuwarm-fix.lock")))

    def test_a_reading_sharing_the_lock_is_waited_for(self):
        # A metrics collection or a health check holds the lock shared for a moment: fix waits, says so, goes on.
        self.add_unit()
        self.watch_systemd()
        with open(self.root.p("run/gpuwarm-fix.lock"), "w") as reading:
            fcntl.flock(reading, fcntl.LOCK_SH)
            threading.Timer(1.0, reading.close).start()
            started = time.monotonic()
            rc, rep, r = self.fix()
        self.assertEqual(rc, 0, r.stdout + r.stderr)
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertIn("gpuwarm fix: waiting (up to 60 s): `gpuwarm probe` or `watch --load` is timing the GPUs, or "
                      "`diagnose`, `check`, `metrics`, `snapshot` or `verify` is reading them", r.stderr)
        self.assertTrue(rep["changed"])

    def test_unopenable_lock_is_an_error_not_contention(self):
        self.add_unit()
        shutil.rmtree(self.root.p("run"))
        rc, rep, r = self.fix()
        self.assertEqual(rc, 1)
        self.assertEqual(rep["outcome"], "error")
        self.assertIn("cannot open lock", rep["reason"])
        self.assertIn("gpuwarm fix: cannot open lock", r.stderr)
        self.assertEqual(self.write_calls()["Reload"], 0)

    def test_missing_unit_gets_one_written(self):
        self.mock.AddMethod(MANAGER, "LoadUnit", "s", "o",
                            "raise dbus.exceptions.DBusException('no', name='org.freedesktop.systemd1.NoSuchUnit')")
        r = h.run(["fix", "--dry-run", "--json"], root=self.root, systemd=True, scenario_obj=self.scenario())
        rep = json.loads(r.stdout)
        self.assertEqual(rep["steps"][0]["path"], "/etc/systemd/system/nvidia-persistenced.service")
        self.assertIn("ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced", rep["steps"][0]["content"])
        self.assertIn("Type=forking", rep["steps"][0]["content"])


class WithoutSystemd(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.root.driver().daemon_binary().kmsg()

    def test_fix_explains_and_exits_6(self):
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
        # No system bus: start the daemon from this node's own init system.
        r = h.run(["fix"], root=self.root, scenario_obj=off, systemd=True,
                  extra_env={"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/gpuwarm-test-bus"})
        self.assertEqual(r.returncode, 6, r.stdout + r.stderr)
        self.assertIn("systemd is not reachable", r.stdout)
        self.assertIn("--user nvidia-persistenced", r.stdout)
        self.assertIn("Nothing was changed", r.stdout)
        # --no-systemd on a node that may run systemd: no advice to start the daemon outside it (LINT005).
        r = h.run(["fix"], root=self.root, scenario_obj=off)
        self.assertEqual(r.returncode, 6, r.stdout + r.stderr)
        self.assertIn("systemd was not asked (--no-systemd), so nothing was changed", r.stdout)
        self.assertNotIn("--user nvidia-persistenced", r.stdout)

    def test_verify_skips_what_it_cannot_check_and_still_checks_gpus(self):
        self.root.daemon_process()
        r = h.run(["verify", "--json", "--settle", "0", "--samples", "3", "--sample-interval", "0"],
                  root=self.root, scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
        self.assertEqual(checks["unit-active"]["status"], "skip")
        self.assertIn("not available", checks["unit-active"]["detail"])
        self.assertEqual(checks["persistence"]["status"], "pass")
        self.assertEqual(checks["clocks"]["status"], "pass")
        self.assertIn("3 samples", checks["clocks"]["detail"])
        self.assertEqual(checks["dcgm"]["status"], "skip")

    def test_verify_dcgm_not_available(self):
        self.root.daemon_process()
        r = h.run(["verify", "--json", "--settle", "0", "--samples", "1", "--dcgm-level", "1"],
                  root=self.root, scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]),
                  extra_env={"PATH": "/usr/bin:/bin"})
        checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
        self.assertIn("dcgmi not found", checks["dcgm"]["detail"])
        self.assertEqual(checks["dcgm"]["status"], "skip")

    def test_verify_names_thermal_reasons(self):
        self.root.daemon_process()
        r = h.run(["verify", "--json", "--settle", "0", "--samples", "2", "--sample-interval", "0"],
                  root=self.root, scenario_obj=h.scenario([h.gpu(0, reasons=0x40), h.gpu(1)]))
        self.assertEqual(r.returncode, 8)
        clocks = [c for c in json.loads(r.stdout)["checks"] if c["id"] == "clocks"][0]
        self.assertIn("GPU 0: HwThermalSlowdown", clocks["detail"])

    def test_verify_fails_what_it_could_not_read(self):
        # An SM clock NVML never answered, or a GPU whose device file is unknown, is not a pass.
        self.root.daemon_process()
        unread = h.gpu(1, returns={"nvmlDeviceGetClockInfo": 999, "nvmlDeviceGetMinorNumber": 999})
        r = h.run(["verify", "--json", "--settle", "0", "--samples", "2", "--sample-interval", "0"],
                  root=self.root, scenario_obj=h.scenario([h.gpu(0), unread]))
        self.assertEqual(r.returncode, 8, r.stdout + r.stderr)
        checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
        self.assertEqual(checks["clocks"]["status"], "fail")
        self.assertIn("cannot tell: GPU 1's SM clock read in 0 of 2 samples (UNKNOWN)", checks["clocks"]["detail"])
        # NVML's minor unread, the kernel's list names it: the daemon's /dev/nvidia1 is GPU 1's.
        self.assertEqual(checks["daemon-holds-gpus"]["status"], "pass", checks["daemon-holds-gpus"])
        # Neither names it: not a pass.
        self.root.write("proc/driver/nvidia/gpus/0000:07:00.0/information", "Model: \t\t NVIDIA H100 80GB HBM3\n")
        r = h.run(["verify", "--json", "--settle", "0", "--samples", "2", "--sample-interval", "0"],
                  root=self.root, scenario_obj=h.scenario([h.gpu(0), unread]))
        checks = {c["id"]: c for c in json.loads(r.stdout)["checks"]}
        self.assertEqual(checks["daemon-holds-gpus"]["status"], "fail")
        self.assertIn("GPU 1 (its minor number could not be read", checks["daemon-holds-gpus"]["detail"])

    def test_reset_errors_name_the_problem_and_their_code(self):
        scenario = h.scenario([h.gpu(0)])

        def reset(root, *args, scenario_obj=scenario):
            path = root.p("scenario.json")
            with open(path, "w") as f:
                json.dump(scenario_obj, f)
            return h.run(["reset", "--root", root.path, "--no-systemd", "--nvml",
                          os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), *args],
                         extra_env={"FAKE_NVML_SCENARIO": path})

        r = reset(self.root, "--gpu", "0", "--dry-run", "--yes")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--dry-run and --yes contradict each other", r.stderr)
        r = reset(self.root, "--gpu", "7", "--dry-run", "--json")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(json.loads(r.stdout)["exit_code"], 2)
        self.assertIn('no GPU "7"', json.loads(r.stdout)["reason"])
        bare = h.FakeRoot()
        self.addCleanup(bare.cleanup)
        r = reset(bare, "--gpu", "0", "--dry-run", scenario_obj=h.scenario([]))
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("no NVIDIA driver is present", r.stderr)
        # A MIG mode change waiting for a reset (nvidia-smi -mig 1 without one): this reset would apply it.
        os.makedirs(self.root.p("sys/bus/pci/devices"), exist_ok=True)  # no NVSwitch
        r = reset(self.root, "--gpu", "0", "--dry-run", scenario_obj=h.scenario([h.gpu(0, mig_mode=0,
                                                                                       mig_mode_pending=1)]))
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("GPU 0 has a MIG mode change pending (now disabled, enabled after a reset)", r.stdout)

if __name__ == "__main__":
    unittest.main()
