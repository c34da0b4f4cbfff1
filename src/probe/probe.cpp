#include "probe/probe.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "core/json_number.h"
#include "core/json_strings.h"
#include "core/report_kind.h"
#include "core/strings.h"
#include "output/table.h"

namespace gpuwarm {

namespace {
const char* const k_stage_order[] = {"load_libcuda", "nvml_init", "cu_init", "device_get",
                                     "ctx_retain",   "alloc_sync", "ctx_release"};
// A job is ready once the last allocation synchronized: release is not part of what it pays.
const char* const k_job_stage_order[] = {"load_libcuda", "nvml_init", "cu_init", "device_get", "ctx_retain",
                                         "alloc_sync"};

// A stage's time in a list of stages, summed over its entries (a process that starts several GPUs has one
// per GPU for the per-device stages); unset when the stage never completed.
std::optional<double> stage_ms(const std::vector<cuda::Stage>& stages, const std::string& name) {
  std::optional<double> sum;
  for (const auto& s : stages) {
    if (s.name == name) {
      sum = sum.value_or(0) + s.ms;
    }
  }
  return sum;
}

const GpuProbe* match(const ProbeRun& run, const GpuProbe& g) {
  for (const auto& other : run.gpus) {
    if (!g.uuid.empty() && other.uuid == g.uuid) {
      return &other;
    }
  }
  for (const auto& other : run.gpus) {
    if (!g.pci_bus_id.empty() && other.pci_bus_id == g.pci_bus_id) {
      return &other;
    }
  }
  return nullptr;
}

const JobStart* match_job(const ProbeRun& run, const JobStart& j) {
  for (const auto& other : run.jobs) {
    if (other.method == j.method) {
      return &other;
    }
  }
  return nullptr;
}

bool same_node(const ProbeRun& before, const ProbeRun& after) {
  return before.hostname.empty() || after.hostname.empty() || before.hostname == after.hostname;
}

// The UUIDs of the GPUs a job started (its processes' CUDA_VISIBLE_DEVICES), lower case and sorted; empty when
// any process lacks them.
std::vector<std::string> job_uuids(const JobStart& j) {
  std::set<std::string> out;
  for (const auto& p : j.processes) {
    if (p.uuid.empty()) {
      return {};
    }
    for (auto part : split(p.uuid, ',')) {
      out.insert(to_lower(std::string(part)));
    }
  }
  return {out.begin(), out.end()};
}

// A job start is compared only with one of the same node on the same GPUs: a start on 8 GPUs against one on
// 2 (or another node's) would show the change in count as a change in persistence.
std::string job_incomparable(const ProbeRun& before, const JobStart& then, const ProbeRun& after,
                             const JobStart& now) {
  if (!same_node(before, after)) {
    return fmt::format("the baseline is from another node ({})", before.hostname);
  }
  if (then.gpus != now.gpus) {
    return fmt::format("the baseline started {} GPU(s), this run {}", then.gpus, now.gpus);
  }
  // review-s53-diff L5: a job whose processes let go of their contexts as each was ready counted the driver's
  // serialized release of the first ones in the READY of the last: another measure, not a slower start.
  if (then.processes.size() > 1 && then.ranks_held != now.ranks_held) {
    return then.ranks_held ? "this run's processes let go of their contexts as each was ready, the baseline's held "
                             "them until all were: READY is not measured alike"
                           : "the baseline's processes let go of their contexts as each was ready (saved by an "
                             "earlier gpuwarm), this run's held them until all were: READY is not measured alike; "
                             "save a new baseline";
  }
  // The same GPUs by UUID (review-s53-probe L3): NVML numbers a Slurm step's GPUs from 0, so equal indices
  // may be other GPUs, and a swapped GPU keeps its index; indices decide only for a baseline without UUIDs.
  const auto then_uuids = job_uuids(then);
  const auto now_uuids = job_uuids(now);
  if (!then_uuids.empty() && !now_uuids.empty()) {
    if (then_uuids != now_uuids) {
      return fmt::format("the baseline started GPU {}, this run GPU {}", fmt::join(then_uuids, ","),
                         fmt::join(now_uuids, ","));
    }
  } else if (!then.gpu_indices.empty() && !now.gpu_indices.empty() && then.gpu_indices != now.gpu_indices) {
    return fmt::format("the baseline started GPU {}, this run GPU {}", fmt::join(then.gpu_indices, ","),
                       fmt::join(now.gpu_indices, ","));
  }
  return {};
}

std::string failure_text(const GpuProbe& g) {
  std::string round;
  if (g.failed_rounds > 1) {
    round = fmt::format(" (round {}; {} of {} rounds failed)", g.failed_round, g.failed_rounds,
                        g.failed_rounds + g.total_samples_ms.size());
  } else if (g.failed_rounds == 1) {
    round = fmt::format(" (round {} of {})", g.failed_round, 1 + g.total_samples_ms.size());
  } else if (g.failed_round > 0) {  // a job's process: the job's line says how many rounds failed
    round = fmt::format(" (round {})", g.failed_round);
  }
  if (g.timed_out) {
    return "timed out" + round;
  }
  if (!g.child_error.empty()) {
    return g.child_error + round;
  }
  return g.result.failed_stage + ": " + g.result.error + round;
}

std::string range_text(const std::vector<double>& samples) {
  if (samples.size() < 2) {
    return "-";
  }
  auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
  return fmt::format("{:.1f}-{:.1f}", *lo, *hi);
}

nlohmann::json samples_json(const std::vector<double>& samples) {
  return samples.empty() ? nlohmann::json(nullptr) : nlohmann::json(samples);
}

std::vector<double> samples_from_json(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || !j.at(key).is_array()) {
    return {};
  }
  return j.at(key).get<std::vector<double>>();
}

std::string state_text(const GpuPersistence& p) {
  return p.enabled ? (*p.enabled ? "Enabled" : "Disabled") : "not read";
}

std::string persistence_states_text(const std::vector<GpuPersistence>& gpus);

// What keeps GPUs that read Disabled warm all the same: "; GPU 0 held open by dcgm-exporter (pid 812), warm
// whatever persistence reads".
std::string holders_text(const std::vector<GpuPersistence>& gpus) {
  std::string out;
  for (const auto& g : gpus) {
    if (!g.held_by.empty()) {
      out += fmt::format("; GPU {} held open by {}, warm whatever persistence reads", g.index, fmt::join(g.held_by, ", "));
    } else if (!g.holders_unread.empty()) {
      out += fmt::format("; GPU {} may be held open by another process ({}), so it may be warm", g.index,
                         g.holders_unread);
    }
  }
  return out;
}

// "Enabled on every GPU", or each state with its GPUs ("Disabled on GPU 0; Enabled on GPU 1"), unread
// ones with why; then what holds a Disabled GPU warm.
std::string persistence_text(const std::vector<GpuPersistence>& gpus) {
  if (gpus.empty()) {
    return "not recorded";
  }
  return persistence_states_text(gpus) + holders_text(gpus);
}

std::string persistence_states_text(const std::vector<GpuPersistence>& gpus) {
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;  // state -> GPUs, in first-seen order
  for (const auto& g : gpus) {
    std::string state = state_text(g);
    std::string who = std::to_string(g.index) + (g.enabled ? "" : " (" + g.unread + ")");
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& e) { return e.first == state; });
    if (it == groups.end()) {
      groups.push_back({state, {who}});
    } else {
      it->second.push_back(who);
    }
  }
  if (groups.size() == 1 && groups.front().first != "not read") {
    return groups.front().first + (gpus.size() == 1 ? " on GPU " + groups.front().second.front() : " on every GPU");
  }
  std::string out;
  for (const auto& [state, who] : groups) {
    out += fmt::format("{}{} on GPU {}", out.empty() ? "" : "; ", state, fmt::join(who, ", "));
  }
  return out;
}

