#include "modules/kmod_api.h"

#include "core/dl.h"

namespace gpuwarm::kmod {

namespace {

SystemLibrary& library() {
  static SystemLibrary lib("libkmod.so.2", "libkmod2 (Debian, Ubuntu) or kmod-libs (RHEL, Fedora)");
  return lib;
}

const std::pair<Api, std::string>& loaded() {
  static const auto once =
      load_function_table<Api>(library(), "the installed libkmod is too old", [](Api& api, auto&& missing) {
        SystemLibrary& lib = library();
#define GPUWARM_KMOD_RESOLVE(ret, name, params)      \
  api.name = lib.symbol<ret(*) params>(#name);       \
  if (api.name == nullptr) {                         \
    missing(#name);                                  \
  }
        GPUWARM_KMOD_FUNCTIONS(GPUWARM_KMOD_RESOLVE)
#undef GPUWARM_KMOD_RESOLVE
      });
  return once;
}

}  // namespace

const std::string& load_error() { return loaded().second; }

const Api& api() { return loaded().first; }

}  // namespace gpuwarm::kmod
