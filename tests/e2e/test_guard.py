"""gpuwarm guard end to end: fake roots for the module, device nodes, daemon
binary and kernel log; a driver directory holding the fake libnvidia-ml and a
libnvidia-cfg named like the driver's. Every reason's exit code, and a guard
that fails inside still exits in ExecCondition's skip range."""
import json
import os
import platform
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest

import harness as h

VERSION = "580.159.04"

# Both mismatch forms, as /dev/kmsg records after the module loaded.
OLD_FORM = ["NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build",
            "NVRM: API mismatch: the client has the version 580.95.05, but",
            "NVRM: this kernel module has the version 580.159.04.  Please",
            "NVRM: make sure that this kernel module and all NVIDIA driver",
            "NVRM: components have the same version."]
NEW_FORM = ["NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build",
            "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
            "NVRM: has the version 580.95.05, but this kernel module has",
            "NVRM: the version 580.159.04.  Please make sure that this",
            "NVRM: kernel module and all NVIDIA driver components",
            "NVRM: have the same version."]


def ld_cache(entries):
    """/etc/ld.so.cache in glibc's format: header, (flags, key, value, osversion, hwcap) entries, strings."""
    header = 48 + 24 * len(entries)
    strings = b""
    packed = []
    for key, value in entries:
        offsets = []
        for text in (key, value):
            offsets.append(header + len(strings))
            strings += text.encode() + b"\0"
        packed.append(struct.pack("=iIIIQ", 0x0303, offsets[0], offsets[1], 0, 0))
    return (b"glibc-ld.so.cache1.1" + struct.pack("=II", len(entries), len(strings)) + bytes(20) +
            b"".join(packed) + strings)


