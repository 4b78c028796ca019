#pragma once
// A model's configuration, stored one way in every checkpoint: one JSON object
// under the metadata key "model", so `sample`, `eval` and `--resume` rebuild
// the network without the training flags. A Config names its fields once:
//
//   struct Config {
//     int n_layer = 4;
//     double dropout = 0.0;
//     Padding padding = Padding::Same;
//     template <class F> void fields(F& f) {
//       f("n_layer", n_layer);
//       f("dropout", dropout);
//       f.choice("padding", padding, {{"same", Padding::Same}, {"valid", Padding::Valid}});
//       f.optional("bias", bias);   // added after checkpoints were written: old files keep the default
//     }
//   };
//
// Reading is strict: a missing field (unless `optional`), a field of the
// wrong type or an unknown choice is an error naming the checkpoint and the
// field. Config::validate(), when there is one, runs after reading.
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

#include "checkpoint.hpp"
#include "json.hpp"

namespace marrow {

inline constexpr const char* kModelConfigKey = "model";

namespace detail {

struct ConfigWriter {
  Json j = Json::object();
  template <class V> void operator()(const char* name, const V& v) {
    if constexpr (std::is_same_v<V, float>) j.set(name, double(v));
    else j.set(name, Json(v));
  }
  template <class V> void optional(const char* name, const V& v) { (*this)(name, v); }
  template <class E> void choice(const char* name, const E& v, std::initializer_list<std::pair<const char*, E>> names) {
    for (auto& [n, e] : names)
      if (e == v) return (void)j.set(name, Json(std::string(n)));
    throw Error(cat("model config: field '", name, "' holds a value with no name"));
  }
};

struct ConfigReader {
  const Json& j;
  const std::string& where;
  template <class V> void read(const char* name, V& v, const Json& x) {
    try {
      if constexpr (std::is_same_v<V, bool>) v = x.as_bool();
      else if constexpr (std::is_same_v<V, std::string>) v = x.as_string();
      else if constexpr (std::is_integral_v<V>) v = V(x.as_int());
      else v = V(x.as_double());
    } catch (const Error& e) {
      throw Error(cat(where, ": model config field '", name, "': ", e.what()));
    }
  }
  template <class V> void operator()(const char* name, V& v) {
    const Json* x = j.find(name);
    MARROW_CHECK(x, where, ": model config has no field '", name, "'");
    read(name, v, *x);
  }
  template <class V> void optional(const char* name, V& v) {
    if (const Json* x = j.find(name)) read(name, v, *x);
  }
  template <class E> void choice(const char* name, E& v, std::initializer_list<std::pair<const char*, E>> names) {
    std::string s;
    (*this)(name, s);
    for (auto& [n, e] : names)
      if (s == n) return (void)(v = e);
    std::string known;
    for (auto& [n, e] : names) known += (known.empty() ? "" : ", ") + std::string(n);
    throw Error(cat(where, ": model config field '", name, "' is '", s, "' (expected one of: ", known, ")"));
  }
};

}  // namespace detail

template <class C> Json config_to_json(const C& c) {
  detail::ConfigWriter w;
  const_cast<C&>(c).fields(w);  // fields() only reads through the writer
  return std::move(w.j);
}

// `where` names the source in errors (a checkpoint path).
template <class C> C config_from_json(const Json& j, const std::string& where, C c = C{}) {
  MARROW_CHECK(j.is_object(), where, ": model config must be a JSON object, got ", j.describe());
  detail::ConfigReader r{j, where};
  c.fields(r);
  if constexpr (requires { c.validate(); }) c.validate();
  return c;
}

// The metadata entry a checkpoint carries for `c`; merge it into save()'s extras.
template <class C> std::map<std::string, std::string> model_config_metadata(const C& c) {
  return {{kModelConfigKey, config_to_json(c).dump()}};
}

// The configuration a checkpoint was trained with. `model` names the binary in
// the error when the file holds none (another model's checkpoint, a bare weights file).
// Checkpoints written before this entry existed kept the model's config as the
// "model" member of the run's config; those are read from there.
template <class C> C model_config_from_checkpoint(const CheckpointInfo& info, const std::string& path, const char* model) {
  auto parse = [&](const std::string& text, const char* what) {
    try {
      return Json::parse(text);
    } catch (const Error& e) {
      throw Error(detail::cat("checkpoint ", path, ": ", what, " is not JSON: ", e.what()));
    }
  };
  Json j;
  if (auto it = info.metadata.find(kModelConfigKey); it != info.metadata.end()) {
    j = parse(it->second, "model config");
  } else if (!info.config.empty()) {
    const Json run = parse(info.config, "run config");
    if (const Json* m = run.is_object() ? run.find(kModelConfigKey) : nullptr) j = *m;
  }
  MARROW_CHECK(!j.is_null(), "checkpoint ", path, " has no model config (not a ", model, " checkpoint?)");
  return config_from_json<C>(j, "checkpoint " + path);
}
template <class C> C model_config_from_checkpoint(const std::string& path, const char* model) {
  return model_config_from_checkpoint<C>(Checkpoint<float>::info_of(safetensors::read(path), path), path, model);
}

}  // namespace marrow
