#pragma once
// Multi-head causal self-attention as in nanoGPT's model.py. Its ops (the
// fused attention, split_heads, merge_heads) are in ops/attention.hpp.
// Shape letters: B batch, T sequence, C channels (n_embd), nh heads,
// hs = C / nh head size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "../ops/attention.hpp"
#include "../ops/matmul.hpp"
#include "../ops/nn.hpp"
#include "layers.hpp"

namespace marrow {

// nanoGPT's CausalSelfAttention: c_attn (C → 3C) → q, k, v heads → causal
// attention → merge heads → c_proj (C → C) → residual dropout.
// Attention-probability dropout runs inside the fused op (a hashed mask that
// backward regenerates); attn_dropout holds its p, its training flag and the Rng
// that draws one seed per forward, so runs replay from the model's seed.
template <class T> struct CausalSelfAttention {
  Linear<T> c_attn, c_proj;
  Dropout<T> attn_dropout, resid_dropout;
  int n_head;
  CausalSelfAttention(index_t n_embd, int n_head_, Rng& rng, T dropout_p = T(0), bool bias = true)
      : c_attn(n_embd, 3 * n_embd, rng, bias),
        c_proj(n_embd, n_embd, rng, bias),
        attn_dropout(dropout_p, rng),
        resid_dropout(dropout_p, rng),
        n_head(n_head_) {
    MARROW_CHECK(n_head_ > 0 && n_embd % n_head_ == 0, "CausalSelfAttention: n_embd ", n_embd,
                 " is not divisible by n_head ", n_head_);
  }

  // x (B, T, C) -> (B, T, C). entropy, when given, receives each query row's attention
  // entropy (B, nh, T) in nats.
  Var<T> operator()(Tape<T>& t, const Var<T>& x, Tensor<T>* entropy = nullptr) {
    t.check(x, "CausalSelfAttention");
    const index_t C = c_proj.out_features();
    MARROW_CHECK(x.ndim() == 3 && x.dim(2) == C, "CausalSelfAttention: input must be (B, T, ", C, "), got ",
                 x.shape().str());
    Var<T> qkv = c_attn(t, x);                   // (B, T, 3C)
    Var<T> q = split_heads(t, qkv, 3, 0, n_head);  // (B, nh, T, hs)
    Var<T> k = split_heads(t, qkv, 3, 1, n_head);
    Var<T> v = split_heads(t, qkv, 3, 2, n_head);
    AttentionDropout drop;
    if (attn_dropout.training && attn_dropout.p > T(0)) drop = {float(attn_dropout.p), attn_dropout.rng.next_u64()};
    Var<T> y = scaled_dot_product_attention(t, q, k, v, /*causal=*/true, T(0), drop, entropy);  // (B, nh, T, hs)
    return resid_dropout(t, c_proj(t, merge_heads(t, y)));  // (B, T, C)
  }

  // Inference on n new tokens x (1, n, C) at positions [cache_len, cache_len + n): their keys and
  // values join the layer's cache kc, vc (nh, capacity, hs), and the queries attend to
  // everything cached, so generating a token costs O(L·C) instead of a forward over the context.
  Var<T> decode(Tape<T>& t, const Var<T>& x, Tensor<T>& kc, Tensor<T>& vc, index_t cache_len) {
    Var<T> qkv = c_attn(t, x);
    Var<T> q = split_heads(t, qkv, 3, 0, n_head);  // (1, nh, n, hs)
    Var<T> k = split_heads(t, qkv, 3, 1, n_head);
    Var<T> v = split_heads(t, qkv, 3, 2, n_head);
    const index_t nh = q.dim(1), n = q.dim(2), hs = q.dim(3), cap = kc.dim(1), L = cache_len + n;
    MARROW_CHECK(x.dim(0) == 1 && L <= cap, "CausalSelfAttention::decode: ", n, " tokens after ", cache_len,
                 " cached exceed the cache's ", cap, " (batch ", x.dim(0), ", must be 1)");
    Tensor<T> K = Tensor<T>::uninitialized(Shape{1, nh, L, hs}), V = Tensor<T>::uninitialized(Shape{1, nh, L, hs});
    for (index_t h = 0; h < nh; ++h) {
      std::copy_n(k.value().data() + h * n * hs, n * hs, kc.data() + (h * cap + cache_len) * hs);
      std::copy_n(v.value().data() + h * n * hs, n * hs, vc.data() + (h * cap + cache_len) * hs);
      std::copy_n(kc.data() + h * cap * hs, L * hs, K.data() + h * L * hs);  // O(L·C) per token, as attention itself
      std::copy_n(vc.data() + h * cap * hs, L * hs, V.data() + h * L * hs);
    }
    Var<T> y = scaled_dot_product_attention(t, q, t.input(std::move(K)), t.input(std::move(V)), /*causal=*/true);
    return c_proj(t, merge_heads(t, y));
  }

  void visit(Visitor<T>& v, const std::string& prefix) {
    c_attn.visit(v, join_name(prefix, "c_attn"));
    c_proj.visit(v, join_name(prefix, "c_proj"));
    attn_dropout.visit(v, join_name(prefix, "attn_dropout"));
    resid_dropout.visit(v, join_name(prefix, "resid_dropout"));
  }
};

}  // namespace marrow
