// The pure half of `gpuwarm watch`: from samples to a per-GPU summary and an
// attribution. Thresholds are named and explained where they are defined.

#include <algorithm>
#include <limits>
#include <map>

#include <fmt/format.h>

#include "nvml/errors.h"

#include "snapshot/clock_reasons.h"
#include "watch/watch.h"

namespace gpuwarm::watch {

namespace {

// Milliseconds rounded to a whole number for the statistics; a replayed file may hold any double, and one past
// what an unsigned holds is clamped there (converting it would be undefined).
unsigned whole_ms(double ms) {
  constexpr double most = static_cast<double>(std::numeric_limits<unsigned>::max());
  return ms + 0.5 >= most ? std::numeric_limits<unsigned>::max() : static_cast<unsigned>(ms + 0.5);
}

// Clocks that move by less than this share of the maximum SM clock count as
// steady: boost firmware nudges an idle clock by a bin or two.
constexpr double k_swing_fraction = 0.10;
// After a load ends, clocks take a moment to come back down; idle samples
// this soon after it are not used to judge the idle floor.
constexpr double k_after_load_grace_s = 3.0;
// A thermal or power event reason decides (RAS) only where it held over consecutive samples, not where it
// flashed in single ones.
constexpr unsigned k_ras_min_run = 2;

const nvml::GpuReading* reading_for(const Sample& s, unsigned index) {
  for (const auto& g : s.gpus) {
    if (g.index == index) {
      return &g;
    }
  }
  return nullptr;
}

// How long sample i stands for: up to the next sample, or one interval for the last.
double span_of(const WatchRun& run, std::size_t i) {
  if (i + 1 < run.samples.size()) {
    return run.samples[i + 1].t_s - run.samples[i].t_s;
  }
  // The last sample stands for one interval, but never past the watch's end: a 1 s watch at a 5 s interval
  // saw a reason for at most 1 s.
  const double left = run.duration_s - run.samples[i].t_s;
  return left > 0 ? std::min(run.interval_s, left) : run.interval_s;
}

bool judged_idle(const WatchRun& run, const Sample& s) {
  if (s.phase == Phase::load || s.phase == Phase::load_starting) {
    return false;
  }
  if (s.phase == Phase::after_load && run.load && run.load->end_s >= 0 &&
      s.t_s < run.load->end_s + k_after_load_grace_s) {
    return false;
  }
  return true;
}

std::string seconds_text(double s) { return fmt::format("{:.1f} s", s); }

// Kept in the enum's order, most decisive first, whatever order the checks find them in: a GPU that fell off the
// bus after cold attaches is a fault (RAS), not de-initialization churn.
void add_cause(GpuSummary& g, Cause c) {
  const auto at = std::lower_bound(g.causes.begin(), g.causes.end(), c);
  if (at == g.causes.end() || *at != c) {
    g.causes.insert(at, c);
  }
}

// A setting that was away from its default and is now back at it: what a
// de-initialization does to non-persistent state.
void check_revert(GpuSummary& g, double t_s, const char* kind, const char* what, std::optional<unsigned> before,
                  std::optional<unsigned> now, std::optional<unsigned> def, const char* unit) {
  if (before && now && def && *before != *def && *now == *def) {
    g.deinit_events.push_back(
        {t_s, kind, fmt::format("{} went from {} {} back to its default {} {}", what, *before, unit, *def, unit)});
  }
}

GpuSummary summarize_gpu(const WatchRun& run, const nvml::GpuIdentity& id) {
  GpuSummary g;
  g.id = id;
  std::vector<unsigned> sm;
  std::vector<unsigned> mem;
  std::vector<unsigned> sm_idle;
  std::vector<unsigned> sm_load;
  std::vector<unsigned> attach;
  std::map<unsigned, bool> pstates;
  std::uint64_t reasons_seen = 0;
  double reason_seconds[64] = {};
  unsigned reason_samples[64] = {};
  unsigned reason_run[64] = {};      // consecutive samples (of those read) with the reason, up to now
  unsigned reason_max_run[64] = {};  // the longest such run
  unsigned reasons_read = 0;         // samples whose event reasons were read
  double pinned_seconds = 0;
  std::optional<unsigned> pinned_sm;
  // Settings as last read: a held watch reads them only every few samples.
  std::optional<unsigned> app_sm;
  std::optional<unsigned> app_mem;
  std::optional<unsigned> power_limit;
  std::optional<std::string> fault_error;  // the last reading (or query) that answered with a GPU fault
  std::size_t fault_samples = 0;
  // Samples that said nothing of this GPU: it could not be attached (not for a fault, which is an answer), or
  // attached without its SM clock. (Those NVML itself failed are run.samples.size() - g.samples.)
  std::size_t attach_unread = 0;
  std::size_t clock_unread = 0;
  // A GPU that names GpuIdle while idle says, by its absence, when it was not: work of another process, or
  // a context just ended and the clocks not yet down (seen on an H200 right after `probe`: 1980 MHz with no
  // reason, then 405 MHz with GpuIdle). Such a sample is not an idle one. A GPU that never names GpuIdle
  // gives no such signal, and every sample outside the load stays idle; so does a sample that reads
  // persistence off, where an attach may have just initialized the GPU again: its clocks are the evidence
  // this watch looks for.
  const bool names_idle = std::any_of(run.samples.begin(), run.samples.end(), [&](const Sample& s) {
    const nvml::GpuReading* r = reading_for(s, id.index);
    return r != nullptr && r->error.empty() && r->event_reasons &&
           (*r->event_reasons & clock_reason::gpu_idle) != 0;
  });
  std::size_t busy_samples = 0;
  // This GPU's own load stopping early: its later "load" samples were not under its load.
  const LoadEnd* own_end = nullptr;
  // And its own start: before it (or without one) the window's "load" samples were another GPU's load.
  const bool starts_known = run.load && !run.load->started.empty();
  std::optional<double> own_start;
  if (run.load) {
    for (const auto& e : run.load->ended_early) {
      own_end = own_end == nullptr && e.gpu == id.index ? &e : own_end;
    }
    for (const auto& st : run.load->started) {
      own_start = !own_start && st.gpu == id.index ? std::optional<double>(st.at_s) : own_start;
    }
  }
  auto under_own_load = [&](const Sample& s) {
    return s.phase == Phase::load && (!starts_known || (own_start && s.t_s >= *own_start)) &&
           (own_end == nullptr || s.t_s < own_end->at_s);
  };

  for (std::size_t i = 0; i < run.samples.size(); ++i) {
    const Sample& s = run.samples[i];
    const nvml::GpuReading* r = reading_for(s, id.index);
    if (r == nullptr) {
      continue;  // NVML itself failed this sample: counted in init_failures
    }
    ++g.samples;
    if (!r->error.empty()) {
      ++g.failed;
      g.last_error = r->error;
      if (nvml::meaning_of_reason(r->error) == nvml::Meaning::gpu_fault) {
        fault_error = r->error;
        ++fault_samples;
      } else {
        ++attach_unread;
      }
      continue;
    }
    clock_unread += !r->sm_mhz && r->fault.empty() ? 1U : 0U;
    if (!r->fault.empty()) {
      ++fault_samples;
      fault_error = r->fault;  // attached, but the GPU answers as gone
    }
    if (r->attach_ms >= 0) {
      attach.push_back(whole_ms(r->attach_ms));
      if (r->attach_ms >= run.cold_attach_ms) {
        g.deinit_events.push_back(
            {s.t_s, "cold-attach",
             fmt::format("attaching took {:.0f} ms (a warm GPU attaches in milliseconds)", r->attach_ms)});
      }
    }
    if (r->sm_mhz) {
      sm.push_back(*r->sm_mhz);
      if (s.phase == Phase::load) {
        if (under_own_load(s)) {
          sm_load.push_back(*r->sm_mhz);
        }
      } else if (judged_idle(run, s)) {
        if (names_idle && r->event_reasons && (*r->event_reasons & clock_reason::gpu_idle) == 0 &&
            r->persistence == true) {
          ++busy_samples;
        } else {
          sm_idle.push_back(*r->sm_mhz);
        }
      }
    }
    if (r->mem_mhz) {
      mem.push_back(*r->mem_mhz);
    }
    if (r->pstate) {
      pstates[*r->pstate] = true;
    }
    if (r->event_reasons) {
      reasons_seen |= *r->event_reasons;
      ++reasons_read;
      for (unsigned bit = 0; bit < 64; ++bit) {
        if ((*r->event_reasons >> bit) & 1u) {
          reason_seconds[bit] += span_of(run, i);
          ++reason_samples[bit];
          reason_max_run[bit] = std::max(reason_max_run[bit], ++reason_run[bit]);
        } else {
          reason_run[bit] = 0;
        }
      }
    }
    check_revert(g, s.t_s, "app-clocks-reverted", "SM application clock", app_sm, r->app_sm_mhz,
                 id.default_app_sm_mhz, "MHz");
    check_revert(g, s.t_s, "app-clocks-reverted", "memory application clock", app_mem, r->app_mem_mhz,
                 id.default_app_mem_mhz, "MHz");
    check_revert(g, s.t_s, "power-limit-reverted", "power limit", power_limit, r->power_limit_mw,
                 id.default_power_limit_mw, "mW");
    app_sm = r->app_sm_mhz ? r->app_sm_mhz : app_sm;
    app_mem = r->app_mem_mhz ? r->app_mem_mhz : app_mem;
    power_limit = r->power_limit_mw ? r->power_limit_mw : power_limit;
    bool pinned = (app_sm && id.default_app_sm_mhz && *app_sm != *id.default_app_sm_mhz) ||
                  (r->event_reasons && (*r->event_reasons & clock_reason::applications_clocks_setting) != 0);
    if (pinned) {
      pinned_seconds += span_of(run, i);
      if (app_sm) {
        pinned_sm = *app_sm;
      }
    }
    if (r->persistence) {
      g.persistence = *r->persistence;
    }
  }

  g.sm = stats_of(sm);
  g.mem = stats_of(mem);
  g.sm_idle = stats_of(sm_idle);
  g.sm_load = stats_of(sm_load);
  g.attach_ms = stats_of(attach);
  for (const auto& [p, seen] : pstates) {
    g.pstates.push_back(p);
  }
  for (unsigned bit = 0; bit < 64; ++bit) {
    if ((reasons_seen >> bit) & 1u) {
      g.reason_time.push_back({clock_reason_names(1ull << bit).front(), reason_seconds[bit]});
    }
  }

  // How long after the load the SM clock was back within the swing band of the floor.
  // A GPU whose own load ended early settles from then.
  const bool never_ran = own_end != nullptr && !own_end->ran;
  const double load_end_s = never_ran             ? -1
                            : own_end != nullptr ? own_end->at_s
                            : run.load           ? run.load->end_s
                                                 : -1;
  if (load_end_s >= 0 && g.sm_idle) {
    const double band = k_swing_fraction * id.max_sm_mhz.value_or(g.sm_idle->max);
    for (const Sample& s : run.samples) {
      const nvml::GpuReading* r = reading_for(s, id.index);
      if (s.t_s >= load_end_s && r != nullptr && r->sm_mhz &&
          std::abs(static_cast<double>(*r->sm_mhz) - g.sm_idle->median) <= band) {
        g.settle_s = s.t_s - load_end_s;
        break;
      }
    }
  }

  // Attribution, most decisive first. A thermal or power reason decides only where it held over
  // k_ras_min_run consecutive samples: HW slowdown can flash for one sample during a P-state or clock
  // change, which is what a GPU just initialized again goes through; a real limit lasts.
  const std::uint64_t ras_bits = reasons_seen & clock_reason::thermal_or_power;
  bool ras_held = false;
  for (unsigned bit = 0; bit < 64; ++bit) {
    if (((ras_bits >> bit) & 1u) == 0) {
      continue;
    }
    const bool held = reason_max_run[bit] >= k_ras_min_run;
    ras_held = ras_held || held;
    g.evidence.push_back(fmt::format("{} active for {} ({} of {} samples){}", clock_reason_names(1ull << bit).front(),
                                     seconds_text(reason_seconds[bit]), reason_samples[bit], reasons_read,
                                     held ? "" : ": a flash, not counted as a cause"));
  }
  if (ras_held) {
    add_cause(g, Cause::thermal_power);
  }
  if (!g.deinit_events.empty()) {
    add_cause(g, Cause::deinit_churn);
    g.evidence.push_back(fmt::format("{} de-initialization sign(s), first at {:.1f} s: {}", g.deinit_events.size(),
                                     g.deinit_events.front().t_s, g.deinit_events.front().detail));
    if (g.persistence == false) {
      g.evidence.emplace_back("persistence mode reads Disabled");
    }
  }
  if (pinned_seconds > 0) {
    add_cause(g, Cause::pinned_clocks);
    g.evidence.push_back(
        pinned_sm && id.default_app_sm_mhz
            ? fmt::format("SM application clock pinned at {} MHz (default {} MHz) for {}", *pinned_sm,
                          *id.default_app_sm_mhz, seconds_text(pinned_seconds))
            : fmt::format("ApplicationsClocksSetting active for {}", seconds_text(pinned_seconds)));
  }
  if (busy_samples > 0) {
    g.evidence.push_back(fmt::format("{} sample(s) outside the load found the GPU busy (no GpuIdle reason, which "
                                     "it names when idle): not counted as idle",
                                     busy_samples));
  }
  if (g.causes.empty() && g.sm_idle && g.sm_idle->count >= 2) {
    const double limit = k_swing_fraction * id.max_sm_mhz.value_or(g.sm_idle->max);
    if (g.sm_idle->max - g.sm_idle->min > limit) {
      add_cause(g, Cause::idle_swing);
      g.evidence.push_back(fmt::format("idle SM clock ranged {}-{} MHz with no thermal, power or "
                                       "application-clock reason",
                                       g.sm_idle->min, g.sm_idle->max));
    }
  }
  // Samples that failed are evidence too: a GPU fault is an answer (RAS); a GPU never read is no answer.
  if (fault_samples > 0 && fault_error) {
    add_cause(g, Cause::gpu_fault);
    g.evidence.push_back(fmt::format("{} of {} samples: {}", fault_samples, g.samples, *fault_error));
  }
  // The SM clock is what watch judges: a GPU none of whose samples read it cannot be called stable.
  if (sm.empty()) {
    add_cause(g, Cause::unread);
    g.evidence.push_back(g.samples == 0 ? std::string("no sample reached this GPU: NVML did not initialize")
                         : g.samples == g.failed
                             ? fmt::format("no sample could read this GPU (last error: {})", g.last_error)
                             : std::string("no sample read this GPU's SM clock"));
  }
  // Stable vouches for the whole window: a GPU that said nothing in more than one sample in ten was not seen for
  // too much of it (NVML failing to initialize, the GPU not attaching, its clock not read).
  const std::size_t not_reached = run.samples.size() - g.samples;
  const std::size_t unanswered = not_reached + attach_unread + clock_unread;
  if (g.causes.empty() && !sm.empty() && unanswered * 10 > run.samples.size()) {
    add_cause(g, Cause::unread);
    std::vector<std::string> why;
    if (not_reached > 0) {
      why.push_back(fmt::format("NVML did not initialize in {}", not_reached));
    }
    if (attach_unread > 0) {
      why.push_back(fmt::format("it could not be attached in {} ({})", attach_unread, g.last_error));
    }
    if (clock_unread > 0) {
      why.push_back(fmt::format("its SM clock was not read in {}", clock_unread));
    }
    g.evidence.push_back(fmt::format("{} of {} samples said nothing of this GPU ({}): too much of the window "
                                     "unseen to call it stable",
                                     unanswered, run.samples.size(), fmt::join(why, "; ")));
  }
  // "Stable" only where the watch could have seen otherwise.
  const std::size_t idle_count = g.sm_idle ? g.sm_idle->count : 0;
  if (g.causes.empty() && busy_samples > 0 && idle_count < 2) {
    add_cause(g, Cause::unread);
    g.evidence.push_back(fmt::format("only {} sample(s) outside the load found the GPU idle: too few to tell "
                                     "whether its idle clocks swing",
                                     idle_count));
  } else if (g.causes.empty() && sm.size() < 2) {
    add_cause(g, Cause::unread);
    g.evidence.push_back(fmt::format("only {} sample read its SM clock: too few to call it stable", sm.size()));
  } else if (g.causes.empty() && run.mode == nvml::SampleMode::held && g.persistence != true) {
    // Stable in a held watch only where persistence is known to be on: otherwise the watch itself may be what
    // keeps the GPU initialized.
    add_cause(g, Cause::unread);
    g.evidence.push_back(fmt::format("persistence {}, and a held watch keeps the GPU initialized: "
                                     "de-initialization cannot show here (watch again with --mode detached)",
                                     g.persistence ? "reads Disabled" : "mode was not read"));
  }
  if (own_end != nullptr) {
    // Asked to see the clocks under load for the whole window, a part of it is not an answer.
    g.evidence.push_back(
        !own_end->ran ? fmt::format("its load did not run ({})", own_end->why)
                        : fmt::format("its load ended early, at {:.1f} s ({}): clocks under load seen in {} sample(s) "
                                      "before that",
                                      own_end->at_s, own_end->why, sm_load.size()));
    if (g.causes.empty()) {
      add_cause(g, Cause::unread);
    }
  }
  if (g.causes.empty() && !run.nvml_stopped.empty()) {
    // Stable while it answered; after that nothing was seen, and the hang may well be this GPU's.
    add_cause(g, Cause::unread);
    g.evidence.push_back(fmt::format("stable for {} sample(s), then NVML stopped answering", g.samples));
  }
  if (g.causes.empty()) {
    g.causes.push_back(Cause::stable);
  }
  return g;
}

std::string next_step_for(Cause c) {
  switch (c) {
    case Cause::gpu_fault:
      return "A GPU fell off the bus, needs a reset or stopped answering: persistence will not help. Follow the "
             "RAS runbook (`gpuwarm diagnose`, `nvidia-smi -q`, the kernel log's Xid lines).";
    case Cause::unread:
      return "A GPU could not be judged (no reading, too few samples, or a held watch that keeps it "
             "initialized; its evidence says which): run `gpuwarm diagnose`, or watch again in detached mode "
             "with more samples.";
    case Cause::thermal_power:
      return "Thermal or power limits, not de-initialization: persistence will not help. Follow the RAS / "
             "thermal runbook (cooling, power capping, `nvidia-smi -q -d TEMPERATURE,POWER`).";
    case Cause::deinit_churn:
      return "The driver de-initializes idle GPUs: enable nvidia-persistenced (`gpuwarm diagnose`, then "
             "`gpuwarm fix`), then watch again in detached mode.";
    case Cause::pinned_clocks:
      return "Application clocks are pinned away from their defaults: reset them (`nvidia-smi -rac`) or find "
             "what sets them; not a persistence problem.";
    case Cause::idle_swing:
      return "Idle clocks move with no reason NVML names: run `gpuwarm diagnose` and compare with a "
             "`gpuwarm probe` baseline.";
    case Cause::stable:
      return "";
  }
  return "";
}

ExitCode exit_for(Cause c) {
  switch (c) {
    case Cause::unread: return ExitCode::cannot_tell;
    case Cause::gpu_fault:
    case Cause::thermal_power:
    case Cause::pinned_clocks: return ExitCode::routed_elsewhere;
    case Cause::deinit_churn:
    case Cause::idle_swing: return ExitCode::action_needed;
    case Cause::stable: return ExitCode::healthy;
  }
  return ExitCode::healthy;
}

}  // namespace

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::idle: return "idle";
    case Phase::load_starting: return "load-starting";
    case Phase::load: return "load";
    case Phase::after_load: return "after-load";
  }
  return "?";
}

