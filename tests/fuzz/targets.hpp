#pragma once
// Fuzz entry points: one function per reader that takes bytes from strangers.
//
// Each must survive any input by returning or by throwing marrow::Error (a
// clean, named rejection). Anything else escapes: a crash, a sanitizer report,
// another exception type or a failed round-trip check (std::abort) is a bug.
// The same functions serve two drivers: libFuzzer (fuzz_main.cpp, built by
// scripts/fuzz with clang) and the corpus replay in tests/unit_fuzz_replay.cpp
// (built with the ordinary suite, so every kept input is re-run by ctest).
#include <marrow/data/idx.hpp>
#include <marrow/data/image.hpp>
#include <marrow/data/text.hpp>
#include <marrow/train/cli.hpp>
#include <marrow/train/json.hpp>
#include <marrow/train/safetensors.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace marrow::fuzz {

// A property that must hold for every accepted input. libFuzzer: abort() so it
// keeps the input; the ctest replay defines its own that throws FuzzPropertyFailed.
#ifndef MARROW_FUZZ_ASSERT
#define MARROW_FUZZ_ASSERT(cond)                                                             \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "fuzz property failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
#endif

// Run a reader; marrow::Error is the expected way to refuse bad input.
template <class F> void expect_clean(F&& f) {
  try {
    f();
  } catch (const UsageError&) {
  } catch (const Error&) {
  }
}

// Raw IDX bytes: parse, and when accepted, convert and re-serialize.
inline void idx(const std::uint8_t* p, std::size_t n) {
  const std::vector<std::uint8_t> b(p, p + n);
  expect_clean([&] {
    const data::IdxArray a = data::parse_idx(b, "fuzz");
    MARROW_FUZZ_ASSERT(a.data.size() == std::size_t(a.numel()) * std::size_t(data::idx_type_size(a.type)));
    if (a.numel() > 0 && a.numel() <= (1 << 16)) {
      const Tensor<double> t = a.to_tensor<double>();
      MARROW_FUZZ_ASSERT(t.numel() == a.numel());
    }
  });
}

// Gzipped IDX (read_idx's path for .gz files), plus the property that our own
// writer's output inflates back to the same bytes.
inline void gzip_idx(const std::uint8_t* p, std::size_t n) {
  const std::vector<std::uint8_t> b(p, p + n);
  expect_clean([&] {
    const std::vector<std::uint8_t> raw = data::gunzip(b, "fuzz.gz");
    expect_clean([&] { data::parse_idx(raw, "fuzz.gz"); });
  });
  if (n <= 256) {  // compressing is slow; short inputs exercise the writer's block kinds as well
    const std::vector<std::uint8_t> z = data::gzip(p, n);
    MARROW_FUZZ_ASSERT(data::gunzip(z, "roundtrip") == b);
  }
}

// A whole safetensors file image: parse, load every tensor, and when accepted,
// write it back and check the second parse sees the same tensors.
inline void safetensors_file(const std::uint8_t* p, std::size_t n) {
  const std::string_view in(reinterpret_cast<const char*>(p), n);
  expect_clean([&] {
    const safetensors::File f = safetensors::parse(in, "fuzz.safetensors");
    for (const auto& e : f.tensors) {
      if (e.numel() > (1 << 16)) continue;
      const Tensor<double> t = safetensors::to_tensor<double>(e);
      MARROW_FUZZ_ASSERT(t.numel() == e.numel());
    }
    const std::string header = safetensors::make_header(f.tensors, f.metadata);
    std::string again(8, '\0');
    const std::uint64_t len = header.size();
    std::memcpy(again.data(), &len, 8);
    again += header;
    for (const auto& e : f.tensors) again += e.bytes;
    const safetensors::File g = safetensors::parse(again, "roundtrip");
    MARROW_FUZZ_ASSERT(g.tensors.size() == f.tensors.size() && g.metadata == f.metadata);
    for (std::size_t i = 0; i < f.tensors.size(); ++i)
      MARROW_FUZZ_ASSERT(g.tensors[i].name == f.tensors[i].name && g.tensors[i].shape == f.tensors[i].shape &&
                         g.tensors[i].dtype == f.tensors[i].dtype && g.tensors[i].bytes == f.tensors[i].bytes);
  });
}

