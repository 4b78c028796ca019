#pragma once
// Watching a run: a non-finite loss guard, early stopping, and a Ctrl-C flag
// so the loop can save a checkpoint before it exits.
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <limits>
#include <string>

#include "../config.hpp"

namespace marrow {

// The one non-finite guard: throws when `value` (a loss, a gradient norm) is
// NaN or infinite, naming what, the step and the last checkpoint worth
// resuming from (the run itself cannot recover: its weights are already
// poisoned). `hint` ends the message ("Try a lower --lr.").
inline void check_finite(double value, std::int64_t step, const std::string& what, const std::string& last_checkpoint,
                         const std::string& hint = "") {
  if (std::isfinite(value)) [[likely]]
    return;
  throw Error(detail::cat(what, " became ", std::isnan(value) ? "NaN" : (value > 0 ? "+inf" : "-inf"), " at step ",
                          step, "; last good checkpoint: ", last_checkpoint.empty() ? "none saved yet" : last_checkpoint,
                          hint.empty() ? "" : ". ", hint));
}

// Stop when the monitored value has not improved by more than min_delta for
// `patience` consecutive updates (Keras/Lightning semantics).
class EarlyStopping {
 public:
  enum class Mode { Min, Max };
  explicit EarlyStopping(int patience, Mode mode = Mode::Min, double min_delta = 0.0)
      : patience_(patience), mode_(mode), min_delta_(std::abs(min_delta)) {
    MARROW_CHECK(patience >= 0, "EarlyStopping: patience must be >= 0, got ", patience);
  }

  // Feed one evaluation; returns true when training should stop. A NaN value
  // never counts as an improvement.
  bool update(double value) {
    improved_ = mode_ == Mode::Min ? value < best_ - min_delta_ : value > best_ + min_delta_;
    if (!has_best_ && !std::isnan(value)) improved_ = true;
    if (improved_) {
      best_ = value;
      has_best_ = true;
      bad_ = 0;
    } else {
      ++bad_;
    }
    return should_stop();
  }
  bool should_stop() const { return bad_ > patience_; }
  bool improved() const { return improved_; }  // did the last update set a new best (time to save "best")
  double best() const { return best_; }
  int bad_updates() const { return bad_; }

 private:
  int patience_;
  Mode mode_;
  double min_delta_;
  double best_ = std::numeric_limits<double>::quiet_NaN();
  bool has_best_ = false, improved_ = false;
  int bad_ = 0;
};

// ---- Ctrl-C ------------------------------------------------------------------
// The first SIGINT/SIGTERM only sets a flag; the loop checks interrupted(),
// saves and exits. A second SIGINT kills the process as usual, so a wedged run
// can still be stopped.
namespace detail {
inline std::atomic<int> g_interrupts{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal flag must be lock-free");
inline void marrow_on_interrupt(int sig) {
  if (g_interrupts.fetch_add(1) >= 1 && sig == SIGINT) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}
}  // namespace detail

inline void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = detail::marrow_on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in flight continue rather than fail with EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}
inline bool interrupted() { return detail::g_interrupts.load(std::memory_order_relaxed) > 0; }
inline void clear_interrupt() { detail::g_interrupts.store(0); }

}  // namespace marrow
