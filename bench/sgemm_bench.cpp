// The GEMM table: our fp32 kernel (kernels/sgemm.hpp) against Eigen through the
// library's gemm() (kernels/gemm.hpp) on squares and on the products the models
// run, in GFLOP/s and % of the machine's measured FMA peak (../shared/bench/fma_peak.cpp;
// 420 GFLOP/s fp32 on the 2-core AMD EPYC); and our bf16 kernel (kernels/sgemm_bf16.hpp,
// where the CPU has AVX512-BF16) on the same products, in GFLOP/s, % of the VDPBF16PS
// peak (845 GFLOP/s there) and its ratio to our fp32, on the team's threads and on
// one. bench/gemm_torch.py times PyTorch's `a @ b` on the same products. Build and run:
//   g++ -std=c++20 -O3 -march=native -fopenmp -DNDEBUG -isystem /usr/include/eigen3 -Iinclude \
//       bench/sgemm_bench.cpp -o build/sgemm_bench
//   OMP_NUM_THREADS=2 build/sgemm_bench [--reps N] [--peak GFLOPS] [--peak-bf16 GFLOPS] [--json]
//   OMP_NUM_THREADS=2 build/sgemm_bench --threads   (1 thread against 2: where a second pays)
// Each figure is the fastest of reps samples of ≥ 20 ms: on a shared machine the
// slower samples measure the other processes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>
#include <omp.h>

#include <marrow/kernels/gemm.hpp>
#include <marrow/kernels/sgemm.hpp>
#include <marrow/kernels/sgemm_bf16.hpp>

using namespace marrow;
using namespace marrow::detail;

