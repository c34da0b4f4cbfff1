#include "exporter/http_server.h"

#include <arpa/inet.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "core/strings.h"
#include "exporter/mhd_api.h"

namespace gpuwarm {

namespace {

// Bounds: a scrape is one small GET; nothing legitimate needs more.
constexpr unsigned k_threads = 4;                 // scrapes in parallel (they share one collection)
constexpr unsigned k_max_connections = 64;
constexpr unsigned k_max_connections_per_client = 8;
constexpr unsigned k_idle_timeout_s = 15;         // a silent client is dropped
constexpr std::size_t k_connection_memory = 16 * 1024;  // request line + headers

Result<std::uint16_t> parse_port(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > 65535) {
    return fail(fmt::format("--listen '{}': the port must be a number from 0 to 65535", escape_control(whole)));
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
  ListenAddress out;
  std::string host;
  std::string_view port_text;
  const std::string usage = "use ADDR:PORT (an IPv4 address, or an IPv6 address in brackets) or PORT, e.g. " +
                            std::string(k_default_listen);
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fail(fmt::format("--listen '{}': {}", escape_control(text), usage));
    }
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
    out.ipv6 = true;
  } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return fail(fmt::format("--listen '{}': an IPv6 address goes in brackets: [{}]:PORT", escape_control(text), escape_control(host)));
    }
  } else {
    host = "127.0.0.1";
    port_text = text;
  }
  auto port = parse_port(port_text, text);
  if (!port) {
    return tl::unexpected(port.error());
  }
  out.port = *port;
  if (out.ipv6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.address);  // NOLINT: the sockets API's idiom
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(out.port);
    if (::inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) {
      return fail(fmt::format("--listen '{}': '{}' is not an IPv6 address (names are not resolved)", escape_control(text), escape_control(host)));
    }
    out.length = sizeof(sockaddr_in6);
    out.text = fmt::format("[{}]:{}", host, out.port);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&out.address);  // NOLINT: the sockets API's idiom
    in4->sin_family = AF_INET;
    in4->sin_port = htons(out.port);
    if (::inet_pton(AF_INET, host.c_str(), &in4->sin_addr) != 1) {
      return fail(fmt::format("--listen '{}': '{}' is not an IPv4 address (names are not resolved); {}", escape_control(text), escape_control(host),
                              usage));
    }
    out.length = sizeof(sockaddr_in);
    out.text = fmt::format("{}:{}", host, out.port);
  }
  return out;
}

HttpResponse route(std::string_view method, std::string_view url,
                   const std::function<std::shared_ptr<const std::string>()>& metrics,
                   const std::function<bool()>& healthy) {
  HttpResponse r;
  auto text = [](std::string s) { return std::make_shared<const std::string>(std::move(s)); };
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    r.headers.emplace_back("Allow", "GET, HEAD");
    r.body = text("Only GET and HEAD are served.\n");
    return r;
  }
  if (url == "/metrics") {
    r.body = metrics();
    if (!r.body) {
      r.status = 500;
      r.body = text("gpuwarm could not collect the node's facts; see the exporter's log.\n");
      return r;
    }
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }
  if (url == "/healthz") {
    const bool ok = healthy();
    r.status = ok ? 200 : 503;
    r.body = text(ok ? "ok\n" : "NVML stopped answering: restart the exporter\n");
    return r;
  }
  if (url == "/") {
    r.content_type = "text/html; charset=utf-8";
    r.body = text(
        "<html><head><title>gpuwarm</title></head><body><h1>gpuwarm</h1>"
        "<p><a href=\"/metrics\">/metrics</a>: persistence, the nvidia-persistenced daemon and the verdict of "
        "<code>gpuwarm diagnose</code> for this node.</p></body></html>\n");
    return r;
  }
  r.status = 404;
  r.body = text("Not found: the metrics are at /metrics.\n");
  return r;
}

