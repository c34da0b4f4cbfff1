// The verdict: the first routed finding in runbook order decides, notes never do.

#include <set>

#include "rule_case.h"

namespace gpuwarm::test {
namespace {

struct VerdictCase {
  std::string name;
  std::function<void(Snapshot&)> mutate;
  std::string code;
  std::string rule_id;
  ExitCode exit_code;
};

TEST(Verdict, RunbookOrder) {
  const std::vector<VerdictCase> cases = {
      {"healthy", [](Snapshot&) {}, "healthy", "OK000", ExitCode::healthy},
      {"healthy without systemd is still healthy (note only)",
       [](Snapshot& s) { s.service.reachable = false; }, "healthy", "OK000", ExitCode::healthy},
      {"no driver",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.nvml.init_code = Fact<int>::known(9);  // DRIVER_NOT_LOADED
       },
       "driver-install", "DRV001",
       ExitCode::routed_elsewhere},
      {"mismatch beats persistence off",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::known(18);
         s.nvml.gpus[0].persistence = Fact<bool>::known(false);
       },
       "reboot-pending", "DRV003", ExitCode::reboot_pending},
      {"daemon binary missing beats thermal",
       [](Snapshot& s) {
         s.daemon.binary = Fact<std::string>::unknown("not found");
         s.daemon.processes.clear();
         s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x20);
       },
       "driver-install", "PD001", ExitCode::routed_elsewhere},
      {"thermal beats persistence off",
       [](Snapshot& s) {
         s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x40);
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
       },
       "ras", "CLK001", ExitCode::routed_elsewhere},
      {"pinned clocks", [](Snapshot& s) { s.nvml.gpus[0].app_clocks.sm = Fact<unsigned>::known(1000); },
       "pinned-clocks", "CLK002", ExitCode::routed_elsewhere},
      {"persistence off",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
       },
       "action-needed", "PM001", ExitCode::action_needed},
      {"persistence unread is never healthy",
       [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::unknown("UNKNOWN"); }, "cannot-tell", "UNK004",
       ExitCode::cannot_tell},
      {"count unread while the kernel lists GPUs",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::unknown("UNKNOWN");
         s.nvml.gpus.clear();
       },
       "cannot-tell", "UNK002", ExitCode::cannot_tell},
      {"init GPU_IS_LOST is RAS, not a driver install", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(15); },
       "ras", "GPU001", ExitCode::routed_elsewhere},
      {"init NO_PERMISSION is cannot tell, not a driver install",
       [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(4); }, "cannot-tell", "UNK001", ExitCode::cannot_tell},
      {"hung NVML",
       [](Snapshot& s) {
         s.nvml = NvmlFacts{};
         s.nvml.timed_out_at = "nvmlInit";
         s.nvml.init_code = Fact<int>::unknown("NVML did not answer in 2 s");
         s.nvml.device_count = Fact<unsigned>::unknown("NVML did not answer in 2 s");
       },
       "cannot-tell", "NVML001", ExitCode::cannot_tell},
      {"NVML left closed during a probe: cannot tell, not a missing library",
       [](Snapshot& s) {
         s.nvml = NvmlFacts{};
         s.nvml.not_opened = "`gpuwarm probe` or `watch --load` is timing the GPUs";
         s.nvml.init_code = Fact<int>::unknown("NVML not opened");
         s.nvml.device_count = Fact<unsigned>::unknown("NVML not opened");
       },
       "cannot-tell", "UNK009", ExitCode::cannot_tell},
      {"NVML left closed for an untrusted --root: cannot tell, of its own", nvml_refused_for_untrusted_root,
       "cannot-tell", "UNK011", ExitCode::cannot_tell},
      {"seed case without NVML: reboot pending, not a reinstall",
       [](Snapshot& s) {
         s.nvml = NvmlFacts{};
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded");
         s.kernel_log.mismatches.push_back({"'nvidia-persiste' (pid 9)", "580.95.05", "580.159.04", true});
       },
       "reboot-pending", "DRV003", ExitCode::reboot_pending},
      {"NVML Disabled but the daemon holds it: the daemon's view wins",
       [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::known(false); }, "healthy", "OK000",
       ExitCode::healthy},
      {"laptop with persistence off: optional, no action",
       [](Snapshot& s) {
         s.host.chassis_type = Fact<unsigned>::known(10);
         s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
         s.daemon.processes.clear();
         s.service.active_state = Fact<std::string>::known("failed");
         for (auto& g : s.nvml.gpus) g.persistence = Fact<bool>::known(false);
       },
       "persistence-optional", "PM005", ExitCode::healthy},
      {"laptop whose daemon keeps it persistent: healthy",
       [](Snapshot& s) {
         s.host.chassis_type = Fact<unsigned>::known(10);
         s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
       },
       "healthy", "OK000", ExitCode::healthy},
      {"laptop with an unread fact: cannot tell, never optional",
       [](Snapshot& s) {
         s.host.chassis_type = Fact<unsigned>::known(10);
         s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         s.nvml.gpus[1].persistence = Fact<bool>::unknown("UNKNOWN");
       },
       "cannot-tell", "UNK004", ExitCode::cannot_tell},
      {"laptop whose NVML refuses access: cannot tell",
       [](Snapshot& s) {
         s.host.chassis_type = Fact<unsigned>::known(10);
         s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
         s.service.unit_file_state = Fact<std::string>::known("disabled");
         s.nvml.init_code = Fact<int>::known(4);
         s.nvml.gpus.clear();
       },
       "cannot-tell", "UNK001", ExitCode::cannot_tell},
      {"init NO_PERMISSION with user space read and agreeing, plus a stale client line: not a reboot",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::known(4);
         s.nvml.gpus.clear();
         s.kernel_log.mismatches.push_back({"'python3' (pid 7)", "535.104.05", "580.159.04", true});
       },
       "cannot-tell", "UNK001", ExitCode::cannot_tell},
      {"legacy flag (the H100)", [](Snapshot& s) { s.daemon.processes.clear(); }, "action-needed", "PM002",
       ExitCode::action_needed},
      {"not enabled at boot", [](Snapshot& s) { s.service.unit_file_state = Fact<std::string>::known("disabled"); },
       "action-needed", "PD004", ExitCode::action_needed},
      {"a static unit whose wanting units went unread: cannot tell whether it starts at boot",
       [](Snapshot& s) {
         s.service.unit_file_state = Fact<std::string>::known("static");
         s.service.wanted_by = Fact<std::vector<std::string>>::unknown("Access denied");
       },
       "cannot-tell", "PD004", ExitCode::cannot_tell},
      {"Ubuntu's static unit, wanted through the driver's udev rule: healthy",
       [](Snapshot& s) {
         s.service.unit_file_state = Fact<std::string>::known("static");
         s.service.wanted_by = Fact<std::vector<std::string>>::known({"sys-bus-pci-drivers-nvidia.device"});
       },
       "healthy", "OK000", ExitCode::healthy},
      {"processes hidden by hidepid: cannot tell, not the legacy flag",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.daemon.processes_unread = "/proc is mounted with hidepid=2 and gpuwarm runs as uid 1000";
       },
       "cannot-tell", "UNK006", ExitCode::cannot_tell},
  };
  for (const auto& c : cases) {
    Snapshot s = healthy_snapshot();
    c.mutate(s);
    Diagnosis d = diagnose(s);
    EXPECT_EQ(d.verdict.code, c.code) << c.name;
    EXPECT_EQ(d.verdict.rule_id, c.rule_id) << c.name;
    EXPECT_EQ(d.verdict.exit_code, c.exit_code) << c.name;
    EXPECT_FALSE(d.verdict.next_step.empty()) << c.name;
    ASSERT_FALSE(d.findings.empty()) << c.name;
  }
}

