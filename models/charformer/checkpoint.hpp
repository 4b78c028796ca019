#pragma once
// What a charformer checkpoint carries besides tensors: the model's Config
// under "model" (train/model_config.hpp) and the vocabulary under "vocab_hex",
// so `sample`, `eval` and `--resume` need neither the training flags nor the text.
#include <map>
#include <string>

#include <marrow/data/text.hpp>
#include <marrow/train/checkpoint.hpp>
#include <marrow/train/model_config.hpp>

#include "model.hpp"

namespace marrow::charformer {

// The vocabulary travels as hex: a corpus may hold any byte, JSON strings may not.
inline std::map<std::string, std::string> checkpoint_metadata(const Config& c, const data::Vocab& v) {
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned char ch : v.chars) {
    hex += kHex[ch >> 4];
    hex += kHex[ch & 15];
  }
  std::map<std::string, std::string> meta = model_config_metadata(c);
  meta["vocab_hex"] = hex;
  return meta;
}

inline data::Vocab vocab_from_checkpoint(const CheckpointInfo& info, const std::string& path) {
  auto it = info.metadata.find("vocab_hex");
  MARROW_CHECK(it != info.metadata.end(), "checkpoint ", path, " has no vocabulary (not a charformer checkpoint?)");
  const std::string& h = it->second;
  auto nib = [&](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error(marrow::detail::cat("checkpoint ", path, ": vocabulary is not hex"));
  };
  MARROW_CHECK(h.size() % 2 == 0 && !h.empty(), "checkpoint ", path, ": bad vocabulary of ", h.size(), " hex digits");
  std::string chars;
  for (std::size_t i = 0; i < h.size(); i += 2) chars += char(nib(h[i]) * 16 + nib(h[i + 1]));
  return data::Vocab::load(chars);
}

inline Config config_from_checkpoint(const CheckpointInfo& info, const std::string& path) {
  return model_config_from_checkpoint<Config>(info, path, "charformer");
}

}  // namespace marrow::charformer
