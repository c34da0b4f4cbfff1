"""Shared pieces of the end-to-end tests: fake roots, NVML scenarios, running
the real gpuwarm binary, and golden files.

Environment (set by CTest): GPUWARM_BIN, FAKE_NVML_DIR, FAKE_NVML_LEGACY_DIR,
GPUWARM_SOURCE_DIR. GPUWARM_UPDATE_GOLDEN=1 rewrites golden files instead of
comparing.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

BIN = os.environ.get("GPUWARM_BIN", "")
FAKE_NVML_DIR = os.environ.get("FAKE_NVML_DIR", "")
FAKE_NVML_LEGACY_DIR = os.environ.get("FAKE_NVML_LEGACY_DIR", "")
SOURCE_DIR = os.environ.get("GPUWARM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
UPDATE = os.environ.get("GPUWARM_UPDATE_GOLDEN") == "1"

H100 = "NVIDIA H100 80GB HBM3"

# The unit as Ubuntu's driver packages ship it: --no-persistence-mode and StopWhenUnneeded.
PACKAGED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon
Wants=syslog.target
StopWhenUnneeded=true

[Service]
Type=forking
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose
ExecStopPost=/bin/rm -rf /var/run/nvidia-persistenced

[Install]
WantedBy=multi-user.target
"""


def older_gpuwarm(path, option):
    """A gpuwarm from before `option` existed, as the integrations may meet one: refuses it as the CLI refuses an
    unknown option (exit 2, nothing on stdout), runs the real one otherwise. Returns `path`."""
    with open(path, "w") as f:
        f.write(f"""#!/bin/sh
for a in "$@"; do
  [ "$a" = {option} ] && {{ echo "gpuwarm: error: gpuwarm check has no option {option}" >&2; exit 2; }}
done
exec {BIN} "$@"
""")
    os.chmod(path, 0o755)
    return path


def require_binary(test):
    if not BIN or not os.path.exists(BIN):
        raise unittest.SkipTest("GPUWARM_BIN not set: run through ctest")


