# Smoke tests of the mnist_classifier binary: a tiny training run, eval of its
# checkpoint, and bad usage. The data-dependent ones run on the smoke digits
# (examples/CMakeLists.txt) and are registered only when those can be written.
if(MARROW_BUILD_TESTS)
  if(MARROW_SMOKE_DIGITS)
    set(MARROW_CLF_SMOKE ${CMAKE_CURRENT_BINARY_DIR}/runs/mnist-classifier-smoke)
    add_test(NAME example.mnist_classifier.train_tiny
      COMMAND mnist_classifier train --data ${MARROW_SMOKE_DIGITS} --epochs 0 --steps 30 --log-every 10 --threads 1
              --out ${MARROW_CLF_SMOKE})
    add_test(NAME example.mnist_classifier.eval_tiny
      COMMAND mnist_classifier eval --data ${MARROW_SMOKE_DIGITS} --ckpt ${MARROW_CLF_SMOKE}/checkpoint.safetensors
              --threads 1)
    set_tests_properties(example.mnist_classifier.train_tiny PROPERTIES FIXTURES_REQUIRED smoke_digits)
    set_tests_properties(example.mnist_classifier.eval_tiny PROPERTIES DEPENDS example.mnist_classifier.train_tiny
      FIXTURES_REQUIRED smoke_digits PASS_REGULAR_EXPRESSION "accuracy [0-9.]+ %")
    marrow_expect_exit(example.mnist_classifier.missing_ckpt 1 "nonexistent" mnist_classifier eval
      --ckpt /nonexistent/ckpt.safetensors)
  endif()
  marrow_expect_exit(example.mnist_classifier.unknown_flag 2 "--bogus" mnist_classifier train --bogus 1)
  marrow_expect_exit(example.mnist_classifier.bad_batch 2 "--batch" mnist_classifier train --batch 0)
  marrow_expect_exit(example.mnist_classifier.missing_data 1 "no file 'train-images-idx3-ubyte" mnist_classifier train
    --data /nonexistent --out ${CMAKE_CURRENT_BINARY_DIR}/runs/mnist-classifier-nodata)
endif()
