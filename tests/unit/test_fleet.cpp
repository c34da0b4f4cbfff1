// fleet/: report parsing (one case per report kind and per way a report is bad), document splitting,
// folding a node's reports, and the fleet tallies.

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fleet/fleet.h"

namespace gpuwarm::test {
namespace {

using fleet::NodeReport;

// simdjson reads past the end: keep parse_padding() bytes after every document.
Result<NodeReport> parse(const std::string& json) {
  static fleet::ReportParser parser;
  std::string padded = json + std::string(fleet::parse_padding(), '\0');
  return parser.parse(std::string_view(padded.data(), json.size()));
}

std::string diagnosis(const std::string& host, const std::string& verdict, const std::string& gpus,
                      const std::string& at = "2026-11-23T07:00:00Z") {
  return R"({"kind":"gpuwarm-diagnosis","schema_version":1,"hostname":")" + host + R"(","verdict":{"code":")" +
         verdict + R"("},"gpus":)" + gpus + R"(,"findings":[],"snapshot":{"collected_at":")" + at + R"("}})";
}

std::string fix(const std::string& host, const std::string& outcome, int exit_code, bool dry_run, int steps,
                const std::string& after = R"([{"persistence_after":"Enabled"}])",
                const std::string& at = "2026-11-23T08:00:00Z") {
  std::string step_list = "[";
  for (int i = 0; i < steps; ++i) {
    step_list += std::string(i ? "," : "") + R"({"kind":"start"})";
  }
  step_list += "]";
  return R"({"kind":"gpuwarm-fix","hostname":")" + host + R"(","taken_at":")" + at + R"(","outcome":")" + outcome +
         R"(","dry_run":)" + (dry_run ? "true" : "false") + R"(,"exit_code":)" + std::to_string(exit_code) +
         R"(,"verdict":"action-needed","steps":)" + step_list +
         R"(,"diagnosis":{"verdict":{"code":"action-needed"},"gpus":[{"persistence":"Disabled"},{"persistence":"Disabled"}]},"verify":{"gpus":)" +
         after + "}}";
}

const std::string k_two_enabled = R"([{"persistence":"Enabled"},{"persistence":"Enabled"}])";
const std::string k_one_off = R"([{"persistence":"Enabled"},{"persistence":"Disabled"}])";

TEST(FleetParse, diagnosis_counts_gpus_not_enabled) {
  auto r = parse(diagnosis("n1", "action-needed", R"([{"persistence":"Enabled"},{"persistence":"Disabled"},{"persistence":null}])"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, fleet::ReportKind::diagnosis);
  EXPECT_EQ(r->hostname, "n1");
  EXPECT_EQ(r->verdict, "action-needed");
  EXPECT_EQ(r->gpus, 3);
  EXPECT_EQ(r->gpus_not_enabled, 2);  // unreadable persistence is not Enabled either
  EXPECT_EQ(r->taken_at, "2026-11-23T07:00:00Z");
}

TEST(FleetParse, fix_outcomes) {
  struct Case {
    const char* name;
    std::string json;
    const char* outcome;
  };
  const std::vector<Case> cases = {
      {"acted and verified", fix("n", "act", 0, false, 5), "fixed"},
      {"nothing to do, verified", fix("n", "nothing-to-do", 0, false, 0), "nothing-to-do"},
      {"check mode with steps", fix("n", "act", 0, true, 5), "would-fix"},
      {"check mode, nothing planned", fix("n", "nothing-to-do", 0, true, 0), "nothing-to-do"},
      {"refused (routed elsewhere)", fix("n", "refused", 5, false, 0), "refused"},
      {"refused in check mode", fix("n", "refused", 4, true, 0), "refused"},
      {"no systemd", fix("n", "no-service-manager", 6, false, 0), "no-systemd"},
      {"a step failed", fix("n", "act", 1, false, 5), "failed"},
      {"verification failed", fix("n", "act", 8, false, 5), "verify-failed"},
      {"lock held", fix("n", "act", 7, false, 5), "locked"},
  };
  for (const auto& c : cases) {
    auto r = parse(c.json);
    ASSERT_TRUE(r) << c.name << ": " << r.error().message;
    EXPECT_EQ(r->kind, fleet::ReportKind::fix) << c.name;
    EXPECT_EQ(r->fix_outcome, c.outcome) << c.name;
  }
}

TEST(FleetParse, fix_gpu_state_comes_from_its_verification) {
  auto r = parse(fix("n", "act", 8, false, 5, R"([{"persistence_after":"Enabled"},{"persistence_after":"Disabled"}])"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->verdict, "action-needed");
  EXPECT_EQ(r->gpus, 2);
  EXPECT_EQ(r->gpus_not_enabled, 1);
  EXPECT_EQ(r->taken_at, "2026-11-23T08:00:00Z");
}

TEST(FleetParse, verify_and_probe) {
  auto v = parse(R"({"kind":"gpuwarm-verify","hostname":"n","taken_at":"t","passed":true,"checks":[],"gpus":[{"persistence_after":"Enabled"}]})");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->kind, fleet::ReportKind::verify);
  EXPECT_EQ(v->gpus_not_enabled, 0);
  EXPECT_TRUE(v->verdict.empty());

  auto p = parse(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"t","method":"isolated","gpus":[
      {"ok":true,"total_ms":40.5},{"ok":false,"total_ms":9999},{"ok":true,"total_ms":39.5}],
      "compare":[{"before_total_ms":2100.0,"after_total_ms":40.5},{"before_total_ms":null},{"before_total_ms":2300.0}]})");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->cold_after_ms, (std::vector<double>{40.5, 39.5}));  // failed probes carry no timing
  EXPECT_EQ(p->cold_before_ms, (std::vector<double>{2100.0, 2300.0}));
  EXPECT_FALSE(p->per_gpu_parallel);
}

