#include "sysfs/daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "core/fs.h"
#include "core/strings.h"
#include "sysfs/processes.h"

namespace gpuwarm {

const std::vector<std::string> k_daemon_search_dirs = {
    "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/usr/local/nvidia/bin", "/opt/nvidia/bin",
    "/run/current-system/sw/bin", "/run/nvidia/driver/usr/bin", "/opt/bin"};

namespace {

constexpr std::string_view k_daemon_name = "nvidia-persistenced";

}  // namespace

Fact<std::string> find_daemon_binary(const Paths& paths) {
  // Never the caller's PATH: root runs this binary (guard) and writes its path
  // into a unit that runs at boot (fix). Only system directories, and only a
  // file and directory no one but root (or the caller) can replace.
  auto found = find_system_executable(paths.root(), std::string(k_daemon_name), k_daemon_search_dirs);
  return found ? Fact<std::string>::known(*found) : Fact<std::string>::unknown(found.error().message);
}

std::string daemon_location(const std::string& binary) {
  auto slash = binary.rfind('/');
  std::string dir = slash == std::string::npos ? std::string{} : binary.substr(0, slash);
  if (dir == "/run/current-system/sw/bin") return "NixOS system profile";
  if (dir == "/run/nvidia/driver/usr/bin") return "GPU Operator driver container";
  if (dir == "/usr/local/nvidia/bin") return "cloud-image driver";
  if (dir == "/opt/bin") return "Flatcar driver";
  return "system directory";
}

namespace {

// The command name first, and the arguments only then (see sysfs/processes.h): a name the daemon's process
// may have (comm_may_be_daemon), or the PID the daemon wrote to its PID file, whatever its name.
bool may_be_daemon(const ProcessName& p, const Fact<int>& pid_file_pid) {
  return comm_may_be_daemon(p.comm) || pid_file_pid.is(p.pid);
}

bool is_daemon(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    return false;
  }
  return last_path_component(argv[0]) == k_daemon_name;
}

Fact<unsigned> read_uid(const std::string& status_path) {
  auto text = read_file(status_path, 64u << 10);
  if (!text) {
    return Fact<unsigned>::unknown(text.error().message);
  }
  for (const auto& line : split_lines(*text)) {
    if (starts_with(line, "Uid:")) {
      auto fields = split(trim(std::string_view(line).substr(4)), '\t');
      if (auto uid = parse_u64(trim(fields[0])); uid && *uid <= 0xffffffffu) {
        return Fact<unsigned>::known(static_cast<unsigned>(*uid));
      }
    }
  }
  return Fact<unsigned>::unknown("no Uid line");
}

// The daemon runs as root, or as the user its --user names (it drops to that user once the GPUs are open).
// A process of any other user is someone else's, named like the daemon: never taken for it. "" when it may
// be the daemon (also when /etc/passwd cannot tell).
std::string not_the_daemons_user(const Paths& paths, const std::vector<std::string>& argv, const Fact<unsigned>& uid) {
  if (!uid.has() || *uid == 0 || argv.empty()) {
    return {};
  }
  std::string user;
  for (std::size_t i = 1; i < argv.size(); ++i) {
    if ((argv[i] == "--user" || argv[i] == "-u") && i + 1 < argv.size()) {
      user = argv[i + 1];
    } else if (starts_with(argv[i], "--user=")) {
      user = argv[i].substr(7);
    }
  }
  if (user.empty()) {
    return fmt::format("runs as uid {} with no --user: nvidia-persistenced stays root unless told otherwise", *uid);
  }
  // The daemon drops to a system account (the packages' nvidia-persistenced); a login account's process is a
  // user's, whatever --user it names (its own, to pass the check below). nobody (65534) is no login account.
  unsigned uid_min = 1000;
  if (auto defs = read_file(paths.host("/etc/login.defs"), 1u << 20)) {
    for (const auto& line : split_lines(*defs)) {
      const std::string_view l = trim(line);
      if (l.starts_with("UID_MIN") && l.size() > 7 && (l[7] == ' ' || l[7] == '\t')) {
        if (auto v = parse_u64(std::string(trim(l.substr(7)))); v && *v > 0 && *v < 0x7fffffff) {
          uid_min = static_cast<unsigned>(*v);
        }
      }
    }
  }
  if (*uid >= uid_min && *uid != 65534) {
    return fmt::format("runs as uid {}, a login account (UID_MIN {}): the daemon runs as root or a system account",
                       *uid, uid_min);
  }
  auto passwd = read_file(paths.host("/etc/passwd"), 4u << 20);
  if (!passwd) {
    return {};
  }
  for (const auto& line : split_lines(*passwd)) {
    auto fields = split(line, ':');
    if (fields.size() > 2 && fields[0] == user) {
      auto expected = parse_u64(fields[2]);
      if (expected && *expected == *uid) {
        return {};
      }
      return fmt::format("runs as uid {}, not as root or as its --user {} (uid {})", *uid, escape_control(user),
                         escape_control(fields[2]));
    }
  }
  return {};
}

// The daemon's executable: a file named nvidia-persistenced (NixOS runs .nvidia-persistenced-wrapped) that no
// user but root (or the caller) could have put there. A process chooses its command name, argv[0] and --user
// itself; it cannot choose its executable. "" when it may be the daemon; also when the link cannot be read
// for want of privilege (its open files cannot be read either, and "needs root" says so).
std::string not_the_daemons_executable(const Paths& paths, int pid, std::string& executable) {
  const std::string link = paths.proc(std::to_string(pid) + "/exe");
  auto text = read_link(link);
  if (!text) {
    const std::string& why = text.error().message;
    if (why.find("denied") != std::string::npos || why.find("not permitted") != std::string::npos) {
      return {};
    }
    return "its executable could not be read (" + paths.display(why) + ")";
  }
  std::string path = *text;
  constexpr std::string_view deleted = " (deleted)";  // replaced since it started (a driver update)
  const bool replaced = std::string_view(path).ends_with(deleted);
  if (replaced) {
    path.resize(path.size() - deleted.size());
  }
  executable = printable(*text);
  const std::string_view name = last_path_component(path);
  if (name != k_daemon_name && name != ".nvidia-persistenced-wrapped") {
    return fmt::format("runs {}, not nvidia-persistenced", executable);
  }
  // On this host the file itself, reached through the link whatever its path (replaced, or out of gpuwarm's
  // mount view): root's, and writable by no one else.
  if (paths.is_live()) {
    struct stat st {};
    if (::stat(link.c_str(), &st) != 0) {
      return errno == EACCES || errno == EPERM ? std::string{} : fmt::format("runs {}, which cannot be checked", executable);
    }
    if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != ::geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
      return fmt::format("runs {}, a file not root's or writable by others", executable);
    }
  }
  // Then where it lies: the file, or the folder of a replaced one, must be in folders only root can change. One
  // out of view (gpuwarm in a container of its own, a --root showing part of the host such as the exporter's
  // pod, or a folder an update removed) cannot be checked: the name and the file are all there is to go on.
  std::string where = path;
  if (replaced) {
    const auto slash = path.rfind('/');
    where = slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }
  struct stat seen {};
  if (::lstat(paths.host(where).c_str(), &seen) != 0 && errno == ENOENT) {
    return {};
  }
  if (std::string why = replaceable_by_others(paths.host(where)); !why.empty()) {
    return replaced ? fmt::format("runs {}, whose folder {}", executable, why)
                    : fmt::format("runs {}, which {}", executable, why);
  }
  return {};
}

}  // namespace

