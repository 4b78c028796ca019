#pragma once
// Layers: plain structs that own their parameters, start from PyTorch's default
// initialization, and are called like functions:
//     Conv2d<float> conv(3, 16, 3, rng, {.padding = 1});
//     Var<float> y = conv(tape, x);                       // (N, 16, H, W)
// Each has visit(Visitor<T>&, prefix) (see module.hpp) so models list their
// parameters, buffers and train/eval flags by name. Models compose layers
// explicitly; there is no Sequential.
//
// Draw order from the Rng: weight, then bias, so a seed gives the same layer
// every time. Parameterless layers (pools, activations) still have visit() so
// a model can visit every member alike.
#include <cmath>
#include <cstdint>
#include <string>

#include "../init.hpp"
#include "../ops/conv.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/matmul.hpp"
#include "../ops/nn.hpp"
#include "../ops/pool.hpp"
#include "../ops/shape.hpp"
#include "module.hpp"

namespace marrow {

namespace detail {
// PyTorch's reset_parameters for Linear/Conv: kaiming_uniform(a = √5) on the
// weight, which is uniform(±1/√fan_in), and the bias uniform(±1/√fan_in).
template <class T> void torch_default_init(Param<T>& weight, Param<T>* bias, Rng& rng) {
  kaiming_uniform_(weight.value(), rng, std::sqrt(5.0));
  if (bias && bias->value().defined()) {
    const double bound = 1.0 / std::sqrt(double(compute_fans(weight.shape()).fan_in));
    uniform_(bias->value(), rng, -bound, bound);
  }
}
template <class T> Var<T> maybe_var(Param<T>& p) { return p.value().defined() ? Var<T>(p) : Var<T>(); }
template <class T> void visit_optional(Visitor<T>& v, const std::string& name, Param<T>& p) {
  if (p.value().defined()) v.visit_param(name, p);
}
}  // namespace detail

// x (..., in) -> (..., out).
template <class T> struct Linear {
  Param<T> weight;  // (out, in)
  Param<T> bias;    // (out), empty when built without bias
  Linear(index_t in, index_t out, Rng& rng, bool with_bias = true) : weight(Tensor<T>::uninitialized({out, in})) {
    MARROW_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in ", in, ", out ", out);
    if (with_bias) bias = Param<T>(Tensor<T>::uninitialized({out}));
    detail::torch_default_init(weight, &bias, rng);
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) { return linear(t, x, weight, detail::maybe_var(bias)); }
  void visit(Visitor<T>& v, const std::string& prefix) {
    v.visit_param(join_name(prefix, "weight"), weight);
    detail::visit_optional(v, join_name(prefix, "bias"), bias);
  }
  index_t in_features() const { return weight.shape()[1]; }
  index_t out_features() const { return weight.shape()[0]; }
};

// ids (any shape) -> ids.shape + (dim). Initialized N(0, 1) like PyTorch.
template <class T> struct Embedding {
  Param<T> weight;  // (num, dim)
  Embedding(index_t num, index_t dim, Rng& rng) : weight(Tensor<T>::uninitialized({num, dim})) {
    MARROW_CHECK(num > 0 && dim > 0, "Embedding: sizes must be positive, got num ", num, ", dim ", dim);
    normal_(weight.value(), rng);
  }
  Var<T> operator()(Tape<T>& t, const Tensor<std::int32_t>& ids) { return embedding(t, weight, ids); }
  void visit(Visitor<T>& v, const std::string& prefix) { v.visit_param(join_name(prefix, "weight"), weight); }
};

struct Conv2dOptions {
  int stride = 1;
  int padding = 0;
  int dilation = 1;
  bool bias = true;
};

// x (N, in, H, W) -> (N, out, Ho, Wo); square kernel.
template <class T> struct Conv2d {
  Param<T> weight;  // (out, in, k, k)
  Param<T> bias;    // (out) or empty
  Conv2dOptions opt;
  Conv2d(index_t in, index_t out, int kernel, Rng& rng, Conv2dOptions o = {})
      : weight(Tensor<T>::uninitialized({out, in, kernel, kernel})), opt(o) {
    MARROW_CHECK(in > 0 && out > 0 && kernel > 0, "Conv2d: sizes must be positive, got in ", in, ", out ", out,
                 ", kernel ", kernel);
    if (o.bias) bias = Param<T>(Tensor<T>::uninitialized({out}));
    detail::torch_default_init(weight, &bias, rng);
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) {
    return conv2d(t, x, weight, detail::maybe_var(bias), opt.stride, opt.padding, opt.dilation);
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    v.visit_param(join_name(prefix, "weight"), weight);
    detail::visit_optional(v, join_name(prefix, "bias"), bias);
  }
};

struct ConvTranspose2dOptions {
  int stride = 1;
  int padding = 0;
  int output_padding = 0;
  int dilation = 1;
  bool bias = true;
};

// x (N, in, H, W) -> (N, out, (H−1)·stride − 2·padding + dilation·(k−1) + output_padding + 1, ...).
// Weight (in, out, k, k) as in PyTorch, whose init takes fan_in from dim 1 (out·k·k).
template <class T> struct ConvTranspose2d {
  Param<T> weight;  // (in, out, k, k)
  Param<T> bias;    // (out) or empty
  ConvTranspose2dOptions opt;
  ConvTranspose2d(index_t in, index_t out, int kernel, Rng& rng, ConvTranspose2dOptions o = {})
      : weight(Tensor<T>::uninitialized({in, out, kernel, kernel})), opt(o) {
    MARROW_CHECK(in > 0 && out > 0 && kernel > 0, "ConvTranspose2d: sizes must be positive, got in ", in, ", out ",
                 out, ", kernel ", kernel);
    if (o.bias) bias = Param<T>(Tensor<T>::uninitialized({out}));
    detail::torch_default_init(weight, &bias, rng);
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) {
    return conv_transpose2d(t, x, weight, detail::maybe_var(bias), opt.stride, opt.padding, opt.output_padding,
                            opt.dilation);
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    v.visit_param(join_name(prefix, "weight"), weight);
    detail::visit_optional(v, join_name(prefix, "bias"), bias);
  }
};

// BatchNorm1d and BatchNorm2d in one: normalizes axis 1 of (N, C) or (N, C, H, W).
// Training uses batch statistics and updates the running ones; eval uses the running ones.
template <class T> struct BatchNorm {
  Param<T> weight;  // (C) ones; empty when affine is false
  Param<T> bias;    // (C) zeros
  Tensor<T> running_mean, running_var;
  T momentum, eps;
  bool training = true;
  explicit BatchNorm(index_t channels, T eps_ = T(1e-5), T momentum_ = T(0.1), bool affine = true)
      : running_mean(zeros<T>({channels})), running_var(ones<T>({channels})), momentum(momentum_), eps(eps_) {
    MARROW_CHECK(channels > 0, "BatchNorm: channels must be positive, got ", channels);
    if (affine) {
      weight = Param<T>(ones<T>({channels}));
      bias = Param<T>(zeros<T>({channels}));
    }
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) {
    return batch_norm(t, x, detail::maybe_var(weight), detail::maybe_var(bias), running_mean, running_var, training,
                      momentum, eps);
  }
  // relu(bn(x)) as one op (batch_norm_relu): the same values and gradients, fewer passes.
  Var<T> then_relu(Tape<T>& t, const Var<T>& x) {
    return batch_norm_relu(t, x, detail::maybe_var(weight), detail::maybe_var(bias), running_mean, running_var,
                           training, momentum, eps);
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    detail::visit_optional(v, join_name(prefix, "weight"), weight);
    detail::visit_optional(v, join_name(prefix, "bias"), bias);
    v.visit_buffer(join_name(prefix, "running_mean"), running_mean);
    v.visit_buffer(join_name(prefix, "running_var"), running_var);
    v.visit_mode(training);
  }
};

// 3×3 conv (no bias: BatchNorm's shift replaces it) + BatchNorm + ReLU.
template <class T> struct ConvBnRelu {
  Conv2d<T> conv;
  BatchNorm<T> bn;
  ConvBnRelu(index_t in, index_t out, int stride, Rng& rng)
      : conv(in, out, 3, rng, {.stride = stride, .padding = 1, .bias = false}), bn(out) {}
  Var<T> operator()(Tape<T>& t, const Var<T>& x) { return bn.then_relu(t, conv(t, x)); }  // relu(bn(conv(x)))
  void visit(Visitor<T>& v, const std::string& prefix) {
    conv.visit(v, join_name(prefix, "conv"));
    bn.visit(v, join_name(prefix, "bn"));
  }
};

// Normalizes the last dim (C); weight ones, bias zeros (bias optional, as in nanoGPT).
template <class T> struct LayerNorm {
  Param<T> weight;  // (C)
  Param<T> bias;    // (C) or empty
  T eps;
  explicit LayerNorm(index_t dim, T eps_ = T(1e-5), bool with_bias = true) : weight(ones<T>({dim})), eps(eps_) {
    MARROW_CHECK(dim > 0, "LayerNorm: dim must be positive, got ", dim);
    if (with_bias) bias = Param<T>(zeros<T>({dim}));
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) { return layer_norm(t, x, weight, detail::maybe_var(bias), eps); }
  void visit(Visitor<T>& v, const std::string& prefix) {
    v.visit_param(join_name(prefix, "weight"), weight);
    detail::visit_optional(v, join_name(prefix, "bias"), bias);
  }
};

// Inverted dropout with its own generator (forked from the one given, so
// building a model consumes the same draws whether or not dropout is on).
template <class T> struct Dropout {
  T p;
  Rng rng;
  bool training = true;
  Dropout(T p_, Rng& parent) : p(p_), rng(parent.fork()) {
    MARROW_CHECK(p_ >= T(0) && p_ < T(1), "Dropout: p = ", p_, " must be in [0, 1)");
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) { return dropout(t, x, p, training, rng); }
  void visit(Visitor<T>& v, const std::string&) { v.visit_mode(training); }
};

// ---- parameterless layers -----------------------------------------------------------
template <class T> struct MaxPool2d {
  int kernel, stride = -1, padding = 0;  // stride −1: the kernel size
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return max_pool2d(t, x, kernel, stride, padding); }
  void visit(Visitor<T>&, const std::string&) {}
};
template <class T> struct AvgPool2d {
  int kernel, stride = -1, padding = 0;
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return avg_pool2d(t, x, kernel, stride, padding); }
  void visit(Visitor<T>&, const std::string&) {}
};

