#pragma once
// What every fp32 GEMM micro-kernel (sgemm_avx512.hpp, sgemm_avx2.hpp) shares:
// the epilogue a tile applies when it stores, and the scalar forms of its
// activations (the tests' reference and the documentation of what the vector
// code approximates).
#include <cmath>
#include <cstdint>

#include "../shape.hpp"

// The kernels are compiled with function target attributes, so both can be built
// (and tested) whatever -march says; each is only ever called where its
// instructions run (sgemm.hpp dispatches on what the compiler targets, the tests
// ask the CPU first).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define MARROW_SGEMM_X86 1
#endif

namespace marrow::detail {

enum class GemmAct : std::uint8_t { None, Relu, Gelu };
enum class GemmBias : std::uint8_t { None, PerCol, PerRow };

// The tail of one product: C = act(alpha·op(A)·op(B) + beta·C + bias). The bias is
// per column (a linear layer's y = x·Wᵀ + b) or per row (a convolution's
// y = W·cols + b, one row per output channel).
struct GemmEpilogue {
  const float* bias = nullptr;
  GemmBias bias_kind = GemmBias::None;
  GemmAct act = GemmAct::None;
};

// One register tile's store. A product with depth K is summed KC at a time
// (sgemm.hpp); the first block writes alpha·acc + beta·C (C not read when beta is
// 0, so C may hold garbage or NaN), later blocks add alpha·acc, and only the last
// applies bias and activation.
struct TileStore {
  float alpha, beta;
  bool first, last;
  const float* bias;  // already offset to the tile's first row or column
  GemmBias bias_kind;
  GemmAct act;
};

// GELU in GPT-2's tanh form, written as x / (1 + e^(-2u)) = x·½(1 + tanh u) with
// u = √(2/π)(x + 0.044715x³): one exponential, and no cancellation for large |x|.
inline float gelu_tanh_ref(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return x / (1.0f + std::exp(-2.0f * u));
}

}  // namespace marrow::detail
