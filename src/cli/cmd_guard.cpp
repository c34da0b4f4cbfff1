// `gpuwarm guard`: the ExecCondition= of nvidia-persistenced.service. Reads
// only what needs no GPU: the module, the user-space driver files, the kernel
// log and the device nodes. It never initializes NVML (on a half-updated
// driver that fails anyway, and attaching GPUs would cost seconds each).

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "cli/child_process.h"
#include "cli/command.h"
#include "cli/option_checks.h"
#include "core/host.h"
#include "core/paths.h"
#include "core/strings.h"
#include "guard/guard.h"
#include "core/deadline.h"
#include "core/elf.h"
#include "core/fs.h"
#include "nvml/nvml_library.h"
#include "snapshot/snapshot_json.h"
#include "sysfs/daemon.h"
#include "sysfs/driver.h"
#include "sysfs/kernel_log.h"

namespace gpuwarm {

namespace {

struct GuardOptions {
  std::string root = "/";
  bool root_trusted = false;  // --trust-root
  std::string nvml_library;
  std::string kernel_log;
  std::string user;
  std::string daemon;  // the nvidia-persistenced binary; "" = search PATH and the usual directories
  bool json = false;
  bool verbose = false;
  std::string inject_fault;  // tests only: "throw", "segv", or "hang-user" (the user lookup never returns)
};

// A crash in the guard must not fail the unit (ExecCondition: a signal = failed).
extern "C" void on_fatal_signal(int sig) {
  const char msg[] = "gpuwarm guard: internal error (fatal signal): skipping nvidia-persistenced\n";
  (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)sig;
  ::_exit(static_cast<int>(guard::Code::internal_error));
}

void contain_crashes() {
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) {
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = static_cast<int>(SA_RESETHAND);
    ::sigaction(sig, &sa, nullptr);
  }
}

struct NvmlVersion {
  guard::UserSpaceVersion version;
  std::string real_path;
};

// Found as every command finds NVML (--nvml, the loader, the known driver
// locations, under --root the root's copies). Never initialized.
NvmlVersion nvml_version(const nvml::LibrarySearch& search) {
  NvmlVersion out{{"libnvidia-ml", std::nullopt, ""}, ""};
  guard::UserSpaceVersion& v = out.version;
  // A tree whose code must not run as root still names its version in its files' names: compared without
  // loading anything (libnvidia-cfg's is read the same way, beside it).
  if (const std::string refused = nvml::refused_as_root(search, ::geteuid() == 0); !refused.empty()) {
    if (const std::vector<std::string> files = nvml::library_files(search); !files.empty()) {
      std::error_code ec;
      const std::string real = std::filesystem::canonical(files.front(), ec).string();
      if (std::string from_name = ec ? "" : nvml::version_from_library_name(real); !from_name.empty()) {
        v.version = std::move(from_name);
        out.real_path = real;
      } else {
        v.missing = files.front() + ": not loaded as root, and its file name gives no version: " + refused;
      }
      return out;
    }
  }
  auto lib = nvml::Library::open(search);
  if (!lib) {
    v.missing = "not loadable: " + lib.error().message;
    return out;
  }
  std::string& real_path = out.real_path;
  real_path = (*lib)->real_path();
  std::string from_name = nvml::version_from_library_name(real_path);
  if (!from_name.empty()) {
    v.version = from_name;
    return out;
  }
  // nvmlSystemGetNVMLVersion answers before (and without) nvmlInit.
  char buf[nvml::k_string_buffer] = {};
  if ((*lib)->api().system_get_nvml_version != nullptr &&
      (*lib)->api().system_get_nvml_version(buf, sizeof buf) == nvml::ret::success) {
    // As the collector reads it: ended within the buffer, and printable (it reaches --verbose and --json).
    buf[sizeof buf - 1] = '\0';
    v.version = nvml::driver_version_from_nvml_version(printable(buf));
  } else {
    v.missing = "no version in " + real_path;
  }
  return out;
}

// The guard runs at boot as ExecCondition=: loading the library must not hang it.
constexpr std::chrono::seconds k_guard_nvml_timeout{10};
constexpr std::chrono::seconds k_guard_user_timeout{5};

NvmlVersion nvml_version_with_deadline(const nvml::LibrarySearch& search) {
  auto result = run_with_deadline<NvmlVersion>(k_guard_nvml_timeout,
                                               [search](Progress&) { return nvml_version(search); });
  if (result.value) {
    return std::move(*result.value);
  }
  return {{"libnvidia-ml", std::nullopt,
           fmt::format("NVML did not answer in {} s", k_guard_nvml_timeout.count())},
          ""};
}

// libnvidia-cfg (what the daemon loads) is installed beside libnvidia-ml.
guard::UserSpaceVersion cfg_version(const std::string& nvml_real_path) {
  guard::UserSpaceVersion v{"libnvidia-cfg", std::nullopt, ""};
  if (nvml_real_path.empty()) {
    v.missing = "not looked for (no libnvidia-ml)";
    return v;
  }
  auto dir = std::filesystem::path(nvml_real_path).parent_path();
  std::error_code ec;
  auto real = std::filesystem::canonical(dir / "libnvidia-cfg.so.1", ec);
  if (ec) {
    v.missing = "no libnvidia-cfg.so.1 in " + dir.string();
    return v;
  }
  std::string version = nvml::version_from_library_name(real.string());
  if (version.empty()) {
    v.missing = "no version in " + real.string();
  } else {
    v.version = version;
  }
  return v;
}

// The folders the daemon binary asks the loader to search first (its RUNPATH), as folders of the root, or
// `gap` saying why they are unknown: no binary, or a wrapper (a script, or a binary beside the
// ".<name>-wrapped" it runs), which may run anything with any loader variables.
void daemon_search_path(const Paths& paths, const std::string& daemon, std::vector<std::string>& folders,
                        std::string& gap) {
  if (daemon.empty()) {
    gap = "nvidia-persistenced not found: where it would load libnvidia-cfg from is unknown";
    return;
  }
  auto bytes = read_file(daemon, 64u << 20);
  if (!bytes) {
    gap = paths.display(bytes.error().message);
    return;
  }
  const std::filesystem::path file(daemon);
  ElfSearchPaths asked = elf_search_paths(*bytes, paths.display(file.parent_path().string()));
  const std::string wrapped = (file.parent_path() / ("." + file.filename().string() + "-wrapped")).string();
  if (!asked.elf) {
    gap = paths.display(daemon) + ": a script, not the daemon: what it runs, and where from, is not known";
    return;
  }
  if (path_exists(wrapped)) {
    gap = paths.display(daemon) + ": a wrapper of " + paths.display(wrapped) + ": what it sets is not known";
    return;
  }
  folders = std::move(asked.folders);
  if (!asked.unread.empty()) {
    gap = paths.display(daemon) + ": " + asked.unread;
  }
}

// The copies of the daemon's libraries the loader could give it, looked for only where a logged mismatch may
// be the daemon's (named like it, or not named), and under a deadline: the guard runs at boot, and a folder
// on a network mount that hangs must not hold the unit past its start timeout (that would fail it).
constexpr std::chrono::seconds k_guard_copies_timeout{5};

LoadableCopies loadable_copies_if_needed(const KernelLogFacts& log, const Paths& paths,
                                         const std::string& nvml_real_path, const std::string& daemon) {
  const bool needed = std::any_of(log.mismatches.begin(), log.mismatches.end(), [](const ApiMismatch& m) {
    return m.after_module_load && (m.client.empty() || m.refused_the_daemon());
  });
  if (!needed) {
    return {};
  }
  auto result = run_with_deadline<LoadableCopies>(
      k_guard_copies_timeout, [paths, nvml_real_path, daemon](Progress& progress) {
        // The folder NVML was taken from counts too: --nvml may name one no search would reach.
        std::vector<std::string> folders;
        if (!nvml_real_path.empty()) {
          folders.push_back(std::filesystem::path(nvml_real_path).parent_path().string());
        }
        // The daemon's own search path (NixOS builds it with a RUNPATH), folders of the root.
        std::vector<std::string> daemon_folders;
        std::string gap;
        progress.set("reading " + daemon);
        daemon_search_path(paths, daemon, daemon_folders, gap);
        progress.set("looking for libnvidia-cfg.so.1 and libnvidia-ml.so.1");
        LoadableCopies found = nvml::loadable_copies(paths.root(), {"libnvidia-cfg.so.1", "libnvidia-ml.so.1"},
                                                     folders, daemon_folders);
        if (!gap.empty()) {
          found.unread += (found.unread.empty() ? "" : "; ") + gap;
        }
        return found;
      });
  if (result.value) {
    return std::move(*result.value);
  }
  LoadableCopies unread;
  unread.looked = true;
  unread.unread = result.stuck_at.starts_with("failed: ")
                      ? result.stuck_at
                      : fmt::format("the search did not answer in {} s ({})", k_guard_copies_timeout.count(),
                                    result.stuck_at);
  return unread;
}

// The daemon binary to ask: --daemon as given, else the first in the usual directories, links resolved
// inside the root as find_system_executable followed them. A host path; "" with `missing` said.
std::string daemon_binary(const Paths& paths, const std::string& given, std::string& missing) {
  if (!given.empty()) {
    // Named by the operator, but run as root at every boot all the same: only where no one else could have put
    // another program (the file, its folders and any link on the way), as find_system_executable requires.
    const std::filesystem::path file(given);
    auto trusted = find_system_executable("/", file.filename().string(), {file.parent_path().string()});
    if (!trusted) {
      missing = ::access(given.c_str(), X_OK) != 0 ? "--daemon " + given + " is not executable"
                                                   : "--daemon " + given + " not run: " + trusted.error().message;
      return {};
    }
    return given;
  }
  Fact<std::string> found = find_daemon_binary(paths);
  if (!found.has()) {
    missing = found.missing;
    return {};
  }
  std::string binary = paths.resolve(*found);
  if (binary.empty()) {
    missing = *found + ": gone since it was checked";
  }
  return binary;
}

// `not_run`: why the binary, the root's, must not run here (untrusted_root_for_code), or "".
guard::UserSpaceVersion daemon_version(const Paths& paths, const std::string& binary, const std::string& missing,
                                       const std::string& not_run) {
  guard::UserSpaceVersion v{"nvidia-persistenced --version", std::nullopt, "", false};
  if (binary.empty()) {
    v.missing = missing;
    return v;
  }
  if (!not_run.empty()) {
    v.missing = paths.display(binary) + " not run: " + not_run;
    return v;
  }
  auto out = run_capture({binary, "--version"}, 5000);
  if (!out) {
    v.missing = out.error().message;
    return v;
  }
  auto at = out->find("version");
  std::string version = find_version_token(*out, at == std::string::npos ? 0 : at);
  if (version.empty()) {
    v.missing = "no version in its output";
  } else {
    v.version = version;
  }
  return v;
}

// Read and write permission on every /dev/nvidia* node for the user: its owner, groups and the node's mode bits
// or ACL (guard::node_access_for decides).
std::vector<guard::NodeAccess> node_access(const Paths& paths, const DriverFacts& driver, const std::string& user,
                                           std::string& error) {
  std::vector<guard::NodeAccess> out;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  // A uid names the same user as its name would: its primary and
  // supplementary groups count too (the daemon gets them via initgroups).
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  auto numeric = parse_u64(user);
  if (numeric && *numeric >= 0xffffffffULL) {
    // (uid_t)-1 is no user, and a larger number would wrap (4294967296 to root, whose access says nothing).
    error = "no such user: " + user + " (a uid is below 4294967295)";
    return out;
  }
  int rc = numeric ? ::getpwuid_r(static_cast<uid_t>(*numeric), &pw, buf.data(), buf.size(), &found)
                   : ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (numeric && (rc != 0 || found == nullptr)) {
    uid = static_cast<uid_t>(*numeric);  // a uid with no passwd entry: its own group, nothing more
    gid = static_cast<gid_t>(*numeric);
    groups.push_back(gid);
  } else {
    if (rc != 0 || found == nullptr) {
      error = "no such user: " + user;
      return out;
    }
    uid = pw.pw_uid;
    gid = pw.pw_gid;
    // getgrouplist asks every group source nsswitch.conf names, a directory server included, even for a local
    // user: it may not answer early in boot (the caller waits for it only so long).
    int n = 64;
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw.pw_name, gid, groups.data(), &n) < 0) {
      groups.resize(static_cast<std::size_t>(n));
      ::getgrouplist(pw.pw_name, gid, groups.data(), &n);
    }
    groups.resize(static_cast<std::size_t>(n));
  }
  const std::vector<unsigned> group_ids(groups.begin(), groups.end());
  for (const auto& node : driver.device_nodes) {
    const std::string host = paths.host(node.path);
    struct stat st {};
    if (::stat(host.c_str(), &st) != 0) {
      continue;
    }
    guard::NodePermissions permissions{st.st_mode, st.st_uid, st.st_gid, {}};
    // The ACL decides where there is one (udev's uaccess, a site's setfacl), as it does for the kernel.
    std::string acl(64u << 10, '\0');
    const ssize_t got = ::getxattr(host.c_str(), "system.posix_acl_access", acl.data(), acl.size());
    if (got >= 0) {
      acl.resize(static_cast<std::size_t>(got));
      permissions.acl = std::move(acl);
    } else if (errno != ENODATA && errno != ENOTSUP) {
      out.push_back({node.path, true, std::string("its ACL could not be read: ") + std::strerror(errno), false});
      continue;
    }
    out.push_back(guard::node_access_for(node.path, permissions, uid, group_ids));
  }
  return out;
}

