# Smoke tests of the colorize binary: tiny training runs (regression and
# classification), eval and apply of their checkpoints, and bad usage. Runs that
# read CIFAR-10 are registered only when shared/data/cifar10-jpg is present.
if(MARROW_BUILD_TESTS)
  set(COLOR_DATA ${PROJECT_SOURCE_DIR}/../shared/data/cifar10-jpg)
  set(COLOR_RUNS ${CMAKE_CURRENT_BINARY_DIR}/runs)
  set(COLOR_TINY --max-per-class 10 --steps 6 --batch 8 --test-images 3 --eval-every 3 --eval-images 10
                 --log-every 2 --threads 1 --data ${COLOR_DATA})
  if(EXISTS ${COLOR_DATA}/train AND EXISTS ${COLOR_DATA}/test)
    add_test(NAME example.colorize.train_l2_tiny
      COMMAND colorize train --loss l2 ${COLOR_TINY} --out ${COLOR_RUNS}/colorize-l2-smoke)
    set_tests_properties(example.colorize.train_l2_tiny PROPERTIES
      PASS_REGULAR_EXPRESSION "\"psnr_db\":[0-9.]+.*\"colorfulness_ratio\":[0-9.]+.*\"auc\":")
    add_test(NAME example.colorize.train_classify_tiny
      COMMAND colorize train --loss classify ${COLOR_TINY} --out ${COLOR_RUNS}/colorize-cls-smoke)
    set_tests_properties(example.colorize.train_classify_tiny PROPERTIES
      PASS_REGULAR_EXPRESSION "\"gray_psnr_db\":[0-9.]+")
    add_test(NAME example.colorize.resume_tiny
      COMMAND colorize train --loss classify ${COLOR_TINY} --steps 8 --resume --out ${COLOR_RUNS}/colorize-cls-smoke)
    set_tests_properties(example.colorize.resume_tiny PROPERTIES DEPENDS example.colorize.train_classify_tiny
      PASS_REGULAR_EXPRESSION "\"steps\":8")
    add_test(NAME example.colorize.eval_tiny
      COMMAND colorize eval --ckpt ${COLOR_RUNS}/colorize-l2-smoke/checkpoint.safetensors --data ${COLOR_DATA}
              --test-images 2 --threads 1)
    set_tests_properties(example.colorize.eval_tiny PROPERTIES DEPENDS example.colorize.train_l2_tiny
      PASS_REGULAR_EXPRESSION "20 test images: PSNR")
    add_test(NAME example.colorize.eval_classify_tiny
      COMMAND colorize eval --ckpt ${COLOR_RUNS}/colorize-cls-smoke/checkpoint.safetensors --data ${COLOR_DATA}
              --test-images 2 --apply-prior-correction 0.5 --grid ${COLOR_RUNS}/colorize-cls-smoke/eval-grid.png --threads 1)
    set_tests_properties(example.colorize.eval_classify_tiny PROPERTIES DEPENDS example.colorize.train_classify_tiny
      PASS_REGULAR_EXPRESSION "temperature 0.38, prior correction 0.5")
    # A folder of odd-sized PNGs (the run's own plots) and a JPEG: any size, relative paths kept.
    add_test(NAME example.colorize.apply_tiny
      COMMAND colorize apply --ckpt ${COLOR_RUNS}/colorize-cls-smoke/checkpoint.safetensors --threads 1
              --input ${COLOR_RUNS}/colorize-l2-smoke,${COLOR_DATA}/test/cat/0000.jpg --out ${COLOR_RUNS}/colorize-apply-smoke)
    set_tests_properties(example.colorize.apply_tiny PROPERTIES
      DEPENDS "example.colorize.train_l2_tiny;example.colorize.resume_tiny" PASS_REGULAR_EXPRESSION "colored 3 images")
  endif()
  marrow_expect_exit(example.colorize.unknown_loss 2 "--loss: expected l2, smooth_l1 or classify" colorize train --loss l3)
  marrow_expect_exit(example.colorize.unknown_preset 2 "--preset" colorize train --preset huge)
  marrow_expect_exit(example.colorize.bad_size 2 "--image-size: must be a positive multiple of 16" colorize train --image-size 40)
  marrow_expect_exit(example.colorize.no_input 2 "--input is required" colorize apply --ckpt x.safetensors)
  marrow_expect_exit(example.colorize.missing_ckpt 1 "no checkpoint at /nonexistent" colorize eval --ckpt /nonexistent/c.safetensors)
  marrow_expect_exit(example.colorize.missing_data 1 "'/nonexistent/data' is not a directory" colorize train --data /nonexistent/data)
endif()
