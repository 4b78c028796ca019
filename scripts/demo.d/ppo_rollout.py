#!/usr/bin/env python3
"""Play one CartPole-v1 episode with a ppo checkpoint's deterministic policy.

    ppo_rollout.py CHECKPOINT OUT.json [--seed 0]

Reads the safetensors file directly (JSON header + little-endian float32), runs
the actor MLP (tanh, tanh, linear; argmax) in plain Python and steps the same
equations as include/marrow/rl/cartpole.hpp. Writes the trajectory, so the
report can draw the pole's final state and its angle over time.
"""
import argparse
import array
import json
import math
import random
import struct
import sys


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        if t["dtype"] not in ("F32", "F64"):
            continue
        a, b = t["data_offsets"]
        arr = array.array("f" if t["dtype"] == "F32" else "d")
        arr.frombytes(blob[a:b])
        if sys.byteorder != "little":
            arr.byteswap()
        tensors[name] = (t["shape"], list(arr))
    return tensors, meta


def linear(t, prefix, x):
    (out_f, in_f), w = t[prefix + ".weight"]
    b = t[prefix + ".bias"][1] if prefix + ".bias" in t else [0.0] * out_f
    return [b[o] + sum(w[o * in_f + i] * x[i] for i in range(in_f)) for o in range(out_f)]


def find(t, suffix):
    for k in t:
        if k.endswith(suffix):
            return k[: -len(suffix)]
    sys.exit(f"ppo_rollout: no tensor ending in '{suffix}' (not a ppo checkpoint?)")


class CartPole:  # include/marrow/rl/cartpole.hpp, step for step
    g, mc, mp, half_len, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_max, x_max, max_steps = 12 * 2 * math.pi / 360, 2.4, 500

    def __init__(self, rng):
        self.s = [rng.uniform(-0.05, 0.05) for _ in range(4)]
        self.steps = 0

    def step(self, action):
        x, x_dot, th, th_dot = self.s
        total, pml = self.mc + self.mp, self.mp * self.half_len
        force = self.force_mag if action >= 0.5 else -self.force_mag
        c, s = math.cos(th), math.sin(th)
        temp = (force + pml * th_dot * th_dot * s) / total
        thacc = (self.g * s - c * temp) / (self.half_len * (4.0 / 3.0 - self.mp * c * c / total))
        xacc = temp - pml * thacc * c / total
        self.s = [x + self.tau * x_dot, x_dot + self.tau * xacc, th + self.tau * th_dot, th_dot + self.tau * thacc]
        self.steps += 1
        x, _, th, _ = self.s
        terminated = abs(x) > self.x_max or abs(th) > self.theta_max
        return terminated, (not terminated and self.steps >= self.max_steps)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t, meta = load_safetensors(a.ckpt)
    config = json.loads(meta.get("config", "{}") or "{}")
    env = config.get("env", "CartPole-v1")
    if env != "CartPole-v1":
        sys.exit(f"ppo_rollout: only CartPole-v1 is drawn, the checkpoint is {env}")
    p = find(t, "actor.0.weight")
    norm = bool(config.get("norm-obs", False))
    mean = t.get(p + "obs_rms.mean", (None, [0.0] * 4))[1]
    var = t.get(p + "obs_rms.var", (None, [1.0] * 4))[1]
    cart = CartPole(random.Random(a.seed))
    traj, ret = [list(cart.s)], 0.0
    while True:
        x = cart.s
        if norm:
            x = [max(-10.0, min(10.0, (v - m) / math.sqrt(s2 + 1e-8))) for v, m, s2 in zip(x, mean, var)]
        h = [math.tanh(v) for v in linear(t, p + "actor.0", x)]
        h = [math.tanh(v) for v in linear(t, p + "actor.1", h)]
        logits = linear(t, p + "actor.2", h)
        action = max(range(len(logits)), key=lambda i: logits[i])
        terminated, truncated = cart.step(action)
        ret += 1.0
        traj.append(list(cart.s))
        if terminated or truncated:
            break
    with open(a.out, "w") as f:
        json.dump({"env": env, "return": ret, "steps": cart.steps, "terminated": terminated,
                   "x_threshold": CartPole.x_max, "theta_threshold": CartPole.theta_max,
                   "trajectory": traj}, f)
    print(f"ppo_rollout: {env} episode of {cart.steps} steps, return {ret:.0f}"
          f" ({'pole fell or cart left the track' if terminated else 'time limit reached'})")


if __name__ == "__main__":
    main()