const char* cause_code(Cause c) {
  switch (c) {
    case Cause::gpu_fault: return "gpu-fault";
    case Cause::unread: return "cannot-tell";
    case Cause::thermal_power: return "thermal-power";
    case Cause::deinit_churn: return "deinit-churn";
    case Cause::pinned_clocks: return "pinned-clocks";
    case Cause::idle_swing: return "idle-swing";
    case Cause::stable: return "stable";
  }
  return "?";
}

const char* cause_title(Cause c) {
  switch (c) {
    case Cause::gpu_fault: return "GPU fault (RAS)";
    case Cause::unread: return "cannot tell";
    case Cause::thermal_power: return "thermal/power limits (RAS)";
    case Cause::deinit_churn: return "de-initialization churn (persistence off)";
    case Cause::pinned_clocks: return "pinned application clocks";
    case Cause::idle_swing: return "idle clocks swing, cause unknown";
    case Cause::stable: return "stable";
  }
  return "?";
}

std::optional<Stats> stats_of(std::vector<unsigned> values) {
  if (values.empty()) {
    return std::nullopt;
  }
  std::sort(values.begin(), values.end());
  Stats s;
  s.count = values.size();
  s.min = values.front();
  s.max = values.back();
  // Lower median: always a value that was actually read.
  s.median = values[(values.size() - 1) / 2];
  return s;
}

