#include "testing.hpp"

#include <marrow/ops/conv.hpp>
#include <marrow/ops/pool.hpp>

using namespace marrow;
using marrow::testing::project;

namespace {
// Direct 7-loop convolution: the definition, to check the im2col/GEMM path against.
Tensor<double> ref_conv2d(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* b, int s, int p, int d) {
  const index_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), kh = w.dim(2), kw = w.dim(3);
  const index_t Ho = (H + 2 * p - d * (kh - 1) - 1) / s + 1, Wo = (W + 2 * p - d * (kw - 1) - 1) / s + 1;
  Tensor<double> y({N, O, Ho, Wo});
  for (index_t n = 0; n < N; ++n)
    for (index_t o = 0; o < O; ++o)
      for (index_t i = 0; i < Ho; ++i)
        for (index_t j = 0; j < Wo; ++j) {
          double acc = b ? (*b)[o] : 0.0;
          for (index_t c = 0; c < C; ++c)
            for (index_t ki = 0; ki < kh; ++ki)
              for (index_t kj = 0; kj < kw; ++kj) {
                const index_t ih = i * s - p + ki * d, iw = j * s - p + kj * d;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) acc += x.at({n, c, ih, iw}) * w.at({o, c, ki, kj});
              }
          y.at({n, o, i, j}) = acc;
        }
  return y;
}

// Convolutions are linear in each argument, so central differences carry no
// truncation error at any step: a large h keeps the rounding error (~eps·|loss|/h)
// far below the 1e-6 tolerance even for entries whose gradient is near zero.
const GradcheckOptions kLinear{.h = 1e-3};

double dot(const Tensor<double>& a, const Tensor<double>& b) { return (a.arr() * b.arr()).sum(); }

// Run a body with tiny column bands (one kernel reach of rows each).
template <class F> void with_tiny_bands(F&& f) {
  KernelConfig c = kernel_config();
  c.conv_band_bytes = 1;
  const ScopedKernelConfig scope(c);
  f();
}

void check_values(const Tensor<double>& got, std::initializer_list<double> want) {
  REQUIRE(got.numel() == index_t(want.size()));
  index_t i = 0;
  for (double v : want) {
    CAPTURE(i);
    CHECK(got[i++] == doctest::Approx(v));
  }
}
}  // namespace

TEST_CASE("conv2d: gradients and values for every stride x padding x dilation, kernel, bias") {
  struct K { index_t kh, kw; };
  for (K k : {K{3, 3}, K{2, 3}, K{1, 1}})
    for (int s : {1, 2})
      for (int p : {0, 1})
        for (int d : {1, 2})
          for (bool bias : {true, false})
            for (bool tiny : {false, true}) {
              CAPTURE(k.kh);
              CAPTURE(k.kw);
              CAPTURE(s);
              CAPTURE(p);
              CAPTURE(d);
              CAPTURE(bias);
              CAPTURE(tiny);
              Rng rng(3);
              Param<double> x(randn<double>({2, 3, 7, 6}, rng)), w(randn<double>({4, 3, k.kh, k.kw}, rng)),
                  b(randn<double>({4}, rng));
              auto body = [&] {
                auto f = [&](Tape<double>& t) {
                  return bias ? conv2d(t, x, w, b, s, p, d) : conv2d(t, x, w, Var<double>(), s, p, d);
                };
                auto r = bias ? gradcheck({&x, &w, &b}, [&](Tape<double>& t) { return project(t, f(t)); }, kLinear)
                              : gradcheck({&x, &w}, [&](Tape<double>& t) { return project(t, f(t)); }, kLinear);
                MARROW_CHECK_GRAD(r, 1e-6);
                Tape<double> t;
                Tensor<double> y = f(t).value();
                Tensor<double> want = ref_conv2d(x.value(), w.value(), bias ? &b.value() : nullptr, s, p, d);
                REQUIRE(y.shape() == want.shape());
                CHECK((y.arr() - want.arr()).abs().maxCoeff() < 1e-12);
              };
              if (tiny) with_tiny_bands(body);
              else body();
            }
}

