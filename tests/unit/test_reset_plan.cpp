// plan_reset is pure: a snapshot in, the steps (or a refusal with its reason) out. Table-driven over what
// makes a reset unsafe or useless, and the plan's shape where it acts.

#include <gtest/gtest.h>

#include <functional>

#include "reset/plan.h"
#include "snapshot_builder.h"

namespace gpuwarm::test {
namespace {

void add_client(Snapshot& s, GpuClient c) {
  auto clients = *s.host.gpu_clients;
  clients.push_back(std::move(c));
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::known(clients);
}

Snapshot node() {
  Snapshot s = healthy_snapshot();
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::known({{1234, "nvidia-persiste", {0, 1}}});
  s.driver.nvswitches = Fact<std::vector<std::string>>::known({});  // reset reads the PCI devices
  return s;
}

const ResetInputs k_inputs{"/usr/bin/nvidia-smi", "", {}};

// A node changed by `mutate`, the exit code the answer carries, and words it says.
struct AnswerCase {
  const char* name;
  std::function<void(Snapshot&)> mutate;
  ExitCode code;
  const char* says;
};

TEST(ResetPlan, Refusals) {
  const AnswerCase cases[] = {
      {"another process holds the GPU",
       [](Snapshot& s) { add_client(s, {777, "python3", {0}}); }, ExitCode::action_needed,
       "pid 777 (python3)"},
      {"who holds the GPUs unknown", [](Snapshot& s) { s.host.gpu_clients = Fact<std::vector<GpuClient>>::unknown("x"); },
       ExitCode::cannot_tell, "run as root"},
      {"some processes unreadable", [](Snapshot& s) { s.host.unreadable_processes = 3; }, ExitCode::cannot_tell,
       "3 processes"},
      {"lost GPU", [](Snapshot& s) { s.nvml.gpus[0].handle_error = "GPU_IS_LOST"; }, ExitCode::routed_elsewhere,
       "fallen off the bus"},
      {"excluded GPU", [](Snapshot& s) { s.driver.kernel_gpus[0].excluded = true; }, ExitCode::routed_elsewhere,
       "excluded"},
      {"NVSwitch system",
       [](Snapshot& s) { s.driver.device_nodes.push_back({"/dev/nvidia-nvswitch0", true, 0666}); },
       ExitCode::routed_elsewhere, "Fabric Manager"},
      {"NVSwitch on the PCI bus, no /dev node (its driver not loaded)",
       [](Snapshot& s) { s.driver.nvswitches = Fact<std::vector<std::string>>::known({"0000:05:00.0"}); },
       ExitCode::routed_elsewhere, "PCI 0000:05:00.0, class 0x0680"},
      {"whether there are NVSwitches unknown",
       [](Snapshot& s) { s.driver.nvswitches = Fact<std::vector<std::string>>::unknown("/sys/bus/pci/devices: x"); },
       ExitCode::cannot_tell, "NVSwitches could not be read (/sys/bus/pci/devices: x)"},
      {"minor number unread (a job on it could not be matched)",
       [](Snapshot& s) {
         s.nvml.gpus[0].minor = Fact<unsigned>::unknown("TIMEOUT");
         add_client(s, {777, "python3", {0}});
       },
       ExitCode::cannot_tell, "GPU 0's minor number (its /dev/nvidiaN) could not be read (TIMEOUT)"},
      {"MIG enabled", [](Snapshot& s) { s.nvml.gpus[0].mig_mode = Fact<unsigned>::known(1); },
       ExitCode::routed_elsewhere, "MIG"},
      {"MIG mode unread", [](Snapshot& s) { s.nvml.gpus[0].mig_mode = Fact<unsigned>::unknown("UNKNOWN"); },
       ExitCode::cannot_tell, "MIG mode could not be read"},
      {"MIG mode change pending: a reset would apply it",
       [](Snapshot& s) {
         s.nvml.gpus[0].mig_mode = Fact<unsigned>::known(0);
         s.nvml.gpus[0].mig_mode_pending = Fact<unsigned>::known(1);
       },
       ExitCode::routed_elsewhere, "MIG mode change pending (now disabled, enabled after a reset)"},
      {"a daemon outside its unit", [](Snapshot& s) { s.service.active_state = Fact<std::string>::known("inactive"); },
       ExitCode::action_needed, "but not as nvidia-persistenced.service"},
  };
  for (const AnswerCase& c : cases) {
    Snapshot s = node();
    c.mutate(s);
    ResetPlan p = plan_reset(s, {0}, k_inputs);
    EXPECT_EQ(p.outcome, ResetOutcome::refused) << c.name;
    EXPECT_EQ(p.exit_code, c.code) << c.name;
    EXPECT_NE(p.reason.find(c.says), std::string::npos) << c.name << ": " << p.reason;
    EXPECT_TRUE(p.steps.empty()) << c.name;
  }
  // The daemon itself holding the GPU is what the plan stops, not a reason to refuse; another GPU's holder
  // does not block this one.
  Snapshot s = node();
  add_client(s, {777, "python3", {1}});
  EXPECT_EQ(plan_reset(s, {0}, k_inputs).outcome, ResetOutcome::act);
  EXPECT_EQ(plan_reset(node(), {0}, ResetInputs{"", "nvidia-smi not found", {}}).exit_code, ExitCode::tool_error);
}

// The look right before the reset (after the daemon's stop, or with none): who holds the targets now. A holder
// found is action needed, processes not all read are cannot tell (review-s54 L3: reset answered 1 for both).
TEST(ResetPlan, HoldersNow) {
  const AnswerCase cases[] = {
      {"no one", [](Snapshot&) {}, ExitCode::healthy, ""},
      {"a job on a target", [](Snapshot& s) { add_client(s, {777, "python3", {0}}); }, ExitCode::action_needed,
       "the GPUs are held:\npid 777 (python3)"},
      {"a job on another GPU only", [](Snapshot& s) { add_client(s, {778, "python3", {1}}); }, ExitCode::healthy, ""},
      {"the daemon the plan stops",
       [](Snapshot& s) {
         s.daemon.processes.push_back({});
         s.daemon.processes.back().pid = 1234;
         add_client(s, {1234, "nvidia-persiste", {0, 1}});
       },
       ExitCode::healthy, ""},
      {"a daemon started again since", [](Snapshot& s) { add_client(s, {1240, "nvidia-persiste", {0, 1}}); },
       ExitCode::action_needed, "pid 1240 (nvidia-persiste)"},
      {"processes not listed",
       [](Snapshot& s) { s.host.gpu_clients = Fact<std::vector<GpuClient>>::unknown("/proc: Permission denied"); },
       ExitCode::cannot_tell, "the processes could not be listed (/proc: Permission denied): the GPUs may be held"},
      {"open files unread", [](Snapshot& s) { s.host.unreadable_processes = 3; }, ExitCode::cannot_tell,
       "3 processes' open files could not be read: the GPUs may be held"},
  };
  for (const AnswerCase& c : cases) {
    Snapshot now = healthy_snapshot();
    now.daemon.processes.clear();
    now.host.gpu_clients = Fact<std::vector<GpuClient>>::known({});
    c.mutate(now);
    const HoldersNow held = holders_now(now, {0});
    EXPECT_EQ(held.code, c.code) << c.name;
    if (std::string(c.says).empty()) {
      EXPECT_EQ(held.why, "") << c.name;
    } else {
      EXPECT_NE(held.why.find(c.says), std::string::npos) << c.name << ": " << held.why;
    }
  }
}

TEST(ResetPlan, StopResetStartWithTheExactCommand) {
  ResetPlan p = plan_reset(node(), {0, 1}, k_inputs);
  ASSERT_EQ(p.outcome, ResetOutcome::act);
  ASSERT_EQ(p.steps.size(), 3u);
  EXPECT_EQ(p.steps[0].kind, ResetStepKind::stop_daemon);
  EXPECT_EQ(describe(p.steps[1]), "/usr/bin/nvidia-smi --gpu-reset -i 00000000:06:00.0,00000000:07:00.0");
  EXPECT_EQ(p.steps[2].kind, ResetStepKind::start_daemon);
  EXPECT_EQ(describe(p.steps[0]), "StopUnit(nvidia-persistenced.service, replace), wait for the job");
}

TEST(ResetPlan, InactiveDaemonIsNeitherStoppedNorStarted) {
  Snapshot s = node();
  s.service.active_state = Fact<std::string>::known("inactive");
  s.daemon.processes.clear();
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::known({});
  ResetPlan p = plan_reset(s, {0}, k_inputs);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].kind, ResetStepKind::reset_gpus);
  ASSERT_FALSE(p.notes.empty());
  EXPECT_NE(p.notes[0].find("gpuwarm fix"), std::string::npos);
}

