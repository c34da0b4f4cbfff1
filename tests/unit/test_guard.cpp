// guard::evaluate is pure: one case per exit reason, from a ready node with one thing changed.

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include "guard/guard.h"

namespace gpuwarm::test {
namespace {

using guard::Code;

guard::GuardFacts ready_node() {
  guard::GuardFacts f;
  f.driver.module_loaded = true;
  f.driver.kernel_version = Fact<std::string>::known("580.159.04");
  f.driver.sys_module_version = Fact<std::string>::known("580.159.04");
  f.driver.device_nodes = {{"/dev/nvidiactl", true, 0666}, {"/dev/nvidia0", true, 0666}};
  f.user_space = {{"libnvidia-ml", "580.159.04", ""},
                  {"libnvidia-cfg", "580.159.04", ""},
                  {"nvidia-persistenced --version", "580.159.04", "", false}};
  f.kernel_log.source = Fact<std::string>::known("/dev/kmsg");
  f.user = "nvidia-persistenced";
  f.access = {{"/dev/nvidiactl", true, ""}, {"/dev/nvidia0", true, ""}};
  return f;
}

struct GuardCase {
  const char* name;
  std::function<void(guard::GuardFacts&)> edit;
  Code code;
  const char* line_contains;
};

TEST(Guard, every_reason_has_its_code) {
  const std::vector<GuardCase> cases = {
      {"ready", [](auto&) {}, Code::go, "580.159.04 ready"},
      // Not loaded yet (boot) is no half-update: the daemon's libnvidia-cfg loads it through nvidia-modprobe, and a
      // skip is never retried (review-s44-guard 2).
      {"module not loaded yet: the daemon loads it", [](auto& f) { f.driver.module_loaded = false; }, Code::go,
       "not loaded yet"},
      {"libnvidia-ml newer than the module (the blog's case)",
       [](auto& f) { f.user_space[0].version = "580.95.05"; }, Code::version_mismatch,
       "kernel module 580.159.04 but libnvidia-ml 580.95.05"},
      // Debian 12 packages the daemon apart (535.171.04 beside driver 535.216.01): its version decides nothing
      // (review-s44-guard 1); the libraries it works through do.
      {"only the daemon's version differs: packaged apart, ready",
       [](auto& f) { f.user_space[2].version = "535.171.04"; }, Code::go, "ready"},
      {"all three differ: the libraries named",
       [](auto& f) {
         for (auto& u : f.user_space) u.version = "590.44.01";
       },
       Code::version_mismatch, "but libnvidia-ml 590.44.01, libnvidia-cfg 590.44.01; a reboot"},
      {"only the daemon's version read, another than the module's: nothing shown to agree",
       [](auto& f) {
         f.user_space[0].version.reset();
         f.user_space[1].version.reset();
         f.user_space[2].version = "535.171.04";
       },
       Code::version_mismatch, "no driver library's version could be read"},
      {"only the daemon's version read, the module's: the halves agree",
       [](auto& f) {
         f.user_space[0].version.reset();
         f.user_space[1].version.reset();
       },
       Code::go, "ready"},
      {"only /sys/module has the version",
       [](auto& f) {
         f.driver.kernel_version = Fact<std::string>::unknown("no /proc/driver/nvidia/version");
         f.user_space[1].version = "575.57.08";
       },
       Code::version_mismatch, "kernel module 580.159.04 but libnvidia-cfg 575.57.08"},
      {"a missing user-space part is not a mismatch",
       [](auto& f) {
         f.user_space[1].version.reset();
         f.user_space[1].missing = "no libnvidia-cfg.so.1";
       },
       Code::go, "ready"},
      {"no user-space part readable at all: cannot confirm, so skip",
       [](auto& f) {
         for (auto& u : f.user_space) {
           u.version.reset();
           u.missing = "not found";
         }
       },
       Code::version_mismatch, "no driver library's version could be read"},
      {"module loaded but its version unreadable in both places: cannot confirm, so skip",
       [](auto& f) {
         f.driver.kernel_version = Fact<std::string>::unknown("/proc/driver/nvidia/version: Permission denied");
         f.driver.sys_module_version = Fact<std::string>::unknown("/sys/module/nvidia/version: No such file");
       },
       Code::version_mismatch,
       "its version could be read from neither /proc/driver/nvidia/version nor /sys/module/nvidia/version "
       "(/proc/driver/nvidia/version: Permission denied; /sys/module/nvidia/version: No such file)"},
      {"kernel version unreadable and user space unreadable: still a skip",
       [](auto& f) {
         f.driver.kernel_version = Fact<std::string>::unknown("a");
         f.driver.sys_module_version = Fact<std::string>::unknown("b");
         for (auto& u : f.user_space) {
           u.version.reset();
           u.missing = "not found";
         }
       },
       Code::version_mismatch, "cannot confirm"},
      {"user space older than the module: an older copy or a downgrade, not an update to finish",
       [](auto& f) { f.user_space[0].version = "470.256.02"; }, Code::version_mismatch,
       "user space older than the kernel module: kernel module 580.159.04 but libnvidia-ml 470.256.02; upgrade "
       "user space"},
      {"API mismatch logged since the module loaded",
       [](auto& f) { f.kernel_log.mismatches = {{"'nvidia-persistenced' (pid 812)", "580.95.05", "580.159.04", true, true}}; },
       Code::api_mismatch_logged, "client 580.95.05, kernel module 580.159.04"},
      {"API mismatch from a container's own libraries, host halves agreeing (DRV004)",
       [](auto& f) { f.kernel_log.mismatches = {{"'python3' (pid 4242)", "590.10.01", "580.159.04", true, true}}; },
       Code::go, "ready"},
      {"the same from a driver that names no client: it may have been the daemon",
       [](auto& f) { f.kernel_log.mismatches = {{"", "590.10.01", "580.159.04", true, true}}; },
       Code::api_mismatch_logged, "client 590.10.01"},
      {"API mismatch with libnvidia-ml unread: the logged client may be the host's",
       [](auto& f) {
         f.kernel_log.mismatches = {{"'python3' (pid 4242)", "590.10.01", "580.159.04", true, true}};
         f.user_space[0] = {"libnvidia-ml", std::nullopt, "no libnvidia-ml.so.1 found"};
       },
       Code::api_mismatch_logged, "client 590.10.01, kernel module 580.159.04"},
      {"API mismatch from before a module reload is history",
       [](auto& f) { f.kernel_log.mismatches = {{"", "580.95.05", "575.57.08", false}}; }, Code::go, "ready"},
      {"unreadable kernel log does not block",
       [](auto& f) { f.kernel_log.source = Fact<std::string>::unknown("needs root"); }, Code::go, "ready"},
      {"a kernel log the caller named and gpuwarm could not read skips: it would hide what it is read for",
       [](auto& f) {
         f.kernel_log.named = true;
         f.kernel_log.source = Fact<std::string>::unknown("/x/kern.log: none of its 6 lines is in a format");
       },
       Code::usage, "kernel log not read: /x/kern.log: none of its 6 lines"},
      {"a named kernel log that was read is no reason to skip",
       [](auto& f) {
         f.kernel_log.named = true;
         f.kernel_log.source = Fact<std::string>::known("/x/kern.log");
       },
       Code::go, "ready"},
      // Nodes not there yet: the daemon's libnvidia-cfg creates them (the .run installer has no udev rule).
      {"no /dev/nvidiactl yet: the daemon creates it",
       [](auto& f) { f.driver.device_nodes = {{"/dev/nvidia0", true, 0666}}; }, Code::go, "ready"},
      {"no GPU node (nvidia-uvm is not one)",
       [](auto& f) { f.driver.device_nodes = {{"/dev/nvidiactl", true, 0666}, {"/dev/nvidia-uvm", true, 0666}}; },
       Code::go, "ready"},
      {"an ACL that could not be read as one: not checked, said, and no skip",
       [](auto& f) { f.access[1] = {"/dev/nvidia0", true, "its ACL (3 bytes) could not be read as one", false}; },
       Code::go, "ready"},
      {"daemon user cannot open a node",
       [](auto& f) { f.access[1] = {"/dev/nvidia0", false, "mode 0660, owner 0:44"}; }, Code::device_access,
       "user nvidia-persistenced cannot open /dev/nvidia0: mode 0660"},
      {"module not loaded: nothing to compare it with yet",
       [](auto& f) {
         f.driver.module_loaded = false;
         f.user_space[0].version = "1.2.3";
       },
       Code::go, "not loaded yet"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto f = ready_node();
    c.edit(f);
    auto r = guard::evaluate(f);
    EXPECT_EQ(r.code, c.code);
    EXPECT_NE(r.line.find(c.line_contains), std::string::npos) << r.line;
    if (std::string_view(c.name).find("the daemon creates") != std::string_view::npos) {
      std::string details;
      for (const auto& d : r.details) details += d + "\n";
      EXPECT_NE(details.find("creates the nodes through nvidia-modprobe"), std::string::npos) << details;
    }
    EXPECT_EQ(r.line.find('\n'), std::string::npos);
  }
}

// review-s53-root L6: a kernel log whose newest records were left unread at the deadline proves nothing about a
// fresh mismatch: not a skip (the versions agree), but said in the details, not passed over as read.
TEST(Guard, a_kernel_log_read_in_part_is_said) {
  auto f = ready_node();
  f.kernel_log.source = Fact<std::string>::known("/dev/kmsg (reading stopped after 2 s: newer records unread)");
  f.kernel_log.newest_unread = true;
  auto r = guard::evaluate(f);
  EXPECT_EQ(r.code, Code::go);
  std::string details;
  for (const auto& d : r.details) details += d + "\n";
  EXPECT_NE(details.find("kernel log read in part: /dev/kmsg (reading stopped after 2 s: newer records unread); an "
                         "API mismatch logged in its newest records would not have been seen"),
            std::string::npos)
      << details;
  f.kernel_log.newest_unread = false;
  for (const auto& d : guard::evaluate(f).details) {
    EXPECT_EQ(d.find("read in part"), std::string::npos) << d;
  }
}

// A container's client the kernel refused is named in the details (--verbose, --json), with the rule that
// explains it, rather than hidden.
TEST(Guard, a_refused_client_with_its_own_libraries_is_named_not_hidden) {
  auto f = ready_node();
  f.kernel_log.mismatches = {{"'python3' (pid 4242)", "590.10.01", "580.159.04", true, true}};
  auto r = guard::evaluate(f);
  EXPECT_EQ(r.code, Code::go);
  EXPECT_NE(std::find(r.details.begin(), r.details.end(),
                      "kernel logged \"NVRM: API mismatch\" from 'python3' (pid 4242) for client version 590.10.01: "
                      "not this host's driver, whose libnvidia-ml agrees with the module (DRV004)"),
            r.details.end());
  // The daemon itself refused: whatever it loads is not the module's version, so it would fail again. Its
  // name as the kernel cuts it, NixOS's wrapped one, or a number (started through fexecve before 6.14).
  for (const char* daemon : {"'nvidia-persiste' (pid 812)", "'.nvidia-persist' (pid 812)", "'3' (pid 812)",
                             "'17' (pid 812)"}) {
    SCOPED_TRACE(daemon);
    f.kernel_log.mismatches = {{daemon, "590.10.01", "580.159.04", true}};
    EXPECT_EQ(guard::evaluate(f).code, Code::api_mismatch_logged);
  }
  // A quote inside the name does not cut it short: "it's 3" is not a number.
  for (const char* other : {"'python3' (pid 4242)", "'nv3' (pid 4242)", "'it's 3' (pid 4242)", "'3 ' (pid 4242)"}) {
    SCOPED_TRACE(other);
    f.kernel_log.mismatches = {{other, "590.10.01", "580.159.04", true}};
    EXPECT_EQ(guard::evaluate(f).code, Code::go);
  }
}

// Any user who can open /dev/nvidiactl can name a process like the daemon and ask with a made-up version. Such
// a line skips the unit only where the loader could give the daemon a library of that version.
TEST(Guard, a_mismatch_for_a_version_no_installed_library_has_does_not_keep_the_daemon_down) {
  const std::string daemon = "'nvidia-persiste' (pid 812)";
  auto installed = [](std::vector<LoadableCopy> copies, std::string unread = "") {
    return [copies, unread](guard::GuardFacts& f) {
      f.loadable.looked = true;
      f.loadable.copies = copies;
      f.loadable.unread = unread;
    };
  };
  const LoadableCopy cfg{"/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.1", "580.159.04"};
  const LoadableCopy ml{"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "580.159.04"};
  const LoadableCopy stale{"/usr/local/lib/libnvidia-cfg.so.1", "590.10.01"};
  struct Case {
    const char* name;
    std::string client;
    std::function<void(guard::GuardFacts&)> edit;
    Code code;
    const char* says;  // in the line when skipped, in a detail when not
  };
  const std::vector<Case> cases = {
      {"named like the daemon, no copy of that version", daemon, installed({cfg, ml}), Code::go,
       "no driver library the loader could give nvidia-persistenced has that version"},
      {"asked with no version at all", daemon,
       [&](guard::GuardFacts& f) {
         installed({cfg, ml})(f);
         f.kernel_log.mismatches[0].client_version = "";
       },
       Code::go, "for client version \"\": no driver library"},
      {"asked with text that only begins like the module's version", daemon,
       [&](guard::GuardFacts& f) {
         installed({cfg, ml})(f);
         f.kernel_log.mismatches[0].client_version = "580.159.04x";
       },
       Code::go, "for client version \"580.159.04x\": no driver library"},
      {"asked with the module's own version, which the kernel does not refuse", daemon,
       [&](guard::GuardFacts& f) {
         installed({cfg, ml})(f);
         f.kernel_log.mismatches[0].client_version = "580.159.04";
       },
       Code::go, "the module's own version, which the kernel does not refuse"},
      {"a line worded otherwise: its version not read exactly", daemon,
       [&](guard::GuardFacts& f) {
         installed({cfg, ml})(f);
         f.kernel_log.mismatches[0].client_version_exact = false;
       },
       Code::api_mismatch_logged,
       "client ? (perhaps 590.10.01), kernel module 580.159.04; the driver's halves agree, but that the daemon was "
       "not the client refused cannot be shown"},
      {"no libnvidia-cfg found, the library the daemon loads", daemon, installed({ml}), Code::api_mismatch_logged,
       "client 590.10.01"},
      {"not named (before 575), no copy of that version", "", installed({cfg, ml}), Code::go,
       "from a client it did not name for client version 590.10.01"},
      {"a copy of that version where the loader looks: it may be found first", daemon,
       installed({cfg, ml, stale}), Code::api_mismatch_logged,
       "(installed as /usr/local/lib/libnvidia-cfg.so.1), kernel module 580.159.04; remove or update that copy"},
      {"a copy whose file names no version", daemon, installed({cfg, ml, {"/opt/nv/libnvidia-cfg.so.1", ""}}),
       Code::api_mismatch_logged, "the driver's halves agree, but that the daemon was not the client refused "
                                  "cannot be shown (--verbose says why); a reboot (or `gpuwarm reload-modules`) "
                                  "clears the line"},
      {"the loader's cache unread", daemon, installed({cfg, ml}, "the loader's cache: Permission denied"),
       Code::api_mismatch_logged, "client 590.10.01, kernel module 580.159.04"},
      {"no copy found at all", daemon, installed({}), Code::api_mismatch_logged, "client 590.10.01"},
      {"copies not looked for", daemon, [](auto&) {}, Code::api_mismatch_logged, "client 590.10.01"},
      {"libnvidia-ml unread: the host's own version is not known", daemon,
       [&](guard::GuardFacts& f) {
         installed({cfg, ml})(f);
         f.user_space[0] = {"libnvidia-ml", std::nullopt, "not loadable"};
       },
       Code::api_mismatch_logged, "a reboot (or `gpuwarm reload-modules`) finishes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto f = ready_node();
    f.kernel_log.mismatches = {{c.client, "590.10.01", "580.159.04", true, true}};
    c.edit(f);
    auto r = guard::evaluate(f);
    EXPECT_EQ(r.code, c.code) << r.line;
    if (c.code == Code::go) {
      EXPECT_TRUE(std::any_of(r.details.begin(), r.details.end(),
                              [&](const std::string& d) { return d.find(c.says) != std::string::npos; }))
          << ::testing::PrintToString(r.details);
    } else {
      EXPECT_NE(r.line.find(c.says), std::string::npos) << r.line;
    }
  }
}

// A node whose ACL could not be read as one is named in the details, and the "can open every node" line is not.
TEST(Guard, a_node_whose_access_was_not_checked_is_said) {
  auto f = ready_node();
  f.access[1] = {"/dev/nvidia0", true, "its ACL (3 bytes) could not be read as one", false};
  const auto r = guard::evaluate(f);
  EXPECT_EQ(r.code, Code::go);
  EXPECT_NE(std::find(r.details.begin(), r.details.end(),
                      "user nvidia-persistenced's access was not checked for /dev/nvidia0 (its ACL (3 bytes) could not "
                      "be read as one)"),
            r.details.end())
      << ::testing::PrintToString(r.details);
  for (const auto& d : r.details) {
    EXPECT_EQ(d.find("can open every"), std::string::npos) << d;
  }
}

// An ACL's bytes as the kernel hands them out: version 2, then (tag, permission bits, id) per entry.
struct AclEntry {
  unsigned tag, perm, id;
};
constexpr unsigned k_any = 0xffffffffu;
std::string acl_bytes(const std::vector<AclEntry>& entries) {
  std::string out;
  auto put = [&out](unsigned v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(2, 4);
  for (const auto& e : entries) {
    put(e.tag, 2);
    put(e.perm, 2);
    put(e.id, 4);
  }
  return out;
}

struct AccessCase {
  const char* name;
  unsigned mode;
  unsigned owner, group;
  std::vector<AclEntry> acl;  // empty: none
  bool usable;
  bool checked;
};

// The daemon's user is uid 120 in groups 120 and 44 (video), as on a Debian node. Where an ACL exists (udev's
// uaccess tag, a site's setfacl), it decides, not the mode bits (review-s53-root L5).
const std::vector<AccessCase>& access_cases() {
  static const std::vector<AccessCase> cases = {
      {"mode: other rw", 0666, 0, 0, {}, true, true},
      {"mode: group video rw", 0660, 0, 44, {}, true, true},
      {"mode: owner rw", 0600, 120, 0, {}, true, true},
      {"mode: not its group", 0660, 0, 27, {}, false, true},
      {"mode: owner read only (the owner triad decides, not other's)", 0466, 120, 0, {}, false, true},
      {"ACL: a named user's grant",
       0660, 0, 27, {{0x01, 6, k_any}, {0x02, 6, 120}, {0x04, 6, k_any}, {0x10, 6, k_any}, {0x20, 0, k_any}},
       true, true},
      {"ACL: a named user's grant cut by the mask",
       0640, 0, 27, {{0x01, 6, k_any}, {0x02, 6, 120}, {0x04, 4, k_any}, {0x10, 4, k_any}, {0x20, 0, k_any}},
       false, true},
      {"ACL: a named group's grant",
       0660, 0, 27, {{0x01, 6, k_any}, {0x04, 6, k_any}, {0x08, 6, 44}, {0x10, 6, k_any}, {0x20, 0, k_any}},
       true, true},
      {"ACL: its group matches and grants too little, so 'other' does not count",
       0664, 0, 44, {{0x01, 6, k_any}, {0x04, 4, k_any}, {0x10, 4, k_any}, {0x20, 6, k_any}}, false, true},
      {"ACL: no entry for it, 'other' grants",
       0666, 0, 27, {{0x01, 6, k_any}, {0x02, 6, 7}, {0x04, 6, k_any}, {0x10, 6, k_any}, {0x20, 6, k_any}}, true,
       true},
      {"ACL: owner entry decides for the owner", 0066, 120, 0,
       {{0x01, 0, k_any}, {0x04, 6, k_any}, {0x20, 6, k_any}}, false, true},
      // review-s56 L2: with the group bits (the mask) all clear the kernel does not look at the ACL at all.
      {"ACL with an empty mask: the mode bits decide ('other' grants)",
       0606, 0, 27, {{0x01, 6, k_any}, {0x02, 6, 120}, {0x04, 0, k_any}, {0x10, 0, k_any}, {0x20, 6, k_any}}, true,
       true},
  };
  return cases;
}

TEST(GuardAccess, the_acl_decides_where_there_is_one_else_the_mode_bits) {
  for (const auto& c : access_cases()) {
    SCOPED_TRACE(c.name);
    const auto a = guard::node_access_for("/dev/nvidia0", {c.mode, c.owner, c.group, c.acl.empty() ? "" : acl_bytes(c.acl)},
                                          120, {120, 44});
    EXPECT_EQ(a.usable, c.usable) << a.why;
    EXPECT_EQ(a.checked, c.checked) << a.why;
    if (!a.usable) {
      EXPECT_EQ(a.why.rfind(fmt::format("mode {:04o}, owner {}:{}", c.mode, c.owner, c.group), 0), 0u) << a.why;
    }
  }
  // Root may, whatever the node says; bytes that are no ACL leave the node unchecked, not refused.
  EXPECT_TRUE(guard::node_access_for("/dev/nvidia0", {0600, 5, 5, {}}, 0, {0}).usable);
  for (const std::string& bad : {std::string("\x02\x00\x00", 3), acl_bytes({{0x01, 6, k_any}}).substr(0, 9),
                                acl_bytes({{0x01, 6, k_any}}), acl_bytes({{0x40, 6, k_any}, {0x20, 6, k_any}})}) {
    const auto a = guard::node_access_for("/dev/nvidia0", {0660, 0, 0, bad}, 120, {120});
    EXPECT_TRUE(a.usable);
    EXPECT_FALSE(a.checked) << ::testing::PrintToString(bad);
  }
}

// The same cases against the kernel itself: each ACL set on a file, and a child that has become uid 120 (groups
// 120 and 44) asks faccessat. Needs root (to set the ACL on a file it does not own and to change its ids) and a
// file system with ACLs.
TEST(GuardAccess, node_access_for_agrees_with_the_kernel) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become another user";
  char dir[] = "/tmp/gpuwarm-acl-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  ::chmod(dir, 0755);
  const std::string file = std::string(dir) + "/nvidia0";
  for (const auto& c : access_cases()) {
    SCOPED_TRACE(c.name);
    ::unlink(file.c_str());
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::fchown(fd, c.owner, c.group), 0);
    ASSERT_EQ(::fchmod(fd, c.mode), 0);
    ::close(fd);
    if (!c.acl.empty()) {
      const std::string bytes = acl_bytes(c.acl);
      if (::setxattr(file.c_str(), "system.posix_acl_access", bytes.data(), bytes.size(), 0) != 0) {
        const int e = errno;
        ::unlink(file.c_str());
        ::rmdir(dir);
        if (e == ENOTSUP) GTEST_SKIP() << "/tmp has no ACLs";
        FAIL() << "setxattr: " << std::strerror(e);
      }
    }
    // What gpuwarm reads, as cmd_guard reads it.
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0);
    std::string acl(4096, '\0');
    const ssize_t got = ::getxattr(file.c_str(), "system.posix_acl_access", acl.data(), acl.size());
    acl.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
    const auto ours = guard::node_access_for(file, {st.st_mode, st.st_uid, st.st_gid, acl}, 120, {120, 44});
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      const gid_t groups[] = {120, 44};
      if (::setgroups(2, groups) != 0 || ::setresgid(120, 120, 120) != 0 || ::setresuid(120, 120, 120) != 0) {
        ::_exit(3);
      }
      ::_exit(::faccessat(AT_FDCWD, file.c_str(), R_OK | W_OK, AT_EACCESS) == 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_NE(WEXITSTATUS(status), 3) << "could not become uid 120";
    EXPECT_EQ(ours.usable, WEXITSTATUS(status) == 0) << "the kernel says " << (WEXITSTATUS(status) == 0 ? "yes" : "no")
                                                     << "; gpuwarm: " << ours.why;
    EXPECT_TRUE(ours.checked);
  }
  ::unlink(file.c_str());
  ::rmdir(dir);
}

TEST(Guard, codes_stay_inside_exec_condition_skip_range) {
  std::vector<int> seen;
  for (const auto& c : guard::codes()) {
    int v = static_cast<int>(c.code);
    EXPECT_GE(v, 0);
    EXPECT_LE(v, 254);  // 255 would fail the unit
    EXPECT_EQ(std::count(seen.begin(), seen.end(), v), 0) << "duplicate code " << v;
    seen.push_back(v);
  }
  EXPECT_EQ(seen.size(), 8u);
}

}  // namespace
}  // namespace gpuwarm::test
