#pragma once
// dlsym with a fallback name: newer symbol first, then the older one.

#include <dlfcn.h>

namespace gpuwarm {

inline void* resolve_symbol(void* handle, const char* primary, const char* fallback) {
  void* sym = ::dlsym(handle, primary);
  if (sym == nullptr && fallback != nullptr) {
    sym = ::dlsym(handle, fallback);
  }
  return sym;
}

}  // namespace gpuwarm
