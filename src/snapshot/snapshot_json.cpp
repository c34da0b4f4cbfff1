#include "snapshot/snapshot_json.h"

#include "core/strings.h"

#include <cmath>
#include <vector>

#include "core/fs.h"
#include "core/report_kind.h"

namespace nlohmann {
template <class T>
struct adl_serializer<gpuwarm::Fact<T>> {
  static void to_json(json& j, const gpuwarm::Fact<T>& f) {
    if (f.value) {
      j = *f.value;
    } else {
      j = json{{"missing", f.missing}};
    }
  }
  static void from_json(const json& j, gpuwarm::Fact<T>& f) {
    if (j.is_object() && j.contains("missing") && j.size() == 1) {
      f = gpuwarm::Fact<T>::unknown(j.at("missing").get<std::string>());
    } else if (j.is_null()) {
      f = gpuwarm::Fact<T>::unknown("absent from snapshot");
    } else {
      f = gpuwarm::Fact<T>::known(j.get<T>());
    }
  }
};
}  // namespace nlohmann

namespace gpuwarm {

// Missing keys keep their defaults: snapshots recorded by an older gpuwarm of
// the same schema still load.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(KernelGpu, bus_id, model, uuid, minor, excluded, runtime_d3)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DeviceNode, path, char_device, mode)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(PciGpu, address, driver, module)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DriverFacts, module_loaded, proc_version_line, kernel_version,
                                                sys_module_version, open_kernel_module, kernel_gpus,
                                                kernel_gpus_unread, device_nodes,
                                                nvswitches, unbound_gpus, gpus_on_other_drivers)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ClockSet, sm, graphics, mem)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(EventCounter, reason, field_id, ns)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(GpuFacts, index, handle_error, attach_ms, name, uuid, pci_bus_id, minor,
                                                persistence, pstate, clocks, max_clocks, app_clocks,
                                                default_app_clocks, event_reasons_active, event_reasons_supported,
                                                event_counters, event_counter_ids, temperature_c, power_mw,
                                                power_limit_mw, requested_power_limit_mw, default_power_limit_mw, mig_mode,
                                                mig_mode_pending,
                                                compute_processes, display_active)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(NvmlFacts, library_path, library_found_by, library_passed_over,
                                                timed_out_at, not_opened, not_opened_by, timeout_s, library_file_version, nvml_version,
                                                user_space_version, system_driver_version, cuda_driver_version,
                                                init_code, init_error, init_ms, load_ms, devices_ms, shutdown_ms,
                                                device_count, gpus)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DaemonProcess, pid, argv, argv_missing, uid, held_minors, executable,
                                                cgroup)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ForeignDaemon, pid, why)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(DaemonFacts, binary, binary_found_by, processes, processes_unread,
                                                foreign, not_daemon, runtime_dir,
                                                pid_file_pid, socket, user_exists, manager_cgroup)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ApiMismatch, client, client_version, client_version_exact,
                                                kernel_version, after_module_load)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(KernelLogFacts, source, named, records, mismatches,
                                                legacy_persistence_notice, loaded_version)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(GpuClient, pid, comm, minors)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(HostFacts, chassis_type, schedulers, gpu_clients, unreadable_processes)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ServiceFacts, unit, reachable, unreachable, not_asked, manager_booted, load_state,
                                                active_state, sub_state, unit_file_state, exec_start, control_group,
                                                manager_control_group, manager_version, exec_condition,
                                                stop_when_unneeded, restart, result, fragment_path,
                                                need_daemon_reload, later_dropins,
                                                drop_in_paths, wanted_by, unit_text,
                                                gpuwarm_dropin_text, gpuwarm_dropin_exists)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(Snapshot, schema_version, gpuwarm_version, hostname,
                                                collected_at, root, collect_ms, stage_ms, needs_root, driver, nvml, daemon,
                                                kernel_log, service, host)

