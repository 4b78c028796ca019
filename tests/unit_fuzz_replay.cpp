// Replays every kept fuzz input (tests/fuzz/corpus/<target>/: seeds, coverage
// finds, and each crash ever found with its regression name) through the same
// entry points libFuzzer drives, so a fixed reader stays fixed without clang.
// Under scripts/test's sanitizer build this is the ASan + UBSan replay.
#include <filesystem>
#include <stdexcept>
#include <string>

#include "testing.hpp"

struct FuzzPropertyFailed : std::logic_error {
  using std::logic_error::logic_error;
};
#define MARROW_FUZZ_ASSERT(cond) \
  do {                           \
    if (!(cond)) throw FuzzPropertyFailed("property failed: " #cond); \
  } while (0)
#include "fuzz/targets.hpp"

namespace fs = std::filesystem;

namespace {
fs::path corpus_root() {
#ifdef MARROW_SOURCE_DIR
  return fs::path(MARROW_SOURCE_DIR) / "tests" / "fuzz" / "corpus";
#else
  return fs::path("tests") / "fuzz" / "corpus";
#endif
}

// Every file of one target's corpus; returns how many ran.
int replay(const marrow::fuzz::Target& t) {
  const fs::path dir = corpus_root() / t.name;
  REQUIRE_MESSAGE(fs::is_directory(dir), "no corpus folder ", dir.string());
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string bytes = marrow::read_file(e.path().string());
    INFO("input ", e.path().string());
    CHECK_NOTHROW(t.run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
    ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("fuzz replay: every corpus input of every target is refused cleanly or accepted") {
  for (const auto& t : marrow::fuzz::kTargets) {
    CAPTURE(t.name);
    CHECK_MESSAGE(replay(t) > 0, "empty corpus for ", t.name);
  }
}

// The replay must be able to fail: a reader that throws something other than
// marrow::Error, or breaks a round-trip property, is reported.
TEST_CASE("fuzz replay: a foreign exception and a broken property escape the entry points") {
  CHECK_THROWS_AS(marrow::fuzz::expect_clean([] { throw std::out_of_range("x"); }), std::out_of_range);
  CHECK_NOTHROW(marrow::fuzz::expect_clean([] { MARROW_CHECK(false, "refused"); }));
  CHECK_THROWS_AS(marrow::fuzz::expect_clean([] { MARROW_FUZZ_ASSERT(1 + 1 == 3); }), FuzzPropertyFailed);
}

