#pragma once
// Shared libraries loaded at run time. dlsym with a fallback name (newer symbol
// first), and SystemLibrary: a library only some commands need (libsystemd for
// fix/verify, libkmod for reload-modules), loaded on first use so the binary
// starts on nodes without it and the command that needs it says what to install.

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <utility>

#include "core/result.h"

namespace gpuwarm {

inline void* resolve_symbol(void* handle, const char* primary, const char* fallback) {
  void* sym = ::dlsym(handle, primary);
  if (sym == nullptr && fallback != nullptr) {
    sym = ::dlsym(handle, fallback);
  }
  return sym;
}

class SystemLibrary {
 public:
  // `soname` from the dynamic loader's own search (the system's library directories); `install` names the
  // packages that provide it, for the message.
  SystemLibrary(const char* soname, const char* install) : m_soname(soname), m_install(install) {}
  SystemLibrary(const SystemLibrary&) = delete;
  SystemLibrary& operator=(const SystemLibrary&) = delete;

  // The handle, or why there is none. Loaded once, whichever thread asks first; never unloaded.
  Result<void*> handle() {
    std::call_once(m_once, [this] {
      m_handle = ::dlopen(m_soname, RTLD_NOW | RTLD_LOCAL);
      if (m_handle == nullptr) {
        const char* why = ::dlerror();
        m_error = std::string(m_soname) + " could not be loaded (" + (why != nullptr ? why : "not found") +
                  "): install " + m_install;
      }
    });
    if (m_handle == nullptr) {
      return fail(m_error);
    }
    return m_handle;
  }

  // A function from the library, or null (a symbol an older release lacks).
  template <class Fn>
  Fn symbol(const char* name) {
    auto h = handle();
    // Function pointers from dlsym: the cast is the documented POSIX idiom.
    return h ? reinterpret_cast<Fn>(::dlsym(*h, name)) : nullptr;  // NOLINT
  }

  const char* soname() const { return m_soname; }

 private:
  const char* m_soname;
  const char* m_install;
  std::once_flag m_once;
  void* m_handle = nullptr;
  std::string m_error;
};

// A library's function table, resolved once: `fill(api, missing)` sets each pointer and calls missing(name)
// for a symbol the library lacks. Returns the table and, when it cannot be used, why.
template <class Api, class Fill>
std::pair<Api, std::string> load_function_table(SystemLibrary& lib, const char* too_old, Fill fill) {
  std::pair<Api, std::string> out;
  if (auto h = lib.handle(); !h) {
    out.second = h.error().message;
    return out;
  }
  fill(out.first, [&](const char* name) {
    if (out.second.empty()) {
      out.second = std::string(lib.soname()) + " lacks " + name + ": " + too_old;
    }
  });
  return out;
}

}  // namespace gpuwarm
