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

constexpr const char* k_changing = "`gpuwarm fix`, `reset` or `reload-modules` is changing this node";
constexpr const char* k_timing = "`gpuwarm probe` or `watch --load` is timing the GPUs";

int open_lock(const std::string& path, int flags) {
  return ::open(path.c_str(), flags | O_CLOEXEC | O_NOFOLLOW, 0600);
}

Error cannot(const char* what, const std::string& path, int err) {
  return Error{fmt::format("cannot {} lock {}: {}", what, path, std::strerror(err))};
}

// flock(operation | LOCK_NB) on /run/NAME, kept open for the life of the process.
Result<bool> take_lock(const Paths& paths, const char* name, int operation) {
  std::string path = paths.run(name);
  int fd = open_lock(path, O_RDWR | O_CREAT);
  if (fd < 0) {
    return tl::unexpected(cannot("open", path, errno));
  }
  if (::flock(fd, operation | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return false;
    }
    return tl::unexpected(cannot("lock", path, err));
  }
  return true;  // fd stays open on purpose
}

// Whether another open file holds `path` exclusively (a shared lock cannot be had beside it).
bool held_exclusively(const std::string& path) {
  int fd = open_lock(path, O_RDONLY);
  if (fd < 0) {
    return true;  // it was there a moment ago: count it as the stricter case
  }
  const bool exclusive = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  ::close(fd);  // releases the shared lock just taken, if any
  return exclusive;
}

}  // namespace

Result<std::string> take_node_lock(const Paths& paths, int wait_ms, const LockWaiting& waiting) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  const std::string path = paths.run(k_node_lock_name);
  bool said = false;
  for (;;) {
    auto held = take_lock(paths, k_node_lock_name, LOCK_EX);
    if (!held) {
      return tl::unexpected(held.error());
    }
    if (*held) {
      return std::string();
    }
    // Two changes never queue: the second would plan from the state the first leaves, unseen by its caller.
    if (held_exclusively(path)) {
      return fmt::format("another `gpuwarm fix`, `reset` or `reload-modules` is running (lock {} is held)",
                         paths.display(path));
    }
    const std::string shared =
        fmt::format("{}, or `diagnose`, `check`, `metrics` or `verify` is reading them (lock {} is held shared)",
                    k_timing, paths.display(path));
    if (std::chrono::steady_clock::now() >= deadline) {
      return fmt::format("{}; waited {:g} s", shared, wait_ms / 1000.0);
    }
    if (!said) {
      waiting(shared);
      said = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<std::string> hold_node_lock(const Paths& paths, const char* command) {
  return take_node_lock(paths, k_node_lock_wait_ms, [command](const std::string& why) {
    std::cerr << fmt::format("gpuwarm {}: waiting (up to {} s): {}\n", command, k_node_lock_wait_ms / 1000, why);
  });
}

Result<std::string> take_timing_locks(const Paths& paths, int wait_ms, const LockWaiting& waiting) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  struct Lock {
    const char* name;
    int operation;
    std::string holder;
  };
  const Lock locks[] = {
      {k_node_lock_name, LOCK_SH, k_changing},
      {k_timing_lock_name, LOCK_EX,
       "another `gpuwarm probe` or `watch --load` is timing the GPUs, or `diagnose`, `check`, `metrics` or "
       "`verify` is reading them"},
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

ReadingLocks::ReadingLocks(const Paths& paths) {
  struct Lock {
    const char* name;
    const char* holder;
    const char* harm;
  };
  // The timing first: during a probe both are held, and the timing is the one NVML would spoil.
  const Lock locks[] = {
      {k_timing_lock_name, k_timing, "opening NVML now would initialize the GPUs it times"},
      {k_node_lock_name, k_changing, "opening NVML now could hold a GPU it needs free"},
  };
  // Created as root on the live tree, so a probe that starts during the reading finds it shared and waits.
  const int create = paths.is_live() && ::geteuid() == 0 ? O_CREAT : 0;
  for (int i = 0; i < 2; ++i) {
    const std::string path = paths.run(locks[i].name);
    int fd = open_lock(path, O_RDONLY | create);
    if (fd < 0 && create != 0 && errno != ENOENT) {
      fd = open_lock(path, O_RDONLY);  // a read-only /run (the exporter's unit): one another run made still counts
    }
    if (fd < 0) {
      continue;  // no file: nobody holds it; not openable: the run is not kept apart (not root)
    }
    if (::flock(fd, LOCK_SH | LOCK_NB) != 0) {
      const int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        busy = fmt::format("{} (lock {} is held): {}", locks[i].holder, paths.display(path), locks[i].harm);
        break;
      }
      continue;
    }
    m_fds[i] = fd;
  }
  if (!busy.empty()) {
    for (int& fd : m_fds) {
      if (fd >= 0) {
        ::close(fd);
        fd = -1;
      }
    }
  }
}

ReadingLocks::~ReadingLocks() {
  for (int fd : m_fds) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
}

}  // namespace gpuwarm
