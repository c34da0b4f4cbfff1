#include <gtest/gtest.h>

#include <tuple>

#include "fleet/fleet.h"
#include "snapshot_builder.h"
#include "verify/verify.h"

namespace gpuwarm {
namespace {

CheckStatus status_of(const VerifyReport& r, const std::string& id) {
  for (const auto& c : r.checks) {
    if (c.id == id) return c.status;
  }
  ADD_FAILURE() << "no check " << id;
  return CheckStatus::skip;
}

VerifyInputs inputs_with(std::function<void(Snapshot&)> mutate, int samples = 3) {
  VerifyInputs in;
  in.before = test::healthy_snapshot();
  in.after = test::healthy_snapshot();
  mutate(in.after);
  for (int i = 0; i < samples; ++i) in.samples.push_back(in.after);
  return in;
}

TEST(Verify, HealthyPassesWithDcgmSkipped) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot&) {}));
  EXPECT_TRUE(r.passed);
  EXPECT_EQ(status_of(r, "dcgm"), CheckStatus::skip);
  EXPECT_EQ(r.checks.size(), 7u);
}

// "Verified." means every check ran; one that could not run here is named in the summary, one not asked for is not.
TEST(Verify, SummaryNamesChecksThatCouldNotRun) {
  VerifyInputs all_ran = inputs_with([](Snapshot&) {});
  std::string text = render_verify_text(all_ran, evaluate_verify(all_ran));
  EXPECT_TRUE(text.ends_with("\nVerified.\n")) << text;
  VerifyInputs no_systemd = inputs_with([](Snapshot& s) {
    s.service.reachable = false;
    s.service.unreachable = "no systemd";
  });
  VerifyReport r = evaluate_verify(no_systemd);
  EXPECT_TRUE(r.passed);
  text = render_verify_text(no_systemd, r);
  EXPECT_TRUE(text.ends_with("\nVerified, except what could not be checked here: unit-active, unit-enabled.\n"))
      << text;
}

TEST(Verify, EachCheckFailsOnItsOwn) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> mutate;
    const char* failing;
  };
  const std::vector<Case> cases = {
      {"inactive", [](Snapshot& s) { s.service.active_state = Fact<std::string>::known("inactive"); }, "unit-active"},
      {"skipped by the guard",
       [](Snapshot& s) {
         s.service.active_state = Fact<std::string>::known("inactive");
         s.service.result = Fact<std::string>::known("exec-condition");
       },
       "unit-active"},
      {"disabled", [](Snapshot& s) { s.service.unit_file_state = Fact<std::string>::known("disabled"); },
       "unit-enabled"},
      {"flag", [](Snapshot& s) { s.daemon.processes[0].argv.push_back("--no-persistence-mode"); }, "daemon-running"},
      {"arguments unread",
       [](Snapshot& s) {
         s.daemon.processes[0].argv.clear();
         s.daemon.processes[0].argv_missing = "/proc/4242/cmdline did not answer in 1000 ms";
       },
       "daemon-running"},
      {"gpu off, not held by the daemon either",
       [](Snapshot& s) {
         s.nvml.gpus[1].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root");
       },
       "persistence"},
      {"persistence unread", [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::unknown("UNKNOWN"); },
       "persistence"},
      {"not held", [](Snapshot& s) { s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0}); },
       "daemon-holds-gpus"},
      {"thermal", [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::known(0x20); },
       "clocks"},
  };
  for (const auto& c : cases) {
    VerifyReport r = evaluate_verify(inputs_with(c.mutate));
    EXPECT_FALSE(r.passed) << c.name;
    for (const auto& check : r.checks) {
      EXPECT_EQ(check.status == CheckStatus::fail, check.id == c.failing) << c.name << ": " << check.id;
    }
  }
}

// A GPU the driver lists but NVML does not show had nothing read: neither its persistence nor its device node
// passes (diagnose says GPU001).
TEST(Verify, AGpuTheDriverListsButNvmlMissesFails) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot& s) {
    s.nvml.device_count = Fact<unsigned>::known(1);
    s.nvml.gpus.pop_back();
    s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
  }));
  EXPECT_FALSE(r.passed);
  std::map<std::string, std::string> failed;
  for (const auto& c : r.checks) {
    if (c.status == CheckStatus::fail) {
      failed[c.id] = c.detail;
    }
  }
  EXPECT_NE(failed["persistence"].find("0000:07:00.0 (NVIDIA H100 80GB HBM3): the driver lists it, NVML does not show it"),
            std::string::npos)
      << failed["persistence"];
  EXPECT_NE(failed["daemon-holds-gpus"].find("/dev/nvidia1 (0000:07:00.0, which NVML does not show)"),
            std::string::npos)
      << failed["daemon-holds-gpus"];
}

