#!/usr/bin/env python3
"""The resident exporter under connection pressure, builds side by side in one run.

    python3 bench/exporter_pressure.py new=build/src/gpuwarm old=/tmp/old/gpuwarm -- --snapshot examples/h100-legacy-flag.json
    (on a GPU node: no arguments after --, so each collection reads the real NVML)

For each build, medians of ROUNDS (default 5) rounds, every client on loopback (127.0.0.0/8):
  - four hosts each hold as many connections as the exporter lets one client hold, sending a header line a
    second (never idle, never a whole request): does a scrape and a /healthz from a fifth host get through,
    and how long do they take;
  - 240 idle connections from 30 hosts: how many the exporter holds, and its thread count before and after;
  - a scrape sent and then half-closed (nc -N, socat) while another connection is open: answered or not.
Prints a table and, where both builds answered, the ratio new ÷ old.
"""
import contextlib
import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "5"))


def start(binary, extra):
    log = tempfile.NamedTemporaryFile("w+", delete=False)
    p = subprocess.Popen([binary, "metrics", "--listen", "127.0.0.1:0", "--min-interval", "0", *extra],
                         stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(500):
        m = re.search(r"serving http://127\.0\.0\.1:(\d+)/", open(log.name).read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            sys.exit(f"{binary}: exporter did not start: " + open(log.name).read())
        time.sleep(0.02)
    sys.exit(f"{binary}: exporter did not start in 10 s")


@contextlib.contextmanager
def exporter(binary, extra):
    """(process, port) of a running exporter, stopped with SIGTERM afterwards."""
    p, port = start(binary, extra)
    try:
        yield p, port
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)


def threads(p):
    return len(os.listdir(f"/proc/{p.pid}/task"))


def request(port, path, source, timeout=5.0):
    """(status or the error's name, seconds)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return str(r.status), time.monotonic() - started
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__, time.monotonic() - started
    finally:
        conn.close()


def still_open(s):
    s.setblocking(False)
    try:
        return s.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.setblocking(True)


def hold(port, source, count, first_line=b"GET /metrics HTTP/1.1\r\nHost: x\r\n"):
    held = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        try:
            s.connect(("127.0.0.1", port))
            if first_line:
                s.sendall(first_line)
        except OSError:
            s.close()
            continue
        held.append(s)
    time.sleep(0.3)
    return held


def round_under_drip(binary, extra):
    with exporter(binary, extra) as (_, port):
        request(port, "/metrics", "127.0.5.1", timeout=60)  # a first collection, so later ones are warm
        drips = []
        for host in range(4):
            drips += hold(port, f"127.0.3.{host + 1}", 16)
        for s in drips:
            try:
                s.sendall(b"X-Drip: 1\r\n")
            except OSError:
                pass
        time.sleep(0.2)
        held = sum(still_open(s) for s in drips)
        healthz = request(port, "/healthz", "127.0.4.1")
        metrics = request(port, "/metrics", "127.0.4.2", timeout=30)
        for s in drips:
            s.close()
        return held, healthz, metrics


def idle_connections(binary, extra):
    with exporter(binary, extra) as (p, port):
        before = threads(p)
        held = []
        for host in range(30):
            held += hold(port, f"127.0.6.{host + 1}", 8, first_line=b"")
        time.sleep(0.5)
        kept = sum(still_open(s) for s in held)
        during = threads(p)
        for s in held:
            s.close()
        return kept, before, during


def half_closed_scrapes(binary, extra):
    answered = 0
    with exporter(binary, extra) as (_, port):
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        for _ in range(ROUNDS):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            answer = b""
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except OSError:
                pass
            s.close()
            answered += answer.startswith(b"HTTP/1.1 200")
        idle.close()
        return answered


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        extra = args[args.index("--") + 1:]
        args = args[:args.index("--")]
    builds = [a.split("=", 1) for a in args]
    if not builds:
        sys.exit(__doc__)
    rows = {}
    for label, binary in builds:
        held, healthz_ok, healthz_s, metrics_ok, metrics_s = [], [], [], [], []
        for _ in range(ROUNDS):
            h, (hs, ht), (ms, mt) = round_under_drip(binary, extra)
            held.append(h)
            healthz_ok.append(hs == "200")
            metrics_ok.append(ms == "200")
            if hs == "200":
                healthz_s.append(ht)
            if ms == "200":
                metrics_s.append(mt)
        kept, before, during = idle_connections(binary, extra)
        half = half_closed_scrapes(binary, extra)
        rows[label] = dict(half=half, held=statistics.median(held), healthz_ok=sum(healthz_ok), metrics_ok=sum(metrics_ok),
                           healthz_ms=statistics.median(healthz_s) * 1000 if healthz_s else None,
                           metrics_ms=statistics.median(metrics_s) * 1000 if metrics_s else None,
                           kept=kept, before=before, during=during)
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    print(f"{ROUNDS} rounds; 4 hosts dripping headers on as many connections as they may hold (16 tried each)")
    print(f"{'build':<6} {'held by the 4':>13} {'/healthz 200':>13} {'ms (median)':>11} {'/metrics 200':>13} "
          f"{'ms (median)':>11} | {'of 240 idle kept':>16} {'threads before':>14} {'with them open':>14} | "
          f"{'half-closed 200':>15}")
    for label, r in rows.items():
        print(f"{label:<6} {r['held']:>13g} {r['healthz_ok']:>10}/{ROUNDS} {fmt(r['healthz_ms']):>11} "
              f"{r['metrics_ok']:>10}/{ROUNDS} {fmt(r['metrics_ms']):>11} | {r['kept']:>16} {r['before']:>14} "
              f"{r['during']:>14} | {r['half']:>12}/{ROUNDS}")
    if len(rows) == 2:
        (a, ra), (b, rb) = rows.items()
        for key, name in (("healthz_ms", "/healthz"), ("metrics_ms", "/metrics")):
            if ra[key] and rb[key]:
                print(f"{name} under the drip, {a} ÷ {b}: {ra[key] / rb[key]:.2f}")
            else:
                print(f"{name} under the drip, {a} ÷ {b}: no ratio ({a} answered {ra[key.split('_')[0] + '_ok']}"
                      f"/{ROUNDS}, {b} {rb[key.split('_')[0] + '_ok']}/{ROUNDS})")


if __name__ == "__main__":
    main()