TEST_CASE("conv2d: hand-computed 3x3 on a 4x4 ramp") {
  Tape<double> t;
  auto x = t.input(arange<double>(16).reshape({1, 1, 4, 4}));  // x[i, j] = 4i + j
  auto w = t.input(Tensor<double>({1, 1, 3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}));  // main diagonal
  auto b = t.input(Tensor<double>({1}, {0.5}));
  check_values(conv2d(t, x, w, b).value(), {15.5, 18.5, 27.5, 30.5});
  check_values(conv2d(t, x, w, Var<double>(), 2, 1).value(), {5, 9, 21, 30});
  check_values(conv2d(t, x, w, Var<double>(), 1, 2, 2).value(),  // taps at offsets -2, 0, +2
               {10, 12, 2, 3, 18, 20, 6, 7, 8, 9, 10, 12, 12, 13, 18, 20});
}

TEST_CASE("conv2d: float path with threads, bands and image groups matches the double reference") {
  struct Case { Shape x, w; };
  // (3, 16, 40, 37): several bands per image; (8, 16, 10, 10): four images per GEMM.
  for (const Case& c : {Case{{3, 16, 40, 37}, {8, 16, 3, 3}}, Case{{8, 16, 10, 10}, {8, 16, 3, 3}}})
    for (int s : {1, 2}) {
      CAPTURE(c.x.str());
      CAPTURE(s);
      Rng rng(8);
      Tensor<double> xd = randn<double>(c.x, rng), wd = randn<double>(c.w, rng), bd = randn<double>({c.w[0]}, rng);
      Tape<float> t;
      Param<float> w(wd.cast<float>()), b(bd.cast<float>());
      auto x = t.leaf(xd.cast<float>());
      auto y = conv2d(t, x, w, b, s, 1);
      Tensor<double> want = ref_conv2d(xd, wd, &bd, s, 1, 1);
      REQUIRE(y.shape() == want.shape());
      CHECK((y.value().cast<double>().arr() - want.arr()).abs().maxCoeff() < 1e-3);
      // Backward with threads and wide bands against the same rule run serially, band by band, in double.
      Tensor<double> gy = randn<double>(y.shape(), rng);
      t.backward(y, gy.cast<float>());
      Param<double> xw(xd.clone()), ww(wd.clone()), bw(bd.clone());
      with_tiny_bands([&] {
        Tape<double> td;
        auto yd = conv2d(td, xw, ww, bw, s, 1);
        td.backward(yd, gy);
      });
      // Error relative to the largest entry: dW entries are sums over every pixel, and
      // Winograd (the stride-1 case) amplifies float rounding ~10x (~1e-5 of the largest
      // entry here), so a small entry's own relative error says little about correctness.
      auto rel = [](const Tensor<float>& a, const Tensor<double>& b) {
        return (a.cast<double>().arr() - b.arr()).abs().maxCoeff() / (1 + b.arr().abs().maxCoeff());
      };
      CHECK(rel(x.grad(), xw.grad()) < 1e-4);
      CHECK(rel(w.grad(), ww.grad()) < 1e-4);
      CHECK(rel(b.grad(), bw.grad()) < 1e-4);
    }
}

// Run a body with conv2d's 3x3 stride-1 path forced to Winograd or to im2col.
template <class F> void with_winograd(WinogradMode m, F&& f) {
  KernelConfig c = kernel_config();
  c.winograd = m;
  const ScopedKernelConfig scope(c);
  f();
}

// Run a body with Winograd's transforms on tile rows (row kernels) or on gathered
// tiles (block kernels) for every plane width.
template <class F> void with_wino_kernels(bool gathered, F&& f) {
  KernelConfig c = kernel_config();
  c.wino_gather_max_tw = gathered ? 1 << 20 : 0;
  const ScopedKernelConfig scope(c);
  f();
}

// Run a body with the forward's transformed input kept for dW (the default at these sizes)
// or recomputed in backward (layers too large to keep it).
template <class F> void with_wino_keep(bool keep, F&& f) {
  KernelConfig c = kernel_config();
  if (!keep) c.wino_keep_max_bytes = 0;
  const ScopedKernelConfig scope(c);
  f();
}

// Run a body with Winograd blocks of one tile row each (many blocks, two dx phases) when tiny.
template <class F> void with_wino_blocks(bool tiny, F&& f) {
  KernelConfig c = kernel_config();
  if (tiny) c.wino_block_bytes = 1;
  const ScopedKernelConfig scope(c);
  f();
}

