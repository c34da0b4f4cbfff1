// The text report's header says what was read, and never more: a module whose version files could not be read
// is not "not loaded".

#include <gtest/gtest.h>

#include <functional>

#include "output/diagnosis_output.h"
#include "output/style.h"
#include "rules/rule.h"
#include "snapshot_builder.h"

namespace gpuwarm::test {
namespace {

TEST(DiagnosisText, DriverLineSaysWhatWasRead) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> mutate;
    const char* expected;
  };
  const Case cases[] = {
      {"versions read", [](Snapshot&) {}, "kernel module 580.159.04 (open) · user space 580.159.04"},
      {"loaded, versions unread",
       [](Snapshot& s) {
         s.driver.kernel_version = Fact<std::string>::unknown("Permission denied");
         s.driver.sys_module_version = Fact<std::string>::unknown("Permission denied");
       },
       "kernel module version unknown (open)"},
      {"nothing of the module here, NVML answered",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.driver.kernel_version = s.driver.sys_module_version = Fact<std::string>::unknown("No such file");
       },
       "kernel module unknown (no /proc/driver/nvidia or /sys/module/nvidia here, yet NVML answered)"},
      {"not loaded, NVML failed",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.driver.kernel_version = s.driver.sys_module_version = Fact<std::string>::unknown("No such file");
         s.nvml.init_code = Fact<int>::known(9);
       },
       "kernel module not loaded"},
  };
  for (const auto& c : cases) {
    Snapshot s = healthy_snapshot();
    c.mutate(s);
    std::string text = render_diagnosis_text(s, diagnose(s), Style(false));
    EXPECT_NE(text.find(c.expected), std::string::npos) << c.name << "\n" << text;
  }
}

// The JSON carries each finding's tag, the words the check line adds (UNK009: what held NVML closed), so a
// machine reading `diagnose --json` learns what `check` prints.
TEST(DiagnosisJson, EachFindingCarriesItsCheckLineTag) {
  Snapshot s = healthy_snapshot();
  const std::string why = "`gpuwarm probe` or `watch --load` is timing the GPUs";
  s.nvml = NvmlFacts{};
  s.nvml.not_opened = why;
  s.nvml.not_opened_by = "timing";
  s.nvml.init_code = Fact<int>::unknown("NVML not opened: " + why);
  s.nvml.device_count = Fact<unsigned>::unknown("NVML not opened: " + why);
  auto json = render_diagnosis_json(s, diagnose(s));
  bool seen = false;
  for (const auto& f : json["findings"]) {
    ASSERT_TRUE(f.contains("tag")) << f.dump();
    if (f["rule_id"] == "UNK009") {
      EXPECT_EQ(f["tag"], "GPUs timed (probe, watch --load)");
      seen = true;
    }
  }
  EXPECT_TRUE(seen) << json["findings"].dump();
}

}  // namespace
}  // namespace gpuwarm::test
