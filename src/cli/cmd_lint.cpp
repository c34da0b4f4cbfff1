// `gpuwarm lint PATH...`: walks files and directories and reports persistence
// anti-patterns (lint/lint.h) as file:line:column: RULE message.

#include <cstring>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/file_batch.h"
#include "core/exit_codes.h"
#include "lint/lint.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {

constexpr std::uintmax_t k_max_file_bytes = 8u << 20;

struct LintOptions {
  std::vector<std::string> paths;
  bool json = false;
  bool list_rules = false;
};

struct FileResult {
  std::string path;
  std::vector<lint::Finding> findings;
};

// Returns false (with `note`) for files that are not scanned.
bool read_text(const std::string& path, std::string& text, std::string& note) {
  std::size_t size = 0;
  if (!read_regular_file(path, text, size, note, k_max_file_bytes)) {
    return false;
  }
  text.resize(size);
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) {
    note = "skipped: binary";
    return false;
  }
  return true;
}

}  // namespace

std::function<int()> setup_lint(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<LintOptions>();
  sub.add_option("paths", opts->paths, "Files and directories to scan (directories recursively; .git is skipped)")
      ->type_name("PATH");
  sub.add_flag("--json", opts->json, "Print findings and skipped files as JSON");
  sub.add_flag("--list-rules", opts->list_rules, "List the rules and exit");
  std::string footer =
      "Finds what the runbook says to remove: `nvidia-smi -pm 1` in any spelling (options between, sudo,\n"
      "YAML list or string form), `nvidia-persistenced --no-persistence-mode`, and in a unit that runs\n"
      "nvidia-persistenced: StopWhenUnneeded=true, no Restart=, a PIDFile under /var/run, Type=simple.\n"
      "Comments are not findings (shell, YAML, Nix, Dockerfile, unit files). A line opts out of a rule\n"
      "with `gpuwarm: ignore RULE-ID`. Binary, unreadable and very large files are skipped with a note.\n\n"
      "Exit codes: 0 nothing found, 1 a PATH does not exist, 2 bad command line, 3 findings.\n\nRules:\n";
  for (const auto& r : lint::rules()) {
    footer += fmt::format("  {}  {}\n", r.id, r.summary);
  }
  sub.footer(footer);

  return [opts]() -> int {
    if (opts->list_rules) {
      for (const auto& r : lint::rules()) {
        std::cout << fmt::format("{}  {:20s} {}\n", r.id, r.name, r.summary);
      }
      return 0;
    }
    if (opts->paths.empty()) {
      std::cerr << "gpuwarm lint: give at least one PATH (a file or directory)\n";
      return to_int(ExitCode::usage);
    }
    Walk walk = walk_paths(opts->paths, [](const std::string&) { return true; });
    for (const auto& p : walk.missing) {
      std::cerr << "gpuwarm lint: " << p << ": no such file or directory\n";
    }
    const bool missing = !walk.missing.empty();
    const std::vector<std::string>& files = walk.files;
    // Files are independent: scan them on every core, then report in walk order.
    std::vector<FileResult> per_file(files.size());
    std::vector<std::string> per_file_note(files.size());
    parallel_for(files.size(), [&](std::size_t i) {
      std::string text;
      if (!read_text(files[i], text, per_file_note[i])) {
        return;
      }
      std::string_view first(text);
      first = first.substr(0, first.find('\n'));
      per_file[i] = {files[i], lint::lint_text(text, lint::kind_for(files[i], first))};
    });
    std::vector<FileResult> results;
    std::vector<std::pair<std::string, std::string>> notes;
    std::size_t scanned = 0;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (!per_file_note[i].empty()) {
        notes.emplace_back(files[i], per_file_note[i]);
        continue;
      }
      ++scanned;
      if (!per_file[i].findings.empty()) {
        results.push_back(std::move(per_file[i]));
      }
    }
    std::size_t total = 0;
    for (const auto& r : results) {
      total += r.findings.size();
    }
    if (opts->json) {
      nlohmann::json findings = nlohmann::json::array();
      for (const auto& r : results) {
        for (const auto& f : r.findings) {
          findings.push_back({{"path", r.path}, {"line", f.line}, {"column", f.column}, {"rule_id", f.rule},
                              {"message", f.message}, {"fix", f.fix}});
        }
      }
      nlohmann::json skipped = nlohmann::json::array();
      for (const auto& [path, note] : notes) {
        skipped.push_back({{"path", path}, {"note", note}});
      }
      std::cout << dump_json({{"schema_version", 1}, {"files_scanned", scanned}, {"findings", findings},
                              {"skipped", skipped}})
                << "\n";
    } else {
      for (const auto& r : results) {
        for (const auto& f : r.findings) {
          std::cout << fmt::format("{}:{}:{}: {} {}\n  fix: {}\n", r.path, f.line, f.column, f.rule, f.message,
                                   f.fix);
        }
      }
      for (const auto& [path, note] : notes) {
        std::cerr << fmt::format("{}: {}\n", path, note);
      }
      std::cerr << fmt::format("{} finding(s) in {} file(s) scanned\n", total, scanned);
    }
    if (missing) {
      return to_int(ExitCode::tool_error);
    }
    return to_int(total > 0 ? ExitCode::action_needed : ExitCode::healthy);
  };
}

}  // namespace gpuwarm