TEST_CASE("conv2d winograd: gradients and values for every padding, ragged tiles, bias, block size, kernels") {
  // Sizes that are not multiples of the 4x4 output tile, so partial tiles are exercised.
  // Off: the same cases through im2col, which Auto no longer picks for them (C = 3).
  using Mode = WinogradMode;
  struct S { index_t H, W; };
  for (Mode mode : {Mode::On, Mode::Off})
  for (bool gathered : {false, true})
  for (bool keep : {true, false})
  for (S sz : {S{9, 7}, S{4, 4}, S{6, 13}})
    for (int p : {0, 1, 2})
      for (bool bias : {true, false})
        for (bool tiny : {false, true}) {
          if (mode == Mode::Off && (tiny || gathered || !keep)) continue;  // Winograd knobs
          CAPTURE(mode == Mode::On);
          CAPTURE(gathered);
          CAPTURE(keep);
          CAPTURE(sz.H);
          CAPTURE(sz.W);
          CAPTURE(p);
          CAPTURE(bias);
          CAPTURE(tiny);
          Rng rng(21);
          Param<double> x(randn<double>({2, 3, sz.H, sz.W}, rng)), w(randn<double>({4, 3, 3, 3}, rng)),
              b(randn<double>({4}, rng));
          with_wino_blocks(tiny, [&] { with_wino_keep(keep, [&] { with_wino_kernels(gathered, [&] { with_winograd(mode, [&] {
            auto f = [&](Tape<double>& t) { return bias ? conv2d(t, x, w, b, 1, p) : conv2d(t, x, w, Var<double>(), 1, p); };
            // The backward pass is the exact adjoint of the Winograd forward: the same 1e-6 as the direct path.
            auto r = bias ? gradcheck({&x, &w, &b}, [&](Tape<double>& t) { return project(t, f(t)); }, kLinear)
                          : gradcheck({&x, &w}, [&](Tape<double>& t) { return project(t, f(t)); }, kLinear);
            MARROW_CHECK_GRAD(r, 1e-6);
            Tape<double> t;
            Tensor<double> y = f(t).value();
            Tensor<double> want = ref_conv2d(x.value(), w.value(), bias ? &b.value() : nullptr, 1, p, 1);
            REQUIRE(y.shape() == want.shape());
            CHECK((y.arr() - want.arr()).abs().maxCoeff() < 1e-11);
          }); }); }); });
        }
}

TEST_CASE("conv2d winograd: hand-computed 3x3 on a 4x4 ramp") {
  with_winograd(WinogradMode::On, [] {
    Tape<double> t;
    auto x = t.input(arange<double>(16).reshape({1, 1, 4, 4}));  // x[i, j] = 4i + j
    auto w = t.input(Tensor<double>({1, 1, 3, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1}));  // main diagonal
    check_values(conv2d(t, x, w, t.input(Tensor<double>({1}, {0.5}))).value(), {15.5, 18.5, 27.5, 30.5});
    // padding 1: a 4x4 output, one tile; the corners see one or two taps.
    check_values(conv2d(t, x, w, Var<double>(), 1, 1).value(),
                 {5, 7, 9, 3, 13, 15, 18, 9, 21, 27, 30, 17, 12, 21, 23, 25});
  });
}

TEST_CASE("conv2d winograd: only the gradients asked for, accumulated") {
  with_winograd(WinogradMode::On, [] {
    Rng rng(41);
    Param<double> x(randn<double>({2, 3, 9, 7}, rng)), w(randn<double>({4, 3, 3, 3}, rng));
    auto run = [&](bool x_grad) {
      Tape<double> t;
      auto y = conv2d(t, x_grad ? Var<double>(x) : t.input(x.value()), w, Var<double>(), 1, 1);
      t.backward(project(t, y));
    };
    run(true);
    const Tensor<double> gx = x.grad().clone(), gw = w.grad().clone();
    run(true);  // a second tape adds onto the parameters' gradients
    CHECK((x.grad().arr() - 2 * gx.arr()).abs().maxCoeff() < 1e-12);
    CHECK((w.grad().arr() - 2 * gw.arr()).abs().maxCoeff() < 1e-12);
    x.zero_grad();
    w.zero_grad();
    run(false);  // x is a constant: dW only
    CHECK((w.grad().arr() - gw.arr()).abs().maxCoeff() < 1e-12);
    CHECK(x.grad().arr().abs().maxCoeff() == 0);  // zeroed above, untouched since
    w.zero_grad();
    w.set_requires_grad(false);  // frozen weight: dx only
    run(true);
    CHECK((x.grad().arr() - gx.arr()).abs().maxCoeff() < 1e-12);
    CHECK((w.grad().arr()).abs().maxCoeff() == 0);
  });
}

