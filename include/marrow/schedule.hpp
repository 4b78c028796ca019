#pragma once
// Learning-rate schedules: plain value types (aggregates, so they read like a
// config: sched::WarmupCosine<float>{.base_lr = 6e-4f, .warmup_steps = 100, ...}).
//
// `T at(std::int64_t step) const` gives the lr to use for the optimizer step
// that follows `step` steps already taken (step = 0 before the first update):
//     opt.set_lr(schedule.at(step)); opt.step();
// Formulas follow the reference each names, so runs can be compared with it.
// ReduceOnPlateau is the one stateful schedule: it reacts to a metric.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "tensor.hpp"

namespace marrow::sched {

namespace detail {
inline constexpr double kPi = 3.14159265358979323846;
inline void check_step(std::int64_t step, const char* name) {
  MARROW_CHECK(step >= 0, name, ": negative step ", step);
}
}  // namespace detail

template <class T> struct Constant {
  T lr;
  T at(std::int64_t step) const {
    detail::check_step(step, "Constant");
    return lr;
  }
};

// torch StepLR: base·γ^⌊step / step_size⌋.
template <class T> struct Step {
  T base_lr;
  std::int64_t step_size;
  T gamma = T(0.1);
  T at(std::int64_t step) const {
    detail::check_step(step, "Step");
    MARROW_CHECK(step_size > 0, "Step: step_size must be positive, got ", step_size);
    return T(double(base_lr) * std::pow(double(gamma), double(step / step_size)));
  }
};

// torch ExponentialLR: base·γ^step.
template <class T> struct Exponential {
  T base_lr;
  T gamma;
  T at(std::int64_t step) const {
    detail::check_step(step, "Exponential");
    return T(double(base_lr) * std::pow(double(gamma), double(step)));
  }
};

// nanoGPT's get_lr(it), exactly:
//   it < warmup:        base·(it + 1)/(warmup + 1)       (linear warmup, never 0)
//   it > total_steps:   min_lr
//   otherwise:          min + ½(1 + cos(π·(it − warmup)/(total − warmup)))·(base − min)
// (total_steps is nanoGPT's lr_decay_iters.)
template <class T> struct WarmupCosine {
  T base_lr;
  std::int64_t warmup_steps;
  std::int64_t total_steps;
  T min_lr = T(0);
  T at(std::int64_t it) const {
    detail::check_step(it, "WarmupCosine");
    MARROW_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, "WarmupCosine: need 0 <= warmup_steps (",
                 warmup_steps, ") < total_steps (", total_steps, ")");
    if (it < warmup_steps) return T(double(base_lr) * double(it + 1) / double(warmup_steps + 1));
    if (it > total_steps) return min_lr;
    const double ratio = double(it - warmup_steps) / double(total_steps - warmup_steps);
    const double coeff = 0.5 * (1.0 + std::cos(detail::kPi * ratio));
    return T(double(min_lr) + coeff * (double(base_lr) - double(min_lr)));
  }
};

// Linear annealing from base_lr to end_lr over total_steps, then end_lr. With
// end_lr = 0 this is CleanRL PPO's frac = 1 − (iteration − 1)/num_iterations
// (iteration counted from 1, i.e. step = iteration − 1).
template <class T> struct LinearDecay {
  T base_lr;
  T end_lr;
  std::int64_t total_steps;
  T at(std::int64_t step) const {
    detail::check_step(step, "LinearDecay");
    MARROW_CHECK(total_steps > 0, "LinearDecay: total_steps must be positive, got ", total_steps);
    const double frac = std::min(1.0, double(step) / double(total_steps));
    return T(double(base_lr) + (double(end_lr) - double(base_lr)) * frac);
  }
};

// torch OneCycleLR (two phases, cosine annealing; momentum cycling is not done):
// from max/div_factor up to max_lr over the first pct_start of the steps, then
// down to max/(div_factor·final_div_factor) at step total_steps − 1.
template <class T> struct OneCycle {
  T max_lr;
  std::int64_t total_steps;
  double pct_start = 0.3;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  T at(std::int64_t step) const {
    detail::check_step(step, "OneCycle");
    MARROW_CHECK(total_steps > 1, "OneCycle: total_steps must be > 1, got ", total_steps);
    MARROW_CHECK(step <= total_steps, "OneCycle: step ", step, " past total_steps ", total_steps);
    MARROW_CHECK(pct_start > 0 && pct_start < 1, "OneCycle: pct_start must lie in (0, 1), got ", pct_start);
    const double initial = double(max_lr) / div_factor, final_lr = initial / final_div_factor;
    const double end1 = pct_start * double(total_steps) - 1.0, end2 = double(total_steps) - 1.0;
    auto cos_anneal = [](double a, double b, double pct) { return b + (a - b) / 2.0 * (std::cos(detail::kPi * pct) + 1.0); };
    const double s = double(step);
    if (s <= end1) return T(cos_anneal(initial, double(max_lr), s / end1));
    return T(cos_anneal(double(max_lr), final_lr, (s - end1) / (end2 - end1)));
  }
};

enum class PlateauMode { Min, Max };

// torch ReduceLROnPlateau (threshold_mode 'rel'): after more than `patience`
// updates without a relative improvement of `threshold`, lr ← max(lr·factor,
// min_lr), then `cooldown` updates during which bad epochs are not counted.
template <class T> struct ReduceOnPlateau {
  T lr;
  PlateauMode mode = PlateauMode::Min;
  T factor = T(0.1);
  int patience = 10;
  double threshold = 1e-4;
  int cooldown = 0;
  T min_lr = T(0);
  double eps = 1e-8;  // reductions smaller than this are ignored
  // State (saved by visit_state).
  T best = std::numeric_limits<T>::quiet_NaN();  // NaN: no metric seen yet
  int num_bad = 0;
  int cooldown_counter = 0;

  // Feed one metric (e.g. validation loss per epoch); returns the lr to use now.
  T update(T metric) {
    MARROW_CHECK(factor < T(1) && factor >= T(0), "ReduceOnPlateau: factor must lie in [0, 1), got ", factor);
    const double m = double(metric);
    if (std::isnan(best)) best = mode == PlateauMode::Min ? std::numeric_limits<T>::infinity()
                                                          : -std::numeric_limits<T>::infinity();
    const double b = double(best);
    const bool better = mode == PlateauMode::Min ? m < b * (1.0 - threshold) : m > b * (1.0 + threshold);
    if (better) {
      best = metric;
      num_bad = 0;
    } else {
      ++num_bad;
    }
    if (cooldown_counter > 0) {
      --cooldown_counter;
      num_bad = 0;
    }
    if (num_bad > patience) {
      const T reduced = std::max(lr * factor, min_lr);
      if (double(lr) - double(reduced) > eps) lr = reduced;
      cooldown_counter = cooldown;
      num_bad = 0;
    }
    return lr;
  }
  T at(std::int64_t) const { return lr; }

  // State for checkpoints, like Optimizer::visit_state: one tensor "plateau.state"
  // holding (lr, best, num_bad, cooldown_counter); writing into it restores them.
  template <class F> void visit_state(F&& fn) {
    Tensor<T> s({4}, {lr, best, T(num_bad), T(cooldown_counter)});
    fn(std::string("plateau.state"), s);
    MARROW_CHECK(s.numel() == 4, "ReduceOnPlateau: state tensor has ", s.numel(), " values, expected 4");
    lr = s[0];
    best = s[1];
    num_bad = int(s[2]);
    cooldown_counter = int(s[3]);
  }
};

}  // namespace marrow::sched
