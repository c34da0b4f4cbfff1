// libFuzzer target for the lint scanner: any bytes, every file kind. Built and
// run by scripts/fuzz.sh (clang, -fsanitize=fuzzer,address,undefined).

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lint/lint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  using gpuwarm::lint::FileKind;
  for (FileKind kind : {FileKind::shell, FileKind::yaml, FileKind::unit, FileKind::nix, FileKind::dockerfile,
                        FileKind::text}) {
    for (const auto& f : gpuwarm::lint::lint_text(text, kind)) {
      // Positions must point into the input.
      if (f.line == 0 || f.column == 0 || f.rule.empty()) {
        __builtin_trap();
      }
    }
  }
  (void)gpuwarm::lint::kind_for(text, text.substr(0, text.find('\n')));
  return 0;
}