TEST_CASE("conv2d winograd: float values and gradients within 1e-5 (of the largest entry) of the direct path, threads, block modes") {
  // (2, 16, 20, 19): one block shared by all threads by default, one tile row per
  // block (independent blocks, two dx phases) when tiny; (3, 24, 33, 8): many blocks.
  struct Case { Shape x; index_t O; };
  for (const Case& c : {Case{{2, 16, 20, 19}, 16}, Case{{3, 24, 33, 8}, 12}})
    for (bool tiny : {false, true})
    for (bool gathered : {false, true})
    for (bool keep : {true, false}) {
      CAPTURE(c.x.str());
      CAPTURE(tiny);
      CAPTURE(gathered);
      CAPTURE(keep);
      Rng rng(31);
      Tensor<double> xd = randn<double>(c.x, rng), wd = randn<double>({c.O, c.x[1], 3, 3}, rng, 0.0, 0.2),
                     bd = randn<double>({c.O}, rng);
      Tape<float> t;
      Param<float> w(wd.cast<float>()), b(bd.cast<float>());
      auto x = t.leaf(xd.cast<float>());
      Var<float> y;
      Tensor<double> gy;
      with_wino_blocks(tiny, [&] { with_wino_keep(keep, [&] { with_wino_kernels(gathered, [&] {
        with_winograd(WinogradMode::On, [&] { y = conv2d(t, x, w, b, 1, 1); });
        gy = randn<double>(y.shape(), rng);
        t.backward(y, gy.cast<float>());
      }); }); });
      Param<double> xw(xd.clone()), ww(wd.clone()), bw(bd.clone());
      Tensor<double> yd;
      with_winograd(WinogradMode::Off, [&] {
        Tape<double> td;
        auto v = conv2d(td, xw, ww, bw, 1, 1);
        yd = v.value();
        td.backward(v, gy);
      });
      auto rel = [](const Tensor<float>& a, const Tensor<double>& b) {
        return (a.cast<double>().arr() - b.arr()).abs().maxCoeff() / b.arr().abs().maxCoeff();
      };
      CHECK(rel(y.value(), yd) < 1e-5);
      CHECK(rel(x.grad(), xw.grad()) < 1e-5);
      CHECK(rel(w.grad(), ww.grad()) < 1e-5);
      CHECK(rel(b.grad(), bw.grad()) < 1e-5);
    }
}

TEST_CASE("conv: bands two apart never write the same image row (lock-free col2im phases)") {
  struct G { int k, s, d, p; };
  for (G c : {G{3, 1, 1, 1}, G{3, 1, 2, 2}, G{5, 2, 1, 2}, G{2, 2, 1, 0}, G{3, 3, 1, 0}, G{4, 1, 3, 0}, G{1, 1, 1, 0}})
    for (std::size_t bytes : {std::size_t(1), std::size_t(4096), std::size_t(256 << 10)}) {
      CAPTURE(c.k);
      CAPTURE(c.s);
      CAPTURE(c.d);
      CAPTURE(bytes);
      const index_t H = 40, Ho = (H + 2 * c.p - c.d * (c.k - 1) - 1) / c.s + 1;
      const detail::ConvGeom g{8, H, H, Ho, Ho, c.k, c.k, c.s, c.p, c.d};
      KernelConfig cfg = kernel_config();
      cfg.conv_band_bytes = bytes;
      const detail::ConvPlan pl = [&] {
        const ScopedKernelConfig scope(cfg);
        return detail::conv_plan(4, g, 8, sizeof(float));
      }();
      for (index_t b = 0; b + 2 < pl.nbands; ++b) {
        const index_t last_row = (std::min(Ho, (b + 1) * pl.R) - 1) * c.s - c.p + c.d * (c.k - 1);
        const index_t first_row_b2 = (b + 2) * pl.R * c.s - c.p;
        CHECK(last_row < first_row_b2);
      }
    }
}