struct HttpServer::State {
  Handler handler;
  mhd::MHD_Daemon* daemon = nullptr;
};

namespace {

mhd::Result answer(void* cls, mhd::MHD_Connection* connection, const char* url, const char* method,
                   const char* /*version*/, const char* /*upload_data*/, std::size_t* upload_data_size,
                   void** request_state) {
  auto& handler = *static_cast<HttpServer::Handler*>(cls);
  std::string_view m = method != nullptr ? method : "";
  // First call: headers only. A GET is answered on the second call, once the (empty) body is in; anything
  // else is refused at once, so no request body is ever buffered.
  static int seen_headers;
  if (*request_state == nullptr && (m == "GET" || m == "HEAD")) {
    *request_state = &seen_headers;
    return mhd::yes;
  }
  if (*upload_data_size != 0 && (m == "GET" || m == "HEAD")) {
    *upload_data_size = 0;  // a GET with a body: the body is ignored
    return mhd::yes;
  }
  HttpResponse r;
  try {
    r = handler(m, url != nullptr ? url : "");
  } catch (...) {
    r.status = 500;
    r.body = std::make_shared<const std::string>("internal error\n");
  }
  const auto& api = mhd::api();
  const std::string& body = r.body ? *r.body : std::string();
  mhd::MHD_Response* response =
      api.MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), mhd::k_respmem_must_copy);
  if (response == nullptr) {
    return mhd::no;
  }
  api.MHD_add_response_header(response, "Content-Type", r.content_type.c_str());
  for (const auto& [name, value] : r.headers) {
    api.MHD_add_response_header(response, name.c_str(), value.c_str());
  }
  mhd::Result queued = api.MHD_queue_response(connection, r.status, response);
  api.MHD_destroy_response(response);
  return queued;
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::start(const ListenAddress& address, Handler handler) {
  if (const std::string& why = mhd::load_error(); !why.empty()) {
    return fail(why);
  }
  std::unique_ptr<HttpServer> server(new HttpServer());
  server->m_state = std::make_unique<State>();
  server->m_state->handler = std::move(handler);
  // No MHD_USE_ERROR_LOG: it writes a line per malformed request, so any client could flood the journal and
  // push gpuwarm's own messages (an NVML call that never returned) past journald's rate limit.
  unsigned flags = mhd::k_use_internal_polling_thread | mhd::k_use_auto;
  if (address.ipv6) {
    flags |= mhd::k_use_ipv6;
  }
  const auto& api = mhd::api();
  errno = 0;
  // The options list is variadic: each value must have exactly the type the library reads.
  server->m_state->daemon = api.MHD_start_daemon(
      flags, address.port, nullptr, nullptr, &answer, &server->m_state->handler,
      mhd::k_option_sock_addr, reinterpret_cast<const sockaddr*>(&address.address),  // NOLINT: sockets idiom
      mhd::k_option_thread_pool_size, k_threads,
      mhd::k_option_connection_limit, k_max_connections,
      mhd::k_option_per_ip_connection_limit, k_max_connections_per_client,
      mhd::k_option_connection_timeout, k_idle_timeout_s,
      mhd::k_option_connection_memory_limit, k_connection_memory,
      mhd::k_option_end);
  if (server->m_state->daemon == nullptr) {
    return fail(fmt::format("cannot listen on {}: {} (is another process using the port?)", address.text,
                            errno != 0 ? std::strerror(errno) : "libmicrohttpd refused"));
  }
  const mhd::DaemonInfo* info = api.MHD_get_daemon_info(server->m_state->daemon, mhd::k_daemon_info_bind_port);
  server->m_port = info != nullptr && info->port != 0 ? info->port : address.port;
  return server;
}

HttpServer::~HttpServer() {
  if (m_state && m_state->daemon != nullptr) {
    mhd::api().MHD_stop_daemon(m_state->daemon);
  }
}

}  // namespace gpuwarm
