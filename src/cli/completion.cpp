#include "cli/completion.h"

#include <algorithm>

#include <fmt/format.h>

namespace gpuwarm {

namespace {

struct OptionSpec {
  std::vector<std::string> names;  // "--json", "-j"
  std::string description;
  bool takes_value = false;
  bool path = false;  // its value is a file or directory name
  std::vector<std::string> choices;  // the words it takes (one_of), if a fixed set
};

struct CommandSpecView {
  std::string name;
  std::string description;
  std::vector<OptionSpec> options;
  bool path_arguments = false;  // positional arguments are paths
  std::vector<std::string> argument_choices;  // the words a positional argument takes (one_of)
};

// one_of() shows an option's words as its type name, "auto|always|never".
std::vector<std::string> choices_of(const std::string& type_name) {
  std::vector<std::string> out;
  if (type_name.find('|') == std::string::npos) {
    return out;
  }
  std::size_t from = 0;
  for (std::size_t bar = type_name.find('|'); ; bar = type_name.find('|', from)) {
    out.push_back(type_name.substr(from, bar == std::string::npos ? std::string::npos : bar - from));
    if (bar == std::string::npos) {
      break;
    }
    from = bar + 1;
  }
  return out;
}

std::string words(const std::vector<std::string>& list, char separator = ' ') {
  std::string out;
  for (const auto& w : list) {
    out += (out.empty() ? "" : std::string(1, separator)) + w;
  }
  return out;
}

bool is_path(const std::string& type_name) {
  for (const char* word : {"PATH", "FILE", "DIR", "ROOT"}) {
    if (type_name.find(word) != std::string::npos) {
      return true;
    }
  }
  return false;
}

std::vector<OptionSpec> options_of(const CLI::App& app) {
  std::vector<OptionSpec> out;
  for (const CLI::Option* opt : app.get_options()) {
    if (!opt->nonpositional() || opt->get_group().empty()) {
      continue;  // hidden options (group ""): a child's or a test's, never offered
    }
    OptionSpec o;
    for (const auto& l : opt->get_lnames()) {
      o.names.push_back("--" + l);
    }
    for (const auto& s : opt->get_snames()) {
      o.names.push_back("-" + s);
    }
    o.description = opt->get_description();
    o.takes_value = opt->get_expected_max() > 0;  // flags expect none
    o.path = o.takes_value && is_path(opt->get_type_name());
    o.choices = o.takes_value ? choices_of(opt->get_type_name()) : std::vector<std::string>{};
    out.push_back(std::move(o));
  }
  return out;
}

std::vector<CommandSpecView> walk(const CLI::App& root) {
  std::vector<CommandSpecView> out;
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; })) {
    CommandSpecView c{sub->get_name(), sub->get_description(), options_of(*sub), false, {}};
    for (const CLI::Option* opt : sub->get_options()) {
      if (opt->get_positional() && is_path(opt->get_type_name())) {
        c.path_arguments = true;
      }
      if (opt->get_positional() && c.argument_choices.empty()) {
        c.argument_choices = choices_of(opt->get_type_name());
      }
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::string joined(const std::vector<OptionSpec>& options, bool values_only) {
  std::string out;
  for (const auto& o : options) {
    for (const auto& n : o.names) {
      if (!values_only || o.takes_value) {
        out += (out.empty() ? "" : " ") + n;
      }
    }
  }
  return out;
}

std::string path_options(const std::vector<OptionSpec>& options) {
  std::string out;
  for (const auto& o : options) {
    if (o.path) {
      for (const auto& n : o.names) {
        out += (out.empty() ? "" : "|") + n;
      }
    }
  }
  return out;
}

// Text inside a zsh single-quoted _arguments spec: quotes closed and reopened, brackets and colons escaped.
std::string zsh_text(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, s.find('\n'))) {
    if (c == '\'') {
      out += "'\\''";
    } else if (c == '[' || c == ']' || c == ':' || c == '\\') {
      out += '\\';
      out += c;
    } else {
      out += c;
    }
  }
  return out;
}

// The root's options that also apply after a command (--color, --version); each command has its own --help.
std::vector<OptionSpec> inherited(const CLI::App& root) {
  auto options = options_of(root);
  std::erase_if(options, [](const OptionSpec& o) {
    return std::find(o.names.begin(), o.names.end(), "--help") != o.names.end();
  });
  return options;
}

}  // namespace

