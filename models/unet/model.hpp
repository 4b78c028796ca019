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
//          inference (tiles.hpp) supplies the missing context by mirroring.
// Every spatial size and crop offset is derived from the Config; none is
// written by hand.
//
// Shapes: N batch, C input channels, K classes, (H, W) input, (Ho, Wo) output.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

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

  // Stored in checkpoints (train/model_config.hpp).
  template <class F> void fields(F& f) {
    f("in_channels", in_channels);
    f("classes", classes);
    f("width", width);
    f("depth", depth);
    f.choice("padding", padding, {{"same", Padding::Same}, {"valid", Padding::Valid}});
    f("batch_norm", batch_norm);
    f("dropout", dropout);
    f("he_init", he_init);
  }
  void validate() const {
    MARROW_CHECK(in_channels >= 1 && classes >= 2 && width >= 1 && depth >= 1 && depth <= 8,
                 "unet: config needs in_channels >= 1, classes >= 2, width >= 1 and depth in [1, 8]; got in_channels ",
                 in_channels, ", classes ", classes, ", width ", width, ", depth ", depth);
    MARROW_CHECK(dropout >= 0 && dropout < 1, "unet: dropout ", dropout, " must be in [0, 1)");
  }
  index_t channels(int level) const { return index_t(width) << level; }
  index_t conv_padding() const { return padding == Padding::Same ? 1 : 0; }
  const char* padding_name() const { return padding == Padding::Same ? "same" : "valid"; }

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

// The centre h×w window of x (N, C, H, W): the paper's skip cropping. Two
// slices, so its gradient is theirs (g into the window, 0 outside).
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
  // (1): the cell probability at or above which a pixel is called cell. Not
  // part of the network: chosen on the validation slices after training
  // (metrics.hpp, choose_threshold) and kept with the weights as a buffer.
  Tensor<T> threshold = Tensor<T>(Shape{1}, {T(0.5)});
  bool training = true;

  UNet(const Config& c, Rng& rng)
      : cfg(validated(c)), down(make_down(c, rng)), bottom(c.channels(c.depth - 1), c.channels(c.depth), c, rng),
        drop(T(c.dropout), rng), up(make_up(c, rng)), head(c.channels(0), c.classes, 1, rng) {}

  // x (N, C, H, W) -> logits (N, K, Ho, Wo).
  Var<T> operator()(Tape<T>& t, const Var<T>& x) {
    t.check(x, "unet");
    MARROW_CHECK(x.ndim() == 4 && x.dim(1) == cfg.in_channels, "unet: input ", x.shape().str(), " must be (N, ",
                 cfg.in_channels, ", H, W)");
    for (int a : {2, 3})
      MARROW_CHECK(cfg.output_size(x.dim(a)) > 0, "unet: input ", x.shape().str(), " has a side of ", x.dim(a),
                   ", not a valid size for depth ", cfg.depth, " with ", cfg.padding_name(),
                   " padding (next valid: ", cfg.fit_input(x.dim(a)), ")");
    std::vector<Var<T>> skips;  // contracting path
    Var<T> h = x;
    for (auto& d : down) {
      h = d(t, h);
      skips.push_back(h);
      h = max_pool2d(t, h, 2);
    }
    h = drop(t, bottom(t, h));  // bottleneck
    for (std::size_t i = 0; i < up.size(); ++i) {  // expanding path
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
    v.visit_buffer(join_name(prefix, "threshold"), threshold);
    v.visit_mode(training);
  }

 private:
  static const Config& validated(const Config& c) {
    c.validate();
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

}  // namespace marrow::unet
