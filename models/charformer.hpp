#pragma once
// Character-level GPT, read in the order of nanoGPT's model.py: the config,
// token+position embedding op it fuses, attention, MLP, block, the model, then generation
// with a key/value cache, and the training loop nanoGPT's train.py runs.
//
// Shape letters: B batch, T sequence (≤ block_size), C n_embd, nh heads,
// hs = C / nh head size, V vocabulary, L keys held in a KV cache.
// Parameter names are nanoGPT's ("transformer.h.0.attn.c_attn.weight"), so a
// checkpoint maps one to one onto its state_dict (lm_head is tied to wte).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <marrow/data/text.hpp>
#include <marrow/init.hpp>
#include <marrow/loss.hpp>
#include <marrow/nn/attention.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/attention.hpp>
#include <marrow/ops/elementwise.hpp>
#include <marrow/ops/matmul.hpp>
#include <marrow/ops/nn.hpp>
#include <marrow/ops/shape.hpp>
#include <marrow/optim.hpp>
#include <marrow/schedule.hpp>
#include <marrow/train/checkpoint.hpp>
#include <marrow/train/json.hpp>

namespace marrow::charformer {

struct Config {
  int vocab_size = 65;   // distinct characters of the corpus
  int block_size = 64;   // longest context: rows of the position embedding
  int n_layer = 4;       // transformer blocks
  int n_head = 4;        // attention heads per block
  int n_embd = 128;      // channels C
  double dropout = 0.0;  // on embeddings, attention probabilities and residual branches
  bool bias = false;     // biases in Linear layers and LayerNorms (GPT-2: true)