std::string bash_completion(const CLI::App& root) {
  const auto commands = walk(root);
  const auto top = options_of(root);
  const auto globals = inherited(root);
  std::string names;
  for (const auto& c : commands) {
    names += (names.empty() ? "" : " ") + c.name;
  }
  // The words an option takes, by "command:option" ("*:--color" for one every command shares).
  std::string choice_cases;
  auto add_choices = [&choice_cases](const std::string& command, const std::vector<OptionSpec>& options) {
    for (const auto& o : options) {
      for (const auto& n : o.names) {
        if (!o.choices.empty()) {
          choice_cases += fmt::format("    {}:{}) words=\"{}\" ;;\n", command, n, words(o.choices));
        }
      }
    }
  };
  add_choices("*", top);
  for (const auto& c : commands) {
    add_choices(c.name, c.options);
  }
  std::string out = fmt::format(
      "# bash completion for gpuwarm (generated by `gpuwarm completion bash`)\n"
      "_gpuwarm() {{\n"
      "  local cur=\"${{COMP_WORDS[COMP_CWORD]}}\" prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\" cmd=\"\" i w\n"
      "  # bash splits --color=never at '=': the option is the word before it.\n"
      "  if [[ \"$cur\" == \"=\" ]]; then cur=\"\"; elif [[ \"$prev\" == \"=\" ]]; then prev=\"${{COMP_WORDS[COMP_CWORD-2]}}\"; fi\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    case \"${{COMP_WORDS[i]}}\" in {}) cmd=\"${{COMP_WORDS[i]}}\"; break ;; esac\n"
      "  done\n"
      "  local opts=\"\" values=\"\" paths=\"\" path_args=0 args=\"\" words=\"\"\n"
      "  case \"$cmd\" in\n"
      "    \"\") opts=\"{} {}\"; values=\"{}\" ;;\n",
      commands.empty() ? "\"\"" : [&] {
        std::string alt;
        for (const auto& c : commands) {
          alt += (alt.empty() ? "" : "|") + c.name;
        }
        return alt;
      }(),
      names, joined(top, false), joined(top, true));
  for (const auto& c : commands) {
    out += fmt::format("    {}) opts=\"{} {}\"; values=\"{} {}\"; paths=\"{}\"; path_args={}; args=\"{}\" ;;\n",
                       c.name, joined(c.options, false), joined(globals, false), joined(c.options, true),
                       joined(globals, true), path_options(c.options), c.path_arguments ? 1 : 0,
                       words(c.argument_choices));
  }
  out += "  esac\n";
  if (!choice_cases.empty()) {
    out += "  case \"$cmd:$prev\" in\n" + choice_cases + "  esac\n";
  }
  out +=
      "  if [[ -n \"$words\" ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\")); return\n"
      "  fi\n"
      "  if [[ -n \"$paths\" && \"|$paths|\" == *\"|$prev|\"* ]]; then\n"
      "    COMPREPLY=($(compgen -f -- \"$cur\")); return\n"
      "  fi\n"
      "  if [[ \" $values \" == *\" $prev \"* ]]; then\n"
      "    COMPREPLY=(); return  # a value gpuwarm cannot guess\n"
      "  fi\n"
      "  if [[ -n \"$args\" && \"$cur\" != -* ]]; then\n"
      "    for w in \"${COMP_WORDS[@]:i+1:COMP_CWORD-i-1}\"; do\n"
      "      [[ \" $args \" == *\" $w \"* ]] && { COMPREPLY=(); return; }  # its one argument is given\n"
      "    done\n"
      "    COMPREPLY=($(compgen -W \"$args\" -- \"$cur\")); return\n"
      "  fi\n"
      "  if [[ \"$cur\" == -* || -z \"$cmd\" || $path_args -eq 0 ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
      "  else\n"
      "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
      "  fi\n"
      "}\n"
      "complete -o filenames -F _gpuwarm gpuwarm\n";
  return out;
}

std::string zsh_completion(const CLI::App& root) {
  const auto commands = walk(root);
  const auto globals = inherited(root);
  auto specs = [](const std::vector<OptionSpec>& options) {
    std::string out;
    for (const auto& o : options) {
      for (const auto& n : o.names) {
        std::string value = !o.takes_value        ? ""
                            : o.path              ? ":path:_files"
                            : !o.choices.empty()  ? ":value:(" + words(o.choices) + ")"
                                                  : ":value: ";
        out += fmt::format("      '{}{}[{}]{}' \\\n", n, o.takes_value && n.rfind("--", 0) == 0 ? "=" : "",
                           zsh_text(o.description), value);
      }
    }
    return out;
  };
  std::string out =
      "#compdef gpuwarm\n"
      "# zsh completion for gpuwarm (generated by `gpuwarm completion zsh`)\n"
      "_gpuwarm() {\n"
      "  local -a commands\n"
      "  commands=(\n";
  for (const auto& c : commands) {
    out += fmt::format("    '{}:{}'\n", c.name, zsh_text(c.description));
  }
  out +=
      "  )\n";
  // gpuwarm's own options with words to offer (--color), before a command too.
  const auto top = options_of(root);
  std::string top_choices;
  for (const auto& o : top) {
    for (const auto& n : o.names) {
      if (!o.choices.empty()) {
        top_choices += fmt::format("    {}) compadd -- {}; return ;;\n", n, words(o.choices));
      }
    }
  }
  if (!top_choices.empty()) {
    out += "  case $words[CURRENT-1] in\n" + top_choices + "  esac\n";
  }
  // The command is the first word past gpuwarm's own options (--color never, --color=never).
  std::string valued;
  for (const auto& o : top) {
    if (o.takes_value) {
      valued += (valued.empty() ? "" : "|") + words(o.names, '|');
    }
  }
  out += "  local i=2\n"
         "  while (( i < CURRENT )); do\n"
         "    case $words[i] in\n";
  if (!valued.empty()) {
    out += "      " + valued + ") (( i += 2 )) ;;\n";
  }
  out +=
      "      -*) (( i++ )) ;;\n"
      "      *) break ;;\n"
      "    esac\n"
      "  done\n"
      "  if (( CURRENT <= i )); then\n"
      "    _describe -t commands 'gpuwarm command' commands\n"
      "    return\n"
      "  fi\n"
      "  case $words[i] in\n";
  for (const auto& c : commands) {
    // Shifted, _arguments sees the command as the line's first word: its first argument is then '1:'.
    out += fmt::format("    {})\n      shift $(( i - 1 )) words; (( CURRENT -= i - 1 ))\n      _arguments -s \\\n{}{}      {}\n      ;;\n",
                       c.name, specs(c.options),
                       specs(globals),
                       c.path_arguments              ? "'*:path:_files'"
                       : !c.argument_choices.empty() ? "'1:value:(" + words(c.argument_choices) + ")'"
                                                     : "'*: :'");
  }
  out +=
      "  esac\n"
      "}\n"
      "_gpuwarm \"$@\"\n";
  return out;
}

}  // namespace gpuwarm
