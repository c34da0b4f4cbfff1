#include "nvml/nvml_library.h"

#include <dlfcn.h>
#include <link.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <functional>
#include <climits>
#include <optional>
#include <cstring>
#include <cstdint>
#include <cerrno>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/dl.h"
#include "core/fs.h"
#include "core/paths.h"
#include "core/strings.h"
#include "nvml/errors.h"

namespace gpuwarm::nvml {

std::string Library::error_name(Return r) const {
  if (const char* name = return_name(r)) {
    return name;
  }
  if (m_api.error_string != nullptr) {
    if (const char* text = m_api.error_string(r)) {
      return printable(text);
    }
  }
  return "NVML error " + std::to_string(r);
}

Library::~Library() {
  if (m_handle != nullptr) {
    ::dlclose(m_handle);
  }
}

namespace {

std::string loaded_file(void* handle, const std::string& fallback) {
  link_map* map = nullptr;
  if (::dlinfo(handle, RTLD_DI_LINKMAP, &map) == 0 && map != nullptr && map->l_name != nullptr &&
      map->l_name[0] != '\0') {
    char resolved[PATH_MAX];
    if (::realpath(map->l_name, resolved) != nullptr) {
      return resolved;
    }
    return map->l_name;
  }
  return fallback;
}

}  // namespace

namespace {

// Driver locations outside the default loader path, each where a layout puts
// it (NixOS addDriverRunpath, NVIDIA's gpu-driver-container root, GKE's COS
// installer, nvidia-container-toolkit's WSL and Debian lists, Flatcar's and
// Bottlerocket's driver packages), then the distributions' library
// directories. Under --root they are the only places searched.
struct KnownDir {
  const char* dir;
  const char* layout;
};
constexpr KnownDir k_known_dirs[] = {
    {"/run/opengl-driver/lib", "NixOS driver"},
    {"/run/nvidia/driver/usr/lib/x86_64-linux-gnu", "GPU Operator driver container"},
    {"/run/nvidia/driver/usr/lib/aarch64-linux-gnu", "GPU Operator driver container"},
    {"/run/nvidia/driver/usr/lib64", "GPU Operator driver container"},
    {"/usr/local/nvidia/lib64", "cloud-image driver"},
    {"/home/kubernetes/bin/nvidia/lib64", "GKE COS driver"},
    {"/usr/lib/wsl/lib", "WSL2 driver"},
    {"/opt/nvidia/current/usr/lib64", "Flatcar driver"},
    {"/usr/lib/nvidia/tesla", "Bottlerocket driver"},
    {"/usr/lib/x86_64-linux-gnu", "distribution library directory"},
    {"/usr/lib/aarch64-linux-gnu", "distribution library directory"},
    {"/usr/lib/powerpc64le-linux-gnu", "distribution library directory"},
    {"/usr/lib64", "distribution library directory"},
    {"/lib/x86_64-linux-gnu", "distribution library directory"},
    {"/lib64", "distribution library directory"},
    {"/usr/lib/x86_64-linux-gnu/nvidia/current", "Debian driver"},
    {"/usr/lib/aarch64-linux-gnu/nvidia/current", "Debian driver"},
    {"/usr/lib", "distribution library directory"},
};

constexpr const char* k_soname = "libnvidia-ml.so.1";

bool is_stub(const std::string& path) { return path.find("/stubs/") != std::string::npos; }

// A library root loads must not be replaceable by another user: the file and
// every directory above it root-owned, writable by no group or other (a
// sticky root-owned directory such as /tmp is fine: others cannot rename in it).
std::string unsafe_for_root(int fd, const std::string& real) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return "not a regular file";
  }
  if (st.st_uid != 0) {
    return "owned by uid " + std::to_string(st.st_uid) + ", not root";
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return "writable by group or others";
  }
  return replaceable_by_others(real);  // and every directory above it
}

std::string fd_path(int fd) {
  char buf[PATH_MAX];
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string{};
}

}  // namespace

