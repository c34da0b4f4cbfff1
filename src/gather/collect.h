#pragma once
// Gathers a Snapshot of this node. Each source is read once; a source that
// fails becomes missing facts with reasons, so collection itself never fails.

#include <string>

#include "core/paths.h"
#include "snapshot/snapshot.h"
#include "systemd/service_manager.h"

namespace gpuwarm {

struct CollectOptions {
  std::string root = "/";     // --root: where /proc, /sys, /dev and /run are read
  bool root_trusted = false;  // --trust-root: as root, load the root's libnvidia-ml (core/fs.h untrusted_root_for_code)
  std::string kernel_log;     // --kernel-log FILE instead of /dev/kmsg
  std::string nvml_library;   // --nvml PATH
  bool use_systemd = true;    // --no-systemd clears it
  std::string systemd_not_asked = "--no-systemd: service manager not asked";  // the unit's facts say this
  bool full = true;           // every NVML fact; diagnose reads only what rules need unless --full
  bool check_only = false;    // `gpuwarm check`: only what a scheduler's health check decides on
  bool scan_clients = false;  // list every process holding a GPU even where persistence is on (reset)
  bool pci_switches = false;  // look for NVSwitches among the PCI devices (reset)
  // Record what `fix` plans from (the unit's text, gpuwarm's drop-in, the daemon's account). Off for the
  // watchers (metrics, check) that collect every few seconds and never plan a fix.
  bool fix_inputs = true;
  bool one_shot = false;      // the process exits after this snapshot (see nvml::CollectOptions)
  double nvml_timeout_s = 45; // --nvml-timeout: NVML (load, init, every GPU) must answer within this
  // A reading that stands aside: NVML stays closed while a probe times the GPUs or a change needs them free
  // (cli/node_lock.h). Set by the commands that only read; never by those holding the node's lock.
  bool stand_aside = false;
  std::string nvml_not_opened;  // why NVML is left closed in this collection ("": open it)
  std::string nvml_not_opened_by;  // the lock held ("timing", "changing", "waiting") or "untrusted-root", for one-line renderings
};

// `services` may be null when use_systemd is false.
Snapshot collect_snapshot(const CollectOptions& options, ServiceManager* services);

// NVML alone, on its own thread, within options.nvml_timeout_s. Past the
// deadline every NVML fact is missing with "NVML did not answer in N s" and
// `timed_out_at` says what NVML was doing (the thread is abandoned).
NvmlFacts collect_nvml_with_deadline(const CollectOptions& options);

}  // namespace gpuwarm
