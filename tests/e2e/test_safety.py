"""Safe as root: what gpuwarm runs, writes and reads cannot be turned against
the node. Planted binaries on PATH, untrusted daemon binaries, FIFOs and
devices where files are expected, escape sequences in reports."""
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h


class Base(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.tmp = tempfile.mkdtemp()
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)

    def raw(self, args, env_extra=None, cwd=None, scenario_obj=None, timeout=30):
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        env["NO_COLOR"] = "1"
        if scenario_obj is not None:
            path = os.path.join(self.tmp, "scenario.json")
            with open(path, "w") as f:
                json.dump(scenario_obj, f)
            env["FAKE_NVML_SCENARIO"] = path
        env.update(env_extra or {})
        return subprocess.run([h.BIN, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)

    def fifo(self):
        path = os.path.join(self.tmp, "fifo")
        os.mkfifo(path)
        return path

    def daemon_binary_fact(self):
        """The daemon binary `diagnose` found under the fake root: its path, or {"missing": why}."""
        r = self.raw(["diagnose", "--json", "--no-systemd", "--root", self.root.path, "--nvml",
                      os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")], scenario_obj=h.scenario([]))
        return json.loads(r.stdout)["snapshot"]["daemon"]["binary"]

    def plant(self, directory, name):
        """An executable that leaves a marker if anyone runs it."""
        marker = os.path.join(self.tmp, name + ".ran")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\ntouch {marker}\necho 'nvidia-persistenced:  version 580.159.04'\n")
        os.chmod(path, 0o755)
        return marker


class Executables(Base):
    def test_dcgmi_on_a_relative_path_entry_is_never_run(self):
        self.root.driver(gpus=1).daemon_binary().daemon_process(holds=(0,)).kmsg()
        workdir = os.path.join(self.tmp, "work")
        marker = self.plant(workdir, "dcgmi")
        odd = os.path.join(self.tmp, "'$(touch " + os.path.join(self.tmp, "subst.ran") + ")'")
        self.plant(odd, "dcgmi")
        r = self.raw(["verify", "--json", "--no-systemd", "--root", self.root.path, "--settle", "0", "--samples", "1",
                      "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), "--dcgm-level", "1"],
                     env_extra={"PATH": f".:{odd}:" + os.environ.get("PATH", "")}, cwd=workdir,
                     scenario_obj=h.scenario([h.gpu(0)]))
        self.assertIn(r.returncode, (0, 8), r.stderr)
        self.assertFalse(os.path.exists(marker), "a dcgmi from a relative PATH entry ran as this user")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "subst.ran")), "a shell substitution ran")
        dcgm = [c for c in json.loads(r.stdout)["checks"] if c["id"] == "dcgm"][0]
        if not shutil.which("dcgmi", path="/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin"):
            self.assertIn("not found in 6 system directories", dcgm["detail"])

    def test_a_daemon_on_path_is_not_the_daemon(self):
        marker = self.plant(os.path.join(self.tmp, "bin"), "nvidia-persistenced")
        r = self.raw(["diagnose", "--json", "--no-systemd", "--nvml", os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")],
                     env_extra={"PATH": os.path.join(self.tmp, "bin") + ":" + os.environ.get("PATH", "")},
                     scenario_obj=h.scenario([]))
        d = json.loads(r.stdout)
        binary = d["snapshot"]["daemon"]["binary"]
        self.assertFalse(isinstance(binary, str) and binary.startswith(self.tmp), binary)
        self.assertFalse(os.path.exists(marker))

    def test_a_link_is_only_as_trusted_as_where_it_leads(self):
        # A root-owned link in /usr/bin to a file in a folder anyone may write: anyone could swap that file.
        # (The link's absolute target is taken inside the root, as a container's own links are.)
        open_dir = self.root.p("opt/open")
        os.makedirs(open_dir)
        os.chmod(open_dir, 0o777)
        marker = self.plant(open_dir, "nvidia-persistenced")
        os.makedirs(self.root.p("/usr/bin"), exist_ok=True)
        os.symlink("/opt/open/nvidia-persistenced", self.root.p("/usr/bin/nvidia-persistenced"))
        daemon = self.daemon_binary_fact()
        self.assertIn("leads to /opt/open/nvidia-persistenced", daemon["missing"])
        self.assertIn("writable by group or others", daemon["missing"])
        self.assertFalse(os.path.exists(marker))
        # The same link to a folder only root may write is trusted.
        os.chmod(open_dir, 0o755)
        self.assertEqual(self.daemon_binary_fact(), "/usr/bin/nvidia-persistenced")

    def test_every_link_on_the_way_is_checked(self):
        # /usr/bin/nvidia-persistenced -> /opt/x/link2 -> /srv/real/...: anyone may re-point link2 in /opt/x.
        self.plant(self.root.p("srv/real"), "nvidia-persistenced")
        os.makedirs(self.root.p("opt/x"))
        os.chmod(self.root.p("opt/x"), 0o777)
        os.symlink("/srv/real/nvidia-persistenced", self.root.p("opt/x/link2"))
        os.makedirs(self.root.p("usr/bin"), exist_ok=True)
        os.symlink("/opt/x/link2", self.root.p("usr/bin/nvidia-persistenced"))
        daemon = self.daemon_binary_fact()
        self.assertIn("passes through the link /opt/x/link2", daemon["missing"])

    def test_guard_runs_the_file_it_checked_under_a_root(self):
        # The root's link is absolute: inside the root it leads to a trusted file; from the host's / it would
        # lead to a file anyone may change. The guard runs the one it checked.
        self.root.driver("580.159.04").kmsg()
        side = "/" + os.path.relpath(self.tmp, "/") + "/side"
        inside_marker = self.plant(self.root.p(side.lstrip("/")), "nvidia-persistenced")
        os.makedirs(side, exist_ok=True)
        os.chmod(side, 0o777)
        host_marker = os.path.join(self.tmp, "host.ran")
        with open(os.path.join(side, "nvidia-persistenced"), "w") as f:
            f.write(f"#!/bin/sh\ntouch {host_marker}\necho 'nvidia-persistenced:  version 580.159.04'\n")
        os.chmod(os.path.join(side, "nvidia-persistenced"), 0o777)
        os.makedirs(self.root.p("usr/bin"), exist_ok=True)
        os.symlink(side + "/nvidia-persistenced", self.root.p("usr/bin/nvidia-persistenced"))
        self.raw(["guard", "--root", self.root.path, "--trust-root", "--kernel-log", self.root.p("dev/kmsg"), "--verbose", "--nvml",
                  os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")])
        self.assertFalse(os.path.exists(host_marker), "guard ran the host's file, not the one it checked")
        self.assertTrue(os.path.exists(inside_marker), "guard did not run the checked file")

    def test_guard_does_not_run_a_daemon_binary_others_can_replace(self):
        self.root.driver("580.159.04").kmsg()
        marker = self.plant(self.root.p("/usr/bin"), "nvidia-persistenced")
        os.chmod(self.root.p("/usr/bin/nvidia-persistenced"), 0o777)
        r = self.raw(["guard", "--root", self.root.path, "--trust-root", "--kernel-log", self.root.p("dev/kmsg"), "--verbose", "--nvml",
                      os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")])
        self.assertFalse(os.path.exists(marker), "guard ran a world-writable daemon binary")
        self.assertIn("writable by group or others", r.stdout + r.stderr)
        daemon = self.daemon_binary_fact()
        self.assertIn("writable by group or others", daemon["missing"])


    def test_closed_standard_descriptors_are_not_taken_by_what_gpuwarm_opens(self):
        # Started with stdin and stdout closed, the pipe gpuwarm reads `nvidia-persistenced --version` from would
        # take those numbers, and the program's stdout would be closed at exec: the version unread, the guard's
        # answer lost. Main() holds 0-2 with /dev/null, read-only, so the output still cannot be written.
        # No driver library in the root: the daemon's version, the module's, is the only sign the halves agree, so
        # the guard goes (0) only if it read it, and skips (11, "cannot confirm") if the pipe lost it.
        self.root.driver("580.159.04").kmsg()
        daemon = self.root.p("usr/bin/nvidia-persistenced")
        os.makedirs(os.path.dirname(daemon), exist_ok=True)
        with open(daemon, "w") as f:
            f.write("#!/bin/sh\necho 'nvidia-persistenced:  version 580.159.04'\n")
        os.chmod(daemon, 0o755)
        args = [h.BIN, "guard", "--root", self.root.path, "--trust-root", "--kernel-log", self.root.p("dev/kmsg")]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        def close_stdin_and_stdout():
            os.close(0)
            os.close(1)
        r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30,
                           preexec_fn=close_stdin_and_stdout)
        self.assertEqual(r.returncode, 1, r.stderr)
        # The answer was go (a lost version would have ended "-- the command itself ended with exit 11").
        self.assertEqual(r.stderr, "gpuwarm: error: cannot write the output (disk full or pipe closed)\n")


class BlockingInput(Base):
    def test_a_fifo_as_kernel_log_does_not_hang_diagnose_or_guard(self):
        self.root.driver(gpus=1).daemon_binary().daemon_process(holds=(0,)).kmsg()
        fifo = self.fifo()
        start = time.monotonic()
        r = self.raw(["diagnose", "--json", "--no-systemd", "--root", self.root.path, "--kernel-log", fifo, "--nvml",
                      os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")], scenario_obj=h.scenario([h.gpu(0)]))
        self.assertLess(time.monotonic() - start, 10)
        source = json.loads(r.stdout)["snapshot"]["kernel_log"]["source"]
        self.assertIn("not a regular file", source["missing"])
        r = self.raw(["guard", "--root", self.root.path, "--trust-root", "--kernel-log", fifo, "--nvml",
                      os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")])
        self.assertLess(time.monotonic() - start, 20)
        self.assertNotEqual(r.returncode, 255)

    def test_fleet_summary_refuses_devices_and_fifos(self):
        for path in ("/dev/zero", self.fifo()):
            start = time.monotonic()
            r = self.raw(["fleet-summary", path])
            self.assertLess(time.monotonic() - start, 5, path)
            self.assertEqual(r.returncode, 1, path + r.stdout + r.stderr)
            self.assertIn("not a regular file", r.stdout + r.stderr, path)

    def test_snapshot_from_a_fifo_is_refused(self):
        r = self.raw(["diagnose", "--snapshot", self.fifo()])
        self.assertEqual(r.returncode, 1)
        self.assertIn("not a regular file", r.stderr)

    def test_a_long_kernel_log_keeps_its_end(self):
        self.root.driver("580.159.04").daemon_binary().kmsg()
        log = os.path.join(self.tmp, "kern.log")
        with open(log, "w") as f:
            # 290 MB of old log as a sparse hole (no disk used), then the mismatch at the very end.
            f.truncate(290 * 1000 * 1000)
            f.seek(0, os.SEEK_END)
            f.write("\nJun 01 12:00:01 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)\n"
                    "Jun 01 12:00:01 gpu1 kernel: NVRM: has the version 580.95.05, but this kernel module has\n"
                    "Jun 01 12:00:01 gpu1 kernel: NVRM: the version 580.159.04.  Please make sure that this\n")
        try:
            r = self.raw(["diagnose", "--json", "--no-systemd", "--root", self.root.path, "--kernel-log", log],
                         timeout=120)
            d = json.loads(r.stdout)
            self.assertEqual(d["verdict"]["code"], "reboot-pending", d["findings"])
            self.assertIn("its last 256 MiB", d["snapshot"]["kernel_log"]["source"])
        finally:
            os.unlink(log)


class DeepInput(Base):
    def test_a_file_nested_deep_is_refused_not_a_crash(self):
        # nlohmann parses without recursion, but dump() recurses: a value quoted in an error must not be dumped.
        deep = "[" * 1000000 + "]" * 1000000  # deep enough that a recursive copy or dump() overflows the stack
        cases = {"snapshot": ('{"kind":"gpuwarm-snapshot","schema_version":%s}', ["diagnose", "--snapshot"], 1,
                              "snapshot schema_version a list is not supported"),
                 "watch": ('{"kind":"gpuwarm-watch","schema_version":%s}', ["watch", "--replay"], 1,
                           "unsupported watch schema_version a list"),
                 "failure": ('{"error":%s}', ["watch", "--replay"], 1, "a watch that did not run: a list"),
                 "probe": ('{"kind":"gpuwarm-probe","schema_version":%s}', ["probe", "--compare"], 1,
                           "probe schema_version a list is not supported")}
        for name, (shape, args, code, says) in cases.items():
            path = os.path.join(self.tmp, name + ".json")
            with open(path, "w") as f:
                f.write(shape % deep)
            r = self.raw([*args, path])
            self.assertEqual(r.returncode, code, name + r.stderr)
            self.assertIn(says, r.stderr, name)
        # A long string is quoted cut, not echoed whole.
        path = os.path.join(self.tmp, "long.json")
        with open(path, "w") as f:
            json.dump({"kind": "gpuwarm-snapshot", "schema_version": "v" * 100000}, f)
        r = self.raw(["diagnose", "--snapshot", path])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('schema_version "' + "v" * 40 + '..." is not supported', r.stderr)
        self.assertLess(len(r.stderr), 500)


class Terminal(Base):
    def test_escape_sequences_in_reports_are_shown_not_obeyed(self):
        evil = "node\x1b]0;pwned\x07\x1b[2J\x9b"
        report = {"kind": "gpuwarm-diagnosis", "schema_version": 1, "hostname": evil,
                  "verdict": {"code": "healthy\x1b[8m"}, "gpus": []}
        path = os.path.join(self.tmp, "r.json")
        with open(path, "w") as f:
            json.dump(report, f)
        for args in (["fleet-summary", path], ["fleet-summary", "--json", path]):
            r = self.raw(args)
            self.assertNotIn("\x1b", r.stdout, args)
            self.assertNotIn("\x07", r.stdout, args)
            self.assertNotIn("\x9b", r.stdout, args)
        self.assertIn("\\x1b]0;pwned", self.raw(["fleet-summary", path]).stdout)

    def test_escape_sequences_in_a_snapshot_are_shown_not_obeyed(self):
        with open(os.path.join(h.SOURCE_DIR, "examples", "h100-legacy-flag.json")) as f:
            snap = json.load(f)
        snap["hostname"] = "h\x1b[2Jost"
        snap["daemon"]["binary"] = "/usr/bin/nvidia-persistenced\x1b]0;x\x07"
        path = os.path.join(self.tmp, "s.json")
        with open(path, "w") as f:
            json.dump(snap, f)
        r = self.raw(["diagnose", "--snapshot", path])
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("h\\x1b[2Jost", r.stdout)
        # Planned from it: the recording's strings stay on the note's line.
        r = self.raw(["fix", "--dry-run", "--snapshot", path])
        note = [l for l in r.stdout.splitlines() if "planned for the node recorded in" in l]
        self.assertEqual(len(note), 1, r.stdout)
        self.assertIn("(h\\x1b[2Jost, ", note[0])
        snap["hostname"] = "two\nlines"
        with open(path, "w") as f:
            json.dump(snap, f)
        r = self.raw(["fix", "--dry-run", "--snapshot", path])
        self.assertIn("(two\\x0alines, ", r.stdout)
        # What was typed, quoted back in an error, is escaped too.
        r = self.raw(["watch", "--interval", "\x1b]0;T\x07"])
        self.assertEqual(r.returncode, 2)
        self.assertIn('--interval: cannot read "\\x1b]0;T\\x07" as a duration', r.stderr)
        self.assertNotIn("\x1b", r.stderr)


class SnapshotOutput(unittest.TestCase):
    def test_output_into_a_missing_directory_names_it_and_creates_nothing(self):
        h.require_binary(self)
        tmp = tempfile.mkdtemp(prefix="gpuwarm-out-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        target = os.path.join(tmp, "no", "such", "dir", "node.json")
        r = h.run(["snapshot", "--no-systemd", "-o", target], raw=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"cannot write {target}: {os.path.join(tmp, 'no')}: No such file or directory", r.stderr)
        self.assertEqual(os.listdir(tmp), [])


class Output(Base):
    def test_an_output_file_replaces_only_a_regular_file(self):
        # A rename over a link (a masked unit is one to /dev/null), a FIFO or a device would turn it into a file.
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        link = os.path.join(self.tmp, "link.json")
        os.symlink(victim, link)
        for target, says in ((link, "is a symbolic link"), (self.fifo(), "is not a regular file")):
            r = self.raw(["snapshot", "--no-systemd", "--root", self.root.path, "-o", target])
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(says, r.stderr)
            self.assertIn("replaces only regular files", r.stderr)
        self.assertTrue(os.path.islink(link))
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_output_that_cannot_be_written_is_exit_1_whatever_the_finding(self):
        # The legacy-flag example is "action needed" (3); a caller without the report has nothing to act on.
        example = os.path.join(h.SOURCE_DIR, "examples", "h100-legacy-flag.json")
        if not os.path.exists("/dev/full"):
            self.skipTest("no /dev/full here")
        for args, want in ((["diagnose", "--snapshot", example], 1), (["diagnose", "--json", "--snapshot", example], 1),
                           (["check", "--snapshot", example], 2), (["diagnose", "--help"], 1), (["--version"], 1)):
            with open("/dev/full", "w") as full:
                r = subprocess.run([h.BIN, *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=30)
            self.assertEqual(r.returncode, want, args)
            self.assertIn("cannot write the output", r.stderr)
        # A reader that went away: the same, not a death by SIGPIPE (141).
        read_end, write_end = os.pipe()
        os.close(read_end)
        r = subprocess.run([h.BIN, "diagnose", "--json", "--snapshot", example], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, timeout=30)
        os.close(write_end)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("cannot write the output", r.stderr)


    def test_a_stop_signal_while_writing_leaves_no_temporary_file(self):
        # metrics --textfile stopped at random moments (a timer unit's stop, Ctrl-C, a hangup): the temporary
        # file is created and renamed (or removed) with the stop signals held, so none is ever left behind.
        # Before they were held, 300 such runs left 11 (about 1 in 6 runs that were cut short).
        import random
        import signal
        import glob
        folder = os.path.join(self.tmp, "textfile")
        os.mkdir(folder)
        nvml = os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")
        rng = random.Random(7)
        argv = [h.BIN, "metrics", "--no-systemd", "--root", self.root.path, "--nvml", nvml, "--textfile", folder]
        env = {**os.environ, "FAKE_NVML_SCENARIO": ""}
        # Signals spread over a whole run as this build takes it (a sanitizer build is ten times slower).
        started = time.monotonic()
        subprocess.run(argv, env=env, capture_output=True, timeout=60)
        run_s = time.monotonic() - started
        stopped = 0
        for _ in range(150):
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            time.sleep(rng.uniform(0, run_s))
            p.send_signal(rng.choice([signal.SIGTERM, signal.SIGINT, signal.SIGHUP]))
            stopped += p.wait(timeout=30) < 0
        self.assertGreater(stopped, 10, "too few runs were cut short to show anything: the machine is too fast")
        self.assertEqual(glob.glob(os.path.join(folder, ".gpuwarm.prom.gpuwarm-*")), [])

if __name__ == "__main__":
    unittest.main()
