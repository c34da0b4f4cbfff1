#pragma once
// Own declarations of the libmicrohttpd subset the exporter uses (no <microhttpd.h>), resolved from
// libmicrohttpd.so.12 on first use: every other command, and the portable binary, start on nodes without
// it, and `metrics --listen` says what to install. Same pattern as systemd/sd_bus_api.h.

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace gpuwarm::mhd {

struct MHD_Daemon;
struct MHD_Connection;
struct MHD_Response;

// Values of the library's stable ABI (microhttpd.h, MHD_VERSION 0x00097500 and earlier).
enum Result : int { no = 0, yes = 1 };
constexpr unsigned k_use_ipv6 = 16;
constexpr unsigned k_use_dual_stack = 16 | 2048;  // IPv6 with IPV6_V6ONLY off
constexpr unsigned k_use_epoll = 512;
// MHD_ALLOW_SUSPEND_RESUME includes MHD_USE_ITC (1024), which the library drops when it has no thread of its own.
constexpr unsigned k_allow_suspend_resume = 8192 | 1024;
// enum MHD_OPTION
constexpr int k_option_end = 0;
constexpr int k_option_connection_memory_limit = 1;
constexpr int k_option_connection_limit = 2;
constexpr int k_option_connection_timeout = 3;
constexpr int k_option_notify_completed = 4;
constexpr int k_option_sock_addr = 6;
constexpr int k_option_notify_connection = 27;
// enum MHD_ConnectionNotificationCode
constexpr int k_connection_notify_started = 0;
constexpr int k_connection_notify_closed = 1;
// enum MHD_ConnectionInfoType
constexpr int k_connection_info_connection_fd = 6;
// enum MHD_CONNECTION_OPTION
constexpr int k_connection_option_timeout = 0;  // seconds, as unsigned int
// enum MHD_ResponseMemoryMode
constexpr int k_respmem_must_copy = 2;
// enum MHD_DaemonInfoType
constexpr int k_daemon_info_epoll_fd = 3;
constexpr int k_daemon_info_bind_port = 6;
// enum MHD_ValueKind
constexpr int k_header_kind = 1;
// enum MHD_FEATURE
constexpr int k_feature_epoll = 7;

union ConnectionInfo {  // only the member gpuwarm reads; every member of the library's union starts at 0
  int connect_fd;
  void* pointer;
};

using NotifyConnection = void (*)(void* cls, MHD_Connection* connection, void** socket_context, int code);
// Called once a request the access handler saw has ended: answered, or its connection lost.
using RequestCompleted = void (*)(void* cls, MHD_Connection* connection, void** con_cls, int termination_code);

union DaemonInfo {
  std::size_t key_size;
  int listen_fd;
  int epoll_fd;
  std::uint16_t port;
};

// Asked before a connection is taken in: no closes it at once.
using AcceptPolicy = Result (*)(void* cls, const sockaddr* address, socklen_t length);

using AccessHandler = Result (*)(void* cls, MHD_Connection* connection, const char* url, const char* method,
                                 const char* version, const char* upload_data, std::size_t* upload_data_size,
                                 void** con_cls);

// X(return type, name, parameters)
#define GPUWARM_MHD_FUNCTIONS(X)                                                                               \
  X(MHD_Daemon*, MHD_start_daemon,                                                                             \
    (unsigned int flags, std::uint16_t port, AcceptPolicy accept_policy, void* accept_cls,                     \
     AccessHandler handler, void* handler_cls, ...))                                                            \
  X(void, MHD_stop_daemon, (MHD_Daemon * daemon))                                                              \
  X(int, MHD_quiesce_daemon, (MHD_Daemon * daemon))                                                            \
  X(Result, MHD_run, (MHD_Daemon * daemon))                                                                    \
  X(Result, MHD_get_timeout, (MHD_Daemon * daemon, unsigned long long* timeout_ms))                             \
  X(const DaemonInfo*, MHD_get_daemon_info, (MHD_Daemon * daemon, int info_type, ...))                          \
  X(const ConnectionInfo*, MHD_get_connection_info, (MHD_Connection * connection, int info_type, ...))          \
  X(MHD_Response*, MHD_create_response_from_buffer, (std::size_t size, void* buffer, int mode))                \
  X(Result, MHD_add_response_header, (MHD_Response * response, const char* header, const char* content))       \
  X(Result, MHD_queue_response, (MHD_Connection * connection, unsigned int status_code, MHD_Response* response)) \
  X(void, MHD_destroy_response, (MHD_Response * response))                                                    \
  X(void, MHD_suspend_connection, (MHD_Connection * connection))                                               \
  X(void, MHD_resume_connection, (MHD_Connection * connection))                                                \
  X(Result, MHD_set_connection_option, (MHD_Connection * connection, int option, ...))                       \
  X(Result, MHD_is_feature_supported, (int feature))                                                          \
  X(const char*, MHD_lookup_connection_value, (MHD_Connection * connection, int kind, const char* key))

struct Api {
#define GPUWARM_MHD_POINTER(ret, name, params) ret(*name) params = nullptr;
  GPUWARM_MHD_FUNCTIONS(GPUWARM_MHD_POINTER)
#undef GPUWARM_MHD_POINTER
};

// Empty when libmicrohttpd is loaded with every function above, else why not and what to install.
const std::string& load_error();
// Only after load_error() came back empty.
const Api& api();

}  // namespace gpuwarm::mhd
