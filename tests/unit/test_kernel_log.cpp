#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/paths.h"
#include "sysfs/kernel_log.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

// Old form (<= 570), as dmesg prints it.
const char* k_old_form =
    "[   10.1] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  570.124.04  Tue Mar  4 2025\n"
    "[ 5000.2] NVRM: API mismatch: the client has the version 570.133.07, but\n"
    "[ 5000.2] NVRM: this kernel module has the version 570.124.04.  Please\n"
    "[ 5000.2] NVRM: make sure that this kernel module and all NVIDIA driver\n"
    "[ 5000.2] NVRM: components have the same version.\n";

// New form (>= 575), as journalctl -k prints it.
const char* k_new_form =
    "Jun 01 12:00:00 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 271345)\n"
    "Jun 01 12:00:00 gpu1 kernel: NVRM: has the version 580.95.05, but this kernel module has\n"
    "Jun 01 12:00:00 gpu1 kernel: NVRM: the version 580.82.07.  Please make sure that this\n"
    "Jun 01 12:00:00 gpu1 kernel: NVRM: kernel module and all NVIDIA driver components\n"
    "Jun 01 12:00:00 gpu1 kernel: NVRM: have the same version.\n";

TEST(KernelLog, OldMismatchForm) {
  KernelLogFacts f = scan_kernel_log(k_old_form);
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_EQ(f.mismatches[0].client_version, "570.133.07");
  EXPECT_EQ(f.mismatches[0].kernel_version, "570.124.04");
  EXPECT_EQ(f.mismatches[0].client, "");
  EXPECT_TRUE(f.mismatches[0].after_module_load);
  EXPECT_TRUE(f.loaded_version.is("570.124.04"));
  EXPECT_EQ(f.records, 2u);  // the load, and the mismatch's four lines: one record, the same kernel time stamp
}

TEST(KernelLog, NewMismatchForm) {
  KernelLogFacts f = scan_kernel_log(k_new_form);
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_EQ(f.mismatches[0].client, "'nvidia-persiste' (pid 271345)");
  EXPECT_EQ(f.mismatches[0].client_version, "580.95.05");
  EXPECT_EQ(f.mismatches[0].kernel_version, "580.82.07");
}

// The client's version is whatever text the client sent: read exactly between the kernel's own words, never
// as the first version-like token (which, for a client asking with "x", is the module's own version).
TEST(KernelLog, TheClientsVersionIsReadExactlyWhateverItHolds) {
  auto mismatch = [](const std::string& comm, const std::string& sent) {
    std::string log = "NVRM: API mismatch: the client '" + comm + "' (pid 4242)\n"
                      "NVRM: has the version " + sent + ", but this kernel module has\n"
                      "NVRM: the version 580.159.04.  Please make sure that this\n";
    KernelLogFacts f = scan_kernel_log(log);
    EXPECT_EQ(f.mismatches.size(), 1u);
    return f.mismatches.empty() ? ApiMismatch{} : f.mismatches[0];
  };
  for (const std::string sent : {"x", "", "580.159.04x", "1.2.3.4.5", "590.10.01", "v9 (pid 1) has the version 2.2"}) {
    SCOPED_TRACE(sent);
    const ApiMismatch m = mismatch("nvidia-persiste", sent);
    EXPECT_TRUE(m.client_version_exact);
    EXPECT_EQ(m.client_version, sent);
    EXPECT_EQ(m.kernel_version, "580.159.04");
    EXPECT_EQ(m.client, "'nvidia-persiste' (pid 4242)");
  }
  // Text that copies the kernel's own words: the last of them are the kernel's.
  const ApiMismatch copied = mismatch("nvidia-persiste", "9.9.9, but this kernel module has the version 1.1.1");
  EXPECT_EQ(copied.client_version, "9.9.9, but this kernel module has the version 1.1.1");
  EXPECT_EQ(copied.kernel_version, "580.159.04");
  // A name that holds the kernel's words before the version cannot reach its pid (15 bytes at most).
  EXPECT_EQ(mismatch("(pid 1) has th", "590.10.01").client_version, "590.10.01");
  // The old form, and one worded otherwise (the versions as well as they can be told, not exact).
  KernelLogFacts old_form = scan_kernel_log(k_old_form);
  ASSERT_EQ(old_form.mismatches.size(), 1u);
  EXPECT_TRUE(old_form.mismatches[0].client_version_exact);
  KernelLogFacts other = scan_kernel_log("NVRM: API mismatch: client 590.10.01 against module 580.159.04\n");
  ASSERT_EQ(other.mismatches.size(), 1u);
  EXPECT_FALSE(other.mismatches[0].client_version_exact);
}

// The driver prints the whole mismatch at once: /dev/kmsg keeps it as one record, its new lines escaped.
std::string kmsg_record(const std::string& seq, const std::vector<std::string>& lines) {
  std::string out = "3," + seq + ",5000000,-;";
  for (std::size_t k = 0; k < lines.size(); ++k) {
    out += (k == 0 ? "" : "\\x0a") + lines[k];
  }
  return out + "\n";
}