double sampled_seconds(const WatchRun& run) {
  if (run.samples.empty()) {
    return 0;
  }
  return run.samples.back().t_s - run.samples.front().t_s + span_of(run, run.samples.size() - 1);
}

namespace {

// No error and no GPU's load ended early: a load no sample saw then never started, or ran between samples.
bool load_ended_quietly(const LoadWindow& load) { return load.error.empty() && load.ended_early.empty(); }

// What to do about a cannot-tell run, from why it is one: the most specific cause first.
std::string unread_next_step(const WatchRun& run, bool load_missing) {
  if (!run.nvml_stopped.empty()) {
    return "NVML stopped answering, which usually means a GPU or the driver is stuck: check the kernel log for Xid "
           "errors and hung tasks (`dmesg | grep -E 'NVRM|Xid|blocked for more than'`) and whether `nvidia-smi` "
           "hangs too, then run `gpuwarm diagnose`.";
  }
  if (run.sample_cap > 0) {
    return "The watch reached its sample limit before the asked duration: watch again with an --interval that "
           "keeps duration / interval under 100000.";
  }
  if (load_missing && load_ended_quietly(*run.load)) {
    return run.load->start_s >= 0
               ? "No sample fell inside the load, so clocks under load were not seen: watch again with an "
                 "--interval well under the --load's length."
               : "The load did not run, so clocks under load were not seen: watch again until the load has run "
                 "(without --count, or without stopping it).";
  }
  if (load_missing) {
    return "The load did not run, so clocks under load were not seen: fix what the note says (no libcuda: give "
           "--cuda PATH), then watch again.";
  }
  if (run.load && !run.load->error.empty()) {
    return "A GPU's load ended early, so its clocks under load were seen only in part: check the kernel log for Xid "
           "errors (`dmesg | grep -E 'NVRM|Xid'`) and run `gpuwarm diagnose`, then watch again.";
  }
  return next_step_for(Cause::unread);
}

}  // namespace

