#include "exporter/http_server.h"

#include <arpa/inet.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "core/signal_shield.h"
#include "core/strings.h"
#include "exporter/mhd_api.h"

namespace gpuwarm {

namespace {

// Bounds: a scrape is one small GET; nothing legitimate needs more. One thread polls every connection, and a
// scrape waiting for a collection is parked (suspended), not given a thread: a connection costs a descriptor
// and its 16 KiB, so the limits are sized by what a node sees (a few Prometheus servers, probes, a curl
// loop), not by the unit's TasksMax. Ten hosts holding every connection they may need 80 of 256.
constexpr unsigned k_max_connections = 256;
constexpr unsigned k_max_connections_per_client = 8;     // per address
constexpr unsigned k_max_connections_per_network = 64;   // per IPv6 /64: a link's hosts, or one host's addresses
constexpr unsigned k_idle_timeout_s = 15;         // a silent client is dropped
// The idle timeout counts silence only: a client that sends a byte every few seconds would keep its
// connection (and, 16 of them, the whole server) forever. A request must be whole within this.
constexpr auto k_request_deadline = std::chrono::seconds(10);
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

ClientKeys client_keys(const sockaddr* address, socklen_t length) {
  if (address == nullptr) {
    return {};
  }
  if (address->sa_family == AF_INET && length >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(address);  // NOLINT: sockets idiom
    return {std::string(reinterpret_cast<const char*>(&in4->sin_addr), sizeof in4->sin_addr), {}};
  }
  if (address->sa_family == AF_INET6 && length >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);  // NOLINT: sockets idiom
    const auto* bytes = reinterpret_cast<const char*>(in6->sin6_addr.s6_addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      return {std::string(bytes + 12, 4), {}};  // the same key as the IPv4 address itself
    }
    return {std::string(bytes, 16), std::string(bytes, 8)};
  }
  return {};
}

std::optional<HttpResponse> route(std::string_view method, std::string_view url, const std::function<bool()>& healthy) {
  HttpResponse r;
  auto text = [](std::string s) { return std::make_shared<const std::string>(std::move(s)); };
  if (method != "GET" && method != "HEAD") {
    r.status = 405;
    r.headers.emplace_back("Allow", "GET, HEAD");
    r.body = text("Only GET and HEAD are served.\n");
    return r;
  }
  if (url == "/metrics") {
    return std::nullopt;
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

std::optional<std::chrono::milliseconds> scrape_answer_within(const std::optional<std::string>& timeout_header) {
  if (!timeout_header) {
    return std::nullopt;
  }
  const std::string_view text = trim(*timeout_header);
  double seconds = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (error != std::errc{} || end != text.data() + text.size() || !(seconds > 0) || seconds > 3600) {
    return std::nullopt;
  }
  const double margin = std::min(1.0, seconds / 10);
  return std::chrono::milliseconds(static_cast<long long>((seconds - margin) * 1000));
}

HttpResponse metrics_response(std::shared_ptr<const std::string> body) {
  HttpResponse r;
  if (!body) {
    r.status = 500;
    r.body = std::make_shared<const std::string>("gpuwarm could not collect the node's facts; see the exporter's log.\n");
    return r;
  }
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = std::move(body);
  return r;
}

// Named, not anonymous: HttpServer::State (declared in the header) holds these.
namespace http_detail {

// A request whose answer is given later (a scrape waiting for a collection): its connection is suspended
// until the reply arrives. Shared by the request and the reply, which may outlive the request (a collection
// that ends after the server stopped).
struct Pending {
  std::mutex mutex;
  mhd::MHD_Connection* connection = nullptr;
  int wake_fd = -1;  // the polling loop's: a resume is not seen until the loop runs again
  std::optional<HttpResponse> response;
  bool suspended = false;
};

// libmicrohttpd's per-request pointer: made when the headers are in, deleted when the request ends.
struct RequestState {
  bool answering = false;  // whole, and counted in requests_open
  std::shared_ptr<Pending> pending;
};

// Wakes the polling loop (its eventfd). libmicrohttpd signals nothing itself in this mode: it leaves waking
// to whoever polls.
void wake_loop(int wake_fd) {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t written = ::write(wake_fd, &one, sizeof one);  // full (2^64-2 wakes) is still awake
}

// The first reply wins. A suspended connection is resumed under the request's lock, so it is resumed once,
// and never before it was suspended.
void deliver(Pending& pending, HttpResponse response) {
  std::lock_guard<std::mutex> lock(pending.mutex);
  if (pending.response) {
    return;
  }
  pending.response = std::move(response);
  if (pending.suspended) {
    // Suspended means the server still runs: its destructor answers every parked request before it stops.
    mhd::api().MHD_resume_connection(pending.connection);
    wake_loop(pending.wake_fd);
  }
}

HttpResponse stopping_response() {
  HttpResponse r;
  r.status = 503;
  r.headers.emplace_back("Connection", "close");
  r.body = std::make_shared<const std::string>("The exporter is stopping.\n");
  return r;
}

}  // namespace http_detail

using http_detail::deliver;
using http_detail::Pending;
using http_detail::RequestState;
using http_detail::stopping_response;

// Lock order: a Pending's mutex, then libmicrohttpd's own; State::mutex is taken alone (libmicrohttpd may
// hold its locks when it calls the notifications, which take State::mutex).
struct HttpServer::State {
  using Clock = std::chrono::steady_clock;
  Handler handler;
  mhd::MHD_Daemon* daemon = nullptr;

  // The polling loop is gpuwarm's thread driving libmicrohttpd's epoll ("external") mode, not the library's
  // own thread: stopping to accept then happens on the thread that polls, between two rounds. From another
  // thread, MHD_quiesce_daemon races the library's loop over the listening socket, and the loser aborts the
  // process (0.9.75, daemon.c: MHD_epoll removes it a second time and panics on ENOENT).
  std::thread loop;
  int epoll_fd = -1;  // libmicrohttpd's: readable when a connection, the listener or a resume needs it
  int wake_fd = -1;   // an eventfd: the loop looks at `quiesce` and `quit` once it is written
  enum class Quiesce { no, asked, done, failed } quiesce = Quiesce::no;
  std::condition_variable quiesce_answered;
  bool quit = false;
  // A connection closed during the last round (set under `mutex`). At its connection limit the library takes
  // the listening socket out of its epoll set and puts it back only at the start of a round, while it counts
  // the closed connections at the end of one: without another round at once, a loop whose connections all
  // closed would sleep with nothing left to wake it, and never accept again.
  bool closed_in_round = false;

  // Connections waiting for a whole request, with when that wait began (its start, or its last answer);
  // Clock::time_point::max() while it is answered. An entry leaves before libmicrohttpd closes its socket
  // (the "closed" notification comes first), so under the lock a listed descriptor is still that connection's.
  std::mutex mutex;
  std::unordered_map<mhd::MHD_Connection*, std::pair<int, Clock::time_point>> waiting;
  // Open connections per client address and per IPv6 /64 (client_keys()), and each connection's keys: the
  // limits are counted here, not by libmicrohttpd, whose per-address limit lets one host with a /64 (2^64
  // addresses) hold every connection.
  std::unordered_map<std::string, unsigned> open_per_key;
  std::unordered_map<mhd::MHD_Connection*, ClientKeys> keys_of;

  // Keys differ in length (4 bytes an IPv4 address, 16 an IPv6 one, 8 a /64), so none stands for another; the
  // empty key (a peer not read) counts all such connections as one client.
  void count(const std::string& key, bool opened) {
    if (opened) {
      ++open_per_key[key];
    } else if (auto it = open_per_key.find(key); it != open_per_key.end() && --it->second == 0) {
      open_per_key.erase(it);
    }
  }
  unsigned open_for(const std::string& key) const {
    const auto it = open_per_key.find(key);
    return it == open_per_key.end() ? 0 : it->second;
  }
  std::condition_variable stop_reaper;
  bool stopping = false;
  std::thread reaper;

  // Requests whole and being answered, not yet sent; wait_for_answers() waits for none.
  unsigned requests_open = 0;
  bool draining = false;  // answers then carry "Connection: close": no client comes back to a stopping server
  std::condition_variable request_completed;
  int quiesced_listen_fd = -1;  // the listening socket once stop_accepting() ran; closed after the stop
  // Suspended requests: libmicrohttpd must not be stopped with one (it aborts), so the destructor answers them.
  std::unordered_set<std::shared_ptr<Pending>> parked;
  bool closing = false;  // the destructor runs: no request may be suspended any more

  // The request is whole: the handler may take seconds (a collection), which is no client's slowness (no
  // deadline), and a stop waits for its answer (until request_completed).
  void begin_answer(mhd::MHD_Connection* connection, RequestState& request) {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = waiting.find(connection); it != waiting.end()) {
      it->second.second = Clock::time_point::max();
    }
    if (!request.answering) {
      request.answering = true;
      ++requests_open;
    }
  }

  // False once the server is closing: the caller answers at once instead.
  bool park(const std::shared_ptr<Pending>& pending) {
    std::lock_guard<std::mutex> lock(mutex);
    if (closing) {
      return false;
    }
    parked.insert(pending);
    return true;
  }

  void unpark(const std::shared_ptr<Pending>& pending) {
    std::lock_guard<std::mutex> lock(mutex);
    parked.erase(pending);
  }

  bool is_draining() {
    std::lock_guard<std::mutex> lock(mutex);
    return draining;
  }

  void set_wait_start(mhd::MHD_Connection* connection, Clock::time_point since) {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = waiting.find(connection); it != waiting.end()) {
      it->second.second = since;
    }
  }

  // Shuts down (never closes: the descriptor stays libmicrohttpd's) each connection past its deadline; the
  // server then sees the end of the stream and closes it itself.
  void reap() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stop_reaper.wait_for(lock, std::chrono::seconds(1), [this] { return stopping; })) {
      const auto now = Clock::now();
      for (auto& [connection, entry] : waiting) {
        if (entry.second != Clock::time_point::max() && now - entry.second > k_request_deadline) {
          ::shutdown(entry.first, SHUT_RDWR);
          entry.second = Clock::time_point::max();
        }
      }
    }
  }

  void wake() const { http_detail::wake_loop(wake_fd); }

  void run_loop() {
    const auto& api = mhd::api();
    for (;;) {
      bool quiesce_now = false;
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (quiesce == Quiesce::asked) {
          quiesce_now = true;
        } else if (quit) {
          return;
        }
      }
      if (quiesce_now) {
        const int listen_fd = api.MHD_quiesce_daemon(daemon);
        if (listen_fd >= 0) {
          // Not accepting is not enough: the kernel would still complete handshakes into the backlog, and
          // those clients would wait for nothing. A listening socket shut down stops listening: they are refused.
          ::shutdown(listen_fd, SHUT_RDWR);
        }
        {
          std::lock_guard<std::mutex> lock(mutex);
          quiesced_listen_fd = listen_fd;
          quiesce = listen_fd >= 0 ? Quiesce::done : Quiesce::failed;
        }
        quiesce_answered.notify_all();
        continue;
      }
      // As long as the library's nearest connection timeout, or until a socket, a resume or wake() needs it.
      int timeout_ms = -1;
      unsigned long long library_timeout_ms = 0;
      if (api.MHD_get_timeout(daemon, &library_timeout_ms) == mhd::yes) {
        timeout_ms = static_cast<int>(std::min<unsigned long long>(library_timeout_ms, 60'000));
      }
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (closed_in_round) {  // another round now: the library re-adds the listening socket at its start
          closed_in_round = false;
          timeout_ms = 0;
        }
      }
      pollfd fds[2] = {{epoll_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
      if (::poll(fds, 2, timeout_ms) > 0 && (fds[1].revents & POLLIN) != 0) {
        std::uint64_t wakes = 0;
        [[maybe_unused]] ssize_t read_bytes = ::read(wake_fd, &wakes, sizeof wakes);
      }
      api.MHD_run(daemon);  // after every wait, whatever woke it: timeouts are handled here too
    }
  }
};

namespace {

void notify_connection(void* cls, mhd::MHD_Connection* connection, void** /*socket_context*/, int code) {
  auto& state = *static_cast<HttpServer::State*>(cls);
  std::lock_guard<std::mutex> lock(state.mutex);
  if (code == mhd::k_connection_notify_started) {
    const mhd::ConnectionInfo* info =
        mhd::api().MHD_get_connection_info(connection, mhd::k_connection_info_connection_fd);
    if (info != nullptr) {
      state.waiting[connection] = {info->connect_fd, HttpServer::State::Clock::now()};
      sockaddr_storage peer{};
      socklen_t length = sizeof peer;
      ClientKeys keys;
      if (::getpeername(info->connect_fd, reinterpret_cast<sockaddr*>(&peer), &length) == 0) {  // NOLINT
        keys = client_keys(reinterpret_cast<const sockaddr*>(&peer), length);                  // NOLINT
      }
      state.count(keys.address, true);
      if (!keys.network.empty()) {
        state.count(keys.network, true);
      }
      state.keys_of[connection] = std::move(keys);
    }
  } else if (code == mhd::k_connection_notify_closed) {
    state.waiting.erase(connection);
    if (auto it = state.keys_of.find(connection); it != state.keys_of.end()) {
      state.count(it->second.address, false);
      if (!it->second.network.empty()) {
        state.count(it->second.network, false);
      }
      state.keys_of.erase(it);
    }
    state.closed_in_round = true;
  }
}

// libmicrohttpd asks before it takes a connection in: one more from an address holding
// k_max_connections_per_client, or from an IPv6 /64 holding k_max_connections_per_network, is closed at once.
// The same thread then reports the connection started, so the counts it reads are current.
mhd::Result admit_client(void* cls, const sockaddr* address, socklen_t length) {
  auto& state = *static_cast<HttpServer::State*>(cls);
  const ClientKeys keys = client_keys(address, length);
  std::lock_guard<std::mutex> lock(state.mutex);
  const bool room = state.open_for(keys.address) < k_max_connections_per_client &&
                    (keys.network.empty() || state.open_for(keys.network) < k_max_connections_per_network);
  return room ? mhd::yes : mhd::no;
}

mhd::Result queue_answer(HttpServer::State& state, mhd::MHD_Connection* connection, const HttpResponse& r) {
  const auto& api = mhd::api();
  const std::string& body = r.body ? *r.body : std::string();
  mhd::MHD_Response* response =
      api.MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), mhd::k_respmem_must_copy);
  if (response == nullptr) {
    return mhd::no;
  }
  api.MHD_add_response_header(response, "Content-Type", r.content_type.c_str());
  bool closes = false;
  for (const auto& [name, value] : r.headers) {
    api.MHD_add_response_header(response, name.c_str(), value.c_str());
    closes = closes || name == "Connection";
  }
  if (!closes && state.is_draining()) {  // read after the handler: a stop may have begun while it ran
    api.MHD_add_response_header(response, "Connection", "close");
  }
  mhd::Result queued = api.MHD_queue_response(connection, r.status, response);
  api.MHD_destroy_response(response);
  state.set_wait_start(connection, HttpServer::State::Clock::now());  // the next request on this connection
  return queued;
}

