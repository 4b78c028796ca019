#pragma once
// Proximal Policy Optimization (Schulman et al. 2017), read top to bottom like
// CleanRL's ppo.py: the arguments, the agent, then rollout -> GAE -> update.
//
// Shapes: E = envs, S = steps per rollout, O = obs dim, A = action dim (or
// number of discrete actions), M = minibatch size.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include <marrow/init.hpp>
#include <marrow/marrow.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/nn.hpp>
#include <marrow/ops/shape.hpp>
#include <marrow/optim.hpp>
#include <marrow/rl/env.hpp>
#include <marrow/rl/vec_env.hpp>

namespace marrow::ppo {

struct Args {
  std::string env = "CartPole-v1";  // environment id
  std::int64_t total_steps = 100000;  // environment steps over all copies
  int num_envs = 4;                  // environments stepped in lockstep
  int num_steps = 128;               // steps per environment per rollout
  double lr = 2.5e-4;                // Adam learning rate
  bool anneal_lr = true;             // decay the learning rate linearly to 0
  double adam_eps = 1e-5;            // Adam epsilon (CleanRL's)
  double gamma = 0.99;               // discount
  double gae_lambda = 0.95;          // GAE lambda
  int num_minibatches = 4;           // minibatches per epoch
  int update_epochs = 4;             // passes over each rollout
  bool norm_adv = true;              // normalize advantages per minibatch
  double clip_coef = 0.2;            // surrogate clipping epsilon
  bool anneal_clip = false;          // decay clip_coef linearly to 0 (SB3 zoo's lin_0.2)
  bool clip_vloss = true;            // clip the value loss like the policy
  double ent_coef = 0.01;            // entropy bonus
  double vf_coef = 0.5;              // value loss weight
  double max_grad_norm = 0.5;        // global gradient-norm clip
  double target_kl = 0.0;            // stop the epochs when approx KL exceeds this (0: off)
  int hidden = 64;                   // width of the two tanh layers of actor and critic
  double init_log_std = 0.0;         // initial log standard deviation (continuous actions)
  bool norm_obs = false;             // running observation normalization
  bool norm_reward = false;          // scale rewards by the std of the discounted return
  double clip_obs = 10.0;            // clip normalized observations to ±this
  double clip_reward = 10.0;         // clip scaled rewards to ±this
  std::uint64_t seed = 1;            // seeds the networks, the environments and the sampling
};

// ---- running statistics (observation normalization, reward scaling) ----------
// Chan et al.'s parallel update of mean and variance, as in Gymnasium's wrappers.
struct RunningMeanStd {
  std::vector<double> mean, var;
  double count = 1e-4;
  explicit RunningMeanStd(int dim = 1) : mean(std::size_t(dim), 0.0), var(std::size_t(dim), 1.0) {}

  // Fold in a batch of n rows of `dim` values.
  void update(const double* x, int n, int dim) {
    std::vector<double> bm(std::size_t(dim), 0.0), bv(std::size_t(dim), 0.0);
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < dim; ++k) bm[k] += x[i * dim + k] / n;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < dim; ++k) bv[k] += (x[i * dim + k] - bm[k]) * (x[i * dim + k] - bm[k]) / n;
    const double tot = count + n;
    for (int k = 0; k < dim; ++k) {
      const double delta = bm[k] - mean[k];
      const double m2 = var[k] * count + bv[k] * n + delta * delta * count * n / tot;
      mean[k] += delta * n / tot;
      var[k] = m2 / tot;
    }
    count = tot;
  }
};

// ---- the agent ----------------------------------------------------------------
struct AgentShape {
  int obs_dim, act_dim;
  bool discrete;
};

