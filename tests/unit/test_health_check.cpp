// `gpuwarm check`'s decision: status and line from the same findings diagnose renders. Table-driven over
// the verdicts a scheduler meets, and the impact table kept in step with the rule registry.

#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "output/health_check.h"
#include "snapshot_builder.h"

namespace gpuwarm::test {
namespace {

struct HealthCase {
  const char* name;
  std::function<void(Snapshot&)> mutate;
  HealthStatus status;
  const char* line;
};

TEST(HealthCheck, StatusAndLine) {
  const HealthCase cases[] = {
      {"healthy", [](Snapshot&) {}, HealthStatus::ok, "OK 2 GPU(s) persistent, held by nvidia-persistenced"},
      {"persistence off on GPU 1",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
       },
       HealthStatus::problem, "PM001 persistence off: GPU 1"},
      {"thermal events do not drain, but do not hide persistence off either",
       [](Snapshot& s) {
         s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x40);
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
       },
       HealthStatus::problem, "PM001 persistence off: GPU 1"},
      {"power cap under load alone keeps the node",
       [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x4); },
       HealthStatus::ok, "OK CLK001 thermal power events: GPU 0"},
      {"pinned clocks keep the node", [](Snapshot& s) { s.nvml.gpus[0].app_clocks.sm = Fact<unsigned>::known(1000); },
       HealthStatus::ok, "OK CLK002 app clocks pinned: GPU 0"},
      {"reboot pending drains",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::known(18);
         s.nvml.gpus[0].persistence = Fact<bool>::known(false);
       },
       HealthStatus::problem, "DRV003 driver version mismatch"},
      {"no driver drains",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.nvml.init_code = Fact<int>::known(9);  // DRIVER_NOT_LOADED
       },
       HealthStatus::problem,
       "DRV001 driver not loaded"},
      {"legacy flag only: worth fixing, jobs unaffected",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.service.active_state = Fact<std::string>::known("inactive");
         s.service.sub_state = Fact<std::string>::known("dead");
       },
       HealthStatus::ok, "OK PM002 legacy persistence"},
      {"persistence unread is unknown, never ok",
       [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::unknown("UNKNOWN"); }, HealthStatus::unknown,
       "UNK004 gpu fact unread: GPU 0"},
      {"a definite problem outranks an unknown",
       [](Snapshot& s) {
         s.nvml.gpus[0].persistence = Fact<bool>::unknown("UNKNOWN");
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
       },
       HealthStatus::problem, "PM001 persistence off: GPU 1 (+1 more)"},
      {"a laptop GPU meant to power down is not a problem",
       [](Snapshot& s) {
         s.host.chassis_type = Fact<unsigned>::known(10);
         for (auto& kg : s.driver.kernel_gpus) {
           kg.runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
         }
         s.daemon.processes.clear();
         s.service.active_state = Fact<std::string>::known("inactive");
         for (auto& g : s.nvml.gpus) {
           g.persistence = Fact<bool>::known(false);
         }
       },
       HealthStatus::ok, "OK PM005 persistence optional"},
      // PD004 keeps the node when the unit is known not to start at boot; when that cannot be told, it is unknown.
      {"whether the unit starts at boot unread is unknown, never ok",
       [](Snapshot& s) {
         s.service.unit_file_state = Fact<std::string>::known("static");
         s.service.wanted_by = Fact<std::vector<std::string>>::unknown("Access denied");
       },
       HealthStatus::unknown, "PD004 daemon not enabled: boot start unread"},
      // A per-GPU cannot-tell names what was unread after the GPU, not just "not held".
      {"a GPU's device node unread anywhere is unknown, and says so",
       [](Snapshot& s) {
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
         s.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
         s.driver.kernel_gpus[1].minor = Fact<unsigned>::unknown("no information file");
       },
       HealthStatus::unknown, "PD005 gpu not held: GPU 1: minor unread"},
      // Not UNK009, which the Slurm and NHC helpers wait out as another gpuwarm command's: this one lasts.
      {"an untrusted --root as root is unknown of its own", nvml_refused_for_untrusted_root, HealthStatus::unknown,
       "UNK011 root not trusted: --trust-root not given"},
  };
  for (const HealthCase& c : cases) {
    Snapshot s = healthy_snapshot();
    c.mutate(s);
    HealthCheck h = health_check(diagnose(s));
    EXPECT_EQ(h.status, c.status) << c.name << ": " << h.line;
    EXPECT_EQ(h.line, c.line) << c.name;
  }
}

