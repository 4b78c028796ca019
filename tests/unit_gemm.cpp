// Our fp32 GEMM (kernels/sgemm.hpp) against a triple loop summed in double, on
// every kernel this machine can run: AVX-512 and AVX2 (both compiled whatever
// -march says; each runs only where the CPU has it) and the Eigen fallback.
//
// Error bound: an fp32 sum of k products carries at most γ_k = k·u/(1 − k·u)
// relative to Σ|a·b| (u = 2⁻²⁴), whatever the order of summation; alpha, beta
// and the final addition add two more roundings. So every entry must satisfy
//   |C − C_ref| ≤ (k + 3)·u·(|α|·Σ_p |a_ip·b_pj| + |β·c_ij|) + 1e-30.
#include <doctest/doctest.h>

#include <marrow/kernels/sgemm.hpp>
#include <marrow/kernels/sgemm_bf16.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace marrow;
using namespace marrow::detail;

namespace {

struct Form {
  Trans ta, tb;
  const char* name;
};
constexpr Form kForms[] = {{Trans::N, Trans::N, "NN"}, {Trans::N, Trans::T, "NT"}, {Trans::T, Trans::N, "TN"},
                           {Trans::T, Trans::T, "TT"}};

// One product's operands, stored with leading dimensions padded by `pad` and the
// padding of C filled with a sentinel that no kernel may overwrite.
struct Problem {
  Trans ta, tb;
  index_t m, n, k, lda, ldb, ldc;
  float alpha, beta;
  std::vector<float> a, b, c0, bias_col, bias_row;
  static constexpr float kSentinel = 12345.0f;