template <class T> struct Agent {
  // Separate actor and critic MLPs: O -> H -> H -> A (logits or mean) and O -> H -> H -> 1.
  Linear<T> actor1, actor2, actor_head, critic1, critic2, critic_head;
  Param<T> log_std;  // (A), state-independent; continuous actions only
  bool discrete;
  // Normalization statistics, kept with the weights so `eval` sees what training saw:
  // observation mean/var (O), return var (1), and the two sample counts.
  Tensor<T> obs_mean, obs_var, ret_var, counts;

  Agent(AgentShape s, int hidden, double init_log_std, Rng& rng)
      : actor1(s.obs_dim, hidden, rng), actor2(hidden, hidden, rng), actor_head(hidden, s.act_dim, rng),
        critic1(s.obs_dim, hidden, rng), critic2(hidden, hidden, rng), critic_head(hidden, 1, rng),
        discrete(s.discrete) {
    // Orthogonal init: gain √2 for hidden layers, 0.01 for the policy head, 1 for the value head.
    const double root2 = std::numbers::sqrt2;
    for (auto [layer, gain] : {std::pair{&actor1, root2}, {&actor2, root2}, {&actor_head, 0.01},
                               {&critic1, root2}, {&critic2, root2}, {&critic_head, 1.0}}) {
      orthogonal_(layer->weight.value(), rng, gain);
      layer->bias.value().zero();
    }
    if (!discrete) log_std = Param<T>(full<T>({s.act_dim}, T(init_log_std)));
    obs_mean = zeros<T>({s.obs_dim});
    obs_var = ones<T>({s.obs_dim});
    ret_var = ones<T>({1});
    counts = zeros<T>({2});
  }

  Var<T> actor(Tape<T>& t, const Var<T>& obs) {  // (M, O) -> (M, A)
    Var<T> h = tanh(t, actor1(t, obs));
    h = tanh(t, actor2(t, h));
    return actor_head(t, h);
  }
  Var<T> critic(Tape<T>& t, const Var<T>& obs) {  // (M, O) -> (M)
    Var<T> h = tanh(t, critic1(t, obs));
    h = tanh(t, critic2(t, h));
    return reshape(t, critic_head(t, h), {-1});
  }

  void visit(Visitor<T>& v, const std::string& prefix) {
    actor1.visit(v, join_name(prefix, "actor.0"));
    actor2.visit(v, join_name(prefix, "actor.1"));
    actor_head.visit(v, join_name(prefix, "actor.2"));
    critic1.visit(v, join_name(prefix, "critic.0"));
    critic2.visit(v, join_name(prefix, "critic.1"));
    critic_head.visit(v, join_name(prefix, "critic.2"));
    if (!discrete) v.visit_param(join_name(prefix, "log_std"), log_std);
    v.visit_buffer(join_name(prefix, "obs_rms.mean"), obs_mean);
    v.visit_buffer(join_name(prefix, "obs_rms.var"), obs_var);
    v.visit_buffer(join_name(prefix, "ret_rms.var"), ret_var);
    v.visit_buffer(join_name(prefix, "rms_counts"), counts);
  }
};

// log π(a|s) and the entropy per row, from the actor's output.
// discrete: actions (M) as indices; continuous: actions (M, A).
template <class T> struct PolicyTerms {
  Var<T> logp;     // (M)
  Var<T> entropy;  // (M)
};
template <class T>
PolicyTerms<T> policy_terms(Tape<T>& t, Agent<T>& agent, const Var<T>& out, const Tensor<T>& actions) {
  const index_t M = out.dim(0), A = out.dim(1);
  if (agent.discrete) {
    Var<T> logp_all = log_softmax(t, out, -1);  // (M, A)
    Tensor<T> onehot(Shape{M, A});
    for (index_t i = 0; i < M; ++i) onehot[i * A + index_t(actions[i])] = T(1);
    Var<T> logp = sum(t, mul(t, logp_all, t.input(onehot)), {1});
    Var<T> entropy = neg(t, sum(t, mul(t, exp(t, logp_all), logp_all), {1}));
    return {logp, entropy};
  }
  // Diagonal Gaussian: log N(a; μ, σ) = −½((a−μ)/σ)² − log σ − ½ log 2π, summed over A.
  constexpr T half_log_2pi = T(0.91893853320467274178);
  Var<T> z = div(t, sub(t, t.input(actions), out), exp(t, agent.log_std));  // (M, A)
  Var<T> per_dim = sub(t, mul_scalar(t, mul(t, z, z), T(-0.5)), agent.log_std);
  Var<T> logp = add_scalar(t, sum(t, per_dim, {1}), -T(A) * half_log_2pi);
  // Entropy of the Gaussian: Σ (log σ + ½ + ½ log 2π), the same for every row.
  Var<T> ent = add_scalar(t, sum(t, agent.log_std), T(A) * (T(0.5) + half_log_2pi));
  Var<T> entropy = add(t, t.input(Tensor<T>(Shape{M})), ent);
  return {logp, entropy};
}

