#!/usr/bin/env python3
"""A data-parallel run survives losing a process (issue 23's acceptance 3).

    dist_faults.py --mpiexec MPIEXEC --out DIR --charformer BINARY --data TEXT [--trials N]

With charformer writing a checkpoint at every step (so that a kill often lands
inside a write), each trial starts `mpirun -np 2`, waits a random moment after the
first checkpoint, and SIGKILLs one rank: rank 1, or in odd trials rank 0, the
writer, as soon as its temporary file shows it is inside a checkpoint write.
Each trial must see:
  - mpirun exit non-zero within 10 s of the kill,
  - no process of the run left behind,
  - the checkpoint on disk load (charformer eval reads it),
  - resuming under mpirun -np 2 finish with the bits of an uninterrupted run.
Then a rank started with another configuration (MPMD: the same binary, one flag
different) must stop the job with a message naming the ranks within seconds.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from dist_runs import tensors  # the checkpoint reader beside it


def fail(msg):
    sys.exit("dist_faults: " + msg)


def ranks_of(out):
    """PIDs of the run's processes: every process whose command line names its --out."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if out.encode() in argv and b"mpirun" not in os.path.basename(argv[0]) and os.path.basename(argv[0]) != b"python3":
            pids.append(int(p))
    return sorted(pids)


def rank_env(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        return int(env.get(b"OMPI_COMM_WORLD_RANK", b"-1"))
    except OSError:
        return -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--charformer", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    random.seed(a.seed)
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    steps = 40
    flags = ["train", "--data", a.data, "--steps", str(steps), "--eval-interval", "1", "--eval-iters", "1",
             "--batch-size", "8", "--block-size", "32", "--n-layer", "2", "--n-embd", "64", "--n-head", "4",
             "--dropout", "0.1", "--threads", "1"]
    mpi = [a.mpiexec, "--oversubscribe", "--bind-to", "none", "-np", "2"]

    def run(argv, name):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        if r.returncode != 0:
            fail(f"{name}: exit {r.returncode}\n{r.stdout[-3000:]}")
        return r.stdout

    ref = os.path.join(a.out, "reference")
    run([a.charformer] + flags + ["--shards", "2", "--out", ref], "reference run")
    ref_tensors, _ = tensors(os.path.join(ref, "checkpoint.safetensors"))

    for trial in range(a.trials):
        out = os.path.join(a.out, f"trial{trial}")
        ckpt = os.path.join(out, "checkpoint.safetensors")
        job = subprocess.Popen(mpi + [a.charformer] + flags + ["--out", out], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        while not os.path.exists(ckpt):
            if job.poll() is not None:
                fail(f"trial {trial}: the run ended (exit {job.returncode}) before its first checkpoint\n"
                     + job.stdout.read()[-3000:])
            if time.time() - t0 > 120:
                job.kill()
                fail(f"trial {trial}: no checkpoint after 120 s")
            time.sleep(0.01)
        time.sleep(random.uniform(0.0, 0.3))
        victim_rank = 0 if trial % 2 == 1 else 1
        if victim_rank == 0:  # the writer, caught inside a write: its temporary file is there
            while not os.path.exists(ckpt + ".tmp") and job.poll() is None:
                pass
        victims = [p for p in ranks_of(out) if rank_env(p) == victim_rank]
        if not victims:
            job.wait(timeout=60)
            fail(f"trial {trial}: rank {victim_rank} not found (the run ended first? exit {job.returncode})")
        os.kill(victims[0], signal.SIGKILL)
        killed = time.time()
        mid_write = os.path.exists(ckpt + ".tmp")
        try:
            code = job.wait(timeout=30)
        except subprocess.TimeoutExpired:
            job.kill()
            fail(f"trial {trial}: mpirun still running 30 s after rank {victim_rank} was killed")
        took = time.time() - killed
        output = job.stdout.read()
        if code == 0:
            fail(f"trial {trial}: mpirun exited 0 after a rank was killed\n{output[-2000:]}")
        if took > 10:
            fail(f"trial {trial}: mpirun took {took:.1f} s to stop after the kill")
        time.sleep(0.2)
        left = ranks_of(out)
        if left:
            for p in left:
                os.kill(p, signal.SIGKILL)
            fail(f"trial {trial}: processes left behind: {left}")
        step = tensors(ckpt)[1].get("step")
        run([a.charformer, "eval", "--ckpt", ckpt, "--data", a.data, "--eval-iters", "1", "--threads", "1"],
            f"trial {trial}: loading the checkpoint left by the kill")
        run(mpi + [a.charformer] + flags + ["--out", out, "--resume"], f"trial {trial}: resume")
        got, meta = tensors(ckpt)
        if meta.get("step") != str(steps) or got != ref_tensors:
            diff = [k for k in ref_tensors if got.get(k) != ref_tensors[k]]
            fail(f"trial {trial}: resumed run (from step {step}) differs from the uninterrupted one: {diff[:5]}")
        print(f"dist_faults: trial {trial}: rank {victim_rank} killed at step {step}"
              f"{' inside a checkpoint write' if mid_write else ''}; mpirun exit {code} "
              f"{took:.2f} s later, nothing left behind, checkpoint loads, resume gives the uninterrupted bits")

    # Mismatched configuration: one rank with another learning rate.
    out = os.path.join(a.out, "mismatch")
    argv = [a.mpiexec, "--oversubscribe", "--bind-to", "none", "-np", "1", a.charformer] + flags + ["--out", out] + \
           [":", "-np", "1", a.charformer] + flags + ["--out", out, "--lr", "0.002"]
    t0 = time.time()
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        fail("mismatched configuration: still running after 60 s (a hang)")
    took = time.time() - t0
    if r.returncode == 0 or "started with another configuration" not in r.stdout or took > 30:
        fail(f"mismatched configuration: exit {r.returncode} after {took:.1f} s\n{r.stdout[-3000:]}")
    line = next(l for l in r.stdout.splitlines() if "another configuration" in l)
    print(f"dist_faults: mismatched configuration: exit {r.returncode} in {took:.1f} s: {line.strip()}")


if __name__ == "__main__":
    main()