TEST(KernelLog, OneKmsgRecordHoldsTheWholeMismatch) {
  for (const std::string sent : {"x", "", "590.10.01"}) {
    SCOPED_TRACE(sent);
    const std::string log =
        "6,1,100,-;NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n" +
        kmsg_record("2", {"NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                          "NVRM: has the version " + sent + ", but this kernel module has",
                          "NVRM: the version 580.159.04.  Please make sure that this",
                          "NVRM: kernel module and all NVIDIA driver components", "NVRM: have the same version."});
    KernelLogFacts f = scan_kernel_log(log);
    ASSERT_EQ(f.mismatches.size(), 1u);
    EXPECT_EQ(f.records, 2u);
    EXPECT_TRUE(f.mismatches[0].client_version_exact);
    EXPECT_EQ(f.mismatches[0].client_version, sent);
    EXPECT_EQ(f.mismatches[0].client, "'nvidia-persiste' (pid 812)");
    EXPECT_EQ(f.mismatches[0].kernel_version, "580.159.04");
    EXPECT_TRUE(f.mismatches[0].after_module_load);
  }
  KernelLogFacts old_form = scan_kernel_log(kmsg_record(
      "7", {"NVRM: API mismatch: the client has the version 570.133.07, but",
            "NVRM: this kernel module has the version 570.124.04.  Please",
            "NVRM: make sure that this kernel module and all NVIDIA driver", "NVRM: components have the same version."}));
  ASSERT_EQ(old_form.mismatches.size(), 1u);
  EXPECT_TRUE(old_form.mismatches[0].client_version_exact);
  EXPECT_EQ(old_form.mismatches[0].client_version, "570.133.07");
  EXPECT_EQ(old_form.mismatches[0].kernel_version, "570.124.04");
}

// A client's version is any text it sent, new lines included: a line of it that reads like a module load is
// part of its mismatch, never a load that would set the daemon's own earlier refusal aside.
TEST(KernelLog, AModuleLoadInsideAClientsVersionIsNoLoad) {
  const std::string daemon_refused =
      "6,1,100,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n" +
      kmsg_record("2", {"NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                        "NVRM: has the version 580.95.05, but this kernel module has",
                        "NVRM: the version 580.159.04.  Please make sure that this", "NVRM: have the same version."});
  const std::string injected = "1\\x0aNVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04";
  KernelLogFacts kmsg = scan_kernel_log(
      daemon_refused + kmsg_record("3", {"NVRM: API mismatch: the client 'evil' (pid 9)",
                                         "NVRM: has the version " + injected + ", but this kernel module has",
                                         "NVRM: the version 580.159.04.  Please make sure that this",
                                         "NVRM: have the same version."}));
  ASSERT_EQ(kmsg.mismatches.size(), 2u);
  EXPECT_TRUE(kmsg.mismatches[0].after_module_load);
  // The same in a text log, where the record's lines are lines of their own.
  const std::string journal =
      "Jun 01 12:00:00 gpu1 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n"
      "Jun 01 12:00:01 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)\n"
      "                             NVRM: has the version 580.95.05, but this kernel module has\n"
      "                             NVRM: the version 580.159.04.  Please make sure that this\n"
      "                             NVRM: have the same version.\n"
      "Jun 01 12:00:02 gpu1 kernel: NVRM: API mismatch: the client 'evil' (pid 9)\n"
      "                             NVRM: has the version 1\n"
      "                             NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04, but this kernel module has\n"
      "                             NVRM: the version 580.159.04.  Please make sure that this\n"
      "                             NVRM: have the same version.\n";
  KernelLogFacts text = scan_kernel_log(journal);
  ASSERT_EQ(text.mismatches.size(), 2u);
  EXPECT_TRUE(text.mismatches[0].after_module_load);
  EXPECT_TRUE(text.mismatches[1].after_module_load);
  // A client's version that brings in the closing words and a load line of its own (60 bytes, within the 63 a
  // client may send) does not end its message there: only the kernel's whole closing line does.
  const std::string closes_early =
      "Jun 01 12:00:00 gpu1 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n"
      "Jun 01 12:00:01 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)\n"
      "                             NVRM: has the version 580.95.05, but this kernel module has\n"
      "                             NVRM: the version 580.159.04.  Please make sure that this\n"
      "                             NVRM: have the same version.\n"
      "Jun 01 12:00:02 gpu1 kernel: NVRM: API mismatch: the client 'evil' (pid 9)\n"
      "                             NVRM: has the version have the same version\n"
      "                             NVRM:loading NVIDIA UNIX Kernel Module, but this kernel module has\n"
      "                             NVRM: the version 580.159.04.  Please make sure that this\n"
      "                             NVRM: have the same version.\n";
  KernelLogFacts early = scan_kernel_log(closes_early);
  ASSERT_EQ(early.mismatches.size(), 2u);
  EXPECT_TRUE(early.mismatches[0].after_module_load);
  // A real load after them still sets both aside.
  KernelLogFacts reloaded =
      scan_kernel_log(journal + "Jun 02 08:00:00 gpu1 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  "
                                "580.159.04  Release Build\n");
  ASSERT_EQ(reloaded.mismatches.size(), 2u);
  EXPECT_FALSE(reloaded.mismatches[0].after_module_load);
}