// --rules PM001 (node-problem-detector's GPUPersistenceOff): a GPU whose persistence could not be read
// because the GPU or the driver is gone answers unknown, never "not firing"; an unrelated drain does not count.
TEST(HealthCheck, SelectedRulesThatCouldNotBeJudgedAreUnknown) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> mutate;
    HealthStatus status;
    const char* rule;
  };
  const std::vector<Case> cases = {
      {"healthy", [](Snapshot&) {}, HealthStatus::ok, ""},
      {"persistence off on GPU 1, which the daemon does not hold",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
       },
       HealthStatus::problem, "PM001"},
      {"GPU 1 lost: its persistence unread",
       [](Snapshot& s) { s.nvml.gpus[1].handle_error = "GPU_IS_LOST"; }, HealthStatus::unknown, "GPU001"},
      {"no driver loaded",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.driver.kernel_gpus.clear();
         s.nvml.init_code = Fact<int>::known(9);
         s.nvml.device_count = Fact<unsigned>::unknown("DRIVER_NOT_LOADED");
         s.nvml.gpus.clear();
       },
       HealthStatus::unknown, "DRV001"},
      {"NVML refuses on a version mismatch: no GPU read",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::known(18);
         s.nvml.device_count = Fact<unsigned>::unknown("LIB_RM_VERSION_MISMATCH");
         s.nvml.gpus.clear();
       },
       HealthStatus::unknown, "DRV003"},
      {"user space newer than the module, yet every GPU read: PM001 judged",
       [](Snapshot& s) { s.nvml.user_space_version = Fact<std::string>::known("580.200.01"); }, HealthStatus::ok,
       ""},
      {"a GPU on the bus no driver took: its persistence unread",
       [](Snapshot& s) { s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({"0000:5e:00.0"}); },
       HealthStatus::unknown, "GPU001"},
      {"a GPU nouveau took: its persistence unread",
       [](Snapshot& s) {
         s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({{"0000:5e:00.0", "nouveau", "nouveau"}});
       },
       HealthStatus::unknown, "DRV005"},
      {"thermal events say nothing about persistence",
       [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x40); },
       HealthStatus::ok, ""},
  };
  for (const auto& c : cases) {
    Snapshot s = healthy_snapshot();
    c.mutate(s);
    HealthCheck h = health_check(diagnose(s), 200, {"PM001"}, every_gpu_read(s));
    EXPECT_EQ(h.status, c.status) << c.name << ": " << h.line;
    EXPECT_EQ(h.rule_id, c.rule) << c.name;
  }
}

TEST(HealthCheck, LineIsCutToTheLimit) {
  Snapshot s = healthy_snapshot();
  for (auto& g : s.nvml.gpus) {
    g.persistence = Fact<bool>::known(false);
  }
  s.daemon.processes.clear();
  HealthCheck h = health_check(diagnose(s), 20);
  EXPECT_EQ(h.status, HealthStatus::problem);
  EXPECT_EQ(h.line.size(), 20u);
  EXPECT_EQ(h.line.substr(17), "...");
  EXPECT_EQ(h.line.rfind("PM001 ", 0), 0u);
  EXPECT_EQ(fit_check_line("short", 80), "short");
  EXPECT_EQ(fit_check_line(std::string(100, 'x'), 1).size(), k_min_check_length);
  // Never half a UTF-8 character (each "\xc3\xa9" is one, of 2 bytes): the cut at byte 17 moves back to where
  // one begins.
  const std::string ten = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
  EXPECT_EQ(fit_check_line("x" + ten, 20), "x" + ten.substr(0, 16) + "...");
  EXPECT_EQ(fit_check_line("xx" + ten, 20), "xx" + ten.substr(0, 14) + "...");
}

TEST(HealthCheck, EveryRuleHasAnImpactAndEveryImpactARule) {
  std::set<std::string> registry;
  for (const auto& r : rules()) {
    registry.insert(r.id);
  }
  std::set<std::string> impacts;
  for (const auto& i : scheduler_impacts()) {
    EXPECT_TRUE(impacts.insert(i.rule_id).second) << i.rule_id << " twice";
    EXPECT_TRUE(registry.count(i.rule_id)) << i.rule_id << " is no rule";
    // A cannot-tell rule is unknown to a scheduler, never ok.
    const RuleInfo* info = find_rule(i.rule_id);
    if (info != nullptr && info->route == Route::unknown) {
      EXPECT_EQ(i.impact, SchedulerImpact::unknown) << i.rule_id;
    }
  }
  EXPECT_EQ(impacts, registry);
}

}  // namespace
}  // namespace gpuwarm::test
