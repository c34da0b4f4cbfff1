#include "modules/kmod_api.h"

#include "core/dl.h"

namespace gpuwarm::kmod {

namespace {

struct Loaded {
  Api api;
  std::string error;
};

const Loaded& loaded() {
  static const Loaded once = [] {
    static SystemLibrary lib("libkmod.so.2", "libkmod2 (Debian, Ubuntu) or kmod-libs (RHEL, Fedora)");
    Loaded l;
    if (auto h = lib.handle(); !h) {
      l.error = h.error().message;
      return l;
    }
#define GPUWARM_KMOD_RESOLVE(ret, name, params)                                                       \
  l.api.name = lib.symbol<ret(*) params>(#name);                                                      \
  if (l.api.name == nullptr && l.error.empty()) {                                                     \
    l.error = std::string(lib.soname()) + " lacks " #name ": the installed libkmod is too old";        \
  }
    GPUWARM_KMOD_FUNCTIONS(GPUWARM_KMOD_RESOLVE)
#undef GPUWARM_KMOD_RESOLVE
    return l;
  }();
  return once;
}

}  // namespace

const std::string& load_error() { return loaded().error; }

const Api& api() { return loaded().api; }

}  // namespace gpuwarm::kmod
