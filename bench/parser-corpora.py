#!/usr/bin/env python3
"""Run three public parser test corpora through prometheus-text in one agent.

    bench/parser-corpora.py --openmetrics DIR --common DIR --prometheus DIR
                            [--weir target/release/weir] [--out FILE.md]
                            [--no-prefix] [--keep DIR]

Each DIR is a checkout (or a bare git directory, read at HEAD) of:

  --openmetrics  github.com/prometheus/OpenMetrics: tests/testdata/parsers/*
                 (one input per folder, test.json gives shouldParse)
  --common       github.com/prometheus/common: expfmt/text_parse_test.go
                 (the `in:` literals of testTextParse: should parse; of
                 testTextParseError: should not)
  --prometheus   github.com/prometheus/prometheus: model/textparse
                 promparse_test.go and openmetricsparse_test.go (the `input`
                 literals; those of *Error* tests, or with an `err:` in
                 their case, should not parse)

The inputs are not copied anywhere but a temporary directory. A local HTTP
server on 127.0.0.1 serves each as its own URL; one pipeline per input
(prometheus-text, prefix `cN` unless --no-prefix) polls it; one agent runs
them all. Then:

  1. the combined scrape in 0.0.4 goes through `promtool check metrics`
     (parse errors fail; lint findings are reported, not failures);
  2. the combined scrape in OpenMetrics goes through the official Python
     parser (prometheus_client.openmetrics.parser);
  3. with prefixes, each should-parse input's samples (read by the Python
     parser of its format, `_created` left out, labels with empty values
     ignored) are compared with what weir re-exposes under its prefix;
  4. weir must still answer and every pipeline must have been called.

Writes a Markdown report (default: stdout) and exits 1 if 1, 2 or 4 failed.
"""
import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_families,
)
from prometheus_client.openmetrics.parser import _parse_sample as om_sample
from prometheus_client.parser import _parse_sample as text_sample
from prometheus_client.parser import text_string_to_metric_families as text_families

OM_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# ---------------------------------------------------------------- reading


class Repo:
    """A checkout or a bare git directory, read at HEAD."""

    def __init__(self, path):
        self.path = path
        self.bare = not os.path.isdir(os.path.join(path, ".git")) and os.path.exists(
            os.path.join(path, "HEAD")
        )

    def commit(self):
        args = ["git", "--git-dir", self.path] if self.bare else ["git", "-C", self.path]
        try:
            return subprocess.run(
                args + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return "unknown"

    def read(self, rel):
        if not self.bare:
            with open(os.path.join(self.path, rel), "rb") as f:
                return f.read()
        return subprocess.run(
            ["git", "--git-dir", self.path, "show", "HEAD:" + rel],
            capture_output=True,
            check=True,
        ).stdout

    def list(self, under):
        if not self.bare:
            out = []
            for root, _, files in os.walk(os.path.join(self.path, under)):
                for f in files:
                    out.append(os.path.relpath(os.path.join(root, f), self.path))
            return sorted(out)
        r = subprocess.run(
            ["git", "--git-dir", self.path, "ls-tree", "-r", "--name-only", "HEAD", under],
            capture_output=True,
            text=True,
            check=True,
        )
        return sorted(r.stdout.split())


GO_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", '"': b'"', "'": b"'",
              "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v", "0": b"\0"}


def go_string(src, i):
    """Parse a Go string literal (raw or interpreted, with `+` joins) at
    src[i:]; return (bytes, end) or (None, i)."""
    out = b""
    while True:
        while i < len(src) and src[i] in " \t\n":
            i += 1
        if i >= len(src):
            return (out or None), i
        if src[i] == "`":
            j = src.index("`", i + 1)
            out += src[i + 1 : j].encode()
            i = j + 1
        elif src[i] == '"':
            i += 1
            buf = b""
            while src[i] != '"':
                c = src[i]
                if c == "\\":
                    n = src[i + 1]
                    if n == "x":
                        buf += bytes([int(src[i + 2 : i + 4], 16)])
                        i += 4
                        continue
                    if n == "u":
                        buf += chr(int(src[i + 2 : i + 6], 16)).encode()
                        i += 6
                        continue
                    if n in "01234567" and src[i + 2] in "01234567":
                        buf += bytes([int(src[i + 1 : i + 4], 8)])
                        i += 4
                        continue
                    buf += GO_ESCAPES.get(n, b"\\" + n.encode())
                    i += 2
                    continue
                buf += c.encode()
                i += 1
            out += buf
            i += 1
        else:
            return (out if out else None), i
        j = i
        while j < len(src) and src[j] in " \t":
            j += 1
        if j < len(src) and src[j] == "+":
            i = j + 1
            continue
        return out, i


