#pragma once
// PPO's arguments, one line of doc per field as in CleanRL's ppo.py. They are
// also the model's configuration: fields() stores them in every checkpoint
// (train/model_config.hpp), so `eval` rebuilds the agent without the flags.
#include <cstdint>
#include <string>

namespace marrow::ppo {

struct Args {
  std::string env = "CartPole-v1";    // environment id
  std::int64_t total_steps = 100000;  // environment steps over all copies
  int num_envs = 4;                   // environments stepped in lockstep
  int num_steps = 128;                // steps per environment per rollout
  double lr = 2.5e-4;                 // Adam learning rate
  bool anneal_lr = true;              // decay the learning rate linearly to 0
  double adam_eps = 1e-5;             // Adam epsilon (CleanRL's)
  double gamma = 0.99;                // discount
  double gae_lambda = 0.95;           // GAE lambda
  int num_minibatches = 4;            // minibatches per epoch
  int update_epochs = 4;              // passes over each rollout
  bool norm_adv = true;               // normalize advantages per minibatch
  double clip_coef = 0.2;             // surrogate clipping epsilon
  bool anneal_clip = false;           // decay clip_coef linearly to 0 (SB3 zoo's lin_0.2)
  bool clip_vloss = true;             // clip the value loss like the policy
  double ent_coef = 0.01;             // entropy bonus
  double vf_coef = 0.5;               // value loss weight
  double max_grad_norm = 0.5;         // global gradient-norm clip
  double target_kl = 0.0;             // stop the epochs when approx KL exceeds this (0: off)
  int hidden = 64;                    // width of the two tanh layers of actor and critic
  double init_log_std = 0.0;          // initial log standard deviation (continuous actions)
  bool norm_obs = false;              // running observation normalization
  bool norm_reward = false;           // scale rewards by the std of the discounted return
  double clip_obs = 10.0;             // clip normalized observations to ±this
  double clip_reward = 10.0;          // clip scaled rewards to ±this
  std::uint64_t seed = 1;             // seeds the networks, the environments and the sampling

  template <class F> void fields(F& f) {
    f("env", env);
    f("total_steps", total_steps);
    f("num_envs", num_envs);
    f("num_steps", num_steps);
    f("lr", lr);
    f("anneal_lr", anneal_lr);
    f("adam_eps", adam_eps);
    f("gamma", gamma);
    f("gae_lambda", gae_lambda);
    f("num_minibatches", num_minibatches);
    f("update_epochs", update_epochs);
    f("norm_adv", norm_adv);
    f("clip_coef", clip_coef);
    f("anneal_clip", anneal_clip);
    f("clip_vloss", clip_vloss);
    f("ent_coef", ent_coef);
    f("vf_coef", vf_coef);
    f("max_grad_norm", max_grad_norm);
    f("target_kl", target_kl);
    f("hidden", hidden);
    f("init_log_std", init_log_std);
    f("norm_obs", norm_obs);
    f("norm_reward", norm_reward);
    f("clip_obs", clip_obs);
    f("clip_reward", clip_reward);
    f("seed", seed);
  }
};

}  // namespace marrow::ppo
