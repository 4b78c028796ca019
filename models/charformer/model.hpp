#pragma once
// Character-level GPT, read in the order of nanoGPT's model.py: the config,
// attention, MLP, block, the model. Training is in train.hpp, generation in
// sample.hpp, loss estimates and diagnostics in metrics.hpp, the checkpoint's
// vocabulary in checkpoint.hpp.
//
// Shape letters: B batch, T sequence (≤ block_size), C n_embd, nh heads,
// hs = C / nh head size, V vocabulary, L keys held in a KV cache.
// Parameter names are nanoGPT's ("transformer.h.0.attn.c_attn.weight"), so a
// checkpoint maps one to one onto its state_dict (lm_head is tied to wte).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <marrow/init.hpp>
#include <marrow/loss.hpp>
#include <marrow/nn/attention.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/elementwise.hpp>
#include <marrow/ops/matmul.hpp>
#include <marrow/ops/shape.hpp>
#include <marrow/recompute.hpp>

namespace marrow::charformer {

struct Config {
  int vocab_size = 65;   // distinct characters of the corpus
  int block_size = 64;   // longest context: rows of the position embedding
  int n_layer = 4;       // transformer blocks
  int n_head = 4;        // attention heads per block
  int n_embd = 128;      // channels C
  double dropout = 0.0;  // on embeddings, attention probabilities and residual branches
  bool bias = false;     // biases in Linear layers and LayerNorms (GPT-2: true)
  // Training memory, not the model: keep only each block's input and run the block
  // again in backward (recompute.hpp). Same bits either way, so it is not in fields():
  // checkpoints neither record nor require it.
  bool recompute = false;

  // The checkpoint's "model" entry (train/model_config.hpp).
  template <class F> void fields(F& f) {
    f("vocab_size", vocab_size);
    f("block_size", block_size);
    f("n_layer", n_layer);
    f("n_head", n_head);
    f("n_embd", n_embd);
    f("dropout", dropout);
    f("bias", bias);
  }
  void validate() const {
    MARROW_CHECK(vocab_size > 0 && block_size > 0 && n_layer > 0 && n_head > 0 && n_embd > 0,
                 "charformer: sizes must be positive (vocab_size ", vocab_size, ", block_size ", block_size,
                 ", n_layer ", n_layer, ", n_head ", n_head, ", n_embd ", n_embd, ")");
    MARROW_CHECK(n_embd % n_head == 0, "charformer: n_embd ", n_embd, " is not divisible by n_head ", n_head);
    MARROW_CHECK(dropout >= 0.0 && dropout < 1.0, "charformer: dropout ", dropout, " must be in [0, 1)");
  }
};

// ---- attention ------------------------------------------------------------------------
// nanoGPT's CausalSelfAttention is the library's (nn/attention.hpp): the fused causal attention
// op (tiled from a few hundred keys on, its dropout inside), and decode() on the KV cache.

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

  Var<T> operator()(Tape<T>& t, Var<T> x, Tensor<T>* attn_entropy = nullptr) {
    x = add(t, x, attn(t, ln_1(t, x), attn_entropy));
    return add(t, x, mlp(t, ln_2(t, x)));
  }
  // The same block keeping only x for backward, which runs the block again
  // (recompute.hpp) with its dropout generators replayed: the same bits as
  // operator(). attn_entropy, when given, is written again by that re-run.
  Var<T> recomputed(Tape<T>& t, const Var<T>& x, Tensor<T>* attn_entropy = nullptr) {
    auto segment = [this, attn_entropy](Tape<T>& s, const std::vector<Var<T>>& in) { return (*this)(s, in[0], attn_entropy); };
    return recompute(t, segment, {x}, {&attn.attn_dropout.rng, &attn.resid_dropout.rng, &mlp.dropout.rng});
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

// Per layer, keys and values of the tokens seen so far, (nh, block_size, hs) each.
template <class T> struct KVCache {
  std::vector<Tensor<T>> k, v;
  index_t len = 0;  // positions filled
  index_t capacity() const { return k.empty() ? 0 : k[0].dim(1); }
  void clear() { len = 0; }
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

  // idx (B, T) -> final hidden states (B, T, C), after ln_f. attn_entropy, when
  // given, receives per layer each query row's attention entropy, (B, nh, T).
  Var<T> hidden(Tape<T>& t, const Tensor<std::int32_t>& idx, std::vector<Tensor<T>>* attn_entropy = nullptr) {
    MARROW_CHECK(idx.ndim() == 2, "charformer: token ids must be (B, T), got ", idx.shape().str());
    MARROW_CHECK(idx.dim(1) <= config.block_size, "charformer: sequence of length ", idx.dim(1),
                 " exceeds block_size ", config.block_size, " (ids ", idx.shape().str(), ")");
    Var<T> x = drop(t, token_position_embedding(t, wte.weight, wpe.weight, idx));  // (B, T, C)
    if (attn_entropy) attn_entropy->assign(h.size(), Tensor<T>());
    for (std::size_t i = 0; i < h.size(); ++i) {
      Tensor<T>* e = attn_entropy ? &(*attn_entropy)[i] : nullptr;
      x = config.recompute ? h[i].recomputed(t, x, e) : h[i](t, x, e);  // (B, T, C)
    }
    return ln_f(t, x);
  }
  // idx (B, T) -> logits (B, T, V), through the tied head.
  Var<T> operator()(Tape<T>& t, const Tensor<std::int32_t>& idx, std::vector<Tensor<T>>* attn_entropy = nullptr) {
    return linear(t, hidden(t, idx, attn_entropy), wte.weight);
  }
  // Mean next-character cross entropy of idx (B, T) against targets (B, T).
  Var<T> loss(Tape<T>& t, const Tensor<std::int32_t>& idx, const Tensor<std::int32_t>& targets,
              std::vector<Tensor<T>>* attn_entropy = nullptr) {
    MARROW_CHECK(targets.shape() == idx.shape(), "charformer: targets ", targets.shape().str(), " do not match ids ",
                 idx.shape().str());
    const index_t BT = idx.numel();
    Var<T> x = reshape(t, hidden(t, idx, attn_entropy), {BT, index_t(config.n_embd)});  // (B·T, C)
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

}  // namespace marrow::charformer
