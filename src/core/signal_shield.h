#pragma once
// Holds off the signals that end a run (SIGINT, SIGTERM, SIGHUP, SIGQUIT)
// and Ctrl-Z's SIGTSTP across a critical section, so Ctrl-C cannot leave a change half-applied or
// a report unwritten; afterwards the caller asks which one arrived and acts
// on it itself.

#include <pthread.h>
#include <signal.h>
#include <string.h>  // sigabbrev_np (GNU)
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <ctime>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>

namespace gpuwarm {

// Whether the caller set `sig` to be ignored (nohup ignores SIGHUP; a shell's `cmd &` SIGINT and SIGQUIT): such a
// signal is not a request to stop, although Linux still queues it while it is blocked.
inline bool ignored_by_caller(int sig) {
  struct sigaction current {};
  return ::sigaction(sig, nullptr, &current) == 0 && current.sa_handler == SIG_IGN;  // NOLINT: libc's macro
}

// "SIGTERM"; "signal N" for a number the C library has no name for.
inline std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// The signals that end a run.
inline sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    sigaddset(&set, sig);
  }
  return set;
}

// A stop signal pending now that the caller did not set to be ignored and that `mask` does not block (a mask
// that blocks them all, as under a SignalShield, lets none through): 0 when none. Not consumed.
inline int pending_stop_signal(const sigset_t& mask) {
  sigset_t waiting;
  sigemptyset(&waiting);
  sigpending(&waiting);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    if (sigismember(&waiting, sig) == 1 && sigismember(&mask, sig) != 1 && !ignored_by_caller(sig)) {
      return sig;
    }
  }
  return 0;
}

class SignalShield {
 public:
  // `notice`, when not empty, is said on stderr the moment a shielded signal arrives ("<who>: SIGINT received:
  // <notice>"): an operator whose Ctrl-C seems to do nothing for minutes reaches for kill -9, the one
  // signal that cannot wait. A thread waits for the signals to say so; it starts with every signal blocked
  // (created under the mask) and only waits and writes, so a fork meanwhile is as safe as before.
  SignalShield() : SignalShield({}, {}) {}
  SignalShield(std::string_view who, std::string_view notice) : m_set(stop_signal_set()) {
    // Ctrl-Z too, but not taken: held until the section ends, it then suspends the process as usual. A
    // reset suspended mid-way would leave the node without its daemon for as long as nobody resumes it. So
    // are SIGTTOU and SIGTTIN: a background job writing a step's line to a terminal with `stty tostop` would
    // be stopped there (with SIGTTOU blocked, the write goes through).
    sigset_t block = m_set;
    sigaddset(&block, SIGTSTP);
    sigaddset(&block, SIGTTOU);
    sigaddset(&block, SIGTTIN);
    pthread_sigmask(SIG_BLOCK, &block, &m_old);
    if (!notice.empty()) {
      for (std::size_t i = 0; i < k_signals.size(); ++i) {
        m_lines[i] = std::string(who) + ": " + signal_name(k_signals[i]) + " received: " + std::string(notice) + "\n";
      }
      // Created with every signal blocked (a thread inherits its creator's mask): no signal is ever delivered
      // to it, a SIGPIPE from its write included; it only takes the stop signals with sigtimedwait.
      sigset_t all;
      sigset_t shielded;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, &shielded);
      try {
        m_announcer = std::thread([this] { announce(); });
      } catch (const std::system_error&) {
        // No thread to be had (a task limit): the signals are still held, only not answered at once.
      }
      pthread_sigmask(SIG_SETMASK, &shielded, nullptr);
    }
  }
  // A caller that never took the signals has them taken here, so unblocking cannot kill the process after
  // the section. One that did has decided what an interruption means: a signal after its take() is neither
  // announced nor swallowed, but acts once the old mask is back (on the caller's StopSignalsCaught, say).
  ~SignalShield() {
    stop_announcer();
    if (!m_taken_by_caller) {
      drain();
    }
    pthread_sigmask(SIG_SETMASK, &m_old, nullptr);
  }
  SignalShield(const SignalShield&) = delete;
  SignalShield& operator=(const SignalShield&) = delete;

  // The first signal that arrived while shielded (0 if none); it is consumed. Ends the announcements: the
  // section is over for the caller, and a signal after this is left to act as it would (see the destructor).
  int take() {
    stop_announcer();
    drain();
    m_taken_by_caller = true;
    return m_first.load();
  }

  // Whether a shielded signal arrived (taken already or still pending), without consuming it.
  bool pending() const {
    sigset_t none;
    sigemptyset(&none);
    return m_first.load() != 0 || pending_stop_signal(none) != 0;
  }

 private:
  static constexpr std::array<int, 4> k_signals = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

  void stop_announcer() {
    if (m_announcer.joinable()) {
      m_stop.store(true);
      m_announcer.join();  // within one wait of the announcer's (50 ms)
    }
  }

  void drain() {
    timespec zero{};
    for (int sig; (sig = sigtimedwait(&m_set, nullptr, &zero)) > 0;) {
      record(sig);
    }
  }

  bool record(int sig) {
    if (ignored_by_caller(sig)) {
      return false;
    }
    int none = 0;
    m_first.compare_exchange_strong(none, sig);
    return true;
  }

  void announce() {
    while (!m_stop.load()) {
      timespec wait{0, 50'000'000};
      const int sig = sigtimedwait(&m_set, nullptr, &wait);
      if (sig <= 0 || !record(sig)) {
        continue;
      }
      for (std::size_t i = 0; i < k_signals.size(); ++i) {
        if (k_signals[i] == sig) {
          // Each press is answered: a second Ctrl-C is a question too. write(2) only: no lock a fork could copy.
          [[maybe_unused]] auto n = ::write(STDERR_FILENO, m_lines[i].data(), m_lines[i].size());
        }
      }
    }
  }

  sigset_t m_set{};
  sigset_t m_old{};
  std::atomic<int> m_first{0};
  std::atomic<bool> m_stop{false};
  bool m_taken_by_caller = false;
  std::array<std::string, 4> m_lines;  // written before the thread starts, only read by it
  std::thread m_announcer;
};

