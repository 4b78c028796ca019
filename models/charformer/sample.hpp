#pragma once
// Generation: sample_logits draws one character from the logits, Generator
// continues a prompt with the model's key/value cache (nanoGPT's generate(),
// without re-running the context for every character).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

#include <marrow/rng.hpp>

#include "model.hpp"

namespace marrow::charformer {

struct SampleOptions {
  double temperature = 0.8;  // 0: greedy (argmax)
  int top_k = 200;           // keep the k likeliest characters (0: all)
  // When the cache is full, refill it from the last block_size − slack tokens, so a
  // refill (a forward over that context) comes every `slack` tokens. 0 re-encodes the
  // last block_size tokens for every new token: nanoGPT's exact sliding window, O(T²).
  int slack = -1;  // −1: block_size / 4
};

// Draw a token from logits (V): scale by 1/temperature, keep the top k, sample the softmax.
template <class T> std::int32_t sample_logits(const Tensor<T>& logits, const SampleOptions& o, Rng& rng) {
  const index_t V = logits.numel();
  MARROW_CHECK(V > 0, "sample_logits: empty logits");
  MARROW_CHECK(o.temperature >= 0.0, "sample_logits: negative temperature ", o.temperature);
  const T* z = logits.data();
  if (o.temperature == 0.0 || o.top_k == 1) return std::int32_t(std::max_element(z, z + V) - z);
  std::vector<double> p(static_cast<std::size_t>(V));
  for (index_t i = 0; i < V; ++i) p[std::size_t(i)] = double(z[i]) / o.temperature;
  if (o.top_k > 0 && o.top_k < V) {
    std::vector<double> s = p;
    std::nth_element(s.begin(), s.begin() + (o.top_k - 1), s.end(), std::greater<double>());
    const double kth = s[std::size_t(o.top_k - 1)];
    for (auto& v : p)
      if (v < kth) v = -std::numeric_limits<double>::infinity();
  }
  const double m = *std::max_element(p.begin(), p.end());
  double sum = 0;
  for (auto& v : p) sum += (v = std::exp(v - m));
  return std::int32_t(rng.pick_weighted(p.data(), p.size(), sum));
}

// Autoregressive sampling with a KV cache: each new character costs one
// single-token pass over the cached keys, O(T), not a forward over the context.
template <class T> class Generator {
 public:
  Generator(GPT<T>& model, SampleOptions o = {}) : model_(model), cache_(model.make_cache()), o_(o) {
    const int bs = model.config.block_size;
    slack_ = o.slack < 0 ? std::max(1, bs / 4) : std::min(o.slack, bs - 1);
  }
  // Feed context (the prompt, or a sampled token); returns the logits (V) for the next token.
  const Tensor<T>& feed(std::span<const std::int32_t> tokens) {
    MARROW_CHECK(!tokens.empty(), "Generator::feed: no tokens");
    history_.insert(history_.end(), tokens.begin(), tokens.end());
    const index_t bs = model_.config.block_size;
    if (cache_.len + index_t(tokens.size()) > bs) {  // full: re-encode the most recent context
      cache_.clear();
      const index_t keep = std::min<index_t>(index_t(history_.size()), std::max<index_t>(bs - slack_, 1));
      tokens = std::span<const std::int32_t>(history_.data() + history_.size() - std::size_t(keep), std::size_t(keep));
      ++refills_;
    }
    tape_.reset();
    logits_ = model_.decode(tape_, cache_, tokens);
    return logits_;
  }
  std::int32_t next(Rng& rng) {
    MARROW_CHECK(logits_.defined(), "Generator::next: feed a prompt first");
    const std::int32_t id = sample_logits(logits_, o_, rng);
    const std::int32_t one[1] = {id};
    feed(one);
    return id;
  }
  const KVCache<T>& cache() const { return cache_; }
  int refills() const { return refills_; }

 private:
  GPT<T>& model_;
  KVCache<T> cache_;
  SampleOptions o_;
  int slack_ = 1, refills_ = 0;
  std::vector<std::int32_t> history_;
  Tape<T> tape_;
  Tensor<T> logits_;
};

}  // namespace marrow::charformer
