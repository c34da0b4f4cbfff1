// NVML collection through the real loader, against the project's fake
// libnvidia-ml.so.1 (tests/fake_nvml) driven by scenario files.

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nvml/collect_nvml.h"
#include "nvml/nvml_library.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

class FakeNvml : public ::testing::Test {
 protected:
  NvmlFacts collect_with(const std::string& scenario, const char* library = FAKE_NVML_FULL,
                         nvml::Depth depth = nvml::Depth::full) {
    m_tree.write("scenario.json", scenario);
    ::setenv("FAKE_NVML_SCENARIO", m_tree.path("scenario.json").c_str(), 1);
    NvmlFacts facts = nvml::collect({library, "/", depth});
    ::unsetenv("FAKE_NVML_SCENARIO");
    return facts;
  }
  test::TempTree m_tree;
};

const char* k_one_gpu = R"({
  "nvml_version": "13.580.159.04",
  "gpus": [{
    "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-1111", "pci_bus_id": "00000000:06:00.0", "minor": 0,
    "persistence": 0, "pstate": 8,
    "clocks": {"sm": 345, "graphics": 345, "mem": 2619},
    "max_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
    "app_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
    "default_app_clocks": {"sm": 1980, "graphics": 1980, "mem": 2619},
    "event_reasons": 1, "supported_event_reasons": 511,
    "fields": {"269": 5, "270": 6, "271": 7, "74": 1, "78": 100},
    "temperature": 41, "power_mw": 70000, "power_limit_mw": 700000, "mig_mode": 0, "compute_processes": 2
  }]})";

TEST_F(FakeNvml, ReadsEveryFactThroughDlopen) {
  NvmlFacts f = collect_with(k_one_gpu);
  EXPECT_TRUE(f.init_code.is(0)) << f.init_error;
  EXPECT_NE(f.library_path->find("libnvidia-ml.so.580.159.04"), std::string::npos) << *f.library_path;
  EXPECT_TRUE(f.library_file_version.is("580.159.04"));
  EXPECT_TRUE(f.user_space_version.is("580.159.04"));
  EXPECT_TRUE(f.system_driver_version.is("580.159.04"));
  ASSERT_EQ(f.gpus.size(), 1u);
  const GpuFacts& g = f.gpus[0];
  EXPECT_TRUE(g.name.is("NVIDIA H100 80GB HBM3"));
  EXPECT_TRUE(g.pci_bus_id.is("00000000:06:00.0"));
  EXPECT_TRUE(g.persistence.is(false));
  EXPECT_TRUE(g.pstate.is(8));
  EXPECT_TRUE(g.clocks.sm.is(345));
  EXPECT_TRUE(g.max_clocks.sm.is(1980));
  EXPECT_TRUE(g.event_reasons_active.is(1));
  EXPECT_EQ(g.event_counter_ids, "269-271");
  ASSERT_TRUE(g.event_counters.has());
  EXPECT_EQ(g.event_counters->size(), 5u);  // 269-271 plus the stable IDs that answered
  EXPECT_TRUE(g.temperature_c.is(41));
  EXPECT_TRUE(g.compute_processes.is(2));
}

TEST_F(FakeNvml, FallsBackToOlderCounterIds) {
  NvmlFacts f = collect_with(R"({"gpus": [{"fields": {"251": 1, "252": 2, "253": 3, "75": 9}}]})");
  ASSERT_EQ(f.gpus.size(), 1u);
  EXPECT_EQ(f.gpus[0].event_counter_ids, "251-253");
  EXPECT_EQ(f.gpus[0].event_counters->size(), 4u);
}

TEST_F(FakeNvml, DecisionDepthSkipsThermalEvidenceUnlessNeeded) {
  NvmlFacts idle = collect_with(k_one_gpu, FAKE_NVML_FULL, nvml::Depth::decision);
  EXPECT_FALSE(idle.gpus[0].power_mw.has());
  EXPECT_FALSE(idle.gpus[0].max_clocks.sm.has());
  EXPECT_TRUE(idle.gpus[0].persistence.has());
  EXPECT_TRUE(idle.gpus[0].app_clocks.sm.has());

  NvmlFacts hot = collect_with(
      R"({"gpus": [{"event_reasons": 32, "temperature": 91, "power_mw": 1, "power_limit_mw": 2}]})",
      FAKE_NVML_FULL, nvml::Depth::decision);
  EXPECT_TRUE(hot.gpus[0].temperature_c.is(91));
  EXPECT_TRUE(hot.gpus[0].power_mw.is(1));
}

TEST_F(FakeNvml, ErrorCodesAreStatesNotFailures) {
  NvmlFacts f = collect_with(R"({
    "returns": {"nvmlDeviceGetPowerUsage": 3},
    "gpus": [{"persistence": 1, "returns": {"nvmlDeviceGetPersistenceMode": 4}},
             {"handle_return": 15}]})");
  ASSERT_EQ(f.gpus.size(), 2u);
  EXPECT_EQ(f.gpus[0].persistence.missing, "NO_PERMISSION");
  EXPECT_EQ(f.gpus[0].power_mw.missing, "NOT_SUPPORTED");
  EXPECT_EQ(f.gpus[1].handle_error, "GPU_IS_LOST");
}

TEST_F(FakeNvml, InitFailuresAreRecorded) {
  struct Case {
    int code;
    const char* name;
  };
  for (const Case c : {Case{18, "LIB_RM_VERSION_MISMATCH"}, Case{9, "DRIVER_NOT_LOADED"}, Case{4, "NO_PERMISSION"}}) {
    NvmlFacts f = collect_with(R"({"nvml_version": "12.570.133.07", "init": {"return": )" + std::to_string(c.code) +
                               "}}");
    EXPECT_TRUE(f.init_code.is(c.code));
    EXPECT_EQ(f.init_error, c.name);
    // The user-space version is read before init, so a mismatch still names it.
    EXPECT_TRUE(f.user_space_version.is("570.133.07"));
    EXPECT_FALSE(f.device_count.has());
    EXPECT_TRUE(f.gpus.empty());
  }
}

