// `gpuwarm fleet-summary [PATH...]`: folds many nodes' saved reports
// (fleet/fleet.h) into one table. Files are read and parsed on every core.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <iterator>
#include <memory>

#include <fmt/format.h>

#include "cli/command.h"
#include "core/strings.h"
#include "cli/file_batch.h"
#include "core/exit_codes.h"
#include "fleet/fleet.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {

constexpr std::uintmax_t k_max_report_file_bytes = 64u << 20;  // one node's report is tens of kB
constexpr std::uintmax_t k_max_stdin_bytes = std::uintmax_t{16} << 30;  // a whole fleet as JSON lines

struct FleetOptions {
  std::vector<std::string> paths;
  bool json = false;
};

bool report_file_name(const std::string& path) {
  auto ends_with = [&path](std::string_view suffix) {
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".json") || ends_with(".jsonl") || ends_with(".ndjson");
}

// What one input (a file, or standard input) held.
struct InputResult {
  std::vector<fleet::NodeReport> reports;
  std::vector<fleet::Unreadable> unreadable;
  std::vector<fleet::Skipped> skipped;
};

// One parsed document into what the input held: a report, another gpuwarm output (skipped), or unreadable.
void sort_into(Result<fleet::NodeReport>& parsed, std::string where, InputResult& out) {
  if (!parsed) {
    out.unreadable.push_back({std::move(where), parsed.error().message});
  } else if (parsed->kind == fleet::ReportKind::other) {
    out.skipped.push_back({std::move(where), std::move(parsed->skipped_why), std::move(parsed->skipped_problem)});
  } else {
    out.reports.push_back(std::move(*parsed));
  }
}

// One parser per thread, its buffers kept between documents.
fleet::ReportParser& thread_parser() {
  thread_local fleet::ReportParser parser;
  return parser;
}

// Splits `text` (followed by parse_padding() readable bytes) into documents and parses each, on every
// core when asked (one big JSON-lines input).
void parse_documents(std::string_view text, const std::string& source, bool parallel, InputResult& out) {
  // The text may be one JSON text of several spans (a report whose nested objects start lines too: a formatter
  // that does not indent them) or an array of reports (`jq -s`, a whole fleet's: any size): read whole first
  // where a file may hold one report, and always when it is an array.
  const auto first = text.find_first_not_of(" \t\r\n");
  const bool array = first != std::string_view::npos && text[first] == '[';
  if (text.size() <= k_max_report_file_bytes || array) {
    auto whole = thread_parser().parse_whole(text);
    if (whole) {
      for (std::size_t i = 0; i < whole->size(); ++i) {
        sort_into((*whole)[i], whole->size() == 1 ? source : fmt::format("{}[{}]", source, i), out);
      }
      return;
    }
    if (array) {  // its elements do not start lines: no split could find them
      out.unreadable.push_back({source, whole.error().message +
                                            " (an array of reports is read whole: JSON lines, jq -c '.[]', are not)"});
      return;
    }
  }
  const auto spans = fleet::split_documents(text);
  std::vector<Result<fleet::NodeReport>> parsed(spans.size(), fail(""));
  auto parse_one = [&](std::size_t i) {
    parsed[i] = thread_parser().parse(text.substr(spans[i].offset, spans[i].length));
  };
  if (parallel) {
    parallel_for(spans.size(), parse_one, 256);
  } else {
    for (std::size_t i = 0; i < spans.size(); ++i) {
      parse_one(i);
    }
  }
  for (std::size_t i = 0; i < spans.size(); ++i) {
    // A one-report file is named alone; in JSON lines the line says which report.
    sort_into(parsed[i],
              spans.size() == 1 && source != "<stdin>" ? source : fmt::format("{}:{}", source, spans[i].line), out);
  }
}

// Standard input, or a single named file (most likely a whole fleet as JSON lines): read into a huge-page
// buffer and parsed on every core.
void parse_whole_input(int fd, const std::string& source, std::size_t padding, InputResult& out) {
  LargeBuffer text;
  auto size = text.read_all(fd, source, padding, k_max_stdin_bytes);
  if (!size) {
    out.unreadable.push_back({source, size.error().message});
  } else if (*size == 0 && fd != STDIN_FILENO) {
    out.unreadable.push_back({source, "empty file"});
  } else {
    parse_documents(std::string_view(text.data(), *size), source, true, out);
  }
}

}  // namespace

