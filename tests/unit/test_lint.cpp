// lint_text is pure: per rule, realistic inputs — true positives, near misses,
// comments and quoting — with the rule IDs and positions expected.

#include <gtest/gtest.h>

#include <chrono>

#include "lint/lint.h"
#include "lint/units.h"

namespace gpuwarm::test {
namespace {

using lint::FileKind;

struct LintCase {
  const char* name;
  FileKind kind;
  const char* text;
  std::vector<std::string> expected;  // "RULE@line:column"
  const char* path = "";              // names the unit (drop-in directory, template)
};

std::vector<std::string> run(const LintCase& c, const lint::Variables* vars = nullptr, bool docs = false) {
  std::vector<std::string> out;
  for (const auto& f : lint::lint_text(c.text, lint::Source{c.path, c.kind, vars, docs})) {
    out.push_back(f.rule + "@" + std::to_string(f.line) + ":" + std::to_string(f.column));
  }
  return out;
}

void check(const std::vector<LintCase>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(run(c), c.expected);
  }
}

TEST(Lint, LINT001_legacy_flag) {
  const std::vector<LintCase> cases = {
      {"plain shell", FileKind::shell, "nvidia-smi -pm 1\n", {"LINT001@1:1"}},
      {"options between, ENABLED", FileKind::shell, "nvidia-smi -i 0,1 -pm ENABLED\n", {"LINT001@1:1"}},
      {"long form with =", FileKind::shell, "/usr/bin/nvidia-smi --persistence-mode=1\n", {"LINT001@1:1"}},
      {"long form, spaced", FileKind::shell, "nvidia-smi --persistence-mode 1\n", {"LINT001@1:1"}},
      {"through sudo after &&", FileKind::shell, "modprobe nvidia && sudo nvidia-smi -pm 1\n", {"LINT001@1:25"}},
      {"continued line", FileKind::shell, "nvidia-smi -i 0 \\\n  -pm 1\n", {"LINT001@1:1"}},
      {"in $(...)", FileKind::shell, "out=$(nvidia-smi -pm 1)\n", {"LINT001@1:7"}},
      {"disabling is a finding of its own", FileKind::shell, "nvidia-smi -pm 0\n", {"LINT003@1:1"}},
      {"a query is not a setting", FileKind::shell, "nvidia-smi --query-gpu=persistence_mode --format=csv\n", {}},
      {"comment", FileKind::shell, "# nvidia-smi -pm 1\n  # also nvidia-smi -pm 1\n", {}},
      {"trailing comment", FileKind::shell, "nvidia-smi -q # then nvidia-smi -pm 1\n", {}},
      {"mentioned, not run", FileKind::shell, "echo \"run nvidia-smi -pm 1 yourself\"\n", {}},
      {"-pm on the next command", FileKind::shell, "nvidia-smi -q\n-pm 1\n", {}},
      {"hash inside quotes is not a comment", FileKind::shell, "nvidia-smi -i '#0' -pm 1\n", {"LINT001@1:1"}},
      {"opt-out", FileKind::shell, "nvidia-smi -pm 1  # gpuwarm: ignore LINT001\n", {}},
      {"opt-out in a comment line above: that line only", FileKind::shell,
       "  # gpuwarm: ignore LINT001\nnvidia-smi -pm 1\nnvidia-smi -pm 1\n", {"LINT001@3:1"}},
      {"a command's own opt-out covers no other line", FileKind::shell,
       "nvidia-smi -q  # gpuwarm: ignore LINT001\nnvidia-smi -pm 1\n", {"LINT001@2:1"}},
      {"opt-out of another rule does not count", FileKind::shell, "nvidia-smi -pm 1  # gpuwarm: ignore LINT002\n",
       {"LINT001@1:1"}},
      {"Ansible command string", FileKind::yaml, "- name: x\n  command: nvidia-smi -pm 1\n", {"LINT001@2:12"}},
      {"Ansible shell, quoted, sudo", FileKind::yaml, "- shell: \"sudo nvidia-smi -pm 1 || true\"\n",
       {"LINT001@1:16"}},
      {"Ansible argv list", FileKind::yaml,
       "- command:\n    argv:\n      - nvidia-smi\n      - -pm\n      - \"1\"\n", {"LINT001@3:9"}},
      {"flow list", FileKind::yaml, "cmd: [\"nvidia-smi\", \"-pm\", \"1\"]\n", {"LINT001@1:8"}},
      {"YAML comment", FileKind::yaml, "# command: nvidia-smi -pm 1\n", {}},
      {"YAML: next key is another statement", FileKind::yaml, "command: nvidia-smi -q\nargs: -pm 1\n", {}},
      {"cloud-init runcmd: each item is a command line", FileKind::yaml,
       "runcmd:\n  - echo hi\n  - nvidia-smi -pm 1\n  - [ nvidia-smi, -i, \"0\", -pm, \"1\" ]\n",
       {"LINT001@3:5", "LINT001@4:7"}},
      {"Kubernetes args through sh -c", FileKind::yaml,
       "command: [\"sh\", \"-c\", \"nvidia-smi -pm 1 && sleep infinity\"]\n", {"LINT001@1:24"}},
      {"shell: bash -c", FileKind::shell, "bash -c 'nvidia-smi -pm 1'\n", {"LINT001@1:10"}},
      {"su -c, options first", FileKind::shell, "su -l root -c 'nvidia-smi -pm 1'\n", {"LINT001@1:16"}},
      {"k8s args after -c", FileKind::yaml, "command: [\"/bin/sh\"]\nargs: [\"-c\", \"nvidia-smi -pm 1\"]\n",
       {"LINT001@2:15"}},
      // -c of a counting command: an audit of the anti-pattern, not the anti-pattern.
      {"grep -c audits", FileKind::shell, "grep -c 'nvidia-smi -pm 1' /etc/rc.local\n", {}},
      {"grep -i -c audits", FileKind::shell, "n=$(grep -i -c 'nvidia-smi -pm 1' /etc/rc.local)\n", {}},
      {"pgrep -c counts the daemon", FileKind::shell, "n=$(pgrep -c nvidia-persistenced)\n", {}},
      {"grep -e x -c audits", FileKind::shell, "grep -e x -c 'nvidia-smi -pm 1' /etc/rc.local\n", {}},
      {"bash -c running a grep is the shell's", FileKind::shell, "grep -q x f && bash -c 'nvidia-smi -pm 1'\n",
       {"LINT001@1:25"}},
      {"an audit through pdsh", FileKind::shell, "pdsh -w gpu[01-64] \"grep -c 'nvidia-smi -pm 1' /etc/rc.local\"\n",
       {}},
      {"Dockerfile RUN", FileKind::dockerfile, "RUN nvidia-smi -pm 1\n", {"LINT001@1:5"}},
      {"systemd ExecStartPre", FileKind::unit, "[Service]\nExecStartPre=/usr/bin/nvidia-smi -pm 1\n",
       {"LINT001@2:14"}},
      {"Nix string", FileKind::nix, "script = ''\n  nvidia-smi -pm 1\n'';\n", {"LINT001@2:3"}},
      {"Nix block comment", FileKind::nix, "/* old:\n  nvidia-smi -pm 1\n*/\nx = 1;\n", {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(run(c), c.expected);
  }
}

// gpuwarm's own reports quote what they found; the Ansible role saves them beside the playbooks.
TEST(Lint, gpuwarm_reports_are_not_configuration) {
  const std::string quote = R"("next_step": "Do not use `nvidia-smi -pm 1`; enable nvidia-persistenced")";
  EXPECT_TRUE(lint_text(R"({"changed": false, )" + quote + R"(, "kind": "gpuwarm-fix"})", FileKind::yaml).empty());
  // The same words in another JSON file are still read.
  EXPECT_FALSE(lint_text(R"({"inline": ["nvidia-smi -pm 1"]})", FileKind::yaml).empty());
}

TEST(Lint, LINT002_no_persistence_mode) {
  const std::vector<LintCase> cases = {
      {"Ubuntu's ExecStart", FileKind::shell,
       "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose\n",
       {"LINT002@1:67"}},
      {"the opposite flag", FileKind::shell, "ExecStart=/usr/bin/nvidia-persistenced --persistence-mode\n", {}},
      {"commented", FileKind::shell, "# nvidia-persistenced --no-persistence-mode\n", {}},
      {"YAML list", FileKind::yaml, "args: [\"--user\", \"x\", \"--no-persistence-mode\"]\n", {"LINT002@1:24"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(run(c), c.expected);
  }
}

constexpr const char* k_good_unit =
    "[Unit]\nDescription=NVIDIA Persistence Daemon\n\n[Service]\nType=forking\n"
    "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced\nRestart=on-failure\n"
    "ExecStopPost=/bin/rm -rf /run/nvidia-persistenced\n";

TEST(Lint, unit_rules) {
  const std::vector<LintCase> cases = {
      {"upstream-like unit with Restart", FileKind::unit, k_good_unit, {}},
      {"Ubuntu's unit", FileKind::unit,
       "[Unit]\nStopWhenUnneeded=true\n\n[Service]\nType=forking\n"
       "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose\n",
       {"LINT010@2:1", "LINT011@4:1", "LINT002@6:67"}},
      {"Type=simple and /var/run PIDFile", FileKind::unit,
       "[Service]\nType=simple\nPIDFile=/var/run/nvidia-persistenced/nvidia-persistenced.pid\n"
       "ExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n",
       {"LINT013@2:1", "LINT012@3:1"}},
      {"no Type= at all", FileKind::unit, "[Service]\nExecStart=/usr/bin/nvidia-persistenced\nRestart=on-failure\n",
       {"LINT013@1:1"}},
      {"Restart=no counts as none", FileKind::unit,
       "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\nRestart=no\n", {"LINT011@4:1"}},
      {"on-success and on-watchdog leave a crash down", FileKind::unit,
       "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\nRestart=on-success\nRestart=on-watchdog\n",
       {"LINT011@4:1", "LINT011@5:1"}},
      {"on-abnormal restarts after a crash; a template's value is not judged", FileKind::unit,
       "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\nRestart=on-abnormal\n"
       "Restart={{ gpu_restart }}\n",
       {}},
      {"StopWhenUnneeded=false is fine", FileKind::unit,
       "[Unit]\nStopWhenUnneeded=false\n[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\n"
       "Restart=on-failure\n",
       {}},
      {"another daemon's unit is not judged", FileKind::unit,
       "[Unit]\nStopWhenUnneeded=true\n[Service]\nType=simple\nExecStart=/usr/bin/dcgm\n", {}},
      {"commented-out settings", FileKind::unit,
       "[Unit]\n#StopWhenUnneeded=true\n; StopWhenUnneeded=yes\n[Service]\nType=forking\n"
       "ExecStart=/usr/bin/nvidia-persistenced\nRestart=on-failure\n",
       {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(run(c), c.expected);
  }
}

// Issue 14's constructs, each with a true positive and a near miss.
TEST(Lint, cron) {
  check({
      {"system crontab, shortcut and user field", FileKind::shell, "@reboot root /usr/bin/nvidia-smi -pm 1\n",
       {"LINT001@1:14"}},
      {"system crontab, schedule and user field", FileKind::shell, "*/5 * * * * root nvidia-smi -pm 1 >/dev/null\n",
       {"LINT001@1:18"}},
      {"user crontab, named days", FileKind::shell, "0 6 * * mon-fri nvidia-smi -pm ENABLED\n", {"LINT001@1:17"}},
      {"crontab fed from a string", FileKind::shell, "echo \"@reboot nvidia-smi -pm 1\" | crontab -\n",
       {"LINT001@1:15"}},
      {"crontab from a subshell", FileKind::shell,
       "(crontab -l; echo \"@reboot /usr/bin/nvidia-smi -pm 1\") | crontab -\n", {"LINT001@1:28"}},
      {"near miss: a schedule that queries", FileKind::shell, "*/5 * * * * root nvidia-smi -q >> /var/log/gpu\n", {}},
      {"near miss: a commented job", FileKind::shell, "#@reboot root nvidia-smi -pm 1\n", {}},
      {"near miss: echoed to the terminal", FileKind::shell, "echo \"@reboot nvidia-smi -pm 1\"\n", {}},
  });
}

TEST(Lint, commands_that_run_commands) {
  check({
      {"NHC check_cmd_status", FileKind::shell, " * || check_cmd_status -t 10 -r 0 nvidia-smi -pm 1\n",
       {"LINT001@1:35"}},
      {"timeout", FileKind::shell, "timeout 5 nvidia-smi -pm 1\n", {"LINT001@1:11"}},
      {"nice", FileKind::shell, "nice -n 10 nvidia-smi -pm 1\n", {"LINT001@1:12"}},
      {"xargs over hosts", FileKind::shell, "cat hosts | xargs -I{} ssh {} nvidia-smi -pm 1\n", {"LINT001@1:31"}},
      {"watch", FileKind::shell, "watch -n 60 nvidia-smi -pm 1\n", {"LINT001@1:13"}},
      {"pdsh", FileKind::shell, "pdsh -w gpu[01-16] 'nvidia-smi -pm 1'\n", {"LINT001@1:21"}},
      {"clush", FileKind::shell, "clush -g gpu nvidia-smi -pm 1\n", {"LINT001@1:14"}},
      {"ssh host", FileKind::shell, "ssh -o BatchMode=yes gpu01 sudo nvidia-smi -pm 1\n", {"LINT001@1:33"}},
      {"docker exec", FileKind::shell, "docker exec -it driver nvidia-smi -pm 1\n", {"LINT001@1:24"}},
      {"kubectl exec", FileKind::shell, "kubectl exec -n gpu pod/x -- nvidia-smi -pm 1\n", {"LINT001@1:30"}},
      {"nsenter", FileKind::shell, "nsenter -t 1 -m -u -n -i -- nvidia-smi -pm 1\n", {"LINT001@1:29"}},
      {"chroot", FileKind::shell, "chroot /host nvidia-smi -pm 1\n", {"LINT001@1:14"}},
      {"environment prefix", FileKind::shell, "CUDA_VISIBLE_DEVICES=0 nvidia-smi -pm 1\n", {"LINT001@1:24"}},
      {"after do", FileKind::shell, "for i in 0 1; do nvidia-smi -i $i -pm 1; done\n", {"LINT001@1:18"}},
      {"after then / else", FileKind::shell, "if x; then nvidia-smi -pm 1; else nvidia-smi -pm 1; fi\n",
       {"LINT001@1:12", "LINT001@1:35"}},
      {"a command kept in a variable and run", FileKind::shell, "PM_CMD=\"nvidia-smi -pm 1\"\n$PM_CMD\n",
       {"LINT001@1:9"}},
      {"a variable run through eval", FileKind::shell, "c='nvidia-smi -pm 1'\neval \"$c\"\n", {"LINT001@1:4"}},
      {"a sudo kept in a variable", FileKind::shell, "$SUDO nvidia-smi -pm 1\n", {"LINT001@1:7"}},
      {"a command in a variable handed to a function that runs it", FileKind::shell,
       "run() { out=$($1); }\npm=\"timeout 3m sudo nvidia-smi -i 0 -pm 1\"\nrun \"$pm\"\n", {"LINT001@2:21"}},
      {"Chef execute", FileKind::shell, "execute 'nvidia-smi -pm 1' do\n  action :run\nend\n", {"LINT001@1:10"}},
      {"Packer JSON inline", FileKind::yaml, "{\"provisioners\": [{\"inline\": [\"sudo nvidia-smi -pm 1\"]}]}\n",
       {"LINT001@1:37"}},
      {"near miss: a variable never run", FileKind::shell, "HINT=\"nvidia-smi -pm 1\"\necho \"$HINT\"\n", {}},
      {"near miss: a variable only tested", FileKind::shell, "c=\"nvidia-smi -pm 1\"\n[ -n \"$c\" ]\n", {}},
      {"near miss: systemctl is not a runner", FileKind::shell, "sudo systemctl restart nvidia-persistenced\n", {}},
      {"near miss: ssh that queries", FileKind::shell, "ssh gpu01 nvidia-smi -q -d PERFORMANCE\n", {}},
      {"near miss: grep for the flag", FileKind::shell, "grep -r 'nvidia-smi -pm 1' /etc\n", {}},
      {"near miss: a lookup", FileKind::shell, "command -v nvidia-smi && echo -pm 1\n", {}},
      {"find -exec", FileKind::shell, "find /dev -name 'nvidia[0-9]' -exec nvidia-smi -pm 1 \\;\n", {"LINT001@1:37"}},
      {"near miss: find naming the program", FileKind::shell, "find / -name nvidia-smi -print\n", {}},
      {"srun -u takes no value", FileKind::shell, "srun -u nvidia-smi -pm 1\n", {"LINT001@1:9"}},
      {"watch -g takes no value", FileKind::shell, "watch -g nvidia-smi -pm 1\n", {"LINT001@1:10"}},
      {"docker run -u USER", FileKind::shell, "docker run -u nvidia-persistenced img nvidia-smi -pm 1\n",
       {"LINT001@1:39"}},
      {"doas -u the daemon's user, then the command", FileKind::shell, "doas -u nvidia-persistenced nvidia-smi -pm 1\n",
       {"LINT001@1:29"}},
      {"find with two -exec", FileKind::shell,
       "find /dev -name 'nvidia[0-9]' -exec test -c {} \\; -exec nvidia-smi -pm 1 \\;\n", {"LINT001@1:57"}},
      {"a here-string without a blank", FileKind::shell, "tee -a /etc/rc.local <<<'nvidia-smi -pm 1'\n",
       {"LINT001@1:26"}},
      {"a here-string right after the file", FileKind::shell, "tee -a /etc/rc.local<<<'nvidia-smi -pm 1'\n",
       {"LINT001@1:25"}},
      {"find runs the nvidia-smi it found", FileKind::shell, "find / -name nvidia-smi -type f -exec {} -pm 1 \\;\n",
       {"LINT001@1:39"}},
      {"near miss: find lists the nvidia-smi it found", FileKind::shell,
       "find / -name nvidia-smi -exec ls -l {} \\; -exec {} -q \\;\n", {}},
      {"near miss: {} of another name", FileKind::shell, "find /opt -name '*.sh' -exec {} -pm 1 \\;\n", {}},
      {"find runs the nvidia-smi it found through sudo", FileKind::shell,
       "find /usr/bin -name nvidia-smi -exec sudo -n {} -pm 1 \\;\n", {"LINT001@1:46"}},
      {"near miss: sudo runs the {} of another name", FileKind::shell,
       "find /opt -name '*.sh' -exec sudo {} -pm 1 \\;\n", {}},
      {"an array spread over lines, then run", FileKind::shell,
       "cmd=(\n  nvidia-smi\n  -pm 1\n)\n\"${cmd[@]}\"\n", {"LINT001@2:3"}},
      {"an array with a comment inside", FileKind::shell,
       "cmd=(\n  sudo  # as root\n  nvidia-smi -pm 1\n)\n", {"LINT001@3:3"}},
      {"declare -a an array spread over lines", FileKind::shell,
       "declare -a -r cmd=(\n  nvidia-smi\n  -pm 1\n)\n", {"LINT001@2:3"}},
      {"=( in a string opens no array", FileKind::shell,
       "echo \"usage: set opts=( to configure\"\necho configuring\nnvidia-smi -pm 1\n", {"LINT001@3:1"}},
      {"=( in a regex opens no array", FileKind::shell, "re=\"^x=(\"\necho configuring\nnvidia-smi -pm 1\n",
       {"LINT001@3:1"}},
      {"=( in a glob opens no array", FileKind::shell,
       "if [[ $line == *\"=(\"* ]]; then\n  echo array\nfi\nnvidia-smi -pm 1\n", {"LINT001@4:1"}},
      {"=( in a here-document opens no array", FileKind::shell,
       "cat > /etc/gpu.conf <<EOF\nopts=(\nEOF\necho configuring\nnvidia-smi -pm 1\n", {"LINT001@5:1"}},
      {"=( in a Dockerfile's RUN opens no array", FileKind::dockerfile,
       "FROM ubuntu\nRUN echo \"x=(\" > /tmp/f\nRUN echo hi\nRUN nvidia-smi -pm 1\n", {"LINT001@4:5"}},
      {"find -exec through a runner with an option's value", FileKind::shell,
       "find /usr/bin -name nvidia-smi -exec sudo -u root {} -pm 1 \\;\n", {"LINT001@1:51"}},
      {"find -exec through timeout", FileKind::shell, "find /usr/bin -name nvidia-smi -exec timeout 10 {} -pm 1 \\;\n",
       {"LINT001@1:49"}},
      {"near miss: an array spread over lines ends at its )", FileKind::shell,
       "cmd=(\n  echo\n  nvidia-smi\n)\n-pm 1\n", {}},
      {"near miss: find's predicates after an -exec", FileKind::shell,
       "find /var/log/nvidia -name '*.log' -exec sudo gzip {} \\; -o -name nvidia-persistenced -print\n", {}},
      {"a here-string tee writes into a script", FileKind::shell,
       "sudo tee -a /etc/rc.local <<< 'nvidia-smi -pm 1'\n", {"LINT001@1:32"}},
      {"near miss: a here-string of text", FileKind::shell, "tee /tmp/x <<< \"hello nvidia-smi\"\n", {}},
  });
}

// An array never closed joins no more than 200 lines: the rest of the file is still read command by command.
TEST(Lint, an_array_never_closed_is_bounded) {
  const std::string text = "cmd=(\n  echo\n" + std::string(250, '\n') + "nvidia-smi -pm 1\n";
  EXPECT_EQ(run({"unclosed", FileKind::shell, text.c_str(), {}}), std::vector<std::string>{"LINT001@253:1"});
}

TEST(Lint, python_runs_commands_only_through_calls) {
  const char* script =
      "\"\"\"Enables persistence.\n\n    nvidia-smi -pm 1\n\"\"\"\n"  // a docstring
      "CASES = [\n    (\"nvidia-smi -pm 1\", True),\n    \"nvidia-smi -pm 1\",\n]\n"  // a test table
      "subprocess.run([\"nvidia-smi\", \"-pm\", \"1\"], check=True)\n"
      "os.system(\"sudo nvidia-smi -pm 1\")\n"
      "subprocess.check_call([\"bash\", \"-c\", \"nvidia-smi -pm 1\"])\n";
  check({
      {"a .py file", FileKind::shell, script, {"LINT001@9:18", "LINT001@10:17", "LINT001@11:39"}, "tools/enable_pm.py"},
      {"a python script without the extension", FileKind::shell,
       "#!/usr/bin/env python3\nHELP = '''\nnvidia-smi -pm 1\n'''\nos.system('nvidia-smi -pm 1')\n",
       {"LINT001@5:12"}, "bin/enable-pm"},
      {"the same lines in a shell script stay commands", FileKind::shell, "(nvidia-smi -pm 1)\n", {"LINT001@1:2"},
       "enable.sh"},
      // An Ansible module's documentation: markup that looks like a call (C(...)), and an apostrophe that a shell
      // reading would take for a quote. Blanked, while the call below it and a triple-quoted argument count.
      {"an Ansible module's DOCUMENTATION and a docstring", FileKind::shell,
       "DOCUMENTATION = r'''\ndescription:\n  - Replaces the node's C(nvidia-smi -pm 1).\n'''\n"
       "def main():\n    \"\"\"Don't call C(nvidia-smi -pm 1) here.\"\"\"\n"
       "    os.system(\"\"\"nvidia-smi -pm 1\"\"\")\n"
       "    x = 'a \"\"\" in a string'  # and ''' in a comment\n"
       "    subprocess.run([\"nvidia-smi\", \"-pm\", \"1\"])\n",
       {"LINT001@7:18", "LINT001@9:22"}, "library/persist.py"},
      {"docstrings of a def with its arguments on several lines, and of a class", FileKind::shell,
       "def enable(\n    gpus,\n    force=False,\n):\n    \"\"\"Don't call C(nvidia-smi -pm 1).\"\"\"\n"
       "class Node:\n    \"\"\"It's no place for nvidia-smi -pm 1.\"\"\"\n",
       {}, "node.py"},
      // From the review: a returned script is code; a raw string's escaped quote does not end it (the scan
      // drifted and blanked the call below); "or" before a quote is no prefix.
      {"a returned unit text, and strings that end where Python ends them", FileKind::shell,
       "def unit():\n    return \"\"\"[Service]\nExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n\"\"\"\n"
       "d = r'\\''\nsubprocess.run(\"nvidia-smi -pm 1\", shell=True)\ne = x or'\\'\"\"\"'\n"
       "subprocess.run(\"nvidia-smi -pm 1\", shell=True)\n\"\"\"text\"\"\"\n",
       {"LINT002@3:40", "LINT001@6:17", "LINT001@8:17"}, "units.py"},
      // black puts a long call's arguments on the lines after its "(".
      {"a call's first argument on the next line", FileKind::shell,
       "subprocess.run(\n    [\"nvidia-smi\", \"-pm\", \"1\"],\n    check=True,\n)\n"
       "os.system(\n    \"nvidia-smi -pm 1\"\n)\nCASES = [\n    (\"nvidia-smi -pm 1\", True),\n]\n"
       "log.info(\n    \"run nvidia-smi -pm 1 by hand\"\n)\n",
       {"LINT001@2:7", "LINT001@6:6"}, "enable.py"},
      {"calls that only show text are no commands", FileKind::shell,
       "print(\"nvidia-smi -pm 1 is deprecated\")\nlogger.warning(\n    \"nvidia-smi -pm 1 is deprecated\"\n)\n"
       "self.assertIn(\"nvidia-smi -pm 1\", out)\nclick.echo(f\"nvidia-smi -pm 1\")\n"
       "subprocess.check_output(f\"nvidia-smi -pm 1\", shell=True)\n",
       {"LINT001@7:27"}, "tool.py"},
      // review-s50-integ L5: the argv held in a name the call is given.
      {"a command held in a name a call runs", FileKind::shell,
       "cmd = [\"nvidia-smi\", \"-pm\", \"1\"]\nsubprocess.run(cmd, check=True)\n"
       "PM_ON = \"nvidia-smi -pm 1\"\nos.system(\n    PM_ON\n)\n"
       "argv = ('nvidia-smi', '-pm', '1')\nrc, out, err = module.run_command(argv)\n",
       {"LINT001@1:9", "LINT001@3:10", "LINT001@7:10"}, "enable.py"},
      // review-s52-diff L7: the name unpacked, passed as args=, or split first.
      {"a held command unpacked, passed by keyword or split", FileKind::shell,
       "a = [\"nvidia-smi\", \"-pm\", \"1\"]\nos.execlp(*a)\n"
       "b = [\"nvidia-smi\", \"-pm\", \"1\"]\nsubprocess.run(args=b, check=True)\n"
       "c = \"nvidia-smi -pm 1\"\nsubprocess.run(c.split())\n"
       "d = \"nvidia-smi -pm 1\"\nsubprocess.check_call(shlex.split(d))\n",
       {"LINT001@1:7", "LINT001@3:7", "LINT001@5:6", "LINT001@7:6"}, "enable.py"},
      // review-s53-diff L2: names that start with "args" are names, not the keyword.
      {"a held command in a name starting with args", FileKind::shell,
       "args = [\"nvidia-smi\", \"-pm\", \"1\"]\nsubprocess.run(args)\n"
       "args_list = [\"nvidia-smi\", \"-pm\", \"1\"]\nsubprocess.run(args_list)\n"
       "argsv = [\"nvidia-smi\", \"-pm\", \"1\"]\nos.execvp(*argsv)\n",
       {"LINT001@1:10", "LINT001@3:15", "LINT001@5:11"}, "enable.py"},
      {"near miss: args compared, a name cut into lines", FileKind::shell,
       "e = \"nvidia-smi -pm 1\"\nrun(args == e)\n"
       "f = \"nvidia-smi -pm 1\"\nsubprocess.run(f.splitlines())\n",
       {}, "audit.py"},
      {"the held command on the lines after the name", FileKind::shell,
       "cmd = [\n    \"nvidia-smi\", \"-pm\", \"1\",\n]\nsubprocess.run(cmd)\n"
       "SCRIPT = \"\"\"\nnvidia-smi -pm 1\n\"\"\"\nsubprocess.run(SCRIPT, shell=True)\n",
       {"LINT001@2:6", "LINT001@6:1"}, "enable.py"},
      {"near miss: names only shown, compared or looped over", FileKind::shell,
       "msg = \"nvidia-smi -pm 1 is deprecated\"\nprint(msg)\nlog.warning(msg, extra)\n"
       "CASES = [\"nvidia-smi -pm 1\"]\nfor case in CASES:\n    check(case)\n"
       "query = [\"nvidia-smi\", \"-q\"]\nsubprocess.run(query)\nif cmd == \"nvidia-smi -pm 1\":\n    run(cmd)\n"
       "hint = \"nvidia-smi -pm 1\"\nwidth = len(hint)\nshown = str(hint)\n",
       {}, "audit.py"},
      // review-s52-diff L6: a runner named in a comment or a string, or a function defined with a runner's name,
      // makes no name a command's.
      {"near miss: a runner's name in a comment, a string or a def", FileKind::shell,
       "cmd = \"nvidia-smi -pm 1\"\nprint(cmd)  # then subprocess.run(cmd) applies it\n"
       "hint = \"nvidia-smi -pm 1\"\nlog.info(\"see os.system(hint) in the runbook\")\n"
       "class Runner:\n    def run(self, line):\n        print(line)\nline = \"nvidia-smi -pm 1\"\n"
       "def call(argv): pass\nargv = [\"nvidia-smi\", \"-pm\", \"1\"]\nshow = '#'; subprocess.run(query)\n",
       {}, "audit.py"},
      {"a call after a '#' inside a string is still a call", FileKind::shell,
       "cmd = \"nvidia-smi -pm 1\"\nx = \"#\"; subprocess.run(cmd)\n",
       {"LINT001@1:8"}, "enable.py"},
      {"a unit's text a script writes out stays code", FileKind::shell,
       "UNIT = \"\"\"[Service]\nExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n\"\"\"\n"
       "CONFIG = {\"unit\": \"\"\"ExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\"\"\"}\n",
       {"LINT002@2:40", "LINT002@4:61"}, "provision.py"},
  });
}

TEST(Lint, functions_that_run_their_arguments) {
  std::string chain;  // eleven wrappers, each defined before the one it calls
  for (int i = 0; i < 10; ++i) {
    chain.append("w").append(std::to_string(i)).append("() { w").append(std::to_string(i + 1)).append(" \"$@\"; }\n");
  }
  chain += "w10() { \"$@\"; }\nw0 nvidia-smi -pm 1\n";
  check({
      {"a chain of wrappers, any length", FileKind::shell, chain.c_str(), {"LINT001@12:4"}},
      {"a wrapper", FileKind::shell, "run() { echo \"+ $*\"; \"$@\"; }\nrun nvidia-smi -pm 1\n", {"LINT001@2:5"}},
      {"a wrapper of a wrapper", FileKind::shell,
       "run() { \"$@\"; }\nrun_q() { run \"$@\" >/dev/null; }\nrun_q nvidia-smi -pm 1\n", {"LINT001@3:7"}},
      {"function keyword, retried in a loop", FileKind::shell,
       "function retry {\n  for i in 1 2 3; do \"$@\" && return; done\n}\nretry nvidia-smi -pm 1\n", {"LINT001@4:7"}},
      {"body on the next line, through sudo", FileKind::shell, "run()\n{\n  sudo \"$@\"\n}\nrun nvidia-smi -pm 1\n",
       {"LINT001@5:5"}},
      {"the innermost function owns its \"$@\"", FileKind::shell,
       "outer() { inner() { \"$@\"; }; echo \"$@\"; }\nouter nvidia-smi -pm 1\ninner nvidia-smi -pm 1\n",
       {"LINT001@3:7"}},
      {"some of its arguments", FileKind::shell, "as_user() { sudo -u \"$1\" \"${@:2}\"; }\nas_user root nvidia-smi -pm 1\n",
       {"LINT001@2:14"}},
      {"a brace inside quotes closes nothing", FileKind::shell,
       "run() {\n  echo \"+ $*\" | sed \"s/}/)/g\"\n  \"$@\"\n}\nrun nvidia-smi -pm 1\n", {"LINT001@5:5"}},
      {"near miss: a brace inside quotes opens nothing", FileKind::shell,
       "say() { printf '{\"msg\":\"%s\"\\n' \"$*\"; }\nsay do not use nvidia-smi -pm 1\n\"$@\"\n", {}},
      {"near miss: a logger that keeps them in a variable", FileKind::shell,
       "log() {\n  msg=\"$*\"\n  echo \"$(date) $msg\" >> /var/log/gpu-setup.log\n}\n"
       "log \"removed nvidia-smi -pm 1 from rc.local\"\n",
       {}},
      {"near miss: a logger that quotes them inside a message", FileKind::shell,
       "log() {\n  msg=\"gpu-setup: $*\"\n  logger \"$msg\"\n}\nlog \"removed nvidia-smi -pm 1 from rc.local\"\n", {}},
      {"near miss: an apostrophe in a here-doc opens no quote", FileKind::shell,
       "usage() {\n  cat <<EOF\nDon't run this twice.\nEOF\n}\nlog() { echo \"$(date) $*\"; }\nusage\n"
       "log \"replacing nvidia-smi -pm 1 in rc.local\"\n\"$@\"\n",
       {}},
      {"a brace in a here-doc inside the body", FileKind::shell,
       "run() {\n  cat <<-EOF\n\t{ unbalanced\n\tEOF\n  \"$@\"\n}\nrun nvidia-smi -pm 1\n", {"LINT001@7:5"}},
      {"a shift is no here-doc", FileKind::shell, "x=$((1<<3))\nrun() { \"$@\"; }\nrun nvidia-smi -pm 1\n",
       {"LINT001@3:5"}},
      {"near miss: a logger that keeps them in an array", FileKind::shell,
       "log() { local msg=(\"$@\"); echo \"${msg[*]}\" >&2; }\nlog \"removed nvidia-smi -pm 1 from rc.local\"\n", {}},
      {"near miss: a function that prints its arguments", FileKind::shell,
       "log() { echo \"$@\"; }\nlog nvidia-smi -pm 1\n", {}},
      {"near miss: a function that ignores them", FileKind::shell, "f() { local x; x=1; }\nf nvidia-smi -pm 1\n", {}},
  });
}

TEST(Lint, continuations) {
  check({
      {"&& \\ in shell", FileKind::shell, "modprobe nvidia && \\\n  nvidia-smi -pm 1\n", {"LINT001@2:3"}},
      {"Dockerfile RUN over lines, a comment between", FileKind::dockerfile,
       "RUN apt-get update && \\\n    # persistence for the tests\n    nvidia-smi -pm 1 && \\\n    true\n",
       {"LINT001@3:5"}},
      {"Dockerfile CMD, shell form", FileKind::dockerfile, "CMD nvidia-smi -pm 1 && exec /app\n", {"LINT001@1:5"}},
      {"Dockerfile ENTRYPOINT over lines", FileKind::dockerfile, "ENTRYPOINT [\"/bin/sh\", \"-c\", \\\n  \"nvidia-smi -pm 1\"]\n",
       {"LINT001@2:4"}},
      {"Dockerfile CMD, exec form", FileKind::dockerfile, "CMD [\"nvidia-smi\", \"-pm\", \"1\"]\n", {"LINT001@1:7"}},
      {"near miss: Dockerfile LABEL", FileKind::dockerfile, "LABEL note=\"no nvidia-smi -pm 1 here\"\n", {}},
      {"near miss: the next line is a new command", FileKind::shell, "nvidia-smi -q\n-pm 1\n", {}},
  });
}

TEST(Lint, paths_and_interpolation) {
  check({
      {"Nix package path", FileKind::nix,
       "script = ''\n  ${config.hardware.nvidia.package.bin}/bin/nvidia-smi -pm 1\n'';\n", {"LINT001@2:3"}},
      {"Jinja path variable", FileKind::yaml, "- shell: \"{{ nvidia_smi }} -pm 1\"\n", {"LINT001@1:11"}},
      {"command -v lookup", FileKind::shell, "\"$(command -v nvidia-smi)\" -pm 1\n", {"LINT001@1:2"}},
      {"which lookup", FileKind::shell, "$(which nvidia-smi) --persistence-mode=1\n", {"LINT001@1:1"}},
      {"shell variable path", FileKind::shell, "${NVIDIA_SMI:-/usr/bin/nvidia-smi} -pm 1\n", {"LINT001@1:1"}},
      {"near miss: another tool's variable", FileKind::shell, "${DCGMI} -pm 1\n", {}},
      {"near miss: Nix query", FileKind::nix, "x = \"${pkgs.nvidia}/bin/nvidia-smi -q\";\n", {}},
  });
}

TEST(Lint, values_that_are_not_literals) {
  lint::Variables role = lint::parse_role_variables(
      "---\ngpu_pm_on: 1\ngpu_pm_off: \"0\"  # off on desktops\ngpu_pm_indirect: \"{{ nowhere }}\"\n",
      "roles/gpu/defaults/main.yml");
  struct Case {
    const char* name;
    const char* text;
    std::vector<std::string> expected;
    bool with_role;
  };
  const std::vector<Case> cases = {
      {"unresolved Jinja", "- command: nvidia-smi --persistence-mode={{ pm }}\n", {"LINT004@1:12"}, false},
      {"unresolved shell", "- shell: nvidia-smi -pm $PM\n", {"LINT004@1:10"}, false},
      {"resolved from the role's defaults: on", "- command: nvidia-smi -pm {{ gpu_pm_on }}\n", {"LINT001@1:12"}, true},
      {"resolved from the role's defaults: off", "- command: nvidia-smi -pm {{ gpu_pm_off }}\n", {"LINT003@1:12"},
       true},
      {"defaults that are themselves variables", "- command: nvidia-smi -pm {{ gpu_pm_indirect }}\n",
       {"LINT004@1:12"}, true},
      {"the default filter", "- command: nvidia-smi -pm {{ pm | default(1) }}\n", {"LINT001@1:12"}, false},
      {"set in the same file", "vars:\n  pm: 0\ntasks:\n  - command: nvidia-smi -pm {{ pm }}\n", {"LINT003@4:14"},
       false},
      {"near miss: a variable that is not -pm's", "- command: nvidia-smi -i {{ gpu }} -q\n", {}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    LintCase lc{c.name, FileKind::yaml, c.text, c.expected};
    EXPECT_EQ(run(lc, c.with_role ? &role : nullptr), c.expected);
  }
  EXPECT_EQ(role.at("gpu_pm_off").value, "0");
  EXPECT_EQ(role.at("gpu_pm_off").source, "roles/gpu/defaults/main.yml:3");
  // Shell: the file's own assignment, and ${VAR:-default}.
  check({
      {"shell assignment", FileKind::shell, "PM=0\nnvidia-smi -pm \"$PM\"\n", {"LINT003@2:1"}},
      {"shell default", FileKind::shell, "nvidia-smi -pm ${PERSIST:-1}\n", {"LINT001@1:1"}},
  });
}

TEST(Lint, units_written_from_inside_other_files) {
  check({
      {"heredoc to a unit", FileKind::shell,
       "cat > /etc/systemd/system/nvidia-persistenced.service <<EOF\n[Unit]\nDescription=x\n[Service]\n"
       "Type=simple\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced\nEOF\n",
       {"LINT011@4:1", "LINT013@5:1"}},
      {"heredoc through sudo tee, quoted marker, a drop-in", FileKind::shell,
       "sudo tee /etc/systemd/system/nvidia-persistenced.service.d/10-gpu.conf >/dev/null <<'EOF'\n[Service]\n"
       "Restart=no\nEOF\n",
       {"LINT011@3:1"}},
      {"printf of a drop-in, one line", FileKind::shell,
       "printf '[Service]\\nPIDFile=/var/run/nvidia-persistenced/nvidia-persistenced.pid\\n' > "
       "/etc/systemd/system/nvidia-persistenced.service.d/pid.conf\n",
       {"LINT012@1:1"}},
      {"near miss: printf of a good drop-in", FileKind::shell,
       "printf '[Service]\\nRestart=always\\n' > /etc/systemd/system/nvidia-persistenced.service.d/r.conf\n", {}},
      {"near miss: heredoc to another unit", FileKind::shell,
       "cat > /etc/systemd/system/jupyter.service <<EOF\n[Service]\nType=simple\nExecStart=/opt/jupyter\nEOF\n", {}},
      {"near miss: a usage text", FileKind::shell, "cat <<EOF\nrun: nvidia-smi -pm 1\n  nvidia-smi -pm 1\nEOF\n", {}},
      {"heredoc to rc.local stays code", FileKind::shell, "cat >> /etc/rc.local <<EOF\nnvidia-smi -pm 1\nEOF\n",
       {"LINT001@2:1"}},
      {"Ansible copy content with a unit dest", FileKind::yaml,
       "- name: unit\n  copy:\n    dest: /etc/systemd/system/nvidia-persistenced.service\n    content: |\n"
       "      [Service]\n      Type=forking\n      ExecStart=/usr/bin/nvidia-persistenced --no-persistence-mode\n"
       "    mode: \"0644\"\n",
       {"LINT011@5:7", "LINT002@7:46"}},
      {"near miss: content to another file", FileKind::yaml,
       "- copy:\n    dest: /etc/motd\n    content: |\n      Type=simple\n", {}},
      {"Nix attrset", FileKind::nix,
       "{\n  systemd.services.nvidia-persistenced = {\n    serviceConfig = {\n      Restart = \"no\";\n"
       "      PIDFile = \"/var/run/nvidia-persistenced/nvidia-persistenced.pid\";\n    };\n  };\n}\n",
       {"LINT011@4:7", "LINT012@5:7"}},
      {"Nix dotted path, quoted name", FileKind::nix,
       "systemd.services.\"nvidia-persistenced\".serviceConfig.Type = lib.mkForce \"exec\";\n", {"LINT013@1:1"}},
      {"Nix script replacing the daemon", FileKind::nix,
       "systemd.services.nvidia-persistenced.script = \"nvidia-smi -pm 1\";\n", {"LINT014@1:1", "LINT001@1:48"}},
      {"near miss: Nix, another service", FileKind::nix,
       "systemd.services.jupyter.serviceConfig = { Type = \"simple\"; Restart = \"no\"; };\n# nvidia\n", {}},
      {"near miss: the NixOS option alone", FileKind::nix, "hardware.nvidia.nvidiaPersistenced = true;\n", {}},
  });
  // Templates are judged by their inner name.
  check({
      {"Jinja template of the unit", FileKind::unit,
       "[Service]\nType={{ pd_type }}\nExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n", {"LINT013@2:1"},
       "roles/gpu/templates/nvidia-persistenced.service.j2"},
      {"a unit known by its content; the branch running another program is that program's", FileKind::text,
       "# managed by chef\n[Unit]\nDescription=x\n[Service]\n<% if @a -%>\n  Type=simple\n  ExecStart=/usr/bin/true\n"
       "<% else %>\n  Type=forking\n  ExecStart=/usr/bin/nvidia-persistenced --user root\n<% end %>\n",
       {"LINT011@4:1"}, "templates/gpu_service.erb"},
      {"a unit known by its content, each branch running the daemon judged", FileKind::text,
       "# managed by chef\n[Unit]\nDescription=x\n[Service]\n<% if @a -%>\n  Type=simple\n"
       "  ExecStart=/usr/bin/nvidia-persistenced\n<% else %>\n  Type=forking\n"
       "  ExecStart=/usr/bin/nvidia-persistenced --user root\n<% end %>\n",
       {"LINT011@4:1", "LINT013@6:3"}, "templates/gpu_service.erb"},
      {"near miss: text that merely mentions sections", FileKind::text,
       "Add [Service] Type=simple to nvidia-persistenced\n", {}},
      {"ERB template, complete and right", FileKind::unit,
       "[Service]\nType=forking\nExecStart=<%= @bin %>/nvidia-persistenced\nRestart=always\n", {},
       "templates/default/nvidia-persistenced.service.erb"},
  });
}

TEST(Lint, drop_ins_known_by_their_directory) {
  check({
      {"Restart=no on its own line", FileKind::unit, "[Service]\nRestart=no\n", {"LINT011@2:1"},
       "/etc/systemd/system/nvidia-persistenced.service.d/override.conf"},
      {"a drop-in that resets ExecStart inherits Type= and Restart=", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced\n", {},
       "/etc/systemd/system/nvidia-persistenced.service.d/override.conf"},
      {"a drop-in that makes the daemon something else", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/nvidia-smi -pm 1\n", {"LINT014@3:1", "LINT001@3:11"},
       "nvidia-persistenced.service.d/gpu.conf"},
      {"a drop-in with Type=simple", FileKind::unit, "[Service]\nType=simple\n", {"LINT013@2:1"},
       "nvidia-persistenced.service.d/gpu.conf"},
      {"near miss: another unit's drop-in", FileKind::unit, "[Service]\nRestart=no\nType=simple\n", {},
       "/etc/systemd/system/slurmd.service.d/override.conf"},
      {"a complete unit named for the daemon, running nvidia-smi", FileKind::unit,
       "[Unit]\nDescription=persistence\n[Service]\nType=oneshot\nExecStart=/usr/bin/nvidia-smi -pm 1\n"
       "RemainAfterExit=yes\n",
       {"LINT011@3:1", "LINT013@4:1", "LINT014@5:1", "LINT001@5:11"}, "/etc/systemd/system/nvidia-persistenced.service"},
      {"near miss: a unit named otherwise runs nvidia-smi (only LINT001)", FileKind::unit,
       "[Service]\nType=oneshot\nExecStart=/usr/bin/nvidia-smi -pm 1\n", {"LINT001@3:11"},
       "/etc/systemd/system/gpu-persistence.service"},
  });
}

TEST(Lint, new_anti_patterns) {
  check({
      {"-pm 0 after DCGM", FileKind::shell, "dcgmi diag -r 1\nnvidia-smi -pm 0\n", {"LINT003@2:1"}},
      {"--persistence-mode=0", FileKind::yaml, "- command: nvidia-smi --persistence-mode=0\n", {"LINT003@1:12"}},
      {"-pm DISABLED through sudo", FileKind::shell, "sudo nvidia-smi -i 0 -pm DISABLED\n", {"LINT003@1:6"}},
      {"daemon by hand in rc.local", FileKind::shell, "/usr/bin/nvidia-persistenced --user nvidia-persistenced\n",
       {"LINT005@1:1"}},
      {"daemon by hand, backgrounded after a test", FileKind::shell,
       "[ -x /usr/bin/nvidia-persistenced ] && nvidia-persistenced --verbose &\n", {"LINT005@1:40"}},
      {"daemon by hand in a Dockerfile", FileKind::dockerfile, "ENTRYPOINT [\"nvidia-persistenced\", \"--verbose\"]\n",
       {"LINT005@1:14"}},
      {"daemon by hand from Ansible", FileKind::yaml, "- command: nvidia-persistenced --persistence-mode\n",
       {"LINT005@1:12"}},
      {"near miss: through the init system", FileKind::shell,
       "systemctl enable --now nvidia-persistenced\nservice nvidia-persistenced start\n"
       "/etc/init.d/nvidia-persistenced start\n",
       {}},
      {"near miss: version check, user name, process checks", FileKind::shell,
       "nvidia-persistenced --version\nsudo -u nvidia-persistenced id\npgrep -x nvidia-persistenced\n", {}},
      {"near miss: the daemon's account, folder and container named after it (after sudo, docker)",
       FileKind::shell,
       "sudo groupadd --system nvidia-persistenced || true\n"
       "sudo useradd --system --gid nvidia-persistenced nvidia-persistenced\n"
       "sudo mkdir -p /var/run/nvidia-persistenced\nsudo chown nvidia-persistenced: /var/run/nvidia-persistenced\n"
       "sudo userdel nvidia-persistenced\nsudo docker logs nvidia-persistenced\n",
       {}},
      {"a user or group option's value is skipped, the command after it is not", FileKind::shell,
       "sudo -u nvidia-persistenced nvidia-persistenced --verbose\nsudo -g video nvidia-smi -pm 1\n",
       {"LINT005@1:29", "LINT001@2:15"}},
      {"a line sed puts into rc.local", FileKind::shell,
       "sudo sed -i -e '$i /usr/bin/nvidia-smi -pm 1\\n' /etc/rc.local\nsed -i '/^exit 0/i nvidia-smi -pm 1' rc.local\n",
       {"LINT001@1:17", "LINT001@2:9"}},
      {"near miss: sed that prints, or substitutes", FileKind::shell,
       "sed -n '/nvidia-smi -pm 1/p' /etc/rc.local\nsed 's/x/y/' f\n", {}},
      {"near miss: a unit's ExecStart", FileKind::shell, "ExecStart=/usr/bin/nvidia-persistenced --user x\n", {}},
      {"near miss: a package list", FileKind::yaml, "packages:\n  - nvidia-persistenced\n", {}},
      {"near miss: a function's argument (Chef, Python)", FileKind::shell,
       "variables(running: is_process_running('nvidia-persistenced'))\n", {}},
      {"near miss: Ansible systemd module", FileKind::yaml,
       "- systemd:\n    name: nvidia-persistenced\n    state: started\n    enabled: true\n", {}},
  });
  // The daemon's own init scripts start it: that is the init system.
  EXPECT_EQ(run({"SysV script", FileKind::shell, "start-stop-daemon --start --exec /usr/bin/nvidia-persistenced\n"
                 "nvidia-persistenced --user x\n",
                 {}, "sysv/etc/init.d/nvidia-persistenced"}),
            std::vector<std::string>{});
}

TEST(Lint, documentation_is_not_configuration) {
  const char* markdown =
      "# Persistence\n\nDo not run nvidia-smi -pm 1 on nodes.\n\n```bash\nsudo nvidia-smi -pm 1\n```\n\n"
      "~~~console\n$ nvidia-smi -pm 0\n~~~\n\nnvidia-smi -pm 1\n\n```\n$ sudo nvidia-persistenced\n# nvidia-smi -pm 1\n```\n";
  EXPECT_EQ(run({"markdown, default: skipped", FileKind::doc_markdown, markdown, {}}), std::vector<std::string>{});
  EXPECT_EQ(run({"markdown, --docs: code blocks only", FileKind::doc_markdown, markdown, {}}, nullptr, true),
            (std::vector<std::string>{"LINT001@6:6", "LINT003@10:3", "LINT005@16:8"}));
  const char* rst =
      "Setup\n=====\n\nRun nvidia-smi -pm 1 if you must::\n\n    nvidia-smi -pm 1\n\n"
      ".. code-block:: yaml\n\n   - command: nvidia-smi -pm 0\n\nProse nvidia-smi -pm 1 again.\n";
  EXPECT_EQ(run({"rst, --docs", FileKind::doc_rst, rst, {}}, nullptr, true),
            (std::vector<std::string>{"LINT001@6:5", "LINT003@10:15"}));
  EXPECT_EQ(run({"plain text, --docs: no code blocks", FileKind::doc_text, "nvidia-smi -pm 1\n", {}}, nullptr, true),
            std::vector<std::string>{});
  // In a console block only the prompts' lines (and what continues them) are commands; the rest is what they
  // printed, such as a tool's advice to remove `nvidia-smi -pm 1`.
  const char* console =
      "```console\n$ gpuwarm diagnose\nNext: remove `nvidia-smi -pm 1` from /etc/rc.local\n  nvidia-smi -pm 1\n"
      "$ ssh node1 \\\n  nvidia-smi -pm 1\n# nvidia-smi \\\n> -pm 1\nnvidia-smi -pm 1\n```\n";
  EXPECT_EQ(run({"console output is not a command", FileKind::doc_markdown, console, {}}, nullptr, true),
            (std::vector<std::string>{"LINT001@6:3", "LINT001@7:3"}));
  // A here-document a command writes is part of it, with or without the shell's "> " prompt; after its end
  // word, output again.
  const char* heredocs =
      "```console\n$ sudo tee /etc/rc.local <<EOF\nnvidia-smi -pm 1\nEOF\nnvidia-smi -pm 1\n"
      "$ cat <<'EOF' | sudo tee -a /etc/rc.local\n> nvidia-smi -pm 1\n> EOF\nnvidia-smi -pm 1\n```\n";
  EXPECT_EQ(run({"console here-documents are commands", FileKind::doc_markdown, heredocs, {}}, nullptr, true),
            (std::vector<std::string>{"LINT001@3:1", "LINT001@7:3"}));
}

TEST(Lint, yaml_prose_keys) {
  check({
      {"task name is prose", FileKind::yaml, "- name: nvidia-smi -pm 1\n  debug:\n    msg: nvidia-smi -pm 1\n", {}},
      {"Salt runs the name of cmd.run", FileKind::yaml, "pm:\n  cmd.run:\n    - name: nvidia-smi -pm 1\n",
       {"LINT001@3:13"}},
      {"a role variable holding the command", FileKind::yaml, "gpu_pm_command: nvidia-smi -pm 1\n",
       {"LINT001@1:17"}},
      {"GitHub Actions run block", FileKind::yaml, "steps:\n  - run: |\n      nvidia-smi -L\n      nvidia-smi -pm 1\n",
       {"LINT001@4:7"}},
  });
}

TEST(Lint, yaml_scalars_folded_over_lines) {
  check({
      {"folded block", FileKind::yaml, "- shell: >-\n    nvidia-smi\n    -pm 1\n", {"LINT001@2:5"}},
      {"folded block, a role's variable", FileKind::yaml,
       "- shell: >\n    set -e;\n    nvidia-smi\n    -pm {{ pm_mode }}\n", {"LINT004@3:5"}},
      {"plain scalar continued", FileKind::yaml, "- command: nvidia-smi\n    -pm 1\n", {"LINT001@1:12"}},
      {"double-quoted scalar continued", FileKind::yaml, "- shell: \"nvidia-smi\n    -pm 1\"\n",
       {"LINT001@1:11"}},
      {"single-quoted scalar continued", FileKind::yaml, "- shell: 'nvidia-smi -i 0\n    -pm 1'\n",
       {"LINT001@1:11"}},
      // A blank line in a folded scalar is a newline: the next line is a command of its own.
      {"a blank line folds to a newline", FileKind::yaml, "- shell: >\n    nvidia-smi -q\n\n    -pm 1\n", {}},
      // Lines indented more than the block's first keep their newlines.
      {"more-indented lines are not folded", FileKind::yaml, "- shell: >\n    nvidia-smi -q\n      -pm 1\n", {}},
      {"nor is the line after one", FileKind::yaml, "- shell: >\n    nvidia-smi -q\n      -x\n    -pm 1\n", {}},
      // A `#` line in a `>` block is text; the parser folds the next lines onto it, so the shell runs none of them.
      {"a comment line folds the next lines into it", FileKind::yaml, "- shell: >\n    # note\n    nvidia-smi -pm 1\n",
       {}},
      {"a comment after a command folds the rest in", FileKind::yaml,
       "- shell: >\n    echo a # note\n    nvidia-smi -pm 1\n", {}},
      {"a blank line ends the comment", FileKind::yaml, "- shell: >\n    # note\n\n    nvidia-smi -pm 1\n",
       {"LINT001@4:5"}},
      {"a more-indented comment ends at its line", FileKind::yaml,
       "- shell: >\n    echo a\n      # note\n    nvidia-smi -pm 1\n", {"LINT001@4:5"}},
      {"a comment at the end of a folded line", FileKind::yaml, "- shell: >-\n    nvidia-smi\n    -pm 1 # why\n    -q\n",
       {"LINT001@2:5"}},
      {"a literal block's comment is its line's", FileKind::yaml, "- shell: |\n    # note\n    nvidia-smi -pm 1\n",
       {"LINT001@3:5"}},
      // A literal block keeps every newline: -pm on the next line is not nvidia-smi's.
      {"literal block", FileKind::yaml, "- shell: |\n    nvidia-smi -q\n    -pm 1\n", {}},
      {"a closed quote ends the scalar", FileKind::yaml, "- shell: \"nvidia-smi -q\"\n  args:\n    chdir: /tmp\n", {}},
      // The next key of the same task is not part of the scalar.
      {"the next key is not folded in", FileKind::yaml, "- command: nvidia-smi -q\n  register: pm\n", {}},
      {"prose stays prose when folded", FileKind::yaml, "- name: >\n    run nvidia-smi\n    -pm 1 elsewhere\n", {}},
      {"a list item folded (k8s args)", FileKind::yaml,
       "args:\n  - >\n    nvidia-smi\n    -pm 1;\n    sleep infinity\n", {"LINT001@3:5"}},
      {"a list item continued (cloud-init runcmd)", FileKind::yaml,
       "runcmd:\n  - nvidia-smi\n    -pm 1\n  - \"nvidia-smi\n    -pm 0\"\n", {"LINT001@2:5", "LINT003@4:6"}},
      {"near miss: items one per line", FileKind::yaml, "runcmd:\n  - nvidia-smi -L\n  - -pm 1\n", {}},
      {"an argv list is still one command", FileKind::yaml, "argv:\n  - nvidia-smi\n  - -pm\n  - 1\n",
       {"LINT001@2:5"}},
      {"a folded item after another item (GitLab script)", FileKind::yaml,
       "script:\n  - echo \"preparing node\"\n  - >\n    sudo nvidia-smi -pm 1\n  - nvidia-smi -q\n", {"LINT001@4:10"}},
      {"a folded item after an argv item (cloud-init runcmd)", FileKind::yaml,
       "runcmd:\n  - [ sh, -c, \"echo start\" ]\n  - >\n    nvidia-smi -pm 1 || true\n", {"LINT001@4:5"}},
      {"an argv list, then a later key folded", FileKind::yaml,
       "- command:\n    argv:\n      - nvidia-smi\n      - -pm\n      - \"1\"\n- debug:\n    msg: >\n      persistence\n"
       "      enabled\n",
       {"LINT001@3:9"}},
      {"a nested list (cloud-init runcmd argv)", FileKind::yaml, "runcmd:\n  - - nvidia-smi\n    - -pm\n    - \"1\"\n",
       {"LINT001@2:7"}},
  });
}

// A role that removes the anti-pattern names it in what it matches, tests or takes out: none of that runs.
TEST(Lint, yaml_text_matched_tested_or_removed) {
  check({
      {"lineinfile regexp", FileKind::yaml,
       "- lineinfile:\n    path: /etc/rc.local\n    regexp: 'nvidia-smi -pm 1'\n    state: absent\n", {}},
      {"lineinfile line taken out", FileKind::yaml,
       "- lineinfile:\n    path: /etc/rc.local\n    line: nvidia-smi -pm 1\n    state: absent\n", {}},
      {"state before the line", FileKind::yaml,
       "- name: x\n  lineinfile:\n    state: absent\n    line: nvidia-smi -pm 1\n", {}},
      {"cron job taken out", FileKind::yaml,
       "- cron:\n    name: gpu\n    job: \"/usr/bin/nvidia-smi -pm 1\"\n    state: \"absent\"\n", {}},
      {"block taken out", FileKind::yaml,
       "- blockinfile:\n    path: /etc/rc.local\n    state: absent\n    block: |\n      nvidia-smi -pm 1\n", {}},
      {"when and assert", FileKind::yaml,
       "- debug:\n    var: x\n  when: \"'nvidia-smi -pm 1' in out.stdout\"\n- assert:\n    that:\n"
       "      - \"'nvidia-smi -pm 1' not in rc.content\"\n",
       {}},
      {"a line put in is still one that runs", FileKind::yaml,
       "- lineinfile:\n    path: /etc/rc.local\n    line: nvidia-smi -pm 1\n    state: present\n", {"LINT001@3:11"}},
      {"another task's absent state does not count", FileKind::yaml,
       "- file:\n    path: /tmp/x\n    state: absent\n- lineinfile:\n    path: /etc/rc.local\n"
       "    line: nvidia-smi -pm 1\n",
       {"LINT001@6:11"}},
  });
}

// A case arm's command on its pattern's line runs (init scripts, prologs keyed on a partition).
TEST(Lint, case_arms_on_one_line) {
  check({
      {"pattern) command", FileKind::shell, "case \"$1\" in\n  start) nvidia-smi -pm 1 ;;\nesac\n", {"LINT001@2:10"}},
      {"(pattern) command", FileKind::shell, "case \"$1\" in\n  (legacy) nvidia-smi -pm 1 ;;\nesac\n",
       {"LINT001@2:12"}},
      {"alternatives, all on one line", FileKind::shell,
       "case \"$1\" in legacy|old) nvidia-smi -pm 1;; *) :;; esac\n", {"LINT001@1:26"}},
      {"a substitution's end in an argument is no pattern", FileKind::shell,
       "echo $(date) nvidia-smi -pm 1 >> /var/log/gpu.log\n", {}},
  });
}

TEST(Lint, file_kinds) {
  EXPECT_EQ(lint::kind_for("roles/gpu/tasks/main.yml", "- name: x"), FileKind::yaml);
  EXPECT_EQ(lint::kind_for("/etc/systemd/system/nvidia-persistenced.service", "[Unit]"), FileKind::unit);
  EXPECT_EQ(lint::kind_for("/etc/systemd/system/nvidia-persistenced.service.d/override.conf", "[Service]"),
            FileKind::unit);
  EXPECT_EQ(lint::kind_for("/etc/nhc/nhc.conf", "* || check_fs_mount_rw /"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("/etc/rc.local", "#!/bin/sh"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("bin/node-init", "#!/usr/bin/env bash"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("Dockerfile", "FROM debian"), FileKind::dockerfile);
  EXPECT_EQ(lint::kind_for("hosts/gpu.nix", "{ config, ... }:"), FileKind::nix);
  EXPECT_EQ(lint::kind_for("README", "hello"), FileKind::doc_text);
  EXPECT_EQ(lint::kind_for("docs/setup.md", "# Setup"), FileKind::doc_markdown);
  EXPECT_EQ(lint::kind_for("docs/index.rst", "Setup"), FileKind::doc_rst);
  EXPECT_EQ(lint::kind_for("notes.txt", "x"), FileKind::doc_text);
  EXPECT_EQ(lint::kind_for("templates/nvidia-persistenced.service.j2", "[Unit]"), FileKind::unit);
  EXPECT_EQ(lint::kind_for("templates/default/nvidia-persistenced.service.erb", "[Unit]"), FileKind::unit);
  EXPECT_EQ(lint::kind_for("files/gpu-init.sh.tmpl", "x"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("etc/cron.d/gpu", "@reboot root x"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("salt/gpu/init.sls", "x:"), FileKind::yaml);
  EXPECT_EQ(lint::kind_for("packer/gpu.json", "{"), FileKind::yaml);
  EXPECT_EQ(lint::kind_for("Makefile", "all:"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("data.csv", "a,b"), FileKind::text);
  EXPECT_EQ(lint::kind_for("/etc/udev/rules.d/85-nvidia.rules", "ACTION==\"add\""), FileKind::udev);
  EXPECT_EQ(lint::kind_for("files/71-nvidia.rules.j2", "x"), FileKind::udev);
  EXPECT_EQ(lint::kind_for("/lib/udev/rules.d/60-gpu.rules", "x"), FileKind::udev);
  EXPECT_EQ(lint::kind_for("/etc/udev/rules.d/setup.sh", "#!/bin/sh"), FileKind::shell);
  EXPECT_EQ(lint::kind_for("/etc/polkit-1/rules.d/49-x.rules", "polkit.addRule("), FileKind::text);
}

// A template's branches: one that runs another program (nvidia-smi, where the daemon already runs) is not judged
// as the daemon's unit (AWS ParallelCluster's parallelcluster_nvidia_service.erb); the daemon's branch still is.
TEST(Lint, template_branches_that_run_another_program) {
  check({
      {"ERB: the nvidia-smi branch's Type=simple is its own", FileKind::unit,
       "[Unit]\nDescription=x\n[Service]\n<% if @running -%>\nType=simple\nExecStart=/usr/bin/nvidia-smi\n"
       "RemainAfterExit=yes\n<% else %>\nType=forking\nExecStart=/usr/bin/nvidia-persistenced --user root\n"
       "Restart=always\n<% end %>\n",
       {}, "templates/nvidia/parallelcluster_nvidia_service.erb"},
      {"Jinja, the same", FileKind::unit,
       "[Service]\n{% if running %}\nType=simple\nExecStart=/usr/bin/nvidia-smi\n{%- else %}\nType=forking\n"
       "ExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n{% endif %}\n",
       {}, "t/nvidia-persistenced.service.j2"},
      {"the daemon's branch is still judged", FileKind::unit,
       "[Service]\n<% if @running -%>\nType=simple\nExecStart=/usr/bin/nvidia-smi\n<% else %>\nType=simple\n"
       "ExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n<% end %>\n",
       {"LINT013@6:1"}, "templates/nvidia-persistenced.service.erb"},
      {"a loop's end closes no branch", FileKind::unit,
       "[Service]\n<% if @x -%>\n<% @envs.each do |e| -%>\nEnvironment=<%= e %>\n<% end -%>\nType=simple\n"
       "ExecStart=/usr/bin/nvidia-smi\n<% else %>\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\n"
       "Restart=always\n<% end %>\n",
       {}, "templates/nvidia-persistenced.service.erb"},
      {"branches that each run the daemon are each judged", FileKind::unit,
       "[Service]\n{% if a %}\nType=simple\nExecStart=/usr/bin/nvidia-persistenced\n{% else %}\nType=notify\n"
       "ExecStart=/usr/bin/nvidia-persistenced --verbose\n{% endif %}\nRestart=always\n",
       {"LINT013@3:1", "LINT013@6:1"}, "t/nvidia-persistenced.service.j2"},
  });
}

// Template tags on a line with a setting, and Go templates, keep branches straight.
TEST(Lint, template_branches_on_one_line_and_in_go) {
  check({
      {"an if and its end on one line open no branch", FileKind::unit,
       "[Service]\n<% if @running %>\nExecStart=/usr/bin/nvidia-smi\nType=oneshot\n"
       "<% if @debug %>Environment=DEBUG=1<% end %>\n<% else %>\nType=forking\n"
       "ExecStart=/usr/bin/nvidia-persistenced --user root\n<% end %>\nRestart=always\n[Unit]\nStopWhenUnneeded=true\n",
       {"LINT010@12:1"}, "t/nvidia-persistenced.service.erb"},
      {"Jinja on one line", FileKind::unit,
       "[Service]\n{% if a %}\nExecStart=/usr/bin/nvidia-smi\nType=simple\n{% if d %}Environment=D=1{% endif %}\n"
       "{% else %}\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\n{% endif %}\nRestart=no\n",
       {"LINT011@10:1"}, "t/nvidia-persistenced.service.j2"},
      {"Go template branches", FileKind::unit,
       "[Service]\n{{- if .Running }}\nType=simple\nExecStart=/usr/bin/nvidia-smi\n{{- else }}\nType=forking\n"
       "ExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n{{- end }}\n",
       {}, "t/nvidia-persistenced.service.tmpl"},
      {"an output tag stays part of the value", FileKind::unit,
       "[Service]\nType=forking\nExecStart={{ .Bin }}/nvidia-persistenced --user {{ .User }}\nRestart={{ .Restart }}\n",
       {}, "t/nvidia-persistenced.service.tmpl"},
      {"RemainAfterExit of another branch is not this one's", FileKind::unit,
       "[Service]\n<% if @r %>\nType=simple\nExecStart=/usr/bin/nvidia-smi\nRemainAfterExit=yes\n<% else %>\n"
       "Type=oneshot\nExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n<% end %>\n",
       {"LINT013@7:1"}, "t/nvidia-persistenced.service.erb"},
  });
  auto found = lint::lint_text(
      "[Service]\n<% if @r %>\nType=simple\nExecStart=/usr/bin/nvidia-smi\nRemainAfterExit=yes\n<% else %>\n"
      "Type=oneshot\nExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n<% end %>\n",
      lint::Source{"t/nvidia-persistenced.service.erb", FileKind::unit, nullptr, false});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].message.find("stops it"), std::string::npos) << found[0].message;
}

// oneshot + RemainAfterExit=yes keeps the forked daemon running: the finding says what it does cost.
TEST(Lint, oneshot_that_remains_is_untracked_not_stopped) {
  const char* remains =
      "[Service]\nType=oneshot\nExecStart=/usr/bin/env nvidia-persistenced\nRemainAfterExit=yes\nRestart=always\n";
  auto found = lint::lint_text(remains, lint::Source{"nvidia-persistenced.service", FileKind::unit, nullptr, false});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].rule, "LINT013");
  EXPECT_NE(found[0].message.find("tracks no main process"), std::string::npos) << found[0].message;
  found = lint::lint_text("[Service]\nType=oneshot\nExecStart=/usr/bin/nvidia-persistenced\nRestart=always\n",
                          lint::Source{"nvidia-persistenced.service", FileKind::unit, nullptr, false});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].message.find("takes the parent's exit for the end of the service and stops it"),
            std::string::npos);
}

// A -pm 0 that undoes the file's own -pm 1, or frees the GPUs for a driver unload, is not "remove it".
TEST(Lint, LINT003_restores_and_unloads_are_not_findings) {
  check({
      {"a restore of the file's own -pm 1: the -pm 1 is the finding", FileKind::shell,
       "nvidia-smi -i $g -pm 1\ndcgmi diag -r 1\nnvidia-smi -i $g -pm 0\n", {"LINT001@1:1"}},
      {"before the driver is unloaded", FileKind::shell,
       "systemctl stop nvidia-persistenced\nnvidia-smi -pm 0\nmodprobe -r nvidia_uvm nvidia\nmodprobe nvidia\n", {}},
      {"before rmmod", FileKind::shell, "nvidia-smi -pm 0\nrmmod nvidia\n", {}},
      {"-pm 0 alone stays one", FileKind::shell, "nvidia-smi -pm 0\nmodprobe -r snd_hda_intel\n", {"LINT003@1:1"}},
      {"a -pm 1 after it restores nothing", FileKind::shell, "nvidia-smi -pm 0\nnvidia-smi -pm 1\n",
       {"LINT003@1:1", "LINT001@2:1"}},
      {"an unload in a comment does not count", FileKind::shell, "nvidia-smi -pm 0\n# then rmmod nvidia\n",
       {"LINT003@1:1"}},
  });
}

// The daemon switched off for good: masked, or disabled with no enable of it in the same file.
TEST(Lint, LINT006_daemon_switched_off) {
  check({
      {"mask", FileKind::shell, "systemctl mask nvidia-persistenced\n", {"LINT006@1:16"}},
      {"mask --now, with .service, through sudo", FileKind::shell,
       "sudo systemctl mask --now nvidia-persistenced.service\n", {"LINT006@1:27"}},
      {"disable, nothing enables it", FileKind::shell, "systemctl disable --now nvidia-persistenced\n",
       {"LINT006@1:25"}},
      {"disable, then enable in the same file", FileKind::shell,
       "systemctl disable nvidia-persistenced\nsystemctl enable nvidia-persistenced\n", {}},
      {"a mask stays a finding beside an enable", FileKind::shell,
       "systemctl mask nvidia-persistenced\nsystemctl enable nvidia-persistenced\n", {"LINT006@1:16"}},
      {"Ansible shell:", FileKind::yaml, "- name: x\n  shell: systemctl mask nvidia-persistenced\n",
       {"LINT006@2:25"}},
      {"other units and verbs", FileKind::shell,
       "systemctl mask nvidia-fabricmanager\nsystemctl status nvidia-persistenced\nsystemctl stop nvidia-persistenced\n",
       {}},
      {"shown, not run", FileKind::shell, "echo 'systemctl mask nvidia-persistenced'\n# systemctl mask nvidia-persistenced\n",
       {}},
      {"opted out", FileKind::shell, "systemctl disable nvidia-persistenced  # gpuwarm: ignore LINT006\n", {}},
      {"a container image runs no init system", FileKind::dockerfile, "FROM x\nRUN systemctl disable nvidia-persistenced\n",
       {}},
  });
}

// Ansible's systemd and service modules switch the unit without a systemctl line: block, flow and key=value forms.
TEST(Lint, LINT006_ansible_tasks) {
  check({
      {"block, masked", FileKind::yaml,
       "- name: keep the GPUs cold\n  ansible.builtin.systemd:\n    name: nvidia-persistenced\n    masked: true\n",
       {"LINT006@3:11"}},
      {"block, list item, disabled", FileKind::yaml,
       "tasks:\n  - systemd:\n      name: nvidia-persistenced.service\n      enabled: no\n      state: stopped\n",
       {"LINT006@3:13"}},
      {"flow mapping, masked", FileKind::yaml,
       "- systemd: {name: nvidia-persistenced, masked: true}\n", {"LINT006@1:19"}},
      {"key=value words, disabled", FileKind::yaml,
       "- service: name=nvidia-persistenced enabled=no\n", {"LINT006@1:17"}},
      {"disabled, then enabled by a later task", FileKind::yaml,
       "- systemd: {name: nvidia-persistenced, enabled: false}\n"
       "- systemd:\n    name: nvidia-persistenced\n    enabled: true\n",
       {}},
      {"disabled by a task, enabled by systemctl", FileKind::yaml,
       "- service: name=nvidia-persistenced enabled=no\n- shell: systemctl enable nvidia-persistenced\n", {}},
      {"a mask stays a finding beside an enable", FileKind::yaml,
       "- systemd: {name: nvidia-persistenced, masked: yes}\n- systemd: {name: nvidia-persistenced, enabled: yes}\n",
       {"LINT006@1:19"}},
      {"enabled, started, unmasked", FileKind::yaml,
       "- ansible.builtin.systemd_service:\n    name: nvidia-persistenced\n    enabled: true\n    masked: false\n"
       "    state: started\n",
       {}},
      {"only stopped: nothing at boot", FileKind::yaml,
       "- systemd:\n    name: nvidia-persistenced\n    state: stopped\n", {}},
      {"a value filled in later says nothing", FileKind::yaml,
       "- systemd:\n    name: nvidia-persistenced\n    enabled: \"{{ want_pm }}\"\n", {}},
      {"another unit", FileKind::yaml, "- systemd:\n    name: nvidia-fabricmanager\n    masked: true\n", {}},
      {"not a service module", FileKind::yaml,
       "- name: nvidia-persistenced\n  debug:\n    msg: masked\n  vars:\n    masked: true\n", {}},
      {"a task named for the unit, its module below", FileKind::yaml,
       "- name: nvidia-persistenced\n  systemd:\n    name: nvidia-persistenced\n    masked: true\n",
       {"LINT006@3:11"}},
      {"opted out", FileKind::yaml,
       "- systemd:\n    name: nvidia-persistenced  # gpuwarm: ignore LINT006\n    masked: true\n", {}},
  });
}

// A udev RUN+= runs on every matching event (a GPU added, mains power back): the legacy flag set there is set
// again behind the daemon's back.
TEST(Lint, udev_rules) {
  check({
      {"RUN+=", FileKind::udev,
       "ACTION==\"change\", SUBSYSTEM==\"power_supply\", ATTR{online}==\"1\", RUN+=\"/usr/bin/nvidia-smi -pm 1\"\n",
       {"LINT001@1:71"}},
      {"RUN{program}+=, continued, a key after it", FileKind::udev,
       "ACTION==\"add\", ATTRS{vendor}==\"0x10de\", \\\n  RUN{program}+=\"/usr/bin/nvidia-smi -i %n -pm 1\", \\\n"
       "  TAG+=\"gpu\"\n",
       {"LINT001@2:18"}},
      {"through a shell", FileKind::udev, "ACTION==\"add\", RUN+=\"/bin/sh -c 'nvidia-smi -pm 1'\"\n",
       {"LINT001@1:34"}},
      {"disabling", FileKind::udev, "ACTION==\"remove\", RUN+=\"/usr/bin/nvidia-smi -pm 0\"\n", {"LINT003@1:25"}},
      {"a comment", FileKind::udev, "# ACTION==\"add\", RUN+=\"/usr/bin/nvidia-smi -pm 1\"\n", {}},
      {"a query", FileKind::udev, "ACTION==\"add\", PROGRAM=\"/usr/bin/nvidia-smi -q\"\n", {}},
      {"the daemon started from RUN+=: by hand, and udevd kills it after the event", FileKind::udev,
       "ACTION==\"add\", RUN+=\"/usr/bin/nvidia-persistenced --user x\"\n", {"LINT005@1:22"}},
      {"a match on the text is no run", FileKind::udev, "ENV{CMD}==\"nvidia-smi -pm 1\", GOTO=\"end\"\n", {}},
      {"written from a heredoc", FileKind::shell,
       "cat > /etc/udev/rules.d/71-nvidia.rules <<EOF\nACTION==\"add\", RUN+=\"/usr/bin/nvidia-smi -pm 1\"\nEOF\n",
       {"LINT001@2:22"}},
      {"a shell variable named RUN is only a string", FileKind::shell, "RUN=\"nvidia-smi -pm 1\"\n", {}},
  });
}

TEST(Lint, unit_place_finds_the_folders_systemd_reads) {
  struct Case {
    const char* path;
    const char* unit;
    const char* dropin;
    std::vector<std::string> dirs;
    std::size_t own;
  };
  const std::vector<std::string> root_dirs = {"/etc/systemd/system", "/run/systemd/system",
                                              "/usr/local/lib/systemd/system", "/usr/lib/systemd/system",
                                              "/lib/systemd/system"};
  const std::vector<Case> cases = {
      {"/usr/lib/systemd/system/nvidia-persistenced.service", "nvidia-persistenced.service", "", root_dirs, 3},
      {"/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf", "nvidia-persistenced.service",
       "50-gpuwarm.conf", root_dirs, 0},
      {"copy/lib/systemd/system/x.service", "x.service", "",
       {"copy/etc/systemd/system", "copy/run/systemd/system", "copy/usr/local/lib/systemd/system",
        "copy/usr/lib/systemd/system", "copy/lib/systemd/system"}, 4},
      {"etc/systemd/system/x.service", "x.service", "",
       {"etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system", "usr/lib/systemd/system",
        "lib/systemd/system"}, 0},
      {"repo/files/nvidia-persistenced.service", "nvidia-persistenced.service", "", {"repo/files"}, 0},
      {"repo/files/x.service.d/10.conf", "x.service", "10.conf", {"repo/files"}, 0},
      {"x.service", "x.service", "", {"."}, 0},
      {"x.service.d/10.conf", "x.service", "10.conf", {"."}, 0},
      // A folder that only ends like a unit folder is not one.
      {"/opt/myetc/systemd/system/x.service", "x.service", "", {"/opt/myetc/systemd/system"}, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    auto place = lint::unit_place(c.path);
    ASSERT_TRUE(place.has_value());
    EXPECT_EQ(place->unit, c.unit);
    EXPECT_EQ(place->dropin, c.dropin);
    EXPECT_EQ(place->dirs, c.dirs);
    EXPECT_EQ(place->own, c.own);
  }
  for (const char* not_read : {"roles/gpu/templates/nvidia-persistenced.service.j2", "/etc/fstab",
                               "/etc/systemd/system/x.conf", ""}) {
    SCOPED_TRACE(not_read);
    EXPECT_FALSE(lint::unit_place(not_read).has_value());
  }
}

TEST(Lint, later_files_in_systemd_order) {
  auto place = *lint::unit_place("/usr/lib/systemd/system/x.service");
  auto dropin = [](std::size_t dir, const char* name) {
    const char* dirs[] = {"/etc", "/run", "/usr/local/lib", "/usr/lib", "/lib"};
    return lint::UnitFile{dir, true, name, std::string(dirs[dir]) + "/systemd/system/x.service.d/" + name};
  };
  // By file name across folders; a name in /etc hides the same name in /usr/lib.
  std::vector<lint::UnitFile> found = {dropin(3, "10-vendor.conf"), dropin(3, "50-gpuwarm.conf"),
                                       dropin(0, "50-gpuwarm.conf"), dropin(1, "20-run.conf")};
  auto later = lint::later_files(place, found);
  EXPECT_EQ(later.replaced_by, "");
  EXPECT_EQ(later.dropins,
            (std::vector<std::string>{"/usr/lib/systemd/system/x.service.d/10-vendor.conf",
                                      "/run/systemd/system/x.service.d/20-run.conf",
                                      "/etc/systemd/system/x.service.d/50-gpuwarm.conf"}));
  // A drop-in: only those after it by name.
  auto dropin_place = *lint::unit_place("/usr/lib/systemd/system/x.service.d/10-vendor.conf");
  later = lint::later_files(dropin_place, found);
  EXPECT_EQ(later.dropins, (std::vector<std::string>{"/run/systemd/system/x.service.d/20-run.conf",
                                                     "/etc/systemd/system/x.service.d/50-gpuwarm.conf"}));
  // The same name with higher priority replaces the linted file; lower priority does not.
  auto shadowed = *lint::unit_place("/usr/lib/systemd/system/x.service.d/50-gpuwarm.conf");
  EXPECT_EQ(lint::later_files(shadowed, found).replaced_by, "/etc/systemd/system/x.service.d/50-gpuwarm.conf");
  auto winner = *lint::unit_place("/etc/systemd/system/x.service.d/50-gpuwarm.conf");
  EXPECT_EQ(lint::later_files(winner, found).replaced_by, "");
  found.push_back({0, false, "x.service", "/etc/systemd/system/x.service"});
  EXPECT_EQ(lint::later_files(place, found).replaced_by, "/etc/systemd/system/x.service");
  auto top = *lint::unit_place("/etc/systemd/system/x.service");
  found.back().dir = 4;  // a copy in /lib is below /etc's
  found.back().path = "/lib/systemd/system/x.service";
  EXPECT_EQ(lint::later_files(top, found).replaced_by, "");
}

TEST(Lint, drop_in_folders_masks_and_earlier_files) {
  EXPECT_EQ(lint::dropin_folders("nvidia-persistenced.service"),
            (std::vector<std::string>{"nvidia-persistenced.service.d", "nvidia-.service.d", "service.d"}));
  EXPECT_EQ(lint::dropin_folders("a-b-c.service"),
            (std::vector<std::string>{"a-b-c.service.d", "a-b-.service.d", "a-.service.d", "service.d"}));
  EXPECT_EQ(lint::dropin_folders("x.service"), (std::vector<std::string>{"x.service.d", "service.d"}));

  auto place = *lint::unit_place("/usr/lib/systemd/system/x.service");
  auto file = [](std::size_t dir, const char* name, std::size_t specificity = 0, bool mask = false) {
    const char* dirs[] = {"/etc", "/run", "/usr/local/lib", "/usr/lib", "/lib"};
    const char* folders[] = {"x.service.d", "service.d"};
    return lint::UnitFile{dir, true, name,
                          std::string(dirs[dir]) + "/systemd/system/" + folders[specificity] + "/" + name,
                          specificity, mask};
  };
  // A link to /dev/null in /etc masks the vendor's drop-in of that name: it overrides nothing.
  auto later = lint::later_files(place, {file(3, "50-vendor.conf"), file(0, "50-vendor.conf", 0, true),
                                         file(3, "60-other.conf")});
  EXPECT_EQ(later.dropins, (std::vector<std::string>{"/usr/lib/systemd/system/x.service.d/60-other.conf"}));
  // The masked drop-in itself is not read: every finding in it is out of force.
  auto masked = lint::later_files(*lint::unit_place("/usr/lib/systemd/system/x.service.d/50-vendor.conf"),
                                  {file(0, "50-vendor.conf", 0, true)});
  EXPECT_EQ(masked.replaced_by, "/etc/systemd/system/x.service.d/50-vendor.conf");
  EXPECT_TRUE(masked.masked);
  // The unit masked in /etc: nothing of the vendor unit is read.
  auto unit_masked = lint::later_files(place, {{0, false, "x.service", "/etc/systemd/system/x.service", 0, true}});
  EXPECT_EQ(unit_masked.replaced_by, "/etc/systemd/system/x.service");
  EXPECT_TRUE(unit_masked.masked);
  // service.d/ applies to every service; a name there loses to the same name in x.service.d/, whatever the unit
  // folder (systemd lists every unit folder's type folder last).
  later = lint::later_files(place, {file(0, "10-all.conf", 1), file(3, "10-all.conf", 0), file(0, "20-all.conf", 1)});
  EXPECT_EQ(later.dropins, (std::vector<std::string>{"/usr/lib/systemd/system/x.service.d/10-all.conf",
                                                     "/etc/systemd/system/service.d/20-all.conf"}));
  // A prefix folder is read with its unit folder: /etc's nvidia-.service.d/ wins over /usr/lib's exact one (as
  // systemd 252's `systemd-analyze verify` shows).
  auto pd = *lint::unit_place("/usr/lib/systemd/system/nvidia-persistenced.service");
  later = lint::later_files(pd, {{3, true, "50-x.conf", "/usr/lib/systemd/system/nvidia-persistenced.service.d/50-x.conf",
                                  0, false},
                                 {0, true, "50-x.conf", "/etc/systemd/system/nvidia-.service.d/50-x.conf", 1, false}});
  EXPECT_EQ(later.dropins, (std::vector<std::string>{"/etc/systemd/system/nvidia-.service.d/50-x.conf"}));
  // A drop-in's earlier files: the unit file in force, then the drop-ins before it by name.
  auto dropin_place = *lint::unit_place("/etc/systemd/system/x.service.d/20-site.conf");
  later = lint::later_files(dropin_place, {{3, false, "x.service", "/usr/lib/systemd/system/x.service", 0, false},
                                           file(3, "10-clear.conf"), file(3, "30-late.conf")});
  EXPECT_TRUE(later.unit_file_found);
  EXPECT_EQ(later.earlier, (std::vector<std::string>{"/usr/lib/systemd/system/x.service",
                                                     "/usr/lib/systemd/system/x.service.d/10-clear.conf"}));
  EXPECT_EQ(later.dropins, (std::vector<std::string>{"/usr/lib/systemd/system/x.service.d/30-late.conf"}));
}

TEST(Lint, exec_start_counted_from_what_is_in_force_before_a_drop_in) {
  const char* text = "[Service]\nExecStart=/usr/bin/nvidia-persistenced --verbose\n";
  const char* path = "/etc/systemd/system/nvidia-persistenced.service.d/20-site.conf";
  struct Case {
    const char* name;
    std::vector<const char*> earlier;  // the unit file first, then earlier drop-ins
    bool unit_file_found;
    std::vector<std::string> expected;
  };
  const char* unit = "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\n";
  const std::vector<Case> cases = {
      {"the unit's ExecStart is still in force", {unit}, true, {"LINT015"}},
      {"an earlier drop-in cleared it", {unit, "[Service]\nExecStart=\n"}, true, {}},
      {"an earlier drop-in cleared it and set its own", {unit, "[Service]\nExecStart=\nExecStart=/bin/x\n"}, true,
       {"LINT015"}},
      {"no unit file found: the packaged one has one", {}, false, {"LINT015"}},
      {"no unit file found, an earlier drop-in cleared it", {"[Service]\nExecStart=\n"}, false, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto findings = lint::lint_text(text, lint::Source{path, FileKind::unit, nullptr, false});
    lint::LaterFiles later;
    later.unit_file_found = c.unit_file_found;
    std::vector<lint::Layer> earlier;
    for (const char* e : c.earlier) {
      earlier.push_back({"earlier", lint::parse_unit(e)});
    }
    auto doc = lint::parse_unit(text);
    doc.dropin = true;
    std::vector<lint::SetAside> set_aside;
    lint::set_aside_overridden(doc, later, {}, earlier, findings, set_aside);
    std::vector<std::string> rules;
    for (const auto& f : findings) {
      rules.push_back(f.rule);
    }
    EXPECT_EQ(rules, c.expected);
  }
}

TEST(Lint, settings_a_later_drop_in_overrides_are_set_aside) {
  const char* packaged =
      "[Unit]\nStopWhenUnneeded=true\n\n[Service]\nType=forking\n"
      "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced \\\n  --no-persistence-mode --verbose\n"
      "PIDFile=/var/run/nvidia-persistenced/nvidia-persistenced.pid\n";
  struct Case {
    const char* name;
    const char* dropin;                 // the one later file, at later.conf
    std::vector<std::string> in_force;  // "RULE@line"
    std::vector<std::string> set_aside;  // "RULE@line<-later.conf:line"
  };
  const std::vector<Case> cases = {
      {"no drop-in", "", {"LINT010@2", "LINT011@4", "LINT002@7", "LINT012@8"}, {}},
      {"what gpuwarm fix writes", "[Unit]\nStopWhenUnneeded=no\n[Service]\nRestart=on-failure\n"
       "PIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid\nExecStart=\n"
       "ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose\n",
       {},
       {"LINT010@2<-later.conf:2", "LINT011@4<-later.conf:4", "LINT002@7<-later.conf:6", "LINT012@8<-later.conf:5"}},
      // An ExecStart= added without the empty reset runs as well: the flag stays.
      {"ExecStart added, not reset", "[Service]\nExecStart=/usr/bin/nvidia-persistenced\n",
       {"LINT010@2", "LINT011@4", "LINT002@7", "LINT012@8"}, {}},
      // The same key in another section is another setting.
      {"another section", "[Unit]\nRestart=on-failure\n[Service]\nStopWhenUnneeded=no\n",
       {"LINT010@2", "LINT011@4", "LINT002@7", "LINT012@8"}, {}},
      // A later bad value still overrides: that file answers for it when it is linted.
      {"overridden by another bad value", "[Service]\nRestart=no\n",
       {"LINT010@2", "LINT002@7", "LINT012@8"}, {"LINT011@4<-later.conf:2"}},
      {"a comment is not a setting", "[Unit]\n# StopWhenUnneeded=no\n",
       {"LINT010@2", "LINT011@4", "LINT002@7", "LINT012@8"}, {}},
  };
  const lint::UnitDoc unit = lint::parse_unit(packaged);
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto findings = lint::lint_text(packaged, lint::Source{"/lib/systemd/system/nvidia-persistenced.service",
                                                           FileKind::unit, nullptr, false});
    lint::LaterFiles later;
    std::vector<lint::Layer> layers;
    if (*c.dropin != '\0') {
      later.dropins = {"later.conf"};
      layers.push_back({"later.conf", lint::parse_unit(c.dropin)});
    }
    std::vector<lint::SetAside> set_aside;
    lint::set_aside_overridden(unit, later, layers, {}, findings, set_aside);
    std::vector<std::string> in_force;
    for (const auto& f : findings) {
      in_force.push_back(f.rule + "@" + std::to_string(f.line));
    }
    std::vector<std::string> aside;
    for (const auto& a : set_aside) {
      aside.push_back(a.finding.rule + "@" + std::to_string(a.finding.line) + "<-" + a.by);
    }
    EXPECT_EQ(in_force, c.in_force);
    EXPECT_EQ(aside, c.set_aside);
  }
  // A file that replaces this one takes every finding out of force.
  auto findings = lint::lint_text(packaged, FileKind::unit);
  lint::LaterFiles replaced;
  replaced.replaced_by = "/etc/systemd/system/nvidia-persistenced.service";
  std::vector<lint::SetAside> set_aside;
  const std::size_t before = findings.size();
  lint::set_aside_overridden(unit, replaced, {}, {}, findings, set_aside);
  EXPECT_TRUE(findings.empty());
  ASSERT_EQ(set_aside.size(), before);
  EXPECT_EQ(set_aside.front().by, "/etc/systemd/system/nvidia-persistenced.service");
}

TEST(Lint, an_escaped_backslash_ends_a_value) {
  auto unit = lint::parse_unit("[Service]\nExecStartPre=/bin/echo x \\\\\nRestart=always\n");
  ASSERT_EQ(unit.directives.size(), 2u);
  EXPECT_EQ(unit.directives[1].key, "Restart");
}

TEST(Lint, unit_values_continue_past_a_backslash) {
  auto unit = lint::parse_unit("[Service]\nExecStart=/usr/bin/nvidia-persistenced \\\n# a comment\n  --verbose\nType=forking\n");
  ASSERT_EQ(unit.directives.size(), 2u);
  EXPECT_EQ(unit.directives[0].value, "/usr/bin/nvidia-persistenced  --verbose");
  EXPECT_EQ(unit.directives[0].line, 2u);
  EXPECT_EQ(unit.directives[0].last_line, 4u);
  EXPECT_EQ(unit.directives[1].key, "Type");
  EXPECT_EQ(unit.directives[1].line, 5u);
}

TEST(Lint, LINT015_exec_start_twice_and_LINT014_wrappers) {
  const char* dropin = "/etc/systemd/system/nvidia-persistenced.service.d/10-x.conf";
  const char* unit = "/etc/systemd/system/nvidia-persistenced.service";
  check({
      {"a drop-in adding ExecStart without clearing the unit's", FileKind::unit,
       "[Service]\nExecStart=/usr/bin/nvidia-persistenced --verbose\n", {"LINT015@2:1"}, dropin},
      {"near miss: cleared first", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/nvidia-persistenced --verbose\n", {}, dropin},
      {"two after the reset", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/nvidia-persistenced\nExecStart=/usr/bin/nvidia-persistenced -V\n",
       {"LINT015@4:1"}, dropin},
      {"two in a whole unit", FileKind::unit,
       "[Service]\nType=forking\nRestart=always\nExecStart=/usr/bin/nvidia-persistenced\n"
       "ExecStart=/usr/bin/nvidia-persistenced\n",
       {"LINT015@5:1"}, unit},
      {"near miss: oneshot may run several", FileKind::unit,
       "[Service]\nType=oneshot\nExecStart=\nExecStart=/usr/bin/nvidia-persistenced\nExecStart=/bin/true\n",
       {"LINT013@2:1", "LINT014@5:1"}, dropin},
      {"a wrapper script named after the daemon is something else", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/local/sbin/nvidia-persistenced-wrapper.sh\n", {"LINT014@3:1"}, dropin},
      {"near miss: a shell or env that runs the daemon", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/bin/sh -c 'exec /usr/bin/nvidia-persistenced --verbose'\n", {}, dropin},
      {"near miss: systemd's prefixes", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=-@/usr/bin/nvidia-persistenced nvidia-persistenced\n", {}, dropin},
      {"near miss: launchers that run the daemon", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/numactl --interleave=all /usr/bin/nvidia-persistenced --user x\n",
       {}, dropin},
      {"near miss: taskset with a CPU list", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/taskset -c 0 /usr/bin/nvidia-persistenced\n", {}, dropin},
      {"near miss: sudo -u and env settings", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/env LD_LIBRARY_PATH=/opt/nv /usr/bin/sudo -u root "
       "nvidia-persistenced\n",
       {}, dropin},
      {"near miss: a quoted program", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=\"/usr/bin/nvidia-persistenced\" --user nvidia-persistenced\n", {}, dropin},
      {"env running a wrapper named after the daemon", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/env /opt/nvidia-persistenced-wrapper.sh\n", {"LINT014@3:1"}, dropin},
      {"sh -c running a wrapper given the daemon's user", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/bin/sh -c '/opt/wrap --user nvidia-persistenced'\n", {"LINT014@3:1"},
       dropin},
      {"near miss: a script whose last command runs the daemon", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/bin/sh -c 'modprobe nvidia && exec /usr/bin/nvidia-persistenced --user x'\n",
       {}, dropin},
      {"near miss: bash -lc, sh -ec", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/bin/bash -lc 'exec /usr/bin/nvidia-persistenced'\n", {}, dropin},
      {"near miss: a sleep first, a setting before exec", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/bin/sh -c 'sleep 5; FOO=1 exec /usr/bin/nvidia-persistenced'\n", {},
       dropin},
      {"near miss: launchers' option values", FileKind::unit,
       "[Service]\nExecStart=\nExecStart=/usr/bin/systemd-cat -t nvpd /usr/bin/timeout --signal KILL 30 "
       "/usr/bin/nvidia-persistenced\n",
       {}, dropin},
      {"near miss: a helper unit that restarts the daemon", FileKind::unit,
       "[Service]\nType=oneshot\nExecStart=/usr/bin/systemctl restart nvidia-persistenced.service\n", {},
       "/etc/systemd/system/nv-kick.service"},
      // A unit named otherwise is judged when its ExecStart names the daemon, through a launcher too.
      {"a custom unit started through taskset", FileKind::unit,
       "[Service]\nType=simple\nRestart=no\nExecStart=/usr/bin/taskset -c 0 /usr/bin/nvidia-persistenced\n",
       {"LINT013@2:1", "LINT011@3:1"}, "/etc/systemd/system/gpu-persist.service"},
  });
}

TEST(Lint, messages_say_what_the_file_says) {
  auto message = [](const char* text, FileKind kind, const char* path, const lint::Variables* vars = nullptr) {
    auto found = lint::lint_text(text, lint::Source{path, kind, vars, false});
    return found.empty() ? std::string{} : found.front().message + " | " + found.front().fix;
  };
  // The setting as written, not a normalised spelling.
  EXPECT_NE(message("[Unit]\nStopWhenUnneeded=yes\n", FileKind::unit,
                    "/etc/systemd/system/nvidia-persistenced.service.d/x.conf")
                .find("StopWhenUnneeded=yes lets"),
            std::string::npos);
  // An image has no GPU and no persistence of its own.
  std::string image = message("RUN nvidia-smi -pm 1\n", FileKind::dockerfile, "Dockerfile");
  EXPECT_NE(image.find("in an image build"), std::string::npos) << image;
  EXPECT_NE(image.find("remove it from the image"), std::string::npos) << image;
  std::string start = message("FROM x\nENTRYPOINT [\"/bin/sh\", \"-c\", \"nvidia-smi -pm 1 && exec /entry.sh\"]\n",
                              FileKind::dockerfile, "Dockerfile");
  EXPECT_NE(start.find("at container start (ENTRYPOINT)"), std::string::npos) << start;
  std::string continued = message("RUN apt-get update && \\\n    nvidia-smi -pm 1\n", FileKind::dockerfile, "Dockerfile");
  EXPECT_NE(continued.find("in an image build"), std::string::npos) << continued;
  // A value found as an expression is not "set nowhere".
  lint::Variables vars{{"gpu_pm", {"{{ 1 if legacy else 0 }}", "roles/x/defaults/main.yml:1"}}};
  std::string expression =
      message("- command: nvidia-smi -pm {{ gpu_pm }}\n", FileKind::yaml, "roles/x/tasks/main.yml", &vars);
  EXPECT_NE(expression.find("set only to what gpuwarm cannot evaluate (gpu_pm = {{ 1 if legacy else 0 }} at "
                            "roles/x/defaults/main.yml:1)"),
            std::string::npos)
      << expression;
  EXPECT_EQ(expression.find("set nowhere"), std::string::npos) << expression;
  lint::Variables none;
  std::string missing =
      message("- command: nvidia-smi -pm {{ gpu_pm }}\n", FileKind::yaml, "roles/x/tasks/main.yml", &none);
  EXPECT_NE(missing.find("group_vars, host_vars and -e are not read"), std::string::npos) << missing;
}

TEST(Lint, rule_ids_are_unique) {
  std::vector<std::string> ids;
  for (const auto& r : lint::rules()) {
    EXPECT_EQ(std::count(ids.begin(), ids.end(), r.id), 0) << r.id;
    ids.emplace_back(r.id);
  }
  EXPECT_EQ(ids.size(), 12u);
}

}  // namespace
}  // namespace gpuwarm::test

namespace gpuwarm::lint {
namespace {

// 80,000 offending lines took 57 s when each finding rescanned the file for its
// opt-out comment; linear, it is well under a second (ASan included, a few).
TEST(Lint, linear_in_findings) {
  std::string text;
  std::string with_opt_out;
  for (int i = 0; i < 80000; ++i) {
    text += "nvidia-smi -pm 1\n";
    with_opt_out += i % 2 == 0 ? "nvidia-smi -pm 1  # gpuwarm: ignore LINT001\n" : "nvidia-smi -pm 1\n";
  }
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(lint_text(text, FileKind::shell).size(), 80000u);
  auto opted = lint_text(with_opt_out, FileKind::shell);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(opted.size(), 40000u);
  EXPECT_EQ(opted.front().line, 2u);  // line 1 opts out
  // 40,000 heredocs, each with its own marker and none closed: finding their ends stays linear.
  std::string heredocs;
  for (int i = 0; i < 40000; ++i) {
    heredocs += "cat > /etc/rc.local <<M" + std::to_string(i) + "\nnvidia-smi -pm 1\n";
  }
  EXPECT_EQ(lint_text(heredocs, FileKind::shell).size(), 40000u);
  // 40,000 functions, unclosed, then 40,000 nested: bodies are matched in one pass, not one scan each.
  std::string unclosed = "nvidia-smi -pm 1\n";
  std::string nested = "nvidia-smi -pm 1\n";
  for (int i = 0; i < 40000; ++i) {
    unclosed += "f(){\n  \"$@\"\n";
    nested += "f(){ ";
  }
  nested += "\"$@\"" + std::string(40000, '}') + "\nf nvidia-smi -pm 1\n";
  EXPECT_EQ(lint_text(unclosed, FileKind::shell).size(), 1u);
  EXPECT_EQ(lint_text(nested, FileKind::shell).size(), 2u);  // the innermost f runs "$@": so does `f nvidia-smi`
  // Definitions with no body on one long line, and one statement of many "$@" and $VARs inside a body.
  std::string no_bodies = "nvidia-smi -pm 1\n";
  std::string long_statement = "nvidia-smi -pm 1\nf(){ x";
  for (int i = 0; i < 100000; ++i) {
    no_bodies += "f();";
    long_statement += " \"$@\" $a";
  }
  long_statement += "; }\n";
  EXPECT_EQ(lint_text(no_bodies, FileKind::shell).size(), 1u);
  std::string daemon_args = "x";  // 50,000 sites in one statement
  for (int i = 0; i < 50000; ++i) {
    daemon_args += " -c nvidia-persistenced";
  }
  EXPECT_EQ(lint_text(daemon_args + "\n", FileKind::shell).size(), 50000u);
  EXPECT_EQ(lint_text(long_statement, FileKind::shell).size(), 1u);
  // One long line of many unclosed "=(" in a string, quoted ")" inside an array, "$(", "${" and "{{": each
  // bracket's end and each quote are worked out once per line (one scan per bracket took minutes).
  std::string brackets = "nvidia-smi -pm 1\necho \"";
  std::string quoted_closers = "nvidia-smi -pm 1\ncmd=(\n\"";
  std::string expansions = "nvidia-smi -pm 1\n";
  for (int i = 0; i < 100000; ++i) {
    brackets += "x=(";
    quoted_closers += "))";
    expansions += "x $( ${ {{ ";
  }
  EXPECT_EQ(lint_text(brackets + "\n", FileKind::shell).size(), 1u);
  EXPECT_EQ(lint_text(quoted_closers + "\n)\n", FileKind::shell).size(), 1u);
  EXPECT_EQ(lint_text(expansions + "\n", FileKind::shell).size(), 1u);
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // A quadratic walk over 80,000 statements takes minutes; these bounds only catch that. Sanitizers slow
  // every access several times over (CI's ASan run on 2 shared cores took 12.5 s once).
#if defined(__SANITIZE_ADDRESS__)
  constexpr double k_bound_s = 40.0;
#else
  constexpr double k_bound_s = 10.0;
#endif
  EXPECT_LT(seconds, k_bound_s);
}

}  // namespace
}  // namespace gpuwarm::lint
