#include "sysfs/processes.h"

#include "core/fs.h"
#include "core/strings.h"

namespace gpuwarm {

Result<std::vector<int>> list_pids(const Paths& paths) {
  auto entries = list_dir(paths.proc(""));
  if (!entries) {
    return tl::unexpected(entries.error());
  }
  std::vector<int> pids;
  for (const auto& entry : *entries) {
    // "self", "sys", ...; and a name that is digits but not the canonical PID ("0042") is no process.
    auto pid = parse_u64(entry);
    if (pid && *pid > 0 && *pid <= 0x7fffffff && std::to_string(*pid) == entry) {
      pids.push_back(static_cast<int>(*pid));
    }
  }
  return pids;
}

std::string read_comm(const Paths& paths, int pid) {
  auto text = read_first_line(paths.proc(std::to_string(pid) + "/comm"));
  return text ? printable(*text) : std::string{};
}

Result<std::vector<ProcessName>> list_processes(const Paths& paths) {
  auto pids = list_pids(paths);
  if (!pids) {
    return tl::unexpected(pids.error());
  }
  std::vector<ProcessName> out;
  out.reserve(pids->size());
  for (int pid : *pids) {
    out.push_back({pid, read_comm(paths, pid)});
  }
  return out;
}

}  // namespace gpuwarm
