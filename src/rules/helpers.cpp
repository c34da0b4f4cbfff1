#include "rules/helpers.h"

#include <algorithm>

#include <fmt/format.h>

namespace gpuwarm {

std::string gpu_label(const GpuFacts& gpu) {
  std::string detail;
  if (gpu.name.has()) {
    detail = *gpu.name;
  }
  if (gpu.pci_bus_id.has()) {
    detail += (detail.empty() ? "" : ", ") + *gpu.pci_bus_id;
  }
  return detail.empty() ? fmt::format("GPU {}", gpu.index) : fmt::format("GPU {} ({})", gpu.index, detail);
}

std::vector<const GpuFacts*> reachable_gpus(const Snapshot& s) {
  std::vector<const GpuFacts*> out;
  for (const auto& gpu : s.nvml.gpus) {
    if (gpu.handle_error.empty()) {
      out.push_back(&gpu);
    }
  }
  return out;
}

bool daemon_running(const Snapshot& s) { return !s.daemon.processes.empty(); }

std::optional<std::vector<unsigned>> daemon_held_minors(const Snapshot& s) {
  std::optional<std::vector<unsigned>> held;
  for (const auto& p : s.daemon.processes) {
    if (p.held_minors.has()) {
      if (!held) {
        held.emplace();
      }
      held->insert(held->end(), p.held_minors->begin(), p.held_minors->end());
    }
  }
  return held;
}

bool has_arg(const std::vector<std::string>& argv, const std::string& arg) {
  return std::find(argv.begin(), argv.end(), arg) != argv.end();
}

std::string kernel_module_version(const Snapshot& s) {
  if (s.driver.kernel_version.has()) {
    return *s.driver.kernel_version;
  }
  if (s.driver.sys_module_version.has()) {
    return *s.driver.sys_module_version;
  }
  return {};
}

std::string user_space_version(const Snapshot& s) {
  if (s.nvml.user_space_version.has()) {
    return *s.nvml.user_space_version;
  }
  if (s.nvml.library_file_version.has()) {
    return *s.nvml.library_file_version;
  }
  return {};
}

std::string join_args(const std::vector<std::string>& argv) { return fmt::format("{}", fmt::join(argv, " ")); }

}  // namespace gpuwarm
