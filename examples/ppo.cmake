# Smoke tests of the ppo binary: a tiny training run, eval of its checkpoint, a short run
# that must learn, and bad usage.
if(MARROW_BUILD_TESTS)
  add_test(NAME example.ppo.train_tiny
    COMMAND ppo train --env CartPole-v1 --steps 2048 --out ${CMAKE_CURRENT_BINARY_DIR}/runs/ppo-smoke --threads 1)
  add_test(NAME example.ppo.eval_tiny
    COMMAND ppo eval --ckpt ${CMAKE_CURRENT_BINARY_DIR}/runs/ppo-smoke/checkpoint.safetensors --episodes 3)
  set_tests_properties(example.ppo.eval_tiny PROPERTIES DEPENDS example.ppo.train_tiny)
  add_test(NAME example.ppo.continuous_tiny
    COMMAND ppo train --env Pendulum-v1 --steps 4096 --out ${CMAKE_CURRENT_BINARY_DIR}/runs/ppo-pendulum-smoke --threads 1)
  # CartPole's default recipe at a quarter of its budget: the mean of the last 20 episodes passes 100.
  marrow_expect_exit(example.ppo.cartpole_learns 0 "\"mean_return_last20\":([1-4][0-9][0-9]|500)[,.]"
    ppo train --env CartPole-v1 --steps 25000 --threads 1 --out ${CMAKE_CURRENT_BINARY_DIR}/runs/ppo-learns)
  marrow_expect_exit(example.ppo.unknown_flag 2 "--bogus" ppo train --bogus 1)
  marrow_expect_exit(example.ppo.no_data_flag 2 "unknown flag --data" ppo train --data x)
  marrow_expect_exit(example.ppo.unknown_env 2 "unknown environment" ppo train --env Nope-v0)
  marrow_expect_exit(example.ppo.negative_size 2 "--num-envs" ppo train --num-envs -3)
  marrow_expect_exit(example.ppo.missing_ckpt 1 "nonexistent" ppo eval --ckpt /nonexistent/ckpt.safetensors)
endif()
