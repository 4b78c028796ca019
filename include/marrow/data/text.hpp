#pragma once
// Character-level text data: a byte vocabulary, encode/decode, train/val split,
// and (x, y) next-token batches for language models.
#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../config.hpp"
#include "../rng.hpp"
#include "../tensor.hpp"
#include "file.hpp"

namespace marrow::data {

namespace detail {
// A byte as a reader can see it in an error message: 'a', or \x0a for the invisible.
inline std::string show_byte(unsigned char c) {
  if (c >= 0x20 && c < 0x7F) return std::string("'") + char(c) + "'";
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02x", unsigned(c));
  return buf;
}
}  // namespace detail

// The sorted set of distinct bytes of a text; token id = rank in that set.
struct Vocab {
  std::string chars;  // strictly increasing as unsigned bytes

  Vocab() { id_.fill(-1); }
  static Vocab from_text(std::string_view text) {
    bool seen[256] = {};
    for (char c : text) seen[static_cast<unsigned char>(c)] = true;
    Vocab v;
    for (int b = 0; b < 256; ++b)
      if (seen[b]) v.chars.push_back(char(b));
    v.index();
    return v;
  }
  int size() const { return int(chars.size()); }

  std::vector<std::int32_t> encode(std::string_view s) const {
    std::vector<std::int32_t> out(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
      const std::int32_t id = id_[static_cast<unsigned char>(s[i])];
      MARROW_CHECK(id >= 0, "Vocab::encode: unknown character ", detail::show_byte(static_cast<unsigned char>(s[i])),
                   " at position ", i, " (vocabulary has ", size(), " characters)");
      out[i] = id;
    }
    return out;
  }
  std::string decode(const std::int32_t* ids, std::size_t n) const {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) {
      MARROW_CHECK(ids[i] >= 0 && ids[i] < size(), "Vocab::decode: token id ", ids[i], " at position ", i,
                   " outside [0, ", size(), ")");
      s[i] = chars[std::size_t(ids[i])];
    }
    return s;
  }
  std::string decode(const std::vector<std::int32_t>& ids) const { return decode(ids.data(), ids.size()); }
  std::string decode(const Tensor<std::int32_t>& ids) const { return decode(ids.data(), std::size_t(ids.numel())); }

  // The vocabulary as a string (its characters in order), e.g. to store beside a checkpoint.
  std::string save() const { return chars; }
  static Vocab load(std::string_view s) {
    Vocab v;
    v.chars = std::string(s);
    for (std::size_t i = 1; i < s.size(); ++i)
      MARROW_CHECK(static_cast<unsigned char>(s[i - 1]) < static_cast<unsigned char>(s[i]),
                   "Vocab::load: characters not strictly increasing at position ", i, " (",
                   detail::show_byte(static_cast<unsigned char>(s[i - 1])), " then ",
                   detail::show_byte(static_cast<unsigned char>(s[i])), ")");
    v.index();
    return v;
  }

 private:
  void index() {
    id_.fill(-1);
    for (std::size_t i = 0; i < chars.size(); ++i) id_[static_cast<unsigned char>(chars[i])] = std::int32_t(i);
  }
  std::array<std::int32_t, 256> id_;
};

// A whole text file; a missing or empty file is an error (a silently empty corpus trains nothing).
inline std::string load_text(const std::string& path) {
  const std::vector<std::uint8_t> b = read_bytes(path);
  MARROW_CHECK(!b.empty(), "load_text: file '", path, "' is empty");
  return std::string(b.begin(), b.end());
}

// First `train_fraction` of the tokens for training, the rest for validation (nanoGPT's split:
// contiguous, so validation text is unseen prose rather than interleaved lines).
inline std::pair<std::vector<std::int32_t>, std::vector<std::int32_t>> split_train_val(
    const std::vector<std::int32_t>& tokens, double train_fraction = 0.9) {
  MARROW_CHECK(train_fraction >= 0.0 && train_fraction <= 1.0, "split_train_val: train_fraction ", train_fraction,
               " not in [0, 1]");
  const auto n = std::size_t(double(tokens.size()) * train_fraction);
  return {std::vector<std::int32_t>(tokens.begin(), tokens.begin() + std::ptrdiff_t(n)),
          std::vector<std::int32_t>(tokens.begin() + std::ptrdiff_t(n), tokens.end())};
}

struct TextBatch {
  Tensor<std::int32_t> x, y;  // (B, T) inputs and (B, T) next-token targets
};

// B windows of T+1 tokens at uniform random offsets: x = window[0:T], y = window[1:T+1].
inline TextBatch sample_text_batch(const std::vector<std::int32_t>& tokens, index_t batch, index_t block, Rng& rng) {
  MARROW_CHECK(batch > 0 && block > 0, "sample_text_batch: batch ", batch, " and block ", block, " must be positive");
  MARROW_CHECK(index_t(tokens.size()) > block, "sample_text_batch: ", tokens.size(), " tokens, need more than block ",
               block);
  TextBatch b{Tensor<std::int32_t>::uninitialized(Shape{batch, block}),
              Tensor<std::int32_t>::uninitialized(Shape{batch, block})};
  const auto starts = std::uint64_t(index_t(tokens.size()) - block);
  for (index_t i = 0; i < batch; ++i) {
    const auto s = std::size_t(rng.below(starts));
    std::copy_n(tokens.data() + s, block, b.x.data() + i * block);
    std::copy_n(tokens.data() + s + 1, block, b.y.data() + i * block);
  }
  return b;
}

}  // namespace marrow::data
