// Fits y = 2x + 1 with one Linear layer written against the installed headers.
#include <marrow/marrow.hpp>

#include <cstdio>

int main() {
  using namespace marrow;
  Param<float> w(zeros<float>({1, 1})), b(zeros<float>({1}));
  Tensor<float> x({4, 1}, {0, 1, 2, 3}), y({4, 1}, {1, 3, 5, 7});
  Tape<float> tape;
  for (int step = 0; step < 500; ++step) {
    tape.reset();
    auto err = sub(tape, linear(tape, tape.input(x), w, b), tape.input(y));
    tape.backward(mean(tape, mul(tape, err, err)));
    for (Param<float>* p : {&w, &b}) {
      p->value().arr() -= 0.05f * p->grad().arr();
      p->zero_grad();
    }
  }
  std::printf("w=%.3f b=%.3f\n", w.value()[0], b.value()[0]);
  return (std::abs(w.value()[0] - 2) < 1e-2 && std::abs(b.value()[0] - 1) < 1e-2) ? 0 : 1;
}