int finish(const guard::GuardResult& r, const GuardOptions& opts) {
  const auto& table = guard::codes();
  auto info = std::find_if(table.begin(), table.end(), [&](const auto& c) { return c.code == r.code; });
  if (opts.json) {
    std::cout << dump_json({{"kind", "gpuwarm-guard"},
                            {"schema_version", 1},
                            {"hostname", host_name()},
                            {"taken_at", utc_now_iso8601()},
                            {"exit_code", static_cast<int>(r.code)},
                            {"reason", info != table.end() ? info->name : "?"},
                            {"line", r.line},
                            {"details", r.details}})
              << "\n";
  } else {
    // Paths and a library's RUNPATH bytes reach the journal and a terminal: escaped (review-s53-root L3).
    std::cout << "gpuwarm guard: " << escape_control(r.line) << "\n";
    if (opts.verbose) {
      for (const auto& d : r.details) {
        std::cout << "  " << escape_control(d) << "\n";
      }
    }
  }
  return static_cast<int>(r.code);
}

}  // namespace

std::function<int()> setup_guard(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<GuardOptions>();
  sub.add_option("--user", opts->user,
                 "The daemon's user (name or uid): check that it can read and write every /dev/nvidia* node, "
                 "by the node's ACL where it has one (udev's uaccess, setfacl), else its mode bits (not checked "
                 "when its groups are not read within 5 s)")
      ->type_name("USER");
  // A mistyped root must not read as "module not loaded" (which starts the daemon): it is a usage error.
  sub.add_option("--root", opts->root,
                 "Read /proc, /sys, /dev and the daemon binary under DIR (tests). As root, DIR's nvidia-persistenced "
                 "is not run for its --version, nor its libnvidia-ml loaded, unless --trust-root says DIR is this "
                 "host's own tree")
      ->check(CLI::ExistingDirectory.description(""))
      ->transform(from_working_directory())
      ->type_name("DIR");
  sub.add_flag("--trust-root", opts->root_trusted,
               "DIR of --root is this host's own / (mounted in a pod as /host): run its nvidia-persistenced and "
               "load its libnvidia-ml as root. Never for a container's or an unpacked image's tree")
      ->needs("--root");
  existing_file_path(sub.add_option(
      "--nvml", opts->nvml_library,
      "The user-space NVML library file to compare (default: found as `diagnose` finds it, under --root the "
      "root's). As root it is loaded only if it and every folder above it are root's and writable by no one "
      "else (otherwise its version is not read and the unit is skipped), and one inside DIR only with --trust-root "
      "(otherwise its version is read from its file name)"));
  existing_file_path(sub.add_option("--daemon", opts->daemon,
                                    "The nvidia-persistenced binary whose --version to compare, run only if no one but "
                                    "root can replace it (default: the first found in the usual system directories; "
                                    "never the caller's PATH)"));
  existing_file_path(sub.add_option("--kernel-log", opts->kernel_log,
                                    "Read kernel messages from this file (dmesg, journalctl -k or kern.log text) "
                                    "instead of /dev/kmsg; one that cannot be read skips the unit"));
  sub.add_flag("--verbose", opts->verbose, "Also print every version and check seen");
  sub.add_flag("--json", opts->json, "Print the decision as JSON");
  sub.add_option("--inject-fault", opts->inject_fault)->group("");  // tests: prove a crash still skips
  std::string footer =
      "Meant for nvidia-persistenced.service's ExecCondition= (contrib/systemd/ has the drop-in): a driver\n"
      "updated without a reboot leaves the old kernel module loaded, the daemon cannot start, the unit\n"
      "fails and deploy tools roll back. With the guard the unit is skipped instead (inactive, not failed)\n"
      "and the journal says why in one line. It reads the module version (/proc/driver/nvidia/version),\n"
      "the user-space versions (libnvidia-ml and libnvidia-cfg file names, `nvidia-persistenced\n"
      "--version`), \"NVRM: API mismatch\" lines since the module loaded, and the device nodes. It never\n"
      "initializes NVML or touches a GPU. A mismatch logged for a client that may be the daemon (named so,\n"
      "or not named) does not skip the unit when the version it asked with, read exactly from the line, is\n"
      "the module's own or one that no libnvidia-cfg.so.1 or libnvidia-ml.so.1 has where the loader looks\n"
      "(LD_LIBRARY_PATH, the daemon binary's RUNPATH, the known driver folders, each with its glibc-hwcaps\n"
      "and older tls/platform subfolders, and /etc/ld.so.cache's entries), every such place having been\n"
      "read within 5 s: any process can take the daemon's name and ask with a made-up version.\n"
      "Trust /dev/kmsg (the default): the kernel escapes the new lines in a record there. A text log given\n"
      "with --kernel-log is read record by record, but a syslog file also takes any local program's lines\n"
      "tagged \"kernel\", and bare text (dmesg -t, journalctl -o cat) is refused: neither can tell a user's\n"
      "text from the driver's.\n\n"
      "Exit codes (ExecCondition: 0 starts the unit, 1-254 skip it cleanly; the guard never exits 255, and\n"
      "a crash inside it still exits 1):\n";
  for (const auto& c : guard::codes()) {
    footer += fmt::format("  {:3d} {:20s} {}\n", static_cast<int>(c.code), c.name, c.meaning);
  }
  footer +=
      "\nExamples:\n"
      "  gpuwarm guard --verbose; echo $?\n"
      "  cat /usr/share/gpuwarm/40-gpuwarm-guard.conf    # the packages' drop-in";
  sub.footer(footer);

  return [opts]() -> int {
    contain_crashes();
    if (opts->inject_fault == "throw") {
      throw std::runtime_error("injected fault");
    }
    if (opts->inject_fault == "segv") {
      ::raise(SIGSEGV);
    }
    Paths paths(opts->root);
    guard::GuardFacts facts;
    facts.driver = read_driver(paths);
    if (facts.driver.module_loaded) {
      // Everything that may load code (NSS for the user, the daemon's child)
      // runs before NVML is loaded: a load that hangs holds the loader's lock,
      // and the guard must still answer by its deadline.
      if (!opts->user.empty()) {
        struct Access {
          std::vector<guard::NodeAccess> nodes;
          std::string error;
        };
        const bool hang = opts->inject_fault == "hang-user";
        auto looked_up = run_with_deadline<Access>(
            k_guard_user_timeout, [paths, driver = facts.driver, user = opts->user, hang](Progress&) {
              while (hang) {
                std::this_thread::sleep_for(std::chrono::seconds(1));
              }
              Access a;
              a.nodes = node_access(paths, driver, user, a.error);
              return a;
            });
        if (!looked_up.value) {
          // Not a half-updated driver: the daemon starts, and says so itself if its user cannot open a node.
          facts.access_unchecked = fmt::format("the user {}'s groups were not read within {} s (a directory server "
                                               "in nsswitch.conf?): access to /dev/nvidia* not checked",
                                               opts->user, k_guard_user_timeout.count());
        } else if (!looked_up.value->error.empty()) {
          return finish({guard::Code::usage, looked_up.value->error + ": skipping nvidia-persistenced", {}}, *opts);
        } else {
          facts.user = opts->user;
          facts.access = std::move(looked_up.value->nodes);
        }
      }
      std::string daemon_missing;
      const std::string daemon_path = daemon_binary(paths, opts->daemon, daemon_missing);
      // A --daemon named outright is a host path, checked as such, unless it lies in the tree; one found under
      // --root is the root's.
      std::string not_run = untrusted_root_for_code(opts->root, opts->root_trusted, ::geteuid() == 0);
      if (!opts->daemon.empty() && !path_within(opts->daemon, opts->root)) {
        not_run.clear();
      }
      guard::UserSpaceVersion daemon = daemon_version(paths, daemon_path, daemon_missing, not_run);
      facts.kernel_log = read_kernel_log(paths, opts->kernel_log);
      // --nvml comes from the drop-in and is loaded at every boot: checked as the searched copies are.
      NvmlVersion nvml = nvml_version_with_deadline(
          nvml::LibrarySearch{opts->nvml_library, opts->root, opts->root_trusted, /*check_named_file=*/true});
      facts.user_space.push_back(nvml.version);
      facts.user_space.push_back(cfg_version(nvml.real_path));
      facts.user_space.push_back(daemon);
      facts.loadable = loadable_copies_if_needed(facts.kernel_log, paths, nvml.real_path, daemon_path);
    }
    return finish(guard::evaluate(facts), *opts);
  };
}

}  // namespace gpuwarm