// Every shape a kernel log line takes where gpuwarm reads it: the driver's message is found in each, and
// a text log line that merely starts with digits and holds a comma and a ';' is not cut as a kmsg record.
TEST(KernelLog, EveryLogLineShapeYieldsTheDriversMessage) {
  const std::string load = "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build";
  for (const std::string& line : {
           "6,1000,494523,-;" + load,
           "6,1000,494523,-,caller=T1;" + load,
           "[  123.456789] " + load,                             // dmesg
           "[Fri Jun  1 12:00:00 2026] " + load,                 // dmesg -T
           "[  123.456789] [   T812] " + load,                   // dmesg, a CONFIG_PRINTK_CALLER kernel
           "<3>[  123.456789] " + load,                          // dmesg -r
           "2026-06-01T12:00:00,123456+00:00 " + load,           // dmesg --time-format=iso
           "kern  :info  : [    5.100000] " + load,             // dmesg -x
           "kern  :info  : " + load,                             // dmesg -x -t
           "Jun 01 12:00:00 gpu1 kernel: " + load,               // journalctl -k
           "Mon 2026-06-01 12:00:00 UTC gpu1 kernel: " + load,   // -o short-full
           "1717243200.123456 gpu1 kernel: " + load,             // -o short-unix
           "[  123.456789] gpu1 kernel: " + load,                // -o short-monotonic
           "Jun  1 12:00:00 gpu1 kernel: [  123.456789] " + load,  // syslog's kern.log
           "Jun  1 12:00:00 gpu1 kernel: [  123.456789][  T812] " + load,
           "2026-06-01T12:00:00.123456+00:00 gpu1 kernel: [ 12.3] " + load,  // RSYSLOG_FileFormat
           "Jun  1 12:00:00 gpu1 kernel[0]: " + load,                        // syslog-ng
           "Jun  1 12:00:00 gpu1 kern.warn kernel: [ 12.3] " + load,         // busybox syslogd
           "Jun 01 12:00:00 kernel: " + load,                                // journalctl --no-hostname
           "Mon 2026-06-01 12:00:00 -03 gpu1 kernel: " + load,               // -o short-full, an offset zone
           "Mon 2026-06-01 12:00:00 ChST gpu1 kernel: " + load,
           "<3>1 2026-06-01T12:00:00.123Z gpu1 kernel - - - [ 12.3] " + load,  // RFC 5424
           load,                                                 // dmesg -t, journalctl -o cat
       }) {
    EXPECT_TRUE(scan_kernel_log(line).loaded_version.is("580.159.04")) << line;
  }
  // Not the driver's: another subsystem, and text a user chose inside another message (a path the kernel
  // quotes when a program is run with no argv), however the line is prefixed.
  const std::string injected = "process 'x' launched '/tmp/a gpu1 kernel: " + load + "' with NULL argv";
  const std::string injected_time = "process 'x' launched '/tmp/a Jun 01 12:00:00 gpu1 kernel: " + load + "'";
  for (const std::string& line : {
           "Jun 01 12:00:00 gpu1 kernel: [drm] " + load,
           "Jun 01 12:00:00 gpu1 kernel: usb 1-1: " + load,
           "[  123.456789] " + injected,
           "[  123.456789] " + injected_time,
           "[Fri Jun  1 12:00:00 2026] " + injected,
           "kern  :warn  : [  123.456789] " + injected,
           injected,
           injected_time,
           "Jun 01 12:00:00 gpu1 kernel: " + injected,
           "Jun 01 12:00:00 gpu1 kernel: [  123.456789] " + injected,
           "6,1000,494523,-;" + injected,
       }) {
    EXPECT_FALSE(scan_kernel_log(line).loaded_version.has()) << line;
  }
  // A date-first text line holding ", " and ";" is a text line: its message is read whole.
  const auto iso = scan_kernel_log(
      "2026-06-01T12:00:00+0000 gpu1 kernel: NVRM: API mismatch: the client 'a,b;c' (pid 7) has the version "
      "580.95.05, but this kernel module has the version 580.82.07.  Please make sure that this kernel module "
      "and all NVIDIA driver components have the same version.\n");
  ASSERT_EQ(iso.mismatches.size(), 1u);
  EXPECT_EQ(iso.mismatches[0].client, "'a,b;c' (pid 7)");
  EXPECT_EQ(iso.mismatches[0].client_version, "580.95.05");
  EXPECT_TRUE(iso.mismatches[0].client_version_exact);
  // A client named with " kernel: " in a dmesg text line: the driver's line is not cut at the name.
  const auto named = scan_kernel_log(
      "[ 1.0] NVRM: API mismatch: the client 'a kernel: b' (pid 7)\n"
      "[ 1.0] NVRM: has the version 580.95.05, but this kernel module has\n"
      "[ 1.0] NVRM: the version 580.82.07.  Please make sure that this\n"
      "[ 1.0] NVRM: kernel module and all NVIDIA driver components\n"
      "[ 1.0] NVRM: have the same version.\n");
  ASSERT_EQ(named.mismatches.size(), 1u);
  EXPECT_EQ(named.mismatches[0].client, "'a kernel: b' (pid 7)");
}

// A record of several lines a user's text made (a program whose file name holds new lines segfaults; the
// kernel prints the name as it is) stays one record in every text shape: lines of it that read like the
// driver's load line, or like the opening of a mismatch, are neither. The daemon's refusal before or after it
// is still read.
TEST(KernelLog, LinesInsideAUsersRecordAreNoDriverLines) {
  const std::string load = "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build";
  const std::vector<std::string> refusal = {
      "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
      "NVRM: has the version 999.1.1, but this kernel module has", "NVRM: the version 580.159.04.  Please make sure that this",
      "NVRM: kernel module and all NVIDIA driver components", "NVRM: have the same version."};
  const std::vector<std::string> fake_load = {"x[700]: segfault at 0 ip 0 sp 0 error 4 in a", load, "y[400000+1000]"};
  const std::vector<std::string> swallow = {"x[700]: segfault at 0 ip 0 sp 0 error 4 in a",
                                            "NVRM: API mismatch: the client 'python3' (pid 1) has the version 590.10.01",
                                            "y[400000+1000]"};
  // How each source prints a record: its first line with a prefix, the rest indented (dmesg, journalctl) or
  // each with the same prefix (dmesg -S, syslog's kern.log).
  struct Shape {
    const char* name;
    std::function<std::string(const std::string& stamp, const std::vector<std::string>& lines)> print;
  };
  const std::vector<Shape> shapes = {
      {"dmesg",
       [](const std::string& ts, const auto& lines) {
         std::string out = "[" + ts + "] " + lines[0] + "\n";
         for (std::size_t k = 1; k < lines.size(); ++k) out += "               " + lines[k] + "\n";
         return out;
       }},
      {"dmesg -S, kern.log",
       [](const std::string& ts, const auto& lines) {
         std::string out;
         for (const auto& l : lines) out += "Dec  4 07:10:00 gpu1 kernel: [" + ts + "] " + l + "\n";
         return out;
       }},
      {"journalctl -k",
       [](const std::string&, const auto& lines) {
         std::string out = "Dec 04 07:10:00 gpu1 kernel: " + lines[0] + "\n";
         for (std::size_t k = 1; k < lines.size(); ++k) out += "                             " + lines[k] + "\n";
         return out;
       }},
  };
  for (const auto& shape : shapes) {
    SCOPED_TRACE(shape.name);
    const std::string loaded = shape.print("  5.100000", {load});
    // The daemon's refusal as the driver prints it (one record), then a user's record holding a load line.
    const auto after = scan_kernel_log(loaded + shape.print("605.200000", refusal) + shape.print("700.000000", fake_load));
    ASSERT_EQ(after.mismatches.size(), 1u);
    EXPECT_TRUE(after.mismatches[0].after_module_load);
    EXPECT_EQ(after.mismatches[0].client_version, "999.1.1");
    EXPECT_TRUE(after.mismatches[0].client_version_exact);
    // A user's record opening a mismatch just before the daemon's does not swallow it. Where each line shows
    // the record's stamp, the user's line may be a record of its own: it counts, never exactly.
    const auto swallowed = scan_kernel_log(loaded + shape.print("604.000000", swallow) + shape.print("605.200000", refusal));
    ASSERT_EQ(swallowed.mismatches.size(), std::string(shape.name) == "dmesg -S, kern.log" ? 2u : 1u);
    const auto& daemon = swallowed.mismatches.back();
    EXPECT_EQ(daemon.client, "'nvidia-persiste' (pid 812)");
    EXPECT_EQ(daemon.client_version, "999.1.1");
    EXPECT_TRUE(daemon.client_version_exact);
    if (swallowed.mismatches.size() == 2) {
      EXPECT_EQ(swallowed.mismatches[0].client, "'python3' (pid 1)");
      EXPECT_FALSE(swallowed.mismatches[0].client_version_exact);
    }
  }
}

