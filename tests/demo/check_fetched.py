#!/usr/bin/env python3
"""Independent checks of data/fetch (used by tests/demo/CMakeLists.txt).

    check_fetched.py DEST                          # DEST holds tinyshakespeare/ and mnist/ as fetched
    check_fetched.py --corrupt-mirror FETCH WORK   # a mirror with one flipped byte must be refused

The expected hashes are written here a second time on purpose (from
shared/data/README.md), so a wrong table in data/fetch cannot pass its own test.
"""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys

EXPECTED = {
    "tinyshakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    "mnist/train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "mnist/train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "mnist/t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "mnist/t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def check(dest):
    bad = 0
    for rel, want in EXPECTED.items():
        path = os.path.join(dest, rel)
        if not os.path.exists(path):
            print(f"FAIL: {rel} missing")
            bad += 1
            continue
        with (gzip.open if rel.endswith(".gz") else open)(path, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        print(f"{'ok  ' if got == want else 'FAIL'} {rel} {got}")
        bad += got != want
    return 1 if bad else 0


def corrupt_mirror(fetch, work):
    shutil.rmtree(work, ignore_errors=True)
    mirror = os.path.join(work, "mirror", "tinyshakespeare")
    os.makedirs(mirror)
    with open(os.path.join(mirror, "input.txt"), "wb") as f:
        f.write(b"First Citizen:\nBefore we proceed any further, hear me speak?\n")  # not the real file
    r = subprocess.run([sys.executable, fetch, "--from", os.path.join(work, "mirror"), "--only", "tinyshakespeare",
                        "--dest", os.path.join(work, "dest")], capture_output=True, text=True)
    print(r.stdout + r.stderr)
    landed = os.path.exists(os.path.join(work, "dest", "tinyshakespeare", "input.txt"))
    if r.returncode == 1 and "does not match" in r.stderr and not landed:
        print("ok: the corrupt file was refused and not written")
        return 0
    print(f"FAIL: exit {r.returncode}, file written: {landed}")
    return 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--corrupt-mirror":
        sys.exit(corrupt_mirror(sys.argv[2], sys.argv[3]))
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(check(sys.argv[1]))