// Names the GPU a job's process failed on by its NVML index (the CUDA ordinal inside the process means
// nothing outside it).
std::string job_failure_text(const JobStart& j, const GpuProbe& p) {
  if (j.method != k_job_one_process) {
    return fmt::format(", GPU {}: {}", p.index, failure_text(p));
  }
  const int d = p.result.failed_device;
  if (probe_ok(p) || p.timed_out || !p.child_error.empty() || d < 0 ||
      static_cast<std::size_t>(d) >= j.gpu_indices.size()) {
    return ": " + failure_text(p);
  }
  return fmt::format(", GPU {}: {}", j.gpu_indices[static_cast<std::size_t>(d)], failure_text(p));
}

std::string job_title(const JobStart& j) {
  if (j.method == k_job_one_process) {
    return "one process, every GPU";
  }
  if (j.method == k_job_process_per_gpu_all_visible) {
    return fmt::format("a process per GPU ({}), each seeing all", j.processes.size());
  }
  return fmt::format("a process per GPU ({})", j.processes.size());
}

std::string ms_text(std::optional<double> ms) { return ms ? fmt::format("{:.1f}", *ms) : "-"; }

nlohmann::json ms_json(std::optional<double> ms) { return ms ? nlohmann::json(*ms) : nlohmann::json(nullptr); }

nlohmann::json gpu_probe_json(const GpuProbe& g) {
  nlohmann::json j = cuda::to_json(g.result);
  j["index"] = g.index;
  j["uuid"] = g.uuid;
  j["pci_bus_id"] = g.pci_bus_id;
  j["timed_out"] = g.timed_out;
  j["child_error"] = g.child_error;
  j["wall_ms"] = g.wall_ms;
  j["total_ms"] = probe_ok(g) ? nlohmann::json(total_ms(g.result)) : nlohmann::json(nullptr);  // a failure has no time
  j["launch_to_ready_ms"] = ms_json(g.launch_to_ready_ms);
  j["ok"] = probe_ok(g);
  j["total_samples_ms"] = samples_json(g.total_samples_ms);
  j["failed_round"] = g.failed_round > 0 ? nlohmann::json(g.failed_round) : nlohmann::json(nullptr);
  j["failed_rounds"] = g.failed_rounds;
  return j;
}

