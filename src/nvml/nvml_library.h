#pragma once
// The dlopen'd NVML: the library handle, its resolved function table, and the
// real file that was loaded. No NVML state (init) lives here.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "nvml/nvml_api.h"
#include "snapshot/snapshot.h"

namespace gpuwarm::nvml {

// Where to look for libnvidia-ml. An explicit path is the only candidate:
// gpuwarm never second-guesses --nvml. Otherwise the default loader path
// (live root only), then the driver locations of known layouts under `root`.
struct LibrarySearch {
  std::string path;            // --nvml; "" = search
  std::string root = "/";      // --root: search the root's copies, never the caller's
  bool root_trusted = false;   // --trust-root: as root, load the root's copies (see untrusted_root_for_code)
  // As root, check a named file (`path`) as the searched ones are: the guard, whose --nvml comes from a drop-in
  // and is loaded at every boot (an interactive command's --nvml is the operator's own choice).
  bool check_named_file = false;
};

struct LibraryCandidate {
  std::string path;  // a soname for the loader, or an absolute path
  std::string why;   // "default loader path", "NixOS driver (/run/opengl-driver/lib)", ...
};

// The candidates in order, for a search; exposed for tests and --help.
std::vector<LibraryCandidate> library_candidates(const LibrarySearch& search);

// Why, as root (`as_root`), this search's files must not be loaded ("" when they may): a --root tree's copies
// unless the tree is vouched for (core/fs.h untrusted_root_for_code), and a file named with --nvml inside such a tree.
std::string refused_as_root(const LibrarySearch& search, bool as_root);

// The candidates that are regular files, each once (a usrmerge tree reaches one file by two names), CUDA stubs
// last: whether there is code to refuse, and where.
std::vector<std::string> library_files(const LibrarySearch& search);

// Every copy of a driver library the dynamic loader could hand a program that asks for it by soname
// ("libnvidia-cfg.so.1"): the soname in `extra_folders` (host paths), in LD_LIBRARY_PATH's folders (live root
// only), in each known driver location and the loader's default folders, and each path /etc/ld.so.cache
// gives for it; each with the version its real file is named by. Under --root, the root's folders and cache.
// The guard uses it to tell a logged "API mismatch" this host's driver could have caused from one it
// could not.
// The paths an /etc/ld.so.cache's entries give for `sonames`, in the cache's order (pure, for tests and
// fuzzing). Fails when the bytes are not a cache in glibc's format.
Result<std::vector<std::string>> ld_cache_paths(std::string_view cache, const std::vector<std::string>& sonames);
// `root_folders`: more folders of the root to look in (an executable's RUNPATH).
LoadableCopies loadable_copies(const std::string& root, const std::vector<std::string>& sonames,
                               const std::vector<std::string>& extra_folders,
                               const std::vector<std::string>& root_folders = {});

class Library {
 public:
  // Opens the first candidate that loads and has every required symbol. A
  // CUDA toolkit link stub (a path under /stubs/) is taken only when nothing
  // else loads. Fails when nothing loads; the error names what was tried.
  static Result<std::unique_ptr<Library>> open(const LibrarySearch& search);
  static Result<std::unique_ptr<Library>> open(const std::string& path) { return open(LibrarySearch{path}); }

  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  const Api& api() const { return m_api; }
  const std::string& real_path() const { return m_real_path; }
  // Why this file: the candidate's `why` ("--nvml", "default loader path", ...).
  const std::string& found_by() const { return m_found_by; }
  // Candidates tried before it, each with why it was passed over.
  const std::vector<std::string>& passed_over() const { return m_passed_over; }

  // "NOT_SUPPORTED" etc. when known, else nvmlErrorString's text, else the number.
  std::string error_name(Return r) const;

 private:
  Library() = default;
  void* m_handle = nullptr;
  Api m_api;
  std::string m_real_path;
  std::string m_found_by;
  std::vector<std::string> m_passed_over;
};

// The version part of a library file name: "libnvidia-ml.so.580.159.04" -> "580.159.04".
// Empty when the name carries only a soname digit ("libnvidia-ml.so.1").
std::string version_from_library_name(const std::string& path);

// "13.580.159.04" -> "580.159.04" (the CUDA major comes first).
std::string driver_version_from_nvml_version(const std::string& nvml_version);

}  // namespace gpuwarm::nvml
