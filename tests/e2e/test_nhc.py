"""contrib/nhc/gpuwarm.nhc against NHC's documented check-function contract (NHC is not packaged in Debian):
a check is a bash function that returns 0 when healthy and otherwise calls `die 1 "check_name:  message"` and
returns non-zero, reads its options with getopts, and never exceeds NHC's $TIMEOUT. The stub `die`, `dbg` and
`log` below record what NHC's would print. The function never calls the scheduler (NHC marks nodes itself).
Also `bash -n` (and shellcheck, where installed) on every shipped shell script."""
import fcntl
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import harness as h

CONTRIB = os.path.join(h.SOURCE_DIR, "contrib")
NHC_CHECK = os.path.join(CONTRIB, "nhc", "gpuwarm.nhc")

# What NHC provides to a check: die (records; the real one logs, marks the node offline and exits), dbg, log,
# and $TIMEOUT (NHC's own limit, 30 s by default). A scontrol on PATH that records any call.
HARNESS = r"""
set -u
TIMEOUT=${NHC_TIMEOUT:-30}
DIED=""
# As NHC's die hands its text to the offline helper: eval, inside single quotes.
function die() { local ret=$1; shift; DIED="$ret|$*"; eval "OFFLINE=('$*')" 2>/dev/null || DIED="eval broke|$*"; }
function dbg() { :; }
function log() { echo "LOG: $*"; }
source "$1"; shift
check_gpuwarm "$@"
ret=$?
echo "RET=$ret"
echo "DIED=$DIED"
"""


