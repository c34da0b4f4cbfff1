#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/json_strings.h"
#include "snapshot/snapshot_json.h"
#include "snapshot_builder.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

TEST(SnapshotJson, RoundTripKeepsFactsAndReasons) {
  Snapshot s = test::healthy_snapshot();
  s.nvml.gpus[1].persistence = Fact<bool>::unknown("NO_PERMISSION");
  s.kernel_log.mismatches.push_back({"'x' (pid 1)", "570.1", "570.2", false});
  nlohmann::json j = snapshot_to_json(s);
  EXPECT_EQ(j["nvml"]["gpus"][1]["persistence"]["missing"], "NO_PERMISSION");
  EXPECT_EQ(j["nvml"]["gpus"][0]["persistence"], true);

  auto back = snapshot_from_json(j);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(snapshot_to_json(*back), j);
  EXPECT_EQ(back->nvml.gpus[1].persistence.missing, "NO_PERMISSION");
}

// A key this gpuwarm writes that a snapshot lacks (an older gpuwarm's, or edited): a Fact reads as unknown, a
// plain field is listed in absent_keys (UNK010 then decides), unless it is informational; the list survives a
// round trip, so a re-saved snapshot does not launder it (review-s48-unknown F7, review-s49-diff D3).
TEST(SnapshotJson, KeysMissingFromASavedSnapshotAreNamedNotDefaulted) {
  const nlohmann::json whole = snapshot_to_json(test::healthy_snapshot());
  auto read = [](const nlohmann::json& j) {
    auto r = snapshot_from_json(j);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : Snapshot{};
  };
  EXPECT_EQ(read(whole).absent_keys, std::vector<std::string>{});

  struct Case {
    const char* name;
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> absent;
  };
  const std::vector<Case> cases = {
      {"an NVML hang's place", [](auto& j) { j["nvml"].erase("timed_out_at"); }, {"nvml.timed_out_at"}},
      {"a named kernel log", [](auto& j) { j["kernel_log"].erase("named"); }, {"kernel_log.named"}},
      {"a GPU's handle error", [](auto& j) { j["nvml"]["gpus"][1].erase("handle_error"); },
       {"nvml.gpus[].handle_error"}},
      {"a whole section", [](auto& j) { j.erase("host"); }, {"host"}},
      {"a timing is informational", [](auto& j) { j.erase("stage_ms"); j["nvml"].erase("load_ms"); }, {}},
      {"a Fact reads as unknown instead", [](auto& j) { j["nvml"]["gpus"][0].erase("persistence"); }, {}},
  };
  for (const auto& c : cases) {
    nlohmann::json j = whole;
    c.edit(j);
    const Snapshot s = read(j);
    EXPECT_EQ(s.absent_keys, c.absent) << c.name;
    // Written again and read back, the snapshot still says what it lacked.
    EXPECT_EQ(read(snapshot_to_json(s)).absent_keys, c.absent) << c.name;
  }
  nlohmann::json j = whole;
  j["nvml"]["gpus"][0].erase("persistence");
  const Snapshot s = read(j);
  EXPECT_FALSE(s.nvml.gpus[0].persistence.has());
  EXPECT_EQ(s.nvml.gpus[0].persistence.missing, k_not_in_snapshot);
  j = whole;
  j["daemon"].erase("processes_unread");
  EXPECT_EQ(read(j).daemon.processes_unread, k_not_in_snapshot);
}

TEST(SnapshotJson, AcceptsDiagnoseOutputWithEmbeddedSnapshot) {
  nlohmann::json wrapper = {{"verdict", {{"code", "healthy"}}}, {"snapshot", snapshot_to_json(test::healthy_snapshot())}};
  auto back = snapshot_from_json(wrapper);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->hostname, "node1");
}