mhd::Result answer(void* cls, mhd::MHD_Connection* connection, const char* url, const char* method,
                   const char* /*version*/, const char* /*upload_data*/, std::size_t* upload_data_size,
                   void** request_state) {
  auto& state = *static_cast<HttpServer::State*>(cls);
  std::string_view m = method != nullptr ? method : "";
  // First call: headers only. A GET is answered on the second call, once the (empty) body is in; anything
  // else is refused at once, so no request body is ever buffered.
  auto* request = static_cast<RequestState*>(*request_state);
  if (request == nullptr) {
    request = new RequestState();  // deleted by request_completed, which libmicrohttpd calls for every request
    *request_state = request;
    if (m == "GET" || m == "HEAD") {
      return mhd::yes;
    }
  }
  if (*upload_data_size != 0 && (m == "GET" || m == "HEAD")) {
    // A GET with a body: the body is ignored, and it is still the client's to send within the deadline.
    *upload_data_size = 0;
    return mhd::yes;
  }
  if (request->pending) {  // resumed: its answer has arrived
    std::shared_ptr<Pending> pending = std::move(request->pending);
    state.unpark(pending);
    mhd::api().MHD_set_connection_option(connection, mhd::k_connection_option_timeout, k_idle_timeout_s);
    HttpResponse r;
    {
      std::lock_guard<std::mutex> lock(pending->mutex);
      r = *pending->response;
    }
    return queue_answer(state, connection, r);
  }
  state.begin_answer(connection, *request);
  auto pending = std::make_shared<Pending>();
  pending->connection = connection;
  pending->wake_fd = state.wake_fd;
  try {
    const HttpServer::HeaderLookup header = [connection](const char* name) -> std::optional<std::string> {
      const char* value = mhd::api().MHD_lookup_connection_value(connection, mhd::k_header_kind, name);
      return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
    };
    state.handler(m, url != nullptr ? url : "", header,
                  [pending](HttpResponse r) { deliver(*pending, std::move(r)); });
  } catch (...) {
    HttpResponse failed;
    failed.status = 500;
    failed.body = std::make_shared<const std::string>("internal error\n");
    deliver(*pending, std::move(failed));
  }
  auto answered_now = [&]() -> std::optional<HttpResponse> {
    std::lock_guard<std::mutex> lock(pending->mutex);
    return pending->response;
  };
  if (auto r = answered_now()) {  // /healthz, /, a reused collection
    return queue_answer(state, connection, *r);
  }
  if (!state.park(pending)) {
    deliver(*pending, stopping_response());
  }
  std::unique_lock<std::mutex> lock(pending->mutex);
  if (pending->response) {  // the reply came meanwhile, or the server is closing
    HttpResponse r = *pending->response;
    lock.unlock();
    state.unpark(pending);
    return queue_answer(state, connection, r);
  }
  // Suspended under the request's lock: a reply from the collector resumes it only once it is suspended.
  // A timeout of its own first: libmicrohttpd then lists the connection with those it calls back before it
  // reads from any socket. Otherwise, once resumed, it would read first, and a client that sent its request
  // and shut down its side (nc -N, socat, some probes) would read as gone and be closed unanswered.
  pending->suspended = true;
  mhd::api().MHD_set_connection_option(connection, mhd::k_connection_option_timeout, k_idle_timeout_s + 1);
  mhd::api().MHD_suspend_connection(connection);
  request->pending = std::move(pending);
  return mhd::yes;
}