class Guard(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(self.root.cleanup)
        self.libdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.libdir)
        self.user_space(VERSION)

    def user_space(self, version, cfg_version=None, daemon_version=None):
        """libnvidia-ml.so.<v> (the fake), libnvidia-cfg.so.<v> and the daemon binary, as a package installs them."""
        for name in os.listdir(self.libdir):
            os.unlink(os.path.join(self.libdir, name))
        shutil.copy(os.path.join(h.FAKE_NVML_DIR, f"libnvidia-ml.so.{VERSION}"),
                    os.path.join(self.libdir, f"libnvidia-ml.so.{version}"))
        os.symlink(f"libnvidia-ml.so.{version}", os.path.join(self.libdir, "libnvidia-ml.so.1"))
        cfg = cfg_version or version
        open(os.path.join(self.libdir, f"libnvidia-cfg.so.{cfg}"), "w").close()
        os.symlink(f"libnvidia-cfg.so.{cfg}", os.path.join(self.libdir, "libnvidia-cfg.so.1"))
        self.elf_daemon = self.daemon_executable(daemon_version or version)

    def daemon_executable(self, version, *link_flags):
        """/usr/bin/nvidia-persistenced as an ELF executable (the guard reads its RUNPATH) printing `version`
        as the real one does; a script where no C compiler is at hand (the guard then cannot tell where the
        daemon would load its libraries from, and says so)."""
        path = self.root.p("usr/bin/nvidia-persistenced")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cc = shutil.which("cc")
        if cc is None:
            self.root.write("/usr/bin/nvidia-persistenced",
                            f"#!/bin/sh\necho 'nvidia-persistenced:  version {version}'\n"
                            "echo '  The NVIDIA Persistence Daemon.'\n", 0o755)
            return False
        source = os.path.join(self.libdir, "daemon.c")
        with open(source, "w") as f:
            f.write('#include <stdio.h>\nint main(void) { puts("nvidia-persistenced:  version %s"); '
                    'puts("  The NVIDIA Persistence Daemon."); return 0; }\n' % version)
        subprocess.run([cc, *link_flags, "-o", path, source], check=True)
        os.unlink(source)
        return True

    def stale_copy(self, version, folder="opt/old/lib"):
        """A libnvidia-cfg of another version that only the loader's cache names, as an old install leaves."""
        self.root.write(f"{folder}/libnvidia-cfg.so.{version}", "")
        os.symlink(f"libnvidia-cfg.so.{version}", self.root.p(f"{folder}/libnvidia-cfg.so.1"))
        self.root.write("etc/ld.so.cache", ld_cache([("libnvidia-cfg.so.1", f"/{folder}/libnvidia-cfg.so.1")]))

    def test_a_path_in_the_line_is_escaped(self):
        # review-s53-root L3: the line goes to the journal and a terminal; a folder named with an escape sequence
        # and a line break must neither steer the terminal nor forge a second journal line.
        self.root.driver(VERSION)
        self.stale_copy("580.95.05", folder="opt/o\x1b]0;pwn\x07\nforged/lib")
        r = self.guard("--verbose", kmsg=OLD_FORM)
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stdout)
        self.assertNotIn("\nforged", r.stdout)
        self.assertIn("/opt/o\\x1b]0;pwn\\x07\\x0aforged/lib/libnvidia-cfg.so.1", r.stdout)

    def guard(self, *args, kmsg=()):
        self.root.kmsg(kmsg)
        r = h.run(["guard", "--root", self.root.path, "--trust-root", "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                   "--kernel-log", self.root.p("dev/kmsg"), *args], raw=True)
        self.assertNotIn("Sanitizer", r.stderr)
        self.assertNotEqual(r.returncode, 255)
        return r

    def test_ready_node_goes_on(self):
        self.root.driver(VERSION)
        r = self.guard("--verbose")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"nvidia driver {VERSION} ready", r.stdout)
        for part in ("libnvidia-ml", "libnvidia-cfg", "nvidia-persistenced --version"):
            self.assertIn(f"{part} {VERSION}", r.stdout)
        # A relative --root is the same root: the daemon's --version is still asked, not dropped as a
        # program named by a relative path.
        parent = os.path.dirname(self.root.path)
        r = subprocess.run([h.BIN, "guard", "--root", os.path.basename(self.root.path), "--trust-root", "--verbose",
                            "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                            "--kernel-log", self.root.p("dev/kmsg")],
                           cwd=parent, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"nvidia-persistenced --version {VERSION}", r.stdout)

    def test_the_daemons_user_is_checked_by_a_nodes_acl_where_it_has_one(self):
        """review-s53-root L5: a site that grants the daemon's user a node with setfacl (or udev's uaccess) got
        exit 14 from mode bits alone, and persistence stayed off. The ACL decides, as it does for the kernel."""
        if os.geteuid() != 0:
            self.skipTest("needs root: the node is root's, and only root may set another user's ACL on it")
        self.root.driver(VERSION)
        node = self.root.p("dev/nvidia0")
        os.chmod(node, 0o600)
        r = self.guard("--user", "65534")
        self.assertEqual(r.returncode, 14, r.stdout + r.stderr)
        self.assertIn("user 65534 cannot open /dev/nvidia0: mode 0600, owner 0:0", r.stdout)
        # user_obj rw, user 65534 rw, group_obj none, mask rw, other none (setfacl -m u:65534:rw)
        acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, uid) for tag, perm, uid in (
            (0x01, 6, 0xffffffff), (0x02, 6, 65534), (0x04, 0, 0xffffffff), (0x10, 6, 0xffffffff),
            (0x20, 0, 0xffffffff)))
        try:
            os.setxattr(node, "system.posix_acl_access", acl)
        except OSError as e:
            self.skipTest(f"no ACLs where the test's tree is: {e}")
        r = self.guard("--user", "65534", "--verbose")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("user 65534 can open every /dev/nvidia* node", r.stdout)
        # The mask taken down to read (setfacl -m m::r): the grant no longer reaches write.
        os.setxattr(node, "system.posix_acl_access", acl[:28] + struct.pack("<HHI", 0x10, 4, 0xffffffff) + acl[36:])
        r = self.guard("--user", "65534")
        self.assertEqual(r.returncode, 14, r.stdout + r.stderr)
        self.assertIn("and its ACL grants no read and write either", r.stdout)

    def test_an_untrusted_roots_daemon_is_not_run_as_root(self):
        """As root, the tree's nvidia-persistenced runs for its --version only under --trust-root: a --root may be
        a container's tree, whose files are uid 0's too (review-s53-root H1). Without it the version is not known,
        and the line says why."""
        if os.geteuid() != 0:
            self.skipTest("needs root: as another user the tree's program runs as that user")
        self.root.driver(VERSION).kmsg(())
        ran = os.path.join(self.libdir, "daemon-ran")
        self.root.write("usr/bin/nvidia-persistenced",
                        f"#!/bin/sh\ntouch {ran}\necho 'nvidia-persistenced:  version {VERSION}'\n", 0o755)
        args = ["guard", "--root", self.root.path, "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                "--kernel-log", self.root.p("dev/kmsg"), "--verbose"]
        r = h.run(args, raw=True)
        self.assertFalse(os.path.exists(ran), r.stdout + r.stderr)
        self.assertIn(f"nvidia-persistenced --version: {'/usr/bin/nvidia-persistenced'} not run: --root "
                      f"{self.root.path} may be a container's or an image's tree", r.stdout)
        r = h.run(args + ["--trust-root"], raw=True)
        self.assertTrue(os.path.exists(ran), r.stdout)

    def test_an_untrusted_roots_library_versions_are_read_from_their_names(self):
        """Under a --root not vouched for, the guard still compares the halves, from the libraries' file names,
        loading nothing (review-s54 L2): the files here are not libraries at all, so a load would fail."""
        if os.geteuid() != 0:
            self.skipTest("needs root: as another user the tree's library is loaded as that user")
        self.root.driver(VERSION).kmsg(())
        lib = "usr/lib/x86_64-linux-gnu"
        for user_space, code in ((VERSION, 0), ("580.95.05", 11)):  # 11: user space older
            shutil.rmtree(self.root.p(lib), ignore_errors=True)
            for name in ("libnvidia-ml", "libnvidia-cfg"):
                self.root.write(f"{lib}/{name}.so.{user_space}", "not a library: loading it would fail\n", 0o755)
                os.symlink(f"{name}.so.{user_space}", self.root.p(f"{lib}/{name}.so.1"))
            r = h.run(["guard", "--root", self.root.path, "--kernel-log", self.root.p("dev/kmsg"), "--verbose"],
                      raw=True)
            self.assertIn(f"libnvidia-ml {user_space}", r.stdout, r.stderr)
            self.assertIn(f"libnvidia-cfg {user_space}", r.stdout)
            self.assertEqual(r.returncode, code, r.stdout + r.stderr)

    def test_a_named_library_root_loads_is_checked_as_a_found_one(self):
        """The guard's --nvml comes from a drop-in and is loaded at every boot: as root, a library another user
        could replace is passed over with the reason, as a searched one is (review-s53-root L4)."""
        if os.geteuid() != 0:
            self.skipTest("needs root: the check is for what root loads")
        self.root.driver(VERSION)
        os.chmod(os.path.join(self.libdir, f"libnvidia-ml.so.{VERSION}"), 0o666)
        r = self.guard("--verbose")
        self.assertIn("not loaded as root: writable by group or others", r.stdout + r.stderr)
        self.assertNotIn(f"libnvidia-ml {VERSION}", r.stdout)

    def test_a_named_kernel_log_it_cannot_read_skips(self):
        # A log the caller named that is in no shape gpuwarm reads (here bare text, which cannot tell a user's
        # text from the driver's) would hide the very lines the guard is for: a skip with code 2, not a go.
        self.root.driver(VERSION)
        log = self.root.p("bare.log")
        with open(log, "w") as f:
            f.write(f"NVRM: loading NVIDIA UNIX x86_64 Kernel Module  {VERSION}  Release Build\n")
        r = h.run(["guard", "--root", self.root.path, "--trust-root", "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                   "--kernel-log", log], raw=True)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("kernel log not read: ", r.stdout)
        self.assertIn("none of its 1 lines is in a format gpuwarm reads", r.stdout)
        # The same line as dmesg prints it is read: the node is ready.
        with open(log, "w") as f:
            f.write(f"[    5.100000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  {VERSION}  Release Build\n")
        r = h.run(["guard", "--root", self.root.path, "--trust-root", "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                   "--kernel-log", log], raw=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_a_refusal_from_an_earlier_boot_in_a_kern_log_is_history(self):
        # kern.log keeps boots: the refusal of the boot before the last reboot no longer holds, even though the
        # new boot's load line shares its stamp with the line before it (so its version is not taken).
        self.root.driver(VERSION)
        self.stale_copy("580.95.05")  # a copy of the refused version where the loader looks: a live refusal skips

        def kern(stamp, message):
            return f"Dec  1 10:00:00 node kernel: [{stamp}] {message}\n"
        old_boot = kern("    5.200000", OLD_FORM[0]) + "".join(kern(" 7200.100000", l) for l in OLD_FORM[1:])
        new_boot = (kern("    0.000000", "Linux version 6.8.0-49-generic (buildd@lcy02-amd64-080) (gcc 13.2.0) #49") +
                    kern("    5.100000", "nvidia 0000:18:00.0: enabling device (0000 -> 0002)") +
                    kern("    5.100000", OLD_FORM[0]))
        log = self.root.p("kern.log")
        args = ["guard", "--root", self.root.path, "--trust-root", "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                "--kernel-log", log]
        for text, code, needle in ((old_boot, 12, "client 580.95.05"), (old_boot + new_boot, 0, "ready")):
            with open(log, "w") as f:
                f.write(text)
            r = h.run(args, raw=True)
            self.assertEqual(r.returncode, code, r.stdout + r.stderr)
            self.assertIn(needle, r.stdout)

    def test_every_reason_exits_with_its_code(self):
        cases = [
            # Not loaded yet, or no device nodes yet: no half-update; the daemon's libnvidia-cfg loads the module
            # and creates the nodes through nvidia-modprobe, and an ExecCondition skip is never retried.
            ("module not loaded yet", lambda: None, (), 0, "not loaded yet"),
            ("driver package updated, old module loaded",
             lambda: (self.root.driver("580.95.05"),), (), 11, "kernel module 580.95.05 but libnvidia-ml 580.159.04"),
            # Debian 12 packages the daemon apart from the driver (535.171.04 beside 535.216.01): its own
            # version is shown, never a reason to keep it down.
            ("only the daemon binary's version differs (packaged apart)",
             lambda: (self.root.driver(VERSION), self.user_space(VERSION, daemon_version="535.171.04")), (), 0,
             "ready"),
            ("only libnvidia-cfg differs",
             lambda: (self.root.driver(VERSION), self.user_space(VERSION, cfg_version="575.57.08")), (), 11,
             "libnvidia-cfg 575.57.08"),
            ("API mismatch logged, old form, a copy of that version where the loader looks",
             lambda: (self.root.driver(VERSION), self.stale_copy("580.95.05")), OLD_FORM, 12,
             "client 580.95.05 (installed as /opt/old/lib/libnvidia-cfg.so.1), kernel module 580.159.04"),
            ("API mismatch logged, new form, a copy of that version where the loader looks",
             lambda: (self.root.driver(VERSION), self.stale_copy("580.95.05")), NEW_FORM, 12,
             "from 'nvidia-persiste' (pid 812)"),
            ("API mismatch logged by a process named like the daemon, for a version no library here has",
             lambda: self.root.driver(VERSION), NEW_FORM, 0, "ready"),
            ("API mismatch logged, not named, for a version no library here has",
             lambda: self.root.driver(VERSION), OLD_FORM, 0, "ready"),
            ("API mismatch from a container's own client, host halves agreeing (DRV004)", lambda: self.root.driver(VERSION),
             [line.replace("'nvidia-persiste' (pid 812)", "'python3' (pid 4242)") for line in NEW_FORM], 0, "ready"),
            ("no device nodes yet",
             lambda: (self.root.driver(VERSION), os.unlink(self.root.p("dev/nvidiactl"))), (), 0, "ready"),
        ]
        for name, prepare, kmsg, code, needle in cases:
            with self.subTest(name):
                if code == 0 and "no library here has" in name and not shutil.which("cc"):
                    self.skipTest("needs a C compiler: with a script for the daemon, where it loads from is unknown")
                self.root.cleanup()
                self.root = h.FakeRoot()
                self.user_space(VERSION)
                prepare()
                r = self.guard(kmsg=kmsg)
                self.assertEqual(r.returncode, code, r.stdout + r.stderr)
                self.assertIn(needle, r.stdout)
                self.assertEqual(r.stdout.count("\n"), 1, "one line for the journal")

    def test_a_made_up_version_in_one_kmsg_record_does_not_keep_the_daemon_down(self):
        """The driver prints the whole mismatch at once: /dev/kmsg holds it as one record, its new lines escaped
        as \\x0a. A process named like the daemon asking with any text no library here has does not skip the
        unit; the daemon refused with a version a copy here has does."""
        if not self.elf_daemon:
            self.skipTest("needs a C compiler: with a script for the daemon, where it loads from is unknown")
        self.root.driver(VERSION)

        def record(seq, sent):
            lines = ["NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                     f"NVRM: has the version {sent}, but this kernel module has",
                     f"NVRM: the version {VERSION}.  Please make sure that this",
                     "NVRM: kernel module and all NVIDIA driver components", "NVRM: have the same version."]
            return f"3,{seq},{seq}000,-;" + "\\x0a".join(lines) + "\n"

        load = f"6,1,1000,-;NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  {VERSION}  Release Build\n"
        for sent in ("x", "", "590.10.01", "1\\x0aNVRM: loading NVIDIA UNIX x86_64 Kernel Module  " + VERSION):
            with self.subTest(sent):
                self.root.write("dev/kmsg", load + record(2, sent))
                r = self.guard_log()
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.stale_copy("580.95.05")
        # The daemon's own refusal, then another client's record whose text holds a module load line: still a skip.
        self.root.write("dev/kmsg", load + record(2, "580.95.05") +
                        record(3, "1\\x0aNVRM: loading NVIDIA UNIX x86_64 Kernel Module  " + VERSION))
        r = self.guard_log()
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertIn("client 580.95.05 (installed as /opt/old/lib/libnvidia-cfg.so.1)", r.stdout)

    def guard_log(self, *args):
        """The guard over dev/kmsg as written (guard() writes one record per line)."""
        r = h.run(["guard", "--root", self.root.path, "--trust-root", "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                   "--kernel-log", self.root.p("dev/kmsg"), "--verbose", *args], raw=True)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def test_a_stale_copy_only_the_loaders_cache_names_is_found(self):
        """The cache as the real ldconfig writes it (its strings share tails, so a path can sit inside another),
        over real shared objects: a stale libnvidia-cfg of the logged version keeps the unit skipped and is
        named; once it is gone and the cache rebuilt, the same line no longer does."""
        ldconfig = shutil.which("ldconfig") or ("/usr/sbin/ldconfig" if os.path.exists("/usr/sbin/ldconfig") else None)
        cc = shutil.which("cc")
        if os.geteuid() != 0 or not ldconfig or not cc:
            self.skipTest("needs root (ldconfig -r chroots), ldconfig and a C compiler")
        self.root.driver(VERSION)
        source = os.path.join(self.libdir, "empty.c")
        with open(source, "w") as f:
            f.write("int gpuwarm_test_symbol;\n")

        def shared_object(folder, version):
            os.makedirs(self.root.p(folder), exist_ok=True)
            subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libnvidia-cfg.so.1", "-o",
                            self.root.p(f"{folder}/libnvidia-cfg.so.{version}"), source], check=True)

        # /x/lib/libnvidia-cfg.so.1 is the tail of /opt/x/lib/libnvidia-cfg.so.1: ldconfig stores it once.
        shared_object("opt/x/lib", VERSION)
        shared_object("x/lib", "580.95.05")
        self.root.write("etc/ld.so.conf", "/opt/x/lib\n/x/lib\n")
        subprocess.run([ldconfig, "-r", self.root.path], check=True)
        listed = subprocess.run([ldconfig, "-r", self.root.path, "-p"], capture_output=True, text=True).stdout
        self.assertIn("/x/lib/libnvidia-cfg.so.1", listed)
        r = self.guard("--verbose", kmsg=NEW_FORM)
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertIn("client 580.95.05 (installed as /x/lib/libnvidia-cfg.so.1)", r.stdout)
        self.assertIn("remove or update that copy", r.stdout)
        shutil.rmtree(self.root.p("x"))
        subprocess.run([ldconfig, "-r", self.root.path], check=True)
        r = self.guard("--verbose", kmsg=NEW_FORM)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("/opt/x/lib/libnvidia-cfg.so.1 580.159.04", r.stdout)
        if platform.machine() == "x86_64":
            # A glibc-hwcaps subfolder, which the loader prefers: the cache names its real file, not the soname.
            shared_object("opt/x/lib/glibc-hwcaps/x86-64-v2", "580.95.05")
            subprocess.run([ldconfig, "-r", self.root.path], check=True)
            r = self.guard("--verbose", kmsg=NEW_FORM)
            self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
            self.assertIn("(installed as /opt/x/lib/glibc-hwcaps/x86-64-v2/libnvidia-cfg.so.580.95.05)", r.stdout)

    def test_a_daemon_run_through_a_wrapper_leaves_where_it_loads_from_unknown(self):
        """Where the daemon is a wrapper (a script, or a binary beside the .nvidia-persistenced-wrapped it runs),
        what runs and with which loader variables is unknown: a made-up version still skips, and says why."""
        if not self.elf_daemon:
            self.skipTest("needs a C compiler")
        self.root.driver(VERSION)
        spoofed = [line.replace("580.95.05", "590.10.01") for line in NEW_FORM]
        self.assertEqual(self.guard(kmsg=spoofed).returncode, 0)  # the daemon itself: an ELF, read
        shutil.copy(self.root.p("usr/bin/nvidia-persistenced"), self.root.p("usr/bin/.nvidia-persistenced-wrapped"))
        r = self.guard("--verbose", kmsg=spoofed)
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertIn("a wrapper of /usr/bin/.nvidia-persistenced-wrapped", r.stdout)
        os.unlink(self.root.p("usr/bin/.nvidia-persistenced-wrapped"))
        self.root.write("/usr/bin/nvidia-persistenced", "#!/bin/sh\necho 'nvidia-persistenced:  version "
                        f"{VERSION}'\n", 0o755)
        r = self.guard("--verbose", kmsg=spoofed)
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertIn("a script, not the daemon", r.stdout)

    def test_a_stale_copy_only_the_daemons_runpath_reaches_is_found(self):
        """NixOS builds nvidia-persistenced with a RUNPATH: a real executable whose RUNPATH ($ORIGIN/../nvlib)
        reaches a stale libnvidia-cfg of the logged version keeps the unit skipped, naming the copy; the same
        executable built without it does not."""
        if not shutil.which("cc"):
            self.skipTest("needs a C compiler")
        self.root.driver(VERSION)

        def daemon(*link_flags):
            self.daemon_executable(VERSION, *link_flags)

        self.root.write("usr/nvlib/libnvidia-cfg.so.580.95.05", "")
        os.symlink("libnvidia-cfg.so.580.95.05", self.root.p("usr/nvlib/libnvidia-cfg.so.1"))
        daemon("-Wl,--enable-new-dtags,-rpath,$ORIGIN/../nvlib")
        r = self.guard("--verbose", kmsg=NEW_FORM)
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertIn(f"nvidia-persistenced --version {VERSION}", r.stdout)
        self.assertIn("client 580.95.05 (installed as /usr/bin/../nvlib/libnvidia-cfg.so.1)", r.stdout)
        daemon()
        r = self.guard("--verbose", kmsg=NEW_FORM)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_a_folder_that_hangs_ends_the_search_at_its_deadline_and_still_skips(self):
        """A library folder on a mount that stops answering (NFS, FUSE) must not hold the unit past its start
        timeout: the copy search gives up after 5 s, and a line it could no longer set aside still skips. The
        hang is opendir() of the NVML folder's glibc-hwcaps, made to block by a preloaded library."""
        cc = shutil.which("cc")
        if not self.elf_daemon or not cc:
            self.skipTest("needs a C compiler (the daemon as an ELF, and the library that makes opendir hang)")
        self.root.driver(VERSION)
        spoofed = [line.replace("580.95.05", "590.10.01") for line in NEW_FORM]
        hwcaps = os.path.join(self.libdir, "glibc-hwcaps")
        os.mkdir(hwcaps)
        self.assertEqual(self.guard(kmsg=spoofed).returncode, 0)  # every copy read: a made-up version goes on
        source = os.path.join(self.libdir, "hang.c")
        with open(source, "w") as f:
            f.write("#define _GNU_SOURCE\n#include <dirent.h>\n#include <dlfcn.h>\n#include <stdlib.h>\n"
                    "#include <string.h>\n#include <unistd.h>\n"
                    "DIR *opendir(const char *name) {\n"
                    "  const char *hang = getenv(\"GPUWARM_TEST_HANG_DIR\");\n"
                    "  if (hang != NULL && strcmp(name, hang) == 0) sleep(120);\n"
                    "  DIR *(*next)(const char *) = (DIR *(*)(const char *))dlsym(RTLD_NEXT, \"opendir\");\n"
                    "  return next(name);\n}\n")
        preload = os.path.join(self.libdir, "hang.so")
        subprocess.run([cc, "-shared", "-fPIC", "-o", preload, source, "-ldl"], check=True)
        os.unlink(source)
        # Under ASan its runtime must come first; the preloaded library only forwards opendir.
        asan = os.environ.get("ASAN_OPTIONS", "")
        env = {"LD_PRELOAD": preload, "GPUWARM_TEST_HANG_DIR": hwcaps,
               "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
        self.root.kmsg(spoofed)
        start = time.monotonic()
        r = h.run(["guard", "--root", self.root.path, "--trust-root", "--nvml", os.path.join(self.libdir, "libnvidia-ml.so.1"),
                   "--kernel-log", self.root.p("dev/kmsg"), "--verbose"], raw=True, extra_env=env)
        took = time.monotonic() - start
        self.assertNotIn("Sanitizer", r.stderr)
        self.assertEqual(r.returncode, 12, r.stdout + r.stderr)
        self.assertIn("driver library copies not all read: the search did not answer in 5 s (looking for "
                      "libnvidia-cfg.so.1 and libnvidia-ml.so.1)", r.stdout)
        # 5 s and the guard's other reads, well inside systemd's 90 s start timeout; not the hang's 120 s.
        self.assertGreaterEqual(took, 5)
        self.assertLess(took, 30)

    def test_device_access_for_the_daemon_user(self):
        self.root.driver(VERSION)
        os.chmod(self.root.p("dev/nvidia1"), 0o600)
        r = self.guard("--user", "65534")
        self.assertEqual(r.returncode, 14, r.stdout)
        self.assertIn("user 65534 cannot open /dev/nvidia1: mode 0600", r.stdout)
        os.chmod(self.root.p("dev/nvidia1"), 0o666)
        self.assertEqual(self.guard("--user", "65534").returncode, 0)
        r = self.guard("--user", "no-such-user-gpuwarm")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no such user", r.stdout)
        # --json answers in JSON on this path too (it printed the text line before)
        r = self.guard("--user", "no-such-user-gpuwarm", "--json")
        self.assertEqual(r.returncode, 2)
        d = json.loads(r.stdout)
        self.assertEqual((d["exit_code"], d["reason"]), (2, "usage"))
        self.assertIn("no such user", d["line"])
        # review-s53-root L5: 2^32 wrapped to uid 0, whose access skipped the check
        os.chmod(self.root.p("dev/nvidia1"), 0o600)
        for too_large in ("4294967296", "4294967295"):
            r = self.guard("--user", too_large)
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn(f"no such user: {too_large} (a uid is below 4294967295)", r.stdout)

    def test_json(self):
        self.root.driver("580.95.05")
        r = self.guard("--json")
        import json
        d = json.loads(r.stdout)
        self.assertEqual(d["exit_code"], 11)
        self.assertEqual((d["kind"], d["schema_version"], d["hostname"]), ("gpuwarm-guard", 1, socket.gethostname()))
        self.assertEqual(d["reason"], "version-mismatch")
        self.assertIn("kernel module 580.95.05", d["details"])

    def test_internal_failure_still_skips(self):
        self.root.driver(VERSION)
        for fault in ("throw", "segv"):
            with self.subTest(fault):
                r = self.guard("--inject-fault", fault)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("internal error", r.stderr)
        r = h.run(["guard", "--no-such-option"], raw=True)
        self.assertEqual(r.returncode, 2)

    def test_a_user_lookup_that_never_answers_does_not_keep_the_daemon_down(self):
        # getgrouplist asks a directory server too when nsswitch.conf names one; early in boot it may not answer.
        # The guard waits 5 s, then lets the start go on with the access unchecked (review-s44-guard 3).
        self.root.driver(VERSION)
        started = time.monotonic()
        r = self.guard("--user", "root", "--verbose", "--inject-fault", "hang-user")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertLess(time.monotonic() - started, 20)
        self.assertIn("the user root's groups were not read within 5 s", r.stdout)
        self.assertIn("ready", r.stdout)

    def test_daemon_binary_given_explicitly(self):
        self.root.driver(VERSION)
        other = os.path.join(self.libdir, "nvidia-persistenced")
        with open(other, "w") as f:
            f.write("#!/bin/sh\necho 'nvidia-persistenced:  version 590.44.01'\n")
        os.chmod(other, 0o755)
        r = self.guard("--daemon", other, "--verbose")
        # That binary is the one asked (its version is shown), and another version than the module's is no
        # reason to skip: the daemon is packaged apart on Debian and NixOS.
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("nvidia-persistenced --version 590.44.01 (packaged apart", r.stdout)
        # Named, but still run as root at boot: not from a folder anyone may write to, nor a file group or others
        # may rewrite (the version is then unread, which is no reason to skip either).
        shared = os.path.join(self.libdir, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        planted = os.path.join(shared, "nvidia-persistenced")
        shutil.copy(other, planted)
        os.chmod(planted, 0o755)
        os.chmod(other, 0o775)
        for daemon, why in ((planted, f"is in {shared}, writable by group or others"),
                            (other, "is writable by group or others")):
            with self.subTest(daemon):
                r = self.guard("--daemon", daemon, "--verbose")
                self.assertEqual(r.returncode, 0, r.stdout)
                self.assertIn(f"nvidia-persistenced --version: --daemon {daemon} not run: nvidia-persistenced not "
                              f"trusted: {daemon} {why}", r.stdout)
                self.assertNotIn("590.44.01", r.stdout)

    def test_help_lists_every_code(self):
        r = h.run(["guard", "--help"], raw=True)
        self.assertEqual(r.returncode, 0)
        for code in ("0 go", "1 internal-error", "10 no-module", "11 version-mismatch", "12 api-mismatch-logged",
                     "13 no-device-nodes", "14 device-access"):
            self.assertIn(code.split()[0].rjust(3) + " " + code.split()[1], r.stdout)


# Evaluates contrib/nixos/gpuwarm-guard.nix with nix-instantiate (Debian's
# nix-bin) against a stub of the few nixpkgs lib functions it uses: the
# module must parse, produce the ExecCondition line, and that line's
# arguments must be ones `gpuwarm guard` accepts.
NIX_EVAL = """
let
  lib = {
    mkEnableOption = d: { type = "bool"; description = d; };
    mkOption = o: o;
    types = { package = "package"; str = "str"; nullOr = t: "nullOr"; };
    mkIf = condition: content: { inherit condition content; };
    optionals = c: l: if c then l else [ ];
    escapeShellArgs = l: builtins.concatStringsSep " " (map (a: "'${a}'") l);
  };
  config = {
    services.gpuwarm-guard = { enable = true; package = "/nix/store/x-gpuwarm"; user = "nvidia-persistenced"; };
    hardware.nvidia = {
      nvidiaPersistenced = true;
      package = { outPath = "/nix/store/x-nvidia-x11"; persistenced = "/nix/store/x-persistenced"; };
    };
  };
  m = import MODULE { inherit config lib; pkgs = { }; };
in {
  condition = m.config.condition;
  exec = m.config.content.systemd.services.nvidia-persistenced.serviceConfig.ExecCondition;
  assertion = (builtins.head m.config.content.assertions).assertion;
}
"""


class Contrib(unittest.TestCase):
    def test_nixos_module_evaluates_to_a_guard_exec_condition(self):
        nix = shutil.which("nix-instantiate")
        if nix is None:
            self.skipTest("nix-instantiate not installed (Debian package nix-bin)")
        module = os.path.join(h.SOURCE_DIR, "contrib/nixos/gpuwarm-guard.nix")
        with tempfile.NamedTemporaryFile("w", suffix=".nix", delete=False) as f:
            f.write(NIX_EVAL.replace("MODULE", os.path.abspath(module)))
        self.addCleanup(os.unlink, f.name)
        import json
        import subprocess
        r = subprocess.run([nix, "--eval", "--strict", "--json", f.name], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        d = json.loads(r.stdout)
        self.assertTrue(d["condition"])
        self.assertTrue(d["assertion"])
        self.assertEqual(d["exec"], "/nix/store/x-gpuwarm/bin/gpuwarm 'guard' '--nvml' "
                                    "'/nix/store/x-nvidia-x11/lib/libnvidia-ml.so.1' '--daemon' "
                                    "'/nix/store/x-persistenced/bin/nvidia-persistenced' '--user' 'nvidia-persistenced'")
        # The same arguments are valid for this gpuwarm (an unknown flag would exit 2). The store paths exist on
        # NixOS only (a named file that does not is a usage error too): here, files stand in for them.
        h.require_binary(self)
        with tempfile.TemporaryDirectory() as empty_root:
            args = []
            for a in d["exec"].split()[1:]:
                a = a.strip("'")
                if a.startswith("/nix/store/"):
                    stand_in = os.path.join(empty_root, os.path.basename(a))
                    open(stand_in, "w").close()
                    a = stand_in
                args.append(a)
            self.assertEqual(len([a for a in args if a.startswith(empty_root)]), 2, args)
            r = h.run(args + ["--root", empty_root], raw=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("not loaded yet", r.stdout)
            missing = [a.replace(empty_root, "/nix/store/x") for a in args]
            r = h.run(missing + ["--root", empty_root], raw=True)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("--nvml: File does not exist: /nix/store/x/libnvidia-ml.so.1", r.stderr)
        # A root that does not exist is a mistyped command line, not "module not loaded".
        r = h.run(args + ["--root", tempfile.gettempdir() + "/gpuwarm-no-such-root"], raw=True)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("--root: Directory does not exist", r.stderr)

    def test_systemd_dropin_runs_the_guard_as_exec_condition(self):
        path = os.path.join(h.SOURCE_DIR, "contrib/systemd/nvidia-persistenced.service.d/40-gpuwarm-guard.conf")
        with open(path) as f:
            lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        self.assertEqual(lines[0], "[Service]")
        self.assertEqual(len(lines), 2)
        key, _, command = lines[1].partition("=")
        self.assertEqual(key, "ExecCondition")
        argv = shlex.split(command)
        self.assertEqual(argv[:2], ["/bin/sh", "-c"])
        # Run as systemd would, with gpuwarm at the path the drop-in names, and with none there.
        h.require_binary(self)
        with tempfile.TemporaryDirectory() as d:
            script = argv[2].replace("/usr/local/bin/gpuwarm", os.path.join(d, "gpuwarm"))
            r = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0)
            self.assertIn("is missing: nvidia-persistenced starts unguarded", r.stdout)
            os.symlink(h.BIN, os.path.join(d, "gpuwarm"))
            r = subprocess.run(["/bin/sh", "-c", script.replace(" guard;", f" guard --root {d};")],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)  # the guard's own answer, passed through
            self.assertIn("nvidia kernel module not loaded yet", r.stdout)


if __name__ == "__main__":
    unittest.main()
