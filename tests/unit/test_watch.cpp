// watch::summarize is pure: table-driven cases over hand-built runs, each a
// healthy idle H100 timeline with one thing changed.

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <limits>
#include <regex>
#include <sstream>
#include <tuple>

#include <gtest/gtest.h>

#include "core/strings.h"
#include "probe/probe.h"
#include "watch/watch.h"

namespace gpuwarm::test {
namespace {

using watch::Cause;
using watch::Phase;

constexpr unsigned k_idle_reason = 0x1;

// Two H100s, 20 samples 1 s apart, detached, warm attaches, idle at 1980 MHz.
watch::WatchRun idle_run(std::size_t samples = 20) {
  watch::WatchRun run;
  run.mode = nvml::SampleMode::detached;
  run.interval_s = 1;
  for (unsigned i = 0; i < 2; ++i) {
    nvml::GpuIdentity id;
    id.index = i;
    id.uuid = "GPU-" + std::to_string(i);
    id.max_sm_mhz = 1980;
    id.default_app_sm_mhz = 1980;
    id.default_app_mem_mhz = 2619;
    id.default_power_limit_mw = 700000;
    run.gpus.push_back(id);
  }
  for (std::size_t k = 0; k < samples; ++k) {
    watch::Sample s;
    s.t_s = static_cast<double>(k);
    s.init_ms = 12;
    for (unsigned i = 0; i < 2; ++i) {
      nvml::GpuReading r;
      r.index = i;
      r.attach_ms = 7;
      r.sm_mhz = 1980;
      r.mem_mhz = 2619;
      r.pstate = 0;
      r.event_reasons = k_idle_reason;
      r.app_sm_mhz = 1980;
      r.app_mem_mhz = 2619;
      r.power_limit_mw = 700000;
      r.persistence = true;
      s.gpus.push_back(r);
    }
    run.samples.push_back(s);
  }
  return run;
}

using Edit = std::function<void(watch::WatchRun&)>;

// Applies `f` to GPU `gpu`'s reading in samples [from, to).
Edit readings(unsigned gpu, std::size_t from, std::size_t to, std::function<void(nvml::GpuReading&)> f) {
  return [=](watch::WatchRun& run) {
    for (std::size_t k = from; k < to && k < run.samples.size(); ++k) {
      f(run.samples[k].gpus[gpu]);
    }
  };
}

struct SummaryCase {
  const char* name;
  Edit edit;
  std::vector<Cause> gpu0_causes;
  Cause overall;
  ExitCode exit;
  std::size_t gpu0_deinit_events = 0;
};

TEST(WatchSummary, attribution_table) {
  const std::vector<SummaryCase> cases = {
      {"idle and steady", [](watch::WatchRun&) {}, {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"every attach cold (persistence off, detached)",
       readings(0, 0, 20, [](auto& r) { r.attach_ms = 1800; r.persistence = false; }),
       {Cause::deinit_churn}, Cause::deinit_churn, ExitCode::action_needed, 20},
      {"attach just under the threshold is warm", readings(0, 0, 20, [](auto& r) { r.attach_ms = 249; }),
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      // Stable vouches for the window: a GPU unseen in more than one sample in ten is cannot-tell (review-s49 W2).
      {"one failed attach in 20 (UNKNOWN) is a gap stable can bear",
       readings(0, 5, 6, [](auto& r) { r.error = "UNKNOWN"; }), {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"3 failed attaches in 20 (UNKNOWN): too much unseen",
       readings(0, 5, 8, [](auto& r) { r.error = "UNKNOWN"; }), {Cause::unread}, Cause::unread,
       ExitCode::cannot_tell},
      {"SM clock unread in 3 of 20 samples", readings(0, 0, 3, [](auto& r) { r.sm_mhz = std::nullopt; }),
       {Cause::unread}, Cause::unread, ExitCode::cannot_tell},
      {"NVML failed to initialize in 3 of 20 samples",
       [](watch::WatchRun& run) {
         for (std::size_t k = 10; k < 13; ++k) {
           run.samples[k].gpus.clear();
           run.samples[k].error = "UNKNOWN";
         }
       },
       {Cause::unread}, Cause::unread, ExitCode::cannot_tell},
      {"a GPU fault in 3 of 20 samples is an answer, not a gap",
       readings(0, 5, 8, [](auto& r) { r.error = "GPU_IS_LOST"; }), {Cause::gpu_fault}, Cause::gpu_fault,
       ExitCode::routed_elsewhere},
      // The causes come most decisive first whatever order they are found in (review-s57 H2).
      {"cold attaches, then the GPU fell off the bus: a fault, not churn",
       [](watch::WatchRun& run) {
         readings(0, 0, 5, [](auto& r) { r.attach_ms = 1800; r.persistence = false; })(run);
         readings(0, 5, 20, [](auto& r) { r = nvml::GpuReading{}; r.index = 0; r.error = "GPU_IS_LOST"; })(run);
       },
       {Cause::gpu_fault, Cause::deinit_churn}, Cause::gpu_fault, ExitCode::routed_elsewhere, 5},
      {"an idle swing, then the GPU fell off the bus: a fault",
       [](watch::WatchRun& run) {
         for (std::size_t k = 0; k < 10; k += 2) run.samples[k].gpus[0].sm_mhz = 345;
         readings(0, 10, 20, [](auto& r) { r = nvml::GpuReading{}; r.index = 0; r.error = "GPU_IS_LOST"; })(run);
       },
       {Cause::gpu_fault, Cause::idle_swing}, Cause::gpu_fault, ExitCode::routed_elsewhere},
      {"app clocks pinned, then reverted at sample 10",
       readings(0, 0, 10, [](auto& r) { r.app_sm_mhz = 1500; }),
       {Cause::deinit_churn, Cause::pinned_clocks}, Cause::deinit_churn, ExitCode::action_needed, 1},
      {"power limit reverted",
       readings(0, 0, 5, [](auto& r) { r.power_limit_mw = 500000; }),
       {Cause::deinit_churn}, Cause::deinit_churn, ExitCode::action_needed, 1},
      {"held: settings read every 5th sample still show the pin and its revert",
       [](watch::WatchRun& run) {
         for (std::size_t k = 0; k < run.samples.size(); ++k) {
           auto& r = run.samples[k].gpus[0];
           r.app_sm_mhz = k % 5 != 0 ? std::nullopt : k < 10 ? std::optional<unsigned>(1500) : r.app_sm_mhz;
           r.app_mem_mhz = k % 5 != 0 ? std::nullopt : r.app_mem_mhz;
         }
       },
       {Cause::deinit_churn, Cause::pinned_clocks}, Cause::deinit_churn, ExitCode::action_needed, 1},
      {"a pinned clock that stays pinned is not a revert",
       readings(0, 0, 20, [](auto& r) { r.app_sm_mhz = 1500; }),
       {Cause::pinned_clocks}, Cause::pinned_clocks, ExitCode::routed_elsewhere},
      {"ApplicationsClocksSetting reason alone",
       readings(0, 3, 6, [](auto& r) { r.event_reasons = 0x2; }),
       {Cause::pinned_clocks}, Cause::pinned_clocks, ExitCode::routed_elsewhere},
      {"HW thermal slowdown wins over de-init",
       [](watch::WatchRun& run) {
         readings(0, 0, 20, [](auto& r) { r.attach_ms = 1800; })(run);
         readings(0, 4, 8, [](auto& r) { r.event_reasons = 0x40; r.sm_mhz = 1200; })(run);
       },
       {Cause::thermal_power, Cause::deinit_churn}, Cause::thermal_power, ExitCode::routed_elsewhere, 20},
      {"SW power cap", readings(0, 0, 2, [](auto& r) { r.event_reasons = 0x4; }), {Cause::thermal_power},
       Cause::thermal_power, ExitCode::routed_elsewhere},
      {"HW slowdown flashing once while every attach is cold: de-initialization decides",
       [](watch::WatchRun& run) {
         readings(0, 0, 20, [](auto& r) { r.attach_ms = 600; r.persistence = false; })(run);
         readings(0, 0, 1, [](auto& r) { r.event_reasons = 0x8; })(run);
       },
       {Cause::deinit_churn}, Cause::deinit_churn, ExitCode::action_needed, 20},
      {"HW slowdown in two samples far apart: flashes, stable",
       [](watch::WatchRun& run) {
         readings(0, 3, 4, [](auto& r) { r.event_reasons = 0x8; })(run);
         readings(0, 12, 13, [](auto& r) { r.event_reasons = 0x8; })(run);
       },
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"SW thermal in 1 of 20 samples is a flash: stable",
       readings(0, 7, 8, [](auto& r) { r.event_reasons = 0x20; }), {Cause::stable}, Cause::stable,
       ExitCode::healthy},
      {"sync boost is benign", readings(0, 0, 20, [](auto& r) { r.event_reasons = 0x10; }), {Cause::stable},
       Cause::stable, ExitCode::healthy},
      {"idle clock moves by one boost bin (under 10% of max)",
       [](watch::WatchRun& run) {
         for (std::size_t k = 0; k < run.samples.size(); k += 2) run.samples[k].gpus[0].sm_mhz = 1965;
       },
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"idle clock swings 345 <-> 1980",
       [](watch::WatchRun& run) {
         for (std::size_t k = 0; k < run.samples.size(); k += 2) run.samples[k].gpus[0].sm_mhz = 345;
       },
       {Cause::idle_swing}, Cause::idle_swing, ExitCode::action_needed},
      {"winding down after a job: boost clocks without GpuIdle, then the idle clock with it (H200 after probe)",
       [](watch::WatchRun& run) {
         readings(0, 0, 3, [](auto& r) { r.event_reasons = 0; })(run);
         readings(0, 3, 20, [](auto& r) { r.sm_mhz = 405; })(run);
       },
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"persistence off: a sample without GpuIdle may be a GPU initialized again, and the swing counts",
       [](watch::WatchRun& run) {
         readings(0, 0, 20, [](auto& r) { r.persistence = false; })(run);
         for (std::size_t k = 0; k < run.samples.size(); k += 2) {
           run.samples[k].gpus[0].sm_mhz = 405;
           run.samples[k + 1].gpus[0].event_reasons = 0;
         }
       },
       {Cause::idle_swing}, Cause::idle_swing, ExitCode::action_needed},
      {"persistence on, the same bounce: each high sample found the GPU busy",
       [](watch::WatchRun& run) {
         for (std::size_t k = 0; k < run.samples.size(); k += 2) {
           run.samples[k].gpus[0].sm_mhz = 405;
           run.samples[k + 1].gpus[0].event_reasons = 0;
         }
       },
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"busy in every sample but one outside the load: too few idle samples to call it stable",
       [](watch::WatchRun& run) {
         readings(0, 1, 20, [](auto& r) { r.event_reasons = 0; })(run);
       },
       {Cause::unread}, Cause::unread, ExitCode::cannot_tell},
      {"busy in all but two samples: two idle samples that agree are stable",
       [](watch::WatchRun& run) {
         readings(0, 2, 20, [](auto& r) { r.event_reasons = 0; })(run);
       },
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"a GPU that never names GpuIdle: every sample outside a load is idle, and the swing counts",
       [](watch::WatchRun& run) {
         readings(0, 0, 20, [](auto& r) { r.event_reasons = 0; })(run);
         readings(0, 3, 20, [](auto& r) { r.sm_mhz = 405; })(run);
       },
       {Cause::idle_swing}, Cause::idle_swing, ExitCode::action_needed},
      {"reasons unread where the clock swings: not known busy, so the swing counts",
       [](watch::WatchRun& run) {
         readings(0, 0, 3, [](auto& r) { r.event_reasons.reset(); })(run);
         readings(0, 3, 20, [](auto& r) { r.sm_mhz = 405; })(run);
       },
       {Cause::idle_swing}, Cause::idle_swing, ExitCode::action_needed},
      {"a swing inside the load window is expected",
       [](watch::WatchRun& run) {
         run.load = watch::LoadWindow{5, 5, 10, 100, "", {}, {}, {}};
         for (std::size_t k = 0; k < run.samples.size(); ++k) {
           auto& s = run.samples[k];
           s.phase = k < 5 ? Phase::idle : k < 10 ? Phase::load : Phase::after_load;
           s.gpus[0].sm_mhz = k < 5 || k >= 13 ? 345u : 1980u;  // settles 3 s after the load
         }
       },
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"a GPU whose load ended early is only partly seen: cannot tell, and its later samples are not load",
       [](watch::WatchRun& run) {
         run.load = watch::LoadWindow{5, 5, 10, 100, "launch: CUDA_ERROR_LAUNCH_FAILED",
                                      {{0, 7.5, true, "launch: CUDA_ERROR_LAUNCH_FAILED"}}, {}, {}};
         for (std::size_t k = 5; k < 10; ++k) {
           run.samples[k].phase = Phase::load;
         }
       },
       {Cause::unread}, Cause::unread, ExitCode::cannot_tell},
      {"a load that ended early on GPU 1 leaves GPU 0 stable but the run cannot tell",
       [](watch::WatchRun& run) {
         run.load = watch::LoadWindow{5, 5, 10, 100, "load child killed by signal 9",
                                      {{1, 6.5, true, "load child killed by signal 9"}}, {}, {}};
         for (std::size_t k = 5; k < 10; ++k) {
           run.samples[k].phase = Phase::load;
         }
       },
       {Cause::stable}, Cause::unread, ExitCode::cannot_tell},
      {"a fault explains a load that ended early: RAS, not cannot tell",
       [](watch::WatchRun& run) {
         run.load = watch::LoadWindow{5, 5, 10, 100, "launch: CUDA_ERROR_LAUNCH_FAILED",
                                      {{0, 7.5, true, "launch: CUDA_ERROR_LAUNCH_FAILED"}}, {}, {}};
         for (std::size_t k = 5; k < 10; ++k) {
           run.samples[k].phase = Phase::load;
         }
         readings(0, 8, 20, [](auto& r) { r = nvml::GpuReading{}; r.error = "GPU_IS_LOST"; })(run);
       },
       {Cause::gpu_fault}, Cause::gpu_fault, ExitCode::routed_elsewhere},
      {"a load error no GPU is named for (a run saved before that was recorded): the run cannot tell",
       [](watch::WatchRun& run) {
         run.load = watch::LoadWindow{5, 5, 10, 100, "launch: CUDA_ERROR_LAUNCH_FAILED", {}, {}, {}};
         for (std::size_t k = 5; k < 10; ++k) {
           run.samples[k].phase = Phase::load;
         }
       },
       {Cause::stable}, Cause::unread, ExitCode::cannot_tell},
      {"GPU 1 only: the worst GPU decides the run",
       readings(1, 0, 20, [](auto& r) { r.event_reasons = 0x20; }), {Cause::stable}, Cause::thermal_power,
       ExitCode::routed_elsewhere},
      {"attach errors that are no fault are counted, not attributed",
       readings(0, 2, 4, [](auto& r) { r = nvml::GpuReading{}; r.error = "UNKNOWN"; }),
       {Cause::stable}, Cause::stable, ExitCode::healthy},
      {"a GPU that answers as lost is a fault (RAS), even in some samples only",
       readings(0, 2, 4, [](auto& r) { r = nvml::GpuReading{}; r.error = "GPU_IS_LOST"; }),
       {Cause::gpu_fault}, Cause::gpu_fault, ExitCode::routed_elsewhere},
      {"attached, but its queries answer GPU_IS_LOST: a fault, and nothing read",
       readings(0, 0, 20, [](auto& r) { r.sm_mhz.reset(); r.fault = "GPU_IS_LOST"; }),
       {Cause::gpu_fault, Cause::unread}, Cause::gpu_fault, ExitCode::routed_elsewhere},
      {"attached, but no SM clock in any sample: cannot tell",
       readings(0, 0, 20, [](auto& r) { r.sm_mhz.reset(); }), {Cause::unread}, Cause::unread,
       ExitCode::cannot_tell},
      {"a GPU never read is no answer: cannot tell, never stable",
       readings(0, 0, 20, [](auto& r) { r = nvml::GpuReading{}; r.error = "UNKNOWN"; }),
       {Cause::unread}, Cause::unread, ExitCode::cannot_tell},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto run = idle_run();
    c.edit(run);
    auto s = watch::summarize(run);
    ASSERT_EQ(s.gpus.size(), 2u);
    EXPECT_EQ(s.gpus[0].causes, c.gpu0_causes);
    EXPECT_EQ(s.cause, c.overall);
    EXPECT_EQ(s.exit_code, c.exit);
    EXPECT_EQ(s.gpus[0].deinit_events.size(), c.gpu0_deinit_events);
    EXPECT_EQ(s.next_step.empty(), c.overall == Cause::stable);
  }
}

// NVML that never initialized leaves no reading of any GPU: not "stable".
TEST(WatchSummary, nvml_never_initialized_is_cannot_tell) {
  auto run = idle_run(5);
  for (auto& sample : run.samples) {
    sample.gpus.clear();
    sample.error = "DRIVER_NOT_LOADED";
  }
  auto s = watch::summarize(run);
  EXPECT_EQ(s.cause, Cause::unread);
  EXPECT_EQ(s.exit_code, ExitCode::cannot_tell);
  ASSERT_EQ(s.gpus.size(), 2u);
  EXPECT_NE(s.gpus[0].evidence.back().find("NVML did not initialize"), std::string::npos);
  run.gpus.clear();  // not even identified
  EXPECT_EQ(watch::summarize(run).cause, Cause::unread);
}

// A saved run with no GPU or no sample read nothing (a live watch refuses to start so): not "stable" (W4).
TEST(WatchSummary, a_run_that_read_nothing_is_cannot_tell) {
  auto no_gpus = idle_run(5);
  no_gpus.gpus.clear();
  for (auto& sample : no_gpus.samples) {
    sample.gpus.clear();
  }
  EXPECT_EQ(watch::summarize(no_gpus).exit_code, ExitCode::cannot_tell);
  auto no_samples = idle_run(0);
  EXPECT_EQ(watch::summarize(no_samples).exit_code, ExitCode::cannot_tell);
  EXPECT_EQ(watch::summarize(idle_run(5)).exit_code, ExitCode::healthy);
}

// Back to back, a watch that reached the sample cap before its duration says how much it watched: the rest of
// the window is unseen, so not "stable" (review-s49-diff D2); the cap survives a replay.
TEST(WatchSummary, a_run_stopped_at_the_sample_cap_says_so) {
  auto run = idle_run(20);
  run.sample_cap = 20;
  run.duration_s = 19.5;
  auto s = watch::summarize(run);
  EXPECT_EQ(s.exit_code, ExitCode::cannot_tell);
  EXPECT_NE(s.next_step.find("sample limit"), std::string::npos) << s.next_step;
  ASSERT_FALSE(s.notes.empty());
  EXPECT_NE(s.notes.back().find("Sampling stopped at 20 samples, the most a watch keeps, 19.5 s in"),
            std::string::npos)
      << s.notes.back();
  auto back = watch::run_from_json(watch::to_json(run, s));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->sample_cap, 20u);
}

// A --load asked for that never ran (the watch ended in its lead-in, by --count or a signal): the clocks under load
// were not seen, whatever else was (W3).
TEST(WatchSummary, a_load_that_never_started_is_cannot_tell) {
  auto run = idle_run(10);
  run.load = watch::LoadWindow{};
  run.load->requested_s = 5;
  auto s = watch::summarize(run);
  EXPECT_EQ(s.cause, Cause::unread);
  EXPECT_EQ(s.exit_code, ExitCode::cannot_tell);
  ASSERT_FALSE(s.notes.empty());
  EXPECT_NE(s.notes.back().find("The load never ran: the watch ended before it started"), std::string::npos)
      << s.notes.back();
  EXPECT_NE(s.next_step.find("watch again until the load has run"), std::string::npos) << s.next_step;
  // It ran, between two samples: said so, with the advice that can help (D1).
  run.load->start_s = 3.2;
  run.load->end_s = 4.2;
  s = watch::summarize(run);
  EXPECT_EQ(s.exit_code, ExitCode::cannot_tell);
  ASSERT_FALSE(s.notes.empty());
  EXPECT_NE(s.notes.back().find("The load ran from 3.2 s, but no sample fell inside it"), std::string::npos)
      << s.notes.back();
  EXPECT_NE(s.next_step.find("--interval well under the --load"), std::string::npos) << s.next_step;
}

TEST(WatchSummary, clock_stats_reason_time_and_settle) {
  auto run = idle_run(10);
  run.load = watch::LoadWindow{4, 2, 6, 200, "", {}, {}, {}};
  for (std::size_t k = 0; k < run.samples.size(); ++k) {
    auto& s = run.samples[k];
    s.phase = k < 2 ? Phase::idle : k < 6 ? Phase::load : Phase::after_load;
    auto& r = s.gpus[0];
    r.sm_mhz = s.phase == Phase::load ? 1980u : k == 6 ? 1500u : 345u;
    r.pstate = s.phase == Phase::load ? 0u : 8u;
    r.event_reasons = s.phase == Phase::load ? 0u : k_idle_reason;
  }
  auto sum = watch::summarize(run);
  const auto& g = sum.gpus[0];
  ASSERT_TRUE(g.sm && g.sm_idle && g.sm_load);
  EXPECT_EQ(g.sm->min, 345u);
  EXPECT_EQ(g.sm->max, 1980u);
  EXPECT_EQ(g.sm_load->median, 1980u);
  EXPECT_EQ(g.sm_load->count, 4u);
  // Idle samples: 0, 1 before; after the 3 s grace only sample 9 (t=9 >= 6+3).
  EXPECT_EQ(g.sm_idle->count, 3u);
  EXPECT_EQ(g.sm_idle->median, 345u);
  ASSERT_TRUE(g.settle_s);
  EXPECT_DOUBLE_EQ(*g.settle_s, 1.0);  // t=6 still at 1500, t=7 back at 345
  EXPECT_EQ(g.pstates, (std::vector<unsigned>{0, 8}));
  ASSERT_EQ(g.reason_time.size(), 1u);
  EXPECT_EQ(g.reason_time[0].reason, "GpuIdle");
  EXPECT_DOUBLE_EQ(g.reason_time[0].seconds, 6.0);  // 6 idle samples x 1 s (the last counts one interval)
  EXPECT_EQ(g.causes, std::vector<Cause>{Cause::stable});

  // A sample taken while the load was starting (children spawned, no kernel seen finished yet) may already read
  // boost clocks: it is neither idle (which would make a swing of it) nor under load.
  run.samples[1].phase = Phase::load_starting;
  run.samples[1].gpus[0].sm_mhz = 1980u;
  const auto starting = watch::summarize(run).gpus[0];
  ASSERT_TRUE(starting.sm_idle && starting.sm_load);
  EXPECT_EQ(starting.sm_idle->count, 2u);
  EXPECT_EQ(starting.sm_idle->max, 345u);
  EXPECT_EQ(starting.sm_load->count, 4u);
  EXPECT_EQ(starting.causes, std::vector<Cause>{Cause::stable});
}

TEST(WatchSummary, a_reason_never_lasts_longer_than_the_watch) {
  auto run = idle_run(1);
  run.interval_s = 5;
  run.duration_s = 0.5;  // stopped (or asked to end) half a second after its only sample
  run.samples[0].gpus[0].event_reasons = k_idle_reason;
  auto g = watch::summarize(run).gpus[0];
  ASSERT_EQ(g.reason_time.size(), 1u);
  EXPECT_DOUBLE_EQ(g.reason_time[0].seconds, 0.5);
  EXPECT_DOUBLE_EQ(watch::sampled_seconds(run), 0.5);  // what the text's "% of the watch" divides by
  run.duration_s = 0;  // a replay that did not record its length: one interval, as before
  g = watch::summarize(run).gpus[0];
  EXPECT_DOUBLE_EQ(g.reason_time[0].seconds, 5.0);
}

TEST(WatchSummary, pinned_time_counts_from_the_last_read_setting) {
  auto run = idle_run(20);
  for (std::size_t k = 0; k < run.samples.size(); ++k) {
    auto& r = run.samples[k].gpus[0];
    r.app_sm_mhz = k % 10 != 0 ? std::nullopt : std::optional<unsigned>(1410);
  }
  auto g = watch::summarize(run).gpus[0];
  ASSERT_EQ(g.evidence.size(), 1u);
  EXPECT_EQ(g.evidence[0], "SM application clock pinned at 1410 MHz (default 1980 MHz) for 20.0 s");
}

TEST(WatchSummary, held_mode_with_persistence_off_says_what_it_cannot_see) {
  auto run = idle_run(5);
  run.mode = nvml::SampleMode::held;
  for (auto& s : run.samples) {
    s.init_ms = -1;
    for (auto& r : s.gpus) {
      r.attach_ms = -1;
      r.persistence = false;
    }
  }
  run.samples[0].init_ms = 12;
  auto sum = watch::summarize(run);
  // The watcher itself keeps the GPU initialized: "stable" would be the client hiding the problem.
  EXPECT_EQ(sum.cause, Cause::unread);
  EXPECT_EQ(sum.exit_code, ExitCode::cannot_tell);
  EXPECT_NE(sum.gpus[0].evidence.back().find("a held watch keeps the GPU initialized"), std::string::npos);
  ASSERT_EQ(sum.notes.size(), 2u);
  EXPECT_NE(sum.notes[0].find("--mode detached"), std::string::npos);
  ASSERT_TRUE(sum.init_ms);
  EXPECT_EQ(sum.init_ms->count, 1u);
  EXPECT_FALSE(sum.gpus[0].attach_ms);

  // Persistence never read is no better (review-s57 M2): only a held watch of a GPU known to persist is stable.
  for (auto& s : run.samples) {
    for (auto& r : s.gpus) r.persistence = std::nullopt;
  }
  sum = watch::summarize(run);
  EXPECT_EQ(sum.cause, Cause::unread);
  EXPECT_EQ(sum.gpus[0].evidence.back(), "persistence mode was not read, and a held watch keeps the GPU initialized: "
                                         "de-initialization cannot show here (watch again with --mode detached)");
  ASSERT_GE(sum.notes.size(), 1u);
  EXPECT_NE(sum.notes[0].find("GPU 0: persistence mode was not read"), std::string::npos) << sum.notes[0];
  for (auto& s : run.samples) {
    for (auto& r : s.gpus) r.persistence = true;
  }
  EXPECT_EQ(watch::summarize(run).cause, Cause::stable);
}

// One sample says nothing about movement: never "stable".
TEST(WatchSummary, one_sample_is_too_few_to_call_stable) {
  auto run = idle_run(1);
  auto sum = watch::summarize(run);
  EXPECT_EQ(sum.cause, Cause::unread);
  EXPECT_EQ(sum.exit_code, ExitCode::cannot_tell);
  EXPECT_EQ(sum.gpus[0].evidence.back(), "only 1 sample read its SM clock: too few to call it stable");
  EXPECT_EQ(watch::summarize(idle_run(2)).cause, Cause::stable);
}

TEST(WatchSummary, stats_median_is_a_value_read) {
  EXPECT_FALSE(watch::stats_of({}));
  auto s = watch::stats_of({1980, 345, 1410, 345});
  ASSERT_TRUE(s);
  EXPECT_EQ(s->min, 345u);
  EXPECT_EQ(s->median, 345u);  // lower median of 345 345 1410 1980
  EXPECT_EQ(s->max, 1980u);
  EXPECT_EQ(watch::stats_of({7})->median, 7u);
}

// A replayed file can hold any number: one past what the statistics' whole milliseconds hold is clamped there
// (converting it is undefined; the fuzzer found it), and is still a cold attach.
TEST(WatchSummary, a_duration_past_unsigned_is_clamped_not_undefined) {
  watch::WatchRun run = idle_run(4);
  readings(0, 0, 4, [](auto& r) { r.attach_ms = 8.21e26; })(run);
  run.samples[1].init_ms = 1e300;
  auto summary = watch::summarize(run);
  ASSERT_TRUE(summary.gpus[0].attach_ms);
  EXPECT_EQ(summary.gpus[0].attach_ms->max, std::numeric_limits<unsigned>::max());
  EXPECT_EQ(summary.gpus[0].deinit_events.size(), 4u);
  ASSERT_TRUE(summary.init_ms);
  EXPECT_EQ(summary.init_ms->max, std::numeric_limits<unsigned>::max());
  EXPECT_EQ(summary.gpus[1].attach_ms->max, 7u);
}

// Samples after a GPU's own load ended are not counted as under load for it; the other GPU's are.
TEST(WatchSummary, a_gpu_whose_load_ended_early_counts_only_what_ran) {
  auto run = idle_run(12);
  run.load = watch::LoadWindow{6, 2, 8, 100, "launch: CUDA_ERROR_LAUNCH_FAILED",
                               {{1, 4.5, true, "launch: CUDA_ERROR_LAUNCH_FAILED"}}, {}, {}};
  for (std::size_t k = 2; k < 8; ++k) {
    run.samples[k].phase = Phase::load;
  }
  auto s = watch::summarize(run);
  ASSERT_TRUE(s.gpus[0].sm_load && s.gpus[1].sm_load);
  EXPECT_EQ(s.gpus[0].sm_load->count, 6u);
  EXPECT_EQ(s.gpus[1].sm_load->count, 3u);  // t = 2, 3, 4
  EXPECT_NE(s.gpus[1].evidence.back().find("its load ended early, at 4.5 s (launch: CUDA_ERROR_LAUNCH_FAILED)"),
            std::string::npos)
      << s.gpus[1].evidence.back();
  ASSERT_EQ(s.notes.size(), 1u);
  EXPECT_EQ(s.notes[0], "GPU 1's load ended early, at 4.5 s: launch: CUDA_ERROR_LAUNCH_FAILED");
  EXPECT_NE(s.next_step.find("load ended early"), std::string::npos);
  // One that never started says so.
  run.load->ended_early[0].ran = false;
  s = watch::summarize(run);
  EXPECT_EQ(s.notes[0], "GPU 1's load did not run: launch: CUDA_ERROR_LAUNCH_FAILED");

  // Each GPU's own start counts (review-s43-diff F2): GPU 0's kernel from 2 s, GPU 1's never. The window's
  // "load" phase was GPU 0's: GPU 1 shows no clocks under load and no settle time.
  run.load->started = {{0, 2.0}};
  s = watch::summarize(run);
  ASSERT_TRUE(s.gpus[0].sm_load);
  EXPECT_EQ(s.gpus[0].sm_load->count, 6u);
  EXPECT_FALSE(s.gpus[1].sm_load);
  EXPECT_FALSE(s.gpus[1].settle_s);
  EXPECT_EQ(s.gpus[1].causes.front(), Cause::unread);
  // A GPU whose kernel started late counts from its own start.
  run.load->ended_early.clear();
  run.load->started = {{0, 2.0}, {1, 5.0}};
  s = watch::summarize(run);
  ASSERT_TRUE(s.gpus[1].sm_load);
  EXPECT_EQ(s.gpus[1].sm_load->count, 3u);  // t = 5, 6, 7
}

TEST(WatchJson, round_trip_keeps_the_summary) {
  auto run = idle_run(6);
  run.load = watch::LoadWindow{2, 1, 3, 50, "", {{1, 2.5, true, "load child printed no result"}}, {}, {}};
  run.samples[2].phase = Phase::load;
  run.samples[1].phase = Phase::load_starting;  // every phase survives the round trip
  run.samples[1].gpus[0].attach_ms = 900;
  run.samples[3].gpus[1] = nvml::GpuReading{};
  run.samples[3].gpus[1].index = 1;
  run.samples[3].gpus[1].error = "UNKNOWN";  // counted, not attributed (a GPU_IS_LOST would decide: RAS)
  run.samples[4].error = "nvmlInit: UNKNOWN";
  run.samples[4].gpus.clear();
  auto before = watch::summarize(run);
  auto j = watch::to_json(run, before);
  auto back = watch::run_from_json(nlohmann::json::parse(j.dump()));
  ASSERT_TRUE(back) << back.error().message;
  auto after = watch::summarize(*back);
  EXPECT_EQ(watch::to_json(*back, after), j);
  EXPECT_EQ(j["summary"]["attribution"], "deinit-churn");
  EXPECT_EQ(j["summary"]["init_failures"], 1);
  EXPECT_EQ(j["summary"]["gpus"][1]["failed_samples"], 1);
  EXPECT_EQ(j["load"]["ended_early"][0]["gpu"], 1);
  EXPECT_EQ(back->load->ended_early.at(0).why, "load child printed no result");
}

// What `watch --json` prints is written a sample at a time: the same document as to_json, plus exit_code, also
// with a hostile hostname and without samples.
TEST(WatchJson, written_a_sample_at_a_time_is_the_same_document) {
  for (std::size_t samples : {std::size_t{0}, std::size_t{1}, std::size_t{5}}) {
    auto run = idle_run(samples);
    run.hostname = "node\n  \"samples\": null";
    if (run.samples.size() > 1) {
      run.samples[1].error = "nvmlInit: UNKNOWN";
    }
    auto summary = watch::summarize(run);
    std::ostringstream out;
    watch::write_json(out, run, summary, 9);
    auto expected = watch::to_json(run, summary);
    expected["exit_code"] = 9;
    auto written = nlohmann::json::parse(out.str(), nullptr, false);
    ASSERT_FALSE(written.is_discarded()) << out.str();
    EXPECT_EQ(written, expected) << samples;
    // One sample a line: a long run can be read (or grepped) line by line.
    std::istringstream lines(out.str());
    std::size_t sample_lines = 0;
    for (std::string line; std::getline(lines, line);) {
      sample_lines += std::regex_match(line, std::regex(R"(    \{.*\},?)")) ? 1U : 0U;
    }
    EXPECT_EQ(sample_lines, samples) << out.str();
  }
}

TEST(WatchJson, rejects_what_is_not_a_watch_run) {
  EXPECT_FALSE(watch::run_from_json(nlohmann::json{{"kind", "probe"}}));
  EXPECT_FALSE(watch::run_from_json(nlohmann::json{{"kind", "watch"}, {"schema_version", 99}}));
  auto bad = watch::run_from_json(nlohmann::json{{"kind", "watch"}, {"schema_version", 1}, {"mode", "held"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("malformed"), std::string::npos);
}

// Numbers out of range or of the wrong type in a replayed file are errors,
// never a float cast to an unsigned (undefined behaviour) or an exception.
TEST(WatchJson, out_of_range_numbers_are_errors) {
  auto base = [] {
    return nlohmann::json{{"kind", "gpuwarm-watch"}, {"schema_version", 1}, {"mode", "detached"}, {"interval_s", 1.0},
                          {"gpus", nlohmann::json::array({{{"index", 0}}})},
                          {"samples", nlohmann::json::array({{{"t_s", 0.0}, {"gpus", nlohmann::json::array({{{"index", 0}, {"sm_mhz", 345}}})}}})}};
  };
  EXPECT_TRUE(watch::run_from_json(base()));
  for (auto mutate : std::vector<std::function<void(nlohmann::json&)>>{
           [](nlohmann::json& j) { j["gpus"][0]["index"] = 1e30; },
           [](nlohmann::json& j) { j["gpus"][0]["index"] = -1; },
           [](nlohmann::json& j) { j["samples"][0]["gpus"][0]["sm_mhz"] = 5e20; },
           [](nlohmann::json& j) { j["samples"][0]["gpus"][0]["sm_mhz"] = "fast"; },
           [](nlohmann::json& j) { j["samples"][0]["t_s"] = "later"; },
           [](nlohmann::json& j) { j["schema_version"] = "1"; },
           [](nlohmann::json& j) { j["interval_s"] = "soon"; },
       }) {
    auto j = base();
    mutate(j);
    auto r = watch::run_from_json(j);
    EXPECT_FALSE(r) << j.dump();
  }
}

// Found by the probe_baseline fuzzer: a "kind" that is not a string threw out
// of probe_from_json ("internal error"); now it is "not a probe result".
TEST(ProbeJson, a_kind_that_is_not_a_string_is_an_error_not_an_exception) {
  std::ifstream in(std::string(GPUWARM_SOURCE_DIR) + "/tests/fuzz/regressions/probe_baseline-kind-not-a-string.json");
  std::stringstream text;
  text << in.rdbuf();
  auto j = nlohmann::json::parse(text.str(), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_FALSE(probe_from_json(j));
  EXPECT_FALSE(probe_from_json(nlohmann::json{{"kind", 5}, {"schema_version", 1}}));
}

TEST(ProbeJson, a_string_schema_version_is_an_error_not_an_exception) {
  auto r = probe_from_json(nlohmann::json{{"kind", "gpuwarm-probe"}, {"schema_version", "1"}, {"gpus", nlohmann::json::array()}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not supported"), std::string::npos);
}

TEST(WatchText, names_the_attribution_and_lists_events) {
  auto run = idle_run(8);
  for (auto& s : run.samples) s.gpus[0].attach_ms = 2000;
  auto text = watch::render_text(run, watch::summarize(run), false);
  EXPECT_NE(text.find("detached"), std::string::npos);
  EXPECT_NE(text.find("deinit-churn"), std::string::npos);
  EXPECT_NE(text.find("... and 3 more"), std::string::npos);
  EXPECT_NE(text.find("gpuwarm fix"), std::string::npos);
  EXPECT_EQ(text.find("\x1b["), std::string::npos);
}

// Runs recorded on a real H100 (driver 580.159.04, persistence on): idle at
// 345 MHz, boost to 1980 MHz under the built-in load, back afterwards.
nlohmann::json recorded(const char* name) {
  std::ifstream in(std::string(GPUWARM_SOURCE_DIR) + "/examples/" + name);
  std::stringstream buf;
  buf << in.rdbuf();
  return nlohmann::json::parse(buf.str());
}

TEST(WatchRecorded, h100_load_steps_to_boost_and_back) {
  auto run = watch::run_from_json(recorded("h100-watch-load.json"));
  ASSERT_TRUE(run) << run.error().message;
  auto s = watch::summarize(*run);
  EXPECT_EQ(s.cause, Cause::stable);
  EXPECT_EQ(s.exit_code, ExitCode::healthy);
  ASSERT_EQ(s.gpus.size(), 1u);
  const auto& g = s.gpus[0];
  ASSERT_TRUE(g.sm_load && g.sm_idle && g.settle_s);
  EXPECT_EQ(g.sm_load->median, 1980u);
  EXPECT_EQ(g.sm_idle->median, 345u);
  EXPECT_GT(*g.settle_s, 0.5);
  EXPECT_LT(*g.settle_s, 5.0);
  EXPECT_TRUE(g.deinit_events.empty());
  ASSERT_TRUE(run->load);
  EXPECT_GT(run->load->launches, 100u);
}

// The replay reads the text sample by sample (never the whole document): it must take what the whole-document
// reader takes, sample for sample, and refuse what it refuses.
TEST(WatchJson, streamed_replay_reads_what_the_document_reader_reads) {
  for (const char* name : {"h100-watch-load.json", "h100-watch-detached.json"}) {
    const nlohmann::json whole = recorded(name);
    auto streamed = watch::run_from_text(whole.dump());
    auto reference = watch::run_from_json(whole);
    ASSERT_TRUE(streamed && reference) << name;
    ASSERT_EQ(streamed->samples.size(), reference->samples.size()) << name;
    EXPECT_GT(streamed->samples.size(), 10u) << name;
    for (std::size_t i = 0; i < streamed->samples.size(); ++i) {
      const auto& a = streamed->samples[i];
      const auto& b = reference->samples[i];
      ASSERT_EQ(a.gpus.size(), b.gpus.size());
      EXPECT_EQ(std::tie(a.t_s, a.init_ms, a.phase), std::tie(b.t_s, b.init_ms, b.phase)) << name << " " << i;
      EXPECT_EQ(std::tie(a.gpus[0].sm_mhz, a.gpus[0].attach_ms, a.gpus[0].event_reasons),
                std::tie(b.gpus[0].sm_mhz, b.gpus[0].attach_ms, b.gpus[0].event_reasons));
    }
    EXPECT_EQ(watch::summarize(*streamed).cause, watch::summarize(*reference).cause);
  }
  const std::string head =
      R"({"kind":"gpuwarm-watch","schema_version":1,"mode":"held","interval_s":1,"gpus":[{"index":0,"name":"G\u001b[2J"}],)";
  const std::string sample = R"({"t_s":0,"gpus":[{"index":0,"sm_mhz":345,"error":"e\u001b]0;x"}]})";
  auto ok = watch::run_from_text(head + R"("samples":[)" + sample + "," + sample + "]}");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->samples.size(), 2u);
  EXPECT_EQ(ok->samples[0].gpus[0].error, "e\\x1b]0;x");  // escaped as every saved string is
  EXPECT_EQ(ok->gpus[0].name, "G\\x1b[2J");
  // A key given twice: the last stands, as for every key of a document.
  auto twice = watch::run_from_text(head + R"("samples":[{"t_s":"bad"}],"samples":[)" + sample + "]}");
  ASSERT_TRUE(twice) << twice.error().message;
  EXPECT_EQ(twice->samples.size(), 1u);
  struct Refused {
    std::string text;
    const char* says;
  };
  for (const auto& [text, says] : std::vector<Refused>{
           {head + R"("samples":[)" + sample + R"(,{"t_s":"later","gpus":[]}]})", "malformed watch run"},
           {head + R"("samples":[)" + sample + ",7]}", "malformed watch run"},
           {head + R"("samples":{"a":)" + sample + "}}", "\"samples\" is not a list"},
           {head + R"("samples":[)" + sample + "]", "not valid JSON"},
           {R"({"error":"no GPU"})", "a watch that did not run: no GPU"},
           {R"({"kind":"gpuwarm-probe","samples":[]})", "not a gpuwarm watch run"},
       }) {
    auto r = watch::run_from_text(text);
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
  }
}

// Wide containers of objects, in a sample or beside the samples, read in linear time: nlohmann's callback parser
// took 7 s for 160000 of them and 115 s for a 2 MB sample with as many keys.
TEST(WatchJson, wide_objects_read_in_linear_time) {
  std::string wide = R"({"kind":"gpuwarm-watch","schema_version":1,"mode":"held","interval_s":1,"gpus":[],"x":[)";
  std::string keys;
  for (int i = 0; i < 160000; ++i) {
    wide += i == 0 ? "{}" : ",{}";
    keys += (i == 0 ? "\"k" : ",\"k") + std::to_string(i) + "\":{}";
  }
  wide += R"(],"samples":[{"t_s":0,"gpus":[],"j":{)" + keys + "}}]}";
  const auto start = std::chrono::steady_clock::now();
  auto run = watch::run_from_text(wide);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(run) << run.error().message;
  EXPECT_EQ(run->samples.size(), 1u);
  EXPECT_LT(seconds, 10.0);  // about 0.1 s (2 s under ASan); quadratic, minutes
}

TEST(WatchRecorded, h100_detached_idle_is_stable_with_warm_attaches) {
  auto run = watch::run_from_json(recorded("h100-watch-detached.json"));
  ASSERT_TRUE(run) << run.error().message;
  auto s = watch::summarize(*run);
  EXPECT_EQ(s.cause, Cause::stable);
  const auto& g = s.gpus[0];
  ASSERT_TRUE(g.attach_ms);
  EXPECT_EQ(g.attach_ms->count, run->samples.size());
  EXPECT_LT(g.attach_ms->max, 50u);  // a persistent GPU attaches in milliseconds
  ASSERT_EQ(g.reason_time.size(), 1u);
  EXPECT_EQ(g.reason_time[0].reason, "GpuIdle");
}

TEST(Durations, parse_table) {
  struct Case {
    const char* in;
    std::optional<double> seconds;
  };
  const Case cases[] = {{"1", 1.0},     {"2s", 2.0},      {"500ms", 0.5}, {"1.5m", 90.0}, {"2min", 120.0},
                        {"1h", 3600.0}, {" 3s ", 3.0},    {"0", 0.0},     {"", {}},       {"s", {}},
                        {"-1s", {}},    {"1.2.3s", {}},   {"5d", {}},     {"1e3", {}},    {".", {}}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    EXPECT_EQ(parse_duration_seconds(c.in), c.seconds);
  }
}

}  // namespace
}  // namespace gpuwarm::test
