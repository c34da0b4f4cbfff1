#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "core/strings.h"
#include "systemd/sd_bus_api.h"
#include "systemd/service_manager.h"

namespace gpuwarm {

namespace {

using namespace sdbus;  // NOLINT: sd-bus's own names, resolved at run time

constexpr const char* k_dest = "org.freedesktop.systemd1";
constexpr const char* k_manager_path = "/org/freedesktop/systemd1";
constexpr const char* k_manager_iface = "org.freedesktop.systemd1.Manager";
constexpr const char* k_unit_iface = "org.freedesktop.systemd1.Unit";
constexpr const char* k_service_iface = "org.freedesktop.systemd1.Service";
constexpr std::uint64_t k_call_timeout_usec = 5'000'000;
constexpr std::uint64_t k_reload_timeout_usec = 120'000'000;  // systemctl daemon-reload waits as long

struct BusError {
  sd_bus_error err{nullptr, nullptr, 0};
  ~BusError() {
    if (err.name != nullptr || err.message != nullptr) {
      sd_bus_error_free(&err);
    }
  }
  std::string text(int r) const {
    if (sd_bus_error_is_set(&err)) {
      return std::string(err.name) + (err.message != nullptr ? std::string(": ") + err.message : "");
    }
    return std::strerror(-r);
  }
  bool is(const char* name) const { return sd_bus_error_has_name(&err, name) != 0; }
};

struct Message {
  sd_bus_message* m = nullptr;
  ~Message() {
    if (m != nullptr) {
      sd_bus_message_unref(m);
    }
  }
};

class SdBusServiceManager final : public ServiceManager {
 public:
  ~SdBusServiceManager() override {
    if (m_bus != nullptr) {
      sd_bus_flush_close_unref(m_bus);
    }
  }

  ServiceFacts unit_status(const std::string& unit) override {
    ServiceFacts facts;
    facts.unit = unit;

    if (std::string why = connect(); !why.empty()) {
      facts.unreachable = why;
      mark_unit_unknown(facts, facts.unreachable);
      return facts;
    }

    std::string path;
    std::string error;
    if (!unit_path(unit, path, error)) {
      mark_unit_unknown(facts, error);
      if (error.rfind("not-found", 0) == 0) {
        // The manager answered: the unit simply does not exist.
        facts.reachable = true;
        facts.manager_version = get_string(k_manager_path, k_manager_iface, "Version");
        facts.load_state = Fact<std::string>::known("not-found");
        facts.active_state = Fact<std::string>::known("inactive");
      } else {
        facts.unreachable = error;
      }
      return facts;
    }
    facts.reachable = true;
    facts.load_state = get_string(path, k_unit_iface, "LoadState");
    facts.active_state = get_string(path, k_unit_iface, "ActiveState");
    facts.sub_state = get_string(path, k_unit_iface, "SubState");
    facts.fragment_path = get_string(path, k_unit_iface, "FragmentPath");
    facts.unit_file_state = get_string(path, k_unit_iface, "UnitFileState");
    if (!facts.unit_file_state.has()) {
      facts.unit_file_state = manager_unit_file_state(unit, facts.unit_file_state);
    }
    facts.stop_when_unneeded = get_bool(path, k_unit_iface, "StopWhenUnneeded");
    facts.need_daemon_reload = get_bool(path, k_unit_iface, "NeedDaemonReload");
    facts.drop_in_paths = get_strv(path, k_unit_iface, "DropInPaths");
    facts.wanted_by = get_strv(path, k_unit_iface, "WantedBy");
    if (auto required_by = get_strv(path, k_unit_iface, "RequiredBy"); facts.wanted_by.has() && required_by.has()) {
      std::vector<std::string> both = *facts.wanted_by;
      both.insert(both.end(), required_by->begin(), required_by->end());
      facts.wanted_by = Fact<std::vector<std::string>>::known(std::move(both));
    }
    facts.restart = get_string(path, k_service_iface, "Restart");
    facts.result = get_string(path, k_service_iface, "Result");
    facts.exec_start = get_exec_start(path);
    facts.control_group = get_string(path, k_service_iface, "ControlGroup");
    facts.manager_control_group = get_string(k_manager_path, k_manager_iface, "ControlGroup");
    facts.manager_version = get_string(k_manager_path, k_manager_iface, "Version");
    facts.exec_condition = has_exec_property(path, "ExecCondition");
    return facts;
  }

