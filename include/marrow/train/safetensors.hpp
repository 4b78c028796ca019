#pragma once
// The safetensors file format (Hugging Face), read and written without
// dependencies, so checkpoints open in PyTorch and vice versa.
//
// Layout: 8-byte little-endian header length N, N bytes of JSON
//   {"NAME": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the raw little-endian tensor bytes; offsets count from the byte after
// the header. We pad the header with spaces so the data starts 8-byte aligned
// (as the reference writer does) and accept unpadded headers on read.
//
// Reading trusts nothing: the header length is checked against the file size,
// the JSON parser is bounded (json.hpp), every dtype, shape and offset pair is
// validated, and tensors may not overlap. Errors name the file and the tensor.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "../tensor.hpp"
#include "fs.hpp"
#include "json.hpp"

namespace marrow::safetensors {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

enum class DType { F32, F64, I32, I64, U8 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  return "?";
}
inline std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: case DType::I32: return 4;
    case DType::F64: case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}
inline bool parse_dtype(std::string_view s, DType& out) {
  for (DType d : {DType::F32, DType::F64, DType::I32, DType::I64, DType::U8})
    if (s == dtype_name(d)) {
      out = d;
      return true;
    }
  return false;
}
template <class T> constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  else if constexpr (std::is_same_v<T, double>) return DType::F64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return DType::I32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return DType::I64;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return DType::U8;
  else static_assert(sizeof(T) == 0, "safetensors: unsupported element type");
}

// One named tensor as raw bytes.
struct Entry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::string bytes;  // little-endian, row-major; size == numel * dtype_size

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct File {
  std::vector<Entry> tensors;  // in data-offset order
  std::map<std::string, std::string> metadata;

  const Entry* find(std::string_view name) const {
    for (auto& e : tensors)
      if (e.name == name) return &e;
    return nullptr;
  }
};

// ---- Tensor <-> Entry ----------------------------------------------------------
template <class T> Entry from_tensor(std::string name, const Tensor<T>& t) {
  Entry e;
  e.name = std::move(name);
  e.dtype = dtype_of<T>();
  e.shape = t.shape().vec();
  e.bytes.assign(reinterpret_cast<const char*>(t.data()), sizeof(T) * std::size_t(t.numel()));
  return e;
}

namespace detail {
template <class T, class S> void convert_into(const Entry& e, T* out) {
  const std::size_t n = e.bytes.size() / sizeof(S);
  for (std::size_t i = 0; i < n; ++i) {
    S v;
    std::memcpy(&v, e.bytes.data() + i * sizeof(S), sizeof(S));  // bytes may be unaligned
    out[i] = T(v);
  }
}
}  // namespace detail

// Values into a Tensor<T>: bit-exact when the dtype matches, converted
// (like Tensor::cast) otherwise, so a float checkpoint loads into a double model.
template <class T> void copy_into(const Entry& e, T* out) {
  MARROW_CHECK(e.bytes.size() == std::size_t(e.numel()) * dtype_size(e.dtype), "safetensors: tensor '", e.name,
               "' holds ", e.bytes.size(), " bytes, expected ", e.numel(), " x ", dtype_size(e.dtype));
  if (e.dtype == dtype_of<T>()) {
    if (!e.bytes.empty()) std::memcpy(out, e.bytes.data(), e.bytes.size());
    return;
  }
  switch (e.dtype) {
    case DType::F32: detail::convert_into<T, float>(e, out); break;
    case DType::F64: detail::convert_into<T, double>(e, out); break;
    case DType::I32: detail::convert_into<T, std::int32_t>(e, out); break;
    case DType::I64: detail::convert_into<T, std::int64_t>(e, out); break;
    case DType::U8: detail::convert_into<T, std::uint8_t>(e, out); break;
  }
}
template <class T> Tensor<T> to_tensor(const Entry& e) {
  Tensor<T> t = Tensor<T>::uninitialized(Shape(e.shape));
  copy_into(e, t.data());
  return t;
}

