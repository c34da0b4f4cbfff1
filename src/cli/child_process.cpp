#include "cli/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>

#include <cerrno>
#include <cstring>

#include "core/fs.h"
#include "core/signal_shield.h"

extern char** environ;

namespace gpuwarm {

namespace {
// What a started program gets: everything is prepared before the fork, since the child may only make
// async-signal-safe calls until it execs (gpuwarm has threads: the exporter's, NVML's).
struct Launch {
  const char* path;
  char* const* argv;
  char* const* envp;
  int stdin_fd = -1;   // -1: gpuwarm's own
  int stdout_fd = -1;
  int stderr_fd = -1;
  bool own_group = false;
  bool cwd_root = false;           // start in / (a program run as root does not work in the caller's folder)
  const sigset_t* mask = nullptr;  // the program's signal mask; nullptr: the current one
  int exec_timeout_ms = 30000;     // how long execve may take (an executable on a hung network file system)
};

// Moves `from` onto `to` in the child, inheritable. (main() keeps 0, 1 and 2 open, so gpuwarm's own
// descriptors are all above them and one placement cannot overwrite another's source.)
void place_descriptor(int from, int to) {
  if (from < 0) {
    return;
  }
  ::dup2(from, to);
}

// Closes every descriptor from `first` up but `keep` (which may be `first` itself: an empty span is no error).
// Without close_range (a kernel before 5.9, a seccomp profile that refuses it) the open ones are listed from
// /proc/self/fd with the raw getdents64 (opendir allocates, which a child of a threaded process must not), and
// where /proc cannot be opened or listed every number below `bound` is closed.
void close_descriptors_from(int first, int keep, int bound) {
  auto close_span = [](int low, unsigned high) {
    return static_cast<unsigned>(low) > high || ::close_range(static_cast<unsigned>(low), high, 0) == 0;
  };
  if (close_span(first, static_cast<unsigned>(keep - 1)) && close_span(keep + 1, ~0u)) {
    return;
  }
  const int listing = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (listing >= 0) {
    // Closing while listing may make the listing skip entries: list again until a pass closes nothing.
    bool listed = true;
    for (bool closed_any = true; closed_any && listed;) {
      closed_any = false;
      ::lseek(listing, 0, SEEK_SET);
      alignas(8) char buf[4096];
      long got = 0;
      while ((got = ::syscall(SYS_getdents64, listing, buf, sizeof buf)) > 0) {
        // linux_dirent64: inode (8 bytes), offset (8), record length (2), type (1), then the name.
        for (long at = 0; at + 19 < got;) {
          unsigned short record_length = 0;
          std::memcpy(&record_length, buf + at + 16, sizeof record_length);
          const char* c = buf + at + 19;
          at += record_length;
          int fd = 0;
          const char* name = c;
          for (; *c >= '0' && *c <= '9' && fd < (1 << 28); ++c) fd = fd * 10 + (*c - '0');
          if (*c == '\0' && c != name && fd >= first && fd != keep && fd != listing) {
            ::close(fd);
            closed_any = true;
          }
          if (record_length == 0) break;
        }
      }
      listed = got == 0;
    }
    ::close(listing);
    if (listed) {
      return;
    }
  }
  for (int fd = first; fd < bound; ++fd) {
    if (fd != keep) {
      ::close(fd);
    }
  }
}

// The highest descriptor number this process may have, plus one, for close_descriptors_from's last resort;
// at most 2^20 (a container's limit of 2^30 would take the child minutes).
int descriptor_bound() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur > (1u << 20)) {
    return 1 << 20;
  }
  return std::max(static_cast<int>(limit.rlim_cur), 65536);
}

// launch's own failures, beyond any errno (execve itself may fail with ETIMEDOUT on a network file system).
constexpr int k_exec_timed_out = 100000;
constexpr int k_exec_stopped = 100001;