// "Held by nvidia-persistenced" only where the daemon's open files were read.
TEST(Verdict, HealthySaysHeldOnlyWhereItWasRead) {
  Snapshot s = healthy_snapshot();
  EXPECT_EQ(diagnose(s).findings.front().message, "2 GPU(s) persistent, held by nvidia-persistenced");
  s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root");
  Diagnosis d = diagnose(s);
  ASSERT_EQ(d.findings.front().rule_id, "OK000");
  EXPECT_EQ(d.findings.front().message,
            "2 GPU(s) persistent, nvidia-persistenced running (which GPUs it holds was not read: needs root)");
}

// The healthy verdict names what it rests on: each GPU's reading, the device nodes held, the daemon, the unit.
TEST(Verdict, HealthyNamesItsEvidence) {
  Snapshot s = healthy_snapshot();
  Diagnosis d = diagnose(s);
  ASSERT_EQ(d.findings.front().rule_id, "OK000");
  EXPECT_EQ(d.findings.front().evidence,
            (std::vector<std::string>{
                "GPU 0: nvmlDeviceGetPersistenceMode: Enabled, /dev/nvidia0 held by nvidia-persistenced",
                "GPU 1: nvmlDeviceGetPersistenceMode: Enabled, /dev/nvidia1 held by nvidia-persistenced",
                "pid 1234: /usr/bin/nvidia-persistenced --user nvidia-persistenced",
                "ActiveState=active UnitFileState=enabled"}));
}

