#pragma once
// A fact about the node that may be unknown. When it is, `missing` says why
// ("NOT_SUPPORTED", "needs root", "symbol absent in this driver"), because
// "we could not look" and "it is off" must never read the same.

#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace gpuwarm {

// Why a fact read back from a snapshot is unknown when the snapshot has no value for it.
inline constexpr std::string_view k_not_in_snapshot = "not in this snapshot (saved by an older gpuwarm, or edited)";

template <class T>
struct Fact {
  std::optional<T> value;
  std::string missing;

  static Fact known(T v) { return Fact{std::move(v), {}}; }
  static Fact unknown(std::string why) { return Fact{std::nullopt, std::move(why)}; }

  bool has() const { return value.has_value(); }
  const T& operator*() const { return *value; }
  const T* operator->() const { return &*value; }
  T value_or(T fallback) const { return value.value_or(std::move(fallback)); }
  // True only when known and equal: an unknown fact never matches.
  bool is(const T& v) const { return value.has_value() && *value == v; }
};

}  // namespace gpuwarm
