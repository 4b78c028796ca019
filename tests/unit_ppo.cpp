#include "testing.hpp"

#include <unistd.h>

#include <filesystem>
#include <numeric>

#include <marrow/rl/cartpole.hpp>
#include <marrow/rl/pendulum.hpp>
#include <marrow/train/checkpoint.hpp>
#include <models/ppo/agent.hpp>
#include <models/ppo/rollout.hpp>
#include <models/ppo/update.hpp>

using namespace marrow;
using namespace marrow::ppo;

TEST_CASE("ppo: GAE by hand, with termination and truncation") {
  // One env, 3 steps: r = 1, 1, 1; V = 0.5, 0.6, 0.7; V(next) = 0.8.
  const double g = 0.9, l = 0.8;
  std::vector<double> adv, ret;
  // The same double arithmetic in another order: equal to rounding, relative to the value.
  auto near = [](double x) { return doctest::Approx(x).epsilon(1e-12).scale(0); };
  SUBCASE("no episode end: bootstrap from V(next)") {
    compute_gae(3, 1, {1, 1, 1}, {0.5, 0.6, 0.7}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0.8}, g, l, adv, ret);
    const double d2 = 1 + g * 0.8 - 0.7, d1 = 1 + g * 0.7 - 0.6, d0 = 1 + g * 0.6 - 0.5;
    CHECK(adv[2] == near(d2));
    CHECK(adv[1] == near(d1 + g * l * d2));
    CHECK(adv[0] == near(d0 + g * l * (d1 + g * l * d2)));
    CHECK(ret[0] == near(adv[0] + 0.5));
  }
  SUBCASE("termination at step 1: no bootstrap, chain cut") {
    compute_gae(3, 1, {1, 1, 1}, {0.5, 0.6, 0.7}, {0, 1, 0}, {0, 0, 0}, {0, 0, 0}, {0.8}, g, l, adv, ret);
    CHECK(adv[1] == near(1 - 0.6));
    CHECK(adv[0] == near((1 + g * 0.6 - 0.5) + g * l * (1 - 0.6)));
  }
  SUBCASE("truncation at step 1: bootstrap from V(final obs) = 2") {
    compute_gae(3, 1, {1, 1, 1}, {0.5, 0.6, 0.7}, {0, 0, 0}, {0, 1, 0}, {0, 2.0, 0}, {0.8}, g, l, adv, ret);
    CHECK(adv[1] == near(1 + g * 2.0 - 0.6));
  }
}