// ---- one minibatch's loss ---------------------------------------------------------
template <class T> struct Minibatch {
  Tensor<T> obs;         // (M, O), normalized as the agent saw it
  Tensor<T> actions;     // (M) indices or (M, A)
  Tensor<T> old_logp;    // (M)
  Tensor<T> advantages;  // (M)
  Tensor<T> returns;     // (M)
  Tensor<T> old_values;  // (M)
};

template <class T> struct LossTerms {
  Var<T> total;
  double policy_loss, value_loss, entropy, approx_kl, clip_frac;
};

// Clipped surrogate + (clipped) value loss − entropy bonus.
template <class T> LossTerms<T> ppo_loss(Tape<T>& t, Agent<T>& agent, const Minibatch<T>& mb, const Args& args,
                                         double clip_coef) {
  const index_t M = mb.obs.dim(0);
  Var<T> obs = t.input(mb.obs);
  PolicyTerms<T> pt = policy_terms(t, agent, agent.actor(t, obs), mb.actions);
  Var<T> logratio = sub(t, pt.logp, t.input(mb.old_logp));
  Var<T> ratio = exp(t, logratio);

  Tensor<T> adv = mb.advantages.clone();
  if (args.norm_adv && M > 1) {
    const double m = adv.arr().mean();
    const double sd = std::sqrt((adv.arr() - T(m)).square().sum() / double(M - 1));  // torch.std: unbiased
    adv.arr() = (adv.arr() - T(m)) / T(sd + 1e-8);
  }
  Var<T> neg_adv = t.input(adv);
  neg_adv = neg(t, neg_adv);
  const T c = T(clip_coef);
  Var<T> pg1 = mul(t, neg_adv, ratio);
  Var<T> pg2 = mul(t, neg_adv, clamp(t, ratio, T(1) - c, T(1) + c));
  Var<T> pg_loss = mean(t, maximum(t, pg1, pg2));

  Var<T> v = agent.critic(t, obs);
  Var<T> ret = t.input(mb.returns);
  Var<T> err = sub(t, v, ret);
  Var<T> v_loss;
  if (args.clip_vloss) {
    Var<T> old_v = t.input(mb.old_values);
    Var<T> v_clipped = add(t, old_v, clamp(t, sub(t, v, old_v), -c, c));
    Var<T> err_c = sub(t, v_clipped, ret);
    v_loss = mul_scalar(t, mean(t, maximum(t, mul(t, err, err), mul(t, err_c, err_c))), T(0.5));
  } else {
    v_loss = mul_scalar(t, mean(t, mul(t, err, err)), T(0.5));
  }
  Var<T> ent = mean(t, pt.entropy);
  Var<T> total = add(t, sub(t, pg_loss, mul_scalar(t, ent, T(args.ent_coef))), mul_scalar(t, v_loss, T(args.vf_coef)));

  // Diagnostics from values (no tape): approx KL (Schulman's k3 estimator) and clip fraction.
  double kl = 0, clipped = 0;
  for (index_t i = 0; i < M; ++i) {
    const double lr = logratio.value()[i], r = ratio.value()[i];
    kl += (r - 1) - lr;
    clipped += std::abs(r - 1) > clip_coef ? 1 : 0;
  }
  return {total, pg_loss.item(), v_loss.item(), ent.item(), kl / double(M), clipped / double(M)};
}

