#include "systemd/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace gpuwarm {

namespace {

std::optional<unsigned long long> env_number(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr) {
    return std::nullopt;
  }
  unsigned long long value = 0;
  std::string_view s(text);
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

ServiceNotifier ServiceNotifier::from_environment() {
  ServiceNotifier n;
  if (const char* socket = std::getenv("NOTIFY_SOCKET"); socket != nullptr) {
    std::string_view s(socket);
    // An absolute path or an abstract name (@...), and short enough for sockaddr_un.
    if ((s.size() > 1 && (s.front() == '/' || s.front() == '@')) && s.size() < sizeof(sockaddr_un::sun_path)) {
      n.m_socket = s;
    }
  }
  auto usec = env_number("WATCHDOG_USEC");
  auto pid = env_number("WATCHDOG_PID");
  if (usec && *usec > 0 && (!pid || *pid == static_cast<unsigned long long>(::getpid()))) {
    n.m_ping_interval = std::chrono::microseconds(*usec / 2);
  }
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  return n;
}

bool ServiceNotifier::send(std::string_view state) const {
  if (m_socket.empty()) {
    return false;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, m_socket.data(), m_socket.size());
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + m_socket.size());
  if (m_socket.front() == '@') {
    address.sun_path[0] = '\0';  // abstract namespace: no terminating NUL counted
  } else {
    ++length;
  }
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return false;
  }
  ssize_t sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                          reinterpret_cast<const sockaddr*>(&address), length);  // NOLINT: sockets idiom
  int saved = errno;
  ::close(fd);
  errno = saved;
  return sent == static_cast<ssize_t>(state.size());
}

}  // namespace gpuwarm