// review-s53-root M2: a unit that Requires=, BindsTo= or PartOf= the daemon stops with it, and the daemon's start does
// not start it again: named, and started last, once the settings are back (a scheduler then takes jobs again).
TEST(ResetPlan, UnitsStoppedWithTheDaemonAreStartedAgainLast) {
  Snapshot s = node();
  s.nvml.gpus[0].app_clocks.sm = Fact<unsigned>::known(1500);
  ResetInputs in = k_inputs;
  in.stopped_with = {"slurmd.service", "gpu-exporter.service"};
  ResetPlan p = plan_reset(s, {0}, in);
  ASSERT_EQ(p.outcome, ResetOutcome::act);
  std::vector<std::string> kinds;
  for (const auto& step : p.steps) {
    kinds.push_back(to_string(step.kind));
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"stop-daemon", "reset", "start-daemon", "restore-setting", "start-unit",
                                             "start-unit"}));
  EXPECT_EQ(describe(p.steps[4]), "StartUnit(slurmd.service, replace), wait for the job");
  EXPECT_EQ(p.steps[5].unit, "gpu-exporter.service");
  ASSERT_FALSE(p.notes.empty());
  EXPECT_NE(p.notes[0].find("stops slurmd.service, gpu-exporter.service too"), std::string::npos) << p.notes[0];

  // Which ones could not be read: a reset might leave them stopped, unsaid: cannot tell, nothing changed.
  in.stopped_with.clear();
  in.stopped_with_unread = "nvidia-persistenced.service's BoundBy: Access denied";
  p = plan_reset(s, {0}, in);
  EXPECT_EQ(p.outcome, ResetOutcome::refused);
  EXPECT_EQ(p.exit_code, ExitCode::cannot_tell);
  EXPECT_NE(p.reason.find("BoundBy: Access denied"), std::string::npos) << p.reason;

  // A daemon that is not active is not stopped: nothing stops with it.
  s.service.active_state = Fact<std::string>::known("inactive");
  s.daemon.processes.clear();
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::known({});
  in.stopped_with = {"slurmd.service"};
  p = plan_reset(s, {0}, in);
  EXPECT_EQ(p.outcome, ResetOutcome::act);
  for (const auto& step : p.steps) {
    EXPECT_NE(step.kind, ResetStepKind::start_dependent);
  }
}

