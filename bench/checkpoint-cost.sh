#!/usr/bin/env bash
# What keeping series values in the checkpoint costs (issue 15): the nginx
# example's pipeline (a counter by method and status, a bytes counter, an
# 11-bucket histogram) reading a log appended at RATE lines/s for SECS
# seconds, once with `persist_values = false` (offsets only, as before)
# and once with the default (values kept), alternating in each round.
#
#   bench/checkpoint-cost.sh WEIR_BINARY [ROUNDS] [RATE] [SECS]
#                                        (default 3 rounds, 100000/s, 10 s)
#
# Per run: the agent's CPU seconds (utime + stime from /proc/PID/stat)
# while the writer runs, the bytes it wrote to storage (write_bytes of
# /proc/PID/io, which counts checkpoint files; the agent logs to a pipe),
# the checkpoint file's size at the end, and whether every line was
# counted (lines written = http_requests_total summed).
set -euo pipefail
weir=$(realpath "$1")
rounds=${2:-3}
rate=${3:-100000}
secs=${4:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
listen=$(port)
# One pool of lines to append from, generated once.
python3 "$root/bench/gen-nginx-log.py" 200000 "$tmp/pool.log"

setup() { # persist: true|false
  rm -rf "$tmp/conf" "$tmp/state" "$tmp/app.log"
  mkdir -p "$tmp/conf"
  : >"$tmp/app.log"
  printf '[server]\nlisten = "127.0.0.1:%s"\n' "$listen" >"$tmp/conf/agent.toml"
  sed -e '/^\[server\]/,/^$/d' \
    -e "s|\"sample/access.log\"|\"$tmp/app.log\"|" \
    -e "s|^plugin = \"regex-log\"|plugin = \"regex-log\"\npersist_values = $1|" \
    "$root/examples/nginx/nginx.toml" >"$tmp/conf/nginx.toml"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/{print $2}' "/proc/$1/io"; }

one() { # persist
  setup "$1"
  "$weir" run --config-dir "$tmp/conf" --state-dir "$tmp/state" 2>&1 | cat >"$tmp/agent.log" &
  local pid
  sleep 0.2
  pid=$(pgrep -n -f "run --config-dir $tmp/conf" || true)
  until curl -sf "http://127.0.0.1:${listen}/ready" >/dev/null 2>&1; do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { pid=$(pgrep -n -f "run --config-dir $tmp/conf" || true); }
    sleep 0.05
  done
  local t0 w0 n
  t0=$(cpu_ticks "$pid"); w0=$(written "$pid")
  # Append RATE lines a second, in tenths, cycling through the pool.
  n=$(python3 - "$tmp/pool.log" "$tmp/app.log" "$rate" "$secs" <<'EOF'
import sys, time
pool = open(sys.argv[1], 'rb').read().splitlines(keepends=True)
rate, secs = int(sys.argv[3]), float(sys.argv[4])
per = rate // 10
i = 0
start = time.monotonic()
with open(sys.argv[2], 'ab', buffering=0) as out:
    for tick in range(int(secs * 10)):
        chunk = []
        for _ in range(per):
            chunk.append(pool[i % len(pool)])
            i += 1
        out.write(b''.join(chunk))
        delay = start + (tick + 1) / 10 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
print(i)
EOF
)
  # Wait until every line is counted.
  local got=0 deadline=$((SECONDS + 120))
  while [ "$got" != "$n" ] && [ $SECONDS -lt $deadline ]; do
    got=$(curl -sf "http://127.0.0.1:${listen}/metrics" |
      awk '/^http_requests_total\{/{s+=$2} END{printf "%d", s}')
    sleep 0.2
  done
  local t1 w1 hz
  t1=$(cpu_ticks "$pid"); w1=$(written "$pid")
  hz=$(getconf CLK_TCK)
  local size
  size=$(stat -c %s "$tmp/state/checkpoints/nginx.json")
  kill -TERM "$pid"; wait || true
  awk -v p="$1" -v c=$((t1 - t0)) -v hz="$hz" -v w=$((w1 - w0)) -v s="$secs" \
    -v n="$n" -v got="$got" -v size="$size" 'BEGIN{
    printf "persist_values=%s lines=%d counted=%d cpu_s=%.2f cpu_per_s=%.3f written_bytes_per_s=%.0f checkpoint_bytes=%d\n",
      p, n, got, c / hz, c / hz / s, w / s, size }'
}

for r in $(seq "$rounds"); do
  echo "round $r"
  one false
  one true
done
