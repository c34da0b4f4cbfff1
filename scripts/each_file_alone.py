#!/usr/bin/env python3
"""Compiles every C++ source of a build on its own with -fsyntax-only. The builds compile the sources in
batches (unity build), where a file that forgets an #include still compiles thanks to the files before it;
this proves each one stands alone, at a fraction of a file-by-file build's cost.
Usage: scripts/each_file_alone.py BUILD_DIR   (configured with -DGPUWARM_UNITY_BUILD=OFF)"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys


def syntax_only(entry):
    args = shlex.split(entry["command"])
    out = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT"):
            skip = True
            continue
        if a == "-MD":
            continue
        out.append(a)
    r = subprocess.run(out + ["-fsyntax-only"], cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], r.returncode, r.stderr


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(os.path.join(sys.argv[1], "compile_commands.json")) as f:
        entries = [e for e in json.load(f) if e["file"].endswith(".cpp")]
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for file, rc, err in pool.map(syntax_only, entries):
            if rc != 0:
                failed += 1
                print(f"{file} does not compile on its own:\n{err}", file=sys.stderr)
    print(f"  {len(entries) - failed} of {len(entries)} files compile on their own")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
