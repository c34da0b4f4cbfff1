#include "exporter/mhd_api.h"

#include "core/dl.h"

namespace gpuwarm::mhd {

namespace {

SystemLibrary& library() {
  static SystemLibrary lib("libmicrohttpd.so.12",
                           "libmicrohttpd12 (Debian 12), libmicrohttpd12t64 (Ubuntu 24.04) or libmicrohttpd (RHEL, "
                           "Fedora)");
  return lib;
}

const std::pair<Api, std::string>& loaded() {
  static const auto once = load_function_table<Api>(
      library(), "the installed libmicrohttpd is too old", [](Api& api, auto&& missing) {
        SystemLibrary& lib = library();
#define GPUWARM_MHD_RESOLVE(ret, name, params) \
  api.name = lib.symbol<ret(*) params>(#name); \
  if (api.name == nullptr) {                   \
    missing(#name);                            \
  }
        GPUWARM_MHD_FUNCTIONS(GPUWARM_MHD_RESOLVE)
#undef GPUWARM_MHD_RESOLVE
      });
  return once;
}

}  // namespace

const std::string& load_error() { return loaded().second; }

const Api& api() { return loaded().first; }

}  // namespace gpuwarm::mhd