  Problem(Trans ta_, Trans tb_, index_t m_, index_t n_, index_t k_, float alpha_, float beta_, index_t pad,
          std::uint32_t seed)
      : ta(ta_), tb(tb_), m(m_), n(n_), k(k_), alpha(alpha_), beta(beta_) {
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    const index_t arows = ta == Trans::N ? m : k, acols = ta == Trans::N ? k : m;
    const index_t brows = tb == Trans::N ? k : n, bcols = tb == Trans::N ? n : k;
    lda = acols + pad;
    ldb = bcols + pad;
    ldc = n + pad;
    a.assign(std::size_t(std::max<index_t>(1, arows * lda)), 0.0f);
    b.assign(std::size_t(std::max<index_t>(1, brows * ldb)), 0.0f);
    for (auto& x : a) x = u(g);
    for (auto& x : b) x = u(g);
    c0.assign(std::size_t(m * ldc), kSentinel);
    for (index_t i = 0; i < m; ++i)
      for (index_t j = 0; j < n; ++j) c0[i * ldc + j] = u(g);
    bias_col.resize(std::size_t(n));
    bias_row.resize(std::size_t(m));
    for (auto& x : bias_col) x = u(g);
    for (auto& x : bias_row) x = u(g);
  }
  double A(index_t i, index_t p) const { return ta == Trans::N ? a[i * lda + p] : a[p * lda + i]; }
  double B(index_t p, index_t j) const { return tb == Trans::N ? b[p * ldb + j] : b[j * ldb + p]; }
};

// The first entry that breaks the bound (or the padding), as a message; empty when
// every entry holds. bf16: the reference multiplies A's and B's entries rounded to
// bf16 (what sgemm_bf16 multiplies), the bound staying fp32's.
std::string check(const Problem& P, const std::vector<float>& c, const GemmEpilogue& ep = {}, bool bf16 = false) {
  constexpr double u = 1.0 / (1 << 24);
  for (index_t i = 0; i < P.m; ++i) {
    for (index_t j = 0; j < P.ldc; ++j) {
      const float got = c[i * P.ldc + j];
      if (j >= P.n) {
        if (got != Problem::kSentinel) return "padding overwritten at " + std::to_string(i) + "," + std::to_string(j);
        continue;
      }
      double s = 0, mag = 0;
      for (index_t p = 0; p < P.k; ++p) {
        const double x = bf16 ? bf16_round(float(P.A(i, p))) : P.A(i, p);
        const double y = bf16 ? bf16_round(float(P.B(p, j))) : P.B(p, j);
        s += x * y;
        mag += std::abs(x * y);
      }
      const double c0 = P.c0[i * P.ldc + j];
      const double bc = P.beta == 0.0f ? 0.0 : P.beta * c0;  // beta 0: C's old value (maybe NaN) is not read
      double ref = P.alpha * s + bc;
      double bound = (P.k + 3) * u * (std::abs(P.alpha) * mag + std::abs(bc)) + 1e-30;
      if (ep.bias_kind != GemmBias::None) {
        const double bi = ep.bias_kind == GemmBias::PerCol ? P.bias_col[j] : P.bias_row[i];
        ref += bi;
        bound += u * (std::abs(ref) + bound);
      }
      if (ep.act == GemmAct::Relu) ref = std::max(ref, 0.0);
      if (ep.act == GemmAct::Gelu) {
        // The kernels' exponential is a polynomial, not libm's: 1e-6 relative on top.
        const double g = ref * 0.5 * (1.0 + std::tanh(0.7978845608028654 * (ref + 0.044715 * ref * ref * ref)));
        bound = 1.2 * bound + 1e-6 * std::abs(ref) + 1e-6;  // GELU's slope stays below 1.2
        ref = g;
      }
      if (!(std::abs(got - ref) <= bound))
        return "C(" + std::to_string(i) + "," + std::to_string(j) + ") = " + std::to_string(got) + ", expected " +
               std::to_string(ref) + " ± " + std::to_string(bound);
    }
  }
  return {};
}

// Runs one problem through a kernel: returns C.
using Runner = void (*)(const Problem&, std::vector<float>&, const GemmEpilogue&, int threads);

template <class Arch>
void run_arch(const Problem& P, std::vector<float>& c, const GemmEpilogue& ep, int threads) {
  sgemm_with<Arch>(P.ta, P.tb, P.m, P.n, P.k, P.alpha, P.a.data(), P.lda, P.b.data(), P.ldb, P.beta, c.data(), P.ldc, ep,
                   threads);
}
void run_eigen(const Problem& P, std::vector<float>& c, const GemmEpilogue& ep, int) {
  sgemm_eigen(P.ta, P.tb, P.m, P.n, P.k, P.alpha, P.a.data(), P.lda, P.b.data(), P.ldb, P.beta, c.data(), P.ldc, ep);
}

struct Path {
  std::string name;
  Runner run;
  bool threads;  // splits over threads (and so must give the same bits on 1 and 2)
};

std::vector<Path> paths() {
  std::vector<Path> p;
#ifdef MARROW_SGEMM_X86
  if (Avx512Arch::supported()) p.push_back({"avx512", &run_arch<Avx512Arch>, true});
  else MESSAGE("this CPU has no AVX-512: its kernel is not tested here");
  if (Avx2Arch::supported()) p.push_back({"avx2", &run_arch<Avx2Arch>, true});
  else MESSAGE("this CPU has no AVX2+FMA: its kernel is not tested here");
#endif
  p.push_back({"eigen", &run_eigen, false});
  return p;
}

constexpr index_t kSizes[] = {1, 2, 15, 16, 17, 31, 63, 64, 65, 127, 129, 255, 257};

// Runs P on every path (on 1 thread, and on 2 where the path threads), checks the
// bound and that 1 and 2 threads agree bit for bit.
void check_all_paths(const Problem& P, const GemmEpilogue& ep = {}) {
  for (const Path& path : paths()) {
    CAPTURE(path.name);
    std::vector<float> c1 = P.c0;
    path.run(P, c1, ep, 1);
    const std::string err = check(P, c1, ep);
    CHECK_MESSAGE(err.empty(), err);
    if (path.threads) {
      std::vector<float> c2 = P.c0;
      path.run(P, c2, ep, 2);
      CHECK_MESSAGE(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0,
                    "1 and 2 threads give different bits");
    }
  }
}

}  // namespace

TEST_CASE("sgemm: every form and size against a double-sum triple loop, 1 and 2 threads bitwise equal") {
  std::uint32_t seed = 1;
  for (const Form& f : kForms) {
    for (const index_t s : kSizes) {
      // Squares, then each size as one side against ragged others: tall, wide, deep.
      const index_t shapes[][3] = {{s, s, s}, {s, 33, 17}, {7, s, 65}, {31, 47, s}};
      for (const auto& sh : shapes) {
        CAPTURE(f.name);
        CAPTURE(sh[0]);
        CAPTURE(sh[1]);
        CAPTURE(sh[2]);
        check_all_paths(Problem(f.ta, f.tb, sh[0], sh[1], sh[2], 1.0f, 0.0f, 0, seed++));
      }
    }
  }
}

