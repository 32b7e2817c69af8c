#!/usr/bin/env python3
"""Remote-write throughput: samples per second pushed, and weir CPU per
million samples, into a real Prometheus (remote-write receiver on).

    bench/remote-write.py [WEIR] [--series N] [--seconds S]

A pipeline holds N series (regex-log over a log with N distinct label
values); remote write collects every 250 ms and pushes everything. weir's
CPU (utime+stime from /proc) and weir_remote_write_samples_sent_total are
read before and after S seconds. Loopback only; bounded in time.
"""
import os, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def metric(text, name):
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name))

def main():
    args = sys.argv[1:]
    opts = {"--series": 20000, "--seconds": 20}
    for k in list(opts):
        if k in args:
            i = args.index(k); opts[k] = int(args[i + 1]); del args[i:i + 2]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    weir = args[0] if args else os.path.join(root, "target/release/weir")
    tmp = tempfile.mkdtemp(prefix="weir-rw-")
    pport, wport = free_port(), free_port()
    open(f"{tmp}/prometheus.yml", "w").write("global:\n  scrape_interval: 1m\n")
    prom = subprocess.Popen(["prometheus", f"--config.file={tmp}/prometheus.yml",
                             f"--storage.tsdb.path={tmp}/data", f"--web.listen-address=127.0.0.1:{pport}",
                             "--web.enable-remote-write-receiver"], stdout=subprocess.DEVNULL,
                            stderr=open(f"{tmp}/prometheus.log", "w"))
    conf = f"{tmp}/conf"; os.makedirs(conf)
    with open(f"{tmp}/series.log", "w") as f:
        for i in range(opts["--series"]):
            f.write(f"key=k{i}\n")
    open(f"{conf}/w.toml", "w").write(f"""[[remote_write]]
url = "http://127.0.0.1:{pport}/api/v1/write"
name = "bench"
interval = "250ms"
max_samples_per_send = 5000
[pipeline.many]
plugin = "regex-log"
source = {{ type = "file", paths = ["{tmp}/series.log"], start_at = "beginning" }}
max_series = {opts["--series"] + 10}
[[pipeline.many.config.metrics]]
name = "bench_keys_total"
type = "counter"
labels = ["key"]
[[pipeline.many.config.rules]]
regex = '^key=(?P<key>\\S+)$'
[[pipeline.many.config.rules.emit]]
metric = "bench_keys_total"
""")
    w = subprocess.Popen([weir, "run", "--config-dir", conf, "--listen", f"127.0.0.1:{wport}",
                          "--state-dir", f"{tmp}/state"], stderr=open(f"{tmp}/weir.log", "w"))
    url = f"http://127.0.0.1:{wport}/metrics"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                t = get(url)
                if metric(t, "weir_remote_write_samples_sent_total") > opts["--series"]:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        c0, s0, t0 = cpu(w.pid), metric(get(url), "weir_remote_write_samples_sent_total"), time.time()
        time.sleep(opts["--seconds"])
        c1, s1, t1 = cpu(w.pid), metric(get(url), "weir_remote_write_samples_sent_total"), time.time()
        text = get(url)
        sent, secs, cs = s1 - s0, t1 - t0, c1 - c0
        print(f"series={opts['--series']} seconds={secs:.1f} samples_sent={sent:.0f} "
              f"samples_per_s={sent / secs:.0f} weir_cpu_s={cs:.2f} "
              f"cpu_s_per_million={cs / (sent / 1e6):.2f} "
              f"dropped={metric(text, 'weir_remote_write_samples_dropped_total'):.0f} "
              f"failed={metric(text, 'weir_remote_write_samples_failed_total'):.0f} "
              f"queue={metric(text, 'weir_remote_write_queue_samples'):.0f}")
    finally:
        w.terminate(); prom.terminate(); w.wait(timeout=20); prom.wait(timeout=20)

if __name__ == "__main__":
    main()
