#pragma once
// The seam between gpuwarm and the service manager. The real one speaks D-Bus
// to systemd (sd-bus); tests point the same code at a private bus.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

struct UnitFileChange {  // one (type, symlink, target) from EnableUnitFiles
  std::string type;
  std::string path;
  std::string target;
};

class ServiceManager {
 public:
  virtual ~ServiceManager() = default;
  // State of one unit. A manager that cannot be reached is a state
  // (reachable=false with the reason), not an error.
  virtual ServiceFacts unit_status(const std::string& unit) = 0;

  // daemon-reload.
  virtual Result<void> reload() = 0;
  // Enables for boot; the changes made (empty when it already was).
  virtual Result<std::vector<UnitFileChange>> enable(const std::string& unit) = 0;
  // For a unit without [Install] (static): `systemctl add-wants TARGET UNIT`, the changes made.
  virtual Result<std::vector<UnitFileChange>> add_wants(const std::string& target, const std::string& unit) = 0;
  virtual Result<void> reset_failed(const std::string& unit) = 0;
  // Starts (or restarts) and waits for the job: the JobRemoved result
  // ("done", "failed", "timeout", "skipped", ...). Err when the call is
  // refused or no result arrives within `timeout`.
  virtual Result<std::string> start(const std::string& unit, std::chrono::milliseconds timeout) = 0;
  virtual Result<std::string> restart(const std::string& unit, std::chrono::milliseconds timeout) = 0;
  virtual Result<std::string> stop(const std::string& unit, std::chrono::milliseconds timeout) = 0;
  // The units a stop of `unit` stops too (those that Requires=, BindsTo= or PartOf= it: its RequiredBy,
  // BoundBy and ConsistsOf) that are active or starting now, each once. A start of `unit` does not start them
  // again. Err when systemd cannot be asked or a property or state cannot be read.
  virtual Result<std::vector<std::string>> active_dependents(const std::string& unit) = 0;
};

// Connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS is honoured).
std::unique_ptr<ServiceManager> make_systemd_manager();

}  // namespace gpuwarm
