#pragma once
// The reverse-mode tape.
//
// A Tape records ops as they execute: push order *is* the topological order,
// so backward() is one reverse loop over the recorded closures (as in Stan
// math). Each op pushes its output node and registers one closure that
// accumulates (+=) into its inputs' gradients.
//
// Ownership: intermediate nodes belong to the tape and live until reset();
// parameters (Param<T>) own their node and outlive every tape, so their
// gradients accumulate across tapes until the optimizer zeroes them.
// The tape keeps its node objects and closure arena between steps: a training
// loop that calls reset() each step does not grow memory.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor.hpp"

namespace marrow {

namespace detail {
// One counter for every Tape<T>: tapes built on different threads still get distinct generations.
inline std::atomic<std::uint64_t> g_tape_generation{0};
}  // namespace detail

template <class T> class Tape;

template <class T> struct Node {
  Tensor<T> value;
  Tensor<T> grad;  // allocated (zeroed) on first use
  bool requires_grad = false;
  const void* tape = nullptr;  // owning tape; nullptr for parameters
  std::uint64_t gen = 0;       // tape generation the node was made in
  std::uint64_t used_in = 0;   // parameters: the tape generation that last recorded a use (Tape::param_uses)

  Tensor<T>& ensure_grad() {
    if (!grad.defined() || !(grad.shape() == value.shape())) grad = Tensor<T>(value.shape());
    return grad;
  }
};

// A trainable tensor that outlives tapes: weights, biases, embeddings.
template <class T> class Param {
 public:
  Param() : node_(std::make_unique<Node<T>>()) { node_->requires_grad = true; }
  explicit Param(Tensor<T> value) : Param() { node_->value = std::move(value); }
  Param(Param&&) noexcept = default;
  Param& operator=(Param&&) noexcept = default;

  Tensor<T>& value() { return node_->value; }
  const Tensor<T>& value() const { return node_->value; }
  Tensor<T>& grad() { return node_->ensure_grad(); }
  bool has_grad() const { return node_->grad.defined(); }
  void zero_grad() {
    if (node_->grad.defined()) node_->grad.zero();
  }
  const Shape& shape() const { return node_->value.shape(); }
  index_t numel() const { return node_->value.numel(); }
  // Frozen parameters take part in the forward pass but collect no gradient.
  void set_requires_grad(bool on) { node_->requires_grad = on; }
  bool requires_grad() const { return node_->requires_grad; }
  Node<T>* node() const { return node_.get(); }

 private:
  std::unique_ptr<Node<T>> node_;
};

// A named reference to a parameter, for optimizers, checkpoints and gradcheck.
template <class T> struct NamedParam {
  std::string name;
  Param<T>* param;
};
template <class T> using ParamList = std::vector<NamedParam<T>>;

// A handle to a node: cheap to copy, valid until its tape's next reset().
template <class T> class Var {
 public:
  Var() = default;
  Var(Param<T>& p) : n_(p.node()) {}  // NOLINT: a parameter is usable wherever a Var is
  Var(Node<T>* n, const Tape<T>* tape, std::uint64_t gen) : n_(n), tape_(tape), gen_(gen) {}

  const Tensor<T>& value() const { return n_->value; }
  Tensor<T>& value_mut() const { return n_->value; }
  Tensor<T>& grad() const { return n_->ensure_grad(); }
  bool has_grad() const { return n_->grad.defined(); }
  bool requires_grad() const { return n_->requires_grad; }
  const Shape& shape() const { return n_->value.shape(); }
  index_t dim(int i) const { return n_->value.dim(i); }
  int ndim() const { return n_->value.ndim(); }
  index_t numel() const { return n_->value.numel(); }
  T item() const { return n_->value.item(); }
  bool defined() const { return n_ != nullptr; }

  Node<T>* node() const { return n_; }
  const Tape<T>* tape() const { return tape_; }
  std::uint64_t gen() const { return gen_; }

 private:
  Node<T>* n_ = nullptr;
  const Tape<T>* tape_ = nullptr;  // nullptr for parameters
  std::uint64_t gen_ = 0;
};

// Op parameters are written `const Arg<T>&`: T is deduced from the tape alone,
// so a Param<T> converts to a Var<T> at the call (linear(t, x, weight)).
template <class T> using Arg = typename std::type_identity<Var<T>>::type;

template <class T> class Tape {
 public:
  Tape() : id_gen_(next_generation()) {}
  ~Tape() { destroy_closures(); }
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;

  // A constant input (no gradient). Shares the tensor's storage.
  Var<T> input(Tensor<T> value) { return make_node(std::move(value), false); }
  // A leaf whose gradient is kept until reset() (e.g. an input we differentiate w.r.t.).
  Var<T> leaf(Tensor<T> value, bool requires_grad = true) { return make_node(std::move(value), requires_grad); }

  // Record an op's output. It requires grad when recording is on and any input does.
  // An op lists every input whose gradient its closure touches: that is how
  // the tape knows when a parameter's gradient is final (param_uses).
  template <class... V> Var<T> push(Tensor<T> value, const V&... inputs) {
    (check(inputs, "op input"), ...);
    const bool rg = grad_enabled_ && (false || ... || inputs.requires_grad());
    if (rg) (note_param_use(inputs), ...);
    return make_node(std::move(value), rg);
  }
  Var<T> push_list(Tensor<T> value, const std::vector<Var<T>>& inputs) {
    bool rg = false;
    for (auto& v : inputs) {
      check(v, "op input");
      rg = rg || v.requires_grad();
    }
    if (grad_enabled_ && rg)
      for (auto& v : inputs) note_param_use(v);
    return make_node(std::move(value), grad_enabled_ && rg);
  }

  // Register the backward closure of an op whose output is `out`. Nothing is
  // recorded when `out` needs no gradient. The closure runs only if some
  // gradient reached `out`.
  template <class F> void on_backward(const Var<T>& out, F&& fn) {
    if (!out.requires_grad()) return;
    using Fn = std::decay_t<F>;
    struct Wrapped {
      Var<T> out;
      Fn fn;
    };
    void* mem = arena_alloc(sizeof(Wrapped), alignof(Wrapped));
    auto* w = new (mem) Wrapped{out, std::forward<F>(fn)};
    closures_.push_back(Closure{
        [](void* p) {
          auto* w = static_cast<Wrapped*>(p);
          if (w->out.has_grad()) w->fn();
        },
        [](void* p) { static_cast<Wrapped*>(p)->~Wrapped(); }, w});
  }

  // Seed d(loss)/d(loss) = 1 and run every recorded closure in reverse.
  void backward(const Var<T>& loss) {
    check(loss, "backward");
    MARROW_CHECK(loss.numel() == 1, "backward: loss has shape ", loss.shape().str(),
                 "; pass a seed gradient for a non-scalar output");
    Tensor<T> seed = Tensor<T>::uninitialized(loss.shape());
    seed[0] = T(1);
    backward(loss, seed);
  }
  void backward(const Var<T>& out, const Tensor<T>& seed) {
    check(out, "backward");
    MARROW_CHECK(!consumed_, "backward: this tape's record was already used by an earlier backward(); "
                             "call reset() and run the forward pass again");
    MARROW_CHECK(seed.shape() == out.shape(), "backward: seed shape ", seed.shape().str(), " != output shape ",
                 out.shape().str());
    MARROW_CHECK(out.requires_grad(), "backward: output does not depend on anything that requires grad");
    out.grad().arr() += seed.arr();
    for (std::size_t i = closures_.size(); i-- > 0;) closures_[i].run(closures_[i].obj);
    destroy_closures();
    consumed_ = true;
  }
  // backward() from a gradient `out` already has elsewhere: out's gradient
  // becomes `grad` itself (shared storage, not a copy; closures may add to it)
  // and every recorded closure runs in reverse. recompute.hpp re-runs a segment
  // on the buffer its checkpoint node accumulated, so not a bit (nor the sign of
  // a zero) changes on the way.
  void backward_from(const Var<T>& out, const Tensor<T>& grad) {
    check(out, "backward");
    MARROW_CHECK(!consumed_, "backward: this tape's record was already used by an earlier backward(); "
                             "call reset() and run the forward pass again");
    MARROW_CHECK(grad.shape() == out.shape(), "backward: gradient shape ", grad.shape().str(), " != output shape ",
                 out.shape().str());
    MARROW_CHECK(out.requires_grad(), "backward: output does not depend on anything that requires grad");
    out.node()->grad = grad;
    for (std::size_t i = closures_.size(); i-- > 0;) closures_[i].run(closures_[i].obj);
    destroy_closures();
    consumed_ = true;
  }
  // backward(loss) that calls `after(i)` once before any closure runs (i = the
  // number of closures) and again after each closure i has run: from then on
  // every closure >= i is done, so a parameter whose first use in param_uses()
  // is at or after i has its final gradient (dist/data_parallel.hpp sends such
  // gradients to the other processes while the rest of backward still runs).
  template <class After> void backward_observed(const Var<T>& loss, After&& after) {
    check(loss, "backward");
    MARROW_CHECK(loss.numel() == 1, "backward: loss has shape ", loss.shape().str(), "; it must be a scalar");
    MARROW_CHECK(!consumed_, "backward: this tape's record was already used by an earlier backward(); "
                             "call reset() and run the forward pass again");
    MARROW_CHECK(loss.requires_grad(), "backward: output does not depend on anything that requires grad");
    loss.grad().data()[0] += T(1);
    after(closures_.size());
    for (std::size_t i = closures_.size(); i-- > 0;) {
      closures_[i].run(closures_[i].obj);
      after(i);
    }
    destroy_closures();
    consumed_ = true;
  }

  // Each parameter this record differentiates, with the number of closures
  // recorded before its first use: every closure that adds to its gradient
  // comes at or after that index. A parameter used by two interleaved tapes
  // may appear more than once; its first entry is the earliest.
  const std::vector<std::pair<const Node<T>*, std::size_t>>& param_uses() const { return param_uses_; }

  // Forget the record and release intermediate tensors; keep the capacity.
  void reset() {
    destroy_closures();
    for (std::size_t i = 0; i < used_; ++i) {
      nodes_[i]->value = Tensor<T>();
      nodes_[i]->grad = Tensor<T>();
    }
    used_ = 0;
    consumed_ = false;
    param_uses_.clear();
    id_gen_ = next_generation();
  }

  // A second tape owned by this one, for a piece of the graph run out of line
  // (recompute.hpp runs a segment there in forward and again in backward). It
  // outlives reset(), so its nodes and closure arena are reused step after step;
  // its own child serves segments nested inside a segment.
  Tape& child() {
    if (!child_) child_ = std::make_unique<Tape>();
    return *child_;
  }

  // Inference: ops run but record nothing while the guard lives.
  class NoGradGuard {
   public:
    explicit NoGradGuard(Tape& t) : t_(t), prev_(t.grad_enabled_) { t.grad_enabled_ = false; }
    ~NoGradGuard() { t_.grad_enabled_ = prev_; }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

   private:
    Tape& t_;
    bool prev_;
  };
  [[nodiscard]] NoGradGuard no_grad() { return NoGradGuard(*this); }
  bool grad_enabled() const { return grad_enabled_; }

  // Nodes made since the last reset, and closures waiting for backward.
  std::size_t size() const { return used_; }
  std::size_t recorded() const { return closures_.size(); }

  // Throws unless v is a parameter or a live node of this tape.
  void check(const Var<T>& v, const char* what) const {
    MARROW_CHECK(v.defined(), what, ": undefined Var");
    if (v.tape() == nullptr) return;  // parameter
    MARROW_CHECK(v.tape() == this, what, ": Var belongs to another tape (mixing tapes)");
    MARROW_CHECK(v.gen() == id_gen_ && v.node()->gen == id_gen_,
                 what, ": Var is stale (made before this tape's last reset())");
  }

 private:
  struct Closure {
    void (*run)(void*);
    void (*destroy)(void*);
    void* obj;
  };
  struct Block {
    std::unique_ptr<std::byte[]> mem;
    std::size_t size;
  };

  // Unique across tapes of every element type and thread: a Var of one tape never validates on another.
  static std::uint64_t next_generation() { return detail::g_tape_generation.fetch_add(1, std::memory_order_relaxed) + 1; }

  void note_param_use(const Var<T>& v) {
    Node<T>* n = v.node();
    if (v.tape() != nullptr || !n->requires_grad || n->used_in == id_gen_) return;
    n->used_in = id_gen_;
    param_uses_.emplace_back(n, closures_.size());
  }

  Var<T> make_node(Tensor<T> value, bool requires_grad) {
    if (used_ == nodes_.size()) nodes_.push_back(std::make_unique<Node<T>>());
    Node<T>* n = nodes_[used_++].get();
    n->value = std::move(value);
    n->grad = Tensor<T>();
    n->requires_grad = requires_grad;
    n->tape = this;
    n->gen = id_gen_;
    return Var<T>(n, this, id_gen_);
  }

  void* arena_alloc(std::size_t bytes, std::size_t align) {
    for (;;) {
      if (block_ < blocks_.size()) {
        std::size_t off = (offset_ + align - 1) / align * align;
        if (off + bytes <= blocks_[block_].size) {
          offset_ = off + bytes;
          return blocks_[block_].mem.get() + off;
        }
        ++block_;
        offset_ = 0;
        continue;
      }
      const std::size_t size = std::max<std::size_t>(64 * 1024, bytes + align);
      blocks_.push_back(Block{std::unique_ptr<std::byte[]>(new std::byte[size]), size});
    }
  }

  void destroy_closures() {
    for (auto& c : closures_) c.destroy(c.obj);
    closures_.clear();
    block_ = 0;
    offset_ = 0;
  }

  std::vector<std::unique_ptr<Node<T>>> nodes_;
  std::size_t used_ = 0;
  std::vector<Closure> closures_;
  std::vector<std::pair<const Node<T>*, std::size_t>> param_uses_;
  std::vector<Block> blocks_;
  std::size_t block_ = 0, offset_ = 0;
  std::uint64_t id_gen_;
  bool grad_enabled_ = true;
  bool consumed_ = false;
  std::unique_ptr<Tape> child_;  // child(): made on first use
};

// Add `g` into a gradient buffer (the accumulate rule every backward follows).
template <class T> inline void accumulate(Tensor<T>& grad, const Tensor<T>& g) { grad.arr() += g.arr(); }

}  // namespace marrow