TEST_CASE("conv: small images are grouped evenly over the threads") {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  // DCGAN's layers at batch 64: D's 1->64 conv on 28x28 (groups of up to 20 images
  // before) and its 64->128 conv on 14x14 (up to 11).
  const detail::ConvGeom c1{1, 28, 28, 14, 14, 4, 4, 2, 1, 1}, c2{64, 14, 14, 7, 7, 4, 4, 2, 1, 1};
  for (int threads : {1, 2, 3, 4})
    for (const detail::ConvGeom& g : {c1, c2})
      for (index_t N : {1, 5, 64, 67}) {
        CAPTURE(threads);
        CAPTURE(N);
        CAPTURE(g.C);
        omp_set_num_threads(threads);
        const detail::ConvPlan pl = detail::conv_plan(N, g, 64, sizeof(float));
        omp_set_num_threads(saved);
        REQUIRE(pl.nbands == 1);
        if (pl.par && pl.G > 1) CHECK(pl.ngroups % threads == 0);
        index_t next = 0, lo = N, hi = 0;
        for (index_t gi = 0; gi < pl.ngroups; ++gi) {
          const auto [first, count] = pl.group(gi, N);
          CHECK(first == next);  // consecutive, covering every image once
          next = first + count;
          lo = std::min(lo, count), hi = std::max(hi, count);
        }
        CHECK(next == N);
        CHECK(hi <= pl.G);
        CHECK(hi - lo <= 1);
      }
  omp_set_num_threads(saved);
#endif
}

TEST_CASE("conv2d: errors name the op and the shapes") {
  Tape<double> t;
  auto x = t.input(zeros<double>({2, 3, 8, 8}));
  CHECK_THROWS_WITH_AS(conv2d(t, x, t.input(zeros<double>({4, 5, 3, 3}))),
                       "conv2d: input (2, 3, 8, 8) has 3 channels, weight (4, 5, 3, 3) expects 5", Error);
  CHECK_THROWS_WITH_AS(conv2d(t, t.input(zeros<double>({1, 3, 2, 2})), t.input(zeros<double>({4, 3, 3, 3}))),
                       doctest::Contains("conv2d: input (1, 3, 2, 2) with padding 0 is smaller than the kernel"), Error);
  CHECK_THROWS_WITH_AS(conv2d(t, x, t.input(zeros<double>({4, 3, 3, 3})), t.input(zeros<double>({3}))),
                       doctest::Contains("conv2d: bias (3,) for weight (4, 3, 3, 3)"), Error);
  CHECK_THROWS_WITH_AS(conv2d(t, t.input(zeros<double>({3, 8, 8})), t.input(zeros<double>({4, 3, 3, 3}))),
                       doctest::Contains("conv2d: input must be (N, C, H, W), got (3, 8, 8)"), Error);
  CHECK_THROWS_WITH_AS(conv2d(t, x, t.input(zeros<double>({4, 3, 3, 3})), Var<double>(), 0),
                       doctest::Contains("conv2d: stride must be >= 1"), Error);
}

TEST_CASE("conv_transpose2d: gradients for every stride x padding x output_padding x dilation") {
  for (int s : {1, 2, 3})
    for (int p : {0, 1})
      for (int op : {0, 1})
        for (int d : {1, 2})
          for (bool tiny : {false, true}) {
            if (!(op < s || op < d)) continue;
            CAPTURE(s);
            CAPTURE(p);
            CAPTURE(op);
            CAPTURE(d);
            CAPTURE(tiny);
            Rng rng(5);
            Param<double> x(randn<double>({2, 3, 4, 3}, rng)), w(randn<double>({3, 2, 3, 2}, rng)), b(randn<double>({2}, rng));
            auto body = [&] {
              auto r = gradcheck({&x, &w, &b}, [&](Tape<double>& t) {
                return project(t, conv_transpose2d(t, x, w, b, s, p, op, d));
              }, kLinear);
              MARROW_CHECK_GRAD(r, 1e-6);
              auto r2 = gradcheck({&x, &w}, [&](Tape<double>& t) {
                return project(t, conv_transpose2d(t, x, w, Var<double>(), s, p, op, d));
              }, kLinear);
              MARROW_CHECK_GRAD(r2, 1e-6);
            };
            if (tiny) with_tiny_bands(body);
            else body();
            Tape<double> t;
            auto y = conv_transpose2d(t, x, w, b, s, p, op, d);
            CHECK(y.shape() == Shape{2, 2, (4 - 1) * s - 2 * p + d * 2 + op + 1, (3 - 1) * s - 2 * p + d * 1 + op + 1});
          }
}

