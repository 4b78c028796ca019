#pragma once
// BatchNorm's running statistics: the one update rule, and a log of the updates
// that data-parallel training (dist/data_parallel.hpp) replays in shard order on
// every rank, so that N processes end a step with the running statistics one
// process computing the same shards one after another would have.
#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "../tensor.hpp"

namespace marrow {

// running ← (1 − momentum)·running + momentum·batch, for the mean and the unbiased
// variance. One out-of-line function for the op and the replay alike: the same
// instructions, whatever the compiler contracts into FMAs, give the same bits.
template <class T>
[[gnu::noinline]] void update_running_stats(T* running_mean, T* running_var, const T* batch_mean,
                                            const T* batch_var_unbiased, index_t channels, T momentum) {
  for (index_t c = 0; c < channels; ++c) {
    running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * batch_mean[c];
    running_var[c] = (T(1) - momentum) * running_var[c] + momentum * batch_var_unbiased[c];
  }
}

// While installed (running_stats_log<T>() points at one), every training-mode
// batch_norm appends its batch statistics and the buffers they update.
template <class T> struct RunningStatsLog {
  struct Update {
    T* running_mean;
    T* running_var;
    index_t channels;
    T momentum;
    std::size_t at;  // batch mean at values[at], unbiased variance at values[at + channels]
  };
  std::vector<Update> updates;
  std::vector<T> values;
  // Each buffer's values before its first logged update: what a replay starts from.
  std::vector<std::pair<T*, std::vector<T>>> before;

  void record(T* rm, T* rv, const T* mean, const T* var_unbiased, index_t channels, T momentum) {
    bool seen = false;
    for (auto& [p, v] : before) seen = seen || p == rm;
    if (!seen) {
      before.push_back({rm, std::vector<T>(rm, rm + channels)});
      before.push_back({rv, std::vector<T>(rv, rv + channels)});
    }
    updates.push_back({rm, rv, channels, momentum, values.size()});
    values.insert(values.end(), mean, mean + channels);
    values.insert(values.end(), var_unbiased, var_unbiased + channels);
  }
  // Every logged buffer back to its value before the first update.
  void restore() const {
    for (auto& [p, v] : before) std::copy(v.begin(), v.end(), p);
  }
};

template <class T> RunningStatsLog<T>*& running_stats_log() {
  static thread_local RunningStatsLog<T>* log = nullptr;
  return log;
}

}  // namespace marrow
