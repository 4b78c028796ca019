#pragma once
// Data parallelism that gives the same bits on any number of processes.
//
// A global batch of B samples is cut into K shards of B/K (K a power of two,
// `--shards K`). Each rank owns K/N consecutive shards and computes their
// gradients one shard at a time, each shard's loss the mean over its own
// samples. The K shard gradients are summed in one fixed pairwise tree in
// shard order, ((g0 + g1) + (g2 + g3)) + ..., the lower levels inside a rank,
// the upper ones across ranks (Comm::tree_sum), then scaled by 1/K (exact: a
// power of two). So one process with --shards 2 and two processes with one
// shard each compute the same additions in the same order, and a run resumes
// at another process count as long as K and the threads per shard stay fixed.
//
//   dist::ShardSum<float> grads(params, world, K);
//   for (int s = grads.first_shard(); s < grads.end_shard(); ++s) {
//     auto [b0, b1] = dist::shard_range(batch, K, s);
//     ... forward and backward of samples b0..b1 of the global batch ...
//     grads.add_shard();                 // takes the shard's gradients, zeroes the params' ones
//   }
//   grads.finish();                      // the params' gradients hold the global batch's mean gradient
//   opt.step();
#include <algorithm>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "../tape.hpp"
#include "../tensor.hpp"
#include "comm.hpp"

namespace marrow::dist {

// Samples [begin, end) of a global batch of `batch` that shard `shard` of K takes.
inline std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t batch, int shards, int shard) {
  MARROW_CHECK(shards >= 1 && batch % shards == 0, "--shards ", shards, " must divide the global batch of ", batch);
  const std::int64_t per = batch / shards;
  return {per * shard, per * (shard + 1)};
}

// The part of a global batch's sample indices (one DataLoader batch, the same
// on every rank) that shard `shard` of K trains on: how each epoch's shuffled
// order is dealt to the ranks, every sample to exactly one shard.
template <class I> std::vector<I> shard_indices(const std::vector<I>& batch, int shards, int shard) {
  const auto [b0, b1] = shard_range(std::int64_t(batch.size()), shards, shard);
  return std::vector<I>(batch.begin() + b0, batch.begin() + b1);
}

// Samples [b0, b1) of a batch tensor (axis 0), a copy; the whole batch as it is.
template <class T> Tensor<T> batch_rows(const Tensor<T>& batch, std::int64_t b0, std::int64_t b1) {
  MARROW_CHECK(batch.shape().rank() >= 1 && 0 <= b0 && b0 <= b1 && b1 <= batch.shape()[0], "batch_rows: samples [",
               b0, ", ", b1, ") of a batch ", batch.shape().str());
  if (b0 == 0 && b1 == batch.shape()[0]) return batch;
  Shape s = batch.shape();
  const index_t row = s[0] > 0 ? batch.numel() / s[0] : 0;
  s[0] = b1 - b0;
  Tensor<T> out(s);
  std::copy_n(batch.data() + b0 * row, (b1 - b0) * row, out.data());
  return out;
}

// A data-parallel step's time spent combining the ranks' shards (gradient sum,
// statistics, BatchNorm replay), and how much of it overlapped computation.
struct AllReduceTiming {
  double ms = 0, hidden_ms = 0;
  int processes = 1;
  int buckets = 0, early_buckets = 0;  // gradient buckets, and how many started before backward's last closure
};

// Checks a shard count against the world: a power of two that the world size divides.
inline void check_shards(int shards, const Comm& comm) {
  MARROW_CHECK(is_power_of_two(shards), "--shards ", shards, " must be a power of two (1, 2, 4, ...)");
  MARROW_CHECK(shards % comm.size() == 0, "--shards ", shards, " must be a multiple of the number of processes (",
               comm.size(), ")");
}

// The consecutive shards [begin, end) of K that this rank computes.
struct ShardSpan {
  int begin, end;
};
inline ShardSpan local_shards(const Comm& comm, int shards) {
  check_shards(shards, comm);
  const int per = shards / comm.size();
  return {comm.rank() * per, (comm.rank() + 1) * per};
}

