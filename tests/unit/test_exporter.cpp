// The exporter's pure parts: how scrapes share and reuse collections (a clock of the test's own), the
// listen-address grammar, the routes, and the sd_notify datagrams on a socket of the test's own.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <optional>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "exporter/http_server.h"
#include "exporter/scrape_cache.h"
#include "systemd/notify.h"

namespace gpuwarm::test {
namespace {

using namespace std::chrono_literals;

struct FakeClock {
  ScrapeCache::Clock::time_point now{std::chrono::hours(1)};
};

TEST(ScrapeCache, reuses_a_collection_within_the_interval_less_scrape_jitter) {
  FakeClock clock;
  int collected = 0;
  ScrapeCache cache([&] { return "run " + std::to_string(++collected); }, 15s, [&] { return clock.now; });
  EXPECT_EQ(*cache.get(), "run 1");
  clock.now += 10s;
  EXPECT_EQ(*cache.get(), "run 1");  // 10 s after its start: reused
  clock.now += 4s + 100ms;
  EXPECT_EQ(*cache.get(), "run 2");  // 14.1 s: a 15 s scrape that came a hair early collects anew
  clock.now += 13s;
  EXPECT_EQ(*cache.get(), "run 2");
  EXPECT_EQ(cache.collections(), 2u);
}

TEST(ScrapeCache, zero_interval_collects_every_time) {
  FakeClock clock;
  int collected = 0;
  ScrapeCache cache([&] { return std::to_string(++collected); }, 0s, [&] { return clock.now; });
  EXPECT_EQ(*cache.get(), "1");
  EXPECT_EQ(*cache.get(), "2");
}

TEST(ScrapeCache, a_failed_collection_is_null_and_never_reused) {
  FakeClock clock;
  int calls = 0;
  ScrapeCache cache(
      [&]() -> std::string {
        if (++calls == 1) {
          throw std::runtime_error("boom");
        }
        return "ok";
      },
      60s, [&] { return clock.now; });
  EXPECT_EQ(cache.get(), nullptr);
  EXPECT_EQ(*cache.get(), "ok");
}

TEST(ScrapeCache, concurrent_scrapes_share_the_collection_in_flight) {
  std::atomic<int> collected{0};
  std::atomic<bool> release{false};
  ScrapeCache cache(
      [&] {
        ++collected;
        while (!release) {
          std::this_thread::sleep_for(1ms);
        }
        return std::string("shared");
      },
      0s);  // even with no reuse window, scrapes that arrive during a collection wait for it
  std::vector<std::thread> scrapers;
  std::atomic<int> answered{0};
  for (int i = 0; i < 8; ++i) {
    scrapers.emplace_back([&] {
      if (*cache.get() == "shared") {
        ++answered;
      }
    });
  }
  std::this_thread::sleep_for(50ms);
  release = true;
  for (auto& t : scrapers) {
    t.join();
  }
  EXPECT_EQ(answered.load(), 8);
  // Scrapers that started after the first collection finished may have started one more; never eight.
  EXPECT_LE(collected.load(), 2);
}

TEST(ScrapeCache, a_reused_collection_answers_on_the_callers_thread_and_a_new_one_on_the_caches) {
  FakeClock clock;
  ScrapeCache cache([] { return std::string("text"); }, 60s, [&] { return clock.now; });
  const auto caller = std::this_thread::get_id();
  std::promise<std::thread::id> first;
  cache.get_async([&](ScrapeCache::Body body) {
    EXPECT_EQ(*body, "text");
    first.set_value(std::this_thread::get_id());
  });
  EXPECT_NE(first.get_future().get(), caller);  // collected: the scrape waited without a thread of its own
  std::optional<std::thread::id> second;
  cache.get_async([&](ScrapeCache::Body body) {
    EXPECT_EQ(*body, "text");
    second = std::this_thread::get_id();
  });
  ASSERT_TRUE(second);  // reused: answered before get_async returned
  EXPECT_EQ(*second, caller);
  EXPECT_EQ(cache.collections(), 1u);
}

// A scrape that must be answered by a time (Prometheus' timeout) gets the last good collection then, while a slower
// one runs on; with no earlier collection it waits for the one in flight, and a scrape without a time always waits
// (review-s57 M1: a collection longer than the timeout was never served at all).
TEST(ScrapeCache, a_scrape_that_must_answer_by_a_time_gets_the_last_good_collection_then) {
  std::atomic<long long> now_ms{3'600'000};
  auto now = [&] { return ScrapeCache::Clock::time_point(std::chrono::milliseconds(now_ms.load())); };
  std::atomic<int> collected{0};
  std::atomic<bool> release{false};
  ScrapeCache cache(
      [&] {
        const int n = ++collected;
        while (!release) {
          std::this_thread::sleep_for(1ms);
        }
        return "run " + std::to_string(n);
      },
      0s, now);
  auto ready = [](std::future<std::string>& f) { return f.wait_for(150ms) == std::future_status::ready; };

  std::promise<std::string> first;
  auto first_answer = first.get_future();
  cache.get_async([&](ScrapeCache::Body body) { first.set_value(body ? *body : "null"); }, now());
  EXPECT_FALSE(ready(first_answer)) << "past its time, but there is no earlier collection to give";
  release = true;
  EXPECT_EQ(first_answer.get(), "run 1");

  release = false;
  std::promise<std::string> second;
  auto second_answer = second.get_future();
  cache.get_async([&](ScrapeCache::Body body) { second.set_value(body ? *body : "null"); }, now() + 5s);
  std::promise<std::string> third;  // no time to answer by: waits for the collection
  auto third_answer = third.get_future();
  cache.get_async([&](ScrapeCache::Body body) { third.set_value(body ? *body : "null"); });
  EXPECT_FALSE(ready(second_answer)) << "answered before its time";
  now_ms += 5000;
  ASSERT_TRUE(ready(second_answer));
  EXPECT_EQ(second_answer.get(), "run 1");
  EXPECT_EQ(cache.late_answers(), 1u);
  EXPECT_FALSE(ready(third_answer));
  release = true;
  EXPECT_EQ(third_answer.get(), "run 2");
  EXPECT_EQ(cache.collections(), 2u);
}

// Prometheus' X-Prometheus-Scrape-Timeout-Seconds, less a tenth (at most 1 s) for the way back.
TEST(ScrapeAnswerWithin, from_prometheus_timeout_header) {
  const std::vector<std::pair<std::optional<std::string>, std::optional<long long>>> cases = {
      {std::nullopt, std::nullopt}, {"10", 9000},   {"9.5", 8550},     {" 2 ", 1800},  {"120", 119000},
      {"0", std::nullopt},          {"-3", std::nullopt}, {"abc", std::nullopt}, {"10s", std::nullopt},
      {"3601", std::nullopt},       {"nan", std::nullopt}, {"", std::nullopt},
  };
  for (const auto& [header, ms] : cases) {
    const auto within = scrape_answer_within(header);
    EXPECT_EQ(within ? std::optional<long long>(within->count()) : std::nullopt, ms) << header.value_or("(none)");
  }
}

TEST(ScrapeCache, destroying_it_waits_for_the_collection_in_flight_and_answers_every_waiting_scrape) {
  std::atomic<bool> release{false};
  std::atomic<bool> started{false};
  std::vector<std::string> answers;  // written on the cache's thread, read after it was joined
  std::thread releaser;
  {
    ScrapeCache cache(
        [&] {
          started = true;
          while (!release) {
            std::this_thread::sleep_for(1ms);
          }
          return std::string("late");
        },
        0s);
    for (int i = 0; i < 3; ++i) {
      cache.get_async([&](ScrapeCache::Body body) { answers.push_back(body ? *body : "null"); });
    }
    while (!started) {
      std::this_thread::sleep_for(1ms);
    }
    releaser = std::thread([&] {
      std::this_thread::sleep_for(50ms);
      release = true;
    });
  }
  releaser.join();
  EXPECT_EQ(answers, (std::vector<std::string>{"late", "late", "late"}));
}

TEST(ListenAddress, accepted_forms) {
  struct Case {
    const char* in;
    const char* text;
    bool ipv6;
    unsigned port;
  };
  for (const Case& c : {Case{"127.0.0.1:9839", "127.0.0.1:9839", false, 9839}, Case{"9839", "127.0.0.1:9839", false, 9839},
                        Case{"0.0.0.0:80", "0.0.0.0:80", false, 80}, Case{"[::1]:9839", "[::1]:9839", true, 9839},
                        Case{"127.0.0.1:0", "127.0.0.1:0", false, 0}}) {
    auto a = parse_listen_address(c.in);
    ASSERT_TRUE(a) << c.in << ": " << a.error().message;
    EXPECT_EQ(a->text, c.text) << c.in;
    EXPECT_EQ(a->ipv6, c.ipv6) << c.in;
    EXPECT_EQ(a->port, c.port) << c.in;
  }
}

TEST(ListenAddress, refused_forms_say_why) {
  struct Case {
    const char* in;
    const char* says;
  };
  for (const Case& c : {Case{"localhost:9839", "names are not resolved"}, Case{"1.2.3.4:65536", "0 to 65535"},
                        Case{"1.2.3.4:", "0 to 65535"}, Case{"1.2.3.4:9x", "0 to 65535"}, Case{"::1:9839", "brackets"},
                        Case{"[::1]", "ADDR:PORT"}, Case{"[::1]9839", "ADDR:PORT"}, Case{"[nope]:1", "not an IPv6"},
                        Case{"", "0 to 65535"}, Case{"a\x1b[31m:1", "\\x1b"}}) {
    auto a = parse_listen_address(c.in);
    ASSERT_FALSE(a) << c.in;
    EXPECT_NE(a.error().message.find(c.says), std::string::npos) << c.in << ": " << a.error().message;
  }
}

// The connection limits' keys: an address (an IPv4-mapped one as its IPv4), and an IPv6 address's /64.
TEST(ClientKeys, table) {
  auto keys = [](const char* text) {
    sockaddr_storage address{};
    if (auto* in4 = reinterpret_cast<sockaddr_in*>(&address); ::inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
      in4->sin_family = AF_INET;
      return client_keys(reinterpret_cast<const sockaddr*>(&address), sizeof(sockaddr_in));
    }
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
    EXPECT_EQ(::inet_pton(AF_INET6, text, &in6->sin6_addr), 1) << text;
    in6->sin6_family = AF_INET6;
    return client_keys(reinterpret_cast<const sockaddr*>(&address), sizeof(sockaddr_in6));
  };
  struct Case {
    const char* a;
    const char* b;
    bool same_address;
    bool same_network;  // both IPv6 outside ::ffff:0:0/96, in one /64
  };
  for (const Case& c : {Case{"127.0.0.1", "127.0.0.1", true, false}, Case{"127.0.0.1", "127.0.0.2", false, false},
                        Case{"2001:db8:1:2::1", "2001:db8:1:2::1", true, true},
                        Case{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe", false, true},
                        Case{"2001:db8:1:2::1", "2001:db8:1:3::1", false, false},
                        Case{"::ffff:10.0.0.7", "10.0.0.7", true, false},
                        Case{"::ffff:10.0.0.7", "::ffff:10.0.0.8", false, false},
                        // A key of one kind never equals one of another, whatever the bytes.
                        Case{"0.0.0.0", "::", false, false}}) {
    const ClientKeys a = keys(c.a);
    const ClientKeys b = keys(c.b);
    EXPECT_FALSE(a.address.empty()) << c.a;
    EXPECT_EQ(a.address == b.address, c.same_address) << c.a << " and " << c.b;
    EXPECT_EQ(!a.network.empty() && a.network == b.network, c.same_network) << c.a << " and " << c.b;
    EXPECT_NE(a.address, b.network) << c.a << " and " << c.b;
  }
  EXPECT_EQ(keys("10.0.0.7").network, "");  // IPv4: the address alone
  sockaddr_un local{};
  local.sun_family = AF_UNIX;
  EXPECT_EQ(client_keys(reinterpret_cast<const sockaddr*>(&local), sizeof local).address, "");
  EXPECT_EQ(client_keys(nullptr, 0).address, "");
  sockaddr_in short_one{};
  short_one.sin_family = AF_INET;
  EXPECT_EQ(client_keys(reinterpret_cast<const sockaddr*>(&short_one), 2).address, "");
}

TEST(Routes, table) {
  struct Case {
    const char* method;
    const char* url;
    bool waits_for_metrics;
    unsigned status;
    const char* content_type_starts;
  };
  for (const Case& c : {Case{"GET", "/metrics", true, 0, ""}, Case{"HEAD", "/metrics", true, 0, ""},
                        Case{"GET", "/", false, 200, "text/html"}, Case{"GET", "/healthz", false, 200, "text/plain"},
                        Case{"GET", "/metrics/x", false, 404, "text/plain"},
                        Case{"POST", "/metrics", false, 405, "text/plain"}, Case{"DELETE", "/", false, 405, "text/plain"}}) {
    std::optional<HttpResponse> r = route(c.method, c.url);
    ASSERT_EQ(!r.has_value(), c.waits_for_metrics) << c.method << " " << c.url;
    if (!r) {
      continue;
    }
    EXPECT_EQ(r->status, c.status) << c.method << " " << c.url;
    EXPECT_EQ(r->content_type.rfind(c.content_type_starts, 0), 0u) << c.method << " " << c.url;
    ASSERT_TRUE(r->body);
  }
  std::optional<HttpResponse> refused = route("PUT", "/metrics");
  ASSERT_TRUE(refused);
  ASSERT_EQ(refused->headers.size(), 1u);
  EXPECT_EQ(refused->headers[0], (std::pair<std::string, std::string>{"Allow", "GET, HEAD"}));
  // /healthz: what a Kubernetes liveness probe asks in place of systemd's watchdog.
  EXPECT_EQ(route("GET", "/healthz", [] { return false; })->status, 503u);

  HttpResponse collected = metrics_response(std::make_shared<const std::string>("gpuwarm_build_info 1\n"));
  EXPECT_EQ(collected.status, 200u);
  EXPECT_EQ(collected.content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(*collected.body, "gpuwarm_build_info 1\n");
  HttpResponse failed = metrics_response(nullptr);
  EXPECT_EQ(failed.status, 500u);
  ASSERT_TRUE(failed.body);
}

class Notify : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() / ("gpuwarm-notify-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    path = (dir / "sock").string();
    fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);  // NOLINT
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  void TearDown() override {
    ::close(fd);
    std::filesystem::remove_all(dir);
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
  }
  std::string receive() {
    char buf[512];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
  std::filesystem::path dir;
  std::string path;
  int fd = -1;
};

TEST_F(Notify, sends_datagrams_and_halves_the_watchdog) {
  ::setenv("NOTIFY_SOCKET", path.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "30000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  ServiceNotifier n = ServiceNotifier::from_environment();
  EXPECT_TRUE(n.enabled());
  ASSERT_TRUE(n.watchdog_ping_interval());
  EXPECT_EQ(*n.watchdog_ping_interval(), std::chrono::seconds(15));
  EXPECT_EQ(std::getenv("NOTIFY_SOCKET"), nullptr);  // children do not inherit it
  EXPECT_TRUE(n.send("READY=1\nSTATUS=serving"));
  EXPECT_EQ(receive(), "READY=1\nSTATUS=serving");
  EXPECT_TRUE(n.send("WATCHDOG=1"));
  EXPECT_EQ(receive(), "WATCHDOG=1");
}

TEST_F(Notify, watchdog_of_another_pid_and_no_socket) {
  ::setenv("WATCHDOG_USEC", "30000000", 1);
  ::setenv("WATCHDOG_PID", "1", 1);
  ServiceNotifier n = ServiceNotifier::from_environment();
  EXPECT_FALSE(n.enabled());
  EXPECT_FALSE(n.watchdog_ping_interval());
  EXPECT_FALSE(n.send("READY=1"));
  ::setenv("NOTIFY_SOCKET", "relative/path", 1);
  EXPECT_FALSE(ServiceNotifier::from_environment().enabled());
}

}  // namespace
}  // namespace gpuwarm::test