  // A daemon-reload re-reads every unit and can take far longer than a
  // property read on a big or busy node: failing it after writing is worse.
  Result<void> reload() override { return call_void("Reload", nullptr, k_reload_timeout_usec); }

  Result<void> reset_failed(const std::string& unit) override { return call_void("ResetFailedUnit", unit.c_str()); }

  Result<std::vector<UnitFileChange>> enable(const std::string& unit) override {
    int carries_install_info = 0;
    auto changes = unit_files_call("EnableUnitFiles", unit, "", &carries_install_info);
    if (changes && carries_install_info == 0 && changes->empty()) {
      // A static unit: nothing pulls it in at boot, and enabling it changes nothing.
      return fail("EnableUnitFiles(" + unit + "): the unit has no [Install] section, so it cannot be enabled for "
                  "boot. Give it one (`[Install]` `WantedBy=multi-user.target` in the unit file under "
                  "/etc/systemd/system) or have another enabled unit pull it in (Wants=), then run fix again.");
    }
    return changes;
  }

  Result<std::vector<UnitFileChange>> add_wants(const std::string& target, const std::string& unit) override {
    return unit_files_call("AddDependencyUnitFiles", unit, target, nullptr);
  }

  Result<std::string> start(const std::string& unit, std::chrono::milliseconds timeout) override {
    return run_job("StartUnit", unit, timeout);
  }
  Result<std::string> restart(const std::string& unit, std::chrono::milliseconds timeout) override {
    return run_job("RestartUnit", unit, timeout);
  }
  Result<std::string> stop(const std::string& unit, std::chrono::milliseconds timeout) override {
    return run_job("StopUnit", unit, timeout);
  }

  Result<std::vector<std::string>> active_dependents(const std::string& unit) override {
    if (std::string why = connect(); !why.empty()) {
      return fail(why);
    }
    std::string path;
    std::string error;
    if (!unit_path(unit, path, error)) {
      return fail(unit + ": " + error);
    }
    std::vector<std::string> names;
    for (const char* member : {"RequiredBy", "BoundBy", "ConsistsOf"}) {
      auto listed = get_strv(path, k_unit_iface, member);
      if (!listed.has()) {
        return fail(unit + "'s " + member + ": " + listed.missing);
      }
      for (const auto& name : *listed) {
        if (name != unit && std::find(names.begin(), names.end(), name) == names.end()) {
          names.push_back(name);
        }
      }
    }
    std::vector<std::string> active;
    for (const auto& name : names) {
      std::string dependent;
      if (!unit_path(name, dependent, error)) {
        if (error.rfind("not-found", 0) == 0) {
          continue;  // named by a unit file, never loaded: nothing runs to be stopped
        }
        return fail(name + ": " + error);
      }
      auto state = get_string(dependent, k_unit_iface, "ActiveState");
      if (!state.has()) {
        return fail(name + "'s ActiveState: " + state.missing);
      }
      if (state.is("active") || state.is("activating") || state.is("reloading")) {
        active.push_back(name);
      }
    }
    return active;
  }

 private:
  // "" when connected, else why not.
  std::string connect() {
    if (m_bus != nullptr) {
      return {};
    }
    if (const std::string& missing = load_error(); !missing.empty()) {
      return missing;  // no libsystemd: no systemd to talk to either
    }
    int r = sd_bus_open_system(&m_bus);
    if (r < 0) {
      m_bus = nullptr;
      // The system bus is the live host's, so is the sign systemd leaves when it boots a host (sd_booted()).
      struct stat booted {};
      const bool systemd_booted = ::stat("/run/systemd/system", &booted) == 0 && S_ISDIR(booted.st_mode);
      return std::string("no system bus (") + std::strerror(-r) + ")" +
             (systemd_booted ? ": systemd runs here (/run/systemd/system), but its bus did not answer"
                             : ": no systemd here");
    }
    (void)sd_bus_set_method_call_timeout(m_bus, k_call_timeout_usec);
    return {};
  }

