#pragma once
// One error model for the whole code base: recoverable failures travel as
// Result<T>; only main() turns an unexpected Error into an exit code.

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace gpuwarm {

struct Error {
  std::string message;
  bool too_large = false;  // a read refused at its bound: callers may say how to stay under it
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> fail(std::string message) {
  return tl::unexpected<Error>(Error{std::move(message)});
}

}  // namespace gpuwarm