// ---- GAE ------------------------------------------------------------------------------
// Generalized advantage estimation over a rollout stored step-major (index s·E + e).
// A termination stops the bootstrap; a truncation bootstraps from V(final obs),
// given in `final_values`; either way the recursion does not cross into the next episode.
inline void compute_gae(int S, int E, const std::vector<double>& rewards, const std::vector<double>& values,
                        const std::vector<char>& terminated, const std::vector<char>& truncated,
                        const std::vector<double>& final_values, const std::vector<double>& next_values,
                        double gamma, double lambda, std::vector<double>& advantages, std::vector<double>& returns) {
  advantages.assign(std::size_t(S * E), 0.0);
  returns.assign(std::size_t(S * E), 0.0);
  for (int e = 0; e < E; ++e) {
    double last = 0.0;
    for (int s = S - 1; s >= 0; --s) {
      const std::size_t i = std::size_t(s * E + e);
      double next_v, carry;
      if (terminated[i]) {
        next_v = 0.0;
        carry = 0.0;
      } else if (truncated[i]) {
        next_v = final_values[i];
        carry = 0.0;
      } else {
        next_v = s == S - 1 ? next_values[std::size_t(e)] : values[i + std::size_t(E)];
        carry = 1.0;
      }
      const double delta = rewards[i] + gamma * next_v - values[i];
      last = delta + gamma * lambda * carry * last;
      advantages[i] = last;
      returns[i] = last + values[i];
    }
  }
}

// ---- the training loop: rollout -> GAE -> update ---------------------------------------
struct UpdateStats {
  std::int64_t global_step = 0;
  int update = 0;
  double lr = 0, policy_loss = 0, value_loss = 0, entropy = 0, approx_kl = 0, clip_frac = 0;
  double explained_variance = 0;
  int epochs_run = 0;
};

