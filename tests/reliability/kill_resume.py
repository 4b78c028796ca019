#!/usr/bin/env python3
"""Kill a tiny training run at random moments, resume it each time, and check
that nothing is lost.

  kill_resume.py --binary unet --signal KILL --kills 20 [--seed 7]

SIGKILL: after each kill every *.safetensors in the run folder must parse
(header, offsets, every tensor present with the reference shapes) - a kill in
the middle of a checkpoint write may leave only a stale *.tmp beside it. The
run is then resumed with --resume (or restarted when no checkpoint exists yet).
SIGINT: the binary must save, say so, and exit by itself (not die of the signal).
At the end the run is completed and every tensor of its checkpoint (weights,
optimizer moments, RNG states) must be bitwise equal to an uninterrupted run
with the same seed. Exit 0 on success, 1 on failure, 77 when skipped.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="unet")
    ap.add_argument("--signal", default="KILL", choices=["KILL", "INT"])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--steps", type=int, default=0, help="training steps (0: the binary's tiny default x 2)")
    args = ap.parse_args()
    name = args.binary
    b, why = rel.available(name)
    if not b:
        rel.skip(why)
    # SIGINT saves at every signal, so its runs progress faster: give them more steps.
    steps = args.steps or rel.TINY[name]["steps"] * (4 if args.signal == "KILL" else 12)
    sig = signal.SIGKILL if args.signal == "KILL" else signal.SIGINT

    ref = rel.tmpdir(name + "_ref")
    t0 = time.time()
    p = subprocess.Popen(rel.tiny_cmd(name, ref, steps=steps), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    t_startup = None  # until the first metrics line: data loading and model construction
    while p.poll() is None:
        if t_startup is None and os.path.exists(os.path.join(ref, "metrics.jsonl")) and \
                os.path.getsize(os.path.join(ref, "metrics.jsonl")) > 0:
            t_startup = time.time() - t0
        time.sleep(0.005)
    t_ref = time.time() - t0
    t_startup = t_startup or t_ref / 2
    if p.returncode != 0:
        print(p.stderr.read()[-2000:])
        print("FAIL: the uninterrupted reference run exited %d" % p.returncode)
        return 1
    ckpt_name = "checkpoint.safetensors"
    ref_t, _ = rel.read_safetensors(os.path.join(ref, ckpt_name))
    print("reference run: %d steps in %.1f s (%.1f s to the first step)" % (steps, t_ref, t_startup))

    out = rel.tmpdir(name + "_" + args.signal.lower())
    rng = random.Random(args.seed)
    failures, during_write, kills, finished_early = [], 0, 0, 0
    log = open(os.path.join(out, "..", os.path.basename(out) + ".log"), "w")
    for k in range(args.kills):
        resume = os.path.exists(os.path.join(out, ckpt_name))
        cmd = rel.tiny_cmd(name, out, steps=steps, extra=["--resume"] if resume else [])
        # Moments spread over a whole run, start-up (data loading) and checkpoint writes included.
        # (SIGINT runs keep their progress, so their moments come sooner to fit 20 into one run.)
        if args.signal == "KILL":
            delay = rng.uniform(0.02, max(0.1, t_ref * 0.6))
        else:  # one in four during start-up, the rest a little way into training
            delay = rng.uniform(0.02, t_startup) if k % 4 == 0 else t_startup + rng.uniform(0, (t_ref - t_startup) / 8)
        t_launch = time.time()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True)
        tmp = os.path.join(out, ckpt_name + ".tmp")

        def fresh_tmp():  # a .tmp this process is writing (a stale one from an earlier kill does not count)
            try:
                return os.path.getmtime(tmp) >= t_launch - 0.01
            except OSError:
                return False

        if k % 3 == 2 and args.signal == "KILL":
            # Every third kill aims at a checkpoint write: as soon as the .tmp file appears.
            t_start = time.time()
            while p.poll() is None and not fresh_tmp() and time.time() - t_start < t_ref * 2:
                time.sleep(0.0002)
            delay = time.time() - t_start
        else:
            try:
                p.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is not None:
            finished_early += 1
            p.stderr.close()
            print("  #%2d: run finished before the signal (%.2f s), exit %d" % (k, delay, p.returncode))
            if p.returncode != 0:
                failures.append("run %d exited %d without a signal" % (k, p.returncode))
            continue
        tmp_present_before = fresh_tmp()
        p.send_signal(sig)
        err = p.communicate(timeout=300)[1]
        kills += 1
        tmp_left = fresh_tmp()
        if tmp_present_before or (sig == signal.SIGKILL and tmp_left):
            during_write += 1
        note = ""
        if sig == signal.SIGKILL:
            # SIGKILL cannot be caught, so exit 0 means the run ended between poll() and the signal
            # (a resumed run with little left to do): it finished first, which is no failure.
            if p.returncode == 0:
                finished_early += 1
                note = " (the run had already finished its steps: exit 0)"
            elif p.returncode != -signal.SIGKILL:
                failures.append("kill %d: exit %d, expected death by SIGKILL" % (k, p.returncode))
        else:
            if p.returncode == -signal.SIGINT:
                note = " (signal arrived before the handler was installed: default action)"
            elif p.returncode == 0:
                note = " (the run had already finished its steps: exit 0)"
            elif "interrupted" not in err and "interrupted" not in open(log.name).read()[-4000:]:
                failures.append("SIGINT %d: exit %d without an 'interrupted' message" % (k, p.returncode))
            else:
                note = " (saved and exited %d)" % p.returncode
        # Every checkpoint on disk must load, whatever the moment of the kill.
        for fn in sorted(os.listdir(out)):
            if not fn.endswith(".safetensors"):
                continue
            try:
                t, meta = rel.read_safetensors(os.path.join(out, fn))
                bad = [n for n in ref_t if n not in t or t[n][:2] != ref_t[n][:2]]
                if bad:
                    failures.append("after signal %d: %s lacks or misshapes %s" % (k, fn, bad[:3]))
                step = meta.get("step", "?")
            except Exception as e:  # noqa: BLE001 - any failure to parse is the finding
                failures.append("after signal %d: %s does not load: %s" % (k, fn, e))
                step = "unreadable"
        print("  #%2d: %s at %.2f s%s, checkpoint step %s%s" % (
            k, args.signal, delay, " (during a checkpoint write)" if tmp_left or tmp_present_before else "",
            step if os.path.exists(os.path.join(out, ckpt_name)) else "none", note))
    # Finish the run.
    resume = os.path.exists(os.path.join(out, ckpt_name))
    r = rel.run(rel.tiny_cmd(name, out, steps=steps, extra=["--resume"] if resume else []))
    if r.returncode != 0:
        failures.append("final resumed run exited %d: %s" % (r.returncode, r.stderr[-500:]))
    else:
        got, meta = rel.read_safetensors(os.path.join(out, ckpt_name))
        diff = rel.diff_tensors(ref_t, got)
        if diff:
            failures.append("final checkpoint differs from the uninterrupted run in %d tensors: %s"
                            % (len(diff), diff[:5]))
    print("%s: %d signals (%d during a checkpoint write), %d runs finished first, final weights %s" % (
        name, kills, during_write, finished_early, "bitwise equal" if not failures else "CHECK FAILURES"))
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
