// NVML collection through the real loader, against the project's fake
// libnvidia-ml.so.1 (tests/fake_nvml) driven by scenario files.

#include <algorithm>
#include <cstdint>
#include <utility>
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

// An /etc/ld.so.cache in glibc's format: entries (soname, path) whose strings may share tails, as ldconfig
// writes them since glibc 2.33; with `old_format_first`, behind the old format's header, as before 2.32.
std::string ld_cache(const std::vector<std::pair<std::string, std::string>>& entries, bool old_format_first = false) {
  std::string strings;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> offsets;
  const std::size_t header = 48 + entries.size() * 24;
  auto place = [&](const std::string& text) {
    // A string already there as the tail of another is not written again.
    if (const auto at = strings.find(text + '\0'); at != std::string::npos) {
      return static_cast<std::uint32_t>(header + at);
    }
    strings += text + '\0';
    return static_cast<std::uint32_t>(header + strings.size() - text.size() - 1);
  };
  // Longest first, so a shorter path can be found inside a longer one.
  std::vector<std::string> texts;
  for (const auto& [key, value] : entries) {
    texts.push_back(key);
    texts.push_back(value);
  }
  std::sort(texts.begin(), texts.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
  for (const auto& t : texts) {
    place(t);
  }
  for (const auto& [key, value] : entries) {
    offsets.emplace_back(place(key), place(value));
  }
  auto u32 = [](std::uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); };
  std::string table = "glibc-ld.so.cache1.1" + u32(static_cast<std::uint32_t>(entries.size())) +
                      u32(static_cast<std::uint32_t>(strings.size())) + std::string(20, '\0');
  for (const auto& [key, value] : offsets) {
    table += u32(0x0303) + u32(key) + u32(value) + u32(0) + std::string(8, '\0');
  }
  table += strings;
  if (!old_format_first) {
    return table;
  }
  std::string old = "ld.so-1.7.0" + std::string(1, '\0') + u32(1) + u32(1) + u32(0) + u32(0);  // 16 + 12 bytes
  old.resize((old.size() + 7) & ~std::size_t{7}, '\0');
  return old + table;
}

// LD_LIBRARY_PATH (a unit's Environment= reaches its ExecCondition= too), on the live root only: its folders
// are looked in, and an entry that depends on where the daemon runs is a gap.
TEST(NvmlLibrary, LdLibraryPathIsWhereTheLoaderLooksFirst) {
  test::TempTree tree;
  tree.mkdir("nv");
  tree.write("nv/libnvidia-cfg.so.575.57.08", "");
  tree.symlink("libnvidia-cfg.so.575.57.08", "nv/libnvidia-cfg.so.1");
  const char* before = std::getenv("LD_LIBRARY_PATH");
  const std::string saved = before != nullptr ? before : "";
  ::setenv("LD_LIBRARY_PATH", tree.path("nv").c_str(), 1);
  auto found = nvml::loadable_copies("/", {"libnvidia-cfg.so.1"}, {});
  EXPECT_TRUE(std::any_of(found.copies.begin(), found.copies.end(), [&](const LoadableCopy& c) {
    return c.path == tree.path("nv") + "/libnvidia-cfg.so.1" && c.version == "575.57.08";
  }));
  EXPECT_EQ(found.unread.find("LD_LIBRARY_PATH"), std::string::npos);
  ::setenv("LD_LIBRARY_PATH", ("/nowhere;" + tree.path("nv")).c_str(), 1);  // the loader splits on ';' too
  auto semicolon = nvml::loadable_copies("/", {"libnvidia-cfg.so.1"}, {});
  EXPECT_TRUE(std::any_of(semicolon.copies.begin(), semicolon.copies.end(),
                          [&](const LoadableCopy& c) { return c.path == tree.path("nv") + "/libnvidia-cfg.so.1"; }));
  ::setenv("LD_LIBRARY_PATH", (":" + tree.path("nv")).c_str(), 1);  // an empty entry: the working directory
  EXPECT_NE(nvml::loadable_copies("/", {"libnvidia-cfg.so.1"}, {}).unread.find("LD_LIBRARY_PATH holds \"\""),
            std::string::npos);
  // Under --root the caller's LD_LIBRARY_PATH is not the node's.
  EXPECT_TRUE(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).copies.empty());
  if (before != nullptr) {
    ::setenv("LD_LIBRARY_PATH", saved.c_str(), 1);
  } else {
    ::unsetenv("LD_LIBRARY_PATH");
  }
}

