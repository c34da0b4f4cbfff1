#include "rule_case.h"

namespace gpuwarm::test {
namespace {

TEST(Rules, PD001_daemon_binary_missing) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"not installed, not running",
       [](Snapshot& s) {
         s.daemon.binary = Fact<std::string>::unknown("not found");
         s.daemon.processes.clear();
       },
       {{k_node}}},
      {"not installed, processes not listed: not found where it is installed decides",
       [](Snapshot& s) {
         s.daemon.binary = Fact<std::string>::unknown("not found");
         s.daemon.processes.clear();
         s.daemon.processes_unread = "/proc: No such file or directory";
       },
       {{k_node}}},
      {"running from an unusual path counts as installed",
       [](Snapshot& s) { s.daemon.binary = Fact<std::string>::unknown("not found"); }, {}},
  };
  for (const auto& c : cases) expect_rule("PD001", c);
}

TEST(Rules, PD002_daemon_no_persistence_mode) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"running with the flag (Ubuntu default)",
       [](Snapshot& s) { s.daemon.processes[0].argv.push_back("--no-persistence-mode"); }, {{k_node}}},
      {"unit configured with the flag, not running",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.service.exec_start = Fact<std::vector<std::string>>::known(
             {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced", "--no-persistence-mode", "--verbose"});
       },
       {{k_node}}},
      {"--persistence-mode is fine",
       [](Snapshot& s) { s.daemon.processes[0].argv.push_back("--persistence-mode"); }, {}},
      {"a look-alike argument is not the flag",
       [](Snapshot& s) { s.daemon.processes[0].argv.push_back("--no-persistence-mode-x"); }, {}},
      // Arguments, ExecStart and open files all unread: cannot tell (never "fine").
      {"nothing tells whether it runs with the flag",
       [](Snapshot& s) {
         s.daemon.processes[0].argv.clear();
         s.daemon.processes[0].argv_missing = "cmdline not read within 1 s";
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root");
         s.service.reachable = false;
         s.service.exec_start = Fact<std::vector<std::string>>::unknown("no systemd");
       },
       {{k_node}}},
      {"arguments unread, the GPUs it holds read",
       [](Snapshot& s) {
         s.daemon.processes[0].argv.clear();
         s.daemon.processes[0].argv_missing = "cmdline not read within 1 s";
         s.service.reachable = false;
         s.service.exec_start = Fact<std::vector<std::string>>::unknown("no systemd");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PD002", c);
}

TEST(Rules, PD003_unit_stop_when_unneeded) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"StopWhenUnneeded=yes", [](Snapshot& s) { s.service.stop_when_unneeded = Fact<bool>::known(true); },
       {{k_node}}},
      {"unknown is not a finding",
       [](Snapshot& s) { s.service.stop_when_unneeded = Fact<bool>::unknown("no systemd"); }, {}},
  };
  for (const auto& c : cases) expect_rule("PD003", c);
}

TEST(Rules, PD006_unit_failed) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"failed", [](Snapshot& s) { s.service.active_state = Fact<std::string>::known("failed"); }, {{k_node}}},
      {"inactive is not failed", [](Snapshot& s) { s.service.active_state = Fact<std::string>::known("inactive"); },
       {}},
  };
  for (const auto& c : cases) expect_rule("PD006", c);
  // A daemon started outside systemd runs beside the failed unit: stop it first, not "restart the service".
  Snapshot s = healthy_snapshot();
  s.service.active_state = Fact<std::string>::known("failed");
  auto found = find_rule("PD006")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].next_step.rfind("A daemon started outside systemd runs (PD010): stop it first", 0), 0u)
      << found[0].next_step;
  s.daemon.processes.clear();
  found = find_rule("PD006")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].next_step.find("restart the service"), std::string::npos) << found[0].next_step;
}

