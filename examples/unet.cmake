# Smoke tests of the unet binary: a tiny training run on the membrane slices, its
# resumption, eval and predict of its checkpoint (at the threshold training chose),
# a step of the bench, and bad usage.
# The data-dependent ones are skipped (not defined) where ../shared/data/membrane is absent.
if(MARROW_BUILD_TESTS)
  set(UNET_DATA ${PROJECT_SOURCE_DIR}/../shared/data/membrane)
  set(UNET_RUN ${CMAKE_CURRENT_BINARY_DIR}/runs/unet-smoke)
  set(UNET_TINY --width 4 --depth 2 --crop 64 --batch 2 --threads 1)
  if(EXISTS ${UNET_DATA}/train/image/0.png)
    add_test(NAME example.unet.train_tiny
      COMMAND unet train ${UNET_TINY} --steps 4 --eval-interval 2 --loss ce+dice --out ${UNET_RUN})
    add_test(NAME example.unet.resume_tiny
      COMMAND unet train ${UNET_TINY} --steps 6 --eval-interval 2 --loss ce+dice --out ${UNET_RUN} --resume)
    set_tests_properties(example.unet.resume_tiny PROPERTIES DEPENDS example.unet.train_tiny)
    add_test(NAME example.unet.eval_tiny
      COMMAND unet eval --ckpt ${UNET_RUN}/checkpoint.safetensors --threads 1)
    set_tests_properties(example.unet.eval_tiny PROPERTIES DEPENDS example.unet.resume_tiny
                         PASS_REGULAR_EXPRESSION "v_rand_best")
    add_test(NAME example.unet.predict_tiny
      COMMAND unet predict --ckpt ${UNET_RUN}/checkpoint.safetensors --input ${UNET_DATA}/test/0.png
              --out ${UNET_RUN}/pred --threads 1)
    set_tests_properties(example.unet.predict_tiny PROPERTIES DEPENDS example.unet.resume_tiny
                         PASS_REGULAR_EXPRESSION "0-mask.png, 0-overlay.png \\(512x512\\)")
    add_test(NAME example.unet.threshold_tiny
      COMMAND ${CMAKE_COMMAND} -DUNET=$<TARGET_FILE:unet> -DRUN=${UNET_RUN} -DIMAGE=${UNET_DATA}/test/0.png
              -P ${CMAKE_CURRENT_SOURCE_DIR}/unet_threshold_check.cmake)
    set_tests_properties(example.unet.threshold_tiny PROPERTIES DEPENDS example.unet.resume_tiny)
    add_test(NAME example.unet.valid_padding_tiny
      COMMAND unet train --width 2 --depth 2 --padding valid --crop 60 --batch 1 --threads 1 --steps 2
              --no-elastic --eval-interval 0 --out ${UNET_RUN}-valid)
  endif()
  add_test(NAME example.unet.bench_tiny
    COMMAND unet bench ${UNET_TINY} --steps 2 --out ${CMAKE_CURRENT_BINARY_DIR}/runs/unet-bench)
  marrow_expect_exit(example.unet.unknown_flag 2 "--bogus" unet train --bogus 1)
  marrow_expect_exit(example.unet.bad_loss 2 "--loss: expected ce, dice or ce\\+dice" unet train --loss focal)
  marrow_expect_exit(example.unet.bad_padding 2 "--padding" unet bench --padding reflect)
  marrow_expect_exit(example.unet.threshold_for_train 2 "--threshold is for predict and eval" unet train --threshold 0.3)
  marrow_expect_exit(example.unet.predict_no_input 2 "--input" unet predict --ckpt x.safetensors)
  marrow_expect_exit(example.unet.missing_ckpt 1 "nonexistent" unet eval --ckpt /nonexistent/unet.safetensors)
  marrow_expect_exit(example.unet.missing_data 1 "no train/image" unet train --data /nonexistent --steps 1)
endif()