GpuProbe gpu_probe_from_json(const nlohmann::json& g) {
  GpuProbe p;
  p.index = whole_number<unsigned>(g.at("index"), "index");
  p.result = cuda::cold_start_from_json(g);
  p.uuid = g.value("uuid", "");
  p.pci_bus_id = g.value("pci_bus_id", "");
  p.timed_out = g.value("timed_out", false);
  p.child_error = g.value("child_error", "");
  p.wall_ms = g.value("wall_ms", 0.0);
  if (g.contains("launch_to_ready_ms") && g.at("launch_to_ready_ms").is_number()) {
    p.launch_to_ready_ms = g.at("launch_to_ready_ms").get<double>();
  }
  p.total_samples_ms = samples_from_json(g, "total_samples_ms");
  p.failed_round = whole_number_or(g, "failed_round", 0u);
  p.failed_rounds = whole_number_or(g, "failed_rounds", 0u);
  return p;
}

// Below this, a stage's percentage change is timer noise, not a finding.
constexpr double k_min_ms_for_change = 1.0;

// One before/after table: a row per stage, then the total.
class ChangeTable {
 public:
  explicit ChangeTable(bool comparable = true) : m_comparable(comparable) {}
  // `within` marks a total whose rounds overlap the baseline's: the change is inside the run-to-run spread.
  void add(const std::string& name, std::optional<double> then, std::optional<double> now, bool within = false) {
    std::string change = "-";
    if (m_comparable && then && now && *then > 0) {
      if (std::max(*then, *now) < k_min_ms_for_change) {
        change = "< 1 ms";
      } else {
        const double percent = (*now - *then) / *then * 100.0;
        // Rounded to a whole percent, a change under half of one reads "0%", never "-0%".
        change = fmt::format("{}%{}", std::abs(percent) < 0.5 ? "0" : fmt::format("{:+.0f}", percent),
                             within ? ", within spread" : "");
      }
    }
    m_table.add_row({"  " + name, ms_text(then), ms_text(now), change});
  }
  std::string render() const { return m_table.render(); }

 private:
  bool m_comparable;
  TextTable m_table{{"  stage", "before ms", "after ms", "change"}};
};
}  // namespace

bool probe_ok(const GpuProbe& g) { return !g.timed_out && g.child_error.empty() && g.result.failed_stage.empty(); }

double total_ms(const cuda::ColdStart& c) {
  double t = 0;
  for (const auto& s : c.stages) {
    t += s.ms;
  }
  return t;
}

bool job_ok(const JobStart& j) {
  return !j.processes.empty() && std::all_of(j.processes.begin(), j.processes.end(), probe_ok);
}

std::optional<double> job_ready_ms(const JobStart& j) {
  if (!job_ok(j)) {
    return std::nullopt;
  }
  double slowest = 0;
  for (const auto& p : j.processes) {
    if (!p.launch_to_ready_ms) {
      return std::nullopt;
    }
    slowest = std::max(slowest, *p.launch_to_ready_ms);
  }
  return slowest;
}

// Without the failed stage for a comparison: set against a baseline's whole stage, a cuInit that failed at once
// read as "-97 %".
std::vector<cuda::Stage> job_stages(const JobStart& j, bool with_failed_stage) {
  // A job that failed shows the process that failed, up to and including the stage it failed in: another
  // process's stages would read as the failed one's.
  const GpuProbe* shown = nullptr;
  for (const auto& p : j.processes) {
    if (!probe_ok(p)) {
      shown = &p;
      break;
    }
    if (shown == nullptr || p.launch_to_ready_ms.value_or(-1) > shown->launch_to_ready_ms.value_or(-1)) {
      shown = &p;
    }
  }
  std::vector<cuda::Stage> out;
  if (shown == nullptr) {
    return out;
  }
  const cuda::ColdStart& r = shown->result;
  for (const char* name : k_job_stage_order) {
    if (r.failed_stage == name && !with_failed_stage) {
      break;  // neither it nor a later stage: on several GPUs, device 0's part of it would read as the whole
    }
    std::optional<double> ms = stage_ms(r.stages, name);
    if (r.failed_stage == name) {
      ms = ms.value_or(0) + r.failed_ms;
    }
    if (ms) {
      out.push_back({name, *ms, -1});
    }
  }
  return out;
}

std::optional<double> slowest_isolated_ready_ms(const ProbeRun& run) {
  if (run.method != k_method_isolated || run.gpus.empty()) {
    return std::nullopt;
  }
  double slowest = 0;
  for (const auto& g : run.gpus) {
    if (!probe_ok(g) || !g.launch_to_ready_ms) {
      return std::nullopt;
    }
    slowest = std::max(slowest, *g.launch_to_ready_ms);
  }
  return slowest;
}