// The kernel logs records in the same microsecond often (dozens share one stamp at boot on the lent H200, and
// pairs later on). Where every line shows its record's stamp (dmesg -S, kern.log), a record sharing the stamp of
// the one before cannot be told from that record's own next line: the driver's refusal there still counts (not
// exactly, so the guard cannot set it aside), and a load line there never makes a refusal history.
TEST(KernelLog, ADriverRecordSharingAStampWithTheOneBeforeIsNotLost) {
  const std::string load =
      "Dec  4 07:00:00 gpu1 kernel: [    5.100000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  "
      "Release Build\n";
  const std::string other = "Dec  4 07:10:00 gpu1 kernel: [  605.200000] nvidia-uvm: Loaded the UVM driver\n";
  std::string refusal;
  for (const char* line : {"NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                           "NVRM: has the version 580.95.05, but this kernel module has",
                           "NVRM: the version 580.159.04.  Please make sure that this",
                           "NVRM: kernel module and all NVIDIA driver components", "NVRM: have the same version."}) {
    refusal += std::string("Dec  4 07:10:00 gpu1 kernel: [  605.200000] ") + line + "\n";
  }
  const auto f = scan_kernel_log(load + other + refusal);
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_EQ(f.mismatches[0].client, "'nvidia-persiste' (pid 812)");
  EXPECT_EQ(f.mismatches[0].client_version, "580.95.05");
  EXPECT_EQ(f.mismatches[0].kernel_version, "580.159.04");
  EXPECT_FALSE(f.mismatches[0].client_version_exact);
  EXPECT_TRUE(f.mismatches[0].after_module_load);
  EXPECT_EQ(f.mismatches[0].shown_client_version(), "? (perhaps 580.95.05)");

  // A load line sharing the stamp of the record before it is not taken: the refusal stays live.
  const auto after = scan_kernel_log(load + refusal +
                                     "Dec  4 07:20:00 gpu1 kernel: [  700.000000] x[700]: segfault at 0 in a\n"
                                     "Dec  4 07:20:00 gpu1 kernel: [  700.000000] NVRM: loading NVIDIA UNIX x86_64 "
                                     "Kernel Module  580.159.04  Release Build\n");
  ASSERT_EQ(after.mismatches.size(), 1u);
  EXPECT_TRUE(after.mismatches[0].after_module_load);
  EXPECT_TRUE(after.mismatches[0].client_version_exact);
  EXPECT_TRUE(after.loaded_version.is("580.159.04"));  // the first load, taken
  // A log whose only load line shares its stamp says why no loaded version was taken.
  const auto untaken = scan_kernel_log(other + "Dec  4 07:10:00 gpu1 kernel: [  605.200000] NVRM: loading NVIDIA "
                                               "UNIX x86_64 Kernel Module  580.159.04  Release Build\n");
  EXPECT_FALSE(untaken.loaded_version.has());
  EXPECT_NE(untaken.loaded_version.missing.find("shares its time stamp with the record before it"),
            std::string::npos)
      << untaken.loaded_version.missing;

  // In dmesg's own shape a record's later lines are indented: one that opens a mismatch is that record's text
  // (a user's file name), whatever records share the stamp.
  const auto indented = scan_kernel_log(
      "[    5.100000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n"
      "[  605.200000] usb 1-1: new device\n"
      "[  605.200000] x[700]: segfault at 0 ip 0 sp 0 error 4 in a\n"
      "               NVRM: API mismatch: the client 'nvidia-persiste' (pid 1) has the version 1, but this kernel "
      "module has the version 580.159.04.  Please make sure that this kernel module and all NVIDIA driver "
      "components have the same version.\n");
  EXPECT_TRUE(indented.mismatches.empty());

  // Two refusals in one microsecond: both count.
  const auto twice = scan_kernel_log(load + refusal + refusal);
  ASSERT_EQ(twice.mismatches.size(), 2u);
  for (const auto& m : twice.mismatches) {
    EXPECT_EQ(m.client, "'nvidia-persiste' (pid 812)");
    EXPECT_EQ(m.client_version, "580.95.05");
    EXPECT_EQ(m.kernel_version, "580.159.04");
  }
  EXPECT_TRUE(twice.mismatches[0].client_version_exact);
}

