#pragma once
// U-Net (Ronneberger, Fischer & Brox 2015), read like its figure: a contracting
// path of double 3×3 convolutions and 2×2 max-pooling, a bottleneck with
// dropout, an expanding path of 2×2 transposed convolutions whose output is
// concatenated with the matching skip, and a 1×1 head to the classes.
//
// Two paddings:
//   Same   3×3 convolutions padded by 1: output size = input size, the input
//          side a multiple of 2^depth (what most re-implementations do).
//   Valid  the paper's unpadded convolutions: every 3×3 conv trims 2 pixels,
//          skips are centre-cropped to the upsampled map, and the output is
//          smaller than the input (572 → 388 at depth 4). Overlap-tile
//          inference supplies the missing context by mirroring.
// Every spatial size and crop offset is derived from the Config; none is
// written by hand.
//
// Shapes: N batch, C input channels, K classes, (H, W) input, (Ho, Wo) output.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <marrow/data/augment.hpp>
#include <marrow/loss.hpp>
#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/nn.hpp>
#include <marrow/ops/pool.hpp>
#include <marrow/ops/shape.hpp>

namespace marrow::unet {

enum class Padding { Same, Valid };

struct Config {
  int in_channels = 1;    // gray EM slices
  int classes = 2;        // 0 = membrane, 1 = cell interior
  int width = 16;         // channels of the first level, doubled per level (paper: 64; 16 is the CPU default)
  int depth = 4;          // 2×2 poolings (paper: 4); levels = depth + 1
  Padding padding = Padding::Same;
  bool batch_norm = true;  // BatchNorm after every 3×3 conv (then the conv has no bias)
  double dropout = 0.5;    // at the end of the contracting path (on the bottleneck's output)
  bool he_init = false;    // the paper's N(0, 2/fan_in) weights instead of PyTorch's default init

  void check() const {
    MARROW_CHECK(in_channels >= 1 && classes >= 2 && width >= 1 && depth >= 1 && depth <= 8,
                 "unet: config needs in_channels >= 1, classes >= 2, width >= 1 and depth in [1, 8]; got in_channels ",
                 in_channels, ", classes ", classes, ", width ", width, ", depth ", depth);
    MARROW_CHECK(dropout >= 0 && dropout < 1, "unet: dropout ", dropout, " must be in [0, 1)");
  }
  index_t channels(int level) const { return index_t(width) << level; }
  index_t conv_padding() const { return padding == Padding::Same ? 1 : 0; }

