#pragma once
// Errors and assertions shared by every marrow header.
#include <sstream>
#include <stdexcept>
#include <string>

namespace marrow {

// Every error marrow raises on bad input or misuse. The message names the op,
// file or flag at fault, so a user can act on it without a debugger.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... A> std::string cat(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}
// Called with the exit code when a binary's body fails (run_main). A run spread
// over several processes sets it (dist::Comm) to stop every rank at once rather
// than leave the others waiting for this one in the next collective.
inline void (*g_on_failure)(int exit_code) = nullptr;
}  // namespace detail

}  // namespace marrow

// MARROW_CHECK(cond, parts...): throw marrow::Error built from the parts when cond is false.
// Always on: shape checks are cheap next to the kernels they guard.
#define MARROW_CHECK(cond, ...)                                              \
  do {                                                                       \
    if (!(cond)) [[unlikely]] throw ::marrow::Error(::marrow::detail::cat(__VA_ARGS__)); \
  } while (0)
