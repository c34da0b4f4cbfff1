#pragma once
// nvidia-persistenced as the OS shows it: the binary, running instances and
// their arguments, the runtime directory, and which GPUs each instance holds.

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "core/paths.h"
#include "core/result.h"
#include "snapshot/snapshot.h"
#include "sysfs/processes.h"

namespace gpuwarm {

// Directories searched for the binary besides $PATH (driver installers and
// distributions disagree on where it goes).
extern const std::vector<std::string> k_daemon_search_dirs;

// The binary is looked for in k_daemon_search_dirs only (never $PATH), under the root. Running instances
// are found among `processes` (list_processes): a name like the daemon's, then argv[0] nvidia-persistenced.
// The arguments are read with read_cmdline (sysfs/processes.h; tests stand in for its reader): a process
// named like the daemon whose arguments do not come in time is kept, with argv_missing saying why.
DaemonFacts read_daemon(const Paths& paths, const Result<std::vector<ProcessName>>& processes,
                        const CmdlineReader& cmdline_reader = read_cmdline_file,
                        std::chrono::milliseconds cmdline_deadline = k_cmdline_deadline);
DaemonFacts read_daemon(const Paths& paths);  // lists the processes itself

// Only the binary (what read_daemon puts in `binary`), without scanning
// processes: the first executable in k_daemon_search_dirs that neither it nor
// a directory above it can be replaced by a user other than root (or the caller).
Fact<std::string> find_daemon_binary(const Paths& paths);

// The layout the binary's directory belongs to ("NixOS system profile", ...).
std::string daemon_location(const std::string& binary);

// A process's cgroup from its /proc/PID/cgroup text: the unified hierarchy's ("0::PATH"), else systemd's v1
// hierarchy ("N:name=systemd:PATH"); "" when neither is there.
std::string systemd_cgroup_of(std::string_view proc_cgroup);

// While the unit is active, its daemon runs in the unit's cgroup. A process that passes for the daemon by
// its executable but runs elsewhere is not the unit's: any user can build a root-owned Nix store path named
// nvidia-persistenced on a NixOS node with multi-user Nix, but only systemd puts a process into
// system.slice. Such processes move to `not_daemon`. Nothing moves when the unit is not active, its cgroup
// or systemd's root cgroup (PID 1's, less /init.scope) is unknown, or a process's cgroup could not be read.
void set_apart_daemons_outside_the_unit(DaemonFacts& daemon, const ServiceFacts& service);


}  // namespace gpuwarm