namespace {
// The round to show: the first that failed (with how many did), else the one with the median figure (the
// lower of the two middle ones for an even count: a round that happened). `figure_of` is unset for a
// failed round; `samples` receives the figures of the rounds that succeeded, in round order.
template <typename Round, typename FigureOf>
Round pick_round(const std::vector<Round>& rounds, FigureOf figure_of, std::vector<double> Round::*samples) {
  if (rounds.empty()) {
    return Round{};
  }
  std::vector<double> figures;
  std::vector<std::size_t> succeeded;
  std::optional<std::size_t> first_failed;
  unsigned failed = 0;
  for (std::size_t i = 0; i < rounds.size(); ++i) {
    if (auto figure = figure_of(rounds[i])) {
      figures.push_back(*figure);
      succeeded.push_back(i);
    } else {
      ++failed;
      first_failed = first_failed.value_or(i);
    }
  }
  if (rounds.size() == 1) {
    return rounds.front();
  }
  if (first_failed) {
    Round out = rounds[*first_failed];
    out.failed_round = static_cast<unsigned>(*first_failed + 1);
    out.failed_rounds = failed;
    out.*samples = std::move(figures);
    return out;
  }
  std::vector<std::size_t> order(figures.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return figures[a] < figures[b]; });
  Round out = rounds[succeeded[order[(order.size() - 1) / 2]]];
  out.*samples = std::move(figures);
  return out;
}
}  // namespace

GpuProbe median_round(const std::vector<GpuProbe>& rounds) {
  return pick_round(
      rounds, [](const GpuProbe& g) { return probe_ok(g) ? std::optional(total_ms(g.result)) : std::nullopt; },
      &GpuProbe::total_samples_ms);
}

JobStart median_round(const std::vector<JobStart>& rounds) {
  JobStart out = pick_round(rounds, [](const JobStart& j) { return job_ready_ms(j); }, &JobStart::ready_samples_ms);
  for (auto& p : out.processes) {
    if (probe_ok(p) && !p.launch_to_ready_ms) {
      p.child_error = "the probe child reported no ready instant";  // succeeded, yet never said when
    }
    if (!probe_ok(p)) {
      p.failed_round = out.failed_round;
    }
  }
  return out;
}

bool may_be_held_warm(const GpuPersistence& p) {
  return p.enabled == false && (!p.held_by.empty() || !p.holders_unread.empty());
}

std::string persistence_summary(const ProbeRun& run) {
  if (run.persistence.empty()) {
    return "not recorded";
  }
  bool on = false;
  bool off = false;
  for (const auto& g : run.persistence) {
    if (!g.enabled) {
      return "unknown";
    }
    (*g.enabled ? on : off) = true;
  }
  return on && off ? "mixed" : on ? "enabled" : "disabled";
}

bool within_spread(const std::vector<double>& before, const std::vector<double>& after) {
  if (before.size() < 2 || after.size() < 2) {
    return false;
  }
  auto [b_lo, b_hi] = std::minmax_element(before.begin(), before.end());
  auto [a_lo, a_hi] = std::minmax_element(after.begin(), after.end());
  return *a_lo <= *b_hi && *b_lo <= *a_hi;
}

nlohmann::json probe_to_json(const ProbeRun& run) {
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : run.gpus) {
    gpus.push_back(gpu_probe_json(g));
  }
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& j : run.jobs) {
    nlohmann::json processes = nlohmann::json::array();
    for (const auto& p : j.processes) {
      processes.push_back(gpu_probe_json(p));
    }
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& s : job_stages(j)) {
      stages.push_back({{"name", s.name}, {"ms", s.ms}});
    }
    jobs.push_back({{"method", j.method}, {"gpus", j.gpus}, {"gpu_indices", j.gpu_indices}, {"ok", job_ok(j)},
                    {"ready_ms", ms_json(job_ready_ms(j))}, {"wall_ms", j.wall_ms}, {"stages", stages},
                    {"processes", processes}, {"ready_samples_ms", samples_json(j.ready_samples_ms)},
                    {"failed_round", j.failed_round > 0 ? nlohmann::json(j.failed_round) : nlohmann::json(nullptr)},
                    {"failed_rounds", j.failed_rounds}, {"ranks_held", j.ranks_held}});
  }
  nlohmann::json persistence = nlohmann::json::array();
  for (const auto& p : run.persistence) {
    persistence.push_back({{"index", p.index},
                           {"uuid", p.uuid},
                           {"enabled", p.enabled ? nlohmann::json(*p.enabled) : nlohmann::json(nullptr)},
                           {"unread", p.enabled ? nlohmann::json(nullptr) : nlohmann::json(p.unread)},
                           {"held_by", p.held_by},
                           {"holders_unread",
                            p.holders_unread.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.holders_unread)}});
  }
  return {{"schema_version", k_probe_schema_version},
          {"kind", "gpuwarm-probe"},
          {"hostname", run.hostname},
          {"taken_at", run.taken_at},
          {"wall_ms", run.wall_ms},
          {"method", run.method.empty() ? nlohmann::json(nullptr) : nlohmann::json(run.method)},
          {"sequential", run.method == k_method_isolated},  // schema 1's name for the isolated method
          {"slowest_isolated_ready_ms", ms_json(slowest_isolated_ready_ms(run))},
          {"gpus", gpus},
          {"jobs", jobs},
          {"jobs_skipped", run.jobs_skipped.empty() ? nlohmann::json(nullptr) : nlohmann::json(run.jobs_skipped)},
          {"rounds", run.rounds},
          {"job_rounds", run.job_rounds},
          {"job_rounds_short", run.job_rounds_short.empty() ? nlohmann::json(nullptr) : nlohmann::json(run.job_rounds_short)},
          {"persistence_summary", persistence_summary(run)},
          {"persistence", persistence}};
}