namespace {

// nlohmann converts a float to an integer field with a plain cast, undefined
// when it does not fit (found by fuzzing: 8.9e27 into an int). gpuwarm writes
// integers as integers and its floats (timings) are small and positive, so a
// float outside [0, 2^31) in a snapshot is malformed, whatever field it is in.
bool numbers_in_range(const nlohmann::json& j, int depth = 0) {
  if (depth > 64) {
    return false;
  }
  if (j.is_number_float()) {
    double v = j.get<double>();
    return std::isfinite(v) && v >= 0 && v < 2147483648.0;
  }
  if (j.is_structured()) {
    for (const auto& child : j) {
      if (!numbers_in_range(child, depth + 1)) {
        return false;
      }
    }
  }
  return true;
}

template <typename T>
bool reads_as(const nlohmann::json& j) {
  try {
    (void)j.get<T>();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// Where in a snapshot a value of the wrong type is ("nvml.gpus[1]", "service"), for a message that names it;
// "" when no section alone fails.
std::string failing_part(const nlohmann::json& body) {
  if (body.contains("nvml") && !reads_as<NvmlFacts>(body.at("nvml"))) {
    const auto& nvml = body.at("nvml");
    if (nvml.is_object() && nvml.contains("gpus") && nvml.at("gpus").is_array()) {
      const auto& gpus = nvml.at("gpus");
      for (std::size_t i = 0; i < gpus.size(); ++i) {
        if (!reads_as<GpuFacts>(gpus.at(i))) {
          return "nvml.gpus[" + std::to_string(i) + "]";
        }
      }
    }
    return "nvml";
  }
  const std::pair<const char*, bool (*)(const nlohmann::json&)> sections[] = {
      {"driver", reads_as<DriverFacts>},   {"daemon", reads_as<DaemonFacts>}, {"kernel_log", reads_as<KernelLogFacts>},
      {"service", reads_as<ServiceFacts>}, {"host", reads_as<HostFacts>}};
  for (const auto& [name, reads] : sections) {
    if (body.contains(name) && !reads(body.at(name))) {
      return name;
    }
  }
  return "";
}

// nlohmann's message without its "[json.exception.type_error.302] " id: what was wrong, in words.
std::string json_error_words(const nlohmann::json::exception& e) {
  std::string what = e.what();
  if (what.rfind("[json.exception.", 0) == 0) {
    if (const auto end = what.find("] "); end != std::string::npos) {
      what.erase(0, end + 2);
    }
  }
  return what;
}

}  // namespace

nlohmann::json snapshot_to_json(const Snapshot& snapshot) {
  nlohmann::json j = snapshot;
  j["kind"] = "gpuwarm-snapshot";
  // Not measured (a snapshot older than the fact, read back): left out, as it came, rather than a -1.
  for (auto& gpu : j["nvml"]["gpus"]) {
    if (gpu.contains("attach_ms") && gpu["attach_ms"].get<double>() < 0) {
      gpu.erase("attach_ms");
    }
  }
  return j;
}

Result<Snapshot> snapshot_from_json(const nlohmann::json& j) {
  if (!j.is_object()) {
    return fail("not a gpuwarm snapshot: the top level is not a JSON object");
  }
  // A snapshot, or `diagnose --json` output (which embeds one). Other reports
  // embed snapshots too (fix, verify) but are refused: they are not a node's
  // state at one moment, and reading them as one silently diagnoses nonsense.
  const bool has_kind = j.contains("kind") && j.at("kind").is_string();
  std::string kind = has_kind ? j.at("kind").get<std::string>() : "";
  // check --json said "gpuwarm-diagnosis" before it had a kind of its own: its "check" object gives it away.
  if (kind == "gpuwarm-diagnosis" && j.contains("check")) {
    kind = "gpuwarm-check";
  }
  const bool embedded = j.contains("snapshot") && j.at("snapshot").is_object();
  if (has_kind && kind != "gpuwarm-snapshot" && kind != "gpuwarm-diagnosis") {
    return fail("this is " + describe_report_kind(kind) +
                ", not a snapshot: give `gpuwarm snapshot` or `gpuwarm diagnose --json` output");
  }
  if (kind == "gpuwarm-diagnosis" && !embedded) {
    return fail("`gpuwarm diagnose --json` output without its \"snapshot\": cannot diagnose it again");
  }
  const nlohmann::json& body = embedded ? j.at("snapshot") : j;
  if (!body.contains("schema_version")) {
    return fail("not a gpuwarm snapshot: no schema_version (record one with `gpuwarm snapshot --json`)");
  }
  if (!body.at("schema_version").is_number_integer() ||
      body.at("schema_version").get<int>() != k_snapshot_schema_version) {
    return fail("snapshot schema_version " + body.at("schema_version").dump() + " is not supported (this gpuwarm reads " +
                std::to_string(k_snapshot_schema_version) + ")");
  }
  if (!has_kind && !embedded && !j.contains("driver") && !j.contains("nvml")) {
    return fail("not a gpuwarm snapshot: no \"kind\", and no driver or nvml facts (record one with "
                "`gpuwarm snapshot`)");
  }
  if (!numbers_in_range(body)) {
    return fail("malformed snapshot: a number out of range (or nested too deep)");
  }
  try {
    return body.get<Snapshot>();
  } catch (const nlohmann::json::exception& e) {
    const std::string part = failing_part(body);
    return fail("malformed snapshot: " + (part.empty() ? "" : part + ": ") + json_error_words(e));
  }
}

Result<Snapshot> load_snapshot_file(const std::string& path) {
  auto text = read_file(path, 64u << 20);
  if (!text) {
    return tl::unexpected(text.error());
  }
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return fail(path + ": not valid JSON (truncated or not a snapshot)");
  }
  auto snap = snapshot_from_json(j);
  if (!snap) {
    return fail(path + ": " + snap.error().message);
  }
  return snap;
}

void escape_strings(nlohmann::json& j) {
  // A worklist, not recursion: a hostile file nests arrays a million deep in a few megabytes.
  std::vector<nlohmann::json*> pending = {&j};
  while (!pending.empty()) {
    nlohmann::json* node = pending.back();
    pending.pop_back();
    if (node->is_string()) {
      *node = escape_control(node->get_ref<const std::string&>());
    } else if (node->is_structured()) {
      for (auto& item : *node) {
        pending.push_back(&item);
      }
    }
  }
}

std::string dump_json(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace gpuwarm
