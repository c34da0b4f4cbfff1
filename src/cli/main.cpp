#include "version_info.h"  // generated: GPUWARM_VERSION_TEXT
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/option_checks.h"
#include "cli/command.h"
#include "cli/help_format.h"
#include "core/deadline.h"
#include "core/exit_codes.h"
#include "core/strings.h"

#ifndef GPUWARM_VERSION
#define GPUWARM_VERSION "0.0.0"
#endif

namespace {

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> prev(b.size() + 1);
  std::vector<std::size_t> cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    prev[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// "did you mean" for a mistyped command, like git and ninja.
std::string suggestion(const std::string& word) {
  std::string best;
  std::size_t best_distance = 3;
  for (const auto& cmd : gpuwarm::commands()) {
    std::size_t d = edit_distance(word, cmd.name);
    if (d < best_distance) {
      best_distance = d;
      best = cmd.name;
    }
  }
  return best;
}

// The options the command being run (`chosen`) takes, and gpuwarm's own: long names ("--json") and short ("-o").
std::vector<std::string> known_options(const CLI::App& app, const std::string& chosen) {
  std::vector<std::string> known;
  auto collect = [&known](const CLI::App* a) {
    for (const CLI::Option* opt : a->get_options()) {
      for (const auto& name : opt->get_lnames()) {
        known.push_back("--" + name);
      }
      for (const auto& name : opt->get_snames()) {
        known.push_back("-" + name);
      }
    }
  };
  collect(&app);
  for (const CLI::App* candidate : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (candidate->get_name() == chosen) {
      collect(candidate);
    }
  }
  return known;
}

// The words CLI11 took for no option and no value (app.remaining()), in the command line's order: the words
// of the command line, not CLI11's reading of them ("--rule=x" is the word given).
std::vector<std::string> unexpected_words(const CLI::App& app, int argc, char** argv) {
  const auto extras = app.remaining(true);
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    const std::string_view word = argv[i];
    const bool extra = std::any_of(extras.begin(), extras.end(), [word](const std::string& e) {
      return word == e || (word.size() > e.size() && word.substr(0, e.size()) == e && word[e.size()] == '=');
    });
    if (extra) {
      out.emplace_back(word);
    }
  }
  return out;
}

// Of those, the ones shaped like an option ("--bogus", "-q"; "--rule=x" as "--rule") that the command does not
// take: what to report before anything else CLI11 found (a required argument it then misses). A negative
// number is a value.
std::vector<std::string> unknown_options(const std::vector<std::string>& known,
                                         const std::vector<std::string>& unexpected) {
  std::vector<std::string> out;
  for (std::string word : unexpected) {
    if (word.size() < 2 || word[0] != '-' || (word[1] >= '0' && word[1] <= '9') || word[1] == '.') {
      continue;
    }
    word = word.substr(0, word.find('='));
    if (std::find(known.begin(), known.end(), word) == known.end()) {
      out.push_back(word);
    }
  }
  return out;
}

// "did you mean" for a mistyped long option (`--josn`): the nearest the command takes, by the words after
// "--", near enough for their length (`--bogus` is not a typo of `--docs`).
std::string option_suggestion(const std::vector<std::string>& known, const std::vector<std::string>& unknown) {
  for (const auto& word : unknown) {
    if (word.rfind("--", 0) != 0 || word.size() < 4) {
      continue;
    }
    std::string best;
    std::size_t best_distance = word.size() - 2 <= 6 ? 2 : 3;
    for (const auto& name : known) {
      if (name.rfind("--", 0) != 0) {
        continue;
      }
      if (std::size_t d = edit_distance(word.substr(2), name.substr(2));
          d <= best_distance && (best.empty() || d < best_distance)) {
        best_distance = d;
        best = name;
      }
    }
    if (!best.empty()) {
      return best;
    }
  }
  return {};
}

// CLI11's own wording, where it reads oddly, in gpuwarm's: an option given twice, and the words it did not
// expect (which CLI11 lists last first, split at blanks: `unexpected` has them as given).
std::string plain_parse_error(const std::string& message, const std::vector<std::string>& unexpected) {
  if (const auto at = message.find(": At Most 1 required but received "); at != std::string::npos) {
    return gpuwarm::escape_control_lines(message.substr(0, at)) + " is given more than once: give it once";
  }
  if (message.rfind("The following argument", 0) == 0 && !unexpected.empty()) {
    std::string words;
    for (const auto& w : unexpected) {
      const std::string shown = gpuwarm::escape_control(w);
      words += (words.empty() ? "" : " ") + (shown.find(' ') != std::string::npos ? "\"" + shown + "\"" : shown);
    }
    return "not expected here: " + words;
  }
  return gpuwarm::escape_control_lines(message);
}

// The command line's first word that names a command, past the global options (`--color WHEN`,
// `--color=WHEN`), and the first option before it that is none of gpuwarm's own ("" for either when none).
struct CommandWord {
  std::string command;
  std::string stray_option;
};

CommandWord command_word(int argc, char** argv) {
  CommandWord out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--color") {
      ++i;
      continue;
    }
    if (arg.empty() || arg[0] != '-') {
      out.command = arg;
      return out;
    }
    const bool own = arg.rfind("--color=", 0) == 0 || arg == "-h" || arg == "--help" || arg == "--version";
    if (!own && out.stray_option.empty()) {
      out.stray_option = arg;
    }
  }
  return out;
}

