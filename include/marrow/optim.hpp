#pragma once
// Optimizers (SGD, Adam, AdamW, RMSprop) with PyTorch's exact update rules,
// parameter groups, gradient clipping, and state access for checkpoints.
//
// The optimizer holds its own state per parameter (momentum buffers, moment
// estimates, step counts), keyed by position in its groups; the model knows
// nothing of it. State is allocated at construction, so a fresh optimizer can
// load a checkpoint before its first step.
//
// Like PyTorch with zero_grad(set_to_none=True), a parameter whose gradient
// was never allocated (it took no part in any backward pass) is skipped by
// step(), and its step count does not advance. Frozen parameters
// (requires_grad false) are skipped too.
//
// Updates run as Eigen array expressions over chunks of the flat buffers; the
// chunks of all parameters are shared out between OpenMP threads.
#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <functional>
#include <optional>
#include <type_traits>
#include <string>
#include <vector>

#include "nn/module.hpp"  // StateVisitor: the callback visit_state() feeds every state tensor to
#include "tape.hpp"

namespace marrow {

// A set of parameters sharing a learning rate scale and a weight decay.
template <class T> struct ParamGroup {
  std::string name;
  ParamList<T> params;
  std::optional<T> weight_decay;  // unset: the optimizer's own weight_decay
  T lr_scale = T(1);              // this group's lr = optimizer lr × lr_scale
  T lr = T(0);                    // filled in by the optimizer (constructor, set_lr)
};

// Split parameters for weight decay the usual way (nanoGPT, timm): matrices and
// conv kernels (ndim >= 2) decay; vectors (biases, norm gains) do not. A
// parameter for which `no_decay(p)` is true (e.g. embeddings, by name) is moved
// to the no-decay group as well. Returns {"decay", "no_decay" (weight_decay 0)}.
template <class T>
std::vector<ParamGroup<T>> decay_groups(const ParamList<T>& params,
                                        const std::type_identity_t<std::function<bool(const NamedParam<T>&)>>& no_decay = {}) {
  ParamGroup<T> decay{"decay", {}, std::nullopt}, keep{"no_decay", {}, T(0)};
  for (auto& p : params) {
    const bool skip = p.param->value().ndim() < 2 || (no_decay && no_decay(p));
    (skip ? keep : decay).params.push_back(p);
  }
  return {std::move(decay), std::move(keep)};
}

// What all optimizers share: groups, learning rate, per-parameter step counts.
// step() and visit_state() are the only virtuals (called once per step, never per element).
template <class T> class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // Every state tensor, including each parameter's step count as a 1-element
  // tensor (exact up to 2^24 steps in float). Writing into the tensors restores state.
  virtual void visit_state(const StateVisitor<T>& fn) = 0;

  void zero_grad() {
    for (auto& g : groups_)
      for (auto& p : g.params) p.param->zero_grad();
  }
  // Sets the base learning rate; each group gets lr × its lr_scale.
  void set_lr(T lr) {
    lr_ = lr;
    for (auto& g : groups_) g.lr = lr * g.lr_scale;
  }
  T lr() const { return lr_; }
  const std::vector<ParamGroup<T>>& groups() const { return groups_; }
  // Steps taken so far: the most any parameter has taken (what a schedule counts).
  std::int64_t steps() const {
    std::int64_t s = 0;
    for (auto v : steps_) s = std::max(s, v);
    return s;
  }

