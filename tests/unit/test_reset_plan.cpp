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

TEST(ResetPlan, Refusals) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> mutate;
    ExitCode code;
    const char* says;
  };
  const Case cases[] = {
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
      {"MIG enabled", [](Snapshot& s) { s.nvml.gpus[0].mig_mode = Fact<unsigned>::known(1); },
       ExitCode::routed_elsewhere, "MIG"},
      {"MIG mode unread", [](Snapshot& s) { s.nvml.gpus[0].mig_mode = Fact<unsigned>::unknown("UNKNOWN"); },
       ExitCode::cannot_tell, "MIG mode could not be read"},
      {"a daemon outside its unit", [](Snapshot& s) { s.service.active_state = Fact<std::string>::known("inactive"); },
       ExitCode::action_needed, "but not as nvidia-persistenced.service"},
  };
  for (const Case& c : cases) {
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
  ASSERT_EQ(p.settings.size(), 1u);
  EXPECT_EQ(p.settings[0].app_sm_mhz, 1500u);
  EXPECT_EQ(p.settings[0].power_limit_mw, 700000u);
  EXPECT_NE(p.notes.back().find("1500 MHz"), std::string::npos);
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
