// lint_text is pure: per rule, realistic inputs — true positives, near misses,
// comments and quoting — with the rule IDs and positions expected.

#include <gtest/gtest.h>

#include <chrono>

#include "lint/lint.h"

namespace gpuwarm::test {
namespace {

using lint::FileKind;

struct LintCase {
  const char* name;
  FileKind kind;
  const char* text;
  std::vector<std::string> expected;  // "RULE@line:column"
};

std::vector<std::string> run(const LintCase& c) {
  std::vector<std::string> out;
  for (const auto& f : lint::lint_text(c.text, c.kind)) {
    out.push_back(f.rule + "@" + std::to_string(f.line) + ":" + std::to_string(f.column));
  }
  return out;
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
      {"disabling is not the legacy enable", FileKind::shell, "nvidia-smi -pm 0\n", {}},
      {"a query is not a setting", FileKind::shell, "nvidia-smi --query-gpu=persistence_mode --format=csv\n", {}},
      {"comment", FileKind::shell, "# nvidia-smi -pm 1\n  # also nvidia-smi -pm 1\n", {}},
      {"trailing comment", FileKind::shell, "nvidia-smi -q # then nvidia-smi -pm 1\n", {}},
      {"mentioned, not run", FileKind::shell, "echo \"run nvidia-smi -pm 1 yourself\"\n", {}},
      {"-pm on the next command", FileKind::shell, "nvidia-smi -q\n-pm 1\n", {}},
      {"hash inside quotes is not a comment", FileKind::shell, "nvidia-smi -i '#0' -pm 1\n", {"LINT001@1:1"}},
      {"opt-out", FileKind::shell, "nvidia-smi -pm 1  # gpuwarm: ignore LINT001\n", {}},
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

TEST(Lint, LINT002_no_persistence_mode) {
  const std::vector<LintCase> cases = {
      {"Ubuntu's ExecStart", FileKind::shell,
       "/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose\n", {"LINT002@1:57"}},
      {"the opposite flag", FileKind::shell, "nvidia-persistenced --persistence-mode\n", {}},
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
       "[Service]\nType=forking\nExecStart=/usr/bin/nvidia-persistenced\nRestart=no\n", {"LINT011@1:1"}},
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
  EXPECT_EQ(lint::kind_for("README", "hello"), FileKind::text);
}

TEST(Lint, rule_ids_are_unique) {
  std::vector<std::string> ids;
  for (const auto& r : lint::rules()) {
    EXPECT_EQ(std::count(ids.begin(), ids.end(), r.id), 0) << r.id;
    ids.emplace_back(r.id);
  }
  EXPECT_EQ(ids.size(), 6u);
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
  EXPECT_LT(seconds, 10.0);
}

}  // namespace
}  // namespace gpuwarm::lint