// The driver's list unread and NVML showing fewer GPUs than the daemon holds: not a pass (review-s48-diff M2).
TEST(Verify, FewerGpusThanTheDaemonHoldsWithTheDriversListUnreadFails) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot& s) {
    s.nvml.device_count = Fact<unsigned>::known(1);
    s.nvml.gpus.pop_back();
    s.driver.kernel_gpus.clear();
    s.driver.kernel_gpus_unread = "/proc/driver/nvidia/gpus: Permission denied";
  }));
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(status_of(r, "persistence"), CheckStatus::fail);
}

// NVML left closed (a probe held the node): cannot tell where only NVML's checks failed, a failure where the unit
// is not active whatever the GPUs say.
TEST(Verify, NvmlLeftClosedIsCannotTellOnlyWhereNothingElseFailed) {
  auto closed = [](Snapshot& s) {
    s.nvml = NvmlFacts{};
    s.nvml.not_opened = "`gpuwarm probe` or `watch --load` is timing the GPUs";
    s.nvml.device_count = Fact<unsigned>::unknown("NVML not opened");
  };
  VerifyInputs in = inputs_with(closed);
  for (auto& sample : in.samples) closed(sample);
  VerifyReport r = evaluate_verify(in);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.nvml_not_opened, "`gpuwarm probe` or `watch --load` is timing the GPUs");
  EXPECT_NE(render_verify_text(in, r).find("verify again once that command has finished"), std::string::npos);
  // Left closed for an untrusted --root: no command to wait for; the text says what would open it.
  for (Snapshot* s : {&in.before, &in.after}) {
    s->nvml.not_opened_by = k_untrusted_root;
  }
  for (auto& sample : in.samples) sample.nvml.not_opened_by = k_untrusted_root;
  r = evaluate_verify(in);
  EXPECT_EQ(r.nvml_not_opened_by, k_untrusted_root);
  const std::string text = render_verify_text(in, r);
  EXPECT_NE(text.find("add --trust-root if that tree is this host's own /"), std::string::npos) << text;
  EXPECT_EQ(text.find("once that command has finished"), std::string::npos) << text;
  in.after.service.active_state = Fact<std::string>::known("inactive");
  r = evaluate_verify(in);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(r.nvml_not_opened, "");
}

// A start the guard skipped says where its reason is, not only "inactive".
TEST(Verify, AStartTheGuardSkippedSaysWhereToReadWhy) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot& s) {
    s.service.active_state = Fact<std::string>::known("inactive");
    s.service.result = Fact<std::string>::known("exec-condition");
  }));
  auto active = std::find_if(r.checks.begin(), r.checks.end(), [](const auto& c) { return c.id == "unit-active"; });
  ASSERT_NE(active, r.checks.end());
  EXPECT_EQ(active->status, CheckStatus::fail);
  EXPECT_EQ(active->detail.rfind("inactive: its ExecCondition (gpuwarm guard) skipped the start", 0), 0u)
      << active->detail;
}

// A process list that could not be read is not "the daemon is not running": both daemon checks fail and say why.
TEST(Verify, UnlistedProcessesCannotTellWhetherTheDaemonRuns) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot& s) {
    s.daemon.processes.clear();
    s.daemon.processes_unread = "/proc is mounted with hidepid=2 and gpuwarm runs as uid 1000";
  }));
  EXPECT_FALSE(r.passed);
  for (const auto& c : r.checks) {
    if (c.id == "daemon-running" || c.id == "daemon-holds-gpus") {
      EXPECT_EQ(c.status, CheckStatus::fail) << c.id;
      EXPECT_EQ(c.detail.rfind("cannot tell: processes not listed (/proc is mounted with hidepid=2", 0), 0u) << c.detail;
    }
  }
}

TEST(Verify, NvmlDisabledButHeldByTheDaemonPassesAsDiagnoseSays) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::known(false); }));
  EXPECT_EQ(status_of(r, "persistence"), CheckStatus::pass);
  for (const auto& check : r.checks) {
    if (check.id == "persistence") {
      EXPECT_NE(check.detail.find("the daemon holds /dev/nvidia1"), std::string::npos) << check.detail;
    }
  }
}

