"""gpuwarm's sd-bus client against a systemd stand-in on a private system bus
(python-dbusmock's systemd template, with the pieces it lacks added here).
The same client code talks to the real systemd on a node."""
import json
import shutil
import unittest

import harness as h

from systemd_mock import DBUS_MISSING, MANAGER, UNIT, SystemdMockCase, dbus


@unittest.skipIf(dbus is None, DBUS_MISSING)
class SystemdOverDBus(SystemdMockCase):
    def setUp(self):
        h.require_binary(self)
        self.start_mock()
        self.addCleanup(self.stop_mock)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.root.driver().daemon_binary().kmsg()

    def diagnose(self):
        r = h.run(["diagnose", "--json"], root=self.root, systemd=True,
                  scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        self.assertIn(r.returncode, (0, 3, 4, 5), r.stderr)
        return r.returncode, json.loads(r.stdout)

    def test_reads_unit_state_flags_and_exec_start(self):
        self.root.daemon_process()
        self.add_unit()
        rc, d = self.diagnose()
        svc = d["snapshot"]["service"]
        self.assertTrue(svc["reachable"], svc)
        self.assertEqual((svc["load_state"], svc["active_state"], svc["sub_state"], svc["unit_file_state"]),
                         ("loaded", "active", "running", "enabled"))
        self.assertEqual(svc["exec_start"], ["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced"])
        self.assertEqual(svc["stop_when_unneeded"], False)
        self.assertEqual((rc, d["verdict"]["code"]), (0, "healthy"))
        # The client called LoadUnit (the path comes from systemd, never built locally).
        calls = [c[1] for c in self.mock.GetMethodCalls("LoadUnit")]
        self.assertIn([UNIT], [list(map(str, c)) for c in calls])

    def test_ubuntu_style_unit_is_active_while_persistence_is_off(self):
        self.root.daemon_process(args=("--user", "nvidia-persistenced", "--no-persistence-mode", "--verbose"),
                                 holds=())
        self.add_unit(argv=("/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "--no-persistence-mode",
                            "--verbose"), stop_when_unneeded=True)
        rc, d = self.diagnose()
        ids = [f["rule_id"] for f in d["findings"]]
        self.assertIn("PD002", ids)
        self.assertIn("PD003", ids)
        self.assertEqual(rc, 3)

    def test_a_daemon_outside_the_active_units_cgroup_is_not_the_daemon(self):
        # On NixOS with multi-user Nix any user can build a root-owned store path named nvidia-persistenced, which
        # passes the executable check; only systemd can run a process in the unit's cgroup.
        on = h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)])
        self.root.daemon_process(cgroup="/user.slice/user-1000.slice/session-4.scope")
        self.add_unit()
        r = h.run(["diagnose", "--json"], root=self.root, systemd=True, scenario_obj=on)
        d = json.loads(r.stdout)
        self.assertEqual(d["snapshot"]["service"]["control_group"], "/system.slice/nvidia-persistenced.service")
        self.assertEqual(d["snapshot"]["daemon"]["manager_cgroup"], "/")
        self.assertEqual(d["snapshot"]["daemon"]["processes"], [])
        self.assertEqual(d["snapshot"]["daemon"]["not_daemon"], [{
            "pid": 4242, "why": "runs in /user.slice/user-1000.slice/session-4.scope, outside nvidia-persistenced.service "
                                "(/system.slice/nvidia-persistenced.service), which is active: not the daemon"}])
        self.assertEqual((r.returncode, d["verdict"]["rule_id"]), (3, "PM001"))
        self.assertEqual([f["gpu"] for f in d["findings"] if f["rule_id"] == "PM003"], [0, 1])  # a client
        # The same process in the unit's cgroup is the daemon; a unit that is not active sets nothing apart
        # (a daemon started by hand runs outside it, and other rules speak of that).
        for cgroup, active, kept in (("/system.slice/nvidia-persistenced.service", "active", True),
                                     ("/user.slice/user-1000.slice/session-4.scope", "inactive", True)):
            self.stop_mock()
            self.start_mock()
            shutil.rmtree(self.root.p("proc/4242"))
            self.root.daemon_process(cgroup=cgroup)
            self.add_unit(active=active, sub="running" if active == "active" else "dead")
            r = h.run(["diagnose", "--json"], root=self.root, systemd=True, scenario_obj=on)
            d = json.loads(r.stdout)
            self.assertEqual([p["pid"] for p in d["snapshot"]["daemon"]["processes"]], [4242] if kept else [],
                             (cgroup, active))
            self.assertEqual(d["snapshot"]["daemon"]["not_daemon"], [], (cgroup, active))

    def test_disabled_unit(self):
        self.root.daemon_process()
        self.add_unit(file_state="disabled")
        rc, d = self.diagnose()
        self.assertEqual((rc, d["verdict"]["rule_id"]), (3, "PD004"))

    def test_failed_unit(self):
        self.add_unit(active="failed", sub="failed")
        rc, d = self.diagnose()
        self.assertIn("PD006", [f["rule_id"] for f in d["findings"]])

    def test_a_start_the_guard_skipped_is_named(self):
        # After a driver update without a reboot the guard's ExecCondition skipped the start: the unit is inactive
        # (not failed), persistence is off, and diagnose says where the reason is.
        guard = "/etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"
        self.add_unit(active="inactive", sub="dead", result="exec-condition", drop_ins=(guard,))
        r = h.run(["diagnose", "--json"], root=self.root, systemd=True,
                  scenario_obj=h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)]))
        d = json.loads(r.stdout)
        self.assertEqual((r.returncode, d["verdict"]["rule_id"]), (3, "PM001"), r.stderr)
        skipped = [f for f in d["findings"] if f["rule_id"] == "PD008"]
        self.assertEqual(len(skipped), 1, d["findings"])
        self.assertIn("gpuwarm guard (its ExecCondition) skipped the last start", skipped[0]["message"])
        self.assertEqual(skipped[0]["evidence"], ["ActiveState=inactive Result=exec-condition", "drop-in " + guard])
        self.assertEqual(d["snapshot"]["service"]["result"], "exec-condition")
        text = h.run(["diagnose"], root=self.root, systemd=True,
                     scenario_obj=h.scenario([h.gpu(0, persistence=0), h.gpu(1, persistence=0)])).stdout
        self.assertIn("inactive (dead), last start skipped by its ExecCondition", text)

    def test_a_guard_a_systemd_without_exec_condition_ignores_is_named(self):
        # RHEL 8.2's systemd 239 does not parse ExecCondition= (no such property on the unit), so the guard never
        # runs; RHEL 8.3+ run a 239 with it backported: the property is asked for, not the version.
        guard = "/etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"
        self.root.daemon_process()
        self.add_unit(drop_ins=(guard,), exec_condition=False)
        self.mock.UpdateProperties(MANAGER, {"Version": "239 (239-31.el8)"})
        rc, d = self.diagnose()
        ignored = [f for f in d["findings"] if f["rule_id"] == "PD009"]
        self.assertEqual(len(ignored), 1, d["findings"])
        self.assertEqual(ignored[0]["evidence"], ["the unit's Service interface has no ExecCondition property",
                                                  "systemd Version=239 (239-31.el8)", "drop-in " + guard])
        self.assertEqual((d["snapshot"]["service"]["exec_condition"], d["snapshot"]["service"]["manager_version"]),
                         (False, "239 (239-31.el8)"))
        self.assertEqual(rc, 0, "a note: it matters at the next driver update, not now")

    def test_under_a_root_with_another_systemd_the_bus_does_not_speak_for_it(self):
        # An image tree (systemd 252) read on a host whose systemd (239, no ExecCondition=) answers on the bus:
        # what that one knows says nothing of the tree's, so no PD009 and the fact is unknown (the role's guard
        # goes in).
        guard = "/etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"
        self.root.daemon_process()
        self.root.write("usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so", "")
        self.add_unit(drop_ins=(guard,), exec_condition=False)
        self.mock.UpdateProperties(MANAGER, {"Version": "239 (239-31.el8)"})
        rc, d = self.diagnose()
        self.assertNotIn("PD009", [f["rule_id"] for f in d["findings"]])
        self.assertEqual(d["snapshot"]["service"]["exec_condition"],
                         {"missing": "the tree's systemd is 252, the one on the bus 239: not asked of the tree's"})
        # The same systemd on both sides: the bus's answer stands.
        self.mock.UpdateProperties(MANAGER, {"Version": "252 (252.39-1~deb12u1)"})
        rc, d = self.diagnose()
        self.assertIs(d["snapshot"]["service"]["exec_condition"], False)

    def test_a_backported_exec_condition_is_not_named(self):
        guard = "/etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"
        self.root.daemon_process()
        self.add_unit(drop_ins=(guard,))
        self.mock.UpdateProperties(MANAGER, {"Version": "239 (239-82.el8_10.2)"})
        rc, d = self.diagnose()
        self.assertIs(d["snapshot"]["service"]["exec_condition"], True)
        self.assertNotIn("PD009", [f["rule_id"] for f in d["findings"]])

    def test_get_unit_fallback_when_load_unit_is_unknown(self):
        self.root.daemon_process()
        self.add_unit(with_load_unit=False)
        rc, d = self.diagnose()
        self.assertTrue(d["snapshot"]["service"]["reachable"])
        self.assertEqual(d["snapshot"]["service"]["active_state"], "active")

    def test_unit_not_found(self):
        self.mock.AddMethod(MANAGER, "LoadUnit", "s", "o",
                            "raise dbus.exceptions.DBusException('Unit %s not found.' % args[0], "
                            "name='org.freedesktop.systemd1.NoSuchUnit')")
        rc, d = self.diagnose()
        svc = d["snapshot"]["service"]
        self.assertTrue(svc["reachable"])
        self.assertEqual(svc["load_state"], "not-found")
        self.assertIn("PD007", [f["rule_id"] for f in d["findings"]])

    def test_bus_without_systemd(self):
        self.stop_mock()
        r = h.run(["diagnose", "--json"], root=self.root, systemd=True, scenario_obj=h.scenario([h.gpu(0), h.gpu(1)]))
        d = json.loads(r.stdout)
        self.assertFalse(d["snapshot"]["service"]["reachable"])
        self.assertIn("no systemd on the system bus", d["snapshot"]["service"]["unreachable"])
        # A fresh mock, so the cleanup registered in setUp has a process to stop.
        self.start_mock()


if __name__ == "__main__":
    unittest.main()
