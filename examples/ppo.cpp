// ppo: train a PPO agent on a classic-control task, or evaluate one.
//
//   ppo train --env CartPole-v1 --steps 100000 --out runs/ppo
//   ppo eval  --ckpt runs/ppo/checkpoint.safetensors --episodes 100
//   mpirun -np 2 ppo train ...   each rank steps its slice of the environments
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <vector>
#include <omp.h>

#include <marrow/dist/data_parallel.hpp>
#include <marrow/rl/acrobot.hpp>
#include <marrow/rl/cartpole.hpp>
#include <marrow/rl/mountain_car.hpp>
#include <marrow/rl/pendulum.hpp>
#include <marrow/train/model_config.hpp>
#include <marrow/train/run.hpp>
#include <models/ppo/agent.hpp>
#include <models/ppo/config.hpp>
#include <models/ppo/rollout.hpp>
#include <models/ppo/update.hpp>

using namespace marrow;
using ppo::Args;

namespace {

// The checkpoint metadata entry holding the environments' state, so that --resume
// continues the episodes that were running (at any process count) instead of new ones.
const char* const kEnvsKey = "ppo_environments";

// Call fn.template operator()<Env>() for the environment named `name`.
template <class F> auto with_env(const std::string& name, F&& fn) {
  if (name == rl::CartPole::kName) return fn.template operator()<rl::CartPole>();
  if (name == rl::Acrobot::kName) return fn.template operator()<rl::Acrobot>();
  if (name == rl::Pendulum::kName) return fn.template operator()<rl::Pendulum>();
  if (name == rl::MountainCarContinuous::kName) return fn.template operator()<rl::MountainCarContinuous>();
  throw UsageError("--env: unknown environment '" + name +
                   "' (CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCarContinuous-v0)");
}

// Tuned hyper-parameters per environment (after the RL Baselines3 Zoo's PPO
// settings); `--preset cleanrl` keeps CleanRL's defaults instead.
Args preset(const std::string& env, const std::string& which) {
  Args a;
  a.env = env;
  if (which == "cleanrl") return a;
  if (which != "tuned") throw UsageError("--preset: expected 'tuned' or 'cleanrl', got '" + which + "'");
  if (env == "CartPole-v1") {
    a.total_steps = 100000, a.num_envs = 8, a.num_steps = 32, a.num_minibatches = 1, a.update_epochs = 20;
    a.gamma = 0.98, a.gae_lambda = 0.8, a.ent_coef = 0.0, a.lr = 1e-3, a.anneal_clip = true;
  } else if (env == "Acrobot-v1") {
    a.total_steps = 500000, a.num_envs = 16, a.num_steps = 256, a.num_minibatches = 64, a.update_epochs = 4;
    a.gamma = 0.99, a.gae_lambda = 0.94, a.ent_coef = 0.0, a.lr = 3e-4, a.norm_obs = true;
  } else if (env == "Pendulum-v1") {
    // The zoo's gamma 0.9 is tuned for gSDE; with a plain Gaussian its 10-step horizon let
    // 1 of 10 seeds settle on spinning the pendulum (about -950). 0.98 swung up on seeds 1-10.
    a.total_steps = 500000, a.num_envs = 4, a.num_steps = 1024, a.num_minibatches = 64, a.update_epochs = 10;
    a.gamma = 0.98, a.gae_lambda = 0.95, a.ent_coef = 0.0, a.lr = 1e-3, a.clip_coef = 0.2;
    a.norm_obs = true, a.norm_reward = true, a.init_log_std = 0.0;
  } else if (env == "MountainCarContinuous-v0") {
    a.total_steps = 300000, a.num_envs = 8, a.num_steps = 512, a.num_minibatches = 32, a.update_epochs = 10;
    a.gamma = 0.999, a.gae_lambda = 0.9, a.ent_coef = 0.0, a.lr = 3e-4, a.clip_coef = 0.2;
    a.norm_obs = true, a.norm_reward = true, a.init_log_std = 0.5, a.max_grad_norm = 5.0;
  }
  return a;
}

void add_args(Cli& cli, Args& a) {
  cli.flag("env", a.env, "environment: CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCarContinuous-v0");
  cli.flag("num-envs", a.num_envs, "environments stepped in lockstep").min(1);
  cli.flag("num-steps", a.num_steps, "steps per environment per rollout").min(1);
  cli.flag("lr", a.lr, "Adam learning rate").min(0);
  cli.flag("anneal-lr", a.anneal_lr, "decay the learning rate linearly to 0");
  cli.flag("gamma", a.gamma, "discount").min(0).max(1);
  cli.flag("gae-lambda", a.gae_lambda, "GAE lambda").min(0).max(1);
  cli.flag("num-minibatches", a.num_minibatches, "minibatches per epoch").min(1);
  cli.flag("update-epochs", a.update_epochs, "passes over each rollout").min(1);
  cli.flag("norm-adv", a.norm_adv, "normalize advantages per minibatch");
  cli.flag("clip-coef", a.clip_coef, "surrogate clipping epsilon").min(0);
  cli.flag("anneal-clip", a.anneal_clip, "decay clip-coef linearly to 0");
  cli.flag("clip-vloss", a.clip_vloss, "clip the value loss");
  cli.flag("ent-coef", a.ent_coef, "entropy bonus weight");
  cli.flag("vf-coef", a.vf_coef, "value loss weight").min(0);
  cli.flag("max-grad-norm", a.max_grad_norm, "global gradient-norm clip").min(0);
  cli.flag("target-kl", a.target_kl, "early-stop epochs above this approx KL (0: off)").min(0);
  cli.flag("hidden", a.hidden, "hidden width of actor and critic").min(1);
  cli.flag("init-log-std", a.init_log_std, "initial log std of the Gaussian policy");
  cli.flag("norm-obs", a.norm_obs, "running observation normalization");
  cli.flag("norm-reward", a.norm_reward, "reward scaling by the return's std");
}

template <class Env> int train(Args a, const CommonFlags& common, const Json& flags) {
  a.seed = std::uint64_t(common.seed);
  a.total_steps = common.steps;
  const int E = a.num_envs, S = a.num_steps, B = E * S;
  if (B % a.num_minibatches != 0)
    throw UsageError(detail::cat("--num-minibatches: num-envs x num-steps = ", B, " is not divisible by ",
                                 a.num_minibatches));
  const int MB = B / a.num_minibatches;
  const int num_updates = int(std::max<std::int64_t>(1, a.total_steps / B));

  Rng rng(a.seed);  // the networks' init, then action sampling and minibatch shuffling
  ppo::Agent<float> agent({Env::obs_dim, Env::act_dim, Env::discrete}, a, rng);
  const ParamList<float> params = parameters<float>(agent);
  AdamOptions<float> adam;
  adam.lr = float(a.lr);
  adam.eps = float(a.adam_eps);
  Adam<float> opt(params, adam);

  Checkpoint<float> ckpt(agent);  // weights and the normalizers' statistics
  ckpt.add_state([&](const StateVisitor<float>& f) { opt.visit_state(f); });
  ckpt.add_rng("sampler", rng);
  const std::string title = std::string("PPO ") + Env::kName;
  Run run(common,
          {.name = std::string("ppo ") + Env::kName, .steps = num_updates, .items_per_step = B,
           .plots = {{.file = "learning_curve.png", .keys = {"episodic_return", "mean_return_last20"},
                      .options = {.title = title, .xlabel = "env steps", .ylabel = "return"}, .x_key = "env_steps"}}},
          flags);
  // The environments cut into one slice per shard; the minibatches into shards of MB / K.
  const int K = run.shards();
  if (E % K != 0)
    throw UsageError(detail::cat("--num-envs ", E, " must be a multiple of --shards ", K,
                                 " (each shard steps num-envs / shards environments)"));
  if (MB % K != 0)
    throw UsageError(detail::cat("--shards ", K, " must divide the minibatch of ", MB,
                                 " (num-envs x num-steps / num-minibatches)"));
  ppo::Rollout<Env> rollout(E, S, a.seed + 1, run.world(), K);
  dist::DataParallel<float> dp(params, run.world(), K);
  const CheckpointInfo resumed = run.resume_info(ckpt);
  int update = int(resumed.step);
  if (auto it = resumed.metadata.find(kEnvsKey); it != resumed.metadata.end())
    rollout.load_envs(it->second);
  else if (run.resuming())
    run.message("the checkpoint holds no environment state (written by an older ppo): the environments start afresh");
  rollout.global_step = std::int64_t(update) * B;
  const std::int64_t first_step = rollout.global_step;

  Tape<float> tape;
  ppo::Minibatch<float> mb = ppo::make_minibatch<Env, float>(MB);
  std::vector<int> order(static_cast<std::size_t>(B));
  std::optional<std::int64_t> steps_to_threshold;
  std::size_t seen = 0;  // episodes already logged
  while (update < num_updates) {
    run.start_step();
    const double frac = 1.0 - double(update) / double(num_updates);
    const double lr_now = a.anneal_lr ? frac * a.lr : a.lr;
    const double clip_now = a.anneal_clip ? frac * a.clip_coef : a.clip_coef;
    opt.set_lr(float(lr_now));

    // Rollout: S steps of E environments under the current policy (each rank steps its
    // shards' slices; every rank ends up with the whole rollout).
    rollout.collect(agent, rng, a);
    // GAE: advantages and returns, backwards through the rollout.
    rollout.gae(a.gamma, a.gae_lambda);
    // Update: epochs over shuffled minibatches of the clipped surrogate loss.
    ppo::UpdateStats st;
    std::iota(order.begin(), order.end(), 0);
    for (int epoch = 0; epoch < a.update_epochs; ++epoch) {
      rng.shuffle(order);
      double epoch_kl = 0;
      for (int start = 0; start < B; start += MB) {
        ppo::gather(rollout, order, start, mb);
        ppo::normalize_advantages(mb, a);  // over the whole minibatch, before it is cut into shards
        opt.zero_grad();
        // Each shard's loss over its rows of the minibatch; the diagnostics come back as means over the shards.
        const std::vector<double> d = dp.step(MB, [&](std::int64_t b0, std::int64_t b1) {
          tape.reset();
          ppo::LossTerms<float> lt = ppo::ppo_loss(tape, agent, ppo::rows(mb, b0, b1), a, clip_now);
          dp.backward(tape, lt.total);
          return lt.diagnostics();
        });
        clip_grad_norm(params, float(a.max_grad_norm));
        opt.step();
        st.add(d);
        epoch_kl += d[ppo::kApproxKl];
      }
      st.epochs_run = epoch + 1;
      if (a.target_kl > 0 && epoch_kl / a.num_minibatches > a.target_kl) break;
    }
    tape.reset();
    st.average();
    ++update;
    run.stop_step();

    // Checked before logging: a failed update must not append to a good run's metrics.
    run.check_finite(st.policy_loss, update, "policy loss");
    run.check_finite(st.value_loss, update, "value loss");
    const auto& eps = rollout.episodes;
    double ep_ret = std::nan(""), ep_len = std::nan("");
    if (eps.size() > seen) {
      ep_ret = ep_len = 0;
      for (std::size_t i = seen; i < eps.size(); ++i) {
        ep_ret += eps[i].ret;
        ep_len += eps[i].length;
      }
      ep_ret /= double(eps.size() - seen);
      ep_len /= double(eps.size() - seen);
      seen = eps.size();
    }
    const double last20 = rollout.mean_return_last(20);
    if (!steps_to_threshold && eps.size() >= 20 && last20 >= Env::threshold) steps_to_threshold = rollout.global_step;
    const double sps = double(rollout.global_step - first_step) / (run.timer().total_ms() / 1000.0 + 1e-12);
    run.log(with_allreduce(dp.timing(), Json::object({{"step", update},
                                                      {"env_steps", rollout.global_step},
                                                      {"episodic_return", ep_ret},
                                                      {"episodic_length", ep_len},
                                                      {"mean_return_last20", last20},
                                                      {"sps", sps},
                                                      {"lr", lr_now},
                                                      {"policy_loss", st.policy_loss},
                                                      {"value_loss", st.value_loss},
                                                      {"entropy", st.entropy},
                                                      {"approx_kl", st.approx_kl},
                                                      {"clip_frac", st.clip_frac},
                                                      {"epochs", st.epochs_run},
                                                      {"explained_variance", rollout.explained_variance()}})));
    run.progress(update, {{"return20", last20}, {"ent", st.entropy}});
    const bool stop = run.interrupted();
    if (stop || update == num_updates) {
      std::map<std::string, std::string> meta = model_config_metadata(a);
      meta[kEnvsKey] = rollout.save_envs();  // a collective: every rank's slice
      run.save(ckpt, update, meta);
    }
    if (stop) return run.interrupted_exit();
  }
  run.finish({{"env", std::string(Env::kName)},
              {"env_steps", rollout.global_step},
              {"mean_return_last20", rollout.mean_return_last(20)},
              {"steps_to_threshold", steps_to_threshold ? Json(*steps_to_threshold) : Json()},
              {"threshold", Env::threshold},
              {"episodes", std::int64_t(rollout.episodes.size())},
              {"sps", double(rollout.global_step - first_step) / (run.timer().total_ms() / 1000.0 + 1e-12)}});
  return 0;
}

// The deterministic policy of a checkpoint over `episodes` fresh episodes.
template <class Env> int evaluate(const std::string& ckpt_path, const Args& a, int episodes, std::uint64_t seed) {
  Rng init(a.seed);
  ppo::Agent<float> agent({Env::obs_dim, Env::act_dim, Env::discrete}, a, init);
  load_weights<float>(ckpt_path, agent);
  Rng rng(seed + 12345);
  std::vector<double> returns;
  for (int ep = 0; ep < episodes; ++ep) {
    Env env;
    rl::Obs o = env.reset(rng);
    double ret = 0;
    for (;;) {
      rl::Step s = env.step(ppo::act_deterministic<Env>(agent, o));
      ret += s.reward;
      o = s.obs;
      if (s.terminated || s.truncated) break;
    }
    returns.push_back(ret);
  }
  double m = 0, v = 0;
  for (double r : returns) m += r / double(returns.size());
  for (double r : returns) v += (r - m) * (r - m) / double(returns.size());
  std::printf("%s: %d episodes, deterministic policy: mean return %.2f ± %.2f\n", Env::kName, episodes, m, std::sqrt(v));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("ppo", [&] {
    const std::string env = Cli::peek(argc, argv, "env", "CartPole-v1");
    const std::string which = Cli::peek(argc, argv, "preset", "tuned");
    Args a = preset(env, which);
    CommonFlags common;
    common.out = "runs/ppo";
    common.steps = a.total_steps;
    common.seed = 1;
    int episodes = 100;
    std::string preset_name = which;
    Cli cli("ppo", "PPO on classic-control tasks written from their equations");
    cli.command("train", "train an agent").command("eval", "run the deterministic policy of a checkpoint");
    // ppo reads no data and counts environment steps, not epochs.
    common.add_to(cli, {.data = false, .steps = false, .epochs = false, .shards = true, .stop_at = true, .precision = true});
    cli.flag("steps", common.steps, "environment steps over all copies").min(0);
    cli.flag("preset", preset_name, "hyper-parameters: tuned (per environment) or cleanrl (CleanRL's defaults)");
    cli.flag("episodes", episodes, "eval: episodes to run").min(1);
    add_args(cli, a);
    const std::string cmd = cli.parse_or_exit(argc, argv);
    if (common.threads > 0) omp_set_num_threads(common.threads);
    if (cmd == "train") return with_env(a.env, [&]<class Env>() { return train<Env>(a, common, cli.values()); });
    if (cmd == "eval") {
      const std::string path = common.checkpoint_path();
      const Args trained = model_config_from_checkpoint<Args>(path, "ppo");
      return with_env(trained.env, [&]<class Env>() {
        return evaluate<Env>(path, trained, episodes, std::uint64_t(common.seed));
      });
    }
    throw UsageError("expected a command: train or eval");
  });
}