// fork and exec, as posix_spawn would, plus what posix_spawn cannot do: the program is killed when gpuwarm
// dies (PR_SET_PDEATHSIG). A gpuwarm ended by SIGKILL (`timeout -s KILL`, a scheduler's kill of an overdue
// prolog) never gets to end the program's process group itself, and a program it started (nvidia-smi in a
// reset) must not run on with no one waiting for it. The signal is kept across exec (nothing gpuwarm runs is
// set-user-ID) and sent when the thread that started the program ends, which waits for the program, so only
// gpuwarm's own death sends it. Returns the PID, -errno, or -k_exec_timed_out / -k_exec_stopped when execve had
// not answered within how.exec_timeout_ms or before a stop signal (the child is then killed).
pid_t launch(const Launch& how) {
  const pid_t parent = ::getpid();
  const int bound = descriptor_bound();  // read before the fork: the child may only make async-signal-safe calls
  int report[2];  // carries exec's errno; closed by a successful exec
  if (::pipe2(report, O_CLOEXEC) != 0) {
    return -errno;
  }
  // _Fork: no atfork handlers, safe in a threaded process; the child only calls async-signal-safe functions.
  const pid_t pid = ::_Fork();
  if (pid == 0) {
    if (how.own_group) {
      ::setpgid(0, 0);
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
      ::_exit(127);  // gpuwarm died before the line above: no one is left to wait for the program
    }
    // Handlers are gpuwarm's and must not run here (exec resets them, but not before it happens); SIGPIPE,
    // ignored by gpuwarm, goes back to its default. Other ignored signals stay ignored (nohup's SIGHUP).
    for (int sig = 1; sig < NSIG; ++sig) {
      struct sigaction was {};
      if (::sigaction(sig, nullptr, &was) == 0 &&
          (sig == SIGPIPE || (was.sa_handler != SIG_DFL && was.sa_handler != SIG_IGN))) {
        struct sigaction dfl {};
        dfl.sa_handler = SIG_DFL;
        ::sigaction(sig, &dfl, nullptr);
      }
    }
    place_descriptor(how.stdin_fd, STDIN_FILENO);
    place_descriptor(how.stdout_fd, STDOUT_FILENO);
    place_descriptor(how.stderr_fd, STDERR_FILENO);
    // A descriptor gpuwarm's caller left open (a prolog's lock, an Ansible task's pipe) is not the program's.
    close_descriptors_from(3, report[1], bound);
    if (how.cwd_root && ::chdir("/") != 0) {
      int e = errno;
      [[maybe_unused]] ssize_t w = ::write(report[1], &e, sizeof e);
      ::_exit(127);
    }
    if (how.mask != nullptr) {
      ::sigprocmask(SIG_SETMASK, how.mask, nullptr);
    }
    ::execve(how.path, how.argv, how.envp);
    int e = errno;
    [[maybe_unused]] ssize_t w = ::write(report[1], &e, sizeof e);
    ::_exit(127);
  }
  int e = errno;
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return -e;
  }
  if (how.own_group) {
    ::setpgid(pid, pid);  // here too, so the group exists before any kill(-pid) below (EACCES once it has exec'd)
  }
  // exec's answer: the pipe closes (it ran) or carries its errno, within how.exec_timeout_ms; a stop signal the
  // caller's mask lets through (how.mask) ends the wait too, as it would end the program's run.
  const auto exec_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(how.exec_timeout_ms);
  int exec_errno = 0;
  ssize_t got = -1;
  int gave_up = 0;  // k_exec_timed_out or k_exec_stopped
  while (gave_up == 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(exec_deadline - std::chrono::steady_clock::now()).count();
    if (how.mask != nullptr && pending_stop_signal(*how.mask) != 0) {
      gave_up = k_exec_stopped;
      break;
    }
    if (left <= 0) {
      gave_up = k_exec_timed_out;
      break;
    }
    pollfd pfd{report[0], POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left, 100)));
    if (n > 0) {
      do {
        got = ::read(report[0], &exec_errno, sizeof exec_errno);
      } while (got < 0 && errno == EINTR);
      break;
    }
  }
  ::close(report[0]);
  if (gave_up != 0) {
    // Not even exec's answer: whatever the child is, it does not run on unwatched (its group, and itself should
    // the group not have been made). If SIGKILL cannot end it (asleep in a hung execve) it stays unreaped.
    if (how.own_group) {
      ::kill(-pid, SIGKILL);
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    reap_within(pid, status, k_reap_after_kill_ms);
    return -gave_up;
  }
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    int status = 0;
    reap_within(pid, status, k_reap_after_kill_ms);  // it is at _exit
    return -exec_errno;
  }
  return pid;
}