Result<ProbeRun> probe_from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    return fail("not a gpuwarm probe result (save one with `gpuwarm probe --save`)");
  }
  if (j.contains("kind") && j.at("kind").is_string() && j.at("kind") != "gpuwarm-probe") {
    return fail("this is " + describe_report_kind(j.at("kind").get<std::string>()) +
                ", not a probe result (save one with `gpuwarm probe --save`)");
  }
  if (!j.contains("kind") || !j.at("kind").is_string() || j.at("kind") != "gpuwarm-probe") {
    return fail("not a gpuwarm probe result (save one with `gpuwarm probe --save`)");
  }
  const nlohmann::json* version = j.contains("schema_version") ? &j.at("schema_version") : nullptr;
  if (version == nullptr || !version->is_number_integer() || version->get<int>() < 1 ||
      version->get<int>() > k_probe_schema_version) {
    return fail("probe schema_version " + (version != nullptr ? describe_value(*version) : std::string("missing")) +
                " is not supported (this gpuwarm reads 1 to " + std::to_string(k_probe_schema_version) + ")");
  }
  try {
    ProbeRun run;
    run.hostname = j.value("hostname", "");
    run.taken_at = j.value("taken_at", "");
    run.wall_ms = j.value("wall_ms", 0.0);
    if (j.contains("jobs_skipped") && j.at("jobs_skipped").is_string()) {
      run.jobs_skipped = j.at("jobs_skipped").get<std::string>();
    }
    if (j.contains("method") && j.at("method").is_string()) {
      run.method = j.at("method").get<std::string>();
    } else if (!j.contains("method")) {  // schema 1
      run.method = j.value("sequential", false) ? k_method_isolated : k_method_parallel;
    }
    for (const auto& g : j.at("gpus")) {
      run.gpus.push_back(gpu_probe_from_json(g));
    }
    if (j.contains("jobs")) {
      for (const auto& js : j.at("jobs")) {
        JobStart job;
        job.method = js.at("method").get<std::string>();
        job.gpus = whole_number_or(js, "gpus", 0u);
        job.wall_ms = js.value("wall_ms", 0.0);
        if (js.contains("gpu_indices")) {
          for (const auto& index : js.at("gpu_indices")) {
            job.gpu_indices.push_back(whole_number<unsigned>(index, "gpu_indices"));
          }
        }
        for (const auto& p : js.at("processes")) {
          job.processes.push_back(gpu_probe_from_json(p));
        }
        job.ready_samples_ms = samples_from_json(js, "ready_samples_ms");
        job.failed_round = whole_number_or(js, "failed_round", 0u);
        job.failed_rounds = whole_number_or(js, "failed_rounds", 0u);
        job.ranks_held = js.contains("ranks_held") && js.at("ranks_held").is_boolean() && js.at("ranks_held").get<bool>();
        run.jobs.push_back(std::move(job));
      }
    }
    run.rounds = std::max(1u, whole_number_or(j, "rounds", 1u));
    // Older files: the job starts had every round.
    run.job_rounds = whole_number_or(j, "job_rounds", run.jobs.empty() ? 0u : run.rounds);
    if (j.contains("job_rounds_short") && j.at("job_rounds_short").is_string()) {
      run.job_rounds_short = j.at("job_rounds_short").get<std::string>();
    }
    if (j.contains("persistence") && j.at("persistence").is_array()) {
      for (const auto& p : j.at("persistence")) {
        GpuPersistence g;
        g.index = whole_number<unsigned>(p.at("index"), "index");
        g.uuid = p.value("uuid", "");
        if (p.contains("enabled") && p.at("enabled").is_boolean()) {
          g.enabled = p.at("enabled").get<bool>();
        } else {
          g.unread = p.contains("unread") && p.at("unread").is_string() ? p.at("unread").get<std::string>()
                                                                         : "not recorded";
        }
        if (p.contains("held_by") && p.at("held_by").is_array()) {
          for (const auto& who : p.at("held_by")) {
            g.held_by.push_back(who.is_string() ? who.get<std::string>() : describe_value(who));
          }
        }
        if (p.contains("holders_unread") && p.at("holders_unread").is_string()) {
          g.holders_unread = p.at("holders_unread").get<std::string>();
        }
        run.persistence.push_back(std::move(g));
      }
    }
    return run;
  } catch (const nlohmann::json::exception& e) {
    return fail(std::string("malformed probe result: ") + e.what());
  }
}

