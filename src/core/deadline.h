#pragma once
// Runs a call that may never return (NVML blocks in the kernel when a GPU or
// the driver hangs) on its own thread, and stops waiting for it at a deadline.
// Such a call cannot be cancelled: past the deadline its thread is abandoned,
// still running, and the process must then end with quick_exit-style
// termination (see abandoned_calls()), never by running static destructors
// under a thread that is still inside the library.
// A call that ended is joined when it is collected: its thread's own ending
// (thread-local destructors, glibc freeing dlerror's buffer) must not race
// the process's exit.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "core/signal_shield.h"

namespace gpuwarm {

// What a long call is doing now ("nvmlInit", "GPU 3: nvmlDeviceGetPersistenceMode"),
// so a timeout can say where it stuck. Thread-safe.
class Progress {
 public:
  void set(std::string stage) {
    std::lock_guard<std::mutex> lock(m_mutex);
    m_stage = std::move(stage);
  }
  std::string get() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_stage;
  }

 private:
  mutable std::mutex m_mutex;
  std::string m_stage;
};

// How many calls were abandoned in this process. main() ends the process with
// _exit() when it is non-zero.
inline std::atomic<int>& abandoned_calls() {
  static std::atomic<int> count{0};
  return count;
}

template <class T>
struct DeadlineResult {
  std::optional<T> value;  // empty when the deadline passed first (or the call threw)
  std::string stuck_at;    // Progress at the deadline, or "failed: <what>"
};

// A call started on its own thread now and waited for later, so other work
// can overlap it. `fn(Progress&)` must own everything it uses (capture by
// value): when abandoned it outlives the caller's stack.
template <class T>
class BackgroundCall {
 public:
  template <class Fn>
  explicit BackgroundCall(Fn fn) : m_shared(std::make_shared<Shared>()) {
    AllSignalsBlocked created_blocked;  // Ctrl-C is the main thread's to handle, from the thread's first moment
    m_thread = std::thread([shared = m_shared, call = std::optional<Fn>(std::move(fn))]() mutable {
      block_all_signals_in_this_thread();
      std::optional<T> value;
      std::string error;
      try {
        value = (*call)(shared->progress);
      } catch (const std::exception& e) {
        error = e.what();  // reported as the call's failure, never std::terminate
      } catch (...) {
        error = "unknown exception";
      }
      // What the call captured is released before the caller can learn that it ended: the caller may then
      // drop its own references and leave, and the last one must not go on this thread during exit.
      call.reset();
      {
        std::lock_guard<std::mutex> lock(shared->mutex);
        shared->value = std::move(value);
        shared->error = std::move(error);
        shared->finished = true;
      }
      shared->done.notify_all();
    });
  }

  BackgroundCall(BackgroundCall&&) noexcept = default;
  BackgroundCall& operator=(BackgroundCall&&) = delete;  // would drop a running thread
  BackgroundCall(const BackgroundCall&) = delete;
  BackgroundCall& operator=(const BackgroundCall&) = delete;

  // A call dropped unwaited (an exception on the caller's side) that is still
  // running counts as abandoned too: the process must not run exit handlers under it.
  ~BackgroundCall() {
    if (m_thread.joinable()) {
      collect_or_abandon();
    }
  }

  // Waits until `deadline` at most for the call to end; abandons nothing (wait_until collects or abandons).
  bool finished_by(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(m_shared->mutex);
    return m_shared->done.wait_until(lock, deadline, [&] { return m_shared->finished; });
  }

  // Waits until `deadline` at most; once it passes, the call is abandoned.
  DeadlineResult<T> wait_until(std::chrono::steady_clock::time_point deadline) {
    finished_by(deadline);  // collect_or_abandon reads the outcome: a call that ends meanwhile is taken
    if (!collect_or_abandon()) {
      return {std::nullopt, m_shared->progress.get()};
    }
    std::lock_guard<std::mutex> lock(m_shared->mutex);
    if (!m_shared->value) {
      return {std::nullopt, "failed: " + m_shared->error};
    }
    return {std::move(m_shared->value), {}};
  }

 private:
  struct Shared {
    std::mutex mutex;
    std::condition_variable done;
    bool finished = false;
    std::optional<T> value;
    std::string error;
    Progress progress;
  };
  // Joins a call that ended; detaches (abandons) one still running. True when it had ended.
  bool collect_or_abandon() {
    if (!m_thread.joinable()) {
      return !m_abandoned;  // collected before: say again what happened then
    }
    bool finished = false;
    {
      std::lock_guard<std::mutex> lock(m_shared->mutex);
      finished = m_shared->finished;
    }
    if (finished) {
      m_thread.join();  // past `finished` the thread only notifies and ends
      return true;
    }
    m_thread.detach();
    m_abandoned = true;
    ++abandoned_calls();
    return false;
  }

  std::shared_ptr<Shared> m_shared;
  std::thread m_thread;  // started by the constructor's body, after m_shared
  bool m_abandoned = false;
};

template <class T, class Fn>
DeadlineResult<T> run_with_deadline(std::chrono::milliseconds timeout, Fn fn) {
  BackgroundCall<T> call(std::move(fn));
  return call.wait_until(std::chrono::steady_clock::now() + timeout);
}

}  // namespace gpuwarm