// Why a program did not start, from launch's negative code.
std::string launch_failure(pid_t negative_code, int exec_timeout_ms) {
  const int code = static_cast<int>(-negative_code);
  if (code == k_exec_timed_out) {
    return "starting it took over " + std::to_string(exec_timeout_ms) + " ms (is its file system hung?)";
  }
  if (code == k_exec_stopped) {
    return "a stop signal came before it had started";
  }
  return std::strerror(code);
}

std::vector<char*> pointers_to(std::vector<std::string>& texts) {
  std::vector<char*> out;
  for (auto& t : texts) out.push_back(t.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::vector<std::string> system_program_environment(char** parent) {
  std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
  for (char** e = parent; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "LD_LIBRARY_PATH=", 16) != 0) {
      continue;
    }
    // Where the driver's libraries are when the loader's cache lacks them (a container's /usr/local/nvidia):
    // nvidia-smi needs them as gpuwarm did. Absolute folders only: an empty or relative entry means the
    // current directory, which a program run as root must not load from; and only folders no other user could
    // change (or create: a missing one is dropped), as for the programs themselves, nor any file in them: the
    // loader takes every library the program needs from the first folder that has it (libc.so.6 included).
    std::string kept;
    std::string_view list(*e + 16);
    while (!list.empty()) {
      std::string_view entry = list.substr(0, list.find_first_of(":;"));  // glibc splits on both
      list.remove_prefix(std::min(list.size(), entry.size() + 1));
      if (!entry.empty() && entry.front() == '/' && library_folder_replaceable_by_others(std::string(entry)).empty()) {
        kept.append(kept.empty() ? "" : ":").append(entry);
      }
    }
    if (!kept.empty()) {
      env.push_back("LD_LIBRARY_PATH=" + kept);
    }
  }
  return env;
}

namespace {

// gpuwarm's own environment for a child of itself (it finds libcuda as gpuwarm would), with only the GPUs given.
std::vector<std::string> self_environment(const std::string& visible_gpus) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0) {
      env.emplace_back(*e);
    }
  }
  env.push_back("CUDA_VISIBLE_DEVICES=" + visible_gpus);
  return env;
}

}  // namespace

Result<ChildProcess> spawn_self(const std::vector<std::string>& args, const std::string& visible_gpus, bool held) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  int hold[2] = {-1, -1};
  if (held && ::pipe2(hold, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return fail(std::string("pipe: ") + std::strerror(e));
  }
  std::vector<std::string> argv_text = {"gpuwarm"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<std::string> env = self_environment(visible_gpus);
  std::vector<char*> argv = pointers_to(argv_text);
  std::vector<char*> envp = pointers_to(env);
  Launch how{"/proc/self/exe", argv.data(), envp.data()};
  how.stdin_fd = hold[0];
  how.stdout_fd = fds[1];
  ChildProcess child;
  child.pid = launch(how);  // how.exec_timeout_ms: the default
  ::close(fds[1]);
  if (hold[0] >= 0) {
    ::close(hold[0]);
  }
  if (child.pid < 0) {
    ::close(fds[0]);
    if (hold[1] >= 0) {
      ::close(hold[1]);
    }
    return fail("cannot start a gpuwarm child: " + launch_failure(child.pid, how.exec_timeout_ms));
  }
  child.out_fd = fds[0];
  child.hold_fd = hold[1];
  return child;
}

bool reap_within(pid_t pid, int& status, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno == ECHILD)) {
      return true;  // ended (ECHILD: already reaped; its PID may be another process's now: never signal it)
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    ::usleep(5000);
  }
}

bool kill_and_reap(pid_t pid, int& status, int timeout_ms) {
  ::kill(pid, SIGKILL);
  return reap_within(pid, status, timeout_ms);
}