// Per-GPU figures are a GPU's cold start only when taken one GPU at a time; a baseline probe --compare found
// not comparable (another method) gives no "before".
TEST(FleetParse, contended_or_incomparable_per_gpu_figures_are_left_out) {
  auto parallel = parse(R"({"kind":"gpuwarm-probe","hostname":"n","method":"parallel","gpus":[
      {"ok":true,"total_ms":671},{"ok":true,"total_ms":650}],"compare":[{"before_total_ms":357,"comparable":true}]})");
  ASSERT_TRUE(parallel);
  EXPECT_TRUE(parallel->cold_after_ms.empty());
  EXPECT_TRUE(parallel->cold_before_ms.empty());
  EXPECT_TRUE(parallel->per_gpu_parallel);
  // Schema 1: "sequential" named the isolated method; without it the default was parallel.
  EXPECT_FALSE(parse(R"({"kind":"gpuwarm-probe","hostname":"n","sequential":true,"gpus":[{"ok":true,"total_ms":4}]})")
                   ->per_gpu_parallel);
  EXPECT_TRUE(parse(R"({"kind":"gpuwarm-probe","hostname":"n","gpus":[{"ok":true,"total_ms":4},{"ok":true,"total_ms":5}]})")
                  ->per_gpu_parallel);
  // One GPU probed "in parallel" contended with nothing: its figure counts.
  auto one = parse(R"({"kind":"gpuwarm-probe","hostname":"n","method":"parallel","gpus":[{"ok":true,"total_ms":300}]})");
  ASSERT_TRUE(one);
  EXPECT_FALSE(one->per_gpu_parallel);
  EXPECT_EQ(one->cold_after_ms, (std::vector<double>{300.0}));
  auto against_parallel = parse(R"({"kind":"gpuwarm-probe","hostname":"n","method":"isolated","gpus":[
      {"ok":true,"total_ms":402}],"compare":[{"before_total_ms":2514,"comparable":false}]})");
  ASSERT_TRUE(against_parallel);
  EXPECT_EQ(against_parallel->cold_after_ms, (std::vector<double>{402.0}));
  EXPECT_TRUE(against_parallel->cold_before_ms.empty());
}


TEST(FleetParse, probe_job_starts) {
  // Successful job starts only; an unknown method (a newer writer) is skipped, not an error.
  auto p = parse(R"({"kind":"gpuwarm-probe","hostname":"n","gpus":[],"jobs":[
      {"method":"one-process","ready_ms":812.5},{"method":"process-per-gpu","ready_ms":null},
      {"method":"mps","ready_ms":5}],
      "compare_jobs":[{"method":"one-process","before_ready_ms":6100},{"method":"process-per-gpu","before_ready_ms":3200}]})");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->job_after_ms.one_process, 812.5);
  EXPECT_FALSE(p->job_after_ms.process_per_gpu);
  EXPECT_EQ(p->job_before_ms.one_process, 6100.0);
  EXPECT_EQ(p->job_before_ms.process_per_gpu, 3200.0);
  // A schema 1 probe report has no job starts.
  auto old = parse(R"({"kind":"gpuwarm-probe","hostname":"n","gpus":[{"ok":true,"total_ms":40}]})");
  ASSERT_TRUE(old);
  EXPECT_FALSE(old->job_after_ms.one_process);
}

TEST(FleetParse, the_h100_check_mode_fix_report) {
  // Recorded by the Ansible role in check mode on an H100 with no systemd (examples/).
  std::ifstream in(std::string(GPUWARM_SOURCE_DIR) + "/examples/h100-fix-check-mode.json");
  ASSERT_TRUE(in) << "examples/h100-fix-check-mode.json";
  std::stringstream text;
  text << in.rdbuf();
  auto r = parse(text.str());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->hostname, "h100");  // the inventory name, not the VM's own "vm"
  EXPECT_EQ(r->fix_outcome, "no-systemd");
  EXPECT_EQ(r->verdict, "action-needed");
  EXPECT_EQ(r->gpus, 1);
  EXPECT_EQ(r->gpus_not_enabled, 0);  // the legacy flag keeps it Enabled
}

TEST(FleetParse, node_name_wins_over_hostname) {
  // Nodes reached over a local connection (or sharing an image) may all call themselves the same.
  auto r = parse(R"({"kind":"gpuwarm-diagnosis","hostname":"vm","node":"gpu-17","verdict":{"code":"healthy"},"gpus":[]})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->hostname, "gpu-17");
}

TEST(FleetParse, reports_without_kind_are_told_apart_by_their_keys) {
  auto d = parse(R"({"hostname":"n","verdict":{"code":"healthy"},"findings":[],"gpus":[]})");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->kind, fleet::ReportKind::diagnosis);
  auto f = parse(R"({"hostname":"n","outcome":"nothing-to-do","steps":[],"exit_code":0,"dry_run":false})");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->kind, fleet::ReportKind::fix);
}

TEST(FleetParse, bad_reports_say_why) {
  struct Case {
    const char* name;
    std::string json;
    const char* error_contains;
  };
  const std::string good = diagnosis("n", "healthy", k_two_enabled);
  const std::vector<Case> cases = {
      {"truncated", good.substr(0, good.size() / 2), "not valid JSON"},
      {"cut before the last brace", good.substr(0, good.size() - 1), "not valid JSON"},
      {"empty", "", "not valid JSON"},
      {"array", "[1,2]", "not a JSON object"},
      {"some other JSON", R"({"a":1})", "not a gpuwarm report"},
      {"no hostname", R"({"kind":"gpuwarm-diagnosis","verdict":{"code":"healthy"},"gpus":[]})", "no hostname"},
      {"diagnosis without a verdict code", R"({"kind":"gpuwarm-diagnosis","hostname":"n","verdict":{}})",
       "without verdict.code"},
      {"probe without gpus", R"({"kind":"gpuwarm-probe","hostname":"n"})", "without gpus"},
      // A kind gpuwarm does not write may be a node's report this version fails to read: never skipped.
      {"a newer writer's kind", R"({"kind":"gpuwarm-future","hostname":"n"})",
       "a report of kind \"gpuwarm-future\": fleet-summary reads"},
      {"a mistyped kind", R"({"kind":"gpuwarm-diagnosis-typo","hostname":"n2","verdict":{"code":"action-needed"}})",
       "a report of kind \"gpuwarm-diagnosis-typo\""},
      {"no gpuwarm output", R"({"apiVersion":"v1","kind":"Pod"})", "a report of kind \"Pod\""},
      {"a kind with control bytes", "{\"kind\":\"x\\u001b[2J\"}", "a report of kind \"x?[2J\""},
  };
  for (const auto& c : cases) {
    auto r = parse(c.json);
    ASSERT_FALSE(r) << c.name;
    EXPECT_NE(r.error().message.find(c.error_contains), std::string::npos) << c.name << ": " << r.error().message;
  }
}

