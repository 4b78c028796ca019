#pragma once
// The kernels' tuning knobs, in one place. Each field trades one cost against
// another; its default was measured on the 2-core project machine (AMD EPYC,
// AVX-512) and the comment says how. Change them only through
// ScopedKernelConfig, and only while no op runs on another thread: kernels read
// the configuration without locks, from every OpenMP thread.
#include <cstddef>
#include <utility>

#include "../shape.hpp"

namespace marrow {

// Which kernel conv2d uses for 3x3 stride-1 undilated convolutions.
enum class WinogradMode { Auto, Off, On };

// Which code computes float matrix products (kernels/gemm.hpp): ours
// (kernels/sgemm.hpp) where this build targets AVX-512 or AVX2+FMA, or Eigen's.
// double always runs on Eigen (the gradient checks).
enum class GemmEngine { Own, Eigen };

// The precision of float products' operands. Bf16: rounded to bfloat16 (nearest
// even) as they are packed, multiplied by VDPBF16PS into fp32 sums
// (kernels/sgemm_bf16.hpp); everything else (weights, gradients, optimizer
// state, norms, softmax, losses) stays fp32. CPUs without AVX512-BF16 stop with
// an error at the first product.
enum class GemmPrecision { F32, Bf16 };

struct KernelConfig {
  // Float products on our kernel or on Eigen's. Own: bench/sgemm_bench.cpp, 2
  // threads, AMD EPYC (Zen 5): 87-92 % of the 420 GFLOP/s FMA peak on squares
  // 256-2048 against Eigen's 64-70 %, 73-92 % on the GPT's linear products.
  // Eigen stays selectable so tests can compare the two on whole models.
  GemmEngine gemm_engine = GemmEngine::Own;
  // fp32 products, or bf16 operands with fp32 sums (--precision bf16): 1.6-1.9x
  // our fp32 kernel on the GPT's shapes (bench/sgemm_bench.cpp).
  GemmPrecision gemm_precision = GemmPrecision::F32;
  // Multiply-adds (rows·cols·depth) from which gemm() splits a product made at the
  // top level (outside every parallel region) over the OpenMP team; smaller ones run
  // on the calling thread. Trades the wake-up of the team and the packing each
  // extra thread repeats (it packs the whole operand that is not split) against the
  // share of arithmetic it takes. bench/gemm_threads.cpp, float, fastest of 41
  // samples on a quiet machine, µs per product on 1 thread against split over 2:
  // 2 threads lose below ~500k (32³: 0.65 vs 3.4; 48³: 1.7 vs 4.1; 64³ = 262k:
  // 3.9 vs 5.4), are level at 512k (80³: 7.5 vs 7.7; the colorizer's 1x1 fusion,
  // 64×64×128: 7.8 vs 7.7) and win from there on (96³: 1.25x; the colorizer's
  // strided 128×4×1152: 1.7x; 128³: 1.5x; the GPT's products, 768×128×384 and its
  // kin: 1.9-2.0x; 512³: 2.0x). Eigen's own threading, which starts at 100k, was
  // slower than 1 thread on the colorizer's per-image 64×64×576 (51 vs 33 µs; split: 23).
  double gemm_parallel_min = 1 << 19;
  // Bytes of the im2col column block that one band of output rows builds
  // (kernels/im2col.hpp). Trades cache residency (the block is written and read
  // back at once, so it should stay in L2) against GEMM width (narrower bands
  // repack the weights more often). 256 KB: building whole images' columns
  // (often > 10 MB) made the 3x3 forward ~1.5x slower; tests set 1 to run many
  // bands on tiny shapes.
  std::size_t conv_band_bytes = 256 << 10;
  // conv2d's 3x3 stride-1 kernel. Auto: Winograd from 3 input channels on
  // (2 threads, 4x256x256 images: 1.2-2x less CPU time than im2col from C = 3 up,
  // even with 1 or 2 output channels; a tie at C = 1, 2). Off/On force one path
  // (tests and benchmarks compare them).
  WinogradMode winograd = WinogradMode::Auto;
  // Winograd transforms gather every tile of a block into one vector lane on
  // planes at most this many tiles wide, instead of running each transform over
  // one tile row (2-4 lanes on 8x8 and 16x16 planes). 4: the colorizer's 16x16 and
  // 8x8 layers ran 1.5-1.9x faster gathered (bench/conv_timing.cpp 20 x color);
  // wider planes fill the lanes with one row. Tests set 0 or a large value.
  index_t wino_gather_max_tw = 4;
  // Bytes of transformed input and output (all 36 coordinates) per Winograd block.
  // Trades cache residency (the transforms' writes should still be in L2 when
  // the GEMMs read them) against GEMM width. 1 MB, the L2 size; tests set 1 to
  // get one tile row per block.
  std::size_t wino_block_bytes = 1 << 20;
  // Largest transformed input conv2d keeps from forward for backward's dW.
  // Trades memory (it is 2.25x the input) against transforming x again in
  // backward (6 % of the colorizer's step). 24 MB keeps every layer of the
  // colorizer and the U-Net's lower levels; its full-resolution level recomputes.
  std::size_t wino_keep_max_bytes = std::size_t(24) << 20;
  // scaled_dot_product_attention runs the tiled kernel (kernels/flash_attention.hpp;
  // memory O(T)) from this many keys on, the materialised one (keeps the (B, H, Tq, Tk)
  // probabilities) below. Trades speed at small T against memory. bench/attention_timing.cpp,
  // causal B=8 H=4 D=32, forward + backward ms (fastest of 5-7) materialised vs tiled,
  // on a machine loaded by other jobs (load ~8 on 2 cores, so ±20 % noise):
  // 1 thread: T=64 0.60 vs 0.79, 128 1.80 vs 2.33, 256 7.3 vs 7.7, 512 25 vs 29,
  // 1024 89-124 vs 94-97, 2048 344 vs 353, 3072 827 vs 1032; 2 threads: 1024 238 vs 208,
  // 2048 620 vs 576, 3072 1685 vs 1436, 4096 2551 vs 2264. Peak memory added by one
  // forward + backward (MB): 256: 12.4 vs 4.5, 1024: 145 vs 17, 4096: 2113 vs 65.
  // The materialised kernel is 6-25 % faster up to ~200 keys; from 256 on the two are
  // level within the noise while the probabilities grow as T² (the charformer at
  // --block-size 1024: 7084 MB peak RSS before, 893 MB after). Tests set 0 (always
  // tiled) or a huge value (always materialised).
  index_t attn_flash_min_keys = 256;
  // The tiled kernel's query rows (Br) and keys (Bc) per tile. 64 × 64 at D = 32, float:
  // the score tile (16 KB), Q_i, K_j and V_j (8 KB each) fit Zen 5's 48 KB L1 together.
  // bench/attention_timing.cpp tiles (Br 16-128 × Bc 32-256, T 512 and 2048) ran on a
  // loaded machine: the spread between samples (±50 %) hid any difference between sizes.
  index_t attn_block_q = 64;
  index_t attn_block_k = 64;
};

namespace detail {
inline KernelConfig& kernel_config_storage() {
  static KernelConfig config;
  return config;
}
}  // namespace detail

// The configuration every kernel reads.
inline const KernelConfig& kernel_config() { return detail::kernel_config_storage(); }

// Sets the configuration for the lifetime of the object, then restores the one before:
//   KernelConfig c = kernel_config();  c.winograd = WinogradMode::Off;  ScopedKernelConfig scope(c);
class ScopedKernelConfig {
 public:
  explicit ScopedKernelConfig(const KernelConfig& config)
      : saved_(std::exchange(detail::kernel_config_storage(), config)) {}
  ~ScopedKernelConfig() { detail::kernel_config_storage() = saved_; }
  ScopedKernelConfig(const ScopedKernelConfig&) = delete;
  ScopedKernelConfig& operator=(const ScopedKernelConfig&) = delete;

 private:
  KernelConfig saved_;
};

}  // namespace marrow
