#include "cli/node_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace gpuwarm {

Result<bool> take_node_lock(const Paths& paths) {
  std::string path = paths.run(k_node_lock_name);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(fmt::format("cannot open lock {}: {}", path, std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return false;
    }
    return fail(fmt::format("cannot lock {}: {}", path, std::strerror(err)));
  }
  return true;  // fd stays open on purpose
}

}  // namespace gpuwarm