// dmesg -S (and -r) give every line of a record the record's stamp; a user's text after it may forge a journal
// header with a stamp of its own ("h kernel: [ 700.100001] NVRM: loading ..."), which must not make the line a
// record of its own. With -T (-S -T) or --time-format=iso the stamp is the date: lines of one second group.
TEST(KernelLog, AForgedStampInsideARecordDoesNotMakeALoadLine) {
  const std::string load = "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build";
  const std::vector<std::string> refusal = {
      "NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)", "NVRM: has the version 580.95.05, but",
      "NVRM: this kernel module has the version 580.159.04.  Please",
      "NVRM: make sure that this kernel module and all NVIDIA driver", "NVRM: components have the same version."};
  struct Case {
    const char* name;
    std::string loaded, refused, segfault;  // each line's prefix
  };
  const std::vector<Case> cases = {
      {"dmesg -S", "[    5.000000] ", "[  605.200000] ", "[  700.100000] "},
      {"dmesg -S -r", "<6>[    5.000000] ", "<3>[  605.200000] ", "<6>[  700.100000] "},
      {"dmesg -S -T", "[Thu Dec  4 07:00:00 2026] ", "[Thu Dec  4 07:10:00 2026] ", "[Thu Dec  4 07:20:00 2026] "},
      {"dmesg -S --time-format=iso", "2026-12-04T07:00:00,000000+00:00 ", "2026-12-04T07:10:00,200000+00:00 ",
       "2026-12-04T07:20:00,100000+00:00 "},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string log = c.loaded + load + "\n";
    for (const auto& line : refusal) log += c.refused + line + "\n";
    for (const std::string& forged : std::vector<std::string>{"h kernel: [  700.100001] " + load, load}) {
      const std::string text = log + c.segfault + "a.out[999]: segfault at 0 ip 0 sp 0 error 4 in x\n" + c.segfault +
                               forged + "\n" + c.segfault + "[55d0+1000]\n";
      const auto f = scan_kernel_log(text);
      ASSERT_EQ(f.mismatches.size(), 1u) << forged;
      EXPECT_TRUE(f.mismatches[0].after_module_load) << forged;
      EXPECT_EQ(f.mismatches[0].client_version, "580.95.05");
    }
  }
}

// A line with no prefix amid lines that have one (a syslog daemon writing a user's file name as it is) is the
// text of the record before it, never a load line of its own.
TEST(KernelLog, ALineWithNoPrefixAmidALogIsItsRecordsText) {
  const std::string load = "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.54.14  Release Build";
  const auto f = scan_kernel_log(
      "Dec  4 07:00:00 gpu1 kernel: " + load + "\n"
      "Dec  4 07:10:00 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 1234) has the version "
      "550.54.15, but this kernel module has the version 550.54.14.  Please make sure that this kernel module and "
      "all NVIDIA driver components have the same version.\n"
      "Dec  4 07:20:00 gpu1 kernel: a.out[999]: segfault at 0 ip 0000 sp 0000 error 4 in x\n" +
      load + "\n");
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_TRUE(f.mismatches[0].after_module_load);
  EXPECT_EQ(f.records, 3u);
}

// The lent H200's own shape: a record with an indented line, then a refusal logged in the same microsecond.
TEST(KernelLog, ARefusalAfterAnIndentedRecordOfTheSameStampCounts) {
  const auto f = scan_kernel_log(
      "[    5.100000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n"
      "[  605.200000] x[700]: segfault at 0 ip 0 sp 0 error 4 in a\n"
      "               b[55+1000]\n"
      "[  605.200000] NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)\n"
      "               NVRM: has the version 580.95.05, but this kernel module has\n"
      "               NVRM: the version 580.159.04.  Please make sure that this\n"
      "               NVRM: kernel module and all NVIDIA driver components\n"
      "               NVRM: have the same version.\n");
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_EQ(f.mismatches[0].client, "'nvidia-persiste' (pid 812)");
  EXPECT_EQ(f.mismatches[0].client_version, "580.95.05");
  EXPECT_EQ(f.mismatches[0].kernel_version, "580.159.04");
  EXPECT_FALSE(f.mismatches[0].client_version_exact);
}

// Records sharing one stamp are read in time linear in their number: a log of 200000 such lines (a local user
// can write them into kern.log with `logger -t kernel`) must not hold the guard past its start timeout.
TEST(KernelLog, AHugeGroupOfOneStampIsReadInLinearTime) {
  std::string log = "[    5.100000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n";
  for (int i = 0; i < 200000; ++i) log += "[    9.000000] xxxxxxxxxxxxxxxx\n";
  const auto start = std::chrono::steady_clock::now();
  const auto f = scan_kernel_log(log);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));  // quadratic: minutes
  EXPECT_EQ(f.records, 2u);
}

