#!/usr/bin/env python3
"""Hot-reload latency: time from writing a pipeline file to its first series
on /metrics, debounce included.

    bench/reload-latency.py [WEIR] [--runs N]

Two cases, N runs each, against one running agent (release build):
  cached:   the new pipeline uses the built-in regex-log, whose compiled
            form is already in the state directory's plugin cache;
  uncached: the new pipeline names a .wasm never seen before (regex-log
            with a unique custom section appended), so it is compiled.
Each run writes the file atomically (write + rename), then polls /metrics
every 2 ms until the pipeline's counter shows the one line it reads.
Loopback only; bounded in time.
"""
import os, socket, statistics, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()

def pipeline(name, plugin, log):
    return f"""[pipeline.{name}]
plugin = "{plugin}"
source = {{ type = "file", paths = ["{log}"], start_at = "beginning" }}
[[pipeline.{name}.config.metrics]]
name = "{name}_lines_total"
type = "counter"
[[pipeline.{name}.config.rules]]
regex = "^line"
[[pipeline.{name}.config.rules.emit]]
metric = "{name}_lines_total"
"""

def main():
    args = sys.argv[1:]
    runs = 10
    if "--runs" in args:
        i = args.index("--runs"); runs = int(args[i + 1]); del args[i:i + 2]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    weir = args[0] if args else os.path.join(root, "target/release/weir")
    wasm = os.path.join(root, "target/wasm/wasm32-wasip2/release/regex_log.wasm")
    base = open(wasm, "rb").read()
    tmp = tempfile.mkdtemp(prefix="weir-reload-")
    conf, plugins = os.path.join(tmp, "conf"), os.path.join(tmp, "plugins")
    os.makedirs(conf); os.makedirs(plugins)
    log = os.path.join(tmp, "in.log")
    open(log, "w").write("line 1\n")
    # Warm the plugin cache for the built-in.
    open(os.path.join(conf, "warm.toml"), "w").write(pipeline("warm", "regex-log", log))
    port = free_port()
    proc = subprocess.Popen([weir, "run", "--config-dir", conf, "--listen", f"127.0.0.1:{port}",
                             "--state-dir", os.path.join(tmp, "state")],
                            stderr=open(os.path.join(tmp, "agent.log"), "w"))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if "warm_lines_total 1" in get(url): break
            except OSError:
                pass
            time.sleep(0.02)
        results = {"cached": [], "uncached": []}
        for i in range(runs):
            for case in ("cached", "uncached"):
                name = f"{case}{i}"
                if case == "cached":
                    plugin = "regex-log"
                else:
                    payload = f"build-{i}-{time.time()}".encode()
                    sec = bytes([len(b"bench")]) + b"bench" + payload
                    path = os.path.join(plugins, f"p{i}.wasm")
                    open(path, "wb").write(base + bytes([0, len(sec)]) + sec)
                    plugin = path
                tmpf = os.path.join(conf, f".{name}.tmp")
                open(tmpf, "w").write(pipeline(name, plugin, log))
                t0 = time.perf_counter()
                os.rename(tmpf, os.path.join(conf, f"{name}.toml"))
                want = f"{name}_lines_total 1"
                while want not in get(url):
                    if time.perf_counter() - t0 > 30:
                        raise SystemExit(f"{name}: no series after 30 s")
                    time.sleep(0.002)
                results[case].append(time.perf_counter() - t0)
                time.sleep(0.3)
        for case, xs in results.items():
            xs_ms = sorted(x * 1000 for x in xs)
            print(f"{case:9s} n={len(xs_ms)} median={statistics.median(xs_ms):.0f} ms "
                  f"min={xs_ms[0]:.0f} ms max={xs_ms[-1]:.0f} ms")
    finally:
        proc.terminate(); proc.wait(timeout=20)

if __name__ == "__main__":
    main()
