#pragma once
// Strings of JSON a user hands over (a saved report, a baseline, a replayed watch), made safe to print.

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/strings.h"

namespace gpuwarm {

// Every string in `j` (keys aside) made safe for a terminal with escape_control, line breaks included: a saved
// report is read once this way, so no field of it can forge a line or an escape sequence in what gpuwarm prints.
inline void escape_strings(nlohmann::json& j) {
  // A worklist, not recursion: a hostile file nests arrays a million deep in a few megabytes.
  std::vector<nlohmann::json*> pending = {&j};
  while (!pending.empty()) {
    nlohmann::json* node = pending.back();
    pending.pop_back();
    if (node->is_string()) {
      *node = escape_control(node->get_ref<const std::string&>());
    } else if (node->is_structured()) {
      for (auto& item : *node) {
        pending.push_back(&item);
      }
    }
  }
}

// A value of such a file quoted in an error message: a number, true/false/null or a string as written (a string
// escaped and cut to 40 bytes), a list or an object only named. Never dump() one whole: the text is unbounded and
// dump() recurses, so a file nested 100000 deep ends the process.
inline std::string describe_value(const nlohmann::json& j) {
  if (j.is_array()) {
    return "a list";
  }
  if (j.is_object()) {
    return "an object";
  }
  if (j.is_string()) {
    const auto& text = j.get_ref<const std::string&>();
    return "\"" + escape_control(std::string_view(text).substr(0, 40)) + (text.size() > 40 ? "...\"" : "\"");
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);  // a number, a boolean, null
}

}  // namespace gpuwarm