def go_inputs(src, key_re, verdict_of):
    """Every string literal assigned by `key_re` in Go source, with the
    verdict `verdict_of(function, case_text)` gives it."""
    funcs = [(m.start(), m.group(1)) for m in re.finditer(r"^func (\w+)", src, re.M)]
    found = []
    for m in re.finditer(key_re, src):
        value, end = go_string(src, m.end())
        if value is None:
            continue
        func = ""
        for pos, name in funcs:
            if pos < m.start():
                func = name
        nxt = re.compile(key_re).search(src, end)
        case = src[end : nxt.start() if nxt else len(src)][:400]
        found.append((value, verdict_of(func, case)))
    return found


def openmetrics_inputs(repo):
    out = []
    for rel in repo.list("tests/testdata/parsers"):
        if not rel.endswith("/test.json"):
            continue
        meta = json.loads(repo.read(rel))
        folder = rel.rsplit("/", 1)[0]
        body = repo.read(folder + "/" + meta.get("file", "metrics"))
        out.append(("openmetrics", folder.rsplit("/", 1)[1], body, meta["shouldParse"], "om"))
    return out


def common_inputs(repo):
    src = repo.read("expfmt/text_parse_test.go").decode()
    items = go_inputs(src, r"\bin:\s*", lambda f, _: "Error" not in f)
    return [("common", f"text_parse_{i}", b, ok, "text") for i, (b, ok) in enumerate(items)]


def prometheus_inputs(repo):
    out = []
    for fname, fmt in (("promparse_test.go", "text"), ("openmetricsparse_test.go", "om")):
        src = repo.read("model/textparse/" + fname).decode()

        def verdict(func, case):
            if "Error" in func:
                return False
            m = re.search(r"\berr:\s*\"(.*?)\"", case)
            return not (m and m.group(1))

        items = go_inputs(src, r"\binput\s*(?::=|:|=)\s*", verdict)
        stem = fname.replace("_test.go", "")
        out += [("prometheus", f"{stem}_{i}", b, ok, fmt) for i, (b, ok) in enumerate(items)]
    return out