 protected:
  Optimizer(std::vector<ParamGroup<T>> groups, T lr, T weight_decay, const char* kind) : groups_(std::move(groups)), kind_(kind) {
    MARROW_CHECK(lr >= T(0), kind, ": negative learning rate ", lr);
    MARROW_CHECK(weight_decay >= T(0), kind, ": negative weight_decay ", weight_decay);
    for (auto& g : groups_) {
      if (!g.weight_decay) g.weight_decay = weight_decay;
      MARROW_CHECK(*g.weight_decay >= T(0), kind, ": negative weight_decay ", *g.weight_decay, " in group '", g.name, "'");
      for (auto& p : g.params) {
        MARROW_CHECK(p.param != nullptr && p.param->value().defined(), kind, ": parameter '", p.name, "' is empty");
        for (auto& f : flat_)  // a parameter listed twice would be stepped twice
          MARROW_CHECK(f.param != p.param, kind, ": parameter '", p.name, "' is listed twice (also as '", f.name, "')");
        flat_.push_back({std::size_t(&g - groups_.data()), p.param, p.name, p.param->numel()});
      }
    }
    steps_.assign(flat_.size(), 0);
    set_lr(lr);
  }
  static std::vector<ParamGroup<T>> one_group(const ParamList<T>& params) { return {ParamGroup<T>{"default", params, std::nullopt}}; }

  // A zeroed state tensor per parameter.
  std::vector<Tensor<T>> make_state() const {
    std::vector<Tensor<T>> s;
    for (auto& f : flat_) s.push_back(Tensor<T>(f.param->shape()));
    return s;
  }
  void visit_tensors(const StateVisitor<T>& fn, const std::string& what, std::vector<Tensor<T>>& ts) {
    for (std::size_t i = 0; i < flat_.size(); ++i) fn(detail::cat(kind_, ".", what, ".", flat_[i].name), ts[i]);
  }
  void visit_steps(const StateVisitor<T>& fn) {
    for (std::size_t i = 0; i < flat_.size(); ++i) {
      Tensor<T> s({1}, {T(steps_[i])});
      fn(detail::cat(kind_, ".step.", flat_[i].name), s);
      MARROW_CHECK(s.numel() == 1 && s[0] >= T(0), kind_, ": bad step count for '", flat_[i].name, "'");
      steps_[i] = std::int64_t(s[0]);
    }
  }

  // Runs fn(i, off, n) over chunks [off, off+n) of every parameter i that has a
  // gradient, after advancing that parameter's step count.
  template <class F> void for_each_chunk(F&& fn) {
    constexpr index_t kChunk = 1 << 14;
    chunks_.clear();
    index_t total = 0;
    for (std::size_t i = 0; i < flat_.size(); ++i) {
      Param<T>& p = *flat_[i].param;
      if (!p.requires_grad() || !p.has_grad()) continue;
      MARROW_CHECK(p.numel() == flat_[i].numel, kind_, ": parameter '", flat_[i].name, "' now has shape ",
                   p.shape().str(), " but had ", flat_[i].numel, " elements when the optimizer was built");
      ++steps_[i];
      for (index_t off = 0; off < p.numel(); off += kChunk) chunks_.push_back({i, off, std::min(kChunk, p.numel() - off)});
      total += p.numel();
    }
    const index_t nc = index_t(chunks_.size());
#pragma omp parallel for schedule(dynamic) if (total >= (1 << 18))
    for (index_t c = 0; c < nc; ++c) fn(chunks_[c].i, chunks_[c].off, chunks_[c].n);
  }

  using Arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
  static Arr view(Tensor<T>& t, index_t off, index_t n) { return Arr(t.data() + off, n); }

  struct Flat {
    std::size_t group;  // index, not pointer: the optimizer stays copyable
    Param<T>* param;
    std::string name;
    index_t numel;  // state tensors were sized for this
  };
  struct Chunk {
    std::size_t i;
    index_t off, n;
  };
  std::vector<ParamGroup<T>> groups_;
  std::vector<Flat> flat_;
  std::vector<std::int64_t> steps_;
  std::vector<Chunk> chunks_;
  T lr_ = T(0);
  const char* kind_;
};

// ---- SGD --------------------------------------------------------------------------
template <class T> struct SGDOptions {
  T lr = T(0.01);
  T momentum = T(0);
  T dampening = T(0);
  bool nesterov = false;
  T weight_decay = T(0);  // L2: added to the gradient
};

