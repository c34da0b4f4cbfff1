#include "fleet/fleet.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <numeric>
#include <unordered_map>

#include <fmt/format.h>
#include <simdjson.h>

#include "core/report_kind.h"
#include "core/strings.h"
#include "output/table.h"

namespace gpuwarm::fleet {

namespace {

using simdjson::SUCCESS;
using simdjson::dom::array;
using simdjson::dom::element;

// Verdict codes in the runbook's order (rules/registry.cpp); others sort after them by name.
constexpr const char* k_verdict_order[] = {"healthy", "persistence-optional", "action-needed", "reboot-pending",
                                           "driver-install", "ras", "pinned-clocks", "cannot-tell"};

std::string_view string_field(element e, const char* key) {
  std::string_view v;
  if (e[key].get(v) != SUCCESS) {
    return {};
  }
  return v;
}

bool has_field(element e, const char* key) {
  element ignored;
  return e[key].get(ignored) == SUCCESS;
}

// Counts GPUs and those whose `key` is not "Enabled" (a Disabled or unreadable persistence both count).
void count_persistence(simdjson::simdjson_result<element> gpus_value, const char* key, NodeReport& out) {
  array gpus;
  if (gpus_value.get(gpus) != SUCCESS) {
    return;
  }
  int total = 0;
  int off = 0;
  for (element g : gpus) {
    ++total;
    // A GPU the daemon holds stays initialized whatever NVML's flag reads (PM004: the verdict trusts the daemon).
    if (string_field(g, key) != "Enabled" && string_field(g, "held_by_daemon") != "yes") {
      ++off;
    }
  }
  out.gpus = total;
  out.gpus_not_enabled = off;
}

// The UUIDs of the GPUs a report lists: what tells one machine from another that shares its hostname.
void collect_uuids(simdjson::simdjson_result<element> gpus_value, NodeReport& out) {
  array gpus;
  if (gpus_value.get(gpus) != SUCCESS) {
    return;
  }
  for (element g : gpus) {
    if (std::string_view uuid = string_field(g, "uuid"); !uuid.empty()) {
      out.gpu_uuids.emplace_back(uuid);
    }
  }
}

Result<void> read_diagnosis(element doc, NodeReport& out) {
  std::string_view verdict;
  if (doc["verdict"]["code"].get(verdict) != SUCCESS) {
    return fail("diagnosis without verdict.code");
  }
  out.verdict = verdict;
  count_persistence(doc["gpus"], "persistence", out);
  collect_uuids(doc["gpus"], out);
  std::string_view collected_at;
  if (doc["snapshot"]["collected_at"].get(collected_at) == SUCCESS) {
    out.taken_at = collected_at;
  }
  return {};
}

std::string fix_outcome(element doc) {
  std::string_view outcome = string_field(doc, "outcome");
  bool dry_run = false;
  if (doc["dry_run"].get(dry_run) != SUCCESS) {
    dry_run = false;
  }
  int64_t code = 1;
  if (doc["exit_code"].get(code) != SUCCESS) {
    code = 1;  // a report that does not say how it ended did not end well
  }
  std::size_t steps = 0;
  array step_list;
  if (doc["steps"].get(step_list) == SUCCESS) {
    steps = step_list.size();
  }
  if (outcome == "refused") {
    return "refused";
  }
  if (outcome == "no-service-manager") {
    return "no-systemd";
  }
  if (dry_run) {
    return steps > 0 ? "would-fix" : "nothing-to-do";
  }
  switch (code) {
    case 0: return outcome == "act" ? "fixed" : "nothing-to-do";
    case 7: return "locked";
    case 8: return "verify-failed";
    default: return "failed";
  }
}

Result<void> read_fix(element doc, NodeReport& out) {
  if (!has_field(doc, "outcome")) {
    return fail("fix report without outcome");
  }
  out.fix_outcome = fix_outcome(doc);
  // The embedded diagnosis gives the GPUs as found; the fix's own fields and its verification come after.
  element diagnosis;
  if (doc["diagnosis"].get(diagnosis) == SUCCESS) {
    if (auto r = read_diagnosis(diagnosis, out); !r) {
      return r;
    }
  }
  if (std::string_view verdict = string_field(doc, "verdict"); !verdict.empty()) {
    out.verdict = verdict;
  }
  if (std::string_view taken_at = string_field(doc, "taken_at"); !taken_at.empty()) {
    out.taken_at = taken_at;
  }
  count_persistence(doc["verify"]["gpus"], "persistence_after", out);
  return {};
}

Result<void> read_verify(element doc, NodeReport& out) {
  if (!has_field(doc, "checks")) {
    return fail("verify report without checks");
  }
  count_persistence(doc["gpus"], "persistence_after", out);
  collect_uuids(doc["gpus"], out);
  out.taken_at = string_field(doc, "taken_at");
  bool passed = false;
  out.verify_failed = doc["passed"].get(passed) != SUCCESS || !passed;  // unread is not passed
  return {};
}

Result<void> read_probe(element doc, NodeReport& out) {
  array gpus;
  if (doc["gpus"].get(gpus) != SUCCESS) {
    return fail("probe report without gpus");
  }
  // Per-GPU figures are a GPU's cold start only when each GPU was probed alone: children started together
  // contend in the driver. Schema 1 said "sequential" for the isolated method.
  std::string_view per_gpu_method;
  bool sequential = false;
  const bool isolated = doc["method"].get(per_gpu_method) == SUCCESS ? per_gpu_method == "isolated"
                                                              : doc["sequential"].get(sequential) == SUCCESS && sequential;
  out.per_gpu_parallel = !isolated && gpus.size() > 1;  // one GPU alone contends with nothing
  collect_uuids(doc["gpus"], out);
  out.probed_gpus = gpus.size() > 0;
  for (element g : gpus) {
    bool ok = false;
    double ms = 0;
    if (g["ok"].get(ok) == SUCCESS && ok && g["total_ms"].get(ms) == SUCCESS) {
      if (isolated || gpus.size() == 1) {
        out.cold_after_ms.push_back(ms);
      }
    } else {
      out.probe_failed = true;  // failed, or no "ok": unknown is not a success
    }
  }
  // Job starts: a method this gpuwarm does not know is skipped, not an error (a newer writer).
  auto job_slot = [](JobStartMs& into, std::string_view method) -> std::optional<double>* {
    if (method == "one-process") return &into.one_process;
    if (method == "process-per-gpu") return &into.process_per_gpu;
    if (method == "process-per-gpu-all-visible") return &into.process_per_gpu_all_visible;
    return nullptr;
  };
  array jobs;
  if (doc["jobs"].get(jobs) == SUCCESS) {
    for (element j : jobs) {
      out.jobs_measured = true;
      std::string_view method;
      double ms = 0;
      uint64_t gpu_count = 0;
      if (j["gpus"].get(gpu_count) == SUCCESS) {
        out.job_gpus = static_cast<unsigned>(gpu_count);
      }
      if (j["method"].get(method) == SUCCESS && j["ready_ms"].get(ms) == SUCCESS) {
        if (auto* slot = job_slot(out.job_after_ms, method)) *slot = ms;
      } else {
        out.probe_failed = true;
      }
    }
  }
  // Job starts attempted but not measured (a GPU hung alone, or could not be probed): the node's job start is
  // unknown now, never an older probe's figure; and the probe failed.
  if (std::string_view why; doc["jobs_skipped"].get(why) == SUCCESS && !why.empty()) {
    out.jobs_measured = true;
    out.probe_failed = true;
  }
  // Persistence switched on between the baseline and this run: off (on some GPUs at least) before, on now.
  // Switched off, or the same, or unread: its before/after is some other change.
  bool changed = false;
  std::string_view was;
  std::string_view now;
  if (doc["compare_persistence"]["changed"].get(changed) == SUCCESS &&
      doc["compare_persistence"]["before"].get(was) == SUCCESS && doc["compare_persistence"]["after"].get(now) == SUCCESS) {
    out.persistence_switched_on = changed && now == "enabled" && (was == "disabled" || was == "mixed");
  }
  array compare_jobs;
  if (doc["compare_jobs"].get(compare_jobs) == SUCCESS) {
    for (element j : compare_jobs) {
      out.jobs_compared = true;
      std::string_view method;
      double ms = 0;
      bool comparable = true;  // written by probe --compare since it compares only like with like
      if (j["comparable"].get(comparable) != SUCCESS) {
        comparable = true;
      }
      if (comparable && j["method"].get(method) == SUCCESS && j["before_ready_ms"].get(ms) == SUCCESS) {
        if (auto* slot = job_slot(out.job_before_ms, method)) *slot = ms;
      }
    }
  }
  // The baseline's figure only where probe --compare found it comparable (the same method: isolated here).
  array compare;
  if ((isolated || gpus.size() == 1) && doc["compare"].get(compare) == SUCCESS) {
    for (element g : compare) {
      double ms = 0;
      bool comparable = true;  // reports from before the flag compared like with like only
      if (g["comparable"].get(comparable) != SUCCESS) {
        comparable = true;
      }
      if (comparable && g["before_total_ms"].get(ms) == SUCCESS) {
        out.cold_before_ms.push_back(ms);
      }
    }
  }
  out.taken_at = string_field(doc, "taken_at");
  return {};
}

constexpr const char* k_snapshot_skipped =
    "a snapshot, not a report: make one with `gpuwarm diagnose --snapshot FILE --json`";

// Reports written before `kind` existed are told apart by their keys. Other gpuwarm output is `other`, with
// what it is and what fleet-summary reads instead in `skipped_why`.
Result<ReportKind> kind_of(element doc, std::string& skipped_why) {
  std::string_view kind;
  if (doc["kind"].get(kind) == SUCCESS) {
    // check --json said "gpuwarm-diagnosis" before it had a kind of its own: its "check" object gives it away.
    if (kind == "gpuwarm-diagnosis" && has_field(doc, "check")) {
      kind = "gpuwarm-check";
    }
    if (kind == "gpuwarm-diagnosis") return ReportKind::diagnosis;
    if (kind == "gpuwarm-fix") return ReportKind::fix;
    if (kind == "gpuwarm-verify") return ReportKind::verify;
    if (kind == "gpuwarm-probe") return ReportKind::probe;
    if (kind == "gpuwarm-snapshot") {
      skipped_why = k_snapshot_skipped;
      return ReportKind::other;
    }
    // Any other kind gpuwarm writes (a watch run, a reset, a fleet summary) is named, and what is read said. A
    // kind gpuwarm does not write (a damaged or mistyped report, a newer writer's, no gpuwarm output at all)
    // stays unreadable: it may be a node's report this version fails to read.
    static constexpr std::string_view k_other_output[] = {"gpuwarm-check", "gpuwarm-watch", "watch",
                                                          "gpuwarm-reset", "gpuwarm-guard", "gpuwarm-lint",
                                                          "gpuwarm-fleet-summary", "gpuwarm-reload-modules"};
    const std::string what = describe_report_kind(kind) + ": fleet-summary reads diagnose, fix, verify and probe reports";
    if (std::find(std::begin(k_other_output), std::end(k_other_output), kind) == std::end(k_other_output)) {
      return fail(what);
    }
    skipped_why = what;
    return ReportKind::other;
  }
  if (has_field(doc, "verdict") && has_field(doc, "findings")) return ReportKind::diagnosis;
  if (has_field(doc, "outcome") && has_field(doc, "steps")) return ReportKind::fix;
  if (has_field(doc, "checks") && has_field(doc, "passed")) return ReportKind::verify;
  if (has_field(doc, "nvml") && has_field(doc, "driver")) {
    skipped_why = k_snapshot_skipped;
    return ReportKind::other;
  }
  return fail("not a gpuwarm report (no kind, verdict, outcome or checks)");
}

// What a document says went wrong with its own run: a non-zero exit_code (top level, or check's), an error.
std::string reported_problem(element doc) {
  int64_t code = 0;
  if (doc["exit_code"].get(code) != SUCCESS && doc["check"]["exit_code"].get(code) != SUCCESS) {
    code = 0;
  }
  std::string_view error = string_field(doc, "error");
  if (code == 0 && error.empty()) {
    return {};
  }
  std::string out = fmt::format("it reports exit {}", code);
  if (!error.empty()) {
    out += fmt::format(": {}", error.substr(0, 200));
  }
  return out;
}

double median(std::vector<double> v) {
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  if (v.size() % 2 == 1) {
    return *mid;
  }
  return (*mid + *std::max_element(v.begin(), mid)) / 2;
}

std::size_t verdict_rank(const std::string& code) {
  const auto* it = std::find(std::begin(k_verdict_order), std::end(k_verdict_order), code);
  return static_cast<std::size_t>(it - std::begin(k_verdict_order));
}

struct Tally {
  std::string name;
  std::size_t nodes = 0;
};

// Nodes per verdict in runbook order, then unknown codes by name, then nodes no report gave a verdict.
std::vector<Tally> verdict_tallies(const FleetSummary& s) {
  std::vector<Tally> out;
  for (const auto& n : s.nodes) {
    std::string name = n.verdict.empty() ? k_no_diagnosis : n.verdict;
    auto it = std::find_if(out.begin(), out.end(), [&](const Tally& t) { return t.name == name; });
    if (it == out.end()) {
      out.push_back({name, 1});
    } else {
      ++it->nodes;
    }
  }
  std::sort(out.begin(), out.end(), [](const Tally& a, const Tally& b) {
    auto key = [](const Tally& t) {
      return std::make_tuple(t.name == k_no_diagnosis, verdict_rank(t.name), t.name);
    };
    return key(a) < key(b);
  });
  return out;
}

std::vector<Tally> outcome_tallies(const FleetSummary& s) {
  std::vector<Tally> out;
  for (const auto& name : fix_outcome_names()) {
    std::size_t count = 0;
    for (const auto& n : s.nodes) {
      count += n.fix_outcome == name ? 1u : 0u;
    }
    if (count > 0) {
      out.push_back({name, count});
    }
  }
  return out;
}

template <class Pred>
std::vector<std::string> hostnames_where(const FleetSummary& s, Pred pred) {
  std::vector<std::string> out;
  for (const auto& n : s.nodes) {
    if (pred(n)) {
      out.push_back(n.hostname);
    }
  }
  return out;
}

bool gpu_not_enabled(const NodeState& n) { return n.gpus_not_enabled.value_or(0) > 0; }
bool reboot_pending(const NodeState& n) { return n.verdict == "reboot-pending"; }

struct ColdStart {
  std::optional<double> median_ms;
  std::size_t gpus = 0;
  std::size_t nodes = 0;
};

// A baseline's figure is a "before" of enabling persistence only where its comparison switched persistence on
// (cold_before_counts, job_before_counts): a node compared across another change (a driver update, a warmer room,
// persistence switched off) is listed apart, not folded into the median.
bool has_job_before(const NodeState& n) {
  const auto& b = n.job_before_ms;
  return b.one_process || b.process_per_gpu || b.process_per_gpu_all_visible;
}

bool before_without_persistence_change(const NodeState& n) {
  return (!n.cold_before_ms.empty() && !n.cold_before_counts) || (has_job_before(n) && !n.job_before_counts);
}

ColdStart cold_start(const FleetSummary& s, std::vector<double> NodeState::*field) {
  std::vector<double> all;
  ColdStart c;
  for (const auto& n : s.nodes) {
    if (field == &NodeState::cold_before_ms && !n.cold_before_counts) {
      continue;
    }
    const auto& v = n.*field;
    if (!v.empty()) {
      ++c.nodes;
      all.insert(all.end(), v.begin(), v.end());
    }
  }
  c.gpus = all.size();
  if (!all.empty()) {
    c.median_ms = median(std::move(all));
  }
  return c;
}

// The median over nodes of one job-start figure.
struct JobStartMedian {
  std::optional<double> median_ms;
  std::size_t nodes = 0;
  unsigned min_gpus = 0;  // GPUs the job starts covered, over the nodes counted
  unsigned max_gpus = 0;
};

JobStartMedian job_start(const FleetSummary& s, JobStartMs NodeState::*when, std::optional<double> JobStartMs::*how) {
  std::vector<double> all;
  JobStartMedian m;
  for (const auto& n : s.nodes) {
    if (when == &NodeState::job_before_ms && !n.job_before_counts) {
      continue;
    }
    if (const auto& v = n.*when.*how) {
      all.push_back(*v);
      if (n.job_gpus) {
        m.min_gpus = m.min_gpus == 0 ? *n.job_gpus : std::min(m.min_gpus, *n.job_gpus);
        m.max_gpus = std::max(m.max_gpus, *n.job_gpus);
      }
    }
  }
  m.nodes = all.size();
  if (!all.empty()) {
    m.median_ms = median(std::move(all));
  }
  return m;
}

// review-s53-probe L1: a job's start grows with its GPUs, so nodes are compared within one GPU count, and the
// before/after pair over the same nodes: the "after" of every node beside the "before" of some is a change of
// population, not of start.
struct JobStartGroup {
  unsigned gpus = 0;  // 0: not recorded
  JobStartMedian before;
  JobStartMedian after;
  JobStartMedian after_same_nodes;  // over the nodes counted in `before`
};

std::vector<JobStartGroup> job_start_groups(const FleetSummary& s, std::optional<double> JobStartMs::*how) {
  std::map<unsigned, std::array<std::vector<double>, 3>> by_gpus;
  for (const auto& n : s.nodes) {
    auto& sets = by_gpus[n.job_gpus.value_or(0)];
    const auto& before = n.job_before_ms.*how;
    const auto& after = n.job_after_ms.*how;
    const bool before_counts = n.job_before_counts && before.has_value();
    if (before_counts) {
      sets[0].push_back(*before);
    }
    if (after) {
      sets[1].push_back(*after);
      if (before_counts) {
        sets[2].push_back(*after);
      }
    }
  }
  std::vector<JobStartGroup> out;
  for (auto& [gpus, sets] : by_gpus) {
    if (sets[0].empty() && sets[1].empty()) {
      continue;
    }
    JobStartGroup g;
    g.gpus = gpus;
    JobStartMedian* medians[] = {&g.before, &g.after, &g.after_same_nodes};
    for (std::size_t i = 0; i < 3; ++i) {
      medians[i]->nodes = sets[i].size();
      medians[i]->min_gpus = medians[i]->max_gpus = gpus;
      if (!sets[i].empty()) {
        medians[i]->median_ms = median(std::move(sets[i]));
      }
    }
    out.push_back(std::move(g));
  }
  return out;
}

std::string job_start_group_text(const JobStartGroup& g, const char* title) {
  auto figure = [](const JobStartMedian& m) {
    return m.median_ms ? fmt::format("{:.1f} ms ({} node{})", *m.median_ms, m.nodes, m.nodes == 1 ? "" : "s")
                       : std::string("none");
  };
  std::string after = figure(g.after);
  if (g.after.median_ms && g.before.median_ms && g.after_same_nodes.nodes != g.after.nodes) {
    after.pop_back();  // the closing parenthesis: the same nodes' figure goes inside it
    after += g.after_same_nodes.median_ms
                 ? fmt::format("; {:.1f} ms on the {} with a before)", *g.after_same_nodes.median_ms,
                               g.after_same_nodes.nodes == 1 ? std::string("node")
                                                             : fmt::format("{} nodes", g.after_same_nodes.nodes))
                 : "; none on the nodes with a before)";
  }
  const std::string gpus = g.gpus == 0 ? std::string("GPU count not recorded")
                                       : fmt::format("{} GPU{}", g.gpus, g.gpus == 1 ? "" : "s");
  return fmt::format("Job start ({}) on {}, median per node: before {}, after {}\n", title, gpus, figure(g.before),
                     after);
}

nlohmann::json job_start_groups_json(const FleetSummary& s, std::optional<double> JobStartMs::*how) {
  nlohmann::json out = nlohmann::json::array();
  auto brief = [](const JobStartMedian& m) {
    return nlohmann::json{{"median_ms", m.median_ms ? nlohmann::json(*m.median_ms) : nlohmann::json(nullptr)},
                          {"nodes", m.nodes}};
  };
  for (const auto& g : job_start_groups(s, how)) {
    out.push_back({{"gpus", g.gpus == 0 ? nlohmann::json(nullptr) : nlohmann::json(g.gpus)},
                   {"before", brief(g.before)},
                   {"after", brief(g.after)},
                   {"after_same_nodes", brief(g.after_same_nodes)}});
  }
  return out;
}

nlohmann::json job_start_json(const JobStartMedian& m) {
  return {{"median_ms", m.median_ms ? nlohmann::json(*m.median_ms) : nlohmann::json(nullptr)},
          {"nodes", m.nodes},
          {"min_gpus", m.min_gpus},
          {"max_gpus", m.max_gpus}};
}

nlohmann::json job_start_node_json(const JobStartMs& j) {
  auto ms = [](const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
  return {{"one_process", ms(j.one_process)},
          {"process_per_gpu", ms(j.process_per_gpu)},
          {"process_per_gpu_all_visible", ms(j.process_per_gpu_all_visible)}};
}

// A name as a list shows it: quoted where it could read as several names or as none (a comma or quote in it,
// blank ends: inventory names are free text, and reports come from every node). Its backslashes are already
// doubled (escaped_name), so only a quote needs one here.
std::string listed_name(const std::string& name) {
  if (!name.empty() && name.find_first_of(",\"") == std::string::npos && name.front() != ' ' && name.back() != ' ') {
    return name;
  }
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') {
      out += '\\';
    }
    out += c;
  }
  return out + "\"";
}

std::string name_list(const std::vector<std::string>& names) {
  constexpr std::size_t shown = 10;
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < shown; ++i) {
    out += (i ? ", " : "") + listed_name(names[i]);
  }
  if (names.size() > shown) {
    out += fmt::format(", ... and {} more (--json lists all)", names.size() - shown);
  }
  return out;
}

