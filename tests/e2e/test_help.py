"""Every help page at 80 columns, kept as golden files (GPUWARM_UPDATE_GOLDEN=1 rewrites them after review),
and the "did you mean" for a mistyped command or option."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness as h


def commands():
    r = h.run(["--help"], raw=True)
    section = r.stdout.split("Subcommands:", 1)[1]
    return re.findall(r"^  ([a-z][a-z-]+) ", section, re.M)


class HelpPages(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)

    def test_every_page_fits_80_columns_and_matches_its_golden(self):
        names = commands()
        self.assertGreaterEqual(len(names), 14, names)
        for name in [None, *names]:
            r = h.run([name, "--help"] if name else ["--help"], raw=True)
            self.assertEqual(r.returncode, 0, name)
            wide = [line for line in r.stdout.splitlines() if len(line) > 80]
            self.assertEqual(wide, [], f"{name or 'gpuwarm'} --help has lines over 80 columns")
            self.assertNotIn("Excludes:", r.stdout, name)
            # Re-wrapping keeps every word apart (an old wrapper glued "Exit codes" into "Exitcodes").
            self.assertNotRegex(r.stdout, r"Exitcodes|Whata |NVMLis ", name)
            if name not in (None, "completion"):
                self.assertIn("Exit codes", r.stdout, name)
            if name is not None:
                self.assertIn("Examples:", r.stdout, name)  # README and the man page promise one per command
                # An example is one line to copy: a wrapped one pastes as a broken command.
                examples = r.stdout.split("Examples:", 1)[1].strip("\n").splitlines()
                wrapped = [line for line in examples if not re.match(r"  \S", line)]
                self.assertEqual(wrapped, [], f"{name} --help wraps an example")
            h.check_golden(self, os.path.join("help", (name or "gpuwarm") + ".txt"), r.stdout)
            # `gpuwarm help [COMMAND]` prints the same page, as git's and systemctl's help do.
            spelled = h.run(["help", name] if name else ["help"], raw=True)
            self.assertEqual((spelled.returncode, spelled.stdout), (0, r.stdout), name)

    def test_help_of_a_word_that_is_no_command_is_a_usage_error(self):
        r = h.run(["help", "diagnsoe"], raw=True)
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertIn('no command "diagnsoe" (`gpuwarm --help` lists them)', r.stderr)


class Completion(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)

    def test_hidden_options_are_never_offered(self):
        # A child's or a test's options (`probe --child`, `guard --inject-fault`) are not for users.
        for shell in ("bash", "zsh"):
            r = h.run(["completion", shell], raw=True)
            self.assertEqual(r.returncode, 0, shell)
            for hidden in ("--inject-fault", "--child-devices", "--load-child", "--sequential"):
                self.assertNotIn(hidden, r.stdout, shell)
            for visible in ("--dry-run", "--no-restore", "--json"):
                self.assertIn(visible, r.stdout, shell)


    def test_bash_offers_the_words_an_option_or_argument_takes(self):
        script = h.run(["completion", "bash"], raw=True).stdout
        with tempfile.NamedTemporaryFile("w", suffix=".bash", delete=False) as f:
            f.write(script)
        self.addCleanup(os.unlink, f.name)
        for words, want in [(["completion", ""], "bash zsh"), (["--color", ""], "auto always never"),
                            (["watch", "--mode", ""], "detached held"), (["watch", "--color", "a"], "auto always"),
                            (["probe", "--rounds", ""], ""), (["diagnose", "--j"], "--json"),
                            (["completion", "bash", ""], ""),  # its one argument is given
                            (["watch", "--color", "=", ""], "auto always never"),  # bash splits at '='
                            (["watch", "--mode", "=", "h"], "held")]:
            line = " ".join(["gpuwarm", *(w if w else "''" for w in words)])
            r = subprocess.run(["bash", "-c", f". {f.name}; COMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); "
                                "_gpuwarm; echo \"${COMPREPLY[*]}\""], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.stdout.strip(), want, (words, r.stderr))
        zsh = h.run(["completion", "zsh"], raw=True).stdout
        self.assertIn("'--mode=[", zsh)
        self.assertIn(":value:(detached held)' \\", zsh)
        self.assertIn("'1:value:(bash zsh)'", zsh)


    def test_zsh_offers_the_words_too(self):
        # Driven through a real interactive zsh (zpty): what <TAB><TAB> lists after each line.
        zsh = shutil.which("zsh")
        if zsh is None:
            self.skipTest("zsh is not installed (scripts/setup.sh installs it)")
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        with open(os.path.join(tmp, "_gpuwarm"), "w") as f:
            f.write(h.run(["completion", "zsh"], raw=True).stdout)
        driver = os.path.join(tmp, "drive.zsh")
        with open(driver, "w") as f:
            f.write(ZSH_DRIVER)
        for line, want, not_want in [("completion ", ["bash", "zsh"], []), ("--color ", ["always", "auto", "never"], []),
                                     ("watch --mode ", ["detached", "held"], []),
                                     ("completion bash ", ["--help"], ["zsh"]),
                                     # gpuwarm's own option before the command
                                     ("--color never ", ["check", "diagnose"], []),  # a pty's rows list a few
                                     ("--color=never watch --mode ", ["detached", "held"], [])]:
            r = subprocess.run([zsh, "-f", driver, tmp, line], capture_output=True, text=True, timeout=60)
            shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", r.stdout).split("\n")
            listed = " ".join(l for l in shown if not l.lstrip().startswith(("#", ">"))).split()
            for word in want:
                self.assertIn(word, listed, (line, r.stdout[-500:]))
            for word in not_want:
                self.assertNotIn(word, listed, (line, r.stdout[-500:]))


ZSH_DRIVER = r"""
zmodload zsh/zpty
zpty z 'TERM=xterm zsh -f -i'
# The echo of this line holds R\${:-EADY}, not the word the pattern waits for: only zsh running it prints that.
zpty -w z "PS1='> '; fpath=($1 \$fpath); autoload -Uz compinit; compinit -u -D; zstyle ':completion:*' menu no; gpuwarm() { :; }; print R\${:-EADY}"
zpty -r z x '*READY*'
sleep 0.5  # the line editor starts after the command: keys sent before it may be read as plain text
zpty -w -n z "gpuwarm $2"$'\t\t'
local all="" chunk quiet=0
# Read until the listing has been quiet for a second (or 20 s in all): a line may come in many chunks.
for i in {1..400}; do
  if zpty -r -t z chunk; then all+=$chunk; quiet=0; else (( quiet++ )); (( quiet > 20 )) && break; sleep 0.05; fi
done
print -r -- "$all"
zpty -d z
"""


class Suggestions(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)

    def test_a_mistyped_option_gets_the_nearest_one(self):
        for args, want in [(["diagnose", "--josn"], "--json"), (["fix", "--dryrun"], "--dry-run"),
                           (["metrics", "--textfiel", "/tmp"], "--textfile"), (["diagnose", "--snapsot", "x"], "--snapshot")]:
            r = h.run(args, raw=True)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(f"Did you mean `{want}`?", r.stderr, args)
        r = h.run(["diagnose", "--zzzzzzzz"], raw=True)
        self.assertNotIn("Did you mean", r.stderr)

    def test_a_mistyped_command_still_gets_the_nearest_one(self):
        r = h.run(["diagnsoe"], raw=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn('no command "diagnsoe"', r.stderr)
        self.assertIn("Did you mean `gpuwarm diagnose`?", r.stderr)
        self.assertIn("Run `gpuwarm --help` for the commands.", r.stderr)

    def test_an_option_error_points_at_the_command_help(self):
        r = h.run(["diagnose", "--josn"], raw=True)
        self.assertIn("Run `gpuwarm diagnose --help` for its options.", r.stderr)


if __name__ == "__main__":
    unittest.main()