// Valid gpuwarm output of another kind is no broken report: it is skipped, saying what to run instead.
TEST(FleetParse, other_gpuwarm_output_is_skipped_saying_what_it_is) {
  struct Case {
    const char* name;
    std::string json;
    const char* why_contains;
  };
  const std::vector<Case> cases = {
      {"a snapshot by its keys", R"({"hostname":"n","nvml":{},"driver":{}})", "a snapshot, not a report: make one with"},
      {"a snapshot", R"({"kind":"gpuwarm-snapshot","hostname":"n"})", "a snapshot, not a report"},
      {"a watch run (old kind)", R"({"kind":"watch","hostname":"n"})", "a `gpuwarm watch --json` run: fleet-summary reads"},
      {"a check answer", R"({"kind":"gpuwarm-check","hostname":"n","check":{}})", "a `gpuwarm check --json` answer"},
      {"an old check answer", R"({"kind":"gpuwarm-diagnosis","hostname":"n","check":{},"verdict":{"code":"healthy"}})",
       "a `gpuwarm check --json` answer"},
      {"a reset report", R"({"kind":"gpuwarm-reset","hostname":"n"})", "a `gpuwarm reset --json` report: fleet-summary"},
      {"a lint result, no hostname", R"({"kind":"gpuwarm-lint","findings":[]})", "a `gpuwarm lint --json` result"},
      {"a reload-modules report", R"({"kind":"gpuwarm-reload-modules","hostname":"n"})", "reload-modules --json"},
  };
  for (const auto& c : cases) {
    auto r = parse(c.json);
    ASSERT_TRUE(r) << c.name << ": " << r.error().message;
    EXPECT_EQ(r->kind, fleet::ReportKind::other) << c.name;
    EXPECT_NE(r->skipped_why.find(c.why_contains), std::string::npos) << c.name << ": " << r->skipped_why;
  }
}

TEST(FleetSplit, pretty_reports_and_json_lines) {
  struct Case {
    const char* name;
    std::string text;
    std::vector<std::string> docs;
    std::vector<std::size_t> lines;
  };
  const std::vector<Case> cases = {
      {"one pretty report", "{\n  \"a\": {\n    \"b\": 1\n  }\n}\n", {"{\n  \"a\": {\n    \"b\": 1\n  }\n}\n"}, {1}},
      {"two pretty reports", "{\n  \"a\": 1\n}\n{\n  \"b\": 2\n}\n", {"{\n  \"a\": 1\n}\n", "{\n  \"b\": 2\n}\n"}, {1, 4}},
      {"JSON lines with a blank line", "{\"a\":1}\n\n{\"b\":2}\n", {"{\"a\":1}\n\n", "{\"b\":2}\n"}, {1, 3}},
      {"leading blank lines", "\n\n{\"a\":1}", {"{\"a\":1}"}, {3}},
      {"text before the first report", "warning: x\n{\"a\":1}\n", {"warning: x\n", "{\"a\":1}\n"}, {1, 2}},
      {"a brace inside a string does not split", "{\"a\":\"x\\n{\"}\n", {"{\"a\":\"x\\n{\"}\n"}, {1}},
      {"nothing but blanks", " \n\t\n", {}, {}},
  };
  for (const auto& c : cases) {
    auto spans = fleet::split_documents(c.text);
    ASSERT_EQ(spans.size(), c.docs.size()) << c.name;
    for (std::size_t i = 0; i < spans.size(); ++i) {
      EXPECT_EQ(c.text.substr(spans[i].offset, spans[i].length), c.docs[i]) << c.name;
      EXPECT_EQ(spans[i].line, c.lines[i]) << c.name;
    }
  }
}

NodeReport report(const std::string& json) {
  auto r = parse(json);
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? *r : NodeReport{};
}

TEST(FleetSummary, newest_report_says_what_a_node_is_now) {
  // Given out of order: the fix (08:00) is newer than the diagnosis (07:00) it fixed.
  auto s = fleet::summarize({report(fix("n1", "act", 0, false, 5, R"([{"persistence_after":"Enabled"},{"persistence_after":"Enabled"}])")),
                             report(diagnosis("n1", "action-needed", k_one_off))},
                            {});
  ASSERT_EQ(s.nodes.size(), 1u);
  EXPECT_EQ(s.nodes[0].reports, 2);
  EXPECT_EQ(s.nodes[0].fix_outcome, "fixed");
  EXPECT_EQ(s.nodes[0].gpus_not_enabled, 0);
  EXPECT_FALSE(fleet::needs_attention(s.nodes[0]));
  EXPECT_EQ(fleet::exit_code(s), 0);

  // A diagnosis after the fix finds thermal trouble: the fix no longer describes the node.
  auto later = fleet::summarize({report(fix("n1", "act", 0, false, 5)),
                                 report(diagnosis("n1", "ras", k_two_enabled, "2026-11-23T09:00:00Z"))},
                                {});
  EXPECT_EQ(later.nodes[0].verdict, "ras");
  EXPECT_TRUE(fleet::needs_attention(later.nodes[0]));
  EXPECT_EQ(fleet::exit_code(later), 3);
}

std::string healthy_verdict(std::string fix_report) {
  const std::string from = R"("verdict":"action-needed")";
  return fix_report.replace(fix_report.find(from), from.size(), R"("verdict":"healthy")");
}

std::string optional_verdict(std::string fix_report) {
  const std::string from = R"("verdict":"action-needed")";
  return fix_report.replace(fix_report.find(from), from.size(), R"("verdict":"persistence-optional")");
}

std::string verify_report(const std::string& passed, const std::string& at) {
  return R"({"kind":"gpuwarm-verify","hostname":"n","taken_at":")" + at + R"(",)" + passed +
         R"("checks":[],"gpus":[{"persistence_after":"Enabled"}]})";
}

// A failed verification (or one whose result cannot be read) speaks for the node until a newer diagnosis.
TEST(FleetSummary, a_failed_verification_needs_attention_until_a_newer_diagnosis) {
  struct Case {
    const char* name;
    std::vector<std::string> reports;
    bool attention;
  };
  const std::string healthy_at_7 = diagnosis("n", "healthy", k_two_enabled);
  const Case cases[] = {
      {"verified after a healthy diagnosis", {healthy_at_7, verify_report(R"("passed":true,)", "2026-11-23T09:00:00Z")},
       false},
      {"verification failed after a healthy diagnosis",
       {healthy_at_7, verify_report(R"("passed":false,)", "2026-11-23T09:00:00Z")}, true},
      {"verification without a result", {healthy_at_7, verify_report("", "2026-11-23T09:00:00Z")}, true},
      {"persistence optional (a laptop), then a failed verification: the verdict excuses only persistence off",
       {diagnosis("n", "persistence-optional", k_one_off), verify_report(R"("passed":false,)", "2026-11-23T09:00:00Z")},
       true},
      {"persistence optional, verified",
       {diagnosis("n", "persistence-optional", k_one_off), verify_report(R"("passed":true,)", "2026-11-23T09:00:00Z")},
       false},
      {"a healthy diagnosis after the failed verification",
       {healthy_at_7, verify_report(R"("passed":false,)", "2026-11-23T09:00:00Z"),
        diagnosis("n", "healthy", k_two_enabled, "2026-11-23T10:00:00Z")},
       false},
  };
  for (const Case& c : cases) {
    std::vector<fleet::NodeReport> reports;
    for (const auto& json : c.reports) {
      reports.push_back(report(json));
    }
    auto s = fleet::summarize(std::move(reports), {});
    ASSERT_EQ(s.nodes.size(), 1u) << c.name;
    EXPECT_EQ(fleet::needs_attention(s.nodes[0]), c.attention) << c.name;
    EXPECT_EQ(fleet::exit_code(s), c.attention ? 3 : 0) << c.name;
  }
}