TEST_CASE("sgemm: alpha, beta and padded leading dimensions") {
  const float ab[][2] = {{1.0f, 1.0f}, {-0.5f, 1.0f}, {2.0f, -1.5f}, {0.25f, 0.0f}};
  std::uint32_t seed = 100;
  for (const Form& f : kForms)
    for (const auto& v : ab)
      for (const index_t pad : {0, 3, 16}) {
        // k = 700 spans three k-blocks: beta must act once, the later blocks add.
        const index_t shapes[][3] = {{65, 129, 700}, {13, 50, 31}, {129, 17, 257}};
        for (const auto& sh : shapes) {
          CAPTURE(f.name);
          CAPTURE(v[0]);
          CAPTURE(v[1]);
          CAPTURE(pad);
          CAPTURE(sh[0]);
          check_all_paths(Problem(f.ta, f.tb, sh[0], sh[1], sh[2], v[0], v[1], pad, seed++));
        }
      }
}

TEST_CASE("sgemm: tall, skinny and wide products, more threads than blocks") {
  const index_t shapes[][3] = {{2000, 3, 40}, {3, 2000, 40}, {1, 777, 300}, {777, 1, 300}, {600, 600, 1},
                               {12, 1000, 1000}, {1000, 12, 1000}, {768, 384, 128}, {50, 50, 2000}};
  std::uint32_t seed = 300;
  for (const Form& f : kForms)
    for (const auto& sh : shapes) {
      CAPTURE(f.name);
      CAPTURE(sh[0]);
      CAPTURE(sh[1]);
      CAPTURE(sh[2]);
      check_all_paths(Problem(f.ta, f.tb, sh[0], sh[1], sh[2], 1.0f, 0.5f, 1, seed++));
    }
}

TEST_CASE("sgemm: beta 0 never reads C, k = 0 scales C") {
  for (const Path& path : paths()) {
    CAPTURE(path.name);
    Problem P(Trans::N, Trans::N, 37, 45, 70, 1.0f, 0.0f, 2, 7);
    for (index_t i = 0; i < P.m; ++i)
      for (index_t j = 0; j < P.n; ++j) P.c0[i * P.ldc + j] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> c = P.c0;
    path.run(P, c, {}, 1);
    // check() reads c0 only when beta != 0, so the NaNs must not reach C.
    const std::string err = check(P, c);
    CHECK_MESSAGE(err.empty(), err);

    Problem Z(Trans::N, Trans::T, 20, 35, 0, 1.0f, -2.0f, 1, 8);
    std::vector<float> cz = Z.c0;
    path.run(Z, cz, {}, 1);
    const std::string errz = check(Z, cz);
    CHECK_MESSAGE(errz.empty(), errz);
  }
}

TEST_CASE("sgemm: fused epilogue (bias per column or row, ReLU, GELU) equals the product then the ops") {
  std::uint32_t seed = 500;
  for (const Form& f : kForms)
    for (const GemmBias bk : {GemmBias::None, GemmBias::PerCol, GemmBias::PerRow})
      for (const GemmAct act : {GemmAct::None, GemmAct::Relu, GemmAct::Gelu})
        for (const float beta : {0.0f, 1.0f}) {
          // k = 600: the epilogue must wait for the last of three k-blocks.
          Problem P(f.ta, f.tb, 45, 71, 600, 0.5f, beta, 1, seed++);
          GemmEpilogue ep;
          ep.bias_kind = bk;
          ep.bias = bk == GemmBias::PerCol ? P.bias_col.data() : P.bias_row.data();
          ep.act = act;
          CAPTURE(f.name);
          CAPTURE(int(bk));
          CAPTURE(int(act));
          CAPTURE(beta);
          check_all_paths(P, ep);
        }
}

TEST_CASE("sgemm: GELU's vector form matches x·Φ(x) (tanh form) over its whole range") {
  // The epilogue above sees values of a few units; here the tails too, where the
  // exponential saturates.
  for (const Path& path : paths()) {
    CAPTURE(path.name);
    const index_t n = 401;
    Problem P(Trans::N, Trans::N, 1, n, 1, 1.0f, 0.0f, 0, 9);
    P.a[0] = 1.0f;
    for (index_t j = 0; j < n; ++j) P.b[std::size_t(j)] = -20.0f + 0.1f * float(j);  // C = B's row: -20 .. 20
    std::vector<float> c = P.c0;
    GemmEpilogue ep;
    ep.act = GemmAct::Gelu;
    path.run(P, c, ep, 1);
    for (index_t j = 0; j < n; ++j) {
      const double x = P.b[std::size_t(j)];
      const double ref = x * 0.5 * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
      CAPTURE(x);
      CHECK(std::abs(c[std::size_t(j)] - ref) <= 2e-6 * std::abs(ref) + 1e-7);
    }
  }
}

