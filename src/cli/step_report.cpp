#include "cli/step_report.h"

#include <fmt/format.h>

#include "core/strings.h"

namespace gpuwarm {

std::string render_steps_text(const std::vector<StepReport>& steps) {
  std::string out;
  int n = 0;
  for (const auto& s : steps) {
    out += fmt::format("  {}. [{}] {} ({})\n", ++n, s.status, escape_control(s.action), s.why);
    if (!s.path.empty() && s.status == "planned") {
      for (const auto& line : split_lines(s.content)) {
        out += "       | " + escape_control(line) + "\n";
      }
    }
    if (!s.detail.empty() && s.status != "planned") {
      for (const auto& line : split_lines(s.detail)) {
        out += "       " + escape_control(line) + "\n";
      }
    }
  }
  return out;
}

nlohmann::json render_steps_json(const std::vector<StepReport>& steps) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& s : steps) {
    nlohmann::json j = {{"kind", s.kind}, {"action", s.action}, {"why", s.why}, {"status", s.status},
                        {"detail", s.detail}};
    if (!s.path.empty()) {
      j["path"] = s.path;
      j["content"] = s.content;
    }
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace gpuwarm