class NhcCheck(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.tmp = tempfile.mkdtemp(prefix="gpuwarm-nhc-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.root.driver(gpus=2).daemon_binary()
        bin_dir = os.path.join(self.tmp, "bin")
        os.makedirs(bin_dir)
        self.scontrol_log = os.path.join(self.tmp, "scontrol.log")
        with open(os.path.join(bin_dir, "scontrol"), "w") as f:
            f.write(f"#!/bin/sh\necho \"$@\" >> {self.scontrol_log}\n")
        os.chmod(os.path.join(bin_dir, "scontrol"), 0o755)
        self.path = f"{bin_dir}:/usr/bin:/bin"

    def args(self, extra_args=""):
        """What the check is given with -a."""
        return f"--root {self.root.path} --no-systemd --nvml {os.path.join(h.FAKE_NVML_DIR, 'libnvidia-ml.so.1')}" \
               + extra_args

    def last_answer_file(self, state, extra_args=""):
        """Where the check keeps its last answer about the node: one per -a, named by its POSIX cksum."""
        r = subprocess.run(["cksum"], input=self.args(extra_args), capture_output=True, text=True, check=True)
        return os.path.join(state, "gpuwarm-nhc-last-" + r.stdout.split()[0])

    def check(self, scenario, *options, timeout_env=None, extra_args="", binary=None, state_dir=None):
        path = os.path.join(self.tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(scenario, f)
        args = self.args(extra_args)
        env = {"PATH": self.path, "FAKE_NVML_SCENARIO": path, "ASAN_OPTIONS": "detect_leaks=0",
               "GPUWARM_STATE_DIR": state_dir or os.path.join(self.tmp, "no-state-dir")}
        if timeout_env is not None:
            env["NHC_TIMEOUT"] = str(timeout_env)
        r = subprocess.run(["bash", "-c", HARNESS, "harness", NHC_CHECK, "-g", "-b", binary or h.BIN, "-a", args, *options],
                           capture_output=True, text=True, env=env, timeout=60)
        out = dict(line.split("=", 1) for line in r.stdout.splitlines() if line.startswith(("RET=", "DIED=")))
        return int(out["RET"]), out["DIED"], r.stdout

    def test_contract(self):
        ok = h.scenario([h.gpu(0), h.gpu(1)])
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1)])
        unread = h.scenario([h.gpu(0), h.gpu(1, returns={"nvmlDeviceGetPersistenceMode": 4})])
        self.assertEqual(self.check(ok)[:2], (0, ""))
        self.assertEqual(self.check(off)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        self.assertEqual(self.check(unread)[:2], (1, "1|check_gpuwarm:  cannot tell: UNK004 gpu fact unread: GPU 1"))
        ret, died, out = self.check(unread, "-u")
        self.assertEqual((ret, died), (0, ""))
        self.assertIn("LOG: check_gpuwarm:  cannot tell (passing, -u): UNK004", out)
        # Booted 40 s ago: persistence still off passes with a log line (-s, 300 by default), not with -s 0, and
        # not where something else cannot be told.
        self.root.write("proc/uptime", "40.00 80.00\n")
        ret, died, out = self.check(off)
        self.assertEqual((ret, died), (0, ""))
        self.assertIn("LOG: check_gpuwarm:  passing while the node settles after boot: PM001 settling (up 40 s): "
                      "persistence off: GPU 0", out)
        self.assertEqual(self.check(off, "-s", "0")[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        self.assertEqual(self.check(off, "-s", "30")[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        self.assertEqual(self.check(unread)[:2], (1, "1|check_gpuwarm:  cannot tell: UNK004 gpu fact unread: GPU 1"))
        self.assertEqual(self.check(off, "-s", "soon")[:2],
                         (1, '1|check_gpuwarm:  -s wants whole seconds up to 3600, not "soon"'))
        self.assertEqual(self.check(off, "-s", "5000")[:2],
                         (1, '1|check_gpuwarm:  -s wants whole seconds up to 3600, not "5000"'))
        # Something else wrong beside it does not hide behind the settling.
        off_and_unread = h.scenario([h.gpu(0, persistence=0), h.gpu(1, returns={"nvmlDeviceGetPersistenceMode": 4})])
        self.assertEqual(self.check(off_and_unread)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0 (+1 more)"))
        # A gpuwarm older than the check (no --boot-grace) is asked again without it, not failed for it.
        old = h.older_gpuwarm(os.path.join(self.tmp, "old-gpuwarm"), "--boot-grace")
        self.assertEqual(self.check(ok, binary=old)[:2], (0, ""))
        self.assertEqual(self.check(off, binary=old)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        os.unlink(self.root.p("proc/uptime"))
        # Options as NHC's own checks handle them.
        self.assertEqual(self.check(ok, "-x")[:2], (1, "1|check_gpuwarm:  Invalid option:  -x"))
        self.assertEqual(self.check(ok, "-t", "40")[:2],
                         (1, "1|check_gpuwarm:  Command timeout 40 exceeds NHC timeout 30"))
        self.assertEqual(self.check(ok, "-t", "soon")[:2],
                         (1, '1|check_gpuwarm:  -t wants whole seconds, not "soon"'))
        # The site's own --nvml-timeout after the check's default: the last one wins, not a usage error.
        args_with_timeout = f"--nvml-timeout 3 --root {self.root.path} --no-systemd --nvml " \
                            f"{os.path.join(h.FAKE_NVML_DIR, 'libnvidia-ml.so.1')}"
        path = os.path.join(self.tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(off, f)
        r = subprocess.run(["bash", "-c", HARNESS, "harness", NHC_CHECK, "-g", "-b", h.BIN, "-a", args_with_timeout],
                           capture_output=True, text=True, timeout=60,
                           env={"PATH": self.path, "FAKE_NVML_SCENARIO": path, "ASAN_OPTIONS": "detect_leaks=0",
                                "GPUWARM_STATE_DIR": os.path.join(self.tmp, "no-state-dir")})
        self.assertIn("DIED=1|check_gpuwarm:  PM001 persistence off: GPU 0", r.stdout)
        # A hung NVML: gpuwarm answers "cannot tell" before the command's own limit.
        hung = h.scenario([h.gpu(0)], init={"delay_ms": 60000})
        ret, died, _ = self.check(hung, "-t", "4")
        self.assertEqual(ret, 1)
        self.assertTrue(died.startswith("1|check_gpuwarm:  cannot tell: NVML001"), died)
        # -u lets a timeout pass as well (it is a "cannot tell" too); without -u it fails.
        ret, died, out = self.check(hung, "-t", "2", extra_args=" --nvml-timeout 30")
        self.assertTrue(died.startswith("1|check_gpuwarm:  TIMEOUT after 2s"), died)
        ret, died, out = self.check(hung, "-t", "2", "-u", extra_args=" --nvml-timeout 30")
        self.assertEqual((ret, died), (0, ""))
        self.assertIn("LOG: check_gpuwarm:  cannot tell (passing, -u): no answer within 2s", out)
        # A typo in -a: the reason is gpuwarm's own error, not an empty "cannot tell:".
        ret, died, _ = self.check(ok, extra_args=" --nvml-timout 3")
        self.assertEqual((ret, died), (1, "1|check_gpuwarm:  cannot tell: gpuwarm check gave no answer (exit 2): "
                                          "gpuwarm check has no option --nvml-timout"))
        # A gpuwarm that is not there: said, not taken for a node fault of some other kind.
        r = subprocess.run(["bash", "-c", HARNESS, "harness", NHC_CHECK, "-g", "-b", "/nonexistent/gpuwarm"],
                           capture_output=True, text=True, env={"PATH": self.path}, timeout=60)
        self.assertIn("DIED=1|check_gpuwarm:  gpuwarm not found at /nonexistent/gpuwarm (give its path with -b)",
                      r.stdout)
        # A quote in what die is given (a path, gpuwarm's error) would break NHC's eval, or run as shell there.
        quoted = os.path.join(self.tmp, "it's")
        os.makedirs(quoted)
        r = subprocess.run(["bash", "-c", HARNESS, "harness", NHC_CHECK, "-g", "-b", os.path.join(quoted, "gpuwarm")],
                           capture_output=True, text=True, env={"PATH": self.path}, timeout=60)
        self.assertIn(f"DIED=1|check_gpuwarm:  gpuwarm not found at {self.tmp}/its/gpuwarm (give", r.stdout)
        ret, died, _ = self.check(ok, extra_args=" --nvml-timout='$(touch /tmp/x)'")
        self.assertEqual(ret, 1)
        self.assertTrue(died.startswith("1|check_gpuwarm:  cannot tell: gpuwarm check gave no answer (exit 2): "), died)
        self.assertNotIn("'", died)
        # NHC marks nodes itself: the check never ran scontrol.
        self.assertFalse(os.path.exists(self.scontrol_log))

    def test_the_default_time_fits_nhc_s_timeout(self):
        # No -t: 20 s, or NHC's TIMEOUT less 2 s where that is shorter (3 s at least), so a site running NHC with
        # a shorter watchdog (`* || export TIMEOUT=15`, `nhc -t 15`) does not fail every node for the default.
        ok = h.scenario([h.gpu(0), h.gpu(1)])
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1)])
        for watchdog in (15, 8, 5, 3, 0):  # 0: NHC without a watchdog
            with self.subTest(timeout=watchdog):
                self.assertEqual(self.check(ok, timeout_env=watchdog)[:2], (0, ""))
                self.assertEqual(self.check(off, timeout_env=watchdog)[:2],
                                 (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        # A hung NVML under TIMEOUT=8: gpuwarm is given 6 s (NVML 4 s) and answers "cannot tell" before NHC's own
        # watchdog would end the whole run.
        hung = h.scenario([h.gpu(0)], init={"delay_ms": 60000})
        started = time.monotonic()
        ret, died, _ = self.check(hung, timeout_env=8)
        elapsed = time.monotonic() - started
        self.assertEqual(ret, 1)
        self.assertTrue(died.startswith("1|check_gpuwarm:  cannot tell: NVML001"), died)
        self.assertLess(elapsed, 8)
        self.assertGreaterEqual(elapsed, 3.5)
        # A -t given explicitly above NHC's timeout is the site's error and says so; without a watchdog, no limit.
        self.assertEqual(self.check(ok, "-t", "20", timeout_env=15)[:2],
                         (1, "1|check_gpuwarm:  Command timeout 20 exceeds NHC timeout 15"))
        self.assertEqual(self.check(ok, "-t", "15", timeout_env=15)[:2], (0, ""))
        self.assertEqual(self.check(ok, "-t", "40", timeout_env=0)[:2], (0, ""))
        self.assertEqual(self.check(ok, "-t", "0")[:2], (1, '1|check_gpuwarm:  -t wants whole seconds, not "0"'))
        self.assertEqual(self.check(ok, "-t", "")[:2], (1, '1|check_gpuwarm:  -t wants whole seconds, not ""'))

    def busy_state(self):
        """A root-owned state folder nobody else can write, and a held lock as a running `gpuwarm fix` holds it
        (call self.fix_lock.acquire()/release())."""
        if os.geteuid() != 0:
            self.skipTest("the notes are written only into a folder root owns")
        state = os.path.join(self.tmp, "state")
        os.mkdir(state, 0o755)
        os.makedirs(self.root.p("run"), exist_ok=True)
        fix = open(self.root.p("run/gpuwarm-fix.lock"), "w")
        self.addCleanup(fix.close)
        self.fix = fix
        return state

    def hold(self):
        fcntl.flock(self.fix, fcntl.LOCK_EX)  # a running `gpuwarm fix`

    def release(self):
        fcntl.flock(self.fix, fcntl.LOCK_UN)

    def assert_only_notes(self, state, *names):
        """No temporary file left behind: only the notes named."""
        self.assertEqual(sorted(os.listdir(state)), sorted(names))

    REPEATED = "1|check_gpuwarm:  while another gpuwarm command works on the GPUs: "

    def test_another_gpuwarm_command_on_the_gpus_gives_the_last_answer_again(self):
        # While a fix, a probe or a reset holds the node's lock, check answers UNK009 (NVML left closed). The check
        # asks again once a second within -t (a fix restarts the daemon in seconds), then, for -B seconds (1800 by
        # default) from the first such answer, noted in a root-owned folder, gives its last answer about the node
        # again: NHC has no "leave as it is" (a pass puts a node NHC took offline back online). Past that, an
        # unknown like any other.
        ok = h.scenario([h.gpu(0), h.gpu(1)])
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1)])
        state = self.busy_state()
        since = os.path.join(state, "gpuwarm-nhc-busy-since")
        last = self.last_answer_file(state)
        last_name = os.path.basename(last)
        # An answer about the node is kept: NHC takes the node offline for it.
        self.assertEqual(self.check(off, state_dir=state)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        with open(last) as f:
            self.assertEqual(f.read(), "fail PM001 persistence off: GPU 0\n")
        self.assertEqual(os.stat(last).st_mode & 0o777, 0o600)
        self.assert_only_notes(state, last_name)
        self.hold()
        # The admin's probe, or the rollout's fix, starts on it: the node stays offline, with the same reason.
        started = time.monotonic()
        ret, died, out = self.check(off, "-t", "7", state_dir=state)
        elapsed = time.monotonic() - started
        self.assertEqual((ret, died), (1, self.REPEATED + "PM001 persistence off: GPU 0"), out)
        self.assertIn("LOG: check_gpuwarm:  failing again as last time while another gpuwarm command works on the "
                      "GPUs (for 0 min, up to 30 min): UNK009 ", out)
        self.assertGreaterEqual(elapsed, 2, "asked again within -t")
        self.assertLess(elapsed, 7 + 2)
        with open(since) as f:
            self.assertLessEqual(abs(int(f.read()) - time.time()), 60)
        # Whatever the GPUs now are (they cannot be read), and with -u too: the answer kept, not replaced.
        self.assertEqual(self.check(ok, "-t", "3", state_dir=state)[:2],
                         (1, self.REPEATED + "PM001 persistence off: GPU 0"))
        self.assertEqual(self.check(ok, "-t", "3", "-u", state_dir=state)[:2],
                         (1, self.REPEATED + "PM001 persistence off: GPU 0"))
        with open(last) as f:
            self.assertEqual(f.read(), "fail PM001 persistence off: GPU 0\n")
        self.assert_only_notes(state, last_name, "gpuwarm-nhc-busy-since")
        # The command ends within -t: the check's answer is the node's, with no grace needed; the note of since
        # when goes, and the answer kept is now a pass.
        timer = threading.Timer(1.5, self.release)
        timer.start()
        ret, died, out = self.check(ok, state_dir=state)
        timer.join()
        self.assertEqual((ret, died), (0, ""), out)
        self.assertNotIn("LOG:", out)
        self.assertFalse(os.path.exists(since))
        with open(last) as f:
            self.assertEqual(f.read(), "pass OK PM002 legacy persistence\n")
        # Last answer a pass: passing with a log line while the next command works.
        self.hold()
        ret, died, out = self.check(off, "-t", "3", state_dir=state)
        self.assertEqual((ret, died), (0, ""), out)
        self.assertIn("LOG: check_gpuwarm:  passing while another gpuwarm command works on the GPUs (for 0 min, "
                      "up to 30 min): UNK009 ", out)
        self.assertTrue(os.path.exists(since))
        # Past the bound: an unknown like any other, with how long it has lasted; a longer -B still passes. UNK009
        # is no answer about the node: the one kept stays.
        with open(since, "w") as f:
            f.write(f"{int(time.time()) - 3600}\n")
        ret, died, _ = self.check(ok, "-t", "3", state_dir=state)
        self.assertEqual(ret, 1)
        self.assertRegex(died, r"^1\|check_gpuwarm:  cannot tell: UNK009 .* \(for 60 min\)$")
        self.assertEqual(self.check(ok, "-t", "3", "-B", "7200", state_dir=state)[:2], (0, ""))
        with open(last) as f:
            self.assertEqual(f.read(), "pass OK PM002 legacy persistence\n")
        # -u lets it pass as any unknown; -B 0: no grace at all.
        ret, died, out = self.check(ok, "-t", "3", "-u", state_dir=state)
        self.assertEqual((ret, died), (0, ""))
        self.assertIn("LOG: check_gpuwarm:  cannot tell (passing, -u): UNK009 ", out)
        os.unlink(since)
        ret, died, _ = self.check(ok, "-t", "3", "-B", "0", state_dir=state)
        self.assertEqual(ret, 1)
        self.assertRegex(died, r"^1\|check_gpuwarm:  cannot tell: UNK009 [^(]*$")
        self.assertFalse(os.path.exists(since))
        # A note of a time to come, or one that is not a number, is taken afresh: no grace for ever.
        for bad in (f"{int(time.time()) + 86400}", "soon"):
            with open(since, "w") as f:
                f.write(bad + "\n")
            self.assertEqual(self.check(ok, "-t", "3", state_dir=state)[:2], (0, ""), bad)
            with open(since) as f:
                self.assertLessEqual(abs(int(f.read()) - time.time()), 60, bad)
        # A count with a leading zero is decimal, not a bad octal number: long past.
        with open(since, "w") as f:
            f.write("0019\n")
        ret, died, _ = self.check(ok, "-t", "3", state_dir=state)
        self.assertEqual(ret, 1)
        self.assertIn("cannot tell: UNK009 ", died)
        # A folder others can write (or none) gets no note written as root, and so no grace; no answer is kept
        # there either.
        shared = os.path.join(self.tmp, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        for folder in (shared, os.path.join(self.tmp, "missing")):
            ret, died, _ = self.check(ok, "-t", "3", state_dir=folder)
            self.assertEqual(ret, 1, folder)
            self.assertIn("cannot tell: UNK009 ", died)
        self.release()
        self.assertEqual(self.check(off, state_dir=shared)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        self.assertFalse(os.listdir(shared))
        self.assertEqual(self.check(ok, "-B", "soon", state_dir=state)[:2],
                         (1, '1|check_gpuwarm:  -B wants whole seconds, not "soon"'))

    def test_an_answer_after_the_grace_replaces_the_one_kept(self):
        ok = h.scenario([h.gpu(0), h.gpu(1)])
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1)])
        state = self.busy_state()
        since = os.path.join(state, "gpuwarm-nhc-busy-since")
        last = self.last_answer_file(state)
        self.assertEqual(self.check(ok, state_dir=state)[:2], (0, ""))
        # A fix outlasts the grace; meanwhile persistence went off. UNK009 past the bound fails as an unknown,
        # and is not kept.
        self.hold()
        with open(since, "w") as f:
            f.write(f"{int(time.time()) - 3600}\n")
        ret, died, _ = self.check(off, "-t", "3", state_dir=state)
        self.assertRegex(died, r"^1\|check_gpuwarm:  cannot tell: UNK009 .* \(for 60 min\)$")
        with open(last) as f:
            self.assertEqual(f.read(), "pass OK PM002 legacy persistence\n")
        # It ends: the node's answer replaces the pass kept, and the note of since when goes.
        self.release()
        self.assertEqual(self.check(off, state_dir=state)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        with open(last) as f:
            self.assertEqual(f.read(), "fail PM001 persistence off: GPU 0\n")
        self.assertFalse(os.path.exists(since))
        # The next command's grace starts afresh, and gives that failure again.
        self.hold()
        ret, died, out = self.check(ok, "-t", "3", state_dir=state)
        self.assertEqual((ret, died), (1, self.REPEATED + "PM001 persistence off: GPU 0"), out)
        # An unknown that fails is an answer too (NHC took the node offline for it); so is a timeout.
        self.release()
        unread = h.scenario([h.gpu(0), h.gpu(1, returns={"nvmlDeviceGetPersistenceMode": 4})])
        self.assertEqual(self.check(unread, state_dir=state)[:2],
                         (1, "1|check_gpuwarm:  cannot tell: UNK004 gpu fact unread: GPU 1"))
        with open(last) as f:
            self.assertEqual(f.read(), "fail cannot tell: UNK004 gpu fact unread: GPU 1\n")
        self.hold()
        self.assertEqual(self.check(ok, "-t", "3", state_dir=state)[:2],
                         (1, self.REPEATED + "cannot tell: UNK004 gpu fact unread: GPU 1"))
        self.release()
        hung = h.scenario([h.gpu(0)], init={"delay_ms": 60000})
        ret, died, _ = self.check(hung, "-t", "2", extra_args=" --nvml-timeout 30", state_dir=state)
        self.assertTrue(died.startswith("1|check_gpuwarm:  TIMEOUT after 2s"), died)
        timeout_last = self.last_answer_file(state, " --nvml-timeout 30")
        with open(timeout_last) as f:
            self.assertEqual(f.read(), "fail " + died[len("1|check_gpuwarm:  "):] + "\n")
        # -u: a pass, kept as one; and one that settles after boot.
        self.assertEqual(self.check(unread, "-u", state_dir=state)[:2], (0, ""))
        with open(last) as f:
            self.assertEqual(f.read(), "pass cannot tell (passing, -u): UNK004 gpu fact unread: GPU 1\n")
        self.root.write("proc/uptime", "40.00 80.00\n")
        self.assertEqual(self.check(off, state_dir=state)[:2], (0, ""))
        with open(last) as f:
            self.assertTrue(f.read().startswith("pass passing while the node settles after boot: PM001 settling"))
        self.assert_only_notes(state, os.path.basename(last), os.path.basename(timeout_last))

    def test_each_check_line_keeps_its_own_answer(self):
        # Two check_gpuwarm lines in nhc.conf checking different rules: the one that failed fails again, the one
        # that passed passes (NHC keeps the node offline: not every check passes).
        driver_rules, pm_rules = " --rules DRV003", " --rules PM001"
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1)])
        state = self.busy_state()
        self.assertEqual(self.check(off, extra_args=pm_rules, state_dir=state)[:2],
                         (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        self.assertEqual(self.check(off, extra_args=driver_rules, state_dir=state)[0], 0)
        self.hold()
        self.assertEqual(self.check(off, "-t", "3", extra_args=pm_rules, state_dir=state)[:2],
                         (1, self.REPEATED + "PM001 persistence off: GPU 0"))
        self.assertEqual(self.check(off, "-t", "3", extra_args=driver_rules, state_dir=state)[:2], (0, ""))

    def test_no_answer_kept_or_a_damaged_one_passes_during_the_grace(self):
        # None kept (a first run; /run emptied by a reboot): passing, as before. NHC puts a node back online only
        # when every check passes, so this cannot undo another check's failure. A damaged note, a link, a note
        # not root's: as none, never followed, never trusted; the next answer about the node replaces it.
        ok = h.scenario([h.gpu(0), h.gpu(1)])
        off = h.scenario([h.gpu(0, persistence=0), h.gpu(1)])
        state = self.busy_state()
        since = os.path.join(state, "gpuwarm-nhc-busy-since")
        last = self.last_answer_file(state)
        elsewhere = os.path.join(self.tmp, "elsewhere")
        failed = "fail PM001 persistence off: GPU 0\n"
        self.hold()
        ret, died, out = self.check(off, "-t", "3", state_dir=state)
        self.assertEqual((ret, died), (0, ""), out)
        self.assertIn("LOG: check_gpuwarm:  passing while another gpuwarm command works on the GPUs (for 0 min, "
                      "up to 30 min): UNK009 ", out)
        self.assertFalse(os.path.exists(last), "UNK009 is no answer about the node")
        damaged = {"no text": "fail\n", "another word": "failed PM001 persistence off\n",
                   "a quote": "fail PM001 it's off\n", "two lines": "pass OK\nfail PM001 persistence off\n",
                   "a NUL": "fail PM001\0 persistence off\n", "a control character": "fail PM001\x1b[2J off\n",
                   "too long": "fail " + "x" * 5000 + "\n", "empty": ""}
        for why, text in damaged.items():
            with self.subTest(why):
                with open(last, "w") as f:
                    f.write(text)
                ret, died, out = self.check(off, "-t", "3", state_dir=state)
                self.assertEqual((ret, died), (0, ""), out)
                with open(last) as f:
                    self.assertEqual(f.read(), text, "left as it is during the grace")
        # A failure kept by someone else than root (a folder that was root's only later, say): not trusted.
        with open(last, "w") as f:
            f.write(failed)
        os.chown(last, 1000, 1000)
        self.assertEqual(self.check(off, "-t", "3", state_dir=state)[:2], (0, ""))
        os.chown(last, 0, 0)
        self.assertEqual(self.check(off, "-t", "3", state_dir=state)[:2],
                         (1, self.REPEATED + "PM001 persistence off: GPU 0"))
        # Links: to a failure kept elsewhere (not followed: none kept), to nothing, and a folder in its place.
        os.unlink(last)
        with open(elsewhere, "w") as f:
            f.write(failed)
        for target in (elsewhere, os.path.join(self.tmp, "nothing")):
            os.symlink(target, last)
            self.assertEqual(self.check(off, "-t", "3", state_dir=state)[:2], (0, ""), target)
            os.unlink(last)
        # The next answer about the node replaces a link (its target untouched) or a damaged note; the note of
        # since when, a link too, is replaced as well.
        self.release()
        os.unlink(since)
        os.symlink(elsewhere, last)
        os.symlink(elsewhere, since)
        self.assertEqual(self.check(ok, state_dir=state)[:2], (0, ""))
        self.assertFalse(os.path.islink(last))
        with open(last) as f:
            self.assertEqual(f.read(), "pass OK PM002 legacy persistence\n")
        self.assertTrue(os.path.islink(since), "an answer removes the note of since when, and only that one")
        with open(elsewhere) as f:
            self.assertEqual(f.read(), failed)
        self.hold()
        self.assertEqual(self.check(off, "-t", "3", state_dir=state)[:2], (0, ""))
        self.assertFalse(os.path.islink(since))
        with open(elsewhere) as f:
            self.assertEqual(f.read(), failed)
        self.release()
        with open(last, "w") as f:
            f.write("fail\n")
        self.assertEqual(self.check(off, state_dir=state)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        with open(last) as f:
            self.assertEqual(f.read(), failed)
        # A folder in its place: the answer cannot be kept (the check still answers), and counts as none.
        os.unlink(last)
        os.mkdir(last)
        self.assertEqual(self.check(off, state_dir=state)[:2], (1, "1|check_gpuwarm:  PM001 persistence off: GPU 0"))
        self.assertEqual(os.listdir(last), [])
        self.assert_only_notes(state, os.path.basename(last))
        self.hold()
        self.assertEqual(self.check(off, "-t", "3", state_dir=state)[:2], (0, ""))

    def test_a_node_without_an_nvidia_gpu_passes(self):
        has_nvidia = any(open(os.path.join(d, "vendor")).read().strip() == "0x10de"
                         and open(os.path.join(d, "class")).read().startswith("0x03")
                         for d in glob.glob("/sys/bus/pci/devices/*")
                         if os.path.exists(os.path.join(d, "vendor")) and os.path.exists(os.path.join(d, "class")))
        if has_nvidia:
            self.skipTest("this machine has an NVIDIA GPU")
        r = subprocess.run(["bash", "-c", HARNESS, "harness", NHC_CHECK, "-b", "/nonexistent/gpuwarm"],
                           capture_output=True, text=True, env={"PATH": self.path}, timeout=60)
        self.assertIn("RET=0", r.stdout)
        self.assertIn("DIED=\n", r.stdout + "\n")


class ShellScripts(unittest.TestCase):
    SCRIPTS = [os.path.join(CONTRIB, "nhc", "gpuwarm.nhc"), *glob.glob(os.path.join(CONTRIB, "slurm", "*")),
               *glob.glob(os.path.join(h.SOURCE_DIR, "scripts", "*.sh")), os.path.join(h.SOURCE_DIR, ".ci", "run")]

    def test_bash_n(self):
        self.assertGreaterEqual(len(self.SCRIPTS), 7)
        for script in self.SCRIPTS:
            r = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f"{script}: {r.stderr}")

    def test_shellcheck(self):
        if not shutil.which("shellcheck"):
            self.skipTest("shellcheck not installed")
        r = subprocess.run(["shellcheck", "-s", "bash", os.path.join(CONTRIB, "nhc", "gpuwarm.nhc"),
                            *glob.glob(os.path.join(CONTRIB, "slurm", "*"))], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout)


if __name__ == "__main__":
    unittest.main()
