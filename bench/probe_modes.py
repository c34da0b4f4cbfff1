#!/usr/bin/env python3
"""Per-GPU truth and what a job pays, side by side (issue 20's check).

Each round runs, interleaved: `probe --per-gpu` (each GPU alone, one at a time: the default),
`probe --per-gpu --parallel` (every GPU at once) and `probe --node` (a job's start as one process
with every GPU and as a process per GPU). Prints medians over the rounds and the ratios that say
whether parallel per-GPU probing distorts (parallel wall / slowest GPU alone, target <= 1.2) and
what a job pays against one GPU.

--contention also starts two probe children at once on the SAME GPU (so it runs on a one-GPU
machine) against one alone: if the driver serializes cold-start stages across processes, the child
that waits pays; the faster and the slower child of each pair are reported apart.

Made to run unattended under a time limit: a failed probe run is recorded (one line: why) and the
rounds go on, each table uses the runs that succeeded (its "ok" column says how many), every probe
gets --timeout (--probe-timeout), a run is killed at --run-cap seconds, no round starts that the
--budget cannot hold, and a mode that timed out is not run again (a hang repeats). Every line is
printed as soon as it is known. With --out (default $OUT/probe_modes when $OUT is set) each run's
raw JSON and stderr (one line per run in raw.jsonl), runs.json and a copy of this log are written there.

Exit: 0 every run succeeded; 1 some failed (tables from the rest); gpuwarm's exit code (2 bad
command line, 5 no driver, 7 locked, 1 no GPU) when a run probed nothing: that stops at once. A benchmark, not a test: nothing is asserted. Extra arguments after -- go to every
probe and probe child (e.g. --nvml/--cuda for the fakes)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

MODES = [("isolated", "per-GPU alone", ["--per-gpu"]),
         ("parallel", "per-GPU --parallel", ["--per-gpu", "--parallel"]),
         ("node", "job starts", ["--node", "--all-visible"])]
JOBS = [("one-process", "one process, every GPU"), ("process-per-gpu", "a process per GPU"),
        ("process-per-gpu-all-visible", "a process per GPU, each seeing all")]
REASON_CHARS = 220  # one failed run: one line, so that 15 of them cannot crowd the tables out of a log's tail


class Log:
    """Prints at once (flushed) and keeps a copy in `path`, written line by line."""

    def __init__(self, path):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def __call__(self, text=""):
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()


def clip(text, limit=REASON_CHARS):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def start(argv, env=None):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)


def finish(proc, timeout):
    """(exit code, stdout, stderr, killed): a process past `timeout` s is killed (its probe children die with it)."""
    try:
        out, err = proc.communicate(timeout=max(timeout, 0.1))
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild holds the pipes: give up on its output
            out, err = "", ""
        return proc.returncode, out or "", err or "", True


def parse(text):
    try:
        d = json.loads(text)
        return d if isinstance(d, dict) else None
    except ValueError:
        return None


def stage(stages, name):
    """Milliseconds in `name`, summed over devices; None when the stage is absent."""
    ms = [s["ms"] for s in stages or [] if s.get("name") == name]
    return sum(ms) if ms else None


def med(values):
    """Median of the figures present (the mean of the two middle ones for an even count); None without any."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def num(v, width=0, digits=1):
    return f"{'-' if v is None else f'{v:.{digits}f}':>{width}s}"


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def probe_failure(p):
    if p.get("timed_out"):
        return "timed out"
    if p.get("child_error"):
        return p["child_error"]
    return f"{p.get('failed_stage') or '?'}: {p.get('error') or '?'}"


def why_failed(doc, rc, err):
    """One line: the JSON's error, else each failing GPU's stage and error; without JSON, gpuwarm's last stderr line."""
    if doc is None:
        last = [l for l in err.splitlines() if l.strip()]
        return f"no JSON from gpuwarm (exit {rc})" + (f": {last[-1]}" if last else "")
    parts = [doc["error"]] if doc.get("error") else []
    for g in doc.get("gpus") or []:
        if not g.get("ok", True):
            parts.append(f"GPU {g.get('index')}: {probe_failure(g)}")
    for j in doc.get("jobs") or []:
        if j.get("ok", True):
            continue
        title = dict(JOBS).get(j.get("method"), j.get("method"))
        for p in j.get("processes") or []:
            if not p.get("ok", True):
                where = f", GPU {p.get('index')}"
                if j.get("method") == "one-process":  # its one process starts every GPU: name the one that failed, if known
                    fd, indices = p.get("failed_device", -1), j.get("gpu_indices") or []
                    where = f", GPU {indices[fd]}" if 0 <= fd < len(indices) else ""
                parts.append(f"{title}{where}: {probe_failure(p)}")
    for key in ("jobs_skipped", "job_rounds_short"):
        if doc.get(key):
            parts.append(f"job starts not measured: {doc[key]}")
    return "; ".join(parts) or f"exit {rc}"


