#pragma once
// nvidia-persistenced as the OS shows it: the binary, running instances and
// their arguments, the runtime directory, and which GPUs each instance holds.

#include <string>
#include <vector>

#include "core/paths.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// Directories searched for the binary besides $PATH (driver installers and
// distributions disagree on where it goes).
extern const std::vector<std::string> k_daemon_search_dirs;

// `path_env` is $PATH; with a non-live root the search runs under that root.
DaemonFacts read_daemon(const Paths& paths, const std::string& path_env);

// Only the binary (what read_daemon puts in `binary`), without scanning processes.
Fact<std::string> find_daemon_binary(const Paths& paths, const std::string& path_env);

// Why the binary was taken: "PATH", or the layout its directory belongs to.
std::string daemon_location(const std::string& binary, const std::string& path_env);

// /dev/nvidiaN minors among link targets read from /proc/PID/fd.
std::vector<unsigned> nvidia_minors_from_links(const std::vector<std::string>& targets);

}  // namespace gpuwarm
