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
      {"no driver", [](Snapshot& s) { s.driver.module_loaded = false; }, "driver-install", "DRV001",
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
      {"persistence off", [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::known(false); },
       "action-needed", "PM001", ExitCode::action_needed},
      {"legacy flag (the H100)", [](Snapshot& s) { s.daemon.processes.clear(); }, "action-needed", "PM002",
       ExitCode::action_needed},
      {"not enabled at boot", [](Snapshot& s) { s.service.unit_file_state = Fact<std::string>::known("disabled"); },
       "action-needed", "PD004", ExitCode::action_needed},
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

TEST(Verdict, FindingsCarryTheirRuleMetadata) {
  Snapshot s = healthy_snapshot();
  s.nvml.gpus[1].persistence = Fact<bool>::known(false);
  s.service.reachable = false;
  Diagnosis d = diagnose(s);
  ASSERT_EQ(d.findings.size(), 2u);
  EXPECT_EQ(d.findings[0].rule_id, "PM001");
  EXPECT_EQ(d.findings[0].route, Route::fix);
  EXPECT_EQ(d.findings[0].gpu, std::optional<unsigned>(1));
  EXPECT_EQ(d.findings[1].rule_id, "NOTE002");
  EXPECT_EQ(d.findings[1].route, Route::note);
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
