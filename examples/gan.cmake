# Smoke tests of the gan binary: tiny training runs of the default recipe and of
# the plain DCGAN (--preset dcgan), one scored through the tiny classifier of
# mnist_classifier.cmake, sampling checkpoints to IDX3, scoring that file and the
# real test digits, and bad usage. The data-dependent ones run on the smoke digits
# (examples/CMakeLists.txt) and are registered only when those can be written.
if(MARROW_BUILD_TESTS)
  set(MARROW_GAN_SMOKE ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-smoke)
  set(MARROW_GAN_CLF ${CMAKE_CURRENT_BINARY_DIR}/runs/mnist-classifier-smoke/checkpoint.safetensors)
  if(MARROW_SMOKE_DIGITS)
    add_test(NAME example.gan.train_tiny
      COMMAND gan train --data ${MARROW_SMOKE_DIGITS}
              --preset dcgan --epochs 0 --steps 20 --eval-samples 200 --log-every 5 --threads 1
              --instance-noise 0.1 --label-smoothing 0.1 --classifier ${MARROW_GAN_CLF} --out ${MARROW_GAN_SMOKE})
    set_tests_properties(example.gan.train_tiny PROPERTIES DEPENDS example.mnist_classifier.train_tiny
      PASS_REGULAR_EXPRESSION "\"fid\":[0-9]")
    add_test(NAME example.gan.hinge_tiny
      COMMAND gan train --data ${MARROW_SMOKE_DIGITS}
              --preset dcgan --epochs 0 --steps 5 --loss hinge --ttur --d-dropout 0.3 --eval-samples 50 --threads 1
              --classifier /nonexistent/none.safetensors --out ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-hinge-smoke)
    # The plain DCGAN with PacGAN packing and the averaged generator, then sampling from that average;
    # explicit flags win over the preset's.
    add_test(NAME example.gan.pack_average_tiny
      COMMAND gan train --data ${MARROW_SMOKE_DIGITS}
              --preset dcgan --epochs 0 --steps 6 --pack 2 --g-avg --batch 32 --eval-samples 50 --threads 1
              --classifier /nonexistent/none.safetensors --out ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-pack-smoke)
    set_tests_properties(example.gan.pack_average_tiny PROPERTIES PASS_REGULAR_EXPRESSION
      "\"preset\":\"dcgan\",[^}]*\"batch\":32,[^}]*\"d-batchnorm\":true,[^}]*\"g-refine\":0,[^}]*\"pack\":2,\"g-avg\":true,[^}]*\"clusters\":0")
    add_test(NAME example.gan.sample_average_tiny
      COMMAND gan sample --ckpt ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-pack-smoke/checkpoint.safetensors --n 20 --threads 1
              --out ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-pack-smoke/samples-idx3-ubyte)
    set_tests_properties(example.gan.sample_average_tiny PROPERTIES DEPENDS example.gan.pack_average_tiny
      PASS_REGULAR_EXPRESSION "wrote 20 samples")
    # The default recipe (fewer clusters): conditioned on k-means clusters of the training images
    # (no labels), sampled from the checkpoint's cluster frequencies; and on the dataset's labels.
    add_test(NAME example.gan.clusters_tiny
      COMMAND gan train --data ${MARROW_SMOKE_DIGITS}
              --epochs 0 --steps 6 --clusters 5 --eval-samples 50 --threads 1
              --classifier /nonexistent/none.safetensors --out ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-clusters-smoke)
    set_tests_properties(example.gan.clusters_tiny PROPERTIES PASS_REGULAR_EXPRESSION
      "\"preset\":\"selfcond\",[^}]*\"batch\":16,[^}]*\"d-batchnorm\":false,[^}]*\"g-refine\":2,[^}]*\"pack\":2,\"g-avg\":true,[^}]*\"max-minutes\":20[^}]*}.*\"conditioning\":{\"conditioning\":\"kmeans\",\"classes\":5")
    add_test(NAME example.gan.sample_clusters_tiny
      COMMAND gan sample --ckpt ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-clusters-smoke/checkpoint.safetensors --n 20
              --threads 1 --out ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-clusters-smoke/samples-idx3-ubyte)
    set_tests_properties(example.gan.sample_clusters_tiny PROPERTIES DEPENDS example.gan.clusters_tiny
      PASS_REGULAR_EXPRESSION "wrote 20 samples")
    add_test(NAME example.gan.class_labels_tiny
      COMMAND gan train --data ${MARROW_SMOKE_DIGITS}
              --epochs 0 --steps 4 --class-labels --eval-samples 50 --threads 1
              --classifier /nonexistent/none.safetensors --out ${CMAKE_CURRENT_BINARY_DIR}/runs/gan-labels-smoke)
    set_tests_properties(example.gan.class_labels_tiny PROPERTIES PASS_REGULAR_EXPRESSION "\"conditioning\":\"labels\",\"classes\":10")
    add_test(NAME example.gan.sample_tiny
      COMMAND gan sample --ckpt ${MARROW_GAN_SMOKE}/checkpoint.safetensors --n 100 --threads 1
              --out ${MARROW_GAN_SMOKE}/samples-idx3-ubyte)
    set_tests_properties(example.gan.sample_tiny PROPERTIES DEPENDS example.gan.train_tiny)
    add_test(NAME example.gan.score_tiny
      COMMAND gan score --data ${MARROW_SMOKE_DIGITS}
              --samples ${MARROW_GAN_SMOKE}/samples-idx3-ubyte --classifier ${MARROW_GAN_CLF} --threads 1)
    set_tests_properties(example.gan.score_tiny PROPERTIES DEPENDS "example.gan.sample_tiny;example.mnist_classifier.train_tiny"
      PASS_REGULAR_EXPRESSION "FID [0-9.]+")
    add_test(NAME example.gan.score_real_digits
      COMMAND gan score --data ${MARROW_SMOKE_DIGITS}
              --samples ${MARROW_SMOKE_DIGITS}/t10k-images-idx3-ubyte.gz --classifier ${MARROW_GAN_CLF} --threads 1)
    set_tests_properties(example.gan.score_real_digits PROPERTIES DEPENDS example.mnist_classifier.train_tiny
      PASS_REGULAR_EXPRESSION "score [0-9.]+")
    marrow_expect_exit(example.gan.missing_classifier 1 "no classifier checkpoint" gan score
      --data ${MARROW_SMOKE_DIGITS} --samples ${MARROW_SMOKE_DIGITS}/t10k-images-idx3-ubyte.gz --classifier /nonexistent/clf.safetensors)
    marrow_expect_exit(example.gan.labels_not_images 1 "not an IDX3 ubyte image file" gan score
      --data ${MARROW_SMOKE_DIGITS} --samples ${MARROW_SMOKE_DIGITS}/t10k-labels-idx1-ubyte.gz --classifier ${MARROW_GAN_CLF})
    set_tests_properties(example.gan.train_tiny example.gan.hinge_tiny example.gan.pack_average_tiny
      example.gan.sample_average_tiny example.gan.clusters_tiny example.gan.sample_clusters_tiny
      example.gan.class_labels_tiny example.gan.sample_tiny example.gan.score_tiny
      example.gan.score_real_digits example.gan.missing_classifier example.gan.labels_not_images
      PROPERTIES FIXTURES_REQUIRED smoke_digits)
  endif()
  marrow_expect_exit(example.gan.unknown_flag 2 "--bogus" gan train --bogus 1)
  marrow_expect_exit(example.gan.batch_not_packs 2 "--batch 63 must be a multiple of --pack 2" gan train --batch 63 --pack 2)
  marrow_expect_exit(example.gan.unknown_preset 2 "--preset: expected selfcond or dcgan, got 'wgan'" gan train
    --preset wgan)
  marrow_expect_exit(example.gan.unknown_loss 2 "unknown GAN loss 'wgan'" gan train --loss wgan)
  marrow_expect_exit(example.gan.labels_and_clusters 2 "--class-labels and --clusters exclude each other" gan train
    --class-labels --clusters 10)
  marrow_expect_exit(example.gan.score_needs_samples 2 "--samples FILE is required" gan score)
  marrow_expect_exit(example.gan.sample_needs_out 2 "--out FILE" gan sample --n 10)
  marrow_expect_exit(example.gan.missing_ckpt 1 "nonexistent" gan sample --ckpt /nonexistent/g.safetensors --out /tmp/x-idx3-ubyte)
endif()