std::string cold_text(const ColdStart& c) {
  if (!c.median_ms) {
    return "none";
  }
  return fmt::format("{:.1f} ms ({} GPU{} on {} node{})", *c.median_ms, c.gpus, c.gpus == 1 ? "" : "s", c.nodes,
                     c.nodes == 1 ? "" : "s");
}

nlohmann::json cold_json(const ColdStart& c) {
  return {{"median_ms", c.median_ms ? nlohmann::json(*c.median_ms) : nlohmann::json(nullptr)},
          {"gpus", c.gpus},
          {"nodes", c.nodes}};
}

template <class T>
nlohmann::json optional_json(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json string_or_null(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }

}  // namespace

const std::vector<std::string>& fix_outcome_names() {
  static const std::vector<std::string> names = {"fixed",   "nothing-to-do", "would-fix",  "refused",
                                                 "failed",  "verify-failed", "no-systemd", "locked"};
  return names;
}

std::size_t parse_padding() { return simdjson::SIMDJSON_PADDING; }

struct ReportParser::Impl {
  simdjson::dom::parser parser;
};

ReportParser::ReportParser() : m_impl(std::make_unique<Impl>()) {}
ReportParser::~ReportParser() = default;

namespace {
Result<NodeReport> report_of(const element& doc);
}  // namespace