// Image bytes through the stb wrapper; the first byte picks desired_channels.
inline void image(const std::uint8_t* p, std::size_t n) {
  if (n < 1) return;
  const int channels = p[0] % 5;
  const std::vector<std::uint8_t> b(p + 1, p + n);
  expect_clean([&] {
    const data::Image im = data::decode_image(b, "fuzz.png", channels);
    MARROW_FUZZ_ASSERT(im.width > 0 && im.height > 0 && im.channels >= 1 && im.channels <= 4);
    MARROW_FUZZ_ASSERT(im.pixels.size() == std::size_t(im.width) * std::size_t(im.height) * std::size_t(im.channels));
    if (im.pixels.size() <= (1 << 16)) {
      const Tensor<float> t = data::image_to_tensor<float>(im);
      MARROW_FUZZ_ASSERT(t.numel() == index_t(im.pixels.size()));
    }
  });
}

// Text and vocabulary: the corpus as a text file (build a vocabulary, encode,
// decode) or as a saved vocabulary (load, then encode/decode arbitrary bytes).
inline void text(const std::uint8_t* p, std::size_t n) {
  if (n < 1) return;
  const std::string_view s(reinterpret_cast<const char*>(p + 1), n - 1);
  if (p[0] & 1) {
    const data::Vocab v = data::Vocab::from_text(s);
    const std::vector<std::int32_t> ids = v.encode(s);
    MARROW_FUZZ_ASSERT(v.decode(ids) == s);
    MARROW_FUZZ_ASSERT(data::Vocab::load(v.save()).chars == v.chars);
    if (ids.size() > 2) {
      auto [tr, va] = data::split_train_val(ids, double(p[0]) / 255.0);
      MARROW_FUZZ_ASSERT(tr.size() + va.size() == ids.size());
      Rng rng(p[0]);
      expect_clean([&] { data::sample_text_batch(ids, 2, index_t(1 + p[0] % 8), rng); });
    }
  } else {
    expect_clean([&] {
      const data::Vocab v = data::Vocab::load(s);
      expect_clean([&] { v.encode(s); });
      std::vector<std::int32_t> ids;
      for (unsigned char c : s) ids.push_back(std::int32_t(c) - 8);
      expect_clean([&] { v.decode(ids); });
    });
  }
}

// A command line: arguments separated by NUL bytes, parsed against a fixed
// flag set covering every target type and bound.
inline void cli(const std::uint8_t* p, std::size_t n) {
  std::vector<std::string> args;
  std::string cur;
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] == 0) {
      args.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(char(p[i]));
    }
  }
  if (!cur.empty()) args.push_back(std::move(cur));
  int steps = 10, width = 8;
  std::int64_t seed = 0;
  double lr = 1e-3;
  float dropout = 0.f;
  bool flip = false;
  std::string loss = "ce";
  CommonFlags common;
  Cli c("fuzz", "a fuzzed command line");
  c.command("train", "train").command("eval", "eval");
  c.flag("width", width, "width").min(1).max(1024);
  c.flag("batch", steps, "batch").min(1);
  c.flag("init-seed", seed, "seed").min(0);
  c.flag("lr", lr, "lr").min(0);
  c.flag("dropout", dropout, "p").min(0).max(0.99);
  c.flag("flip", flip, "flip");
  c.flag("loss", loss, "loss");
  common.add_to(c);
  expect_clean([&] {
    c.parse(args);
    MARROW_FUZZ_ASSERT(width >= 1 && width <= 1024 && steps >= 1 && seed >= 0 && lr >= 0 && dropout >= 0.f &&
                       dropout <= 0.99f);
    MARROW_FUZZ_ASSERT(common.threads >= 0 && common.steps >= 0);
  });
  if (n % 8 == 0) (void)c.help();  // formatting every flag is slow; a sample keeps it covered
  const std::string dumped = c.values().dump();
  MARROW_FUZZ_ASSERT(Json::parse(dumped).dump() == dumped);
}

// JSON text: parse, and when accepted, the dump must parse back to the same dump.
inline void json(const std::uint8_t* p, std::size_t n) {
  const std::string_view in(reinterpret_cast<const char*>(p), n);
  expect_clean([&] {
    const Json j = Json::parse(in);
    const std::string d = j.dump();
    MARROW_FUZZ_ASSERT(Json::parse(d).dump() == d);
  });
}

struct Target {
  const char* name;
  void (*run)(const std::uint8_t*, std::size_t);
};
inline constexpr Target kTargets[] = {{"idx", idx},   {"gzip_idx", gzip_idx}, {"safetensors", safetensors_file},
                                      {"image", image}, {"text", text},         {"cli", cli},
                                      {"json", json}};

}  // namespace marrow::fuzz