DaemonFacts read_daemon(const Paths& paths) { return read_daemon(paths, list_processes(paths)); }

DaemonFacts read_daemon(const Paths& paths, const Result<std::vector<ProcessName>>& processes,
                        const CmdlineReader& cmdline_reader, std::chrono::milliseconds cmdline_deadline) {
  DaemonFacts facts;
  facts.binary = find_daemon_binary(paths);
  if (facts.binary.has()) {
    facts.binary_found_by = daemon_location(*facts.binary);
  }

  const std::string runtime_dir = paths.run("nvidia-persistenced");
  facts.runtime_dir = path_exists(runtime_dir);
  facts.socket = path_exists(runtime_dir + "/socket");
  if (auto text = read_first_line(runtime_dir + "/nvidia-persistenced.pid")) {
    auto pid = parse_u64(*text);
    facts.pid_file_pid = pid && *pid <= 0x7fffffff ? Fact<int>::known(static_cast<int>(*pid))
                                                   : Fact<int>::unknown("unparsable PID file");
  } else {
    facts.pid_file_pid = Fact<int>::unknown(paths.display(text.error().message));
  }

  // This host's namespaces are PID 1's (of the /proc being read): a daemon in another mount or PID namespace
  // is a container's, holding the container's view of the GPUs; it is named, never counted as this host's.
  auto host_mnt = read_link(paths.proc("1/ns/mnt"));
  auto host_pid = read_link(paths.proc("1/ns/pid"));
  if (auto init = read_file(paths.proc("1/cgroup"), 64u << 10)) {
    // systemd runs itself in <its root>/init.scope; the units' cgroups are below that root.
    constexpr std::string_view init_scope = "/init.scope";
    if (std::string own = systemd_cgroup_of(*init); own.ends_with(init_scope)) {
      own.resize(own.size() - init_scope.size());
      facts.manager_cgroup = Fact<std::string>::known(own.empty() ? "/" : own);
    } else {
      facts.manager_cgroup = Fact<std::string>::unknown("PID 1 is not in an init.scope: no systemd");
    }
  } else {
    facts.manager_cgroup = Fact<std::string>::unknown(paths.display(init.error().message));
  }
  if (!processes) {
    facts.processes_unread = paths.display(processes.error().message);
  } else {
    for (const auto& process : *processes) {
      if (!may_be_daemon(process, facts.pid_file_pid)) {
        continue;
      }
      const std::string entry = std::to_string(process.pid);
      // Bounded even here: the daemon holds every GPU open, so it is the process most likely to be stuck in
      // a wedged driver, with its memory lock held.
      CmdlineRead read = read_cmdline(paths, process.pid, cmdline_deadline, cmdline_reader);
      std::vector<std::string> argv;
      if (read.text) {
        argv = split_cmdline(*read.text);
        if (!is_daemon(argv)) {
          continue;
        }
      } else if (!comm_named_like_daemon(process.comm)) {
        continue;  // its arguments would have to say it is the daemon; they cannot be read
      }
      auto mnt = read_link(paths.proc(entry + "/ns/mnt"));
      auto pid_ns = read_link(paths.proc(entry + "/ns/pid"));
      std::string other;
      if (host_mnt && mnt && *mnt != *host_mnt) {
        other = fmt::format("another mount namespace ({}, the host's {})", *mnt, *host_mnt);
      } else if (host_pid && pid_ns && *pid_ns != *host_pid) {
        other = fmt::format("another PID namespace ({}, the host's {})", *pid_ns, *host_pid);
      }
      if (!other.empty()) {
        facts.foreign.push_back({process.pid, other + ": a container's daemon, not this host's"});
        continue;
      }
      DaemonProcess proc;
      proc.pid = process.pid;
      proc.uid = read_uid(paths.proc(entry + "/status"));
      if (auto cgroup = read_file(paths.proc(entry + "/cgroup"), 64u << 10)) {
        proc.cgroup = Fact<std::string>::known(systemd_cgroup_of(*cgroup));
      } else {
        proc.cgroup = Fact<std::string>::unknown(paths.display(cgroup.error().message));
      }
      std::string why = not_the_daemons_executable(paths, process.pid, proc.executable);
      // In the system unit's own cgroup systemd put it there (only root can: system.slice is root's), so its user
      // is the one the unit runs it as, a uid above UID_MIN included (an account made without --system). Exactly
      // that path: a user's own manager makes .../user@1000.service/app.slice/nvidia-persistenced.service too.
      const bool in_the_units_cgroup = proc.cgroup.is(k_unit_cgroup);
      if (why.empty() && !in_the_units_cgroup) {
        why = not_the_daemons_user(paths, argv, proc.uid);
      }
      if (!why.empty()) {
        facts.not_daemon.push_back({process.pid, why + ": not the daemon"});
        continue;
      }
      proc.argv = std::move(argv);
      proc.argv_missing = std::move(read.missing);
      if (auto files = read_open_files(paths, process.pid)) {
        proc.held_minors = Fact<std::vector<unsigned>>::known(held_gpu_minors(*files));
      } else {
        // Root refused too (a container without CAP_SYS_PTRACE, an LSM) is no "needs root": it is unknown.
        const bool denied = files.error().message.find("denied") != std::string::npos;
        proc.held_minors = Fact<std::vector<unsigned>>::unknown(
            denied && ::geteuid() != 0
                ? std::string(k_open_files_need_root)
                : paths.display(files.error().message) +
                      (denied ? " (refused to root: the kernel's ptrace check, e.g. a container without "
                                "CAP_SYS_PTRACE)"
                              : ""));
      }
      facts.processes.push_back(std::move(proc));
    }
  }
  return facts;
}