// rsyslog reading the journal (RHEL's /var/log/messages) writes the driver's one record on one line, its new
// lines as "#012": read whole, exactly, as the /dev/kmsg record is; "#012" elsewhere makes no line.
TEST(KernelLog, AnRsyslogRecordJoinedWith012IsOneMessage) {
  const auto joined = scan_kernel_log(
      "Dec  4 07:00:00 gpu1 kernel: NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n"
      "Dec  4 07:10:00 gpu1 kernel: NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)#012NVRM: has the "
      "version 999.1.1, but this kernel module has#012NVRM: the version 580.159.04.  Please make sure that this"
      "#012NVRM: kernel module and all NVIDIA driver components#012NVRM: have the same version.\n");
  ASSERT_EQ(joined.mismatches.size(), 1u);
  EXPECT_EQ(joined.mismatches[0].client, "'nvidia-persiste' (pid 812)");
  EXPECT_EQ(joined.mismatches[0].client_version, "999.1.1");
  EXPECT_TRUE(joined.mismatches[0].client_version_exact);
  EXPECT_TRUE(joined.mismatches[0].after_module_load);
  const auto elsewhere = scan_kernel_log(
      "Dec  4 07:10:00 gpu1 kernel: process 'x' launched '/tmp/a#012NVRM: loading NVIDIA UNIX x86_64 Kernel "
      "Module  580.159.04  Release Build' with NULL argv\n");
  EXPECT_FALSE(elsewhere.loaded_version.has());
  // "#012" in a client's name, in a line that is no whole record: text, so the line stays exact (a name is
  // any 15 bytes a user picks; decoding it would cut the line and make any user's mismatch a skip).
  const auto named = scan_kernel_log(
      "[ 1.0] NVRM: API mismatch: the client 'py#012thon3' (pid 7) has the version 590.10.01, but this kernel "
      "module has the version 580.159.04.  Please make sure that this kernel module and all NVIDIA driver "
      "components have the same version.\n");
  ASSERT_EQ(named.mismatches.size(), 1u);
  EXPECT_EQ(named.mismatches[0].client, "'py#012thon3' (pid 7)");
  EXPECT_TRUE(named.mismatches[0].client_version_exact);
}

// A named log none of whose lines gpuwarm can place is not an empty log: its source is unknown, with why.
TEST(KernelLog, ALogInAFormatGpuwarmDoesNotReadIsUnknown) {
  test::TempTree tree;
  tree.write("colour.log",
             "kern  :err   : \x1b[32m[  605.200000]\x1b[0m NVRM: loading NVIDIA UNIX x86_64 Kernel Module  "
             "580.159.04\n");
  const auto unknown = read_kernel_log(Paths("/"), tree.path("colour.log"));
  EXPECT_FALSE(unknown.source.has());
  EXPECT_NE(unknown.source.missing.find("none of its 1 lines is in a format gpuwarm reads"), std::string::npos)
      << unknown.source.missing;
  tree.write("dmesg.log", "[  605.200000] usb 1-1: new device\n");
  EXPECT_TRUE(read_kernel_log(Paths("/"), tree.path("dmesg.log")).source.has());
  // Bare text (dmesg -t, journalctl -o cat) cannot tell the driver's lines from a user's text: not read.
  tree.write("bare.log", "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n");
  EXPECT_FALSE(read_kernel_log(Paths("/"), tree.path("bare.log")).source.has());
  // One line a user's record adds does not make a file in no known shape count as read.
  tree.write("unknown-plus-user.log",
             "<<gpu1>> NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build\n"
             "<<gpu1>> x[700]: segfault at 0 in a\n"
             "         NVRM: y\n");
  EXPECT_FALSE(read_kernel_log(Paths("/"), tree.path("unknown-plus-user.log")).source.has());
}

TEST(KernelLog, KmsgRecordsAndContinuationLines) {
  std::string kmsg =
      "6,1000,494523,-;NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build\n"
      " SUBSYSTEM=pci\n"
      " DEVICE=+pci:0000:00:06.0\n"
      "4,1001,3434026,-;NVRM: Persistence mode is deprecated and will be removed in a future release. Please use "
      "nvidia-persistenced instead.\n";
  KernelLogFacts f = scan_kernel_log(kmsg);
  EXPECT_EQ(f.records, 2u);
  EXPECT_TRUE(f.legacy_persistence_notice);
  EXPECT_TRUE(f.loaded_version.is("580.159.04"));
  EXPECT_TRUE(f.mismatches.empty());
}

TEST(KernelLog, ModuleReloadSupersedesOlderLines) {
  std::string log = std::string(k_old_form) +
                    "[    0.5] NVRM: Persistence mode is deprecated and will be removed.\n"
                    "[ 6000.0] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  570.133.07  Tue Mar  4 2025\n";
  KernelLogFacts f = scan_kernel_log(log);
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_FALSE(f.mismatches[0].after_module_load);
  EXPECT_FALSE(f.legacy_persistence_notice);
  EXPECT_TRUE(f.loaded_version.is("570.133.07"));
}

