"""contrib/slurm against a real Slurm (Debian 12's slurmctld and slurmd 22.05, with munge): one node, run by
the test as root in a state directory of its own and a network namespace of its own (loopback only, nothing
reaches out), with gpuwarm-healthcheck as HealthCheckProgram checking a fake node. Healthy: srun runs a job.
Persistence off: the node is drained with a "gpuwarm:" reason. Fixed: resumed. An admin's own drain is left
alone. Every daemon is started by the test, bounded by `timeout`, and stopped at the end; the prolog mode is
checked on its own (exit status and reason, as Slurm reads them)."""
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h

SLURM_DIR = os.path.join(h.SOURCE_DIR, "contrib", "slurm")
TOOLS = ("slurmctld", "slurmd", "munged", "srun", "scontrol", "sinfo", "sdiag", "ip", "unshare", "nsenter", "setpriv")
INTERVAL = 3  # HealthCheckInterval, seconds


def missing_tools():
    return [t for t in TOOLS if not shutil.which(t)]


class FakeGpuNode:
    """A fake node gpuwarm checks: the daemon binary installed, persistence set through the NVML scenario."""

    def __init__(self, tmp):
        self.root = h.FakeRoot()
        self.root.driver(gpus=2).daemon_binary()
        self.scenario = os.path.join(tmp, "scenario.json")
        self.set_persistence(1)

    def set_persistence(self, gpu0):
        with open(self.scenario + ".new", "w") as f:
            json.dump(h.scenario([h.gpu(0, persistence=gpu0), h.gpu(1)]), f)
        os.replace(self.scenario + ".new", self.scenario)

    def env(self):
        return {"GPUWARM": h.BIN, "FAKE_NVML_SCENARIO": self.scenario, "GPUWARM_REQUIRE_GPU": "yes",
                "ASAN_OPTIONS": "detect_leaks=0",
                "GPUWARM_CHECK_ARGS": f"--root {self.root.path} --no-systemd --nvml "
                                      f"{os.path.join(h.FAKE_NVML_DIR, 'libnvidia-ml.so.1')}"}


def node_record(state, reason, fields=()):
    """`scontrol show node gpu1` as Slurm 22.05 prints it (src/api/node_info.c: a group of fields a line, each
    line break and indent a space with -o; the reason, when set, after the power and sensor lines; then, when set,
    Comment=, Extra=, InstanceId=/InstanceType=, ReservationName= and, in later releases, TLSCert*=, Topology=,
    Parameters=, each on a line of its own)."""
    lines = ["NodeName=gpu1 Arch=x86_64 CoresPerSocket=1 ",
             "   CPUAlloc=0 CPUEfctv=1 CPUTot=1 CPULoad=0.80",
             "   AvailableFeatures=(null)",
             "   ActiveFeatures=(null)",
             "   Gres=(null)",
             "   NodeAddr=gpu1 NodeHostName=gpu1 Version=22.05.8",
             "   OS=Linux 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22) ",
             "   RealMemory=1 AllocMem=0 FreeMem=21825 Sockets=1 Boards=1",
             f"   State={state} ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A",
             "   Partitions=debug ",
             "   BootTime=2026-12-01T06:00:00 SlurmdStartTime=2026-12-01T06:01:00",
             "   LastBusyTime=2026-12-02T05:00:00",
             "   CfgTRES=cpu=1,mem=1M,billing=1",
             "   AllocTRES=",
             "   CapWatts=n/a",
             "   CurrentWatts=0 AveWatts=0",
             "   ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s"]
    if reason:
        lines.append(f"   Reason={reason}")
    lines += [f"   {field}" for field in fields]
    return "\n".join(lines) + "\n\n"


