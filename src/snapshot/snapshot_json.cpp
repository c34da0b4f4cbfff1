#include "snapshot/snapshot_json.h"

#include "core/strings.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string_view>
#include <vector>

#include "core/fs.h"
#include "core/json_strings.h"
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
      f = gpuwarm::Fact<T>::unknown(std::string(gpuwarm::k_not_in_snapshot));
    } else {
      f = gpuwarm::Fact<T>::known(j.get<T>());
    }
  }
};
}  // namespace nlohmann

namespace gpuwarm {

namespace {

// A key an older gpuwarm did not write (or an edit took out): a Fact under it is unknown for this reason, never
// its default, which may read as "looked, nothing wrong".
template <class T>
void read_or_absent(const nlohmann::json& j, const char* key, Fact<T>& field, const Fact<T>& /*fallback*/) {
  if (const auto it = j.find(key); it != j.end()) {
    it->get_to(field);
  } else {
    field = Fact<T>::unknown(std::string(k_not_in_snapshot));
  }
}

template <class T>
void read_or_absent(const nlohmann::json& j, const char* key, T& field, const T& fallback) {
  if (const auto it = j.find(key); it != j.end()) {
    it->get_to(field);
  } else {
    field = fallback;
  }
}

}  // namespace

// nlohmann's NON_INTRUSIVE_WITH_DEFAULT with one change: a missing Fact is unknown (read_or_absent). Other
// missing keys keep their defaults, so snapshots recorded by an older gpuwarm of the same schema still load.
#define GPUWARM_FROM_OR_ABSENT(v1) read_or_absent(nlohmann_json_j, #v1, nlohmann_json_t.v1, nlohmann_json_default_obj.v1);
#define GPUWARM_SNAPSHOT_JSON(Type, ...)                                                            \
  inline void to_json(nlohmann::json& nlohmann_json_j, const Type& nlohmann_json_t) {                \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(NLOHMANN_JSON_TO, __VA_ARGS__))                         \
  }                                                                                                  \
  inline void from_json(const nlohmann::json& nlohmann_json_j, Type& nlohmann_json_t) {              \
    if (!nlohmann_json_j.is_object()) {                                                              \
      (void)nlohmann_json_j.at(""); /* throws nlohmann's type_error: the section is not an object */   \
    }                                                                                                \
    const Type nlohmann_json_default_obj{};                                                          \
    NLOHMANN_JSON_EXPAND(NLOHMANN_JSON_PASTE(GPUWARM_FROM_OR_ABSENT, __VA_ARGS__))                   \
  }

GPUWARM_SNAPSHOT_JSON(KernelGpu, bus_id, model, uuid, minor, excluded, runtime_d3)
GPUWARM_SNAPSHOT_JSON(DeviceNode, path, char_device, mode)
GPUWARM_SNAPSHOT_JSON(PciGpu, address, driver, module)
GPUWARM_SNAPSHOT_JSON(DriverFacts, module_loaded, proc_version_line, kernel_version,
                                                sys_module_version, open_kernel_module, kernel_gpus,
                                                kernel_gpus_unread, device_nodes,
                                                nvswitches, unbound_gpus, gpus_on_other_drivers)
GPUWARM_SNAPSHOT_JSON(ClockSet, sm, graphics, mem)
GPUWARM_SNAPSHOT_JSON(EventCounter, reason, field_id, ns)
GPUWARM_SNAPSHOT_JSON(GpuFacts, index, handle_error, attach_ms, name, uuid, pci_bus_id, minor,
                                                persistence, pstate, clocks, max_clocks, app_clocks,
                                                default_app_clocks, event_reasons_active, event_reasons_supported,
                                                event_counters, event_counter_ids, temperature_c, power_mw,
                                                power_limit_mw, requested_power_limit_mw, default_power_limit_mw, mig_mode,
                                                mig_mode_pending,
                                                compute_processes, display_active)
GPUWARM_SNAPSHOT_JSON(NvmlFacts, library_path, library_found_by, library_passed_over,
                                                timed_out_at, not_opened, not_opened_by, timeout_s, library_file_version, nvml_version,
                                                user_space_version, system_driver_version, cuda_driver_version,
                                                init_code, init_error, init_ms, load_ms, devices_ms, shutdown_ms,
                                                device_count, gpus)
GPUWARM_SNAPSHOT_JSON(DaemonProcess, pid, argv, argv_missing, uid, held_minors, executable,
                                                cgroup)
