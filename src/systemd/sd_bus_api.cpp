#include "systemd/sd_bus_api.h"

#include "core/dl.h"

namespace gpuwarm::sdbus {

namespace {

struct Loaded {
  Api api;
  std::string error;
};

const Loaded& loaded() {
  static const Loaded once = [] {
    static SystemLibrary lib("libsystemd.so.0", "libsystemd0 (Debian, Ubuntu) or systemd-libs (RHEL, Fedora)");
    Loaded l;
    if (auto h = lib.handle(); !h) {
      l.error = h.error().message;
      return l;
    }
#define GPUWARM_SD_BUS_RESOLVE(ret, name, params)                                            \
  l.api.name = lib.symbol<ret(*) params>(#name);                                             \
  if (l.api.name == nullptr && l.error.empty()) {                                            \
    l.error = std::string(lib.soname()) + " lacks " #name ": the installed systemd is too old"; \
  }
    GPUWARM_SD_BUS_FUNCTIONS(GPUWARM_SD_BUS_RESOLVE)
#undef GPUWARM_SD_BUS_RESOLVE
    l.api.sd_bus_set_method_call_timeout =
        lib.symbol<int (*)(sd_bus*, std::uint64_t)>("sd_bus_set_method_call_timeout");
    return l;
  }();
  return once;
}

}  // namespace

const std::string& load_error() { return loaded().error; }

const Api& api() { return loaded().api; }

}  // namespace gpuwarm::sdbus
