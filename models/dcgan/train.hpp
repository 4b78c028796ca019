#pragma once
// Training a DCGAN: the optimizers and tapes of both nets, and one step, which
// the training loop calls once per batch of real images:
//
//   StepStats s = tr.step(real, y, noise_std, step);
//     1. G(z) for fresh codes, kept on G's tape
//     2. one D update: real -> 1, fake -> 0, the fakes as constants
//     3. one G update through the updated D
//     4. the averaged G follows (when the model keeps one)
//
// Under data parallelism (distribute()) steps 1-2 and 3 each run shard by shard,
// and D's and G's gradients are each summed over the shards before their update.
//
// Stability options, each off by default: one-sided label smoothing (real
// target 1 − s), instance noise on D's inputs annealed linearly to zero,
// separate learning rates for D and G (TTUR), and the averaged generator.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

#include <marrow/dist/data_parallel.hpp>

#include <marrow/optim.hpp>

#include "loss.hpp"
#include "model.hpp"

namespace marrow::gan {

struct TrainOptions {
  GanLoss loss = GanLoss::NonSaturating;
  double lr_g = 2e-4;              // Adam learning rate of G
  double lr_d = 2e-4;              // Adam learning rate of D (TTUR: larger than lr_g)
  double beta1 = 0.5;              // Adam β1 (DCGAN's)
  double beta2 = 0.999;            // Adam β2
  double label_smoothing = 0.0;    // one-sided: D's real target is 1 − this
  double instance_noise = 0.0;     // std of Gaussian noise on D's inputs at step 0 ...
  std::int64_t noise_steps = 0;    // ... falling linearly to 0 at this step
  double g_avg_decay = 0.999;      // moving-average decay of G's weights (when the model keeps the average)
};

// Instance-noise std at `step` (linear anneal to zero).
inline double noise_std_at(const TrainOptions& o, std::int64_t step) {
  if (o.instance_noise <= 0.0 || o.noise_steps <= 0) return 0.0;
  return o.instance_noise * std::max(0.0, 1.0 - double(step) / double(o.noise_steps));
}

// The average's decay at `step`: (1 + step)/(10 + step) until that reaches `decay`, so
// the first epochs are not dominated by the random initial weights.
inline double average_decay_at(double decay, std::int64_t step) {
  return std::min(decay, (1.0 + double(step)) / (10.0 + double(step)));
}

// avg ← decay·avg + (1 − decay)·live, tensor by tensor. The average moves through
// the oscillations of adversarial training instead of stopping wherever the last
// step left G.
template <class T> void average_into(const std::vector<Tensor<T>*>& avg, const std::vector<Tensor<T>*>& live, T decay) {
  for (std::size_t i = 0; i < avg.size(); ++i) avg[i]->arr() = decay * avg[i]->arr() + (T(1) - decay) * live[i]->arr();
}

struct DStats {
  double loss = 0;
  double d_real = 0, d_fake = 0;  // mean σ(D(x)) and σ(D(G(z)))
};
struct StepStats {
  DStats d;
  double loss_g = 0;
};

template <class T = float> class Trainer {
 public:
  TrainOptions opt;
  Rng rng;  // initial weights, then z and instance noise; checkpointed
  Dcgan<T> model;
  Adam<T> opt_g, opt_d;

  Trainer(const DcganConfig& cfg, const TrainOptions& o, std::uint64_t seed)
      : opt(check(o)), rng(seed), model(cfg, rng), opt_g(parameters<T>(model.g, "generator"), adam(o.lr_g, o)),
        opt_d(parameters<T>(model.d, "discriminator"), adam(o.lr_d, o)) {
    if (model.g_avg) avg_ = averaged_tensors(*model.g_avg), live_ = averaged_tensors(model.g);  // once, not every step
    distribute(dist::Comm::self(), 1);
  }

  // Each step's batch cut into `shards` shards over the ranks of `comm` (dist/data_parallel.hpp).
  void distribute(const dist::Comm& comm, int shards) {
    // The trainer's generator draws the instance noise inside a shard: keyed by shard like dropout.
    std::vector<Rng*> rngs{&rng, &model.d.drop.rng};
    dp_d.emplace(opt_d.groups()[0].params, comm, shards,
                 dist::DataParallelOptions<T>{.rngs = rngs, .buffers = buffers<T>(model)});
    dp_g.emplace(opt_g.groups()[0].params, comm, shards, dist::DataParallelOptions<T>{.rngs = rngs});
  }

  // One training step on real (B, C, S, S) in [−1, 1] with the classes `labels`
  // (B) for a conditioned model, `step` counting from 0.
  StepStats step(const Tensor<T>& real, const Tensor<std::int32_t>& labels, double noise_std, std::int64_t step) {
    const DcganConfig& c = model.cfg;
    const index_t B = real.ndim() == 4 ? real.dim(0) : 0;
    const index_t per_shard = B / dp_d->shards();
    MARROW_CHECK(real.ndim() == 4 && real.dim(1) == c.channels && real.dim(2) == c.image && real.dim(3) == c.image &&
                     B % dp_d->shards() == 0 && per_shard >= 2 * c.pack && per_shard % c.pack == 0,
                 "gan step: batch ", real.shape().str(), " is not (B, ", c.channels, ", ", c.image, ", ", c.image,
                 ") with B cut into ", dp_d->shards(), " shard(s) of a multiple of pack ", c.pack,
                 " and at least 2 packs");
    auto rows = [](const Tensor<std::int32_t>& y, std::int64_t b0, std::int64_t b1) {
      return y.defined() ? dist::batch_rows(y, b0, b1) : Tensor<std::int32_t>();
    };
    const Tensor<T> z = randn<T>({B, index_t(c.z_dim)}, rng);  // the whole batch's codes, alike on every rank
    const int local = dp_d->local_shards().end - dp_d->local_shards().begin;
    while (int(tg_.size()) < local) tg_.emplace_back();
    fakes_.resize(std::size_t(local));
    StepStats s;
    // G(z), then D: the fakes enter D as constants (PyTorch's fake.detach()).
    int i = 0;
    const std::vector<double> d = dp_d->step(B, [&](std::int64_t b0, std::int64_t b1) {
      Tape<T>& tg = tg_[std::size_t(i)];
      const Tensor<std::int32_t> y = rows(labels, b0, b1);
      tg.reset();
      fakes_[std::size_t(i)] = model.g(tg, tg.input(dist::batch_rows(z, b0, b1)), y);
      td_.reset();
      Var<T> d_real = model.d(td_, noisy(td_, td_.input(dist::batch_rows(real, b0, b1)), noise_std), y);
      Var<T> d_fake = model.d(td_, noisy(td_, td_.input(fakes_[std::size_t(i)].value()), noise_std), y);
      Var<T> ld = discriminator_loss(td_, d_real, d_fake, opt.loss, T(1.0 - opt.label_smoothing));
      dp_d->backward(td_, ld);
      ++i;
      return std::vector<double>{double(ld.item()), mean_sigmoid(d_real.value()), mean_sigmoid(d_fake.value())};
    });
    opt_d.step();
    opt_d.zero_grad();
    s.d = {d[0], d[1], d[2]};
    // G through the updated D. D's parameters are frozen meanwhile, so its backward
    // computes input gradients only (PyTorch also fills D's weight gradients here,
    // then zeroes them).
    set_d_frozen(true);
    i = 0;
    try {
      s.loss_g = dp_g->step(B, [&](std::int64_t b0, std::int64_t b1) {
        Tape<T>& tg = tg_[std::size_t(i)];
        Var<T> lg = generator_loss(tg, model.d(tg, noisy(tg, fakes_[std::size_t(i)], noise_std), rows(labels, b0, b1)),
                                   opt.loss);
        dp_g->backward(tg, lg);
        ++i;
        return double(lg.item());
      });
    } catch (...) {
      set_d_frozen(false);
      throw;
    }
    set_d_frozen(false);
    opt_g.step();
    opt_g.zero_grad();
    if (model.g_avg) average_into(avg_, live_, T(average_decay_at(opt.g_avg_decay, step)));  // the averaged G follows
    return s;
  }

  std::optional<dist::DataParallel<T>> dp_d, dp_g;  // D's and G's gradients over the shards

 private:
  std::deque<Tape<T>> tg_;  // one G tape per local shard: G's backward comes after D's update
  std::vector<Var<T>> fakes_;
  Tape<T> td_;
  std::vector<Tensor<T>*> avg_, live_;  // the averaged G's tensors and their live counterparts

  static const TrainOptions& check(const TrainOptions& o) {
    MARROW_CHECK(o.lr_g >= 0 && o.lr_d >= 0, "gan: learning rates must be >= 0, got lr_g ", o.lr_g, ", lr_d ", o.lr_d);
    MARROW_CHECK(o.label_smoothing >= 0 && o.label_smoothing < 0.5, "gan: label_smoothing ", o.label_smoothing,
                 " must be in [0, 0.5)");
    MARROW_CHECK(o.instance_noise >= 0 && o.noise_steps >= 0, "gan: instance_noise ", o.instance_noise,
                 " and noise_steps ", o.noise_steps, " must be >= 0");
    MARROW_CHECK(o.g_avg_decay >= 0 && o.g_avg_decay < 1, "gan: g_avg_decay ", o.g_avg_decay, " must be in [0, 1)");
    return o;
  }
  static AdamOptions<T> adam(double lr, const TrainOptions& o) {
    AdamOptions<T> a;
    a.lr = T(lr);
    a.beta1 = T(o.beta1);
    a.beta2 = T(o.beta2);
    return a;
  }
  Var<T> noisy(Tape<T>& t, const Var<T>& x, double sd) {
    if (sd <= 0.0) return x;
    return add(t, x, t.input(randn<T>(x.shape(), rng, 0.0, sd)));
  }
  static double mean_sigmoid(const Tensor<T>& logits) {
    double s = 0;
    for (index_t i = 0; i < logits.numel(); ++i) s += 1.0 / (1.0 + std::exp(-double(logits[i])));
    return s / double(logits.numel());
  }
  void set_d_frozen(bool frozen) {
    for (auto& p : opt_d.groups()[0].params) p.param->set_requires_grad(!frozen);
  }
};

}  // namespace marrow::gan
