// Every NVML entry point gpuwarm calls x every NVML return code, through the
// fake library's forced returns and gpuwarm's real loader and collector: no
// crash, no hang, never "healthy" from an unread fact, and the verdict the
// return-code table (nvml/errors.h) says.

#include <cstdlib>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/deadline.h"
#include "nvml/collect_nvml.h"
#include "nvml/errors.h"
#include "rules/helpers.h"
#include "rules/rule.h"
#include "snapshot_builder.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

using nvml::Entry;

// Where a code is forced in the fake's scenario.
enum class Force { init, top_level, handle, gpu };

struct EntryPoint {
  const char* symbol;
  Force force;
  Entry entry;  // the strongest use gpuwarm makes of what it returns
};

constexpr EntryPoint k_entry_points[] = {
    {"nvmlInit_v2", Force::init, Entry::init},
    {"nvmlSystemGetNVMLVersion", Force::top_level, Entry::optional},
    {"nvmlSystemGetDriverVersion", Force::top_level, Entry::optional},
    {"nvmlSystemGetCudaDriverVersion_v2", Force::top_level, Entry::optional},
    {"nvmlDeviceGetCount_v2", Force::top_level, Entry::count},
    {"nvmlDeviceGetHandleByIndex_v2", Force::handle, Entry::handle},
    {"nvmlDeviceGetName", Force::gpu, Entry::optional},
    {"nvmlDeviceGetUUID", Force::gpu, Entry::optional},
    {"nvmlDeviceGetPciInfo_v3", Force::gpu, Entry::optional},
    {"nvmlDeviceGetMinorNumber", Force::gpu, Entry::conditional},
    {"nvmlDeviceGetPersistenceMode", Force::gpu, Entry::needed},
    {"nvmlDeviceGetPerformanceState", Force::gpu, Entry::optional},
    {"nvmlDeviceGetClockInfo", Force::gpu, Entry::optional},
    {"nvmlDeviceGetMaxClockInfo", Force::gpu, Entry::optional},
    {"nvmlDeviceGetApplicationsClock", Force::gpu, Entry::conditional},
    {"nvmlDeviceGetDefaultApplicationsClock", Force::gpu, Entry::conditional},
    {"nvmlDeviceGetCurrentClocksEventReasons", Force::gpu, Entry::conditional},
    {"nvmlDeviceGetSupportedClocksEventReasons", Force::gpu, Entry::optional},
    {"nvmlDeviceGetFieldValues", Force::gpu, Entry::optional},
    {"nvmlDeviceGetTemperature", Force::gpu, Entry::optional},
    {"nvmlDeviceGetPowerUsage", Force::gpu, Entry::optional},
    {"nvmlDeviceGetEnforcedPowerLimit", Force::gpu, Entry::optional},
    {"nvmlDeviceGetMigMode", Force::gpu, Entry::optional},
    {"nvmlDeviceGetComputeRunningProcesses_v3", Force::gpu, Entry::optional},
    {"nvmlDeviceGetDisplayActive", Force::gpu, Entry::optional},
};

std::string expected_verdict(Entry entry, nvml::Return code) {
  switch (nvml::effect(entry, nvml::meaning_of(code))) {
    case nvml::Effect::none: return "healthy";
    case nvml::Effect::driver_install: return "driver-install";
    case nvml::Effect::reboot: return "reboot-pending";
    case nvml::Effect::ras: return "ras";
    case nvml::Effect::cannot_tell: return "cannot-tell";
  }
  return "?";
}

nlohmann::json scenario_forcing(const EntryPoint& ep, nvml::Return code) {
  nlohmann::json gpu = {
      {"name", "NVIDIA H100 80GB HBM3"}, {"uuid", "GPU-0"}, {"pci_bus_id", "00000000:06:00.0"}, {"minor", 0},
      {"persistence", 1}, {"pstate", 0}, {"clocks", {{"sm", 1980}, {"graphics", 1980}, {"mem", 2619}}},
      {"max_clocks", {{"sm", 1980}, {"graphics", 1980}, {"mem", 2619}}},
      {"app_clocks", {{"sm", 1980}, {"graphics", 1980}, {"mem", 2619}}},
      {"default_app_clocks", {{"sm", 1980}, {"graphics", 1980}, {"mem", 2619}}}, {"event_reasons", 1},
      {"supported_event_reasons", 511}, {"fields", {{"269", 0}, {"75", 0}}}, {"temperature", 35},
      {"power_mw", 70000}, {"power_limit_mw", 700000}, {"mig_mode", 0}, {"compute_processes", 0},
      {"display_active", 0}};
  nlohmann::json s = {{"nvml_version", "13.580.159.04"}, {"driver_version", "580.159.04"}};
  switch (ep.force) {
    case Force::init: s["init"] = {{"return", code}}; break;
    case Force::top_level: s["returns"] = {{ep.symbol, code}}; break;
    case Force::handle: gpu["handle_return"] = code; break;
    case Force::gpu: gpu["returns"] = {{ep.symbol, code}}; break;
  }
  s["gpus"] = nlohmann::json::array({gpu});
  return s;
}

