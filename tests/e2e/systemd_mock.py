"""A systemd stand-in on a private system bus: python-dbusmock's systemd
template plus what it lacks (LoadUnit, unit-file state, the Service
interface). Shared by the D-Bus contract tests and the fix/verify tests."""
import shutil
import subprocess
import unittest

try:
    import dbus
    import dbusmock
except ImportError:  # the test modules skip with this reason
    dbus = None

DBUS_MISSING = "python3-dbus / python3-dbusmock not installed"
UNIT = "nvidia-persistenced.service"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
# The template's own escaping (not systemd's): gpuwarm must never build this itself.
UNIT_PATH = "/org/freedesktop/systemd1/unit/" + UNIT.replace(".", "_").replace("-", "_")


def exec_start(argv):
    """An ExecStart property value: a(sasbttttuii)."""
    argv = list(argv)
    return dbus.Array([dbus.Struct((argv[0], dbus.Array(argv, signature="s"), False, dbus.UInt64(0), dbus.UInt64(0),
                                    dbus.UInt64(0), dbus.UInt64(0), dbus.UInt32(0), dbus.Int32(0), dbus.Int32(0)))],
                      signature="(sasbttttuii)")


class SystemdMockCase(dbusmock.DBusTestCase if dbus else unittest.TestCase):
    """Starts a private system bus once per class and a fresh stand-in per test (self.mock)."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("dbus-daemon"):
            raise unittest.SkipTest("dbus-daemon not installed")
        cls.start_system_bus()
        cls.dbus_con = cls.get_dbus(system_bus=True)

    def start_mock(self):
        self.p_mock, self.obj = self.spawn_server_template("systemd", {}, stdout=subprocess.DEVNULL)
        self.mock = dbus.Interface(self.obj, dbusmock.MOCK_IFACE)

    def stop_mock(self):
        self.p_mock.terminate()
        self.p_mock.wait()

    def add_unit(self, load_state="loaded", active="active", sub="running", file_state="enabled",
                 argv=("/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced"), stop_when_unneeded=False,
                 restart="no", with_load_unit=True, control_group="/system.slice/" + UNIT, manager_control_group="",
                 result="success", drop_ins=(), exec_condition=True):
        """Adds nvidia-persistenced.service with these properties; returns its mock interface."""
        self.mock.AddMockUnit(UNIT)
        unit = dbus.Interface(self.dbus_con.get_object("org.freedesktop.systemd1", UNIT_PATH), dbusmock.MOCK_IFACE)
        unit.UpdateProperties(UNIT_IFACE, {"LoadState": load_state, "ActiveState": active})
        unit.AddProperties(UNIT_IFACE, {"SubState": sub, "UnitFileState": file_state,
                                        "StopWhenUnneeded": dbus.Boolean(stop_when_unneeded),
                                        "FragmentPath": "/lib/systemd/system/" + UNIT,
                                        "NeedDaemonReload": dbus.Boolean(False),
                                        "DropInPaths": dbus.Array(list(drop_ins), signature="s"),
                                        "WantedBy": dbus.Array([], signature="s"),
                                        "RequiredBy": dbus.Array([], signature="s"),
                                        "BoundBy": dbus.Array([], signature="s"), "ConsistsOf": dbus.Array([], signature="s")})
        service = {"ExecStart": exec_start(argv), "Restart": restart, "ControlGroup": control_group,
                   "Result": result}
        if exec_condition:  # a systemd that parses ExecCondition= has the property (empty here)
            service["ExecCondition"] = dbus.Array([], signature="(sasbttttuii)")
        unit.AddProperties(SERVICE_IFACE, service)
        # systemd's own root cgroup, as the Manager names it ("" on a host or in a cgroup namespace).
        self.mock.AddProperty(MANAGER, "ControlGroup", manager_control_group)
        if with_load_unit:
            # The template lacks LoadUnit; systemd answers it with the unit's path.
            self.mock.AddMethod(MANAGER, "LoadUnit", "s", "o", "ret = self.units[args[0]]")
        return unit
