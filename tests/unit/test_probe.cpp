// probe/: a job's stages and READY from its processes, the isolated reference, schema 1 baselines, and the
// before/after of job starts.

#include <gtest/gtest.h>

#include "probe/probe.h"

namespace gpuwarm::test {
namespace {

GpuProbe process(std::vector<cuda::Stage> stages, std::optional<double> ready, std::string failed = "") {
  GpuProbe p;
  p.result.stages = std::move(stages);
  p.result.failed_stage = std::move(failed);
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
        {0, 1}},
       300, 220, 530},
      {"a process per GPU: the stages of the last process ready, never a mix of processes",
       {k_job_process_per_gpu, 2,
        {process({{"cu_init", 300, -1}, {"ctx_retain", 100, 0}}, 450),
         process({{"cu_init", 600, -1}, {"ctx_retain", 90, 0}}, 720)},
        0,
        {0, 1}},
       600, 90, 720},
      {"a failed process: no READY",
       {k_job_process_per_gpu, 2,
        {process({{"cu_init", 300, -1}}, 450), process({{"cu_init", 300, -1}}, std::nullopt, "ctx_retain")},
        0,
        {0, 1}},
       300, -1, std::nullopt},
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
  run.jobs = {{k_job_one_process, 2, {process({{"ctx_retain", 50, 0}, {"ctx_retain", 60, 1}}, 400)}, 500, {3, 5}}};
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

TEST(ProbeCompare, job_starts_by_method) {
  ProbeRun before;
  before.jobs = {{k_job_one_process, 2, {process({{"cu_init", 2000, -1}}, 5200)}, 0, {0, 1}}};
  ProbeRun after;
  after.jobs = {{k_job_one_process, 2, {process({{"cu_init", 200, -1}}, 420)}, 0, {0, 1}},
                {k_job_process_per_gpu, 2, {process({}, 300), process({}, 310)}, 0, {0, 1}}};
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
  run.jobs = {{k_job_one_process, 2, {p}, 0, {2, 5}}};
  auto text = render_probe_text(run);
  EXPECT_NE(text.find("one process, every GPU, GPU 5: ctx_retain: CUDA_ERROR_DEVICE_UNAVAILABLE"), std::string::npos)
      << text;
}

}  // namespace
}  // namespace gpuwarm::test
