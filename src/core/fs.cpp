#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>

#include "core/paths.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {
std::string errno_text(const std::string& path, int err) {
  return path + ": " + std::strerror(err);
}
}  // namespace

Result<int> open_for_reading(const std::string& path, unsigned kinds) {
  // O_PATH opens nothing (no driver's open() runs: a link to /dev/watchdog placed where a PID file should be
  // arms nothing), and the file is then opened through that descriptor: what was checked is what is read.
  int probe = ::open(path.c_str(), O_PATH | O_CLOEXEC);
  if (probe < 0) {
    return fail(errno_text(path, errno));
  }
  struct stat st {};
  if (::fstat(probe, &st) != 0) {
    int err = errno;
    ::close(probe);
    return fail(errno_text(path, err));
  }
  const bool regular = S_ISREG(st.st_mode) && (kinds & k_regular) != 0;
  const bool directory = S_ISDIR(st.st_mode) && (kinds & k_directory) != 0;
  const bool kmsg = S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 11) && (kinds & k_kmsg_device) != 0;
  if (!regular && !directory && !kmsg) {
    ::close(probe);
    return fail(path + (S_ISDIR(st.st_mode) ? ": a directory, not a file"
                                            : ": not a regular file (a FIFO, device or socket is not read)"));
  }
  // Never blocks on open or read: /dev/kmsg answers EAGAIN once caught up.
  constexpr int k_flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  int fd = ::open(("/proc/self/fd/" + std::to_string(probe)).c_str(), k_flags);
  int err = errno;
  ::close(probe);
  if (fd < 0 && err == ENOENT && ::access("/proc/self/fd", F_OK) != 0) {
    // No /proc here (a chroot, a sandbox): open the path itself, and keep it only if it is the file checked
    // above (the same device and inode). Weaker than the reopen (a swap in between is opened before it is
    // noticed), but without /proc there is no descriptor-based reopen to use.
    fd = ::open(path.c_str(), k_flags);
    err = errno;
    struct stat now {};
    if (fd >= 0 && (::fstat(fd, &now) != 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino)) {
      ::close(fd);
      return fail(path + ": replaced while it was being opened");
    }
  }
  if (fd < 0) {
    return fail(errno_text(path, err));
  }
  return fd;
}

namespace {

std::string size_text(std::size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) {
    return std::to_string(bytes >> 20) + " MiB";
  }
  if (bytes >= (1u << 10) && bytes % (1u << 10) == 0) {
    return std::to_string(bytes >> 10) + " KiB";
  }
  return std::to_string(bytes) + " bytes";
}

tl::unexpected<Error> too_large(const std::string& path, std::size_t max_bytes) {
  return tl::unexpected(
      Error{path + ": larger than " + size_text(max_bytes) + ", the most gpuwarm reads from it", true});
}

}  // namespace

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  // A FIFO, socket or device named by mistake (or by an attacker) is refused, never opened or waited on.
  auto opened = open_for_reading(path, k_regular | k_directory);
  if (!opened) {
    return tl::unexpected(opened.error());
  }
  int fd = *opened;
  std::string out;
  // A regular file already past the bound is refused before a byte is read (files in /proc and /sys say 0
  // or 4096 whatever they hold: the bound below still applies to what is read).
  if (struct stat st {}; ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                         static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return too_large(path, max_bytes);
  }
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      int err = errno;
      ::close(fd);
      return fail(errno_text(path, err));
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return too_large(path, max_bytes);
    }
  }
  ::close(fd);
  return out;
}

Result<TextFile> read_regular_tail(const std::string& path, std::size_t max_bytes) {
  auto opened = open_for_reading(path, k_regular);
  if (!opened) {
    return tl::unexpected(opened.error());
  }
  return read_tail_and_close(*opened, path, max_bytes);
}

