#include "cli/node_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include <fmt/format.h>

#include "core/fs.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {

constexpr const char* k_changing = "`gpuwarm fix`, `reset` or `reload-modules` is changing this node";
constexpr const char* k_timing = "`gpuwarm probe` or `watch --load` is timing the GPUs";
constexpr int k_not_regular = EINVAL;  // errno open_lock gives for a FIFO, device or folder in a lock's place

// O_NONBLOCK and the type check: a FIFO or a device in a lock's place (a --root tree is anyone's) must neither
// hang the open nor be taken for a lock.
int open_lock(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
  if (fd < 0) {
    return -1;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    errno = k_not_regular;
    return -1;
  }
  return fd;
}

Error cannot(const char* what, const std::string& path, int err) {
  return Error{fmt::format("cannot {} lock {}: {}", what, path,
                           err == k_not_regular ? "not a regular file" : std::strerror(err))};
}

// flock(operation | LOCK_NB) on /run/NAME, created if missing: held, not held (another run has it), or an error.
Result<HeldLock> try_lock(const Paths& paths, const char* name, int operation) {
  std::string path = paths.run(name);
  int fd = open_lock(path, O_RDWR | O_CREAT);
  if (fd < 0) {
    return tl::unexpected(cannot("open", path, errno));
  }
  if (::flock(fd, operation | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return HeldLock();
    }
    return tl::unexpected(cannot("lock", path, err));
  }
  return HeldLock(fd);
}

// try_lock, kept for the life of the process when taken.
Result<bool> take_lock(const Paths& paths, const char* name, int operation) {
  auto lock = try_lock(paths, name, operation);
  if (!lock) {
    return tl::unexpected(lock.error());
  }
  const bool held = lock->held();
  lock->keep();
  return held;
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

// While a change or a timing waits for a lock, it holds the waiting lock: readings that would start meanwhile
// leave NVML closed (they never wait, and overlapping ones would otherwise never leave a gap). Not had (another
// waits already, or it cannot be opened): the wait goes on without it.
HeldLock announce_waiting(const Paths& paths) {
  auto lock = try_lock(paths, k_waiting_lock_name, LOCK_EX);
  return lock ? std::move(*lock) : HeldLock();
}

// One turn of a wait for a lock: the waiting lock taken if it can be (again at every turn: another waiter may
// have let it go), the wait announced once, then 100 ms.
void wait_a_turn(const Paths& paths, HeldLock& intent, bool& said, const LockWaiting& waiting,
                 const std::string& why) {
  if (!intent.held()) {
    intent = announce_waiting(paths);
  }
  if (!said) {
    waiting(why);
    said = true;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

// A reader that may not open `path` (root's 0600 lock, not root): held exclusively per /proc/locks? (/run is
// 0755, so stat works.) Anything unread answers false: the reading goes on, as it did before it looked.
bool held_exclusively_for_others(const Paths& paths, const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return false;
  }
  // One line per lock (waiters too), on a busy node thousands: bounded all the same.
  auto locks = read_file(paths.proc("locks"), 8u << 20);
  return locks && flock_held_exclusively(*locks, ::major(st.st_dev), ::minor(st.st_dev), st.st_ino);
}

// The next space-separated field of `line`, advancing it.
std::string_view next_field(std::string_view& line) {
  const auto start = line.find_first_not_of(' ');
  if (start == std::string_view::npos) {
    line = {};
    return {};
  }
  line.remove_prefix(start);
  const auto end = std::min(line.find(' '), line.size());
  std::string_view field = line.substr(0, end);
  line.remove_prefix(end);
  return field;
}

template <typename Number>
bool parse_number(std::string_view text, Number& out, int base) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out, base);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

// Lines as the kernel prints them (fs/locks.c): "1: FLOCK  ADVISORY  WRITE 5143 fe:00:10952763 0 EOF", a
// waiter "1: -> FLOCK  ADVISORY  READ 5149 fe:00:10952763 0 EOF"; device numbers in hex, the inode decimal.
// A procfs lists only the locks of processes in its own pid namespace: read the host's (--root /host in a
// pod). The device is the superblock's: on btrfs stat() gives a subvolume's instead, and nothing matches
// (/run is a tmpfs).
bool flock_held_exclusively(std::string_view proc_locks, unsigned dev_major, unsigned dev_minor,
                            unsigned long long inode) {
  while (!proc_locks.empty()) {
    const auto newline = std::min(proc_locks.find('\n'), proc_locks.size());
    std::string_view line = proc_locks.substr(0, newline);
    proc_locks.remove_prefix(std::min(newline + 1, proc_locks.size()));
    next_field(line);  // "1:"
    std::string_view type = next_field(line);
    if (type != "FLOCK") {
      continue;  // a waiter ("->"), POSIX or OFD locks: not a flock held
    }
    next_field(line);  // ADVISORY
    if (next_field(line) != "WRITE") {
      continue;
    }
    next_field(line);  // pid, as the procfs's pid namespace numbers it
    std::string_view file = next_field(line);
    const auto first = file.find(':');
    const auto second = first == std::string_view::npos ? first : file.find(':', first + 1);
    unsigned major_number = 0;
    unsigned minor_number = 0;
    unsigned long long inode_number = 0;
    if (second == std::string_view::npos || !parse_number(file.substr(0, first), major_number, 16) ||
        !parse_number(file.substr(first + 1, second - first - 1), minor_number, 16) ||
        !parse_number(file.substr(second + 1), inode_number, 10)) {
      continue;
    }
    if (major_number == dev_major && minor_number == dev_minor && inode_number == inode) {
      return true;
    }
  }
  return false;
}

HeldLock& HeldLock::operator=(HeldLock&& o) noexcept {
  if (this != &o) {
    reset();
    m_fd = o.m_fd;
    o.m_fd = -1;
  }
  return *this;
}

void HeldLock::reset() {
  if (m_fd >= 0) {
    ::close(m_fd);
  }
  m_fd = -1;
}

Result<std::string> take_node_lock(const Paths& paths, int wait_ms, const LockWaiting& waiting) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  const std::string path = paths.run(k_node_lock_name);
  HeldLock intent;
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
    const std::string shared = fmt::format(
        "{}, or `diagnose`, `check`, `metrics`, `snapshot` or `verify` is reading them (lock {} is held shared)",
        k_timing, paths.display(path));
    if (std::chrono::steady_clock::now() >= deadline) {
      return fmt::format("{}; waited {:g} s", shared, wait_ms / 1000.0);
    }
    wait_a_turn(paths, intent, said, waiting, shared);
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
       "another `gpuwarm probe` or `watch --load` is timing the GPUs, or `diagnose`, `check`, `metrics`, "
       "`snapshot`, `verify` or `watch` is reading them"},
  };
  HeldLock intent;
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
      wait_a_turn(paths, intent, said, waiting, why);
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

