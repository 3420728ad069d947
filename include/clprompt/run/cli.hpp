#pragma once
// run_cli: the whole clprompt command line (run, config, methods) for any MethodRegistry, so a
// user's program that registers its own methods gets every flag, progress output, results.json
// and plot of the shipped CLI:
//
//   int main(int argc, char** argv) {
//     auto registry = clprompt::builtin_methods();
//     registry.add<MyMethod>();
//     return clprompt::run_cli(argc, argv, registry);
//   }
// Extra commands (the shipped tool adds `pretrain`) come in as CliCommands.
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "clprompt/methods/registry.hpp"

namespace clprompt {

/// A command beyond run/config/methods: `run(args)` gets the arguments after the command name
/// and returns the exit code; `usage` is printed in the help text.
struct CliCommand {
  std::string usage;
  std::function<int(const std::vector<std::string>& args)> run;
};
using CliCommands = std::map<std::string, CliCommand>;

/// Parses argv and runs the command; returns the process exit code (0 ok, 1 a clprompt error,
/// 2 a usage error). Errors are printed to stderr, never thrown.
int run_cli(int argc, char** argv, const MethodRegistry& registry, const CliCommands& extra = {});

/// Helpers for extra commands: a JSON configuration file (empty path: {}), and --set overrides
/// merged over it.
Json read_config_file(const std::string& path);

}  // namespace clprompt