// Output that never arrived (a full disk, a closed pipe) is a failure, not a silent success, --help's too: a
// script reading the report must not get half of one. Whatever the command found, a caller without its
// report has nothing to act on: exit 1 (for `check`, where 1 means "drain the node", 2: cannot tell). The
// command's own code is kept on stderr.
int with_output_written(int code, const std::string& chosen) {
  std::cout.flush();
  if (!std::cout.fail() && std::fflush(stdout) == 0) {
    return code;
  }
  const int failed = chosen == "check" ? 2 : gpuwarm::to_int(gpuwarm::ExitCode::tool_error);
  std::cerr << "gpuwarm: error: cannot write the output (disk full or pipe closed)"
            << (code != 0 && code != failed ? " -- the command itself ended with exit " + std::to_string(code) : "")
            << "\n";
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  using gpuwarm::ExitCode;
  // A reader that went away (`| head`) is an output that could not be written, reported below with its
  // exit code; being killed by SIGPIPE instead would end a fix or reset between two steps.
  ::signal(SIGPIPE, SIG_IGN);
  // Started with stdin, stdout or stderr closed (a careless supervisor), the next file gpuwarm opens would take
  // that number: a lock or a temporary file written as root would receive the report, a program's pipe would
  // be mistaken for a standard stream. /dev/null, read-only, holds the number instead, so writing there still
  // fails as it did ("cannot write the output"), as glibc does for set-user-ID programs.
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF && ::open("/dev/null", O_RDONLY) != fd) {
      return 1;
    }
  }
  // A SIGCHLD ignored by whoever started gpuwarm (a supervisor) makes the kernel reap children itself: no exit
  // status for run_child, every program a timeout. gpuwarm waits for its children, so the default is right.
  ::signal(SIGCHLD, SIG_DFL);
  // `gpuwarm help [COMMAND]`, as git, systemctl and cargo take it: the page `--help` prints.
  std::vector<char*> help_argv;
  static char help_flag[] = "--help";
  if ((argc == 2 || argc == 3) && std::string_view(argv[1]) == "help") {
    help_argv = {argv[0]};
    if (argc == 3) {
      const auto known = gpuwarm::commands();
      if (std::none_of(known.begin(), known.end(), [&](const auto& c) { return argv[2] == std::string_view(c.name); })) {
        std::cerr << "gpuwarm: error: no command \"" << gpuwarm::escape_control(argv[2])
                  << "\" (`gpuwarm --help` lists them)\n";
        return gpuwarm::to_int(ExitCode::usage);
      }
      help_argv.push_back(argv[2]);
    }
    help_argv.push_back(help_flag);
    help_argv.push_back(nullptr);
    argc = static_cast<int>(help_argv.size()) - 1;
    argv = help_argv.data();
  }
  CLI::App app{"gpuwarm: keep NVIDIA GPUs initialized the supported way (nvidia-persistenced under systemd),\n"
               "and tell when something else is wrong.",
               "gpuwarm"};
  app.formatter(std::make_shared<gpuwarm::HelpFormatter>());  // before the subcommands: they inherit it
#ifdef GPUWARM_TEST_HOOKS
  app.set_version_flag("--version", std::string(GPUWARM_VERSION_TEXT) +
                                        "\ntest hooks compiled in (a test build: packages are built without)");
#else
  app.set_version_flag("--version", GPUWARM_VERSION_TEXT);
