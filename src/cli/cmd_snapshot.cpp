#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "core/safe_write.h"
#include "core/strings.h"
#include "core/exit_codes.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {
struct SnapshotOptions {
  CollectOptions collect;
  std::string output;
  bool json = true;
};
}  // namespace

std::function<int()> setup_snapshot(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<SnapshotOptions>();
  opts->collect.one_shot = true;
  opts->collect.stand_aside = true;  // NVML stays closed while a probe or a change holds the node
  add_collect_options(sub, opts->collect);
  // JSON is the only format; the flag exists so scripts can say what they expect.
  sub.add_flag("--json", opts->json, "Print JSON (the default and only format)");
  sub.add_option("-o,--output", opts->output, "Write the snapshot to FILE instead of standard output (- is standard output)")
      ->check(CLI::Validator([](std::string& v) { return v.empty() ? "an empty FILE (use - for standard output)" : ""; },
                             ""))
      ->type_name("FILE");
  sub.footer(
      "The snapshot holds every fact diagnose uses; a fact that could not be read is written as\n"
      "{\"missing\": \"<why>\"}. Record one on a real node and diagnose it anywhere:\n"
      "  gpuwarm snapshot -o node.json && gpuwarm diagnose --snapshot node.json\n\n"
      "Exit codes: 0 written, 1 the output file could not be written, 2 bad command line.\n\n"
      "Examples:\n"
      "  gpuwarm snapshot -o node.json\n"
      "  gpuwarm snapshot --no-systemd > node.json");

  return [opts]() -> int {
    Snapshot snapshot = collect_from_options(opts->collect);
    std::string text = dump_json(snapshot_to_json(snapshot)) + "\n";
    if (opts->output.empty() || opts->output == "-") {
      std::cout << text;
      return 0;
    }
    std::error_code ec;
    std::string absolute = std::filesystem::absolute(opts->output, ec).string();
    // A file the user names: its directory must exist (a typo must not create a tree of directories as root).
    auto written = ec ? Result<void>(fail("cannot tell where " + opts->output + " is: " + ec.message()))
                      : write_file_atomically(absolute, text, WriteOptions{"/", 0644, 0755, false});
    if (!written) {
      std::cerr << "gpuwarm: error: " << escape_control(written.error().message) << "\n";  // it names the path
      return to_int(ExitCode::tool_error);
    }
    return 0;
  };
}

}  // namespace gpuwarm
