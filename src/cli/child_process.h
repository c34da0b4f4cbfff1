#pragma once
// Child processes of gpuwarm itself, each limited to the GPUs it times: CUDA
// state is per process, and CUDA_VISIBLE_DEVICES must be set before libcuda loads.

#include <sys/types.h>

#include <string>
#include <vector>

#include <string_view>

#include <nlohmann/json.hpp>

#include "core/result.h"

namespace gpuwarm {

struct ChildProcess {
  pid_t pid = -1;
  int out_fd = -1;   // the child's stdout (close-on-exec in the parent)
  int hold_fd = -1;  // spawned held: the write end of the child's stdin; closing it lets the child go on
};

// Runs this binary (/proc/self/exe) with `args` (argv[1..]) and
// CUDA_VISIBLE_DEVICES=`visible_gpus` (GPU-<uuid>[,GPU-<uuid>...]: UUIDs, since
// CUDA's order may differ from NVML's, FACTS.md §6); stdout comes back through a pipe. Like every program
// gpuwarm starts, the child is killed when this gpuwarm dies: one stuck in cuInit must not outlive a
// health checker's timeout holding the GPU. `held`: the child's stdin is a pipe whose write end comes back as
// hold_fd, for a child that waits at a point of its run until gpuwarm closes it (no other child inherits it).
Result<ChildProcess> spawn_self(const std::vector<std::string>& args, const std::string& visible_gpus,
                                bool held = false);

struct ChildResult {
  std::string output;  // stdout and stderr, at most max_output bytes
  bool truncated = false;
  int exit_code = 0;   // 128 + signal when killed by one
};

// The one way gpuwarm runs another program: argv[0] must be an absolute path
// (no shell, no PATH), argv passed as is, the environment of
// system_program_environment(), stdin from /dev/null, / as its folder, no descriptor of gpuwarm's, output capped
// at `max_output`, and the child killed once `timeout_ms` passes (counted from before execve), whether or not
// it still holds its stdout. It runs in a process group of its own: what it leaves running there ends with it.
Result<ChildResult> run_child(const std::vector<std::string>& argv, int timeout_ms,
                              std::size_t max_output = 1u << 20);

// run_child for this binary (/proc/self/exe) with `args` (argv[1..]), in gpuwarm's own environment with no GPU
// visible to CUDA: a question asked of a child so that this process never maps the library it concerns. Its
// output is its stdout alone; what it says on stderr (the loader's LD_DEBUG, a sanitizer) goes to gpuwarm's.
Result<ChildResult> run_self(const std::vector<std::string>& args, int timeout_ms, std::size_t max_output = 1u << 20);

// How long a killed child is waited for: SIGKILL cannot end one asleep in the kernel (a wedged driver).
constexpr int k_reap_after_kill_ms = 5000;

// Waits for `pid` to end, at most `timeout_ms`; true (with its wait status) when it did. Every wait for a
// child goes through this or kill_and_reap: none may block gpuwarm forever.
bool reap_within(pid_t pid, int& status, int timeout_ms);
// SIGKILL, then reap_within.
bool kill_and_reap(pid_t pid, int& status, int timeout_ms = k_reap_after_kill_ms);

// What another program gets in place of gpuwarm's environment (`parent`): a fixed PATH and the C locale
// (output gpuwarm parses or quotes stays in one language), and LD_LIBRARY_PATH's absolute folders if set.
// Nothing else of the caller's (an Ansible task's or a prolog's variables, LD_PRELOAD, a locale) reaches a
// program run as root.
std::vector<std::string> system_program_environment(char** parent);

// A child of gpuwarm's answer: the last line of its output that reads as a JSON object holding `key` (a
// library's destructor, the loader or a sanitizer may print after it); a discarded value when there is none.
nlohmann::json child_answer(std::string_view output, const char* key);

// run_child's output alone.
Result<std::string> run_capture(const std::vector<std::string>& argv, int timeout_ms);

}  // namespace gpuwarm