WatchSummary summarize(const WatchRun& run) {
  WatchSummary out;
  std::vector<unsigned> init;
  for (const Sample& s : run.samples) {
    if (s.init_ms >= 0) {
      init.push_back(whole_ms(s.init_ms));
    }
    if (!s.error.empty()) {
      ++out.init_failures;
    }
  }
  out.init_ms = stats_of(init);

  int best = static_cast<int>(Cause::stable);
  for (const auto& id : run.gpus) {
    GpuSummary g = summarize_gpu(run, id);
    best = std::min(best, static_cast<int>(g.causes.front()));
    if (run.mode == nvml::SampleMode::held && g.persistence != true) {
      out.notes.push_back(fmt::format(
          "GPU {}: persistence {}, and a held watch keeps the GPU initialized, so de-initialization "
          "cannot show here: watch again with --mode detached.",
          id.index, g.persistence ? "reads Disabled" : "mode was not read"));
    }
    out.gpus.push_back(std::move(g));
  }
  if (out.init_failures > 0) {
    out.notes.push_back(fmt::format("NVML failed to initialize in {} of {} samples.", out.init_failures,
                                    run.samples.size()));
  }
  const bool seen_under_load = std::any_of(run.samples.begin(), run.samples.end(),
                                          [](const Sample& s) { return s.phase == Phase::load; });
  if (run.load && !run.load->ended_early.empty()) {
    for (const auto& e : run.load->ended_early) {
      out.notes.push_back(e.ran ? fmt::format("GPU {}'s load ended early, at {:.1f} s: {}", e.gpu, e.at_s, e.why)
                                : fmt::format("GPU {}'s load did not run: {}", e.gpu, e.why));
    }
  } else if (run.load && !run.load->error.empty()) {
    out.notes.push_back((seen_under_load ? "The load ended early: " : "The load did not run: ") + run.load->error);
  }
  if (!run.nvml_stopped.empty()) {
    // The watch ended there: whatever it had seen stands, but "stable" would vouch for time it did not see.
    out.notes.push_back("The watch ended early: " + run.nvml_stopped);
    best = std::min(best, static_cast<int>(Cause::unread));
  }
  if (run.gpus.empty() || run.samples.empty()) {
    // No GPU was ever identified, or nothing sampled: nothing was read (a live watch refuses to start so; a
    // saved run may say it).
    out.notes.push_back(run.gpus.empty() ? "No GPU was read in this run." : "This run holds no sample.");
    best = std::min(best, static_cast<int>(Cause::unread));
  }
  if (run.sample_cap > 0) {
    // As an NVML hang: what was seen stands, but "stable" would vouch for the part of the window not watched.
    out.notes.push_back(fmt::format("Sampling stopped at {} samples, the most a watch keeps, {:.1f} s in: the rest "
                                    "of the asked duration was not watched (lengthen --interval).",
                                    run.sample_cap, run.duration_s));
    best = std::min(best, static_cast<int>(Cause::unread));
  }
  // Asked for a load no sample saw (it failed, it never started, or it ran between two samples), "stable" would
  // answer a question that was not put: the clocks under load were never seen.
  const bool load_missing = run.load && !seen_under_load;
  if (load_missing && load_ended_quietly(*run.load)) {
    out.notes.push_back(run.load->start_s >= 0
                            ? fmt::format("The load ran from {:.1f} s, but no sample fell inside it: the --interval "
                                          "({:g} s) is too long for the --load.",
                                          run.load->start_s, run.interval_s)
                            : std::string("The load never ran: the watch ended before it started (it starts after an "
                                          "idle lead-in, then takes a moment to compile and launch)."));
  }
  // A load error no GPU is named for (a run saved before each GPU's end was recorded): which GPU's clocks were
  // not under load is unknown, so no GPU can be called stable under it.
  const bool load_unattributed = run.load && !run.load->error.empty() && run.load->ended_early.empty();
  if ((load_missing || load_unattributed) && best == static_cast<int>(Cause::stable)) {
    best = static_cast<int>(Cause::unread);
  }
  out.cause = static_cast<Cause>(best);
  out.next_step = out.cause == Cause::unread ? unread_next_step(run, load_missing) : next_step_for(out.cause);
  out.exit_code = exit_for(out.cause);
  return out;
}

}  // namespace gpuwarm::watch