  void validate() const {
    MARROW_CHECK(vocab_size > 0 && block_size > 0 && n_layer > 0 && n_head > 0 && n_embd > 0,
                 "charformer: sizes must be positive (vocab_size ", vocab_size, ", block_size ", block_size,
                 ", n_layer ", n_layer, ", n_head ", n_head, ", n_embd ", n_embd, ")");
    MARROW_CHECK(n_embd % n_head == 0, "charformer: n_embd ", n_embd, " is not divisible by n_head ", n_head);
    MARROW_CHECK(dropout >= 0.0 && dropout < 1.0, "charformer: dropout ", dropout, " must be in [0, 1)");
  }
};

// The model's shape as JSON (checkpoint metadata "model"), and back.
inline Json config_to_json(const Config& c) {
  return Json::object({{"vocab_size", c.vocab_size}, {"block_size", c.block_size}, {"n_layer", c.n_layer},
                       {"n_head", c.n_head}, {"n_embd", c.n_embd}, {"dropout", c.dropout}, {"bias", c.bias}});
}
inline Config config_from_json(const Json& j) {
  Config c;
  c.vocab_size = int(j.at("vocab_size").as_int());
  c.block_size = int(j.at("block_size").as_int());
  c.n_layer = int(j.at("n_layer").as_int());
  c.n_head = int(j.at("n_head").as_int());
  c.n_embd = int(j.at("n_embd").as_int());
  c.dropout = j.at("dropout").as_double();
  c.bias = j.at("bias").as_bool();
  c.validate();
  return c;
}

// ---- fused op ------------------------------------------------------------------------
// ids (B, T) -> wte[ids[b, t]] + wpe[pos0 + t]: (B, T, C). One op instead of
// two lookups and a broadcast add (three nodes, two (B, T, C) temporaries).
template <class T>
Var<T> token_position_embedding(Tape<T>& t, const Arg<T>& wte, const Arg<T>& wpe, const Tensor<std::int32_t>& ids,
                                index_t pos0 = 0) {
  t.check(wte, "token_position_embedding");
  t.check(wpe, "token_position_embedding");
  MARROW_CHECK(wte.ndim() == 2 && wpe.ndim() == 2 && wte.dim(1) == wpe.dim(1),
               "token_position_embedding: wte ", wte.shape().str(), " and wpe ", wpe.shape().str(),
               " must be (V, C) and (block_size, C)");
  MARROW_CHECK(ids.ndim() == 2, "token_position_embedding: ids must be (B, T), got ", ids.shape().str());
  const index_t V = wte.dim(0), C = wte.dim(1), P = wpe.dim(0), B = ids.dim(0), Tn = ids.dim(1);
  MARROW_CHECK(pos0 >= 0 && pos0 + Tn <= P, "token_position_embedding: positions [", pos0, ", ", pos0 + Tn,
               ") exceed block_size ", P, " (ids ", ids.shape().str(), ")");
  for (index_t i = 0; i < B * Tn; ++i)
    MARROW_CHECK(ids[i] >= 0 && ids[i] < V, "token_position_embedding: token id ", ids[i], " at position ", i,
                 " out of range for vocabulary size ", V);
  Tensor<T> out = Tensor<T>::uninitialized(Shape{B, Tn, C});
  const T* pe = wte.value().data();
  const T* pp = wpe.value().data() + pos0 * C;
  T* po = out.data();
  for (index_t i = 0; i < B * Tn; ++i) {
    const T* e = pe + index_t(ids[i]) * C;
    const T* p = pp + (i % Tn) * C;
    T* o = po + i * C;
#pragma omp simd
    for (index_t j = 0; j < C; ++j) o[j] = e[j] + p[j];
  }
  Var<T> res = t.push(std::move(out), wte, wpe);
  t.on_backward(res, [wte, wpe, res, ids, B, Tn, C, pos0] {
    const T* g = res.grad().data();
    T* dwte = wte.requires_grad() ? wte.grad().data() : nullptr;
    T* dwpe = wpe.requires_grad() ? wpe.grad().data() + pos0 * C : nullptr;
    for (index_t i = 0; i < B * Tn; ++i) {  // serial: repeated ids and positions share rows
      const T* gi = g + i * C;
      if (dwte) {
        T* d = dwte + index_t(ids[i]) * C;
#pragma omp simd
        for (index_t j = 0; j < C; ++j) d[j] += gi[j];
      }
      if (dwpe) {
        T* d = dwpe + (i % Tn) * C;
#pragma omp simd
        for (index_t j = 0; j < C; ++j) d[j] += gi[j];
      }
    }
  });
  return res;
}

// ---- key/value cache ------------------------------------------------------------------
// Per layer, keys and values of the tokens seen so far, (nh, block_size, hs) each.
template <class T> struct KVCache {
  std::vector<Tensor<T>> k, v;
  index_t len = 0;  // positions filled
  index_t capacity() const { return k.empty() ? 0 : k[0].dim(1); }
  void clear() { len = 0; }
};

// ---- attention ------------------------------------------------------------------------
// nanoGPT's CausalSelfAttention is the library's (nn/attention.hpp): the fused causal attention
// op, the unfused chain while attention dropout trains, and decode() on the KV cache.

template <class T> struct Mlp {
  Linear<T> c_fc, c_proj;  // C -> 4C -> C
  Dropout<T> dropout;
  Mlp(const Config& c, Rng& rng)
      : c_fc(c.n_embd, 4 * c.n_embd, rng, c.bias), c_proj(4 * c.n_embd, c.n_embd, rng, c.bias),
        dropout(T(c.dropout), rng) {}
  Var<T> operator()(Tape<T>& t, const Var<T>& x) { return dropout(t, c_proj(t, gelu(t, c_fc(t, x), GeluForm::Erf))); }
  void visit(Visitor<T>& v, const std::string& prefix) {
    c_fc.visit(v, join_name(prefix, "c_fc"));
    c_proj.visit(v, join_name(prefix, "c_proj"));
    dropout.visit(v, join_name(prefix, "dropout"));
  }
};

template <class T> struct Block {
  LayerNorm<T> ln_1;
  CausalSelfAttention<T> attn;
  LayerNorm<T> ln_2;
  Mlp<T> mlp;
  Block(const Config& c, Rng& rng)
      : ln_1(c.n_embd, T(1e-5), c.bias), attn(c.n_embd, c.n_head, rng, T(c.dropout), c.bias), ln_2(c.n_embd, T(1e-5), c.bias), mlp(c, rng) {}

  Var<T> operator()(Tape<T>& t, Var<T> x, Tensor<T>* probs = nullptr) {
    x = add(t, x, attn(t, ln_1(t, x), probs));
    return add(t, x, mlp(t, ln_2(t, x)));
  }
  Var<T> decode(Tape<T>& t, Var<T> x, Tensor<T>& kc, Tensor<T>& vc, index_t cache_len) {
    x = add(t, x, attn.decode(t, ln_1(t, x), kc, vc, cache_len));
    return add(t, x, mlp(t, ln_2(t, x)));
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    ln_1.visit(v, join_name(prefix, "ln_1"));
    attn.visit(v, join_name(prefix, "attn"));
    ln_2.visit(v, join_name(prefix, "ln_2"));
    mlp.visit(v, join_name(prefix, "mlp"));
  }
};

// ---- the model ------------------------------------------------------------------------
template <class T> struct GPT {
  Config config;
  Embedding<T> wte, wpe;  // (V, C) tokens, also the output head; (block_size, C) positions
  Dropout<T> drop;
  std::vector<Block<T>> h;
  LayerNorm<T> ln_f;

  GPT(const Config& c, Rng& rng)
      : config((c.validate(), c)), wte(c.vocab_size, c.n_embd, rng), wpe(c.block_size, c.n_embd, rng),
        drop(T(c.dropout), rng), ln_f(c.n_embd, T(1e-5), c.bias) {
    h.reserve(std::size_t(c.n_layer));
    for (int i = 0; i < c.n_layer; ++i) h.emplace_back(c, rng);
    // GPT-2 init: N(0, 0.02) for every matrix, zero biases; the projections that
    // write into the residual stream get std 0.02/√(2·n_layer), so its variance
    // does not grow with depth.
    for (auto& p : parameters<T>(*this)) {
      Tensor<T>& w = p.param->value();
      const bool proj = p.name.ends_with("c_proj.weight");
      if (w.ndim() >= 2) normal_(w, rng, 0.0, proj ? 0.02 / std::sqrt(2.0 * c.n_layer) : 0.02);
      else if (p.name.ends_with("bias")) w.zero();
    }
  }

  // idx (B, T) -> final hidden states (B, T, C), after ln_f. attn_probs, when
  // given, receives one (B, nh, T, T) tensor per layer.
  Var<T> hidden(Tape<T>& t, const Tensor<std::int32_t>& idx, std::vector<Tensor<T>>* attn_probs = nullptr) {
    MARROW_CHECK(idx.ndim() == 2, "charformer: token ids must be (B, T), got ", idx.shape().str());
    MARROW_CHECK(idx.dim(1) <= config.block_size, "charformer: sequence of length ", idx.dim(1),
                 " exceeds block_size ", config.block_size, " (ids ", idx.shape().str(), ")");
    Var<T> x = drop(t, token_position_embedding(t, wte.weight, wpe.weight, idx));  // (B, T, C)
    if (attn_probs) attn_probs->assign(h.size(), Tensor<T>());
    for (std::size_t i = 0; i < h.size(); ++i) x = h[i](t, x, attn_probs ? &(*attn_probs)[i] : nullptr);
    return ln_f(t, x);
  }
  // idx (B, T) -> logits (B, T, V), through the tied head.
  Var<T> operator()(Tape<T>& t, const Tensor<std::int32_t>& idx, std::vector<Tensor<T>>* attn_probs = nullptr) {
    return linear(t, hidden(t, idx, attn_probs), wte.weight);
  }
  // Mean next-character cross entropy of idx (B, T) against targets (B, T).
  Var<T> loss(Tape<T>& t, const Tensor<std::int32_t>& idx, const Tensor<std::int32_t>& targets,
              std::vector<Tensor<T>>* attn_probs = nullptr) {
    MARROW_CHECK(targets.shape() == idx.shape(), "charformer: targets ", targets.shape().str(), " do not match ids ",
                 idx.shape().str());
    const index_t BT = idx.numel();
    Var<T> x = reshape(t, hidden(t, idx, attn_probs), {BT, index_t(config.n_embd)});  // (B·T, C)
    return cross_entropy(t, linear(t, x, wte.weight), targets.reshape({BT}));
  }

  KVCache<T> make_cache() const {
    KVCache<T> c;
    const index_t hs = config.n_embd / config.n_head;
    for (int i = 0; i < config.n_layer; ++i) {
      c.k.push_back(Tensor<T>(Shape{config.n_head, config.block_size, hs}));
      c.v.push_back(Tensor<T>(Shape{config.n_head, config.block_size, hs}));
    }
    return c;
  }
  // Inference: append tokens to the cache and return the logits (V) after the last one.
  // Cost O(n·L) for n new tokens against L cached, instead of a forward over all L.
  Tensor<T> decode(Tape<T>& t, KVCache<T>& cache, std::span<const std::int32_t> tokens) {
    const index_t n = index_t(tokens.size());
    MARROW_CHECK(n > 0, "charformer decode: no tokens given");
    MARROW_CHECK(cache.capacity() == config.block_size && cache.k.size() == h.size(),
                 "charformer decode: cache was not made by this model's make_cache()");
    MARROW_CHECK(cache.len + n <= config.block_size, "charformer decode: ", cache.len, " cached + ", n,
                 " new tokens exceed block_size ", config.block_size);
    auto guard = t.no_grad();
    Tensor<std::int32_t> ids = Tensor<std::int32_t>::uninitialized(Shape{1, n});
    std::copy(tokens.begin(), tokens.end(), ids.data());
    Var<T> x = token_position_embedding(t, wte.weight, wpe.weight, ids, cache.len);  // (1, n, C)
    for (std::size_t i = 0; i < h.size(); ++i) x = h[i].decode(t, x, cache.k[i], cache.v[i], cache.len);
    cache.len += n;
    Var<T> last = slice(t, ln_f(t, x), 1, n - 1, n);                         // (1, 1, C)
    return linear(t, last, wte.weight).value().reshape({index_t(config.vocab_size)});  // (V)
  }

  // Every dropout generator, for checkpoints (resuming with dropout replays the same masks).
  std::vector<std::pair<std::string, Rng*>> dropout_rngs() {
    std::vector<std::pair<std::string, Rng*>> r{{"drop", &drop.rng}};
    for (std::size_t i = 0; i < h.size(); ++i) {
      const std::string p = "h." + std::to_string(i) + ".";
      r.push_back({p + "attn.attn_dropout", &h[i].attn.attn_dropout.rng});
      r.push_back({p + "attn.resid_dropout", &h[i].attn.resid_dropout.rng});
      r.push_back({p + "mlp.dropout", &h[i].mlp.dropout.rng});
    }
    return r;
  }

  void visit(Visitor<T>& v, const std::string& prefix) {
    const std::string tr = join_name(prefix, "transformer");
    wte.visit(v, join_name(tr, "wte"));
    wpe.visit(v, join_name(tr, "wpe"));
    drop.visit(v, join_name(tr, "drop"));
    for (std::size_t i = 0; i < h.size(); ++i) h[i].visit(v, join_name(tr, "h." + std::to_string(i)));
    ln_f.visit(v, join_name(tr, "ln_f"));
  }
};

// ---- generation -------------------------------------------------------------------------
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

// ---- monitoring ---------------------------------------------------------------------------
// Per block, the L2 norms of the attention sub-layer's parameters (ln_1 + attn)
// and of the MLP's (ln_2 + mlp), and their gradients.
struct BlockNorms {
  double attn_grad = 0, attn_weight = 0, mlp_grad = 0, mlp_weight = 0;
};
template <class T> std::vector<BlockNorms> block_norms(GPT<T>& model) {
  std::vector<BlockNorms> out(model.h.size());
  auto sq = [](const Tensor<T>& x) {
    double s = 0;
    for (index_t i = 0; i < x.numel(); ++i) s += double(x[i]) * double(x[i]);
    return s;
  };
  for (std::size_t i = 0; i < model.h.size(); ++i) {
    auto acc = [&](auto& part, const char* name, double& g, double& w) {
      for (auto& p : parameters<T>(part, name)) {
        w += sq(p.param->value());
        if (p.param->has_grad()) g += sq(p.param->grad());
      }
    };
    BlockNorms& b = out[i];
    acc(model.h[i].ln_1, "ln_1", b.attn_grad, b.attn_weight);
    acc(model.h[i].attn, "attn", b.attn_grad, b.attn_weight);
    acc(model.h[i].ln_2, "ln_2", b.mlp_grad, b.mlp_weight);
    acc(model.h[i].mlp, "mlp", b.mlp_grad, b.mlp_weight);
    for (double* v : {&b.attn_grad, &b.attn_weight, &b.mlp_grad, &b.mlp_weight}) *v = std::sqrt(*v);
  }
  return out;
}

// Mean entropy (nats) of the attention rows of probs (B, nh, T, T). A head that
// collapses onto one key gives 0; uniform causal attention over T keys ≈ log T − 1.
template <class T> double attention_entropy(const Tensor<T>& probs) {
  MARROW_CHECK(probs.ndim() == 4, "attention_entropy: probabilities must be (B, nh, T, Tk), got ", probs.shape().str());
  const index_t rows = probs.numel() / probs.dim(3), Tk = probs.dim(3);
  double total = 0;
  for (index_t r = 0; r < rows; ++r) {
    const T* p = probs.data() + r * Tk;
    double e = 0;
    for (index_t j = 0; j < Tk; ++j)
      if (p[j] > T(0)) e -= double(p[j]) * std::log(double(p[j]));
    total += e;
  }
  return rows ? total / double(rows) : 0.0;
}

// ---- checkpoints ----------------------------------------------------------------------------
// The vocabulary travels in the metadata as hex: a corpus may hold any byte, JSON strings may not.
inline std::map<std::string, std::string> checkpoint_metadata(const Config& c, const data::Vocab& v) {
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned char ch : v.chars) {
    hex += kHex[ch >> 4];
    hex += kHex[ch & 15];
  }
  return {{"model", config_to_json(c).dump()}, {"vocab_hex", hex}};
}
inline data::Vocab vocab_from_checkpoint(const CheckpointInfo& info, const std::string& path) {
  auto it = info.metadata.find("vocab_hex");
  MARROW_CHECK(it != info.metadata.end(), "checkpoint ", path, " has no vocabulary (not a charformer checkpoint?)");
  const std::string& h = it->second;
  auto nib = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(marrow::detail::cat("checkpoint ", path, ": vocabulary is not hex"));
  };
  MARROW_CHECK(h.size() % 2 == 0 && !h.empty(), "checkpoint ", path, ": bad vocabulary of ", h.size(), " hex digits");
  std::string chars;
  for (std::size_t i = 0; i < h.size(); i += 2) chars += char(nib(h[i]) * 16 + nib(h[i + 1]));
  return data::Vocab::load(chars);
}
inline Config config_from_checkpoint(const CheckpointInfo& info, const std::string& path) {
  auto it = info.metadata.find("model");
  MARROW_CHECK(it != info.metadata.end(), "checkpoint ", path, " has no model config (not a charformer checkpoint?)");
  return config_from_json(Json::parse(it->second));
}

