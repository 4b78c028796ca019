#!/usr/bin/env python3
"""Write OUT/index.html from what scripts/demo's stages left in OUT.

    report.py OUT

Reads OUT/demo.tsv (run times, command), and per stage OUT/<stage>/demo.tsv
(title, data set, commands, reference figures, wall time, exit status),
summary.json, metrics.jsonl and the PNGs the binaries drew. Draws the CartPole
pictures itself (SVG files, from ppo_rollout.py's trajectory). Standard library
only; every picture is a file beside the page, so the page works offline.
"""
import glob
import html
import json
import math
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone

STAGES = ["gpt", "ppo", "unet", "gan", "color"]
NAMES = {"gpt": "Character-level GPT", "ppo": "PPO", "unet": "U-Net", "gan": "DCGAN", "color": "Colorizer"}
# metric -> (label, unit, lower is better, digits)
METRICS = {
    "val_loss": ("validation loss", "nats/char", True, 3),
    "mean_return_last20": ("mean return, last 20 episodes", "", False, 1),
    "pixel_error": ("pixel error", "", True, 4),
    "v_rand": ("V-Rand", "", False, 4),
    "score": ("classifier score", "", False, 2),
    "psnr_db": ("PSNR", "dB", False, 2),
}
HEADLINE = {"gpt": ["val_loss"], "ppo": ["mean_return_last20"], "unet": ["pixel_error", "v_rand"], "gan": ["score"],
            "color": ["psnr_db"]}

CSS = """
:root { --bg:#f4f5f7; --card:#fff; --ink:#1d2330; --muted:#687083; --line:#e3e6ec; --accent:#3b6fd8;
        --good:#1f9d55; --warn:#c77c02; --bad:#c0392b; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
header { background:linear-gradient(120deg,#1d2b4f,#3b6fd8); color:#fff; padding:28px 40px 22px; }
header h1 { margin:0; font-size:28px; letter-spacing:.3px; }
header p { margin:4px 0 0; opacity:.85; }
main { max-width:1240px; margin:0 auto; padding:24px 28px 60px; }
.grid2 { display:grid; grid-template-columns:1.2fr 1fr; gap:20px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:20px 24px;
        margin:0 0 22px; box-shadow:0 1px 3px rgba(20,30,60,.05); }
.card h2 { margin:0; font-size:21px; }
.card h2 small { font-weight:400; color:var(--muted); font-size:15px; margin-left:8px; }
.card h3 { font-size:13px; text-transform:uppercase; letter-spacing:.8px; color:var(--muted); margin:18px 0 8px; }
.sub { color:var(--muted); margin:2px 0 12px; }
.headline { display:flex; flex-wrap:wrap; gap:14px; margin:12px 0 6px; }
.metric { border:1px solid var(--line); border-radius:10px; padding:10px 16px; min-width:220px; background:#fafbfc; }
.metric .v { font-size:28px; font-weight:650; }
.metric .l { color:var(--muted); font-size:13px; }
.metric .r { font-size:13px; margin-top:2px; }
.chips { display:flex; flex-wrap:wrap; gap:8px; margin:8px 0; }
.chip { background:#eef2fb; color:#28406f; border-radius:99px; padding:2px 11px; font-size:13px; }
.chip.fail { background:#fbe9e7; color:var(--bad); }
.pics { display:flex; flex-wrap:wrap; gap:14px; align-items:flex-start; }
figure { margin:0; background:#fafbfc; border:1px solid var(--line); border-radius:8px; padding:8px; }
figure img { display:block; max-width:100%; height:auto; image-rendering:auto; }
figure img.pix { image-rendering:pixelated; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:5px; max-width:520px; }
.w2 { flex:1 1 460px; max-width:600px; } .w3 { flex:1 1 300px; max-width:400px; }
.strip { display:flex; gap:10px; overflow-x:auto; padding-bottom:4px; }
.strip figure { flex:0 0 auto; } .strip img { width:200px; }
pre { background:#1e2430; color:#e6e9ef; padding:12px 14px; border-radius:8px; overflow-x:auto; font-size:12.5px;
      line-height:1.45; margin:6px 0; white-space:pre-wrap; word-break:break-word; }
pre.sample { max-height:330px; overflow-y:auto; margin:0; background:#fbf8f1; color:#2b2616; border:1px solid #eadfc4; font:14px/1.55 Georgia,"DejaVu Serif",serif; }
table { border-collapse:collapse; width:100%; font-size:14px; }
td, th { padding:5px 8px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { color:var(--muted); font-weight:500; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.bar { height:10px; background:var(--accent); border-radius:5px; min-width:2px; }
.hist { display:flex; align-items:flex-end; gap:4px; height:90px; padding:0 2px; }
.hist div { flex:1; background:#7d9be0; border-radius:3px 3px 0 0; position:relative; }
.hist span { position:absolute; bottom:-18px; left:0; right:0; text-align:center; font-size:11px; color:var(--muted); }
.good { color:var(--good); } .warn { color:var(--warn); } .bad { color:var(--bad); }
details summary { cursor:pointer; color:var(--accent); margin:10px 0 4px; }
.note { color:var(--muted); font-size:13px; }
nav { display:flex; gap:10px; flex-wrap:wrap; margin:14px 0 0; }
nav a { color:#fff; background:rgba(255,255,255,.14); padding:3px 12px; border-radius:99px; text-decoration:none; font-size:14px; }
@media (max-width:900px) { .grid2 { grid-template-columns:1fr; } main { padding:14px; } }
"""


