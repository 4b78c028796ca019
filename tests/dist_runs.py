#!/usr/bin/env python3
"""Data-parallel training gives the bits of one process (issue 23's acceptance 1 and 2).

    dist_runs.py --mpiexec MPIEXEC --out DIR --stop-at H -- BINARY train FLAGS...

runs one short training command several ways and compares the final
checkpoints tensor by tensor (the metadata differs: it records the flags):

  one process, --shards 2                     the reference
  mpirun -np 2, twice                         each equal to the reference
  mpirun -np 2 --stop-at H, then one process
    --shards 2 --resume                       equal to the reference (resume at another count)
  one process, --shards 4                     the K = 4 reference
  mpirun -np 4 --stop-at H, then mpirun -np 2
    --shards 4 --resume                       equal to the K = 4 reference

FLAGS must not contain --out, --shards, --stop-at or --resume. Exit 0 when every
comparison holds, 1 naming the first tensor that differs.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys


def tensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = blob[8 + n:]
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}, meta


def same(a, b, what):
    ta, ma = tensors(a)
    tb, mb = tensors(b)
    if ma.get("step") != mb.get("step"):
        sys.exit(f"dist_runs: {what}: step {ma.get('step')} vs {mb.get('step')}")
    if ta.keys() != tb.keys():
        sys.exit(f"dist_runs: {what}: tensor names differ: {sorted(ta.keys() ^ tb.keys())[:5]}")
    for k in ta:
        if ta[k] != tb[k]:
            sys.exit(f"dist_runs: {what}: tensor {k} differs ({a} vs {b})")
    print(f"dist_runs: {what}: {len(ta)} tensors identical at step {ma.get('step')}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-at", type=int, required=True)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    shutil.rmtree(a.out, ignore_errors=True)
    os.makedirs(a.out)
    mpi = [a.mpiexec, "--oversubscribe", "--bind-to", "none", "-np"]

    def run(name, prefix, *extra):
        out = os.path.join(a.out, name)
        argv = prefix + cmd + ["--out", out] + list(extra)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        if r.returncode != 0:
            sys.exit(f"dist_runs: {name}: exit {r.returncode}: {' '.join(argv)}\n{r.stdout[-3000:]}")
        return os.path.join(out, "checkpoint.safetensors")

    ref = run("np1-k2", [], "--shards", "2")
    same(ref, run("np2-a", mpi + ["2"]), "mpirun -np 2 vs one process --shards 2")
    same(ref, run("np2-b", mpi + ["2"]), "a second mpirun -np 2")
    run("np2-then-np1", mpi + ["2"], "--stop-at", str(a.stop_at))
    same(ref, run("np2-then-np1", [], "--shards", "2", "--resume"),
         f"-np 2 to step {a.stop_at}, resumed in one process")
    ref4 = run("np1-k4", [], "--shards", "4")
    run("np4-then-np2", mpi + ["4"], "--shards", "4", "--stop-at", str(a.stop_at))
    same(ref4, run("np4-then-np2", mpi + ["2"], "--shards", "4", "--resume"),
         f"-np 4 (K = 4) to step {a.stop_at}, resumed at -np 2 vs one process --shards 4")


if __name__ == "__main__":
    main()