TEST(ResetPlan, WithoutSystemdTheStepsByHand) {
  Snapshot s = node();
  s.service.reachable = false;
  s.service.unreachable = "no system bus";
  ResetPlan p = plan_reset(s, {0}, k_inputs);
  EXPECT_EQ(p.outcome, ResetOutcome::no_service_manager);
  EXPECT_EQ(p.exit_code, ExitCode::no_service_manager);
  ASSERT_EQ(p.manual.size(), 4u);
  EXPECT_NE(p.manual[0].find("stop nvidia-persistenced"), std::string::npos);
  EXPECT_EQ(p.manual[1], "/usr/bin/nvidia-smi --gpu-reset -i 00000000:06:00.0");
  EXPECT_TRUE(p.steps.empty());
}

TEST(ResetPlan, SettingsThatAResetLoses) {
  Snapshot s = node();
  s.nvml.gpus[0].app_clocks.sm = Fact<unsigned>::known(1500);
  ResetPlan p = plan_reset(s, {0}, k_inputs);
  ASSERT_EQ(p.settings.size(), 2u);  // GPU 1 too: stopping the daemon de-initializes it
  EXPECT_EQ(p.settings[1].index, 1u);
  EXPECT_EQ(p.settings[0].app_sm_mhz, 1500u);
  EXPECT_EQ(p.settings[0].app_mem_mhz, 2619u);
  EXPECT_EQ(p.settings[0].power_limit_mw, 700000u);
  EXPECT_EQ(p.settings[0].requested_power_limit_mw, std::nullopt);  // at its default: nothing to set again
}