TEST_CASE("conv_transpose2d: gradients when the kernel tiles the output (kernel == stride)") {
  for (int k : {2, 3})
    for (bool tiny : {false, true}) {
      CAPTURE(k);
      CAPTURE(tiny);
      Rng rng(15);
      Param<double> x(randn<double>({3, 4, 3, 2}, rng)), w(randn<double>({4, 2, k, k}, rng)), b(randn<double>({2}, rng));
      auto body = [&] {
        auto r = gradcheck({&x, &w, &b}, [&](Tape<double>& t) { return project(t, conv_transpose2d(t, x, w, b, k)); }, kLinear);
        MARROW_CHECK_GRAD(r, 1e-6);
        auto r2 = gradcheck({&x, &w}, [&](Tape<double>& t) { return project(t, conv_transpose2d(t, x, w, Var<double>(), k)); }, kLinear);
        MARROW_CHECK_GRAD(r2, 1e-6);
      };
      if (tiny) with_tiny_bands(body);
      else body();
    }
}

TEST_CASE("conv_transpose2d: is the adjoint of conv2d with the same weight") {
  // <conv2d(x, W), y> == <x, conv_transpose2d(y, W)>; output_padding recovers x's size.
  int ran = 0;
  for (int s : {1, 2, 3})
    for (int p : {0, 1})
      for (int d : {1, 2})
        for (index_t H : {7, 8}) {
          CAPTURE(s);
          CAPTURE(p);
          CAPTURE(d);
          CAPTURE(H);
          Rng rng(6);
          Tensor<double> x = randn<double>({2, 3, H, 6}, rng), w = randn<double>({4, 3, 3, 2}, rng);
          Tape<double> t;
          auto cx = conv2d(t, t.input(x), t.input(w), Var<double>(), s, p, d);
          Tensor<double> y = randn<double>(cx.shape(), rng);
          const int oph = int((H + 2 * p - d * 2 - 1) % s), opw = int((6 + 2 * p - d * 1 - 1) % s);
          if (oph != opw) continue;  // one output_padding serves both axes
          auto ty = conv_transpose2d(t, t.input(y), t.input(w), Var<double>(), s, p, oph, d);
          REQUIRE(ty.shape() == x.shape());
          CHECK(dot(cx.value(), y) == doctest::Approx(dot(x, ty.value())).epsilon(1e-12));
          ++ran;
        }
  CHECK(ran == 16);  // every (stride, padding, dilation) met by some height
}

TEST_CASE("conv_transpose2d: hand-computed values, float fast path") {
  Tape<double> t;
  auto x = t.input(Tensor<double>({1, 1, 2, 2}, {1, 2, 3, 4}));
  auto w = t.input(Tensor<double>({1, 1, 2, 2}, {1, 10, 100, 1000}));
  // 2x2 stride 2: each input pixel stamps x·W into its own 2x2 block.
  check_values(conv_transpose2d(t, x, w, Var<double>(), 2).value(),
               {1, 10, 2, 20, 100, 1000, 200, 2000, 3, 30, 4, 40, 300, 3000, 400, 4000});
  // stride 1 with a ones kernel: the stamps overlap and add; bias adds everywhere.
  check_values(conv_transpose2d(t, x, t.input(ones<double>({1, 1, 2, 2})), t.input(Tensor<double>({1}, {0.5}))).value(),
               {1.5, 3.5, 2.5, 4.5, 10.5, 6.5, 3.5, 7.5, 4.5});
  // padding crops the full output's border; output_padding adds a row/column at the end.
  check_values(conv_transpose2d(t, x, t.input(ones<double>({1, 1, 2, 2})), Var<double>(), 1, 1).value(), {10});
  CHECK(conv_transpose2d(t, x, w, Var<double>(), 2, 0, 1).shape() == Shape{1, 1, 5, 5});

  // The benchmark's 2x2 stride-2 case in float with threads, against the double rule.
  Rng rng(12);
  Tensor<double> xd = randn<double>({2, 16, 20, 24}, rng), wd = randn<double>({16, 8, 2, 2}, rng);
  Tape<float> tf;
  Tensor<double> bd = randn<double>({8}, rng);
  auto yf = conv_transpose2d(tf, tf.input(xd.cast<float>()), tf.input(wd.cast<float>()), tf.input(bd.cast<float>()), 2);
  Tape<double> td;
  auto yd = conv_transpose2d(td, td.input(xd), td.input(wd), td.input(bd), 2);
  REQUIRE(yf.shape() == Shape{2, 8, 40, 48});
  CHECK((yf.value().cast<double>().arr() - yd.value().arr()).abs().maxCoeff() < 1e-4);
}

