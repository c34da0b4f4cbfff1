"""gpuwarm metrics --listen end to end: the resident exporter over real HTTP (routes, bounds, shared and
rate-limited collections, NVML never held: de-initialization seen scrape after scrape), the sd_notify
protocol (READY, WATCHDOG, STOPPING) on a socket of the test's own, a clean stop on SIGTERM; then Debian's
real Prometheus and node_exporter on 127.0.0.1 scraping fake nodes, asked through Prometheus' HTTP API,
with the persistence alert going pending then firing. Every server listens on loopback and is stopped by
the test (each also has a wall-clock bound)."""
import concurrent.futures
import http.client as http_client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import harness as h
from test_metrics import samples, value

CONTRIB = os.path.join(h.SOURCE_DIR, "contrib")
PROMETHEUS = shutil.which("prometheus")
NODE_EXPORTER = shutil.which("prometheus-node-exporter")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, method="GET", data=None, headers=None, timeout=20, source=None):
    """(status, headers, body) without raising on 4xx/5xx; `source`: the local address to connect from (the
    exporter limits connections per client address, and all of 127.0.0.0/8 is loopback)."""
    if source is not None:
        parts = urllib.parse.urlsplit(url)
        conn = http_client.HTTPConnection(parts.hostname, parts.port, timeout=timeout, source_address=(source, 0))
        try:
            conn.request(method, parts.path or "/", body=data, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read().decode()
        finally:
            conn.close()
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def seconds_until_closed(sockets, chunk, bound_s):
    """Sends `chunk` on every socket once a second until the server closes one; the seconds that took, or None
    when none was closed within `bound_s`."""
    start = time.monotonic()
    while time.monotonic() - start < bound_s:
        time.sleep(1)
        try:
            for s in sockets:
                s.sendall(chunk)
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - start
    return None


class Exporter:
    """A `gpuwarm metrics --listen 127.0.0.1:0` process for a fake node; stopped by stop() or at its bound."""

    def __init__(self, test, root, scenario, *extra, env=None, bound_s=120, nvml=None, listen="127.0.0.1:0"):
        self.tmp = tempfile.mkdtemp(prefix="gpuwarm-exporter-")
        test.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        path = os.path.join(self.tmp, "scenario.json")
        with open(path, "w") as f:
            json.dump(scenario, f)
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        full_env.update({"FAKE_NVML_SCENARIO": path, "NO_COLOR": "1"})
        full_env.update(env or {})
        self.stderr_path = os.path.join(self.tmp, "stderr")
        stderr = open(self.stderr_path, "w")
        test.addCleanup(stderr.close)
        self.proc = subprocess.Popen(
            ["timeout", "-s", "KILL", str(bound_s), h.BIN, "metrics", "--listen", listen, "--root", root.path,
             "--no-systemd", "--nvml", nvml or os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"),
             "--probe-baseline", os.path.join(self.tmp, "no-baseline.json"), *extra],
            stdout=subprocess.DEVNULL, stderr=stderr, env=full_env)
        test.addCleanup(self.stop)
        deadline = time.monotonic() + 10
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            m = re.search(r"serving http://(?:[0-9.]+|\[[0-9a-f:]*\]):(\d+)/metrics", self.stderr())
            if m:
                self.port = int(m.group(1))
            elif self.proc.poll() is not None:
                break
            else:
                time.sleep(0.02)
        test.assertIsNotNone(self.port, "exporter did not start: " + self.stderr())
        self.url = f"http://127.0.0.1:{self.port}"

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def pid(self):
        # The child of `timeout`.
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else None

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            pid = self.pid()
            if pid:
                os.kill(pid, sig)
            try:
                return self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait()
        return self.proc.returncode


# Run by test_each_ipv6_address_and_each_64_has_its_own_limit in a network namespace of its own (unshare
# --net), whose loopback holds two /64s whole (local routes: any address in them can be bound), which the
# host's loopback (::1 alone) cannot give. Prints one JSON line: what each connection got.
IPV6_CLIENTS = r"""
import json, os, re, socket, subprocess, sys, time
binary, root, nvml, scenario, baseline, stderr_path = sys.argv[1:7]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "-6", "addr", "add", "fd00:1::1/128", "dev", "lo", "nodad"], check=True)
for prefix in ("fd00:1::/64", "fd00:2::/64"):
    subprocess.run(["ip", "-6", "route", "add", "local", prefix, "dev", "lo"], check=True)
with open("/proc/sys/net/ipv6/ip_nonlocal_bind", "w") as f:  # this namespace's: clients bind unassigned addresses
    f.write("1")
with open(stderr_path, "w") as stderr:
    exporter = subprocess.Popen(["timeout", "-s", "KILL", "60", binary, "metrics", "--listen", "[fd00:1::1]:0",
                                 "--root", root, "--no-systemd", "--nvml", nvml, "--probe-baseline", baseline],
                                stdout=subprocess.DEVNULL, stderr=stderr,
                                env=dict(os.environ, FAKE_NVML_SCENARIO=scenario, NO_COLOR="1"))
port = None
deadline = time.monotonic() + 10
while port is None and time.monotonic() < deadline and exporter.poll() is None:
    with open(stderr_path) as f:
        m = re.search(r"serving http://\[fd00:1::1\]:(\d+)/metrics", f.read())
    port = int(m.group(1)) if m else None
    time.sleep(0.02)

def connect(source):
    s = socket.socket(socket.AF_INET6)
    s.settimeout(5)
    s.bind((source, 0))
    s.connect(("fd00:1::1", port))
    return s

def answer(s):
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(4096).split(b"\r\n")[0].decode() or "closed"
    except OSError as e:
        return "closed: " + e.__class__.__name__

out = {"port": port}
if port is not None:
    held = [connect("fd00:1::a") for _ in range(8)]
    time.sleep(0.3)
    out["ninth_from_one_address"] = answer(connect("fd00:1::a"))
    other = connect("fd00:1::b")
    out["another_address_of_its_64"] = answer(other)
    held += [other] + [connect(f"fd00:1::1:{k:x}") for k in range(55)]  # 64 in fd00:1::/64
    time.sleep(0.3)
    out["sixty_fifth_in_the_64"] = answer(connect("fd00:1::2:1"))
    out["from_another_64"] = answer(connect("fd00:2::c"))
    out["held"] = sorted(set(answer(s) for s in held))
    for s in held:
        s.close()
    time.sleep(0.3)
    out["in_the_64_once_closed"] = answer(connect("fd00:1::2:1"))
    exporter.terminate()
out["exit"] = exporter.wait()
print(json.dumps(out))
"""


class ExporterOverHttp(unittest.TestCase):
    def setUp(self):
        h.require_binary(self)
        self.root = h.FakeRoot()
        self.addCleanup(shutil.rmtree, self.root.path, ignore_errors=True)
        self.root.driver(gpus=1)

    def test_routes_and_methods(self):
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), "--min-interval", "60")
        status, headers, body = http(e.url + "/metrics")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(value(samples(body), "gpuwarm_gpu_persistence_mode", gpu="0"), 1)
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        status, headers, body = http(e.url + "/metrics", method="HEAD")
        self.assertEqual((status, body), (200, ""))
        status, headers, _ = http(e.url + "/metrics", method="POST", data=b"x" * 100000)
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET, HEAD")
        self.assertEqual(http(e.url + "/nothing")[0], 404)
        self.assertIn('href="/metrics"', http(e.url + "/")[2])
        # Headers beyond the 16 KiB bound are refused, and the exporter keeps serving.
        status, _, _ = http(e.url + "/metrics", headers={"X-Big": "a" * 40000})
        self.assertGreaterEqual(status, 400)
        self.assertEqual(http(e.url + "/metrics")[0], 200)
        self.assertEqual(e.stop(), 0)
        self.assertIn("stopping (signal 15)", e.stderr())

    def test_a_request_sent_a_byte_at_a_time_is_cut_off(self):
        # A client that drips a header line every second is never idle for 15 s; 64 of them would hold every
        # connection. The request must be whole within 10 s of the connection's start.
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), "--min-interval", "60")
        drips = []
        for _ in range(4):  # the per-client limit: a legitimate scrape from the same address then has no slot
            s = socket.create_connection(("127.0.0.1", e.port), timeout=30)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            drips.append(s)
        closed_after = seconds_until_closed(drips, b"X-Drip: 1\r\n", 25)
        for s in drips:
            s.close()
        self.assertIsNotNone(closed_after, "a dripping client kept its connection for 25 s")
        self.assertLess(closed_after, 14)
        self.assertEqual(http(e.url + "/metrics")[0], 200)  # the slots are free again
        self.assertEqual(e.stop(), 0)

    def test_successive_scrapes_see_de_initialization(self):
        # A resident exporter that held NVML would keep the GPU initialized: the second scrape would attach
        # fast with the set clock kept. gpuwarm shuts NVML down after each collection.
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 300}, app_clocks={"sm": 1500},
                  default_app_clocks={"sm": 1980})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "0")
        for scrape in range(3):
            p = samples(http(e.url + "/metrics")[2])
            self.assertGreaterEqual(value(p, "gpuwarm_gpu_attach_seconds", gpu="0"), 0.3, f"scrape {scrape}")
            self.assertEqual(value(p, "gpuwarm_gpu_app_sm_clock_hertz", gpu="0"), 1980e6, f"scrape {scrape}")
        # And between scrapes the exporter holds no GPU device node (the fake root's /dev/nvidia* are files,
        # so this checks what a real node would show: no fd on anything under /dev/nvidia).
        pid = e.pid()
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")
                if os.path.exists(f"/proc/{pid}/fd/{fd}")]
        self.assertEqual([f for f in held if "nvidia" in f], [], held)

    def test_an_untrusted_root_is_logged_once_per_process(self):
        """A DaemonSet copied before --trust-root existed answers cannot tell (UNK011) at every scrape; its log
        says why once, not at every collection (review-s54 M3)."""
        if os.geteuid() != 0:
            self.skipTest("needs root: as another user the tree's library is loaded as that user")
        with open(os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), "rb") as library:
            self.root.write("usr/local/nvidia/lib64/libnvidia-ml.so.1", library.read(), 0o755)
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), "--min-interval", "0",
                     nvml=self.root.p("usr/local/nvidia/lib64/libnvidia-ml.so.1"))
        for scrape in range(3):
            p = samples(http(e.url + "/metrics")[2])
            self.assertEqual(value(p, "gpuwarm_finding", rule_id="UNK011", severity="warning"), 1, f"scrape {scrape}")
        self.assertEqual(e.stop(), 0)
        self.assertEqual(e.stderr().count("NVML left closed (UNK011)"), 1, e.stderr())

    def test_concurrent_scrapes_share_one_collection_and_min_interval_reuses_it(self):
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 500})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "30")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(lambda n: http(e.url + "/metrics", source=f"127.0.0.{2 + n % 4}")[2], range(8)))
        elapsed = time.monotonic() - started
        stamps = {value(samples(b), "gpuwarm_last_run_timestamp_seconds") for b in bodies}
        self.assertEqual(len(stamps), 1, "eight concurrent scrapes, one collection")
        self.assertLess(elapsed, 2.5, "eight scrapes of a 0.5 s collection would take 4 s if each collected")
        # Within --min-interval the same collection answers.
        time.sleep(0.2)
        self.assertEqual(value(samples(http(e.url + "/metrics")[2]), "gpuwarm_last_run_timestamp_seconds"),
                         stamps.pop())

    def test_healthz_answers_at_once_while_scrapes_wait_for_a_slow_collection(self):
        # A liveness or readiness probe (contrib/kubernetes) that queued behind slow collections would time out,
        # and Kubernetes would restart a healthy exporter. Twelve scrapes (4 from each of three addresses: the
        # per-client limit) wait on one 3 s collection; /healthz and / must still answer in well under a second.
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 3000})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "30")
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            scrapes = [pool.submit(http, e.url + "/metrics", source=f"127.0.0.{2 + n % 3}") for n in range(12)]
            time.sleep(0.5)
            for path in ("/healthz", "/", "/healthz"):
                started = time.monotonic()
                status, _, _ = http(e.url + path, timeout=10)
                took = time.monotonic() - started
                self.assertEqual(status, 200, path)
                self.assertLess(took, 0.5, f"{path} waited {took:.2f} s behind the collection")
            self.assertTrue(all(not s.done() for s in scrapes), "the collection ended before /healthz was timed")
            self.assertEqual([s.result()[0] for s in scrapes], [200] * 12)

    def test_a_scrape_past_prometheus_timeout_gets_the_last_good_collection(self):
        # A node whose collection outlasts Prometheus' scrape_timeout (slow attaches of de-initialized GPUs): each
        # scrape gave up, and each collection was thrown away unread, so the node exported nothing (review-s57 M1).
        # Prometheus says its timeout in a header: by then the scrape gets the last good collection.
        def stamp(body):
            return float(re.search(r"^gpuwarm_last_run_timestamp_seconds (\S+)$", body, re.M).group(1))

        g = h.gpu(0, persistence=0, deinit={"attach_ms": 3000})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "0")
        prometheus = {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        started = time.monotonic()
        status, _, first = http(e.url + "/metrics", headers=prometheus)
        took = time.monotonic() - started
        self.assertEqual(status, 200)
        self.assertGreater(took, 2.5, "no earlier collection: the first scrape waits for one")
        started = time.monotonic()
        status, _, second = http(e.url + "/metrics", headers=prometheus)
        took = time.monotonic() - started
        self.assertEqual(status, 200)
        self.assertLess(took, 2.5, "the scrape waited past its timeout")
        self.assertGreater(took, 1.2, "answered before its time was up")
        self.assertEqual(stamp(second), stamp(first))
        # A client that names no timeout (curl) waits for the collection that scrape started.
        status, _, third = http(e.url + "/metrics")
        self.assertEqual(status, 200)
        self.assertGreater(stamp(third), stamp(first))

    def test_an_nvml_hang_is_one_series_from_scrape_to_scrape(self):
        # After an NVML call that never returned, every later scrape exports the same unknown: the reason label
        # did not change wording between the scrape that waited and the next ones (review-s57 exporter L1).
        e = Exporter(self, self.root, h.scenario([h.gpu(0)], init={"delay_ms": 60000}), "--min-interval", "0",
                     "--nvml-timeout", "1")
        reasons = []
        for _ in range(3):
            status, _, body = http(e.url + "/metrics")
            self.assertEqual(status, 200)
            reasons.append(re.findall(r'^gpuwarm_fact_unknown\{fact="gpu_count",reason="([^"]*)"\} 1$', body, re.M))
        self.assertEqual(len(reasons[0]), 1, reasons)
        self.assertIn("stuck in nvmlInit", reasons[0][0])
        self.assertEqual(reasons[1], reasons[0])
        self.assertEqual(reasons[2], reasons[0])

    def test_listening_on_every_ipv6_address_takes_ipv4_clients_too(self):
        # `[::]:PORT` reads as "every address" (as Go exporters' `:PORT`); it was IPv6 only (review-s57 L2).
        if not socket.has_ipv6:
            self.skipTest("no IPv6 in this Python")
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError as e:
            self.skipTest(f"no IPv6 loopback here: {e}")
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), listen="[::]:0")
        port = e.port
        self.assertEqual(http(f"http://127.0.0.1:{port}/healthz", timeout=5)[0], 200)
        self.assertEqual(http(f"http://[::1]:{port}/healthz", timeout=5)[0], 200)

    def test_hundreds_of_connections_cost_no_thread_and_each_is_answered_while_a_scrape_waits(self):
        # One thread polls every connection and a scrape waiting for a collection is parked: 240 open connections
        # (8 from each of 30 addresses, the per-client limit) leave the exporter's threads where they were, well
        # inside the shipped unit's TasksMax, and each of them is answered while a slow collection runs.
        with open(os.path.join(CONTRIB, "systemd", "gpuwarm-exporter.service")) as f:
            tasks_max = int(re.search(r"^TasksMax=(\d+)$", f.read(), re.M).group(1))
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 4000})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "30")
        open_sockets = []
        self.addCleanup(lambda: [s.close() for s in open_sockets])
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            scrape = pool.submit(http, e.url + "/metrics", source="127.0.0.3")
            time.sleep(0.3)
            threads_before = len(os.listdir(f"/proc/{e.pid()}/task"))
            for n in range(8 * 30):
                s = socket.socket()
                s.bind((f"127.0.1.{10 + n % 30}", 0))
                s.connect(("127.0.0.1", e.port))
                open_sockets.append(s)
            time.sleep(0.5)
            threads = len(os.listdir(f"/proc/{e.pid()}/task"))
            self.assertLessEqual(threads, threads_before, f"{threads} threads with 240 connections open, "
                                                          f"{threads_before} before")
            self.assertLessEqual(threads + 4, tasks_max, f"{threads} threads against TasksMax={tasks_max}")
            started = time.monotonic()
            for s in open_sockets:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            for s in open_sockets:
                s.settimeout(5)
                self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"), "a held connection was not answered")
            self.assertLess(time.monotonic() - started, 2.0)
            self.assertFalse(scrape.done(), "the collection ended before the connections were checked")
            # A ninth connection from an address that has eight is closed unanswered; other addresses still get in.
            extra = socket.socket()
            open_sockets.append(extra)
            extra.bind(("127.0.1.10", 0))
            extra.connect(("127.0.0.1", e.port))
            extra.settimeout(5)
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                refused = extra.recv(4096) == b""
            except (BrokenPipeError, ConnectionResetError):
                refused = True
            self.assertTrue(refused, "a ninth connection from one address was served")
            self.assertEqual(http(e.url + "/healthz", timeout=5, source="127.0.2.1")[0], 200)
            self.assertEqual(scrape.result()[0], 200)
        for s in open_sockets:
            s.close()
        self.assertEqual(e.stop(), 0)

    def test_a_client_holding_its_eight_connections_gets_no_ninth(self):
        # The per-client limit (8 connections) is gpuwarm's own count: one address here, IPv6 below.
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), "--min-interval", "60")
        held = []
        self.addCleanup(lambda: [s.close() for s in held])
        for _ in range(8):
            s = socket.socket()
            s.bind(("127.0.7.1", 0))
            s.connect(("127.0.0.1", e.port))
            held.append(s)
        time.sleep(0.3)
        ninth = socket.socket()
        self.addCleanup(ninth.close)
        ninth.bind(("127.0.7.1", 0))
        ninth.connect(("127.0.0.1", e.port))  # the kernel accepts; the exporter closes it at once
        ninth.settimeout(5)
        try:
            ninth.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            got = ninth.recv(4096)
        except OSError:
            got = b""
        self.assertEqual(got, b"", "a ninth connection from one address was served")
        self.assertEqual(http(e.url + "/healthz", source="127.0.7.2")[0], 200)  # another address is not limited
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        for s in held:
            s.close()
        time.sleep(0.3)
        self.assertEqual(http(e.url + "/healthz", source="127.0.7.1")[0], 200)  # its slots are free again
        self.assertEqual(e.stop(), 0)

    def test_each_ipv6_address_and_each_64_has_its_own_limit(self):
        # 8 connections per address, as for IPv4, and 64 per /64: a host connects from as many addresses of its
        # /64 as it likes (counted by address alone, libmicrohttpd's way, one host could hold all 256), while
        # the other hosts of its link share that /64 and keep addresses of their own.
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
            self.skipTest("needs root, unshare and ip (iproute2) for a network namespace with IPv6 addresses")
        if not os.path.exists("/proc/sys/net/ipv6"):
            self.skipTest("IPv6 is disabled in this kernel (ipv6.disable=1)")
        work = tempfile.mkdtemp(prefix="gpuwarm-exporter-ipv6-")
        self.addCleanup(shutil.rmtree, work, ignore_errors=True)
        scenario = os.path.join(work, "scenario.json")
        with open(scenario, "w") as f:
            json.dump(h.scenario([h.gpu(0)]), f)
        r = subprocess.run(["unshare", "--net", "/usr/bin/python3", "-c", IPV6_CLIENTS, h.BIN, self.root.path,
                            os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1"), scenario,
                            os.path.join(work, "no-baseline.json"), os.path.join(work, "stderr")],
                           capture_output=True, text=True, timeout=90)
        if r.returncode != 0 and "unshare failed" in r.stderr:
            self.skipTest("no new network namespace here: " + r.stderr.strip())
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(work, "stderr")) as f:
            exporter_said = f.read()
        out = json.loads(r.stdout)
        self.assertIsNotNone(out["port"], exporter_said)
        self.assertTrue(out["ninth_from_one_address"].startswith("closed"), out)
        self.assertEqual(out["another_address_of_its_64"], "HTTP/1.1 200 OK", out)
        self.assertTrue(out["sixty_fifth_in_the_64"].startswith("closed"), out)
        self.assertEqual(out["from_another_64"], "HTTP/1.1 200 OK", out)
        self.assertEqual(out["held"], ["HTTP/1.1 200 OK"], out)
        self.assertEqual(out["in_the_64_once_closed"], "HTTP/1.1 200 OK", out)
        self.assertEqual(out["exit"], 0, exporter_said)

    def test_after_the_connection_limit_the_exporter_accepts_again(self):
        # At its 256 connections libmicrohttpd takes the listening socket out of its epoll set, and puts it back
        # only at the start of a later round. Found in review: when every connection closed in one round, the
        # loop slept with nothing left to wake it, and the exporter never accepted again (a local user could
        # stop it for good from 32 loopback addresses).
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), "--min-interval", "60")
        self.assertEqual(http(e.url + "/metrics", timeout=10)[0], 200)  # a collection to reuse
        for attempt in range(3):
            held = []
            try:
                for n in range(8 * 32):
                    s = socket.socket()
                    s.bind((f"127.0.4.{10 + n % 32}", 0))
                    s.connect(("127.0.0.1", e.port))
                    held.append(s)
                # Every one of them answered once: the server holds all 256, at its limit.
                for s in held:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                for s in held:
                    s.settimeout(5)
                    self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"), f"attempt {attempt}")
            finally:
                for s in held:
                    s.close()  # all at once: they end in one round of the server's loop
            time.sleep(0.3)
            started = time.monotonic()
            status, _, _ = http(e.url + "/healthz", timeout=5, source="127.0.5.1")
            self.assertEqual(status, 200, f"attempt {attempt}")
            self.assertLess(time.monotonic() - started, 1.0, f"attempt {attempt}: accepted late")
        self.assertEqual(e.stop(), 0)

    def test_a_scrape_whose_client_shut_its_sending_side_is_answered_after_waiting(self):
        # nc -N, socat and some probes send the request and shut down their side. libmicrohttpd, resuming a parked
        # connection, would read first, see the end of the stream and close it unanswered (found in review: with
        # another connection open, every such scrape was lost).
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 700})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "0")
        idle = socket.create_connection(("127.0.0.1", e.port), timeout=10)
        self.addCleanup(idle.close)
        for attempt in range(3):
            s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
            try:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                s.shutdown(socket.SHUT_WR)
                answer = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            finally:
                s.close()
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), f"attempt {attempt}: {answer[:80]!r}")
            self.assertIn(b"gpuwarm_gpu_persistence_mode", answer)
        self.assertEqual(e.stop(), 0)

    def test_sigterm_answers_the_scrape_in_flight_and_refuses_new_connections(self):
        # A restart (a package upgrade, a DaemonSet rollout) must not cost the scrape that was running.
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 5000})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "30")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # http.client asks for keep-alive (urllib always sends "Connection: close", so its answer would say
            # close whatever the server did).
            scrape = pool.submit(http, e.url + "/metrics", source="127.0.0.1")
            time.sleep(0.5)
            os.kill(e.pid(), signal.SIGTERM)
            time.sleep(0.3)
            started = time.monotonic()
            # Refused at once, while the exporter still runs (its collection has seconds to go): not queued in
            # a backlog that is reset only when the process exits.
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", e.port), timeout=3).close()
            self.assertLess(time.monotonic() - started, 0.3)
            self.assertIsNone(e.proc.poll())
            status, headers, body = scrape.result()
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Connection"), "close")  # no keep-alive to a server about to go
        self.assertEqual(value(samples(body), "gpuwarm_gpu_persistence_mode", gpu="0"), 0)
        self.assertEqual(e.proc.wait(timeout=10), 0)
        self.assertNotIn("still unanswered", e.stderr())

    def test_a_second_signal_answers_the_waiting_scrapes_503_and_stops(self):
        g = h.gpu(0, persistence=0, deinit={"attach_ms": 3000})
        e = Exporter(self, self.root, h.scenario([g]), "--min-interval", "0")
        waiting = []
        for n in range(3):
            s = socket.create_connection(("127.0.0.1", e.port), timeout=10)
            self.addCleanup(s.close)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            waiting.append(s)
        time.sleep(0.5)
        os.kill(e.pid(), signal.SIGTERM)
        time.sleep(0.2)
        os.kill(e.pid(), signal.SIGTERM)
        self.assertEqual(e.proc.wait(timeout=20), 0)
        for s in waiting:
            answer = s.recv(4096)
            self.assertTrue(answer.startswith(b"HTTP/1.1 503"), answer[:60])
            self.assertIn(b"stopping", answer)
        self.assertIn("signal 15 again", e.stderr())

    def test_a_get_whose_body_trickles_is_cut_off_and_does_not_hold_the_stop(self):
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]), "--min-interval", "60")
        s = socket.create_connection(("127.0.0.1", e.port), timeout=30)
        self.addCleanup(s.close)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        closed_after = seconds_until_closed([s], b"x", 20)
        self.assertIsNotNone(closed_after, "a body sent a byte a second kept its connection for 20 s")
        self.assertLess(closed_after, 14)
        # And a stop is not held by such a client: a request that is not whole is not waited for.
        s2 = socket.create_connection(("127.0.0.1", e.port), timeout=30)
        self.addCleanup(s2.close)
        s2.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nx")
        time.sleep(0.3)
        started = time.monotonic()
        self.assertEqual(e.stop(), 0)
        self.assertLess(time.monotonic() - started, 3)

    def test_notify_protocol_and_clean_stop(self):
        tmp = tempfile.mkdtemp(prefix="gpuwarm-notify-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        sock_path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(sock_path)
        sock.settimeout(10)
        e = Exporter(self, self.root, h.scenario([h.gpu(0)]),
                     env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "200000"})
        first = sock.recv(4096).decode()
        self.assertTrue(first.startswith("READY=1\n"), first)
        self.assertIn(f"STATUS=serving http://127.0.0.1:{e.port}/metrics", first)
        # Pings every half watchdog period (0.1 s): several arrive within a second.
        pings = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if sock.recv(4096) == b"WATCHDOG=1":
                pings += 1
        self.assertGreaterEqual(pings, 5)
        self.assertEqual(e.stop(), 0)
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        self.assertIn("STOPPING=1", rest)

    def test_bad_listen_addresses(self):
        for arg, message in [("localhost:9839", "not an IPv4 address (names are not resolved)"),
                             ("127.0.0.1:99999", "port must be a number from 0 to 65535"),
                             ("::1:9839", "goes in brackets"),
                             ("[::1]", "use ADDR:PORT")]:
            r = h.run(["metrics", "--listen", arg, "--no-systemd"], raw=True)
            self.assertEqual(r.returncode, 2, arg)
            self.assertIn(message, r.stderr, arg)
        # A port already taken: exit 1 naming the address.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            r = h.run(["metrics", "--listen", f"127.0.0.1:{port}", "--no-systemd"], raw=True)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", r.stderr)