template <class Env, class T = float> class Trainer {
 public:
  static constexpr int O = Env::obs_dim, A = Env::act_dim;

  explicit Trainer(const Args& a)
      : args(a), rng(a.seed), agent(make_agent(a, rng)), opt(parameters<T>(agent), adam_options(a)),
        envs(a.num_envs, a.seed + 1), obs_rms(O), ret_rms(1), disc_return(std::size_t(a.num_envs), 0.0) {
    MARROW_CHECK(a.num_envs > 0 && a.num_steps > 0, "ppo: num_envs and num_steps must be positive");
    MARROW_CHECK((a.num_envs * a.num_steps) % a.num_minibatches == 0, "ppo: num_envs·num_steps = ",
                 a.num_envs * a.num_steps, " is not divisible by num_minibatches = ", a.num_minibatches);
    num_updates = int(std::max<std::int64_t>(1, a.total_steps / (a.num_envs * a.num_steps)));
    params = parameters<T>(agent);
  }

  bool done() const { return update_index >= num_updates; }

  // Normalize raw observations (and fold them into the running statistics when asked).
  Tensor<T> normalize(const std::vector<rl::Obs>& raw, bool update_stats) {
    const int n = int(raw.size());
    std::vector<double> flat(std::size_t(n * O));
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < O; ++k) flat[std::size_t(i * O + k)] = raw[std::size_t(i)][std::size_t(k)];
    if (args.norm_obs && update_stats) obs_rms.update(flat.data(), n, O);
    Tensor<T> out = Tensor<T>::uninitialized({n, O});
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < O; ++k) {
        double v = flat[std::size_t(i * O + k)];
        if (args.norm_obs)
          v = rl::clip((v - obs_rms.mean[k]) / std::sqrt(obs_rms.var[k] + 1e-8), -args.clip_obs, args.clip_obs);
        out[i * O + k] = T(v);
      }
    return out;
  }

  // The deterministic action (argmax / mean) for evaluation.
  rl::Obs act_deterministic(const rl::Obs& raw) {
    Tape<T> t;
    auto g = t.no_grad();
    Tensor<T> x = normalize({raw}, false);
    Var<T> out = agent.actor(t, t.input(x));
    rl::Obs a{};
    if constexpr (Env::discrete) {
      a[0] = double(std::max_element(out.value().begin(), out.value().end()) - out.value().begin());
    } else {
      for (int k = 0; k < A; ++k) a[std::size_t(k)] = rl::clip(out.value()[k], Env::act_low, Env::act_high);
    }
    return a;
  }

  UpdateStats update() {
    const int E = args.num_envs, S = args.num_steps, B = E * S;
    const double frac = 1.0 - double(update_index) / double(num_updates);
    const double lr_now = args.anneal_lr ? frac * args.lr : args.lr;
    const double clip_now = args.anneal_clip ? frac * args.clip_coef : args.clip_coef;
    opt.set_lr(T(lr_now));

    // ---- rollout: S steps of E environments ----
    const int AD = Env::discrete ? 1 : A;  // stored action width
    Tensor<T> obs_buf = Tensor<T>::uninitialized({B, O}), act_buf = Tensor<T>::uninitialized({B, AD});
    const auto nB = static_cast<std::size_t>(B);
    std::vector<double> logp_buf(nB), val_buf(nB), rew_buf(nB), final_values(nB, 0.0);
    std::vector<char> term_buf(nB), trunc_buf(nB);
    std::vector<rl::Obs> actions(static_cast<std::size_t>(E));
    for (int s = 0; s < S; ++s) {
      Tensor<T> x = normalize(envs.obs(), true);
      std::copy(x.begin(), x.end(), obs_buf.data() + std::size_t(s) * E * O);
      {
        tape.reset();
        auto g = tape.no_grad();
        Var<T> xin = tape.input(x);
        Var<T> out = agent.actor(tape, xin);
        Var<T> v = agent.critic(tape, xin);
        for (int e = 0; e < E; ++e) {
          const std::size_t i = std::size_t(s * E + e);
          val_buf[i] = v.value()[e];
          sample_action(out.value().data() + e * A, actions[std::size_t(e)], logp_buf[i]);
          for (int k = 0; k < AD; ++k) act_buf[index_t(i) * AD + k] = T(actions[std::size_t(e)][std::size_t(k)]);
        }
      }
      // Continuous actions are clipped to the bounds when stepping; the log-prob stays that of the sample.
      std::vector<rl::Obs> stepped = actions;
      if constexpr (!Env::discrete)
        for (auto& a : stepped)
          for (int k = 0; k < A; ++k) a[std::size_t(k)] = rl::clip(a[std::size_t(k)], Env::act_low, Env::act_high);
      const auto& r = envs.step(stepped, &episodes);
      global_step += E;
      std::vector<rl::Obs> finals;
      std::vector<int> final_idx;
      for (int e = 0; e < E; ++e) {
        const std::size_t i = std::size_t(s * E + e);
        double rew = r.reward[std::size_t(e)];
        if (args.norm_reward) {
          disc_return[std::size_t(e)] = disc_return[std::size_t(e)] * args.gamma + rew;
          ret_rms.update(&disc_return[std::size_t(e)], 1, 1);
          rew = rl::clip(rew / std::sqrt(ret_rms.var[0] + 1e-8), -args.clip_reward, args.clip_reward);
          if (r.terminated[std::size_t(e)] || r.truncated[std::size_t(e)]) disc_return[std::size_t(e)] = 0.0;
        }
        rew_buf[i] = rew;
        term_buf[i] = r.terminated[std::size_t(e)];
        trunc_buf[i] = r.truncated[std::size_t(e)];
        if (r.truncated[std::size_t(e)]) {
          finals.push_back(r.final_obs[std::size_t(e)]);
          final_idx.push_back(int(i));
        }
      }
      if (!finals.empty()) {  // V(final obs) for bootstrapping the truncated episodes
        tape.reset();
        auto g = tape.no_grad();
        Var<T> v = agent.critic(tape, tape.input(normalize(finals, false)));
        for (std::size_t j = 0; j < finals.size(); ++j) final_values[std::size_t(final_idx[j])] = v.value()[index_t(j)];
      }
    }
    std::vector<double> next_values(static_cast<std::size_t>(E));
    {
      tape.reset();
      auto g = tape.no_grad();
      Var<T> v = agent.critic(tape, tape.input(normalize(envs.obs(), false)));
      for (int e = 0; e < E; ++e) next_values[std::size_t(e)] = v.value()[e];
    }

    // ---- GAE ----
    std::vector<double> adv, ret;
    compute_gae(S, E, rew_buf, val_buf, term_buf, trunc_buf, final_values, next_values, args.gamma, args.gae_lambda,
                adv, ret);

    // ---- update: epochs over shuffled minibatches ----
    UpdateStats st;
    const int MB = B / args.num_minibatches;
    std::vector<int> order(nB);
    for (int i = 0; i < B; ++i) order[std::size_t(i)] = i;
    Minibatch<T> mb{Tensor<T>::uninitialized({MB, O}),
                    Env::discrete ? Tensor<T>::uninitialized({MB}) : Tensor<T>::uninitialized({MB, A}),
                    Tensor<T>::uninitialized({MB}), Tensor<T>::uninitialized({MB}), Tensor<T>::uninitialized({MB}),
                    Tensor<T>::uninitialized({MB})};
    int n_mb = 0;
    for (int epoch = 0; epoch < args.update_epochs; ++epoch) {
      for (int i = B - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[std::size_t(rng.below(std::uint64_t(i + 1)))]);
      double epoch_kl = 0;
      for (int start = 0; start < B; start += MB) {
        for (int j = 0; j < MB; ++j) {
          const int i = order[std::size_t(start + j)];
          std::copy_n(obs_buf.data() + std::size_t(i) * O, O, mb.obs.data() + std::size_t(j) * O);
          std::copy_n(act_buf.data() + std::size_t(i) * AD, AD, mb.actions.data() + std::size_t(j) * AD);
          mb.old_logp[j] = T(logp_buf[std::size_t(i)]);
          mb.advantages[j] = T(adv[std::size_t(i)]);
          mb.returns[j] = T(ret[std::size_t(i)]);
          mb.old_values[j] = T(val_buf[std::size_t(i)]);
        }
        tape.reset();
        LossTerms<T> lt = ppo_loss(tape, agent, mb, args, clip_now);
        opt.zero_grad();
        tape.backward(lt.total);
        clip_grad_norm(params, T(args.max_grad_norm));
        opt.step();
        st.policy_loss += lt.policy_loss;
        st.value_loss += lt.value_loss;
        st.entropy += lt.entropy;
        st.approx_kl += lt.approx_kl;
        st.clip_frac += lt.clip_frac;
        epoch_kl += lt.approx_kl;
        ++n_mb;
      }
      st.epochs_run = epoch + 1;
      if (args.target_kl > 0 && epoch_kl / args.num_minibatches > args.target_kl) break;
    }
    tape.reset();
    if (n_mb) {
      st.policy_loss /= n_mb;
      st.value_loss /= n_mb;
      st.entropy /= n_mb;
      st.approx_kl /= n_mb;
      st.clip_frac /= n_mb;
    }
    // Explained variance of the value predictions against the returns.
    double mr = 0, vr = 0, vd = 0;
    for (int i = 0; i < B; ++i) mr += ret[std::size_t(i)] / B;
    for (int i = 0; i < B; ++i) {
      vr += (ret[std::size_t(i)] - mr) * (ret[std::size_t(i)] - mr);
      const double d = ret[std::size_t(i)] - val_buf[std::size_t(i)];
      vd += d * d;
    }
    double md = 0;
    for (int i = 0; i < B; ++i) md += (ret[std::size_t(i)] - val_buf[std::size_t(i)]) / B;
    vd = vd - B * md * md;
    st.explained_variance = vr > 0 ? 1.0 - vd / vr : 0.0;
    st.global_step = global_step;
    st.lr = lr_now;
    st.update = ++update_index;
    return st;
  }

  // Copy the running statistics into the agent's buffers (before saving) and back (after loading).
  void stats_to_agent() {
    for (int k = 0; k < O; ++k) {
      agent.obs_mean[k] = T(obs_rms.mean[std::size_t(k)]);
      agent.obs_var[k] = T(obs_rms.var[std::size_t(k)]);
    }
    agent.ret_var[0] = T(ret_rms.var[0]);
    agent.counts[0] = T(obs_rms.count);
    agent.counts[1] = T(ret_rms.count);
  }
  void stats_from_agent() {
    for (int k = 0; k < O; ++k) {
      obs_rms.mean[std::size_t(k)] = agent.obs_mean[k];
      obs_rms.var[std::size_t(k)] = agent.obs_var[k];
    }
    ret_rms.var[0] = agent.ret_var[0];
    obs_rms.count = agent.counts[0];
    ret_rms.count = agent.counts[1];
  }

  // Mean return of the last n finished training episodes (NaN when none).
  double mean_return_last(int n) const {
    if (episodes.empty()) return std::nan("");
    const int k = std::min<int>(n, int(episodes.size()));
    double s = 0;
    for (int i = int(episodes.size()) - k; i < int(episodes.size()); ++i) s += episodes[std::size_t(i)].ret;
    return s / k;
  }

  Args args;
  Rng rng;  // action sampling and minibatch shuffling
  Agent<T> agent;
  Adam<T> opt;
  ParamList<T> params;
  rl::VecEnv<Env> envs;
  RunningMeanStd obs_rms, ret_rms;
  std::vector<double> disc_return;
  std::vector<rl::EpisodeStats> episodes;
  std::int64_t global_step = 0;
  int update_index = 0, num_updates = 1;

 private:
  static Agent<T> make_agent(const Args& a, Rng& rng) {
    return Agent<T>({Env::obs_dim, Env::act_dim, Env::discrete}, a.hidden, a.init_log_std, rng);
  }
  static AdamOptions<T> adam_options(const Args& a) {
    AdamOptions<T> o;
    o.lr = T(a.lr);
    o.eps = T(a.adam_eps);
    return o;
  }

  // Sample from the policy at one row of the actor's output; write the action and its log-prob.
  void sample_action(const T* out, rl::Obs& action, double& logp) {
    if (Env::discrete) {
      double m = out[0];
      for (int k = 1; k < A; ++k) m = std::max(m, double(out[k]));
      double z = 0;
      for (int k = 0; k < A; ++k) z += std::exp(double(out[k]) - m);
      const double lz = m + std::log(z);
      double u = rng.uniform(), c = 0;
      int pick = A - 1;
      for (int k = 0; k < A; ++k) {
        c += std::exp(double(out[k]) - lz);
        if (u < c) {
          pick = k;
          break;
        }
      }
      action[0] = pick;
      logp = double(out[pick]) - lz;
      return;
    }
    logp = 0;
    for (int k = 0; k < A; ++k) {
      const double ls = agent.log_std.value()[k], sd = std::exp(ls), eps = rng.normal();
      action[std::size_t(k)] = double(out[k]) + sd * eps;
      logp += -0.5 * eps * eps - ls - 0.91893853320467274178;
    }
  }

  Tape<T> tape;
};

}  // namespace marrow::ppo
