#pragma once
// Own declarations of the libkmod subset `reload-modules` uses (no <libkmod.h>),
// resolved from libkmod.so.2 on first use, so every other command starts on
// nodes without libkmod. Same pattern as systemd/sd_bus_api.h.

#include <string>

namespace gpuwarm::kmod {

struct kmod_ctx;
struct kmod_module;
struct kmod_list;

// X(return type, name, parameters)
#define GPUWARM_KMOD_FUNCTIONS(X)                                                                          \
  X(kmod_ctx*, kmod_new, (const char* dirname, const char* const* config_paths))                          \
  X(kmod_ctx*, kmod_unref, (kmod_ctx * ctx))                                                              \
  X(int, kmod_load_resources, (kmod_ctx * ctx))                                                           \
  X(kmod_list*, kmod_list_next, (const kmod_list* list, const kmod_list* curr))                           \
  X(int, kmod_module_new_from_name, (kmod_ctx * ctx, const char* name, kmod_module** mod))                \
  X(int, kmod_module_new_from_path, (kmod_ctx * ctx, const char* path, kmod_module** mod))                \
  X(kmod_module*, kmod_module_unref, (kmod_module * mod))                                                 \
  X(const char*, kmod_module_get_options, (const kmod_module* mod))                                       \
  X(int, kmod_module_get_info, (const kmod_module* mod, kmod_list** list))                                \
  X(const char*, kmod_module_info_get_key, (const kmod_list* entry))                                      \
  X(const char*, kmod_module_info_get_value, (const kmod_list* entry))                                    \
  X(void, kmod_module_info_free_list, (kmod_list * list))                                                 \
  X(int, kmod_module_remove_module, (kmod_module * mod, unsigned int flags))                              \
  X(int, kmod_module_insert_module, (kmod_module * mod, unsigned int flags, const char* options))

struct Api {
#define GPUWARM_KMOD_POINTER(ret, name, params) ret(*name) params = nullptr;
  GPUWARM_KMOD_FUNCTIONS(GPUWARM_KMOD_POINTER)
#undef GPUWARM_KMOD_POINTER
};

// Empty when libkmod is loaded with every function above, else why not and what to install.
const std::string& load_error();
// Only after load_error() came back empty.
const Api& api();

#define GPUWARM_KMOD_WRAPPER(ret, name, params) \
  template <class... Args>                      \
  inline ret name(Args... args) {               \
    return api().name(args...);                 \
  }
GPUWARM_KMOD_FUNCTIONS(GPUWARM_KMOD_WRAPPER)
#undef GPUWARM_KMOD_WRAPPER

}  // namespace gpuwarm::kmod