class HealthCheckDecisions(unittest.TestCase):
    """What gpuwarm-healthcheck asks of slurmctld for each node state, with a stand-in scontrol that answers
    `show node gpu1` from a file and records every update (the real Slurm below covers drain and resume end to end)."""

    def setUp(self):
        h.require_binary(self)
        self.tmp = tempfile.mkdtemp(prefix="gpuwarm-hc-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.node = FakeGpuNode(self.tmp)
        self.addCleanup(self.node.root.cleanup)
        self.scontrol = os.path.join(self.tmp, "scontrol")
        with open(self.scontrol, "w") as f:
            f.write(f"""#!/bin/sh
case "$*" in
  "show node gpu1") cat {self.tmp}/node-record ;;
  "-o show node gpu1") cat {self.tmp}/node-line ;;
  show*|-o*) echo "unexpected: $*" >> {self.tmp}/updates; exit 1 ;;
  *) echo "$*" >> {self.tmp}/updates ;;
esac
""")
        os.chmod(self.scontrol, 0o755)

    def decide(self, state, reason, persistence, extra_check_args="", state_dir=None, extra_env=None, fields=()):
        record = node_record(state, reason, fields)
        with open(os.path.join(self.tmp, "node-record"), "w") as f:
            f.write(record)
        with open(os.path.join(self.tmp, "node-line"), "w") as f:  # the same as `scontrol -o` prints it
            f.write(record.rstrip("\n").replace("\n   ", " ") + "\n")
        updates = os.path.join(self.tmp, "updates")
        if os.path.exists(updates):
            os.unlink(updates)
        self.node.set_persistence(persistence)
        env = {"PATH": "/usr/bin:/bin", "SLURMD_NODENAME": "gpu1", "SCONTROL": self.scontrol, **self.node.env()}
        env["GPUWARM_CHECK_ARGS"] += extra_check_args
        env["GPUWARM_STATE_DIR"] = state_dir or self.tmp
        env.update(extra_env or {})
        r = subprocess.run([os.path.join(SLURM_DIR, "gpuwarm-healthcheck")], env=env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        if not os.path.exists(updates):
            return []
        with open(updates) as f:
            return f.read().splitlines()

    def test_only_a_node_in_service_is_drained_and_only_gpuwarm_s_plain_drain_resumed(self):
        drain = "update NodeName=gpu1 State=DRAIN Reason=gpuwarm: PM001 persistence off: GPU 0"
        resume = "update NodeName=gpu1 State=RESUME"
        ours = "gpuwarm: PM001 persistence off: GPU 0 [root@2026-12-02T06:00:00]"
        cases = [
            ("IDLE", "", 0, [drain]),
            ("MIXED", "", 0, [drain]),
            ("IDLE+DRAIN", ours, 1, [resume]),
            ("IDLE+DRAIN", ours, 0, []),  # still ours, same reason: nothing to change
            ("IDLE+DRAIN", "admin: replacing a fan", 0, []),
            ("IDLE+DRAIN", "admin: replacing a fan", 1, []),
            # Taken out of service some other way: never drained over, never resumed.
            ("DOWN", "admin: RMA fan", 0, []),
            ("DOWN+DRAIN", ours, 1, []),
            ("IDLE+MAINT+RESERVED", "", 0, []),
            ("IDLE+REBOOT_REQUESTED", "", 0, []),
            ("DOWN+REBOOT_ISSUED", ours, 1, []),
            ("IDLE+POWERED_DOWN", "", 0, []),
        ]
        for state, reason, persistence, expected in cases:
            with self.subTest(state=state, reason=reason, persistence=persistence):
                self.assertEqual(self.decide(state, reason, persistence), expected)


    def test_fields_slurm_prints_after_the_reason_are_not_read_as_part_of_it(self):
        # A node comment, Extra, a cloud instance, a reservation (and later releases' TLS, topology, parameters)
        # follow the reason: gpuwarm's own reason, already set, is not sent again (an update to slurmctld from
        # every node on every run), and the node is still resumed when fixed.
        ours = "gpuwarm: PM001 persistence off: GPU 0 [root@2026-12-02T06:00:00]"
        resume = "update NodeName=gpu1 State=RESUME"
        after = [
            ["Comment=rack12 row 3"],
            ['Extra={"rack": 12, "rma": "4711"}'],
            ["InstanceId=i-0123456789abcdef0 InstanceType=p5.48xlarge"],
            ["ReservationName=maint_dec"],
            ["Comment=rack12", "Extra=x", "InstanceId=i-0123456789abcdef0 InstanceType=p5.48xlarge",
             "ReservationName=maint_dec", "TLSCertTokenSet=No TLSCertLastRenewal=2026-12-01T06:00:00",
             "Topology=default:s1", "Parameters=x"],
            # Text after the reason that looks like one of its own: only the reason's line is read.
            ["Comment=was Reason=gpuwarm: PM001 persistence off: GPU 1 [root@2026-12-02T06:00:00]"],
        ]
        for fields in after:
            with self.subTest(fields=fields):
                self.assertEqual(self.decide("IDLE+DRAIN", ours, 0, fields=fields), [])
                self.assertEqual(self.decide("MIXED+DRAIN", ours, 0, fields=fields), [])
                self.assertEqual(self.decide("IDLE+DRAIN", ours, 1, fields=fields), [resume])
        # Another finding than the one set: the reason is brought up to date, once.
        self.assertEqual(self.decide("IDLE+DRAIN", "gpuwarm: PM001 persistence off: GPU 1 [root@2026-12-02T06:00:00]",
                                     0, fields=["Comment=rack12"]),
                         ["update NodeName=gpu1 Reason=gpuwarm: PM001 persistence off: GPU 0"])
        # In service with a comment: drained. An admin's drain, or a reservation's maintenance, stays as it is,
        # whatever the comment says.
        self.assertEqual(self.decide("IDLE", "", 0, fields=["Comment=rack12"]),
                         ["update NodeName=gpu1 State=DRAIN Reason=gpuwarm: PM001 persistence off: GPU 0"])
        self.assertEqual(self.decide("IDLE+DRAIN", "admin: replacing a fan [root@2026-12-02T06:00:00]", 1,
                                     fields=["Comment=gpuwarm: PM001 persistence off: GPU 0"]), [])
        self.assertEqual(self.decide("IDLE+MAINT+RESERVED", "", 0, fields=["ReservationName=maint_dec"]), [])
        # A reason Slurm set without a time (no " [user@time]") is compared as it is.
        self.assertEqual(self.decide("IDLE+DRAIN", "gpuwarm: PM001 persistence off: GPU 0", 0,
                                     fields=["Comment=rack12"]), [])

    def test_right_after_boot_persistence_off_is_settling(self):
        # Booted 60 s ago, nvidia-persistenced not yet holding GPU 0: neither a drain nor a resume of gpuwarm's
        # own; the prolog waits for it as for UNK009, then refuses. Without the grace (0), the drain as ever.
        self.node.root.write("proc/uptime", "60.25 100.00\n")
        ours = "gpuwarm: PM001 persistence off: GPU 0 [root@2026-12-02T06:00:00]"
        self.assertEqual(self.decide("IDLE", "", 0), [])
        self.assertEqual(self.decide("IDLE+DRAIN", ours, 0), [])
        env = {"PATH": "/usr/bin:/bin", "SLURMD_NODENAME": "gpu1", "SCONTROL": self.scontrol, **self.node.env(),
               "GPUWARM_PROLOG_WAIT": "2"}
        started = time.monotonic()
        r = subprocess.run([os.path.join(SLURM_DIR, "gpuwarm-prolog")], env=env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr, "gpuwarm: PM001 settling (up 60 s): persistence off: GPU 0\n")
        self.assertGreaterEqual(time.monotonic() - started, 2)
        self.node.set_persistence(1)
        r = subprocess.run([os.path.join(SLURM_DIR, "gpuwarm-prolog")], env=env, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(self.decide("IDLE", "", 0, extra_env={"GPUWARM_BOOT_GRACE": "0"}),
                         ["update NodeName=gpu1 State=DRAIN Reason=gpuwarm: PM001 persistence off: GPU 0"])
        # A gpuwarm older than the scripts (no --boot-grace) is asked again without it: judged, not drained for it.
        old = h.older_gpuwarm(os.path.join(self.tmp, "old-gpuwarm"), "--boot-grace")
        self.assertEqual(self.decide("IDLE", "", 1, extra_env={"GPUWARM": old}), [])
        self.assertEqual(self.decide("IDLE", "", 0, extra_env={"GPUWARM": old}),
                         ["update NodeName=gpu1 State=DRAIN Reason=gpuwarm: PM001 persistence off: GPU 0"])
        self.node.root.write("proc/uptime", "301.00 100.00\n")  # past the grace: a problem
        self.assertEqual(self.decide("IDLE", "", 0),
                         ["update NodeName=gpu1 State=DRAIN Reason=gpuwarm: PM001 persistence off: GPU 0"])

    def test_a_node_another_gpuwarm_command_works_on_is_left_as_it_is_for_a_while(self):
        # A probe times the GPUs: check leaves NVML closed (UNK009, unknown). The health check neither drains (as for
        # another unknown, or for the persistence off NVML would have shown) nor resumes gpuwarm's own drain, for
        # GPUWARM_BUSY_LIMIT at most; the prolog refuses the job, which would meet the probe.
        import fcntl
        os.makedirs(self.node.root.p("run"), exist_ok=True)
        ours = "gpuwarm: PM001 persistence off: GPU 0 [root@2026-12-02T06:00:00]"
        since = os.path.join(self.tmp, "gpuwarm-healthcheck-busy-since")
        env = {"PATH": "/usr/bin:/bin", "SLURMD_NODENAME": "gpu1", "SCONTROL": self.scontrol, **self.node.env(),
               "GPUWARM_STATE_DIR": self.tmp}

        def prolog(wait):
            return subprocess.run([os.path.join(SLURM_DIR, "gpuwarm-prolog")], env=dict(env, GPUWARM_PROLOG_WAIT=wait),
                                  capture_output=True, text=True, timeout=60)
        with open(self.node.root.p("run/gpuwarm-timing.lock"), "w") as probe:
            fcntl.flock(probe, fcntl.LOCK_EX)
            self.assertEqual(self.decide("IDLE", "", 0, state_dir=self.tmp), [])
            self.assertTrue(os.path.exists(since))
            self.assertEqual(self.decide("IDLE+DRAIN", ours, 1, state_dir=self.tmp), [])
            started = time.monotonic()
            r = prolog("2")
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertTrue(r.stderr.startswith("gpuwarm: UNK009 "), r.stderr)
            self.assertGreaterEqual(time.monotonic() - started, 2, "asked again for GPUWARM_PROLOG_WAIT seconds")
            # A wait longer than the prolog's 20 s is cut at it: asking again stops while a last try still fits.
            started = time.monotonic()
            r = prolog("30")
            elapsed = time.monotonic() - started
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertTrue(r.stderr.startswith("gpuwarm: UNK009 "), r.stderr)
            self.assertLess(elapsed, 20, "the prolog's limit")
            self.assertGreaterEqual(elapsed, 12, "asked again for most of it")
            # A command that ends within the wait (a fix restarting the daemon): the job starts, no drain.
            self.node.set_persistence(1)
            release = threading.Timer(1.5, fcntl.flock, (probe, fcntl.LOCK_UN))
            release.start()
            started = time.monotonic()
            r = prolog("8")
            release.join()
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertGreaterEqual(time.monotonic() - started, 1.5)
            fcntl.flock(probe, fcntl.LOCK_EX)
            # Past the limit the answer is an unknown like any other: drained, with how long it has lasted.
            with open(since, "w") as f:
                f.write(f"{int(time.time()) - 3600}\n")
            updates = self.decide("IDLE", "", 0, state_dir=self.tmp)
            self.assertEqual(len(updates), 1, updates)
            self.assertRegex(updates[0], r"^update NodeName=gpu1 State=DRAIN Reason=gpuwarm: UNK009 .* \(for 60 min\)$")
            # A note of a time to come, or one that is not a number, is taken afresh: no grace for ever.
            for bad in (f"{int(time.time()) + 86400}", "soon"):
                with open(since, "w") as f:
                    f.write(bad + "\n")
                self.assertEqual(self.decide("IDLE", "", 0, state_dir=self.tmp), [], bad)
                with open(since) as f:
                    self.assertLessEqual(abs(int(f.read()) - time.time()), 60, bad)
            # A count with a leading zero is decimal (bash would read 0019 as a bad octal number): long past.
            with open(since, "w") as f:
                f.write("0019\n")
            updates = self.decide("IDLE", "", 0, state_dir=self.tmp)
            self.assertEqual(len(updates), 1, updates)
            self.assertIn("Reason=gpuwarm: UNK009 ", updates[0])
            # A folder others can write gets no note written as root, and so no grace.
            shared = os.path.join(self.tmp, "shared")
            os.mkdir(shared)
            os.chmod(shared, 0o1777)
            updates = self.decide("IDLE", "", 0, state_dir=shared)
            self.assertEqual(len(updates), 1, updates)
            self.assertFalse(os.listdir(shared))
        # Without the probe the node is judged again, and the note of since when is gone.
        self.assertEqual(self.decide("IDLE+DRAIN", ours, 1, state_dir=self.tmp), ["update NodeName=gpu1 State=RESUME"])
        self.assertFalse(os.path.exists(since))

    def test_a_reason_with_brackets_of_its_own_is_still_recognized(self):
        # Only Slurm's " [user@time]" is cut from the reason it shows: a gpuwarm line holding " [" is not rewritten
        # on every run.
        line = "gpuwarm: gpuwarm check gave no answer (exit 2): --max-length: 1 is out of range (give one from 16 to 4096)"
        self.assertEqual(self.decide("IDLE", "", 1, " --max-length 1"),
                         [f"update NodeName=gpu1 State=DRAIN Reason={line}"])
        self.assertEqual(self.decide("IDLE+DRAIN", line + " [root@2026-12-02T06:00:00]", 1, " --max-length 1"), [])


class PrologMode(unittest.TestCase):
    def test_prolog_exit_status_and_reason(self):
        h.require_binary(self)
        tmp = tempfile.mkdtemp(prefix="gpuwarm-prolog-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        node = FakeGpuNode(tmp)
        self.addCleanup(node.root.cleanup)
        prolog = os.path.join(SLURM_DIR, "gpuwarm-prolog")
        env = {"PATH": "/usr/bin:/bin", **node.env()}
        r = subprocess.run([prolog], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        node.set_persistence(0)
        r = subprocess.run([prolog], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "gpuwarm: PM001 persistence off: GPU 0")
        # Unknown drains by default, and passes when the site says so.
        env["GPUWARM"] = "/nonexistent/gpuwarm"
        r = subprocess.run([prolog], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("gpuwarm: gpuwarm not found or not executable at /nonexistent/gpuwarm (set GPUWARM)", r.stderr)
        env["GPUWARM_DRAIN_ON_UNKNOWN"] = "no"
        self.assertEqual(subprocess.run([prolog], env=env, capture_output=True, timeout=60).returncode, 0)
        # A typo in the site's arguments: the reason is gpuwarm's own error, not an empty one.
        env.update(GPUWARM=h.BIN, GPUWARM_DRAIN_ON_UNKNOWN="yes")
        env["GPUWARM_CHECK_ARGS"] += " --nvml-timout 3"
        r = subprocess.run([prolog], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), "gpuwarm: gpuwarm check gave no answer (exit 2): gpuwarm check has no "
                                           "option --nvml-timout")
        # The site's arguments are split at blanks and line breaks, never globbed: a file literally named
        # `kern*.log` is the one read, not kern1.log and kern2.log beside it (two words where one was given: exit
        # 2, refused), and the line after the first counts (without its --nvml the node reads as driverless).
        for name in ("kern*.log", "kern1.log", "kern2.log"):
            open(os.path.join(tmp, name), "w").close()
        env["GPUWARM_CHECK_ARGS"] = (node.env()["GPUWARM_CHECK_ARGS"].replace(" --nvml ", "\n--nvml ") +
                                     f" --kernel-log {tmp}/kern*.log")
        node.set_persistence(1)
        r = subprocess.run([prolog], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(glob.glob(os.path.join(tempfile.gettempdir(), "gpuwarm-healthcheck.*")), [])

    def test_prolog_linked_into_a_prolog_folder_finds_its_helper_without_a_search_path(self):
        # Prolog=/etc/slurm/prolog.d/*: a link to the prolog there, run as Slurm runs it (no PATH at all).
        h.require_binary(self)
        tmp = tempfile.mkdtemp(prefix="gpuwarm-prolog-d-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        node = FakeGpuNode(tmp)
        self.addCleanup(node.root.cleanup)
        node.set_persistence(0)
        folder = os.path.join(tmp, "prolog.d")
        os.mkdir(folder)
        os.symlink(os.path.join(SLURM_DIR, "gpuwarm-prolog"), os.path.join(folder, "50-gpuwarm"))
        r = subprocess.run([os.path.join(folder, "50-gpuwarm")], env=node.env(), capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((r.returncode, r.stderr.strip()), (1, "gpuwarm: PM001 persistence off: GPU 0"))
        # A copy, not a link, with no helper beside it and none installed: refused with what to fix (exit 127
        # from a failed exec would drain the node with no reason).
        if os.path.exists("/usr/share/gpuwarm/slurm/gpuwarm-healthcheck"):
            self.skipTest("gpuwarm is installed here: the packaged helper would be found")
        copy = os.path.join(folder, "60-copy")
        shutil.copy(os.path.join(SLURM_DIR, "gpuwarm-prolog"), copy)
        r = subprocess.run([copy], env=node.env(), capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(), f"gpuwarm: gpuwarm-healthcheck not found beside {copy} or in "
                                           "/usr/share/gpuwarm/slurm")


class RealSlurm(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not h.BIN:
            raise unittest.SkipTest("GPUWARM_BIN not set: run through ctest")
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: slurmd, slurmctld and a network namespace of the test's own")
        if missing_tools():
            raise unittest.SkipTest("not installed: " + ", ".join(missing_tools()) +
                                    " (scripts/setup.sh installs slurmctld slurmd munge slurm-client iproute2)")
        cls.procs = []
        cls.tmp = tempfile.mkdtemp(prefix="gpuwarm-slurm-")
        os.chmod(cls.tmp, 0o755)
        try:
            cls._start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _spawn(cls, argv, name, bound_s=600, netns=True):
        log = open(os.path.join(cls.tmp, name + ".out"), "w")
        prefix = ["nsenter", f"--net=/proc/{cls.netns_pid}/ns/net"] if netns else []
        p = subprocess.Popen(["timeout", "-s", "KILL", str(bound_s), *prefix, *argv], stdout=log,
                             stderr=subprocess.STDOUT, env={**os.environ, "SLURM_CONF": cls.conf})
        cls.procs.append((p, log))
        return p

    @classmethod
    def _start(cls):
        # A network namespace with loopback only. glibc's getaddrinfo (AI_ADDRCONFIG, which Slurm uses) finds
        # nothing while every address is a loopback one, so lo also gets a private address; no route leaves.
        cls.netns = subprocess.Popen(["timeout", "-s", "KILL", "900", "unshare", "--net", "sleep", "900"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.procs.append((cls.netns, None))
        # `timeout` forks; its child (unshare, then sleep) holds the namespace: that is what nsenter enters.
        deadline = time.time() + 5
        child = []
        while time.time() < deadline:
            child = subprocess.run(["pgrep", "-P", str(cls.netns.pid)], capture_output=True, text=True).stdout.split()
            if child and os.readlink(f"/proc/{child[0]}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            child = []
            time.sleep(0.02)
        if not child:
            raise unittest.SkipTest("unshare --net did not start (no network namespaces here)")
        cls.netns_pid = int(child[0])
        ns = ["nsenter", f"--net=/proc/{cls.netns_pid}/ns/net", "ip"]
        for args in (["link", "set", "lo", "up"], ["addr", "add", "10.254.0.1/32", "dev", "lo"]):
            r = subprocess.run(ns + args, capture_output=True, text=True)
            if r.returncode != 0:
                raise unittest.SkipTest("cannot set up the test's network namespace: " + r.stderr.strip())

        munge = os.path.join(cls.tmp, "munge")
        os.makedirs(munge)
        shutil.chown(munge, "munge", "munge")
        os.chmod(munge, 0o711)  # munged wants its socket directory searchable by all, writable by none
        key = os.path.join(munge, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        os.chmod(key, 0o600)
        cls.munge_socket = os.path.join(munge, "munge.socket")
        cls.conf = os.path.join(cls.tmp, "slurm.conf")
        cls._spawn(["setpriv", "--reuid=munge", "--regid=munge", "--clear-groups", "munged", "--foreground",
                    f"--socket={cls.munge_socket}", f"--key-file={key}", f"--log-file={munge}/munged.log",
                    f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed"], "munged")

        cls.node = FakeGpuNode(cls.tmp)
        cls.nodename = socket.gethostname().split(".")[0]
        wrapper = os.path.join(cls.tmp, "healthcheck")
        with open(wrapper, "w") as f:
            # slurmd runs the program with SLURMD_NODENAME and nothing else; the site's settings would come from
            # /etc/default/gpuwarm-slurm, the test's from here.
            f.write("#!/bin/bash\n" + "".join(f"export {k}={json.dumps(v)}\n" for k, v in cls.node.env().items()) +
                    f"export SLURM_CONF={cls.conf}\n"
                    f"exec {os.path.join(SLURM_DIR, 'gpuwarm-healthcheck')}\n")
        os.chmod(wrapper, 0o755)
        for d in ("state", "spool"):
            os.makedirs(os.path.join(cls.tmp, d))
        with open(cls.conf, "w") as f:
            f.write(f"""ClusterName=gpuwarmtest
SlurmctldHost={cls.nodename}(127.0.0.1)
SlurmctldPort=26817
SlurmdPort=26818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={cls.munge_socket}
CredType=cred/munge
StateSaveLocation={cls.tmp}/state
SlurmdSpoolDir={cls.tmp}/spool
SlurmctldPidFile={cls.tmp}/slurmctld.pid
SlurmdPidFile={cls.tmp}/slurmd.pid
SlurmctldLogFile={cls.tmp}/slurmctld.log
SlurmdLogFile={cls.tmp}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/linear
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
HealthCheckProgram={wrapper}
HealthCheckInterval={INTERVAL}
HealthCheckNodeState=ANY,CYCLE
NodeName={cls.nodename} NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        deadline = time.time() + 10
        while not os.path.exists(cls.munge_socket) and time.time() < deadline:
            time.sleep(0.05)
        cls._spawn(["slurmctld", "-D", "-i"], "slurmctld")
        time.sleep(0.5)
        cls._spawn(["slurmd", "-D"], "slurmd")
        if not cls.wait_until(lambda: "idle" in cls.sinfo_state(), 40):
            raise AssertionError("the node never came up idle: " + cls.logs())

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "conf", None) and os.path.exists(cls.conf) and getattr(cls, "netns_pid", None):
            cls.slurm("scontrol", "shutdown")
        for p, log in reversed(getattr(cls, "procs", [])):
            if p.poll() is None:
                subprocess.run(["pkill", "-TERM", "-P", str(p.pid)])
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    subprocess.run(["pkill", "-KILL", "-P", str(p.pid)])
                    p.kill()
                    p.wait()
            if log:
                log.close()
        if getattr(cls, "node", None):
            cls.node.root.cleanup()
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def slurm(cls, *argv, timeout=30):
        return subprocess.run(["nsenter", f"--net=/proc/{cls.netns_pid}/ns/net", *argv], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "SLURM_CONF": cls.conf})

    @classmethod
    def sinfo_state(cls):
        return cls.slurm("sinfo", "-h", "-N", "-o", "%T").stdout.strip()

    @classmethod
    def reason(cls):
        return cls.slurm("sinfo", "-h", "-N", "-o", "%E").stdout.strip()

    @classmethod
    def reason_time(cls):
        return cls.slurm("sinfo", "-h", "-N", "-o", "%H").stdout.strip()

    @classmethod
    def node_updates(cls):
        """How many `scontrol update node` requests slurmctld has served (sdiag's RPC statistics)."""
        m = re.search(r"^\s*REQUEST_UPDATE_NODE\s.*\bcount:(\d+)", cls.slurm("sdiag").stdout, re.M)
        return int(m.group(1)) if m else 0

    @classmethod
    def wait_until(cls, fn, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if fn():
                return True
            time.sleep(0.25)
        return False

    @classmethod
    def logs(cls):
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = os.path.join(cls.tmp, name)
            if os.path.exists(path):
                with open(path) as f:
                    out.append(name + ":\n" + "".join(f.readlines()[-15:]))
        return "\n".join(out)

    def run_job(self):
        # A node slurmctld has just resumed can read "idle*" (not responding) until its next ping: wait for a
        # plain "idle" first, as a user would see it in sinfo.
        self.wait_until(lambda: self.sinfo_state() == "idle", 30)
        return self.slurm("srun", "--immediate=10", "-N1", "-t", "1", "true", timeout=60)

    def test_drain_resume_and_an_admins_drain(self):
        # Healthy (persistence on): a job runs, the node is not drained.
        r = self.run_job()
        self.assertEqual(r.returncode, 0, r.stderr + self.logs())
        self.assertNotIn("drain", self.sinfo_state())

        # GPU 0 loses persistence: drained within a health-check interval or two, with gpuwarm's reason.
        self.node.set_persistence(0)
        self.assertTrue(self.wait_until(lambda: "drain" in self.sinfo_state(), 4 * INTERVAL + 10),
                        self.sinfo_state() + self.logs())
        self.assertEqual(self.reason(), "gpuwarm: PM001 persistence off: GPU 0")
        r = self.slurm("srun", "--immediate=5", "-N1", "-t", "1", "true", timeout=60)
        self.assertNotEqual(r.returncode, 0, "a job ran on a drained node")

        # A node comment (scontrol prints it after the reason): gpuwarm's reason is still its own and already
        # set, so the health checks of the next intervals send slurmctld no update at all, and its time (sinfo -R's
        # "drained at") is kept.
        self.assertEqual(self.slurm("scontrol", "update", f"NodeName={self.nodename}",
                                    "Comment=rack12 row 3").returncode, 0)
        since, updates = self.reason_time(), self.node_updates()
        self.assertGreater(updates, 0, "sdiag counts scontrol update")
        time.sleep(3 * INTERVAL)
        self.assertEqual((self.reason(), self.reason_time(), self.node_updates()),
                         ("gpuwarm: PM001 persistence off: GPU 0", since, updates), self.logs())

        # Fixed: gpuwarm resumes the node it drained, and jobs run again.
        self.node.set_persistence(1)
        self.assertTrue(self.wait_until(lambda: "drain" not in self.sinfo_state(), 4 * INTERVAL + 10),
                        self.sinfo_state() + self.logs())
        self.assertEqual(self.run_job().returncode, 0)

        # An admin drains the healthy node for another reason: gpuwarm never resumes it, and never rewrites
        # the admin's reason when it finds a problem too.
        self.assertEqual(self.slurm("scontrol", "update", f"NodeName={self.nodename}", "State=DRAIN",
                                    "Reason=admin: replacing a fan").returncode, 0)
        time.sleep(3 * INTERVAL)
        self.assertIn("drain", self.sinfo_state())
        self.node.set_persistence(0)
        time.sleep(3 * INTERVAL)
        self.assertEqual(self.reason(), "admin: replacing a fan")
        # The admin resumes it while the problem remains: gpuwarm drains it with its own reason.
        self.node.set_persistence(0)
        self.assertEqual(self.slurm("scontrol", "update", f"NodeName={self.nodename}", "State=RESUME").returncode, 0)
        self.assertTrue(self.wait_until(lambda: self.reason().startswith("gpuwarm:"), 4 * INTERVAL + 10),
                        self.reason() + self.logs())


if __name__ == "__main__":
    unittest.main()