namespace {
// A minibatch at which the current policy's ratios are partly inside, partly outside the clip range.
template <class Env> void check_loss_gradient() {
  Rng rng(3);
  Args args;
  args.hidden = 8;
  args.init_log_std = -0.3;
  Agent<double> agent({Env::obs_dim, Env::act_dim, Env::discrete}, args, rng);
  agent.actor_head.weight.value().arr() *= 100.0;  // larger logits: a non-trivial policy
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

// Before any update the policy is the one that sampled, so every ratio π/π_old must be
// exactly 1: the log-prob stored at sampling must be the one the loss recomputes from
// the stored (normalized) observation and action, through a shuffled gather. The wide
// policy (σ = e) samples many actions beyond Pendulum's ±2, so a log-prob of the clipped
// action, or a sampling σ that differs from the loss's, shows up as KL > 0.
TEST_CASE("ppo: rollout log-probs match the loss's (unclipped continuous sample)") {
  Args a;
  a.init_log_std = 1.0;
  a.norm_obs = true;
  a.norm_reward = true;
  Rng rng(1);
  Agent<float> agent({rl::Pendulum::obs_dim, rl::Pendulum::act_dim, false}, a, rng);
  Rollout<rl::Pendulum> ro(2, 256, 2);
  ro.collect(agent, rng, a);
  ro.gae(a.gamma, a.gae_lambda);
  std::vector<int> order(std::size_t(ro.B));
  std::iota(order.begin(), order.end(), 0);
  rng.shuffle(order);
  Minibatch<float> mb = make_minibatch<rl::Pendulum, float>(ro.B);
  gather(ro, order, 0, mb);
  Tape<float> t;
  LossTerms<float> lt = ppo_loss(t, agent, mb, a, 0.2);
  CHECK(std::abs(lt.approx_kl) < 1e-9);
  CHECK(lt.clip_frac == 0.0);
  CHECK(ro.global_step == 512);
}

TEST_CASE("ppo: orthogonal init gains and parameter names") {
  Rng rng(0);
  Agent<float> agent({4, 2, true}, Args{}, rng);
  auto ps = parameters<float>(agent);
  CHECK(ps.size() == 12);
  CHECK(ps[0].name == "actor.0.weight");
  // An orthogonal matrix scaled by gain: rows (out ≤ in) or columns (out > in) have norm = gain.
  auto& w = agent.actor_head.weight.value();
  for (int r = 0; r < 2; ++r) CHECK(w.mat().row(r).norm() == doctest::Approx(0.01).epsilon(1e-5).scale(0));
  CHECK(agent.critic_head.weight.value().mat().row(0).norm() == doctest::Approx(1.0).epsilon(1e-5).scale(0));
  CHECK(agent.actor1.weight.value().mat().col(0).norm() == doctest::Approx(std::sqrt(2.0)).epsilon(1e-5).scale(0));
}

// The normalizers' statistics are buffers of the agent: a checkpoint carries them in
// double, and a checkpoint written before they were (rms_counts) is refused by name.
TEST_CASE("ppo: the normalizers are buffers that checkpoints save and load") {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / ("marrow_unit_ppo_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  Args a;
  a.norm_obs = a.norm_reward = true;
  Rng rng(1);
  Agent<float> agent({rl::Pendulum::obs_dim, rl::Pendulum::act_dim, false}, a, rng);
  Rollout<rl::Pendulum> ro(2, 64, 2);
  ro.collect(agent, rng, a);
  REQUIRE(agent.obs_rms.count[0] > 100);
  REQUIRE(agent.ret_rms.var[0] != 1.0);
  const std::string path = dir / "agent.safetensors";
  Checkpoint<float>(agent).save(path, 1);

  Rng other(2);
  Agent<float> fresh({rl::Pendulum::obs_dim, rl::Pendulum::act_dim, false}, a, other);
  load_weights<float>(path, fresh);
  for (int k = 0; k < 3; ++k) {
    CHECK(fresh.obs_rms.mean[k] == agent.obs_rms.mean[k]);
    CHECK(fresh.obs_rms.var[k] == agent.obs_rms.var[k]);
  }
  CHECK(fresh.obs_rms.count[0] == agent.obs_rms.count[0]);
  CHECK(fresh.ret_rms.mean[0] == agent.ret_rms.mean[0]);
  CHECK(fresh.ret_rms.var[0] == agent.ret_rms.var[0]);
  CHECK(fresh.ret_rms.count[0] == agent.ret_rms.count[0]);

  safetensors::File f = safetensors::read(path);
  std::vector<safetensors::Entry> old;
  for (auto& e : f.tensors)
    if (e.name.find("rms.") == std::string::npos) old.push_back(e);
  old.push_back(safetensors::from_tensor("obs_rms.mean", zeros<float>({3})));
  old.push_back(safetensors::from_tensor("obs_rms.var", ones<float>({3})));
  old.push_back(safetensors::from_tensor("ret_rms.var", ones<float>({1})));
  old.push_back(safetensors::from_tensor("rms_counts", zeros<float>({2})));
  safetensors::write(dir / "old.safetensors", old, {});
  CHECK_THROWS_WITH_AS(load_weights<float>((dir / "old.safetensors").string(), fresh), doctest::Contains("tensor 'obs_rms.count' is missing"),
                       Error);
  std::filesystem::remove_all(dir);
}

// A rank steps only its slice of the environments: copies 2 and 3 of 4 must start
// and go on (resets included) exactly as VecEnv's copies 2 and 3 do in one process.
TEST_CASE("ppo: an environment slice steps as the same copies of the whole vector") {
  rl::VecEnv<rl::CartPole> all(4, 7);
  rl::VecEnv<rl::CartPole> slice(4, 2, 2, 7);
  Rng pick(5);
  std::vector<rl::EpisodeStats> done;
  std::size_t ended = 0;
  for (int t = 0; t < 300; ++t) {
    std::vector<rl::Obs> act(4);
    for (auto& a : act) a[0] = double(pick.below(2));
    for (int i = 0; i < 2; ++i) CHECK(slice.obs()[std::size_t(i)] == all.obs()[std::size_t(2 + i)]);
    const auto& r = all.step(act);
    for (int i = 0; i < 2; ++i) {
      const auto s = slice.step(i, act[std::size_t(2 + i)]);
      CHECK(s.reward == r.reward[std::size_t(2 + i)]);
      CHECK(s.terminated == bool(r.terminated[std::size_t(2 + i)]));
      CHECK(s.truncated == bool(r.truncated[std::size_t(2 + i)]));
      if (s.terminated || s.truncated) {
        CHECK(s.final_obs == r.final_obs[std::size_t(2 + i)]);
        ++ended;
      }
    }
  }
  CHECK(ended > 5);  // resets drew from the slice's own streams
}

// A checkpoint carries the environments mid-episode: a rollout that loads another's
// state steps on exactly as the other does (the reset streams included).
TEST_CASE("ppo: the environments' state survives save_envs and load_envs") {
  Args a;
  a.norm_reward = true;
  Rng rng(1);
  Agent<float> agent({rl::Pendulum::obs_dim, rl::Pendulum::act_dim, false}, a, rng);
  Rollout<rl::Pendulum> ro(2, 150, 2);
  ro.collect(agent, rng, a);  // mid-episode: Pendulum's episodes last 200 steps
  const std::string saved = ro.save_envs();
  Rollout<rl::Pendulum> copy(2, 150, 2);
  CHECK(copy.save_envs() != saved);
  copy.load_envs(saved);
  CHECK(copy.save_envs() == saved);
  CHECK(copy.disc_return == ro.disc_return);
  for (int t = 0; t < 100; ++t)  // across the episodes' ends and resets
    for (int i = 0; i < 2; ++i) {
      const rl::Obs act{std::sin(t + i)};
      const auto x = ro.envs.step(i, act), y = copy.envs.step(i, act);
      CHECK(x.reward == y.reward);
      CHECK(ro.envs.obs()[std::size_t(i)] == copy.envs.obs()[std::size_t(i)]);
    }
  Rollout<rl::Pendulum> other(3, 150, 2);
  CHECK_THROWS_WITH_AS(other.load_envs(saved), doctest::Contains("--num-envs"), Error);
}

TEST_CASE("ppo: float loss and gradients on our GEMM agree with Eigen's (64 hidden, Pendulum)") {
  Rng rng(10);
  Args args;
  Agent<float> agent({rl::Pendulum::obs_dim, rl::Pendulum::act_dim, false}, args, rng);
  const int M = 64;
  const Minibatch<float> mb{randn<float>({M, rl::Pendulum::obs_dim}, rng), randn<float>({M, rl::Pendulum::act_dim}, rng),
                            randn<float>({M}, rng), randn<float>({M}, rng), randn<float>({M}, rng), randn<float>({M}, rng)};
  testing::check_gemm_engines(parameters<float>(agent), [&](Tape<float>& t) { return ppo_loss(t, agent, mb, args, 0.2).total; },
                              1e-4);
}
