#include "guard/guard.h"

#include <algorithm>
#include <regex>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/strings.h"

namespace gpuwarm::guard {

namespace {

const char* k_finish_update = "a reboot (or `gpuwarm reload-modules`) finishes the driver update";
// The host's halves agree, so no update is pending; the line still cannot be set aside (--verbose says why).
const char* k_cannot_clear_line =
    "the driver's halves agree, but that the daemon was not the client refused cannot be shown (--verbose says "
    "why); a reboot (or `gpuwarm reload-modules`) clears the line";

bool is_gpu_node(const std::string& path) {
  static const std::regex gpu_node("/dev/nvidia[0-9]+");
  return std::regex_match(path, gpu_node);
}

// The kernel's access check over a POSIX ACL (fs/posix_acl.c: posix_acl_permission), for read and write.
// Entries: a 4-byte version (2), then 8 bytes each: tag, permission bits (16 bits each), id (32), little-endian.
// nullopt when the bytes are not such an ACL.
std::optional<bool> acl_allows_read_write(std::string_view acl, unsigned uid, const std::vector<unsigned>& groups,
                                          unsigned owner, unsigned group) {
  constexpr unsigned k_user_obj = 0x01, k_user = 0x02, k_group_obj = 0x04, k_group = 0x08, k_mask = 0x10,
                     k_other = 0x20;
  constexpr unsigned k_want = 06;
  auto little = [&acl](std::size_t at, std::size_t bytes) {
    unsigned v = 0;
    for (std::size_t i = 0; i < bytes; ++i) {
      v |= static_cast<unsigned>(static_cast<unsigned char>(acl[at + i])) << (8 * i);
    }
    return v;
  };
  if (acl.size() < 4 || (acl.size() - 4) % 8 != 0 || little(0, 4) != 2) {
    return std::nullopt;
  }
  struct Entry {
    unsigned tag, perm, id;
  };
  std::vector<Entry> entries;
  for (std::size_t at = 4; at < acl.size(); at += 8) {
    entries.push_back({little(at, 2), little(at + 2, 2), little(at + 4, 4)});
  }
  auto in_group = [&groups](unsigned g) { return std::find(groups.begin(), groups.end(), g) != groups.end(); };
  // A named user's or a group's grant counts only as far as the mask (the entry after it, as the kernel looks).
  auto within_mask = [&entries](std::size_t at) {
    for (std::size_t m = at + 1; m < entries.size(); ++m) {
      if (entries[m].tag == k_mask) {
        return (entries[at].perm & entries[m].perm & k_want) == k_want;
      }
    }
    return (entries[at].perm & k_want) == k_want;
  };
  bool group_matched = false;
  for (std::size_t at = 0; at < entries.size(); ++at) {
    const Entry& e = entries[at];
    switch (e.tag) {
      case k_user_obj:
        if (owner == uid) return (e.perm & k_want) == k_want;
        break;
      case k_user:
        if (e.id == uid) return within_mask(at);
        break;
      case k_group_obj:
      case k_group:
        if (in_group(e.tag == k_group_obj ? group : e.id)) {
          group_matched = true;
          if ((e.perm & k_want) == k_want) return within_mask(at);
        }
        break;
      case k_mask:
        break;
      case k_other:
        return !group_matched && (e.perm & k_want) == k_want;
      default:
        return std::nullopt;  // a tag the kernel would have refused to store
    }
  }
  return std::nullopt;  // no "other" entry: not an access ACL the kernel keeps
}

}  // namespace

NodeAccess node_access_for(const std::string& path, const NodePermissions& node, unsigned uid,
                           const std::vector<unsigned>& groups) {
  NodeAccess a{path, true, "", true};
  if (uid == 0) {
    return a;
  }
  const std::string mode = fmt::format("mode {:04o}, owner {}:{}", node.mode & 07777, node.owner, node.group);
  // As the kernel's acl_permission_check: the owner's bits decide for the owner, and an ACL counts only while the
  // group bits (its mask, with an ACL) are not all clear.
  if (!node.acl.empty() && node.owner != uid && (node.mode & 070) != 0) {
    const auto allowed = acl_allows_read_write(node.acl, uid, groups, node.owner, node.group);
    if (!allowed) {
      a.checked = false;
      a.why = fmt::format("its ACL ({} bytes) could not be read as one", node.acl.size());
    } else if (!*allowed) {
      a.usable = false;
      a.why = mode + ", and its ACL grants no read and write either";
    }
    return a;
  }
  unsigned bits = node.mode & 07;
  if (node.owner == uid) {
    bits = (node.mode >> 6) & 07;
  } else if (std::find(groups.begin(), groups.end(), node.group) != groups.end()) {
    bits = (node.mode >> 3) & 07;
  }
  if ((bits & 06) != 06) {
    a.usable = false;
    a.why = mode;
  }
  return a;
}

const std::vector<CodeInfo>& codes() {
  static const std::vector<CodeInfo> table = {
      {Code::go, "go", "start nvidia-persistenced"},
      {Code::internal_error, "internal-error", "the guard itself failed (skip rather than fail the unit)"},
      {Code::usage, "usage", "bad command line, or a --kernel-log file it cannot read"},
      {Code::no_module, "no-module",
       "not given since 0.1: with the module not loaded yet the daemon starts, and its libnvidia-cfg loads it "
       "through nvidia-modprobe"},
      {Code::version_mismatch, "version-mismatch",
       "the loaded kernel module and the user-space driver differ (driver updated without reboot)"},
      {Code::api_mismatch_logged, "api-mismatch-logged",
       "\"NVRM: API mismatch\" was logged since the module loaded by what may be the daemon (its name, or no "
       "name) for a version a driver library here has (or the libraries were not all read)"},
      {Code::no_device_nodes, "no-device-nodes",
       "not given since 0.1: with /dev/nvidia* not there yet the daemon starts, and its libnvidia-cfg creates them "
       "through nvidia-modprobe"},
      {Code::device_access, "device-access", "the daemon's user cannot open a /dev/nvidia* node"},
  };
  return table;
}

GuardResult evaluate(const GuardFacts& f) {
  GuardResult r;
  auto stop = [&r](Code code, std::string line) {
    r.code = code;
    r.line = std::move(line);
    return r;
  };

  // Not a half-updated driver: at boot udev may not have loaded it yet, and where nothing else does, the daemon's
  // own libnvidia-cfg loads it through nvidia-modprobe. A skip here is never retried: persistence would stay off
  // until someone starts the unit by hand. A module that cannot be loaded at all fails the unit, visibly.
  if (!f.driver.module_loaded) {
    return stop(Code::go,
                "nvidia kernel module not loaded yet (no /proc/driver/nvidia, no /sys/module/nvidia): starting "
                "nvidia-persistenced, whose libnvidia-cfg loads it through nvidia-modprobe (if it cannot, the unit "
                "fails: `gpuwarm diagnose` says why)");
  }
  const Fact<std::string>& kernel =
      f.driver.kernel_version.has() ? f.driver.kernel_version : f.driver.sys_module_version;
  if (kernel.has()) {
    r.details.push_back("kernel module " + *kernel);
  } else {
    r.details.push_back("kernel module version unknown: " + kernel.missing);
  }
  // Unknown is never "ready": with the module's version unread in both places nothing can be compared, and a
  // daemon of another version would only fail. Both reasons are named: either file may be the one to look at.
  if (!kernel.has()) {
    for (const auto& u : f.user_space) {
      r.details.push_back(u.version ? u.source + " " + *u.version : u.source + ": " + u.missing);
    }
    return stop(Code::version_mismatch,
                fmt::format("cannot confirm the driver's halves agree: the kernel module is loaded but its version "
                            "could be read from neither /proc/driver/nvidia/version nor /sys/module/nvidia/version "
                            "({}; {}); skipping nvidia-persistenced",
                            f.driver.kernel_version.missing, f.driver.sys_module_version.missing));
  }

  std::vector<std::string> differing;
  std::vector<std::string> differing_versions;
  std::size_t compared = 0;
  for (const auto& u : f.user_space) {
    if (!u.version) {
      r.details.push_back(u.source + ": " + u.missing);
      continue;
    }
    if (!u.compared) {
      // Packaged apart on some distributions: the same version as the module shows the halves agree, another
      // shows nothing.
      if (*u.version == *kernel) {
        ++compared;
        r.details.push_back(u.source + " " + *u.version);
      } else {
        r.details.push_back(u.source + " " + *u.version + " (packaged apart from the driver on some distributions: "
                            "not a reason to skip)");
      }
      continue;
    }
    ++compared;
    r.details.push_back(u.source + " " + *u.version);
    if (kernel.has() && *u.version != *kernel) {
      differing.push_back(fmt::format("{} {}", u.source, *u.version));
      differing_versions.push_back(*u.version);
    }
  }
  // Unknown is never "ready": with no user-space version to compare (no
  // libnvidia-ml, no libnvidia-cfg, no runnable daemon binary) the unit would
  // only fail; skip it and say why. One readable part is enough to compare.
  if (kernel.has() && compared == 0 && !f.user_space.empty()) {
    return stop(Code::version_mismatch,
                fmt::format("cannot confirm the driver's halves agree: kernel module {} but no driver library's "
                            "version could be read (libnvidia-ml, libnvidia-cfg), nor the daemon's as the module's; "
                            "skipping nvidia-persistenced",
                            *kernel));
  }
  if (!differing.empty()) {
    std::string list;
    for (const auto& d : differing) {
      list += (list.empty() ? "" : ", ") + d;
    }
    // Every differing part older than the module: no update left that behind, and a reboot may change nothing.
    const bool module_newest = std::all_of(differing_versions.begin(), differing_versions.end(), [&](const auto& v) {
      return compare_driver_versions(*kernel, v).value_or(-1) > 0;
    });
    if (module_newest) {
      return stop(Code::version_mismatch,
                  fmt::format("user space older than the kernel module: kernel module {} but {}; upgrade user space "
                              "to the module's version (or remove an older copy found first; after a downgrade, "
                              "reboot); skipping nvidia-persistenced",
                              *kernel, list));
    }
    return stop(Code::version_mismatch,
                fmt::format("driver update pending: kernel module {} but {}; {}; skipping nvidia-persistenced",
                            *kernel, list, k_finish_update));
  }

  // /dev/kmsg unreadable (not root) is no reason to keep the daemon down; a log the caller named and gpuwarm
  // could not read, or not in a format it reads, would hide the very lines this check is for.
  if (f.kernel_log.named && !f.kernel_log.source.has()) {
    return stop(Code::usage, fmt::format("kernel log not read: {}; skipping nvidia-persistenced (name a readable "
                                         "log, or leave --kernel-log out to read /dev/kmsg)",
                                         f.kernel_log.source.missing));
  }

  // With libnvidia-ml read and agreeing with the module (and no part read otherwise), a client the kernel
  // refused that is named and is not the daemon brought its own libraries (a container image, a second
  // install): the host's driver is whole and the daemon starts, as `diagnose` says (DRV004). Skipping would
  // keep the daemon down until a reboot that changes nothing.
  // A client that may be the daemon (so named, or not named: drivers before 575) was refused for the host's
  // driver only if the loader could give the daemon a libnvidia-cfg (what it loads) or libnvidia-ml of the
  // version it asked with. Any user who can open /dev/nvidiactl can name a process like the daemon and ask
  // with any text: with the version read exactly from the line, every copy found and read, at least one
  // libnvidia-cfg among them, and none of that version, such a line does not keep persistence off. A version
  // equal to the module's is none the kernel refuses. A copy of that version, a copy not named by its
  // version, a place not read, a line worded otherwise, or libnvidia-ml unread, still skips.
  const bool host_libraries_agree = std::any_of(f.user_space.begin(), f.user_space.end(), [&](const auto& u) {
    return u.source == "libnvidia-ml" && u.version && *u.version == *kernel;
  });
  const auto& copies = f.loadable.copies;
  const auto is_cfg = [](const LoadableCopy& c) { return c.path.ends_with("/libnvidia-cfg.so.1"); };
  const bool copies_all_known =
      f.loadable.looked && f.loadable.unread.empty() && std::any_of(copies.begin(), copies.end(), is_cfg) &&
      std::all_of(copies.begin(), copies.end(), [](const auto& c) { return !c.version.empty(); });
  std::string copies_list;
  for (const auto& c : copies) {
    copies_list += fmt::format("{}{} {}", copies_list.empty() ? "" : ", ", c.path, c.version.empty() ? "?" : c.version);
  }
  // Why a line that may be the daemon's cannot be set aside, said before any decision on it.
  if (f.loadable.looked && !f.loadable.unread.empty()) {
    r.details.push_back("driver library copies not all read: " + f.loadable.unread);
  } else if (f.loadable.looked && std::none_of(copies.begin(), copies.end(), is_cfg)) {
    r.details.push_back("no libnvidia-cfg.so.1 found where the loader looks");
  }
  for (const auto& m : f.kernel_log.mismatches) {
    if (!m.after_module_load) {
      continue;
    }
    const std::string client_version = m.shown_client_version();
    const std::string from = m.client.empty() ? "a client it did not name" : m.client;
    if (host_libraries_agree && !m.client.empty() && !m.refused_the_daemon()) {
      r.details.push_back(fmt::format("kernel logged \"NVRM: API mismatch\" from {} for client version {}: not "
                                      "this host's driver, whose libnvidia-ml agrees with the module (DRV004)",
                                      m.client, client_version));
      continue;
    }
    if (host_libraries_agree && m.client_version_exact && m.client_version == *kernel) {
      r.details.push_back(fmt::format("kernel logged \"NVRM: API mismatch\" from {} for client version {}: the "
                                      "module's own version, which the kernel does not refuse",
                                      from, client_version));
      continue;
    }
    const auto same_version = std::find_if(copies.begin(), copies.end(),
                                           [&](const auto& c) { return c.version == m.client_version; });
    if (host_libraries_agree && copies_all_known && m.client_version_exact && same_version == copies.end()) {
      r.details.push_back(fmt::format("kernel logged \"NVRM: API mismatch\" from {} for client version {}: no "
                                      "driver library the loader could give nvidia-persistenced has that version "
                                      "({}): not this host's driver",
                                      from, client_version, copies_list));
      continue;
    }
    if (host_libraries_agree && !m.client_version_exact) {
      r.details.push_back(std::string("the refused client's version could not be read exactly: ") +
                          k_client_version_inexact_why);
    }
    // The host's own libraries agree, yet a copy of the refused version is installed: the loader may find
    // that copy first, and no reboot removes it.
    const bool stale_copy = host_libraries_agree && m.client_version_exact && same_version != copies.end();
    return stop(Code::api_mismatch_logged,
                fmt::format("kernel logged \"NVRM: API mismatch\"{}: client {}{}, kernel module {}; {}; skipping "
                            "nvidia-persistenced",
                            m.client.empty() ? "" : " from " + m.client, client_version,
                            stale_copy ? " (installed as " + same_version->path + ")" : std::string(),
                            m.kernel_version.empty() ? "?" : m.kernel_version,
                            stale_copy            ? "remove or update that copy, which the loader may find first"
                            : host_libraries_agree ? k_cannot_clear_line
                                                   : k_finish_update));
  }
  if (!f.kernel_log.source.has()) {
    r.details.push_back("kernel log not read: " + f.kernel_log.source.missing);
  } else if (f.kernel_log.newest_unread) {
    // Not a reason to skip (the versions agree, compared above), but no proof either: said, not hidden.
    r.details.push_back("kernel log read in part: " + *f.kernel_log.source +
                        "; an API mismatch logged in its newest records would not have been seen");
  }

  bool ctl = false;
  bool gpu = false;
  for (const auto& n : f.driver.device_nodes) {
    ctl = ctl || n.path == "/dev/nvidiactl";
    gpu = gpu || is_gpu_node(n.path);
  }
  // Where no udev rule makes them (the .run installer's nodes), the first client's libnvidia-cfg creates them
  // through nvidia-modprobe: the daemon is that client. Skipping would keep it down for good.
  if (!ctl || !gpu) {
    r.details.push_back(fmt::format("{} not there yet: nvidia-persistenced's libnvidia-cfg creates the nodes through "
                                    "nvidia-modprobe",
                                    !ctl ? "/dev/nvidiactl" : "every /dev/nvidiaN"));
  }

  std::vector<std::string> unchecked;
  for (const auto& a : f.access) {
    if (!a.usable) {
      return stop(Code::device_access, fmt::format("user {} cannot open {}: {}; skipping nvidia-persistenced",
                                                   f.user, a.path, a.why));
    }
    if (!a.checked) {
      unchecked.push_back(a.path + " (" + a.why + ")");
    }
  }
  // Not a half-updated driver: the daemon starts, and says so itself if its user cannot open a node.
  if (!unchecked.empty()) {
    r.details.push_back(fmt::format("user {}'s access was not checked for {}", f.user, fmt::join(unchecked, ", ")));
  } else if (!f.user.empty()) {
    r.details.push_back(fmt::format("user {} can open every /dev/nvidia* node", f.user));
  }
  if (!f.access_unchecked.empty()) {
    r.details.push_back(f.access_unchecked);
  }
  r.line = kernel.has() ? fmt::format("nvidia driver {} ready: starting nvidia-persistenced", *kernel)
                        : "nvidia driver ready: starting nvidia-persistenced";
  return r;
}

}  // namespace gpuwarm::guard
