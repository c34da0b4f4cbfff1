#include "cli/file_batch.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "core/fs.h"

namespace gpuwarm {

namespace fs = std::filesystem;

namespace {

// A file named twice (a glob and its directory, the same path twice, a hard link) is read once: by device
// and inode, as the kernel knows it. One that cannot be stat'ed is kept: its reader says why it fails.
class SeenFiles {
 public:
  bool first_time(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      return true;
    }
    return m_seen.emplace(st.st_dev, st.st_ino).second;
  }

 private:
  std::set<std::pair<dev_t, ino_t>> m_seen;
};

// What a link names.
Walk::Skipped link_target_kind(const fs::path& link) {
  std::error_code ec;
  if (fs::read_symlink(link, ec) == "/dev/null") {
    return Walk::Skipped::mask;  // systemd's mask; elsewhere too, nothing to read
  }
  const auto st = fs::status(link, ec);
  return !fs::exists(st)           ? Walk::Skipped::link_to_nothing
         : fs::is_directory(st)    ? Walk::Skipped::link_to_folder
         : fs::is_regular_file(st) ? Walk::Skipped::link_to_file
                                   : Walk::Skipped::link_to_other;
}

// Whether `folder` (a link's target, resolved) is one of the folders walked, or inside one: its files are read
// there (a `latest -> run-1205` link beside run-1205/), so the link names nothing left unread.
bool inside_walked(const fs::path& folder, const std::vector<fs::path>& roots) {
  std::error_code ec;
  const fs::path real = fs::canonical(folder, ec);
  if (ec) {
    return false;
  }
  return std::any_of(roots.begin(), roots.end(), [&real](const fs::path& root) {
    auto [r, f] = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
    return r == root.end();
  });
}

void walk_directory(const fs::path& dir, const std::function<bool(const std::string&)>& wanted, FileLinks file_links,
                    const std::vector<fs::path>& roots, Walk& out, SeenFiles& seen, unsigned depth) {
  if (depth > 256) {
    out.unreadable.emplace_back(dir.string(), "nested more than 256 directories deep");
    return;
  }
  std::error_code ec;
  fs::directory_iterator listing(dir, ec);
  if (ec) {
    out.unreadable.emplace_back(dir.string(), ec.message());
    return;
  }
  // In name order, not the file system's listing order: which of two reports with the same time is the newer, and
  // the order files are listed in, must not depend on how a folder happens to be stored.
  std::vector<fs::directory_entry> entries;
  for (; listing != fs::directory_iterator(); listing.increment(ec)) {
    entries.push_back(*listing);
  }
  std::sort(entries.begin(), entries.end(),
            [](const fs::directory_entry& a, const fs::directory_entry& b) { return a.path() < b.path(); });
  for (const fs::directory_entry& entry : entries) {
    std::error_code entry_ec;
    if (entry.is_symlink(entry_ec)) {
      std::string link = entry.path().string();
      const Walk::Skipped names = link_target_kind(entry.path());
      if (names == Walk::Skipped::link_to_file && file_links == FileLinks::follow) {
        if (wanted(link) && seen.first_time(link)) {  // seen by its target's inode: read once
          out.files.push_back(std::move(link));
        }
      } else if (!(names == Walk::Skipped::link_to_folder && inside_walked(entry.path(), roots))) {
        out.passed_over.emplace_back(std::move(link), names);
      }
      continue;
    }
    if (entry.is_directory(entry_ec)) {
      if (entry.path().filename() != ".git") {
        walk_directory(entry.path(), wanted, file_links, roots, out, seen, depth + 1);
      }
    } else if (entry.is_regular_file(entry_ec)) {
      std::string file = entry.path().string();
      if (wanted(file) && seen.first_time(file)) {
        out.files.push_back(std::move(file));
      }
    } else if (std::string other = entry.path().string(); wanted(other)) {
      out.passed_over.emplace_back(std::move(other), Walk::Skipped::not_a_file);  // never opened: it could act
    }
  }
  if (ec) {  // the listing broke off: what followed is unknown
    out.unreadable.emplace_back(dir.string(), ec.message());
  }
}

}  // namespace

int open_regular(const std::string& path, std::string& note) {
  auto fd = open_for_reading(path, k_regular);
  if (!fd) {
    // The reason without the path open_for_reading puts first: the note is printed after the path.
    const std::string& why = fd.error().message;
    note = std::string(k_unreadable_note) + (why.starts_with(path + ": ") ? why.substr(path.size() + 2) : why);
    return -1;
  }
  return *fd;
}

std::string passed_over_text(Walk::Skipped why) {
  switch (why) {
    case Walk::Skipped::link_to_file: return "a link to a file";
    case Walk::Skipped::link_to_folder: return "a link to a folder";
    case Walk::Skipped::link_to_nothing: return "a link to nothing";
    case Walk::Skipped::mask: return "a link to /dev/null (a mask)";
    case Walk::Skipped::link_to_other: return "a link to something other than a file";
    case Walk::Skipped::not_a_file: return "not a regular file (a FIFO, socket or device)";
  }
  return "?";
}

