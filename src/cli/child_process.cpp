#include "cli/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>

#include <cerrno>
#include <cstring>

#include "core/signal_shield.h"

extern char** environ;

namespace gpuwarm {

namespace {
constexpr const char* k_parent_env = "GPUWARM_PARENT_PID";
}  // namespace

std::vector<std::string> system_program_environment(char** parent) {
  std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"};
  for (char** e = parent; e != nullptr && *e != nullptr; ++e) {
    if (std::strncmp(*e, "LD_LIBRARY_PATH=", 16) != 0) {
      continue;
    }
    // Where the driver's libraries are when the loader's cache lacks them (a container's /usr/local/nvidia):
    // nvidia-smi needs them as gpuwarm did. Absolute folders only: an empty or relative entry means the
    // current directory, which a program run as root must not load from.
    std::string kept;
    std::string_view list(*e + 16);
    while (!list.empty()) {
      std::string_view entry = list.substr(0, list.find_first_of(":;"));  // glibc splits on both
      list.remove_prefix(std::min(list.size(), entry.size() + 1));
      if (!entry.empty() && entry.front() == '/') {
        kept.append(kept.empty() ? "" : ":").append(entry);
      }
    }
    if (!kept.empty()) {
      env.push_back("LD_LIBRARY_PATH=" + kept);
    }
  }
  return env;
}

bool tie_to_parent() {
  // Spawned from the main thread, which lives as long as the parent process.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  const char* expected = std::getenv(k_parent_env);
  // The parent may have died before prctl: then this process was already handed to another.
  return expected == nullptr || std::to_string(::getppid()) == expected;
}

Result<ChildProcess> spawn_self(const std::vector<std::string>& args, const std::string& visible_gpus) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<std::string> argv_text = {"gpuwarm"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0 && std::strncmp(*e, "GPUWARM_PARENT_PID=", 19) != 0) {
      env.emplace_back(*e);
    }
  }
  env.push_back("CUDA_VISIBLE_DEVICES=" + visible_gpus);
  env.push_back(std::string(k_parent_env) + "=" + std::to_string(::getpid()));
  std::vector<char*> argv;
  std::vector<char*> envp;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // the caller's descriptors stay the caller's
  ChildProcess child;
  int r = ::posix_spawn(&child.pid, "/proc/self/exe", &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (r != 0) {
    ::close(fds[0]);
    return fail(std::string("cannot start a gpuwarm child: ") + std::strerror(r));
  }
  child.out_fd = fds[0];
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

}  // namespace

Result<ChildResult> run_child(const std::vector<std::string>& argv_text, int timeout_ms, std::size_t max_output) {
  if (argv_text.empty() || argv_text.front().empty() || argv_text.front().front() != '/') {
    return fail("refusing to run a program by a relative name: " + (argv_text.empty() ? "" : argv_text.front()));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<std::string> args = argv_text;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDERR_FILENO);
  // A descriptor gpuwarm's caller left open (a prolog's lock, an Ansible task's pipe) is not the program's to
  // hold; gpuwarm's own are close-on-exec.
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // The stop signals are held while the child runs: one that comes is seen below, and the child's process
  // group is ended before gpuwarm is, rather than left running with no deadline. The child gets the mask
  // gpuwarm had (under a SignalShield, stop signals stay blocked: nvidia-smi is never cut half-way through a
  // reset), SIGPIPE back to its default (gpuwarm ignores it, and ignored signals are inherited), and a
  // process group of its own, so that a timeout or a stop ends its helpers too.
  StopSignalsHeld held;
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &held.old_mask());
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  std::vector<std::string> env_text = system_program_environment(environ);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  // No shell, no PATH lookup: argv[0] is the absolute path that runs.
  int r = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (r != 0) {
    ::close(fds[0]);
    return fail("cannot run " + argv_text[0] + ": " + std::strerror(r));
  }
  ChildResult result;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
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
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w < 0 && errno == ECHILD) {
      // Reaped already (SIGCHLD ignored by whoever started gpuwarm): ended, status unknown, and its ID may be
      // another process's now, so nothing below may signal it.
      ::close(fds[0]);
      return fail(argv_text[0] + " ended, but its exit status could not be read (SIGCHLD is ignored)");
    }
    reaped = w == pid;
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

Result<std::string> run_capture(const std::vector<std::string>& argv_text, int timeout_ms) {
  auto r = run_child(argv_text, timeout_ms);
  if (!r) {
    return tl::unexpected(r.error());
  }
  return std::move(r->output);
}

}  // namespace gpuwarm