// The daemon runs although its unit is inactive or failed: started outside systemd. Not healthy (nothing restarts
// it, the unit cannot start beside it), and what fix refuses for is said by diagnose too (review-s51-diagnose F1).
TEST(Rules, PD010_daemon_outside_unit) {
  auto unit = [](const char* active) {
    return [active](Snapshot& s) { s.service.active_state = Fact<std::string>::known(active); };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node: the unit's daemon", [](Snapshot&) {}, {}},
      {"unit inactive, daemon runs", unit("inactive"), {{k_node}}},
      {"unit failed, daemon runs", unit("failed"), {{k_node}}},
      {"unit activating", unit("activating"), {}},
      {"unit inactive, no daemon", [&unit](Snapshot& s) {
         unit("inactive")(s);
         s.daemon.processes.clear();
       }, {}},
      {"unit state unread", [](Snapshot& s) { s.service.active_state = Fact<std::string>::unknown("Access denied"); },
       {}},
      // Read a moment apart (a stop or restart between the two): a process in the unit's own cgroup is the unit's.
      {"unit inactive, the daemon in the unit's cgroup", [&unit](Snapshot& s) {
         unit("inactive")(s);
         s.daemon.processes[0].cgroup = Fact<std::string>::known("/system.slice/nvidia-persistenced.service");
       }, {}},
      {"unit inactive, the daemon in rc-local.service's cgroup", [&unit](Snapshot& s) {
         unit("inactive")(s);
         s.daemon.processes[0].cgroup = Fact<std::string>::known("/system.slice/rc-local.service");
       }, {{k_node}}},
      {"unit failed, the daemon in a user's manager, named like the unit", [&unit](Snapshot& s) {
         unit("failed")(s);
         s.daemon.processes[0].cgroup = Fact<std::string>::known(
             "/user.slice/user-1000.slice/user@1000.service/app.slice/nvidia-persistenced.service");
       }, {{k_node}}},
  };
  for (const auto& c : cases) expect_rule("PD010", c);
  Snapshot s = healthy_snapshot();
  unit("inactive")(s);
  auto found = find_rule("PD010")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].next_step.find("Stop that daemon (kill " + std::to_string(s.daemon.processes[0].pid) + ")"),
            std::string::npos)
      << found[0].next_step;
  // The verdict is action needed, as fix's refusal (exit 3) says, never healthy.
  EXPECT_EQ(diagnose(s).verdict.rule_id, "PD010");
}

TEST(Rules, PD008_unit_start_skipped) {
  auto skipped = [](const char* active, const char* result) {
    return [active, result](Snapshot& s) {
      s.service.active_state = Fact<std::string>::known(active);
      s.service.result = Fact<std::string>::known(result);
      s.service.drop_in_paths = Fact<std::vector<std::string>>::known(
          {"/etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf"});
    };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"skipped by the guard's ExecCondition", skipped("inactive", "exec-condition"), {{k_node}}},
      {"stopped after a good run", skipped("inactive", "success"), {}},
      {"active again since (the result is the last run's)", skipped("active", "exec-condition"), {}},
      {"failed is PD006's", skipped("failed", "exit-code"), {}},
      {"result unread", [](Snapshot& s) {
         s.service.active_state = Fact<std::string>::known("inactive");
         s.service.result = Fact<std::string>::unknown("Access denied");
       }, {}},
  };
  for (const auto& c : cases) expect_rule("PD008", c);
  Snapshot s = healthy_snapshot();
  skipped("inactive", "exec-condition")(s);
  auto found = find_rule("PD008")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].message.find("gpuwarm guard"), std::string::npos) << found[0].message;
  s.service.drop_in_paths = Fact<std::vector<std::string>>::known({});
  found = find_rule("PD008")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].message.find("gpuwarm guard"), std::string::npos) << found[0].message;
}