// ---- writing -------------------------------------------------------------------
// Serialize the header (padded so data starts 8-byte aligned).
inline std::string make_header(const std::vector<Entry>& tensors, const std::map<std::string, std::string>& metadata) {
  Json h = Json::object();
  std::uint64_t offset = 0;
  for (auto& e : tensors) {
    MARROW_CHECK(e.name != "__metadata__", "safetensors: '__metadata__' is reserved and cannot name a tensor");
    MARROW_CHECK(!h.find(e.name), "safetensors: tensor name '", e.name, "' is used twice");
    for (auto d : e.shape) MARROW_CHECK(d >= 0, "safetensors: tensor '", e.name, "' has a negative dimension");
    MARROW_CHECK(e.bytes.size() == std::size_t(e.numel()) * dtype_size(e.dtype), "safetensors: tensor '", e.name,
                 "' has ", e.bytes.size(), " bytes but shape x ", dtype_name(e.dtype), " needs ",
                 std::size_t(e.numel()) * dtype_size(e.dtype));
    Json shape = Json::array();
    for (auto d : e.shape) shape.push_back(d);
    Json info = Json::object({{"dtype", dtype_name(e.dtype)}, {"shape", shape}});
    info.set("data_offsets", Json::array({Json(offset), Json(offset + e.bytes.size())}));
    h.set(e.name, std::move(info));
    offset += e.bytes.size();
  }
  if (!metadata.empty()) {
    Json m = Json::object();
    for (auto& [k, v] : metadata) m.set(k, v);
    h.set("__metadata__", std::move(m));
  }
  std::string s = h.dump();
  s.append((8 - s.size() % 8) % 8, ' ');
  return s;
}

// Write atomically: PATH.tmp, fsync, rename over PATH, fsync the directory.
inline void write(const std::string& path, const std::vector<Entry>& tensors,
                  const std::map<std::string, std::string>& metadata = {}) {
  const std::string header = make_header(tensors, metadata);
  char len[8];
  const std::uint64_t n = header.size();
  std::memcpy(len, &n, 8);
  std::vector<std::string_view> chunks{std::string_view(len, 8), header};
  for (auto& e : tensors) chunks.emplace_back(e.bytes);
  atomic_write_file(path, chunks);
}

