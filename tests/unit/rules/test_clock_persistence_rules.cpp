#include "rule_case.h"

namespace gpuwarm::test {
namespace {

TEST(Rules, CLK001_thermal_power_events) {
  auto reasons = [](unsigned gpu, std::uint64_t mask) {
    return [gpu, mask](Snapshot& s) { s.nvml.gpus[gpu].event_reasons_active = Fact<std::uint64_t>::known(mask); };
  };
  const std::vector<RuleCase> cases = {
      {"idle", [](Snapshot&) {}, {}},
      {"no reasons at all", reasons(0, 0), {}},
      {"sync boost is benign", reasons(0, 0x10), {}},
      {"SW power cap on GPU 1", reasons(1, 0x4), {{1u}}},
      {"HW slowdown", reasons(0, 0x8), {{0u}}},
      {"SW thermal", reasons(0, 0x20), {{0u}}},
      {"HW thermal", reasons(1, 0x40), {{1u}}},
      {"power brake", reasons(0, 0x80), {{0u}}},
      {"idle plus thermal still fires", reasons(0, 0x21), {{0u}}},
      {"both GPUs",
       [](Snapshot& s) {
         s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x20);
         s.nvml.gpus[1].event_reasons_active = Fact<std::uint64_t>::known(0x4);
       },
       {{0u}, {1u}}},
      {"unknown reasons: no guess",
       [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::unknown("NOT_SUPPORTED"); }, {}},
  };
  for (const auto& c : cases) expect_rule("CLK001", c);
}

TEST(Rules, CLK002_app_clocks_pinned) {
  const std::vector<RuleCase> cases = {
      {"defaults", [](Snapshot&) {}, {}},
      {"SM pinned low on GPU 0", [](Snapshot& s) { s.nvml.gpus[0].app_clocks.sm = Fact<unsigned>::known(1410); },
       {{0u}}},
      {"memory pinned on GPU 1", [](Snapshot& s) { s.nvml.gpus[1].app_clocks.mem = Fact<unsigned>::known(1593); },
       {{1u}}},
      {"reason bit ApplicationsClocksSetting",
       [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x2); }, {{0u}}},
      {"app clocks not supported",
       [](Snapshot& s) {
         s.nvml.gpus[0].app_clocks.sm = Fact<unsigned>::unknown("NOT_SUPPORTED");
         s.nvml.gpus[0].default_app_clocks.sm = Fact<unsigned>::known(1980);
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("CLK002", c);
}

TEST(Rules, PM001_persistence_off) {
  const std::vector<RuleCase> cases = {
      {"all enabled", [](Snapshot&) {}, {}},
      {"GPU 1 off, the daemon does not hold it",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
       },
       {{1u}}},
      {"all off, no daemon",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         for (auto& g : s.nvml.gpus) g.persistence = Fact<bool>::known(false);
       },
       {{0u}, {1u}}},
      {"off, daemon's open files unreadable (not root): NVML's view stands",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root");
       },
       {{1u}}},
      {"off per NVML but the daemon holds it: PM004's",
       [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::known(false); }, {}},
      {"off per NVML, the daemon's handles read but this GPU's minor not: PD005's cannot tell",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
         s.driver.kernel_gpus.clear();
       },
       {}},
      {"unknown is not off",
       [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::unknown("NO_PERMISSION"); }, {}},
      {"unreachable GPU is GPU001's", [](Snapshot& s) { s.nvml.gpus[0] = lost_gpu(0, "GPU_IS_LOST"); }, {}},
  };
  for (const auto& c : cases) expect_rule("PM001", c);
  {
    // ... and the verdict is that cannot tell, not "start the daemon" while it runs (review-s51-diagnose F5).
    Snapshot s = healthy_snapshot();
    s.nvml.gpus[1].persistence = Fact<bool>::known(false);
    s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
    s.driver.kernel_gpus.clear();
    const Diagnosis d = diagnose(s);
    EXPECT_EQ(d.verdict.rule_id, "PD005");
    EXPECT_EQ(d.verdict.exit_code, ExitCode::cannot_tell);
  }
  // A masked unit starts neither with `enable --now` nor with fix: the next step says to unmask first.
  Snapshot s = healthy_snapshot();
  s.daemon.processes.clear();
  s.nvml.gpus[0].persistence = Fact<bool>::known(false);
  s.service.load_state = Fact<std::string>::known("masked");
  auto found = find_rule("PM001")->check(s);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].next_step.rfind("Its unit is masked (PD004): unmask it", 0), 0u) << found[0].next_step;
  EXPECT_EQ(found[0].next_step.find("enable --now"), std::string::npos) << found[0].next_step;
}