namespace {
// Which round a figure is: with an even count there is no middle round, and one that happened is shown.
std::string rounds_phrase(unsigned rounds) {
  return fmt::format("{} round of {}", rounds % 2 == 1 ? "the median" : "the lower middle", rounds);
}
}  // namespace

namespace {

std::string compose_probe_text(const ProbeRun& run) {
  std::string out;
  const bool several_rounds = run.rounds > 1;
  const std::string rounds_text =
      several_rounds
          ? fmt::format("; each figure is {} (range: the rounds that succeeded)", rounds_phrase(run.rounds))
          : "";
  if (!run.gpus.empty()) {
    std::vector<std::string> header = {"GPU", "UUID"};
    for (const char* s : k_stage_order) {
      header.emplace_back(s);
    }
    header.emplace_back("TOTAL ms");
    if (several_rounds) {
      header.emplace_back("range ms");
    }
    TextTable t(header);
    std::string failures;
    for (const auto& g : run.gpus) {
      std::vector<std::string> row = {std::to_string(g.index), g.uuid.substr(0, 12)};
      for (const char* name : k_stage_order) {
        row.push_back(ms_text(stage_ms(g.result.stages, name)));
      }
      row.push_back(probe_ok(g) ? fmt::format("{:.1f}", total_ms(g.result)) : "FAILED");
      if (several_rounds) {
        row.push_back(range_text(g.total_samples_ms));
      }
      t.add_row(row);
      if (!probe_ok(g)) {
        failures += fmt::format("GPU {}: {}\n", g.index, failure_text(g));
      }
    }
    if (run.method == k_method_parallel) {
      out += fmt::format(
          "gpuwarm probe · {} GPU(s) in parallel, {:.0f} ms wall{}. Each GPU's stages may include waiting\n"
          "for the others (reported on 2 x H200: the driver serialized initialization across processes);\n"
          "without --parallel each GPU is probed alone.\n",
          run.gpus.size(), run.wall_ms, rounds_text);
    } else {
      out += fmt::format("gpuwarm probe · {} GPU(s), each probed alone, one at a time, {:.0f} ms wall{}\n",
                         run.gpus.size(), run.wall_ms, rounds_text);
    }
    out += "Persistence when probed: " + persistence_text(run.persistence) + "\n\n";
    out += t.render() + (failures.empty() ? "" : "\n" + failures);
  } else {
    out += fmt::format("gpuwarm probe · {:.0f} ms wall{}\n", run.wall_ms, rounds_text);
    out += "Persistence when probed: " + persistence_text(run.persistence) + "\n";
  }
  if (!run.jobs_skipped.empty()) {
    out += "\nWhat a job pays was not measured: " + run.jobs_skipped + "\n";
  }
  if (run.jobs.empty()) {
    return out;
  }
  out += fmt::format("\nWhat a job pays to start {} GPU(s): from launch until every GPU has a context and a\n"
                     "synchronized allocation\n\n",
                     run.jobs.front().gpus);
  // Fewer rounds than the per-GPU table once a GPU timed out on its own: said, with the figure it is.
  const unsigned job_rounds = run.job_rounds > 0 ? run.job_rounds : run.rounds;
  const bool several_job_rounds = job_rounds > 1;
  if (job_rounds != run.rounds) {
    out += fmt::format("Measured in {} of {} rounds ({}){}.\n\n", job_rounds, run.rounds, run.job_rounds_short,
                       several_job_rounds ? "; each figure is " + rounds_phrase(job_rounds) : "");
  }
  std::vector<std::string> header = {"how the job starts"};
  for (const char* s : k_job_stage_order) {
    header.emplace_back(s);
  }
  header.emplace_back("READY ms");
  if (several_job_rounds) {
    header.emplace_back("range ms");
  }
  TextTable t(header);
  std::string failures;
  for (const auto& j : run.jobs) {
    std::vector<std::string> row = {job_title(j)};
    auto stages = job_stages(j);
    for (const char* name : k_job_stage_order) {
      row.push_back(ms_text(stage_ms(stages, name)));
    }
    auto ready = job_ready_ms(j);
    row.push_back(ready ? fmt::format("{:.1f}", *ready) : "FAILED");
    if (several_job_rounds) {
      row.push_back(range_text(j.ready_samples_ms));
    }
    t.add_row(row);
    for (const auto& p : j.processes) {
      if (!probe_ok(p)) {
        failures += job_title(j) + job_failure_text(j, p) + "\n";
      }
    }
    if (j.failed_rounds > 0) {
      failures += fmt::format("{}: {} of {} rounds failed; the first shown\n", job_title(j), j.failed_rounds,
                              j.failed_rounds + j.ready_samples_ms.size());
    }
  }
  out += t.render();
  out += "\nStages: those of the last process to be ready, summed over its GPUs. READY counts from launch,\n"
         "so it includes starting the process.\n";
  const bool all_visible_timed = std::any_of(run.jobs.begin(), run.jobs.end(), [](const JobStart& j) {
    return j.method == k_job_process_per_gpu_all_visible;
  });
  if (!all_visible_timed && run.jobs.front().gpus >= 2) {
    out += "A process per GPU here sees only its own GPU (MPI, srun --gpu-bind); torchrun's default, each\n"
           "process seeing every GPU, is timed with --all-visible.\n";
  }
  if (auto alone = slowest_isolated_ready_ms(run); alone && *alone > 0) {
    std::string ratios;
    for (const auto& j : run.jobs) {
      if (auto ready = job_ready_ms(j)) {
        ratios += fmt::format("{}{} {:.2f}x", ratios.empty() ? "" : "; ", job_title(j), *ready / *alone);
      }
    }
    if (!ratios.empty()) {
      out += fmt::format("Against the slowest GPU started alone, also from launch to ready ({:.1f} ms, in the round "
                         "shown; its TOTAL above leaves out the launch and adds the release): {}.\n",
                         *alone, ratios);
    }
  }
  return out + (failures.empty() ? "" : "\n" + failures);
}

}  // namespace