  Result<void> call_void(const char* method, const char* unit, std::uint64_t timeout_usec = k_call_timeout_usec) {
    if (std::string why = connect(); !why.empty()) {
      return fail(why);
    }
    BusError e;
    Message call;
    Message reply;
    int r = sd_bus_message_new_method_call(m_bus, &call.m, k_dest, k_manager_path, k_manager_iface, method);
    if (r >= 0 && unit != nullptr) {
      r = sd_bus_message_append(call.m, "s", unit);
    }
    if (r >= 0) {
      r = sd_bus_call(m_bus, call.m, timeout_usec, &e.err, &reply.m);
    }
    if (r < 0) {
      std::string call_text = method;  // appended piecewise: GCC 12 -O3 warns (-Wrestrict) on "(" + temporary
      if (unit != nullptr) {
        call_text.append("(").append(unit).append(")");
      }
      return fail(call_text + ": " + e.text(r));
    }
    return {};
  }

  struct JobWait {
    std::string job_path;  // set once StartUnit answered
    std::string result;    // set by the JobRemoved handler
    std::vector<std::pair<std::string, std::string>> early;  // signals seen before the path was known
  };

  static int on_job_removed(sd_bus_message* m, void* userdata, sd_bus_error* /*ret_error*/) {
    auto* wait = static_cast<JobWait*>(userdata);
    std::uint32_t id = 0;
    const char* job = nullptr;
    const char* unit = nullptr;
    const char* result = nullptr;
    if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0 || job == nullptr || result == nullptr) {
      return 0;
    }
    if (wait->job_path.empty()) {
      wait->early.emplace_back(job, result);
    } else if (wait->job_path == job) {
      wait->result = result;
    }
    return 0;
  }

