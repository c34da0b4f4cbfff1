// probe/: a job's stages and READY from its processes, the isolated reference, schema 1 baselines, and the
// before/after of job starts.

#include <gtest/gtest.h>

#include "probe/probe.h"

namespace gpuwarm::test {
namespace {

GpuProbe process(std::vector<cuda::Stage> stages, std::optional<double> ready, std::string failed = "",
                 double failed_ms = 0) {
  GpuProbe p;
  p.result.stages = std::move(stages);
  p.result.failed_stage = std::move(failed);
  p.result.failed_ms = failed_ms;
  p.launch_to_ready_ms = ready;
  return p;
}

double stage(const std::vector<cuda::Stage>& stages, const std::string& name) {
  for (const auto& s : stages) {
    if (s.name == name) return s.ms;
  }
  return -1;
}

TEST(ProbeJob, stages_come_from_the_last_process_ready_summed_over_its_gpus) {
  struct Case {
    const char* what;
    JobStart job;
    double cu_init;
    double ctx_retain;
    std::optional<double> ready;
  };
  const std::vector<Case> cases = {
      {"one process: per-device stages add up",
       {k_job_one_process, 2,
        {process({{"cu_init", 300, -1}, {"ctx_retain", 100, 0}, {"alloc_sync", 1, 0}, {"ctx_retain", 120, 1},
                  {"alloc_sync", 1, 1}, {"ctx_release", 50, 0}, {"ctx_release", 50, 1}},
                 530)},
        0,
        {0, 1},
        {},
        0},
       300, 220, 530},
      {"a process per GPU: the stages of the last process ready, never a mix of processes",
       {k_job_process_per_gpu, 2,
        {process({{"cu_init", 300, -1}, {"ctx_retain", 100, 0}}, 450),
         process({{"cu_init", 600, -1}, {"ctx_retain", 90, 0}}, 720)},
        0,
        {0, 1},
        {},
        0},
       600, 90, 720},
      {"a failed process: no READY, and its own stages, the failed one's time included",
       {k_job_process_per_gpu, 2,
        {process({{"cu_init", 300, -1}, {"ctx_retain", 100, 0}}, 450),
         process({{"cu_init", 500, -1}}, std::nullopt, "ctx_retain", 80)},
        0,
        {0, 1},
        {},
        0},
       500, 80, std::nullopt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto stages = job_stages(c.job);
    EXPECT_EQ(stage(stages, "cu_init"), c.cu_init);
    EXPECT_EQ(stage(stages, "ctx_retain"), c.ctx_retain);
    EXPECT_EQ(stage(stages, "ctx_release"), -1);  // a job is ready before it releases anything
    EXPECT_EQ(job_ready_ms(c.job), c.ready);
    EXPECT_EQ(job_ok(c.job), c.ready.has_value());
  }
}

TEST(ProbeJob, the_slowest_isolated_gpu_is_the_reference_only_for_the_isolated_method) {
  ProbeRun run;
  run.method = k_method_isolated;
  run.gpus = {process({{"cu_init", 100, -1}}, 300), process({{"cu_init", 100, -1}}, 350)};
  EXPECT_EQ(slowest_isolated_ready_ms(run), 350.0);
  run.method = k_method_parallel;  // contended per-GPU figures are no reference
  EXPECT_FALSE(slowest_isolated_ready_ms(run));
  run.method = k_method_isolated;
  run.gpus[1].result.failed_stage = "cu_init";
  EXPECT_FALSE(slowest_isolated_ready_ms(run));
}

TEST(ProbeJson, round_trip_and_schema_1) {
  ProbeRun run;
  run.hostname = "n";
  run.method = k_method_isolated;
  run.gpus = {process({{"cu_init", 100, -1}, {"ctx_retain", 50, 0}}, 200)};
  run.gpus[0].uuid = "GPU-a";
  run.jobs = {{k_job_one_process, 2, {process({{"ctx_retain", 50, 0}, {"ctx_retain", 60, 1}}, 400)}, 500, {3, 5}, {}, 0}};
  auto back = probe_from_json(probe_to_json(run));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->method, k_method_isolated);
  ASSERT_EQ(back->jobs.size(), 1u);
  EXPECT_EQ(job_ready_ms(back->jobs[0]), 400.0);
  EXPECT_EQ(back->jobs[0].processes[0].result.stages[1].device, 1);
  EXPECT_EQ(stage(job_stages(back->jobs[0]), "ctx_retain"), 110.0);
  EXPECT_EQ(back->jobs[0].gpu_indices, (std::vector<unsigned>{3, 5}));

  // Schema 1: `sequential` names the method; no jobs.
  auto v1 = probe_from_json(nlohmann::json::parse(R"({"kind":"gpuwarm-probe","schema_version":1,"sequential":false,
      "gpus":[{"index":0,"uuid":"GPU-a","stages":[{"name":"cu_init","ms":9}],"cuda_uuid":"GPU-a"}]})"));
  ASSERT_TRUE(v1) << v1.error().message;
  EXPECT_EQ(v1->method, k_method_parallel);
  EXPECT_TRUE(v1->jobs.empty());
  EXPECT_EQ(v1->gpus[0].result.devices.at(0).uuid, "GPU-a");

  auto future = probe_from_json(nlohmann::json::parse(R"({"kind":"gpuwarm-probe","schema_version":3,"gpus":[]})"));
  ASSERT_FALSE(future);
  EXPECT_NE(future.error().message.find("reads 1 to 2"), std::string::npos) << future.error().message;
}

// A saved baseline is user input: an integer field holding a float or a number out of range is malformed
// (nlohmann's plain cast would be undefined; the fuzz target found 1e30).
TEST(ProbeJson, integer_fields_refuse_floats_and_numbers_out_of_range) {
  const char* const bad[] = {
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[{"index":1e30,"stages":[]}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[{"index":-1,"stages":[]}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[{"index":0,"stages":[{"name":"a","ms":1,"device":1e30}]}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[{"index":0,"stages":[],"failed_device":4294967296}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[],"jobs":[{"method":"x","gpus":1e30,"processes":[]}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[],"jobs":[{"method":"x","gpu_indices":[0.5],"processes":[]}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[],"persistence":[{"index":-1e30}]})",
      R"({"kind":"gpuwarm-probe","schema_version":2,"gpus":[],"rounds":4294967296})",
  };
  for (const char* text : bad) {
    auto r = probe_from_json(nlohmann::json::parse(text));
    ASSERT_FALSE(r) << text;
    EXPECT_NE(r.error().message.find("is not a whole number in range"), std::string::npos) << r.error().message;
  }
  auto ok = probe_from_json(nlohmann::json::parse(
      R"({"kind":"gpuwarm-probe","schema_version":2,"rounds":null,"failed_round":null,
          "gpus":[{"index":3,"stages":[{"name":"a","ms":1,"device":-1}],"failed_device":-1,"failed_round":null}]})"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->gpus[0].index, 3u);
  EXPECT_EQ(ok->rounds, 1u);
}

TEST(ProbeCompare, job_starts_by_method) {
  ProbeRun before;
  before.jobs = {{k_job_one_process, 2, {process({{"cu_init", 2000, -1}}, 5200)}, 0, {0, 1}, {}, 0}};
  ProbeRun after;
  after.jobs = {{k_job_one_process, 2, {process({{"cu_init", 200, -1}}, 420)}, 0, {0, 1}, {}, 0},
                {k_job_process_per_gpu, 2, {process({}, 300), process({}, 310)}, 0, {0, 1}, {}, 0}};
  auto j = compare_jobs_json(before, after);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["before_ready_ms"], 5200.0);
  EXPECT_EQ(j[0]["after_ready_ms"], 420.0);
  EXPECT_EQ(j[0]["stages"][2]["name"], "cu_init");
  EXPECT_EQ(j[0]["stages"][2]["before_ms"], 2000.0);
  EXPECT_FALSE(j[1]["in_baseline"]);
  auto text = render_compare_text(before, after);
  EXPECT_NE(text.find("Job start: one process, every GPU"), std::string::npos) << text;
  EXPECT_NE(text.find("-92%"), std::string::npos) << text;  // READY 5200 -> 420
  EXPECT_NE(text.find("Job start: a process per GPU (2)\n  not in the baseline"), std::string::npos) << text;
}

TEST(ProbeCompare, per_gpu_figures_taken_differently_show_no_change) {
  auto gpu = [](const char* uuid, double cu_init) {
    GpuProbe g = process({{"cu_init", cu_init, -1}}, cu_init);
    g.uuid = uuid;
    return g;
  };
  struct Case {
    const char* what;
    std::string before_method;
    std::size_t gpus;
    bool comparable;
  };
  const std::vector<Case> cases = {
      {"same method", k_method_isolated, 2, true},
      {"parallel baseline, isolated now", k_method_parallel, 2, false},
      {"one GPU: both methods are the same measurement", k_method_parallel, 1, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ProbeRun before;
    ProbeRun after;
    before.method = c.before_method;
    after.method = k_method_isolated;
    for (std::size_t i = 0; i < c.gpus; ++i) {
      const char* uuid = i == 0 ? "GPU-a" : "GPU-b";
      before.gpus.push_back(gpu(uuid, 487));
      after.gpus.push_back(gpu(uuid, 115));
    }
    EXPECT_EQ(per_gpu_comparable(before, after), c.comparable);
    auto j = compare_json(before, after);
    EXPECT_EQ(j[0]["comparable"], c.comparable);
    auto text = render_compare_text(before, after);
    EXPECT_EQ(text.find("-76%") != std::string::npos, c.comparable) << text;
    EXPECT_EQ(text.find("mixes the method with") != std::string::npos, !c.comparable) << text;
  }
}

TEST(ProbeText, a_failed_one_process_job_names_the_gpu_by_its_nvml_index) {
  ProbeRun run;
  GpuProbe p = process({{"cu_init", 100, -1}, {"ctx_retain", 50, 0}}, std::nullopt, "ctx_retain");
  p.result.failed_device = 1;  // CUDA ordinal 1 of "GPU 2,GPU 5"
  p.result.error = "CUDA_ERROR_DEVICE_UNAVAILABLE";
  run.jobs = {{k_job_one_process, 2, {p}, 0, {2, 5}, {}, 0}};
  auto text = render_probe_text(run);
  EXPECT_NE(text.find("one process, every GPU, GPU 5: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE"), std::string::npos)
      << text;
}


GpuProbe timed(double cu_init, std::string failed = "") {
  GpuProbe g = process({{"cu_init", cu_init, -1}, {"ctx_retain", 10, 0}}, cu_init + 10, std::move(failed));
  g.uuid = "GPU-a";
  return g;
}

TEST(ProbeRounds, the_median_round_or_the_first_failure) {
  struct Case {
    const char* what;
    std::vector<GpuProbe> rounds;
    double cu_init;         // of the round shown
    unsigned failed_round;  // 0 = none
    std::size_t samples;    // of the rounds that succeeded
    unsigned failed_rounds;
  };
  const std::vector<Case> cases = {
      {"one round: as it was, no samples", {timed(300)}, 300, 0, 0, 0},
      {"odd: the middle total", {timed(900), timed(100), timed(300)}, 300, 0, 3, 0},
      {"even: the lower middle, a round that happened", {timed(400), timed(100), timed(300), timed(900)}, 300, 0, 4,
       0},
      {"a failure wins over any median; the others' figures stay",
       {timed(100), timed(200, "ctx_retain"), timed(300), timed(50, "cu_init")}, 200, 2, 2, 2},
      {"a single failed round has no round number", {timed(5, "cu_init")}, 5, 0, 0, 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    GpuProbe m = median_round(c.rounds);
    EXPECT_EQ(stage(m.result.stages, "cu_init"), c.cu_init);
    EXPECT_EQ(m.failed_round, c.failed_round);
    EXPECT_EQ(m.total_samples_ms.size(), c.samples);
    EXPECT_EQ(m.failed_rounds, c.failed_rounds);
  }
  // A flaky GPU and a dead one read differently: how many rounds failed, out of how many.
  ProbeRun run;
  run.rounds = 4;
  run.gpus = {median_round({timed(100), timed(200, "ctx_retain"), timed(300), timed(50, "cu_init")})};
  run.gpus[0].result.error = "CUDA_ERROR_DEVICE_UNAVAILABLE";
  EXPECT_NE(render_probe_text(run).find(
                "GPU 0: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE (round 2; 2 of 4 rounds failed)"),
            std::string::npos)
      << render_probe_text(run);
  EXPECT_NE(render_probe_text(run).find("the lower middle round of 4"), std::string::npos);
  // The samples are every round's total, in round order.
  EXPECT_EQ(median_round({timed(900), timed(100), timed(300)}).total_samples_ms, (std::vector<double>{910, 110, 310}));
}

TEST(ProbeRounds, a_job_start_by_its_ready_and_a_failed_round_names_itself) {
  auto job = [](std::optional<double> ready, std::string failed = "") {
    JobStart j{k_job_process_per_gpu, 1, {process({{"cu_init", ready.value_or(1), -1}}, ready, std::move(failed))},
               0, {0}, {}, 0};
    j.processes[0].index = 4;
    return j;
  };
  JobStart m = median_round({job(700), job(500), job(600)});
  EXPECT_EQ(job_ready_ms(m), 600.0);
  EXPECT_EQ(m.ready_samples_ms, (std::vector<double>{700, 500, 600}));
  JobStart f = median_round({job(700), job(500), job(std::nullopt, "ctx_retain")});
  EXPECT_FALSE(job_ready_ms(f));
  EXPECT_EQ(f.failed_round, 3u);
  EXPECT_EQ(f.failed_rounds, 1u);
  EXPECT_EQ(f.ready_samples_ms, (std::vector<double>{700, 500}));
  f.processes[0].result.error = "CUDA_ERROR_DEVICE_UNAVAILABLE";
  ProbeRun run;
  run.jobs = {f};
  run.rounds = run.job_rounds = 3;
  auto text = render_probe_text(run);
  EXPECT_NE(text.find("GPU 4: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE (round 3)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("a process per GPU (1): 1 of 3 rounds failed; the first shown"), std::string::npos) << text;
  EXPECT_NE(text.find("median round of 3"), std::string::npos) << text;
  // Job starts measured in fewer rounds than the per-GPU table (a GPU timed out alone later): said.
  run.jobs = {median_round({job(700), job(500)})};
  run.job_rounds = 2;
  run.job_rounds_short = "GPU 1 timed out on its own (--timeout 1 s) in round 3";
  text = render_probe_text(run);
  EXPECT_NE(text.find("Measured in 2 of 3 rounds (GPU 1 timed out on its own (--timeout 1 s) in round 3); each "
                      "figure is the lower middle round of 2."),
            std::string::npos)
      << text;
  auto back = probe_from_json(probe_to_json(run));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->rounds, 3u);
  EXPECT_EQ(back->job_rounds, 2u);
  EXPECT_EQ(back->job_rounds_short, run.job_rounds_short);
  // A process that succeeded yet reported no ready instant fails its job with a reason, never silently.
  JobStart silent = job(std::nullopt);
  silent.processes[0].result.failed_stage.clear();
  JobStart s1 = median_round({silent});
  EXPECT_FALSE(job_ok(s1));
  EXPECT_EQ(s1.processes[0].child_error, "the probe child reported no ready instant");
}

TEST(ProbeRounds, a_change_is_within_spread_only_when_both_ranges_overlap) {
  struct Case {
    const char* what;
    std::vector<double> before, after;
    bool within;
  };
  const std::vector<Case> cases = {
      {"overlapping", {100, 120, 140}, {130, 150, 160}, true},
      {"touching", {100, 120}, {120, 130}, true},
      {"apart", {2000, 2100, 2500}, {110, 115, 130}, false},
      {"one round each: no spread to judge by", {100}, {101}, false},
      {"no samples", {}, {}, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(within_spread(c.before, c.after), c.within);
  }
  ProbeRun before;
  ProbeRun after;
  before.method = after.method = k_method_isolated;
  before.gpus = {timed(100)};
  before.gpus[0].total_samples_ms = {100, 110, 140};
  after.gpus = {timed(120)};
  after.gpus[0].total_samples_ms = {105, 130, 150};
  before.gpus[0].result.stages.push_back({"device_get", 0.2, -1});
  after.gpus[0].result.stages.push_back({"device_get", 0.5, -1});
  before.gpus[0].result.stages.push_back({"load_libcuda", 105.0, -1});  // -0.48%: no sign on a zero
  after.gpus[0].result.stages.push_back({"load_libcuda", 104.5, -1});
  auto text = render_compare_text(before, after);
  EXPECT_NE(text.find("+9%, within spread"), std::string::npos) << text;  // TOTAL 215.2 -> 234.5
  EXPECT_NE(text.find("load_libcuda  105.0      104.5     0%\n"), std::string::npos) << text;
  EXPECT_NE(text.find("< 1 ms"), std::string::npos) << text;  // stages under 1 ms both times: no percentage
  EXPECT_EQ(compare_json(before, after)[0]["within_spread"], true);
}

// review-s53-probe L3: job starts are the same GPUs by UUID, not by NVML index (a Slurm step numbers its GPUs
// from 0; a swapped GPU keeps its index).
TEST(ProbeJob, compared_only_on_the_same_gpus_by_uuid) {
  auto run_on = [](std::vector<unsigned> indices, std::vector<std::string> uuids, bool ranks_held = true) {
    ProbeRun run;
    run.hostname = "node-1";
    JobStart j;
    j.method = k_job_process_per_gpu;
    j.gpus = static_cast<unsigned>(indices.size());
    j.gpu_indices = indices;
    j.ranks_held = ranks_held && uuids.size() > 1;
    for (const auto& u : uuids) {
      GpuProbe p = process({{"cu_init", 100, -1}}, 150);
      p.uuid = u;
      j.processes.push_back(p);
    }
    run.jobs.push_back(j);
    return run;
  };
  struct Case {
    const char* what;
    ProbeRun before;
    ProbeRun after;
    bool comparable;
  };
  const std::vector<Case> cases = {
      {"the same GPUs, numbered alike", run_on({0, 1}, {"GPU-a", "GPU-b"}), run_on({0, 1}, {"GPU-A", "GPU-b"}), true},
      {"other GPUs numbered alike (two Slurm steps)", run_on({0, 1}, {"GPU-a", "GPU-b"}),
       run_on({0, 1}, {"GPU-c", "GPU-d"}), false},
      {"a GPU swapped under its index", run_on({0, 1}, {"GPU-a", "GPU-b"}), run_on({0, 1}, {"GPU-a", "GPU-e"}), false},
      {"the same GPUs numbered otherwise (in a step, then on the node)", run_on({2, 3}, {"GPU-a", "GPU-b"}),
       run_on({0, 1}, {"GPU-b", "GPU-a"}), true},
      {"a baseline without UUIDs: by index", run_on({0, 1}, {"", ""}), run_on({2, 3}, {"GPU-a", "GPU-b"}), false},
      // review-s53-diff L5: ranks that let go as each was ready (an earlier gpuwarm's baseline) measured another READY.
      {"a baseline whose ranks let go as each was ready", run_on({0, 1}, {"GPU-a", "GPU-b"}, false),
       run_on({0, 1}, {"GPU-a", "GPU-b"}), false},
      {"one process: nothing to hold", run_on({0}, {"GPU-a"}, false), run_on({0}, {"GPU-a"}), true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_EQ(compare_jobs_json(c.before, c.after)[0]["comparable"], c.comparable);
  }
  const std::string text =
      render_compare_text(run_on({0, 1}, {"GPU-a", "GPU-b"}, false), run_on({0, 1}, {"GPU-a", "GPU-b"}));
  EXPECT_NE(text.find("the baseline's processes let go of their contexts as each was ready (saved by an earlier "
                      "gpuwarm), this run's held them until all were: READY is not measured alike; save a new "
                      "baseline"),
            std::string::npos)
      << text;
  // Saved and read back, the marker stays.
  auto back = probe_from_json(probe_to_json(run_on({0, 1}, {"GPU-a", "GPU-b"})));
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(back->jobs.at(0).ranks_held);
}

TEST(ProbePersistence, summary_text_and_comparison) {
  auto gpus = [](std::vector<std::optional<bool>> states) {
    ProbeRun run;
    unsigned i = 0;
    for (auto s : states) {
      run.persistence.push_back({i, "GPU-" + std::to_string(i), s, s ? "" : "NVML_ERROR_NOT_SUPPORTED", {}, ""});
      ++i;
    }
    return run;
  };
  struct Case {
    const char* what;
    std::vector<std::optional<bool>> states;
    const char* summary;
    const char* text;
  };
  const std::vector<Case> cases = {
      {"not recorded (an older baseline)", {}, "not recorded", "Persistence when probed: not recorded"},
      {"every GPU on", {true, true}, "enabled", "Persistence when probed: Enabled on every GPU"},
      {"one GPU off", {false}, "disabled", "Persistence when probed: Disabled on GPU 0"},
      {"mixed", {false, true, false}, "mixed", "Disabled on GPU 0, 2; Enabled on GPU 1"},
      {"unread is unknown, never a state", {true, std::nullopt}, "unknown",
       "Enabled on GPU 0; not read on GPU 1 (NVML_ERROR_NOT_SUPPORTED)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    ProbeRun run = gpus(c.states);
    EXPECT_EQ(persistence_summary(run), c.summary);
    EXPECT_NE(render_probe_text(run).find(c.text), std::string::npos) << render_probe_text(run);
    auto back = probe_from_json(probe_to_json(run));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(persistence_summary(*back), c.summary);
  }
  auto off = gpus({false, false});
  auto on = gpus({true, true});
  auto j = compare_persistence_json(off, on);
  EXPECT_EQ(j["before"], "disabled");
  EXPECT_EQ(j["after"], "enabled");
  EXPECT_EQ(j["changed"], true);
  EXPECT_EQ(compare_persistence_json(on, on)["changed"], false);
  EXPECT_TRUE(compare_persistence_json(gpus({}), on)["changed"].is_null());
  EXPECT_TRUE(compare_persistence_json(gpus({true, std::nullopt}), on)["changed"].is_null());
  EXPECT_NE(render_compare_text(on, on).find("Persistence mode read the same in both runs"), std::string::npos);
  // review-s53-probe M2: a GPU that read Disabled but was held open (or may have been) was warm: its run is no
  // "before" of switching persistence on, and the text says why.
  auto held = gpus({false, false});
  held.persistence[1].held_by = {"nv-hostengine (pid 812)"};
  EXPECT_TRUE(compare_persistence_json(held, on)["changed"].is_null());
  EXPECT_NE(render_probe_text(held).find("Persistence when probed: Disabled on every GPU; GPU 1 held open by "
                                         "nv-hostengine (pid 812), warm whatever persistence reads"),
            std::string::npos)
      << render_probe_text(held);
  auto unsure = gpus({false, false});
  unsure.persistence[0].holders_unread = "the open files of 3 process(es) could not be read (run as root)";
  EXPECT_TRUE(compare_persistence_json(unsure, on)["changed"].is_null());
  EXPECT_NE(render_probe_text(unsure).find("GPU 0 may be held open by another process (the open files of 3"),
            std::string::npos);
  auto back = probe_from_json(probe_to_json(held));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->persistence[1].held_by, std::vector<std::string>{"nv-hostengine (pid 812)"});
  EXPECT_TRUE(compare_persistence_json(*back, on)["changed"].is_null());
  EXPECT_EQ(render_compare_text(off, on).find("read the same in both runs"), std::string::npos);
  EXPECT_NE(render_compare_text(off, on).find("Persistence before: Disabled on every GPU. After: Enabled on every GPU."),
            std::string::npos)
      << render_compare_text(off, on);
}

}  // namespace
}  // namespace gpuwarm::test