// Hostnames, UUIDs and error texts may come from a saved file (a baseline): escaped, line breaks kept.
std::string render_probe_text(const ProbeRun& run) {
  return escape_control_lines(compose_probe_text(run));
}

bool per_gpu_comparable(const ProbeRun& before, const ProbeRun& after) {
  return same_node(before, after) &&
         (before.method == after.method || (before.gpus.size() <= 1 && after.gpus.size() <= 1));
}

nlohmann::json compare_json(const ProbeRun& before, const ProbeRun& after) {
  nlohmann::json out = nlohmann::json::array();
  const bool comparable = per_gpu_comparable(before, after);
  for (const auto& g : after.gpus) {
    const GpuProbe* b = match(before, g);
    nlohmann::json stages = nlohmann::json::array();
    for (const char* name : k_stage_order) {
      stages.push_back({{"name", name},
                        {"before_ms", ms_json(b != nullptr ? stage_ms(b->result.stages, name) : std::nullopt)},
                        {"after_ms", ms_json(stage_ms(g.result.stages, name))}});
    }
    out.push_back({{"index", g.index}, {"uuid", g.uuid}, {"in_baseline", b != nullptr}, {"comparable", comparable},
                   {"before_method", before.method}, {"after_method", after.method}, {"stages", stages},
                   {"before_total_ms", b != nullptr && probe_ok(*b) ? nlohmann::json(total_ms(b->result))
                                                                    : nlohmann::json(nullptr)},
                   {"after_total_ms", probe_ok(g) ? nlohmann::json(total_ms(g.result)) : nlohmann::json(nullptr)},
                   {"before_samples_ms", samples_json(b != nullptr ? b->total_samples_ms : std::vector<double>{})},
                   {"after_samples_ms", samples_json(g.total_samples_ms)},
                   {"within_spread",
                    comparable && b != nullptr && within_spread(b->total_samples_ms, g.total_samples_ms)}});
  }
  return out;
}

nlohmann::json compare_jobs_json(const ProbeRun& before, const ProbeRun& after) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& j : after.jobs) {
    const JobStart* b = match_job(before, j);
    auto then_stages = b != nullptr ? job_stages(*b, false) : std::vector<cuda::Stage>{};
    auto now_stages = job_stages(j, false);
    nlohmann::json stages = nlohmann::json::array();
    for (const char* name : k_job_stage_order) {
      stages.push_back({{"name", name},
                        {"before_ms", ms_json(stage_ms(then_stages, name))},
                        {"after_ms", ms_json(stage_ms(now_stages, name))}});
    }
    out.push_back({{"method", j.method},
                   {"in_baseline", b != nullptr},
                   {"comparable", b != nullptr && job_incomparable(before, *b, after, j).empty()},
                   {"before_gpus", b != nullptr ? nlohmann::json(b->gpus) : nlohmann::json(nullptr)},
                   {"after_gpus", j.gpus},
                   {"before_ok", b != nullptr ? nlohmann::json(job_ok(*b)) : nlohmann::json(nullptr)},
                   {"after_ok", job_ok(j)},
                   {"stages", stages},
                   {"before_ready_ms", ms_json(b != nullptr ? job_ready_ms(*b) : std::nullopt)},
                   {"after_ready_ms", ms_json(job_ready_ms(j))},
                   {"before_samples_ms", samples_json(b != nullptr ? b->ready_samples_ms : std::vector<double>{})},
                   {"after_samples_ms", samples_json(j.ready_samples_ms)},
                   {"within_spread", b != nullptr && job_incomparable(before, *b, after, j).empty() &&
                                         within_spread(b->ready_samples_ms, j.ready_samples_ms)}});
  }
  return out;
}

