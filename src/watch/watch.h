#pragma once
// `gpuwarm watch` as data: the samples a run took, and the pure summary the
// runbook asks for ("clocks should sit at a steady idle floor and step cleanly
// to boost under load, not swing"): per GPU, clock spread, time per clock-event
// reason, de-initializations seen, and what the behaviour is attributed to.
// Sampling lives in nvml/sampler; spawning the load in cli/.

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/exit_codes.h"
#include "core/result.h"
#include "nvml/sampler.h"

namespace gpuwarm::watch {

constexpr int k_schema_version = 1;
constexpr double k_default_cold_attach_ms = 250;

// load_starting: the load's children were started but none has finished a kernel yet (CUDA is setting up,
// or the first kernel runs unseen): neither idle nor a clock under load.
enum class Phase { idle, load_starting, load, after_load };
const char* phase_name(Phase p);

struct Sample {
  double t_s = 0;  // since the run started
  Phase phase = Phase::idle;
  double init_ms = -1;  // see nvml::Reading
  std::string error;
  std::vector<nvml::GpuReading> gpus;
};

// A GPU whose load stopped before the window's end, on its own (a failed launch, a child that died).
struct LoadEnd {
  unsigned gpu = 0;  // NVML index
  double at_s = 0;   // when the watcher saw it end
  bool ran = false;  // its kernel had started
  std::string why;
};

// When a GPU's own kernel first ran, as the watcher saw it.
struct LoadStart {
  unsigned gpu = 0;  // NVML index
  double at_s = 0;
};

struct LoadWindow {
  double requested_s = 0;
  double start_s = -1;  // first kernel finished, as the watcher saw it; -1 = never started
  double end_s = -1;
  unsigned long long launches = 0;  // summed over the GPUs whose load reported a count (launches_uncounted)
  std::string error;                // the first load error, if any
  std::vector<LoadEnd> ended_early;  // per GPU: its clocks after that were not under its load
  // Per GPU: its clocks before that were not under its load; a GPU not listed never ran its kernel. Empty in
  // runs saved before it was recorded: then the window's phase stands for every GPU.
  std::vector<LoadStart> started;
  std::vector<unsigned> launches_uncounted;  // GPUs whose load child ended without reporting its count (killed)
};

struct WatchRun {
  std::string hostname;
  std::string taken_at;
  nvml::SampleMode mode = nvml::SampleMode::detached;
  double interval_s = 1;
  double duration_s = 0;  // as it ran
  double cold_attach_ms = k_default_cold_attach_ms;
  std::optional<LoadWindow> load;
  std::vector<nvml::GpuIdentity> gpus;
  std::vector<Sample> samples;
  std::string nvml_stopped;  // why sampling ended early: NVML did not answer a sample in time ("" = it did)
  std::size_t sample_cap = 0;  // sampling stopped at this many samples, the most a watch keeps (0 = it did not)
};

struct Stats {
  unsigned min = 0;
  unsigned median = 0;
  unsigned max = 0;
  std::size_t count = 0;
};
std::optional<Stats> stats_of(std::vector<unsigned> values);

// What a GPU's clock behaviour comes from, most decisive first (the runbook's order).
enum class Cause {
  gpu_fault,      // a GPU answered as lost, needing a reset, or timing out: RAS, persistence will not help
  thermal_power,  // thermal/power event reasons: RAS path, persistence will not help
  deinit_churn,   // the GPU de-initialized between samples: persistence is off
  pinned_clocks,  // application clocks away from their defaults
  idle_swing,     // clocks move while the GPU is idle, with no reason NVML names
  unread,         // a GPU (or NVML) gave no reading in any sample, or the load asked for did not run: cannot tell
  stable,
};
const char* cause_code(Cause c);   // "thermal-power", "deinit-churn", ...
const char* cause_title(Cause c);  // a short human phrase

struct DeinitEvent {
  double t_s = 0;
  std::string kind;  // "cold-attach", "app-clocks-reverted", "power-limit-reverted"
  std::string detail;
};

struct ReasonTime {
  std::string reason;  // "GpuIdle", "SwPowerCap", ...
  double seconds = 0;
};

struct GpuSummary {
  nvml::GpuIdentity id;
  std::size_t samples = 0;
  std::size_t failed = 0;  // attach errors
  std::string last_error;
  std::optional<Stats> sm;
  std::optional<Stats> mem;
  std::optional<Stats> sm_idle;  // before the load (and after it had settled)
  std::optional<Stats> sm_load;
  std::optional<double> settle_s;  // load end -> SM back at the idle floor
  std::vector<unsigned> pstates;
  std::vector<ReasonTime> reason_time;  // by bit order; reasons never seen are absent
  std::optional<Stats> attach_ms;       // detached: every attach; held: the first
  std::vector<DeinitEvent> deinit_events;
  std::optional<bool> persistence;  // last reading
  std::vector<Cause> causes;        // every cause seen, most decisive first; {stable} when none
  std::vector<std::string> evidence;
};

struct WatchSummary {
  std::vector<GpuSummary> gpus;
  std::optional<Stats> init_ms;  // detached: every nvmlInit; held: the one
  std::size_t init_failures = 0;
  Cause cause = Cause::stable;  // the most decisive over all GPUs
  std::string next_step;
  std::vector<std::string> notes;  // e.g. held mode hides de-initialization
  ExitCode exit_code = ExitCode::healthy;
};

// The time the samples stand for: first to last, plus the last one's interval cut at the watch's end.
double sampled_seconds(const WatchRun& run);

// Time a GPU with persistence off needs to attach is "order of 1-3 s" (ECC
// scrub); a warm attach is milliseconds. `cold_attach_ms` splits the two.
WatchSummary summarize(const WatchRun& run);

nlohmann::json to_json(const WatchRun& run, const WatchSummary& summary);
// The same document with "exit_code", written as it is made: one sample at a time (a sample per line), so a long
// watch never holds its whole run as JSON (about 19 KB a sample on 8 GPUs).
void write_json(std::ostream& out, const WatchRun& run, const WatchSummary& summary, int exit_code);
Result<WatchRun> run_from_json(const nlohmann::json& j);
// A run saved by `watch --json`, from its text: every string escaped for the terminal, each sample converted as it
// is parsed (never the whole document in memory), a saved failure (an "error" document) named as one.
Result<WatchRun> run_from_text(std::string_view text);

// `color` styles the verdict line only.
std::string render_text(const WatchRun& run, const WatchSummary& summary, bool color);

}  // namespace gpuwarm::watch