// A saved verify report says per GPU which UUID it is and whether the daemon holds it, so fleet-summary reads a GPU
// the check passed (NVML's flag Disabled, the daemon's handle open: PM004) as the check did (review-s57 L3).
TEST(Verify, ItsJsonLetsFleetSummaryReadAGpuTheDaemonHolds) {
  VerifyInputs in = inputs_with([](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::known(false); });
  VerifyReport r = evaluate_verify(in);
  ASSERT_EQ(status_of(r, "persistence"), CheckStatus::pass);
  const nlohmann::json doc = render_verify_json(in, r);
  EXPECT_EQ(doc["gpus"][1]["held_by_daemon"], "yes");
  EXPECT_EQ(doc["gpus"][1]["uuid"], *in.after.nvml.gpus[1].uuid);
  fleet::ReportParser parser;
  std::string text = doc.dump();
  const std::size_t length = text.size();
  text.append(fleet::parse_padding(), '\0');
  auto parsed = parser.parse(std::string_view(text.data(), length));
  ASSERT_TRUE(parsed) << parsed.error().message;
  EXPECT_EQ(parsed->gpus_not_enabled, 0);
  EXPECT_EQ(parsed->gpu_uuids.size(), 2u);
}

TEST(Verify, IdleClockSwingFailsAndBusyDoesNot) {
  VerifyInputs in = inputs_with([](Snapshot&) {});
  in.samples[1].nvml.gpus[0].clocks.sm = Fact<unsigned>::known(345);  // 1980 -> 345 while idle
  EXPECT_EQ(status_of(evaluate_verify(in), "clocks"), CheckStatus::fail);
  for (auto& s : in.samples) s.nvml.gpus[0].compute_processes = Fact<unsigned>::known(1);
  EXPECT_EQ(status_of(evaluate_verify(in), "clocks"), CheckStatus::pass);
}

// Steady clocks need every GPU read in every sample: a later sample in which NVML did not initialize, stood aside
// or did not attach a GPU is no evidence, a GPU that fell off the bus fails, and one sample shows no movement
// (review-s57 H3). A GPU Enabled after the settle and Disabled a moment later fails persistence.
TEST(Verify, EverySampleMustReadEveryGpu) {
  auto lost = [](unsigned index, const char* error) {
    GpuFacts g;
    g.index = index;
    g.handle_error = error;
    return g;
  };
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> later;  // applied to every sample after the first (the reading after the settle)
    int samples;
    CheckStatus clocks;
    CheckStatus persistence;
    std::string clocks_detail;  // a part of it
  };
  const std::vector<Case> cases = {
      {"every sample read", [](Snapshot&) {}, 3, CheckStatus::pass, CheckStatus::pass, "3 samples; GPU 0 SM"},
      {"one sample is not checked", [](Snapshot&) {}, 1, CheckStatus::skip, CheckStatus::pass,
       "not requested: one sample shows no movement (--samples 2 or more checks the clocks)"},
      {"NVML did not initialize later",
       [](Snapshot& s) {
         s.nvml.gpus.clear();
         s.nvml.device_count = Fact<unsigned>::unknown("UNKNOWN");
       },
       3, CheckStatus::fail, CheckStatus::pass, "cannot tell: GPU 0's SM clock read in 1 of 3 samples (NVML: UNKNOWN)"},
      {"a GPU lost later", [&lost](Snapshot& s) { s.nvml.gpus[1] = lost(1, "GPU_IS_LOST"); },
       3, CheckStatus::fail, CheckStatus::pass, "GPU 1: GPU_IS_LOST in 2 of 3 samples"},
      {"a GPU not attached later", [&lost](Snapshot& s) { s.nvml.gpus[1] = lost(1, "UNKNOWN"); },
       3, CheckStatus::fail, CheckStatus::pass, "cannot tell: GPU 1's SM clock read in 1 of 3 samples (UNKNOWN)"},
      {"a GPU gone from the list later", [](Snapshot& s) { s.nvml.gpus.pop_back(); }, 3, CheckStatus::fail,
       CheckStatus::pass, "cannot tell: GPU 1's SM clock read in 1 of 3 samples (not listed by NVML)"},
      {"Disabled after the settle",
       [](Snapshot& s) {
         s.nvml.gpus[0].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({1});
       },
       3, CheckStatus::pass, CheckStatus::fail, "3 samples"},
  };
  for (const auto& c : cases) {
    VerifyInputs in = inputs_with([](Snapshot&) {}, c.samples);
    for (std::size_t k = 1; k < in.samples.size(); ++k) c.later(in.samples[k]);
    VerifyReport r = evaluate_verify(in);
    if (c.samples == 1) {  // asked for: the summary does not list it as something that could not be checked
      EXPECT_TRUE(render_verify_text(in, r).ends_with("\nVerified.\n")) << render_verify_text(in, r);
    }
    EXPECT_EQ(status_of(r, "clocks"), c.clocks) << c.name;
    EXPECT_EQ(status_of(r, "persistence"), c.persistence) << c.name;
    for (const auto& check : r.checks) {
      if (check.id == "clocks") {
        EXPECT_NE(check.detail.find(c.clocks_detail), std::string::npos) << c.name << ": " << check.detail;
      }
      if (check.id == "persistence" && c.persistence == CheckStatus::fail) {
        EXPECT_EQ(check.detail, "GPU 0: Disabled in 2 of the 2 samples after the settle") << c.name;
      }
    }
  }
}

