#!/usr/bin/env python3
"""Independently compute the metrics weir/mtail should report for a log made
by gen-nginx-log.py.  Plain Python, no regex engine shared with the agents.

    expected-counts.py FILE [--out JSON]

Prints (or writes) JSON:
  {
    "lines": total lines read, "matched": lines parsed, "unmatched": ...,
    "requests": {"GET": {"200": n, ...}, ...},      # http_requests_total
    "requests_total": n,
    "bytes_total": n,                                  # http_response_bytes_total
    "duration": {                                      # http_request_duration_seconds
       "buckets": [[bound, cumulative_count], ..., ["+Inf", count]],  # le inclusive: v <= bound
       "sum": float, "count": n,
       "zero_values": n,                               # lines with request_time == 0
       "on_bound_values": {"0.005": n, ...}            # lines exactly on a bound
    }
  }
"""
import argparse
import json
import sys

BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


def fmt_bound(b):
    # Prometheus-style rendering: 0.005, 0.01, 1, 2.5, 10
    return repr(b) if b != int(b) else str(int(b))


def parse(line):
    """Return (method, status, bytes, request_time) or None.

    Manual split on the fixed structure: host ident user [time] "req" status
    bytes "referer" "agent" request_time.  Quoted fields are located by
    searching for '" ' so spaces inside them are harmless.
    """
    try:
        lb = line.index(" [")
        rb = line.index("] \"", lb)
        q1 = rb + 3
        q2 = line.index("\" ", q1)
        req = line[q1:q2].split(" ")
        if len(req) != 3:
            return None
        method = req[0]
        if not method.isalpha() or not method.isupper():
            return None
        rest = line[q2 + 2:]
        status, nbytes, rest = rest.split(" ", 2)
        if len(status) != 3 or not status.isdigit() or not nbytes.isdigit():
            return None
        # "referer" "agent" rt
        if not rest.startswith('"'):
            return None
        e1 = rest.index('" "', 1)
        e2 = rest.index('" ', e1 + 3)
        rt = rest[e2 + 2:].rstrip("\n")
        ip, dot, frac = rt.partition(".")
        if not (dot and ip.isdigit() and frac.isdigit()):
            return None
        return method, status, int(nbytes), rt
    except ValueError:
        return None


def compute(path):
    requests = {}
    bytes_total = 0
    noncum = [0] * (len(BOUNDS) + 1)
    dsum = 0.0
    zero = 0
    on_bound = {fmt_bound(b): 0 for b in BOUNDS}
    lines = matched = 0
    with open(path, "r", encoding="utf-8", errors="replace", newline="\n") as f:
        for line in f:
            lines += 1
            p = parse(line)
            if p is None:
                continue
            matched += 1
            method, status, nbytes, rt = p
            m = requests.setdefault(method, {})
            m[status] = m.get(status, 0) + 1
            bytes_total += nbytes
            v = float(rt)
            dsum += v          # same order and float64 type as a sequential agent
            if v == 0.0:
                zero += 1
            i = 0
            while i < len(BOUNDS) and v > BOUNDS[i]:
                i += 1
            noncum[i] += 1
            if i < len(BOUNDS) and v == BOUNDS[i]:
                on_bound[fmt_bound(BOUNDS[i])] += 1
    buckets, acc = [], 0
    for b, c in zip(BOUNDS, noncum):
        acc += c
        buckets.append([fmt_bound(b), acc])
    acc += noncum[-1]
    buckets.append(["+Inf", acc])
    return {
        "file": path,
        "lines": lines,
        "matched": matched,
        "unmatched": lines - matched,
        "requests": {m: dict(sorted(s.items())) for m, s in sorted(requests.items())},
        "requests_total": matched,
        "bytes_total": bytes_total,
        "duration": {
            "buckets": buckets,
            "sum": dsum,
            "count": matched,
            "zero_values": zero,
            "on_bound_values": on_bound,
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--out", help="write JSON here instead of stdout")
    a = ap.parse_args()
    res = compute(a.file)
    text = json.dumps(res, indent=2) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
