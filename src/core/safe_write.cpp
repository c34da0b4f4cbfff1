#include "core/safe_write.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <utility>
#include <vector>

#include "core/signal_shield.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : m_fd(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : m_fd(o.m_fd) { o.m_fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      m_fd = o.m_fd;
      o.m_fd = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return m_fd; }
  void reset() {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
    m_fd = -1;
  }

 private:
  int m_fd;
};

std::string why(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// A directory root may write into: owned by root or the caller (or, where the options allow, by another user),
// and writable by nobody else (a sticky root-owned one, like /tmp, is fine).
std::string untrusted_dir(int fd, const std::string& path, bool any_owner) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return why(path, errno);
  }
  const uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me && !any_owner) {
    return path + " is owned by uid " + std::to_string(st.st_uid);
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !((st.st_mode & S_ISVTX) != 0 && st.st_uid == 0)) {
    return path + " is writable by group or others";
  }
  return {};
}

std::vector<std::string> components(const std::string& dir) {
  std::vector<std::string> out;
  for (auto part : split(dir, '/')) {
    if (!part.empty() && part != ".") {
      out.emplace_back(part);
    }
  }
  return out;
}

// What open_dir_chain does with a folder that is not there: create it (options.create_dirs), or, for a check
// made before anything is written, stop and answer Fd(-1) (the write would create it: nothing to refuse).
enum class Missing { as_options_say, stop_there };

// The folders one write created, removed again (newest first, each only while empty) unless the write
// succeeded: a failed write leaves nothing behind, not even an empty nvidia-persistenced.service.d/.
class MadeFolders {
 public:
  MadeFolders() = default;
  MadeFolders(const MadeFolders&) = delete;
  MadeFolders& operator=(const MadeFolders&) = delete;
  ~MadeFolders() {
    for (auto it = m_made.rbegin(); !m_kept && it != m_made.rend(); ++it) {
      ::unlinkat(it->first.get(), it->second.c_str(), AT_REMOVEDIR);
    }
  }
  // `parent` stays open: the folder is removed from the one it was made in, whatever its path means later.
  void made(int parent, const std::string& name) { m_made.emplace_back(Fd(::fcntl(parent, F_DUPFD_CLOEXEC, 0)), name); }
  void keep() { m_kept = true; }

 private:
  std::vector<std::pair<Fd, std::string>> m_made;
  bool m_kept = false;
};

