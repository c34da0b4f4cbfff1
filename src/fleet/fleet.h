#pragma once
// `gpuwarm fleet-summary`: many nodes' saved reports (diagnose, fix, verify and
// probe JSON) folded into one fleet view. Pure: the caller reads the files and
// hands over text; parsing (simdjson, so 10,000 reports take well under a
// second) and folding do no I/O.

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "output/style.h"

namespace gpuwarm::fleet {

// `other`: valid gpuwarm output fleet-summary does not fold (a snapshot, a watch run, check, lint, reset, a
// newer writer's kind); it is listed as skipped, with what to run instead, and is no fault of the node's.
enum class ReportKind { diagnosis, fix, verify, probe, other };

// A node's job start (probe: launch until every GPU is ready), by how the job started.
struct JobStartMs {
  std::optional<double> one_process;
  std::optional<double> process_per_gpu;
  std::optional<double> process_per_gpu_all_visible;
};

// What one report says about its node; a field the report's kind does not carry stays empty.
struct NodeReport {
  ReportKind kind = ReportKind::diagnosis;
  std::string hostname;                 // the report's `node` (the Ansible inventory name) or else `hostname`
  std::string machine;                  // the report's own `hostname` (the name the machine gives itself), or ""
  bool named_by_inventory = false;      // `hostname` above came from `node`
  std::vector<std::string> gpu_uuids;   // the GPUs it lists (diagnosis, fix, verify, probe), where they carry one
  std::string taken_at;                 // ISO 8601 UTC; "" when the report has none
  std::string verdict;                  // diagnosis, fix (the verdict the fix was planned from)
  std::string fix_outcome;              // fix: see fix_outcome_names()
  std::optional<int> gpus;              // GPUs listed
  std::optional<int> gpus_not_enabled;  // of those, persistence not "Enabled" (after the fix, for a fix report)
  std::vector<double> cold_before_ms;   // probe --compare: each GPU's baseline total
  std::vector<double> cold_after_ms;    // probe: each GPU's total in this run (successful probes only)
  JobStartMs job_before_ms;             // probe --compare: the baseline's job starts
  JobStartMs job_after_ms;              // probe: this run's job starts (successful ones only)
  bool jobs_measured = false;           // probe: job starts were attempted (job_after_ms then replaces older ones)
  bool jobs_compared = false;           // probe --compare: the baseline had job starts
  // probe --compare: persistence read off (on some GPUs at least) in the baseline and on now, so that its
  // before/after is what enabling persistence changed.
  bool persistence_switched_on = false;
  std::optional<unsigned> job_gpus;     // probe: GPUs the job starts covered
  bool probe_failed = false;            // probe: a GPU or a job start failed or timed out
  bool per_gpu_parallel = false;        // probe: its per-GPU figures were taken in parallel (contended: not used)
  bool probed_gpus = false;             // probe: it timed GPUs one by one (a --node probe times only jobs)
  bool verify_failed = false;           // verify: `passed` is not true (false, absent or not a boolean)
  std::string skipped_why;              // other: what it is and what fleet-summary reads instead
  std::string skipped_problem;          // other: what it reports as wrong (exit_code not 0, an error), or ""
};

// Fix outcomes as fleet-summary names them, in display order.
const std::vector<std::string>& fix_outcome_names();

// Bytes that must be readable after a document handed to ReportParser::parse (simdjson reads ahead).
std::size_t parse_padding();

// One parser per thread; it keeps its buffers between documents.
class ReportParser {
 public:
  ReportParser();
  ~ReportParser();
  ReportParser(const ReportParser&) = delete;
  ReportParser& operator=(const ReportParser&) = delete;
  // `json` must be followed by parse_padding() readable bytes.
  Result<NodeReport> parse(std::string_view json);
  // `json` read as one JSON text: one report (an object), or a report per element (an array, `jq -s`'s
  // output). An error when it is not one JSON text (JSON lines, a truncated report: split it instead).
  Result<std::vector<Result<NodeReport>>> parse_whole(std::string_view json);

