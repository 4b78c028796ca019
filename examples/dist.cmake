# Data parallelism end to end (issue 23): each training binary's short run in one
# process with --shards 2, under mpirun -np 2 (twice), resumed across process
# counts, and with K = 4 on four processes, must end with identical checkpoints
# (tests/dist_runs.py). Open MPI as root (CI containers) wants its two variables, and
# shared memory without the single-copy mechanism that containers often forbid.
if(MARROW_BUILD_TESTS AND MARROW_MPI AND Python3_FOUND)
  set(_dist_env "OMP_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_btl=self,vader,tcp;OMPI_MCA_btl_vader_single_copy_mechanism=none")
  set(_dist_runs ${CMAKE_CURRENT_BINARY_DIR}/runs/dist)
  set(_shared ${PROJECT_SOURCE_DIR}/../shared/data)
  # marrow_dist_runs(<binary> <stop-at step> <train flags...>)
  function(marrow_dist_runs binary stop_at)
    add_test(NAME dist.runs.${binary}
      COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/dist_runs.py --mpiexec ${MPIEXEC_EXECUTABLE}
              --out ${_dist_runs}/${binary} --stop-at ${stop_at} -- $<TARGET_FILE:${binary}> train ${ARGN} --threads 1)
    set_tests_properties(dist.runs.${binary} PROPERTIES TIMEOUT 300 ENVIRONMENT "${_dist_env}")
  endfunction()

  marrow_dist_runs(charformer 5 --data ${PROJECT_SOURCE_DIR}/LICENSE --steps 12 --eval-interval 6 --eval-iters 2
                   --batch-size 8 --block-size 32 --n-layer 2 --n-embd 64 --n-head 4 --dropout 0.1)
  if(MARROW_SMOKE_DIGITS)
    marrow_dist_runs(mnist_classifier 5 --data ${MARROW_SMOKE_DIGITS} --epochs 0 --steps 12 --batch 32 --log-every 4)
    marrow_dist_runs(gan 3 --data ${MARROW_SMOKE_DIGITS} --epochs 0 --steps 6 --batch 32 --eval-samples 50
                     --classifier /nonexistent/none.safetensors)
    set_tests_properties(dist.runs.mnist_classifier dist.runs.gan PROPERTIES FIXTURES_REQUIRED smoke_digits)
  endif()
  if(EXISTS ${_shared}/membrane/train/image/0.png)
    marrow_dist_runs(unet 4 --data ${_shared}/membrane --width 4 --depth 2 --crop 64 --batch 4 --steps 6
                     --eval-interval 3 --loss ce+dice)
  endif()
  # Pendulum's preset normalizes observations and rewards, the parts of a rollout the ranks
  # combine; its 4 environments give K = 4 one each.
  marrow_dist_runs(ppo 4 --env Pendulum-v1 --steps 8192 --num-steps 256)
  if(EXISTS ${_shared}/cifar10-jpg/train)
    marrow_dist_runs(colorize 3 --data ${_shared}/cifar10-jpg --loss classify --max-per-class 10 --steps 6 --batch 8
                     --test-images 3 --eval-every 3 --eval-images 10 --log-every 2 --minutes 0)
  endif()
endif()

# Faults (tests/dist_faults.py): a rank SIGKILLed mid-run or mid-write stops the job
# within 10 s, leaves no process, a loadable checkpoint and a bitwise resume; a rank
# with another configuration stops the job with a message naming it.
if(MARROW_BUILD_TESTS AND MARROW_MPI AND Python3_FOUND)
  add_test(NAME dist.faults.charformer
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tests/dist_faults.py --mpiexec ${MPIEXEC_EXECUTABLE}
            --out ${_dist_runs}/faults --charformer $<TARGET_FILE:charformer> --data ${PROJECT_SOURCE_DIR}/LICENSE)
  set_tests_properties(dist.faults.charformer PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE ENVIRONMENT "${_dist_env}")
endif()