std::vector<LibraryCandidate> library_candidates(const LibrarySearch& search) {
  if (!search.path.empty()) {
    return {{search.path, "--nvml"}};
  }
  Paths paths(search.root);
  std::vector<LibraryCandidate> out;
  if (paths.is_live()) {
    out.push_back({k_soname, "default loader path"});
  }
  for (const auto& known : k_known_dirs) {
    std::string in_root = std::string(known.dir) + "/" + k_soname;
    // Under --root, links are followed inside the root (NixOS points
    // /run/opengl-driver into /nix/store), never into the caller's tree.
    std::string file = paths.is_live() ? in_root : paths.resolve(in_root);
    if (file.empty()) {
      continue;  // absent under the root, or its links loop or leave nothing to load
    }
    out.push_back({file, std::string(known.layout) + " (" + known.dir + ")"});
  }
  if (paths.is_live()) {
    // The unversioned name may be the CUDA toolkit's link stub: last resort.
    out.push_back({"libnvidia-ml.so", "default loader path, unversioned name"});
  }
  return out;
}

std::string refused_as_root(const LibrarySearch& search, bool as_root) {
  std::string why = untrusted_root_for_code(search.root, search.root_trusted, as_root);
  // A named file (--nvml) is a host path, unless it lies in the tree.
  if (why.empty() || (!search.path.empty() && !path_within(search.path, search.root))) {
    return {};
  }
  return why;
}

std::vector<std::string> library_files(const LibrarySearch& search) {
  std::vector<std::string> out;
  for (const auto& candidate : library_candidates(search)) {
    struct stat st {};
    if (!candidate.path.empty() && candidate.path.front() == '/' && ::stat(candidate.path.c_str(), &st) == 0 &&
        S_ISREG(st.st_mode) && std::find(out.begin(), out.end(), candidate.path) == out.end()) {
      out.push_back(candidate.path);
    }
  }
  // In the order Library::open takes them: a CUDA toolkit's link stub only where nothing else is there.
  std::stable_partition(out.begin(), out.end(), [](const std::string& f) { return !is_stub(f); });
  return out;
}