TEST_CASE("sgemm_batched: every product as sgemm computes it alone, on 1 and 2 threads") {
  // The attention's products: 48 heads of 64×64×32 (S = Q·Kᵀ) and 64×32×64 (O = P·V).
  const index_t shapes[][3] = {{64, 64, 32}, {64, 32, 64}, {17, 9, 33}};
  const index_t count = 48;
  std::mt19937 g(11);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const Form& f : kForms)
    for (const auto& sh : shapes) {
      const index_t m = sh[0], n = sh[1], k = sh[2];
      const index_t lda = f.ta == Trans::N ? k : m, ldb = f.tb == Trans::N ? n : k;
      const index_t sa = m * k + 5, sb = k * n + 3, sc = m * n + 1;
      std::vector<float> a(std::size_t(sa * count)), b(std::size_t(sb * count)), c0(std::size_t(sc * count));
      for (auto& x : a) x = u(g);
      for (auto& x : b) x = u(g);
      for (auto& x : c0) x = u(g);
      std::vector<float> one = c0, two = c0, alone = c0;
      sgemm_batched(f.ta, f.tb, m, n, k, 1.5f, a.data(), lda, sa, b.data(), ldb, sb, 0.5f, one.data(), n, sc, count, {}, 1);
      sgemm_batched(f.ta, f.tb, m, n, k, 1.5f, a.data(), lda, sa, b.data(), ldb, sb, 0.5f, two.data(), n, sc, count, {}, 2);
      for (index_t i = 0; i < count; ++i)
        sgemm(f.ta, f.tb, m, n, k, 1.5f, a.data() + i * sa, lda, b.data() + i * sb, ldb, 0.5f, alone.data() + i * sc, n,
              {}, 1);
      CAPTURE(f.name);
      CAPTURE(m);
      CHECK(std::memcmp(one.data(), alone.data(), one.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(two.data(), alone.data(), two.size() * sizeof(float)) == 0);
      // and the products themselves are right (a sample of them)
      for (index_t i = 0; i < count; i += 23) {
        double worst = 0;
        for (index_t r = 0; r < m; ++r)
          for (index_t j = 0; j < n; ++j) {
            double s = 0;
            for (index_t p = 0; p < k; ++p) {
              const float av = f.ta == Trans::N ? a[i * sa + r * lda + p] : a[i * sa + p * lda + r];
              const float bv = f.tb == Trans::N ? b[i * sb + p * ldb + j] : b[i * sb + j * ldb + p];
              s += double(av) * bv;
            }
            const double ref = 1.5 * s + 0.5 * c0[i * sc + r * n + j];
            worst = std::max(worst, std::abs(ref - one[i * sc + r * n + j]));
          }
        CHECK(worst <= (k + 3) * 1e-7 * (1.5 * k + 0.5));
      }
    }
}

TEST_CASE("sgemm: a piece of C computed alone has the bits of the whole product") {
  // What lets any caller cut a product over threads or bands and still get one
  // answer: entry (i, j) depends only on row i of op(A), column j of op(B) and k.
  for (const Path& path : paths()) {
    if (!path.threads) continue;
    CAPTURE(path.name);
    for (const Form& f : kForms) {
      CAPTURE(f.name);
      Problem P(f.ta, f.tb, 101, 203, 555, 1.0f, 1.0f, 0, 21);
      std::vector<float> whole = P.c0;
      path.run(P, whole, {}, 1);
      // rows 37..80 and columns 45..150 alone
      const index_t r0 = 37, r1 = 80, c0 = 45, c1 = 150;
      const index_t qm = r1 - r0, qn = c1 - c0;
      const float* pa = f.ta == Trans::N ? P.a.data() + r0 * P.lda : P.a.data() + r0;
      const float* pb = f.tb == Trans::N ? P.b.data() + c0 : P.b.data() + c0 * P.ldb;
      std::vector<float> part = P.c0;
      if (path.name == "avx512") {
#ifdef MARROW_SGEMM_X86
        sgemm_with<Avx512Arch>(f.ta, f.tb, qm, qn, P.k, 1.0f, pa, P.lda, pb, P.ldb, 1.0f, part.data() + r0 * P.ldc + c0,
                               P.ldc, {}, 1);
#endif
      } else {
#ifdef MARROW_SGEMM_X86
        sgemm_with<Avx2Arch>(f.ta, f.tb, qm, qn, P.k, 1.0f, pa, P.lda, pb, P.ldb, 1.0f, part.data() + r0 * P.ldc + c0,
                             P.ldc, {}, 1);
#endif
      }
      bool same = true;
      for (index_t i = r0; i < r1; ++i)
        for (index_t j = c0; j < c1; ++j) same = same && std::memcmp(&part[i * P.ldc + j], &whole[i * P.ldc + j], 4) == 0;
      CHECK(same);
    }
  }
}