// A log spanning reboots (kern.log, journalctl -k -b all): what an earlier boot logged is history, as after a
// module load, even where the new boot's own load line cannot be taken (it shares its stamp).
TEST(KernelLog, ALaterBootMakesEarlierLinesHistory) {
  auto kern = [](const char* stamp, const std::string& message) {
    return fmt::format("Dec  1 10:00:00 node kernel: [{}] {}\n", stamp, message);
  };
  std::string refusal;
  for (const char* line : {"NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                           "NVRM: has the version 580.159.04, but this kernel module has",
                           "NVRM: the version 580.95.05.  Please make sure that this",
                           "NVRM: kernel module and all NVIDIA driver components", "NVRM: have the same version."}) {
    refusal += kern(" 7200.100000", line);
  }
  const std::string old_load = kern("    5.200000", "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.95.05  Release");
  const std::string legacy = kern("   10.000000", "NVRM: Persistence mode is deprecated and will be removed.");
  const std::string device = kern("    5.100000", "nvidia 0000:18:00.0: enabling device (0000 -> 0002)");
  const std::string stamped_load =
      kern("    5.100000", "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release");
  const std::string new_load =
      kern("    5.300000", "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release");
  // journalctl -k and rsyslog's default keep no kernel stamp: the banner marks a boot there.
  auto journal = [](const std::string& message) { return "Dec 01 10:00:00 node kernel: " + message + "\n"; };
  std::string unstamped_refusal;
  for (const char* line : {"NVRM: API mismatch: the client 'nvidia-persiste' (pid 812)",
                           "NVRM: has the version 580.159.04, but this kernel module has",
                           "NVRM: the version 580.95.05.  Please make sure that this",
                           "NVRM: kernel module and all NVIDIA driver components", "NVRM: have the same version."}) {
    unstamped_refusal += journal(line);
  }
  const std::string banner = "Linux version 6.8.0-49-generic (buildd@lcy02-amd64-080) (gcc 13.2.0) #49-Ubuntu SMP";
  const std::string unstamped_load = journal("NVRM: loading NVIDIA UNIX x86_64 Kernel Module  580.95.05  Release");
  struct Case {
    const char* name;
    std::string log;
    bool refusal_live;
    bool legacy_notice;
    std::optional<std::string> loaded;  // nothing: not taken
    const char* missing_contains;
  };
  const std::vector<Case> cases = {
      {"one boot: the refusal is live", old_load + legacy + refusal, true, true, "580.95.05", ""},
      {"a reboot whose load line shares its stamp", old_load + legacy + refusal + device + stamped_load, false,
       false, std::nullopt, "shares its time stamp"},
      {"a reboot that logged no load line yet", old_load + refusal + device, false, false, std::nullopt,
       "no \"NVRM: loading\" line since the last boot in the log"},
      {"a reboot with its load line taken", old_load + refusal + device + new_load, false, false, "580.159.04", ""},
      {"a refusal in the new boot is live", old_load + device + new_load + refusal, true, false, "580.159.04", ""},
      {"the banner, stamps not falling", old_load + refusal + kern(" 7300.000000", banner) + refusal, true, false,
       std::nullopt, "since the last boot"},
      {"no stamps: the banner", unstamped_load + unstamped_refusal + journal(banner), false, false, std::nullopt,
       "since the last boot"},
      {"no stamps: a banner before the refusal's boot", unstamped_load + journal(banner) + unstamped_refusal, true,
       false, std::nullopt, "since the last boot"},
      // In a log whose kernel lines carry no stamp, a message's first bracket is a user's text: a process named
      // "[99999]", then "[0]", that crash make no boot.
      {"no stamps: brackets a process name makes", unstamped_load + unstamped_refusal +
       journal("[99999][4242]: segfault at 0 ip 0000000000401126 sp 00007ffc8f1e8b30 error 6 in a.out") +
       journal("[0][4243]: segfault at 0 ip 0000000000401126 sp 00007ffc8f1e8b30 error 6 in a.out"),
       true, false, "580.95.05", ""},
      {"no stamps: a process named like the banner", unstamped_load + unstamped_refusal +
       journal("Linux version 6[4242]: segfault at 0 ip 0 sp 0 error 6 in a.out"), true, false, "580.95.05", ""},
      // A comm of 15 bytes, "Linux version 6", printed before " (" (writing /proc/self/oom_adj): no banner.
      {"dmesg: a process named like the banner", old_load + refusal +
       kern(" 7300.000000", "Linux version 6 (17363): /proc/17363/oom_adj is deprecated, please use oom_score_adj."),
       true, false, "580.95.05", ""},
      {"no stamps: a process named like the banner, oom_adj", unstamped_load + unstamped_refusal +
       journal("Linux version 6 (17363): /proc/17363/oom_adj is deprecated, please use oom_score_adj."), true, false,
       "580.95.05", ""},
      // rsyslog's own lines under the kernel's tag have no stamp: the kernel's lines still vouch for theirs.
      {"stamped kern.log with rsyslog's own lines", old_load + refusal +
       "Dec  1 10:00:00 node kernel: Kernel logging (proc) stopped.\n" +
       "Dec  1 10:00:01 node kernel: imklog 8.2112.0, log source = /proc/kmsg started.\n" + device + new_load,
       false, false, "580.159.04", ""},
      // dmesg: a refusal cut short by a crash ends with its boot; the next boot's load and refusal are its own.
      {"a refusal cut short before a reboot", old_load + kern(" 7200.100000",
       "NVRM: API mismatch: the client has the version 580.159.04, but") + device + new_load + refusal, true, false,
       "580.159.04", ""},
      // Stamps of two CPUs may trail by microseconds: no boot.
      {"a stamp a little lower is no boot", old_load + refusal + kern(" 7200.099000", "usb 1-1: new device"), true,
       false, "580.95.05", ""},
      {"journalctl's boot line is no marker (a raw file name can hold it)",
       old_load + refusal + "-- Boot 5c0e3a4e7f84b3e9f4d9c7c2c1a1e11f --\n" + kern(" 7300.000000", "usb 1-1: new"),
       true, false, "580.95.05", ""},
  };
  for (const auto& c : cases) {
    const auto f = scan_kernel_log(c.log);
    ASSERT_FALSE(f.mismatches.empty()) << c.name;
    EXPECT_EQ(f.mismatches.back().after_module_load, c.refusal_live) << c.name;
    for (std::size_t k = 0; k + 1 < f.mismatches.size(); ++k) {
      EXPECT_FALSE(f.mismatches[k].after_module_load) << c.name << ": an earlier boot's refusal";
    }
    EXPECT_EQ(f.legacy_persistence_notice, c.legacy_notice) << c.name;
    if (c.loaded) {
      EXPECT_TRUE(f.loaded_version.is(*c.loaded)) << c.name << ": " << f.loaded_version.missing;
    } else {
      EXPECT_FALSE(f.loaded_version.has()) << c.name;
      EXPECT_NE(f.loaded_version.missing.find(c.missing_contains), std::string::npos)
          << c.name << ": " << f.loaded_version.missing;
    }
  }
}

TEST(KernelLog, InterleavedLinesDoNotBreakExtraction) {
  std::string log =
      "[1] NVRM: API mismatch: the client has the version 570.133.07, but\n"
      "[1] usb 1-1: new device\n"
      "[1] NVRM: this kernel module has the version 570.124.04.  Please\n";
  KernelLogFacts f = scan_kernel_log(log);
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_EQ(f.mismatches[0].kernel_version, "570.124.04");
}

