#include "cli/node_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "core/strings.h"

namespace gpuwarm {

namespace {

// flock(operation | LOCK_NB) on /run/NAME, kept open for the life of the process.
Result<bool> take_lock(const Paths& paths, const char* name, int operation) {
  std::string path = paths.run(name);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return fail(fmt::format("cannot open lock {}: {}", path, std::strerror(errno)));
  }
  if (::flock(fd, operation | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return false;
    }
    return fail(fmt::format("cannot lock {}: {}", path, std::strerror(err)));
  }
  return true;  // fd stays open on purpose
}

}  // namespace

Result<bool> take_node_lock(const Paths& paths) { return take_lock(paths, k_node_lock_name, LOCK_EX); }

std::string node_lock_held(const Paths& paths) {
  return "another `gpuwarm fix`, `reset` or `reload-modules` is running, or `probe` or `watch --load` is timing "
         "the GPUs (lock " +
         paths.display(paths.run(k_node_lock_name)) + " is held)";
}

Result<std::string> take_timing_locks(const Paths& paths, int wait_ms,
                                      const std::function<void(const std::string&)>& waiting) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  struct Lock {
    const char* name;
    int operation;
    const char* holder;
  };
  const Lock locks[] = {
      {k_node_lock_name, LOCK_SH, "`gpuwarm fix`, `reset` or `reload-modules` is changing this node"},
      {k_timing_lock_name, LOCK_EX, "another `gpuwarm probe` or `watch --load` is timing the GPUs"},
  };
  for (const auto& lock : locks) {
    bool said = false;  // each wait is announced: after a fix, another probe may still be timing
    for (;;) {
      auto held = take_lock(paths, lock.name, lock.operation);
      if (!held) {
        return tl::unexpected(held.error());
      }
      if (*held) {
        break;
      }
      const std::string why =
          fmt::format("{} (lock {} is held)", lock.holder, paths.display(paths.run(lock.name)));
      if (std::chrono::steady_clock::now() >= deadline) {
        return why;
      }
      if (!said) {
        waiting(why);
        said = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return std::string();
}

std::string hold_timing_locks(const char* command) {
  constexpr int k_wait_ms = 5 * 60 * 1000;
  auto held = take_timing_locks(Paths("/"), k_wait_ms, [command](const std::string& why) {
    std::cerr << "gpuwarm " << command << ": waiting (up to 5 minutes): " << why << "\n";
  });
  if (!held) {
    std::cerr << "gpuwarm " << command << ": note: not kept apart from other probes and fixes ("
              << escape_control(held.error().message) << ")\n";
    return {};
  }
  return *held;
}

}  // namespace gpuwarm
