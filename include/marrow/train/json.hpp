#pragma once
// A minimal JSON value, writer and reader: enough for metrics lines, run
// summaries, configs and safetensors headers.
//
// Writer: numbers print in the shortest form that reads back bit-exactly
// (std::to_chars); NaN and ±inf, which JSON cannot express, print as null.
// Reader: built for hostile input (safetensors headers come from files we did
// not write). It never reads past the end of its input, limits nesting depth
// so recursion cannot blow the stack, rejects duplicate keys (which value wins
// is unspecified in JSON, so a header with two entries for one tensor is an
// attack or a bug) and reports the byte offset of the first error.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../config.hpp"

namespace marrow {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Member = std::pair<std::string, Json>;

  Json() = default;
  Json(std::nullptr_t) {}  // NOLINT
  Json(bool b) : type_(Type::Bool), b_(b) {}  // NOLINT
  template <class N>
    requires(std::is_arithmetic_v<N> && !std::is_same_v<N, bool>)
  Json(N n) : type_(Type::Number) {  // NOLINT
    if constexpr (std::is_integral_v<N>) {
      // Integers keep their exact value (offsets past 2^53 stay exact).
      if (std::is_signed_v<N> || std::uint64_t(n) <= std::uint64_t(INT64_MAX)) {
        is_int_ = true;
        i_ = std::int64_t(n);
      }
    }
    d_ = double(n);
  }
  Json(std::string s) : type_(Type::String), s_(std::move(s)) {}  // NOLINT
  Json(const char* s) : type_(Type::String), s_(s) {}              // NOLINT
  Json(std::string_view s) : type_(Type::String), s_(s) {}         // NOLINT

