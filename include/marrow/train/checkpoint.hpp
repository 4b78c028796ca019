#pragma once
// Checkpoints: model weights plus everything needed to resume training
// bit-exactly, in ONE safetensors file.
//
// Layout of NAME.safetensors:
//   <param or buffer name>          model weights and buffers ("down.0.conv1.weight")
//   state.<name>                    optimizer state tensors ("state.adam.exp_avg.fc.weight")
//   state.rng.<name>                Rng states (I64 [6], see safetensors::from_rng_state)
//   __metadata__: format, step, config, plus caller extras
//
// Why one file and a "state." prefix rather than NAME.state.safetensors: a
// single rename is atomic, two are not. With two files a crash between the
// renames would leave new weights beside old optimizer moments; with one, a
// crash at any instant leaves the previous complete checkpoint. A sampler or
// evaluator loads weights with load_weights(), which skips "state.*".
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../nn/module.hpp"
#include "safetensors.hpp"

namespace marrow {

struct CheckpointInfo {
  std::int64_t step = 0;
  std::string config;
  std::map<std::string, std::string> metadata;  // everything in __metadata__
};

namespace detail {
inline const char* kCheckpointFormat = "marrow-checkpoint-1";

inline std::string shape_str(const std::vector<std::int64_t>& s) { return Shape(s).str(); }

// Copy a stored entry into a live tensor, checking the shape. An undefined
// target (optimizer state allocated lazily) takes the stored shape.
template <class T> void restore_tensor(const safetensors::Entry& e, Tensor<T>& t, const std::string& file) {
  if (!t.defined()) {
    t = safetensors::to_tensor<T>(e);
    return;
  }
  MARROW_CHECK(Shape(e.shape) == t.shape(), "checkpoint ", file, ": tensor '", e.name, "' has shape ",
               shape_str(e.shape), " in the file but ", t.shape().str(), " in the model");
  safetensors::copy_into(e, t.data());
}
}  // namespace detail

template <class T> class Checkpoint {
 public:
  Checkpoint() = default;
  // Everything a model reports through visit(): parameters and buffers.
  template <class Model>
    requires requires(Model& m, Visitor<T>& v) { m.visit(v, std::string()); }
  explicit Checkpoint(Model& model) {
    params_ = parameters<T>(model);
    buffers_ = buffers<T>(model);
    f64_buffers_ = f64_buffers<T>(model);
  }

  Checkpoint& add_param(const std::string& name, Param<T>& p) {
    params_.push_back({name, &p});
    return *this;
  }
  Checkpoint& add_buffer(const std::string& name, Tensor<T>& b) {
    buffers_.push_back({name, &b});
    return *this;
  }
  // A source of training-state tensors, e.g. [&](auto& f) { opt.visit_state(f); }.
  Checkpoint& add_state(std::function<void(const StateVisitor<T>&)> source) {
    state_.push_back(std::move(source));
    return *this;
  }
  Checkpoint& add_rng(const std::string& name, Rng& rng) {
    rngs_.push_back({name, &rng});
    return *this;
  }

  // Atomic: a crash during save leaves the previous file at `path` intact.
  void save(const std::string& path, std::int64_t step, const std::string& config = "",
            const std::map<std::string, std::string>& extra = {}) const {
    std::vector<safetensors::Entry> entries;
    for (auto& p : params_) entries.push_back(safetensors::from_tensor(p.name, p.param->value()));
    for (auto& [name, b] : buffers_) entries.push_back(safetensors::from_tensor(name, *b));
    for (auto& [name, b] : f64_buffers_) entries.push_back(safetensors::from_tensor(name, *b));
    for (auto& src : state_)
      src([&](const std::string& name, Tensor<T>& t) {
        MARROW_CHECK(t.defined(), "checkpoint ", path, ": state tensor '", name, "' is undefined");
        entries.push_back(safetensors::from_tensor("state." + name, t));
      });
    for (auto& [name, rng] : rngs_) entries.push_back(safetensors::from_rng_state("state.rng." + name, rng->state()));
    std::map<std::string, std::string> meta = extra;
    meta["format"] = detail::kCheckpointFormat;
    meta["step"] = std::to_string(step);
    meta["config"] = config;
    if (auto dir = std::filesystem::path(path).parent_path(); !dir.empty()) make_dirs(dir.string());
    safetensors::write(path, entries, meta);
  }

  // Restore everything registered. Strict: a missing or unexpected tensor, or
  // a shape mismatch, throws naming the tensor (a silently half-loaded model
  // is worse than a stopped run).
  CheckpointInfo load(const std::string& path) {
    const safetensors::File f = safetensors::read(path);
    std::map<std::string, const safetensors::Entry*> by_name;
    for (auto& e : f.tensors) by_name[e.name] = &e;
    auto take = [&](const std::string& name) -> const safetensors::Entry& {
      auto it = by_name.find(name);
      MARROW_CHECK(it != by_name.end() && it->second, "checkpoint ", path, ": tensor '", name, "' is missing");
      const auto* e = it->second;
      it->second = nullptr;  // consumed
      return *e;
    };
    for (auto& p : params_) detail::restore_tensor(take(p.name), p.param->value(), path);
    for (auto& [name, b] : buffers_) detail::restore_tensor(take(name), *b, path);
    for (auto& [name, b] : f64_buffers_) detail::restore_tensor(take(name), *b, path);
    for (auto& src : state_)
      src([&](const std::string& name, Tensor<T>& t) { detail::restore_tensor(take("state." + name), t, path); });
    for (auto& [name, rng] : rngs_) rng->set_state(safetensors::to_rng_state(take("state.rng." + name)));
    for (auto& [name, e] : by_name)
      MARROW_CHECK(!e, "checkpoint ", path, ": unexpected tensor '", name, "' (not in the model or training state)");
    return info_of(f, path);
  }

  // --resume helper: load `path` when resuming. Returns step 0 (fresh start)
  // when not resuming; throws when resuming and the file is missing.
  CheckpointInfo resume(const std::string& path, bool resume_requested) {
    if (!resume_requested) return {};
    MARROW_CHECK(std::filesystem::exists(path), "--resume: no checkpoint at ", path);
    return load(path);
  }

  static CheckpointInfo info_of(const safetensors::File& f, const std::string& path) {
    CheckpointInfo info;
    info.metadata = f.metadata;
    if (auto it = f.metadata.find("step"); it != f.metadata.end()) {
      try {
        std::size_t used = 0;
        info.step = std::stoll(it->second, &used);
        MARROW_CHECK(used == it->second.size(), "");
      } catch (...) {
        throw Error(marrow::detail::cat("checkpoint ", path, ": metadata step '", it->second, "' is not an integer"));
      }
    }
    if (auto it = f.metadata.find("config"); it != f.metadata.end()) info.config = it->second;
    return info;
  }

 private:
  ParamList<T> params_;
  std::vector<std::pair<std::string, Tensor<T>*>> buffers_;
  std::vector<std::pair<std::string, Tensor<double>*>> f64_buffers_;
  std::vector<std::function<void(const StateVisitor<T>&)>> state_;
  std::vector<std::pair<std::string, Rng*>> rngs_;
};

// Weights only (sample / eval): parameters and buffers of `model` from a
// checkpoint or a plain weights file; "state.*" entries are ignored, any other
// unknown tensor is an error.
template <class T, class Model> CheckpointInfo load_weights(const std::string& path, Model& model) {
  const safetensors::File f = safetensors::read(path);
  std::map<std::string, const safetensors::Entry*> by_name;
  for (auto& e : f.tensors)
    if (e.name.rfind("state.", 0) != 0) by_name[e.name] = &e;
  auto take = [&](const std::string& name) -> const safetensors::Entry& {
    auto it = by_name.find(name);
    MARROW_CHECK(it != by_name.end() && it->second, "checkpoint ", path, ": tensor '", name, "' is missing");
    const auto* e = it->second;
    it->second = nullptr;
    return *e;
  };
  for (auto& p : parameters<T>(model)) detail::restore_tensor(take(p.name), p.param->value(), path);
  for (auto& [name, b] : buffers<T>(model)) detail::restore_tensor(take(name), *b, path);
  for (auto& [name, b] : f64_buffers<T>(model)) detail::restore_tensor(take(name), *b, path);
  for (auto& [name, e] : by_name)
    MARROW_CHECK(!e, "checkpoint ", path, ": unexpected tensor '", name, "' (not in the model)");
  return Checkpoint<T>::info_of(f, path);
}

// Weights only, no training state: what to ship or publish.
template <class T, class Model>
void save_weights(const std::string& path, Model& model, const std::map<std::string, std::string>& metadata = {}) {
  std::vector<safetensors::Entry> entries;
  for (auto& p : parameters<T>(model)) entries.push_back(safetensors::from_tensor(p.name, p.param->value()));
  for (auto& [name, b] : buffers<T>(model)) entries.push_back(safetensors::from_tensor(name, *b));
  for (auto& [name, b] : f64_buffers<T>(model)) entries.push_back(safetensors::from_tensor(name, *b));
  safetensors::write(path, entries, metadata);
}

}  // namespace marrow
