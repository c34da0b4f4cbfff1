#pragma once
// The dlopen'd NVML: the library handle, its resolved function table, and the
// real file that was loaded. No NVML state (init) lives here.

#include <memory>
#include <string>

#include "core/result.h"
#include "nvml/nvml_api.h"

namespace gpuwarm::nvml {

class Library {
 public:
  // Opens `path` if given, else libnvidia-ml.so.1 and then libnvidia-ml.so
  // (the unversioned name may be the CUDA toolkit's link stub, so it is the
  // last resort). Fails when nothing loads or a required symbol is missing;
  // the error names what was tried and dlerror()'s text.
  static Result<std::unique_ptr<Library>> open(const std::string& path);

  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  const Api& api() const { return m_api; }
  const std::string& real_path() const { return m_real_path; }

  // "NOT_SUPPORTED" etc. when known, else nvmlErrorString's text, else the number.
  std::string error_name(Return r) const;

 private:
  Library() = default;
  void* m_handle = nullptr;
  Api m_api;
  std::string m_real_path;
};

// The version part of a library file name: "libnvidia-ml.so.580.159.04" -> "580.159.04".
// Empty when the name carries only a soname digit ("libnvidia-ml.so.1").
std::string version_from_library_name(const std::string& path);

// "13.580.159.04" -> "580.159.04" (the CUDA major comes first).
std::string driver_version_from_nvml_version(const std::string& nvml_version);

}  // namespace gpuwarm::nvml