TEST(SnapshotJson, ClearErrorsForBadInput) {
  struct Case {
    const char* name;
    nlohmann::json j;
    const char* expect;
  };
  const Case cases[] = {
      {"array", nlohmann::json::array(), "not a gpuwarm snapshot"},
      {"no schema", nlohmann::json{{"hostname", "x"}}, "no schema_version"},
      {"newer schema", nlohmann::json{{"schema_version", 99}}, "schema_version 99 is not supported"},
      {"wrong type", nlohmann::json{{"schema_version", 1}, {"nvml", {{"gpus", "notalist"}}}},
       "malformed snapshot: nvml: type must be array, but is string"},
      // The part is named, and nlohmann's "[json.exception.type_error.302]" id is left out.
      {"a GPU's field",
       nlohmann::json{{"schema_version", 1},
                      {"nvml", {{"gpus", nlohmann::json::array({nlohmann::json::object(), {{"persistence", "yes"}}})}}}},
       "malformed snapshot: nvml.gpus[1]: "},
      {"a null GPU", nlohmann::json{{"schema_version", 1}, {"nvml", {{"gpus", nlohmann::json::array({nullptr})}}}},
       "malformed snapshot: nvml.gpus[0]: "},
      {"the unit",
       nlohmann::json{{"schema_version", 1}, {"nvml", nlohmann::json::object()}, {"service", {{"reachable", "no"}}}},
       "malformed snapshot: service: type must be boolean, but is string"},
  };
  for (const auto& c : cases) {
    auto r = snapshot_from_json(c.j);
    ASSERT_FALSE(r) << c.name;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << c.name << ": " << r.error().message;
    EXPECT_EQ(r.error().message.find("json.exception"), std::string::npos) << c.name << ": " << r.error().message;
  }
}

TEST(SnapshotJson, LoadFileErrorsNameTheFile) {
  test::TempTree t;
  t.write("trunc.json", "{\"schema_version\": 1, \"nvml\": {");
  auto r = load_snapshot_file(t.path("trunc.json"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("trunc.json: not valid JSON"), std::string::npos) << r.error().message;

  auto missing = load_snapshot_file(t.path("absent.json"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("No such file"), std::string::npos);
}

TEST(SnapshotJson, RecordedH100ExampleLoads) {
  auto r = load_snapshot_file(GPUWARM_SOURCE_DIR "/examples/h100-legacy-flag.json");
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->nvml.gpus.size(), 1u);
  EXPECT_TRUE(r->nvml.gpus[0].persistence.is(true));
  EXPECT_TRUE(r->driver.kernel_version.is("580.159.04"));
  EXPECT_EQ(r->nvml.gpus[0].event_counter_ids, "269-271");
}

TEST(SnapshotJson, InvalidUtf8IsReplacedNotThrown) {
  nlohmann::json j = {{"s", std::string("bad \xff\xfe bytes")}};
  std::string out = dump_json(j);
  EXPECT_NE(out.find("bad"), std::string::npos);
}

}  // namespace
}  // namespace gpuwarm

namespace gpuwarm {
namespace {

// Found by the snapshot fuzzer: a float far too large for an int field was
// cast (undefined behaviour). Now it is a malformed snapshot.
TEST(SnapshotJson, OutOfRangeFloatsAreMalformedNotUndefined) {
  auto r = load_snapshot_file(std::string(GPUWARM_SOURCE_DIR) + "/tests/fuzz/regressions/snapshot-float-into-int.json");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("out of range"), std::string::npos) << r.error().message;
  for (double bad : {8.9e27, -1.5, 1e300}) {
    auto j = snapshot_to_json(Snapshot{});
    j["driver"]["kernel_gpus"] = nlohmann::json::array({{{"bus_id", "x"}, {"minor", bad}}});
    EXPECT_FALSE(snapshot_from_json(j)) << bad;
  }
  auto ok = snapshot_to_json(Snapshot{});
  ok["collect_ms"] = 12.5;
  EXPECT_TRUE(snapshot_from_json(ok));
}

// A saved report's strings, all of them, made terminal-safe as it is read; keys and numbers untouched, and a
// file nested a hundred thousand deep is no stack overflow.
TEST(SnapshotJson, EscapeStringsReachesEveryStringAndAnyDepth) {
  auto j = nlohmann::json::parse(R"({"name": "a\u001b[2Jb", "gpus": [{"uuid": "x\ny", "n": 3}], "k\u0007": true})");
  escape_strings(j);
  EXPECT_EQ(j["name"], "a\\x1b[2Jb");
  EXPECT_EQ(j["gpus"][0]["uuid"], "x\\x0ay");
  EXPECT_EQ(j["gpus"][0]["n"], 3);
  EXPECT_TRUE(j.contains("k\u0007"));  // keys are not shown as text

  const std::size_t depth = 100000;
  auto deep = nlohmann::json::parse(std::string(depth, '[') + R"("\u001b")" + std::string(depth, ']'), nullptr, false);
  ASSERT_FALSE(deep.is_discarded());
  escape_strings(deep);
  const nlohmann::json* inner = &deep;
  while (inner->is_array()) {
    inner = &inner->front();
  }
  EXPECT_EQ(*inner, "\\x1b");
}

}  // namespace
}  // namespace gpuwarm
