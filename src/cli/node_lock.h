#pragma once
// The locks between gpuwarm runs on one node. The node lock: commands that change the node (`fix`, `reset`,
// `reload-modules`) take it exclusively, so two of them never plan from the same old state nor stop the
// daemon another is starting; commands that time the GPUs (`probe`, `watch --load`) take it shared, so no
// reset pulls a GPU from under a timing and no timing lands in a reset's window. The timing lock: those
// timing commands take it exclusively, since two timings at once measure each other. Readers (`diagnose`,
// `check`, `metrics`, `snapshot`, `verify`) take both shared, only for their NVML collection (until exit where
// NVML stays open to the end), and never wait: where one is held exclusively they leave NVML closed, since opening
// it initializes the GPUs a probe is timing and holds the GPUs a reset needs free. A change or a timing that
// waits holds the waiting lock meanwhile, and readings leave NVML closed then too, or overlapping readings (an
// exporter, a timer, health checks) could keep it waiting for ever.

#include <functional>
#include <string>
#include <string_view>

#include "core/paths.h"
#include "core/result.h"

namespace gpuwarm {

constexpr const char* k_node_lock_name = "gpuwarm-fix.lock";  // under /run; the name predates `reset`
constexpr const char* k_timing_lock_name = "gpuwarm-timing.lock";
constexpr const char* k_waiting_lock_name = "gpuwarm-waiting.lock";  // held by a change or a timing that waits
// How long a change waits for runs that share the node lock (a reading is bounded by --nvml-timeout).
constexpr int k_node_lock_wait_ms = 60 * 1000;

using LockWaiting = std::function<void(const std::string& why)>;

// A lock file held while this lives (its descriptor closed at destruction), unless kept for the process's life.
class HeldLock {
 public:
  HeldLock() = default;
  explicit HeldLock(int fd) : m_fd(fd) {}
  ~HeldLock() { reset(); }
  HeldLock(HeldLock&& o) noexcept : m_fd(o.m_fd) { o.m_fd = -1; }
  HeldLock& operator=(HeldLock&& o) noexcept;
  HeldLock(const HeldLock&) = delete;
  HeldLock& operator=(const HeldLock&) = delete;
  bool held() const { return m_fd >= 0; }
  void keep() { m_fd = -1; }  // released when the process exits
  void reset();

 private:
  int m_fd = -1;
};

// The node lock, exclusively, for the life of the process (released on exit). Another change holding it
// answers at once; runs that share it (timings, readings) are waited for up to `wait_ms`, and `waiting` is
// called once with what is waited for. Ok("") when held; Ok(why) naming what still holds it; an error when it
// cannot be taken at all.
Result<std::string> take_node_lock(const Paths& paths, int wait_ms, const LockWaiting& waiting);

// take_node_lock for `command` on `paths`, waiting up to k_node_lock_wait_ms and saying so on stderr.
Result<std::string> hold_node_lock(const Paths& paths, const char* command);

// For a command that times the GPUs: the node lock shared, then the timing lock, each waited for up to
// `wait_ms` (a probe started beside another one measures after it, not against it); `waiting` is called once
// with what it waits for. Ok("") when both are held (for the life of the process); Ok(why) naming what still
// holds one after the wait; an error when they cannot be taken at all (not root: /run is root's).
Result<std::string> take_timing_locks(const Paths& paths, int wait_ms, const LockWaiting& waiting);

// take_timing_locks for `command` on this node, waiting up to 5 minutes and saying so on stderr; where the
// locks cannot be taken at all (not root), a note on stderr says the run is not kept apart from others. ""
// to go on, else what still held a lock.
std::string hold_timing_locks(const char* command);

// Whether `proc_locks` (the text of /proc/locks) shows an exclusive flock held, not waited for, on the file
// with this device and inode: how a reader that may not open a root-only lock file still sees it held.
bool flock_held_exclusively(std::string_view proc_locks, unsigned dev_major, unsigned dev_minor,
                            unsigned long long inode);

// A reader's share of both locks, held while it lives. `busy` is "" when NVML may be opened, else why not
// (what holds a lock exclusively, or that a change or timing waits). Lock files are created only as root on
// the live tree (a recorded tree stays as it was). One that a non-root reader may not open (root's 0600) is
// looked up in /proc/locks instead: the reader stands aside from a probe or a change already running, though
// it cannot hold off one that starts during its collection. A lock that cannot be opened otherwise (a
// read-only /run before anyone made them; not a regular file) keeps nothing apart, and `busy` stays "".
class ReadingLocks {
 public:
  // `timing_only`: a watch, which reads for as long as it runs, shares only the timing lock (a probe waits for
  // it), so that a fix can still start the daemon under its eyes; the node and waiting locks are not asked.
  explicit ReadingLocks(const Paths& paths, bool timing_only = false);

  std::string busy;
  std::string busy_by;  // which lock: "timing", "changing" or "waiting"

  // Held until the process exits: where NVML is not shut down after the collection (a one-shot command
  // leaves that to its exit), the GPUs stay held until then.
  void keep_until_exit();

 private:
  HeldLock m_timing;
  HeldLock m_node;
};

}  // namespace gpuwarm
