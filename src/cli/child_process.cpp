#include "cli/child_process.h"

#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace gpuwarm {

Result<ChildProcess> spawn_self(const std::vector<std::string>& args, const std::string& visible_gpu) {
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
  env.push_back("CUDA_VISIBLE_DEVICES=" + visible_gpu);
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

}  // namespace gpuwarm