namespace {

constexpr int k_stop_grace_ms = 2000;

// Appends what is already in the pipe (a child that has exited wrote all it will), without waiting for an
// end of file that a grandchild holding the pipe could delay forever; bounded in bytes and in time, since
// such a grandchild could also keep writing.
void drain_ready(int fd, ChildResult& result, std::size_t max_output) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  for (std::size_t read_total = 0; read_total < max_output + (64u << 10) && std::chrono::steady_clock::now() < until;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 0) <= 0) {
      return;
    }
    char buf[8192];
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got <= 0) {
      return;
    }
    read_total += static_cast<std::size_t>(got);
    if (result.output.size() < max_output) {
      auto keep = std::min(static_cast<std::size_t>(got), max_output - result.output.size());
      result.output.append(buf, keep);
      result.truncated = result.truncated || keep < static_cast<std::size_t>(got);
    } else {
      result.truncated = true;
    }
  }
}

// run_child's and run_self's one body: `path` runs with `argv_text` and `env_text`; its stderr joins the output,
// or (`own_stderr`) is gpuwarm's.
Result<ChildResult> run_program(const char* path, const std::vector<std::string>& argv_text,
                                std::vector<std::string> env_text, int timeout_ms, std::size_t max_output,
                                bool own_stderr = false, bool cwd_root = true) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null_in < 0) {
    int e = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return fail(std::string("/dev/null: ") + std::strerror(e));
  }
  std::vector<std::string> args = argv_text;
  std::vector<char*> argv = pointers_to(args);
  std::vector<char*> envp = pointers_to(env_text);
  // The stop signals are held while the child runs: one that comes is seen below, and the child's process
  // group is ended before gpuwarm is, rather than left running with no deadline. The child gets the mask
  // gpuwarm had (under a SignalShield, stop signals stay blocked: nvidia-smi is never cut half-way through a
  // reset) and a process group of its own, so that a timeout or a stop ends its helpers too.
  StopSignalsHeld held;
  Launch how{path, argv.data(), envp.data()};
  how.stdin_fd = null_in;
  how.stdout_fd = fds[1];
  how.stderr_fd = own_stderr ? -1 : fds[1];
  how.own_group = true;
  how.cwd_root = cwd_root;
  how.mask = &held.old_mask();
  how.exec_timeout_ms = timeout_ms;  // the program's deadline counts from here: starting it is part of its time
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const pid_t pid = launch(how);
  ::close(null_in);
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    return fail("cannot run " + argv_text[0] + ": " + launch_failure(pid, timeout_ms));
  }
  ChildResult result;
  auto left_ms = [&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  };
  bool timed_out = false;
  int stopped_by = 0;
  bool open = true;
  int status = 0;
  bool reaped = false;
  // The deadline holds for the child, not its stdout: one that closes stdout
  // and lingers is still killed. Output beyond max_output is read and dropped.
  while (!reaped) {
    if (left_ms() <= 0) {
      timed_out = true;
      break;
    }
    // One the caller's mask (before `held`) lets through; under a SignalShield none is, and the child runs to
    // its end as the shield wants.
    if ((stopped_by = pending_stop_signal(held.old_mask())) != 0) {
      break;
    }
    if (open) {
      pollfd pfd{fds[0], POLLIN, 0};
      int n = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(left_ms(), 100)));
      if (n < 0 && errno != EINTR) {
        open = false;
      } else if (n > 0) {
        char buf[8192];
        ssize_t got = ::read(fds[0], buf, sizeof buf);
        if (got <= 0) {
          open = false;
        } else if (result.output.size() < max_output) {
          auto keep = std::min(static_cast<std::size_t>(got), max_output - result.output.size());
          result.output.append(buf, keep);
          result.truncated = result.truncated || keep < static_cast<std::size_t>(got);
        } else {
          result.truncated = true;
        }
      }
    } else {
      ::usleep(10000);
    }
    // Looked at, not reaped: while the program is a zombie its group's ID cannot be reused, so what it left
    // running in its group (a helper it started and did not wait for) can still be ended safely.
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 && errno == ECHILD) {
      // Reaped already (SIGCHLD ignored by whoever started gpuwarm): ended, status unknown, and its ID may be
      // another process's now, so nothing below may signal it.
      ::close(fds[0]);
      return fail(argv_text[0] + " ended, but its exit status could not be read (SIGCHLD is ignored)");
    }
    if (info.si_pid == pid) {
      ::kill(-pid, SIGKILL);
      reaped = ::waitpid(pid, &status, 0) == pid;  // a zombie: at once
      if (!reaped) {
        ::close(fds[0]);
        return fail(argv_text[0] + " ended, but its exit status could not be read");
      }
    }
  }
  if (reaped && open) {
    drain_ready(fds[0], result, max_output);
  }
  ::close(fds[0]);
  if (stopped_by != 0) {
    // Asked to stop: the program and its helpers get the same signal (a Ctrl-C stays a Ctrl-C) and a moment to
    // clean up; then whatever is left of the group gets SIGKILL, while the program, ended but not yet reaped,
    // still keeps the group's ID from being reused. The signal itself acts on gpuwarm once `held` lets it
    // through, as it would have without a child.
    ::kill(-pid, stopped_by);
    const auto grace_ends = std::chrono::steady_clock::now() + std::chrono::milliseconds(k_stop_grace_ms);
    siginfo_t info{};
    bool pinned = true;  // the program is ours, alive or a zombie: its ID (and the group's) cannot be reused
    while (std::chrono::steady_clock::now() < grace_ends) {
      info.si_pid = 0;
      if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
        pinned = false;  // reaped by someone else: never signal that ID again
        break;
      }
      if (info.si_pid == pid) {
        break;
      }
      ::usleep(5000);
    }
    if (pinned) {
      ::kill(-pid, SIGKILL);
      reap_within(pid, status, k_reap_after_kill_ms);
    }
    return fail(argv_text[0] + " was stopped: gpuwarm received " + signal_name(stopped_by));
  }
  if (timed_out) {
    // SIGKILL does not end a process asleep in the kernel (a wedged driver): wait a while, never forever, so
    // the caller can still do what must follow (start the daemon again). The whole group: its helpers too
    // (the child, not yet reaped, keeps the group's ID from being reused).
    ::kill(-pid, SIGKILL);
    bool ended = reap_within(pid, status, k_reap_after_kill_ms);
    return fail(argv_text[0] + " did not finish within " + std::to_string(timeout_ms) + " ms" +
                (ended ? "" : "; killed, but it had not ended " + std::to_string(k_reap_after_kill_ms / 1000) +
                                  " s later (stuck in the kernel?)"));
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return result;
}

}  // namespace

