#pragma once
// The seam between gpuwarm and the service manager. The real one speaks D-Bus
// to systemd (sd-bus); tests point the same code at a private bus.

#include <memory>
#include <string>

#include "snapshot/snapshot.h"

namespace gpuwarm {

class ServiceManager {
 public:
  virtual ~ServiceManager() = default;
  // State of one unit. A manager that cannot be reached is a state
  // (reachable=false with the reason), not an error.
  virtual ServiceFacts unit_status(const std::string& unit) = 0;
};

// Connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS is honoured).
std::unique_ptr<ServiceManager> make_systemd_manager();

}  // namespace gpuwarm
