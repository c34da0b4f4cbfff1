#include "systemd/sd_bus_api.h"

#include "core/dl.h"

namespace gpuwarm::sdbus {

namespace {

SystemLibrary& library() {
  static SystemLibrary lib("libsystemd.so.0", "libsystemd0 (Debian, Ubuntu) or systemd-libs (RHEL, Fedora)");
  return lib;
}

const std::pair<Api, std::string>& loaded() {
  static const auto once =
      load_function_table<Api>(library(), "the installed systemd is too old", [](Api& api, auto&& missing) {
        SystemLibrary& lib = library();
#define GPUWARM_SD_BUS_RESOLVE(ret, name, params)    \
  api.name = lib.symbol<ret(*) params>(#name);       \
  if (api.name == nullptr) {                         \
    missing(#name);                                  \
  }
        GPUWARM_SD_BUS_FUNCTIONS(GPUWARM_SD_BUS_RESOLVE)
#undef GPUWARM_SD_BUS_RESOLVE
        api.sd_bus_set_method_call_timeout =
            lib.symbol<int (*)(sd_bus*, std::uint64_t)>("sd_bus_set_method_call_timeout");  // optional: >= 240
      });
  return once;
}

}  // namespace

const std::string& load_error() { return loaded().second; }

const Api& api() { return loaded().first; }

}  // namespace gpuwarm::sdbus