template <class T> class SGD : public Optimizer<T> {
  using B = Optimizer<T>;

 public:
  SGD(const ParamList<T>& params, SGDOptions<T> o = {}) : SGD(B::one_group(params), o) {}
  SGD(std::vector<ParamGroup<T>> groups, SGDOptions<T> o = {}) : B(std::move(groups), o.lr, o.weight_decay, "sgd"), o_(o) {
    MARROW_CHECK(o.momentum >= T(0), "sgd: negative momentum ", o.momentum);
    MARROW_CHECK(!o.nesterov || (o.momentum > T(0) && o.dampening == T(0)),
                 "sgd: nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum, ", dampening ",
                 o.dampening);
    if (o.momentum != T(0)) buf_ = B::make_state();
  }

  void step() override {
    this->for_each_chunk([this](std::size_t i, index_t off, index_t n) {
      auto& f = this->flat_[i];
      auto p = B::view(f.param->value(), off, n);
      auto g = B::view(f.param->grad(), off, n);
      const auto& grp = this->groups_[f.group];
      const T lr = grp.lr, wd = *grp.weight_decay;
      if (o_.momentum == T(0)) {
        if (wd != T(0)) p -= lr * (g + wd * p);
        else p -= lr * g;
        return;
      }
      auto b = B::view(buf_[i], off, n);
      const T m = o_.momentum;
      const bool first = this->steps_[i] == 1;  // PyTorch: buffer starts as a copy of the first gradient
      if (first) b = g + wd * p;
      else b = m * b + (T(1) - o_.dampening) * (g + wd * p);
      if (o_.nesterov) p -= lr * ((g + wd * p) + m * b);
      else p -= lr * b;
    });
  }
  void visit_state(const StateVisitor<T>& fn) override {
    if (o_.momentum != T(0)) this->visit_tensors(fn, "momentum_buffer", buf_);
    this->visit_steps(fn);
  }
  const SGDOptions<T>& options() const { return o_; }

 private:
  SGDOptions<T> o_;
  std::vector<Tensor<T>> buf_;
};

// ---- Adam / AdamW ---------------------------------------------------------------------
template <class T> struct AdamOptions {
  T lr = T(1e-3);
  T beta1 = T(0.9);
  T beta2 = T(0.999);
  T eps = T(1e-8);
  T weight_decay = T(0);  // Adam: L2 added to the gradient; AdamW: decoupled, p ← p(1 − lr·wd)
  bool amsgrad = false;
};

namespace detail {
// The shared Adam update; `decoupled` selects AdamW's weight decay.
template <class T> class AdamBase : public Optimizer<T> {
  using B = Optimizer<T>;

 public:
  void step() override {
    this->for_each_chunk([this](std::size_t i, index_t off, index_t n) {
      auto& f = this->flat_[i];
      auto p = B::view(f.param->value(), off, n);
      auto g = B::view(f.param->grad(), off, n);
      auto m = B::view(m_[i], off, n);
      auto v = B::view(v_[i], off, n);
      const auto& grp = this->groups_[f.group];
      const T lr = grp.lr, wd = *grp.weight_decay;
      // Bias corrections in double, as PyTorch computes them from Python floats.
      const double t = double(this->steps_[i]);
      const double bc1 = 1.0 - std::pow(double(o_.beta1), t), bc2 = 1.0 - std::pow(double(o_.beta2), t);
      const T step_size = T(double(lr) / bc1), bc2_sqrt = T(std::sqrt(bc2));
      const T b1 = o_.beta1, b2 = o_.beta2, eps = o_.eps;
      if (decoupled_) {
        if (wd != T(0)) p *= T(1) - lr * wd;
        m = b1 * m + (T(1) - b1) * g;
        v = b2 * v + (T(1) - b2) * g.square();
      } else {
        m = b1 * m + (T(1) - b1) * (g + wd * p);
        v = b2 * v + (T(1) - b2) * (g + wd * p).square();
      }
      if (o_.amsgrad) {
        auto vmax = B::view(vmax_[i], off, n);
        vmax = vmax.max(v);
        p -= step_size * m / (vmax.sqrt() / bc2_sqrt + eps);
      } else {
        p -= step_size * m / (v.sqrt() / bc2_sqrt + eps);
      }
    });
  }
  void visit_state(const StateVisitor<T>& fn) override {
    this->visit_tensors(fn, "exp_avg", m_);
    this->visit_tensors(fn, "exp_avg_sq", v_);
    if (o_.amsgrad) this->visit_tensors(fn, "max_exp_avg_sq", vmax_);
    this->visit_steps(fn);
  }
  const AdamOptions<T>& options() const { return o_; }

 protected:
  AdamBase(std::vector<ParamGroup<T>> groups, AdamOptions<T> o, bool decoupled, const char* kind)
      : B(std::move(groups), o.lr, o.weight_decay, kind), o_(o), decoupled_(decoupled) {
    MARROW_CHECK(o.beta1 >= T(0) && o.beta1 < T(1) && o.beta2 >= T(0) && o.beta2 < T(1), kind,
                 ": betas must lie in [0, 1), got (", o.beta1, ", ", o.beta2, ")");
    MARROW_CHECK(o.eps >= T(0), kind, ": negative eps ", o.eps);
    m_ = B::make_state();
    v_ = B::make_state();
    if (o.amsgrad) vmax_ = B::make_state();
  }

 private:
  AdamOptions<T> o_;
  bool decoupled_;
  std::vector<Tensor<T>> m_, v_, vmax_;
};
}  // namespace detail

