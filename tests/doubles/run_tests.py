#!/usr/bin/python3
"""run_tests.py: `make doubles`. Runs every test class of tests/doubles/test_*.py in a
Python process of its own, several at a time (--jobs, default twice the CPUs: about half
of these tests' time is spent waiting on a server subprocess, a timeout or a slow reply),
the classes with the most tests first. Each class's output is printed whole, in the order
the classes were found, then one line per class with its tests and seconds, and the
last line "doubles: N tests in K classes, F failed". Exits 1 if any class failed or ran
no test.

A class in a process of its own also gets its own module set-up (setUpModule: its own
state directory), so no class can lean on what another left behind.
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def classes():
    """[(module.Class, number of tests)] of every test_*.py here, in discovery order."""
    found = {}
    suite = unittest.defaultTestLoader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)

    def walk(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                walk(t)
            elif isinstance(t, unittest.loader._FailedTest):
                raise SystemExit(f"cannot load {t.id()}: {t._exception}")
            else:
                name = t.id().rsplit(".", 1)[0]
                found[name] = found.get(name, 0) + 1

    walk(suite)
    return list(found.items())


def run_class(name):
    """Runs one class; the keys of tests/doubles/keypool.pem it and the servers it starts
    draw are distinct among themselves (keypool.py: a counter file of the class's own)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="p11e-doubles-") as tmp:
        env = dict(os.environ, P11E_KEYPOOL_STATE=os.path.join(tmp, "keypool.count"))
        p = subprocess.run([sys.executable, "-m", "unittest", name], cwd=HERE, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL)
    m = re.search(r"^Ran (\d+) tests? in", p.stdout, re.M)
    return p.returncode, int(m.group(1)) if m else 0, p.stdout, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2 * (os.cpu_count() or 1))
    args = ap.parse_args()
    todo = classes()
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_class, name): name
                   for name, _ in sorted(todo, key=lambda c: -c[1])}
        for f in concurrent.futures.as_completed(futures):
            results[futures[f]] = f.result()
    total = failed = 0
    for name, expected in todo:
        rc, ran, out, secs = results[name]
        print(f"== tests/doubles/{name}")
        print(out, end="" if out.endswith("\n") else "\n")
        total += ran
        if rc != 0 or ran == 0 or ran != expected:
            failed += 1
    print("per class (tests, s):")
    for name, _ in sorted(todo, key=lambda c: -results[c[0]][3]):
        rc, ran, _, secs = results[name]
        print(f"  {ran:4d} {secs:6.1f}  {name}{'  FAILED' if rc != 0 or ran == 0 else ''}")
    print(f"doubles: {total} tests in {len(todo)} classes, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
