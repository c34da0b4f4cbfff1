// "Unknown is never healthy": NVML's answers by meaning, the cannot-tell
// rules, and what masks or contradicts a persistence reading.

#include "nvml/errors.h"
#include "rule_case.h"

namespace gpuwarm::test {
namespace {

TEST(Rules, NVML001_nvml_timeout) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"init never returned",
       [](Snapshot& s) {
         s.nvml.timed_out_at = "nvmlInit";
         s.nvml.timeout_s = 2;
       },
       {{k_node}}},
  };
  for (const auto& c : cases) expect_rule("NVML001", c);
}

// NVML left closed on purpose (a probe timing the GPUs, a reset needing them free): what collect leaves.
void nvml_left_closed(Snapshot& s) {
  const std::string why = "`gpuwarm probe` or `watch --load` is timing the GPUs (lock /run/gpuwarm-timing.lock is held)";
  s.nvml = NvmlFacts{};
  s.nvml.not_opened = why;
  s.nvml.library_path = s.nvml.user_space_version = Fact<std::string>::unknown("NVML not opened: " + why);
  s.nvml.init_code = Fact<int>::unknown("NVML not opened: " + why);
  s.nvml.device_count = Fact<unsigned>::unknown("NVML not opened: " + why);
}

TEST(Rules, UNK009_nvml_not_opened) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"left closed while a probe times the GPUs", nvml_left_closed, {{k_node}}},
      {"left closed while a fix runs",
       [](Snapshot& s) {
         nvml_left_closed(s);
         s.nvml.not_opened_by = "changing";
       },
       {{k_node}}},
      // Nothing ends by itself there: UNK011's, which no helper waits out.
      {"an untrusted root", nvml_refused_for_untrusted_root, {}},
  };
  for (const auto& c : cases) expect_rule("UNK009", c);
  // Not a missing library, and no other NVML rule speaks for it.
  for (const char* other : {"DRV002", "NVML001", "UNK001", "UNK002", "GPU001", "UNK011"}) {
    expect_rule(other, {"left closed", nvml_left_closed, {}});
  }
}

TEST(Rules, UNK011_root_not_trusted) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"an untrusted root", nvml_refused_for_untrusted_root, {{k_node}}},
      {"left closed while a probe times the GPUs", nvml_left_closed, {}},
  };
  for (const auto& c : cases) expect_rule("UNK011", c);
  for (const char* other : {"DRV002", "NVML001", "UNK001", "UNK002", "GPU001", "UNK009"}) {
    expect_rule(other, {"an untrusted root", nvml_refused_for_untrusted_root, {}});
  }
}

TEST(Rules, UNK001_nvml_init_unknown) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"NO_PERMISSION", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(4); }, {{k_node}}},
      {"OPERATING_SYSTEM (cgroups)", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(17); }, {{k_node}}},
      {"UNKNOWN", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(999); }, {{k_node}}},
      {"an undocumented code", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(77); }, {{k_node}}},
      {"GPU_IS_LOST is RAS", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(15); }, {}},
      {"DRIVER_NOT_LOADED is a driver install", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(9); }, {}},
      {"no module: DRV001 says it",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.nvml.init_code = Fact<int>::known(4);
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("UNK001", c);
}