namespace {

struct Case {
  std::string what;
  char ta, tb;  // 'N' or 'T': C = op(A)·op(B)
  index_t m, n, k, count;
};

// The models' products, read off the code (ops/matmul.hpp, ops/attention.hpp) at the
// binaries' shapes: a linear layer's forward is NT (y = x·Wᵀ), its dx NN
// (dx = dy·W), its dW TN (dW = dyᵀ·x).
std::vector<Case> cases() {
  std::vector<Case> c;
  for (index_t n : {256, 512, 1024, 1536, 2048}) c.push_back({"square", 'N', 'N', n, n, n, 1});
  // charformer, nanoGPT's CPU configuration: B·T = 12·64 = 768 rows, C = 128.
  const index_t bt = 768;
  const index_t lin[][2] = {{128, 384}, {128, 128}, {128, 512}, {512, 128}};  // (in, out): qkv, attn proj, fc, mlp proj
  for (const auto& l : lin) {
    const std::string io = std::to_string(l[0]) + "->" + std::to_string(l[1]);
    c.push_back({"gpt linear fwd " + io, 'N', 'T', bt, l[1], l[0], 1});
    c.push_back({"gpt linear dx " + io, 'N', 'N', bt, l[0], l[1], 1});
    c.push_back({"gpt linear dW " + io, 'T', 'N', l[1], l[0], bt, 1});
  }
  // attention, 12·4 heads of T = 64, head size 32: S = Q·Kᵀ, O = P·V, dP = dO·Vᵀ,
  // dV = Pᵀ·dO, dQ = dS·K, dK = dSᵀ·Q.
  c.push_back({"attn S=QK^T (x48)", 'N', 'T', 64, 64, 32, 48});
  c.push_back({"attn O=PV (x48)", 'N', 'N', 64, 32, 64, 48});
  c.push_back({"attn dV=P^T dO (x48)", 'T', 'N', 64, 32, 64, 48});
  // DCGAN D's second conv (64 -> 128 channels, 4x4 stride 2, 14x14 -> 7x7) through
  // im2col (kernels/im2col.hpp): K = 64·16 = 1024 rows of columns, a band of 64
  // output positions (conv_band_bytes 256 KB / (4·1024)): y = W·cols, dW += dy·colsᵀ,
  // cols = Wᵀ·dy for dx.
  c.push_back({"dcgan conv y=W cols", 'N', 'N', 128, 64, 1024, 1});
  c.push_back({"dcgan conv dW=dy cols^T", 'N', 'T', 128, 1024, 64, 1});
  c.push_back({"dcgan conv cols=W^T dy", 'T', 'N', 1024, 64, 128, 1});
  // Winograd F(4x4, 3x3) (kernels/winograd.hpp): 36 products per block, O x C
  // weights by C x tiles, the colorizer's 128-channel layers at 32x32 (64 tiles).
  c.push_back({"winograd 128ch M=U V (x36)", 'N', 'N', 128, 64, 128, 36});
  return c;
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Seconds per call of f, the fastest of reps samples of ≥ 20 ms each.
template <class F> double best_time(int reps, F&& f) {
  f();
  double t0 = now();
  f();
  const double once = std::max(now() - t0, 1e-7);
  const int iters = std::max(1, int(0.02 / once));
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    t0 = now();
    for (int i = 0; i < iters; ++i) f();
    best = std::min(best, (now() - t0) / iters);
  }
  return best;
}

struct Operands {
  std::vector<float> a, b, c;
  index_t lda, ldb, sa, sb, sc;
};

Operands make(const Case& cs) {
  std::mt19937 g(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Operands o;
  o.lda = cs.ta == 'N' ? cs.k : cs.m;
  o.ldb = cs.tb == 'N' ? cs.n : cs.k;
  o.sa = cs.m * cs.k;
  o.sb = cs.k * cs.n;
  o.sc = cs.m * cs.n;
  o.a.resize(std::size_t(o.sa * cs.count));
  o.b.resize(std::size_t(o.sb * cs.count));
  o.c.resize(std::size_t(o.sc * cs.count));
  for (auto& x : o.a) x = u(g);
  for (auto& x : o.b) x = u(g);
  return o;
}

void ours(const Case& cs, Operands& o, int threads) {
  sgemm_batched(cs.ta == 'N' ? Trans::N : Trans::T, cs.tb == 'N' ? Trans::N : Trans::T, cs.m, cs.n, cs.k, 1.0f,
                o.a.data(), o.lda, o.sa, o.b.data(), o.ldb, o.sb, 0.0f, o.c.data(), cs.n, o.sc, cs.count, {}, threads);
}

void ours_bf16(const Case& cs, Operands& o, int threads) {
  sgemm_bf16_batched(cs.ta == 'N' ? Trans::N : Trans::T, cs.tb == 'N' ? Trans::N : Trans::T, cs.m, cs.n, cs.k, 1.0f,
                     o.a.data(), o.lda, o.sa, o.b.data(), o.ldb, o.sb, 0.0f, o.c.data(), cs.n, o.sc, cs.count, {},
                     threads);
}

// Eigen through gemm(), as the ops call it; a batch as the ops run one (attention
// and matmul loop over heads in an OpenMP loop, each product on one thread).
void eigen(const Case& cs, Operands& o) {
  KernelConfig config = kernel_config();  // gemm() would otherwise run our kernel
  config.gemm_engine = GemmEngine::Eigen;
  const ScopedKernelConfig scope(config);
  auto one = [&](index_t i) {
    MatView<float> c(o.c.data() + i * o.sc, cs.m, cs.n);
    const float* a = o.a.data() + i * o.sa;
    const float* b = o.b.data() + i * o.sb;
    if (cs.ta == 'N' && cs.tb == 'N') gemm(c, CMatView<float>(a, cs.m, cs.k), CMatView<float>(b, cs.k, cs.n));
    else if (cs.ta == 'N') gemm(c, CMatView<float>(a, cs.m, cs.k), CMatView<float>(b, cs.n, cs.k).transpose());
    else if (cs.tb == 'N') gemm(c, CMatView<float>(a, cs.k, cs.m).transpose(), CMatView<float>(b, cs.k, cs.n));
    else gemm(c, CMatView<float>(a, cs.k, cs.m).transpose(), CMatView<float>(b, cs.n, cs.k).transpose());
  };
  if (cs.count == 1) return one(0);
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < cs.count; ++i) one(i);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 10;
  double peak = 420, peak_bf16 = 845;
  bool json = false, threads_mode = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--peak") && i + 1 < argc) peak = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--peak-bf16") && i + 1 < argc) peak_bf16 = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) json = true;
    else if (!std::strcmp(argv[i], "--threads")) threads_mode = true;
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--peak GFLOPS] [--peak-bf16 GFLOPS] [--json] [--threads]\n", argv[0]);
      return 2;
    }
  }
#ifdef MARROW_SGEMM_NATIVE
  const char* kernel = SgemmArch::name;
#else
  const char* kernel = "eigen (no native kernel for this target)";
