#pragma once
// One collection shared by every scrape that arrives while it runs, and reused for scrapes within
// --min-interval of its start: a scrape storm (several Prometheus servers, a curl loop) never turns
// into a collection storm, and NVML is touched only when someone asks. Collections run on one thread of
// the cache's own, so a scrape that waits for one costs a callback, not a thread. A scrape that must be
// answered by a time (Prometheus' scrape timeout) and would not be gets the last good collection then: on a
// node whose collection outlasts the timeout (slow attaches of de-initialized GPUs) every scrape would
// otherwise give up, and each collection be thrown away unread.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/signal_shield.h"

namespace gpuwarm {

class ScrapeCache {
 public:
  using Clock = std::chrono::steady_clock;
  using Body = std::shared_ptr<const std::string>;
  using Ready = std::function<void(Body)>;  // must not throw

  // `collect` runs on the cache's thread, one at a time. `now` is injectable for tests.
  ScrapeCache(std::function<std::string()> collect, std::chrono::duration<double> min_interval,
              std::function<Clock::time_point()> now = &Clock::now)
      : m_collect(std::move(collect)),
        m_min_interval(std::chrono::duration_cast<Clock::duration>(min_interval)),
        m_now(std::move(now)) {
    // Prometheus scrapes on a fixed period: a scrape one period later can arrive a hair early. Without
    // this slack, --min-interval equal to the scrape interval would reuse every other collection.
    m_reuse_below = m_min_interval - std::min<Clock::duration>(std::chrono::seconds(1), m_min_interval / 10);
    AllSignalsBlocked created_blocked;  // signals are the main thread's
    m_collector = std::thread([this] { run(); });
    m_late_answers = std::thread([this] { answer_late_scrapes(); });
  }

  // Waits for a collection in flight (bounded by the collection's own NVML deadline); scrapes still waiting
  // then get null.
  ~ScrapeCache() {
    {
      std::lock_guard<std::mutex> lock(m_mutex);
      m_stopping = true;
    }
    m_wake.notify_all();
    m_deadline_wake.notify_all();
    m_collector.join();
    m_late_answers.join();
  }
  ScrapeCache(const ScrapeCache&) = delete;
  ScrapeCache& operator=(const ScrapeCache&) = delete;

  // Calls `ready` with the newest collection's text (null when the collection threw): at once, on this
  // thread, when one within the reuse window exists; otherwise from the cache's thread when the collection
  // running now, or the one this call starts, ends.
  // `answer_by`: when no collection has ended by then, the last good one (if there is one) is the answer,
  // from the cache's second thread.
  void get_async(Ready ready, std::optional<Clock::time_point> answer_by = std::nullopt) {
    std::unique_lock<std::mutex> lock(m_mutex);
    if (!m_in_flight && m_generation > 0 && m_now() - m_started < m_reuse_below) {
      Body body = m_body;
      lock.unlock();
      ready(std::move(body));
      return;
    }
    if (m_stopping) {
      lock.unlock();
      ready(nullptr);
      return;
    }
    m_waiting.push_back(Waiter{std::move(ready), answer_by});
    m_wake.notify_all();
    if (answer_by) {
      m_deadline_wake.notify_all();
    }
  }

  // The same, waiting on this thread.
  Body get() {
    auto promise = std::make_shared<std::promise<Body>>();
    auto answer = promise->get_future();
    get_async([promise](Body body) { promise->set_value(std::move(body)); });
    return answer.get();
  }

  unsigned long collections() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_collections;
  }
  // How many scrapes were answered with an earlier collection at their answer_by.
  unsigned long late_answers() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_late_answered;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(m_mutex);
    for (;;) {
      m_wake.wait(lock, [this] { return m_stopping || !m_waiting.empty(); });
      if (m_stopping) {
        break;
      }
      m_in_flight = true;
      m_started = m_now();
      lock.unlock();
      Body body;
      try {
        body = std::make_shared<const std::string>(m_collect());
      } catch (...) {
        body = nullptr;  // answered as 500; the next scrape tries again
      }
      lock.lock();
      m_body = body;
      if (!body) {
        m_started = Clock::time_point{};  // never reuse a failure
      } else {
        m_last_good = body;
      }
      ++m_generation;
      ++m_collections;
      m_in_flight = false;
      // Everyone who asked while it ran, or before it started, and was not answered late, gets this one.
      std::vector<Waiter> answered = std::move(m_waiting);
      m_waiting.clear();
      lock.unlock();
      for (auto& waiter : answered) {
        waiter.ready(body);
      }
      lock.lock();
    }
    std::vector<Waiter> unanswered = std::move(m_waiting);
    m_waiting.clear();
    lock.unlock();
    for (auto& waiter : unanswered) {
      waiter.ready(nullptr);
    }
  }

  // The second thread: a scrape still waiting at its answer_by, while a collection runs, gets the last good
  // collection, where there is one. Only while one runs: a scrape taken off the queue before the collector saw it
  // would start no collection at all. Looks every 20 ms while such a scrape waits (`now` may be a test's clock),
  // else sleeps until one comes.
  void answer_late_scrapes() {
    std::unique_lock<std::mutex> lock(m_mutex);
    while (!m_stopping) {
      const bool any_deadline = std::any_of(m_waiting.begin(), m_waiting.end(),
                                            [](const Waiter& w) { return w.answer_by.has_value(); });
      if (!any_deadline || !m_last_good || !m_in_flight) {
        m_deadline_wake.wait_for(lock, std::chrono::milliseconds(any_deadline ? 20 : 1000));
        continue;
      }
      const auto now = m_now();
      std::vector<Waiter> late;
      std::erase_if(m_waiting, [&](Waiter& w) {
        if (!w.answer_by || *w.answer_by > now) {
          return false;
        }
        late.push_back(std::move(w));
        return true;
      });
      if (late.empty()) {
        m_deadline_wake.wait_for(lock, std::chrono::milliseconds(20));
        continue;
      }
      Body body = m_last_good;
      m_late_answered += late.size();
      lock.unlock();
      for (auto& waiter : late) {
        waiter.ready(body);
      }
      lock.lock();
    }
  }

  std::function<std::string()> m_collect;
  Clock::duration m_min_interval;
  Clock::duration m_reuse_below;
  std::function<Clock::time_point()> m_now;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  bool m_in_flight = false;
  bool m_stopping = false;
  unsigned long m_generation = 0;
  unsigned long m_collections = 0;
  Clock::time_point m_started{};
  struct Waiter {
    Ready ready;
    std::optional<Clock::time_point> answer_by;
  };
  std::condition_variable m_deadline_wake;
  unsigned long m_late_answered = 0;
  Body m_body;
  Body m_last_good;  // the newest collection that did not fail
  std::vector<Waiter> m_waiting;
  std::thread m_collector;     // last: started once every member above exists
  std::thread m_late_answers;
};

}  // namespace gpuwarm