// Samples that stood aside for a probe explain a clocks check that failed for want of them (cannot tell), never a
// GPU read Disabled with NVML open (review-s57 M1).
TEST(Verify, SamplesThatStoodAsideExplainOnlyWhatTheyLeftUnread) {
  auto stood_aside = [](Snapshot& s) {
    s.nvml = NvmlFacts{};
    s.nvml.not_opened = "`gpuwarm probe` or `watch --load` is timing the GPUs";
    s.nvml.not_opened_by = "timing";
    s.nvml.device_count = Fact<unsigned>::unknown("NVML not opened");
  };
  VerifyInputs in = inputs_with([](Snapshot&) {});
  for (std::size_t k = 1; k < in.samples.size(); ++k) stood_aside(in.samples[k]);
  VerifyReport r = evaluate_verify(in);
  EXPECT_FALSE(r.passed);
  EXPECT_EQ(status_of(r, "clocks"), CheckStatus::fail);
  EXPECT_EQ(r.nvml_not_opened, "`gpuwarm probe` or `watch --load` is timing the GPUs");

  in = inputs_with([](Snapshot& s) {
    s.nvml.gpus[0].persistence = Fact<bool>::known(false);
    s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({1});
  });
  for (std::size_t k = 1; k < in.samples.size(); ++k) stood_aside(in.samples[k]);
  r = evaluate_verify(in);
  EXPECT_EQ(status_of(r, "persistence"), CheckStatus::fail);
  EXPECT_EQ(r.nvml_not_opened, "") << "read Disabled with NVML open: a failure, not cannot-tell";

  in = inputs_with([](Snapshot&) {});
  in.samples[1].nvml.gpus[0].clocks.sm = Fact<unsigned>::known(345);  // a swing seen, then a sample stood aside
  stood_aside(in.samples[2]);
  r = evaluate_verify(in);
  EXPECT_EQ(status_of(r, "clocks"), CheckStatus::fail);
  EXPECT_EQ(r.nvml_not_opened, "") << "a swing read is a failure whatever the other samples did";
}

// The daemon's open files unread: skipped only where not being root is why; refused to root (a container without
// CAP_SYS_PTRACE) or unread for another reason, whether it holds the GPUs is unknown: failed, never passed.
TEST(Verify, DaemonOpenFilesUnreadSkipsOnlyForNotRoot) {
  const std::vector<std::tuple<std::string, CheckStatus, std::string>> cases = {
      {k_open_files_need_root, CheckStatus::skip, "needs root"},
      {"/proc/4242/fd: Permission denied (refused to root: the kernel's ptrace check, e.g. a container without "
       "CAP_SYS_PTRACE)",
       CheckStatus::fail, "cannot tell: the daemon's open files were not read (/proc/4242/fd: Permission denied"},
      {"/proc/4242/fd: Not a directory", CheckStatus::fail,
       "cannot tell: the daemon's open files were not read (/proc/4242/fd: Not a directory)"},
  };
  for (const auto& [why, status, detail] : cases) {
    SCOPED_TRACE(why);
    VerifyReport r = evaluate_verify(inputs_with([&why](Snapshot& s) {
      s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown(why);
    }));
    EXPECT_EQ(status_of(r, "daemon-holds-gpus"), status);
    EXPECT_EQ(r.passed, status == CheckStatus::skip);
    for (const auto& c : r.checks) {
      if (c.id == "daemon-holds-gpus") {
        EXPECT_NE(c.detail.find(detail), std::string::npos) << c.detail;
      }
    }
  }
}