TEST_F(FakeNvml, SlowInitIsTimed) {
  NvmlFacts f = collect_with(R"({"init": {"delay_ms": 60}})");
  EXPECT_GE(f.init_ms, 55.0);
}

TEST_F(FakeNvml, BadScenarioGivesUnknownNotACrash) {
  NvmlFacts f = collect_with("{ this is not json");
  EXPECT_TRUE(f.init_code.is(999));
  NvmlFacts wrong_types = collect_with(R"({"gpus": [{"persistence": "yes"}]})");
  ASSERT_EQ(wrong_types.gpus.size(), 1u);
  EXPECT_EQ(wrong_types.gpus[0].persistence.missing, "UNKNOWN");
}

TEST_F(FakeNvml, LegacyLibraryUsesFallbackSymbols) {
  NvmlFacts f = collect_with(R"({"gpus": [{"persistence": 1, "event_reasons": 4, "app_clocks": {"sm": 1}}]})",
                             FAKE_NVML_LEGACY);
  EXPECT_TRUE(f.init_code.is(0)) << f.init_error;  // nvmlInit, not nvmlInit_v2
  EXPECT_TRUE(f.library_file_version.is("470.256.02"));
  EXPECT_EQ(f.nvml_version.missing, "not in this NVML");
  ASSERT_EQ(f.gpus.size(), 1u);  // nvmlDeviceGetCount, not _v2
  EXPECT_TRUE(f.gpus[0].event_reasons_active.is(4));  // ...ThrottleReasons
  EXPECT_EQ(f.gpus[0].app_clocks.sm.missing, "not in this NVML");
  EXPECT_EQ(f.gpus[0].event_counters.missing, "not in this NVML");
}

TEST(NvmlLibrary, MissingLibraryIsAnError) {
  auto lib = nvml::Library::open("/nonexistent/libnvidia-ml.so.1");
  ASSERT_FALSE(lib);
  EXPECT_NE(lib.error().message.find("/nonexistent/libnvidia-ml.so.1"), std::string::npos);
}

TEST(NvmlLibrary, VersionStrings) {
  EXPECT_EQ(nvml::version_from_library_name("/usr/lib/libnvidia-ml.so.580.159.04"), "580.159.04");
  EXPECT_EQ(nvml::version_from_library_name("libnvidia-ml.so.1"), "");
  EXPECT_EQ(nvml::version_from_library_name("/x/libnvidia-ml.so"), "");
  EXPECT_EQ(nvml::driver_version_from_nvml_version("13.580.159.04"), "580.159.04");
  EXPECT_EQ(nvml::driver_version_from_nvml_version("12.550.120"), "550.120");
  EXPECT_EQ(nvml::driver_version_from_nvml_version("580.159.04"), "580.159.04");
}

// The copies the loader could give a program asking by soname: the known driver folders and the cache's,
// inside the root, each once, named by the version of the file its link ends at.
TEST(NvmlLibrary, LoadableCopiesAreFoundWhereTheLoaderLooks) {
  test::TempTree tree;
  tree.mkdir("usr/lib/x86_64-linux-gnu");
  tree.write("usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.580.159.04", "");
  tree.symlink("libnvidia-cfg.so.580.159.04", "usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.1");
  tree.write("usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04", "");
  tree.symlink("libnvidia-ml.so.580.159.04", "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1");
  // Merged /usr: /lib64 is another name for a folder already seen.
  tree.symlink("usr/lib/x86_64-linux-gnu", "lib64");
  // A stale copy only the loader's cache names, and a cache entry whose file is gone.
  tree.mkdir("opt/old/lib");
  tree.write("opt/old/lib/libnvidia-cfg.so.575.57.08", "");
  tree.symlink("libnvidia-cfg.so.575.57.08", "opt/old/lib/libnvidia-cfg.so.1");
  tree.mkdir("etc");
  using namespace std::string_literals;
  tree.write("etc/ld.so.cache", "glibc-ld.so.cache1.1\0\x01\x02libnvidia-cfg.so.1\0/opt/old/lib/libnvidia-cfg.so.1\0"
                                "libnvidia-cfg.so.1\0/gone/libnvidia-cfg.so.1\0/opt/old/lib/libfoo.so.1\0"s);
  // A folder given by the caller (where --nvml was), outside the root: an unversioned copy.
  tree.mkdir("elsewhere");
  tree.write("elsewhere/libnvidia-ml.so.1", "");
  auto found = nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1", "libnvidia-ml.so.1"},
                                     {tree.path("elsewhere")});
  EXPECT_TRUE(found.looked);
  EXPECT_EQ(found.unread, "");
  std::vector<std::string> seen;
  for (const auto& c : found.copies) {
    seen.push_back(c.path + " " + c.version);
  }
  EXPECT_EQ(seen, (std::vector<std::string>{tree.path("elsewhere") + "/libnvidia-ml.so.1 ",
                                            "/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.1 580.159.04",
                                            "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1 580.159.04",
                                            "/opt/old/lib/libnvidia-cfg.so.1 575.57.08"}));
  // No cache at all is no gap (the loader then searches its default folders); a cache that is not a
  // regular file is.
  std::filesystem::remove(tree.path("etc/ld.so.cache"));
  EXPECT_EQ(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).unread, "");
  tree.mkdir("etc/ld.so.cache");
  EXPECT_NE(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).unread.find("the loader's cache: "),
            std::string::npos);
}

}  // namespace
}  // namespace gpuwarm