TEST(Rules, PD009_guard_ignored_by_a_systemd_without_exec_condition) {
  const char* guard = "/etc/systemd/system/nvidia-persistenced.service.d/40-gpuwarm-guard.conf";
  // The feature is asked for, not the version: RHEL/Rocky 8.3+ run a 239 with ExecCondition= backported.
  auto node = [guard](std::optional<bool> knows, const char* version, bool guarded = true) {
    return [knows, version, guarded, guard](Snapshot& s) {
      s.service.exec_condition = knows ? Fact<bool>::known(*knows) : Fact<bool>::unknown("Access denied");
      s.service.manager_version = Fact<std::string>::known(version);
      s.service.drop_in_paths = Fact<std::vector<std::string>>::known(
          guarded ? std::vector<std::string>{"/usr/lib/systemd/system/nvidia-persistenced.service.d/10.conf", guard}
                  : std::vector<std::string>{});
    };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"RHEL 8.2's 239: no ExecCondition", node(false, "239 (239-31.el8)"), {{k_node}}},
      {"Debian 10's 241", node(false, "241"), {{k_node}}},
      {"RHEL 8.10's 239 has it backported", node(true, "239 (239-82.el8_10.2)"), {}},
      {"Debian 12", node(true, "252.30-1~deb12u2"), {}},
      {"no guard installed", node(false, "239 (239-31.el8)", false), {}},
      {"unread is not judged", node(std::nullopt, "239 (239-31.el8)"), {}},
  };
  for (const auto& c : cases) expect_rule("PD009", c);
  Snapshot s = healthy_snapshot();
  node(false, "239 (239-31.el8)")(s);
  auto found = find_rule("PD009")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].evidence, (std::vector<std::string>{"the unit's Service interface has no ExecCondition property",
                                                          "systemd Version=239 (239-31.el8)",
                                                          std::string("drop-in ") + guard}));
  EXPECT_NE(found[0].message.find("This systemd (239 (239-31.el8)) does not know ExecCondition="), std::string::npos)
      << found[0].message;
}

TEST(Rules, PD007_unit_missing) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"binary without unit", [](Snapshot& s) { s.service.load_state = Fact<std::string>::known("not-found"); },
       {{k_node}}},
      // A unit systemd refused to load starts neither at boot nor by hand, whatever its enablement says.
      {"a unit systemd cannot load", [](Snapshot& s) { s.service.load_state = Fact<std::string>::known("bad-setting"); },
       {{k_node}}},
      {"a unit that failed to load", [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("error");
         s.service.unit_file_state = Fact<std::string>::unknown("Unit nvidia-persistenced.service failed to load");
       },
       {{k_node}}},
      {"no binary either: PD001's case",
       [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("not-found");
         s.daemon.binary = Fact<std::string>::unknown("not found");
       },
       {}},
      {"the GPU Operator's daemon: its driver pod starts it, no host unit",
       [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("not-found");
         s.daemon.binary = Fact<std::string>::known("/run/nvidia/driver/usr/bin/nvidia-persistenced");
       },
       {}},
      {"no systemd",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.load_state = Fact<std::string>::unknown("no systemd");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PD007", c);
}

