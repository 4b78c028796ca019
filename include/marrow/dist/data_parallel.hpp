#pragma once
// One optimizer step's gradient over a global batch, computed shard by shard on
// however many processes, with the same bits as one process computing every
// shard in turn.
//
// Gradients are not the only state a forward pass touches. Two more would
// differ between one process and several, and are made independent of it:
//  - dropout: shard s of a step draws from a stream keyed by (the stream at the
//    step's start, s), and the stream then moves on by one draw, whatever K/N;
//  - BatchNorm running statistics: every shard's batch statistics are gathered,
//    and each rank replays their updates in shard order from the step's start.
// With one shard (K = 1) none of this runs: a plain run keeps its usual bits.
//
// The gradient sum across processes starts while the last local shard's
// backward still runs: dp.backward(tape, loss) instead of tape.backward(loss)
// sends each bucket (shards.hpp) once the tape has run every closure that adds
// to it, as PyTorch's DDP does, and keeps MPI moving between closures.
//
//   dist::DataParallel<float> dp(params, world, run.shards(), {.rngs = {&net.drop.rng}, .buffers = buffers<float>(net)});
//   const double loss = dp.step(batch, [&](std::int64_t b0, std::int64_t b1) {
//     tape.reset();
//     Var<float> l = loss_of(samples b0..b1 of the batch);
//     dp.backward(tape, l);
//     return double(l.item());           // the shard's mean loss (or {loss, accuracy, ...})
//   });                                  // params' gradients: the global batch's mean; loss: the mean over shards
//   opt.step();
#include <algorithm>
#include <chrono>
#include <limits>
#include <unordered_map>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "../ops/running_stats.hpp"
#include "../rng.hpp"
#include "shards.hpp"

namespace marrow::dist {

// Shard `shard`'s stream for this step, drawn from the stream as the step began.
inline Rng shard_stream(const Rng& at_step_start, int shard) {
  Rng r = at_step_start;
  return Rng(r.next_u64() ^ (0x9e3779b97f4a7c15ull * std::uint64_t(shard + 1)));
}

template <class T> struct DataParallelOptions {
  std::vector<Rng*> rngs;                               // streams a shard's forward draws from (dropout)
  std::vector<std::pair<std::string, Tensor<T>*>> buffers;  // non-trained state sent from rank 0 at start
  std::size_t bucket_values = ShardSum<T>::kBucketValues;    // gradient values per all-reduce bucket
};

template <class T> class DataParallel {
 public:
  DataParallel(ParamList<T> params, const Comm& comm, int shards, DataParallelOptions<T> options = {})
      : params_(params), comm_(comm), grads_(std::move(params), comm, shards, options.bucket_values), o_(std::move(options)) {
    // Ranks that built different models stop here with a message, not in a sum that never matches.
    std::string shapes;
    for (auto& p : params_) shapes += p.name + p.param->value().shape().str() + ";";
    for (auto& [name, b] : o_.buffers) shapes += name + b->shape().str() + ";";
    comm_.agree("parameter shapes", shapes);
    for (std::size_t i = 0; i < params_.size(); ++i) index_of_[params_[i].param->node()] = i;
    first_use_.resize(params_.size());
    ready_at_.resize(grads_.buckets().size());
  }

  int shards() const { return grads_.shards(); }
  ShardSpan local_shards() const { return {grads_.first_shard(), grads_.end_shard()}; }
  const AllReduceTiming& timing() const { return timing_; }

  // Runs `shard(b0, b1)` (forward and backward of samples [b0, b1) of a global
  // batch of `batch`, returning the shard's mean loss, or a vector of per-shard
  // means) for each of this rank's shards; afterwards the parameters' gradients
  // hold the global batch's mean gradient and the result is the mean over all K
  // shards, the same on every rank.
  template <class F> auto step(std::int64_t batch, F&& shard) {
    using R = std::invoke_result_t<F&, std::int64_t, std::int64_t>;
    static_assert(std::is_same_v<R, double> || std::is_same_v<R, std::vector<double>>,
                  "DataParallel::step: the shard function returns its mean loss (double) or a vector of means");
    if (!synced_) sync_from_root();
    const int K = grads_.shards();
    const bool sharded = K > 1;
    const ShardSpan mine = local_shards();
    const int local = mine.end - mine.begin;
    std::vector<Rng> starts;
    if (sharded)
      for (Rng* r : o_.rngs) starts.push_back(*r);
    RunningStatsLog<T> log;
    std::vector<std::size_t> log_at;  // where each local shard's updates begin
    if (sharded) running_stats_log<T>() = &log;
    std::vector<std::vector<double>> stats;
    overlapped_ = false;
    hidden_ms_ = 0;
    early_ = 0;
    try {
      for (int s = mine.begin; s < mine.end; ++s) {
        last_shard_ = s == mine.end - 1;
        for (std::size_t i = 0; i < o_.rngs.size(); ++i)
          if (sharded) *o_.rngs[i] = shard_stream(starts[i], s);
        log_at.push_back(log.updates.size());
        const auto [b0, b1] = shard_range(batch, K, s);
        if constexpr (std::is_same_v<R, double>)
          stats.push_back({shard(b0, b1)});
        else
          stats.push_back(shard(b0, b1));
        if (!(last_shard_ && overlapped_)) grads_.add_shard();
      }
    } catch (...) {
      running_stats_log<T>() = nullptr;
      last_shard_ = false;
      throw;
    }
    last_shard_ = false;
    running_stats_log<T>() = nullptr;
    const auto t0 = std::chrono::steady_clock::now();
    grads_.finish();
    std::vector<double> mean = mean_over_shards(stats, local, K);
    if (sharded) {
      replay_running_stats(log, log_at, local);
      for (std::size_t i = 0; i < o_.rngs.size(); ++i) {
        *o_.rngs[i] = starts[i];
        o_.rngs[i]->next_u64();
      }
    }
    timing_.hidden_ms = hidden_ms_;
    timing_.ms = hidden_ms_ + std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    timing_.processes = comm_.size();
    timing_.buckets = int(grads_.buckets().size());
    timing_.early_buckets = early_;
    if constexpr (std::is_same_v<R, double>)
      return mean[0];
    else
      return mean;
  }

  // A shard's backward. In the last local shard of a run over several
  // processes, each bucket of the gradient starts its sum across ranks as
  // soon as the closures still to run cannot change it (Tape::param_uses);
  // elsewhere it is tape.backward(loss).
  void backward(Tape<T>& tape, const Var<T>& loss) {
    if (!last_shard_ || comm_.size() == 1) {
      tape.backward(loss);
      return;
    }
    // Where each parameter is first used on this tape; unused ones are final already.
    constexpr std::size_t kUnused = std::numeric_limits<std::size_t>::max();
    std::fill(first_use_.begin(), first_use_.end(), kUnused);
    for (const auto& [node, at] : tape.param_uses()) {
      auto it = index_of_.find(node);
      if (it != index_of_.end()) first_use_[it->second] = std::min(first_use_[it->second], at);
    }
    // A bucket is final once the loop reaches the earliest first use among its parameters.
    const auto& buckets = grads_.buckets();
    const auto& offsets = grads_.offsets();
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      std::size_t ready = kUnused;
      for (std::size_t i = 0; i < params_.size(); ++i)
        if (offsets[i] < buckets[b].hi && offsets[i + 1] > buckets[b].lo) ready = std::min(ready, first_use_[i]);
      ready_at_[b] = ready;
    }
    grads_.begin_last_shard();
    overlapped_ = true;
    bool in_flight = false;
    auto since = std::chrono::steady_clock::now();
    // Buckets start in their fixed order on every rank (MPI matches collectives by order).
    tape.backward_observed(loss, [&](std::size_t done_from) {
      while (grads_.started() < buckets.size() && ready_at_[grads_.started()] >= done_from) {
        if (!in_flight) since = std::chrono::steady_clock::now(), in_flight = true;
        grads_.start_next_bucket();
        early_ += done_from > 0 ? 1 : 0;
      }
      if (in_flight && grads_.progress()) {
        hidden_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
        in_flight = false;
      }
    });
    if (in_flight)
      hidden_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
  }