TEST(FleetSummary, needs_attention_per_state) {
  struct Case {
    const char* name;
    std::string json;
    bool attention;
  };
  const std::vector<Case> cases = {
      {"healthy", diagnosis("n", "healthy", k_two_enabled), false},
      {"healthy verdict but a GPU reads Disabled", diagnosis("n", "healthy", k_one_off), true},
      {"a GPU reads Disabled while the daemon holds it (PM004)",
       diagnosis("n", "healthy", R"([{"persistence":"Enabled"},{"persistence":"Disabled","held_by_daemon":"yes"}])"),
       false},
      {"action needed, not fixed", diagnosis("n", "action-needed", k_one_off), true},
      {"fixed and verified", fix("n", "act", 0, false, 5), false},
      {"check mode would fix", fix("n", "act", 0, true, 5), true},
      {"refused", fix("n", "refused", 4, false, 0), true},
      {"verify failed", fix("n", "act", 8, false, 5, R"([{"persistence_after":"Disabled"}])"), true},
      {"probe only: no verdict", R"({"kind":"gpuwarm-probe","hostname":"n","gpus":[]})", true},
      {"cannot tell", diagnosis("n", "cannot-tell", k_two_enabled), true},
      {"persistence optional (a laptop): off by design", diagnosis("n", "persistence-optional", k_one_off), false},
      {"persistence optional, nothing to do",
       optional_verdict(fix("n", "nothing-to-do", 0, false, 0, R"([{"persistence_after":"Disabled"}])")), false},
      {"persistence optional, but the fix could not take the lock",
       optional_verdict(fix("n", "locked", 7, false, 0, R"([{"persistence_after":"Disabled"}])")), true},
      {"nothing to do on a healthy node, verified", healthy_verdict(fix("n", "nothing-to-do", 0, false, 0)), false},
      {"nothing to do on a healthy node, but its verification failed",
       healthy_verdict(fix("n", "nothing-to-do", 8, false, 0)), true},
      {"a healthy node whose fix could not take the lock", healthy_verdict(fix("n", "locked", 7, false, 0)), true},
  };
  for (const auto& c : cases) {
    auto s = fleet::summarize({report(c.json)}, {});
    ASSERT_EQ(s.nodes.size(), 1u) << c.name;
    EXPECT_EQ(fleet::needs_attention(s.nodes[0]), c.attention) << c.name;
  }
  // A fix that never got as far as a verdict (locked, or its reading failed) after a healthy diagnosis is the
  // newest word on the node: it needs someone (review-s57 L2).
  for (const char* outcome : {"error", "locked"}) {
    const std::string failed_fix = std::string(R"({"kind":"gpuwarm-fix","schema_version":1,"hostname":"n",)") +
                                   R"("taken_at":"2026-11-23T07:05:00Z","outcome":")" + outcome +
                                   R"(","changed":false,"reason":"x","steps":[],"exit_code":1})";
    auto s = fleet::summarize({report(diagnosis("n", "healthy", k_two_enabled)), report(failed_fix)}, {});
    ASSERT_EQ(s.nodes.size(), 1u) << outcome;
    EXPECT_TRUE(fleet::needs_attention(s.nodes[0])) << outcome;
  }
}