Result<TextFile> read_tail_and_close(int fd, const std::string& path, std::size_t max_bytes) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return fail(errno_text(path, err));
  }
  TextFile out;
  auto size = static_cast<std::size_t>(st.st_size);
  off_t start = 0;
  if (size > max_bytes) {
    start = static_cast<off_t>(size - max_bytes);
    size = max_bytes;
    out.truncated = true;
  }
  out.text.resize(size);
  std::size_t got = 0;
  while (got < size) {
    ssize_t n = ::pread(fd, out.text.data() + got, size - got, start + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;  // the file shrank: keep what was read
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.text.resize(got);
  if (out.truncated) {
    auto nl = out.text.find('\n');
    out.text.erase(0, nl == std::string::npos ? out.text.size() : nl + 1);
  }
  return out;
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<std::vector<std::string>> list_dir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    return fail(errno_text(path, errno));
  }
  std::vector<std::string> names;
  while (dirent* ent = ::readdir(dir)) {
    std::string name = ent->d_name;
    if (name != "." && name != "..") {
      names.push_back(std::move(name));
    }
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::string> read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) {
    return fail(errno_text(path, errno));
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

Result<std::string> read_first_line(const std::string& path) {
  auto text = read_file(path, 64u << 10);
  if (!text) {
    return tl::unexpected(text.error());
  }
  auto nl = text->find('\n');
  return std::string(trim(std::string_view(*text).substr(0, nl)));
}

const std::vector<std::string> k_system_bin_dirs = {"/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin",
                                                    "/usr/local/bin"};

std::string untrusted_root_for_code(const std::string& root, bool trusted, bool as_root) {
  if (trusted || Paths(root).is_live() || !as_root) {
    return {};
  }
  return "--root " + root + " may be a container's or an image's tree, whose code never runs as root (--trust-root "
         "if it is this host's own /, as the host's / mounted in a pod)";
}

bool path_within(const std::string& path, const std::string& dir) {
  auto inside = [](std::string_view p, std::string_view d) {
    while (d.size() > 1 && d.back() == '/') {
      d.remove_suffix(1);
    }
    return p == d || (p.starts_with(d) && (d == "/" || p[d.size()] == '/'));
  };
  char real_dir[PATH_MAX];
  // A DIR that resolves to / (/proc/PID/root of another mount namespace, a link to /) says nothing by its real
  // path: every host path would be "inside". Its own name is what its files are reached by.
  const bool dir_resolved = ::realpath(dir.c_str(), real_dir) != nullptr && std::string_view(real_dir) != "/";
  auto within_dir = [&](std::string_view p) { return inside(p, dir) || (dir_resolved && inside(p, real_dir)); };
  if (within_dir(path)) {
    return true;
  }
  // Each leading part resolved on its own: a link on the way that leads into the tree counts, even where the
  // whole path does not resolve (yet) or a later link leads back out.
  for (std::size_t end = path.find('/', 1);; end = path.find('/', end + 1)) {
    const std::string part = path.substr(0, end);
    char real[PATH_MAX];
    if (::realpath(part.c_str(), real) != nullptr && within_dir(real)) {
      return true;
    }
    if (end == std::string::npos) {
      return false;
    }
  }
}

std::string replaceable_by_others(const std::string& path) {
  const uid_t me = ::geteuid();
  std::string at = path;
  for (bool file = true;; file = false) {
    struct stat st {};
    if (::stat(at.c_str(), &st) != 0) {
      return "cannot be checked";
    }
    if (st.st_uid != 0 && st.st_uid != me) {
      return (file ? "is owned by uid " : "is in " + at + ", owned by uid ") + std::to_string(st.st_uid);
    }
    const bool sticky_root = !file && (st.st_mode & S_ISVTX) != 0 && st.st_uid == 0;
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !sticky_root) {
      return file ? std::string("is writable by group or others") : "is in " + at + ", writable by group or others";
    }
    auto slash = at.rfind('/');
    if (slash == std::string::npos || at == "/") {
      return {};
    }
    at = slash == 0 ? "/" : at.substr(0, slash);
  }
}

namespace {

// The subfolders the loader searches before a folder of LD_LIBRARY_PATH: glibc-hwcaps/<level>/ (glibc 2.33+), and
// the legacy hardware-capability folders of glibc before 2.37 (tls/, haswell/, x86_64/, avx512_1/, nested).
bool searched_by_the_loader(const std::string& name, bool top) {
  static const std::vector<std::string> k_top = {"glibc-hwcaps", "tls", "haswell", "x86_64", "avx512_1", "xeon_phi"};
  return !top || std::find(k_top.begin(), k_top.end(), name) != k_top.end();
}

// The files of `folder` (and of the subfolders the loader searches, `depth` levels down) another user could
// replace. Only what the loader could open as a library counts: a link to /dev/null or a socket loads nothing.
std::string entries_replaceable_by_others(const std::string& folder, int depth, bool top, std::size_t& budget) {
  auto names = list_dir(folder);
  if (!names) {
    return "cannot be listed: " + names.error().message;
  }
  const uid_t me = ::geteuid();
  for (const auto& name : *names) {
    if (budget == 0) {
      return "holds too many files to check";
    }
    --budget;
    const std::string path = folder + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      return "holds " + path + ", which cannot be checked";
    }
    const bool searched_folder = depth > 0 && searched_by_the_loader(name, top);
    if (S_ISLNK(st.st_mode)) {
      struct stat target {};
      char real[PATH_MAX];
      if (::stat(path.c_str(), &target) != 0 || ::realpath(path.c_str(), real) == nullptr ||
          !(S_ISREG(target.st_mode) || (S_ISDIR(target.st_mode) && searched_folder))) {
        continue;  // dangling, or nothing the loader opens
      }
      if (st.st_uid != 0 && st.st_uid != me) {
        return "holds the link " + path + ", owned by uid " + std::to_string(st.st_uid);
      }
      if (std::string why = replaceable_by_others(real); !why.empty()) {
        return "holds the link " + path + " to " + real + ", which " + why;
      }
      if (S_ISDIR(target.st_mode)) {
        if (std::string why = entries_replaceable_by_others(real, depth - 1, false, budget); !why.empty()) {
          return why;
        }
      }
      continue;
    }
    if (!S_ISREG(st.st_mode) && !(S_ISDIR(st.st_mode) && searched_folder)) {
      continue;
    }
    if (st.st_uid != 0 && st.st_uid != me) {
      return "holds " + path + ", owned by uid " + std::to_string(st.st_uid);
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
      return "holds " + path + ", writable by group or others";
    }
    if (S_ISDIR(st.st_mode)) {
      if (std::string why = entries_replaceable_by_others(path, depth - 1, false, budget); !why.empty()) {
        return why;
      }
    }
  }
  return {};
}

}  // namespace

