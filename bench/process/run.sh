#!/usr/bin/env bash
# What one look at the process table costs, weir against
# prometheus-process-exporter: the same N sleep processes (default 1,000),
# the same machine, the same run.
#
#   bench/process/run.sh [--out DIR]
#
# 1. Starts N copies of sleep under one name of their own (comm "wbs<pid>"),
#    so that no other process on a shared machine joins their group.
# 2. prometheus-process-exporter grouping them by comm
#    (process_names: [{name: "{{.Comm}}", comm: [wbs<pid>]}]), on a free
#    127.0.0.1 port, twice: with its defaults (-threads, -gather-smaps), and
#    lean (-threads=false -gather-smaps=false). It reads /proc when scraped:
#    one warm-up scrape, then SCRAPES scrapes one after the other;
#    CPU per scrape = its utime+stime delta / SCRAPES.
# 3. weir with process-groups grouping them by comm (all its fields: fd/,
#    limits, io, status), twice:
#    (a) the process source on an interval (INTERVAL), as weir usually
#        runs: over SCANS intervals, CPU per scan = its utime+stime delta /
#        scans done (the delta of weir_source_poll_duration_seconds_count);
#        everything the agent did in that window (idle wake-ups, the two
#        scrapes that read the counts) is charged to the scans. Then
#        SCRAPES scrapes back to back: latency, and the CPU they add.
#    (b) at scrape time (max_age = "1ms"), as process-exporter works: every
#        scrape scans and waits for it. CPU delta / SCRAPES, as in 2.
# Latency per scrape: curl's time_total, for all.
#
# Env: N (1000, at most 1050), GROUPED (N: how many of them the group
#      selects; the others run under another name), SCANS (30), INTERVAL
#      (1, whole seconds),
#      SCRAPES (30), WEIR (target/release/weir),
#      PE (/usr/bin/prometheus-process-exporter).
# Needs: curl, python3 (free port), getconf, lscpu.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$HERE/../lib.sh"

N=${N:-1000}
GROUPED=${GROUPED:-$N}
SCANS=${SCANS:-30}
INTERVAL=${INTERVAL:-1}
SCRAPES=${SCRAPES:-30}
WEIR=${WEIR:-$ROOT/target/release/weir}
PE=${PE:-/usr/bin/prometheus-process-exporter}
OUT=

while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
done

(( N >= 1 && N <= 1050 )) || die "N must be 1..1050 (the machine is shared)"
(( GROUPED >= 1 && GROUPED <= N )) || die "GROUPED must be 1..N"
[[ -x $WEIR ]] || die "no $WEIR: run 'cargo build --release -p weir' from $ROOT"
[[ -x $PE ]] || die "no $PE: apt-get install prometheus-process-exporter"

TMP=$(mktemp -d /tmp/weir-bench-process.XXXXXX)
OUT=${OUT:-$TMP/out}
mkdir -p "$OUT"
COMM="wbs$$"
COMM=${COMM:0:15}
SLEEPS=()
DAEMONS=()

