#!/usr/bin/env python3
"""Poll a Prometheus endpoint until sum(METRIC) >= TARGET.

    poll-metric.py URL METRIC TARGET [--pid PID] [--timeout S] [--interval S]

One process for the whole wait (spawning curl+awk per poll cost ~70 ms of
CPU per poll and disturbed the measured agent on a 2-core box); each poll
here costs about a millisecond.  Only http://127.0.0.1 / localhost URLs.

Prints one line "ELAPSED_S VALUE POLLS" (elapsed from this script's start,
measured with a monotonic clock) and exits 0 when the target was reached,
1 on timeout or if PID exited, 2 on usage error.
"""
import argparse
import os
import sys
import time
import urllib.parse
import urllib.request


def metric_sum(body, name):
    total = 0.0
    n = len(name)
    for line in body.splitlines():
        if not line.startswith(name) or len(line) <= n or line[n] not in "{ ":
            continue
        rest = line[n:]
        if rest[0] == "{":
            # label values may contain '}' only inside quotes; find the real end
            i, q = 1, False
            while i < len(rest):
                c = rest[i]
                if q and c == "\\":
                    i += 2
                    continue
                if c == '"':
                    q = not q
                elif c == "}" and not q:
                    break
                i += 1
            rest = rest[i + 1:]
        total += float(rest.split()[0])
    return total


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as dead
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("metric")
    ap.add_argument("target", type=float)
    ap.add_argument("--pid", type=int)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--interval", type=float, default=0.1)
    a = ap.parse_args()
    host = urllib.parse.urlsplit(a.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        ap.error("only loopback URLs are allowed")

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    t0 = time.monotonic()
    polls = 0
    value = 0.0
    rc = 1
    while True:
        polls += 1
        try:
            with opener.open(a.url, timeout=2) as r:
                value = metric_sum(r.read().decode("utf-8", "replace"), a.metric)
        except OSError:
            pass                          # not up / transient: keep last value
        el = time.monotonic() - t0
        if value >= a.target:
            rc = 0
            break
        if a.pid is not None and not alive(a.pid):
            print("process %d exited" % a.pid, file=sys.stderr)
            break
        if el >= a.timeout:
            print("timeout after %.0fs (value %.0f < %.0f)" % (a.timeout, value, a.target),
                  file=sys.stderr)
            break
        time.sleep(a.interval)
    print("%.3f %.0f %d" % (time.monotonic() - t0, value, polls))
    return rc


if __name__ == "__main__":
    sys.exit(main())