// ---- evaluation -------------------------------------------------------------------------------
// Mean loss over `iters` random batches of (batch, block_size) windows drawn from `seed`
// (nanoGPT's estimate_loss, with batches fixed so evaluations compare like with like).
template <class T>
double mean_loss_random(GPT<T>& model, const std::vector<std::int32_t>& tokens, int batch, int iters,
                        std::uint64_t seed, Tape<T>& tape) {
  set_training<T>(model, false);
  Rng r(seed);
  double total = 0;
  for (int i = 0; i < iters; ++i) {
    data::TextBatch b = data::sample_text_batch(tokens, batch, model.config.block_size, r);
    tape.reset();
    auto guard = tape.no_grad();
    total += double(model.loss(tape, b.x, b.y).item());
  }
  set_training<T>(model, true);
  return total / iters;
}

// Mean loss over every character of `tokens` but the first, in consecutive windows of
// block_size (the last one shorter): each character is predicted exactly once.
template <class T> double mean_loss_full(GPT<T>& model, const std::vector<std::int32_t>& tokens, Tape<T>& tape) {
  const index_t bs = model.config.block_size, n = index_t(tokens.size()) - 1;
  MARROW_CHECK(n > 0, "charformer eval: need at least 2 characters, got ", tokens.size());
  constexpr index_t kRows = 32;  // windows per forward pass
  set_training<T>(model, false);
  double total = 0;
  for (index_t s = 0; s < n;) {
    // full windows go kRows at a time; the short tail alone
    const index_t rows = n - s >= bs ? std::min(kRows, (n - s) / bs) : 1, len = std::min(bs, n - s);
    Tensor<std::int32_t> x = Tensor<std::int32_t>::uninitialized(Shape{rows, len});
    Tensor<std::int32_t> y = Tensor<std::int32_t>::uninitialized(Shape{rows, len});
    for (index_t r = 0; r < rows; ++r) {
      std::copy_n(tokens.data() + s + r * len, len, x.data() + r * len);
      std::copy_n(tokens.data() + s + r * len + 1, len, y.data() + r * len);
    }
    tape.reset();
    auto guard = tape.no_grad();
    total += double(model.loss(tape, x, y).item()) * double(rows * len);
    s += rows * len;
  }
  set_training<T>(model, true);
  return total / double(n);
}