Walk walk_paths(const std::vector<std::string>& paths, const std::function<bool(const std::string&)>& wanted,
                FileLinks file_links) {
  Walk out;
  SeenFiles seen;
  std::vector<fs::path> roots;  // the folders named, resolved
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      if (auto real = fs::canonical(p, ec); !ec) {
        roots.push_back(std::move(real));
      }
    }
  }
  for (const auto& p : paths) {
    std::error_code ec;
    auto st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      out.missing.push_back(p);
      continue;
    }
    if (!fs::is_directory(st)) {
      if (seen.first_time(p)) {
        out.files.push_back(p);
      }
      continue;
    }
    walk_directory(p, wanted, file_links, roots, out, seen, 0);
  }
  return out;
}

bool read_regular_file(const std::string& path, std::string& buffer, std::size_t& size, std::string& note,
                       std::uintmax_t max_bytes, std::size_t padding) {
  const int fd = open_regular(path, note);
  if (fd < 0) {
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    note = std::string(k_unreadable_note) + std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    ::close(fd);
    note = fmt::format("skipped: larger than {} MiB", max_bytes >> 20);
    return false;
  }
  buffer.resize(static_cast<std::size_t>(st.st_size) + padding);
  std::size_t got = 0;
  while (got < static_cast<std::size_t>(st.st_size)) {
    ssize_t n = ::read(fd, buffer.data() + got, static_cast<std::size_t>(st.st_size) - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {  // an I/O error part way: what was read is not the file
      note = std::string(k_unreadable_note) + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) {
      break;  // shrank since fstat: what is there now is the file
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  std::fill(buffer.begin() + static_cast<std::ptrdiff_t>(got), buffer.end(), '\0');
  size = got;
  return true;
}

std::optional<bool> head_has_nul(const std::string& path, std::size_t bytes) {
  std::string note;
  const int fd = open_regular(path, note);
  if (fd < 0) {
    return std::nullopt;
  }
  std::string head(bytes, '\0');
  std::size_t got = 0;
  bool readable = true;
  while (readable && got < bytes) {
    ssize_t n = ::read(fd, head.data() + got, bytes - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      readable = n == 0;
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (!readable) {
    return std::nullopt;
  }
  return std::memchr(head.data(), '\0', got) != nullptr;
}

LargeBuffer::~LargeBuffer() {
  if (m_data != nullptr) {
    ::munmap(m_data, m_capacity);
  }
}

Result<void> LargeBuffer::grow(std::size_t bytes) {
  constexpr std::size_t huge_page = 2u << 20;
  bytes = (bytes + huge_page - 1) / huge_page * huge_page;
  if (bytes <= m_capacity) {
    return {};
  }
  void* p = m_data == nullptr ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                              : ::mremap(m_data, m_capacity, bytes, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) {
    return fail(fmt::format("cannot allocate {} MiB: {}", bytes >> 20, std::strerror(errno)));
  }
  m_data = static_cast<char*>(p);
  m_capacity = bytes;
  (void)::madvise(m_data, m_capacity, MADV_HUGEPAGE);  // a hint: without THP it is only slower
  return {};
}

Result<std::size_t> LargeBuffer::read_all(int fd, const std::string& what, std::size_t padding,
                                          std::uintmax_t max_bytes) {
  struct stat st {};
  const bool known = ::fstat(fd, &st) == 0;
  std::size_t want = 16u << 20;
  if (known && S_ISREG(st.st_mode)) {
    want = static_cast<std::size_t>(st.st_size) + padding + 1;  // +1: EOF shows without another grow
  } else if (known && S_ISFIFO(st.st_mode)) {
    (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20);  // fewer wake-ups; a smaller pipe still works
  }
  if (auto r = grow(want); !r) {
    return tl::unexpected(r.error());
  }
  std::size_t size = 0;
  while (true) {
    if (m_capacity - size < padding + 1) {
      if (auto r = grow(m_capacity * 2); !r) {
        return tl::unexpected(r.error());
      }
    }
    ssize_t n = ::read(fd, m_data + size, m_capacity - size - padding);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return fail(fmt::format("{}: {}", what, std::strerror(errno)));
    }
    if (n == 0) {
      break;
    }
    size += static_cast<std::size_t>(n);
    if (size > max_bytes) {
      return fail(fmt::format("{}: larger than {} MiB", what, max_bytes >> 20));
    }
  }
  std::memset(m_data + size, 0, padding);
  return size;
}

void parallel_for(std::size_t count, const std::function<void(std::size_t)>& fn, std::size_t min_for_threads) {
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next++; i < count; i = next++) {
      fn(i);
    }
  };
  unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, 16u);
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads && count >= min_for_threads; ++t) {
    pool.emplace_back(worker);
  }
  worker();
  for (auto& t : pool) {
    t.join();
  }
}

}  // namespace gpuwarm