Result<NodeReport> ReportParser::parse(std::string_view json) {
  element doc;
  if (auto err = m_impl->parser.parse(json.data(), json.size(), false).get(doc); err != SUCCESS) {
    return fail(fmt::format("not valid JSON: {}", simdjson::error_message(err)));
  }
  return report_of(doc);
}

Result<std::vector<Result<NodeReport>>> ReportParser::parse_whole(std::string_view json) {
  element doc;
  if (auto err = m_impl->parser.parse(json.data(), json.size(), false).get(doc); err != SUCCESS) {
    return fail(fmt::format("not valid JSON: {}", simdjson::error_message(err)));
  }
  std::vector<Result<NodeReport>> out;
  if (doc.is_array()) {
    for (element item : array(doc)) {
      out.push_back(report_of(item));
    }
  } else {
    out.push_back(report_of(doc));
  }
  return out;
}

namespace {

// A node's name as gpuwarm shows it: control and hidden characters escaped, and a backslash doubled so that a
// name spelled `lit\x1b` never reads as one holding an escape byte.
std::string escaped_name(std::string_view name) {
  std::string doubled;
  for (char c : name) {
    doubled += c;
    if (c == '\\') {
      doubled += c;
    }
  }
  return escape_control(doubled);
}

Result<NodeReport> report_of(const element& doc) {
  if (!doc.is_object()) {
    return fail("not a JSON object");
  }
  NodeReport out;
  auto kind = kind_of(doc, out.skipped_why);
  if (!kind) {
    return tl::unexpected(kind.error());
  }
  out.kind = *kind;
  // `node` (set by the Ansible module: the inventory name) wins over the name the node gives itself.
  out.machine = string_field(doc, "hostname");
  out.hostname = string_field(doc, "node");
  out.named_by_inventory = !out.hostname.empty();
  if (!out.named_by_inventory) {
    out.hostname = out.machine;
  }
  if (out.kind == ReportKind::other) {  // nothing more is read but what it says of itself; text from the file
    out.hostname = escaped_name(out.hostname);
    out.skipped_why = escape_control(out.skipped_why);
    // A saved fleet summary speaks of other reports, not of a run of its own: its exit code is theirs.
    if (string_field(doc, "kind") != "gpuwarm-fleet-summary") {
      out.skipped_problem = escape_control(reported_problem(doc));
    }
    return out;
  }
  if (out.hostname.empty()) {
    return fail("no hostname: cannot tell which node it describes");
  }
  Result<void> r;
  switch (*kind) {
    case ReportKind::diagnosis: r = read_diagnosis(doc, out); break;
    case ReportKind::fix: r = read_fix(doc, out); break;
    case ReportKind::verify: r = read_verify(doc, out); break;
    case ReportKind::probe: r = read_probe(doc, out); break;
    case ReportKind::other: break;
  }
  if (!r) {
    // A run that failed (a usage error, a gpuwarm that could not run) says so in its own document.
    if (std::string problem = reported_problem(doc); !problem.empty()) {
      return fail("a run that did not report: " + escape_control(problem));
    }
    return tl::unexpected(r.error());
  }
  // Reports come from every node: nothing in them may steer the operator's terminal.
  out.hostname = escaped_name(out.hostname);
  out.machine = escaped_name(out.machine);
  for (std::string* field : {&out.taken_at, &out.verdict, &out.fix_outcome}) {
    *field = escape_control(*field);
  }
  return out;
}

}  // namespace

