#!/usr/bin/env bash
# Memory and threads per pipeline: RSS, VmHWM and thread count of one agent
# running N regex-log pipelines (the nginx example's rules, each on its own
# copy of the sample log), for each N given, after the agent is ready and
# has read its files. A warm start (compiled plugin cached in the state
# directory) is measured, so compilation is not part of the figure.
#
#   bench/pipelines-rss.sh WEIR_BINARY [ROUNDS] [N ...]   (default 3; 1 10 100)
#
# Prints one line per round and N; the per-pipeline cost is the slope
# between the N rows of one round.
set -euo pipefail
weir=$(realpath "$1")
rounds=${2:-3}
shift 2 || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 10 100)
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
listen=$(port)

setup() { # n: one config dir with n pipelines
  rm -rf "$tmp/conf" "$tmp/logs"
  mkdir -p "$tmp/conf" "$tmp/logs"
  printf '[server]\nlisten = "127.0.0.1:%s"\n' "$listen" >"$tmp/conf/agent.toml"
  for i in $(seq "$1"); do
    cp "$root/examples/nginx/sample/access.log" "$tmp/logs/$i.log"
    # The example's pipeline under a name of its own, on its own file.
    sed -e '/^\[server\]/,/^$/d' \
      -e "s|sample/access.log|$tmp/logs/$i.log|" \
      -e "s|pipeline\.nginx|pipeline.nginx_$i|g" \
      "$root/examples/nginx/nginx.toml" >"$tmp/conf/p$i.toml"
  done
}

one() { # n
  local pid rss hwm threads
  "$weir" run --config-dir "$tmp/conf" --state-dir "$tmp/state" >"$tmp/log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:${listen}/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/log"; exit 1; }
    sleep 0.05
  done
  sleep 3
  curl -sf "http://127.0.0.1:${listen}/metrics" >/dev/null
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads/{print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  echo "pipelines=$1 rss_kib=$rss hwm_kib=$hwm threads=$threads"
}

# Compile the plugin once into the state directory.
setup 1
one 1 >/dev/null
for r in $(seq "$rounds"); do
  echo "round $r"
  for n in "${counts[@]}"; do
    setup "$n"
    rm -rf "$tmp/state/checkpoints" 2>/dev/null || true
    one "$n"
  done
done
