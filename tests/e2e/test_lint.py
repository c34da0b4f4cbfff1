"""gpuwarm lint end to end: a tree of realistic configs, the report format,
JSON, skipped files, exit codes."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness as h

ROLE = """- name: enable persistence (old way)
  command: nvidia-smi -pm 1
- name: fine
  command: nvidia-smi -q
"""
UBUNTU_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon
StopWhenUnneeded=true

[Service]
Type=forking
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose
"""


class Lint(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.tree = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tree)

    def put(self, rel, content, mode="w"):
        path = os.path.join(self.tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(content)
        return path

    def lint(self, *args):
        r = h.run(["lint", *args], raw=True)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def test_findings_format_and_exit_code(self):
        role = self.put("roles/gpu/tasks/main.yml", ROLE)
        unit = self.put("etc/systemd/system/nvidia-persistenced.service", UBUNTU_UNIT)
        self.put("scripts/node-init", "#!/bin/bash\n# nvidia-smi -pm 1 was here\nsystemctl enable nvidia-persistenced\n")
        self.put(".git/config", "nvidia-smi -pm 1\n")
        r = self.lint(self.tree)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        lines = [l for l in r.stdout.splitlines() if not l.startswith("  fix:")]
        self.assertIn(f"{role}:2:12: LINT001 ", "\n".join(lines))
        self.assertTrue(any(l.startswith(f"{unit}:3:1: LINT010 ") for l in lines), lines)
        self.assertTrue(any(l.startswith(f"{unit}:7:") and " LINT002 " in l for l in lines), lines)
        self.assertTrue(any(l.startswith(f"{unit}:5:1: LINT011 ") for l in lines), lines)
        self.assertNotIn(".git", r.stdout)
        self.assertNotIn("node-init", r.stdout)
        self.assertIn("finding(s) in 3 file(s) scanned", r.stderr)

    def test_a_unit_is_read_with_the_drop_ins_systemd_reads_after_it(self):
        # A node's tree: the vendor unit in /usr/lib (merged /usr: /lib is a link), fix's drop-in in /etc.
        unit = self.put("usr/lib/systemd/system/nvidia-persistenced.service", UBUNTU_UNIT)
        os.symlink("usr/lib", os.path.join(self.tree, "lib"))
        r = self.lint(unit)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("3 finding(s) in 1 file(s) scanned", r.stderr)
        dropin = self.put("etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf",
                          "[Unit]\nStopWhenUnneeded=no\n\n[Service]\nRestart=on-failure\nExecStart=\n"
                          "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose\n")
        for named in (unit, os.path.join(self.tree, "lib/systemd/system/nvidia-persistenced.service")):
            r = self.lint(named)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(r.stdout, "")
            # The drop-in is scanned too, once (not again through /lib), and named where it overrides.
            self.assertIn("0 finding(s) in 2 file(s) scanned; 3 set aside", r.stderr)
            self.assertIn(f":3:1: LINT010 not in force, overridden by {dropin}:2: StopWhenUnneeded=true", r.stderr)
            self.assertIn(f":5:1: LINT011 not in force, overridden by {dropin}:5: no Restart=", r.stderr)
            self.assertIn(f":7:67: LINT002 not in force, overridden by {dropin}:6: ", r.stderr)
        r = self.lint("--json", self.tree)
        rep = json.loads(r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual((rep["files_scanned"], rep["findings"]), (2, []))
        self.assertEqual(sorted((a["rule_id"], a["line"], a["overridden_by"]) for a in rep["set_aside"]),
                         [("LINT002", 7, f"{dropin}:6"), ("LINT010", 3, f"{dropin}:2"), ("LINT011", 5, f"{dropin}:5")])
        # A later drop-in with a bad value of its own: the unit's setting is overridden, the drop-in reported.
        self.put("run/systemd/system/nvidia-persistenced.service.d/90-debug.conf", "[Service]\nRestart=no\n")
        r = self.lint(unit)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("90-debug.conf:2:1: LINT011 Restart=no", r.stdout)
        self.assertIn("1 finding(s) in 3 file(s) scanned; 3 set aside", r.stderr)
        # A copy of the whole unit in /etc replaces the vendor one: what that copy says is what runs.
        copy = self.put("etc/systemd/system/nvidia-persistenced.service", UBUNTU_UNIT.replace("StopWhenUnneeded=true\n", ""))
        r = self.lint("--json", unit)
        rep = json.loads(r.stdout)
        self.assertEqual({a["overridden_by"] for a in rep["set_aside"] if a["path"] == unit}, {copy})
        self.assertEqual(sorted((f["path"], f["rule_id"]) for f in rep["findings"]),
                         [(os.path.join(self.tree, "run/systemd/system/nvidia-persistenced.service.d/90-debug.conf"),
                           "LINT011")])

    def test_masks_links_hidden_and_shared_drop_ins(self):
        unit = self.put("usr/lib/systemd/system/nvidia-persistenced.service", UBUNTU_UNIT)
        d = "etc/systemd/system/nvidia-persistenced.service.d"
        # The vendor's fix drop-in masked in /etc: it is not read, so the unit's findings stay in force, and its
        # own line is not linted as if systemd read it.
        vendor_fix = self.put("usr/lib/systemd/system/nvidia-persistenced.service.d/50-fix.conf",
                              "[Unit]\nStopWhenUnneeded=no\n[Service]\nType=simple\n")
        os.makedirs(os.path.join(self.tree, d))
        os.symlink("/dev/null", os.path.join(self.tree, d, "50-fix.conf"))
        # A hidden file is skipped by systemd; a link out of the tree is not followed.
        self.put(d + "/.disabled.conf", "[Unit]\nStopWhenUnneeded=no\n")
        outside = self.put("outside/private.conf", "[Service]\nType=exotic\n")
        os.symlink(outside, os.path.join(self.tree, d, "90-link.conf"))
        # service.d/ applies to every service.
        shared = self.put("etc/systemd/system/service.d/10-restart.conf", "[Service]\nRestart=on-failure\n")
        r = self.lint("--json", unit)
        rep = json.loads(r.stdout)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertEqual(sorted((f["rule_id"], f["line"]) for f in rep["findings"] if f["path"] == unit),
                         [("LINT002", 7), ("LINT010", 3)])
        self.assertNotIn(vendor_fix, [f["path"] for f in rep["findings"]])
        self.assertEqual([(a["rule_id"], a["overridden_by"]) for a in rep["set_aside"]], [("LINT011", shared + ":2")])
        self.assertIn({"path": os.path.join(self.tree, d, "90-link.conf"),
                       "note": "not followed: a link (systemd reads what it names; lint does not, so what it sets is "
                               "not applied here)"}, rep["skipped"])
        self.assertEqual(rep["unreadable"], 0)
        # A shared drop-in with a bad value of its own: the unit's setting is overridden, and the drop-in, read as
        # nvidia-persistenced's, answers for it.
        prefix = self.put("etc/systemd/system/nvidia-.service.d/90-norestart.conf", "[Service]\nRestart=no\n")
        r = self.lint("--json", unit)
        rep = json.loads(r.stdout)
        self.assertIn((prefix, 2, "LINT011"), [(f["path"], f["line"], f["rule_id"]) for f in rep["findings"]])
        self.assertEqual([(a["rule_id"], a["overridden_by"]) for a in rep["set_aside"]], [("LINT011", prefix + ":2")])
        os.unlink(prefix)
        # The same from service.d/, which applies to every service.
        stop = self.put("etc/systemd/system/service.d/90-stop.conf", "[Unit]\nStopWhenUnneeded=yes\n")
        rep = json.loads(self.lint("--json", unit).stdout)
        self.assertIn((stop, 2, "LINT010"), [(f["path"], f["line"], f["rule_id"]) for f in rep["findings"]])
        self.assertEqual([f for f in rep["findings"] if f["path"] == stop and f["rule_id"] != "LINT010"], [])
        os.unlink(stop)
        # The vendor drop-in linted by name: masked, so what it says is not in force.
        r = self.lint("--json", vendor_fix)
        rep = json.loads(r.stdout)
        self.assertEqual((r.returncode, rep["findings"]), (0, []), r.stdout)
        self.assertEqual([a["overridden_by"] for a in rep["set_aside"]],
                         [os.path.join(self.tree, d, "50-fix.conf") + " (a link to /dev/null: masked)"])

    def test_an_exec_start_is_counted_after_what_is_read_before_it(self):
        # systemd 252 loads this unit (10-clear.conf cleared the vendor's ExecStart=) and refuses it without that.
        self.put("usr/lib/systemd/system/nvidia-persistenced.service", UBUNTU_UNIT + "Restart=always\n")
        d = "etc/systemd/system/nvidia-persistenced.service.d/"
        clear = self.put(d + "10-clear.conf", "[Service]\nExecStart=\n")
        site = self.put(d + "20-site.conf", "[Service]\nExecStart=/usr/bin/nvidia-persistenced --verbose\n")
        r = self.lint("--json", site)
        self.assertEqual((r.returncode, json.loads(r.stdout)["findings"]), (0, []), r.stdout)
        os.unlink(clear)
        r = self.lint("--json", site)
        self.assertEqual([(f["path"], f["line"], f["rule_id"]) for f in json.loads(r.stdout)["findings"]],
                         [(site, 2, "LINT015")])

    def test_a_file_reached_twice_is_scanned_once(self):
        script = self.put("bin/a.sh", "#!/bin/sh\nnvidia-smi -pm 1\n")
        os.link(script, os.path.join(self.tree, "hard-link.sh"))
        for args in ([script, script], [script, self.tree], [os.path.join(self.tree, "bin", ".", "a.sh"), script]):
            r = self.lint(*args, "--json")
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            d = json.loads(r.stdout)
            self.assertEqual((d["files_scanned"], len(d["findings"])), (1, 1), (args, d))
            self.assertEqual(d["findings"][0]["path"], args[0])  # named where it was first reached

    def test_clean_tree_binary_and_json(self):
        self.put("ok.sh", "#!/bin/sh\nnvidia-smi -q\n")
        self.put("blob.bin", b"\x00\x01nvidia-smi -pm 1\x00", mode="wb")
        r = self.lint(self.tree)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("blob.bin: skipped: binary", r.stderr)
        self.put("bad.yml", "- shell: sudo nvidia-smi -i 0 -pm ENABLED\n")
        r = self.lint(self.tree, "--json")
        self.assertEqual(r.returncode, 3)
        d = json.loads(r.stdout)
        self.assertEqual((d["kind"], d["schema_version"]), ("gpuwarm-lint", 1))
        self.assertEqual(d["files_scanned"], 2)
        self.assertEqual([(f["rule_id"], f["line"], f["column"]) for f in d["findings"]], [("LINT001", 1, 15)])
        self.assertEqual(d["skipped"][0]["note"], "skipped: binary")

    def test_errors_and_rules(self):
        missing = os.path.join(self.tree, "missing")
        r = self.lint(missing)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no such file or directory", r.stderr)
        # With --json, standard output alone says why it failed.
        self.put("bad.sh", "nvidia-smi -pm 1\n")
        r = self.lint(missing, os.path.join(self.tree, "bad.sh"), "--json")
        self.assertEqual(r.returncode, 1)
        d = json.loads(r.stdout)
        self.assertEqual(d["missing"], [missing])
        self.assertEqual([f["rule_id"] for f in d["findings"]], ["LINT001"])
        self.assertEqual(self.lint().returncode, 2)
        r = self.lint("--list-rules")
        self.assertEqual(r.returncode, 0)
        self.assertEqual([l.split()[0] for l in r.stdout.splitlines()],
                         ["LINT001", "LINT002", "LINT003", "LINT004", "LINT005", "LINT006",
                          "LINT010", "LINT011", "LINT012", "LINT013", "LINT014", "LINT015"])
        r = self.lint("--list-rules", "--json")
        self.assertEqual([rule["id"] for rule in json.loads(r.stdout)][:2], ["LINT001", "LINT002"])

    def test_names_and_quoted_text_from_the_tree_are_escaped(self):
        # A scanned tree is untrusted: a file name or a quoted value must not drive the terminal.
        name = self.put("evil\x1b]0;owned\x07\x1b[2Jx.sh", "nvidia-smi -pm 1\n")
        self.put("quoted.sh", 'nvidia-smi -pm "{{ pm\x1b[31m }}"\n')
        self.put("blob\x1b[2J.bin", b"\x00\x01", mode="wb")
        r = self.lint(self.tree)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertNotIn("\x1b", r.stdout + r.stderr)
        self.assertNotIn("\x07", r.stdout + r.stderr)
        self.assertIn("evil\\x1b]0;owned\\x07\\x1b[2Jx.sh:1:1: LINT001", r.stdout)
        self.assertIn("pm\\x1b[31m", r.stdout)
        self.assertIn("blob\\x1b[2J.bin: skipped: binary", r.stderr)
        # JSON keeps the exact name (its own escaping is JSON's).
        d = json.loads(self.lint(self.tree, "--json").stdout)
        self.assertIn(name, [f["path"] for f in d["findings"]])

    def stdin_lint(self, text, *args):
        env = dict(os.environ, NO_COLOR="1")
        r = subprocess.run([h.BIN, "lint", *args], input=text, capture_output=True, text=True, env=env, timeout=60)
        self.assertNotIn("Sanitizer", r.stderr)
        return r

    def test_standard_input(self):
        """`-` reads the text a pipe gives (git show, a template rendered on the fly); --stdin-name gives it a kind."""
        r = self.stdin_lint("#!/bin/sh\nnvidia-smi -pm 1\n", "-")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertTrue(r.stdout.startswith("<stdin>:2:1: LINT001 "), r.stdout)
        self.assertIn("1 finding(s) in 1 file(s) scanned", r.stderr)
        # A unit's settings are findings only when the name says it is one, here a drop-in, read with a file.
        ok = self.put("ok.sh", "nvidia-smi -q\n")
        dropin = "[Unit]\nStopWhenUnneeded=true\n"
        self.assertEqual(self.stdin_lint(dropin, "-").returncode, 0)
        name = "etc/systemd/system/nvidia-persistenced.service.d/override.conf"
        r = self.stdin_lint(dropin, "--json", "--stdin-name", name, ok, "-")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        d = json.loads(r.stdout)
        self.assertEqual(d["files_scanned"], 2)
        self.assertEqual([(f["path"], f["rule_id"], f["line"]) for f in d["findings"]], [(name, "LINT010", 2)])
        # The role around the name resolves its variables.
        self.put("roles/gpu/defaults/main.yml", "gpu_pm: 1\n")
        r = self.stdin_lint("- command: nvidia-smi -pm {{ gpu_pm }}\n", "--stdin-name",
                            os.path.join(self.tree, "roles/gpu/tasks/main.yml"), "-")
        self.assertIn(":1:12: LINT001 ", r.stdout)
        # Binary and oversized input are skipped with a note, like files. Nothing else scanned, or input too large
        # to read, leaves what it holds unknown: exit 1, never a pass. --stdin-name alone is a usage error.
        r = self.stdin_lint("a\0b", "-")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("<stdin>: skipped: binary", r.stderr)
        self.assertIn("0 finding(s) in 0 file(s) scanned: nothing was checked", r.stderr)
        self.assertEqual(self.stdin_lint("a\0b", ok, "-").returncode, 0)
        r = self.stdin_lint("a" * (9 << 20), ok, "-")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("<stdin>: skipped: standard input: larger than 8 MiB", r.stderr)
        self.assertIn("1 file(s) or folder(s) could not be read", r.stderr)
        r = self.stdin_lint("", "--stdin-name", "x.yml", ok)
        self.assertEqual(r.returncode, 2)
        self.assertIn("add - to the paths", r.stderr)

    def test_links_in_a_folder_are_counted_and_listed_not_followed(self):
        # A repository's link to a script elsewhere: not scanned (as grep -r and find do), but never in silence.
        target = self.put("common/setup.sh", "nvidia-smi -pm 1\n")
        self.put("scripts/clean.sh", "echo hello\n")
        os.symlink(target, os.path.join(self.tree, "scripts", "setup.sh"))
        os.symlink("/dev/null", os.path.join(self.tree, "scripts", "null.sh"))
        scripts = os.path.join(self.tree, "scripts")
        r = self.lint(scripts)
        self.assertEqual(r.returncode, 0, r.stderr)
        os.mkfifo(os.path.join(scripts, "pipe.sh"))  # never opened: a FIFO or a device could block or act
        self.assertIn("0 finding(s) in 1 file(s) scanned; 3 link(s) or special file(s) not read (--json "
                      "lists them; name a link to scan what it names)", self.lint(scripts).stderr)
        d = json.loads(self.lint("--json", scripts).stdout)
        self.assertEqual(sorted((k["path"], k["note"]) for k in d["skipped"]),
                         [(os.path.join(scripts, "null.sh"), "not read: a link to /dev/null (a mask)"),
                          (os.path.join(scripts, "pipe.sh"), "not read: not a regular file (a FIFO, socket or device)"),
                          (os.path.join(scripts, "setup.sh"), "not read: a link to a file (name it to scan it)")])
        os.unlink(os.path.join(scripts, "pipe.sh"))
        # Named, it is read; a device behind a link is refused before it is opened.
        self.assertEqual(self.lint(os.path.join(scripts, "setup.sh")).returncode, 3)
        r = self.lint(os.path.join(scripts, "null.sh"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("null.sh: unreadable: not a regular file", r.stderr)

    def test_a_file_that_cannot_be_read_is_not_a_pass(self):
        # Skipped by design (binaries): noted, and the exit says what was scanned. Not readable at all (a FIFO or
        # device named, permission denied) or too large to scan: what it holds is unknown, so the exit is 1.
        clean = self.put("clean.sh", "echo hello\n")
        fifo = os.path.join(self.tree, "pipe")
        os.mkfifo(fifo)
        r = self.lint(clean, fifo)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(f"{fifo}: unreadable: not a regular file", r.stderr)
        self.assertIn("0 finding(s) in 1 file(s) scanned; 1 file(s) or folder(s) could not be read", r.stderr)
        d = json.loads(self.lint("--json", clean, fifo).stdout)
        self.assertEqual((d["files_scanned"], d["unreadable"]), (1, 1))
        # Findings elsewhere do not hide it: 1 outranks 3, as a missing PATH does.
        bad = self.put("bad.sh", "nvidia-smi -pm 1\n")
        self.assertEqual(self.lint(bad, fifo).returncode, 1)
        self.put("tool", "\x7fELF\0\0")
        self.assertEqual(self.lint(clean, os.path.join(self.tree, "tool")).returncode, 0)
        self.assertEqual(self.lint(os.path.join(self.tree, "tool")).returncode, 1)  # only a binary: nothing checked
        empty = os.path.join(self.tree, "empty")
        os.makedirs(empty)
        self.assertEqual(self.lint(empty).returncode, 1)  # an emptied or moved folder is not a pass
        self.put("docs/README.md", "# nvidia-smi -pm 1 is discussed here\n")
        r = self.lint(os.path.join(self.tree, "tool"), os.path.join(self.tree, "docs"))
        self.assertEqual(r.returncode, 1, r.stderr)  # a binary and documentation without --docs: nothing checked
        self.assertIn("nothing was checked; 1 documentation file(s) skipped", r.stderr)
        big = self.put("big.sh", "echo x\n" * (2 << 20))
        r = self.lint(clean, big)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("big.sh: skipped: larger than 8 MiB", r.stderr)
        # A binary too large to read whole (a driver .run installer) is still a binary: skipped by design.
        installer = os.path.join(self.tree, "NVIDIA-Linux-x86_64.run")
        with open(installer, "wb") as f:
            # A makeself header of tens of KiB before the first NUL, as NVIDIA's installers have.
            f.write(b"#!/bin/sh\nnvidia-smi -pm 1\n" + b"# header\n" * 4000 + b"\0" + b"\x7fELF" * (3 << 20))
        r = self.lint(clean, installer)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("NVIDIA-Linux-x86_64.run: skipped: binary", r.stderr)
        if os.geteuid() == 0 and shutil.which("setpriv"):
            secret = self.put("secret.sh", "nvidia-smi -pm 1\n")
            os.chmod(secret, 0)
            os.chmod(self.tree, 0o755)
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.BIN, "lint", secret],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("unreadable: Permission denied", r.stderr)
            # A folder that cannot be listed, inside a tree: not a smaller pass either.
            os.chmod(secret, 0o644)
            closed = os.path.join(self.tree, "closed")
            os.mkdir(closed, 0o700)
            self.put("closed/inside.sh", "nvidia-smi -pm 1\n")
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", h.BIN, "lint",
                                "--json", self.tree], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            d = json.loads(r.stdout)
            self.assertIn({"path": closed, "note": "unreadable: directory: Permission denied"}, d["skipped"])
            self.assertGreaterEqual(d["unreadable"], 1)

    def test_role_defaults_resolve_template_values(self):
        tasks = self.put("roles/gpu/tasks/main.yml",
                         "- command: nvidia-smi -pm {{ gpu_pm }}\n- command: nvidia-smi -pm {{ gpu_other }}\n")
        self.put("roles/gpu/defaults/main.yml", "---\ngpu_pm: 0\n")
        self.put("roles/gpu/vars/main.yml", "gpu_other: ENABLED\n")
        r = self.lint("--json", self.tree)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        found = {(f["rule_id"], f["line"]): f["message"] for f in json.loads(r.stdout)["findings"]}
        self.assertEqual(sorted(found), [("LINT001", 2), ("LINT003", 1)])
        self.assertIn("gpu_pm = 0 at " + os.path.join(self.tree, "roles/gpu/defaults/main.yml") + ":2",
                      found[("LINT003", 1)])
        # Without the role around it the value is unknown: reported, not passed.
        alone = self.put("elsewhere/main.yml", "- command: nvidia-smi -pm {{ gpu_pm }}\n")
        r = self.lint(alone)
        self.assertIn(f"{alone}:1:12: LINT004 ", r.stdout)
        self.assertIn("gpu_pm", r.stdout)
        self.assertEqual(tasks, os.path.join(self.tree, "roles/gpu/tasks/main.yml"))

    def test_documentation_is_counted_not_read_unless_docs(self):
        self.put("README.md", "Never run `nvidia-smi -pm 1`.\n\n```sh\nnvidia-smi -pm 1\n```\n")
        self.put("docs/notes.txt", "nvidia-smi -pm 1\n")
        r = self.lint(self.tree)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)  # only documentation: nothing was checked
        self.assertIn("0 finding(s) in 0 file(s) scanned: nothing was checked; 2 documentation file(s) skipped",
                      r.stderr)
        self.put("ok.sh", "echo hello\n")
        r = self.lint(self.tree)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("0 finding(s) in 1 file(s) scanned; 2 documentation file(s) skipped", r.stderr)
        r = self.lint("--docs", "--json", self.tree)
        d = json.loads(r.stdout)
        self.assertEqual([(os.path.basename(f["path"]), f["line"]) for f in d["findings"]], [("README.md", 4)])
        self.assertEqual(d["documentation_skipped"], 0)
        self.assertEqual(d["files_scanned"], 3)  # the two documents and ok.sh


if __name__ == "__main__":
    unittest.main()
