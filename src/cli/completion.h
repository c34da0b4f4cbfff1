#pragma once
// Shell completion scripts generated from the CLI11 command tree (CLI11 has no
// generator): subcommands, each one's options, and file names after options
// and arguments that take a path. One walk, two renderers.

#include <string>

#include <CLI/CLI.hpp>

namespace gpuwarm {

std::string bash_completion(const CLI::App& root);
std::string zsh_completion(const CLI::App& root);

}  // namespace gpuwarm