  static Json array(std::vector<Json> items = {}) {
    Json j;
    j.type_ = Type::Array;
    j.arr_ = std::move(items);
    return j;
  }
  static Json object(std::initializer_list<Member> members = {}) {
    Json j;
    j.type_ = Type::Object;
    for (auto& m : members) j.set(m.first, m.second);
    return j;
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_int() const { return type_ == Type::Number && is_int_; }  // written without fraction/exponent, fits int64
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const { expect(Type::Bool, "a bool"); return b_; }
  double as_double() const { expect(Type::Number, "a number"); return d_; }
  std::int64_t as_int() const {
    MARROW_CHECK(is_int(), "json: expected an integer, got ", describe());
    return i_;
  }
  const std::string& as_string() const { expect(Type::String, "a string"); return s_; }
  const std::vector<Json>& items() const { expect(Type::Array, "an array"); return arr_; }
  std::vector<Json>& items() { expect(Type::Array, "an array"); return arr_; }
  const std::vector<Member>& members() const { expect(Type::Object, "an object"); return obj_; }
  std::size_t size() const { return type_ == Type::Array ? arr_.size() : type_ == Type::Object ? obj_.size() : 0; }

  // Object lookup: nullptr when absent. Members keep insertion order (linear
  // search: our objects are small, and order makes files diff-friendly).
  const Json* find(std::string_view key) const {
    if (type_ != Type::Object) return nullptr;
    for (auto& m : obj_)
      if (m.first == key) return &m.second;
    return nullptr;
  }
  const Json& at(std::string_view key) const {
    const Json* j = find(key);
    MARROW_CHECK(j, "json: missing key \"", key, "\"");
    return *j;
  }
  // Insert or replace (turns a null into an object).
  Json& set(std::string key, Json value) {
    if (type_ == Type::Null) type_ = Type::Object;
    expect(Type::Object, "an object");
    for (auto& m : obj_)
      if (m.first == key) return m.second = std::move(value);
    obj_.emplace_back(std::move(key), std::move(value));
    return obj_.back().second;
  }
  void push_back(Json value) {
    if (type_ == Type::Null) type_ = Type::Array;
    expect(Type::Array, "an array");
    arr_.push_back(std::move(value));
  }

  // ---- writing ---------------------------------------------------------------
  std::string dump() const {
    std::string out;
    dump_to(out);
    return out;
  }
  void dump_to(std::string& out) const {
    switch (type_) {
      case Type::Null: out += "null"; break;
      case Type::Bool: out += b_ ? "true" : "false"; break;
      case Type::Number: is_int_ ? append_int(out, i_) : append_number(out, d_); break;
      case Type::String: append_string(out, s_); break;
      case Type::Array:
        out += '[';
        for (std::size_t i = 0; i < arr_.size(); ++i) {
          if (i) out += ',';
          arr_[i].dump_to(out);
        }
        out += ']';
        break;
      case Type::Object:
        out += '{';
        for (std::size_t i = 0; i < obj_.size(); ++i) {
          if (i) out += ',';
          append_string(out, obj_[i].first);
          out += ':';
          obj_[i].second.dump_to(out);
        }
        out += '}';
        break;
    }
  }

  static void append_number(std::string& out, double v) {
    if (!std::isfinite(v)) {
      out += "null";
      return;
    }
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
    out.append(buf, r.ptr);
  }
  static void append_int(std::string& out, std::int64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
  static void append_string(std::string& out, std::string_view s) {
    static const char* hex = "0123456789abcdef";
    out += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
          } else {
            out += char(c);  // UTF-8 passes through unchanged
          }
      }
    }
    out += '"';
  }

  // ---- reading ---------------------------------------------------------------
  static constexpr int kMaxDepth = 64;

  // Parse a complete document (only whitespace may follow it). Throws
  // marrow::Error "json: <what> at offset K".
  static Json parse(std::string_view text, int max_depth = kMaxDepth) {
    Parser p{text, 0, max_depth};
    p.skip_ws();
    Json j = p.value(0);
    p.skip_ws();
    if (p.pos != text.size()) p.fail("unexpected trailing characters");
    return j;
  }

  std::string describe() const {
    switch (type_) {
      case Type::Null: return "null";
      case Type::Bool: return "a bool";
      case Type::Number: return "a number";
      case Type::String: return "a string";
      case Type::Array: return "an array";
      case Type::Object: return "an object";
    }
    return "?";
  }

 private:
  void expect(Type t, const char* what) const {
    MARROW_CHECK(type_ == t, "json: expected ", what, ", got ", describe());
  }

  struct Parser {
    std::string_view s;
    std::size_t pos;
    int max_depth;

    [[noreturn]] void fail(const char* what) const { throw Error(detail::cat("json: ", what, " at offset ", pos)); }
    bool eof() const { return pos >= s.size(); }
    char peek() const { return eof() ? '\0' : s[pos]; }
    void skip_ws() {
      while (!eof() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) ++pos;
    }
    void expect_char(char c, const char* what) {
      if (peek() != c || eof()) fail(what);
      ++pos;
    }
    void literal(std::string_view word) {
      if (s.substr(pos, word.size()) != word) fail("invalid literal");
      pos += word.size();
    }

    Json value(int depth) {
      if (depth >= max_depth) fail("nesting too deep");
      if (eof()) fail("unexpected end of input");
      switch (s[pos]) {
        case '{': return object(depth);
        case '[': return array(depth);
        case '"': return Json(string());
        case 't': literal("true"); return Json(true);
        case 'f': literal("false"); return Json(false);
        case 'n': literal("null"); return Json();
        default: return number();
      }
    }

    Json object(int depth) {
      Json j = Json::object();
      ++pos;  // '{'
      skip_ws();
      if (peek() == '}' && !eof()) {
        ++pos;
        return j;
      }
      for (;;) {
        skip_ws();
        if (peek() != '"' || eof()) fail("expected a string key");
        const std::size_t key_pos = pos;
        std::string key = string();
        if (j.find(key)) {
          pos = key_pos;
          fail("duplicate key");
        }
        skip_ws();
        expect_char(':', "expected ':'");
        skip_ws();
        j.obj_.emplace_back(std::move(key), value(depth + 1));
        skip_ws();
        if (peek() == ',' && !eof()) {
          ++pos;
          continue;
        }
        expect_char('}', "expected ',' or '}'");
        return j;
      }
    }

    Json array(int depth) {
      Json j = Json::array();
      ++pos;  // '['
      skip_ws();
      if (peek() == ']' && !eof()) {
        ++pos;
        return j;
      }
      for (;;) {
        skip_ws();
        j.arr_.push_back(value(depth + 1));
        skip_ws();
        if (peek() == ',' && !eof()) {
          ++pos;
          continue;
        }
        expect_char(']', "expected ',' or ']'");
        return j;
      }
    }

    unsigned hex4() {
      if (s.size() - pos < 4) fail("truncated \\u escape");
      unsigned v = 0;
      for (int i = 0; i < 4; ++i) {
        const char c = s[pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= unsigned(c - '0');
        else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
        else fail("bad hex digit in \\u escape");
      }
      return v;
    }
    static void put_utf8(std::string& out, unsigned cp) {
      if (cp < 0x80) {
        out += char(cp);
      } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
      } else {
        out += char(0xF0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3F));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
      }
    }

    std::string string() {
      ++pos;  // opening quote
      std::string out;
      for (;;) {
        if (eof()) fail("unterminated string");
        const unsigned char c = static_cast<unsigned char>(s[pos]);
        if (c == '"') {
          ++pos;
          return out;
        }
        if (c < 0x20) fail("control character in string");
        if (c != '\\') {
          out += char(c);
          ++pos;
          continue;
        }
        ++pos;
        if (eof()) fail("unterminated escape");
        const char e = s[pos++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            unsigned cp = hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
              if (s.size() - pos < 2 || s[pos] != '\\' || s[pos + 1] != 'u') fail("unpaired surrogate");
              pos += 2;
              const unsigned lo = hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail("unpaired surrogate");
            }
            put_utf8(out, cp);
            break;
          }
          default: --pos; fail("invalid escape");
        }
      }
    }

    Json number() {
      // Validate the JSON grammar first, then convert the exact token.
      const std::size_t start = pos;
      bool integral = true;
      if (peek() == '-' && !eof()) ++pos;
      if (eof() || !is_digit(s[pos])) fail("invalid value");
      if (s[pos] == '0') {
        ++pos;
      } else {
        while (!eof() && is_digit(s[pos])) ++pos;
      }
      if (!eof() && s[pos] == '.') {
        integral = false;
        ++pos;
        if (eof() || !is_digit(s[pos])) fail("expected digits after '.'");
        while (!eof() && is_digit(s[pos])) ++pos;
      }
      if (!eof() && (s[pos] == 'e' || s[pos] == 'E')) {
        integral = false;
        ++pos;
        if (!eof() && (s[pos] == '+' || s[pos] == '-')) ++pos;
        if (eof() || !is_digit(s[pos])) fail("expected digits in exponent");
        while (!eof() && is_digit(s[pos])) ++pos;
      }
      const char* first = s.data() + start;
      const char* last = s.data() + pos;
      Json j;
      j.type_ = Type::Number;
      if (integral) {
        std::int64_t v = 0;
        auto r = std::from_chars(first, last, v);
        // "-0" stays a double: as the integer 0 it would lose its sign, and a
        // written -0.0 (dumped as "-0") must read back bit-exactly.
        if (r.ec == std::errc() && r.ptr == last && !(v == 0 && *first == '-')) {
          j.is_int_ = true;
          j.i_ = v;
          j.d_ = double(v);
          return j;
        }
      }
      // from_chars is locale-independent and bounded; on overflow/underflow
      // fall back to strtod on a bounded copy, which saturates to inf / 0.
      auto r = std::from_chars(first, last, j.d_);
      if (r.ec != std::errc() || r.ptr != last) j.d_ = std::strtod(std::string(first, last).c_str(), nullptr);
      return j;
    }
    static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  };

  Type type_ = Type::Null;
  bool b_ = false;
  bool is_int_ = false;
  std::int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::vector<Json> arr_;
  std::vector<Member> obj_;
};

}  // namespace marrow