// Which reports fold into one node: the inventory name where the role wrote one, and a report without it (a
// diagnose run by hand or by pdsh) joins the one inventory name whose reports came from the same machine
// hostname and list one of its GPUs. A hostname alone joins nothing: another machine may carry it.
TEST(FleetSummary, one_machine_is_one_node_whatever_names_its_reports_carry) {
  const std::string role_fix =
      R"({"kind":"gpuwarm-fix","hostname":"gpu17","node":"gpu17.example.com","taken_at":"2026-01-01T00:00:00Z",)"
      R"("outcome":"act","dry_run":false,"exit_code":0,"verdict":"action-needed","steps":[],)"
      R"("diagnosis":{"verdict":{"code":"action-needed"},"gpus":[{"uuid":"GPU-17","persistence":"Disabled"}]},)"
      R"("verify":{"gpus":[{"persistence_after":"Enabled"}]}})";
  const std::string same_gpu = R"([{"uuid":"GPU-17","persistence":"Enabled"}])";
  const std::string by_hand = diagnosis("gpu17", "healthy", same_gpu, "2026-01-02T00:00:00Z");
  auto gpus = [](auto... uuids) {
    std::string out = "[";
    for (const std::string uuid : {uuids...}) {
      out += (out.size() > 1 ? "," : "") + std::string(R"({"uuid":")") + uuid + R"(","persistence":"Enabled"})";
    }
    return out + "]";
  };
  auto named = [](const std::string& machine, const std::string& node, const std::string& uuid) {
    return R"({"kind":"gpuwarm-diagnosis","hostname":")" + machine + R"(","node":")" + node +
           R"(","verdict":{"code":"healthy"},"gpus":[{"uuid":")" + uuid + R"(","persistence":"Enabled"}],"findings":[]})";
  };
  struct Case {
    const char* name;
    std::vector<std::string> reports;
    std::vector<std::string> nodes;
  };
  const std::vector<Case> cases = {
      {"the role's report and a later one by hand", {role_fix, by_hand}, {"gpu17.example.com"}},
      {"by hand first, the role's after", {by_hand, role_fix}, {"gpu17.example.com"}},
      {"by hand only", {by_hand}, {"gpu17"}},
      {"another machine's report stays apart", {role_fix, diagnosis("gpu18", "healthy", k_two_enabled)},
       {"gpu17.example.com", "gpu18"}},
      {"the same hostname on another machine (other GPUs) stays apart",
       {role_fix, diagnosis("gpu17", "healthy", R"([{"uuid":"GPU-99","persistence":"Enabled"}])")},
       {"gpu17", "gpu17.example.com"}},
      {"a report listing no GPU UUID cannot be placed", {role_fix, diagnosis("gpu17", "healthy", k_two_enabled)},
       {"gpu17", "gpu17.example.com"}},
      {"two inventory names with that machine and GPU: a report without one cannot be placed",
       {named("vm", "node-a", "GPU-1"), named("vm", "node-b", "GPU-1"),
        diagnosis("vm", "healthy", R"([{"uuid":"GPU-1","persistence":"Enabled"}])")},
       {"node-a", "node-b", "vm"}},
      {"several inventory names on one machine, each with its own GPU: the report joins its GPU's",
       {named("vm", "node-a", "GPU-1"), named("vm", "node-b", "GPU-2"),
        diagnosis("vm", "healthy", R"([{"uuid":"GPU-2","persistence":"Enabled"}])")},
       {"node-a", "node-b"}},
      // A hostname repeats across machines (review-s57 H1): reports under one name that share no GPU are two.
      {"two machines named ubuntu, no GPU in common", {diagnosis("ubuntu", "action-needed", gpus("GPU-aaaaaaaa-1")),
                                                       diagnosis("ubuntu", "healthy", gpus("GPU-bbbbbbbb-2"))},
       {"ubuntu [GPU-aaaaaaaa]", "ubuntu [GPU-bbbbbbbb]"}},
      {"one machine named ubuntu twice (a GPU in common)",
       {diagnosis("ubuntu", "action-needed", gpus("GPU-aaaaaaaa-1", "GPU-cccccccc-3")),
        diagnosis("ubuntu", "healthy", gpus("GPU-cccccccc-3"))},
       {"ubuntu"}},
      {"a report listing no GPU joins the one machine of its name",
       {diagnosis("ubuntu", "healthy", gpus("GPU-aaaaaaaa-1")), diagnosis("ubuntu", "driver-install", "[]")},
       {"ubuntu"}},
      {"beside several machines of its name, it stands apart",
       {diagnosis("ubuntu", "healthy", gpus("GPU-aaaaaaaa-1")), diagnosis("ubuntu", "healthy", gpus("GPU-bbbbbbbb-2")),
        diagnosis("ubuntu", "driver-install", "[]")},
       {"ubuntu [GPU-aaaaaaaa]", "ubuntu [GPU-bbbbbbbb]", "ubuntu [no GPU UUID]"}},
      {"an inventory name that is another machine's hostname keeps its name; the other machine is told apart",
       {named("gpu17", "gpu17", "GPU-1"), diagnosis("gpu17", "action-needed", gpus("GPU-2"))},
       {"gpu17", "gpu17 [GPU-2]"}},
      {"a GPU replaced under an inventory name is still that node",
       {named("gpu17", "gpu17", "GPU-1"), named("gpu17", "gpu17", "GPU-9")}, {"gpu17"}},
  };
  for (const auto& c : cases) {
    std::vector<fleet::NodeReport> reports;
    for (const auto& json : c.reports) {
      reports.push_back(report(json));
    }
    auto s = fleet::summarize(std::move(reports), {});
    std::vector<std::string> names;
    for (const auto& n : s.nodes) {
      names.push_back(n.hostname);
    }
    EXPECT_EQ(names, c.nodes) << c.name;
  }
  // Two machines of one name: the older one's problem is not hidden by the other's newer report.
  auto apart = fleet::summarize({report(diagnosis("ubuntu", "action-needed", gpus("GPU-aaaaaaaa-1"),
                                                  "2026-01-01T10:00:00Z")),
                                 report(diagnosis("ubuntu", "healthy", gpus("GPU-bbbbbbbb-2"), "2026-01-01T10:05:00Z"))},
                                {});
  EXPECT_EQ(fleet::exit_code(apart), 3);
  // Folded, the newest report speaks (the diagnosis by hand after the fix), and the join is shown.
  auto s = fleet::summarize({report(role_fix), report(by_hand)}, {});
  ASSERT_EQ(s.nodes.size(), 1u);
  EXPECT_EQ(s.nodes[0].reports, 2);
  EXPECT_EQ(s.nodes[0].verdict, "healthy");
  EXPECT_EQ(s.nodes[0].also_named, std::vector<std::string>{"gpu17"});
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("Reports without an inventory name joined by hostname and GPU UUID: 1 (gpu17 -> "
                      "gpu17.example.com)\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(fleet::render_json(s)["node_reports"][0]["also_named"], nlohmann::json::array({"gpu17"}));
}

// Names in a list read as one name each: one with a comma (or a quote, or blank ends) is quoted.
TEST(FleetSummary, a_name_that_could_read_as_several_is_quoted_in_lists) {
  auto s = fleet::summarize({report(diagnosis("a, b, c", "action-needed", k_one_off)),
                             report(diagnosis(R"(say \"hi\")", "action-needed", k_one_off)),  // JSON text: say "hi"
                             report(diagnosis("plain-01", "action-needed", k_one_off))},
                            {});
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("Needs attention: 3 (\"a, b, c\", plain-01, \"say \\\"hi\\\"\")\n"), std::string::npos)
      << text;
}

// A backslash in a name is doubled: a name spelled `lit\x1b` does not read like one holding an escape byte.
TEST(FleetSummary, a_backslash_in_a_name_is_told_from_an_escaped_byte) {
  auto s = fleet::summarize({report(diagnosis(R"(lit\\x1b)", "action-needed", k_one_off)),  // JSON text: lit\x1b
                             report(diagnosis(R"(esc\u001b)", "action-needed", k_one_off)),  // an ESC byte
                             report(diagnosis(R"(a,\\b)", "action-needed", k_one_off))},
                            {});
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find(R"(Needs attention: 3 ("a,\\b", esc\x1b, lit\\x1b))" "\n"), std::string::npos) << text;
  // JSON tells a backslash from an escape byte itself: the name as the node gave it, control bytes escaped.
  EXPECT_EQ(fleet::render_json(s)["needs_attention"]["hostnames"],
            nlohmann::json::array({R"(a,\b)", R"(esc\x1b)", R"(lit\x1b)"}));
}

// A node only probes describe has no verdict and no persistence reading: the summary says so instead of
// counting it among the nodes with every GPU Enabled.
TEST(FleetSummary, a_node_with_only_probes_is_not_read_for_persistence) {
  auto s = fleet::summarize({report(diagnosis("a", "healthy", k_two_enabled)),
                             report(R"({"kind":"gpuwarm-probe","hostname":"b","gpus":[]})")},
                            {});
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("no-diagnosis  1"), std::string::npos) << text;
  EXPECT_NE(text.find("Nodes with a GPU not Enabled: 0; persistence not reported by 1 node (b)\n"), std::string::npos)
      << text;
  auto j = fleet::render_json(s);
  EXPECT_EQ(j["persistence_not_reported"]["hostnames"], nlohmann::json::array({"b"}));
  EXPECT_EQ(j["verdicts"].back()["verdict"], "no-diagnosis");
}