// `reset --gpu 0` stops the daemon, which held GPU 1 too: GPU 1's power cap is set again and checked, but GPU 1
// is not reset. Without a daemon to stop, only the target is touched.
TEST(ResetPlan, OtherGpusTheStopDeinitializesKeepTheirSettings) {
  Snapshot s = node();
  s.nvml.gpus[1].requested_power_limit_mw = Fact<unsigned>::known(500000);
  ResetPlan p = plan_reset(s, {0}, k_inputs);
  ASSERT_EQ(p.outcome, ResetOutcome::act) << p.reason;
  bool reset_only_gpu0 = false;
  bool gpu1_capped_again = false;
  for (const auto& step : p.steps) {
    std::string line;
    for (const auto& a : step.argv) line += a + " ";
    reset_only_gpu0 = reset_only_gpu0 || line == "/usr/bin/nvidia-smi --gpu-reset -i 00000000:06:00.0 ";
    gpu1_capped_again = gpu1_capped_again || line == "/usr/bin/nvidia-smi -i 00000000:07:00.0 -pl 500 ";
  }
  EXPECT_TRUE(reset_only_gpu0);
  EXPECT_TRUE(gpu1_capped_again);

  Snapshot no_daemon = node();
  no_daemon.nvml.gpus[1].requested_power_limit_mw = Fact<unsigned>::known(500000);
  no_daemon.daemon.processes.clear();
  no_daemon.service.active_state = Fact<std::string>::known("inactive");
  no_daemon.host.gpu_clients = Fact<std::vector<GpuClient>>::known({});
  ResetPlan q = plan_reset(no_daemon, {0}, k_inputs);
  ASSERT_EQ(q.outcome, ResetOutcome::act) << q.reason;
  ASSERT_EQ(q.settings.size(), 1u);
  EXPECT_EQ(q.settings[0].index, 0u);
}

// What a reset returns to the default is set again after the daemon holds the GPU, each setting by its own
// command; what cannot be (or, with --no-restore, will not be) is named in a note with the command.
TEST(ResetPlan, SettingsAreSetAgainAfterTheDaemonStarts) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> mutate;
    bool restore;
    std::vector<std::string> restores;  // the restore-setting steps, described
    const char* note;                   // a note that must be there ("" = no note about settings)
  };
  auto pin = [](Snapshot& s) {
    s.nvml.gpus[0].app_clocks.sm = s.nvml.gpus[0].app_clocks.graphics = Fact<unsigned>::known(1500);
  };
  auto cap = [](unsigned mw) {
    return [mw](Snapshot& s) { s.nvml.gpus[0].requested_power_limit_mw = Fact<unsigned>::known(mw); };
  };
  const Case cases[] = {
      {"everything at its default", [](Snapshot&) {}, true, {}, ""},
      {"application clocks pinned", pin, true, {"/usr/bin/nvidia-smi -i 00000000:06:00.0 -ac 2619,1500"}, ""},
      {"graphics unread: the SM clock stands in",
       [&](Snapshot& s) {
         pin(s);
         s.nvml.gpus[0].app_clocks.graphics = Fact<unsigned>::unknown("UNKNOWN");
       },
       true, {"/usr/bin/nvidia-smi -i 00000000:06:00.0 -ac 2619,1500"}, ""},
      {"power limit lowered", cap(500000), true, {"/usr/bin/nvidia-smi -i 00000000:06:00.0 -pl 500"}, ""},
      {"a limit in fractions of a watt", cap(312500), true, {"/usr/bin/nvidia-smi -i 00000000:06:00.0 -pl 312.5"},
       ""},
      {"both",
       [&](Snapshot& s) {
         pin(s);
         cap(450000)(s);
       },
       true,
       {"/usr/bin/nvidia-smi -i 00000000:06:00.0 -ac 2619,1500", "/usr/bin/nvidia-smi -i 00000000:06:00.0 -pl 450"},
       ""},
      {"--no-restore leaves the defaults and says so",
       [&](Snapshot& s) {
         pin(s);
         cap(450000)(s);
       },
       false, {}, "--no-restore leaves it there (/usr/bin/nvidia-smi -i 00000000:06:00.0 -pl 450 sets it again)"},
      {"memory clock unread: cannot be set again",
       [&](Snapshot& s) {
         pin(s);
         s.nvml.gpus[0].app_clocks.mem = Fact<unsigned>::unknown("NO_PERMISSION");
       },
       true, {}, "could not be read (NO_PERMISSION): gpuwarm cannot set them again"},
      {"requested limit unread is not \"at its default\"",
       [](Snapshot& s) { s.nvml.gpus[0].requested_power_limit_mw = Fact<unsigned>::unknown("UNKNOWN"); }, true, {},
       "power limit was set away from the default could not be read (UNKNOWN)"},
      {"no power management on this GPU: nothing to say",
       [](Snapshot& s) {
         s.nvml.gpus[0].requested_power_limit_mw = s.nvml.gpus[0].default_power_limit_mw =
             Fact<unsigned>::unknown("NOT_SUPPORTED");
       },
       true, {}, ""},
  };
  for (const Case& c : cases) {
    Snapshot s = node();
    c.mutate(s);
    ResetInputs in = k_inputs;
    in.restore_settings = c.restore;
    ResetPlan p = plan_reset(s, {0}, in);
    ASSERT_EQ(p.outcome, ResetOutcome::act) << c.name;
    ASSERT_GE(p.steps.size(), 3u) << c.name;
    EXPECT_EQ(p.steps[2].kind, ResetStepKind::start_daemon) << c.name;
    std::vector<std::string> restores;
    for (size_t i = 3; i < p.steps.size(); ++i) {
      EXPECT_EQ(p.steps[i].kind, ResetStepKind::restore_setting) << c.name;
      restores.push_back(describe(p.steps[i]));
    }
    EXPECT_EQ(restores, c.restores) << c.name;
    std::string notes;
    for (const auto& n : p.notes) {
      notes += n + "\n";
    }
    if (*c.note == '\0') {
      EXPECT_EQ(notes, "") << c.name;
    } else {
      EXPECT_NE(notes.find(c.note), std::string::npos) << c.name << ": " << notes;
    }
  }
}

