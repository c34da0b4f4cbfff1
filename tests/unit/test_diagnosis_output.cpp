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

}  // namespace
}  // namespace gpuwarm::test
