#pragma once
// Process exit codes. They are part of the interface (README, --help, scripts
// and Ansible key on them): never renumber a released code.

namespace gpuwarm {

enum class ExitCode : int {
  healthy = 0,          // nothing to do
  tool_error = 1,       // gpuwarm itself could not do its job (bad input file, I/O error)
  usage = 2,            // bad command line
  action_needed = 3,    // the runbook applies: `gpuwarm fix` would act
  reboot_pending = 4,   // kernel module and user space differ: finish the driver update
  routed_elsewhere = 5, // driver install, thermal/power (RAS) or pinned clocks: not a persistence fix
  no_service_manager = 6,  // fix: systemd not reachable, nothing changed
  locked = 7,              // fix: another gpuwarm fix holds the lock
  verify_failed = 8,       // fix/verify: a verification check failed
  cannot_tell = 9,         // a fact the verdict needs could not be read: never "healthy" on an unknown
};

constexpr int to_int(ExitCode code) { return static_cast<int>(code); }

}  // namespace gpuwarm
