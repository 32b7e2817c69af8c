#!/usr/bin/env python3
"""Compare a Prometheus text exposition (from mtail or weir) with the JSON
from expected-counts.py.

    compare-exposition.py EXPOSITION_FILE EXPECTED_JSON [--tolerate-zero-exclusion]

Checks
  http_requests_total{method,status}        per (method, status), plus no extra series
  http_response_bytes_total                  total
  http_request_duration_seconds_bucket{le}   every expected bound and +Inf (cumulative)
  http_request_duration_seconds_sum          relative tolerance 1e-9
  http_request_duration_seconds_count
Labels other than method/status/le (mtail's "prog", anything weir adds) are
ignored: series that differ only in those labels are summed.

Exit status: 0 all equal, 1 mismatch (differences printed), 2 usage/parse error.

mtail <= 3.0.0-rc50 never puts an observation of exactly 0 into any bucket
(its bucket ranges are min < v <= max, starting at min=0), although _count and
_sum include it.  When every bucket (including +Inf) is short by exactly the
number of zero observations, this is reported as such; with
--tolerate-zero-exclusion that pattern alone is a warning, not a failure.
"""
import argparse
import json
import math
import sys

REQ = "http_requests_total"
BYTES = "http_response_bytes_total"
HIST = "http_request_duration_seconds"


def parse_labels(s, i):
    """Parse '{a="b",c="d"}' starting at s[i] == '{'. Return (dict, index after '}')."""
    assert s[i] == "{"
    i += 1
    labels = {}
    n = len(s)
    while True:
        while i < n and s[i] in " \t,":
            i += 1
        if i >= n:
            raise ValueError("unterminated label set")
        if s[i] == "}":
            return labels, i + 1
        eq = s.index("=", i)
        name = s[i:eq].strip()
        i = eq + 1
        while s[i] in " \t":
            i += 1
        if s[i] != '"':
            raise ValueError("label value not quoted")
        i += 1
        out = []
        while True:
            c = s[i]
            if c == "\\":
                nx = s[i + 1]
                out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nx, "\\" + nx))
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                out.append(c)
                i += 1
        labels[name] = "".join(out)


def parse_value(v):
    v = v.strip()
    if v in ("+Inf", "Inf"):
        return math.inf
    if v == "-Inf":
        return -math.inf
    if v == "NaN":
        return math.nan
    try:
        return int(v)
    except ValueError:
        return float(v)


def parse_exposition(text):
    """Yield (name, labels, value) for every sample line."""
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            j = 0
            while j < len(line) and line[j] not in "{ \t":
                j += 1
            name = line[:j]
            labels = {}
            if j < len(line) and line[j] == "{":
                labels, j = parse_labels(line, j)
            rest = line[j:].split()
            value = parse_value(rest[0])   # rest[1], if any, is a timestamp
        except (ValueError, IndexError) as e:
            raise SystemExit("parse error at line %d: %r (%s)" % (lineno, line, e))
        yield name, labels, value


def le_key(le):
    return math.inf if le in ("+Inf", "Inf") else float(le)


