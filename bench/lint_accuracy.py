#!/usr/bin/env python3
"""Recall and precision of `gpuwarm lint` on a labelled corpus of real configs.

A corpus directory holds the files (any layout: paths matter, e.g. roles/x/tasks/ or
nvidia-persistenced.service.d/) and labels.json, a list of
  {"file": "cases/owner__repo/path", "expected": [{"rule": "LINT001", "line": 12}, ...],
   "docs_code_blocks": [...]}   (the latter only for documentation, read with --docs)
Labels come from people reading the files, never from running lint. gpuwarm lints each
corpus directory as a tree (so an Ansible role's defaults resolve its variables), and a
finding counts as a true positive when (file, rule, line) matches a label.

  bench/lint_accuracy.py CORPUS_DIR [CORPUS_DIR...] [--docs] [--show]
"""
import argparse
import collections
import json
import os
import subprocess
import sys


def lint(binary, root, docs):
    args = [binary, "lint", "--json", root] + (["--docs"] if docs else [])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode not in (0, 3):
        sys.exit(f"{' '.join(args)} exited {r.returncode}: {r.stderr}")
    found = collections.defaultdict(set)
    for f in json.loads(r.stdout)["findings"]:
        rel = os.path.relpath(f["path"], root)
        found[rel].add((f["rule_id"], f["line"]))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpora", nargs="+")
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--docs", action="store_true", help="score documentation code blocks too (lint --docs)")
    ap.add_argument("--show", action="store_true", help="print every miss and false alarm")
    args = ap.parse_args()
    tp = fp = fn = 0
    per_rule = collections.defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    files = 0
    for root in args.corpora:
        with open(os.path.join(root, "labels.json")) as f:
            labels = json.load(f)
        found = lint(args.gpuwarm, root, args.docs)
        labelled = set()
        for entry in labels:
            rel = os.path.normpath(entry["file"])
            labelled.add(rel)
            files += 1
            want = {(e["rule"], e["line"]) for e in entry.get("expected", [])}
            if args.docs:
                want |= {(e["rule"], e["line"]) for e in entry.get("docs_code_blocks", [])}
            got = found.get(rel, set())
            for rule, line in sorted(got & want):
                tp += 1
                per_rule[rule][0] += 1
            for rule, line in sorted(got - want):
                fp += 1
                per_rule[rule][1] += 1
                if args.show:
                    print(f"false alarm  {root}/{rel}:{line} {rule}")
            for rule, line in sorted(want - got):
                fn += 1
                per_rule[rule][2] += 1
                if args.show:
                    print(f"missed       {root}/{rel}:{line} {rule}")
        for rel, got in found.items():
            if rel not in labelled:
                print(f"note: {root}/{rel} has findings but no labels entry", file=sys.stderr)
    print(f"{files} labelled files, {tp + fn} expected findings")
    print(f"{'rule':8s} {'tp':>5s} {'fp':>5s} {'fn':>5s}")
    for rule in sorted(per_rule):
        a, b, c = per_rule[rule]
        print(f"{rule:8s} {a:5d} {b:5d} {c:5d}")
    recall = tp / (tp + fn) if tp + fn else 1.0
    precision = tp / (tp + fp) if tp + fp else 1.0
    print(f"recall {recall:.3f} ({tp}/{tp + fn})   precision {precision:.3f} ({tp}/{tp + fp})   target >= 0.98 each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