std::string systemd_cgroup_of(std::string_view proc_cgroup) {
  std::string_view v1;
  while (!proc_cgroup.empty()) {
    const auto end = proc_cgroup.find('\n');
    std::string_view line = proc_cgroup.substr(0, end);
    proc_cgroup = end == std::string_view::npos ? std::string_view{} : proc_cgroup.substr(end + 1);
    if (line.starts_with("0::")) {
      return std::string(line.substr(3));
    }
    if (const auto at = line.find(":name=systemd:"); at != std::string_view::npos && v1.empty()) {
      v1 = line.substr(at + std::string_view(":name=systemd:").size());
    }
  }
  return std::string(v1);
}

namespace {
// `path` is `root` or a cgroup below it ("" is the root of everything).
bool at_or_below(std::string_view path, std::string_view root) {
  return path.starts_with(root) && (path.size() == root.size() || path[root.size()] == '/' || root.empty());
}
}  // namespace

void set_apart_daemons_outside_the_unit(DaemonFacts& daemon, const ServiceFacts& service) {
  if (!service.reachable || !service.active_state.is("active") || !service.control_group.has() ||
      service.control_group->empty() || !service.manager_control_group.has() || !daemon.manager_cgroup.has()) {
    return;
  }
  // systemd names cgroups from its own root (its ControlGroup, "" on a host or in a cgroup namespace); this
  // /proc shows them from the reader's, where systemd's root is manager_cgroup. The unit's cgroup as this
  // /proc shows it is that root plus the unit's path below systemd's. Paths that do not line up set nothing
  // apart: a wrong guess here would report a running daemon as gone.
  std::string systemd_root = *service.manager_control_group;
  if (systemd_root == "/") {
    systemd_root.clear();
  }
  const std::string& named = *service.control_group;
  if (!at_or_below(named, systemd_root) || named.size() == systemd_root.size()) {
    return;
  }
  const std::string below = named.substr(systemd_root.size());
  const std::string& root = *daemon.manager_cgroup;
  const std::string unit_cgroup = root == "/" ? below : root + below;
  std::vector<DaemonProcess> kept;
  for (auto& process : daemon.processes) {
    // An unread cgroup keeps the process (hidepid, a gpuwarm not run as root), except a path too long to be
    // read: a user with a delegated tree can nest one that deep to hide where it runs.
    const bool too_long = !process.cgroup.has() && process.cgroup.missing.find(std::strerror(ENAMETOOLONG)) !=
                                                       std::string::npos;
    if (!too_long && (!process.cgroup.has() || at_or_below(*process.cgroup, unit_cgroup))) {
      kept.push_back(std::move(process));
      continue;
    }
    const std::string where = too_long ? std::string("a cgroup too deep to read") : printable(*process.cgroup);
    daemon.not_daemon.push_back({process.pid, fmt::format("runs in {}, outside {} ({}), which is active: not the daemon",
                                                          where, service.unit, printable(unit_cgroup))});
  }
  daemon.processes = std::move(kept);
}

}  // namespace gpuwarm