// A setting is set again only once the daemon holds its GPU: the minors awaited are those of GPUs with a
// restore step (by their /dev/nvidiaN, not their NVML index) that the daemon held before; a GPU whose
// /dev/nvidiaN is unknown makes the hold unknown, never "held" (review-s44 M2, L3).
TEST(ResetPlan, SettingsWaitForTheDaemonToHoldTheirGpus) {
  Snapshot s = node();
  s.nvml.gpus[1].minor = Fact<unsigned>::known(5);  // NVML index 1 is /dev/nvidia5
  s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0, 5});
  s.nvml.gpus[1].requested_power_limit_mw = Fact<unsigned>::known(500000);
  ResetPlan p = plan_reset(s, {1}, k_inputs);
  ASSERT_EQ(p.outcome, ResetOutcome::act);
  EXPECT_EQ(minors_to_hold(s, p).minors, std::vector<unsigned>{5});
  EXPECT_TRUE(minors_to_hold(node(), plan_reset(node(), {1}, k_inputs)).empty()) << "nothing to set again";
  {
    // The daemon did not hold it before (--no-persistence-mode, a device list): it will not now; no wait.
    Snapshot t = s;
    t.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({0});
    EXPECT_TRUE(minors_to_hold(t, plan_reset(t, {1}, k_inputs)).empty());
    // What it held before was not read: waited for.
    t.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("EACCES");
    EXPECT_EQ(minors_to_hold(t, plan_reset(t, {1}, k_inputs)).minors, std::vector<unsigned>{5});
  }
  {
    // A GPU other than the target, its /dev/nvidiaN unread, still has its setting set again: unknown, not held.
    Snapshot t = node();
    t.nvml.gpus[1].minor = Fact<unsigned>::unknown("NOT_SUPPORTED");
    t.nvml.gpus[1].requested_power_limit_mw = Fact<unsigned>::known(500000);
    ResetPlan q = plan_reset(t, {0}, k_inputs);
    ASSERT_EQ(q.outcome, ResetOutcome::act);
    HoldWanted w = minors_to_hold(t, q);
    EXPECT_TRUE(w.minors.empty());
    ASSERT_EQ(w.unknown.size(), 1u);
    EXPECT_EQ(w.unknown[0], "GPU 1's /dev/nvidiaN could not be read (NOT_SUPPORTED)");
    DaemonHold h = daemon_hold(t.daemon, w);
    EXPECT_FALSE(h.held());
    EXPECT_NE(h.unknown.find("GPU 1's /dev/nvidiaN could not be read"), std::string::npos) << h.unknown;
  }

  struct Case {
    const char* name;
    std::function<void(DaemonFacts&)> mutate;
    std::vector<unsigned> not_held;
    const char* unknown;  // "" = known
  };
  auto holds = [](std::vector<unsigned> minors) {
    return [minors](DaemonFacts& d) { d.processes[0].held_minors = Fact<std::vector<unsigned>>::known(minors); };
  };
  const Case cases[] = {
      {"held", holds({0, 5}), {}, ""},
      {"another GPU held, not this one", holds({0, 1}), {5}, ""},
      {"the daemon has not opened any yet", holds({}), {5}, ""},
      {"no daemon process (yet)", [](DaemonFacts& d) { d.processes.clear(); }, {5}, ""},
      {"held by the second of two processes",
       [](DaemonFacts& d) {
         d.processes.push_back(d.processes[0]);
         d.processes[0].held_minors = Fact<std::vector<unsigned>>::known({});
         d.processes[1].held_minors = Fact<std::vector<unsigned>>::known({5});
       },
       {}, ""},
      {"its open files unreadable",
       [](DaemonFacts& d) { d.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("EACCES"); }, {5},
       "could not be read: EACCES"},
      {"/proc unlisted", [](DaemonFacts& d) { d.processes.clear(); d.processes_unread = "EMFILE"; }, {5},
       "the processes could not be listed: EMFILE"},
  };
  for (const Case& c : cases) {
    DaemonFacts d = s.daemon;
    c.mutate(d);
    DaemonHold h = daemon_hold(d, HoldWanted{{5}, {}});
    EXPECT_EQ(h.not_held, c.not_held) << c.name;
    EXPECT_EQ(h.held(), c.not_held.empty()) << c.name;
    if (*c.unknown == '\0') {
      EXPECT_EQ(h.unknown, "") << c.name;
    } else {
      EXPECT_NE(h.unknown.find(c.unknown), std::string::npos) << c.name << ": " << h.unknown;
    }
  }
}