  // Output side for an input side n, or −1 when n is not a valid input (a pooled
  // map of odd size, or a map that vanishes).
  index_t output_size(index_t n) const {
    const index_t trim = 4 - 4 * conv_padding();  // two 3×3 convs per block
    for (int l = 0; l < depth; ++l) {
      n -= trim;
      if (n <= 0 || n % 2) return -1;
      n /= 2;
    }
    n -= trim;  // bottleneck
    if (n <= 0) return -1;
    for (int l = 0; l < depth; ++l) {
      n = 2 * n - trim;
      if (n <= 0) return -1;
    }
    return n;
  }
  // The smallest valid input side >= n.
  index_t fit_input(index_t n) const {
    n = std::max<index_t>(n, 1);
    while (output_size(n) < 0) ++n;
    return n;
  }
  // The smallest valid input side whose output is at least `want` pixels.
  index_t input_for_output(index_t want) const {
    index_t n = fit_input(1);
    while (output_size(n) < want) n = fit_input(n + 1);
    return n;
  }
};

// conv 3×3 → [BatchNorm] → ReLU, twice.
template <class T> struct DoubleConv {
  Conv2d<T> conv1, conv2;
  std::optional<BatchNorm<T>> bn1, bn2;

  DoubleConv(index_t in, index_t out, const Config& c, Rng& rng)
      : conv1(in, out, 3, rng, {.padding = int(c.conv_padding()), .bias = !c.batch_norm}),
        conv2(out, out, 3, rng, {.padding = int(c.conv_padding()), .bias = !c.batch_norm}) {
    if (c.batch_norm) bn1.emplace(out), bn2.emplace(out);
    if (c.he_init)
      for (Conv2d<T>* cv : {&conv1, &conv2}) {
        kaiming_normal_(cv->weight.value(), rng, 0.0, FanMode::FanIn, Nonlinearity::ReLU);
        if (cv->bias.value().defined()) cv->bias.value().zero();
      }
  }
  Var<T> operator()(Tape<T>& t, Var<T> x) {
    x = conv1(t, x);
    x = bn1 ? bn1->then_relu(t, x) : relu(t, x);
    x = conv2(t, x);
    return bn2 ? bn2->then_relu(t, x) : relu(t, x);
  }
  void visit(Visitor<T>& v, const std::string& prefix) {
    conv1.visit(v, join_name(prefix, "conv1"));
    if (bn1) bn1->visit(v, join_name(prefix, "bn1"));
    conv2.visit(v, join_name(prefix, "conv2"));
    if (bn2) bn2->visit(v, join_name(prefix, "bn2"));
  }
};

// One level of the expanding path: 2×2 up-convolution halving the channels,
// concatenation with the (cropped) skip, double conv.
template <class T> struct UpBlock {
  ConvTranspose2d<T> upconv;
  DoubleConv<T> conv;
  UpBlock(index_t in, index_t out, const Config& c, Rng& rng)
      : upconv(in, out, 2, rng, {.stride = 2}), conv(2 * out, out, c, rng) {}
  void visit(Visitor<T>& v, const std::string& prefix) {
    upconv.visit(v, join_name(prefix, "upconv"));
    conv.visit(v, join_name(prefix, "conv"));
  }
};

// The centre h×w window of x (N, C, H, W): the paper's skip cropping.
template <class T> Var<T> center_crop(Tape<T>& t, const Var<T>& x, index_t h, index_t w) {
  t.check(x, "center_crop");
  const index_t H = x.dim(2), W = x.dim(3);
  MARROW_CHECK(h <= H && w <= W && (H - h) % 2 == 0 && (W - w) % 2 == 0, "center_crop: ", h, "x", w,
               " is not a centred window of ", x.shape().str());
  if (h == H && w == W) return x;
  const index_t oy = (H - h) / 2, ox = (W - w) / 2;
  return slice(t, slice(t, x, 2, oy, oy + h), 3, ox, ox + w);
}

template <class T> struct UNet {
  Config cfg;
  std::vector<DoubleConv<T>> down;  // levels 0 .. depth−1
  DoubleConv<T> bottom;             // level depth
  Dropout<T> drop;
  std::vector<UpBlock<T>> up;  // up[i] rises to level depth−1−i
  Conv2d<T> head;
  bool training = true;

  UNet(const Config& c, Rng& rng)
      : cfg(checked(c)), down(make_down(c, rng)), bottom(c.channels(c.depth - 1), c.channels(c.depth), c, rng),
        drop(T(c.dropout), rng), up(make_up(c, rng)), head(c.channels(0), c.classes, 1, rng) {}

  // x (N, C, H, W) -> logits (N, K, Ho, Wo).
  Var<T> operator()(Tape<T>& t, const Var<T>& x) {
    t.check(x, "unet");
    MARROW_CHECK(x.ndim() == 4 && x.dim(1) == cfg.in_channels, "unet: input ", x.shape().str(), " must be (N, ",
                 cfg.in_channels, ", H, W)");
    for (int a : {2, 3})
      MARROW_CHECK(cfg.output_size(x.dim(a)) > 0, "unet: input ", x.shape().str(), " has a side of ", x.dim(a),
                   ", not a valid size for depth ", cfg.depth, " with ", padding_name(), " padding (next valid: ",
                   cfg.fit_input(x.dim(a)), ")");
    std::vector<Var<T>> skips;
    Var<T> h = x;
    for (auto& d : down) {
      h = d(t, h);
      skips.push_back(h);
      h = max_pool2d(t, h, 2);
    }
    h = drop(t, bottom(t, h));
    for (std::size_t i = 0; i < up.size(); ++i) {
      Var<T> u = up[i].upconv(t, h);
      Var<T> s = center_crop(t, skips[skips.size() - 1 - i], u.dim(2), u.dim(3));
      h = up[i].conv(t, concat(t, {s, u}, 1));
    }
    return head(t, h);
  }

  void visit(Visitor<T>& v, const std::string& prefix) {
    for (std::size_t i = 0; i < down.size(); ++i) down[i].visit(v, join_name(prefix, "down." + std::to_string(i)));
    bottom.visit(v, join_name(prefix, "bottom"));
    drop.visit(v, join_name(prefix, "dropout"));
    for (std::size_t i = 0; i < up.size(); ++i) up[i].visit(v, join_name(prefix, "up." + std::to_string(i)));
    head.visit(v, join_name(prefix, "head"));
    v.visit_mode(training);
  }

  const char* padding_name() const { return cfg.padding == Padding::Same ? "same" : "valid"; }

 private:
  static const Config& checked(const Config& c) {
    c.check();
    return c;
  }
  static std::vector<DoubleConv<T>> make_down(const Config& c, Rng& rng) {
    std::vector<DoubleConv<T>> v;
    v.reserve(std::size_t(c.depth));
    for (int l = 0; l < c.depth; ++l) v.emplace_back(l == 0 ? c.in_channels : c.channels(l - 1), c.channels(l), c, rng);
    return v;
  }
  static std::vector<UpBlock<T>> make_up(const Config& c, Rng& rng) {
    std::vector<UpBlock<T>> v;
    v.reserve(std::size_t(c.depth));
    for (int l = c.depth - 1; l >= 0; --l) v.emplace_back(c.channels(l + 1), c.channels(l), c, rng);
    return v;
  }
};

namespace tile_detail {
// Mirror index i into [0, n) without repeating the edge (numpy's "reflect"), any distance out.
inline index_t reflect(index_t i, index_t n) {
  if (n == 1) return 0;
  const index_t period = 2 * (n - 1);
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - i;
}
}  // namespace tile_detail

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
    const index_t y = tile_detail::reflect(y0 + i, H);
    for (index_t j = 0; j < big; ++j) {
      const index_t x = tile_detail::reflect(x0 + j, W), k = i * big + j;
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

// ---- loss ------------------------------------------------------------------------------
struct LossOptions {
  bool cross_entropy = true;  // pixel-wise cross-entropy
  bool weight_map = false;    // … multiplied by the paper's weight map (unet_weights.hpp)
  bool dice = false;          // soft Dice on the softmax probabilities
  double dice_weight = 1.0;   // total = CE + dice_weight·Dice
};

template <class T> struct LossParts {
  Var<T> total;
  double ce = 0, dice = 0;  // NaN when not part of the loss
};

// logits (N, K, Ho, Wo), target (N, Ho, Wo), weights (N, Ho, Wo) or nullptr.
template <class T>
LossParts<T> segmentation_loss(Tape<T>& t, const Var<T>& logits, const Tensor<std::int32_t>& target,
                               const std::type_identity_t<Tensor<T>>* weights, const LossOptions& o) {
  MARROW_CHECK(o.cross_entropy || o.dice, "segmentation_loss: choose cross-entropy, Dice or both");
  MARROW_CHECK(!o.weight_map || weights, "segmentation_loss: weight_map set but no weights given");
  LossParts<T> r{Var<T>(), std::nan(""), std::nan("")};
  if (o.cross_entropy) {
    CrossEntropyOptions<T> ce;
    if (o.weight_map) ce.pixel_weights = weights;
    r.total = cross_entropy(t, logits, target, ce);
    r.ce = r.total.item();
  }
  if (o.dice) {
    Var<T> d = soft_dice_loss(t, softmax(t, logits, 1), target);
    r.dice = d.item();
    d = mul_scalar(t, d, T(o.dice_weight));
    r.total = r.total.defined() ? add(t, r.total, d) : d;
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
      for (index_t j = 0; j < p.in; ++j) cols[std::size_t(j)] = tile_detail::reflect(x0 + j, W);
      for (index_t ch = 0; ch < C; ++ch)
        for (index_t i = 0; i < p.in; ++i) {
          const T* src = image.data() + (ch * H + tile_detail::reflect(y0 + i, H)) * W;
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

}  // namespace marrow::unet

/* Backward rules (g = upstream gradient); everything else is built from the ops headers:
   center_crop        dx[window] += g                      (two slices; outside the window 0)
   segmentation_loss  d total = d CE + dice_weight · d Dice  (CE with pixel weights pw: dz += g·pw·(p − onehot)/n;
                      Dice through softmax, see loss.hpp)
*/