ReadingLocks::ReadingLocks(const Paths& paths, bool timing_only) {
  struct Lock {
    const char* name;
    const char* kind;  // busy_by's word
    std::string holder;
    const char* harm;
    HeldLock* share;  // where the shared lock is kept; null: only looked at
  };
  // The timing first: during a probe both are held, and the timing is the one NVML would spoil. The waiting
  // lock is only looked at: readings that kept it shared, overlapping, would never let a waiter take it.
  const Lock locks[] = {
      {k_timing_lock_name, "timing", k_timing, "opening NVML now would initialize the GPUs it times", &m_timing},
      {k_node_lock_name, "changing", k_changing, "opening NVML now could hold a GPU it needs free", &m_node},
      {k_waiting_lock_name, "waiting", "another `gpuwarm` command is waiting to change the node or time the GPUs",
       "a reading now would keep it waiting", nullptr},
  };
  // Created as root on the live tree, so a probe that starts during the reading finds it shared and waits.
  const int create = paths.is_live() && ::geteuid() == 0 ? O_CREAT : 0;
  for (const auto& lock : locks) {
    if (timing_only && lock.share != &m_timing) {
      continue;
    }
    const std::string path = paths.run(lock.name);
    int fd = open_lock(path, O_RDONLY | create);
    if (fd < 0 && create != 0 && errno != ENOENT && errno != k_not_regular) {
      fd = open_lock(path, O_RDONLY);  // a read-only /run (the exporter's unit): one another run made still counts
    }
    bool held_by_another = false;
    if (fd < 0) {
      if (errno != EACCES || !held_exclusively_for_others(paths, path)) {
        continue;  // no file: nobody holds it; not openable otherwise: the run is not kept apart
      }
      held_by_another = true;
    }
    HeldLock shared(fd);
    if (!held_by_another && ::flock(fd, LOCK_SH | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) {
        continue;
      }
      held_by_another = true;
    }
    if (held_by_another) {
      busy = fmt::format("{} (lock {} is held): {}", lock.holder, paths.display(path), lock.harm);
      busy_by = lock.kind;
      m_timing.reset();
      m_node.reset();
      return;
    }
    if (lock.share != nullptr) {
      *lock.share = std::move(shared);
    }
  }
}

void ReadingLocks::keep_until_exit() {
  m_timing.keep();
  m_node.keep();
}

}  // namespace gpuwarm