// A host known to run no systemd (fix answers 6 there): PM001 and PM002 say to start the daemon from its init
// system, not through systemd; unasked (--no-systemd) or unanswered, systemd may run, and the advice stays.
TEST(Rules, PM001_PM002_next_step_without_systemd) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> service;
    bool init_system;
  };
  const Case cases[] = {
      {"no systemd on this host",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.manager_booted = Fact<bool>::known(false);
       },
       true},
      {"not asked (--no-systemd)",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.not_asked = true;
         s.service.manager_booted = Fact<bool>::known(false);
       },
       false},
      {"booted with systemd, its bus silent",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.manager_booted = Fact<bool>::known(true);
       },
       false},
      {"reachable", [](Snapshot&) {}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    for (const char* rule : {"PM001", "PM002"}) {
      Snapshot s = healthy_snapshot();
      s.daemon.processes.clear();
      s.daemon.binary = Fact<std::string>::known("/usr/bin/nvidia-persistenced");
      if (std::string(rule) == "PM001") {
        s.nvml.gpus[0].persistence = Fact<bool>::known(false);
      }
      c.service(s);
      auto found = find_rule(rule)->check(s);
      ASSERT_EQ(found.size(), 1u) << rule;
      const std::string& next = found[0].next_step;
      EXPECT_EQ(next.find("from this node's init system at boot: `/usr/bin/nvidia-persistenced --user "
                          "nvidia-persistenced` (no systemd here") != std::string::npos,
                c.init_system)
          << rule << ": " << next;
      EXPECT_EQ(next.find("through systemd") != std::string::npos, !c.init_system) << rule << ": " << next;
      if (c.init_system) {
        // No such account: the command given must not name it (the daemon would refuse to start).
        s.daemon.user_exists = Fact<bool>::known(false);
        const std::string without = find_rule(rule)->check(s).at(0).next_step;
        EXPECT_NE(without.find("`/usr/bin/nvidia-persistenced` (no systemd here"), std::string::npos) << without;
      }
    }
  }
}

TEST(Rules, PM002_legacy_persistence) {
  const std::vector<RuleCase> cases = {
      {"daemon holds them", [](Snapshot&) {}, {}},
      {"H100 case: enabled, no daemon", [](Snapshot& s) { s.daemon.processes.clear(); }, {{k_node}}},
      {"the GPU Operator's daemon, in its driver container: running, not the legacy flag",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.daemon.binary = Fact<std::string>::known("/run/nvidia/driver/usr/bin/nvidia-persistenced");
         s.daemon.foreign.push_back({777, "another mount namespace (mnt:[4026532301], the host's mnt:[4026531841])"});
       },
       {}},
      {"a container's daemon on a host whose own binary is the distribution's: still the legacy flag",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.daemon.foreign.push_back({777, "another mount namespace (mnt:[4026532301], the host's mnt:[4026531841])"});
       },
       {{k_node}}},
      {"with the kernel's deprecation line",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.kernel_log.legacy_persistence_notice = true;
       },
       {{k_node}}},
      {"one enabled, one off, no daemon",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
       },
       {{k_node}}},
      {"enabled, processes not listed: not known not to run (UNK006)",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.daemon.processes_unread = "/proc: Permission denied";
       },
       {}},
      {"all off and no daemon: PM001's case",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         for (auto& g : s.nvml.gpus) g.persistence = Fact<bool>::known(false);
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PM002", c);
}

TEST(Rules, NOTE001_needs_root) {
  const std::vector<RuleCase> cases = {
      {"root saw everything", [](Snapshot&) {}, {}},
      {"kernel log skipped", [](Snapshot& s) { s.needs_root = {"kernel log (/dev/kmsg)"}; }, {{k_node}}},
      {"GPU answered NO_PERMISSION", [](Snapshot& s) { s.nvml.gpus[1] = lost_gpu(1, "NO_PERMISSION"); },
       {{k_node}}},
  };
  for (const auto& c : cases) expect_rule("NOTE001", c);
}

TEST(Rules, NOTE002_no_service_manager) {
  const std::vector<RuleCase> cases = {
      {"systemd answered", [](Snapshot&) {}, {}},
      {"no system bus",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.unreachable = "no system bus";
       },
       {{k_node}}},
      {"--no-systemd on a systemd host: not asked, still a note",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.not_asked = true;
         s.service.manager_booted = Fact<bool>::known(true);
         s.service.unreachable = "--no-systemd";
       },
       {{k_node}}},
      {"a systemd host whose bus did not answer is UNK008's",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.manager_booted = Fact<bool>::known(true);
         s.service.unreachable = "Connection refused";
       },
       {}},
      {"whether the host runs systemd is not recorded: UNK008's",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.manager_booted = Fact<bool>::unknown("not in this snapshot");
         s.service.unreachable = "Connection refused";
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("NOTE002", c);
}

// /dev/kmsg unread as root (a container without CAP_SYSLOG): said, not silent. Not root is NOTE001's, a log the
// caller named UNK007's.
TEST(Rules, NOTE003_kmsg_unread) {
  const std::vector<RuleCase> cases = {
      {"read", [](Snapshot&) {}, {}},
      {"refused to root",
       [](Snapshot& s) { s.kernel_log.source = Fact<std::string>::unknown("/dev/kmsg: Operation not permitted"); },
       {{k_node}}},
      {"not root: NOTE001's",
       [](Snapshot& s) { s.kernel_log.source = Fact<std::string>::unknown("needs root (/dev/kmsg: Permission denied)"); },
       {}},
      {"named with --kernel-log: UNK007's",
       [](Snapshot& s) {
         s.kernel_log.named = true;
         s.kernel_log.source = Fact<std::string>::unknown("/var/log/kern.log: No such file or directory");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("NOTE003", c);
}

}  // namespace
}  // namespace gpuwarm::test
