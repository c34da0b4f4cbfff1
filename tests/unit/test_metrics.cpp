// render_metrics is pure: a snapshot and its diagnosis in, exposition text out.
// What must hold: one verdict series set, unknown facts never exported as 0,
// label values escaped, every family once with its samples together.

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "output/metrics.h"
#include "snapshot_builder.h"

namespace gpuwarm::test {
namespace {

std::string render(const Snapshot& s) { return render_metrics(s, diagnose(s), MetricsRun{"0.1.0", "abc", 1.5, {}, {}, {}}); }

TEST(Metrics, label_values_are_escaped) {
  EXPECT_EQ(prometheus_label_value("plain"), "plain");
  // A newline cannot end the sample line (nor forge one): escaped as a control, then as a backslash.
  EXPECT_EQ(prometheus_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\\\x0ad");
  // What a terminal would obey, never written raw: ESC, BEL, a C1 CSI, a bidi override.
  EXPECT_EQ(prometheus_label_value("v\x1b[31m\x07 \xc2\x9b" "1m \xe2\x80\xae"), "v\\\\x1b[31m\\\\x07 \\\\u009b1m \\\\u202e");
}

TEST(Metrics, healthy_node) {
  std::string text = render(healthy_snapshot());
  EXPECT_NE(text.find("gpuwarm_verdict{verdict=\"healthy\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("gpuwarm_persistenced_running 1\n"), std::string::npos);
  EXPECT_NE(text.find("gpuwarm_gpu_held_by_persistenced{gpu=\"1\""), std::string::npos);
  EXPECT_NE(text.find("gpuwarm_build_info{version=\"0.1.0\",commit=\"abc\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("gpuwarm_last_run_timestamp_seconds 1.5\n"), std::string::npos);
  // Exactly one verdict series is 1.
  std::regex one("gpuwarm_verdict\\{verdict=\"[a-z-]+\"\\} 1\n");
  EXPECT_EQ(std::distance(std::sregex_iterator(text.begin(), text.end(), one), std::sregex_iterator()), 1);
}

// Other clients are looked for only while a GPU reads Disabled: not looked for is no series, not an unknown
// (a generic alert on gpuwarm_gpu_fact_unknown would fire on every healthy node). Looked for and unlisted is.
TEST(Metrics, clients_not_looked_for_are_no_series_and_not_an_unknown) {
  Snapshot s = healthy_snapshot();
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::unknown(k_clients_not_scanned);
  std::string text = render(s);
  EXPECT_EQ(text.find("held_by_other_clients{"), std::string::npos) << text;
  EXPECT_EQ(text.find("fact=\"held_by_other_clients\""), std::string::npos) << text;
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::unknown("processes not listed: /proc: EACCES");
  text = render(s);
  EXPECT_NE(text.find("fact=\"held_by_other_clients\",reason=\"processes not listed: /proc: EACCES\"} 1"),
            std::string::npos)
      << text;
}

TEST(Metrics, unknown_is_never_zero) {
  Snapshot s = healthy_snapshot();
  s.nvml.gpus[1].persistence = Fact<bool>::unknown("NO_PERMISSION");
  s.service.reachable = false;
  s.service.unreachable = "no \"system\" bus";
  std::string text = render(s);
  EXPECT_EQ(text.find("gpuwarm_gpu_persistence_mode{gpu=\"1\""), std::string::npos) << text;
  EXPECT_NE(text.find("fact=\"persistence_mode\",reason=\"NO_PERMISSION\"} 1"), std::string::npos) << text;
  EXPECT_EQ(text.find("gpuwarm_persistenced_unit_active "), std::string::npos);
  EXPECT_NE(text.find("reason=\"no \\\"system\\\" bus\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("gpuwarm_verdict{verdict=\"cannot-tell\"} 1"), std::string::npos);
}

// Which reasons a GPU can report unread (a legacy driver, NOT_SUPPORTED): a 0 could be a reason it cannot report,
// so only the active ones are series, and the unread mask is said (review-s49-watch W7).
TEST(Metrics, clock_reasons_without_the_supported_mask_are_only_the_active_ones) {
  Snapshot s = healthy_snapshot();
  for (auto& g : s.nvml.gpus) {
    g.event_reasons_active = Fact<std::uint64_t>::known(0x1);  // GpuIdle
    g.event_reasons_supported = Fact<std::uint64_t>::unknown("NOT_SUPPORTED");
  }
  auto reason_lines = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("gpuwarm_gpu_clock_event_reason_active{", 0) == 0) {
        out.push_back(line);
      }
    }
    return out;
  };
  std::string text = render(s);
  const auto unread = reason_lines(text);
  ASSERT_EQ(unread.size(), s.nvml.gpus.size()) << text;  // one series a GPU: its active reason
  for (const auto& line : unread) {
    EXPECT_NE(line.find("reason=\"gpu_idle\"} 1"), std::string::npos) << line;
  }
  EXPECT_NE(text.find("fact=\"clock_event_reasons_supported\",reason=\"NOT_SUPPORTED\"} 1"), std::string::npos) << text;
  // Read, the mask keeps the 0 of a reason the GPU can report, and drops the ones it cannot.
  for (auto& g : s.nvml.gpus) {
    g.event_reasons_supported = Fact<std::uint64_t>::known(0x1 | 0x4);
  }
  text = render(s);
  EXPECT_EQ(reason_lines(text).size(), 2 * s.nvml.gpus.size()) << text;
  EXPECT_NE(text.find("reason=\"sw_power_cap\"} 0\n"), std::string::npos) << text;
  EXPECT_EQ(text.find("clock_event_reasons_supported"), std::string::npos) << text;
}

// An unlisted /proc says nothing about the daemon: no 0 for running or held, the reason instead.
TEST(Metrics, unlisted_processes_are_unknown_not_zero) {
  Snapshot s = healthy_snapshot();
  s.daemon.processes.clear();
  s.daemon.processes_unread = "/proc: No such file or directory";
  std::string text = render(s);
  EXPECT_EQ(text.find("gpuwarm_persistenced_running "), std::string::npos) << text;
  EXPECT_EQ(text.find("gpuwarm_gpu_held_by_persistenced{"), std::string::npos) << text;
  EXPECT_NE(text.find("gpuwarm_fact_unknown{fact=\"persistenced_running\",reason=\"processes not listed: /proc: No "
                      "such file or directory\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fact=\"held_by_persistenced\",reason=\"processes not listed: /proc"), std::string::npos);
  EXPECT_NE(text.find("gpuwarm_verdict{verdict=\"cannot-tell\"} 1"), std::string::npos);
}

// Why the daemon's open files were unread is a label of a few values: the reason's text names /proc/PID/fd, and
// would make a new series at every daemon restart.
TEST(Metrics, held_by_persistenced_unknown_reasons_are_stable) {
  for (const auto& [missing, label] : std::vector<std::pair<std::string, std::string>>{
           {k_open_files_need_root, "the daemon's open files could not be read (needs root)"},
           {"/proc/4242/fd: Permission denied (refused to root: the kernel's ptrace check, e.g. a container without "
            "CAP_SYS_PTRACE)",
            "the daemon's open files were refused to root"},
           {"/proc/4242/fd: Not a directory", "the daemon's open files could not be read"}}) {
    Snapshot s = healthy_snapshot();
    s.daemon.processes[0].held_minors = Fact<std::vector<unsigned>>::unknown(missing);
    const std::string text = render(s);
    EXPECT_NE(text.find("fact=\"held_by_persistenced\",reason=\"" + label + "\"} 1"), std::string::npos) << text;
    EXPECT_EQ(text.find("4242"), std::string::npos) << text;
  }
}

// The kernel log unread (root without CAP_SYSLOG): a fact_unknown with why, as the text's NOTE003 says; read, none.
TEST(Metrics, an_unread_kernel_log_is_a_fact_unknown) {
  Snapshot s = healthy_snapshot();
  EXPECT_EQ(render(s).find("fact=\"kernel_log\""), std::string::npos);
  s.kernel_log.source = Fact<std::string>::unknown("/dev/kmsg: Operation not permitted");
  std::string text = render(s);
  EXPECT_NE(text.find("gpuwarm_fact_unknown{fact=\"kernel_log\",reason=\"/dev/kmsg: Operation not permitted\"} 1\n"),
            std::string::npos)
      << text;
}

// GPU Operator layout: the daemon runs in the driver container. Whether it holds a GPU was not read (no 0),
// and it is not one of the "other clients" (its comm is cut to "nvidia-persiste", so it goes by pid).
TEST(Metrics, a_containers_daemon_is_neither_a_zero_nor_another_client) {
  Snapshot s = healthy_snapshot();
  s.daemon.processes.clear();
  s.daemon.binary = Fact<std::string>::known("/run/nvidia/driver/usr/bin/nvidia-persistenced");
  s.daemon.foreign = {{4242, "another mount namespace"}};
  s.host.gpu_clients = Fact<std::vector<GpuClient>>::known({{4242, "nvidia-persiste", {0, 1}}, {77, "python3", {1}}});
  std::string text = render(s);
  EXPECT_EQ(text.find("gpuwarm_gpu_held_by_persistenced{"), std::string::npos) << text;
  EXPECT_NE(text.find("fact=\"held_by_persistenced\",reason=\"the daemon runs in another mount namespace"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gpuwarm_gpu_held_by_other_clients{gpu=\"0\",uuid=\"GPU-00000000-0000-0000-0000-000000000000\",pci_bus_id=\"00000000:06:00.0\"} 0"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gpuwarm_gpu_held_by_other_clients{gpu=\"1\",uuid=\"GPU-00000000-0000-0000-0000-000000000001\",pci_bus_id=\"00000000:07:00.0\"} 1"),
            std::string::npos)
      << text;
}

// Reboot pending follows the rule (DRV003), not the verdict, and is never a 0 when user space was not read;
// "enabled" means what PD004 accepts.
TEST(Metrics, reboot_pending_and_enabled_follow_the_rules) {
  EXPECT_NE(render(healthy_snapshot()).find("gpuwarm_driver_reboot_pending 0\n"), std::string::npos);

  Snapshot mismatch = healthy_snapshot();
  mismatch.nvml.user_space_version = Fact<std::string>::known("590.44.01");
  EXPECT_NE(render(mismatch).find("gpuwarm_driver_reboot_pending 1\n"), std::string::npos) << render(mismatch);

  Snapshot unread = healthy_snapshot();
  unread.nvml.user_space_version = Fact<std::string>::unknown("NVML timed out");
  unread.nvml.library_file_version = Fact<std::string>::unknown("no version in its name");
  std::string text = render(unread);
  EXPECT_EQ(text.find("gpuwarm_driver_reboot_pending "), std::string::npos) << text;
  EXPECT_NE(text.find("fact=\"driver_reboot_pending\",reason=\"user-space version: NVML timed out\"} 1"),
            std::string::npos)
      << text;
  // An NVML without the version query (a 470 library): the library file's name says it, as diagnose shows it.
  unread.nvml.user_space_version = Fact<std::string>::unknown("not in this NVML");
  unread.nvml.library_file_version = Fact<std::string>::known(*unread.driver.kernel_version);
  text = render(unread);
  EXPECT_NE(text.find("gpuwarm_driver_reboot_pending 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("user_space_version=\"" + *unread.driver.kernel_version + "\""), std::string::npos) << text;
  EXPECT_EQ(text.find("fact=\"driver_reboot_pending\""), std::string::npos) << text;

  Snapshot generated = healthy_snapshot();
  generated.service.unit_file_state = Fact<std::string>::known("generated");
  EXPECT_NE(render(generated).find("gpuwarm_persistenced_unit_enabled 1\n"), std::string::npos);
  generated.service.unit_file_state = Fact<std::string>::known("disabled");
  EXPECT_NE(render(generated).find("gpuwarm_persistenced_unit_enabled 0\n"), std::string::npos);
}

TEST(Metrics, families_are_declared_once_and_kept_together) {
  Snapshot s = healthy_snapshot();
  std::istringstream in(render(s));
  std::map<std::string, int> types;
  std::string current;
  std::map<std::string, bool> closed;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      ++types[name];
      if (!current.empty()) {
        closed[current] = true;
      }
      current = name;
    } else if (line[0] != '#') {
      std::string name = line.substr(0, line.find_first_of("{ "));
      EXPECT_EQ(name, current) << line;
      EXPECT_FALSE(closed[name]) << line;
    }
  }
  for (const auto& [name, count] : types) {
    EXPECT_EQ(count, 1) << name;
  }
}

}  // namespace
}  // namespace gpuwarm::test
