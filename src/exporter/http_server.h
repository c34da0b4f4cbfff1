#pragma once
// The exporter's HTTP side: a listen address parsed without name resolution, the routes (pure), and a
// small server over libmicrohttpd with every request bounded (connections, per-client connections,
// header memory, idle time, the time to send a whole request) and only GET/HEAD answered. One thread polls
// every connection; an answer that must wait (a scrape for a collection) parks its connection, which then
// costs a descriptor, not a thread.

#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace gpuwarm {

constexpr const char* k_default_listen = "127.0.0.1:9839";

struct ListenAddress {
  std::string text;  // as the user wrote it, normalized ("127.0.0.1:9839", "[::1]:9839")
  sockaddr_storage address{};
  socklen_t length = 0;
  bool ipv6 = false;
  std::uint16_t port = 0;
};

// "ADDR:PORT", "[IPv6]:PORT" or "PORT" (on 127.0.0.1). Numeric addresses only: an exporter running as
// root does not resolve names to decide where it listens. Port 0 picks a free port (tests).
Result<ListenAddress> parse_listen_address(std::string_view text);

// What the connection limits count a connection against, as bytes for map keys: its client's address (an
// IPv4-mapped IPv6 address as its IPv4), and for IPv6 also the address's /64. A /64 is one link's prefix
// (SLAAC), shared by the hosts on it, while one host may connect from as many of its addresses as it likes:
// each address has a small limit, each /64 a larger one. Empty for another family (network: also for IPv4).
struct ClientKeys {
  std::string address;
  std::string network;
};
ClientKeys client_keys(const sockaddr* address, socklen_t length);

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::shared_ptr<const std::string> body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// The exporter's routes, answered at once: /healthz → 200 while `healthy()` (NVML answers) else 503, for
// supervisors without a watchdog (a Kubernetes liveness probe), / → a pointer to /metrics, anything else
// 404, other methods 405 with Allow. GET/HEAD /metrics → nothing: its answer is metrics_response() of a
// collection, once one is ready.
std::optional<HttpResponse> route(std::string_view method, std::string_view url,
                                  const std::function<bool()>& healthy = [] { return true; });
// How long a scrape may wait for a collection, from Prometheus' X-Prometheus-Scrape-Timeout-Seconds (decimal
// seconds): the timeout less a tenth of it, at most 1 s, for the answer's way back. nullopt where the header is
// absent or not a number of seconds in (0, 3600]: such a client (curl) waits for the collection.
std::optional<std::chrono::milliseconds> scrape_answer_within(const std::optional<std::string>& timeout_header);
// A collection's text as /metrics' answer; null (the collection failed) → 500.
HttpResponse metrics_response(std::shared_ptr<const std::string> body);

class HttpServer {
 public:
  // Answers a request: at once, or later from any thread. Only the first call counts.
  using Reply = std::function<void(HttpResponse)>;
  // A request header's value (names match in any case), while the handler runs; nullopt when absent.
  using HeaderLookup = std::function<std::optional<std::string>(const char* name)>;
  // Runs on the server's polling thread, so it must not block: a slow answer is given later through `reply`.
  using Handler =
      std::function<void(std::string_view method, std::string_view url, const HeaderLookup& header, Reply reply)>;

  // Listening when it returns.
  static Result<std::unique_ptr<HttpServer>> start(const ListenAddress& address, Handler handler);
  // For a stop that answers the scrapes in flight: new connections are refused from now on, and every
  // answer closes its connection (none comes back to a server about to go).
  Result<void> stop_accepting();
  // Waits, at most `bound`, until every request that arrived whole has been answered; false when some
  // were not. A request still arriving (its headers incomplete) is not waited for.
  bool wait_for_answers(std::chrono::milliseconds bound);
  // Closes every connection. A request still waiting for its answer is answered 503 ("stopping"), sent if
  // it goes out within 200 ms; otherwise its connection is closed unanswered.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  std::uint16_t port() const { return m_port; }  // the bound port (the chosen one for port 0)

  struct State;  // defined in http_server.cpp, where libmicrohttpd's callbacks reach it

 private:
  HttpServer() = default;
  std::unique_ptr<State> m_state;
  std::uint16_t m_port = 0;
};

}  // namespace gpuwarm
