#include "nvml/nvml_library.h"

#include <dlfcn.h>
#include <link.h>

#include <climits>
#include <cstdlib>
#include <vector>

#include "core/dl.h"
#include "core/strings.h"

namespace gpuwarm::nvml {

const char* return_name(Return r) {
  switch (r) {
    case 0: return "SUCCESS";
    case 1: return "UNINITIALIZED";
    case 2: return "INVALID_ARGUMENT";
    case 3: return "NOT_SUPPORTED";
    case 4: return "NO_PERMISSION";
    case 5: return "ALREADY_INITIALIZED";
    case 6: return "NOT_FOUND";
    case 7: return "INSUFFICIENT_SIZE";
    case 8: return "INSUFFICIENT_POWER";
    case 9: return "DRIVER_NOT_LOADED";
    case 10: return "TIMEOUT";
    case 11: return "IRQ_ISSUE";
    case 12: return "LIBRARY_NOT_FOUND";
    case 13: return "FUNCTION_NOT_FOUND";
    case 14: return "CORRUPTED_INFOROM";
    case 15: return "GPU_IS_LOST";
    case 16: return "RESET_REQUIRED";
    case 17: return "OPERATING_SYSTEM";
    case 18: return "LIB_RM_VERSION_MISMATCH";
    case 19: return "IN_USE";
    case 20: return "MEMORY";
    case 21: return "NO_DATA";
    case 22: return "VGPU_ECC_NOT_SUPPORTED";
    case 23: return "INSUFFICIENT_RESOURCES";
    case 24: return "FREQ_NOT_SUPPORTED";
    case 25: return "ARGUMENT_VERSION_MISMATCH";
    case 26: return "DEPRECATED";
    case 27: return "NOT_READY";
    case 28: return "GPU_NOT_FOUND";
    case 29: return "INVALID_STATE";
    case 30: return "RESET_TYPE_NOT_SUPPORTED";
    case 999: return "UNKNOWN";
    default: return nullptr;
  }
}

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

Result<std::unique_ptr<Library>> Library::open(const std::string& path) {
  std::vector<std::string> candidates;
  if (!path.empty()) {
    candidates.push_back(path);
  } else {
    candidates = {"libnvidia-ml.so.1", "libnvidia-ml.so"};
  }
  std::string errors;
  void* handle = nullptr;
  for (const auto& name : candidates) {
    ::dlerror();
    handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      break;
    }
    const char* why = ::dlerror();
    errors += (errors.empty() ? "" : "; ") + std::string(why != nullptr ? why : name + ": cannot open");
  }
  if (handle == nullptr) {
    return fail(errors);
  }

  std::unique_ptr<Library> lib(new Library());
  lib->m_handle = handle;
  lib->m_real_path = loaded_file(handle, candidates.front());

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