// ---------------------------------------------------------------------------------
// sgemm_bf16 (kernels/sgemm_bf16.hpp): A and B rounded to bf16 as they are packed,
// products by VDPBF16PS, sums in fp32.
//
// Against the triple loop on the ROUNDED operands (check(..., bf16 = true)): a
// product of two bf16 is exact in fp32, so only the fp32 sums round and fp32's
// bound above holds unchanged: |C − C_ref| ≤ (k + 3)·u·(|α|·Σ|ã·b̃| + |β·c|), u = 2⁻²⁴.
// Against the UNROUNDED operands: each operand carries a relative error ≤ 2⁻⁸
// (bf16's unit roundoff, 8 significant bits), so each product one ≤ 2·2⁻⁸ + 2⁻¹⁶:
//   |C − C_exact| ≤ c·2⁻⁸·|α|·Σ|a·b| + (fp32's bound), c = 2 + 2⁻⁷.
namespace {

// Whether this CPU runs the bf16 kernel; where it does not, sgemm_bf16 must throw.
bool bf16_here() {
  if (bf16_gemm_supported()) return true;
  MESSAGE("this CPU has no AVX512-BF16: the bf16 GEMM is not tested here");
  float a = 1, b = 1, c = 0;
  CHECK_THROWS_AS(sgemm_bf16(Trans::N, Trans::N, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1), std::runtime_error);
  return false;
}

void run_bf16(const Problem& P, std::vector<float>& c, const GemmEpilogue& ep, int threads) {
  sgemm_bf16(P.ta, P.tb, P.m, P.n, P.k, P.alpha, P.a.data(), P.lda, P.b.data(), P.ldb, P.beta, c.data(), P.ldc, ep,
             threads);
}

// P on 1 thread against the rounded-operand reference, and 2 threads bit for bit.
void check_bf16(const Problem& P, const GemmEpilogue& ep = {}) {
  std::vector<float> c1 = P.c0, c2 = P.c0;
  run_bf16(P, c1, ep, 1);
  const std::string err = check(P, c1, ep, true);
  CHECK_MESSAGE(err.empty(), err);
  run_bf16(P, c2, ep, 2);
  CHECK_MESSAGE(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)) == 0, "1 and 2 threads give different bits");
}

float from_bits(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

constexpr index_t kBf16Sizes[] = {1, 2, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257};

}  // namespace

TEST_CASE("bf16_round: to nearest, ties to even, NaN stays NaN, denormals to zero") {
  const std::uint32_t cases[][2] = {
      {0x3F808000u, 0x3F80u},  // 1 + 2⁻⁸: a tie, the even neighbour (1.0) kept
      {0x3F818000u, 0x3F82u},  // 1 + 3·2⁻⁸: a tie, up to the even 1 + 2⁻⁶
      {0x3F808001u, 0x3F81u},  // just above the tie: up
      {0x3F807FFFu, 0x3F80u},  // just below: down
      {0xBF818000u, 0xBF82u},  // negative tie: magnitude to even
      {0x7F7FFFFFu, 0x7F80u},  // the largest float rounds to infinity
      {0x7F800000u, 0x7F80u},  // infinity stays
      {0x00400000u, 0x0000u},  // a denormal becomes zero (as VCVTNE2PS2BF16 treats it)
      {0x80000001u, 0x8000u},  // ... of its sign
      {0x00800000u, 0x0080u},  // the smallest normal stays
  };
  for (const auto& cs : cases) {
    CAPTURE(cs[0]);
    CHECK(bf16_bits(from_bits(cs[0])) == cs[1]);
  }
  // NaN stays NaN, also where rounding its payload up would carry into infinity.
  for (const std::uint32_t nan : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu}) {
    CAPTURE(nan);
    CHECK(std::isnan(bf16_round(from_bits(nan))));
  }
}