// A node's per-GPU figures come from its newest probe that timed GPUs, before and after together.
TEST(FleetSummary, the_newest_probe_replaces_older_figures_even_when_it_failed) {
  auto s = fleet::summarize(
      {report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-01T00:00:00Z","method":"isolated",
                  "gpus":[{"ok":true,"total_ms":402}],"compare":[{"before_total_ms":2514}]})"),
       report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-02T00:00:00Z","method":"isolated",
                  "gpus":[{"ok":false,"total_ms":null}]})")},
      {});
  ASSERT_EQ(s.nodes.size(), 1u);
  EXPECT_TRUE(s.nodes[0].cold_after_ms.empty());
  EXPECT_TRUE(s.nodes[0].cold_before_ms.empty());
  EXPECT_TRUE(s.nodes[0].probe_failed);
  // A later `probe --node` times only the job starts: the per-GPU figures stay.
  auto kept = fleet::summarize(
      {report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-01T00:00:00Z","method":"isolated",
                  "gpus":[{"ok":true,"total_ms":305}],"compare":[{"before_total_ms":3050}]})"),
       report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-02T00:00:00Z","method":null,"gpus":[],
                  "jobs":[{"method":"one-process","gpus":1,"ready_ms":290}]})")},
      {});
  EXPECT_EQ(kept.nodes[0].cold_after_ms, (std::vector<double>{305.0}));
  EXPECT_EQ(kept.nodes[0].cold_before_ms, (std::vector<double>{3050.0}));
}

TEST(FleetSummary, tallies_lists_and_medians) {
  std::vector<NodeReport> reports = {
      report(diagnosis("c", "reboot-pending", k_one_off)),
      report(diagnosis("a", "healthy", k_two_enabled)),
      report(diagnosis("b", "ras", k_two_enabled)),
      report(diagnosis("d", "healthy", k_two_enabled)),
      report(R"({"kind":"gpuwarm-probe","hostname":"a","method":"isolated","gpus":[{"ok":true,"total_ms":40},
                 {"ok":true,"total_ms":50}],"compare":[{"before_total_ms":2000},{"before_total_ms":3000}],
                 "compare_persistence":{"before":"disabled","after":"enabled","changed":true}})"),
      report(R"({"kind":"gpuwarm-probe","hostname":"d","method":"isolated","gpus":[{"ok":true,"total_ms":60}]})"),
      report(R"({"kind":"gpuwarm-probe","hostname":"b","method":"parallel","gpus":[{"ok":true,"total_ms":671},
                 {"ok":true,"total_ms":650}]})"),
  };
  auto s = fleet::summarize(std::move(reports), {{"z.json", "not valid JSON: x"}, {"m.json", "empty file"}});
  EXPECT_EQ(s.reports, 9u);
  auto j = fleet::render_json(s);
  EXPECT_EQ(j["nodes"], 4);
  EXPECT_EQ(j["verdicts"], nlohmann::json::parse(R"([{"verdict":"healthy","nodes":2},
      {"verdict":"reboot-pending","nodes":1},{"verdict":"ras","nodes":1}])"));  // runbook order, not by name
  EXPECT_EQ(j["gpu_not_enabled"]["hostnames"], nlohmann::json::parse(R"(["c"])"));
  EXPECT_EQ(j["reboot_pending"]["hostnames"], nlohmann::json::parse(R"(["c"])"));
  EXPECT_EQ(j["needs_attention"]["hostnames"], nlohmann::json::parse(R"(["b","c"])"));
  EXPECT_EQ(j["cold_start_ms"]["before"]["median_ms"], 2500.0);
  EXPECT_EQ(j["cold_start_ms"]["before"]["nodes"], 1);
  EXPECT_EQ(j["cold_start_ms"]["after"]["median_ms"], 50.0);
  EXPECT_EQ(j["cold_start_ms"]["after"]["gpus"], 3);  // b's contended figure is not among them
  EXPECT_EQ(j["per_gpu_parallel"]["hostnames"], nlohmann::json::parse(R"(["b"])"));
  EXPECT_EQ(j["unreadable"][0]["source"], "m.json");  // sorted
  EXPECT_EQ(fleet::exit_code(s), 3);

  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("4 nodes from 9 reports (2 unreadable)"), std::string::npos) << text;
  EXPECT_NE(text.find("Per-GPU figures taken in parallel (contended), left out of the median: 1 (b)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Nodes pending reboot: 1 (c)"), std::string::npos) << text;
  EXPECT_NE(text.find("before 2500.0 ms (2 GPUs on 1 node), after 50.0 ms (3 GPUs on 2 nodes)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  z.json: not valid JSON: x"), std::string::npos) << text;
  EXPECT_LT(text.find("healthy"), text.find("reboot-pending"));
}

TEST(FleetSummary, long_lists_are_cut_in_text_but_whole_in_json) {
  std::vector<NodeReport> reports;
  for (int i = 0; i < 12; ++i) {
    reports.push_back(report(diagnosis(fmt::format("n{}", 10 + i), "reboot-pending", k_one_off)));
  }
  auto s = fleet::summarize(std::move(reports), {});
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("n19, ... and 2 more (--json lists all)"), std::string::npos) << text;
  EXPECT_EQ(fleet::render_json(s)["reboot_pending"]["hostnames"].size(), 12u);
}