TEST(KernelLog, BinaryJunkNeverCrashes) {
  std::string junk;
  for (int i = 0; i < 4096; ++i) {
    junk += static_cast<char>((i * 131 + 7) % 256);
  }
  junk += "\n[    1.000000] NVRM: API mismatch: \xff\xfe the client has the version \n";
  KernelLogFacts f = scan_kernel_log(junk);
  ASSERT_EQ(f.mismatches.size(), 1u);
  EXPECT_EQ(f.mismatches[0].client_version, "");
  EXPECT_FALSE(f.legacy_persistence_notice);
}

TEST(KernelLog, FileAndKmsgSources) {
  test::TempTree t;
  t.write("log.txt", k_new_form);
  KernelLogFacts from_file = read_kernel_log(Paths("/"), t.path("log.txt"));
  EXPECT_TRUE(from_file.source.is(t.path("log.txt")));
  EXPECT_EQ(from_file.mismatches.size(), 1u);

  KernelLogFacts missing = read_kernel_log(Paths("/"), t.path("nope.txt"));
  EXPECT_FALSE(missing.source.has());
  EXPECT_NE(missing.source.missing.find("No such file"), std::string::npos);

  // Under a fake root, dev/kmsg may be a plain file: read until EOF.
  t.write("dev/kmsg", "6,1,1,-;NVRM: Persistence mode is deprecated\n");
  KernelLogFacts kmsg = read_kernel_log(Paths(t.root()), "");
  EXPECT_TRUE(kmsg.source.is("/dev/kmsg"));
  EXPECT_TRUE(kmsg.legacy_persistence_notice);
}

// A kernel that logs as fast as it is read (an Xid storm) no longer holds the read for the limit: it stops at
// the first record logged after the read began, which a second descriptor at the log's end yields. Sockets of
// kind SEQPACKET keep record bounds, as /dev/kmsg does (one record per read).
TEST(KernelLog, TheReadStopsAtTheFirstRecordLoggedAfterItBegan) {
  int log[2];
  int later[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, log), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, later), 0);
  auto record = [](unsigned seq) { return fmt::format("4,{},{},-;NVRM: Xid 79 record {}\n", seq, seq * 10, seq); };
  std::string before;
  for (unsigned seq = 1; seq <= 200; ++seq) {
    const std::string r = record(seq);
    ASSERT_EQ(::write(log[1], r.data(), r.size()), static_cast<ssize_t>(r.size()));
    if (seq <= 120) {
      before += r;
    }
  }
  const std::string first_after = record(121);
  ASSERT_EQ(::write(later[1], first_after.data(), first_after.size()), static_cast<ssize_t>(first_after.size()));
  KmsgRecords read = read_kmsg_records(log[0], std::chrono::seconds(5), 1u << 20, later[0]);
  EXPECT_TRUE(read.newer_left);
  EXPECT_FALSE(read.out_of_time);
  EXPECT_EQ(read.text, before);

  // With nothing logged since (the second descriptor stays empty), the whole log is read, to EAGAIN.
  int quiet_log[2];
  int quiet[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, quiet_log), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, quiet), 0);
  for (unsigned seq = 1; seq <= 3; ++seq) {
    const std::string r = record(seq);
    ASSERT_EQ(::write(quiet_log[1], r.data(), r.size()), static_cast<ssize_t>(r.size()));
  }
  read = read_kmsg_records(quiet_log[0], std::chrono::seconds(5), 1u << 20, quiet[0]);
  EXPECT_FALSE(read.newer_left);
  EXPECT_EQ(read.text, record(1) + record(2) + record(3));
  for (int fd : {log[0], log[1], later[0], later[1], quiet_log[0], quiet_log[1], quiet[0], quiet[1]}) {
    ::close(fd);
  }
}

TEST(KernelLog, KmsgSequenceNumbers) {
  struct Case {
    const char* record;
    std::optional<std::uint64_t> seq;
  };
  for (const Case& c : {Case{"6,1234,5678901,-;NVRM: x", 1234}, Case{"4,0,1,c;x", 0},
                        Case{"6,18446744073709551615,1,-;x", 18446744073709551615ull},
                        Case{"6,18446744073709551616,1,-;x", std::nullopt}, Case{"[ 1.0] NVRM: x", std::nullopt},
                        Case{"6,abc,1,-;x", std::nullopt}, Case{"6,12", std::nullopt}, Case{"6,,1,-;x", std::nullopt},
                        Case{"", std::nullopt}}) {
    EXPECT_EQ(kmsg_sequence(c.record), c.seq) << c.record;
  }
}

// A device that never runs dry (here /dev/zero; on a node, a kernel logging an Xid storm as fast as it is read)
// costs the limit, not the run, and memory stays within the cap.
TEST(KernelLog, ARecordStormIsReadForTheLimitOnly) {
  int fd = ::open("/dev/zero", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const auto started = std::chrono::steady_clock::now();
  KmsgRecords read = read_kmsg_records(fd, std::chrono::milliseconds(100), 1u << 20);
  const auto took = std::chrono::steady_clock::now() - started;
  ::close(fd);
  EXPECT_TRUE(read.out_of_time);
  EXPECT_TRUE(read.cut);
  EXPECT_LE(read.text.size(), 1u << 20);
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_GE(took, std::chrono::milliseconds(100));

  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC), 0);
  ASSERT_EQ(::write(pipe_fds[1], "6,1,1,-;a\n", 10), 10);
  read = read_kmsg_records(pipe_fds[0], std::chrono::milliseconds(100), 1u << 20);
  EXPECT_FALSE(read.out_of_time);  // caught up (EAGAIN) at once
  EXPECT_EQ(read.text, "6,1,1,-;a\n");
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

}  // namespace
}  // namespace gpuwarm