void request_completed(void* cls, mhd::MHD_Connection* /*connection*/, void** request_state, int /*code*/) {
  auto& state = *static_cast<HttpServer::State*>(cls);
  if (request_state == nullptr || *request_state == nullptr) {
    return;
  }
  std::unique_ptr<RequestState> request(static_cast<RequestState*>(*request_state));
  *request_state = nullptr;
  if (request->pending) {
    state.unpark(request->pending);
  }
  if (!request->answering) {
    return;  // its request never became whole: nobody waits for it
  }
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    --state.requests_open;
  }
  state.request_completed.notify_all();
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
  // epoll, driven by run_loop(), with suspend/resume (a resume from the collector's thread wakes the loop
  // through wake_fd: in this mode the library has no inter-thread channel of its own). Not poll(): there a
  // resumed connection is read before it is called back, and the timeout set in answer() does not change
  // that (the e2e test of a half-closed scrape fails).
  const auto& api = mhd::api();
  if (api.MHD_is_feature_supported(mhd::k_feature_epoll) != mhd::yes) {
    // Asked first: without epoll the library would refuse to start, and that reads as "port in use".
    return fail("this libmicrohttpd was built without epoll: the exporter needs a Linux build of it (Debian's "
                "libmicrohttpd12 has one)");
  }
  unsigned flags = mhd::k_use_epoll | mhd::k_allow_suspend_resume;
  if (address.ipv6) {
    // [::] means every address, as it does to other exporters: IPv4 clients too (IPV6_V6ONLY off). A specific
    // IPv6 address takes IPv6 alone either way.
    const auto& v6 = *reinterpret_cast<const sockaddr_in6*>(&address.address);
    flags |= IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr) ? mhd::k_use_dual_stack : mhd::k_use_ipv6;
  }
  State& state = *server->m_state;
  errno = 0;
  // The options list is variadic: each value must have exactly the type the library reads.
  state.daemon = api.MHD_start_daemon(
      flags, address.port, &admit_client, &state, &answer, &state,
      mhd::k_option_sock_addr, reinterpret_cast<const sockaddr*>(&address.address),  // NOLINT: sockets idiom
      mhd::k_option_connection_limit, k_max_connections,
      mhd::k_option_connection_timeout, k_idle_timeout_s,
      mhd::k_option_connection_memory_limit, k_connection_memory,
      mhd::k_option_notify_connection, &notify_connection, &state,
      mhd::k_option_notify_completed, &request_completed, &state,
      mhd::k_option_end);
  if (state.daemon == nullptr) {
    return fail(fmt::format("cannot listen on {}: {} (is another process using the port?)", address.text,
                            errno != 0 ? std::strerror(errno) : "libmicrohttpd refused"));
  }
  const mhd::DaemonInfo* info = api.MHD_get_daemon_info(state.daemon, mhd::k_daemon_info_bind_port);
  server->m_port = info != nullptr && info->port != 0 ? info->port : address.port;
  const mhd::DaemonInfo* epoll = api.MHD_get_daemon_info(state.daemon, mhd::k_daemon_info_epoll_fd);
  if (epoll == nullptr || epoll->epoll_fd < 0) {
    return fail("libmicrohttpd gave no epoll descriptor: the exporter needs a Linux build of it");
  }
  state.epoll_fd = epoll->epoll_fd;
  state.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state.wake_fd < 0) {
    return fail(fmt::format("cannot create an eventfd: {}", std::strerror(errno)));
  }
  try {
    AllSignalsBlocked created_blocked;  // signals are the main thread's
    state.loop = std::thread([&state] { state.run_loop(); });
    state.reaper = std::thread([&state] { state.reap(); });
  } catch (const std::system_error& e) {
    return fail(fmt::format("cannot start the server's threads: {}", e.what()));
  }
  return server;
}

