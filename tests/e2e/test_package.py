"""The packages scripts/package.sh builds (GPUWARM_DIST names the folder; scripts/test.sh builds them
first): what the .deb, .rpm and tarball carry and require, the tarball's binary on a root without
libsystemd and libkmod, and the .deb installed into a fresh Debian 12 root (mmdebstrap, the same
cached rootfs as the real-systemd test): --version, diagnose, the man page, bash completion, purge."""
import glob
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import unittest

import harness as h

DIST = os.environ.get("GPUWARM_DIST", "")
GLIBC_LIBS = {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"}


def one(pattern):
    found = glob.glob(os.path.join(DIST, pattern))
    return found[0] if len(found) == 1 else None


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


class Packages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not DIST or not os.path.isdir(DIST):
            raise unittest.SkipTest("GPUWARM_DIST not set: scripts/test.sh builds the packages with scripts/package.sh")
        cls.deb = one("gpuwarm_*_amd64.deb")
        cls.rpm = one("gpuwarm-*.x86_64.rpm")
        cls.tgz = one("gpuwarm-*-linux-x86_64.tar.gz")
        if not (cls.deb and cls.rpm and cls.tgz):
            raise unittest.SkipTest(f"{DIST} lacks one of the .deb, .rpm, .tar.gz")
        cls.tmp = tempfile.mkdtemp(prefix="gpuwarm-pkg-")
        with tarfile.open(cls.tgz) as t:
            t.extractall(cls.tmp)
        cls.tree = glob.glob(os.path.join(cls.tmp, "gpuwarm-*"))[0]
        cls.bin = os.path.join(cls.tree, "bin", "gpuwarm")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_deb_files_and_depends(self):
        files = run(["dpkg-deb", "-c", self.deb]).stdout
        for path in ("./usr/bin/gpuwarm", "./usr/lib/gpuwarm/libsimdjson.so.14", "./usr/share/man/man1/gpuwarm.1.gz",
                     "./usr/share/bash-completion/completions/gpuwarm", "./usr/share/zsh/vendor-completions/_gpuwarm",
                     "./usr/share/gpuwarm/40-gpuwarm-guard.conf", "./usr/share/doc/gpuwarm/copyright",
                     "./usr/lib/systemd/system/gpuwarm-metrics.timer",
                     "./usr/lib/systemd/system/gpuwarm-exporter.service", "./usr/lib/tmpfiles.d/gpuwarm.conf",
                     "./usr/share/gpuwarm/slurm/gpuwarm-healthcheck", "./usr/share/gpuwarm/nhc/gpuwarm.nhc",
                     "./usr/share/gpuwarm/kubernetes/node-problem-detector/gpuwarm-persistence.json", "./usr/share/gpuwarm/prometheus/gpuwarm.rules.yml"):
            self.assertIn(path, files)
        self.assertRegex(files, r"-rwxr-xr-x \S+ +\d+ [\d-]+ [\d:]+ \./usr/share/gpuwarm/slurm/gpuwarm-healthcheck")
        # Options keep their two hyphens in the man page (pandoc's "smart" reading made `--json` an en dash).
        man = subprocess.run(f"dpkg-deb --fsys-tarfile {self.deb} | tar -xOf - ./usr/share/man/man1/gpuwarm.1.gz | zcat",
                             shell=True, capture_output=True, text=True, check=True).stdout
        self.assertRegex(man, r"\\f\[B\](\\-\\-|--)json\\f\[R\]")
        self.assertNotIn(r"\[en]", man)
        depends = run(["dpkg-deb", "-f", self.deb, "Depends"]).stdout.strip()
        self.assertEqual(depends, "libc6 (>= 2.34), libgcc-s1, libstdc++6 (>= 5)")
        self.assertEqual(run(["dpkg-deb", "-f", self.deb, "Recommends"]).stdout.strip(), "libsystemd0, libkmod2, libmicrohttpd12 | libmicrohttpd12t64")
        # Maintainer scripts for the units it ships (review-s49-first P4), executable as dpkg needs them.
        control = os.path.join(self.tmp, "deb-control")
        run(["dpkg-deb", "-e", self.deb, control])
        for script in ("postinst", "prerm", "postrm"):
            self.assertEqual(os.stat(os.path.join(control, script)).st_mode & 0o777, 0o755, script)
        with open(os.path.join(control, "postinst")) as f:
            self.assertIn("try-restart gpuwarm-exporter.service", f.read())

    def test_rpm_files_and_requires(self):
        if not shutil.which("rpm"):
            self.skipTest("rpm not installed (scripts/setup.sh installs it)")
        files = run(["rpm", "-qlp", self.rpm]).stdout.split()
        for path in ("/usr/bin/gpuwarm", "/usr/lib/gpuwarm/libsimdjson.so.14", "/usr/share/man/man1/gpuwarm.1.gz",
                     "/usr/share/zsh/site-functions/_gpuwarm", "/usr/share/gpuwarm/40-gpuwarm-guard.conf"):
            self.assertIn(path, files)
        requires = [r for r in run(["rpm", "-qpR", self.rpm]).stdout.splitlines() if not r.startswith("rpmlib(")]
        self.assertEqual(sorted(set(requires)), ["/bin/sh", "glibc >= 2.34", "libgcc", "libstdc++"])  # sh: scriptlets
        scripts = run(["rpm", "-qp", "--scripts", self.rpm]).stdout
        for needle in ("postinstall scriptlet", "systemctl try-restart gpuwarm-exporter.service",
                       "preuninstall scriptlet", "systemctl stop gpuwarm-metrics.timer", "postuninstall scriptlet"):
            self.assertIn(needle, scripts)
        info = run(["rpm", "-qpi", self.rpm]).stdout
        self.assertIn("persistence runbook", info)
        self.assertNotIn("installer created using CPack", info)

    def test_binary_needs_only_glibc_and_its_bundled_library(self):
        dyn = run(["readelf", "-d", self.bin]).stdout
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dyn))
        self.assertEqual(needed - GLIBC_LIBS, {"libsimdjson.so.14"}, dyn)
        self.assertIn("[$ORIGIN/../lib/gpuwarm]", dyn)
        # Hardened as Debian builds its packages: full RELRO, stack protector, fortified libc calls.
        self.assertRegex(dyn, r"\(FLAGS\)\s+BIND_NOW|\(FLAGS_1\)\s+Flags: NOW")
        self.assertIn("GNU_RELRO", run(["readelf", "-lW", self.bin]).stdout)
        symbols = run(["nm", "-D", self.bin]).stdout
        self.assertIn("__stack_chk_fail", symbols)
        self.assertRegex(symbols, r"__\w+_chk")
        versions = set(re.findall(r"GLIBC_(\d+)\.(\d+)", run(["objdump", "-T", self.bin]).stdout))
        self.assertEqual(max((int(a), int(b)) for a, b in versions), (2, 34))
        r = run([self.bin, "--version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^gpuwarm \d+\.\d+\.\d+\ncommit \S+.*\nbuild Release\n$")
        # The tarball runs from wherever it is unpacked: a driverless fake root is "no driver" (5).
        root = h.FakeRoot()
        self.addCleanup(shutil.rmtree, root.path, ignore_errors=True)
        r = run([self.bin, "diagnose", "--root", root.path, "--no-systemd"])
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)

    def test_without_libsystemd_and_libkmod(self):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            self.skipTest("needs root and unshare to hide libsystemd and libkmod in a mount namespace")
        hide = []
        for name in ("libsystemd.so.0", "libkmod.so.2"):
            for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"):
                if os.path.exists(os.path.join(d, name)):
                    hide.append(os.path.join(os.path.realpath(d), name))
        root = h.FakeRoot()
        self.addCleanup(shutil.rmtree, root.path, ignore_errors=True)
        script = "".join(f"mount --bind /dev/null {p} && " for p in sorted(set(hide)))
        script += (f'"$0" diagnose --root {root.path} --no-systemd; echo "diagnose=$?"; '
                   f'"$0" fix --dry-run --root {root.path}; echo "fix=$?"; '
                   f'"$0" reload-modules --module-dir {root.path}; echo "reload=$?"')
        r = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, self.bin])
        out = r.stdout + r.stderr
        self.assertIn("diagnose=5", out)
        self.assertIn("libsystemd.so.0 could not be loaded", out)
        self.assertIn("install libsystemd0 (Debian, Ubuntu) or systemd-libs (RHEL, Fedora)", out)
        self.assertIn("libkmod.so.2 could not be loaded", out)
        self.assertIn("reload=1", out)

    def test_deb_in_a_fresh_debian_root(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to chroot into a Debian root")
        for tool in ("mmdebstrap", "unshare"):
            if not shutil.which(tool):
                self.skipTest(f"{tool} not installed (scripts/setup.sh installs it)")
        from test_real_systemd import build_rootfs
        rootfs, why = build_rootfs()
        if rootfs is None:
            self.skipTest(why)
        machine = os.path.join(self.tmp, "debian")
        subprocess.run(["cp", "-a", "--reflink=auto", rootfs, machine], check=True)
        self.addCleanup(shutil.rmtree, machine, ignore_errors=True)
        shutil.copy(self.deb, os.path.join(machine, "tmp", "gpuwarm.deb"))
        shutil.copy(self.bin, os.path.join(machine, "tmp", "gpuwarm-tarball"))
        os.makedirs(os.path.join(machine, "tmp", "lib", "gpuwarm"), exist_ok=True)
        shutil.copy(os.path.join(self.tree, "lib", "gpuwarm", "libsimdjson.so.14"),
                    os.path.join(machine, "tmp", "lib", "gpuwarm"))

        def inside(cmd):
            return run(["unshare", "--mount", "--fork", "chroot", machine, "sh", "-c",
                        "mount -t proc proc /proc 2>/dev/null; " + cmd])

        r = inside("dpkg -i /tmp/gpuwarm.deb")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # The units ship disabled; one an admin enabled is masked by a removal (nothing starts it while the binary
        # is gone) and enabled again by a reinstall.
        timer_link = "/etc/systemd/system/timers.target.wants/gpuwarm-metrics.timer"
        r = inside(f"test ! -e {timer_link} && systemctl enable gpuwarm-metrics.timer >/dev/null 2>&1 && "
                   f"dpkg --remove gpuwarm >/dev/null && readlink /etc/systemd/system/gpuwarm-metrics.timer && "
                   f"dpkg -i /tmp/gpuwarm.deb >/dev/null && test ! -e /etc/systemd/system/gpuwarm-metrics.timer && "
                   f"test -L {timer_link} && echo enabled-again")
        self.assertEqual(r.stdout.split(), ["/dev/null", "enabled-again"], r.stdout + r.stderr)
        r = inside("gpuwarm --version")
        self.assertTrue(r.stdout.startswith("gpuwarm "), r.stdout + r.stderr)
        r = inside("gpuwarm diagnose --no-systemd")
        self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
        self.assertIn("driver", r.stdout.lower())
        # The man page renders (man-db is not in a minimal root: read it from here).
        man = run(["man", "-l", os.path.join(machine, "usr/share/man/man1/gpuwarm.1.gz")], env={**os.environ, "MANPAGER": "cat"})
        self.assertIn("keep NVIDIA GPUs initialized", man.stdout)
        r = inside('bash -c \'. /usr/share/bash-completion/completions/gpuwarm; COMP_WORDS=(gpuwarm reload); '
                   'COMP_CWORD=1; _gpuwarm; echo "${COMPREPLY[*]}"\'')
        self.assertEqual(r.stdout.strip(), "reload-modules", r.stderr)
        # /run is runtime state (a tmpfs on a booted host): the node's lock files a run as root made stay there
        # until the next boot, as any daemon's would.
        r = inside("dpkg --purge gpuwarm >/dev/null && find / -xdev -name '*gpuwarm*' -not -path '/tmp/*' "
                   "-not -path '/proc/*' -not -path '/run/gpuwarm-*.lock' -not -name .gpuwarm-complete")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "", "left behind after purge")
        # The same root without libsystemd and libkmod: the tarball's binary diagnoses and names what is missing.
        r = inside("dpkg --remove --force-depends libsystemd0 libkmod2 >/dev/null 2>&1; "
                   "mkdir -p /tmp/t/bin && cp /tmp/gpuwarm-tarball /tmp/t/bin/gpuwarm && cp -r /tmp/lib /tmp/t/ && "
                   "/tmp/t/bin/gpuwarm diagnose --no-systemd; echo diagnose=$?; /tmp/t/bin/gpuwarm fix --dry-run; "
                   "echo fix=$?")
        out = r.stdout + r.stderr
        self.assertIn("diagnose=5", out)
        self.assertIn("libsystemd.so.0 could not be loaded", out)


if __name__ == "__main__":
    unittest.main()
