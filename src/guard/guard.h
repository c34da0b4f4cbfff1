#pragma once
// `gpuwarm guard`: may nvidia-persistenced start now? Run as the unit's
// ExecCondition=, where exit 0 lets the start go on, 1-254 skips the unit
// cleanly (inactive, not failed: a deploy is not rolled back) and 255 or a
// crash fails it. So every "no" has its own code in 10-19, and nothing here
// ever yields 255.

#include <optional>
#include <string>
#include <vector>

#include "snapshot/snapshot.h"

namespace gpuwarm::guard {

enum class Code : int {
  go = 0,
  internal_error = 1,      // the guard itself failed: skip rather than fail the unit
  usage = 2,               // bad command line (also a skip)
  no_module = 10,          // the nvidia kernel module is not loaded
  version_mismatch = 11,   // loaded module and user-space driver differ: reboot or reload-modules
  api_mismatch_logged = 12,  // "NVRM: API mismatch" since the module loaded, by what may be the daemon
  no_device_nodes = 13,    // /dev/nvidiactl or every /dev/nvidiaN missing
  device_access = 14,      // the daemon's user cannot open a device node
};

struct CodeInfo {
  Code code;
  const char* name;     // "version-mismatch"
  const char* meaning;  // for --help and the README
};
const std::vector<CodeInfo>& codes();

struct UserSpaceVersion {
  std::string source;                // "libnvidia-ml", "libnvidia-cfg", "nvidia-persistenced --version"
  std::optional<std::string> version;
  std::string missing;               // why there is no version (not installed, unreadable)
  // Whether it must match the module. The daemon's own version need not: Debian and NixOS package it apart
  // from the driver (Debian 12: 535.171.04 beside driver 535.216.01), and it works through libnvidia-cfg,
  // which is compared. Shown, never a reason to skip.
  bool compared = true;
};

struct NodeAccess {
  std::string path;    // host path, e.g. /dev/nvidia0
  bool usable = true;  // read+write for the daemon's user (mode bits or ACL, owner, groups)
  std::string why;     // when not usable, or (usable) why it could not be checked
  bool checked = true;
};

// What decides who may open a device node: its mode bits, owner and group, and its POSIX access ACL (the
// bytes of its system.posix_acl_access attribute, as the kernel hands them out; empty when it has none).
struct NodePermissions {
  unsigned mode = 0;
  unsigned owner = 0;
  unsigned group = 0;
  std::string acl;
};

// Whether `uid`, in `groups` (its primary group included), may read and write the node, decided as the kernel
// decides it: by the ACL where there is one (udev's uaccess tag, a site's setfacl grant), else by the mode bits;
// root always may. Pure. An ACL whose bytes are not one leaves it unchecked (usable, with why).
NodeAccess node_access_for(const std::string& path, const NodePermissions& node, unsigned uid,
                           const std::vector<unsigned>& groups);

struct GuardFacts {
  DriverFacts driver;
  std::vector<UserSpaceVersion> user_space;
  KernelLogFacts kernel_log;
  // Every libnvidia-cfg.so.1 and libnvidia-ml.so.1 the loader could give the daemon: a logged "API mismatch"
  // for a version none of them has was not caused by this host's driver.
  LoadableCopies loadable;
  std::string user;                 // the daemon's user; "" = access not checked
  std::vector<NodeAccess> access;   // per device node, for `user`
  std::string access_unchecked;     // why a --user's access could not be checked (its lookup did not answer)
};

struct GuardResult {
  Code code = Code::go;
  std::string line;                  // the one line for the journal
  std::vector<std::string> details;  // what was checked, for --verbose and --json
};

// Pure: the checks in order (module, versions, logged mismatch, nodes, access).
GuardResult evaluate(const GuardFacts& facts);

}  // namespace gpuwarm::guard
