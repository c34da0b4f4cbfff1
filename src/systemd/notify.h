#pragma once
// The service manager's notification protocol (sd_notify(3)): "READY=1", "WATCHDOG=1", "STOPPING=1",
// "STATUS=..." as one datagram on the unix socket $NOTIFY_SOCKET names. Spoken directly (it is a stable,
// documented wire protocol), so the exporter needs no libsystemd and works the same under any supervisor
// that sets the variable.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace gpuwarm {

class ServiceNotifier {
 public:
  // From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the watchdog is ours only when the pid is ours or
  // unset). Both variables are unset afterwards so no child inherits them.
  static ServiceNotifier from_environment();

  bool enabled() const { return !m_socket.empty(); }
  // Half the watchdog timeout (how often to ping), when systemd asked for pings.
  std::optional<std::chrono::microseconds> watchdog_ping_interval() const { return m_ping_interval; }
  // Sends `state`; false (and nothing else) when no socket is set or the send failed.
  bool send(std::string_view state) const;

 private:
  std::string m_socket;
  std::optional<std::chrono::microseconds> m_ping_interval;
};

}  // namespace gpuwarm