class RealPrometheus(unittest.TestCase):
    """Prometheus scrapes node B's exporter and node_exporter's textfile collector (node A's `--textfile`),
    evaluates a copy of the alert rules with short `for:`, and answers through its query API."""

    def setUp(self):
        h.require_binary(self)
        if not PROMETHEUS or not NODE_EXPORTER:
            self.skipTest("prometheus / prometheus-node-exporter not installed (scripts/setup.sh installs them)")
        self.tmp = tempfile.mkdtemp(prefix="gpuwarm-prom-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def start(self, argv, name, bound_s=120):
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(["timeout", "-s", "KILL", str(bound_s), *argv], stdout=log, stderr=subprocess.STDOUT)

        def stop():
            if proc.poll() is None:
                subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)])
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.addCleanup(stop)
        return proc

    def query(self, port, promql):
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, _, body = http(url)
        self.assertEqual(status, 200, body)
        return json.loads(body)["data"]["result"]

    def wait_for(self, what, fn, timeout=45):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.25)
        self.fail(f"timed out waiting for {what}; last answer {last!r}")

    def test_prometheus_sees_persistence_verdicts_and_fires_the_alert(self):
        # Node A: persistence on, held by the daemon; exported through node_exporter's textfile collector.
        node_a = h.FakeRoot()
        self.addCleanup(node_a.cleanup)
        node_a.driver(gpus=2).daemon_binary().daemon_process(holds=(0, 1))
        textfile_dir = os.path.join(self.tmp, "textfile")
        os.makedirs(textfile_dir)
        scen_a = os.path.join(self.tmp, "a.json")
        with open(scen_a, "w") as f:
            json.dump(h.scenario([h.gpu(0), h.gpu(1)]), f)
        r = h.run(["metrics", "--textfile", textfile_dir, "--root", node_a.path, "--no-systemd", "--nvml",
                   os.path.join(h.FAKE_NVML_DIR, "libnvidia-ml.so.1")], raw=True,
                  extra_env={"FAKE_NVML_SCENARIO": scen_a})
        self.assertEqual(r.returncode, 0, r.stderr)
        verdict_a = json.loads(h.run(["diagnose", "--json"], root=node_a,
                                     scenario_obj=h.scenario([h.gpu(0), h.gpu(1)])).stdout)["verdict"]["code"]

        # Node B: GPU 1 has persistence off; served by the resident exporter.
        node_b = h.FakeRoot()
        self.addCleanup(node_b.cleanup)
        node_b.driver(gpus=2).daemon_binary()
        exporter = Exporter(self, node_b, h.scenario([h.gpu(0), h.gpu(1, persistence=0)]), "--min-interval", "0")

        ne_port, prom_port = free_port(), free_port()
        self.start([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ne_port}", "--collector.disable-defaults",
                    "--collector.textfile", f"--collector.textfile.directory={textfile_dir}"], "node_exporter")
        # The shipped rules with `for:` shortened so the test sees pending, then firing.
        with open(os.path.join(CONTRIB, "prometheus", "gpuwarm.rules.yml")) as f:
            rules = f.read()
        rules = re.sub(r"for: 10m", "for: 4s", rules)
        with open(os.path.join(self.tmp, "rules.yml"), "w") as f:
            f.write(rules)
        with open(os.path.join(self.tmp, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files: [rules.yml]\n"
                    "scrape_configs:\n"
                    f"  - job_name: node\n    static_configs: [{{targets: ['127.0.0.1:{ne_port}']}}]\n"
                    f"  - job_name: gpuwarm\n    static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]\n")
        self.start([PROMETHEUS, f"--config.file={self.tmp}/prometheus.yml", f"--storage.tsdb.path={self.tmp}/data",
                    f"--web.listen-address=127.0.0.1:{prom_port}"], "prometheus")
        self.wait_for("Prometheus ready", lambda: self._ready(prom_port))

        # Persistence per GPU, from both paths.
        series = self.wait_for("persistence from both nodes", lambda: (
            lambda r: r if len(r) == 4 else None)(self.query(prom_port, "gpuwarm_gpu_persistence_mode")))
        got = {(s["metric"]["job"], s["metric"]["gpu"]): s["value"][1] for s in series}
        self.assertEqual(got, {("node", "0"): "1", ("node", "1"): "1", ("gpuwarm", "0"): "1", ("gpuwarm", "1"): "0"})
        # One verdict per node, and the textfile node's is the one diagnose gives.
        verdicts = {s["metric"]["job"]: s["metric"]["verdict"] for s in self.query(prom_port, "gpuwarm_verdict == 1")}
        self.assertEqual(verdicts, {"node": verdict_a, "gpuwarm": "action-needed"})

        # The alert: pending first (inside `for:`), then firing, for node B's GPU 1 only.
        def alert_state(state):
            status, _, body = http(f"http://127.0.0.1:{prom_port}/api/v1/alerts")
            alerts = [a for a in json.loads(body)["data"]["alerts"] if a["labels"]["alertname"] == "GpuPersistenceDisabled"]
            return alerts if alerts and all(a["state"] == state for a in alerts) else None
        pending = self.wait_for("GpuPersistenceDisabled pending", lambda: alert_state("pending"))
        self.assertEqual([(a["labels"]["job"], a["labels"]["gpu"]) for a in pending], [("gpuwarm", "1")])
        firing = self.wait_for("GpuPersistenceDisabled firing", lambda: alert_state("firing"))
        self.assertEqual([(a["labels"]["job"], a["labels"]["gpu"]) for a in firing], [("gpuwarm", "1")])
        self.assertIn("gpuwarm fix", firing[0]["annotations"]["runbook"])
        self.assertEqual(exporter.stop(), 0)

    def _ready(self, port):
        try:
            return http(f"http://127.0.0.1:{port}/-/ready", timeout=2)[0] == 200
        except OSError:
            return False


if __name__ == "__main__":
    unittest.main()