TEST_CASE("sgemm_bf16: its packing rounds exactly as bf16_round, for A and B in every layout") {
  if (!bf16_here()) return;
  // C = A·1 (k = 1, m values) and C = 1·B (n values): products exact, so C holds
  // the operand as the kernel rounded it. Ties, NaN, denormals, infinities, random bits.
  std::vector<float> v;
  for (const std::uint32_t x : {0x3F808000u, 0x3F818000u, 0x3F808001u, 0x3F807FFFu, 0xBF818000u, 0x7F7FFFFFu,
                                0x7F800000u, 0xFF800000u, 0x00400000u, 0x80000001u, 0x00800000u, 0x7FC00000u,
                                0x7F800001u, 0xFFFFFFFFu})
    v.push_back(from_bits(x));
  std::mt19937 g(3);
  while (v.size() < 300) {
    const std::uint32_t x = g();
    v.push_back(from_bits((x & 0x807FFFFFu) | (((x >> 23) % 60 + 100) << 23)));  // exponents 2⁻²⁷..2³²
  }
  const index_t len = index_t(v.size());
  float one = 1.0f;
  // The first entry rounded otherwise, as a message; empty when all agree.
  auto differ = [](const std::vector<float>& c, const std::vector<float>& src) -> std::string {
    for (std::size_t i = 0; i < src.size(); ++i) {
      const float want = bf16_round(src[i]);
      // (== on values: a product −0·1 added to the accumulator's +0 is +0)
      if (std::isnan(want) ? !std::isnan(c[i]) : c[i] != want)
        return "entry " + std::to_string(i) + ": " + std::to_string(src[i]) + " became " + std::to_string(c[i]) +
               ", bf16_round gives " + std::to_string(want);
    }
    return {};
  };
  for (const Trans t : {Trans::N, Trans::T}) {
    CAPTURE(int(t));
    std::vector<float> ca(v.size()), cb(v.size());
    // A as len×1 (N: one column; T: stored 1×len); B as 1×len (N: one row; T: stored len×1)
    sgemm_bf16(t, Trans::N, len, 1, 1, 1.0f, v.data(), t == Trans::N ? 1 : len, &one, 1, 0.0f, ca.data(), 1);
    sgemm_bf16(Trans::N, t, 1, len, 1, 1.0f, &one, 1, v.data(), t == Trans::N ? len : 1, 0.0f, cb.data(), len);
    const std::string ea = differ(ca, v), eb = differ(cb, v);
    CHECK_MESSAGE(ea.empty(), "A: " << ea);
    CHECK_MESSAGE(eb.empty(), "B: " << eb);
  }
}

TEST_CASE("sgemm_bf16: every form and size against the rounded operands' double sum, 1 and 2 threads bitwise equal") {
  if (!bf16_here()) return;
  std::uint32_t seed = 1000;
  for (const Form& f : kForms)
    for (const index_t s : kBf16Sizes) {
      // Squares, then each size as one side against ragged others: tall, wide, deep
      // (odd k throughout: 1, 15, 17, 31, 33, 63, 65, ...).
      const index_t shapes[][3] = {{s, s, s}, {s, 33, 17}, {7, s, 65}, {31, 47, s}};
      for (const auto& sh : shapes) {
        CAPTURE(f.name);
        CAPTURE(sh[0]);
        CAPTURE(sh[1]);
        CAPTURE(sh[2]);
        check_bf16(Problem(f.ta, f.tb, sh[0], sh[1], sh[2], 1.0f, 0.0f, 0, seed++));
      }
    }
}

TEST_CASE("sgemm_bf16: against the unrounded operands, within bf16's rounding and not within fp32's accuracy") {
  if (!bf16_here()) return;
  constexpr double u32 = 1.0 / (1 << 24), u16 = 1.0 / (1 << 8), c_bf16 = 2.0 + 1.0 / 128;
  std::uint32_t seed = 2000;
  for (const Form& f : kForms)
    for (const index_t k : {1, 64, 255, 700}) {
      CAPTURE(f.name);
      CAPTURE(k);
      Problem P(f.ta, f.tb, 45, 70, k, 1.0f, 0.0f, 0, seed++);
      std::vector<float> c = P.c0;
      run_bf16(P, c, {}, 0);
      index_t above_fp32 = 0;
      double worst = 0;  // |err| / bound
      for (index_t i = 0; i < P.m; ++i)
        for (index_t j = 0; j < P.n; ++j) {
          double s = 0, mag = 0;
          for (index_t p = 0; p < k; ++p) {
            s += P.A(i, p) * P.B(p, j);
            mag += std::abs(P.A(i, p) * P.B(p, j));
          }
          const double err = std::abs(c[i * P.ldc + j] - s), fp32 = (k + 3) * u32 * mag;
          worst = std::max(worst, err / (c_bf16 * u16 * mag + fp32 + 1e-30));
          above_fp32 += err > fp32;
        }
      CHECK(worst <= 1.0);
      // An fp32 product (a silent fallback) stays within fp32's bound everywhere; one
      // of rounded operands leaves it on most entries (all at k = 1, 77% at k = 700,
      // where fp32's worst case (k + 3)·u grows faster than bf16's typical √k·2⁻⁸).
      CHECK(above_fp32 > P.m * P.n / 2);
    }
}

