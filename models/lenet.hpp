#pragma once
// A LeNet-5-style digit classifier with BatchNorm, ReLU and max-pooling: the
// yardstick the GAN metrics measure with (dcgan/metrics.hpp). Its penultimate
// features feed the Fréchet distance, its class probabilities the score and
// the class histogram.
//
//   x (N, 1, 28, 28) in [-1, 1]
//   conv 5x5 pad 2 -> BN -> ReLU -> maxpool 2      (N, c1, 14, 14)
//   conv 5x5 pad 2 -> BN -> ReLU -> maxpool 2      (N, c2, 7, 7)
//   flatten -> linear -> BN -> ReLU                 (N, hidden)    <- features
//   dropout -> linear                               (N, classes)   <- logits
//
// Inputs are scaled to [-1, 1], the range the generator's tanh produces, so
// generated digits go into the classifier exactly as they come out of G.
#include <string>

#include <marrow/nn/layers.hpp>
#include <marrow/nn/module.hpp>
#include <marrow/ops/pool.hpp>
#include <marrow/ops/shape.hpp>

namespace marrow::lenet {

struct LeNetConfig {
  int in_ch = 1;          // image channels
  int image = 28;         // input side (square); divisible by 4
  int c1 = 16;            // channels of the first conv
  int c2 = 32;            // channels of the second conv
  int kernel = 5;         // odd conv kernel; padded to keep the size ("same")
  int hidden = 128;       // width of the penultimate layer (the FID features)
  int classes = 10;       // outputs
  double dropout = 0.2;   // before the last layer, in training only

  // Every field has been in every checkpoint since the first: all are required.
  template <class F> void fields(F& f) {
    f("in_ch", in_ch);
    f("image", image);
    f("c1", c1);
    f("c2", c2);
    f("kernel", kernel);
    f("hidden", hidden);
    f("classes", classes);
    f("dropout", dropout);
  }
  void validate() const {
    MARROW_CHECK(in_ch > 0 && c1 > 0 && c2 > 0 && hidden > 0 && classes > 1,
                 "LeNet: sizes must be positive (and classes > 1), got in_ch ", in_ch, ", c1 ", c1, ", c2 ", c2,
                 ", hidden ", hidden, ", classes ", classes);
    MARROW_CHECK(image >= 4 && image % 4 == 0, "LeNet: image side ", image, " must be a positive multiple of 4");
    MARROW_CHECK(kernel >= 1 && kernel % 2 == 1, "LeNet: kernel ", kernel, " must be odd");
  }
};

template <class T> struct LeNet {
  LeNetConfig cfg;
  Conv2d<T> conv1;
  BatchNorm<T> bn1;
  Conv2d<T> conv2;
  BatchNorm<T> bn2;
  Linear<T> fc1;
  BatchNorm<T> bn3;
  Dropout<T> drop;
  Linear<T> fc2;

  // Conv and fc1 carry no bias: the BatchNorm right after subtracts it again.
  LeNet(const LeNetConfig& c, Rng& rng)
      : cfg((c.validate(), c)),
        conv1(c.in_ch, c.c1, c.kernel, rng, {.padding = c.kernel / 2, .bias = false}),
        bn1(c.c1),
        conv2(c.c1, c.c2, c.kernel, rng, {.padding = c.kernel / 2, .bias = false}),
        bn2(c.c2),
        fc1(index_t(c.c2) * (c.image / 4) * (c.image / 4), c.hidden, rng, /*with_bias=*/false),
        bn3(c.hidden),
        drop(T(c.dropout), rng),
        fc2(c.hidden, c.classes, rng) {}

  struct Out {
    Var<T> features;  // (N, hidden)
    Var<T> logits;    // (N, classes)
  };

  Out forward(Tape<T>& t, const Var<T>& x) {
    t.check(x, "LeNet");
    MARROW_CHECK(x.ndim() == 4 && x.dim(1) == cfg.in_ch && x.dim(2) == cfg.image && x.dim(3) == cfg.image,
                 "LeNet: input ", x.shape().str(), " is not (N, ", cfg.in_ch, ", ", cfg.image, ", ", cfg.image, ")");
    // bn.then_relu(t, h) is relu(bn(h)) in one op
    Var<T> h = max_pool2d(t, bn1.then_relu(t, conv1(t, x)), 2);  // (N, c1, H/2, W/2)
    h = max_pool2d(t, bn2.then_relu(t, conv2(t, h)), 2);         // (N, c2, H/4, W/4)
    Var<T> f = bn3.then_relu(t, fc1(t, flatten(t, h)));          // (N, hidden)
    return {f, fc2(t, drop(t, f))};
  }
  Var<T> operator()(Tape<T>& t, const Var<T>& x) { return forward(t, x).logits; }

  void visit(Visitor<T>& v, const std::string& prefix) {
    conv1.visit(v, join_name(prefix, "conv1"));
    bn1.visit(v, join_name(prefix, "bn1"));
    conv2.visit(v, join_name(prefix, "conv2"));
    bn2.visit(v, join_name(prefix, "bn2"));
    fc1.visit(v, join_name(prefix, "fc1"));
    bn3.visit(v, join_name(prefix, "bn3"));
    drop.visit(v, join_name(prefix, "drop"));
    fc2.visit(v, join_name(prefix, "fc2"));
  }
};

}  // namespace marrow::lenet
