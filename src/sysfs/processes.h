#pragma once
// One walk of /proc answers what every collection asks of processes: is nvidia-persistenced running, and
// which scheduler's node daemon is (the scan for other GPU clients, done only when persistence is off,
// lists /proc again later). Each process is known by its PID and its command name, read from
// /proc/PID/comm: the kernel answers that from the task itself. /proc/PID/cmdline is read from the
// process's memory and waits on its memory lock, so reading it for every process would let one process
// stuck in the driver hang the walk (and a health check with it); it is read only for processes that may
// be the daemon, and under a deadline (sysfs/daemon.h).

#include <string>
#include <vector>

#include "core/paths.h"
#include "core/result.h"

namespace gpuwarm {

struct ProcessName {
  int pid = 0;
  std::string comm;  // at most 15 bytes (the kernel cuts it), made printable; "" when unreadable (exited)
};

// PIDs listed under /proc, in directory order; the error when /proc cannot be listed.
Result<std::vector<int>> list_pids(const Paths& paths);

// Every process with its command name.
Result<std::vector<ProcessName>> list_processes(const Paths& paths);

std::string read_comm(const Paths& paths, int pid);

}  // namespace gpuwarm