// Written from the issue, not from nvml/errors.cpp: which answers may leave a
// node healthy. A GPU fault never; an optional fact's failure always (it
// decides nothing); a conditional fact's "this GPU has no such thing"
// (NOT_SUPPORTED and its kin, a symbol the library lacks); nothing else.
bool may_be_healthy(Entry entry, nvml::Return code) {
  const std::set<nvml::Return> gpu_faults = {8, 10, 11, 14, 15, 16};
  const std::set<nvml::Return> absent = {3, 12, 13, 22, 24, 26, 30};
  if (code == 0) {
    return true;
  }
  if (gpu_faults.count(code) != 0) {
    return false;
  }
  if (entry == Entry::optional) {
    return true;
  }
  return entry == Entry::conditional && absent.count(code) != 0;
}

// The node around NVML: one GPU, daemon holding it under systemd, versions agree.
Snapshot one_gpu_node(NvmlFacts nvml) {
  Snapshot s = test::healthy_snapshot();
  s.driver.kernel_gpus.resize(1);
  s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
  s.nvml = std::move(nvml);
  return s;
}

TEST(NvmlCodes, EveryEntryPointTimesEveryCode) {
  test::TempTree tree;
  std::vector<nvml::Return> codes;
  for (const auto& info : nvml::return_table()) {
    codes.push_back(info.code);
  }
  codes.push_back(1234);  // undocumented: must be "other"
  std::size_t cells = 0;
  for (const auto& ep : k_entry_points) {
    for (nvml::Return code : codes) {
      tree.write("scenario.json", scenario_forcing(ep, code).dump());
      ::setenv("FAKE_NVML_SCENARIO", tree.path("scenario.json").c_str(), 1);
      auto result = run_with_deadline<NvmlFacts>(std::chrono::seconds(10), [](Progress&) {
        return nvml::collect({FAKE_NVML_FULL, "/", nvml::Depth::full, false, nullptr});
      });
      ::unsetenv("FAKE_NVML_SCENARIO");
      const std::string cell = std::string(ep.symbol) + " -> " + std::to_string(code);
      ASSERT_TRUE(result.value.has_value()) << cell << ": collect hung";
      Diagnosis d = diagnose(one_gpu_node(std::move(*result.value)));
      EXPECT_EQ(d.verdict.code, expected_verdict(ep.entry, code))
          << cell << " (" << nvml::to_string(nvml::meaning_of(code)) << " at " << nvml::to_string(ep.entry)
          << "): " << d.verdict.rule_id << " " << d.verdict.title;
      EXPECT_EQ(d.verdict.code == "healthy", may_be_healthy(ep.entry, code)) << cell << ": " << d.verdict.rule_id;
      EXPECT_FALSE(d.verdict.next_step.empty()) << cell;
      ++cells;
    }
  }
  EXPECT_EQ(cells, std::size(k_entry_points) * codes.size());
  std::cout << "[ cells    ] " << cells << " (" << std::size(k_entry_points) << " entry points x " << codes.size()
            << " codes)\n";
}

// The matrix covers every per-GPU query the rules classify, each with the
// entry class the rules give it.
TEST(NvmlCodes, MatrixMatchesTheQueriesRulesClassify) {
  std::map<std::string, Entry> strongest;
  GpuFacts unread;  // every fact missing, so every query is listed
  for (const auto& q : gpu_queries(unread)) {
    auto [it, fresh] = strongest.emplace(q.query, q.entry);
    if (!fresh && static_cast<int>(q.entry) < static_cast<int>(it->second)) {
      it->second = q.entry;  // Entry is ordered from needed-most to optional
    }
  }
  std::map<std::string, Entry> matrix;
  for (const auto& ep : k_entry_points) {
    if (ep.force == Force::gpu) {
      matrix.emplace(ep.symbol, ep.entry);
    }
  }
  EXPECT_EQ(matrix, strongest);
}

// Hand-checked meanings, independent of the table's own consistency.
TEST(NvmlCodes, MeaningsThatMatter) {
  using nvml::Effect;
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(15)), Effect::ras);             // GPU_IS_LOST
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(16)), Effect::ras);             // RESET_REQUIRED
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(28)), Effect::cannot_tell);     // GPU_NOT_FOUND: no GPUs
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(10)), Effect::ras);             // TIMEOUT
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(4)), Effect::cannot_tell);      // NO_PERMISSION
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(9)), Effect::driver_install);   // DRIVER_NOT_LOADED
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(18)), Effect::reboot);          // LIB_RM_VERSION_MISMATCH
  EXPECT_EQ(nvml::effect(Entry::init, nvml::meaning_of(12)), Effect::driver_install);  // LIBRARY_NOT_FOUND
  EXPECT_EQ(nvml::effect(Entry::needed, nvml::meaning_of(3)), Effect::cannot_tell);    // persistence NOT_SUPPORTED
  EXPECT_EQ(nvml::effect(Entry::conditional, nvml::meaning_of(3)), Effect::none);      // app clocks NOT_SUPPORTED
  EXPECT_EQ(nvml::effect(Entry::optional, nvml::meaning_of(999)), Effect::none);       // temperature UNKNOWN
  EXPECT_EQ(nvml::meaning_of(4242), nvml::Meaning::other);
  EXPECT_STREQ(nvml::return_name(15), "GPU_IS_LOST");
  EXPECT_EQ(nvml::return_name(4242), nullptr);
}

}  // namespace
}  // namespace gpuwarm