def esc(s):
    return html.escape(str(s), quote=True)


def read_tsv(path):
    out = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("\t")
                if k:
                    out.setdefault(k, []).append(v)
    return out


def first(m, key, default=""):
    return m.get(key, [default])[0]


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def read_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def fmt_s(s):
    s = float(s)
    return f"{s:.0f} s" if s < 90 else f"{int(s // 60)} min {s % 60:02.0f} s"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1) if m else ""
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    osname = platform.platform()
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'PRETTY_NAME="?([^"\n]*)', f.read())
            osname = m.group(1) if m else osname
    except OSError:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    return [("CPU", cpu or platform.processor() or "unknown"), ("cores", str(os.cpu_count())), ("memory", mem),
            ("system", osname), ("compiler", sh("g++ --version | head -1")),
            ("commit", sh(f"git -C {here} rev-parse --short HEAD") or "–")]


def img(src, caption, cls="w3", pix=False):
    return (f'<figure class="{cls}"><img src="{esc(src)}" alt="{esc(caption)}"{" class=pix" if pix else ""}>'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def rel(out, path):
    return os.path.relpath(path, out).replace(os.sep, "/")


# ---- CartPole pictures (SVG files, so the page's <img> check covers them) -----------------------
def cartpole_svg(state, x_max, caption):
    W, H = 480, 230
    x, _, theta, _ = state
    sx = (W - 40) / (2 * x_max)
    cx, ground = W / 2 + x * sx, 170
    pole = 1.0 * sx  # the pole is 2 x half-length = 1 m long
    px, py = cx + pole * math.sin(theta), ground - 22 - pole * math.cos(theta)
    ok = abs(theta) < 0.2094 and abs(x) < x_max
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">
<rect width="{W}" height="{H}" fill="#f7f9fc"/>
<line x1="20" y1="{ground}" x2="{W - 20}" y2="{ground}" stroke="#8a93a6" stroke-width="2"/>
<line x1="20" y1="{ground - 8}" x2="20" y2="{ground + 8}" stroke="#c0392b" stroke-width="3"/>
<line x1="{W - 20}" y1="{ground - 8}" x2="{W - 20}" y2="{ground + 8}" stroke="#c0392b" stroke-width="3"/>
<rect x="{cx - 30:.1f}" y="{ground - 30}" width="60" height="24" rx="4" fill="#3b6fd8"/>
<circle cx="{cx - 18:.1f}" cy="{ground - 4}" r="5" fill="#1d2b4f"/><circle cx="{cx + 18:.1f}" cy="{ground - 4}" r="5" fill="#1d2b4f"/>
<line x1="{cx:.1f}" y1="{ground - 22}" x2="{px:.1f}" y2="{py:.1f}" stroke="{'#c77c02' if ok else '#c0392b'}" stroke-width="9" stroke-linecap="round"/>
<circle cx="{cx:.1f}" cy="{ground - 22}" r="4" fill="#1d2330"/>
<text x="{W / 2}" y="{H - 14}" font-family="sans-serif" font-size="14" text-anchor="middle" fill="#1d2330">{esc(caption)}</text>
<text x="24" y="24" font-family="monospace" font-size="12" fill="#687083">x = {x:+.3f} m   θ = {math.degrees(theta):+.2f}°</text>
</svg>"""


def trace_svg(traj, x_max, th_max):
    W, H, pad = 480, 230, 34
    n = max(len(traj) - 1, 1)

    def poly(idx, scale, color):
        pts = " ".join(f"{pad + (W - 2 * pad) * i / n:.1f},{H / 2 - (H / 2 - pad) * s[idx] / scale:.1f}"
                       for i, s in enumerate(traj))
        return f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6"/>'

    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">
<rect width="{W}" height="{H}" fill="#f7f9fc"/>
<line x1="{pad}" y1="{pad}" x2="{W - pad}" y2="{pad}" stroke="#e0b4ae" stroke-dasharray="4 3"/>
<line x1="{pad}" y1="{H - pad}" x2="{W - pad}" y2="{H - pad}" stroke="#e0b4ae" stroke-dasharray="4 3"/>
<line x1="{pad}" y1="{H / 2}" x2="{W - pad}" y2="{H / 2}" stroke="#c9ced8"/>
{poly(2, th_max, "#c77c02")}{poly(0, x_max, "#3b6fd8")}
<text x="{pad}" y="20" font-family="sans-serif" font-size="12" fill="#c77c02">pole angle / ±12° limit</text>
<text x="{W - pad}" y="20" font-family="sans-serif" font-size="12" fill="#3b6fd8" text-anchor="end">cart position / ±2.4 m limit</text>
<text x="{W / 2}" y="{H - 8}" font-family="sans-serif" font-size="12" fill="#687083" text-anchor="middle">time step 0 … {n}</text>
</svg>"""


def ppo_pictures(out, d):
    roll = read_json(os.path.join(d, "rollout.json"))
    traj = roll.get("trajectory")
    if not traj:
        return ""
    x_max, th_max = roll.get("x_threshold", 2.4), roll.get("theta_threshold", 0.2094)
    files = []
    for name, k, cap in (("cartpole_start.svg", 0, "start"),
                         ("cartpole_final.svg", len(traj) - 1, f"final state, step {len(traj) - 1}")):
        with open(os.path.join(d, name), "w") as f:
            f.write(cartpole_svg(traj[k], x_max, cap))
        files.append(name)
    with open(os.path.join(d, "cartpole_trace.svg"), "w") as f:
        f.write(trace_svg(traj, x_max, th_max))
    why = "time limit reached: balanced for the whole episode" if not roll.get("terminated") else "pole fell / cart left the track"
    s = "".join([img(rel(out, os.path.join(d, "cartpole_final.svg")),
                     f"One greedy episode of the final policy (drawn from its trajectory): return {roll.get('return', 0):.0f}, {why}."),
                 img(rel(out, os.path.join(d, "cartpole_trace.svg")), "Cart position and pole angle over that episode.")])
    return s


# ---- stage cards -----------------------------------------------------------------------------------
def headline(stage, m, summary):
    refs = {}
    for r in m.get("reference", []):
        parts = r.split(" ", 2)
        if len(parts) >= 2:
            refs[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    boxes = []
    for key in HEADLINE[stage]:
        label, unit, lower, digits = METRICS[key]
        v = summary.get(key)
        ref_v, ref_text = refs.get(key, ("-", ""))
        verdict = ""
        try:
            rv = float(ref_v)
            if isinstance(v, (int, float)):
                good = v <= rv if lower else v >= rv
                verdict = (f'<span class="good">✓ meets</span>' if good else f'<span class="warn">short of</span>')
                ref_line = f"{verdict} reference {rv:g} {esc(unit)} · {esc(ref_text)}"
            else:
                ref_line = f"reference {rv:g} · {esc(ref_text)}"
        except ValueError:
            ref_line = esc(ref_text) if ref_text else "no reference figure"
        boxes.append(f'<div class="metric"><div class="l">{esc(label)}</div>'
                     f'<div class="v">{fmt(v, digits)} <small style="font-size:14px">{esc(unit)}</small></div>'
                     f'<div class="r">{ref_line}</div></div>')
    return '<div class="headline">' + "".join(boxes) + "</div>"


def chips(summary, m, extra=()):
    items = list(extra)
    for k, label in (("params", "parameters"), ("steps", "steps"), ("env_steps", "env steps"),
                     ("ms_per_step", "ms / step"), ("tokens_per_s", "tokens / s"), ("sps", "env steps / s"),
                     ("peak_rss_mb", "peak RSS MB"), ("threads", "threads")):
        if k in summary and summary[k] is not None:
            v = summary[k]
            items.append(f"{label}: {fmt(v, 0 if k != 'ms_per_step' else 1)}")
    if m.get("wall_s"):
        items.append(f"stage wall time: {fmt_s(first(m, 'wall_s'))}")
    return '<div class="chips">' + "".join(f'<span class="chip">{esc(c)}</span>' for c in items) + "</div>"


def commands(m):
    used = "\n".join(m.get("cmd", []))
    full = "\n".join(m.get("full", []))
    s = ""
    if used:
        s += f"<details><summary>commands this demo ran</summary><pre>{esc(used)}</pre></details>"
    if full:
        s += f"<h3>Reproduce at full scale</h3><pre>{esc(full)}</pre>"
    return s


def pics(out, d, items, cls="w3"):
    s = ""
    for name, cap in items:
        p = os.path.join(d, name)
        if os.path.exists(p):
            s += img(rel(out, p), cap, cls, pix=name.startswith("samples") or "comparison" in name)
    return s


def body_gpt(out, d, summary):
    s = '<div class="pics">' + pics(out, d, [("loss.png", "Training loss (per step) and the train/val estimates.")], "w2")
    sample = ""
    try:
        with open(os.path.join(d, "sample.txt"), encoding="utf-8", errors="replace") as f:
            sample = f.read().strip()
    except OSError:
        pass
    if sample:
        s += ('<div class="w2" style="flex:1 1 460px"><h3 style="margin-top:0">Generated text (temperature 0.8, '
              f'top-k 200, KV cache)</h3><pre class="sample">{esc(sample)}</pre></div>')
    s += "</div>"
    extra = [f"bits/char: {fmt(summary.get('val_bits_per_char'), 3)}"] if "val_bits_per_char" in summary else []
    return s, extra


def body_ppo(out, d, summary):
    s = '<div class="pics">' + pics(out, d, [("learning_curve.png", "Episode return against environment steps.")], "w3")
    s += ppo_pictures(out, d) + "</div>"
    ev = ""
    try:
        with open(os.path.join(d, "eval.txt")) as f:
            ev = f.read().strip()
    except OSError:
        pass
    if ev:
        s += f"<h3>Evaluation</h3><pre>{esc(ev)}</pre>"
    extra = []
    if summary.get("steps_to_threshold"):
        extra.append(f"solved after {fmt(summary['steps_to_threshold'])} env steps")
    if "episodes" in summary:
        extra.append(f"episodes: {fmt(summary['episodes'])}")
    return s, extra


def body_unet(out, d, summary):
    items = [(os.path.basename(p), f"Held-out slice {re.sub(r'[^0-9]', '', os.path.basename(p))}: the prediction overlaid on the image.") for p in sorted(glob.glob(os.path.join(d, "val-*-overlay.png")))]
    items += [(os.path.basename(p).replace("-overlay", ""), "Cell probability (white: interior) of the same slice.")
              for p in sorted(glob.glob(os.path.join(d, "val-*-overlay.png")))]
    s = '<h3>Segmentation of held-out slices</h3><div class="pics">' + pics(out, d, items, "w3")
    for p in sorted(glob.glob(os.path.join(d, "test", "*-overlay.png"))):
        s += img(rel(out, p), f"Unlabelled test slice {os.path.basename(p).split('-')[0]}: overlay.", "w3")
    s += '</div><h3>Training</h3><div class="pics">'
    s += pics(out, d, [("loss.png", "Training loss (log scale)."),
                       ("validation.png", "Validation scores on the held-out slices during training.")], "w2")
    s += "</div>"
    extra = [f"{k.replace('_', ' ')}: {fmt(summary.get(k), 4)}" for k in ("v_info", "iou_membrane", "dice_membrane")
             if k in summary]
    return s, extra


def body_gan(out, d, summary):
    grids = sorted(glob.glob(os.path.join(d, "samples_epoch_*.png")))
    s = "<h3>The same 64 latent codes after each epoch</h3><div class=\"strip\">"
    for p in grids:
        ep = int(re.search(r"(\d+)", os.path.basename(p)).group(1))
        s += img(rel(out, p), f"epoch {ep}", "", pix=True)
    s += '</div><h3>Training</h3><div class="pics">'
    s += pics(out, d, [("losses.png", "Discriminator and generator losses."),
                       ("fid.png", "FID on the classifier's features, against the real train-vs-test FID."),
                       ("score.png", "Classifier score per epoch (10 = every class, confidently).")], "w3")
    s += "</div>"
    hist = summary.get("class_histogram")
    if isinstance(hist, list) and hist:
        top = max(hist) or 1
        bars = "".join(f'<div style="height:{90 * h / top:.0f}%" title="{h:.3f}"><span>{i}</span></div>'
                       for i, h in enumerate(hist))
        s += ('<h3>Classes of the generated samples (classifier\'s guess)</h3>'
              f'<div class="hist" style="max-width:420px">{bars}</div><div style="height:22px"></div>')
    clf = read_json(os.path.join(d, "classifier", "summary.json"))
    extra = []
    if "fid" in summary:
        extra.append(f"FID {fmt(summary.get('fid'), 2)} (train vs test: {fmt(summary.get('fid_train_vs_test'), 2)})")
    if "test_accuracy" in clf:
        acc = clf["test_accuracy"]
        acc = 100 * acc if isinstance(acc, (int, float)) and acc <= 1 else acc  # a fraction, shown as a percentage
        extra.append(f"yardstick LeNet test accuracy: {fmt(acc, 2)} %")
    if "min_class_fraction" in summary:
        extra.append(f"rarest class: {fmt(100 * summary['min_class_fraction'], 1)} %")
    return s, extra


def body_color(out, d, summary):
    s = '<h3>Grayscale input · ours · ground truth</h3><div class="pics">'
    s += pics(out, d, [("comparison.png", "Test images in triples: the gray input, our colorization, the truth.")], "w2")
    s += pics(out, d, [("learning_curve.png", "Color loss (Lab ab) during training.")], "w3") + "</div>"
    extra = [f"gray baseline PSNR: {fmt(summary.get('gray_psnr_db'), 2)} dB"] if "gray_psnr_db" in summary else []
    for k, label in (("colorfulness_ratio", "colorfulness ratio"), ("auc", "AuC")):
        if k in summary:
            extra.append(f"{label}: {fmt(summary[k], 3)}")
    return s, extra


BODIES = {"gpt": body_gpt, "ppo": body_ppo, "unet": body_unet, "gan": body_gan, "color": body_color}


def card(out, stage):
    d = os.path.join(out, stage)
    m = read_tsv(os.path.join(d, "demo.tsv"))
    if not m:
        return "", None
    summary = read_json(os.path.join(d, "summary.json"))
    status = first(m, "status", "?")
    body, extra = BODIES[stage](out, d, summary)
    data = "; ".join(m.get("dataset", []) + m.get("dataset_note", []))
    fail = ""
    if status != "0":
        fail = (f'<div class="chips"><span class="chip fail">stage failed (exit {esc(status)}): '
                f'see {esc(stage)}/ and the terminal output</span></div>')
    s = (f'<section class="card" id="{stage}"><h2>{esc(NAMES[stage])}<small>{esc(first(m, "title"))}</small></h2>'
         f'<p class="sub">Trained from scratch on <b>{esc(data or "–")}</b>.</p>{fail}'
         f"{headline(stage, m, summary)}{chips(summary, m, extra)}{body}{commands(m)}</section>")
    return s, (stage, first(m, "wall_s", "0"), status)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py OUT")
    out = os.path.abspath(sys.argv[1])
    run = read_tsv(os.path.join(out, "demo.tsv"))
    cards, times = [], []
    for st in STAGES:
        c, t = card(out, st)
        if c:
            cards.append(c)
            times.append(t)
    rows = []
    for key, label in (("time.setup", "setup (Debian packages)"), ("time.build", "build (Release)")):
        if key in run:
            rows.append((label, float(first(run, key)), "0"))
    rows += [(f"{NAMES[s]} ({s})", float(w), st) for s, w, st in times]
    longest = max([r[1] for r in rows] + [1.0])
    trows = "".join(
        f'<tr><td>{esc(label)}{"" if st == "0" else " <span class=bad>failed</span>"}</td>'
        f'<td class="num">{fmt_s(w)}</td><td style="width:55%"><div class="bar" style="width:{100 * w / longest:.1f}%"></div></td></tr>'
        for label, w, st in rows)
    total = first(run, "time.total", "")
    if total:
        trows += f'<tr><th>total of the last scripts/demo run</th><td class="num"><b>{fmt_s(total)}</b></td><td></td></tr>'
    mrows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in machine())
    quick = first(run, "quick", "0") == "1"
    when = first(run, "started", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    nav = "".join(f'<a href="#{s}">{esc(NAMES[s])}</a>' for s, _, _ in times)
    note = ("<b>Quick mode</b>: every stage ran a handful of steps to check the pipeline; the figures mean nothing."
            if quick else "Small-scale runs: a few minutes per model on this machine. The reference figures are published "
            "ones (nanoGPT, the U-Net paper, a task's solved threshold) or the data's own (the real digits' score, "
            "the gray photo's PSNR); full-scale commands are under each model, and a demo run is expected to fall "
            "short of some references.")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>marrow demo: five models trained from scratch</title><style>{CSS}</style></head>
<body><header><h1>marrow · five models trained from scratch</h1>
<p>A header-only C++20 tensor and reverse-mode autodiff library. Every network below was trained on this machine's CPU by
<code>{esc(first(run, "command", "scripts/demo"))}</code>, started {esc(when)}.</p><nav>{nav}</nav></header>
<main>
<div class="grid2">
<section class="card"><h2>Wall time per stage</h2><p class="sub">{note}</p><table>{trows}</table></section>
<section class="card"><h2>Machine</h2><table>{mrows}</table>
<p class="note">Reproduce: <code>scripts/demo</code> (everything) or <code>scripts/demo gpt|ppo|unet|gan|color</code>
(one stage); <code>data/fetch</code> downloads the full data sets into <code>data/</code>.</p></section>
</div>
{"".join(cards) or '<section class="card"><h2>No stage has run yet</h2><p>Run <code>scripts/demo</code>.</p></section>'}
<p class="note">Generated by scripts/demo.d/report.py from the stages' summary.json, metrics.jsonl and pictures.</p>
</main></body></html>
"""
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)
    print(f"report: wrote {os.path.join(out, 'index.html')} ({len(cards)} models)")


if __name__ == "__main__":
    main()