std::vector<DocumentSpan> split_documents(std::string_view text) {
  std::vector<DocumentSpan> out;
  auto blank = [](std::string_view s) {
    return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
  };
  std::size_t start = 0;
  std::size_t start_line = 1;
  std::size_t line = 1;
  std::size_t pos = 0;
  while (true) {
    const void* hit = pos < text.size() ? std::memchr(text.data() + pos, '\n', text.size() - pos) : nullptr;
    if (hit == nullptr) {
      break;
    }
    std::size_t nl = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    ++line;
    pos = nl + 1;
    if (pos < text.size() && text[pos] == '{') {
      std::string_view piece = text.substr(start, pos - start);
      if (!blank(piece)) {
        out.push_back({start, piece.size(), start_line});
      }
      start = pos;
      start_line = line;
    }
  }
  std::string_view rest = text.substr(start);
  if (!blank(rest)) {
    out.push_back({start, rest.size(), start_line});
  }
  // Leading blank lines belong to no document: report the line its text starts on.
  for (auto& d : out) {
    std::string_view piece = text.substr(d.offset, d.length);
    std::size_t first = piece.find_first_not_of(" \t\r\n");
    d.line += static_cast<std::size_t>(
        std::count(piece.begin(), piece.begin() + static_cast<std::ptrdiff_t>(first), '\n'));
  }
  return out;
}