// Healthy without systemd: persistence holds now, but the next step must not say the boot part was checked.
TEST(Verdict, HealthyWithoutSystemdSaysTheBootPartWasNotChecked) {
  Snapshot s = healthy_snapshot();
  EXPECT_EQ(diagnose(s).verdict.next_step, "Nothing to do.");
  s.service.reachable = false;
  s.service.unreachable = "--no-systemd: service manager not asked";
  Diagnosis d = diagnose(s);
  EXPECT_EQ(d.verdict.code, "healthy");
  EXPECT_NE(d.verdict.next_step.find("starts at boot was not checked (NOTE002)"), std::string::npos)
      << d.verdict.next_step;
}

TEST(Verdict, FindingsCarryTheirRuleMetadata) {
  Snapshot s = healthy_snapshot();
  s.nvml.gpus[1].persistence = Fact<bool>::known(false);
  s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
  s.service.reachable = false;
  Diagnosis d = diagnose(s);
  ASSERT_EQ(d.findings.size(), 3u);
  EXPECT_EQ(d.findings[0].rule_id, "PM001");
  EXPECT_EQ(d.findings[0].route, Route::fix);
  EXPECT_EQ(d.findings[0].gpu, std::optional<unsigned>(1));
  EXPECT_EQ(d.findings[1].rule_id, "PD005");
  EXPECT_EQ(d.findings[2].rule_id, "NOTE002");
  EXPECT_EQ(d.findings[2].route, Route::note);
}

TEST(Verdict, OptionalNodeDemotesTheRunbookToNotes) {
  Snapshot s = healthy_snapshot();
  s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
  s.host.chassis_type = Fact<unsigned>::known(9);
  s.daemon.processes.clear();
  s.service.active_state = Fact<std::string>::known("failed");
  for (auto& g : s.nvml.gpus) g.persistence = Fact<bool>::known(false);
  Diagnosis d = diagnose(s);
  EXPECT_EQ(d.verdict.code, "persistence-optional");
  for (const auto& f : d.findings) {
    EXPECT_NE(f.route, Route::fix) << f.rule_id;
    if (f.rule_id == "PD006") {
      EXPECT_NE(f.next_step.find("Optional here"), std::string::npos);
    }
  }
  EXPECT_NE(d.verdict.next_step.find("disabling it"), std::string::npos);
}

TEST(Registry, IdsAreUniqueAndEveryRuleIsFindable) {
  std::set<std::string> ids;
  std::set<std::string> names;
  for (const auto& r : rules()) {
    EXPECT_TRUE(ids.insert(r.id).second) << r.id;
    EXPECT_TRUE(names.insert(r.name).second) << r.name;
    EXPECT_EQ(find_rule(r.id), &r);
    // A healthy node triggers no rule.
    EXPECT_TRUE(r.check(healthy_snapshot()).empty()) << r.id;
  }
  EXPECT_EQ(find_rule("NOPE"), nullptr);
}

}  // namespace
}  // namespace gpuwarm::test
