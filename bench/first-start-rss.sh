#!/usr/bin/env bash
# RSS and readiness of a first start (fresh state directory: every plugin
# compiled) and of a warm start (compiled plugins from the state
# directory), with three pipelines: a log file (regex-log, the nginx
# example's rules), an HTTP source (json-stats, a local python server) and
# the process table (process-groups, the process example's groups).
#
#   bench/first-start-rss.sh WEIR_BINARY [ROUNDS]
#
# Per round and start kind prints: ms until ready answers 200,
# VmRSS and VmHWM (KiB) 2 s after ready, and the thread count. Run from the
# checkout's root (the example configs are read from examples/).
set -euo pipefail
weir=$(realpath "$1")
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
web=$(port)
mkdir -p "$tmp/web" "$tmp/conf"
echo '{"requests": 5, "errors": 1}' >"$tmp/web/stats.json"
(cd "$tmp/web" && exec python3 -m http.server "$web" --bind 127.0.0.1 >/dev/null 2>&1) &
cp "$root/examples/nginx/sample/access.log" "$tmp/access.log"
sed -e "s|sample/access.log|$tmp/access.log|" -e '/^\[server\]/,/^$/d' \
  "$root/examples/nginx/nginx.toml" >"$tmp/conf/nginx.toml"
sed -e '/^\[server\]/,/^$/d' "$root/examples/process/"*.toml >"$tmp/conf/process.toml"
cat >"$tmp/conf/http.toml" <<TOML
[pipeline.stats]
plugin = "json-stats"
source = { type = "http", url = "http://127.0.0.1:$web/stats.json", interval = "1s" }
[pipeline.stats.config]
metrics = [{ name = "app_requests", path = "requests" }, { name = "app_errors", path = "errors" }]
TOML
listen=$(port)
printf '[server]\nlisten = "127.0.0.1:%s"\n' "$listen" >"$tmp/conf/agent.toml"

one() { # kind state_dir
  local t0 pid ready rss hwm threads
  t0=$(date +%s%N)
  "$weir" run --config-dir "$tmp/conf" --state-dir "$2" >"$tmp/log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:${listen}/ready" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/log"; exit 1; }
    sleep 0.01
  done
  ready=$(( ($(date +%s%N) - t0) / 1000000 ))
  sleep 2
  rss=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads/{print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$1 ready_ms=$ready rss_kib=$rss hwm_kib=$hwm threads=$threads"
}
for r in $(seq "$rounds"); do
  rm -rf "$tmp/state"
  echo "round $r"
  one first "$tmp/state"
  one warm "$tmp/state"
done