#endif
  app.require_subcommand(1);
  // Global options (--color) may also follow the command name.
  app.fallthrough();
  gpuwarm::GlobalOptions global;
  std::string color = "auto";
  gpuwarm::one_of(app.add_option("--color", color, "Colour: auto (on a TTY with NO_COLOR unset), always, never"),
                  {"auto", "always", "never"})
      ->capture_default_str();
  app.footer("Run `gpuwarm <command> --help` (or `gpuwarm help <command>`) for a command's options and exit codes.\n"
             "Exit codes shared by all commands: 0 success/healthy, 1 gpuwarm failed, 2 bad command line\n"
             "(except `check`, a scheduler's health check: 1 problem (drain), 2 unknown or gpuwarm failed).");

  // Only the command being run gets its options built (the rest are names and summaries, enough for
  // `gpuwarm --help` and for CLI11 to reject a wrong word): building every command's option tree was a
  // sixth of a health check's start-up. `completion` walks the whole tree, so it gets every command.
  const CommandWord words = command_word(argc, argv);
  const std::string& chosen = words.command;
  std::function<int()> run;
  // A run that asks for --json gets its usage errors as a document too (what the command line says, before
  // CLI11 reads it: a bad command line may never get that far).
  bool json_asked = false;
  for (int i = 1, after_command = 0; i < argc && std::string_view(argv[i]) != "--"; ++i) {
    after_command = after_command != 0 || argv[i] == chosen ? 1 : 0;
    const std::string_view word = argv[i];
    // --json, or CLI11's --json=VALUE for a flag (a true value; "--json=false" asks for text)
    const bool json_word = word == "--json" || (word.rfind("--json=", 0) == 0 && word != "--json=false" &&
                                                word != "--json=0" && word != "--json=off" && word != "--json=no");
    json_asked = json_asked || (after_command != 0 && json_word);
  }
  for (const auto& cmd : gpuwarm::commands()) {
    if (json_asked && chosen == cmd.name) {
      gpuwarm::answer_usage_errors_in_json(cmd);
    }
    CLI::App* sub = app.add_subcommand(cmd.name, cmd.summary);
    if (chosen == cmd.name || chosen == "completion") {
      auto handler = cmd.setup(*sub, global);
      sub->callback([&run, handler] { run = handler; });
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return with_output_written(app.exit(e), chosen);
  } catch (const CLI::CallForAllHelp& e) {
    return with_output_written(app.exit(e), chosen);
  } catch (const CLI::CallForVersion& e) {
    return with_output_written(app.exit(e), chosen);
  } catch (const CLI::ParseError& e) {
    bool known = false;
    for (const auto& cmd : gpuwarm::commands()) {
      known = known || chosen == cmd.name;
    }
    // CLI11 says "A subcommand is required" for a word that is no command, or an option before any command:
    // name what was given instead.
    const bool unknown_word = argc > 1 && argv[1][0] != '-' && !known;
    // CLI11's text quotes the command line, which may carry control characters: escaped like any other.
    const auto known_names = known_options(app, chosen);
    const auto unexpected = unexpected_words(app, argc, argv);
    const auto unknown = unknown_options(known_names, unexpected);
    std::string message = unknown_word ? "no command \"" + gpuwarm::escape_control(argv[1]) + "\""
                                       : plain_parse_error(e.what(), unexpected);
    // An option the command does not take is the error to fix first: what CLI11 then found missing (a required
    // --gpu) or unexpected follows from it.
    if (!unknown_word && known && !unknown.empty()) {
      message = "gpuwarm " + chosen + " has no option " + gpuwarm::escape_control(unknown.front());
    }
    bool global_option_error = false;
    if (!unknown_word) {
      if (const std::string& option = words.stray_option; !option.empty()) {
        message = "\"" + gpuwarm::escape_control(option) + "\" is no option of gpuwarm itself" +
                  (chosen.empty() ? ", and no command was given" : ": a command's options go after its name");
        global_option_error = true;
      } else if (chosen.empty() && message == "A subcommand is required") {
        message = "no command given";
      }
    }
    // --color is gpuwarm's own option, wherever it stands: its help is gpuwarm's, not the command's.
    global_option_error = global_option_error || message.rfind("--color", 0) == 0;
    known = known && !global_option_error;
    gpuwarm::usage_error_json(message);  // with --json, a document on stdout too (set only for a known command)
    std::cerr << "gpuwarm: error: " << gpuwarm::escape_control(message) << "\n";  // CLI11 quotes the values typed
    if (unknown_word) {
      if (std::string hint = suggestion(argv[1]); !hint.empty()) {
        std::cerr << "Did you mean `gpuwarm " << hint << "`?\n";
      }
    }
    if (std::string option = option_suggestion(known_names, unknown); !option.empty()) {
      std::cerr << "Did you mean `" << option << "`?\n";
    }
    std::cerr << "Run `gpuwarm " << (known ? chosen + " " : std::string()) << "--help` for "
              << (known ? "its options" : "the commands") << ".\n";
    return gpuwarm::to_int(ExitCode::usage);
  }
  global.color = color == "always"  ? gpuwarm::ColorMode::always
                 : color == "never" ? gpuwarm::ColorMode::never
                                    : gpuwarm::ColorMode::automatic;
  int code = gpuwarm::to_int(ExitCode::usage);
  try {
    code = run ? run() : code;
  } catch (const std::exception& e) {
    // Library code reports errors as values; reaching here is a bug, but it
    // still ends with a message and a documented code rather than abort().
    std::cerr << "gpuwarm: internal error: " << gpuwarm::escape_control(e.what()) << "\n";
    code = gpuwarm::to_int(ExitCode::tool_error);
  }
  code = with_output_written(code, chosen);
  if (gpuwarm::abandoned_calls() > 0) {
    // A thread is still blocked inside NVML: static destructors would run
    // under it (and the library's). Flush what was said and leave now.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    ::_exit(code);
  }
  return code;
}