  // Subscribes to JobRemoved *before* queuing the job, so its end cannot be missed.
  Result<std::string> run_job(const char* method, const std::string& unit, std::chrono::milliseconds timeout) {
    if (std::string why = connect(); !why.empty()) {
      return fail(why);
    }
    JobWait wait;
    sd_bus_slot* slot = nullptr;
    int r = sd_bus_match_signal(m_bus, &slot, k_dest, k_manager_path, k_manager_iface, "JobRemoved",
                                &SdBusServiceManager::on_job_removed, &wait);
    if (r < 0) {
      return fail(std::string("cannot watch JobRemoved: ") + std::strerror(-r));
    }
    struct SlotGuard {
      sd_bus_slot* s;
      ~SlotGuard() { sd_bus_slot_unref(s); }
    } guard{slot};

    if (!m_subscribed) {
      BusError e;
      r = sd_bus_call_method(m_bus, k_dest, k_manager_path, k_manager_iface, "Subscribe", &e.err, nullptr, "");
      // Managers that do not know Subscribe still emit the signal (test doubles). systemd answers a second
      // Subscribe on the same connection with AlreadySubscribed (a second job in one run: reset's start).
      if (r < 0 && !e.is(SD_BUS_ERROR_UNKNOWN_METHOD) && !e.is("org.freedesktop.systemd1.AlreadySubscribed")) {
        return fail("Subscribe: " + e.text(r));
      }
      m_subscribed = true;
    }
    {
      BusError e;
      Message reply;
      r = sd_bus_call_method(m_bus, k_dest, k_manager_path, k_manager_iface, method, &e.err, &reply.m, "ss",
                             unit.c_str(), "replace");
      if (r < 0) {
        return fail(std::string(method) + "(" + unit + "): " + e.text(r));
      }
      const char* job = nullptr;
      if (sd_bus_message_read(reply.m, "o", &job) < 0 || job == nullptr) {
        return fail(std::string(method) + "(" + unit + "): unexpected reply");
      }
      wait.job_path = job;
    }
    for (const auto& [job, result] : wait.early) {
      if (job == wait.job_path) {
        wait.result = result;
      }
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (wait.result.empty()) {
      r = sd_bus_process(m_bus, nullptr);
      if (r < 0) {
        return fail(std::string("D-Bus connection lost while waiting for ") + method + ": " + std::strerror(-r));
      }
      if (r > 0) {
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        return fail(std::string(method) + "(" + unit + "): no job result within " +
                    std::to_string(timeout.count()) + " ms (job " + wait.job_path + ")");
      }
      (void)sd_bus_wait(m_bus, static_cast<std::uint64_t>(left.count()));
    }
    return wait.result;
  }

  // Resolves the unit's object path through the manager. Paths are never
  // built locally: test doubles escape them differently from systemd.
  bool unit_path(const std::string& unit, std::string& path, std::string& error) {
    for (const char* method : {"LoadUnit", "GetUnit"}) {
      BusError e;
      Message reply;
      int r = sd_bus_call_method(m_bus, k_dest, k_manager_path, k_manager_iface, method, &e.err, &reply.m, "s",
                                 unit.c_str());
      if (r >= 0) {
        const char* p = nullptr;
        if (sd_bus_message_read(reply.m, "o", &p) >= 0 && p != nullptr) {
          path = p;
          return true;
        }
        error = "unexpected reply to " + std::string(method);
        return false;
      }
      if (e.is(SD_BUS_ERROR_UNKNOWN_METHOD)) {
        continue;  // a manager without LoadUnit: try GetUnit
      }
      if (e.is("org.freedesktop.systemd1.NoSuchUnit") || e.is("org.freedesktop.systemd1.LoadFailed")) {
        error = "not-found: " + e.text(r);
        return false;
      }
      if (e.is(SD_BUS_ERROR_SERVICE_UNKNOWN) || e.is(SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
        error = "no systemd on the system bus (" + e.text(r) + ")";
        return false;
      }
      error = "systemd " + std::string(method) + " failed: " + e.text(r);
      return false;
    }
    error = "systemd answers neither LoadUnit nor GetUnit";
    return false;
  }

  Fact<std::string> get_string(const std::string& path, const char* iface, const char* member) {
    BusError e;
    char* value = nullptr;
    int r = sd_bus_get_property_string(m_bus, k_dest, path.c_str(), iface, member, &e.err, &value);
    if (r < 0) {
      return Fact<std::string>::unknown(e.text(r));
    }
    std::string out = printable(value != nullptr ? value : "");
    free(value);  // NOLINT: sd-bus hands out malloc'd strings
    return Fact<std::string>::known(out);
  }

  Fact<bool> get_bool(const std::string& path, const char* iface, const char* member) {
    BusError e;
    int value = 0;
    int r = sd_bus_get_property_trivial(m_bus, k_dest, path.c_str(), iface, member, &e.err, 'b', &value);
    if (r < 0) {
      return Fact<bool>::unknown(e.text(r));
    }
    return Fact<bool>::known(value != 0);
  }

  // The unit-file calls: EnableUnitFiles(as units, b runtime, b force) -> (b carries_install_info, a(sss)) and,
  // with a target, AddDependencyUnitFiles(as units, s target, s "Wants", b runtime, b force) -> a(sss).
  // Both answer with the symlinks they changed.
  Result<std::vector<UnitFileChange>> unit_files_call(const char* method, const std::string& unit,
                                                      const std::string& target, int* carries_install_info) {
    if (std::string why = connect(); !why.empty()) {
      return fail(why);
    }
    const std::string what = std::string(method) + "([" + unit + "]" + (target.empty() ? "" : ", " + target) + ")";
    Message call;
    Message reply;
    BusError e;
    int r = sd_bus_message_new_method_call(m_bus, &call.m, k_dest, k_manager_path, k_manager_iface, method);
    char* names[] = {const_cast<char*>(unit.c_str()), nullptr};  // NOLINT: sd-bus takes char**
    if (r >= 0) {
      r = sd_bus_message_append_strv(call.m, names);
    }
    if (r >= 0) {
      r = target.empty() ? sd_bus_message_append(call.m, "bb", /*runtime=*/0, /*force=*/0)
                         : sd_bus_message_append(call.m, "ssbb", target.c_str(), "Wants", /*runtime=*/0, /*force=*/0);
    }
    if (r >= 0) {
      r = sd_bus_call(m_bus, call.m, k_call_timeout_usec, &e.err, &reply.m);
    }
    if (r < 0) {
      return fail(what + ": " + e.text(r));
    }
    if ((carries_install_info != nullptr && sd_bus_message_read(reply.m, "b", carries_install_info) < 0) ||
        sd_bus_message_enter_container(reply.m, 'a', "(sss)") < 0) {
      return fail(what + ": unexpected reply");
    }
    std::vector<UnitFileChange> changes;
    const char* type = nullptr;
    const char* path = nullptr;
    const char* link_target = nullptr;
    while (sd_bus_message_read(reply.m, "(sss)", &type, &path, &link_target) > 0) {
      changes.push_back({type, path, link_target});
    }
    return changes;
  }

  Fact<std::vector<std::string>> get_strv(const std::string& path, const char* iface, const char* member) {
    BusError e;
    Message reply;
    int r = sd_bus_get_property(m_bus, k_dest, path.c_str(), iface, member, &e.err, &reply.m, "as");
    char** values = nullptr;
    if (r < 0 || (r = sd_bus_message_read_strv(reply.m, &values)) < 0) {
      return Fact<std::vector<std::string>>::unknown(e.text(r));
    }
    std::vector<std::string> out;
    for (char** v = values; v != nullptr && *v != nullptr; ++v) {
      out.push_back(printable(*v));
      free(*v);  // NOLINT: sd-bus hands out malloc'd strings
    }
    free(values);  // NOLINT
    return Fact<std::vector<std::string>>::known(std::move(out));
  }

  Fact<std::string> manager_unit_file_state(const std::string& unit, const Fact<std::string>& property) {
    BusError e;
    Message reply;
    int r = sd_bus_call_method(m_bus, k_dest, k_manager_path, k_manager_iface, "GetUnitFileState", &e.err,
                               &reply.m, "s", unit.c_str());
    const char* state = nullptr;
    if (r < 0 || sd_bus_message_read(reply.m, "s", &state) < 0 || state == nullptr) {
      return property;
    }
    return Fact<std::string>::known(printable(state));
  }

  // ExecStart is a(sasbttttuii): (path, argv, ignore_errors, 4 timestamps, pid, code, status).
  // Whether the unit's Service interface has this Exec*= property: a systemd that does not parse the setting
  // answers UnknownProperty (sd-bus's org.freedesktop.DBus.Error.UnknownProperty; python-dbusmock names it
  // after the interface).
  Fact<bool> has_exec_property(const std::string& path, const char* member) {
    BusError e;
    Message reply;
    int r = sd_bus_get_property(m_bus, k_dest, path.c_str(), k_service_iface, member, &e.err, &reply.m,
                                "a(sasbttttuii)");
    if (r >= 0) {
      return Fact<bool>::known(true);
    }
    if (sd_bus_error_is_set(&e.err) && e.err.name != nullptr && std::string_view(e.err.name).ends_with(".UnknownProperty")) {
      return Fact<bool>::known(false);
    }
    return Fact<bool>::unknown(e.text(r));
  }

  Fact<std::vector<std::string>> get_exec_start(const std::string& path) {
    using Argv = Fact<std::vector<std::string>>;
    BusError e;
    Message reply;
    int r = sd_bus_get_property(m_bus, k_dest, path.c_str(), k_service_iface, "ExecStart", &e.err, &reply.m,
                                "a(sasbttttuii)");
    if (r < 0) {
      return Argv::unknown(e.text(r));
    }
    if (sd_bus_message_enter_container(reply.m, 'a', "(sasbttttuii)") < 0) {
      return Argv::unknown("unexpected ExecStart type");
    }
    if (sd_bus_message_enter_container(reply.m, 'r', "sasbttttuii") <= 0) {
      return Argv::unknown("no ExecStart= line");
    }
    const char* binary = nullptr;
    char** argv = nullptr;
    if (sd_bus_message_read(reply.m, "s", &binary) < 0 || sd_bus_message_read_strv(reply.m, &argv) < 0) {
      return Argv::unknown("unreadable ExecStart");
    }
    std::vector<std::string> out;
    for (char** a = argv; a != nullptr && *a != nullptr; ++a) {
      out.emplace_back(printable(*a));
      free(*a);  // NOLINT: strv from sd-bus
    }
    free(argv);  // NOLINT
    return Argv::known(std::move(out));
  }

  sd_bus* m_bus = nullptr;
  bool m_subscribed = false;  // Subscribe once per connection
};

}  // namespace

std::unique_ptr<ServiceManager> make_systemd_manager() { return std::make_unique<SdBusServiceManager>(); }

}  // namespace gpuwarm