std::function<int()> setup_fleet_summary(CLI::App& sub, const GlobalOptions& global) {
  auto opts = std::make_shared<FleetOptions>();
  sub.add_option("paths", opts->paths,
                 "Report files, or directories of them (*.json, *.jsonl, *.ndjson, recursively); - reads "
                 "standard input")
      ->type_name("PATH");
  sub.add_flag("--json", opts->json, "Print the fleet summary (and every node's line) as JSON, also when no report was found");
  sub.footer(
      "Reads what gpuwarm wrote on each node: `diagnose --json`, `fix --json` (what the Ansible role saves),\n"
      "`verify --json` and `probe --json` (with --compare for before/after). A file may hold one report (any\n"
      "layout), an array of them (`jq -s`), or JSON lines: where it is not one JSON text, a report starts at a\n"
      "'{' that begins a line. Of several files each is read up to 64 MiB (one node's reports are kB); a\n"
      "single PATH or standard input up to 16 GiB as JSON lines (parsed on every core); an array is read\n"
      "whole, on one core, up to 4 GiB, in about 2.6 times its size of memory.\n"
      "Reports are grouped by node (their `node`,\n"
      "which the Ansible role sets to the inventory name, or else `hostname`), oldest first, so the newest\n"
      "says what a node is now. Prints nodes per verdict, fix outcomes, nodes with any GPU not Enabled, nodes\n"
      "pending reboot, and the median cold start per GPU before and after where probe results are present\n"
      "(a 'before' counts where `probe --compare` saw persistence off in its baseline and on now; other\n"
      "comparisons are listed apart).\n"
      "Unreadable or truncated reports are listed, not fatal. In a folder, a link to a report is read; a link\n"
      "to a folder, or a report's link to nothing, is listed as unreadable. Other gpuwarm output (snapshots, check, watch,\n"
      "lint, reset, guard, reload-modules, an earlier fleet-summary) is listed as skipped, with what to run\n"
      "instead; it needs attention only where it reports a problem of its own (a non-zero exit_code, an\n"
      "error; an earlier summary's exit code was its reports' and does not count).\n\n"
      "Exit codes: 0 every node healthy (or fixed and verified) and every report readable, 1 no report of a\n"
      "kind it reads could be read, 2 bad command line or a PATH that does not exist, 3 a node needs\n"
      "attention or a report was unreadable.\n\n"
      "Examples:\n"
      "  gpuwarm fleet-summary reports/\n"
      "  cat reports/*.json | gpuwarm fleet-summary --json | jq .needs_attention");

  return [opts, &global]() -> int {
    std::vector<std::string> paths = opts->paths;
    if (paths.empty()) {
      if (::isatty(STDIN_FILENO) == 1) {
        constexpr const char* k_no_path = "give report files or directories, or pipe reports in (PATH -)";
        if (opts->json) {  // one shape for every --json answer: an empty fleet, and why
          nlohmann::json out = fleet::render_json(fleet::summarize({}, {}));
          out["error"] = k_no_path;
          out["exit_code"] = to_int(ExitCode::usage);
          std::cout << dump_json(out) << "\n";
        }
        return usage_error_text("fleet-summary", k_no_path);
      }
      paths.push_back("-");
    }
    bool use_stdin = false;
    std::vector<std::string> named;
    for (const auto& p : paths) {
      if (p == "-") {
        use_stdin = true;
      } else {
        named.push_back(p);
      }
    }
    // A report collected as a link (`ln -s /nfs/node7/report.json reports/`) is a node like any other: read.
    Walk walk = walk_paths(named, report_file_name, FileLinks::follow);
    if (!walk.missing.empty()) {
      std::string named_nothing;
      for (const auto& p : walk.missing) {
        named_nothing += (named_nothing.empty() ? "" : ", ") + escape_control(p);
      }
      // With --json the document below says it (an empty fleet and what is missing), not usage_error's.
      const int code = usage_error_text("fleet-summary", named_nothing + ": no such file or directory");
      if (opts->json) {  // an empty fleet, and why: `| jq` gets a document either way
        nlohmann::json out = fleet::render_json(fleet::summarize({}, {}));
        out["error"] = "a PATH does not exist";
        out["missing"] = walk.missing;
        out["exit_code"] = code;
        std::cout << dump_json(out) << "\n";
      }
      return code;
    }

    const std::size_t padding = fleet::parse_padding();
    std::vector<InputResult> per_input(walk.files.size() + (use_stdin ? 1 : 0));
    if (walk.files.size() == 1) {
      // Regular files only, checked before they are opened: a FIFO or /dev/zero named here is refused unopened,
      // not read toward the stdin cap.
      std::string note;
      if (const int fd = open_regular(walk.files[0], note); fd < 0) {
        per_input[0].unreadable.push_back({walk.files[0], note});
      } else {
        parse_whole_input(fd, walk.files[0], padding, per_input[0]);
        ::close(fd);
      }
    } else {
      // Many files: one per core at a time, each read into that thread's reused buffer.
      parallel_for(
          walk.files.size(),
          [&](std::size_t i) {
            thread_local std::string buffer;
            std::size_t size = 0;
            std::string note;
            if (!read_regular_file(walk.files[i], buffer, size, note, k_max_report_file_bytes, padding)) {
              per_input[i].unreadable.push_back({walk.files[i], note});
            } else if (size == 0) {
              per_input[i].unreadable.push_back({walk.files[i], "empty file"});
            } else {
              parse_documents(std::string_view(buffer.data(), size), walk.files[i], false, per_input[i]);
            }
          },
          16);
    }
    if (use_stdin) {
      parse_whole_input(STDIN_FILENO, "<stdin>", padding, per_input.back());
    }

    std::vector<fleet::NodeReport> reports;
    std::vector<fleet::Unreadable> unreadable;
    std::vector<fleet::Skipped> skipped;
    for (auto& [dir, why] : walk.unreadable) {  // reports it may hold are unknown, as an unreadable file's are
      unreadable.push_back({dir, std::string(k_unreadable_note) + "directory: " + why});
    }
    for (auto& [path, why] : walk.passed_over) {  // a linked folder of reports, a report's link to nothing, a FIFO
      if (why == Walk::Skipped::link_to_folder || report_file_name(path)) {
        unreadable.push_back({path, std::string(k_unreadable_note) + passed_over_text(why) +
                                        (why == Walk::Skipped::link_to_folder ? ", not followed (name it to read its reports)"
                                                                              : "")});
      }
    }
    for (auto& in : per_input) {
      std::move(in.reports.begin(), in.reports.end(), std::back_inserter(reports));
      std::move(in.unreadable.begin(), in.unreadable.end(), std::back_inserter(unreadable));
      std::move(in.skipped.begin(), in.skipped.end(), std::back_inserter(skipped));
    }
    for (auto& u : unreadable) {  // file names and simdjson's text may carry control bytes too
      u.source = escape_control(u.source);
      u.error = escape_control(u.error);
    }
    for (auto& k : skipped) {
      k.source = escape_control(k.source);
    }
    const bool nothing_read = reports.empty();
    const bool nothing_found = nothing_read && unreadable.empty() && skipped.empty();
    const std::size_t skipped_count = skipped.size();
    constexpr const char* k_none_found =
        "no reports found (directories are searched for *.json, *.jsonl, *.ndjson)";
    if (nothing_found && !opts->json) {
      std::cerr << "gpuwarm fleet-summary: " << k_none_found << "\n";
      return to_int(ExitCode::tool_error);
    }
    fleet::FleetSummary summary = fleet::summarize(std::move(reports), std::move(unreadable), std::move(skipped));
    // Only other output (snapshots, watch runs): no node to summarize, which is said, not left to read as healthy.
    const std::string only_skipped =
        nothing_read && summary.unreadable.empty() && skipped_count > 0
            ? fmt::format("no report of a kind it reads (diagnose, fix, verify, probe --json); {} other gpuwarm "
                          "output skipped",
                          skipped_count)
            : std::string();
    const int code = nothing_read ? to_int(ExitCode::tool_error) : fleet::exit_code(summary);
    if (opts->json) {
      nlohmann::json out = fleet::render_json(summary);
      out["exit_code"] = code;
      if (nothing_found) {  // an empty fleet, and why: `| jq` gets a document either way
        out["error"] = k_none_found;
      } else if (!only_skipped.empty()) {
        out["error"] = only_skipped;
      }
      std::cout << dump_json(out) << "\n";
    } else {
      std::cout << fleet::render_text(summary, Style::for_stdout(global.color));
      if (!only_skipped.empty()) {
        std::cerr << "gpuwarm fleet-summary: " << only_skipped << "\n";
      }
    }
    return code;
  };
}

}  // namespace gpuwarm