// The K shard gradients of one step, summed in the fixed tree. The cross-rank
// part goes in buckets: fixed ranges of kBucketValues values of the flattened
// gradient (the parameters in list order), counted from its end, because
// backward finishes the last parameters first. A bucket can start while the
// last local shard's backward still runs (start_bucket, from
// DataParallel::backward), or all start at finish().
template <class T> class ShardSum {
 public:
  static constexpr std::size_t kBucketValues = std::size_t(1) << 18;  // 1 MiB of floats, as DDP's first bucket

  ShardSum(ParamList<T> params, const Comm& comm, int shards, std::size_t bucket_values = kBucketValues)
      : params_(std::move(params)), comm_(comm), shards_(shards), mine_(dist::local_shards(comm, shards)) {
    MARROW_CHECK(bucket_values > 0 && bucket_values <= comm.max_piece<T>(), "ShardSum: buckets of ", bucket_values,
                 " values (1 to ", comm.max_piece<T>(), ")");
    for (auto& p : params_) {
      offsets_.push_back(numel_);
      numel_ += std::size_t(p.param->numel());
    }
    offsets_.push_back(numel_);
    for (std::size_t hi = numel_; hi > 0;) {
      const std::size_t lo = hi > bucket_values ? hi - bucket_values : 0;
      buckets_.push_back({lo, hi});
      hi = lo;
    }
    pending_.resize(buckets_.size());
    for (auto& p : pending_) p = std::make_unique<Comm::PendingSum<T>>();
  }

  int shards() const { return shards_; }
  int local_shards() const { return mine_.end - mine_.begin; }
  int first_shard() const { return mine_.begin; }
  int end_shard() const { return mine_.end; }

  // Bucket b covers values [lo, hi) of the flattened gradient; bucket 0 is the last range.
  struct Range {
    std::size_t lo, hi;
  };
  const std::vector<Range>& buckets() const { return buckets_; }
  // Where parameter i's values begin in the flattened gradient (offsets()[params] = the total).
  const std::vector<std::size_t>& offsets() const { return offsets_; }

  // After a shard's backward: its gradients join the partial sums (a binary
  // counter: two sums of equal height merge, older on the left) and the
  // parameters' gradients are zeroed for the next shard.
  void add_shard() {
    MARROW_CHECK(taken_ < local_shards(), "ShardSum: more shards added than this rank owns (", local_shards(), ")");
    if (shards_ == 1) {  // one shard: its gradient is the batch's, nothing to move
      ++taken_;
      return;
    }
    std::vector<T>& buf = free_buffer();
    T* out = buf.data();
    for (auto& p : params_) {
      Tensor<T>& g = p.param->grad();
      std::copy_n(g.data(), g.numel(), out);
      out += g.numel();
      g.zero();
    }
    stack_.push_back({&buf, 0});
    while (stack_.size() >= 2 && stack_[stack_.size() - 2].height == stack_.back().height) {
      Partial right = stack_.back();
      stack_.pop_back();
      Partial& left = stack_.back();
      T* l = left.sum->data();
      const T* r = right.sum->data();
      for (std::size_t i = 0; i < numel_; ++i) l[i] = l[i] + r[i];
      ++left.height;
      spare_.push_back(right.sum);
    }
    ++taken_;
  }

  // The last local shard goes straight from the parameters' gradients into
  // the buckets, one bucket at a time, as its backward makes them final.
  void begin_last_shard() {
    MARROW_CHECK(shards_ > 1 && taken_ == local_shards() - 1, "ShardSum: begin_last_shard before the last of ",
                 local_shards(), " shards (", taken_, " added)");
    last_in_params_ = true;
    ++taken_;
  }

  // Bucket b's values are final on this rank: its local tree sum goes into
  // the result buffer and its sum across ranks starts.
  void start_bucket(std::size_t b) {
    const Range r = buckets_[b];
    std::vector<T>& out = result();
    if (last_in_params_) {
      // The merges add_shard would do for the last shard, on this range only:
      // last, then each older partial on its left, the newest first.
      for (std::size_t i = 0; i < params_.size(); ++i) {
        const std::size_t lo = std::max(r.lo, offsets_[i]), hi = std::min(r.hi, offsets_[i + 1]);
        if (lo < hi) std::copy_n(params_[i].param->grad().data() + (lo - offsets_[i]), hi - lo, out.data() + lo);
      }
      for (std::size_t k = stack_.size(); k-- > 0;) {
        const T* left = stack_[k].sum->data();
        for (std::size_t j = r.lo; j < r.hi; ++j) out[j] = left[j] + out[j];
      }
    }
    pending_[b]->start(comm_, out.data() + r.lo, r.hi - r.lo);
  }
  // Moves the started sums along; true when every started one is done. A
  // bucket moves from its reduce-scatter to its all-gather only after every
  // earlier bucket did, so all ranks start the all-gathers in bucket order.
  bool progress() {
    bool done = true;
    for (auto& p : pending_)
      if (!p->test()) {
        done = false;
        if (p->scattering()) break;
      }
    return done;
  }

  // Every local shard added (or the last one begun and its buckets started):
  // the remaining buckets, the 1/K scale, and the result back in the
  // parameters' gradients.
  void finish() {
    MARROW_CHECK(taken_ == local_shards(), "ShardSum: ", taken_, " of this rank's ", local_shards(), " shards added");
    taken_ = 0;
    if (shards_ == 1) return;
    if (!last_in_params_) {
      MARROW_CHECK(stack_.size() == 1, "ShardSum: the local shards did not form one pairwise tree");
      result_ = stack_.back().sum;
      stack_.clear();
    }
    for (std::size_t b = started_; b < buckets_.size(); ++b) start_bucket(b);
    for (auto& p : pending_) p->wait();
    const T scale = T(1) / T(shards_);
    const T* in = result_->data();
    for (auto& p : params_) {
      Tensor<T>& g = p.param->grad();
      T* d = g.data();
      for (index_t i = 0; i < g.numel(); ++i) d[i] = in[i] * scale;
      in += g.numel();
    }
    for (auto& part : stack_) spare_.push_back(part.sum);
    stack_.clear();
    spare_.push_back(result_);
    result_ = nullptr;
    last_in_params_ = false;
    started_ = 0;
  }

  // Buckets started so far this step, in order: every rank starts them in the same order.
  std::size_t started() const { return started_; }
  void start_next_bucket() { start_bucket(started_++); }

 private:
  struct Partial {
    std::vector<T>* sum;
    int height;
  };
  // Buffers live as long as the ShardSum: steady-state steps allocate nothing.
  std::vector<T>& free_buffer() {
    if (spare_.empty()) {
      buffers_.push_back(std::make_unique<std::vector<T>>(numel_));
      return *buffers_.back();
    }
    std::vector<T>* b = spare_.back();
    spare_.pop_back();
    return *b;
  }
  // Where the step's sum is built: the last shard's own buffer when it is summed bucket by bucket.
  std::vector<T>& result() {
    if (!result_) result_ = &free_buffer();
    return *result_;
  }

  ParamList<T> params_;
  const Comm& comm_;
  int shards_;
  ShardSpan mine_;
  std::size_t numel_ = 0;
  std::vector<std::size_t> offsets_;
  std::vector<Range> buckets_;
  std::vector<std::unique_ptr<Comm::PendingSum<T>>> pending_;
  int taken_ = 0;
  bool last_in_params_ = false;
  std::size_t started_ = 0;
  std::vector<T>* result_ = nullptr;
  std::vector<Partial> stack_;
  std::vector<std::unique_ptr<std::vector<T>>> buffers_;
  std::vector<std::vector<T>*> spare_;
};

}  // namespace marrow::dist