 private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

// A document inside a larger text: a file holding one pretty-printed report, or JSON lines.
struct DocumentSpan {
  std::size_t offset = 0;
  std::size_t length = 0;
  std::size_t line = 1;  // 1-based line the document starts on
};
// A document starts at the text's first non-blank byte or at a '{' that begins a line (a raw newline
// can only sit between tokens, and pretty-printed reports indent everything but their outer braces).
// Blank stretches are dropped; anything else before the first '{' is its own (unreadable) span.
std::vector<DocumentSpan> split_documents(std::string_view text);

struct Unreadable {
  std::string source;  // path, or path:line / <stdin>:line
  std::string error;
};

// Valid gpuwarm output of a kind fleet-summary does not fold (ReportKind::other).
struct Skipped {
  std::string source;  // as Unreadable's
  std::string why;
  std::string problem;  // what it reports as wrong, or "": then it needs attention, though it is not folded
};

// One node after folding its reports, oldest first (taken_at, then input order).
struct NodeState {
  std::string hostname;
  std::string verdict;      // "" when no report carried one
  std::string fix_outcome;  // "" when no fix report
  bool fix_is_latest = false;  // no diagnosis came after the fix (its outcome still describes the node)
  std::optional<int> gpus;
  std::optional<int> gpus_not_enabled;
  std::vector<double> cold_before_ms;
  std::vector<double> cold_after_ms;
  JobStartMs job_before_ms;
  JobStartMs job_after_ms;
  std::optional<unsigned> job_gpus;
  // Whether each "before" is from a comparison that switched persistence on (its probe's own word: the per-GPU
  // figures and the job starts may come from different probes).
  bool cold_before_counts = false;
  bool job_before_counts = false;
  bool probe_failed = false;  // the newest probe report says a probe failed
  bool per_gpu_parallel = false;  // the newest probe's per-GPU figures were contended (left out of the medians)
  bool verify_failed = false;  // a verify report failed and no diagnosis or fix came after it
  int reports = 0;
  std::vector<std::string> also_named;  // machine hostnames of reports without `node` joined into this node
};

// Healthy now: no GPU known to be off persistence, the newest probe (if any) did not fail, no failed
// verification since the last diagnosis, and either the newest fix fixed and verified (fixed, or
// nothing-to-do on a healthy node: any other outcome needs attention whatever the verdict) or, with no fix
// newer than the diagnosis, the verdict is healthy.
bool needs_attention(const NodeState& node);

struct FleetSummary {
  std::size_t reports = 0;          // documents read, unreadable ones included, skipped ones not
  std::vector<NodeState> nodes;     // by hostname
  std::vector<Unreadable> unreadable;  // by source
  std::vector<Skipped> skipped;        // by source; not counted in `reports`; attention only where it reports a problem
};

// What the verdict table calls a node no report gave a verdict (only probes or verifications describe it).
inline constexpr const char* k_no_diagnosis = "no-diagnosis";

// `reports` in input order (the order breaks taken_at ties). A report without `node` (diagnose --json run by
// hand or by pdsh) joins an inventory-named node only where exactly one such node has a report from the same
// machine hostname listing one of the same GPUs (by UUID): hostnames repeat across machines (vm, ubuntu),
// GPU UUIDs do not. Otherwise it stays a node of its own.
// Reports of kind `other` join `skipped`, named by their hostname (the caller, which knows their files, should
// move them there itself).
FleetSummary summarize(std::vector<NodeReport> reports, std::vector<Unreadable> unreadable,
                       std::vector<Skipped> skipped = {});

// 0: every node healthy, every report readable, no skipped output reporting a problem; 3: something needs
// attention.
int exit_code(const FleetSummary& summary);

std::string render_text(const FleetSummary& summary, const Style& style);
nlohmann::json render_json(const FleetSummary& summary);

}  // namespace gpuwarm::fleet
