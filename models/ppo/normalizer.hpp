#pragma once
// Running statistics for observation normalization and reward scaling, as in
// Gymnasium's NormalizeObservation and NormalizeReward wrappers. They are
// buffers of the agent (agent.hpp visits them), so checkpoints carry them;
// they are kept in double: a float would round each of millions of updates.
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <marrow/nn/module.hpp>
#include <marrow/rl/env.hpp>

namespace marrow::ppo {

// Mean and variance of a stream of D-vectors, merged batch by batch with Chan
// et al.'s parallel update. The count starts at 1e-4 (Gymnasium's epsilon).
struct RunningMeanStd {
  Tensor<double> mean, var, count;  // (D), (D), (1)

  explicit RunningMeanStd(int dim) : mean(zeros<double>({dim})), var(ones<double>({dim})), count(full<double>({1}, 1e-4)) {}

  // Fold in a batch of n rows of D values.
  void update(const double* x, int n) {
    const int dim = int(mean.numel());
    std::vector<double> bm(std::size_t(dim), 0.0), bv(std::size_t(dim), 0.0);
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < dim; ++k) bm[k] += x[i * dim + k] / n;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < dim; ++k) bv[k] += (x[i * dim + k] - bm[k]) * (x[i * dim + k] - bm[k]) / n;
    const double tot = count[0] + n;
    for (int k = 0; k < dim; ++k) {
      const double delta = bm[k] - mean[k];
      const double m2 = var[k] * count[0] + bv[k] * n + delta * delta * count[0] * n / tot;
      mean[k] += delta * n / tot;
      var[k] = m2 / tot;
    }
    count[0] = tot;
  }

  template <class T> void visit(Visitor<T>& v, const std::string& prefix) {
    v.visit_buffer(join_name(prefix, "mean"), mean);
    v.visit_buffer(join_name(prefix, "var"), var);
    v.visit_buffer(join_name(prefix, "count"), count);
  }
};

// Observations (one row each) as the networks see them: when `normalize`,
// (x − mean)/√(var + 1e-8) clipped to ±clip, after folding the batch into the
// statistics when `update`; otherwise as they are.
template <class T>
Tensor<T> normalize_obs(RunningMeanStd& rms, const std::vector<rl::Obs>& raw, bool normalize, bool update, double clip) {
  const int n = int(raw.size()), O = int(rms.mean.numel());
  std::vector<double> flat(std::size_t(n * O));
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < O; ++k) flat[std::size_t(i * O + k)] = raw[std::size_t(i)][std::size_t(k)];
  if (normalize && update) rms.update(flat.data(), n);
  Tensor<T> out = Tensor<T>::uninitialized({n, O});
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < O; ++k) {
      double v = flat[std::size_t(i * O + k)];
      if (normalize) v = rl::clip((v - rms.mean[k]) / std::sqrt(rms.var[k] + 1e-8), -clip, clip);
      out[i * O + k] = T(v);
    }
  return out;
}

// One environment's reward divided by the standard deviation of its discounted
// return (not the return's mean: the reward's sign must stay), clipped to ±clip.
// `disc_return` is that environment's running discounted return; an episode's
// end restarts it.
inline double scale_reward(RunningMeanStd& ret_rms, double& disc_return, double reward, bool episode_end, double gamma,
                           double clip) {
  disc_return = disc_return * gamma + reward;
  ret_rms.update(&disc_return, 1);
  const double scaled = rl::clip(reward / std::sqrt(ret_rms.var[0] + 1e-8), -clip, clip);
  if (episode_end) disc_return = 0.0;
  return scaled;
}

}  // namespace marrow::ppo