Result<void> HttpServer::stop_accepting() {
  State& state = *m_state;
  std::unique_lock<std::mutex> lock(state.mutex);
  state.draining = true;
  if (state.quiesce == State::Quiesce::no) {
    state.quiesce = State::Quiesce::asked;
    state.wake();
  }
  // The loop answers within one round: nothing it runs blocks (handlers park what must wait).
  const bool answered = state.quiesce_answered.wait_for(lock, std::chrono::seconds(5), [&state] {
    return state.quiesce == State::Quiesce::done || state.quiesce == State::Quiesce::failed;
  });
  if (!answered || state.quiesce == State::Quiesce::failed) {
    return fail("libmicrohttpd could not stop accepting connections");
  }
  return {};
}

bool HttpServer::wait_for_answers(std::chrono::milliseconds bound) {
  State& state = *m_state;
  std::unique_lock<std::mutex> lock(state.mutex);
  return state.request_completed.wait_for(lock, bound, [&state] { return state.requests_open == 0; });
}

HttpServer::~HttpServer() {
  if (!m_state) {
    return;
  }
  if (m_state->reaper.joinable()) {
    {
      std::lock_guard<std::mutex> lock(m_state->mutex);
      m_state->stopping = true;
    }
    m_state->stop_reaper.notify_all();
    m_state->reaper.join();
  }
  if (m_state->daemon != nullptr) {
    // libmicrohttpd aborts when stopped with a suspended connection: every parked request is answered (and
    // so resumed) first, and none is parked from now on. A reply that comes later finds its request answered.
    // The "stopping" answers get a moment to go out; any not sent by then is closed unanswered.
    std::vector<std::shared_ptr<Pending>> parked;
    {
      std::lock_guard<std::mutex> lock(m_state->mutex);
      m_state->closing = true;
      parked.assign(m_state->parked.begin(), m_state->parked.end());
    }
    for (const auto& pending : parked) {
      deliver(*pending, stopping_response());
    }
    if (!parked.empty()) {
      wait_for_answers(std::chrono::milliseconds(200));
    }
    if (m_state->loop.joinable()) {
      {
        std::lock_guard<std::mutex> lock(m_state->mutex);
        m_state->quit = true;
      }
      m_state->wake();
      m_state->loop.join();
    }
    mhd::api().MHD_stop_daemon(m_state->daemon);  // closes every connection, on this thread: the loop is gone
  }
  if (m_state->quiesced_listen_fd >= 0) {
    ::close(m_state->quiesced_listen_fd);  // quiesced, the library no longer closes it
  }
  if (m_state->wake_fd >= 0) {
    ::close(m_state->wake_fd);
  }
}

}  // namespace gpuwarm