GPUWARM_SNAPSHOT_JSON(ForeignDaemon, pid, why)
GPUWARM_SNAPSHOT_JSON(DaemonFacts, binary, binary_found_by, processes, processes_unread,
                                                foreign, not_daemon, runtime_dir,
                                                pid_file_pid, socket, user_exists, manager_cgroup)
GPUWARM_SNAPSHOT_JSON(ApiMismatch, client, client_version, client_version_exact,
                                                kernel_version, after_module_load)
GPUWARM_SNAPSHOT_JSON(KernelLogFacts, source, named, records, mismatches,
                                                legacy_persistence_notice, loaded_version, newest_unread)
GPUWARM_SNAPSHOT_JSON(GpuClient, pid, comm, minors)
GPUWARM_SNAPSHOT_JSON(HostFacts, chassis_type, schedulers, gpu_clients, unreadable_processes)
GPUWARM_SNAPSHOT_JSON(ServiceFacts, unit, reachable, unreachable, not_asked, manager_booted, load_state,
                                                active_state, sub_state, unit_file_state, exec_start, control_group,
                                                manager_control_group, manager_version, exec_condition,
                                                stop_when_unneeded, restart, result, fragment_path,
                                                need_daemon_reload, later_dropins, earlier_dropins,
                                                drop_in_paths, wanted_by, unit_text,
                                                gpuwarm_dropin_text, gpuwarm_dropin_exists)
GPUWARM_SNAPSHOT_JSON(Snapshot, schema_version, gpuwarm_version, hostname,
                                                collected_at, root, collect_ms, stage_ms, needs_root, driver, nvml, daemon,
                                                kernel_log, service, host, absent_keys)

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

// Keys whose absence changes no verdict: timings, how a file was found, the report's own kind.
bool informational_key(std::string_view path) {
  static constexpr std::string_view k_informational[] = {
      "kind",           "stage_ms",           "collect_ms",        "absent_keys",         "gpuwarm_version",
      "nvml.load_ms",   "nvml.devices_ms",    "nvml.shutdown_ms",  "nvml.timeout_s",      "nvml.init_ms",
      "nvml.library_found_by", "nvml.library_passed_over", "daemon.binary_found_by", "nvml.gpus[].attach_ms",
      "kernel_log.newest_unread"};
  return std::find(std::begin(k_informational), std::end(k_informational), path) != std::end(k_informational);
}

bool fact_shaped(const nlohmann::json& j) { return j.is_object() && j.size() == 1 && j.contains("missing"); }

// The keys `want` (what this gpuwarm writes) has and `have` (what was read) lacks, by path. A Fact absent is left
// out: it reads as unknown by itself (read_or_absent).
void absent_keys(const nlohmann::json& want, const nlohmann::json& have, const std::string& prefix,
                 std::set<std::string>& out) {
  for (const auto& [key, value] : want.items()) {
    const std::string path = prefix + key;
    const auto found = have.find(key);
    if (found == have.end()) {
      if (!fact_shaped(value) && !informational_key(path)) {
        out.insert(path);
      }
    } else if (value.is_object() && !fact_shaped(value) && found->is_object()) {
      absent_keys(value, *found, path + ".", out);
    } else if (value.is_array() && !value.empty() && value.front().is_object() && found->is_array()) {
      for (const auto& item : *found) {
        if (item.is_object()) {
          absent_keys(value.front(), item, path + "[].", out);
        }
      }
    }
  }
}

// What this gpuwarm writes: a snapshot with one element in each list whose elements carry plain fields.
const nlohmann::json& written_keys() {
  static const nlohmann::json keys = [] {
    Snapshot s;
    s.nvml.gpus.emplace_back();
    s.nvml.gpus.back().attach_ms = 0;  // written only where measured
    s.driver.kernel_gpus.emplace_back();
    s.daemon.processes.emplace_back();
    return snapshot_to_json(s);
  }();
  return keys;
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
    return fail("snapshot schema_version " + describe_value(body.at("schema_version")) + " is not supported (this gpuwarm reads " +
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
    auto snapshot = body.get<Snapshot>();
    // A plain field whose default reads "looked, nothing wrong" is not known either where the snapshot lacks it.
    const auto daemon = body.find("daemon");
    if (daemon == body.end() || !daemon->contains("processes_unread")) {
      snapshot.daemon.processes_unread = std::string(k_not_in_snapshot);
    }
    std::set<std::string> absent(snapshot.absent_keys.begin(), snapshot.absent_keys.end());
    absent_keys(written_keys(), body, "", absent);
    snapshot.absent_keys.assign(absent.begin(), absent.end());
    return snapshot;
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

std::string dump_json(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace gpuwarm