// One name, several machines: a hostname repeats across machines ("ubuntu", "localhost"), so reports under one name
// that share no GPU are not one node's, and the newest must not speak for the other. Reports are one machine's
// where they share a GPU UUID, and every report under an inventory name is that node's (a GPU replaced since is
// still the node). Each machine after the first (the inventory node's, where there is one) is named with its
// first GPU's UUID; reports listing no GPU join the one machine there is, or, beside several, stand apart.
std::vector<std::pair<std::string, std::vector<std::size_t>>> split_by_machine(const std::string& name,
                                                                              const std::vector<std::size_t>& indices,
                                                                              const std::vector<NodeReport>& reports) {
  std::vector<std::size_t> parent(indices.size());
  std::iota(parent.begin(), parent.end(), 0);
  auto find = [&parent](std::size_t x) {
    while (parent[x] != x) {
      x = parent[x] = parent[parent[x]];
    }
    return x;
  };
  auto unite = [&](std::size_t a, std::size_t b) { parent[find(a)] = find(b); };
  std::optional<std::size_t> inventory;
  std::unordered_map<std::string_view, std::size_t> first_with_uuid;
  for (std::size_t k = 0; k < indices.size(); ++k) {
    const NodeReport& r = reports[indices[k]];
    if (r.named_by_inventory) {
      inventory ? unite(k, *inventory) : void(inventory = k);
    }
    for (const auto& uuid : r.gpu_uuids) {
      auto [it, fresh] = first_with_uuid.emplace(uuid, k);
      if (!fresh) {
        unite(k, it->second);
      }
    }
  }
  // Machines: components with a GPU UUID or an inventory name; the rest list no GPU and cannot be placed.
  std::map<std::size_t, std::vector<std::size_t>> machines;
  for (std::size_t k = 0; k < indices.size(); ++k) {
    machines[find(k)].push_back(indices[k]);
  }
  std::vector<std::size_t> unplaced;
  std::erase_if(machines, [&](auto& entry) {
    const bool empty_machine = std::all_of(entry.second.begin(), entry.second.end(), [&](std::size_t i) {
      return reports[i].gpu_uuids.empty() && !reports[i].named_by_inventory;
    });
    if (empty_machine) {
      unplaced.insert(unplaced.end(), entry.second.begin(), entry.second.end());
    }
    return empty_machine;
  });
  if (machines.size() <= 1) {
    return {{name, indices}};
  }
  std::vector<std::pair<std::string, std::vector<std::size_t>>> out;
  for (auto& [root, members] : machines) {
    const bool inventory_node = inventory && find(*inventory) == root;
    std::string smallest;
    for (std::size_t i : members) {
      for (const auto& uuid : reports[i].gpu_uuids) {
        smallest = smallest.empty() ? uuid : std::min(smallest, uuid);
      }
    }
    out.emplace_back(inventory_node ? name : name + " [" + escape_control(smallest.substr(0, 12)) + "]", members);
  }
  if (!unplaced.empty()) {
    std::sort(unplaced.begin(), unplaced.end());
    out.emplace_back(name + " [no GPU UUID]", unplaced);
  }
  return out;
}

