#include "sysfs/host.h"

#include <sys/stat.h>

#include <cerrno>

#include <algorithm>
#include <array>
#include <string_view>

#include "core/fs.h"
#include "core/result.h"
#include "core/strings.h"
#include "sysfs/daemon.h"
#include "sysfs/processes.h"

namespace gpuwarm {

namespace {

// The node daemon each scheduler runs on a compute node (its comm, which the
// kernel cuts at 15 characters).
constexpr std::array<std::string_view, 11> k_scheduler_daemons = {
    "slurmd",  "kubelet",       "k3s-agent", "k3s-server", "kubelite", "pbs_mom",
    "sge_execd", "sbatchd", "condor_startd", "nomad",     "flux-broker"};

}  // namespace

std::optional<unsigned> tree_systemd_version(const Paths& paths) {
  constexpr std::string_view k_prefix = "libsystemd-shared-";
  for (const char* dir : {"/usr/lib/systemd", "/usr/lib/x86_64-linux-gnu/systemd", "/usr/lib/aarch64-linux-gnu/systemd",
                          "/usr/lib64/systemd", "/lib/systemd", "/lib/x86_64-linux-gnu/systemd"}) {
    auto names = list_dir(paths.host(dir));
    if (!names) {
      continue;
    }
    for (const auto& name : *names) {
      // "libsystemd-shared-252.so", Fedora's "libsystemd-shared-254.5-1.fc39.so": the leading number.
      if (!name.starts_with(k_prefix) || name.find(".so") == std::string::npos) {
        continue;
      }
      std::string_view rest = std::string_view(name).substr(k_prefix.size());
      const auto digits = std::min(rest.find_first_not_of("0123456789"), rest.size());
      if (auto version = parse_u64(rest.substr(0, digits)); version && *version > 0 && *version < 100000) {
        return static_cast<unsigned>(*version);
      }
    }
  }
  return std::nullopt;
}

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

Fact<std::vector<std::string>> find_schedulers(const Paths& paths, const Result<std::vector<ProcessName>>& processes) {
  if (!processes) {
    return Fact<std::vector<std::string>>::unknown(paths.display(processes.error().message));
  }
  std::vector<std::string> found;
  for (const auto& p : *processes) {
    if (std::find(k_scheduler_daemons.begin(), k_scheduler_daemons.end(), p.comm) != k_scheduler_daemons.end()) {
      found.push_back(p.comm + " (pid " + std::to_string(p.pid) + ")");
    }
  }
  return Fact<std::vector<std::string>>::known(std::move(found));
}

namespace {

// Whether /proc/PID/stat says the process is exiting: Z (a zombie) or X (dead), the field after the command
// name, which ends at the last ')'.
bool exiting(const Paths& paths, int pid) {
  auto stat_line = read_first_line(paths.proc(std::to_string(pid) + "/stat"));
  if (!stat_line) {
    return false;
  }
  const auto end = stat_line->rfind(')');
  return end != std::string::npos && end + 2 < stat_line->size() &&
         (stat_line->at(end + 2) == 'Z' || stat_line->at(end + 2) == 'X');
}

}  // namespace

DeviceScan scan_nvidia_holders(const Paths& paths, const std::vector<int>& skip) {
  DeviceScan scan;
  auto pids = list_pids(paths);
  if (!pids) {
    scan.unlisted = paths.display(pids.error().message);
    return scan;
  }
  for (int pid : *pids) {
    if (std::find(skip.begin(), skip.end(), pid) != skip.end()) {
      continue;
    }
    auto files = read_open_files(paths, pid);
    if (!files) {
      // A process that exited meanwhile (its fd folder gone) is not a failure to read; a folder that is there
      // and could not be listed is (permission, but also a descriptor limit or memory: a holder not seen must
      // not read as none).
      // An exiting process (a zombie, or one being torn down: state Z or X) holds no file any more either.
      struct stat st {};
      const bool gone = ::stat(paths.proc(std::to_string(pid) + "/fd").c_str(), &st) != 0 &&
                        (errno == ENOENT || errno == ESRCH);
      scan.unreadable += gone || exiting(paths, pid) ? 0u : 1u;
      continue;
    }
    DeviceHolder holder;
    for (const auto& file : *files) {
      if (is_nvidia_device(file) &&
          std::find(holder.devices.begin(), holder.devices.end(), file.path) == holder.devices.end()) {
        holder.devices.push_back(file.path);
      }
    }
    if (holder.devices.empty()) {
      continue;
    }
    holder.gpu_minors = held_gpu_minors(*files);
    // Only the command name: another user's arguments may hold secrets, and
    // reading /proc/PID/cmdline can block on a process stuck in the driver.
    holder.pid = pid;
    holder.comm = read_comm(paths, pid);
    scan.holders.push_back(std::move(holder));
  }
  return scan;
}

ClientScan scan_gpu_clients(const Paths& paths, const std::vector<int>& skip) {
  DeviceScan devices = scan_nvidia_holders(paths, skip);
  ClientScan scan;
  scan.unreadable = devices.unreadable;
  scan.unlisted = std::move(devices.unlisted);
  for (auto& h : devices.holders) {
    // /dev/nvidiactl and /dev/nvidia-uvm alone hold no particular GPU.
    if (!h.gpu_minors.empty()) {
      scan.clients.push_back({h.pid, std::move(h.comm), std::move(h.gpu_minors)});
    }
  }
  return scan;
}

}  // namespace gpuwarm