TEST(FleetSummary, job_start_medians_per_node_newest_wins) {
  std::vector<NodeReport> reports = {
      report(R"({"kind":"gpuwarm-probe","hostname":"a","taken_at":"2026-11-01T00:00:00Z","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":9000}]})"),
      report(R"({"kind":"gpuwarm-probe","hostname":"a","taken_at":"2026-11-02T00:00:00Z","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":400}],
                 "compare_jobs":[{"method":"one-process","before_ready_ms":6000}],
                 "compare_persistence":{"before":"disabled","after":"enabled","changed":true}})"),
      report(R"({"kind":"gpuwarm-probe","hostname":"b","gpus":[],
                 "jobs":[{"method":"one-process","gpus":8,"ready_ms":600},
                         {"method":"process-per-gpu","gpus":8,"ready_ms":700},
                         {"method":"process-per-gpu-all-visible","gpus":8,"ready_ms":900}]})"),
      // c measured once, then its newest job start failed: no figure, and the node needs attention.
      report(R"({"kind":"gpuwarm-probe","hostname":"c","taken_at":"2026-11-01T00:00:00Z","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":300}]})"),
      report(R"({"kind":"gpuwarm-probe","hostname":"c","taken_at":"2026-11-02T00:00:00Z","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ok":false,"ready_ms":null}]})"),
  };
  auto s = fleet::summarize(std::move(reports), {});
  auto j = fleet::render_json(s);
  EXPECT_EQ(j["job_start_ms"]["one_process"]["after"]["median_ms"], 500.0);  // a's newest (400) and b's 600
  EXPECT_EQ(j["job_start_ms"]["one_process"]["after"]["nodes"], 2);
  EXPECT_EQ(j["job_start_ms"]["one_process"]["after"]["min_gpus"], 2);
  EXPECT_EQ(j["job_start_ms"]["one_process"]["after"]["max_gpus"], 8);
  EXPECT_EQ(j["job_start_ms"]["one_process"]["before"]["median_ms"], 6000.0);
  EXPECT_EQ(j["job_start_ms"]["process_per_gpu"]["after"]["nodes"], 1);
  EXPECT_TRUE(j["job_start_ms"]["process_per_gpu"]["before"]["median_ms"].is_null());
  EXPECT_EQ(j["node_reports"][0]["job_start_after_ms"]["one_process"], 400.0);
  EXPECT_TRUE(j["node_reports"][2]["job_start_after_ms"]["one_process"].is_null());
  EXPECT_EQ(j["probe_failed"]["hostnames"], nlohmann::json::parse(R"(["c"])"));
  EXPECT_TRUE(j["node_reports"][2]["needs_attention"]);
  std::string text = fleet::render_text(s, Style(false));
  // Per GPU count (review-s53-probe L1): a 2-GPU and an 8-GPU node's starts are not one figure.
  EXPECT_NE(text.find("Job start (one process, every GPU) on 2 GPUs, median per node: before 6000.0 ms (1 node), "
                      "after 400.0 ms (1 node)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("Job start (one process, every GPU) on 8 GPUs, median per node: before none, after 600.0 ms "
                      "(1 node)\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("(a process per GPU) on 8 GPUs, median per node: before none, after 700.0 ms (1 node)"),
            std::string::npos)
      << text;
  EXPECT_EQ(j["job_start_by_gpus"]["one_process"], nlohmann::json::parse(R"([
      {"gpus": 2, "before": {"median_ms": 6000.0, "nodes": 1}, "after": {"median_ms": 400.0, "nodes": 1},
       "after_same_nodes": {"median_ms": 400.0, "nodes": 1}},
      {"gpus": 8, "before": {"median_ms": null, "nodes": 0}, "after": {"median_ms": 600.0, "nodes": 1},
       "after_same_nodes": {"median_ms": null, "nodes": 0}}])"));
  EXPECT_NE(text.find("Nodes whose newest probe failed: 1 (c)"), std::string::npos) << text;
  EXPECT_EQ(j["job_start_ms"]["process_per_gpu_all_visible"]["after"]["median_ms"], 900.0);
  EXPECT_NE(text.find("(a process per GPU, each seeing all) on 8 GPUs, median per node: before none, after 900.0 ms"),
            std::string::npos)
      << text;

  // Another 2-GPU node with no before: the after over every node is not set against a before of some only; the
  // same nodes' after is said beside it.
  reports.clear();
  reports.push_back(report(R"({"kind":"gpuwarm-probe","hostname":"a","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":400}],
                 "compare_jobs":[{"method":"one-process","before_ready_ms":6000}],
                 "compare_persistence":{"before":"disabled","after":"enabled","changed":true}})"));
  reports.push_back(report(R"({"kind":"gpuwarm-probe","hostname":"d","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":800}]})"));
  s = fleet::summarize(std::move(reports), {});
  text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("on 2 GPUs, median per node: before 6000.0 ms (1 node), after 600.0 ms (2 nodes; 400.0 ms on "
                      "the node with a before)"),
            std::string::npos)
      << text;
  j = fleet::render_json(s);
  EXPECT_EQ(j["job_start_by_gpus"]["one_process"][0]["after_same_nodes"]["median_ms"], 400.0);
  EXPECT_EQ(j["job_start_by_gpus"]["one_process"][0]["after"]["nodes"], 2);

  // A newer probe that did not compare leaves no "before": the older probe's baseline is not set beside it.
  reports = {
      report(R"({"kind":"gpuwarm-probe","hostname":"a","taken_at":"2026-11-01T00:00:00Z","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":400}],
                 "compare_jobs":[{"method":"one-process","before_ready_ms":6000}]})"),
      report(R"({"kind":"gpuwarm-probe","hostname":"a","taken_at":"2026-11-02T00:00:00Z","gpus":[],
                 "jobs":[{"method":"one-process","gpus":2,"ready_ms":6100}]})"),
  };
  j = fleet::render_json(fleet::summarize(std::move(reports), {}));
  EXPECT_EQ(j["node_reports"][0]["job_start_after_ms"]["one_process"], 6100.0);
  EXPECT_TRUE(j["node_reports"][0]["job_start_before_ms"]["one_process"].is_null());
  EXPECT_TRUE(j["job_start_ms"]["one_process"]["before"]["median_ms"].is_null());
}

// The fleet's before/after is what enabling persistence changed: a node whose probe compared across another
// change (persistence read the same, or not read) is listed, its baseline kept out of the medians.
TEST(FleetSummary, before_counts_only_where_persistence_changed) {
  auto probe = [](const char* host, const char* compared) {
    return report(fmt::format(R"({{"kind":"gpuwarm-probe","hostname":"{}","method":"isolated",
        "gpus":[{{"ok":true,"total_ms":40}}],"compare":[{{"before_total_ms":{}}}],
        "jobs":[{{"method":"one-process","gpus":2,"ready_ms":90}}],
        "compare_jobs":[{{"method":"one-process","before_ready_ms":{}}}]{}}})",
                              host, std::string(host) == "on" ? 2000 : 1000, std::string(host) == "on" ? 4000 : 900,
                              compared));
  };
  auto s = fleet::summarize(
      {probe("on", R"(,"compare_persistence":{"before":"disabled","after":"enabled","changed":true})"),
       probe("same", R"(,"compare_persistence":{"before":"enabled","after":"enabled","changed":false})"),
       probe("off", R"(,"compare_persistence":{"before":"enabled","after":"disabled","changed":true})"),
       probe("unread", R"(,"compare_persistence":{"before":"unknown","after":"enabled","changed":null})"),
       probe("old", "")},
      {});
  auto j = fleet::render_json(s);
  EXPECT_EQ(j["cold_start_ms"]["before"]["median_ms"], 2000.0);
  EXPECT_EQ(j["cold_start_ms"]["before"]["nodes"], 1);
  EXPECT_EQ(j["cold_start_ms"]["after"]["nodes"], 5);
  EXPECT_EQ(j["job_start_ms"]["one_process"]["before"]["median_ms"], 4000.0);
  EXPECT_EQ(j["before_without_persistence_change"]["hostnames"],
            nlohmann::json::parse(R"(["off","old","same","unread"])"));
  EXPECT_EQ(j["node_reports"][2]["hostname"], "on");
  EXPECT_EQ(j["node_reports"][2]["cold_start_before_counts"], true);
  EXPECT_EQ(j["node_reports"][3]["cold_start_before_counts"], false);
  EXPECT_EQ(j["node_reports"][3]["cold_start_before_ms"], nlohmann::json::parse("[1000.0]"));  // kept per node
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("Before/after left out, as the probe did not compare persistence off with on: 4 "
                      "(off, old, same, unread)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("before 2000.0 ms (1 GPU on 1 node), after 40.0 ms (5 GPUs on 5 nodes)"), std::string::npos)
      << text;
  // Per-GPU figures and job starts from two probes: each "before" counts by its own probe's comparison.
  auto two = fleet::summarize(
      {report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-01T00:00:00Z","method":"isolated",
                  "gpus":[{"ok":true,"total_ms":45}],"compare":[{"before_total_ms":46}],
                  "compare_persistence":{"before":"enabled","after":"enabled","changed":false}})"),
       report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-02T00:00:00Z","method":null,"gpus":[],
                  "jobs":[{"method":"one-process","gpus":2,"ready_ms":90}],
                  "compare_jobs":[{"method":"one-process","before_ready_ms":3000}],
                  "compare_persistence":{"before":"disabled","after":"enabled","changed":true}})")},
      {});
  j = fleet::render_json(two);
  EXPECT_TRUE(j["cold_start_ms"]["before"]["median_ms"].is_null()) << j.dump();
  EXPECT_EQ(j["job_start_ms"]["one_process"]["before"]["median_ms"], 3000.0);
}