TEST(Rules, UNK002_gpu_count_unread) {
  auto count_fails = [](const char* why) {
    return [why](Snapshot& s) {
      s.nvml.device_count = Fact<unsigned>::unknown(why);
      s.nvml.gpus.clear();
    };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"UNKNOWN", count_fails("UNKNOWN"), {{k_node}}},
      {"NO_PERMISSION", count_fails("NO_PERMISSION"), {{k_node}}},
      {"NOT_SUPPORTED", count_fails("NOT_SUPPORTED"), {{k_node}}},
      {"GPU_IS_LOST is GPU001's", count_fails("GPU_IS_LOST"), {}},
      // A fact missing "because of" SUCCESS (an edited snapshot) was not read all the same.
      {"missing with reason SUCCESS", count_fails("SUCCESS"), {{k_node}}},
      // NVML sees none, the driver's list unread: no GPU and GPUs NVML missed read alike.
      {"none seen, the driver's list unread",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(0);
         s.nvml.gpus.clear();
         s.driver.kernel_gpus.clear();
         s.driver.kernel_gpus_unread = "/proc/driver/nvidia/gpus: Permission denied";
       },
       {{k_node}}},
      {"none seen, the driver's list read and empty",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(0);
         s.nvml.gpus.clear();
         s.driver.kernel_gpus.clear();
       },
       {}},
      // Fewer than the daemon holds (review-s48-diff M2): GPU 1 gone from NVML, the driver's list unread.
      {"fewer seen than the daemon holds, the driver's list unread",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(1);
         s.nvml.gpus.pop_back();
         s.driver.kernel_gpus.clear();
         s.driver.kernel_gpus_unread = "/proc/driver/nvidia/gpus: Permission denied";
       },
       {{k_node}}},
      // A snapshot from before the fact: an empty list there is not known to have been read.
      {"none seen, a snapshot older than the fact",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(0);
         s.nvml.gpus.clear();
         s.driver.kernel_gpus.clear();
         s.driver.kernel_gpus_unread = DriverFacts{}.kernel_gpus_unread;
       },
       {{k_node}}},
      // The module loaded, no GPU anywhere it was read, the PCI bus unread (review-s51-diagnose F6): not healthy.
      {"none seen, the driver's list read and empty, the PCI bus unread",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(0);
         s.nvml.gpus.clear();
         s.daemon.processes.clear();
         s.driver.kernel_gpus.clear();
         s.driver.kernel_gpus_unread.clear();
         s.driver.unbound_gpus = Fact<std::vector<std::string>>::unknown("/sys/bus/pci/devices: Permission denied");
       },
       {{k_node}}},
      {"none seen anywhere, the PCI bus read: GPU001's to say, not unknown",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(0);
         s.nvml.gpus.clear();
         s.daemon.processes.clear();
         s.driver.kernel_gpus.clear();
         s.driver.kernel_gpus_unread.clear();
         s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({});
       },
       {}},
      {"GPUs seen, the driver's list unread: NVML's view stands",
       [](Snapshot& s) {
         s.driver.kernel_gpus.clear();
         s.driver.kernel_gpus_unread = "/proc/driver/nvidia/gpus: Permission denied";
       },
       {}},
      {"init failed first: not asked",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::known(4);
         s.nvml.device_count = Fact<unsigned>::unknown("nvmlInit failed: NO_PERMISSION");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("UNK002", c);
}

TEST(Rules, UNK003_gpu_handle_unread) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"NO_PERMISSION on GPU 1", [](Snapshot& s) { s.nvml.gpus[1] = lost_gpu(1, "NO_PERMISSION"); }, {{1u}}},
      {"UNKNOWN on GPU 0", [](Snapshot& s) { s.nvml.gpus[0] = lost_gpu(0, "UNKNOWN"); }, {{0u}}},
      {"GPU_IS_LOST is GPU001's", [](Snapshot& s) { s.nvml.gpus[0] = lost_gpu(0, "GPU_IS_LOST"); }, {}},
      {"a handle error SUCCESS", [](Snapshot& s) { s.nvml.gpus[1] = lost_gpu(1, "SUCCESS"); }, {{1u}}},
      {"fewer GPUs recorded than NVML counted", [](Snapshot& s) { s.nvml.gpus.pop_back(); }, {{std::nullopt}}},
      {"none recorded", [](Snapshot& s) { s.nvml.gpus.clear(); }, {{std::nullopt}}},
  };
  for (const auto& c : cases) expect_rule("UNK003", c);
}

TEST(Rules, UNK004_gpu_fact_unread) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"persistence UNKNOWN", [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::unknown("UNKNOWN"); },
       {{0u}}},
      {"persistence missing with reason SUCCESS",
       [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::unknown("SUCCESS"); }, {{0u}}},
      {"persistence NOT_SUPPORTED: still cannot tell",
       [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::unknown("NOT_SUPPORTED"); }, {{1u}}},
      {"persistence symbol absent",
       [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::unknown(nvml::k_reason_symbol_absent); },
       {{1u}}},
      {"event reasons NO_PERMISSION",
       [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::unknown("NO_PERMISSION"); },
       {{0u}}},
      {"event reasons NOT_SUPPORTED: the GPU has none, an answer",
       [](Snapshot& s) { s.nvml.gpus[0].event_reasons_active = Fact<std::uint64_t>::unknown("NOT_SUPPORTED"); },
       {}},
      {"application clock UNKNOWN",
       [](Snapshot& s) { s.nvml.gpus[1].app_clocks.sm = Fact<unsigned>::unknown("UNKNOWN"); }, {{1u}}},
      {"temperature UNKNOWN decides nothing",
       [](Snapshot& s) { s.nvml.gpus[0].temperature_c = Fact<int>::unknown("UNKNOWN"); }, {}},
      {"persistence GPU_IS_LOST is GPU001's",
       [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::unknown("GPU_IS_LOST"); }, {}},
      {"not read at decision depth is no unknown",
       [](Snapshot& s) { s.nvml.gpus[0].temperature_c = Fact<int>::unknown(nvml::k_reason_not_read); }, {}},
  };
  for (const auto& c : cases) expect_rule("UNK004", c);
}

