#pragma once
// Scans kernel log text for the NVIDIA lines the runbook cares about. Input
// may be /dev/kmsg records, `dmesg` output (plain, -T or -x), `journalctl -k` (short forms)
// output or syslog's kern.log (its lines may keep the kernel's time stamp);
// each line's prefix is stripped before matching.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
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
  bool newer_left = false;   // stopped at the first record logged after the read began
};
// The records of an open, non-blocking /dev/kmsg until it is caught up (EAGAIN), for at most `limit`.
// `later_fd`, when not -1: another descriptor of the device, moved to its end (SEEK_END) before the read
// began. The first record it yields is the first one logged since, and the read stops there: a kernel
// logging as fast as it is read (an Xid storm) cannot keep the read from the end of the log it had.
KmsgRecords read_kmsg_records(int fd, std::chrono::milliseconds limit, std::size_t max_bytes, int later_fd = -1);
// The sequence number of a /dev/kmsg record ("prio,seq,usec,flags;text"); nothing for any other text.
std::optional<std::uint64_t> kmsg_sequence(std::string_view record);

}  // namespace gpuwarm
