#include "testing.hpp"

#include <models/ppo.hpp>
#include <marrow/rl/cartpole.hpp>
#include <marrow/rl/pendulum.hpp>

using namespace marrow;
using namespace marrow::ppo;

TEST_CASE("ppo: GAE by hand, with termination and truncation") {
  // One env, 3 steps: r = 1, 1, 1; V = 0.5, 0.6, 0.7; V(next) = 0.8.
  const double g = 0.9, l = 0.8;
  std::vector<double> adv, ret;
  SUBCASE("no episode end: bootstrap from V(next)") {
    compute_gae(3, 1, {1, 1, 1}, {0.5, 0.6, 0.7}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0.8}, g, l, adv, ret);
    const double d2 = 1 + g * 0.8 - 0.7, d1 = 1 + g * 0.7 - 0.6, d0 = 1 + g * 0.6 - 0.5;
    CHECK(adv[2] == doctest::Approx(d2));
    CHECK(adv[1] == doctest::Approx(d1 + g * l * d2));
    CHECK(adv[0] == doctest::Approx(d0 + g * l * (d1 + g * l * d2)));
    CHECK(ret[0] == doctest::Approx(adv[0] + 0.5));
  }
  SUBCASE("termination at step 1: no bootstrap, chain cut") {
    compute_gae(3, 1, {1, 1, 1}, {0.5, 0.6, 0.7}, {0, 1, 0}, {0, 0, 0}, {0, 0, 0}, {0.8}, g, l, adv, ret);
    CHECK(adv[1] == doctest::Approx(1 - 0.6));
    CHECK(adv[0] == doctest::Approx((1 + g * 0.6 - 0.5) + g * l * (1 - 0.6)));
  }
  SUBCASE("truncation at step 1: bootstrap from V(final obs) = 2") {
    compute_gae(3, 1, {1, 1, 1}, {0.5, 0.6, 0.7}, {0, 0, 0}, {0, 1, 0}, {0, 2.0, 0}, {0.8}, g, l, adv, ret);
    CHECK(adv[1] == doctest::Approx(1 + g * 2.0 - 0.6));
  }
}

namespace {
// A minibatch at which the current policy's ratios are partly inside, partly outside the clip range.
template <class Env> void check_loss_gradient() {
  Rng rng(3);
  Agent<double> agent({Env::obs_dim, Env::act_dim, Env::discrete}, 8, -0.3, rng);
  for (auto& p : parameters<double>(agent))  // larger weights: a non-trivial policy
    if (p.name.find("head") == std::string::npos) p.param->value().arr() *= 1.0;
  agent.actor_head.weight.value().arr() *= 100.0;
  const int M = 12;
  Minibatch<double> mb{randn<double>({M, Env::obs_dim}, rng),
                       Env::discrete ? Tensor<double>(Shape{M}) : randn<double>({M, Env::act_dim}, rng),
                       Tensor<double>(Shape{M}), randn<double>({M}, rng), randn<double>({M}, rng),
                       randn<double>({M}, rng)};
  if (Env::discrete)
    for (int i = 0; i < M; ++i) mb.actions[i] = double(rng.below(Env::act_dim));
  // old log-probs: current ones shifted by offsets in ±0.6 (clip range is ±0.2 in ratio)
  {
    Tape<double> t;
    auto g = t.no_grad();
    auto pt = policy_terms(t, agent, agent.actor(t, t.input(mb.obs)), mb.actions);
    for (int i = 0; i < M; ++i) mb.old_logp[i] = pt.logp.value()[i] + (i % 3 == 0 ? 0.02 : (i % 3 == 1 ? 0.6 : -0.6));
  }
  Args args;
  {
    Tape<double> t;
    auto lt = ppo_loss(t, agent, mb, args, 0.2);
    CHECK(lt.clip_frac > 0.3);
    CHECK(lt.clip_frac < 0.9);
  }
  auto r = gradcheck(parameters<double>(agent), [&](Tape<double>& t) { return ppo_loss(t, agent, mb, args, 0.2).total; },
                     {.floor = 1e-4});  // gradients of ~1e-6 sit at rounding level
  MARROW_CHECK_GRAD(r, 1e-5);
}
}  // namespace

TEST_CASE("ppo: loss gradient with some ratios clipped (discrete)") { check_loss_gradient<rl::CartPole>(); }
TEST_CASE("ppo: loss gradient with some ratios clipped (continuous)") { check_loss_gradient<rl::Pendulum>(); }

// With lr = 0 the policy never moves, so every ratio π/π_old must be exactly 1: the
// log-prob stored at sampling must be the one the loss recomputes. The wide policy
// (σ = e) samples many actions beyond Pendulum's ±2, so a log-prob of the clipped
// action, or a sampling σ that differs from the loss's, shows up as KL > 0.
TEST_CASE("ppo: rollout log-probs match the loss's (unclipped continuous sample)") {
  Args a;
  a.env = "Pendulum-v1";
  a.total_steps = 512;
  a.num_envs = 2;
  a.num_steps = 256;
  a.lr = 0.0;
  a.init_log_std = 1.0;
  a.norm_obs = true;
  a.norm_reward = true;
  Trainer<rl::Pendulum> tr(a);
  UpdateStats st = tr.update();
  CHECK(std::abs(st.approx_kl) < 1e-9);
  CHECK(st.clip_frac == 0.0);
}

TEST_CASE("ppo: orthogonal init gains and parameter names") {
  Rng rng(0);
  Agent<float> agent({4, 2, true}, 64, 0.0, rng);
  auto ps = parameters<float>(agent);
  CHECK(ps.size() == 12);
  CHECK(ps[0].name == "actor.0.weight");
  // Rows of an orthogonal (out ≤ in) matrix scaled by gain have norm = gain.
  auto& w = agent.actor_head.weight.value();
  double n0 = w.mat().row(0).norm();
  CHECK(n0 == doctest::Approx(0.01).epsilon(1e-3));
}

TEST_CASE("ppo: CartPole learns within 25k steps (smoke)") {
  Args a;
  a.total_steps = 25000;
  a.num_envs = 8;
  a.num_steps = 32;
  a.num_minibatches = 1;
  a.update_epochs = 20;
  a.gae_lambda = 0.8;
  a.gamma = 0.98;
  a.ent_coef = 0.0;
  a.lr = 1e-3;
  a.anneal_clip = true;
  Trainer<rl::CartPole> tr(a);
  while (!tr.done()) tr.update();
  CHECK(tr.mean_return_last(20) > 100.0);
}