// Holds off the signals that end a run (as SignalShield) for a short section without taking them: when the
// section ends the old mask returns and a signal that came meanwhile acts as it would have, only later. For a
// few steps that must not be cut in two (a temporary file created, then renamed or removed), under a
// SignalShield or not.
class StopSignalsHeld {
 public:
  StopSignalsHeld() {
    const sigset_t stop = stop_signal_set();
    pthread_sigmask(SIG_BLOCK, &stop, &m_old);
  }
  ~StopSignalsHeld() { pthread_sigmask(SIG_SETMASK, &m_old, nullptr); }
  StopSignalsHeld(const StopSignalsHeld&) = delete;
  StopSignalsHeld& operator=(const StopSignalsHeld&) = delete;
  // The mask from before the section.
  const sigset_t& old_mask() const { return m_old; }

 private:
  sigset_t m_old{};
};

// Catches the stop signals (SIGINT, SIGTERM, SIGHUP, SIGQUIT; those the caller did not set to be ignored) for a
// scope and records the first, so the run can end at its own pace and still say what it did (a watch's summary, a
// fix's report after the node was changed). SIGQUIT too: SignalShield holds it as a stop, so Ctrl-\ a moment after
// the last step must not end a fix without the report a moment earlier would have given. No SA_RESTART: a wait in
// poll() returns early. The old handlers are back at the end; a signal caught stays recorded.
class StopSignalsCaught {
 public:
  StopSignalsCaught() {
    struct sigaction sa {};
    sa.sa_handler = [](int sig) {
      int none = 0;
      s_first.compare_exchange_strong(none, sig);  // lock-free: safe in a handler
      s_count.fetch_add(1);
    };
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    for (std::size_t i = 0; i < k_caught.size(); ++i) {
      m_installed[i] = !ignored_by_caller(k_caught[i]);  // nohup's SIGHUP stays ignored
      if (m_installed[i]) {
        ::sigaction(k_caught[i], &sa, &m_old[i]);
      }
    }
  }
  ~StopSignalsCaught() {
    for (std::size_t i = 0; i < k_caught.size(); ++i) {
      if (m_installed[i]) {
        ::sigaction(k_caught[i], &m_old[i], nullptr);
      }
    }
  }
  StopSignalsCaught(const StopSignalsCaught&) = delete;
  StopSignalsCaught& operator=(const StopSignalsCaught&) = delete;

  // The first stop signal caught by any StopSignalsCaught of this process (0 if none).
  static int signal() { return s_first.load(); }
  // How many were caught (a second Ctrl-C asks for more than the first).
  static int count() { return s_count.load(); }

 private:
  static constexpr std::array<int, 4> k_caught = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  static inline std::atomic<int> s_first{0};  // constant-initialized: nothing to set up inside a handler
  static inline std::atomic<int> s_count{0};
  std::array<struct sigaction, k_caught.size()> m_old{};
  std::array<bool, k_caught.size()> m_installed{};
};

// Blocks every signal in the calling thread: helper threads (NVML's) must
// never be the one a process-directed SIGINT is delivered to.
inline void block_all_signals_in_this_thread() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

// Every signal blocked in this thread for the scope, so a thread created meanwhile starts blocked (a thread
// inherits its creator's mask): it has no moment in which a signal meant for the main thread reaches it.
class AllSignalsBlocked {
 public:
  AllSignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &m_old);
  }
  ~AllSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &m_old, nullptr); }
  AllSignalsBlocked(const AllSignalsBlocked&) = delete;
  AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

 private:
  sigset_t m_old{};
};

}  // namespace gpuwarm
