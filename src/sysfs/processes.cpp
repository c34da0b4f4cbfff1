#include "sysfs/processes.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "core/deadline.h"
#include "core/fs.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {

// Reads abandoned at their deadline, still blocked in the kernel; each takes its PID off when it returns.
struct BlockedReads {
  std::mutex mutex;
  std::set<int> pids;
};
BlockedReads& blocked_reads() {
  static auto* reads = new BlockedReads;  // never destroyed: an abandoned read may still use it at exit
  return *reads;
}

}  // namespace

std::string hidepid_hides_others(std::string_view mountinfo, const ProcViewer& viewer) {
  if (viewer.euid == 0) {
    return {};
  }
  std::string_view options;  // the super options of the last proc mount at /proc
  for (std::string_view line : split(mountinfo, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    std::vector<std::string_view> fields;
    for (std::string_view f : split(line, ' ')) {
      if (!f.empty()) {
        fields.push_back(f);
      }
    }
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || fields[4] != "/proc" || dash == fields.end() || fields.end() - dash < 4 ||
        dash[1] != "proc") {
      continue;
    }
    options = dash[3];
  }
  std::string_view hidepid;
  std::optional<unsigned> gid;
  for (std::string_view option : split(options, ',')) {
    if (starts_with(option, "hidepid=")) {
      hidepid = option.substr(8);
    } else if (starts_with(option, "gid=")) {
      if (auto value = parse_u64(option.substr(4)); value && *value <= 0xffffffffu) {
        gid = static_cast<unsigned>(*value);
      }
    }
  }
  if (hidepid.empty() || hidepid == "0" || hidepid == "off") {
    return {};
  }
  if (gid && std::find(viewer.groups.begin(), viewer.groups.end(), *gid) != viewer.groups.end()) {
    return {};
  }
  return fmt::format("/proc is mounted with hidepid={} and gpuwarm runs as uid {}: other users' processes are "
                     "hidden from it (run as root{})",
                     printable(hidepid), viewer.euid,
                     gid ? fmt::format(", or in the mount's group gid={}", *gid) : std::string{});
}

namespace {

ProcViewer this_process() {
  ProcViewer viewer;
  viewer.euid = ::geteuid();
  viewer.groups.push_back(::getegid());
  gid_t groups[256];
  int n = ::getgroups(256, groups);  // more than 256 groups: the gid= exemption may be missed, never wrongly given
  for (int i = 0; i < n; ++i) {
    viewer.groups.push_back(groups[i]);
  }
  return viewer;
}

}  // namespace

Result<std::vector<int>> list_pids(const Paths& paths) {
  auto entries = list_dir(paths.proc(""));
  if (!entries) {
    return tl::unexpected(entries.error());
  }
  // Only the live /proc is a mount gpuwarm can ask about; root skips the read.
  if (paths.is_live() && ::geteuid() != 0) {
    if (auto mountinfo = read_file(paths.proc("self/mountinfo"), 1u << 20)) {
      if (std::string why = hidepid_hides_others(*mountinfo, this_process()); !why.empty()) {
        return fail(std::move(why));
      }
    }
  }
  std::vector<int> pids;
  for (const auto& entry : *entries) {
    // "self", "sys", ...; and a name that is digits but not the canonical PID ("0042") is no process.
    auto pid = parse_u64(entry);
    if (pid && *pid > 0 && *pid <= 0x7fffffff && std::to_string(*pid) == entry) {
      pids.push_back(static_cast<int>(*pid));
    }
  }
  if (pids.empty()) {
    // Every real /proc lists at least PID 1 and the reader: a tree without processes recorded none.
    return fail("no process listed under " + paths.display(paths.proc("")));
  }
  return pids;
}

std::optional<int> own_pid(const Paths& paths) {
  if (paths.is_live()) {
    return static_cast<int>(::getpid());
  }
  struct statfs fs {};
  if (::statfs(paths.proc("").c_str(), &fs) != 0 || fs.f_type != PROC_SUPER_MAGIC) {
    return std::nullopt;
  }
  auto self = read_link(paths.proc("self"));
  auto pid = self ? parse_u64(*self) : std::nullopt;
  if (!pid || *pid == 0 || *pid > 0x7fffffffu) {
    return std::nullopt;
  }
  return static_cast<int>(*pid);
}

std::string read_comm(const Paths& paths, int pid) {
  auto text = read_first_line(paths.proc(std::to_string(pid) + "/comm"));
  return text ? printable(*text) : std::string{};
}