namespace {
// Per GPU (by UUID) whether persistence differs; unset when a GPU's state is unknown on either side.
std::optional<bool> persistence_changed(const ProbeRun& before, const ProbeRun& after) {
  if (before.persistence.empty() || after.persistence.empty()) {
    return std::nullopt;
  }
  bool changed = false;
  for (const auto& now : after.persistence) {
    auto then = std::find_if(before.persistence.begin(), before.persistence.end(),
                             [&](const GpuPersistence& p) { return !p.uuid.empty() && p.uuid == now.uuid; });
    // A GPU another process held warm (or may have) tells nothing of what switching persistence did.
    if (then == before.persistence.end() || !then->enabled || !now.enabled || may_be_held_warm(*then) ||
        may_be_held_warm(now)) {
      return std::nullopt;
    }
    changed = changed || *then->enabled != *now.enabled;
  }
  return changed;
}
}  // namespace

nlohmann::json compare_persistence_json(const ProbeRun& before, const ProbeRun& after) {
  auto changed = persistence_changed(before, after);
  return {{"before", persistence_summary(before)},
          {"after", persistence_summary(after)},
          {"changed", changed ? nlohmann::json(*changed) : nlohmann::json(nullptr)}};
}

namespace {

std::string compose_compare_text(const ProbeRun& before, const ProbeRun& after) {
  std::string out = fmt::format("Before: {} {}   After: {} {}\n", before.hostname, before.taken_at,
                                after.hostname, after.taken_at);
  out += fmt::format("Persistence before: {}. After: {}.\n", persistence_text(before.persistence),
                     persistence_text(after.persistence));
  if (persistence_changed(before, after) == false && same_node(before, after)) {
    out += "Persistence mode read the same in both runs: a change below did not come from switching it (a\n"
           "process holding the GPUs open can still keep them warm).\n";
  }
  out += "\n";
  const bool comparable = per_gpu_comparable(before, after);
  auto method_text = [](const std::string& m) {
    return m == k_method_parallel ? "with all GPUs in parallel" : m == k_method_isolated ? "one GPU at a time" : "by no method";
  };
  if (!same_node(before, after)) {
    out += fmt::format("The baseline is from another node ({}): no change is shown (save a baseline on this one).\n\n",
                       before.hostname);
  } else if (!comparable && !before.gpus.empty() && !after.gpus.empty()) {
    out += fmt::format(
        "The baseline's per-GPU figures were taken {}, these {}:\n"
        "their difference mixes the method with persistence, so no change is shown per GPU (save a new\n"
        "baseline, or compare the job starts).\n\n",
        method_text(before.method), method_text(after.method));
  }
  for (const auto& g : after.gpus) {
    const GpuProbe* b = match(before, g);
    out += fmt::format("GPU {} ({})\n", g.index, g.uuid);
    if (b == nullptr) {
      out += "  not in the baseline\n\n";
      continue;
    }
    ChangeTable t(comparable);
    for (const char* name : k_stage_order) {
      t.add(name, stage_ms(b->result.stages, name), stage_ms(g.result.stages, name));
    }
    t.add("TOTAL", probe_ok(*b) ? std::optional(total_ms(b->result)) : std::nullopt,
          probe_ok(g) ? std::optional(total_ms(g.result)) : std::nullopt,
          within_spread(b->total_samples_ms, g.total_samples_ms));
    out += t.render() + "\n";
  }
  for (const auto& j : after.jobs) {
    const JobStart* b = match_job(before, j);
    out += fmt::format("Job start: {}\n", job_title(j));
    if (b == nullptr) {
      out += "  not in the baseline\n\n";
      continue;
    }
    const std::string incomparable = job_incomparable(before, *b, after, j);
    if (!incomparable.empty()) {
      out += "  " + incomparable + ": no change is shown\n";
    }
    if (!job_ok(*b) || !job_ok(j)) {
      out += fmt::format("  {} failed: the stage it failed in is not compared\n",
                         !job_ok(*b) && !job_ok(j) ? "the baseline and this run" : !job_ok(*b) ? "the baseline" : "this run");
    }
    auto then_stages = job_stages(*b, false);
    auto now_stages = job_stages(j, false);
    ChangeTable t(incomparable.empty());
    for (const char* name : k_job_stage_order) {
      t.add(name, stage_ms(then_stages, name), stage_ms(now_stages, name));
    }
    t.add("READY", job_ready_ms(*b), job_ready_ms(j), within_spread(b->ready_samples_ms, j.ready_samples_ms));
    out += t.render() + "\n";
  }
  return out;
}

}  // namespace

std::string render_compare_text(const ProbeRun& before, const ProbeRun& after) {
  return escape_control_lines(compose_compare_text(before, after));
}

}  // namespace gpuwarm
