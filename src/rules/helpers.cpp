#include "rules/helpers.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "core/strings.h"

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

bool daemon_running(const Snapshot& s) {
  // The GPU Operator's daemon runs in its driver container (another mount namespace, so "foreign" to the
  // host), and it is the one meant to keep the GPUs initialized there.
  return !s.daemon.processes.empty() || (daemon_from_driver_container(s) && !s.daemon.foreign.empty());
}

bool start_skipped(const ServiceFacts& service) {
  return service.reachable && service.active_state.is("inactive") && service.result.is("exec-condition");
}

std::string guard_dropin(const ServiceFacts& service) {
  if (!service.drop_in_paths.has()) {
    return {};
  }
  auto at = std::find_if(service.drop_in_paths->begin(), service.drop_in_paths->end(),
                         [](const std::string& p) { return p.ends_with("/40-gpuwarm-guard.conf"); });
  return at == service.drop_in_paths->end() ? std::string{} : *at;
}

std::optional<bool> unit_starts_at_boot(const ServiceFacts& service, std::string* why) {
  auto say = [why](std::string text) {
    if (why != nullptr) {
      *why = std::move(text);
    }
  };
  if (!service.reachable || !service.unit_file_state.has()) {
    say(!service.reachable ? service.unreachable : service.unit_file_state.missing);
    return std::nullopt;
  }
  const std::string& state = *service.unit_file_state;
  // enabled-runtime is gone after a reboot: not enabled for boot.
  if (state == "enabled" || state == "generated" || state == "alias") {
    say(state);
    return true;
  }
  if (state != "static") {
    say(state);
    return false;
  }
  if (!service.wanted_by.has()) {
    say("static; what wants it unread: " + service.wanted_by.missing);
    return std::nullopt;
  }
  if (service.wanted_by->empty()) {
    say("static (no [Install] section), and no unit wants it");
    return false;
  }
  std::string by;
  for (const auto& u : *service.wanted_by) {
    by += (by.empty() ? "" : ", ") + u;
  }
  say("static, wanted by " + by);
  return true;
}

bool daemon_processes_listed(const Snapshot& s) { return s.daemon.processes_unread.empty(); }

bool not_a_gpu_node(const Snapshot& s) {
  const auto& unbound = s.driver.unbound_gpus;
  const auto& elsewhere = s.driver.gpus_on_other_drivers;
  // NVML that counted GPUs, hung or was left closed outweighs a module this view cannot see (a pod without the
  // host's /proc): "none" is a count of 0, or an NVML that could not start for want of a driver or library.
  const bool nvml_saw_none = s.nvml.gpus.empty() && s.nvml.timed_out_at.empty() && s.nvml.not_opened.empty() &&
                             (s.nvml.device_count.is(0u) || !s.nvml.init_code.is(nvml::ret::success));
  return !s.driver.module_loaded && s.driver.kernel_gpus.empty() && unbound.has() && unbound->empty() &&
         elsewhere.has() && elsewhere->empty() && nvml_saw_none;
}

bool daemon_from_driver_container(const Snapshot& s) {
  return s.daemon.binary.has() && s.daemon.binary->rfind("/run/nvidia/driver/", 0) == 0;
}