Result<std::unique_ptr<Library>> Library::open(const LibrarySearch& search) {
  const std::vector<LibraryCandidate> candidates = library_candidates(search);
  const bool explicit_path = !search.path.empty();
  const bool as_root = ::geteuid() == 0;
  auto not_found = [&search](const std::string& tried) {
    Paths paths(search.root);
    return fail(std::string(k_soname) + " not found " +
                (paths.is_live() ? "on the loader path or in " : "under " + search.root + " in ") +
                std::to_string(std::size(k_known_dirs)) + " known driver locations (use --nvml PATH)" + tried);
  };
  const std::string untrusted_root = untrusted_root_for_code(search.root, search.root_trusted, as_root);
  // Nothing of a tree not vouched for is loaded, whatever its files are when looked at (a file there now may be
  // a folder a moment ago): one answer, naming each file found once, or "not found" where there is none.
  if (const std::string refused = refused_as_root(search, as_root); !refused.empty()) {
    const std::vector<std::string> files = library_files(search);
    if (files.empty()) {
      return explicit_path ? fail("cannot load " + search.path + ": not found") : not_found("");
    }
    return fail(fmt::format("{}: not loaded as root: {}", fmt::join(files, ", "), refused));
  }
  std::vector<std::string> passed_over;
  void* handle = nullptr;
  void* stub_handle = nullptr;
  const LibraryCandidate* chosen = nullptr;
  const LibraryCandidate* stub = nullptr;
  std::string chosen_real;
  std::string stub_real;
  for (const auto& candidate : candidates) {
    const bool absolute = !candidate.path.empty() && candidate.path.front() == '/';
    std::string load_path = candidate.path;
    std::string real;  // known here when the file was opened and checked first
    int fd = -1;
    if (absolute && (!explicit_path || as_root)) {
      struct stat st {};
      if (::stat(candidate.path.c_str(), &st) != 0) {
        if (explicit_path) {
          passed_over.push_back(candidate.path + ": " + std::strerror(errno));
        }
        continue;  // the usual case: not this layout
      }
      if (!S_ISREG(st.st_mode)) {  // a FIFO there would block dlopen, a device act on being opened
        passed_over.push_back(candidate.path + ": not a regular file");
        continue;
      }
      if (as_root) {
        // Check the file we will load, not a name that could be swapped
        // between the check and dlopen: open it once its type is checked, check the open file, load it
        // through /proc/self/fd.
        auto opened = open_for_reading(candidate.path, k_regular);
        if (!opened) {
          passed_over.push_back(opened.error().message);
          continue;
        }
        fd = *opened;
        real = fd_path(fd);
        // A named file is the operator's choice (its ownership checked only where asked), but never one that
        // turns out, once open, to lie in a tree not vouched for, whatever links led there.
        std::string why = real.empty() ? "cannot resolve"
                          : explicit_path && !untrusted_root.empty() && path_within(real, search.root)
                              ? "it lies in the --root tree: " + untrusted_root
                          : !explicit_path || search.check_named_file ? unsafe_for_root(fd, real)
                                                                      : "";
        if (!why.empty()) {
          passed_over.push_back(candidate.path + ": not loaded as root: " + why);
          ::close(fd);
          continue;
        }
        load_path = "/proc/self/fd/" + std::to_string(fd);
      }
    }
    ::dlerror();
    void* h = ::dlopen(load_path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (fd >= 0) {
      ::close(fd);  // the mapping outlives the descriptor
    }
    if (h == nullptr) {
      const char* why = ::dlerror();
      std::string text = why != nullptr ? printable(why) : candidate.path + ": cannot open";
      if (explicit_path || absolute || text.find("No such file or directory") == std::string::npos) {
        passed_over.push_back(std::move(text));
      }  // else not on the loader path: the usual case off a driver install
      continue;
    }
    if (real.empty()) {
      real = loaded_file(h, candidate.path);
    }
    if (is_stub(real) && !explicit_path) {
      passed_over.push_back(candidate.path + ": the CUDA toolkit's link stub");
      if (stub_handle == nullptr) {
        stub_handle = h;
        stub = &candidate;
        stub_real = real;
      } else {
        ::dlclose(h);
      }
      continue;
    }
    handle = h;
    chosen = &candidate;
    chosen_real = real;
    break;
  }
  if (handle == nullptr && stub_handle != nullptr) {
    handle = stub_handle;
    chosen = stub;
    chosen_real = stub_real;
    stub_handle = nullptr;
  }
  if (stub_handle != nullptr) {
    ::dlclose(stub_handle);
  }
  if (handle == nullptr) {
    std::string tried;
    for (const auto& p : passed_over) {
      tried += (tried.empty() ? ": " : "; ") + p;
    }
    if (explicit_path) {
      return fail("cannot load " + search.path + tried);
    }
    return not_found(tried);
  }

  std::unique_ptr<Library> lib(new Library());
  lib->m_handle = handle;
  lib->m_real_path = chosen_real;
  lib->m_found_by = chosen->why;
  lib->m_passed_over = std::move(passed_over);

  std::string missing;
  // Function pointers from dlsym: the cast is the documented POSIX idiom.
#define GPUWARM_NVML_RESOLVE(member, type, primary, fallback)                                        \
  lib->m_api.member = reinterpret_cast<type>(resolve_symbol(handle, primary, fallback));
#define GPUWARM_NVML_REQUIRE(member, type, primary, fallback)                                        \
  GPUWARM_NVML_RESOLVE(member, type, primary, fallback)                                              \
  if (lib->m_api.member == nullptr) {                                                                \
    missing += (missing.empty() ? "" : ", ") + std::string(primary);                                 \
  }
  GPUWARM_NVML_FUNCTIONS(GPUWARM_NVML_REQUIRE, GPUWARM_NVML_RESOLVE)
#undef GPUWARM_NVML_REQUIRE
#undef GPUWARM_NVML_RESOLVE

  if (!missing.empty()) {
    return fail(lib->m_real_path + " lacks required NVML symbols: " + missing);
  }
  return lib;
}

namespace {

}  // namespace

namespace {

std::uint32_t u32_at(std::string_view bytes, std::size_t at) {
  std::uint32_t v = 0;
  std::memcpy(&v, bytes.data() + at, sizeof v);  // the cache is written in the host's byte order
  return v;
}

// The NUL-terminated string at `at`, or nullopt when it runs past the end.
std::optional<std::string_view> c_string_at(std::string_view bytes, std::size_t at) {
  if (at >= bytes.size()) {
    return std::nullopt;
  }
  const auto end = bytes.find('\0', at);
  if (end == std::string_view::npos) {
    return std::nullopt;
  }
  return bytes.substr(at, end - at);
}

}  // namespace

Result<std::vector<std::string>> ld_cache_paths(std::string_view cache, const std::vector<std::string>& sonames) {
  // glibc's format (sysdeps/generic/dl-cache.h): "glibc-ld.so.cache1.1", nlibs, len_strings, 20 more header
  // bytes, then nlibs entries of 24 bytes (flags, key, value, osversion, hwcap) whose key (the soname) and
  // value (the path) are offsets from the header's start. Before glibc 2.32 the header may follow the old
  // format's ("ld.so-1.7.0", nlibs, 12-byte entries), aligned to 8. Strings may share their tails, so only
  // the entries say where a path begins.
  constexpr std::string_view k_old_magic = "ld.so-1.7.0";
  constexpr std::string_view k_new_magic = "glibc-ld.so.cache1.1";
  constexpr std::size_t k_old_header = 16;
  constexpr std::size_t k_old_entry = 12;
  constexpr std::size_t k_new_header = 48;
  constexpr std::size_t k_new_entry = 24;
  std::size_t base = 0;
  if (cache.starts_with(k_old_magic)) {
    if (cache.size() < k_old_header) {
      return fail("the loader's cache ends inside its header");
    }
    const std::size_t old_entries = u32_at(cache, 12);
    if (old_entries > (cache.size() - k_old_header) / k_old_entry) {
      return fail("the loader's cache is cut short");
    }
    base = (k_old_header + old_entries * k_old_entry + 7) & ~std::size_t{7};
  }
  if (base > cache.size() || cache.substr(base, k_new_magic.size()) != k_new_magic) {
    return fail("not a cache in glibc's format (no \"glibc-ld.so.cache1.1\")");
  }
  const std::string_view table = cache.substr(base);
  if (table.size() < k_new_header) {
    return fail("the loader's cache ends inside its header");
  }
  const std::size_t entries = u32_at(table, 20);
  if (entries > (table.size() - k_new_header) / k_new_entry) {
    return fail("the loader's cache is cut short");
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < entries; ++i) {
    const std::size_t entry = k_new_header + i * k_new_entry;
    const auto key = c_string_at(table, u32_at(table, entry + 4));
    const auto value = c_string_at(table, u32_at(table, entry + 8));
    if (!key || !value) {
      return fail("an entry of the loader's cache points past its end");
    }
    if (std::find(sonames.begin(), sonames.end(), *key) != sonames.end() && value->starts_with('/')) {
      out.emplace_back(*value);
    }
  }
  return out;
}

LoadableCopies loadable_copies(const std::string& root, const std::vector<std::string>& sonames,
                               const std::vector<std::string>& extra_folders,
                               const std::vector<std::string>& root_folders) {
  const Paths paths(root);
  const Paths host("/");
  LoadableCopies out;
  out.looked = true;
  std::vector<std::string> seen;  // real files, so a file reached twice (a /lib link) counts once
  auto add = [&](const Paths& in, const std::string& path) {
    const std::string real = in.resolve(path);
    if (real.empty()) {
      // Absent, or a link that ends nowhere or loops: the loader cannot load it either. Any other failure to
      // look is a gap in what was read.
      struct stat st {};
      if (::lstat(in.host(path).c_str(), &st) != 0 && errno != ENOENT && errno != ENOTDIR) {
        out.unread += fmt::format("{}{}: {}", out.unread.empty() ? "" : "; ", path, std::strerror(errno));
      }
      return;
    }
    if (std::find(seen.begin(), seen.end(), real) != seen.end()) {
      return;
    }
    seen.push_back(real);
    out.copies.push_back({path, version_from_library_name(real)});
  };
  auto gap = [&](const std::string& why) { out.unread += (out.unread.empty() ? "" : "; ") + why; };
  // The subfolders glibc before 2.37 also tries under every folder it searches (legacy hardware
  // capabilities: "tls", the platform and the capability names of x86-64 and POWER, nested as
  // "tls/haswell/x86_64"): present ones only, so a node without them pays one lstat per name.
  const std::function<void(const Paths&, const std::string&, int)> look_in_legacy =
      [&](const Paths& in, const std::string& folder, int depth) {
        static constexpr std::array<std::string_view, 10> k_legacy = {
            "tls", "haswell", "xeon_phi", "avx512_1", "x86_64", "power8", "power9", "power10", "altivec", "dfp"};
        for (const auto name : k_legacy) {
          const std::string sub = folder + "/" + std::string(name);
          const std::string real = in.resolve(sub);
          struct stat st {};
          if (real.empty()) {
            if (::lstat(in.host(sub).c_str(), &st) != 0 && errno != ENOENT && errno != ENOTDIR) {
              gap(fmt::format("{}: {}", sub, std::strerror(errno)));
            }
            continue;
          }
          if (::stat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            continue;
          }
          for (const auto& soname : sonames) {
            add(in, sub + "/" + soname);
          }
          if (depth > 1) {
            look_in_legacy(in, sub, depth - 1);
          }
        }
      };
  // A folder and, since glibc 2.33, its glibc-hwcaps subfolders, which the loader tries first.
  auto look_in = [&](const Paths& in, const std::string& folder) {
    for (const auto& soname : sonames) {
      add(in, folder + "/" + soname);
    }
    look_in_legacy(in, folder, 4);
    const std::string hwcaps = in.resolve(folder + "/glibc-hwcaps");
    if (hwcaps.empty()) {
      return;
    }
    auto subfolders = list_dir(hwcaps);
    if (!subfolders) {
      gap(in.display(subfolders.error().message));
      return;
    }
    for (const auto& sub : *subfolders) {
      for (const auto& soname : sonames) {
        add(in, folder + "/glibc-hwcaps/" + sub + "/" + soname);
      }
    }
  };
  for (const auto& folder : extra_folders) {
    look_in(host, folder);  // already a host path (the folder a library was loaded from)
  }
  // The loader's own search: LD_LIBRARY_PATH (a unit's Environment= reaches its ExecCondition= too), the
  // cache, then its default folders; and the known driver folders, where an install may sit uncached.
  std::vector<std::string> folders = root_folders;
  if (const char* env = paths.is_live() ? std::getenv("LD_LIBRARY_PATH") : nullptr; env != nullptr && *env != '\0') {
    std::string entries(env);
    std::replace(entries.begin(), entries.end(), ';', ':');  // the loader splits on both
    for (auto folder : split(entries, ':')) {
      if (!folder.empty() && folder.front() == '/' && folder.find('$') == std::string_view::npos) {
        folders.emplace_back(folder);
      } else {
        // Empty or relative: the working directory of whoever runs it; $LIB, $PLATFORM: the loader's to say.
        gap(fmt::format("LD_LIBRARY_PATH holds \"{}\", which depends on where and how the daemon runs",
                        printable(folder)));
      }
    }
  }
  for (const auto& known : k_known_dirs) {
    folders.emplace_back(known.dir);
  }
  for (const char* system : {"/lib", "/lib/aarch64-linux-gnu", "/lib/powerpc64le-linux-gnu"}) {
    folders.emplace_back(system);  // the loader's defaults the known folders leave out
  }
  for (const auto& folder : folders) {
    look_in(paths, folder);
  }
  // Anything not there (ENOENT) is no gap; anything there that cannot be read is.
  auto present = [&](const std::string& absolute) -> bool {
    struct stat st {};
    if (::lstat(paths.host(absolute).c_str(), &st) == 0) {
      return true;
    }
    if (errno != ENOENT && errno != ENOTDIR) {
      gap(fmt::format("{}: {}", absolute, std::strerror(errno)));
    }
    return false;
  };
  if (present("/etc/ld.so.cache")) {  // no cache (NixOS, musl): the loader searches the default folders above
    auto text = read_file(paths.host("/etc/ld.so.cache"), 64u << 20);
    auto cached = text ? ld_cache_paths(*text, sonames) : tl::unexpected(text.error());
    if (cached) {
      for (const auto& path : *cached) {
        add(paths, path);
      }
    } else {
      gap("/etc/ld.so.cache: " + paths.display(cached.error().message));
    }
  }
  // A library preloaded into every program: one of the driver's there is loaded before any search.
  if (present("/etc/ld.so.preload")) {
    auto preload = read_file(paths.host("/etc/ld.so.preload"), 1u << 20);
    if (!preload) {
      gap("/etc/ld.so.preload: " + paths.display(preload.error().message));
    } else if (preload->find("libnvidia") != std::string::npos) {
      gap("/etc/ld.so.preload names a libnvidia library");
    }
  }
  return out;
}

std::string version_from_library_name(const std::string& path) {
  auto slash = path.rfind('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  auto pos = name.find(".so.");
  if (pos == std::string::npos) {
    return {};
  }
  std::string tail = name.substr(pos + 4);
  // "1" is a soname, not a driver version.
  return tail.find('.') == std::string::npos ? std::string{} : tail;
}

std::string driver_version_from_nvml_version(const std::string& nvml_version) {
  auto dot = nvml_version.find('.');
  if (dot == std::string::npos) {
    return nvml_version;
  }
  // The prefix is a CUDA major (12, 13); driver majors are three digits.
  auto first = parse_u64(std::string_view(nvml_version).substr(0, dot));
  if (first && *first < 100) {
    return nvml_version.substr(dot + 1);
  }
  return nvml_version;
}

}  // namespace gpuwarm::nvml