TEST_CASE("sgemm_bf16: alpha, beta and padded leading dimensions") {
  if (!bf16_here()) return;
  const float ab[][2] = {{1.0f, 1.0f}, {-0.5f, 1.0f}, {2.0f, -1.5f}, {0.25f, 0.0f}};
  std::uint32_t seed = 3000;
  for (const Form& f : kForms)
    for (const auto& v : ab)
      for (const index_t pad : {0, 3, 16}) {
        // k = 1101 spans three k-blocks (odd, so the last ends in a half pair):
        // beta must act once, the later blocks add.
        const index_t shapes[][3] = {{65, 129, 1101}, {13, 50, 31}, {129, 17, 257}};
        for (const auto& sh : shapes) {
          CAPTURE(f.name);
          CAPTURE(v[0]);
          CAPTURE(v[1]);
          CAPTURE(pad);
          CAPTURE(sh[0]);
          check_bf16(Problem(f.ta, f.tb, sh[0], sh[1], sh[2], v[0], v[1], pad, seed++));
        }
      }
}

TEST_CASE("sgemm_bf16: tall, skinny and wide products, more threads than blocks") {
  if (!bf16_here()) return;
  const index_t shapes[][3] = {{2000, 3, 40}, {3, 2000, 40}, {1, 777, 301}, {777, 1, 300}, {600, 600, 1},
                               {12, 1000, 1000}, {1000, 12, 1001}, {768, 384, 128}, {50, 50, 2001}};
  std::uint32_t seed = 4000;
  for (const Form& f : kForms)
    for (const auto& sh : shapes) {
      CAPTURE(f.name);
      CAPTURE(sh[0]);
      CAPTURE(sh[1]);
      CAPTURE(sh[2]);
      check_bf16(Problem(f.ta, f.tb, sh[0], sh[1], sh[2], 1.0f, 0.5f, 1, seed++));
    }
}

TEST_CASE("sgemm_bf16: beta 0 never reads C (NaN there stays out), k = 0 scales C") {
  if (!bf16_here()) return;
  for (const Form& f : kForms) {
    CAPTURE(f.name);
    Problem P(f.ta, f.tb, 37, 45, 71, 1.0f, 0.0f, 2, 7);
    for (index_t i = 0; i < P.m; ++i)
      for (index_t j = 0; j < P.n; ++j) P.c0[i * P.ldc + j] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> c = P.c0;
    run_bf16(P, c, {}, 1);
    const std::string err = check(P, c, {}, true);
    CHECK_MESSAGE(err.empty(), err);
  }
  Problem Z(Trans::N, Trans::T, 20, 35, 0, 1.0f, -2.0f, 1, 8);
  std::vector<float> cz = Z.c0;
  run_bf16(Z, cz, {}, 1);
  const std::string errz = check(Z, cz, {}, true);
  CHECK_MESSAGE(errz.empty(), errz);
}

TEST_CASE("sgemm_bf16: fused epilogue (bias per column or row, ReLU, GELU)") {
  if (!bf16_here()) return;
  std::uint32_t seed = 5000;
  for (const Form& f : kForms)
    for (const GemmBias bk : {GemmBias::None, GemmBias::PerCol, GemmBias::PerRow})
      for (const GemmAct act : {GemmAct::None, GemmAct::Relu, GemmAct::Gelu})
        for (const float beta : {0.0f, 1.0f}) {
          // k = 1200: the epilogue must wait for the last of three k-blocks.
          Problem P(f.ta, f.tb, 45, 71, 1200, 0.5f, beta, 1, seed++);
          GemmEpilogue ep;
          ep.bias_kind = bk;
          ep.bias = bk == GemmBias::PerCol ? P.bias_col.data() : P.bias_row.data();
          ep.act = act;
          CAPTURE(f.name);
          CAPTURE(int(bk));
          CAPTURE(int(act));
          CAPTURE(beta);
          check_bf16(P, ep);
        }
}

