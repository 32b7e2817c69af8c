# Shared helpers for the bench scripts (sourced, not executed).
# All network access is to 127.0.0.1 only; every loop is bounded.

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
CLK_TCK=$(getconf CLK_TCK)

die() { echo "error: $*" >&2; exit 2; }

# An unused TCP port on 127.0.0.1 (the kernel picks it; tiny race until reuse).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Wall-clock seconds with ns resolution; fine at our 100 ms polling scale.
now() { date +%s.%N; }

# fsub A B -> A-B ; fdiv A B -> A/B (floats, via awk)
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a-b}'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.0f", a/b; else print "inf"}'; }

# CPU ticks (utime+stime of the process itself, all threads; children not
# included) of PID.
# Fields 14/15 of /proc/PID/stat, counted after the ")" that ends comm.
proc_cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat") || return 1
  stat=${stat##*) }
  # now $1 is field 3 (state); utime = field 14 -> index 12, stime -> 13
  awk '{print $12 + $13}' <<<"$stat"
}
ticks_to_s() { awk -v t="$1" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", t/h}'; }

# Peak resident set (VmHWM) of PID in KiB.
proc_peak_rss_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }

# wait_http URL PID TIMEOUT_S: until URL answers 200; fails if PID dies or timeout.
wait_http() {
  local url=$1 pid=$2 deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before becoming ready" >&2; return 1; }
    if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url") == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# wait_metric_sum URL NAME TARGET PID TIMEOUT_S [POLL_S]
# Polls until sum(NAME) >= TARGET (bench/poll-metric.py: one light process).
# Prints "elapsed_s last_value polls"; returns 0 on success, 1 on timeout or
# process death (still printing).
wait_metric_sum() {
  python3 "$BENCH_DIR/poll-metric.py" "$1" "$2" "$3" --pid "$4" --timeout "$5" --interval "${6:-0.1}"
}

# stop_pid PID: TERM, wait up to 5 s, then KILL.  Only ever our own child.
stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

machine_info() {
  echo "nproc: $(nproc)"
  lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Hypervisor vendor|L2|L3)' | sed 's/  */ /g'
  echo "kernel: $(uname -r)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# System-wide busy ticks (user+nice+system+irq+softirq+steal over all CPUs)
# and steal ticks, from /proc/stat.  Used to tell whether a run shared the
# machine: other_cpu_s = busy delta - measured process CPU.  (It includes the
# harness's own polling: poll-metric.py, ~0.2 CPU-s per 100 s.)
sys_busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }
sys_steal_ticks() { awk '/^cpu /{print $9; exit}' /proc/stat; }
# other_cpu_s BUSY0 BUSY1 PROC_CPU_S
other_cpu_s() {
  awk -v a="$1" -v b="$2" -v p="$3" -v h="$CLK_TCK" \
    'BEGIN{o=(b-a)/h-p; if (o<0) o=0; printf "%.2f", o}'
}
