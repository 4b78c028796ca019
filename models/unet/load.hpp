#pragma once
// A trained U-Net back from its checkpoint, for predict and eval: the network
// rebuilt from the config the checkpoint stores (train/model_config.hpp), its
// weights, and the threshold chosen at training (a buffer of the model).
//
// Checkpoints written before the config and the threshold were stored carry
// the model only in the training flags, which name the Config's fields with
// '-' for '_'; they load at threshold 0.5, with a note saying so.
#include <algorithm>
#include <string>

#include <marrow/train/checkpoint.hpp>
#include <marrow/train/model_config.hpp>

#include "model.hpp"

namespace marrow::unet {

template <class T> struct Trained {
  UNet<T> net;          // in eval mode
  CheckpointInfo info;  // step, the training run's flags, metadata
  std::string note;     // non-empty when the checkpoint predates the stored threshold
};

namespace load_detail {
// The model as an old checkpoint's training flags describe it (1 gray channel, 2 classes: all the binary trained).
inline Json model_from_flags(const std::string& flags_json) {
  Json j = Json::object({{"in_channels", 1}, {"classes", 2}});
  const Json flags = Json::parse(flags_json);
  for (auto& [flag, value] : flags.members()) {
    std::string field = flag;
    std::replace(field.begin(), field.end(), '-', '_');
    j.set(field, value);
  }
  return j;
}
}  // namespace load_detail

// Everything of the network but its threshold: what a checkpoint written before
// the threshold was stored holds (for loading it, and for resuming its run).
template <class T> struct WithoutThreshold {
  UNet<T>& net;
  void visit(Visitor<T>& v, const std::string& prefix) {
    Visitor<T> w = v;
    w.buffer = [&v, skip = join_name(prefix, "threshold")](const std::string& name, Tensor<T>& b) {
      if (name != skip) v.visit_buffer(name, b);
    };
    net.visit(w, prefix);
  }
};

template <class T> Trained<T> load_trained(const std::string& path) {
  const safetensors::File file = safetensors::read(path);
  const CheckpointInfo info = Checkpoint<T>::info_of(file, path);
  const bool has_config = info.metadata.count(kModelConfigKey) > 0;
  MARROW_CHECK(has_config || !info.config.empty(), "unet: ", path, " has no model config (not a unet checkpoint?)");
  const Config cfg = has_config ? model_config_from_checkpoint<Config>(info, path, "unet")
                                : config_from_json<Config>(load_detail::model_from_flags(info.config), "checkpoint " + path);
  Rng rng(0);
  Trained<T> r{UNet<T>(cfg, rng), info, ""};
  if (file.find("threshold")) {
    load_weights<T>(path, r.net);
  } else {
    WithoutThreshold<T> old{r.net};
    load_weights<T>(path, old);
    r.note = path + " was written before the threshold was stored with the weights: using 0.5";
  }
  set_training<T>(r.net, false);
  return r;
}

}  // namespace marrow::unet
