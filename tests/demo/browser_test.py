#!/usr/bin/env python3
"""Load the demo page in headless Chromium: every image must load; save a screenshot.

    tests/demo/browser_test.py [--page out/demo] [--screenshot docs/screenshot.png] [--generate]

Serves PAGE from 127.0.0.1 on a free port (http.server in a thread), asks
Chromium (Debian's /usr/bin/chromium) for the DOM after the load event of a copy
of index.html with a few lines of script appended that record, for every <img>,
whether it completed with a non-zero natural size. Fails (exit 1) on a broken
image, an image the server answered with an error, a page without images, or a
missing index.html; skips (exit 77) when Chromium is not installed. Then saves a
screenshot of the real page. --generate first writes PAGE with a quick demo run
(scripts/demo --quick; pass --bin DIR to use already built examples).
"""
import argparse
import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK_PAGE = "__marrow_image_check.html"
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const rows = Array.from(document.images).map(i => ({
    src: i.getAttribute('src'), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight }));
  const pre = document.createElement('pre');
  pre.id = 'marrow-image-check';
  pre.textContent = JSON.stringify(rows);
  document.body.appendChild(pre);
});
</script>"""


def chromium():
    for c in (os.environ.get("CHROMIUM", ""), "/usr/bin/chromium", shutil.which("chromium") or "",
              shutil.which("chromium-browser") or ""):
        if c and os.access(c, os.X_OK):
            return c
    return None


class Handler(http.server.SimpleHTTPRequestHandler):
    errors = []

    def log_message(self, fmt, *args):  # quiet, but remember failures
        if len(args) >= 2 and str(args[1])[:1] in "45":
            Handler.errors.append(f"{args[0]} -> {args[1]}")

    def do_GET(self):
        if self.path.split("?")[0] == "/" + CHECK_PAGE:
            with open(os.path.join(self.directory, "index.html"), encoding="utf-8") as f:
                page = f.read()
            body = page.replace("</body>", CHECK_SCRIPT + "</body>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def browser(exe, profile, *args, timeout=120):
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default=os.path.join(ROOT, "out", "demo"), help="directory holding index.html")
    ap.add_argument("--screenshot", default=os.path.join(ROOT, "docs", "screenshot.png"))
    ap.add_argument("--size", default="1280,2000", help="screenshot window WIDTH,HEIGHT")
    ap.add_argument("--generate", action="store_true", help="first run scripts/demo --quick --no-setup into --page")
    ap.add_argument("--bin", help="with --generate: the built example binaries")
    a = ap.parse_args()

    exe = chromium()
    if not exe:
        print("browser_test: SKIP: no chromium (apt-get install chromium)")
        return 77
    page = os.path.abspath(a.page)
    if a.generate:
        cmd = [os.path.join(ROOT, "scripts", "demo"), "--quick", "--no-setup", "--out", page]
        cmd += ["--bin", a.bin] if a.bin else []
        print("browser_test: " + " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    if not os.path.exists(os.path.join(page, "index.html")):
        print(f"browser_test: FAIL: no {page}/index.html (run scripts/demo first)")
        return 1

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=page))
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}/"
    profile = tempfile.mkdtemp(prefix="marrow-chromium-")
    failures = []
    try:
        # Virtual time lets the load event (after every image) and our script run before the dump.
        r = browser(exe, profile, "--virtual-time-budget=15000", "--dump-dom", base + CHECK_PAGE)
        m = re.search(r'<pre id="marrow-image-check">(.*?)</pre>', r.stdout, re.S)
        if not m:
            failures.append("the page's load event never ran the image check (chromium said: "
                            + (r.stderr.strip().splitlines() or ["nothing"])[-1] + ")")
            rows = []
        else:
            rows = json.loads(html.unescape(m.group(1)))
        with open(os.path.join(page, "index.html"), encoding="utf-8") as f:
            in_source = len(re.findall(r"<img\b", f.read()))
        if m and not rows:
            failures.append("the page has no images")
        if m and len(rows) != in_source:
            failures.append(f"the browser saw {len(rows)} images, index.html has {in_source}")
        for row in rows:
            if not row["complete"] or row["w"] <= 0 or row["h"] <= 0:
                failures.append(f"broken image {row['src']} (natural size {row['w']}x{row['h']})")
        failures += [f"server: {e}" for e in Handler.errors]
        print(f"browser_test: {len(rows)} images checked at {base}index.html with {exe}")

        shot = os.path.abspath(a.screenshot)
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        r = browser(exe, profile, f"--window-size={a.size}", "--virtual-time-budget=15000",
                    f"--screenshot={shot}", base + "index.html")
        if not os.path.exists(shot) or os.path.getsize(shot) == 0:
            failures.append(f"no screenshot written to {shot}: {r.stderr.strip()[-300:]}")
        else:
            print(f"browser_test: screenshot {shot} ({os.path.getsize(shot)} bytes)")
    finally:
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    for f in failures:
        print("browser_test: FAIL: " + f)
    if not failures:
        print("browser_test: PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
