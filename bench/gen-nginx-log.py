#!/usr/bin/env python3
"""Deterministic generator of nginx "combined" access-log lines with a
trailing $request_time field, for the weir/mtail benchmarks.

    gen-nginx-log.py N OUT [--seed S]

Same N and seed => byte-identical output (Python's random.Random is stable
across CPython versions for random(), choices() and randrange()).
OUT may be "-" for stdout.

Line shape (log_format combined + " $request_time"):
  203.0.113.7 - - [22/Nov/2026:10:00:00 +0000] "GET /api/items?id=3 HTTP/1.1" 200 5123 "-" "Mozilla/5.0" 0.012

Distribution notes (so the counts exercise the interesting cases):
  * methods GET/POST/PUT/DELETE/HEAD, statuses 200,201,204,301,304,400,404,500,502,503;
  * bytes are always digits; 204/304/HEAD responses send 0, ~2% of others also 0;
  * request_time has exactly 3 decimals; ~12% are exactly 0.000, ~3% sit exactly
    on a histogram bucket bound (0.005 ... 10.000) to check "le" inclusiveness,
    and a small tail exceeds 10 s (only in the +Inf bucket).
"""
import argparse
from bisect import bisect_right as bisect
import random
import sys
import time

START_EPOCH = 1795341600  # 2026-11-22T10:00:00Z
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD")
METHOD_W = (70, 15, 5, 3, 7)

# Status weights per method (ordering matters only for determinism).
STATUSES = (200, 201, 204, 301, 304, 400, 404, 500, 502, 503)
STATUS_W = {
    "GET":    (760, 0, 0, 20, 90, 15, 80, 15, 10, 10),
    "POST":   (500, 300, 20, 10, 0, 80, 30, 40, 10, 10),
    "PUT":    (500, 150, 200, 0, 0, 70, 40, 20, 10, 10),
    "DELETE": (300, 0, 500, 0, 0, 40, 120, 20, 10, 10),
    "HEAD":   (800, 0, 0, 30, 100, 10, 50, 5, 3, 2),
}

PATHS = (
    "/", "/index.html", "/login", "/logout", "/favicon.ico", "/robots.txt",
    "/static/app.js", "/static/app.css", "/static/img/logo.png",
    "/api/items", "/api/items?id={n}", "/api/items/{n}", "/api/users/{n}",
    "/api/search?q=term{n}&page={p}", "/api/orders/{n}/lines", "/healthz",
)
PATH_W = (8, 4, 3, 1, 3, 1, 6, 5, 4, 10, 20, 12, 8, 6, 5, 4)

REFERERS = ("-", "-", "-", "https://example.com/", "https://example.com/shop?x=1",
            "https://www.google.com/")
AGENTS = (
    "Mozilla/5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "curl/8.5.0",
    "Go-http-client/1.1",
    "kube-probe/1.31",
)
AGENT_W = (20, 25, 35, 8, 7, 5)
PROTOS = ("HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/2.0", "HTTP/1.0")

BOUNDS = ("0.005", "0.010", "0.025", "0.050", "0.100", "0.250", "0.500",
          "1.000", "2.500", "5.000", "10.000")


def stamp(epoch):
    t = time.gmtime(epoch)
    return "%02d/%s/%04d:%02d:%02d:%02d +0000" % (
        t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


def _cum(weights):
    out, acc = [], 0
    for w in weights:
        acc += w
        out.append(acc)
    return [c / acc for c in out]


def generate(n, out, seed):
    r = random.Random(seed)
    rnd = r.random
    bits = r.getrandbits
    lognorm = r.lognormvariate
    method_cum = _cum(METHOD_W)
    path_cum = _cum(PATH_W)
    agent_cum = _cum(AGENT_W)
    status_cum = {m: _cum(STATUS_W[m]) for m in METHODS}
    # 4096 client addresses, drawn once.
    ips = ["%d.%d.%d.%d" % ((203, 198, 192, 10)[j & 3], bits(8), bits(8), 1 + bits(7))
           for j in range(4096)]
    nb = len(BOUNDS)
    ts_epoch = START_EPOCH
    ts_str = stamp(ts_epoch)
    chunk = 50_000
    written = 0
    i = 0
    while written < n:
        k = min(chunk, n - written)
        buf = []
        app = buf.append
        for _ in range(k):
            m = METHODS[bisect(method_cum, rnd())]
            status = STATUSES[bisect(status_cum[m], rnd())]
            # ~250 requests per second of log time, advancing monotonically
            if rnd() < 0.004:
                ts_epoch += 1
                ts_str = stamp(ts_epoch)
            p = PATHS[bisect(path_cum, rnd())]
            if "{" in p:
                p = p.format(n=1 + bits(13), p=1 + bits(4))
            if m == "HEAD" or status == 204 or status == 304:
                nbytes = 0
            elif rnd() < 0.02:
                nbytes = 0
            elif status >= 400:
                nbytes = 100 + bits(9)
            elif status == 301:
                nbytes = 162
            else:
                nbytes = int(lognorm(8.0, 1.5)) % 5_000_000
            # request_time, 3 decimals
            u = rnd()
            if u < 0.12:
                rt = "0.000"
            elif u < 0.15:
                rt = BOUNDS[int((u - 0.12) / 0.03 * nb)]
            elif u < 0.155:
                rt = "%.3f" % (10.0 + rnd() * 50.0)       # > 10 s tail
            else:
                v = lognorm(-3.5, 1.3)                     # median ~30 ms
                rt = "%.3f" % (v if v < 60.0 else 60.0)
            app('%s - - [%s] "%s %s %s" %d %d "%s" "%s" %s\n' % (
                ips[bits(12)], ts_str, m, p, PROTOS[i % 5], status, nbytes,
                REFERERS[i % 6], AGENTS[bisect(agent_cum, rnd())], rt))
            i += 1
        out.write("".join(buf))
        written += k


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", type=int, help="number of lines")
    ap.add_argument("out", help='output file ("-" for stdout)')
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    if a.n < 0:
        ap.error("N must be >= 0")
    if a.out == "-":
        generate(a.n, sys.stdout, a.seed)
    else:
        with open(a.out, "w", encoding="ascii", newline="\n", buffering=1 << 20) as f:
            generate(a.n, f, a.seed)


if __name__ == "__main__":
    main()
