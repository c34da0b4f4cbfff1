#pragma once
// The subcommand table. Each command lives in its own cmd_<name>.cpp and only
// registers its options here; adding a command touches no other command.

#include <functional>
#include <span>
#include <string_view>

#include <CLI/CLI.hpp>

#include "output/style.h"

namespace gpuwarm {

struct GlobalOptions {
  ColorMode color = ColorMode::automatic;
};

// Adds the command's options to `sub` and returns what runs it; the returned
// function yields the process exit code.
using CommandSetup = std::function<std::function<int()>(CLI::App& sub, const GlobalOptions& global)>;

struct CommandSpec {
  const char* name;
  const char* summary;
  CommandSetup setup;
  const char* json_kind;  // the "kind" of its --json report; nullptr for a command without --json
  // The shape of its own failure documents, which a usage error's document takes: their schema version, and
  // whether they list GPUs (probe's and watch's always carry "gpus", an empty list when none was reached).
  int json_schema_version = 1;
  bool json_lists_gpus = false;
};

std::span<const CommandSpec> commands();

// A bad command line (CLI11's errors in main(), or what a command rejects after parsing: options that contradict
// each other, a value it cannot read), said alike everywhere: "gpuwarm: error: ...", then where the options
// are; with --json, also a document on stdout ({"kind", "error", "exit_code": 2}), as every other failure of
// a --json run is. Returns the usage exit code (2).
int usage_error(std::string_view command, std::string_view message);
// The same on stderr alone, for a command that prints its own JSON document for the error.
int usage_error_text(std::string_view command, std::string_view message);
// Set by main() when the command line asks the command for --json: the command whose document usage_error
// prints (nothing for a command without --json).
void answer_usage_errors_in_json(const CommandSpec& command);
// usage_error's document alone (main() prints CLI11's errors with hints of its own).
void usage_error_json(std::string_view message);

// One entry per command (declared here, defined in cmd_<name>.cpp).
std::function<int()> setup_diagnose(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_snapshot(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_fix(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_verify(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_probe(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_watch(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_guard(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_reload_modules(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_lint(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_fleet_summary(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_completion(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_metrics(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_check(CLI::App& sub, const GlobalOptions& global);
std::function<int()> setup_reset(CLI::App& sub, const GlobalOptions& global);

}  // namespace gpuwarm