#endif
  if (threads_mode) {
    // Where a second thread pays: µs per product on 1 thread and split over 2.
    std::printf("%-28s %5s %5s %5s %9s %9s %9s %6s\n", "product", "M", "N", "K", "madds", "1 thr us", "2 thr us", "1/2");
    std::vector<Case> cs;
    for (index_t n : {16, 24, 32, 48, 64, 80, 96, 128, 192}) cs.push_back({"square", 'N', 'N', n, n, n, 1});
    for (const Case& c : cases())
      if (c.count == 1 && c.what != "square") cs.push_back(c);
    cs.push_back({"colorizer 1x1 fusion", 'N', 'N', 64, 64, 128, 1});
    cs.push_back({"attention one head S", 'N', 'T', 64, 64, 32, 1});
    cs.push_back({"attention one head O", 'N', 'N', 64, 32, 64, 1});
    for (const Case& c : cs) {
      Operands o = make(c);
      const double t1 = best_time(reps, [&] { ours(c, o, 1); }), t2 = best_time(reps, [&] { ours(c, o, 2); });
      std::printf("%-28s %5ld %5ld %5ld %9.0f %9.2f %9.2f %6.2f\n", c.what.c_str(), long(c.m), long(c.n), long(c.k),
                  double(c.m) * c.n * c.k, t1 * 1e6, t2 * 1e6, t1 / t2);
      std::fflush(stdout);
    }
    return 0;
  }
  const bool bf16 = bf16_gemm_supported();
  if (!json) {
    std::printf("kernel %s, %d threads, %% of %.0f GFLOP/s\n%-26s %4s %5s %5s %5s %4s %16s %16s %16s", kernel,
                omp_get_max_threads(), peak, "product", "form", "M", "N", "K", "batch", "ours", "ours 1 thread",
                "eigen gemm()");
    if (bf16) std::printf(" | bf16 (%% of %.0f): %16s %5s %16s %5s", peak_bf16, "ours", "x32", "1 thread", "x32");
    else std::printf(" | bf16: this CPU has no AVX512-BF16");
    std::printf("\n");
  }
  for (const Case& c : cases()) {
    Operands o = make(c);
    const double flops = 2.0 * double(c.m) * c.n * c.k * c.count;
    const double t_ours = best_time(reps, [&] { ours(c, o, 0); });
    const double t_one = best_time(reps, [&] { ours(c, o, 1); });
    const double t_eigen = best_time(reps, [&] { eigen(c, o); });
    const double t_bf = bf16 ? best_time(reps, [&] { ours_bf16(c, o, 0); }) : 0;
    const double t_bf1 = bf16 ? best_time(reps, [&] { ours_bf16(c, o, 1); }) : 0;
    auto g = [&](double t) { return t > 0 ? flops / t / 1e9 : 0.0; };
    if (json)
      std::printf("{\"what\": \"%s\", \"ta\": \"%c\", \"tb\": \"%c\", \"m\": %ld, \"n\": %ld, \"k\": %ld, \"count\": %ld, "
                  "\"ours\": %.2f, \"ours_1t\": %.2f, \"eigen\": %.2f, \"bf16\": %.2f, \"bf16_1t\": %.2f}\n",
                  c.what.c_str(), c.ta, c.tb, long(c.m), long(c.n), long(c.k), long(c.count), g(t_ours), g(t_one),
                  g(t_eigen), g(t_bf), g(t_bf1));
    else {
      std::printf("%-26s   %c%c %5ld %5ld %5ld %4ld %7.1f (%3.0f%%) %7.1f (%3.0f%%) %7.1f (%3.0f%%)", c.what.c_str(), c.ta,
                  c.tb, long(c.m), long(c.n), long(c.k), long(c.count), g(t_ours), 100 * g(t_ours) / peak, g(t_one),
                  100 * g(t_one) / peak, g(t_eigen), 100 * g(t_eigen) / peak);
      if (bf16)
        std::printf(" |                %7.1f (%3.0f%%) %5.2f %7.1f (%3.0f%%) %5.2f", g(t_bf), 100 * g(t_bf) / peak_bf16,
                    g(t_bf) / g(t_ours), g(t_bf1), 100 * g(t_bf1) / peak_bf16, g(t_bf1) / g(t_one));
      std::printf("\n");
    }
    std::fflush(stdout);
  }
}