def timed_out(doc):
    if doc is None:
        return False
    probes = list(doc.get("gpus") or [])
    for j in doc.get("jobs") or []:
        probes += j.get("processes") or []
    return any(p.get("timed_out") for p in probes)


class Bench:
    def __init__(self, args, log):
        self.args, self.log = args, log
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget
        self.runs = []  # one dict per probe run and per contention child
        self.seen = {}  # failure line -> where it was first printed: a repeated failure is printed short

    def elapsed(self):
        return time.monotonic() - self.t0

    def left(self):
        return self.deadline - time.monotonic()

    def save(self, name, out, err):
        # One line per run in one file, appended as it goes: the device tool brings back only a few files, and a
        # run cut off at its limit keeps what was written.
        if self.args.out:
            with open(os.path.join(self.args.out, "raw.jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps({"run": name, "stdout": out, "stderr": err}) + "\n")

    def probe(self, mode, flags, rnd):
        """One `gpuwarm probe` run: the record of it (its JSON in "doc", None if unreadable)."""
        a = self.args
        cap = min(a.run_cap, self.left())
        t = time.monotonic()
        rc, out, err, killed = finish(start([a.gpuwarm, "probe", "--json", "--timeout", f"{a.probe_timeout:g}", *flags,
                                             *a.extra]), cap)
        name = f"r{rnd}-{mode}"
        self.save(name, out, err)
        doc = parse(out)
        rec = {"round": rnd, "mode": mode, "exit_code": None if killed else rc, "seconds": round(time.monotonic() - t, 2),
               "raw": name if a.out else None, "doc": doc}
        rec["ok"] = not killed and rc == 0 and doc is not None
        rec["timed_out"] = killed or timed_out(doc)
        rec["why"] = None if rec["ok"] else (f"killed by the bench after {cap:.0f} s (--run-cap / --budget)" if killed
                                             else why_failed(doc, rc, err))
        self.runs.append(rec)
        return rec

    def rounds(self):
        """The interleaved rounds; returns the records by mode, or an exit code when nothing could be probed."""
        a, log = self.args, self.log
        by_mode = {m: [] for m, _, _ in MODES}
        dropped = {}
        longest = {}
        reserve = 0
        for rnd in range(1, a.rounds + 1):
            took = []
            for mode, title, flags in MODES:
                if mode in dropped:
                    took.append(f"{title} not run")
                    continue
                need = longest.get(mode, 0) * 1.5 + 2 + reserve  # the contention part keeps its share
                if self.left() < need:
                    log(f"  ! stopped before round {rnd} ({title}): {self.left():.0f} s left of --budget {a.budget:g} s, "
                        f"such a run took up to {longest.get(mode, 0):.0f} s")
                    return by_mode
                rec = self.probe(mode, flags, rnd)
                longest[mode] = max(longest.get(mode, 0), rec["seconds"])
                by_mode[mode].append(rec)
                took.append(f"{title} {rec['seconds']:.1f} s" + ("" if rec["ok"] else " FAILED"))
                if not rec["ok"]:
                    rc = rec["exit_code"]
                    why = ("" if rc is None else f"exit {rc}: ") + clip(rec["why"])
                    log(f"  ! round {rnd} {title}: " + (self.seen.get(why) or why))
                    self.seen.setdefault(why, f"the same as round {rnd} {title}")
                    d = rec["doc"]
                    if d is not None and not (d.get("gpus") or d.get("jobs")):  # bad flags, no driver, no GPU, locked
                        log(f"  ! nothing was probed (exit {rec['exit_code']}): stopping")
                        return rec["exit_code"] or 1
                    if rec["timed_out"]:
                        dropped[mode] = rnd
                        log(f"  ! {title} not run again: it timed out in round {rnd} (a hang repeats; "
                            f"each costs up to --timeout {a.probe_timeout:g} s per GPU)")
            line = f"round {rnd}/{a.rounds}: " + ", ".join(took) + f" (elapsed {self.elapsed():.1f} s"
            if rnd == 1:  # the estimate: the modes still run, as long as in round 1; a child ~ one GPU of the default probe
                per_round = sum(s for m, s in longest.items() if m not in dropped)
                n = max([len(r["doc"].get("gpus") or []) for r in self.runs if r["doc"]] + [1])
                reserve = a.rounds * 3 * longest.get("isolated", 0) / n if a.contention else 0
                line += (f"; estimate for {a.rounds} rounds{' and the contention part' if a.contention else ''}: "
                         f"~{self.elapsed() + per_round * (a.rounds - 1) + reserve:.0f} s, --budget {a.budget:g} s")
            log(line + ")")
        return by_mode

    def contention(self, uuid, index):
        """Probe children on one GPU: one alone, then two at once, per round; (alone, pairs) of stage dicts."""
        a, log = self.args, self.log
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=uuid)
        argv = [a.gpuwarm, "probe", "--child", *a.extra]
        alone, pairs = [], []
        for rnd in range(1, a.rounds + 1):
            if self.left() < 10:
                log(f"  ! contention stopped before round {rnd}: {self.left():.0f} s left of --budget {a.budget:g} s")
                break
            failed = {}  # why -> which children of this round
            for kind, count in (("alone", 1), ("pair", 2)):
                t = time.monotonic()
                procs = [start(argv, env) for _ in range(count)]
                got = []
                for k, p in enumerate(procs):
                    limit = min(2 * a.probe_timeout, self.left()) - (time.monotonic() - t)
                    rc, out, err, killed = finish(p, limit)
                    name = f"c{rnd}-{kind}" + (str(k + 1) if count > 1 else "")
                    self.save(name, out, err)
                    d = parse(out)
                    why = None
                    if killed:
                        why = f"killed by the bench after {2 * a.probe_timeout:g} s"
                    elif d is None:
                        last = [l for l in err.splitlines() if l.strip()]
                        why = f"no JSON (exit {rc})" + (f": {last[-1]}" if last else "")
                    elif d.get("failed_stage") or d.get("error"):
                        why = probe_failure(d)
                    self.runs.append({"round": rnd, "mode": f"contention-{kind}", "exit_code": None if killed else rc,
                                      "seconds": round(time.monotonic() - t, 2), "ok": why is None, "why": why,
                                      "raw": name if a.out else None})
                    if why:
                        failed.setdefault(why, []).append("the child alone" if count == 1 else f"pair child {k + 1}")
                    else:
                        got.append({s: stage(d.get("stages"), s) for s in ("cu_init", "ctx_retain")})
                if len(got) == count:
                    (alone if count == 1 else pairs).append(got)
            for why, who in failed.items():  # one line per round and reason
                log(f"  ! contention round {rnd} on GPU {index}, {', '.join(who)}: " + (self.seen.get(why) or clip(why)))
                self.seen.setdefault(why, f"the same as contention round {rnd}")
        return alone, pairs


def per_gpu_tables(log, iso, par, rounds_run):
    """The per-GPU table (alone beside parallel, like beside like) and the parallel/alone ratio; returns the
    slowest GPU alone, launch to ready (what the job starts are set against)."""
    index_uuid = {}
    for rec in iso + par:
        for g in (rec["doc"] or {}).get("gpus") or []:
            index_uuid.setdefault(g["index"], g.get("uuid"))
    gpus = sorted(index_uuid)
    n_iso, n_par = len(iso), len(par)
    log("per GPU, medians in ms: alone = `probe` default (each GPU alone, one at a time), par = `--parallel` (all at once)")
    log(f"{'GPU':4s}{'cu_init alone/par':>19s}{'ctx_retain alone/par':>22s}{'TOTAL alone/par':>19s}{'par/alone':>11s}"
        f"{'READY alone/par':>19s}{'ok alone/par':>14s}")

    def ok_gpus(recs, index):
        return [g for r in recs for g in (r["doc"] or {}).get("gpus") or [] if g["index"] == index and g.get("ok")]

    def complete(rec):  # a run in which every GPU succeeded: its slowest GPU, its wall and its contention mean something
        gs = (rec["doc"] or {}).get("gpus") or []
        return rec["ok"] and len(gs) == len(gpus) and all(g.get("ok") for g in gs)

    par_full = [r for r in par if complete(r)]
    for index in gpus:
        a, p = ok_gpus(iso, index), ok_gpus(par_full, index)
        cols = []
        for name in ("cu_init", "ctx_retain"):
            cols.append((med([stage(g["stages"], name) for g in a]), med([stage(g["stages"], name) for g in p])))
        total = (med([g.get("total_ms") for g in a]), med([g.get("total_ms") for g in p]))
        ready = (med([g.get("launch_to_ready_ms") for g in a]), med([g.get("launch_to_ready_ms") for g in p]))
        log(f"{index:<4d}{num(cols[0][0], 10)} /{num(cols[0][1], 7)}{num(cols[1][0], 13)} /{num(cols[1][1], 7)}"
            f"{num(total[0], 10)} /{num(total[1], 7)}{ratio(total[1], total[0]):>11s}"
            f"{num(ready[0], 10)} /{num(ready[1], 7)}{f'{len(a)}/{n_iso} {len(p)}/{n_par}':>14s}")
    log("TOTAL: the child's stages summed, load_libcuda to ctx_release (as `gpuwarm probe`'s TOTAL); READY: from its launch")
    log("until its allocation synchronized (process start in, release out). ok: rounds used (par: only runs in which every")
    log("GPU succeeded: the others' load is part of the figure).")

    full_iso = [r["doc"]["gpus"] for r in iso if complete(r)]
    full_par = [r["doc"] for r in par_full]
    slow_total = med([max(g["total_ms"] for g in gs) for gs in full_iso])
    slow_ready = med([max(g["launch_to_ready_ms"] for g in gs) for gs in full_iso])
    slow_wall = med([max(g["wall_ms"] for g in gs) for gs in full_iso])
    # gpuwarm probe's figure: per GPU, the READY of its median round by TOTAL (the lower middle one), the slowest of those.
    per_gpu_ready = []
    for i in gpus:
        ok = sorted(ok_gpus(iso, i), key=lambda g: g.get("total_ms") or 0)
        if ok:
            per_gpu_ready.append(ok[(len(ok) - 1) // 2].get("launch_to_ready_ms"))
    max_of_medians = max([v for v in per_gpu_ready if v is not None], default=None)
    par_wall = med([d["wall_ms"] for d in full_par])
    iso_wall = med([r["doc"]["wall_ms"] for r in iso if complete(r)])
    log(f"\nslowest GPU alone, median over the {len(full_iso)} complete rounds of each round's slowest GPU: TOTAL "
        f"{num(slow_total)}, READY {num(slow_ready)}, spawn->exit {num(slow_wall)} ms")
    log(f"  (`gpuwarm probe`'s own ratio line takes instead each GPU's median round by TOTAL and the slowest READY of those:"
        f" {num(max_of_medians)} ms from these rounds)")
    log(f"parallel per-GPU probe, wall from the first spawn to the last exit (median of {len(full_par)}): {num(par_wall)} ms"
        f" = {ratio(par_wall, slow_wall)} the slowest GPU alone, spawn->exit (issue 20: target <= 1.2x to keep --parallel)")
    log(f"  (the default probe's wall, every GPU one after another: {num(iso_wall)} ms)")
    return slow_ready, {"slowest_alone_total_ms": slow_total, "slowest_alone_ready_ms": slow_ready,
                        "slowest_alone_spawn_to_exit_ms": slow_wall, "slowest_of_median_ready_ms": max_of_medians,
                        "parallel_wall_ms": par_wall, "isolated_wall_ms": iso_wall,
                        "parallel_over_slowest_alone": par_wall / slow_wall if par_wall and slow_wall else None}


def job_table(log, node, slow_ready):
    n = len(node)
    gpu_count = max([len(j.get("gpu_indices") or []) for r in node for j in (r["doc"] or {}).get("jobs") or []], default=0)
    log(f"\njob starts, medians in ms (READY: launch until every GPU has a context and a synchronized allocation;"
        f" stages: the last process ready, summed over its GPUs)")
    log(f"{'how the job starts':36s}{'cu_init':>9s}{'ctx_retain':>12s}{'alloc_sync':>12s}{'READY':>9s}{'range':>17s}"
        f"{'x slowest alone READY':>23s}{'ok':>6s}")
    out = {}
    for method, title in JOBS:
        if not any(j.get("method") == method for r in node for j in (r["doc"] or {}).get("jobs") or []):
            continue  # not timed here (each seeing all: only with two or more GPUs)
        jobs = [j for r in node for j in (r["doc"] or {}).get("jobs") or [] if j.get("method") == method and j.get("ok")]
        ready = [j.get("ready_ms") for j in jobs if j.get("ready_ms") is not None]
        r = med(ready)
        rng = f"{min(ready):.1f}-{max(ready):.1f}" if ready else "-"
        label = title + (f" ({gpu_count})" if method == "process-per-gpu" and gpu_count else "")
        log(f"{label:36s}{num(med([stage(j['stages'], 'cu_init') for j in jobs]), 9)}"
            f"{num(med([stage(j['stages'], 'ctx_retain') for j in jobs]), 12)}"
            f"{num(med([stage(j['stages'], 'alloc_sync') for j in jobs]), 12)}{num(r, 9)}{rng:>17s}"
            f"{ratio(r, slow_ready):>23s}{f'{len(jobs)}/{n}':>6s}")
        out[method] = {"ready_ms": r, "ok_rounds": len(jobs), "rounds": n}
    log(f"x slowest alone READY: against the slowest GPU alone, launch to ready ({num(slow_ready)} ms, above)")
    return out


def contention_table(log, index, alone, pairs):
    log(f"\ncontention on GPU {index}: probe children alone ({len(alone)}) vs two at once ({len(pairs)} pairs), medians in ms;"
        f" per pair and stage, the faster and the slower of the two children")
    log(f"{'stage':12s}{'alone':>9s}{'pair faster':>13s}{'pair slower':>13s}{'faster/alone':>14s}{'slower/alone':>14s}")
    out = {}
    for name in ("cu_init", "ctx_retain"):
        a = med([c[0][name] for c in alone])
        vals = [(c[0][name], c[1][name]) for c in pairs if c[0][name] is not None and c[1][name] is not None]
        fast, slow = med([min(v) for v in vals]), med([max(v) for v in vals])
        log(f"{name:12s}{num(a, 9)}{num(fast, 13)}{num(slow, 13)}{ratio(fast, a):>14s}{ratio(slow, a):>14s}")
        out[name] = {"alone_ms": a, "pair_faster_ms": fast, "pair_slower_ms": slow}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpuwarm", default="build/src/gpuwarm")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--contention", action="store_true")
    ap.add_argument("--probe-timeout", type=float, default=20, help="--timeout given to every probe (s per GPU; default 20)")
    ap.add_argument("--run-cap", type=float, default=90, help="kill a probe run after this many s (default 90)")
    ap.add_argument("--budget", type=float, default=400, help="start nothing that would end past this many s (default 400)")
    ap.add_argument("--out", default=os.path.join(os.environ["OUT"], "probe_modes") if os.environ.get("OUT") else None,
                    help="folder for raw JSON and the log (default $OUT/probe_modes when $OUT is set, else none)")
    ap.add_argument("extra", nargs="*")
    args = ap.parse_args()
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    log = Log(os.path.join(args.out, "probe_modes.log") if args.out else None)
    bench = Bench(args, log)
    log(f"probe_modes: {args.rounds} rounds of {', '.join(t for _, t, _ in MODES)}; probes --timeout {args.probe_timeout:g} s, "
        f"a run killed at {args.run_cap:g} s, --budget {args.budget:g} s" + (f"; raw JSON in {args.out}" if args.out else ""))
    by_mode = bench.rounds()
    if isinstance(by_mode, int):
        return by_mode
    iso, par, node = by_mode["isolated"], by_mode["parallel"], by_mode["node"]
    first = next((r["doc"] for r in iso + par + node if r["doc"] and r["doc"].get("persistence_summary")), {})
    gpus = sorted({(g["index"], g["uuid"]) for r in iso + par for g in (r["doc"] or {}).get("gpus") or []})
    log(f"\n== issue 20 check: {len(gpus) or '?'} GPU(s), persistence {first.get('persistence_summary', '?')} when probed, "
        f"rounds run: {len(iso)} alone / {len(par)} parallel / {len(node)} job starts; host {first.get('hostname', '?')}\n")
    summary = {}
    slow_ready = None
    if gpus:
        slow_ready, summary["per_gpu"] = per_gpu_tables(log, iso, par, args.rounds)
    else:
        log("per GPU: no probe run gave any GPU (see the ! lines above)")
    summary["jobs"] = job_table(log, node, slow_ready)
    if args.contention and gpus:
        index, uuid = gpus[0]
        alone, pairs = bench.contention(uuid, index)
        summary["contention"] = contention_table(log, index, alone, pairs)
    failed = [r for r in bench.runs if not r["ok"]]
    probes = [r for r in bench.runs if not r["mode"].startswith("contention")]
    children = [r for r in bench.runs if r["mode"].startswith("contention")]
    bad_probes = sum(1 for r in probes if not r["ok"])
    log(f"\nprobe_modes: {len(bench.runs)} runs in {bench.elapsed():.1f} s: {len(probes) - bad_probes} of {len(probes)} probe runs"
        + (f", {sum(1 for r in children if r['ok'])} of {len(children)} contention children" if args.contention else "")
        + " succeeded" + ("; the ! lines say why the others failed, the tables use the rest" if failed else ""))
    if args.out:
        with open(os.path.join(args.out, "runs.json"), "w", encoding="utf-8") as f:
            json.dump({"summary": summary, "runs": [{k: v for k, v in r.items() if k != "doc"} for r in bench.runs]}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
