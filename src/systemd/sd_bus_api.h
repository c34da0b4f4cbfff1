#pragma once
// Own declarations of the sd-bus subset gpuwarm uses (no <systemd/sd-bus.h>),
// resolved from libsystemd.so.0 on first use. The binary then starts where
// libsystemd is missing (minimal images, containers, a broken node) and only
// the commands that talk to systemd say what to install.
//
// The wrappers keep sd-bus's own names, so the calling code reads like any
// sd-bus code; each forwards to the resolved pointer.

#include <cerrno>
#include <cstdint>
#include <string>

namespace gpuwarm::sdbus {

struct sd_bus;
struct sd_bus_message;
struct sd_bus_slot;
struct sd_bus_error {  // the ABI-stable public layout
  const char* name;
  const char* message;
  int _need_free;
};
using sd_bus_message_handler_t = int (*)(sd_bus_message* m, void* userdata, sd_bus_error* ret_error);

inline constexpr const char* SD_BUS_ERROR_UNKNOWN_METHOD = "org.freedesktop.DBus.Error.UnknownMethod";
inline constexpr const char* SD_BUS_ERROR_SERVICE_UNKNOWN = "org.freedesktop.DBus.Error.ServiceUnknown";
inline constexpr const char* SD_BUS_ERROR_NAME_HAS_NO_OWNER = "org.freedesktop.DBus.Error.NameHasNoOwner";

// X(return type, name, parameters): every function gpuwarm calls.
#define GPUWARM_SD_BUS_FUNCTIONS(X)                                                                              \
  X(int, sd_bus_open_system, (sd_bus * *ret))                                                                    \
  X(sd_bus*, sd_bus_flush_close_unref, (sd_bus * bus))                                                           \
  X(int, sd_bus_call, (sd_bus * bus, sd_bus_message * m, std::uint64_t usec, sd_bus_error * ret_error,           \
                       sd_bus_message * *reply))                                                                 \
  X(int, sd_bus_call_method, (sd_bus * bus, const char* destination, const char* path, const char* interface,    \
                              const char* member, sd_bus_error* ret_error, sd_bus_message** reply,               \
                              const char* types, ...))                                                           \
  X(int, sd_bus_get_property, (sd_bus * bus, const char* destination, const char* path, const char* interface,   \
                               const char* member, sd_bus_error* ret_error, sd_bus_message** reply,              \
                               const char* type))                                                                \
  X(int, sd_bus_get_property_string, (sd_bus * bus, const char* destination, const char* path,                   \
                                      const char* interface, const char* member, sd_bus_error* ret_error,        \
                                      char** ret))                                                               \
  X(int, sd_bus_get_property_trivial, (sd_bus * bus, const char* destination, const char* path,                  \
                                       const char* interface, const char* member, sd_bus_error* ret_error,       \
                                       char type, void* ret_ptr))                                                \
  X(int, sd_bus_match_signal, (sd_bus * bus, sd_bus_slot * *ret, const char* sender, const char* path,           \
                               const char* interface, const char* member, sd_bus_message_handler_t callback,     \
                               void* userdata))                                                                  \
  X(sd_bus_slot*, sd_bus_slot_unref, (sd_bus_slot * slot))                                                       \
  X(int, sd_bus_process, (sd_bus * bus, sd_bus_message * *r))                                                    \
  X(int, sd_bus_wait, (sd_bus * bus, std::uint64_t timeout_usec))                                                \
  X(int, sd_bus_message_new_method_call, (sd_bus * bus, sd_bus_message * *m, const char* destination,            \
                                          const char* path, const char* interface, const char* member))          \
  X(int, sd_bus_message_append, (sd_bus_message * m, const char* types, ...))                                    \
  X(int, sd_bus_message_append_strv, (sd_bus_message * m, char** l))                                             \
  X(int, sd_bus_message_read, (sd_bus_message * m, const char* types, ...))                                      \
  X(int, sd_bus_message_read_strv, (sd_bus_message * m, char*** l))                                              \
  X(int, sd_bus_message_enter_container, (sd_bus_message * m, char type, const char* contents))                  \
  X(sd_bus_message*, sd_bus_message_unref, (sd_bus_message * m))                                                 \
  X(void, sd_bus_error_free, (sd_bus_error * e))                                                                 \
  X(int, sd_bus_error_is_set, (const sd_bus_error* e))                                                           \
  X(int, sd_bus_error_has_name, (const sd_bus_error* e, const char* name))

struct Api {
#define GPUWARM_SD_BUS_POINTER(ret, name, params) ret(*name) params = nullptr;
  GPUWARM_SD_BUS_FUNCTIONS(GPUWARM_SD_BUS_POINTER)
#undef GPUWARM_SD_BUS_POINTER
  int (*sd_bus_set_method_call_timeout)(sd_bus* bus, std::uint64_t usec) = nullptr;  // systemd >= 240
};

// Empty when libsystemd is loaded with every function above, else why not and what to install.
const std::string& load_error();
// Only after load_error() came back empty.
const Api& api();

#define GPUWARM_SD_BUS_WRAPPER(ret, name, params)       \
  template <class... Args>                              \
  inline ret name(Args... args) {                       \
    return api().name(args...);                         \
  }
GPUWARM_SD_BUS_FUNCTIONS(GPUWARM_SD_BUS_WRAPPER)
#undef GPUWARM_SD_BUS_WRAPPER

inline int sd_bus_set_method_call_timeout(sd_bus* bus, std::uint64_t usec) {
  return api().sd_bus_set_method_call_timeout != nullptr ? api().sd_bus_set_method_call_timeout(bus, usec) : -ENOSYS;
}

}  // namespace gpuwarm::sdbus
