// `gpuwarm completion bash|zsh`: prints a completion script generated from the
// command tree (cli/completion.h). Packages install its output; by hand:
//   gpuwarm completion bash > /etc/bash_completion.d/gpuwarm

#include <iostream>
#include <memory>

#include "cli/command.h"
#include "cli/completion.h"
#include "cli/option_checks.h"
#include "core/exit_codes.h"

namespace gpuwarm {

std::function<int()> setup_completion(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto shell = std::make_shared<std::string>();
  one_of(sub.add_option("shell", *shell, "The shell to complete for")->required(), {"bash", "zsh"});
  sub.footer(
      "Install: gpuwarm completion bash > /usr/share/bash-completion/completions/gpuwarm\n"
      "         gpuwarm completion zsh > /usr/share/zsh/vendor-completions/_gpuwarm\n"
      "(the packages install both; the .rpm puts zsh's in /usr/share/zsh/site-functions, as Fedora reads it).\n"
      "Exit codes: 0 printed, 2 bad command line.\n\n"
      "Examples:\n"
      "  source <(gpuwarm completion bash)");
  CLI::App* app = &sub;
  return [shell, app]() -> int {
    const CLI::App& root = *app->get_parent();
    std::cout << (*shell == "bash" ? bash_completion(root) : zsh_completion(root));
    return to_int(ExitCode::healthy);
  };
}

}  // namespace gpuwarm
