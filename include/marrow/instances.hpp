#pragma once
// Every public function template of the library's ops, losses, initializers and
// optimizer helpers, named once so that a build can instantiate each a single time
// per element type. cmake/instances/{float,double}.cpp instantiate them; a translation
// unit compiled with MARROW_EXTERN_TEMPLATES (our tests and examples) declares them
// extern and links those objects instead of compiling its own copies. A program that
// defines nothing sees plain header-only templates.
// Written by tests/check_instances.py --write; the ctest case instances.up_to_date
// fails when a header gains, loses or changes a signature that this list does not.
#include "marrow.hpp"

// PREFIX is `template` (instantiate) or `extern template` (declare).
#define MARROW_INSTANCES(PREFIX, T) \
  /* ops/attention.hpp */ \
  PREFIX Var<T> scaled_dot_product_attention<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&, bool, std::type_identity_t<T>, AttentionDropout, Tensor<T>*); \
  PREFIX Var<T> split_heads<T>(Tape<T>&, const Arg<T>&, int, int, int); \
  PREFIX Var<T> merge_heads<T>(Tape<T>&, const Arg<T>&); \
  /* ops/conv.hpp */ \
  PREFIX Var<T> conv2d<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&, int, int, int); \
  PREFIX Var<T> conv_transpose2d<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&, int, int, int, int); \
  /* ops/elementwise.hpp */ \
  PREFIX Var<T> add<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> sub<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> mul<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> div<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> maximum<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> minimum<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> where<T>(Tape<T>&, const Tensor<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> add_scalar<T>(Tape<T>&, const Arg<T>&, T); \
  PREFIX Var<T> mul_scalar<T>(Tape<T>&, const Arg<T>&, T); \
  PREFIX Var<T> pow<T>(Tape<T>&, const Arg<T>&, T); \
  PREFIX Var<T> neg<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> exp<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> log<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> sqrt<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> abs<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> clamp<T>(Tape<T>&, const Arg<T>&, T, T); \
  PREFIX Var<T> relu<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> leaky_relu<T>(Tape<T>&, const Arg<T>&, T); \
  PREFIX Var<T> elu<T>(Tape<T>&, const Arg<T>&, T); \
  PREFIX Var<T> sigmoid<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> tanh<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> softplus<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> gelu<T>(Tape<T>&, const Arg<T>&, GeluForm); \
  /* ops/matmul.hpp */ \
  PREFIX Var<T> matmul<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> linear<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&); \
  /* ops/nn.hpp */ \
  PREFIX Var<T> softmax<T>(Tape<T>&, const Arg<T>&, int); \
  PREFIX Var<T> log_softmax<T>(Tape<T>&, const Arg<T>&, int); \
  PREFIX Var<T> layer_norm<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&, T); \
  PREFIX Var<T> batch_norm<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&, Tensor<T>&, Tensor<T>&, bool, T, T); \
  PREFIX Var<T> batch_norm_relu<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Arg<T>&, Tensor<T>&, Tensor<T>&, bool, T, T); \
  PREFIX Var<T> dropout<T>(Tape<T>&, const Arg<T>&, T, bool, Rng&); \
  /* ops/pool.hpp */ \
  PREFIX Var<T> max_pool2d<T>(Tape<T>&, const Arg<T>&, int, int, int); \
  PREFIX Var<T> avg_pool2d<T>(Tape<T>&, const Arg<T>&, int, int, int); \
  PREFIX Var<T> global_avg_pool2d<T>(Tape<T>&, const Arg<T>&); \
  PREFIX Var<T> upsample_nearest2d<T>(Tape<T>&, const Arg<T>&, int); \
  PREFIX Var<T> upsample_bilinear2d<T>(Tape<T>&, const Arg<T>&, int, bool); \
  /* ops/reduce.hpp */ \
  PREFIX Var<T> sum<T>(Tape<T>&, const Arg<T>&, std::vector<int>, bool); \
  PREFIX Var<T> mean<T>(Tape<T>&, const Arg<T>&, std::vector<int>, bool); \
  PREFIX Var<T> max<T>(Tape<T>&, const Arg<T>&, std::vector<int>, bool); \
  PREFIX Var<T> var<T>(Tape<T>&, const Arg<T>&, std::vector<int>, bool, int); \
  PREFIX Var<T> logsumexp<T>(Tape<T>&, const Arg<T>&, std::vector<int>, bool); \
  /* ops/running_stats.hpp */ \
  PREFIX RunningStatsLog<T>*& running_stats_log<T>(); \
  /* ops/shape.hpp */ \
  PREFIX Var<T> reshape<T>(Tape<T>&, const Arg<T>&, std::vector<index_t>); \
  PREFIX Var<T> flatten<T>(Tape<T>&, const Arg<T>&, int); \
  PREFIX Var<T> permute<T>(Tape<T>&, const Arg<T>&, std::vector<int>); \
  PREFIX Var<T> transpose<T>(Tape<T>&, const Arg<T>&, int, int); \
  PREFIX Var<T> slice<T>(Tape<T>&, const Arg<T>&, int, index_t, index_t); \
  PREFIX Var<T> concat<T>(Tape<T>&, const std::vector<Var<T>>&, int); \
  PREFIX std::vector<Var<T>> split<T>(Tape<T>&, const Arg<T>&, const std::vector<index_t>&, int); \
  PREFIX Var<T> concat_global<T>(Tape<T>&, const Arg<T>&, const Arg<T>&); \
  PREFIX Var<T> pad2d<T>(Tape<T>&, const Arg<T>&, int, int, int, int, PadMode); \
  PREFIX Var<T> index_select<T>(Tape<T>&, const Arg<T>&, int, const Tensor<std::int32_t>&); \
  PREFIX Var<T> embedding<T>(Tape<T>&, const Arg<T>&, const Tensor<std::int32_t>&); \
  PREFIX Var<T> token_position_embedding<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, const Tensor<std::int32_t>&, index_t); \
  PREFIX Tensor<T> one_hot<T>(const Tensor<std::int32_t>&, int); \
  /* loss.hpp */ \
  PREFIX Var<T> cross_entropy<T>(Tape<T>&, const Arg<T>&, const Tensor<std::int32_t>&, const CrossEntropyOptions<T>&); \
  PREFIX Var<T> bce_with_logits<T>(Tape<T>&, const Arg<T>&, const Tensor<T>&, Reduction, const Tensor<T>*); \
  PREFIX Var<T> mse<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, Reduction); \
  PREFIX Var<T> mse<T>(Tape<T>&, const Arg<T>&, const Tensor<T>&, Reduction); \
  PREFIX Var<T> l1<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, Reduction); \
  PREFIX Var<T> l1<T>(Tape<T>&, const Arg<T>&, const Tensor<T>&, Reduction); \
  PREFIX Var<T> smooth_l1<T>(Tape<T>&, const Arg<T>&, const Arg<T>&, std::type_identity_t<T>, Reduction); \
  PREFIX Var<T> smooth_l1<T>(Tape<T>&, const Arg<T>&, const Tensor<T>&, std::type_identity_t<T>, Reduction); \
  PREFIX Var<T> soft_dice_loss<T>(Tape<T>&, const Arg<T>&, const Tensor<std::int32_t>&, std::type_identity_t<T>); \
  PREFIX Var<T> soft_cross_entropy<T>(Tape<T>&, const Arg<T>&, const SoftTargets<T>&); \
  /* init.hpp */ \
  PREFIX Tensor<T>& constant_<T>(Tensor<T>&, T); \
  PREFIX Tensor<T>& zeros_<T>(Tensor<T>&); \
  PREFIX Tensor<T>& ones_<T>(Tensor<T>&); \
  PREFIX Tensor<T>& uniform_<T>(Tensor<T>&, Rng&, double, double); \
  PREFIX Tensor<T>& normal_<T>(Tensor<T>&, Rng&, double, double); \
  PREFIX Tensor<T>& trunc_normal_<T>(Tensor<T>&, Rng&, double, double, double, double); \
  PREFIX Tensor<T>& xavier_uniform_<T>(Tensor<T>&, Rng&, double); \
  PREFIX Tensor<T>& xavier_normal_<T>(Tensor<T>&, Rng&, double); \
  PREFIX Tensor<T>& kaiming_uniform_<T>(Tensor<T>&, Rng&, double, FanMode, Nonlinearity); \
  PREFIX Tensor<T>& kaiming_normal_<T>(Tensor<T>&, Rng&, double, FanMode, Nonlinearity); \
  PREFIX Tensor<T>& orthogonal_<T>(Tensor<T>&, Rng&, double); \
  /* optim.hpp */ \
  PREFIX std::vector<ParamGroup<T>> decay_groups<T>(const ParamList<T>&, const std::type_identity_t<std::function<bool(const NamedParam<T>&)>>&); \
  PREFIX T grad_norm<T>(const ParamList<T>&); \
  PREFIX T clip_grad_norm<T>(const ParamList<T>&, T);

#if defined(MARROW_EXTERN_TEMPLATES) && !defined(MARROW_INSTANTIATING)
namespace marrow {
MARROW_INSTANCES(extern template, float)
MARROW_INSTANCES(extern template, double)
}  // namespace marrow
#endif
