#pragma once
// Training a DCGAN: the optimizers and tapes of both nets, and the pieces of
// one step, which the training loop calls in this order:
//
//   Var<T> fake = tr.fakes(B, y);               G(z) for B fresh codes, kept on G's tape
//   DStats d = tr.d_step(real, fake.value(), y, noise);   one D update, fakes as constants
//   double loss_g = tr.g_step(fake, y, noise);  one G update through the updated D
//   tr.update_average(step);                    the averaged G follows (when the model keeps one)
//
// Stability options, each off by default: one-sided label smoothing (real
// target 1 − s), instance noise on D's inputs annealed linearly to zero,
// separate learning rates for D and G (TTUR), and the averaged generator.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

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
  }

  // G(z) for B fresh latent codes and, for a conditioned model, the classes y (B).
  // G's forward stays on its own tape: its backward comes in g_step.
  Var<T> fakes(index_t B, const Tensor<std::int32_t>& labels = {}) {
    tg_.reset();
    return model.g(tg_, tg_.input(randn<T>({B, index_t(model.cfg.z_dim)}, rng)), labels);
  }

  // One D update on real (B, C, S, S) in [−1, 1] and fakes of the same classes.
  // The fakes enter as constants (PyTorch's fake.detach()).
  DStats d_step(const Tensor<T>& real, const Tensor<T>& fake, const Tensor<std::int32_t>& labels, double noise_std) {
    const DcganConfig& c = model.cfg;
    MARROW_CHECK(real.ndim() == 4 && real.dim(1) == c.channels && real.dim(2) == c.image && real.dim(3) == c.image &&
                     real.dim(0) >= 2 * c.pack && real.dim(0) % c.pack == 0,
                 "gan d_step: batch ", real.shape().str(), " is not (B, ", c.channels, ", ", c.image, ", ", c.image,
                 ") with B a multiple of pack ", c.pack, " and at least 2 packs");
    td_.reset();
    Var<T> d_real = model.d(td_, noisy(td_, td_.input(real), noise_std), labels);
    Var<T> d_fake = model.d(td_, noisy(td_, td_.input(fake), noise_std), labels);
    Var<T> ld = discriminator_loss(td_, d_real, d_fake, opt.loss, T(1.0 - opt.label_smoothing));
    td_.backward(ld);
    opt_d.step();
    opt_d.zero_grad();
    return {double(ld.item()), mean_sigmoid(d_real.value()), mean_sigmoid(d_fake.value())};
  }

  // One G update through D on `fake` from fakes(). D's parameters are frozen
  // meanwhile, so its backward computes input gradients only (PyTorch also fills
  // D's weight gradients here, then zeroes them). Returns G's loss.
  double g_step(const Var<T>& fake, const Tensor<std::int32_t>& labels, double noise_std) {
    set_d_frozen(true);
    Var<T> lg = generator_loss(tg_, model.d(tg_, noisy(tg_, fake, noise_std), labels), opt.loss);
    tg_.backward(lg);
    set_d_frozen(false);
    opt_g.step();
    opt_g.zero_grad();
    return double(lg.item());
  }

  // After the update of step `step` (counting from 0): the averaged G follows G.
  void update_average(std::int64_t step) {
    if (model.g_avg) average_into(avg_, live_, T(average_decay_at(opt.g_avg_decay, step)));
  }

 private:
  Tape<T> tg_, td_;
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
