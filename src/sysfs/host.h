#pragma once
// What kind of node this is and who uses its GPUs: the SMBIOS chassis, job
// schedulers' node daemons, and every process holding /dev/nvidiaN open.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/paths.h"
#include "core/result.h"
#include "snapshot/snapshot.h"
#include "sysfs/processes.h"

namespace gpuwarm {

// /sys/class/dmi/id/chassis_type (SMBIOS; most VMs have none).
Fact<unsigned> read_chassis_type(const Paths& paths);

// The systemd a tree ships, by its libsystemd-shared-NNN*.so (Debian's /usr/lib/<triplet>/systemd/, or
// /usr/lib/systemd/, /usr/lib64/systemd/, /lib/systemd/): under --root, the systemd that will run the tree, which
// may not be the one gpuwarm reaches over D-Bus (an image built on another host). None when not found.
std::optional<unsigned> tree_systemd_version(const Paths& paths);

// Node daemons of job schedulers (slurmd, kubelet, ...) among `processes` (list_processes), as
// "name (pid N)"; unknown when /proc could not be listed or listed no process.
Fact<std::vector<std::string>> find_schedulers(const Paths& paths, const Result<std::vector<ProcessName>>& processes);

struct DeviceHolder {
  int pid = 0;
  std::string comm;
  std::vector<std::string> devices;  // the NVIDIA nodes' paths as its fds name them, each once, in fd order
  std::vector<unsigned> gpu_minors;  // the GPUs among them (held_gpu_minor), sorted
};

struct DeviceScan {
  std::vector<DeviceHolder> holders;
  unsigned unreadable = 0;  // processes whose fd directory could not be read
  std::string unlisted;     // why /proc could not be listed in full ("" when it was): then `holders` says nothing
};

// Processes holding one of the NVIDIA driver's nodes open (is_nvidia_device: by number, so a node renamed in a
// container counts), except `skip`. Reading other users' fds needs root; a process that exits during the walk
// is neither a holder nor unreadable.
DeviceScan scan_nvidia_holders(const Paths& paths, const std::vector<int>& skip);

struct ClientScan {
  std::vector<GpuClient> clients;
  unsigned unreadable = 0;  // processes whose fd directory could not be read
  std::string unlisted;     // why /proc could not be listed in full ("" when it was): then `clients` says nothing
};

// Processes holding a GPU's node (195:N, or /dev/nvidiaN where no number could be read), except `skip`
// (gpuwarm itself, the daemon, whose view is reported apart). Reading other users' fds needs root.
ClientScan scan_gpu_clients(const Paths& paths, const std::vector<int>& skip);

}  // namespace gpuwarm
