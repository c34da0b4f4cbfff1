#pragma once
// Scans kernel log text for the NVIDIA lines the runbook cares about. Input
// may be /dev/kmsg records, `dmesg` output or `journalctl -k` output; each
// line's prefix is stripped before matching.

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "core/paths.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// Pure: parses already-read log text. `records` counts lines seen.
KernelLogFacts scan_kernel_log(std::string_view text);

// Reads /dev/kmsg (under paths) without blocking until EAGAIN, or `file` when
// given, then scans it. Unreadable input becomes a missing `source` with the
// reason ("needs root" for EPERM/EACCES on /dev/kmsg).
KernelLogFacts read_kernel_log(const Paths& paths, const std::string& file);

struct KmsgRecords {
  std::string text;
  bool cut = false;          // past max_bytes: the oldest records went
  bool out_of_time = false;  // stopped at the limit before the device was caught up
};
// The records of an open, non-blocking /dev/kmsg until it is caught up (EAGAIN), for at most `limit`.
KmsgRecords read_kmsg_records(int fd, std::chrono::milliseconds limit, std::size_t max_bytes);

}  // namespace gpuwarm