template <class T> class Adam : public detail::AdamBase<T> {
 public:
  Adam(const ParamList<T>& params, AdamOptions<T> o = {}) : Adam(Optimizer<T>::one_group(params), o) {}
  Adam(std::vector<ParamGroup<T>> groups, AdamOptions<T> o = {}) : detail::AdamBase<T>(std::move(groups), o, false, "adam") {}
};

// AdamW's options: Adam's, but with PyTorch's AdamW default weight_decay 0.01
// (a separate struct so {.lr = 3e-4} alone keeps that default).
template <class T> struct AdamWOptions {
  T lr = T(1e-3);
  T beta1 = T(0.9);
  T beta2 = T(0.999);
  T eps = T(1e-8);
  T weight_decay = T(0.01);  // decoupled: p ← p(1 − lr·wd)
  bool amsgrad = false;
  AdamOptions<T> adam() const { return {lr, beta1, beta2, eps, weight_decay, amsgrad}; }
};

template <class T> class AdamW : public detail::AdamBase<T> {
 public:
  AdamW(const ParamList<T>& params, AdamWOptions<T> o = {}) : AdamW(Optimizer<T>::one_group(params), o) {}
  AdamW(std::vector<ParamGroup<T>> groups, AdamWOptions<T> o = {})
      : detail::AdamBase<T>(std::move(groups), o.adam(), true, "adamw") {}
};

// ---- RMSprop ------------------------------------------------------------------------
template <class T> struct RMSpropOptions {
  T lr = T(0.01);
  T alpha = T(0.99);
  T eps = T(1e-8);
  T weight_decay = T(0);  // L2
  T momentum = T(0);
  bool centered = false;
};