namespace {

// The kernel's procfs makes every file under it itself: no device node, no link anyone planted. There a
// command name is read with openat on /proc's descriptor and one read (3 system calls, where read_file's
// checks take 7: on 2,000 processes that was a fifth of `check`). A tree under --root that is not procfs
// (a recording, a container without /proc mounted) goes through read_file and its checks.
class ProcDir {
 public:
  explicit ProcDir(const Paths& paths) : m_fd(::open(paths.proc("").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    struct statfs fs {};
    m_procfs = m_fd >= 0 && ::fstatfs(m_fd, &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
  }
  ~ProcDir() {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
  }
  ProcDir(const ProcDir&) = delete;
  ProcDir& operator=(const ProcDir&) = delete;
  bool procfs() const { return m_procfs; }

  std::string comm(int pid) const {
    char path[24];
    std::snprintf(path, sizeof path, "%d/comm", pid);
    int fd = ::openat(m_fd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
      return {};  // exited since the listing
    }
    char buf[64];  // the kernel's name is at most 15 bytes and a newline
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    if (n <= 0) {
      return {};
    }
    std::string_view text(buf, static_cast<std::size_t>(n));
    return printable(trim(text.substr(0, text.find('\n'))));
  }

 private:
  int m_fd = -1;
  bool m_procfs = false;
};

}  // namespace

Result<std::vector<ProcessName>> list_processes(const Paths& paths) {
  auto pids = list_pids(paths);
  if (!pids) {
    return tl::unexpected(pids.error());
  }
  const ProcDir proc(paths);
  std::vector<ProcessName> out;
  out.reserve(pids->size());
  for (int pid : *pids) {
    out.push_back({pid, proc.procfs() ? proc.comm(pid) : read_comm(paths, pid)});
  }
  return out;
}

std::string read_cmdline_file(const std::string& path) { return read_file(path, 1u << 20).value_or(""); }

CmdlineRead read_cmdline(const Paths& paths, int pid, std::chrono::milliseconds deadline,
                         const CmdlineReader& reader) {
  const std::string path = paths.proc(std::to_string(pid) + "/cmdline");
  CmdlineRead out;
  {
    std::lock_guard<std::mutex> lock(blocked_reads().mutex);
    out.earlier_read_pending = !blocked_reads().pids.insert(pid).second;
  }
  if (out.earlier_read_pending) {
    out.missing = fmt::format("{}: an earlier read is still waiting (the process may be stuck in the driver)",
                              paths.display(path));
    return out;
  }
  auto read = run_with_deadline<std::string>(deadline, [path, reader, pid](Progress&) {
    struct Done {
      int pid;
      ~Done() {
        std::lock_guard<std::mutex> lock(blocked_reads().mutex);
        blocked_reads().pids.erase(pid);
      }
    } done{pid};
    return reader(path);
  });
  out.text = std::move(read.value);
  if (!out.text) {
    out.missing = fmt::format("{} did not answer in {} ms (the process may be stuck in the driver)",
                              paths.display(path), deadline.count());
  }
  return out;
}

std::vector<std::string> split_cmdline(std::string_view text) {
  std::vector<std::string> argv;
  for (auto arg : split(text, '\0')) {
    argv.emplace_back(printable(arg));
  }
  while (!argv.empty() && argv.back().empty()) {
    argv.pop_back();
  }
  return argv;
}

Result<std::vector<OpenFile>> read_open_files(const Paths& paths, int pid) {
  const std::string dir = paths.proc(std::to_string(pid) + "/fd");
  auto fds = list_dir(dir);
  if (!fds) {
    return tl::unexpected(fds.error());
  }
  std::vector<OpenFile> files;
  files.reserve(fds->size());
  for (const auto& fd : *fds) {
    const std::string link = dir + "/" + fd;
    auto target = read_link(link);
    if (!target) {
      continue;  // closed meanwhile
    }
    OpenFile file;
    file.path = std::move(*target);
    // Only what lies under /dev (a node renamed in a container, or replaced, is still there) is asked: not every
    // filesystem honours "cached attributes only" (9p ignores it), and a file on a hung network mount must not
    // block the walk. Sockets, pipes and anon inodes ("socket:[123]") are never devices.
    if (starts_with(file.path, "/dev/")) {
      struct statx st {};
      if (::statx(AT_FDCWD, link.c_str(), AT_STATX_DONT_SYNC, STATX_TYPE, &st) == 0 && (st.stx_mask & STATX_TYPE) &&
          S_ISCHR(st.stx_mode)) {
        file.char_device = OpenFile::Number{st.stx_rdev_major, st.stx_rdev_minor};
      }
    }
    files.push_back(std::move(file));
  }
  return files;
}

std::optional<unsigned> held_gpu_minor(const OpenFile& file) {
  if (file.char_device) {
    if (file.char_device->major == k_nvidia_char_major && file.char_device->minor < 254) {
      return file.char_device->minor;
    }
    return std::nullopt;
  }
  constexpr std::string_view prefix = "/dev/nvidia";
  if (!starts_with(file.path, prefix)) {
    return std::nullopt;
  }
  std::string_view number = std::string_view(file.path).substr(prefix.size());
  if (constexpr std::string_view deleted = " (deleted)"; number.ends_with(deleted)) {
    number.remove_suffix(deleted.size());
  }
  // Only /dev/nvidiaN: nvidiactl, nvidia-modeset, nvidia-uvm and nvidia-caps are not GPUs.
  if (auto minor = parse_u64(number); minor && *minor < 254) {
    return static_cast<unsigned>(*minor);
  }
  return std::nullopt;
}

std::vector<unsigned> held_gpu_minors(const std::vector<OpenFile>& files) {
  std::set<unsigned> minors;
  for (const auto& file : files) {
    if (auto minor = held_gpu_minor(file)) {
      minors.insert(*minor);
    }
  }
  return {minors.begin(), minors.end()};
}

bool is_nvidia_device(const OpenFile& file) {
  return (file.char_device && file.char_device->major == k_nvidia_char_major) || starts_with(file.path, "/dev/nvidia");
}

}  // namespace gpuwarm
