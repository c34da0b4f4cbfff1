#pragma once
// Table-driven rule tests: each case breaks a healthy snapshot in one way and
// lists the findings (rule ID and GPU) one rule must produce.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "rules/rule.h"
#include "snapshot_builder.h"

namespace gpuwarm::test {

struct Want {
  std::optional<unsigned> gpu;
  bool operator==(const Want&) const = default;
};

struct RuleCase {
  std::string name;
  std::function<void(Snapshot&)> mutate;
  std::vector<Want> want;  // findings of the rule under test, in order
};

inline void PrintTo(const RuleCase& c, std::ostream* os) { *os << c.name; }

// Runs `rule` on the mutated snapshot and compares the findings' GPUs.
inline void expect_rule(const char* rule_id, const RuleCase& c) {
  const RuleInfo* rule = find_rule(rule_id);
  ASSERT_NE(rule, nullptr) << rule_id;
  Snapshot s = healthy_snapshot();
  c.mutate(s);
  auto found = rule->check(s);
  std::vector<Want> got;
  for (const auto& f : found) {
    got.push_back({f.gpu});
    EXPECT_FALSE(f.message.empty()) << c.name;
    EXPECT_FALSE(f.next_step.empty()) << c.name;
  }
  ASSERT_EQ(got.size(), c.want.size()) << c.name << ": " << (found.empty() ? "" : found.front().message);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].gpu, c.want[i].gpu) << c.name << " finding " << i;
  }
}

inline const std::optional<unsigned> k_node = std::nullopt;

}  // namespace gpuwarm::test
