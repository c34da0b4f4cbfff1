#pragma once
// Integers read from JSON a user hands over (a replayed watch, a saved baseline). nlohmann converts a float to
// an integer type with a plain cast, undefined when it does not fit (the fuzzers found 8.2e26 and 1e30), so
// every integer field of such a file is read through here.

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

namespace gpuwarm {

// `v` as the integer type T, or a nlohmann type_error naming `what`: a float, or a whole number T cannot hold,
// is malformed input.
template <class T>
T whole_number(const nlohmann::json& v, const char* what) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (std::in_range<T>(u)) {
      return static_cast<T>(u);
    }
  } else if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (std::in_range<T>(i)) {
      return static_cast<T>(i);
    }
  }
  throw nlohmann::json::type_error::create(302, std::string(what) + " is not a whole number in range", &v);
}

// The same for an optional field: `fallback` when absent or null.
template <class T>
T whole_number_or(const nlohmann::json& object, const char* key, T fallback) {
  return object.contains(key) && !object.at(key).is_null() ? whole_number<T>(object.at(key), key) : fallback;
}

}  // namespace gpuwarm