def as_exact(v):
    """Counters: compare as integers when the float is integral."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exposition")
    ap.add_argument("expected_json")
    ap.add_argument("--tolerate-zero-exclusion", action="store_true")
    a = ap.parse_args()

    with open(a.expected_json) as f:
        exp = json.load(f)
    with open(a.exposition) as f:
        text = f.read()

    got_req = {}
    got_bytes = None
    got_buckets = {}
    got_sum = None
    got_count = None
    for name, labels, value in parse_exposition(text):
        if name == REQ:
            k = (labels.get("method"), labels.get("status"))
            got_req[k] = got_req.get(k, 0) + value
        elif name == BYTES:
            got_bytes = (got_bytes or 0) + value
        elif name == HIST + "_bucket":
            k = le_key(labels["le"])
            got_buckets[k] = got_buckets.get(k, 0) + value
        elif name == HIST + "_sum":
            got_sum = (got_sum or 0) + value
        elif name == HIST + "_count":
            got_count = (got_count or 0) + value

    diffs = []          # (kind, description)
    exp_req = {(m, s): c for m, ss in exp["requests"].items() for s, c in ss.items()}
    for k in sorted(set(exp_req) | set(got_req), key=lambda x: (str(x[0]), str(x[1]))):
        e, g = exp_req.get(k, 0), as_exact(got_req.get(k))
        if g is None:
            diffs.append(("req", "%s{method=%s,status=%s}: expected %d, missing" % (REQ, k[0], k[1], e)))
        elif g != e:
            diffs.append(("req", "%s{method=%s,status=%s}: expected %d, got %s" % (REQ, k[0], k[1], e, g)))
    got_req_total = as_exact(sum(got_req.values())) if got_req else 0
    if got_req_total != exp["requests_total"]:
        diffs.append(("req", "sum(%s): expected %d, got %s" % (REQ, exp["requests_total"], got_req_total)))

    gb = as_exact(got_bytes)
    if gb != exp["bytes_total"]:
        diffs.append(("bytes", "%s: expected %d, got %s" % (BYTES, exp["bytes_total"], gb)))

    d = exp["duration"]
    zero = d.get("zero_values", 0)
    bucket_deficits = []
    for le, c in d["buckets"]:
        k = le_key(le)
        g = as_exact(got_buckets.get(k))
        if g is None:
            diffs.append(("bucket", "%s_bucket{le=%s}: expected %d, missing" % (HIST, le, c)))
            bucket_deficits.append(None)
        elif g != c:
            diffs.append(("bucket", "%s_bucket{le=%s}: expected %d, got %s (diff %+d)" % (HIST, le, c, g, g - c)))
            bucket_deficits.append(c - g)
        else:
            bucket_deficits.append(0)
    extra_le = set(got_buckets) - {le_key(le) for le, _ in d["buckets"]}
    for k in sorted(extra_le):
        diffs.append(("bucket", "%s_bucket{le=%s}: unexpected bucket" % (HIST, k)))
    gc = as_exact(got_count)
    if gc != d["count"]:
        diffs.append(("count", "%s_count: expected %d, got %s" % (HIST, d["count"], gc)))
    if got_sum is None:
        diffs.append(("sum", "%s_sum: missing" % HIST))
    elif not math.isclose(got_sum, d["sum"], rel_tol=1e-9, abs_tol=1e-9):
        diffs.append(("sum", "%s_sum: expected %r, got %r" % (HIST, d["sum"], got_sum)))

    zero_pattern = (zero > 0 and bucket_deficits and not extra_le
                    and all(x == zero for x in bucket_deficits))

    print("requests: %d series expected, %d got; total expected %d, got %s"
          % (len(exp_req), len(got_req), exp["requests_total"], got_req_total))
    print("bytes_total: expected %d, got %s" % (exp["bytes_total"], gb))
    print("histogram: count expected %d got %s; sum expected %r got %r; zero observations %d"
          % (d["count"], gc, d["sum"], got_sum, zero))
    for kind, msg in diffs:
        print("DIFF " + msg)
    if zero_pattern:
        print("NOTE every bucket (incl. +Inf) is short by exactly %d = number of request_time==0 "
              "observations: zeros are counted in _count/_sum but in no bucket "
              "(mtail bucket ranges are min < v <= max from 0)." % zero)

    if not diffs:
        print("OK: exposition matches expected counts")
        return 0
    only_zero = zero_pattern and all(k == "bucket" for k, _ in diffs)
    if only_zero and a.tolerate_zero_exclusion:
        print("OK (tolerated): only difference is the zero-exclusion in histogram buckets")
        return 0
    print("MISMATCH: %d difference(s)%s" % (len(diffs), " (only the zero-exclusion pattern)" if only_zero else ""))
    return 1


if __name__ == "__main__":
    sys.exit(main())