TEST(NvmlLibrary, TheLoadersCacheIsReadByItsEntries) {
  const std::vector<std::pair<std::string, std::string>> entries = {
      {"libnvidia-ml.so.1", "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1"},
      {"libnvidia-ml.so.1", "/lib/aarch64-linux-gnu/libnvidia-ml.so.1"},  // the tail of the one above
      {"libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"},
      {"libnvidia-cfg.so.1", "/usr/lib/aarch64-linux-gnu/glibc-hwcaps/x/libnvidia-cfg.so.580.159.04"}};
  for (bool old_format_first : {false, true}) {
    SCOPED_TRACE(old_format_first);
    const std::string cache = ld_cache(entries, old_format_first);
    auto paths = nvml::ld_cache_paths(cache, {"libnvidia-cfg.so.1", "libnvidia-ml.so.1"});
    ASSERT_TRUE(paths) << paths.error().message;
    EXPECT_EQ(*paths, (std::vector<std::string>{"/usr/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
                                                "/lib/aarch64-linux-gnu/libnvidia-ml.so.1",
                                                "/usr/lib/aarch64-linux-gnu/glibc-hwcaps/x/libnvidia-cfg.so.580.159.04"}));
    // Cut anywhere, it is refused, never read past its end.
    for (std::size_t cut : {std::size_t{10}, std::size_t{40}, cache.size() / 2, cache.size() - 1}) {
      EXPECT_FALSE(nvml::ld_cache_paths(cache.substr(0, cut), {"libnvidia-ml.so.1"})) << cut;
    }
  }
  EXPECT_FALSE(nvml::ld_cache_paths(std::string_view("libnvidia-ml.so.1\0/usr/lib/libnvidia-ml.so.1\0", 45),
                                    {"libnvidia-ml.so.1"}));
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
  tree.write("etc/ld.so.cache", ld_cache({{"libnvidia-cfg.so.1", "/opt/old/lib/libnvidia-cfg.so.1"},
                                          {"libnvidia-cfg.so.1", "/gone/libnvidia-cfg.so.1"},
                                          {"libfoo.so.1", "/opt/old/lib/libfoo.so.1"}}));
  // A folder given by the caller (where --nvml was), outside the root: an unversioned copy.
  tree.mkdir("elsewhere");
  tree.write("elsewhere/libnvidia-ml.so.1", "");
  auto found = nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1", "libnvidia-ml.so.1"}, {tree.path("elsewhere")});
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
  // A glibc-hwcaps subfolder of a folder the loader searches, which it tries first.
  tree.mkdir("usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3");
  tree.write("usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libnvidia-cfg.so.590.10.01", "");
  tree.symlink("libnvidia-cfg.so.590.10.01", "usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libnvidia-cfg.so.1");
  auto with_hwcaps = nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {});
  EXPECT_TRUE(std::any_of(with_hwcaps.copies.begin(), with_hwcaps.copies.end(), [](const LoadableCopy& c) {
    return c.path == "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libnvidia-cfg.so.1" && c.version == "590.10.01";
  }));
  // glibc before 2.37 (Debian 12, RHEL 9) also tries legacy subfolders, nested ("tls/haswell/x86_64"); a
  // link among them that loops ends within the depth the loader itself reaches.
  tree.mkdir("usr/lib64/tls/haswell/x86_64");
  tree.write("usr/lib64/tls/haswell/x86_64/libnvidia-cfg.so.570.1.2", "");
  tree.symlink("libnvidia-cfg.so.570.1.2", "usr/lib64/tls/haswell/x86_64/libnvidia-cfg.so.1");
  tree.symlink(".", "usr/lib64/tls/haswell/x86_64/tls");
  auto with_legacy = nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {});
  EXPECT_EQ(with_legacy.unread, "");
  EXPECT_TRUE(std::any_of(with_legacy.copies.begin(), with_legacy.copies.end(), [](const LoadableCopy& c) {
    return c.path == "/usr/lib64/tls/haswell/x86_64/libnvidia-cfg.so.1" && c.version == "570.1.2";
  }));
  std::filesystem::remove_all(tree.path("usr/lib64/tls"));
  // A driver library preloaded into every program is loaded before any search: a gap.
  tree.write("etc/ld.so.preload", "/opt/old/lib/libnvidia-cfg.so.1\n");
  EXPECT_NE(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).unread.find("ld.so.preload"),
            std::string::npos);
  std::filesystem::remove(tree.path("etc/ld.so.preload"));
  // No cache at all is no gap (the loader then searches its default folders); one not in glibc's format,
  // or not a regular file, is.
  std::filesystem::remove(tree.path("etc/ld.so.cache"));
  EXPECT_EQ(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).unread, "");
  tree.write("etc/ld.so.cache", std::string("libnvidia-cfg.so.1\0/opt/old/lib/libnvidia-cfg.so.1\0", 51));
  EXPECT_NE(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).unread.find("/etc/ld.so.cache: not a cache"),
            std::string::npos);
  std::filesystem::remove(tree.path("etc/ld.so.cache"));
  tree.mkdir("etc/ld.so.cache");
  EXPECT_NE(nvml::loadable_copies(tree.root(), {"libnvidia-cfg.so.1"}, {}).unread.find("/etc/ld.so.cache: "),
            std::string::npos);
}

}  // namespace
}  // namespace gpuwarm