namespace {

// "00000000:3B:00.0" (NVML) and "0000:3b:00.0" (/proc/driver/nvidia/gpus) name one function: compare them with
// the domain's leading zeros dropped and case folded.
std::string comparable_bus_id(std::string_view id) {
  std::string out;
  std::size_t colon = id.find(':');
  std::string_view domain = colon == std::string_view::npos ? std::string_view{} : id.substr(0, colon);
  std::size_t first = domain.find_first_not_of('0');
  out = first == std::string_view::npos ? "0" : std::string(domain.substr(first));
  out += colon == std::string_view::npos ? std::string(id) : std::string(id.substr(colon));
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace

std::optional<unsigned> gpu_minor(const Snapshot& s, const GpuFacts& gpu) {
  if (gpu.minor.has()) {
    return *gpu.minor;
  }
  for (const auto& kg : s.driver.kernel_gpus) {
    const bool same = (gpu.uuid.has() && !kg.uuid.empty() && kg.uuid == *gpu.uuid) ||
                      (gpu.pci_bus_id.has() && !kg.bus_id.empty() &&
                       comparable_bus_id(kg.bus_id) == comparable_bus_id(*gpu.pci_bus_id));
    if (same && kg.minor.has()) {
      return *kg.minor;
    }
  }
  return std::nullopt;
}

std::vector<const KernelGpu*> gpus_nvml_missed(const Snapshot& s) {
  std::vector<const KernelGpu*> listed;
  for (const auto& kg : s.driver.kernel_gpus) {
    if (!kg.excluded) {
      listed.push_back(&kg);
    }
  }
  const std::size_t seen = s.nvml.device_count.value_or(static_cast<unsigned>(s.nvml.gpus.size()));
  if (listed.size() <= seen) {
    return {};  // as many as the driver lists: GPU001's count agrees
  }
  std::vector<const KernelGpu*> missed;
  for (const KernelGpu* kg : listed) {
    const bool shown = std::any_of(s.nvml.gpus.begin(), s.nvml.gpus.end(), [&](const GpuFacts& g) {
      return (g.uuid.has() && !kg->uuid.empty() && *g.uuid == kg->uuid) ||
             (g.pci_bus_id.has() && comparable_bus_id(*g.pci_bus_id) == comparable_bus_id(kg->bus_id));
    });
    if (!shown) {
      missed.push_back(kg);
    }
  }
  return missed;
}

std::string unmask_command(const ServiceFacts& service) {
  if (!service.unit_file_state.has()) {
    return "systemctl unmask nvidia-persistenced.service, or with --runtime for a mask until reboot";
  }
  return service.unit_file_state.is("masked-runtime") ? "systemctl unmask --runtime nvidia-persistenced.service"
                                                       : "systemctl unmask nvidia-persistenced.service";
}

Finding cannot_tell(std::string tag, std::string message, std::string next_step) {
  Finding f;
  f.route = Route::unknown;
  f.tag = std::move(tag);
  f.message = std::move(message);
  f.next_step = std::move(next_step);
  return f;
}

bool gpu_device_node(const DeviceNode& node) {
  constexpr std::string_view prefix = "/dev/nvidia";
  std::string_view rest = std::string_view(node.path).substr(std::min(node.path.size(), prefix.size()));
  return node.char_device && node.path.starts_with(prefix) && !rest.empty() &&
         rest.find_first_not_of("0123456789") == std::string_view::npos;
}

std::size_t other_gpu_signs(const Snapshot& s) {
  const auto nodes = static_cast<std::size_t>(
      std::count_if(s.driver.device_nodes.begin(), s.driver.device_nodes.end(), gpu_device_node));
  std::size_t held = 0;
  for (unsigned minor : daemon_held_minors(s).value_or(std::vector<unsigned>{})) {
    if (std::none_of(s.nvml.gpus.begin(), s.nvml.gpus.end(), [&](const GpuFacts& g) { return gpu_minor(s, g) == minor; })) {
      ++held;
    }
  }
  return std::max(nodes, s.nvml.gpus.size() + held);
}

bool nvml_may_miss_gpus(const Snapshot& s) {
  const bool list_unread = s.driver.kernel_gpus.empty() && !s.driver.kernel_gpus_unread.empty();
  return s.driver.module_loaded && list_unread && s.nvml.device_count.has() &&
         (*s.nvml.device_count == 0 || other_gpu_signs(s) > *s.nvml.device_count);
}

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

std::optional<int> daemon_outside_unit(const Snapshot& s) {
  if (!(s.service.active_state.is("inactive") || s.service.active_state.is("failed")) ||
      (s.service.load_state.is("not-found") && daemon_from_driver_container(s))) {
    return std::nullopt;
  }
  for (const auto& p : s.daemon.processes) {
    const bool the_units = p.cgroup.is(k_unit_cgroup) ||
                           (s.service.control_group.has() && !s.service.control_group->empty() &&
                            p.cgroup.is(*s.service.control_group));
    if (!the_units) {
      return p.pid;
    }
  }
  return std::nullopt;
}

std::string daemon_held_minors_missing(const Snapshot& s) {
  for (const auto& p : s.daemon.processes) {
    if (!p.held_minors.has()) {
      return p.held_minors.missing;
    }
  }
  return {};
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

std::vector<GpuQuery> gpu_queries(const GpuFacts& g) {
  using E = nvml::Entry;
  std::vector<GpuQuery> out;
  auto add = [&out](const char* fact, const char* query, E entry, const auto& f) {
    out.push_back({fact, query, entry, f.has() ? nullptr : &f.missing});
  };
  add("name", "nvmlDeviceGetName", E::optional, g.name);
  add("UUID", "nvmlDeviceGetUUID", E::optional, g.uuid);
  add("PCI bus ID", "nvmlDeviceGetPciInfo_v3", E::optional, g.pci_bus_id);
  add("minor number", "nvmlDeviceGetMinorNumber", E::conditional, g.minor);
  add("persistence mode", "nvmlDeviceGetPersistenceMode", E::needed, g.persistence);
  add("P-state", "nvmlDeviceGetPerformanceState", E::optional, g.pstate);
  add("SM clock", "nvmlDeviceGetClockInfo", E::optional, g.clocks.sm);
  add("graphics clock", "nvmlDeviceGetClockInfo", E::optional, g.clocks.graphics);
  add("memory clock", "nvmlDeviceGetClockInfo", E::optional, g.clocks.mem);
  add("max SM clock", "nvmlDeviceGetMaxClockInfo", E::optional, g.max_clocks.sm);
  add("max graphics clock", "nvmlDeviceGetMaxClockInfo", E::optional, g.max_clocks.graphics);
  add("max memory clock", "nvmlDeviceGetMaxClockInfo", E::optional, g.max_clocks.mem);
  add("SM application clock", "nvmlDeviceGetApplicationsClock", E::conditional, g.app_clocks.sm);
  add("graphics application clock", "nvmlDeviceGetApplicationsClock", E::optional, g.app_clocks.graphics);
  add("memory application clock", "nvmlDeviceGetApplicationsClock", E::optional, g.app_clocks.mem);
  add("default SM application clock", "nvmlDeviceGetDefaultApplicationsClock", E::conditional,
      g.default_app_clocks.sm);
  add("default graphics application clock", "nvmlDeviceGetDefaultApplicationsClock", E::optional,
      g.default_app_clocks.graphics);
  add("default memory application clock", "nvmlDeviceGetDefaultApplicationsClock", E::optional,
      g.default_app_clocks.mem);
  add("active clock-event reasons", "nvmlDeviceGetCurrentClocksEventReasons", E::conditional,
      g.event_reasons_active);
  add("supported clock-event reasons", "nvmlDeviceGetSupportedClocksEventReasons", E::optional,
      g.event_reasons_supported);
  add("clock-event counters", "nvmlDeviceGetFieldValues", E::optional, g.event_counters);
  add("temperature", "nvmlDeviceGetTemperature", E::optional, g.temperature_c);
  add("power", "nvmlDeviceGetPowerUsage", E::optional, g.power_mw);
  add("power limit", "nvmlDeviceGetEnforcedPowerLimit", E::optional, g.power_limit_mw);
  add("MIG mode", "nvmlDeviceGetMigMode", E::optional, g.mig_mode);
  add("compute processes", "nvmlDeviceGetComputeRunningProcesses_v3", E::optional, g.compute_processes);
  add("display active", "nvmlDeviceGetDisplayActive", E::optional, g.display_active);
  return out;
}

std::string describe_daemon_process(const DaemonProcess& p) {
  return "pid " + std::to_string(p.pid) + ": " +
         (p.argv_missing.empty() ? join_args(p.argv) : "arguments unread: " + p.argv_missing);
}

nvml::Effect effect_of(nvml::Entry entry, const std::string& reason) {
  return nvml::effect(entry, nvml::meaning_of_reason(reason));
}

std::string nvml_evidence(const char* query, const std::string& reason) {
  for (const auto& info : nvml::return_table()) {
    if (reason == info.name) {
      return fmt::format("{}: {} ({}: {})", query, reason, info.code, info.what);
    }
  }
  return fmt::format("{}: {}", query, reason);
}

std::vector<const ApiMismatch*> live_mismatches(const Snapshot& s) {
  const std::string loaded = kernel_module_version(s);
  std::vector<const ApiMismatch*> out;
  for (const auto& m : s.kernel_log.mismatches) {
    // Older boots or an earlier module generation logged other module versions.
    if (m.after_module_load && (loaded.empty() || m.kernel_version.empty() || m.kernel_version == loaded)) {
      out.push_back(&m);
    }
  }
  return out;
}

std::string logged_new_user_space(const Snapshot& s) {
  const std::string loaded = kernel_module_version(s);
  std::string newest;
  for (const ApiMismatch* m : live_mismatches(s)) {
    // Only a version names user space: a client may send any text.
    const bool a_version = compare_driver_versions(m->client_version, m->client_version).has_value();
    if (a_version && m->client_version != loaded) {
      newest = m->client_version;  // log order: the last line is the newest
    }
  }
  return newest;
}

}  // namespace gpuwarm