TEST_CASE("sgemm_bf16: a piece of C computed alone has the bits of the whole product") {
  if (!bf16_here()) return;
  for (const Form& f : kForms) {
    CAPTURE(f.name);
    Problem P(f.ta, f.tb, 101, 203, 1111, 1.0f, 1.0f, 0, 21);
    std::vector<float> whole = P.c0, part = P.c0;
    run_bf16(P, whole, {}, 1);
    const index_t r0 = 37, r1 = 80, c0 = 45, c1 = 150;
    const float* pa = f.ta == Trans::N ? P.a.data() + r0 * P.lda : P.a.data() + r0;
    const float* pb = f.tb == Trans::N ? P.b.data() + c0 : P.b.data() + c0 * P.ldb;
    sgemm_bf16(f.ta, f.tb, r1 - r0, c1 - c0, P.k, 1.0f, pa, P.lda, pb, P.ldb, 1.0f, part.data() + r0 * P.ldc + c0,
               P.ldc, {}, 1);
    bool same = true;
    for (index_t i = r0; i < r1; ++i)
      for (index_t j = c0; j < c1; ++j) same = same && std::memcmp(&part[i * P.ldc + j], &whole[i * P.ldc + j], 4) == 0;
    CHECK(same);
  }
}

TEST_CASE("sgemm_bf16_batched: every product as sgemm_bf16 computes it alone, on 1 and 2 threads") {
  if (!bf16_here()) return;
  const index_t shapes[][3] = {{64, 64, 32}, {64, 32, 64}, {17, 9, 33}};
  const index_t count = 48;
  std::mt19937 g(12);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (const Form& f : kForms)
    for (const auto& sh : shapes) {
      const index_t m = sh[0], n = sh[1], k = sh[2];
      const index_t lda = f.ta == Trans::N ? k : m, ldb = f.tb == Trans::N ? n : k;
      const index_t sa = m * k + 5, sb = k * n + 3, sc = m * n + 1;
      std::vector<float> a(std::size_t(sa * count)), b(std::size_t(sb * count)), c0(std::size_t(sc * count));
      for (auto& x : a) x = u(g);
      for (auto& x : b) x = u(g);
      for (auto& x : c0) x = u(g);
      std::vector<float> one = c0, two = c0, alone = c0;
      sgemm_bf16_batched(f.ta, f.tb, m, n, k, 1.5f, a.data(), lda, sa, b.data(), ldb, sb, 0.5f, one.data(), n, sc, count,
                         {}, 1);
      sgemm_bf16_batched(f.ta, f.tb, m, n, k, 1.5f, a.data(), lda, sa, b.data(), ldb, sb, 0.5f, two.data(), n, sc, count,
                         {}, 2);
      for (index_t i = 0; i < count; ++i)
        sgemm_bf16(f.ta, f.tb, m, n, k, 1.5f, a.data() + i * sa, lda, b.data() + i * sb, ldb, 0.5f,
                   alone.data() + i * sc, n, {}, 1);
      CAPTURE(f.name);
      CAPTURE(m);
      CHECK(std::memcmp(one.data(), alone.data(), one.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(two.data(), alone.data(), two.size() * sizeof(float)) == 0);
      // and the products themselves are right (a sample), against the rounded operands
      for (index_t i = 0; i < count; i += 23) {
        double worst = 0;
        for (index_t r = 0; r < m; ++r)
          for (index_t j = 0; j < n; ++j) {
            double s = 0;
            for (index_t p = 0; p < k; ++p) {
              const float av = f.ta == Trans::N ? a[i * sa + r * lda + p] : a[i * sa + p * lda + r];
              const float bv = f.tb == Trans::N ? b[i * sb + p * ldb + j] : b[i * sb + j * ldb + p];
              s += double(bf16_round(av)) * bf16_round(bv);
            }
            const double ref = 1.5 * s + 0.5 * c0[i * sc + r * n + j];
            worst = std::max(worst, std::abs(ref - one[i * sc + r * n + j]));
          }
        CHECK(worst <= (k + 3) * 1e-7 * (1.5 * k + 0.5));
      }
    }
}