// A newest probe whose job starts were skipped (a GPU hung alone, or could not be probed) leaves the node's job
// start unknown, never the older probe's figure.
TEST(FleetSummary, skipped_job_starts_replace_older_figures) {
  auto s = fleet::summarize(
      {report(R"({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-01T00:00:00Z","gpus":[],
                  "jobs":[{"method":"one-process","gpus":2,"ready_ms":543}]})"),
       report(R"J({"kind":"gpuwarm-probe","hostname":"n","taken_at":"2026-01-02T00:00:00Z","method":null,"gpus":[],
                  "jobs":[],"jobs_skipped":"not probed: GPU 1 NVML gave no handle for it (GPU_IS_LOST)"})J")},
      {});
  auto j = fleet::render_json(s);
  EXPECT_TRUE(j["node_reports"][0]["job_start_after_ms"]["one_process"].is_null()) << j.dump();
  EXPECT_TRUE(j["job_start_ms"]["one_process"]["after"]["median_ms"].is_null());
  EXPECT_EQ(j["probe_failed"]["hostnames"], nlohmann::json::parse(R"(["n"])"));
  EXPECT_TRUE(j["node_reports"][0]["needs_attention"]);
}

TEST(FleetSummary, skipped_output_is_listed_and_changes_no_exit_code) {
  std::vector<NodeReport> reports = {report(diagnosis("a", "healthy", k_two_enabled))};
  auto s = fleet::summarize(std::move(reports), {},
                            {{"w/watch.json", "a `gpuwarm watch --json` run: fleet-summary reads ...", ""},
                             {"w/check.json", "a `gpuwarm check --json` answer ...", ""}});
  EXPECT_EQ(fleet::exit_code(s), 0);  // only skipped output beside a healthy node
  EXPECT_EQ(s.reports, 1u);
  auto j = fleet::render_json(s);
  EXPECT_EQ(j["skipped"][0]["source"], "w/check.json");  // sorted
  EXPECT_EQ(j["unreadable"], nlohmann::json::array());
  std::string text = fleet::render_text(s, Style(false));
  EXPECT_NE(text.find("1 node from 1 report; 2 other gpuwarm output skipped"), std::string::npos) << text;
  EXPECT_NE(text.find("Skipped: gpuwarm output fleet-summary does not read (2):\n"
                      "  w/check.json: a `gpuwarm check --json` answer ...\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("Unreadable"), std::string::npos) << text;

  // A report parsed as `other` but handed over with the rest is still skipped, named by its hostname.
  std::vector<NodeReport> mixed = {report(diagnosis("a", "healthy", k_two_enabled)),
                                   report(R"({"kind":"gpuwarm-reset","hostname":"r"})")};
  auto m = fleet::summarize(std::move(mixed), {});
  ASSERT_EQ(m.skipped.size(), 1u);
  EXPECT_EQ(m.skipped[0].source, "r");
  EXPECT_EQ(m.nodes.size(), 1u);
  EXPECT_EQ(fleet::exit_code(m), 0);

  // Skipped output that reports a problem of its own (a check that says drain, a watch that could not run, a
  // usage error) is not folded, but it is not passed over either: it needs attention.
  std::vector<NodeReport> troubled = {
      report(diagnosis("a", "healthy", k_two_enabled)),
      report(R"({"kind":"gpuwarm-check","hostname":"b","check":{"exit_code":1,"line":"DRV001 driver not loaded"}})"),
      report(R"({"kind":"gpuwarm-watch","hostname":"c","error":"NVML stopped answering","exit_code":9})")};
  auto t = fleet::summarize(std::move(troubled), {});
  ASSERT_EQ(t.skipped.size(), 2u);
  EXPECT_EQ(t.skipped[0].problem, "it reports exit 1");
  EXPECT_EQ(t.skipped[1].problem, "it reports exit 9: NVML stopped answering");
  EXPECT_EQ(fleet::exit_code(t), 3);
  std::string shown = fleet::render_text(t, Style(false));
  EXPECT_NE(shown.find("    ! it reports exit 9: NVML stopped answering: look at it (needs attention)\n"),
            std::string::npos)
      << shown;
  EXPECT_EQ(fleet::render_json(t)["skipped"][0]["problem"], "it reports exit 1");
  EXPECT_TRUE(fleet::render_json(s)["skipped"][0]["problem"].is_null());
  // A saved fleet summary left among the reports is skipped, but its exit code was other reports': a fleet
  // healthy now stays 0 (review-s43-diff F1).
  std::vector<NodeReport> with_summary = {
      report(diagnosis("a", "healthy", k_two_enabled)),
      report(R"({"kind":"gpuwarm-fleet-summary","schema_version":1,"reports":4,"exit_code":3})")};
  auto w = fleet::summarize(std::move(with_summary), {});
  ASSERT_EQ(w.skipped.size(), 1u);
  EXPECT_EQ(w.skipped[0].problem, "");
  EXPECT_EQ(fleet::exit_code(w), 0);

  // A report of a kind it reads that is a failed run's document says so, not what field it lacks.
  auto failed =
      parse(R"({"kind":"gpuwarm-diagnosis","hostname":"n","error":"gpuwarm diagnose has no option --bogus","exit_code":2})");
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message, "a run that did not report: it reports exit 2: gpuwarm diagnose has no option --bogus");
}

}  // namespace
}  // namespace gpuwarm::test
