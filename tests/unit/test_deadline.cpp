// BackgroundCall: NVML calls that may hang run on a thread of their own, waited for up to a deadline.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/deadline.h"

namespace gpuwarm {
namespace {

using namespace std::chrono_literals;

// Set when the calling thread's thread-local objects are destroyed, that is, as the thread ends. Slow on
// purpose: a thread still ending when its answer is handed over would be caught here.
struct SlowThreadEnd {
  std::shared_ptr<std::atomic<bool>> ended;
  ~SlowThreadEnd() {
    std::this_thread::sleep_for(100ms);
    ended->store(true);
  }
};

// glibc frees dlerror's message as the thread ends. CI's leak check caught a process that exited while a
// collected call's thread was still ending: the thread must have ended by the time its answer is used.
TEST(BackgroundCall, ACollectedCallsThreadHasEnded) {
  auto ended = std::make_shared<std::atomic<bool>>(false);
  const int before = abandoned_calls().load();
  auto result = run_with_deadline<int>(10s, [ended](Progress&) {
    thread_local SlowThreadEnd on_end{nullptr};
    on_end.ended = ended;
    return 7;
  });
  ASSERT_TRUE(result.value.has_value()) << result.stuck_at;
  EXPECT_EQ(*result.value, 7);
  EXPECT_TRUE(ended->load()) << "the call's thread was still ending after its answer was collected";
  EXPECT_EQ(abandoned_calls().load(), before);
}

// Waits (5 s at most) until `flag` is set.
bool wait_for(const std::atomic<bool>& flag) {
  for (int i = 0; i < 5000 && !flag.load(); ++i) {
    std::this_thread::sleep_for(1ms);
  }
  return flag.load();
}

// A call held in NVML until the test releases it; `ended` is set as its thread ends (after the call's
// closure and the thread's state are freed), so no thread of this binary outlives its test.
struct HeldCall {
  std::shared_ptr<std::atomic<bool>> started = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> release = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> ended = std::make_shared<std::atomic<bool>>(false);

  auto fn() const {
    return [started = started, release = release, ended = ended](Progress& progress) {
      thread_local SlowThreadEnd on_end{nullptr};
      on_end.ended = ended;
      progress.set("GPU 0: nvmlDeviceGetHandleByIndex_v2");
      started->store(true);
      while (!release->load()) {
        std::this_thread::sleep_for(1ms);
      }
      return 1;
    };
  }
};

TEST(BackgroundCall, ACallPastItsDeadlineIsAbandonedAndSaysWhereItWas) {
  HeldCall held;
  const int before = abandoned_calls().load();
  BackgroundCall<int> call(held.fn());
  ASSERT_TRUE(wait_for(*held.started));
  auto result = call.wait_until(std::chrono::steady_clock::now() + 50ms);
  EXPECT_FALSE(result.value.has_value());
  EXPECT_EQ(result.stuck_at, "GPU 0: nvmlDeviceGetHandleByIndex_v2");
  EXPECT_EQ(abandoned_calls().load(), before + 1);
  // Asked again, it is still the same abandoned call: not a failure, and not counted twice.
  auto again = call.wait_until(std::chrono::steady_clock::now());
  EXPECT_FALSE(again.value.has_value());
  EXPECT_EQ(again.stuck_at, "GPU 0: nvmlDeviceGetHandleByIndex_v2");
  EXPECT_EQ(abandoned_calls().load(), before + 1);
  abandoned_calls() = before;  // this process goes on: the abandoned thread is released below
  held.release->store(true);
  EXPECT_TRUE(wait_for(*held.ended));
}

TEST(BackgroundCall, ACallThatThrowsIsAFailureNotACrash) {
  const int before = abandoned_calls().load();
  auto result = run_with_deadline<int>(10s, [](Progress&) -> int { throw std::runtime_error("no symbol"); });
  EXPECT_FALSE(result.value.has_value());
  EXPECT_EQ(result.stuck_at, "failed: no symbol");
  EXPECT_EQ(abandoned_calls().load(), before);
}

// A call dropped without being waited for (the caller threw) is joined when it ended, abandoned when not.
TEST(BackgroundCall, ADroppedCallIsJoinedOnlyWhenItEnded) {
  const int before = abandoned_calls().load();
  auto ended = std::make_shared<std::atomic<bool>>(false);
  {
    BackgroundCall<int> quick([ended](Progress&) {
      thread_local SlowThreadEnd on_end{nullptr};
      on_end.ended = ended;
      return 1;
    });
    while (!quick.finished_by(std::chrono::steady_clock::now() + 10ms)) {
    }
  }
  EXPECT_TRUE(ended->load()) << "the dropped call's thread was not joined";
  EXPECT_EQ(abandoned_calls().load(), before);
  HeldCall held;
  {
    BackgroundCall<int> stuck(held.fn());
    ASSERT_TRUE(wait_for(*held.started));
  }
  EXPECT_EQ(abandoned_calls().load(), before + 1);
  abandoned_calls() = before;
  held.release->store(true);
  EXPECT_TRUE(wait_for(*held.ended));
}

}  // namespace
}  // namespace gpuwarm
