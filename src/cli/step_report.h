#pragma once
// The one way a command that changes the node (`fix`, `reset`) reports its steps: each step's action, why,
// status (planned, done, failed, not-run) and detail, as text and as JSON, so the two never disagree.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpuwarm {

struct StepReport {
  std::string kind;     // "write_file", "stop-daemon", ...
  std::string action;   // exactly what runs: a path, a D-Bus call, a command line
  std::string why;
  std::string status = "planned";
  std::string detail;   // what happened (several lines allowed)
  std::string path;     // a file the step writes, and its whole content (shown while planned)
  std::string content;
};

// "  1. [done] StopUnit(...) (why)" with the planned file's content and the detail indented below.
std::string render_steps_text(const std::vector<StepReport>& steps);
nlohmann::json render_steps_json(const std::vector<StepReport>& steps);

}  // namespace gpuwarm
