#!/usr/bin/env bash
# Tail catch-up of the mtail daemon: how long (and how much CPU) mtail needs
# to process a burst of N lines appended at once to a file it is tailing.
#
#   bench/tail-catchup-mtail.sh SRC_LOG [OUTDIR]
#
# 1. expected counts of SRC_LOG (before anything is timed);
# 2. start `mtail --progs bench/mtail --logs OUTDIR/tail.log` on 127.0.0.1:<free port>
#    with tail.log empty, wait until /metrics answers and the file is tailed;
# 3. t0, CPU0 (utime+stime from /proc/PID/stat); `cat SRC_LOG >> tail.log`;
# 4. poll /metrics every 100 ms until sum(http_requests_total) >= N (max 120 s);
# 5. report elapsed (from t0), mtail CPU delta, peak RSS; check final counts.
# Env: MTAIL, PROGS, TIMEOUT_S (120), POLL_S (0.1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || die "usage: $0 SRC_LOG [OUTDIR]"
SRC=$(realpath "$1")
OUT=${2:-$(mktemp -d /tmp/weir-bench-tail-mtail.XXXXXX)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
machine_info >"$OUT/machine.txt"
MTAIL=${MTAIL:-mtail}
PROGS=${PROGS:-$BENCH_DIR/mtail}
TIMEOUT_S=${TIMEOUT_S:-120}
POLL_S=${POLL_S:-0.1}
[[ -r $SRC ]] || die "cannot read $SRC"

N=$(wc -l <"$SRC")
echo "== expected counts for $SRC ($N lines)"
python3 "$BENCH_DIR/expected-counts.py" "$SRC" --out "$OUT/expected.json"
cat "$SRC" >/dev/null   # warm the page cache so the append is not disk-bound

FILE=$OUT/tail.log
: >"$FILE"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT/metrics

MTAIL_PID=
cleanup() {
  if [[ -n $MTAIL_PID ]]; then stop_pid "$MTAIL_PID"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting mtail on 127.0.0.1:$PORT tailing $FILE"
"$MTAIL" --progs "$PROGS" --logs "$FILE" --address 127.0.0.1 --port "$PORT" \
  --logtostderr 2>"$OUT/mtail.stderr" &
MTAIL_PID=$!
T_START=$(now)
wait_http "$URL" "$MTAIL_PID" 15 || { tail -20 "$OUT/mtail.stderr" >&2; exit 1; }
for _ in $(seq 100); do          # <= 10 s for the "Tailing FILE" log line
  grep -qF "Tailing $FILE" "$OUT/mtail.stderr" && break
  sleep 0.1
done
grep -qF "Tailing $FILE" "$OUT/mtail.stderr" || die "mtail never reported tailing $FILE"
READY_S=$(fsub "$(now)" "$T_START")
sleep 1                          # let the first poll of the (empty) file happen

CPU0=$(proc_cpu_ticks "$MTAIL_PID")
BUSY0=$(sys_busy_ticks); STEAL0=$(sys_steal_ticks); LOAD0=$(cut -d' ' -f1 /proc/loadavg)
T0=$(now)
cat "$SRC" >>"$FILE"
APPEND_S=$(fsub "$(now)" "$T0")
set +e
RES=$(wait_metric_sum "$URL" http_requests_total "$N" "$MTAIL_PID" "$TIMEOUT_S" "$POLL_S")
RC=$?
set -e
T1=$(now)
CPU1=$(proc_cpu_ticks "$MTAIL_PID" || echo "$CPU0")
BUSY1=$(sys_busy_ticks); STEAL1=$(sys_steal_ticks)
RSS=$(proc_peak_rss_kb "$MTAIL_PID")
read -r _ LAST POLLS <<<"$RES"
ELAPSED=$(fsub "$T1" "$T0")
CPU_S=$(ticks_to_s $((CPU1 - CPU0)))
OTHER=$(other_cpu_s "$BUSY0" "$BUSY1" "$CPU_S")
STEAL=$(ticks_to_s $((STEAL1 - STEAL0)))

curl -s --max-time 5 "$URL" >"$OUT/final.prom" || true
set +e
python3 "$BENCH_DIR/compare-exposition.py" "$OUT/final.prom" "$OUT/expected.json" >"$OUT/compare.txt"
STRICT=$?
python3 "$BENCH_DIR/compare-exposition.py" --tolerate-zero-exclusion "$OUT/final.prom" "$OUT/expected.json" >/dev/null
TOLERANT=$?
set -e
if (( STRICT == 0 )); then VERDICT="exact match"
elif (( TOLERANT == 0 )); then VERDICT="match except histogram buckets: request_time=0 observations counted in no bucket (known mtail behaviour)"
else VERDICT="MISMATCH (see $OUT/compare.txt)"
fi

cat <<EOT | tee "$OUT/summary.txt"
== mtail tail catch-up summary
src:              $SRC ($N lines, $(stat -c %s "$SRC") bytes)
ready_s:          $READY_S   (start -> /metrics up and file tailed)
append_s:         $APPEND_S   (cat SRC >> FILE)
reached:          $([[ $RC == 0 ]] && echo yes || echo NO) ($LAST of $N after $POLLS polls, poll ${POLL_S}s, timeout ${TIMEOUT_S}s)
elapsed_s:        $ELAPSED   (append start -> counter total reached, +-${POLL_S}s)
cpu_s:            $CPU_S   (mtail utime+stime delta over the catch-up)
peak_rss_kb:      $RSS
lines_per_cpu_s:  $(fdiv "$N" "$CPU_S")
lines_per_wall_s: $(fdiv "$N" "$ELAPSED")
other_cpu_s:      $OTHER   (CPU used by everything else, incl. this script's polling; ~0 = clean run)
steal_s:          $STEAL   (hypervisor steal; load1 at start $LOAD0)
counts:           $VERDICT
outputs:          $OUT
EOT
(( RC == 0 && TOLERANT == 0 ))