TEST_CASE("conv_transpose2d: errors name the op and the shapes") {
  Tape<double> t;
  auto x = t.input(zeros<double>({2, 3, 4, 4}));
  CHECK_THROWS_WITH_AS(conv_transpose2d(t, x, t.input(zeros<double>({5, 2, 2, 2}))),
                       "conv_transpose2d: input (2, 3, 4, 4) has 3 channels, weight (5, 2, 2, 2) expects 5", Error);
  CHECK_THROWS_WITH_AS(conv_transpose2d(t, x, t.input(zeros<double>({3, 2, 2, 2})), Var<double>(), 2, 0, 2),
                       doctest::Contains("conv_transpose2d: output_padding 2 must be smaller than stride 2 or dilation 1"),
                       Error);
  CHECK_THROWS_WITH_AS(conv_transpose2d(t, t.input(zeros<double>({1, 3, 1, 1})), t.input(zeros<double>({3, 2, 2, 2})),
                                        Var<double>(), 1, 1),
                       doctest::Contains("conv_transpose2d: input (1, 3, 1, 1) with padding 1 gives an empty output"),
                       Error);
  CHECK_THROWS_WITH_AS(conv_transpose2d(t, x, t.input(zeros<double>({3, 2, 2, 2})), t.input(zeros<double>({3}))),
                       doctest::Contains("conv_transpose2d: bias (3,) for weight (3, 2, 2, 2)"), Error);
}

TEST_CASE("pooling: gradients for kernel/stride/padding variants") {
  struct P { int k, s, p; };
  for (P c : {P{2, -1, 0}, P{2, 1, 0}, P{3, 1, 1}, P{3, 2, 1}, P{3, 3, 0}, P{4, 2, 2}, P{1, 2, 0}}) {
    CAPTURE(c.k);
    CAPTURE(c.s);
    CAPTURE(c.p);
    Rng rng(7);
    Param<double> x(randn<double>({2, 3, 7, 6}, rng));
    auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, max_pool2d(t, x, c.k, c.s, c.p)); });
    MARROW_CHECK_GRAD(r, 1e-6);
    auto r2 = gradcheck({&x}, [&](Tape<double>& t) { return project(t, avg_pool2d(t, x, c.k, c.s, c.p)); });
    MARROW_CHECK_GRAD(r2, 1e-6);
  }
  Rng rng(7);
  Param<double> x(randn<double>({2, 3, 5, 4}, rng));
  auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, global_avg_pool2d(t, x)); });
  MARROW_CHECK_GRAD(r, 1e-6);
}

TEST_CASE("pooling: hand-computed values") {
  Tape<double> t;
  auto x = t.input(arange<double>(16).reshape({1, 1, 4, 4}));  // x[i, j] = 4i + j
  check_values(max_pool2d(t, x, 2).value(), {5, 7, 13, 15});
  check_values(max_pool2d(t, x, 3, 2, 1).value(), {5, 7, 13, 15});
  check_values(max_pool2d(t, x, 3, 1).value(), {10, 11, 14, 15});
  auto neg = t.input(Tensor<double>({1, 1, 2, 2}, {-5, -4, -3, -2}));
  check_values(max_pool2d(t, neg, 2, 1, 1).value(), {-5, -4, -4, -3, -2, -2, -3, -2, -2});  // padding never wins
  check_values(avg_pool2d(t, x, 2).value(), {2.5, 4.5, 10.5, 12.5});
  // count_include_pad: the corner window holds 4 real taps and 5 zeros, divided by 9.
  check_values(avg_pool2d(t, x, 3, 2, 1).value(), {10.0 / 9, 24.0 / 9, 51.0 / 9, 90.0 / 9});
  auto gp = global_avg_pool2d(t, t.input(arange<double>(8).reshape({1, 2, 2, 2})));
  CHECK(gp.shape() == Shape{1, 2});
  check_values(gp.value(), {1.5, 5.5});
  // max_pool2d routes the gradient to the argmax only.
  Param<double> p(Tensor<double>({1, 1, 2, 2}, {1, 9, 3, 4}));
  Tape<double> t2;
  t2.backward(sum(t2, max_pool2d(t2, p, 2)));
  check_values(p.grad(), {0, 1, 0, 0});
}

