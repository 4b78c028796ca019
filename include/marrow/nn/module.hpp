#pragma once
// How layers and models expose their state, without a base class.
//
// Every layer or model is a plain struct with
//     void visit(Visitor<T>& v, const std::string& prefix);
// that reports each parameter, buffer (running statistics) and train/eval flag
// under a hierarchical name ("down.0.conv1.weight"). Parameter lists,
// checkpoints, train/eval switching and parameter counts are all built on it.
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "../tape.hpp"

namespace marrow {

// What an optimizer's visit_state() (or any training-state source) calls for each state tensor.
template <class T> using StateVisitor = std::function<void(const std::string& name, Tensor<T>& state)>;

template <class T> struct Visitor {
  std::function<void(const std::string& name, Param<T>& p)> param;
  std::function<void(const std::string& name, Tensor<T>& buffer)> buffer;
  std::function<void(bool& training)> mode;
  // Buffers held in double whatever T is: running statistics whose many small
  // updates would drift if each were rounded to float (PPO's normalisers).
  // In a Visitor<double> they are plain buffers.
  std::function<void(const std::string& name, Tensor<double>& buffer)> buffer_f64;

  void visit_param(const std::string& name, Param<T>& p) { if (param) param(name, p); }
  void visit_buffer(const std::string& name, Tensor<T>& b) { if (buffer) buffer(name, b); }
  void visit_buffer(const std::string& name, Tensor<double>& b)
    requires(!std::is_same_v<T, double>)
  {
    if (buffer_f64) buffer_f64(name, b);
  }
  void visit_mode(bool& training) { if (mode) mode(training); }
};

// Join a prefix and a name with a dot ("" + "weight" = "weight").
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

template <class T, class M> ParamList<T> parameters(M& module, const std::string& prefix = "") {
  ParamList<T> out;
  Visitor<T> v;
  v.param = [&](const std::string& n, Param<T>& p) { out.push_back({n, &p}); };
  module.visit(v, prefix);
  return out;
}

// Named buffers (running statistics): saved in checkpoints, not trained.
template <class T, class M> std::vector<std::pair<std::string, Tensor<T>*>> buffers(M& module) {
  std::vector<std::pair<std::string, Tensor<T>*>> out;
  Visitor<T> v;
  v.buffer = [&](const std::string& n, Tensor<T>& b) { out.push_back({n, &b}); };
  module.visit(v, "");
  return out;
}

// The double buffers of a model of T != double (empty for T = double: there
// they are among buffers()).
template <class T, class M> std::vector<std::pair<std::string, Tensor<double>*>> f64_buffers(M& module) {
  std::vector<std::pair<std::string, Tensor<double>*>> out;
  Visitor<T> v;
  v.buffer_f64 = [&](const std::string& n, Tensor<double>& b) { out.push_back({n, &b}); };
  module.visit(v, "");
  return out;
}

template <class T, class M> void set_training(M& module, bool training) {
  Visitor<T> v;
  v.mode = [training](bool& flag) { flag = training; };
  module.visit(v, "");
}

template <class T, class M> index_t count_parameters(M& module) {
  index_t n = 0;
  for (auto& p : parameters<T>(module)) n += p.param->numel();
  return n;
}

template <class T> void zero_grad(const ParamList<T>& params) {
  for (auto& p : params) p.param->zero_grad();
}

}  // namespace marrow