bool needs_attention(const NodeState& node) {
  if (node.probe_failed || node.verify_failed) {
    return true;
  }
  // A GPU meant to power down when idle (a laptop, a desktop): persistence off is by design there, and that
  // is all the verdict excuses.
  const bool fine_as_it_is = node.verdict == "healthy" || node.verdict == "persistence-optional";
  if (node.verdict != "persistence-optional" && gpu_not_enabled(node)) {
    return true;
  }
  if (node.fix_is_latest) {
    // The fix's outcome describes the node now: verify-failed, failed, locked or refused on a node whose
    // verdict was healthy still needs someone.
    return !(node.fix_outcome == "fixed" || (node.fix_outcome == "nothing-to-do" && fine_as_it_is));
  }
  return !fine_as_it_is;
}

FleetSummary summarize(std::vector<NodeReport> reports, std::vector<Unreadable> unreadable,
                       std::vector<Skipped> skipped) {
  FleetSummary s;
  auto other = std::stable_partition(reports.begin(), reports.end(),
                                     [](const NodeReport& r) { return r.kind != ReportKind::other; });
  for (auto it = other; it != reports.end(); ++it) {
    skipped.push_back({it->hostname, std::move(it->skipped_why), std::move(it->skipped_problem)});
  }
  reports.erase(other, reports.end());
  s.reports = reports.size() + unreadable.size();
  // One machine, two names: the role's reports carry the inventory name, a diagnose run by hand only the
  // machine's. Joined where the hostname and a GPU agree with exactly one inventory name, so the node is not
  // counted twice; a hostname alone proves nothing (every cloud image's "ubuntu").
  std::unordered_map<std::string, std::vector<std::size_t>> inventory_reports_of;  // "machine\0uuid" -> reports
  for (std::size_t i = 0; i < reports.size(); ++i) {
    if (reports[i].named_by_inventory && !reports[i].machine.empty()) {
      for (const auto& uuid : reports[i].gpu_uuids) {
        inventory_reports_of[reports[i].machine + '\0' + uuid].push_back(i);
      }
    }
  }
  std::unordered_map<std::string, std::vector<std::size_t>> by_host;
  std::unordered_map<std::string, std::vector<std::string>> joined;  // inventory name -> machine names joined
  by_host.reserve(reports.size());
  for (std::size_t i = 0; i < reports.size(); ++i) {
    NodeReport& r = reports[i];
    if (!r.named_by_inventory) {
      std::vector<std::string> candidates;
      for (const auto& uuid : r.gpu_uuids) {
        if (auto it = inventory_reports_of.find(r.machine + '\0' + uuid); it != inventory_reports_of.end()) {
          for (std::size_t j : it->second) {
            if (std::find(candidates.begin(), candidates.end(), reports[j].hostname) == candidates.end()) {
              candidates.push_back(reports[j].hostname);
            }
          }
        }
      }
      if (candidates.size() == 1) {
        auto& names = joined[candidates.front()];
        if (std::find(names.begin(), names.end(), r.hostname) == names.end()) {
          names.push_back(r.hostname);
        }
        r.hostname = candidates.front();
      }
    }
    by_host[r.hostname].push_back(i);
  }
  s.nodes.reserve(by_host.size());
  std::vector<std::pair<std::string, std::vector<std::size_t>>> nodes;
  for (auto& [host, indices] : by_host) {
    std::sort(indices.begin(), indices.end());  // input order, which a tie in taken_at falls back on
    for (auto& node : split_by_machine(host, indices, reports)) {
      nodes.push_back(std::move(node));
    }
  }
  for (auto& [host, indices] : nodes) {
    std::stable_sort(indices.begin(), indices.end(),
                     [&](std::size_t a, std::size_t b) { return reports[a].taken_at < reports[b].taken_at; });
    NodeState n;
    n.hostname = host;
    if (auto it = joined.find(host); it != joined.end()) {
      n.also_named = it->second;
    }
    for (std::size_t i : indices) {
      NodeReport& r = reports[i];
      ++n.reports;
      if (!r.verdict.empty()) n.verdict = r.verdict;
      if (!r.fix_outcome.empty()) n.fix_outcome = r.fix_outcome;
      // A fix speaks for the node until a newer diagnosis, even one that never got as far as a verdict (locked,
      // or its reading failed): that it did not fix the node is the newest word.
      if (!r.verdict.empty() || r.kind == ReportKind::fix) n.fix_is_latest = r.kind == ReportKind::fix;
      if (r.gpus) n.gpus = r.gpus;
      if (r.gpus_not_enabled) n.gpus_not_enabled = r.gpus_not_enabled;
      // The newest probe says what the per-GPU figures are, before and after together: never one probe's
      // baseline beside another probe's run, and a newest probe that failed leaves none.
      if (r.kind == ReportKind::probe && r.probed_gpus) {  // a --node probe times no GPU alone
        n.cold_before_ms = std::move(r.cold_before_ms);
        n.cold_after_ms = std::move(r.cold_after_ms);
        n.per_gpu_parallel = r.per_gpu_parallel;
        n.cold_before_counts = r.persistence_switched_on;
      }
      // The newest probe that measured job starts says what they are now, failures (no figure) included, and
      // what they were before only if it compared them: as for the per-GPU figures, never one probe's
      // baseline beside another probe's run.
      if (r.jobs_measured) {
        n.job_after_ms = r.job_after_ms;
        n.job_gpus = r.job_gpus;
        n.job_before_ms = r.jobs_compared ? r.job_before_ms : JobStartMs{};
        n.job_before_counts = r.persistence_switched_on;
      }
      if (r.kind == ReportKind::probe) n.probe_failed = r.probe_failed;
      // A verification speaks until a newer diagnosis or fix says what the node is.
      if (r.kind == ReportKind::verify) n.verify_failed = r.verify_failed;
      if (!r.verdict.empty()) n.verify_failed = false;
    }
    s.nodes.push_back(std::move(n));
  }
  std::sort(s.nodes.begin(), s.nodes.end(),
            [](const NodeState& a, const NodeState& b) { return a.hostname < b.hostname; });
  s.unreadable = std::move(unreadable);
  std::sort(s.unreadable.begin(), s.unreadable.end(),
            [](const Unreadable& a, const Unreadable& b) { return a.source < b.source; });
  s.skipped = std::move(skipped);
  std::sort(s.skipped.begin(), s.skipped.end(),
            [](const Skipped& a, const Skipped& b) { return a.source < b.source; });
  return s;
}

