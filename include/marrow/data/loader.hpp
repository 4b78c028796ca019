#pragma once
// Batches made on one background thread while the caller trains.
//
// Determinism: batch b is always make_batch(b, Rng(seed, b)), produced and
// delivered in order b = 0, 1, 2, ..., so what a run sees never depends on
// thread timing, prefetch depth or how long a step takes.
// One worker thread, not a pool: the training step already uses every core
// through OpenMP; the loader's job is only to hide decode/augment latency.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../rng.hpp"
#include "../shape.hpp"

namespace marrow::data {

// An independent, well-mixed seed for stream `index` of `seed` (splitmix64 finaliser).
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) {
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(seed ^ mix(index));
}

// Endless stream of batches 0, 1, 2, ... from make_batch(index, rng), `prefetch` made ahead.
template <class Batch> class BatchLoader {
 public:
  using MakeBatch = std::function<Batch(std::int64_t batch_index, Rng& rng)>;

  BatchLoader(MakeBatch make_batch, std::uint64_t seed, int prefetch = 2)
      : make_(std::move(make_batch)), seed_(seed), prefetch_(prefetch) {
    MARROW_CHECK(prefetch >= 1, "BatchLoader: prefetch ", prefetch, " must be >= 1");
    MARROW_CHECK(bool(make_), "BatchLoader: empty make_batch function");
    worker_ = std::thread([this] { run(); });
  }
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;
  ~BatchLoader() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();  // waits for at most the batch being made
  }

  // The next batch in order; blocks until it is ready. An exception thrown by
  // make_batch is rethrown here, after the batches made before it.
  Batch next() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return !queue_.empty() || error_; });
    if (queue_.empty()) std::rethrow_exception(error_);
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    ++delivered_;
    lock.unlock();
    cv_.notify_all();
    return b;
  }

  std::int64_t delivered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return delivered_;
  }
  // Batches finished by the worker so far (delivered or waiting in the queue).
  std::int64_t produced() const {
    std::lock_guard<std::mutex> lock(mu_);
    return produced_;
  }

 private:
  void run() {
    for (std::int64_t b = 0;; ++b) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || std::int64_t(queue_.size()) < prefetch_; });
        if (stop_) return;
      }
      try {
        Rng rng(derive_seed(seed_, std::uint64_t(b)));
        Batch batch = make_(b, rng);
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(batch));
        ++produced_;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
      cv_.notify_all();
    }
  }

  MakeBatch make_;
  std::uint64_t seed_;
  std::int64_t prefetch_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  std::int64_t produced_ = 0, delivered_ = 0;
  bool stop_ = false;
  std::thread worker_;  // started in the constructor body, once every member above exists
};

struct DataLoaderOptions {
  index_t batch_size = 32;
  bool shuffle = true;     // a fresh permutation of the samples every epoch
  bool drop_last = false;  // skip the final short batch of an epoch
  std::uint64_t seed = 0;  // drives the shuffles and every batch's Rng
  int prefetch = 2;        // batches made ahead of the caller
};

// Epochs over N samples in batches of sample indices; make_batch(indices, rng) builds one.
// Epoch e's order is a permutation drawn from (seed, e) alone; batches run on across epochs.
template <class Batch> class DataLoader {
 public:
  using MakeBatch = std::function<Batch(const std::vector<index_t>& indices, Rng& rng)>;

  DataLoader(index_t num_samples, MakeBatch make_batch, DataLoaderOptions opt = {})
      : n_(num_samples), opt_(opt), per_epoch_(count_batches(num_samples, opt)),
        loader_([this, make = std::move(make_batch)](std::int64_t b, Rng& rng) { return make(indices(b), rng); },
                derive_seed(opt.seed, 1), opt.prefetch) {}

  Batch next() { return loader_.next(); }
  index_t batches_per_epoch() const { return per_epoch_; }
  // The epoch the next batch belongs to.
  index_t epoch() const { return loader_.delivered() / per_epoch_; }
  index_t num_samples() const { return n_; }

 private:
  static index_t count_batches(index_t n, const DataLoaderOptions& o) {
    MARROW_CHECK(o.batch_size >= 1, "DataLoader: batch_size ", o.batch_size, " must be >= 1");
    const index_t per = o.drop_last ? n / o.batch_size : (n + o.batch_size - 1) / o.batch_size;
    MARROW_CHECK(per >= 1, "DataLoader: ", n, " samples give no batch of ", o.batch_size,
                 o.drop_last ? " with drop_last" : "");
    return per;
  }
  // Runs on the worker thread only, so the cached permutation needs no lock.
  std::vector<index_t> indices(std::int64_t b) {
    const index_t epoch = b / per_epoch_, k = b % per_epoch_;
    if (epoch != perm_epoch_) {
      perm_.resize(std::size_t(n_));
      std::iota(perm_.begin(), perm_.end(), index_t(0));
      if (opt_.shuffle) Rng(derive_seed(opt_.seed, 0x5eed0000ULL + std::uint64_t(epoch))).shuffle(perm_);
      perm_epoch_ = epoch;
    }
    const index_t lo = k * opt_.batch_size, hi = std::min(n_, lo + opt_.batch_size);
    return {perm_.begin() + lo, perm_.begin() + hi};
  }

  index_t n_;
  DataLoaderOptions opt_;
  index_t per_epoch_;
  std::vector<index_t> perm_;
  index_t perm_epoch_ = -1;
  BatchLoader<Batch> loader_;  // last: its thread calls indices(), which reads the members above
};

}  // namespace marrow::data
