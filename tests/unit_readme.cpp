// The README's "train an MLP by hand" example, verbatim between the markers, so the
// README cannot drift from code that compiles and learns.
#include "testing.hpp"

TEST_CASE("readme: a tiny MLP learns XOR with the tape by hand") {
  // README-BEGIN
  using namespace marrow;
  Rng rng(0);
  Linear<float> l1(2, 8, rng), l2(8, 1, rng);                 // 2 -> 8 -> 1
  auto params = parameters<float>(l1, "l1");
  for (auto& p : parameters<float>(l2, "l2")) params.push_back(p);
  AdamW<float> opt(params, {.lr = 0.05f, .weight_decay = 0.0f});
  Tensor<float> x({4, 2}, {0, 0, 0, 1, 1, 0, 1, 1}), y({4, 1}, {0, 1, 1, 0});
  Tape<float> tape;                                           // reused every step
  for (int step = 0; step < 500; ++step) {
    tape.reset();
    Var<float> h = tanh(tape, l1(tape, tape.input(x)));       // (4, 8)
    Var<float> logits = l2(tape, h);                          // (4, 1)
    Var<float> loss = bce_with_logits(tape, logits, y);
    opt.zero_grad();
    tape.backward(loss);                                      // fills every .grad()
    opt.step();
  }
  auto guard = tape.no_grad();                                // inference records nothing
  Tensor<float> p = sigmoid(tape, l2(tape, tanh(tape, l1(tape, tape.input(x))))).value();
  std::printf("XOR: %.3f %.3f %.3f %.3f\n", p[0], p[1], p[2], p[3]);
  // README-END
  CHECK(p[0] < 0.1f);
  CHECK(p[1] > 0.9f);
  CHECK(p[2] > 0.9f);
  CHECK(p[3] < 0.1f);
}