TEST(Rules, PD004_daemon_not_enabled) {
  auto state = [](const char* v) { return [v](Snapshot& s) { s.service.unit_file_state = Fact<std::string>::known(v); }; };
  const std::vector<RuleCase> cases = {
      {"enabled", [](Snapshot&) {}, {}},
      {"disabled while running", state("disabled"), {{k_node}}},
      {"enabled-runtime does not survive a reboot", state("enabled-runtime"), {{k_node}}},
      // systemd reports a masked unit as LoadState=masked (a link to /dev/null), not loaded.
      {"masked", [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("masked");
         s.service.unit_file_state = Fact<std::string>::known("masked");
       },
       {{k_node}}},
      {"masked until reboot", [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("masked");
         s.service.unit_file_state = Fact<std::string>::known("masked-runtime");
       },
       {{k_node}}},
      {"masked, enablement unread", [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("masked");
         s.service.unit_file_state = Fact<std::string>::unknown("Access denied");
       },
       {{k_node}}},
      {"a loaded unit said to be masked", state("masked"), {{k_node}}},
      {"static, nothing wants it", [](Snapshot& s) {
         s.service.unit_file_state = Fact<std::string>::known("static");
         s.service.wanted_by = Fact<std::vector<std::string>>::known({});
       },
       {{k_node}}},
      {"static, a udev rule's device unit wants it (Ubuntu)", [](Snapshot& s) {
         s.service.unit_file_state = Fact<std::string>::known("static");
         s.service.wanted_by = Fact<std::vector<std::string>>::known({"sys-bus-pci-drivers-nvidia.device"});
       },
       {}},
      {"static, what wants it unread: cannot tell, never fine", [](Snapshot& s) {
         s.service.unit_file_state = Fact<std::string>::known("static");
         s.service.wanted_by = Fact<std::vector<std::string>>::unknown("Access denied");
       },
       {{k_node}}},
      {"generated (NixOS, generators)", state("generated"), {}},
      {"unit not loaded: PD007's case",
       [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("not-found");
         s.service.unit_file_state = Fact<std::string>::known("disabled");
       },
       {}},
      {"no systemd",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.unit_file_state = Fact<std::string>::unknown("no systemd");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PD004", c);
  Snapshot s = healthy_snapshot();
  s.service.load_state = Fact<std::string>::known("masked");
  s.service.unit_file_state = Fact<std::string>::known("masked-runtime");
  auto found = find_rule("PD004")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].message.find("runs now but its unit is masked (masked-runtime)"), std::string::npos)
      << found[0].message;
  EXPECT_NE(found[0].next_step.find("systemctl unmask --runtime nvidia-persistenced.service"), std::string::npos)
      << found[0].next_step;
  EXPECT_EQ(found[0].evidence, (std::vector<std::string>{"LoadState=masked", "UnitFileState=masked-runtime",
                                                          "ActiveState=active"}));
}

TEST(Rules, PD005_gpu_not_held) {
  const std::vector<RuleCase> cases = {
      {"holds both", [](Snapshot&) {}, {}},
      {"holds only GPU 0",
       [](Snapshot& s) { s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0}); }, {{1u}}},
      {"holds nothing",
       [](Snapshot& s) { s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({}); },
       {{0u}, {1u}}},
      {"fds unreadable without root: no guess",
       [](Snapshot& s) { s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root"); },
       {}},
      {"daemon not running: other rules speak", [](Snapshot& s) { s.daemon.processes.clear(); }, {}},
      // NVML's minor NOT_SUPPORTED: the kernel's entry for the same GPU names its device node.
      {"GPU minor from the kernel's list",
       [](Snapshot& s) {
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
         s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
       },
       {{1u}}},
      {"GPU minor from the kernel's list, matched by bus ID",
       [](Snapshot& s) {
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
         s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
         s.nvml.gpus[1].uuid = Fact<std::string>::unknown("NOT_SUPPORTED");
         s.nvml.gpus[1].pci_bus_id = Fact<std::string>::known("00000000:07:00.0");
       },
       {{1u}}},
      {"GPU minor from the kernel's list, held", [](Snapshot& s) {
         s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
       },
       {}},
      // Neither names it: whether the daemon holds it cannot be told (never "held").
      {"GPU minor unread anywhere",
       [](Snapshot& s) {
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
         s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
         s.driver.kernel_gpus[1].minor = Fact<unsigned>::unknown("no information file");
       },
       {{1u}}},
  };
  for (const auto& c : cases) expect_rule("PD005", c);
  Snapshot s = healthy_snapshot();
  s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
  s.driver.kernel_gpus[1].minor = Fact<unsigned>::unknown("no information file");
  const Diagnosis d = diagnose(s);
  EXPECT_EQ(d.verdict.route, Route::unknown) << d.verdict.rule_id;
  EXPECT_EQ(d.verdict.rule_id, "PD005");
}

}  // namespace
}  // namespace gpuwarm::test