# ---------------------------------------------------------------- serving


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve(bodies, formats):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            n = self.path.strip("/")
            if n not in bodies:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", OM_TYPE if formats[n] == "om" else TEXT_TYPE)
            self.send_header("Content-Length", str(len(bodies[n])))
            self.end_headers()
            self.wfile.write(bodies[n])

        def log_message(self, *a):
            pass

    class Server(ThreadingHTTPServer):
        # Every pipeline polls at once: a deep accept queue, and a client
        # that went away is not an error worth a traceback.
        request_queue_size = 1024
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass

    srv = Server(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def get(url, accept=None, timeout=60):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read().decode()


# ---------------------------------------------------------------- comparing


def norm_labels(labels):
    """Labels with a value, sorted; `le` and `quantile` as numbers (`1` and
    `1.0` are one bound)."""
    out = []
    for k, v in labels.items():
        if v == "":
            continue
        if k in ("le", "quantile"):
            try:
                v = repr(float(v))
            except ValueError:
                pass
        out.append((k, v))
    return tuple(sorted(out))


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def samples_of(text, fmt):
    """The sample lines of an exposition, as written (no renaming by type):
    (name, labels) -> value, `_created` left out. The whole text must parse
    with the official parser of its format first."""
    parse = om_families if fmt == "om" else text_families
    for _ in parse(text):
        pass
    sample = om_sample if fmt == "om" else text_sample
    out = {}
    for line in text.split("\n"):
        if fmt == "om" and line == "# EOF":
            break
        line = line.strip() if fmt == "text" else line
        if not line or line.startswith("#"):
            continue
        s = sample(line)
        if s.name.endswith("_created"):
            continue
        out[(s.name, norm_labels(s.labels))] = float(s.value)
    return out


def compare(expected, got):
    missing = [k for k in expected if k not in got]
    changed = [k for k in expected if k in got and not same(expected[k], got[k])]
    extra = [k for k in got if k not in expected]
    return missing, changed, extra


def fmt_key(k):
    name, labels = k
    return name + ("{" + ",".join(f'{a}="{b}"' for a, b in labels) + "}" if labels else "")


# ---------------------------------------------------------------- running


def run(args, inputs, prefixed):
    work = tempfile.mkdtemp(prefix="weir-corpora-")
    cfg = os.path.join(work, "conf")
    os.makedirs(cfg)
    bodies = {str(i): body for i, (_, _, body, _, _) in enumerate(inputs)}
    formats = {str(i): fmt for i, (_, _, _, _, fmt) in enumerate(inputs)}
    srv = serve(bodies, formats)
    port = free_port()
    lines = [f'[server]\nlisten = "127.0.0.1:{port}"\n']
    for i, _ in enumerate(inputs):
        lines.append(
            f'[pipeline.c{i}]\nplugin = "prometheus-text"\n'
            f'source = {{ type = "http", url = "http://127.0.0.1:{srv.server_port}/{i}", '
            f'interval = "5s", timeout = "10s" }}\n'
        )
        if prefixed:
            lines.append(f'[pipeline.c{i}.config]\nprefix = "c{i}"\n')
    with open(os.path.join(cfg, "corpora.toml"), "w") as f:
        f.write("\n".join(lines))
    log = open(os.path.join(work, "weir.log"), "w")
    agent = subprocess.Popen(
        [args.weir, "run", "--config-dir", cfg, "--state-dir", os.path.join(work, "state")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/metrics"
    result = {"prefixed": prefixed, "work": work}
    try:
        deadline = time.time() + 120
        called = set()
        while time.time() < deadline:
            if agent.poll() is not None:
                break
            try:
                text = get(base)
            except OSError:
                time.sleep(0.5)
                continue
            called = set(re.findall(r'weir_plugin_calls_total\{pipeline="c(\d+)"\} [1-9]', text))
            if len(called) == len(inputs):
                break
            time.sleep(0.5)
        result["called"] = len(called)
        result["alive"] = agent.poll() is None
        text = get(base)
        om = get(base, OM_TYPE)
        result["text_bytes"], result["om_bytes"] = len(text), len(om)
        with open(os.path.join(work, "scrape.prom"), "w") as f:
            f.write(text)
        with open(os.path.join(work, "scrape.om"), "w") as f:
            f.write(om)
        p = subprocess.run(
            [args.promtool, "check", "metrics"], input=text, capture_output=True, text=True
        )
        report = (p.stdout + p.stderr).strip().splitlines()
        result["promtool_parse_errors"] = [l for l in report if "error while linting" in l
                                           or "parsing error" in l]
        result["promtool_lint"] = len(report) - len(result["promtool_parse_errors"])
        try:
            fams = list(om_families(om))
            result["om_error"] = None
            result["om_families"] = len(fams)
        except Exception as e:  # the parser raises ValueError and others
            result["om_error"] = f"{type(e).__name__}: {e}"
        rejected = {
            int(n): float(v)
            for n, v in re.findall(
                r'weir_plugin_inputs_rejected_total\{pipeline="c(\d+)"\} (\S+)', text
            )
        }
        conflicts = re.findall(r"^weir_exposition_conflicts_total\{(.*)\} (\S+)$", text, re.M)
        result["conflicts"] = [(l, v) for l, v in conflicts if v != "0"]
        per = []
        if prefixed:
            got_all = samples_of(text, "text")
            for i, (corpus, name, body, ok, fmt) in enumerate(inputs):
                pre = f"c{i}_"
                got = {
                    (k[0][len(pre):], k[1]): v for k, v in got_all.items() if k[0].startswith(pre)
                }
                try:
                    expected = samples_of(body.decode(), fmt)
                    perr = None
                except Exception as e:
                    expected, perr = None, f"{type(e).__name__}: {e}"
                entry = {
                    "corpus": corpus,
                    "name": name,
                    "should_parse": ok,
                    "rejected": rejected.get(i, 0.0),
                    "exposed": len(got),
                    "python_error": perr,
                }
                if expected is not None:
                    missing, changed, extra = compare(expected, got)
                    entry.update(missing=missing, changed=changed, extra=extra)
                per.append(entry)
        result["inputs"] = per
    finally:
        agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
        srv.shutdown()
        log.close()
    return result


def report(results, inputs, repos):
    out = ["# Parser corpora through prometheus-text", ""]
    out.append("Generated by `bench/parser-corpora.py`; corpora at:")
    for name, r in repos.items():
        out.append(f"- {name}: `{r.commit()}`")
    by = {}
    for c, _, _, ok, _ in inputs:
        by.setdefault(c, [0, 0])[0 if ok else 1] += 1
    out.append("")
    out.append("| corpus | inputs | should parse | should not |")
    out.append("|---|---|---|---|")
    for c, (g, b) in by.items():
        out.append(f"| {c} | {g + b} | {g} | {b} |")
    ok_all = True
    for r in results:
        mode = "with prefixes" if r["prefixed"] else "without prefixes"
        out += ["", f"## Combined scrape, {mode}", ""]
        good = (
            r["alive"]
            and r["called"] == len(inputs)
            and not r["promtool_parse_errors"]
            and r.get("om_error") is None
        )
        ok_all &= good
        out.append(f"- agent alive after the run: {r['alive']}; pipelines called: "
                   f"{r['called']}/{len(inputs)}")
        out.append(f"- 0.0.4: {r['text_bytes']} bytes; promtool parse errors: "
                   f"{len(r['promtool_parse_errors'])}; lint findings: {r['promtool_lint']}")
        for e in r["promtool_parse_errors"][:5]:
            out.append(f"  - `{e}`")
        out.append(f"- OpenMetrics: {r['om_bytes']} bytes; Python parser: "
                   + ("accepted, %d families" % r["om_families"] if r.get("om_error") is None
                      else f"**rejected**: `{r['om_error'][:300]}`"))
        if r["conflicts"]:
            out.append("- weir_exposition_conflicts_total (non-zero): "
                       + ", ".join(f"`{{{l}}}` {v}" for l, v in r["conflicts"]))
        if r["inputs"]:
            intact = [e for e in r["inputs"] if e["should_parse"] and e.get("missing") == []
                      and e.get("changed") == []]
            good_inputs = [e for e in r["inputs"] if e["should_parse"]]
            bad_inputs = [e for e in r["inputs"] if not e["should_parse"]]
            out.append(f"- should-parse inputs re-exposed with every sample intact: "
                       f"{len(intact)}/{len(good_inputs)} (extra samples weir adds, such as a "
                       f"histogram's `_count` from its `+Inf` bucket, are listed below but do not "
                       f"count against it)")
            out.append(f"- should-not-parse inputs with something counted as rejected: "
                       f"{sum(1 for e in bad_inputs if e['rejected'] > 0)}/{len(bad_inputs)}; "
                       f"the rest re-exposed in a form valid in both formats")
            out += ["", "Should-parse inputs whose samples differ (what Python's parser for "
                    "the input's format reads vs what weir serves under the prefix):", ""]
            out.append("| corpus | input | rejected | missing | changed | extra |")
            out.append("|---|---|---|---|---|---|")
            for e in good_inputs:
                if e in intact and not e.get("extra"):
                    continue
                if "missing" not in e:
                    out.append(f"| {e['corpus']} | {e['name']} | {e['rejected']:g} | "
                               f"(Python parser: {e['python_error'][:80]}) | | |")
                    continue
                cell = lambda ks: "<br>".join(fmt_key(k)[:80] for k in ks[:3]) + (
                    f" (+{len(ks) - 3})" if len(ks) > 3 else "")
                out.append(f"| {e['corpus']} | {e['name']} | {e['rejected']:g} | "
                           f"{cell(e['missing'])} | {cell(e['changed'])} | {cell(e['extra'])} |")
    return "\n".join(out) + "\n", ok_all


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--openmetrics")
    ap.add_argument("--common")
    ap.add_argument("--prometheus")
    ap.add_argument("--weir", default="target/release/weir")
    ap.add_argument("--promtool", default=shutil.which("promtool") or "/usr/bin/promtool")
    ap.add_argument("--out")
    ap.add_argument("--no-prefix", action="store_true", help="only the run without prefixes")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    args = ap.parse_args()
    repos, inputs = {}, []
    for key, fn in (("openmetrics", openmetrics_inputs), ("common", common_inputs),
                    ("prometheus", prometheus_inputs)):
        path = getattr(args, key)
        if path:
            repos[key] = Repo(path)
            inputs += fn(repos[key])
    if not inputs:
        ap.error("give at least one corpus checkout")
    results = []
    for prefixed in ([False] if args.no_prefix else [True, False]):
        r = run(args, inputs, prefixed)
        results.append(r)
        if not args.keep:
            shutil.rmtree(r["work"], ignore_errors=True)
        else:
            print(f"kept {r['work']}", file=sys.stderr)
    text, ok = report(results, inputs, repos)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