class FakeRoot:
    """A directory standing in for /, with just the files gpuwarm reads."""

    def __init__(self, path=None):
        self.path = path or tempfile.mkdtemp(prefix="gpuwarm-e2e-")
        os.chmod(self.path, 0o755)
        os.makedirs(self.p("proc"), exist_ok=True)
        os.makedirs(self.p("dev"), exist_ok=True)
        # Every real /proc lists pid 1: a root without it cannot tell which schedulers run.
        self.write("proc/1/comm", "init\n")
        # systemd as PID 1 runs in init.scope below its root cgroup (here the host's, "/").
        self.write("proc/1/cgroup", "0::/init.scope\n")

    def p(self, rel):
        return os.path.join(self.path, rel.lstrip("/"))

    def write(self, rel, text, mode=None):
        os.makedirs(os.path.dirname(self.p(rel)), exist_ok=True)
        with open(self.p(rel), "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        if mode is not None:
            os.chmod(self.p(rel), mode)

    def driver(self, version="580.159.04", gpus=2, open_module=True):
        flavour = "Open Kernel Module for x86_64" if open_module else "x86_64 Kernel Module"
        self.write("proc/driver/nvidia/version",
                   f"NVRM version: NVIDIA UNIX {flavour}  {version}  Release Build  (builder@)  \n"
                   "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
        self.write("sys/module/nvidia/version", version + "\n")
        for i in range(gpus):
            bus = f"0000:{6 + i:02x}:00.0"
            self.write(f"proc/driver/nvidia/gpus/{bus}/information",
                       f"Model: \t\t {H100}\nGPU UUID: \t GPU-{i:08d}-0000-0000-0000-000000000000\n"
                       f"Bus Location: \t {bus}\nDevice Minor: \t {i}\nGPU Excluded:\t No\n")
            self.write(f"dev/nvidia{i}", "", 0o666)
        self.write("dev/nvidiactl", "", 0o666)
        return self

    def pci_gpus_without_driver(self, buses=("3b",), driver=""):
        """NVIDIA GPUs on the PCI bus that no driver took (or `driver` did), as /proc/bus/pci/devices and /sys
        show them."""
        lines = ""
        for bus in buses:
            address = f"0000:{bus}:00.0"
            lines += f"{bus}00\t10de2335\t0" + "\t               0" * 14 + f"\t{driver}\n"  # last field: the driver
            self.write(f"sys/bus/pci/devices/{address}/vendor", "0x10de\n")
            self.write(f"sys/bus/pci/devices/{address}/class", "0x030200\n")
            if driver:  # as sysfs links them: the device to its driver, the driver to its module
                os.symlink(f"../../drivers/{driver}", self.p(f"sys/bus/pci/devices/{address}/driver"))
                module_link = self.p(f"sys/bus/pci/drivers/{driver}/module")
                if not os.path.islink(module_link):
                    os.makedirs(os.path.dirname(module_link), exist_ok=True)
                    os.symlink(f"../../../../module/{driver}", module_link)
        self.write("proc/bus/pci/devices", lines)
        return self

    def daemon_binary(self, path="/usr/bin/nvidia-persistenced"):
        self.write(path, "#!/bin/sh\n", 0o755)
        return self

    def daemon_process(self, pid=4242, args=("--user", "nvidia-persistenced"), holds=(0, 1),
                       cgroup="/system.slice/nvidia-persistenced.service"):
        argv = ["/usr/bin/nvidia-persistenced", *args]
        self.write(f"proc/{pid}/cgroup", f"0::{cgroup}\n")
        self.write(f"proc/{pid}/comm", "nvidia-persiste\n")
        self.write(f"proc/{pid}/cmdline", "\0".join(argv) + "\0")
        self.write(f"proc/{pid}/status", "Name:\tnvidia-persiste\nUid:\t0\t0\t0\t0\n")
        # What it runs is what makes it the daemon (a process names itself): the link, and the file it names.
        os.symlink(argv[0], self.p(f"proc/{pid}/exe"))
        os.makedirs(self.p(f"proc/{pid}/fd"), exist_ok=True)
        os.symlink("/dev/nvidiactl", self.p(f"proc/{pid}/fd/3"))
        for n, minor in enumerate(holds):
            os.symlink(f"/dev/nvidia{minor}", self.p(f"proc/{pid}/fd/{4 + n}"))
        self.write("run/nvidia-persistenced/nvidia-persistenced.pid", f"{pid}\n")
        self.write("run/nvidia-persistenced/socket", "")
        return self

    def kmsg(self, lines=(), mode=0o644):
        text = "".join(f"6,{n},{n * 1000},-;{line}\n" for n, line in enumerate(lines))
        self.write("dev/kmsg", text, mode)
        return self

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def gpu(index=0, persistence=1, reasons=1, **extra):
    g = {
        "name": H100,
        "uuid": f"GPU-{index:08d}-0000-0000-0000-000000000000",
        "pci_bus_id": f"00000000:{6 + index:02X}:00.0",
        "minor": index,
        "persistence": persistence,
        "pstate": 0,
        "clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
        "max_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
        "app_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
        "default_app_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
        "event_reasons": reasons,
        "supported_event_reasons": 511,
        "fields": {"269": 0, "270": 0, "271": 0, "75": 0},
        "temperature": 35,
        "power_mw": 70000,
        "power_limit_mw": 700000,
        "mig_mode": 0,
        "compute_processes": 0,
    }
    g.update(extra)
    return g


def scenario(gpus, **top):
    s = {"nvml_version": "13.580.159.04", "driver_version": "580.159.04", "gpus": gpus}
    s.update(top)
    return s


NO_NVML = "no NVML library"  # nvml_dir for a node with no libnvidia-ml (a fake root is needed)


def run(args, root=None, scenario_obj=None, nvml_dir=None, extra_env=None, kernel_log=None, systemd=False,
        user=None, raw=False):
    """Runs gpuwarm; returns CompletedProcess with text output."""
    env = {k: v for k, v in os.environ.items() if k != "FAKE_NVML_SCENARIO"}
    env["NO_COLOR"] = "1"
    if not systemd:
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    cmd = [BIN] + list(args)
    collect = (not raw and len(cmd) > 1 and cmd[1] in ("diagnose", "snapshot", "fix", "verify", "check", "reset")
               and "--snapshot" not in args and "--list-rules" not in args and "--root" not in args)
    if root is not None and not collect and "--root" not in args:
        # A root that is not passed on would let the command read (or act on) this machine instead.
        raise ValueError(f"harness.run: root= is not applied to {args!r}: pass --root yourself (raw=True)")
    tmp = None
    if collect:
        if root is not None:
            cmd += ["--root", root.path]
        if kernel_log is not None:
            cmd += ["--kernel-log", kernel_log]
        if not systemd:
            cmd.append("--no-systemd")
        if nvml_dir == NO_NVML:
            # No --nvml: the search stays under the fake root, which holds no library (as on a node without the
            # driver). Without a root it would search this machine.
            if root is None:
                raise ValueError("harness.run: nvml_dir=NO_NVML needs a root")
        else:
            cmd += ["--nvml", os.path.join(nvml_dir or FAKE_NVML_DIR, "libnvidia-ml.so.1")]
        if scenario_obj is not None:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            json.dump(scenario_obj, tmp)
            tmp.close()
            os.chmod(tmp.name, 0o644)
            env["FAKE_NVML_SCENARIO"] = tmp.name
    if extra_env:
        env.update(extra_env)
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", "--"] + cmd
    try:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


_VOLATILE_JSON_KEYS = {"hostname", "collected_at", "taken_at", "collect_ms", "stage_ms", "init_ms", "load_ms", "devices_ms",
                       "attach_ms",
                       "shutdown_ms", "nvml_init_ms", "gpuwarm_version", "root"}


def normalize_json(obj, root=None):
    """Blanks values that differ run to run (times, host, temp paths)."""
    if isinstance(obj, dict):
        return {k: ("<volatile>" if k in _VOLATILE_JSON_KEYS else normalize_json(v, root)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [normalize_json(v, root) for v in obj]
    if isinstance(obj, str):
        return normalize_text(obj, root)
    return obj


def normalize_text(text, root=None):
    if root is not None:
        text = text.replace(root.path, "<root>")
    for d in (FAKE_NVML_DIR, FAKE_NVML_LEGACY_DIR):
        if d:
            text = text.replace(d, "<fake-nvml>")
    text = re.sub(r"/tmp/gpuwarm-e2e-\w+", "<root>", text)
    text = re.sub(r"gpuwarm diagnose · \S+", "gpuwarm diagnose · <host>", text)
    text = re.sub(r"NVML init [0-9.]+ ms", "NVML init <ms> ms", text)
    return text


def check_golden(test, name, actual):
    path = os.path.join(GOLDEN_DIR, name)
    if UPDATE:
        with open(path, "w") as f:
            f.write(actual)
        return
    if not os.path.exists(path):
        test.fail(f"golden file {name} missing: run with GPUWARM_UPDATE_GOLDEN=1 to create it")
    with open(path) as f:
        expected = f.read()
    test.maxDiff = None
    test.assertEqual(actual, expected, f"{name} differs; GPUWARM_UPDATE_GOLDEN=1 rewrites it after review")