TEST(Verify, NoSystemdSkipsUnitChecksButStillChecksGpus) {
  VerifyReport r = evaluate_verify(inputs_with([](Snapshot& s) {
    s.service.reachable = false;
    s.service.unreachable = "no system bus";
    s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root");
  }));
  EXPECT_EQ(status_of(r, "unit-active"), CheckStatus::skip);
  EXPECT_EQ(status_of(r, "unit-enabled"), CheckStatus::skip);
  EXPECT_EQ(status_of(r, "daemon-holds-gpus"), CheckStatus::skip);
  EXPECT_EQ(status_of(r, "persistence"), CheckStatus::pass);
  EXPECT_TRUE(r.passed);
  // Where systemd runs but its bus did not answer, the unit's state is unknown: not skipped, failed.
  r = evaluate_verify(inputs_with([](Snapshot& s) {
    s.service.reachable = false;
    s.service.manager_booted = Fact<bool>::known(true);
    s.service.unreachable = "no system bus (Connection refused): systemd runs here (/run/systemd/system), but its "
                            "bus did not answer";
  }));
  EXPECT_EQ(status_of(r, "unit-active"), CheckStatus::fail);
  EXPECT_EQ(status_of(r, "unit-enabled"), CheckStatus::fail);
  EXPECT_FALSE(r.passed);
}

TEST(Verify, DcgmOutcomeIsFoldedIn) {
  VerifyInputs in = inputs_with([](Snapshot&) {});
  in.dcgm = DcgmOutcome{true, "dcgmi diag -r 1: failures reported", false};
  VerifyReport r = evaluate_verify(in);
  EXPECT_EQ(status_of(r, "dcgm"), CheckStatus::fail);
  EXPECT_FALSE(r.passed);
  in.dcgm = DcgmOutcome{false, "dcgmi not found", false};
  EXPECT_EQ(status_of(evaluate_verify(in), "dcgm"), CheckStatus::skip);
}

// DCGM's answer passes only when whole, parsed and holding results, none Fail: output cut short, not JSON or
// without a result is not a pass (review-s48 L7).
TEST(Verify, DcgmDiagIsJudgedFromItsResults) {
  const std::string pass = R"({"DCGM GPU Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [
      {"name": "Denylist", "results": [{"status": "Pass"}]},
      {"name": "Persistence Mode", "results": [{"gpu_id": "0", "status": "Pass"}, {"gpu_id": "1", "status": "Warn"}]}]}]}})";
  const std::string fail = R"({"DCGM Diagnostic": {"test_categories": [{"tests": [{"name": "memory",
      "results": [{"entity_id": 0, "status": "Fail"}, {"entity_id": 1, "status": "Pass"}]}]}]}})";
  struct Case {
    const char* name;
    int exit_code;
    std::string output;
    bool truncated;
    bool passed;
    const char* detail;
  };
  const std::vector<Case> cases = {
      {"results, none Fail", 0, pass, false, true, "dcgmi diag -r 1: no failures (3 result(s), 1 Warn)"},
      {"a Fail", 0, fail, false, false, "dcgmi diag -r 1: 1 test result(s) Fail"},
      {"a Fail and a non-zero exit", 226, fail, false, false, "dcgmi diag -r 1: 1 test result(s) Fail"},
      {"a non-zero exit", 1, pass, false, false, "dcgmi diag -r 1: exited 1"},
      {"cut short", 0, pass, true, false, "dcgmi diag -r 1: cannot tell: its output was cut at the size limit"},
      {"not JSON", 0, "Error: unable to connect to host engine", false, false,
       "dcgmi diag -r 1: cannot tell: its output is not JSON"},
      {"empty", 0, "", false, false, "dcgmi diag -r 1: cannot tell: its output is not JSON"},
      {"no result", 0, R"({"DCGM GPU Diagnostic": {"test_categories": []}})", false, false,
       "dcgmi diag -r 1: cannot tell: no test result in its output"},
      {"every test skipped", 0, R"({"tests": [{"results": [{"status": "Skip"}, {"status": "Skip"}]}]})", false, false,
       "dcgmi diag -r 1: cannot tell: no test ran (every result Skip)"},
      {"a status not a result's", 0, R"({"tests": [{"results": [{"status": "Pass"}, {"status": "Error"}]}]})", false,
       false, "dcgmi diag -r 1: cannot tell: a result reads \"Error\""},
      {"FAIL in capitals", 0, R"({"tests": [{"results": [{"status": "Pass"}, {"status": "FAIL"}]}]})", false, false,
       "dcgmi diag -r 1: 1 test result(s) Fail"},
  };
  for (const auto& c : cases) {
    DcgmOutcome o = judge_dcgm_diag(1, c.exit_code, c.output, c.truncated);
    EXPECT_TRUE(o.available) << c.name;
    EXPECT_EQ(o.passed, c.passed) << c.name;
    EXPECT_EQ(o.detail, c.detail) << c.name;
  }
}

}  // namespace
}  // namespace gpuwarm