int exit_code(const FleetSummary& summary) {
  bool attention = !summary.unreadable.empty() || summary.nodes.empty() ||
                   std::any_of(summary.nodes.begin(), summary.nodes.end(), needs_attention) ||
                   std::any_of(summary.skipped.begin(), summary.skipped.end(),
                               [](const Skipped& k) { return !k.problem.empty(); });
  return attention ? 3 : 0;
}

std::string render_text(const FleetSummary& s, const Style& style) {
  std::string out = fmt::format("{} {} node{} from {} report{}{}{}\n\n", style.bold("gpuwarm fleet-summary:"),
                                s.nodes.size(), s.nodes.size() == 1 ? "" : "s", s.reports, s.reports == 1 ? "" : "s",
                                s.unreadable.empty() ? "" : fmt::format(" ({} unreadable)", s.unreadable.size()),
                                s.skipped.empty() ? "" : fmt::format("; {} other gpuwarm output skipped", s.skipped.size()));
  TextTable verdicts({style.bold("verdict"), style.bold("nodes")});
  for (const auto& t : verdict_tallies(s)) {
    std::string name = t.name == "healthy"        ? style.green(t.name)
                       : t.name == k_no_diagnosis ? style.dim(t.name)
                                                  : style.yellow(t.name);
    verdicts.add_row({name, std::to_string(t.nodes)});
  }
  out += verdicts.render("  ");
  auto outcomes = outcome_tallies(s);
  if (!outcomes.empty()) {
    TextTable t({style.bold("fix outcome"), style.bold("nodes")});
    for (const auto& o : outcomes) {
      t.add_row({o.name, std::to_string(o.nodes)});
    }
    out += "\n" + t.render("  ");
  }
  out += "\n";
  auto off = hostnames_where(s, gpu_not_enabled);
  auto reboot = hostnames_where(s, reboot_pending);
  auto probe_failed = hostnames_where(s, [](const NodeState& n) { return n.probe_failed; });
  auto attention = hostnames_where(s, needs_attention);
  // Only a diagnosis, fix or verify report reads persistence: nodes without one are not counted as fine.
  auto unread = hostnames_where(s, [](const NodeState& n) { return !n.gpus_not_enabled; });
  out += fmt::format("Nodes with a GPU not Enabled: {}{}{}\n", off.size(), off.empty() ? "" : " (" + name_list(off) + ")",
                     unread.empty() ? ""
                                    : fmt::format("; persistence not reported by {} node{} ({})", unread.size(),
                                                  unread.size() == 1 ? "" : "s", name_list(unread)));
  out += fmt::format("Nodes pending reboot: {}{}\n", reboot.size(), reboot.empty() ? "" : " (" + name_list(reboot) + ")");
  if (!probe_failed.empty()) {
    out += fmt::format("Nodes whose newest probe failed: {} ({})\n", probe_failed.size(), name_list(probe_failed));
  }
  if (auto unverified = hostnames_where(s, [](const NodeState& n) { return n.verify_failed; }); !unverified.empty()) {
    out += fmt::format("Nodes whose newest verification failed: {} ({})\n", unverified.size(), name_list(unverified));
  }
  ColdStart before = cold_start(s, &NodeState::cold_before_ms);
  ColdStart after = cold_start(s, &NodeState::cold_after_ms);
  if (before.median_ms || after.median_ms) {
    out += fmt::format("Cold start (a fresh process's CUDA start, probe TOTAL), median per GPU: before {}, after {}\n", cold_text(before),
                       cold_text(after));
  }
  if (auto contended = hostnames_where(s, [](const NodeState& n) { return n.per_gpu_parallel; }); !contended.empty()) {
    out += fmt::format("Per-GPU figures taken in parallel (contended), left out of the median: {} ({}); probe "
                       "them again without --parallel\n",
                       contended.size(), name_list(contended));
  }
  if (auto other = hostnames_where(s, before_without_persistence_change); !other.empty()) {
    out += fmt::format("Before/after left out, as the probe did not compare persistence off with on: {} "
                       "({}); compare a baseline taken with persistence off\n",
                       other.size(), name_list(other));
  }
  for (auto [how, title] : {std::pair{&JobStartMs::one_process, "one process, every GPU"},
                            std::pair{&JobStartMs::process_per_gpu, "a process per GPU"},
                            std::pair{&JobStartMs::process_per_gpu_all_visible, "a process per GPU, each seeing all"}}) {
    for (const auto& group : job_start_groups(s, how)) {
      out += job_start_group_text(group, title);
    }
  }
  std::vector<std::string> joins;
  for (const auto& n : s.nodes) {
    for (const auto& other : n.also_named) {
      joins.push_back(other + " -> " + n.hostname);
    }
  }
  if (!joins.empty()) {
    out += fmt::format("Reports without an inventory name joined by hostname and GPU UUID: {} ({})\n", joins.size(),
                       name_list(joins));
  }
  out += fmt::format("Needs attention: {}{}\n", attention.size(),
                     attention.empty() ? "" : " (" + name_list(attention) + ")");
  if (!s.unreadable.empty()) {
    out += fmt::format("\n{} ({}):\n", style.red("Unreadable reports"), s.unreadable.size());
    for (const auto& u : s.unreadable) {
      out += fmt::format("  {}: {}\n", u.source, u.error);
    }
  }
  if (!s.skipped.empty()) {
    out += fmt::format("\n{} ({}):\n", style.dim("Skipped: gpuwarm output fleet-summary does not read"),
                       s.skipped.size());
    for (const auto& k : s.skipped) {
      out += fmt::format("  {}: {}\n", k.source, k.why);
      if (!k.problem.empty()) {  // not folded, but not to be missed either
        out += fmt::format("    {} {}: look at it (needs attention)\n", style.yellow("!"), k.problem);
      }
    }
  }
  return out;
}