TEST(Rules, UNK005_unit_state_unread) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"every property unread",
       [](Snapshot& s) {
         s.service.load_state = s.service.active_state = s.service.unit_file_state =
             Fact<std::string>::unknown("Connection timed out");
       },
       {{std::nullopt}}},
      {"only enablement unread",
       [](Snapshot& s) { s.service.unit_file_state = Fact<std::string>::unknown("Access denied"); }, {{std::nullopt}}},
      // PD003 and PD002 decide on these: one read that failed must not leave "no finding".
      {"only StopWhenUnneeded unread",
       [](Snapshot& s) { s.service.stop_when_unneeded = Fact<bool>::unknown("Connection timed out"); },
       {{std::nullopt}}},
      {"only ExecStart unread",
       [](Snapshot& s) { s.service.exec_start = Fact<std::vector<std::string>>::unknown("Access denied"); },
       {{std::nullopt}}},
      {"no unit: no enablement to read",
       [](Snapshot& s) {
         s.service.load_state = Fact<std::string>::known("not-found");
         s.service.unit_file_state = Fact<std::string>::unknown("x");
         s.service.stop_when_unneeded = Fact<bool>::unknown("x");
         s.service.exec_start = Fact<std::vector<std::string>>::unknown("x");
       },
       {}},
      {"systemd unreachable is NOTE002's",
       [](Snapshot& s) {
         s.service.reachable = false;
         s.service.active_state = Fact<std::string>::unknown("no bus");
       },
       {}},
      // Within a daemon-reload the unit passes through states that say nothing of it yet.
      {"a load state no rule judges", [](Snapshot& s) { s.service.load_state = Fact<std::string>::known("stub"); },
       {{std::nullopt}}},
      {"masked is PD004's", [](Snapshot& s) { s.service.load_state = Fact<std::string>::known("masked"); }, {}},
  };
  for (const auto& c : cases) expect_rule("UNK005", c);
}

TEST(Rules, UNK008_systemd_unanswered) {
  auto unanswered = [](Fact<bool> booted, bool asked) {
    return [booted, asked](Snapshot& s) {
      s.service.reachable = false;
      s.service.manager_booted = booted;
      s.service.not_asked = !asked;
      s.service.unreachable = asked ? "Failed to connect to the system bus: Connection refused" : "--no-systemd";
    };
  };
  const std::vector<RuleCase> cases = {
      {"systemd answered", [](Snapshot&) {}, {}},
      {"booted with systemd, the bus refused", unanswered(Fact<bool>::known(true), true), {{std::nullopt}}},
      {"no systemd on this host: NOTE002's", unanswered(Fact<bool>::known(false), true), {}},
      {"booted with systemd, --no-systemd: not asked, NOTE002's", unanswered(Fact<bool>::known(true), false), {}},
      // A snapshot older than the fact: systemd may run there, so the unit's state is unknown, not absent.
      {"whether booted with systemd not recorded", unanswered(Fact<bool>::unknown("not in this snapshot"), true),
       {{std::nullopt}}},
      {"whether booted not recorded, --no-systemd", unanswered(Fact<bool>::unknown("not in this snapshot"), false),
       {}},
  };
  for (const auto& c : cases) expect_rule("UNK008", c);
}

TEST(Rules, UNK010_snapshot_incomplete) {
  const std::vector<RuleCase> cases = {
      {"a snapshot this gpuwarm wrote", [](Snapshot&) {}, {}},
      {"one written by an older gpuwarm",
       [](Snapshot& s) { s.absent_keys = {"kernel_log.named", "nvml.timed_out_at"}; }, {{std::nullopt}}},
  };
  for (const auto& c : cases) expect_rule("UNK010", c);
  // It decides: the defaults that stand in for the missing keys read as fine, so nothing else can.
  Snapshot s = test::healthy_snapshot();
  s.absent_keys = {"nvml.timed_out_at"};
  const auto d = diagnose(s);
  EXPECT_EQ(d.verdict.rule_id, "UNK010");
  EXPECT_EQ(d.verdict.exit_code, ExitCode::cannot_tell);
  EXPECT_NE(d.verdict.next_step.find("gpuwarm snapshot -o FILE"), std::string::npos) << d.verdict.next_step;
}

TEST(Rules, UNK006_process_list_unread) {
  auto unlisted = [](Snapshot& s) {
    s.daemon.processes.clear();
    s.daemon.processes_unread = "/proc: No such file or directory";
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"no /proc", unlisted, {{std::nullopt}}},
      {"listed, no daemon: PD rules' case", [](Snapshot& s) { s.daemon.processes.clear(); }, {}},
  };
  for (const auto& c : cases) expect_rule("UNK006", c);
}