// ---- training -------------------------------------------------------------------------------
// nanoGPT's train.py for one text file, with its configuration names.
struct Args {
  Config model;
  int batch_size = 12;
  double lr = 1e-3;              // peak learning rate (learning_rate)
  double min_lr = 1e-4;          // cosine floor
  int warmup = 100;              // linear warmup steps (warmup_iters)
  std::int64_t steps = 2000;     // optimizer steps (max_iters)
  std::int64_t lr_decay_iters = 0;  // cosine reaches min_lr here (0: = steps)
  double weight_decay = 0.1;     // AdamW, on matrices only
  double beta1 = 0.9, beta2 = 0.99;
  double grad_clip = 1.0;        // global grad-norm clip (0: off)
  int eval_interval = 250;       // steps between evaluations
  int eval_iters = 200;          // batches per loss estimate
  std::uint64_t seed = 1337;     // model init and training batches
  std::uint64_t eval_seed = 4242;  // evaluation batches: the same ones at every evaluation
};

struct StepStats {
  std::int64_t step = 0;  // steps done after this one
  double loss = 0, lr = 0, grad_norm = 0;
  std::vector<BlockNorms> blocks;    // filled on diagnostic steps
  std::vector<double> attn_entropy;  // per layer, on diagnostic steps
};

template <class T> class Trainer {
 public:
  // text: the corpus; vocab: its characters (from the text, or a checkpoint's).
  Trainer(Args a, const data::Vocab& vocab, const std::string& text)
      : args(fix(a, vocab)), vocab(vocab), init_rng(args.seed), model(args.model, init_rng),
        params(parameters<T>(model)),
        opt(decay_groups(params), AdamWOptions<T>{.lr = T(args.lr), .beta1 = T(args.beta1), .beta2 = T(args.beta2),
                                                  .eps = T(1e-8), .weight_decay = T(args.weight_decay)}),
        schedule{T(args.lr), args.warmup, args.lr_decay_iters > 0 ? args.lr_decay_iters : std::max<std::int64_t>(args.steps, args.warmup + 1), T(args.min_lr)},
        batch_rng(args.seed + 1) {
    MARROW_CHECK(args.batch_size > 0 && args.eval_iters > 0 && args.eval_interval > 0,
                 "charformer: batch_size, eval_iters and eval_interval must be positive");
    auto [tr, va] = data::split_train_val(vocab.encode(text), 0.9);
    train_tokens = std::move(tr);
    val_tokens = std::move(va);
    const auto need = std::size_t(args.model.block_size) + 1;
    MARROW_CHECK(train_tokens.size() >= need && val_tokens.size() >= need, "charformer: the text has ",
                 text.size(), " characters; its 90/10 split needs at least block_size + 1 = ", need,
                 " in each part (train ", train_tokens.size(), ", validation ", val_tokens.size(), ")");
  }

  // One optimizer step on a random batch. `diagnose` adds per-block norms and attention entropy.
  StepStats train_step(bool diagnose = false) {
    StepStats s;
    s.lr = double(schedule.at(step));
    opt.set_lr(T(s.lr));
    data::TextBatch b = data::sample_text_batch(train_tokens, args.batch_size, args.model.block_size, batch_rng);
    tape.reset();
    std::vector<Tensor<T>> probs;
    Var<T> loss = model.loss(tape, b.x, b.y, diagnose ? &probs : nullptr);
    s.loss = double(loss.item());
    check_finite("loss", s.loss);
    tape.backward(loss);
    if (diagnose) {
      s.blocks = block_norms(model);  // before clipping, which would hide a blow-up
      for (auto& p : probs) s.attn_entropy.push_back(attention_entropy(p));
    }
    s.grad_norm = double(args.grad_clip > 0 ? clip_grad_norm(params, T(args.grad_clip)) : grad_norm(params));
    check_finite("gradient norm", s.grad_norm);
    opt.step();
    opt.zero_grad();
    s.step = ++step;
    return s;
  }

  // Mean loss over eval_iters batches of a split, drawn from eval_seed (the same batches every time).
  double estimate_loss(const std::vector<std::int32_t>& tokens) {
    return mean_loss_random(model, tokens, args.batch_size, args.eval_iters, args.eval_seed, tape);
  }

  bool done() const { return step >= args.steps; }

  // Weights, AdamW moments, the batch and dropout generators, and in the metadata the
  // step, the model shape, the vocabulary and the caller's run config: all a resume needs.
  Checkpoint<T> checkpoint() {
    Checkpoint<T> c(model);
    c.add_state([this](const StateVisitor<T>& f) { opt.visit_state(f); });
    c.add_rng("batches", batch_rng);
    for (auto& [name, rng] : model.dropout_rngs()) c.add_rng(name, *rng);
    return c;
  }
  void save(const std::string& path, const std::string& run_config = "") {
    checkpoint().save(path, step, run_config, checkpoint_metadata(model.config, vocab));
    last_checkpoint = path;
  }
  // Continue from a checkpoint of the same model shape and vocabulary.
  CheckpointInfo resume(const std::string& path) {
    MARROW_CHECK(std::filesystem::exists(path), "--resume: no checkpoint at ", path);
    MARROW_CHECK(vocab_from_checkpoint(Checkpoint<T>::info_of(safetensors::read(path), path), path).chars == vocab.chars,
                 "charformer: checkpoint ", path, " was trained on a different character set than this text");
    CheckpointInfo info = checkpoint().load(path);
    step = info.step;
    last_checkpoint = path;
    return info;
  }

  Args args;
  data::Vocab vocab;
  Rng init_rng;
  GPT<T> model;
  ParamList<T> params;
  AdamW<T> opt;
  sched::WarmupCosine<T> schedule;
  Rng batch_rng;
  std::vector<std::int32_t> train_tokens, val_tokens;
  std::int64_t step = 0;
  std::string last_checkpoint;  // named in the message when a run goes non-finite

 private:
  static Args fix(Args a, const data::Vocab& v) {
    a.model.vocab_size = v.size();
    a.model.validate();
    return a;
  }
  void check_finite(const char* what, double v) const {
    if (std::isfinite(v)) [[likely]]
      return;
    throw Error(marrow::detail::cat("charformer: ", what, " became ", std::isnan(v) ? "NaN" : "infinite", " at step ",
                            step + 1, " (lr ", schedule.at(step), "); stopped before the update. Last good checkpoint: ",
                            last_checkpoint.empty() ? "none saved yet" : last_checkpoint,
                            ". Try a lower --lr or --grad-clip."));
  }
  Tape<T> tape;
};

}  // namespace marrow::charformer

/* Backward rules of the fused ops above:
   token_position_embedding  dwte[ids[b, t]] += g[b, t]     dwpe[pos0 + t] += Σ_b g[b, t]
*/