TEST_CASE("pooling: errors") {
  Tape<double> t;
  auto x = t.input(zeros<double>({1, 2, 3, 3}));
  CHECK_THROWS_WITH_AS(max_pool2d(t, x, 4), doctest::Contains("max_pool2d: input (1, 2, 3, 3) with padding 0 is smaller than the kernel 4"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(t, x, 2, 2, 2), doctest::Contains("avg_pool2d: padding 2 must be between 0 and half the kernel 2"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(t, t.input(zeros<double>({3, 3})), 2), doctest::Contains("max_pool2d: input must be (N, C, H, W), got (3, 3)"), Error);
  CHECK_THROWS_WITH_AS(global_avg_pool2d(t, t.input(zeros<double>({3, 3}))), doctest::Contains("global_avg_pool2d: input must be"), Error);
}

TEST_CASE("upsampling: gradients for both modes, scales and align_corners") {
  for (int s : {1, 2, 3}) {
    CAPTURE(s);
    Rng rng(9);
    Param<double> x(randn<double>({2, 3, 4, 5}, rng));
    auto r = gradcheck({&x}, [&](Tape<double>& t) { return project(t, upsample_nearest2d(t, x, s)); });
    MARROW_CHECK_GRAD(r, 1e-6);
    for (bool ac : {false, true}) {
      CAPTURE(ac);
      auto r2 = gradcheck({&x}, [&](Tape<double>& t) { return project(t, upsample_bilinear2d(t, x, s, ac)); });
      MARROW_CHECK_GRAD(r2, 1e-6);
    }
  }
}

TEST_CASE("upsampling: values match F.interpolate") {
  Tape<double> t;
  auto x = t.input(Tensor<double>({1, 1, 2, 2}, {1, 2, 3, 4}));
  check_values(upsample_nearest2d(t, x, 2).value(), {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  // The input is linear (1 + w + 2h), so bilinear reproduces it at the source coordinates.
  check_values(upsample_bilinear2d(t, x, 2).value(),  // half-pixel centres, clamped at the border
               {1, 1.25, 1.75, 2, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3, 3.25, 3.75, 4});
  const double a = 1.0 / 3, b = 2.0 / 3;  // align_corners: source = o · (in − 1) / (out − 1)
  check_values(upsample_bilinear2d(t, x, 2, true).value(),
               {1, 1 + a, 1 + b, 2, 1 + 2 * a, 1 + 2 * a + a, 1 + 2 * a + b, 2 + 2 * a, 1 + 2 * b, 1 + 2 * b + a,
                1 + 2 * b + b, 2 + 2 * b, 3, 3 + a, 3 + b, 4});
  // Torch 1.13 reference for a non-linear 3x3 input, scale 3 (first output row).
  auto q = t.input(Tensor<double>({1, 1, 3, 3}, {0, 1, 4, 9, 16, 25, 36, 49, 64}));
  auto row = [&](bool ac, index_t r) { return upsample_bilinear2d(t, q, 3, ac).value().slice(2, r, r + 1); };
  check_values(row(false, 0), {0, 0, 1.0 / 3, 2.0 / 3, 1, 2, 3, 4, 4});
  check_values(row(false, 4), {9, 9, 34.0 / 3, 41.0 / 3, 16, 19, 22, 25, 25});
  check_values(row(true, 0), {0, 0.25, 0.5, 0.75, 1, 1.75, 2.5, 3.25, 4});
  check_values(row(true, 4), {9, 10.75, 12.5, 14.25, 16, 18.25, 20.5, 22.75, 25});
  CHECK_THROWS_WITH_AS(upsample_nearest2d(t, x, 0), doctest::Contains("upsample_nearest2d: scale must be >= 1, got 0"), Error);
  CHECK_THROWS_WITH_AS(upsample_bilinear2d(t, t.input(zeros<double>({2, 2})), 2),
                       doctest::Contains("upsample_bilinear2d: input must be (N, C, H, W), got (2, 2)"), Error);
}
