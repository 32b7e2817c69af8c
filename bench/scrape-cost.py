#!/usr/bin/env python3
"""CPU and wall time of one /metrics scrape with many series.

    bench/scrape-cost.py [--weir target/release/weir] [--series 100000]
                         [--scrapes 10] [--repeats 3]

An upstream on 127.0.0.1 serves SERIES gauge series (1,000 families of
SERIES/1000 series, two labels each); one prometheus-text pipeline polls it
once. Then SCRAPES scrapes in each format, and for each: wall time, and the
agent's CPU (utime + stime of /proc/PID/stat, all threads) spent during it.
Prints min / median / max per format (each also with Accept-Encoding:
gzip) over REPEATS agents.
"""
import argparse
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TICK = os.sysconf("SC_CLK_TCK")
OM = "application/openmetrics-text; version=1.0.0"
# (name, Accept, Accept-Encoding: gzip); the body size printed is what was
# sent (compressed for the gzip rows).
FORMATS = (
    ("text", None, False),
    ("om", OM, False),
    ("text+gzip", None, True),
    ("om+gzip", OM, True),
)


def body(n):
    fams = 1000
    per = max(1, n // fams)
    out = []
    for f in range(fams):
        out.append(f"# HELP fam_{f} Family {f}.\n# TYPE fam_{f} gauge\n")
        for i in range(per):
            out.append(f'fam_{f}{{instance="host-{i % 50}",id="{i}"}} {i}.5\n')
    return "".join(out).encode()


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(args, data):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="weir-scrape-")
    os.makedirs(f"{work}/conf")
    port = free_port()
    with open(f"{work}/conf/up.toml", "w") as f:
        f.write(
            f'[server]\nlisten = "127.0.0.1:{port}"\n\n[pipeline.up]\nplugin = "prometheus-text"\n'
            f'source = {{ type = "http", url = "http://127.0.0.1:{srv.server_port}/", '
            f'interval = "1h", timeout = "60s", max_body_bytes = "1GiB" }}\n'
            f"max_series = {args.series * 2}\n"
        )
    agent = subprocess.Popen(
        [args.weir, "run", "--config-dir", f"{work}/conf", "--state-dir", f"{work}/state"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    res = {k: [] for k, _, _ in FORMATS}
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                t = urllib.request.urlopen(url, timeout=30).read().decode()
                if f'weir_pipeline_series{{pipeline="up"}} {args.series}' in t:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit("the agent did not read the upstream in 120 s")
        for fmt, accept, gzip in FORMATS:
            for _ in range(args.scrapes):
                h = {"Accept": accept} if accept else {}
                if gzip:
                    h["Accept-Encoding"] = "gzip"
                req = urllib.request.Request(url, headers=h)
                c0, w0 = cpu(agent.pid), time.perf_counter()
                n = len(urllib.request.urlopen(req, timeout=60).read())
                w1, c1 = time.perf_counter(), cpu(agent.pid)
                res[fmt].append((c1 - c0, w1 - w0, n))
    finally:
        agent.terminate()
        agent.wait(10)
        srv.shutdown()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weir", default="target/release/weir")
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--scrapes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    data = body(args.series)
    all_runs = {k: [] for k, _, _ in FORMATS}
    for _ in range(args.repeats):
        r = run(args, data)
        for k in all_runs:
            all_runs[k] += r[k]
    print(f"{args.series} series, {args.repeats} agents x {args.scrapes} scrapes per format")
    print("| format | CPU ms per scrape min / median / max | wall ms min / median / max | body MB |")
    print("|---|---|---|---|")
    for k, v in all_runs.items():
        c = sorted(x[0] * 1000 for x in v)
        w = sorted(x[1] * 1000 for x in v)
        print(
            f"| {k} | {c[0]:.0f} / {statistics.median(c):.0f} / {c[-1]:.0f} | "
            f"{w[0]:.0f} / {statistics.median(w):.0f} / {w[-1]:.0f} | {v[0][2] / 1e6:.1f} |"
        )


if __name__ == "__main__":
    main()
