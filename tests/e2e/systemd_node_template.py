"""A python-dbusmock template: systemd as one fake node sees it, for tests
that run several nodes at once (each on its own bus), such as the Ansible
tests. Unlike systemd_mock.py, nothing in the test process has to play
systemd's part: the stand-in does what systemd would do to the node.

Parameters (a JSON object on the dbusmock command line):
  root (str)             the node's fake root (harness.FakeRoot)
  active_state (str)     nvidia-persistenced.service's ActiveState, default "inactive"
  unit_file_state (str)  default "disabled"
  argv (list of str)     ExecStart, default the packaged unit's
  stop_when_unneeded (bool), restart (str)
  start_result (str)     the start job's result: "done" (default) or e.g. "failed"
  holds (list of int)    GPU minors the started daemon holds, default [0, 1]

EnableUnitFiles flips UnitFileState to "enabled". A start job that ends
"done" makes the unit active and leaves what a started nvidia-persistenced
leaves in the root: /proc/4242 holding the GPUs, its pid file and socket, and
run/stand-in-daemon-started, which a fake NVML scenario can use
(enabled_when_file_exists) to turn persistence on.
"""
import os
import sys

import dbus
from gi.repository import GLib

from dbusmock import mockobject
from dbusmock.templates.systemd import (BUS_NAME, MAIN_IFACE, MAIN_OBJ, SYSTEM_BUS, UNIT_IFACE,  # noqa: F401
                                        AddMockUnit, GetUnit, escape_unit_name)
from dbusmock.templates.systemd import load as load_systemd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

UNIT = "nvidia-persistenced.service"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
PACKAGED_ARGV = ["/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "--no-persistence-mode", "--verbose"]
STARTED_FLAG = "run/stand-in-daemon-started"


def exec_start(argv):
    argv = [str(a) for a in argv]
    return dbus.Array([dbus.Struct((argv[0], dbus.Array(argv, signature="s"), False, dbus.UInt64(0), dbus.UInt64(0),
                                    dbus.UInt64(0), dbus.UInt64(0), dbus.UInt32(0), dbus.Int32(0), dbus.Int32(0)))],
                      signature="(sasbttttuii)")


def load(mock, parameters):
    load_systemd(mock, parameters)
    if "systemd_version" in parameters:  # the Manager's Version (the template's own: v246)
        mock.UpdateProperties(MAIN_IFACE, {"Version": str(parameters["systemd_version"])})
    mock.node = {k: parameters[k] for k in parameters}
    mock.AddMockUnit(UNIT)
    unit = mockobject.objects[mock.units[UNIT]]
    active = str(parameters.get("active_state", "inactive"))
    unit.UpdateProperties(UNIT_IFACE, {"ActiveState": active})
    unit.AddProperties(UNIT_IFACE, {
        "SubState": "running" if active == "active" else "dead",
        "UnitFileState": str(parameters.get("unit_file_state", "disabled")),
        "StopWhenUnneeded": dbus.Boolean(parameters.get("stop_when_unneeded", True)),
        "FragmentPath": "/lib/systemd/system/" + UNIT,
        "NeedDaemonReload": dbus.Boolean(False),
        "DropInPaths": dbus.Array([], signature="s"),
        "WantedBy": dbus.Array([], signature="s"),
        "RequiredBy": dbus.Array([], signature="s"),
        "BoundBy": dbus.Array([], signature="s"), "ConsistsOf": dbus.Array([], signature="s")})
    service = {"ExecStart": exec_start(parameters.get("argv", PACKAGED_ARGV)),
               "Restart": str(parameters.get("restart", "no"))}
    if parameters.get("exec_condition", True):  # a systemd that parses ExecCondition= has the property
        service["ExecCondition"] = dbus.Array([], signature="(sasbttttuii)")
    unit.AddProperties(SERVICE_IFACE, service)


def unit_object(mock):
    return mockobject.objects[mock.units[UNIT]]


def finish_job(mock, job_path, name, result):
    mock.EmitSignal(MAIN_IFACE, "JobRemoved", "uoss", [dbus.UInt32(1), job_path, name, result])
    return False


def start_job(mock, name):
    mock.next_job_id += 1
    job_path = f"{MAIN_OBJ}/job/{mock.next_job_id}"
    result = str(mock.node.get("start_result", "done"))
    unit = unit_object(mock)
    if result == "done":
        unit.UpdateProperties(UNIT_IFACE, {"ActiveState": "active", "SubState": "running"})
        root = harness.FakeRoot(str(mock.node["root"]))
        if not os.path.exists(root.p("proc/4242")):
            root.daemon_process(holds=[int(m) for m in mock.node.get("holds", [0, 1])])
        open(root.p(STARTED_FLAG), "w").close()
    else:
        unit.UpdateProperties(UNIT_IFACE, {"ActiveState": "failed", "SubState": "failed"})
    GLib.idle_add(finish_job, mock, job_path, name, result)  # after the reply, as systemd does
    return job_path


@dbus.service.method(MAIN_IFACE, in_signature="s", out_signature="o")
def LoadUnit(self, name):
    return self.units[str(name)]


@dbus.service.method(MAIN_IFACE, in_signature="", out_signature="")
def Subscribe(self):
    pass


def effective_settings(root):
    """What systemd makes of the unit's drop-ins on a reload: ExecStart (an empty
    assignment resets it), StopWhenUnneeded, Restart."""
    out = {}
    directory = root.p("etc/systemd/system/" + UNIT + ".d")
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    for name in names:
        if not name.endswith(".conf"):
            continue
        with open(os.path.join(directory, name)) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key == "ExecStart":
                    out["argv"] = value.split() or None
                elif key == "StopWhenUnneeded":
                    out["stop_when_unneeded"] = value in ("yes", "true", "1", "on")
                elif key == "Restart":
                    out["restart"] = value
    return out


@dbus.service.method(MAIN_IFACE, in_signature="", out_signature="")
def Reload(self):
    unit = unit_object(self)
    settings = effective_settings(harness.FakeRoot(str(self.node["root"])))
    if settings.get("argv"):
        unit.UpdateProperties(SERVICE_IFACE, {"ExecStart": exec_start(settings["argv"])})
    if "restart" in settings:
        unit.UpdateProperties(SERVICE_IFACE, {"Restart": settings["restart"]})
    if "stop_when_unneeded" in settings:
        unit.UpdateProperties(UNIT_IFACE, {"StopWhenUnneeded": dbus.Boolean(settings["stop_when_unneeded"])})


@dbus.service.method(MAIN_IFACE, in_signature="s", out_signature="")
def ResetFailedUnit(self, _name):
    pass


@dbus.service.method(MAIN_IFACE, in_signature="asbb", out_signature="ba(sss)")
def EnableUnitFiles(self, names, _runtime, _force):
    unit_object(self).UpdateProperties(UNIT_IFACE, {"UnitFileState": "enabled"})
    return (True, [("symlink", f"/etc/systemd/system/multi-user.target.wants/{n}", f"/lib/systemd/system/{n}")
                   for n in names])


@dbus.service.method(MAIN_IFACE, in_signature="ss", out_signature="o")
def StartUnit(self, name, _mode):
    return start_job(self, name)


@dbus.service.method(MAIN_IFACE, in_signature="ss", out_signature="o")
def RestartUnit(self, name, _mode):
    return start_job(self, name)