cleanup() {
  local p
  for p in "${DAEMONS[@]}"; do stop_pid "$p"; done
  if ((${#SLEEPS[@]})); then
    kill -KILL "${SLEEPS[@]}" 2>/dev/null || true
    for p in "${SLEEPS[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
  rm -rf "$TMP/bin" "$TMP/weir" "$TMP/pe.yml"
  # Keep the output when it is in here.
  [[ $OUT == "$TMP"/* ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers -------------------------------------------------------------

# metric URL NAME: sum of the samples of NAME (exact name, any labels).
metric() {
  curl -s --max-time 5 "$1" | awk -v n="$2" '
    { k = $1; sub(/\{.*/, "", k) }
    k == n { s += $NF }
    END { printf "%.6f\n", s }'
}

# scrape_loop URL COUNT FILE: COUNT scrapes one after the other; one
# time_total (seconds) per line in FILE.
scrape_loop() {
  local i
  : >"$3"
  for ((i = 0; i < $2; i++)); do
    curl -s -o /dev/null --max-time 30 -w '%{time_total}\n' "$1" >>"$3"
  done
}

# lat_stats FILE: "mean p50 max" in milliseconds.
lat_stats() {
  sort -g "$1" | awk '{ v[NR] = $1 * 1000; s += $1 * 1000 }
    END { printf "%.1f %.1f %.1f\n", s / NR, v[int((NR + 1) / 2)], v[NR] }'
}

# wait_count URL METRIC WANT PID: until METRIC sums to WANT (60 s at most).
wait_count() {
  local i v
  for i in $(seq 600); do
    kill -0 "$4" 2>/dev/null || die "process $4 exited; see $OUT"
    v=$(metric "$1" "$2")
    if awk -v a="$v" -v b="$3" 'BEGIN{exit !(a == b)}'; then return 0; fi
    sleep 0.1
  done
  die "$2 at $1 is $v, not $3"
}

# --- the processes ---------------------------------------------------------

# GROUPED of them under the grouped name, the others under another.
mkdir -p "$TMP/bin"
cp /usr/bin/sleep "$TMP/bin/$COMM"
cp /usr/bin/sleep "$TMP/bin/${COMM}u"
for ((i = 0; i < N; i++)); do
  if ((i < GROUPED)); then "$TMP/bin/$COMM" 3600 & else "$TMP/bin/${COMM}u" 3600 & fi
  SLEEPS+=($!)
done
started() { echo $(( $(pgrep -c -x "$COMM" || true) + $(pgrep -c -x "${COMM}u" || true) )); }
for i in $(seq 100); do
  (( $(started) == N )) && break
  sleep 0.1
done
(( $(started) == N )) || die "not all $N sleeps started"
TOTAL=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)

{
  echo "# Process table: weir vs prometheus-process-exporter"
  echo
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  machine_info
  echo "processes: $N sleeps, $GROUPED of them grouped (named $COMM), $TOTAL processes in /proc"
  echo "weir: $WEIR ($("$WEIR" --version 2>/dev/null || echo '?'))"
  echo "process-exporter: $PE ($("$PE" -version 2>&1 | head -1))"
  echo
} | tee "$OUT/summary.txt"

# --- prometheus-process-exporter -----------------------------------------

cat >"$TMP/pe.yml" <<EOF
process_names:
  - name: "{{.Comm}}"
    comm:
      - $COMM
EOF

# pe_run LABEL FLAGS...: prints one result line.
pe_run() {
  local label=$1 port pid url c0 c1 b0 b1 cpu
  shift
  port=$(free_port)
  url="http://127.0.0.1:$port/metrics"
  "$PE" -config.path "$TMP/pe.yml" -web.listen-address "127.0.0.1:$port" "$@" \
    >"$OUT/pe-$label.log" 2>&1 &
  pid=$!
  DAEMONS+=("$pid")
  wait_http "$url" "$pid" 30 || die "process-exporter did not answer; see $OUT/pe-$label.log"
  wait_count "$url" namedprocess_namegroup_num_procs "$GROUPED" "$pid"
  c0=$(proc_cpu_ticks "$pid"); b0=$(sys_busy_ticks)
  scrape_loop "$url" "$SCRAPES" "$OUT/pe-$label.lat"
  c1=$(proc_cpu_ticks "$pid"); b1=$(sys_busy_ticks)
  curl -s "$url" >"$OUT/pe-$label.prom"
  stop_pid "$pid"
  cpu=$(awk -v a="$c0" -v b="$c1" -v h="$CLK_TCK" -v n="$SCRAPES" 'BEGIN{printf "%.2f", (b-a)/h/n*1000}')
  echo "process-exporter $label: cpu_ms_per_scrape=$cpu latency_ms(mean,p50,max)=$(lat_stats "$OUT/pe-$label.lat" | tr ' ' ,) cpu_total_s=$(ticks_to_s $((c1 - c0))) others_cpu_s=$(other_cpu_s "$b0" "$b1" "$(ticks_to_s $((c1 - c0)))") series=$(grep -vc '^#' "$OUT/pe-$label.prom")"
}

PE_DEFAULT=$(pe_run default)
echo "$PE_DEFAULT" | tee -a "$OUT/summary.txt"
PE_LEAN=$(pe_run lean -threads=false -gather-smaps=false)
echo "$PE_LEAN" | tee -a "$OUT/summary.txt"

# --- weir ------------------------------------------------------------------

# weir_start SOURCE_LINE: starts weir on a fresh config; sets wpid, url.
weir_start() {
  rm -rf "$TMP/weir"
  mkdir -p "$TMP/weir/conf" "$TMP/weir/state"
  cat >"$TMP/weir/conf/procs.toml" <<EOF
[pipeline.procs]
plugin = "process-groups"
$1

[pipeline.procs.config]
groups = [{ name = "\${comm}", comm = '^$COMM\$' }]
EOF
  local port
  port=$(free_port)
  url="http://127.0.0.1:$port/metrics"
  "$WEIR" run --config-dir "$TMP/weir/conf" --state-dir "$TMP/weir/state" \
    --listen "127.0.0.1:$port" >>"$OUT/weir.log" 2>&1 &
  wpid=$!
  DAEMONS+=("$wpid")
  wait_http "http://127.0.0.1:$port/ready" "$wpid" 120 || die "weir not ready; see $OUT/weir.log"
  wait_count "$url" namedprocess_namegroup_num_procs "$GROUPED" "$wpid"
}

# (a) On an interval, as weir usually runs: CPU per scan over SCANS
# intervals, then what SCRAPES scrapes add, and their latency.
weir_start "source = { type = \"process\", interval = \"${INTERVAL}s\" }"
cp "$TMP/weir/conf/procs.toml" "$OUT/weir-interval.toml"
sleep "$INTERVAL" # past start-up (plugin compilation) and the first scans
n0=$(metric "$url" weir_source_poll_duration_seconds_count)
s0=$(metric "$url" weir_source_poll_duration_seconds_sum)
k0=$(metric "$url" weir_plugin_call_duration_seconds_count)
p0=$(metric "$url" weir_plugin_call_duration_seconds_sum)
c0=$(proc_cpu_ticks "$wpid"); b0=$(sys_busy_ticks)
sleep $((SCANS * INTERVAL))
c1=$(proc_cpu_ticks "$wpid"); b1=$(sys_busy_ticks)
n1=$(metric "$url" weir_source_poll_duration_seconds_count)
s1=$(metric "$url" weir_source_poll_duration_seconds_sum)
k1=$(metric "$url" weir_plugin_call_duration_seconds_count)
p1=$(metric "$url" weir_plugin_call_duration_seconds_sum)
sc0=$(proc_cpu_ticks "$wpid"); m0=$(metric "$url" weir_source_poll_duration_seconds_count)
scrape_loop "$url" "$SCRAPES" "$OUT/weir-interval.lat"
sc1=$(proc_cpu_ticks "$wpid"); m1=$(metric "$url" weir_source_poll_duration_seconds_count)
curl -s "$url" >"$OUT/weir-interval.prom"
open_files=$(find "/proc/$wpid/fd" -mindepth 1 -maxdepth 1 | wc -l)
rss=$(proc_peak_rss_kb "$wpid")
stop_pid "$wpid"

WEIR_LINE=$(awk -v c0="$c0" -v c1="$c1" -v n0="$n0" -v n1="$n1" -v s0="$s0" -v s1="$s1" \
  -v k0="$k0" -v k1="$k1" -v p0="$p0" -v p1="$p1" -v h="$CLK_TCK" \
  -v sc0="$sc0" -v sc1="$sc1" -v m0="$m0" -v m1="$m1" -v ns="$SCRAPES" 'BEGIN{
    scans = n1 - n0; if (scans < 1) { print "no scans"; exit 1 }
    per = (c1 - c0) / h / scans
    add = ((sc1 - sc0) / h - (m1 - m0) * per) / ns; if (add < 0) add = 0
    printf "weir interval: scans=%d cpu_ms_per_scan=%.2f scan_ms=%.2f plugin_call_ms=%.2f cpu_ms_added_per_scrape=%.2f",
      scans, per * 1000, (s1 - s0) / scans * 1000, (p1 - p0) / (k1 - k0) * 1000, add * 1000
  }')
echo "$WEIR_LINE latency_ms(mean,p50,max)=$(lat_stats "$OUT/weir-interval.lat" | tr ' ' ,) cpu_total_s=$(ticks_to_s $((c1 - c0))) others_cpu_s=$(other_cpu_s "$b0" "$b1" "$(ticks_to_s $((c1 - c0)))") peak_rss_kb=$rss open_files=$open_files series=$(grep -vc '^#' "$OUT/weir-interval.prom")" \
  | tee -a "$OUT/summary.txt"

# (b) At scrape time, as process-exporter works: max_age 1ms, so that every
# scrape scans and waits for the scan. CPU and latency per scrape.
weir_start "source = { type = \"process\", max_age = \"1ms\" }"
cp "$TMP/weir/conf/procs.toml" "$OUT/weir-scrape.toml"
curl -s -o /dev/null "$url"
n0=$(metric "$url" weir_source_poll_duration_seconds_count)
c0=$(proc_cpu_ticks "$wpid"); b0=$(sys_busy_ticks)
scrape_loop "$url" "$SCRAPES" "$OUT/weir-scrape.lat"
c1=$(proc_cpu_ticks "$wpid"); b1=$(sys_busy_ticks)
n1=$(metric "$url" weir_source_poll_duration_seconds_count)
curl -s "$url" >"$OUT/weir-scrape.prom"
stop_pid "$wpid"
# n0 and n1 are read by scrapes, which scan too: one of the n1 - n0 scans
# is the one that read n1.
WEIR_SCRAPE=$(awk -v c0="$c0" -v c1="$c1" -v h="$CLK_TCK" -v n="$SCRAPES" -v s="$n0" -v t="$n1" \
  'BEGIN{ printf "weir scrape-time: cpu_ms_per_scrape=%.2f scans_per_scrape=%.2f", (c1-c0)/h/n*1000, (t-s-1)/n }')
echo "$WEIR_SCRAPE latency_ms(mean,p50,max)=$(lat_stats "$OUT/weir-scrape.lat" | tr ' ' ,) cpu_total_s=$(ticks_to_s $((c1 - c0))) others_cpu_s=$(other_cpu_s "$b0" "$b1" "$(ticks_to_s $((c1 - c0)))")" \
  | tee -a "$OUT/summary.txt"
cp "$TMP/pe.yml" "$OUT/pe.yml"

# --- ratios ----------------------------------------------------------------
field() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" <<<"$1"; }
wi=$(awk -v a="$(field "$WEIR_LINE" cpu_ms_per_scan)" -v b="$(field "$WEIR_LINE" cpu_ms_added_per_scrape)" 'BEGIN{print a + b}')
ws=$(field "$WEIR_SCRAPE" cpu_ms_per_scrape)
for pe in "$PE_DEFAULT" "$PE_LEAN"; do
  awk -v wi="$wi" -v ws="$ws" -v p="$(field "$pe" cpu_ms_per_scrape)" -v l="${pe%%:*}" \
    'BEGIN{ printf "%s, CPU per scrape / weir: %.1fx against weir at scrape time (%.2f ms), %.1fx against weir on an interval (scan + scrape, %.2f ms)\n", l, p / ws, ws, p / wi, wi }'
done | tee -a "$OUT/summary.txt"
echo "details in $OUT" >&2
