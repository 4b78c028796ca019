# Smoke tests of the charformer binary: a tiny model on the repository's LICENSE text
# (train, resume, sample, eval), a short run on tinyshakespeare when the shared data
# is present, and bad usage / bad input.
if(MARROW_BUILD_TESTS)
  set(_cf_runs ${CMAKE_CURRENT_BINARY_DIR}/runs/charformer-smoke)
  set(_cf_tiny --data ${PROJECT_SOURCE_DIR}/LICENSE --n-layer 1 --n-head 2 --n-embd 16 --block-size 16
               --batch-size 4 --eval-interval 15 --eval-iters 2 --threads 1 --out ${_cf_runs})
  add_test(NAME example.charformer.train_tiny COMMAND charformer train ${_cf_tiny} --steps 30)
  add_test(NAME example.charformer.resume_tiny COMMAND charformer train ${_cf_tiny} --steps 45 --resume)
  set_tests_properties(example.charformer.resume_tiny PROPERTIES DEPENDS example.charformer.train_tiny
                       PASS_REGULAR_EXPRESSION "\"steps\":45")
  add_test(NAME example.charformer.sample_tiny
    COMMAND charformer sample --ckpt ${_cf_runs}/checkpoint.safetensors --prompt "MIT" --tokens 40 --seed 3)
  add_test(NAME example.charformer.eval_tiny
    COMMAND charformer eval --ckpt ${_cf_runs}/checkpoint.safetensors --data ${PROJECT_SOURCE_DIR}/LICENSE --eval-iters 2)
  set_tests_properties(example.charformer.sample_tiny example.charformer.eval_tiny PROPERTIES
                       DEPENDS example.charformer.resume_tiny)
  set_tests_properties(example.charformer.eval_tiny PROPERTIES PASS_REGULAR_EXPRESSION "bits/char")

  set(_cf_shakespeare ${PROJECT_SOURCE_DIR}/../shared/data/tinyshakespeare/input.txt)
  if(EXISTS ${_cf_shakespeare})
    add_test(NAME example.charformer.shakespeare_20_steps
      COMMAND charformer train --data ${_cf_shakespeare} --steps 20 --eval-interval 20 --eval-iters 5 --threads 1
              --out ${CMAKE_CURRENT_BINARY_DIR}/runs/charformer-shakespeare-smoke)
  endif()

  marrow_expect_exit(example.charformer.unknown_flag 2 "--bogus" charformer train --bogus 1)
  marrow_expect_exit(example.charformer.heads_do_not_divide 2 "not divisible by --n-head 3" charformer train --n-head 3)
  marrow_expect_exit(example.charformer.decay_before_warmup 2 "--lr-decay-iters" charformer train --warmup 100 --lr-decay-iters 50)
  marrow_expect_exit(example.charformer.missing_data 1 "nonexistent" charformer train --data /nonexistent/input.txt)
  marrow_expect_exit(example.charformer.missing_ckpt 1 "nonexistent" charformer sample --ckpt /nonexistent/ckpt.safetensors)
  marrow_expect_exit(example.charformer.prompt_outside_vocab 2 "unknown character" charformer sample
                     --ckpt ${_cf_runs}/checkpoint.safetensors --prompt "~")
  set_tests_properties(example.charformer.prompt_outside_vocab PROPERTIES DEPENDS example.charformer.resume_tiny)
endif()
