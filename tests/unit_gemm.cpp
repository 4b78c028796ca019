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
// every entry holds.
std::string check(const Problem& P, const std::vector<float>& c, const GemmEpilogue& ep = {}) {
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
        s += P.A(i, p) * P.B(p, j);
        mag += std::abs(P.A(i, p) * P.B(p, j));
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

TEST_CASE("sgemm: tall, skinny and wide products; more threads than blocks") {
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

TEST_CASE("sgemm: beta 0 never reads C; k = 0 scales C") {
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