namespace {

// A name as JSON carries it: escaped_name's doubled backslashes undone (JSON tells a backslash from an escape byte
// itself), its \xHH and \uHHHH escapes kept. Exact, since every other backslash there starts such an escape.
std::string json_name(std::string_view shown) {
  std::string out;
  for (std::size_t i = 0; i < shown.size(); ++i) {
    out += shown[i];
    if (shown[i] == '\\' && i + 1 < shown.size() && shown[i + 1] == '\\') {
      ++i;
    }
  }
  return out;
}

std::vector<std::string> json_names(const std::vector<std::string>& shown) {
  std::vector<std::string> out;
  out.reserve(shown.size());
  for (const auto& name : shown) {
    out.push_back(json_name(name));
  }
  return out;
}

}  // namespace

nlohmann::json render_json(const FleetSummary& s) {
  auto tallies = [](const std::vector<Tally>& list, const char* key) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& t : list) {
      out.push_back({{key, t.name}, {"nodes", t.nodes}});
    }
    return out;
  };
  auto host_set = [](const std::vector<std::string>& names) {
    return nlohmann::json{{"nodes", names.size()}, {"hostnames", json_names(names)}};
  };
  nlohmann::json unreadable = nlohmann::json::array();
  for (const auto& u : s.unreadable) {
    unreadable.push_back({{"source", u.source}, {"error", u.error}});
  }
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& k : s.skipped) {
    skipped.push_back({{"source", k.source}, {"why", k.why}, {"problem", string_or_null(k.problem)}});
  }
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& n : s.nodes) {
    nodes.push_back({{"hostname", json_name(n.hostname)},
                     {"verdict", string_or_null(n.verdict)},
                     {"fix_outcome", string_or_null(n.fix_outcome)},
                     {"gpus", optional_json(n.gpus)},
                     {"gpus_not_enabled", optional_json(n.gpus_not_enabled)},
                     {"cold_start_before_ms", n.cold_before_ms},
                     {"cold_start_after_ms", n.cold_after_ms},
                     {"job_start_before_ms", job_start_node_json(n.job_before_ms)},
                     {"job_start_after_ms", job_start_node_json(n.job_after_ms)},
                     {"job_start_gpus", optional_json(n.job_gpus)},
                     {"cold_start_before_counts", n.cold_before_counts},
                     {"job_start_before_counts", n.job_before_counts},
                     {"probe_failed", n.probe_failed},
                     {"verify_failed", n.verify_failed},
                     {"reports", n.reports},
                     {"also_named", json_names(n.also_named)},
                     {"needs_attention", needs_attention(n)}});
  }
  return {{"kind", "gpuwarm-fleet-summary"},
          {"schema_version", 1},
          {"reports", s.reports},
          {"nodes", s.nodes.size()},
          {"verdicts", tallies(verdict_tallies(s), "verdict")},
          {"fix_outcomes", tallies(outcome_tallies(s), "outcome")},
          {"gpu_not_enabled", host_set(hostnames_where(s, gpu_not_enabled))},
          {"persistence_not_reported", host_set(hostnames_where(s, [](const NodeState& n) { return !n.gpus_not_enabled; }))},
          {"reboot_pending", host_set(hostnames_where(s, reboot_pending))},
          {"probe_failed", host_set(hostnames_where(s, [](const NodeState& n) { return n.probe_failed; }))},
          {"verify_failed", host_set(hostnames_where(s, [](const NodeState& n) { return n.verify_failed; }))},
          {"per_gpu_parallel", host_set(hostnames_where(s, [](const NodeState& n) { return n.per_gpu_parallel; }))},
          {"before_without_persistence_change", host_set(hostnames_where(s, before_without_persistence_change))},
          {"needs_attention", host_set(hostnames_where(s, needs_attention))},
          {"cold_start_ms",
           {{"before", cold_json(cold_start(s, &NodeState::cold_before_ms))},
            {"after", cold_json(cold_start(s, &NodeState::cold_after_ms))}}},
          {"job_start_ms",
           {{"one_process",
             {{"before", job_start_json(job_start(s, &NodeState::job_before_ms, &JobStartMs::one_process))},
              {"after", job_start_json(job_start(s, &NodeState::job_after_ms, &JobStartMs::one_process))}}},
            {"process_per_gpu",
             {{"before", job_start_json(job_start(s, &NodeState::job_before_ms, &JobStartMs::process_per_gpu))},
              {"after", job_start_json(job_start(s, &NodeState::job_after_ms, &JobStartMs::process_per_gpu))}}},
            {"process_per_gpu_all_visible",
             {{"before", job_start_json(job_start(s, &NodeState::job_before_ms,
                                                  &JobStartMs::process_per_gpu_all_visible))},
              {"after", job_start_json(job_start(s, &NodeState::job_after_ms,
                                                 &JobStartMs::process_per_gpu_all_visible))}}}}},
          {"job_start_by_gpus",
           {{"one_process", job_start_groups_json(s, &JobStartMs::one_process)},
            {"process_per_gpu", job_start_groups_json(s, &JobStartMs::process_per_gpu)},
            {"process_per_gpu_all_visible", job_start_groups_json(s, &JobStartMs::process_per_gpu_all_visible)}}},
          {"unreadable", unreadable},
          {"skipped", skipped},
          {"node_reports", nodes}};
}

}  // namespace gpuwarm::fleet