  // Rank 0's parameters and buffers on every rank (done before the first step,
  // so that a resumed or freshly built model starts from one copy).
  void sync_from_root() {
    for (auto& p : params_) broadcast(p.param->value());
    for (auto& [name, b] : o_.buffers) broadcast(*b);
    synced_ = true;
  }

 private:
  void broadcast(Tensor<T>& t) {
    if (comm_.size() > 1) comm_.broadcast(t.data(), std::size_t(t.numel()) * sizeof(T));
  }

  // The shards' stats summed in the same pairwise tree as the gradients, then / K.
  std::vector<double> mean_over_shards(std::vector<std::vector<double>>& stats, int local, int K) const {
    const std::size_t n = stats[0].size();
    for (auto& s : stats)
      MARROW_CHECK(s.size() == n, "DataParallel::step: shards returned different numbers of values");
    for (int width = 1; width < local; width *= 2)
      for (int i = 0; i + width < local; i += 2 * width)
        for (std::size_t j = 0; j < n; ++j)
          stats[std::size_t(i)][j] = stats[std::size_t(i)][j] + stats[std::size_t(i + width)][j];
    std::vector<double> sum = stats[0];
    comm_.tree_sum(sum.data(), n);
    for (double& v : sum) v /= double(K);
    return sum;
  }

  // Undo this step's local running-statistics updates and apply all K shards'
  // in shard order. Every shard runs the same layers, so each logs the same
  // sequence of updates at the same offsets, only with its own values.
  void replay_running_stats(const RunningStatsLog<T>& log, const std::vector<std::size_t>& log_at, int local) {
    if (log.updates.empty()) return;
    const std::size_t per_shard = log.updates.size() / std::size_t(local);
    const std::size_t values_per_shard = log.values.size() / std::size_t(local);
    for (int s = 0; s < local; ++s)
      MARROW_CHECK(log_at[std::size_t(s)] == std::size_t(s) * per_shard && per_shard * std::size_t(local) == log.updates.size(),
                   "DataParallel: the shards of one step ran different BatchNorm layers");
    std::vector<T> all(log.values.size() * std::size_t(comm_.size()));
    comm_.allgather(log.values.data(), log.values.size(), all.data());
    log.restore();
    for (std::size_t s = 0; s < all.size() / values_per_shard; ++s) {
      const T* v = all.data() + s * values_per_shard;
      for (std::size_t u = 0; u < per_shard; ++u) {
        const auto& e = log.updates[u];
        update_running_stats(e.running_mean, e.running_var, v + e.at, v + e.at + std::size_t(e.channels), e.channels,
                             e.momentum);
      }
    }
  }

  ParamList<T> params_;
  const Comm& comm_;
  ShardSum<T> grads_;
  DataParallelOptions<T> o_;
  bool synced_ = false;
  AllReduceTiming timing_;
  // The bucketed overlap of the last local shard's backward (backward()).
  bool last_shard_ = false, overlapped_ = false;
  std::unordered_map<const void*, std::size_t> index_of_;  // parameter node -> index in params_
  std::vector<std::size_t> first_use_, ready_at_;
  double hidden_ms_ = 0;  // time this step's sums spent in flight while backward ran
  int early_ = 0;
};

}  // namespace marrow::dist