Result<ChildResult> run_child(const std::vector<std::string>& argv_text, int timeout_ms, std::size_t max_output) {
  if (argv_text.empty() || argv_text.front().empty() || argv_text.front().front() != '/') {
    return fail("refusing to run a program by a relative name: " + (argv_text.empty() ? "" : argv_text.front()));
  }
  // No shell, no PATH lookup: argv[0] is the absolute path that runs.
  return run_program(argv_text.front().c_str(), argv_text, system_program_environment(environ), timeout_ms,
                     max_output);
}

Result<ChildResult> run_self(const std::vector<std::string>& args, int timeout_ms, std::size_t max_output) {
  std::vector<std::string> argv_text = {"gpuwarm"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  // In gpuwarm's own folder, as its other children of itself (spawn_self): it finds its libraries as gpuwarm did.
  return run_program("/proc/self/exe", argv_text, self_environment(""), timeout_ms, max_output,
                     /*own_stderr=*/true, /*cwd_root=*/false);
}

Result<std::string> run_capture(const std::vector<std::string>& argv_text, int timeout_ms) {
  auto r = run_child(argv_text, timeout_ms);
  if (!r) {
    return tl::unexpected(r.error());
  }
  return std::move(r->output);
}

nlohmann::json child_answer(std::string_view output, const char* key) {
  std::size_t end = output.size();
  while (end > 0) {
    const auto start = output.rfind('\n', end - 1);
    const auto from = start == std::string_view::npos ? 0 : start + 1;
    auto j = nlohmann::json::parse(output.substr(from, end - from), nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains(key)) {
      return j;
    }
    if (start == std::string_view::npos) {
      break;
    }
    end = start;
  }
  return nlohmann::json::value_t::discarded;
}

}  // namespace gpuwarm