enum class UpsampleMode { Nearest, Bilinear };
template <class T> struct Upsample {
  int scale;
  UpsampleMode mode = UpsampleMode::Nearest;
  bool align_corners = false;  // bilinear only
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const {
    return mode == UpsampleMode::Nearest ? upsample_nearest2d(t, x, scale)
                                         : upsample_bilinear2d(t, x, scale, align_corners);
  }
  void visit(Visitor<T>&, const std::string&) {}
};

template <class T> struct ReLU {
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return relu(t, x); }
  void visit(Visitor<T>&, const std::string&) {}
};
template <class T> struct LeakyReLU {
  T slope = T(0.01);
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return leaky_relu(t, x, slope); }
  void visit(Visitor<T>&, const std::string&) {}
};
template <class T> struct GELU {
  GeluForm form = GeluForm::Tanh;  // GPT-2's approximation; Erf for the exact form
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return gelu(t, x, form); }
  void visit(Visitor<T>&, const std::string&) {}
};
template <class T> struct Tanh {
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return tanh(t, x); }
  void visit(Visitor<T>&, const std::string&) {}
};
template <class T> struct Sigmoid {
  Var<T> operator()(Tape<T>& t, const Var<T>& x) const { return sigmoid(t, x); }
  void visit(Visitor<T>&, const std::string&) {}
};

}  // namespace marrow