// ---- reading -------------------------------------------------------------------
// Parse a whole file image; `file` names it in errors. Never reads outside `data`.
inline File parse(std::string_view data, const std::string& file) {
  auto fail = [&](const auto&... parts) -> void { throw Error(marrow::detail::cat("safetensors: ", file, ": ", parts...)); };
  if (data.size() < 8) fail("file is ", data.size(), " bytes, too short for the 8-byte header length");
  std::uint64_t n = 0;
  std::memcpy(&n, data.data(), 8);
  if (n > data.size() - 8) fail("header length ", n, " exceeds the file size ", data.size(), " (truncated or not a safetensors file)");
  if (n < 2) fail("header length ", n, " is too small for a JSON object");
  const std::string_view header = data.substr(8, std::size_t(n));
  const std::string_view body = data.substr(8 + std::size_t(n));

  Json h;
  try {
    h = Json::parse(header);
  } catch (const Error& e) {
    fail("bad header: ", e.what());
  }
  if (!h.is_object()) fail("header is ", h.describe(), ", expected a JSON object");

  File out;
  struct Span {
    std::uint64_t begin, end;
    std::size_t index;
  };
  std::vector<Span> spans;
  for (const auto& member : h.members()) {
    // Named copies, not a structured binding: clang < 16 cannot capture bindings in the lambdas below.
    const std::string& name = member.first;
    const Json& info = member.second;
    if (name == "__metadata__") {
      if (!info.is_object()) fail("__metadata__ is ", info.describe(), ", expected an object of strings");
      for (auto& [k, v] : info.members()) {
        if (!v.is_string()) fail("__metadata__ value for '", k, "' is ", v.describe(), ", expected a string");
        out.metadata[k] = v.as_string();
      }
      continue;
    }
    auto tfail = [&](const auto&... parts) { fail("tensor '", name, "': ", parts...); };
    if (!info.is_object()) tfail("entry is ", info.describe(), ", expected an object");
    for (auto& m : info.members())
      if (m.first != "dtype" && m.first != "shape" && m.first != "data_offsets") tfail("unknown field '", m.first, "'");
    const Json* dt = info.find("dtype");
    const Json* sh = info.find("shape");
    const Json* off = info.find("data_offsets");
    if (!dt || !sh || !off) tfail("needs dtype, shape and data_offsets");
    Entry e;
    e.name = name;
    if (!dt->is_string()) tfail("dtype is ", dt->describe(), ", expected a string");
    if (!parse_dtype(dt->as_string(), e.dtype)) tfail("unknown dtype '", dt->as_string(), "' (supported: F32, F64, I32, I64, U8)");
    if (!sh->is_array()) tfail("shape is ", sh->describe(), ", expected an array");
    if (sh->size() > std::size_t(Shape::kMaxRank)) tfail("rank ", sh->size(), " exceeds ", Shape::kMaxRank);
    // numel with overflow detection: a crafted shape must not wrap to a small size.
    unsigned __int128 bytes = dtype_size(e.dtype);
    bool zero = false, too_big = false;
    for (auto& d : sh->items()) {
      if (!d.is_int() || d.as_int() < 0) tfail("shape entries must be non-negative integers");
      e.shape.push_back(d.as_int());
      if (d.as_int() == 0) zero = true;
      if (too_big) continue;
      bytes *= std::uint64_t(d.as_int());  // < 2^64 * 2^63: no wrap in 128 bits
      too_big = bytes > data.size();
    }
    if (zero) bytes = 0, too_big = false;
    auto shape_text = [&] {
      std::string t = "[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) t += (i ? ", " : "") + std::to_string(e.shape[i]);
      return t + "]";
    };
    if (!off->is_array() || off->size() != 2 || !off->items()[0].is_int() || !off->items()[1].is_int())
      tfail("data_offsets must be [begin, end] integers");
    const std::int64_t b = off->items()[0].as_int(), en = off->items()[1].as_int();
    if (b < 0 || en < b) tfail("data_offsets [", b, ", ", en, "] are not an increasing pair");
    if (std::uint64_t(en) > body.size())
      tfail("data_offsets [", b, ", ", en, "] run past the end of the data (", body.size(), " bytes)");
    if (too_big) tfail("shape ", shape_text(), " of ", dt->as_string(), " needs more bytes than the whole file holds");
    if (bytes != (unsigned __int128)(en - b))
      tfail("shape ", shape_text(), " of ", dt->as_string(), " needs ", std::uint64_t(bytes), " bytes but data_offsets [", b,
            ", ", en, "] span ", en - b);
    e.bytes.assign(body.data() + b, std::size_t(en - b));
    spans.push_back({std::uint64_t(b), std::uint64_t(en), out.tensors.size()});
    out.tensors.push_back(std::move(e));
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  for (std::size_t i = 1; i < spans.size(); ++i)
    if (spans[i].begin < spans[i - 1].end)
      fail("tensors '", out.tensors[spans[i - 1].index].name, "' and '", out.tensors[spans[i].index].name,
           "' overlap in the data area");
  // Present tensors in file order, like the reference reader.
  std::vector<Entry> ordered;
  ordered.reserve(spans.size());
  for (auto& s : spans) ordered.push_back(std::move(out.tensors[s.index]));
  out.tensors = std::move(ordered);
  return out;
}

inline File read(const std::string& path) { return parse(read_file(path), path); }

// Entries whose bytes are a Rng state: 4 xoshiro words, the has-spare flag and
// the spare normal's bits, as 6 I64 values (bit-exact).
inline Entry from_rng_state(std::string name, const Rng::State& st) {
  std::int64_t w[6];
  for (int i = 0; i < 4; ++i) w[i] = std::bit_cast<std::int64_t>(st.s[std::size_t(i)]);
  w[4] = st.has_spare ? 1 : 0;
  w[5] = std::bit_cast<std::int64_t>(st.spare);
  Entry e;
  e.name = std::move(name);
  e.dtype = DType::I64;
  e.shape = {6};
  e.bytes.assign(reinterpret_cast<const char*>(w), sizeof w);
  return e;
}
inline Rng::State to_rng_state(const Entry& e) {
  MARROW_CHECK(e.dtype == DType::I64 && e.shape == std::vector<std::int64_t>{6}, "safetensors: tensor '", e.name,
               "' is not an RNG state (expected I64 of shape [6])");
  std::int64_t w[6];
  std::memcpy(w, e.bytes.data(), sizeof w);
  Rng::State st{};
  for (int i = 0; i < 4; ++i) st.s[std::size_t(i)] = std::bit_cast<std::uint64_t>(w[i]);
  st.has_spare = w[4] != 0;
  st.spare = std::bit_cast<double>(w[5]);
  return st;
}

}  // namespace marrow::safetensors
