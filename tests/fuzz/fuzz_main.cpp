// libFuzzer driver: scripts/fuzz compiles this once per target with
// -DMARROW_FUZZ_TARGET='"<name>"' (clang, -fsanitize=fuzzer,address,undefined);
// the name is looked up in the table of targets.hpp.
#include <cstdlib>
#include <string_view>

#include "targets.hpp"

#ifndef MARROW_FUZZ_TARGET
#error "define MARROW_FUZZ_TARGET to the quoted name of a target in targets.hpp"
#endif

namespace {
auto* const g_run = [] {
  for (const auto& t : marrow::fuzz::kTargets)
    if (std::string_view(t.name) == MARROW_FUZZ_TARGET) return t.run;
  std::fprintf(stderr, "fuzz_main: no target named %s\n", MARROW_FUZZ_TARGET);
  std::abort();
}();
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  g_run(data, size);
  return 0;
}
