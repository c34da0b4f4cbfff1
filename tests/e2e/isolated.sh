#!/bin/sh
# Runs a test command in mount and PID namespaces of its own, with an empty tmpfs on /run and a /proc of its own:
# the gpuwarm runs it starts take their own /run locks (gpuwarm-timing.lock, gpuwarm-fix.lock) and a probe's scan
# for processes holding the GPUs sees only the test's processes. Suites that time the GPUs can then run side by
# side: none waits for another's timing, stands aside from it, or counts another's stand-in daemon as a holder.
# Nothing of the namespaces outlives the command: the shell below is their PID 1, and the kernel ends every
# process left in them when it exits; --kill-child ends it if ctest kills unshare (a timeout).
# Usage: isolated.sh COMMAND [ARG...]      (root; tests/CMakeLists.txt checks at configure that it works here)
set -eu
exec unshare --mount --propagation private --pid --fork --mount-proc --kill-child \
  sh -c 'mount -t tmpfs -o mode=0755,nosuid,nodev gpuwarm-test-run /run && mkdir -m 1777 /run/lock &&
         "$@"; exit $?' isolated.sh "$@"