std::string library_folder_replaceable_by_others(const std::string& folder) {
  if (std::string why = replaceable_by_others(folder); !why.empty()) {
    return why;
  }
  char real[PATH_MAX];
  if (::realpath(folder.c_str(), real) == nullptr) {
    return "cannot be resolved";
  }
  if (std::string why = replaceable_by_others(real); !why.empty()) {
    return "leads to " + std::string(real) + ", which " + why;
  }
  std::size_t budget = 16384;
  return entries_replaceable_by_others(real, 3, true, budget);  // tls/haswell/x86_64 is three down
}

Result<std::string> find_system_executable(const std::string& root, const std::string& name,
                                           const std::vector<std::string>& dirs) {
  std::string prefix = root;
  while (!prefix.empty() && prefix.back() == '/') {
    prefix.pop_back();
  }
  const Paths paths(root);
  std::string refused;
  for (const auto& dir : dirs) {
    std::string candidate = dir + "/" + name;
    // Links are followed inside the root (a container's /usr/bin link means its own tree), and each one passed
    // through must be as safe as the file: root's (or the caller's), in a folder no one else may change.
    std::string via;
    const std::string real = paths.resolve(candidate, [&](const std::string& link, const std::string& folder) {
      struct stat st {};
      if (!via.empty()) {
        return;
      }
      if (::lstat(link.c_str(), &st) == 0 && st.st_uid != 0 && st.st_uid != ::geteuid()) {
        via = "passes through " + paths.display(link) + ", a link owned by uid " + std::to_string(st.st_uid);
      } else if (std::string why = replaceable_by_others(folder); !why.empty()) {
        via = "passes through the link " + paths.display(link) + ", whose folder " + why;
      }
    });
    struct stat st {};
    if (real.empty() || ::stat(real.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0) {
      continue;
    }
    std::string why = via;
    if (why.empty()) {
      why = replaceable_by_others(real);
      if (!why.empty() && real != prefix + candidate) {
        why = "leads to " + paths.display(real) + ", which " + why;
      }
    }
    if (!why.empty()) {
      refused += (refused.empty() ? "" : "; ") + candidate + " " + why;
      continue;
    }
    return candidate;
  }
  if (!refused.empty()) {
    return fail(name + " not trusted: " + refused);
  }
  return fail(name + " not found in " + std::to_string(dirs.size()) + " system directories");
}

}  // namespace gpuwarm
