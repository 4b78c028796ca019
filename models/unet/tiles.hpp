#pragma once
// Tiles in and out of the U-Net: random training tiles with the paper's
// augmentation, and overlap-tile inference over an image of any size. Both
// mirror the slice where a window leaves it (reflect_index), as the paper does.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <marrow/data/augment.hpp>
#include <marrow/shape.hpp>

#include "model.hpp"

namespace marrow::unet {

// ---- training tiles with the paper's augmentation -------------------------------------
struct AugmentOptions {
  bool elastic = true;        // smooth random deformation: N(0, σ²) displacements on a coarse grid
  double elastic_sigma = 10;  // px (paper: 10)
  int elastic_grid = 3;       // grid × grid control points (paper: 3 × 3)
  bool dihedral = true;       // flips and 90° rotations
  double brightness = 0.1;    // ± shift, in [0, 1] intensity units
  double contrast = 0.2;      // ± relative scaling about the tile's mean
};

template <class T> struct TrainTile {
  Tensor<T> image;               // (C, in, in)
  Tensor<std::int32_t> target;   // (out, out) classes
  Tensor<T> weights;             // (out, out) pixel weights, undefined without a weight map
};

// A random in×in tile of a slice and the out×out labels centred in it. Image,
// classes and weights move through the same geometry (bilinear for the image,
// nearest for the label planes); the tile is cut with a border of context that the
// deformation pulls in and the final crop drops, and the slice is mirrored where
// a window leaves it (tiles may be larger than the slice).
// image (C, H, W), classes (H, W), weights (H, W) or nullptr.
template <class T>
TrainTile<T> make_train_tile(const Tensor<T>& image, const Tensor<std::int32_t>& classes, const Tensor<T>* weights,
                             index_t in, index_t out, const AugmentOptions& o, Rng& rng) {
  MARROW_CHECK(image.ndim() == 3 && classes.ndim() == 2 && classes.dim(0) == image.dim(1) &&
                   classes.dim(1) == image.dim(2),
               "make_train_tile: image ", image.shape().str(), " and classes ", classes.shape().str(),
               " must be (C, H, W) and (H, W)");
  MARROW_CHECK(!weights || weights->shape() == classes.shape(), "make_train_tile: weights ",
               weights ? weights->shape().str() : "", " do not match classes ", classes.shape().str());
  MARROW_CHECK(out >= 1 && out <= in && (in - out) % 2 == 0, "make_train_tile: labels ", out,
               " must be centred in the tile ", in);
  const index_t C = image.dim(0), H = image.dim(1), W = image.dim(2);
  const index_t pad = o.elastic ? index_t(std::ceil(3 * o.elastic_sigma)) : 0, big = in + 2 * pad;
  const index_t y0 = index_t(rng.below(std::uint64_t(std::max<index_t>(0, H - in) + 1))) - pad;
  const index_t x0 = index_t(rng.below(std::uint64_t(std::max<index_t>(0, W - in) + 1))) - pad;
  const index_t planes = weights ? 2 : 1;
  data::Sample<T> s{Tensor<T>::uninitialized(Shape{C, big, big}), Tensor<T>::uninitialized(Shape{planes, big, big})};
  for (index_t i = 0; i < big; ++i) {
    const index_t y = reflect_index(y0 + i, H);
    for (index_t j = 0; j < big; ++j) {
      const index_t x = reflect_index(x0 + j, W), k = i * big + j;
      for (index_t ch = 0; ch < C; ++ch) s.image[ch * big * big + k] = image[(ch * H + y) * W + x];
      s.mask[k] = T(classes[y * W + x]);
      if (weights) s.mask[big * big + k] = (*weights)[y * W + x];
    }
  }
  if (o.elastic) s = data::elastic_deform(s, rng, o.elastic_sigma, o.elastic_grid);
  if (o.dihedral) s = data::random_dihedral(s, rng);
  if (o.brightness > 0 || o.contrast > 0) s = data::brightness_contrast(s, rng, o.brightness, o.contrast);
  TrainTile<T> r{Tensor<T>::uninitialized(Shape{C, in, in}), Tensor<std::int32_t>::uninitialized(Shape{out, out}),
                 weights ? Tensor<T>::uninitialized(Shape{out, out}) : Tensor<T>()};
  for (index_t ch = 0; ch < C; ++ch)
    for (index_t i = 0; i < in; ++i)
      std::copy_n(s.image.data() + (ch * big + pad + i) * big + pad, in, r.image.data() + (ch * in + i) * in);
  const index_t lo = pad + (in - out) / 2;
  for (index_t i = 0; i < out; ++i)
    for (index_t j = 0; j < out; ++j) {
      const index_t k = (lo + i) * big + lo + j;
      r.target[i * out + j] = std::int32_t(std::lround(double(s.mask[k])));
      if (weights) r.weights[i * out + j] = s.mask[big * big + k];
    }
  return r;
}

// ---- overlap-tile inference ------------------------------------------------------------
struct TileOptions {
  index_t tile = 0;     // input tile side; 0: 256 (same) or the valid size giving a ~388 output (valid)
  index_t margin = -1;  // same padding: pixels of context dropped from each side of a tile (−1: 2^(depth+1))
  int batch = 4;        // tiles per forward pass
};

// Where tiles read and write: an input window of side `in` starts `margin` pixels
// before its origin; its output, from `offset` on, covers `keep` pixels from the origin.
struct TilePlan {
  index_t in = 0, out = 0, keep = 0, margin = 0, offset = 0;
};

inline TilePlan plan_tiles(const Config& c, const TileOptions& o) {
  TilePlan p;
  const index_t align = index_t(1) << c.depth;  // tiles shift by multiples of the pooling grid
  if (c.padding == Padding::Same) {
    p.in = o.tile > 0 ? o.tile : 256;
    MARROW_CHECK(c.output_size(p.in) == p.in, "overlap-tile: tile ", p.in, " is not a valid input for depth ", c.depth,
                 " (a multiple of ", align, ")");
    p.margin = o.margin >= 0 ? o.margin : std::min<index_t>(2 * align, p.in / 4);
    p.out = p.in;
    p.keep = p.in - 2 * p.margin;
    p.offset = p.margin;
    MARROW_CHECK(p.keep > 0, "overlap-tile: margin ", p.margin, " leaves nothing of tile ", p.in);
    return p;
  }
  p.in = o.tile > 0 ? o.tile : c.input_for_output(388);  // the paper's 572 → 388 at depth 4
  p.out = c.output_size(p.in);
  MARROW_CHECK(p.out > 0, "overlap-tile: tile ", p.in, " is not a valid input for depth ", c.depth,
               " with valid padding (next valid: ", c.fit_input(p.in), ")");
  p.keep = p.out >= align ? p.out / align * align : p.out;
  p.offset = (p.out - p.keep) / 2;
  p.margin = (p.in - p.out) / 2 + p.offset;
  MARROW_CHECK((p.in - p.out) % 2 == 0 && (p.out - p.keep) % 2 == 0, "overlap-tile: tile ", p.in,
               " gives an off-centre output ", p.out);
  return p;
}

// Class probabilities (K, H, W) of an image (C, H, W) of any size: the image is
// cut into tiles whose borders are mirrored from the image, each tile's centre
// is kept, and the kept parts tile the image exactly, so there are no seams.
// Runs the network in eval mode (restoring its mode afterwards).
template <class T> Tensor<T> predict_overlap_tile(UNet<T>& net, const Tensor<T>& image, const TileOptions& o = {}) {
  const Config& c = net.cfg;
  MARROW_CHECK(image.ndim() == 3 && image.dim(0) == c.in_channels && image.dim(1) > 0 && image.dim(2) > 0,
               "overlap-tile: image ", image.shape().str(), " must be (", c.in_channels, ", H, W)");
  MARROW_CHECK(o.batch >= 1, "overlap-tile: batch ", o.batch, " must be >= 1");
  const TilePlan p = plan_tiles(c, o);
  const index_t C = image.dim(0), H = image.dim(1), W = image.dim(2), K = c.classes;
  const index_t ny = (H + p.keep - 1) / p.keep, nx = (W + p.keep - 1) / p.keep, n = ny * nx;
  const bool was_training = net.training;
  set_training<T>(net, false);
  Tensor<T> probs = Tensor<T>::uninitialized(Shape{K, H, W});
  Tape<T> tape;
  for (index_t first = 0; first < n; first += o.batch) {
    const index_t B = std::min<index_t>(o.batch, n - first);
    Tensor<T> x = Tensor<T>::uninitialized(Shape{B, C, p.in, p.in});
    for (index_t b = 0; b < B; ++b) {
      const index_t y0 = ((first + b) / nx) * p.keep - p.margin, x0 = ((first + b) % nx) * p.keep - p.margin;
      std::vector<index_t> cols(std::size_t(p.in));
      for (index_t j = 0; j < p.in; ++j) cols[std::size_t(j)] = reflect_index(x0 + j, W);
      for (index_t ch = 0; ch < C; ++ch)
        for (index_t i = 0; i < p.in; ++i) {
          const T* src = image.data() + (ch * H + reflect_index(y0 + i, H)) * W;
          T* dst = x.data() + ((b * C + ch) * p.in + i) * p.in;
          for (index_t j = 0; j < p.in; ++j) dst[j] = src[cols[std::size_t(j)]];
        }
    }
    tape.reset();
    auto guard = tape.no_grad();
    Var<T> pr = softmax(tape, net(tape, tape.input(x)), 1);  // (B, K, out, out)
    for (index_t b = 0; b < B; ++b) {
      const index_t oy = ((first + b) / nx) * p.keep, ox = ((first + b) % nx) * p.keep;
      const index_t h = std::min(p.keep, H - oy), w = std::min(p.keep, W - ox);
      for (index_t k = 0; k < K; ++k)
        for (index_t i = 0; i < h; ++i)
          std::copy_n(pr.value().data() + ((b * K + k) * p.out + p.offset + i) * p.out + p.offset, w,
                      probs.data() + (k * H + oy + i) * W + ox);
    }
  }
  set_training<T>(net, was_training);
  return probs;
}

// The cell-interior plane (H, W) of class probabilities (K, H, W).
template <class T> Tensor<T> cell_probability(const Tensor<T>& probs) {
  MARROW_CHECK(probs.ndim() == 3 && probs.dim(0) >= 2, "cell_probability: expected (K, H, W) with K >= 2, got ",
               probs.shape().str());
  return probs.slice(0, 1, 2).reshape(Shape{probs.dim(1), probs.dim(2)});
}

}  // namespace marrow::unet
