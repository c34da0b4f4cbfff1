#include "cli/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace gpuwarm {

Result<ChildProcess> spawn_self(const std::vector<std::string>& args, const std::string& visible_gpus) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return fail(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<std::string> argv_text = {"gpuwarm"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21) != 0) {
      env.emplace_back(*e);
    }
  }
  env.push_back("CUDA_VISIBLE_DEVICES=" + visible_gpus);
  std::vector<char*> argv;
  std::vector<char*> envp;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
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
  pid_t pid = -1;
  // No shell, no PATH lookup: argv[0] is the absolute path that runs.
  int r = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
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
    reaped = w == pid;
  }
  ::close(fds[0]);
  if (timed_out) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return fail(argv_text[0] + " did not finish within " + std::to_string(timeout_ms) + " ms");
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