TEST(ResetPlan, SettingsByHandWithoutSystemdAndWithoutTheDaemon) {
  Snapshot s = node();
  s.nvml.gpus[0].requested_power_limit_mw = Fact<unsigned>::known(500000);
  s.service.reachable = false;
  s.service.unreachable = "no system bus";
  ResetPlan p = plan_reset(s, {0}, k_inputs);
  ASSERT_EQ(p.manual.size(), 5u);
  EXPECT_EQ(p.exit_code, ExitCode::no_service_manager);
  EXPECT_NE(p.manual[2].find("wait until it holds /dev/nvidiaN again"), std::string::npos) << p.manual[2];
  EXPECT_EQ(p.manual[3], "/usr/bin/nvidia-smi -i 00000000:06:00.0 -pl 500");  // after the daemon is back
  // Booted with systemd but its bus silent: whether the unit runs is unknown, not absent.
  s.service.manager_booted = Fact<bool>::known(true);
  p = plan_reset(s, {0}, k_inputs);
  EXPECT_EQ(p.exit_code, ExitCode::cannot_tell);
  EXPECT_NE(p.reason.find("systemd runs on this host but did not answer"), std::string::npos) << p.reason;
  // A daemon that is not active is not started, so the setting lasts only with persistence from elsewhere.
  s = node();
  s.nvml.gpus[0].requested_power_limit_mw = Fact<unsigned>::known(500000);
  s.service.active_state = Fact<std::string>::known("inactive");
  s.daemon.processes.clear();
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::known({});
  p = plan_reset(s, {0}, k_inputs);
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(p.steps[1].kind, ResetStepKind::restore_setting);
  EXPECT_NE(p.notes.back().find("last only while persistence is on by other means"), std::string::npos);
}

TEST(ResetTargets, ByIndexUuidOrBusId) {
  Snapshot s = node();
  struct Case {
    std::vector<std::string> ids;
    std::vector<unsigned> want;
  };
  for (const Case& c : {Case{{"1"}, {1}}, Case{{"GPU-00000000-0000-0000-0000-000000000000"}, {0}},
                        Case{{"0000:07:00.0"}, {1}}, Case{{"00000000:06:00.0", "0", "1"}, {0, 1}}}) {
    auto r = resolve_reset_targets(s, c.ids);
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.indices, c.want);
  }
  auto bad = resolve_reset_targets(s, {"7"});
  EXPECT_NE(bad.error.find("no GPU \"7\": NVML sees 0 ("), std::string::npos) << bad.error;
}

}  // namespace
}  // namespace gpuwarm::test
