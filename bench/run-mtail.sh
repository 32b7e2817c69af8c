#!/usr/bin/env bash
# One-shot throughput of mtail over a whole log file, plus a correctness check.
#
#   bench/run-mtail.sh LOG [OUTDIR]
#
# Runs `mtail --one_shot --one_shot_format prometheus` (reads LOG from the
# start to EOF, prints the metric store, exits) under /usr/bin/time, then
# compares the printed exposition with bench/expected-counts.py.
# Env: MTAIL (default mtail), PROGS (default bench/mtail).
# Exit: 0 on success (counts match, or differ only by mtail's known
# zero-in-no-bucket histogram behaviour, which is reported), 1 on mismatch.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $# -ge 1 ]] || die "usage: $0 LOG [OUTDIR]"
LOG=$(realpath "$1")
OUT=${2:-$(mktemp -d /tmp/weir-bench-mtail.XXXXXX)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
machine_info >"$OUT/machine.txt"
MTAIL=${MTAIL:-mtail}
PROGS=${PROGS:-$BENCH_DIR/mtail}
[[ -r $LOG ]] || die "cannot read $LOG"
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"

LINES=$(wc -l <"$LOG")
EXPECTED=$OUT/expected.json
echo "== expected counts ($LINES lines) -> $EXPECTED"
python3 "$BENCH_DIR/expected-counts.py" "$LOG" --out "$EXPECTED"

echo "== $($MTAIL --version | head -1)"
"$MTAIL" --compile_only --progs "$PROGS" --logtostderr --address 127.0.0.1 --port 0 \
  2>"$OUT/compile.log" || { cat "$OUT/compile.log" >&2; die "mtail program does not compile"; }

echo "== mtail --one_shot over $LOG"
# --address/--port: mtail opens its HTTP listener even in one-shot mode;
# keep it on loopback and on a kernel-chosen port.
BUSY0=$(sys_busy_ticks); STEAL0=$(sys_steal_ticks); LOAD0=$(cut -d' ' -f1 /proc/loadavg)
/usr/bin/time -f '%e %U %S %M' -o "$OUT/time.txt" \
  "$MTAIL" --one_shot --one_shot_format prometheus \
    --progs "$PROGS" --logs "$LOG" \
    --logtostderr --address 127.0.0.1 --port 0 \
  >"$OUT/mtail.prom" 2>"$OUT/mtail.stderr"
BUSY1=$(sys_busy_ticks); STEAL1=$(sys_steal_ticks)
read -r WALL USER SYS MAXRSS <"$OUT/time.txt"
CPU=$(awk -v u="$USER" -v s="$SYS" 'BEGIN{printf "%.2f", u+s}')
OTHER=$(other_cpu_s "$BUSY0" "$BUSY1" "$CPU")
STEAL=$(ticks_to_s $((STEAL1 - STEAL0)))

echo "== compare exposition with expected counts"
set +e
python3 "$BENCH_DIR/compare-exposition.py" "$OUT/mtail.prom" "$EXPECTED" | tee "$OUT/compare.txt"
STRICT=${PIPESTATUS[0]}
python3 "$BENCH_DIR/compare-exposition.py" --tolerate-zero-exclusion "$OUT/mtail.prom" "$EXPECTED" >/dev/null
TOLERANT=$?
set -e
if (( STRICT == 0 )); then VERDICT="exact match"
elif (( TOLERANT == 0 )); then VERDICT="match except histogram buckets: request_time=0 observations counted in no bucket (known mtail behaviour)"
else VERDICT="MISMATCH (see $OUT/compare.txt)"
fi

cat <<EOT | tee "$OUT/summary.txt"
== mtail one-shot summary
log:              $LOG ($LINES lines, $(stat -c %s "$LOG") bytes)
wall_s:           $WALL
user_s:           $USER
sys_s:            $SYS
cpu_s:            $CPU
peak_rss_kb:      $MAXRSS
lines_per_cpu_s:  $(fdiv "$LINES" "$CPU")
lines_per_wall_s: $(fdiv "$LINES" "$WALL")
other_cpu_s:      $OTHER   (CPU used by everything else on the box during the run; ~0 = clean run)
steal_s:          $STEAL   (hypervisor steal during the run; load1 at start $LOAD0)
counts:           $VERDICT
outputs:          $OUT
EOT
(( TOLERANT == 0 ))