Result<Fd> open_dir_chain(const std::string& dir, const WriteOptions& options,
                          Missing missing = Missing::as_options_say, MadeFolders* made = nullptr) {
  const std::string root = options.root.empty() ? "/" : options.root;
  Fd cur(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (cur.get() < 0) {
    return fail(why(root, errno));
  }
  std::string path;
  for (const auto& part : components(dir)) {
    if (part == "..") {
      return fail(dir + ": \"..\" is not allowed in a path gpuwarm writes");
    }
    path += "/" + part;
    int next = ::openat(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && options.create_dirs && missing == Missing::stop_there) {
      // The write would create it here: a folder the caller cannot write into (a read-only /etc) fails it too.
      if (::faccessat(cur.get(), ".", W_OK | X_OK, AT_EACCESS) != 0) {
        return fail(why("cannot create " + path, errno));
      }
      return Fd(-1);
    }
    if (next < 0 && errno == ENOENT && options.create_dirs) {
      bool created = ::mkdirat(cur.get(), part.c_str(), options.dir_mode) == 0;
      if (!created && errno != EEXIST) {
        return fail(why("cannot create " + path, errno));
      }
      if (created && made != nullptr) {
        made->made(cur.get(), part);
      }
      next = ::openat(cur.get(), part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next >= 0 && created) {
        ::fchmod(next, options.dir_mode);  // explicit, whatever the umask; only on a folder made here
        // The new entry is durable only once its parent is synced: a crash must not keep the file and lose
        // the folder it sits in.
        if (::fsync(cur.get()) != 0) {
          int err = errno;
          ::close(next);
          return fail(why("cannot sync the folder above " + path, err));
        }
      }
    }
    if (next < 0) {
      int err = errno;
      if (err == ELOOP || err == ENOTDIR) {
        return fail(path + " is a symbolic link or not a directory: refusing to write through it");
      }
      return fail(why(path, err));
    }
    cur = Fd(next);
  }
  // Only the folder written into must be root's (or the caller's) and closed to others. Folders above it may
  // be anyone's (Debian's /var/lib/prometheus is prometheus's): each was opened from the one above without
  // following a link, and this check is on the folder actually held, so swapping one changes nothing here.
  if (std::string bad = untrusted_dir(cur.get(), path.empty() ? "/" : path, options.any_folder_owner); !bad.empty()) {
    return fail("refusing to write into " + (path.empty() ? "/" : path) + ": " + bad);
  }
  return cur;
}

std::string random_suffix() {
  unsigned char bytes[8] = {};
  if (::getrandom(bytes, sizeof bytes, 0) != static_cast<ssize_t>(sizeof bytes)) {
    // O_EXCL still makes a collision an error, never an overwrite.
    auto v = static_cast<unsigned long long>(::getpid()) ^ reinterpret_cast<std::uintptr_t>(&bytes);
    std::memcpy(bytes, &v, sizeof bytes);
  }
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

}  // namespace

bool write_all(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

namespace {

struct Target {
  std::string dir;   // inside options.root
  std::string name;
};

Result<Target> split_target(const std::string& path) {
  if (path.empty() || path.front() != '/') {
    return fail("not an absolute path: " + path);
  }
  auto slash = path.rfind('/');
  Target t{path.substr(0, slash), path.substr(slash + 1)};
  if (t.name.empty() || t.name == "." || t.name == "..") {
    return fail("not a file name: " + path);
  }
  return t;
}

// Only a regular file is replaced: a rename over a device node, a FIFO or a symbolic link (a masked unit
// is a link to /dev/null) would silently turn it into a file.
Result<void> replaceable(int dirfd, const Target& t, const std::string& path) {
  struct stat target {};
  if (::fstatat(dirfd, t.name.c_str(), &target, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(target.st_mode)) {
    return fail(path + (S_ISDIR(target.st_mode)   ? " is a directory"
                        : S_ISLNK(target.st_mode) ? " is a symbolic link"
                                                  : " is not a regular file (a device, FIFO or socket)") +
                ": gpuwarm replaces only regular files; remove it or choose another path");
  }
  return {};
}

// "." + name + ".gpuwarm-" + 16 hex digits: the temporary file write_file_atomically makes beside `name`.
bool is_temporary_of(std::string_view entry, const std::string& name) {
  const std::string prefix = "." + name + ".gpuwarm-";
  if (entry.size() != prefix.size() + 16 || entry.substr(0, prefix.size()) != prefix) {
    return false;
  }
  return entry.substr(prefix.size()).find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// A write killed outright (SIGKILL, a power cut) between creating its temporary file and renaming it leaves
// the file behind; the next write of the same target removes it. Only this target's own temporaries that are
// plain files, ours, and untouched for k_stale_after (a write in progress changes its file within
// milliseconds) are removed: never what another program or user keeps there.
constexpr std::time_t k_stale_after_s = 600;

void remove_stale_temporaries(int dirfd, const std::string& name) {
  int listing = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (listing < 0) {
    return;
  }
  DIR* dir = ::fdopendir(listing);
  if (dir == nullptr) {
    ::close(listing);
    return;
  }
  const std::time_t now = std::time(nullptr);
  std::vector<std::string> stale;
  while (const dirent* e = ::readdir(dir)) {
    if (!is_temporary_of(e->d_name, name)) {
      continue;
    }
    struct stat st {};
    if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
        st.st_uid == ::geteuid() && now - st.st_mtime >= k_stale_after_s) {
      stale.emplace_back(e->d_name);
    }
  }
  ::closedir(dir);
  for (const auto& entry : stale) {
    ::unlinkat(dirfd, entry.c_str(), 0);
  }
}

}  // namespace

Result<void> check_write_target(const std::string& path, const WriteOptions& options) {
  auto t = split_target(path);
  if (!t) {
    return tl::unexpected(t.error());
  }
  auto dirfd = open_dir_chain(t->dir, options, Missing::stop_there);
  if (!dirfd) {
    return fail("cannot write " + path + ": " + dirfd.error().message);
  }
  if (dirfd->get() < 0) {
    return {};
  }
  // The temporary file is created in that folder: one the caller may not write into (not root, a read-only
  // /var) fails the write just as surely.
  if (::faccessat(dirfd->get(), ".", W_OK | X_OK, AT_EACCESS) != 0) {
    return fail(why("cannot write " + path + ": cannot create a file in " + t->dir, errno));
  }
  return replaceable(dirfd->get(), *t, path);
}

Result<void> write_file_atomically(const std::string& path, const std::string& content, const WriteOptions& options) {
  auto t = split_target(path);
  if (!t) {
    return tl::unexpected(t.error());
  }
  const std::string& dir = t->dir;
  const std::string& name = t->name;
  // From the first folder made to the rename, or to the removal of the temporary file and the folders: a Ctrl-C or
  // SIGTERM would leave them behind for good (nothing else removes them); held, it ends the process right after,
  // with nothing left. Declared before the folders, so it is released only once they are removed.
  StopSignalsHeld held;
  MadeFolders made;  // declared before the temporary file: removed after it, which sits in them
  auto dirfd = open_dir_chain(dir, options, Missing::as_options_say, &made);  // dir is inside options.root
  if (!dirfd) {
    return fail("cannot write " + path + ": " + dirfd.error().message);  // every message names the target
  }
  if (auto ok = replaceable(dirfd->get(), *t, path); !ok) {
    return ok;
  }
  std::string tmp = "." + name + ".gpuwarm-" + random_suffix();
  Fd out(::openat(dirfd->get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  options.file_mode));
  if (out.get() < 0) {
    return fail(why("cannot create a temporary file in " + dir, errno));
  }
  auto discard = [&](const std::string& message) -> Result<void> {
    out.reset();
    ::unlinkat(dirfd->get(), tmp.c_str(), 0);
    return fail(message);
  };
  if (::fchmod(out.get(), options.file_mode) != 0) {
    return discard(why("cannot set the mode of " + path, errno));
  }
  if (!write_all(out.get(), content)) {
    return discard(why("cannot write " + path, errno));
  }
  if (::fsync(out.get()) != 0) {
    return discard(why("cannot sync " + path, errno));
  }
  out.reset();
  if (::renameat(dirfd->get(), tmp.c_str(), dirfd->get(), name.c_str()) != 0) {
    int err = errno;
    ::unlinkat(dirfd->get(), tmp.c_str(), 0);
    return fail(why("cannot rename into " + path, err));
  }
  made.keep();
  remove_stale_temporaries(dirfd->get(), name);
  if (::fsync(dirfd->get()) != 0) {
    return fail(why("written, but cannot sync the directory of " + path, errno));
  }
  return {};
}

}  // namespace gpuwarm