TEST(Rules, UNK007_named_kernel_log_unread) {
  auto named = [](Fact<std::string> source) {
    return [source](Snapshot& s) {
      s.kernel_log.named = true;
      s.kernel_log.source = source;
    };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node, /dev/kmsg read", [](Snapshot&) {}, {}},
      {"/dev/kmsg closed to a user: NOTE001's, not this",
       [](Snapshot& s) { s.kernel_log.source = Fact<std::string>::unknown("needs root: /dev/kmsg"); }, {}},
      {"a named log that was read", named(Fact<std::string>::known("/var/log/kern.log")), {}},
      {"a named log in no format gpuwarm reads",
       named(Fact<std::string>::unknown("/x.log: none of its 2 lines is in a format gpuwarm reads")),
       {{std::nullopt}}},
      {"a named FIFO", named(Fact<std::string>::unknown("/x.fifo: not a regular file")), {{std::nullopt}}},
  };
  for (const auto& c : cases) expect_rule("UNK007", c);
}

GpuClient client(int pid, const char* comm, std::vector<unsigned> minors) {
  return {pid, comm, std::move(minors)};
}

TEST(Rules, PM003_persistence_masked) {
  auto off_held_by = [](std::vector<GpuClient> clients) {
    return [clients](Snapshot& s) {
      s.daemon.processes.clear();
      for (auto& g : s.nvml.gpus) g.persistence = Fact<bool>::known(false);
      s.host.gpu_clients = Fact<std::vector<GpuClient>>::known(clients);
    };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"nv-hostengine holds both", off_held_by({client(77, "nv-hostengine", {0, 1})}), {{0u}, {1u}}},
      {"an exporter holds GPU 1 only", off_held_by({client(88, "nvidia_gpu_expo", {1})}), {{1u}}},
      {"nobody holds them", off_held_by({}), {}},
      {"not scanned",
       [](Snapshot& s) {
         s.daemon.processes.clear();
         s.nvml.gpus[0].persistence = Fact<bool>::known(false);
         s.host.gpu_clients = Fact<std::vector<GpuClient>>::unknown("not scanned");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PM003", c);
}

TEST(Rules, PM004_persistence_views_disagree) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"NVML Disabled, daemon holds it (GB200)",
       [](Snapshot& s) { s.nvml.gpus[0].persistence = Fact<bool>::known(false); }, {{0u}}},
      {"NVML Disabled, daemon does not hold it: PM001's",
       [](Snapshot& s) {
         s.nvml.gpus[0].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::known({1});
       },
       {}},
      {"daemon's files unreadable: no daemon view to compare",
       [](Snapshot& s) {
         s.nvml.gpus[0].persistence = Fact<bool>::known(false);
         s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown("needs root");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PM004", c);
}

TEST(Rules, PM005_persistence_optional) {
  auto chassis = [](unsigned type) {
    return [type](Snapshot& s) { s.host.chassis_type = Fact<unsigned>::known(type); };
  };
  auto rtd3 = [](Snapshot& s) {
    s.driver.kernel_gpus[0].runtime_d3 = Fact<std::string>::known("Enabled (fine-grained)");
  };
  auto both = [](auto a, auto b) {
    return [a, b](Snapshot& s) {
      a(s);
      b(s);
    };
  };
  auto display = [](Snapshot& s) { s.nvml.gpus[0].display_active = Fact<bool>::known(true); };
  const std::vector<RuleCase> cases = {
      {"server (no chassis, no RTD3)", [](Snapshot&) {}, {}},
      {"notebook chassis alone: its GPU may not power down", chassis(10), {}},
      {"runtime D3 alone, chassis unknown (a VM)", rtd3, {}},
      {"notebook with runtime D3", both(chassis(10), rtd3), {{k_node}}},
      {"convertible with runtime D3", both(chassis(31), rtd3), {{k_node}}},
      {"desktop driving a display", both(chassis(3), display), {{k_node}}},
      {"rack server with runtime D3 forced on", both(chassis(23), rtd3), {}},
      {"a display attached to a rack server is no workstation", both(chassis(23), display), {}},
      {"desktop without a display or RTD3", chassis(3), {}},
      {"laptop running slurmd: jobs count",
       [=](Snapshot& s) {
         both(chassis(10), rtd3)(s);
         s.host.schedulers = Fact<std::vector<std::string>>::known({"slurmd (pid 5)"});
       },
       {}},
      {"schedulers unknown (/proc unreadable): cannot rule them out",
       [=](Snapshot& s) {
         both(chassis(10), rtd3)(s);
         s.host.schedulers = Fact<std::vector<std::string>>::unknown("/proc: Permission denied");
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("PM005", c);
}

}  // namespace
}  // namespace gpuwarm::test
