#include "sysfs/host.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "core/fs.h"
#include "core/result.h"
#include "core/strings.h"
#include "sysfs/daemon.h"

namespace gpuwarm {

namespace {

// The node daemon each scheduler runs on a compute node (its comm, which the
// kernel cuts at 15 characters).
constexpr std::array<std::string_view, 11> k_scheduler_daemons = {
    "slurmd",  "kubelet",       "k3s-agent", "k3s-server", "kubelite", "pbs_mom",
    "sge_execd", "sbatchd", "condor_startd", "nomad",     "flux-broker"};

// Calls fn(pid, entry) for every process; returns how many there were, or
// the error when /proc cannot be listed.
template <class Fn>
Result<std::size_t> for_each_pid(const Paths& paths, Fn fn) {
  auto entries = list_dir(paths.proc(""));
  if (!entries) {
    return tl::unexpected(entries.error());
  }
  std::size_t n = 0;
  for (const auto& entry : *entries) {
    auto pid = parse_u64(entry);
    if (pid && *pid > 0 && *pid <= 0x7fffffff) {
      ++n;
      fn(static_cast<int>(*pid), entry);
    }
  }
  return n;
}

std::string read_comm(const Paths& paths, const std::string& entry) {
  auto text = read_first_line(paths.proc(entry + "/comm"));
  return text ? printable(*text) : std::string{};
}

}  // namespace

Fact<unsigned> read_chassis_type(const Paths& paths) {
  auto text = read_first_line(paths.sys("class/dmi/id/chassis_type"));
  if (!text) {
    return Fact<unsigned>::unknown(paths.display(text.error().message));
  }
  auto value = parse_u64(*text);
  if (!value || *value > 255) {
    return Fact<unsigned>::unknown("unparsable chassis_type: " + printable(*text));
  }
  return Fact<unsigned>::known(static_cast<unsigned>(*value));
}

Fact<std::vector<std::string>> find_schedulers(const Paths& paths) {
  std::vector<std::string> found;
  auto listed = for_each_pid(paths, [&](int pid, const std::string& entry) {
    std::string comm = read_comm(paths, entry);
    if (std::find(k_scheduler_daemons.begin(), k_scheduler_daemons.end(), comm) != k_scheduler_daemons.end()) {
      found.push_back(comm + " (pid " + std::to_string(pid) + ")");
    }
  });
  if (!listed) {
    return Fact<std::vector<std::string>>::unknown(paths.display(listed.error().message));
  }
  if (*listed == 0) {
    return Fact<std::vector<std::string>>::unknown("no process listed under " + paths.display(paths.proc("")));
  }
  return Fact<std::vector<std::string>>::known(std::move(found));
}

ClientScan scan_gpu_clients(const Paths& paths, const std::vector<int>& skip) {
  ClientScan scan;
  for_each_pid(paths, [&](int pid, const std::string& entry) {
    if (std::find(skip.begin(), skip.end(), pid) != skip.end()) {
      return;
    }
    auto fds = list_dir(paths.proc(entry + "/fd"));
    if (!fds) {
      // A process that exited meanwhile is not a failure to read.
      scan.unreadable += fds.error().message.find("denied") != std::string::npos ? 1u : 0u;
      return;
    }
    std::vector<std::string> targets;
    for (const auto& fd : *fds) {
      if (auto target = read_link(paths.proc(entry + "/fd/" + fd)); target && starts_with(*target, "/dev/nvidia")) {
        targets.push_back(*target);
      }
    }
    std::vector<unsigned> minors = nvidia_minors_from_links(targets);
    if (minors.empty()) {
      return;
    }
    // Only the command name: another user's arguments may hold secrets, and
    // reading /proc/PID/cmdline can block on a process stuck in the driver.
    GpuClient client;
    client.pid = pid;
    client.comm = read_comm(paths, entry);
    client.minors = std::move(minors);
    scan.clients.push_back(std::move(client));
  });
  return scan;
}

}  // namespace gpuwarm