template <class T> class RMSprop : public Optimizer<T> {
  using B = Optimizer<T>;

 public:
  RMSprop(const ParamList<T>& params, RMSpropOptions<T> o = {}) : RMSprop(B::one_group(params), o) {}
  RMSprop(std::vector<ParamGroup<T>> groups, RMSpropOptions<T> o = {})
      : B(std::move(groups), o.lr, o.weight_decay, "rmsprop"), o_(o) {
    MARROW_CHECK(o.alpha >= T(0) && o.alpha <= T(1), "rmsprop: alpha must lie in [0, 1], got ", o.alpha);
    MARROW_CHECK(o.eps >= T(0) && o.momentum >= T(0), "rmsprop: negative eps ", o.eps, " or momentum ", o.momentum);
    sq_ = B::make_state();
    if (o.momentum > T(0)) buf_ = B::make_state();
    if (o.centered) gavg_ = B::make_state();
  }

  void step() override {
    this->for_each_chunk([this](std::size_t i, index_t off, index_t n) {
      auto& f = this->flat_[i];
      auto p = B::view(f.param->value(), off, n);
      auto g = B::view(f.param->grad(), off, n);
      auto sq = B::view(sq_[i], off, n);
      const auto& grp = this->groups_[f.group];
      const T lr = grp.lr, wd = *grp.weight_decay, a = o_.alpha, eps = o_.eps;
      sq = a * sq + (T(1) - a) * (g + wd * p).square();
      auto step_with = [&](const auto& avg) {  // avg: the denominator expression
        if (o_.momentum > T(0)) {
          auto b = B::view(buf_[i], off, n);
          b = o_.momentum * b + (g + wd * p) / avg;
          p -= lr * b;
        } else {
          p -= lr * (g + wd * p) / avg;
        }
      };
      if (o_.centered) {
        auto ga = B::view(gavg_[i], off, n);
        ga = a * ga + (T(1) - a) * (g + wd * p);
        step_with((sq - ga.square()).sqrt() + eps);
      } else {
        step_with(sq.sqrt() + eps);
      }
    });
  }
  void visit_state(const StateVisitor<T>& fn) override {
    this->visit_tensors(fn, "square_avg", sq_);
    if (o_.momentum > T(0)) this->visit_tensors(fn, "momentum_buffer", buf_);
    if (o_.centered) this->visit_tensors(fn, "grad_avg", gavg_);
    this->visit_steps(fn);
  }
  const RMSpropOptions<T>& options() const { return o_; }

 private:
  RMSpropOptions<T> o_;
  std::vector<Tensor<T>> sq_, buf_, gavg_;
};

// ---- gradient norms ----------------------------------------------------------------
// Global L2 norm of all gradients (parameters without a gradient count as 0),
// accumulated in double so float gradients of big models do not lose it.
template <class T> T grad_norm(const ParamList<T>& params) {
  double ss = 0.0;
  for (auto& p : params) {
    if (!p.param->has_grad()) continue;
    const T* g = p.param->grad().data();
    const index_t n = p.param->numel();
    // A plain simd loop: Eigen's cast<double>().square().sum() ran ~5x slower. One
    // thread: the loop is bound by memory bandwidth, which a second thread barely adds to.
    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
    for (index_t i = 0; i < n; ++i) acc += double(g[i]) * double(g[i]);
    ss += acc;
  }
  return T(std::sqrt(ss));
}

// Scale all gradients so their global norm is at most max_norm (PyTorch's
// clip_grad_norm_: coefficient max_norm / (norm + 1e-6), applied only when < 1).
// Returns the norm before clipping. A non-finite norm leaves gradients as they
// are; the caller sees it in the return value.
template <class T> T clip_grad_norm(const ParamList<T>& params, T max_norm) {
  MARROW_CHECK(max_norm > T(0), "clip_grad_norm: max_norm must be positive, got ", max_norm);
  const T norm = grad_norm(params);
  const double coef = double(max_norm) / (double(norm) + 1e-6);
  if (coef < 1.0)
    for (auto& p : params)
      if (p.param->has_grad()) p.param->grad().arr() *= T(coef);
  return norm;
}

}  // namespace marrow

/* Update rules (g = gradient, p = parameter, t = this parameter's step count, from 1):
   SGD      g ← g + wd·p;  with momentum: b ← g at t=1, else b ← μ·b + (1−τ)·g;
            nesterov: g ← g + μ·b, else g ← b;  p ← p − lr·g
   Adam     g ← g + wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
            (amsgrad: v̂ ← max(v̂, v), used in place of v below)
            p ← p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)
   AdamW    p ← p·(1 − lr·wd), then Adam with wd = 0
   RMSprop  g ← g + wd·p;  s ← α·s + (1−α)·g²;  centered: ḡ ← α·ḡ + (1−α)·g, d = √(s − ḡ²) + ε, else d = √s + ε
            momentum: b ← μ·b + g/d, p ← p − lr·b;  else p ← p − lr·g/d
   clip     n = √Σ‖g‖²;  if max/(n+1e-6) < 1: g ← g · max/(n+1e-6)
*/
