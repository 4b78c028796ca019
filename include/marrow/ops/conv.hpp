#pragma once
// Convolutions over NCHW tensors with PyTorch's weight layouts: conv2d and its
// adjoint conv_transpose2d, each forward beside its backward.
//
// conv2d's 3x3 stride-1 undilated case (most of a U-Net's time) runs Winograd
// F(4x4, 3x3) (kernels/winograd.hpp): 4x fewer multiplies than any GEMM over
// im2col columns. Everything else lowers to GEMM over im2col columns
// (kernels/im2col.hpp: gather_gemm, scatter_gemm).
//
// Shape letters: N batch, C input channels, O output channels, (H, W) input
// and (Ho, Wo) output spatial size, (kh, kw) kernel.
#include <Eigen/Core>

#include "../kernels/im2col.hpp"
#include "../kernels/winograd.hpp"
#include "../tape.hpp"

namespace marrow {

namespace detail {
inline void check_conv_params(const char* op, int stride, int padding, int dilation) {
  MARROW_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  MARROW_CHECK(padding >= 0, op, ": padding must be >= 0, got ", padding);
  MARROW_CHECK(dilation >= 1, op, ": dilation must be >= 1, got ", dilation);
}

}  // namespace detail

// x: (N, C, H, W), weight: (O, C, kh, kw), bias: (O) or undefined -> (N, O, Ho, Wo),
// Ho = (H + 2·padding − dilation·(kh−1) − 1) / stride + 1 (floor), likewise Wo.
template <class T>
Var<T> conv2d(Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias = Var<T>(), int stride = 1,
              int padding = 0, int dilation = 1) {
  t.check(x, "conv2d");
  t.check(weight, "conv2d");
  const bool has_bias = bias.defined();
  if (has_bias) t.check(bias, "conv2d");
  MARROW_CHECK(x.ndim() == 4, "conv2d: input must be (N, C, H, W), got ", x.shape().str());
  MARROW_CHECK(weight.ndim() == 4, "conv2d: weight must be (O, C, kh, kw), got ", weight.shape().str());
  detail::check_conv_params("conv2d", stride, padding, dilation);
  const index_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index_t O = weight.dim(0), kh = weight.dim(2), kw = weight.dim(3);
  MARROW_CHECK(weight.dim(1) == C, "conv2d: input ", x.shape().str(), " has ", C, " channels, weight ",
               weight.shape().str(), " expects ", weight.dim(1));
  if (has_bias)
    MARROW_CHECK(bias.ndim() == 1 && bias.dim(0) == O, "conv2d: bias ", bias.shape().str(), " for weight ",
                 weight.shape().str(), " (expected (", O, ",))");
  const index_t ekh = dilation * (kh - 1) + 1, ekw = dilation * (kw - 1) + 1;  // dilated extent
  MARROW_CHECK(H + 2 * padding >= ekh && W + 2 * padding >= ekw, "conv2d: input ", x.shape().str(), " with padding ",
               padding, " is smaller than the kernel (", ekh, "x", ekw, " with dilation ", dilation, ")");
  const detail::ConvGeom g{C, H, W, (H + 2 * padding - ekh) / stride + 1, (W + 2 * padding - ekw) / stride + 1,
                           int(kh), int(kw), stride, padding, dilation};
  Tensor<T> out = Tensor<T>::uninitialized({N, O, g.Ho, g.Wo});
  const T* b = has_bias ? bias.value().data() : nullptr;
  const detail::WinoGeom wg{N, C, O, H, W, padding};
  Tensor<T> U;     // Winograd-domain weights (36, O, C), kept for dx
  Tensor<T> Vkept;  // Winograd-domain input, kept for dW when small enough
  if (detail::use_winograd(kh, kw, stride, dilation, C)) {
    U = Tensor<T>::uninitialized({36, O, C});
    detail::wino_weights(weight.value().data(), O, C, U.data());
    const std::size_t kept = detail::wino_kept_size(wg);
    if (t.grad_enabled() && weight.requires_grad() && kept * sizeof(T) <= kernel_config().wino_keep_max_bytes)
      Vkept = Tensor<T>::uninitialized({index_t(kept)});
    detail::wino_forward(wg, x.value().data(), U.data(), b, out.data(), Vkept.defined() ? Vkept.data() : nullptr);
  } else {
    detail::gather_gemm<T>(N, g, x.value().data(), O, weight.value().data(), b, out.data(), false, nullptr, nullptr);
  }
  Var<T> res = has_bias ? t.push(std::move(out), x, weight, bias) : t.push(std::move(out), x, weight);
  t.on_backward(res, [x, weight, bias, res, g, wg, N, O, has_bias, U = std::move(U), Vkept = std::move(Vkept)] {
    const T* dy = res.grad().data();
    if (U.defined()) {  // the adjoint of the Winograd forward (kernels/winograd.hpp)
      if (x.requires_grad() || weight.requires_grad())
        detail::wino_backward(wg, x.value().data(), U.data(), dy, x.requires_grad() ? x.grad().data() : nullptr,
                              weight.requires_grad() ? weight.grad().data() : nullptr,
                              Vkept.defined() ? Vkept.data() : nullptr);
      if (has_bias && bias.requires_grad()) detail::bias_grad(dy, N, O, g.grid(), bias.grad().data());
      return;
    }
    if (weight.requires_grad())  // dW += dY · im2col(x)ᵀ
      detail::gather_gemm<T>(N, g, x.value().data(), O, nullptr, nullptr, nullptr, false, dy, weight.grad().data());
    if (x.requires_grad())  // dx += col2im(Wᵀ · dY)
      detail::scatter_gemm<T>(N, g, O, weight.value().data(), dy, x.grad().data());
    if (has_bias && bias.requires_grad()) detail::bias_grad(dy, N, O, g.grid(), bias.grad().data());
  });
  return res;
}

// The adjoint of conv2d (a.k.a. "deconvolution"), PyTorch's conv_transpose2d.
// x: (N, Cin, H, W), weight: (Cin, Cout, kh, kw), bias: (Cout) or undefined -> (N, Cout, Ho, Wo),
// Ho = (H−1)·stride − 2·padding + dilation·(kh−1) + output_padding + 1, likewise Wo.
template <class T>
Var<T> conv_transpose2d(Tape<T>& t, const Arg<T>& x, const Arg<T>& weight, const Arg<T>& bias = Var<T>(),
                        int stride = 1, int padding = 0, int output_padding = 0, int dilation = 1) {
  t.check(x, "conv_transpose2d");
  t.check(weight, "conv_transpose2d");
  const bool has_bias = bias.defined();
  if (has_bias) t.check(bias, "conv_transpose2d");
  MARROW_CHECK(x.ndim() == 4, "conv_transpose2d: input must be (N, Cin, H, W), got ", x.shape().str());
  MARROW_CHECK(weight.ndim() == 4, "conv_transpose2d: weight must be (Cin, Cout, kh, kw), got ", weight.shape().str());
  detail::check_conv_params("conv_transpose2d", stride, padding, dilation);
  MARROW_CHECK(output_padding >= 0 && (output_padding < stride || output_padding < dilation),
               "conv_transpose2d: output_padding ", output_padding, " must be smaller than stride ", stride,
               " or dilation ", dilation);
  const index_t N = x.dim(0), Cin = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index_t Cout = weight.dim(1), kh = weight.dim(2), kw = weight.dim(3);
  MARROW_CHECK(weight.dim(0) == Cin, "conv_transpose2d: input ", x.shape().str(), " has ", Cin, " channels, weight ",
               weight.shape().str(), " expects ", weight.dim(0));
  if (has_bias)
    MARROW_CHECK(bias.ndim() == 1 && bias.dim(0) == Cout, "conv_transpose2d: bias ", bias.shape().str(),
                 " for weight ", weight.shape().str(), " (expected (", Cout, ",))");
  const index_t Ho = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1;
  const index_t Wo = (W - 1) * stride - 2 * padding + dilation * (kw - 1) + output_padding + 1;
  MARROW_CHECK(H >= 1 && W >= 1 && Ho >= 1 && Wo >= 1, "conv_transpose2d: input ", x.shape().str(), " with padding ",
               padding, " gives an empty output (", Ho, "x", Wo, ")");
  // The conv2d this op is the adjoint of: its image is our output, its placements our input pixels.
  const detail::ConvGeom g{Cout, Ho, Wo, H, W, int(kh), int(kw), stride, padding, dilation};
  const bool tiles = kh == stride && kw == stride && padding == 0 && dilation == 1 && output_padding == 0 && !g.identity();
  Tensor<T> out = tiles ? Tensor<T>::uninitialized({N, Cout, Ho, Wo}) : Tensor<T>(Shape{N, Cout, Ho, Wo});
  const T* b = has_bias ? bias.value().data() : nullptr;
  detail::scatter_gemm<T>(N, g, Cin, weight.value().data(), x.value().data(), out.data(), tiles, b);
  if (has_bias && !tiles) {
    T* po = out.data();
    const index_t P = Ho * Wo;
#pragma omp parallel for if (N * Cout * P >= (1 << 16))
    for (index_t nc = 0; nc < N * Cout; ++nc)
      Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>(po + nc * P, P) += b[nc % Cout];
  }
  Var<T> res = has_bias ? t.push(std::move(out), x, weight, bias) : t.push(std::move(out), x, weight);
  t.on_backward(res, [x, weight, bias, res, g, N, Cin, Cout, has_bias] {
    const T* dy = res.grad().data();
    const bool dx = x.requires_grad(), dw = weight.requires_grad();
    if (dx || dw)  // dx += W · im2col(dY);  dW += x · im2col(dY)ᵀ  (one column pass for both)
      detail::gather_gemm<T>(N, g, dy, Cin, weight.value().data(), nullptr, dx ? x.grad().data() : nullptr, true,
                             x.value().data(), dw ? weight.grad().data() : nullptr);
    if (has_bias && bias.requires_grad()) detail::bias_grad(dy, N, Cout, g.plane(), bias.grad().data());
  });
  return res;
}

}  // namespace marrow

/* Backward rules (dY = upstream gradient; cols = im2col of the conv's image side):
   conv2d            dx += col2im(Wᵀ·dY)        dW += dY·im2col(x)ᵀ        db += Σ_{n,h,w} dY
     (3x3 stride 1, Winograd: M̄ = A dY Aᵀ;  dx += overlap-add B (U_ξᵀ M̄_ξ) Bᵀ;  dW += Gᵀ (Σ M̄_ξ V_ξᵀ) G)
   conv_transpose2d  dx += W·im2col(dY)         dW += x·im2col(dY)ᵀ        db += Σ_{n,h,w} dY
   (conv_transpose2d's forward is col2im(Wᵀ·x): the conv2d dx rule applied to x.)
*/
