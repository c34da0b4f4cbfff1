#pragma once
// Child processes of gpuwarm itself, each limited to one GPU: CUDA state is
// per process, and CUDA_VISIBLE_DEVICES must be set before libcuda loads.

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/result.h"

namespace gpuwarm {

struct ChildProcess {
  pid_t pid = -1;
  int out_fd = -1;  // the child's stdout (close-on-exec in the parent)
};

// Runs this binary (/proc/self/exe) with `args` (argv[1..]) and
// CUDA_VISIBLE_DEVICES=`visible_gpu` (a GPU-<uuid>: CUDA's order may differ
// from NVML's, FACTS.md §6); stdout comes back through a pipe.
Result<ChildProcess> spawn_self(const std::vector<std::string>& args, const std::string& visible_gpu);

// Runs argv[0] (a path) with argv, stdin from /dev/null, and returns what it
// printed on stdout and stderr; killed and failed after `timeout_ms`.
Result<std::string> run_capture(const std::vector<std::string>& argv, int timeout_ms);

}  // namespace gpuwarm
