#!/usr/bin/env bash
# weir counterpart of run-mtail.sh / tail-catchup-mtail.sh.  SKELETON: the
# flags follow agent/src/main.rs (run --config-dir/--listen/--state-dir), but
# it has only been exercised with a stand-in (mtail behind a wrapper), never
# with weir itself.
#
#   bench/run-weir.sh [options] WEIR_BIN CONFIG_DIR N
#
# Starts `WEIR_BIN run --config-dir CONFIG_DIR --listen 127.0.0.1:PORT`, polls
# http://127.0.0.1:PORT/metrics every POLL_S until sum(http_requests_total)
# reaches N (bounded by --timeout), then reports wall time, CPU seconds of the
# weir process (utime+stime from /proc/PID/stat; all threads, so wasm
# compilation threads are included) and peak RSS (VmHWM).
#
# Two modes:
#   default      the pipeline in CONFIG_DIR reads an existing log holding N lines
#                from its start; time is counted from process start (so it
#                includes startup / plugin compilation, reported separately as
#                ready_s) -- the analogue of mtail --one_shot.
#   --append SRC --log FILE
#                catch-up, same protocol as tail-catchup-mtail.sh: FILE (the
#                file the pipeline tails) is truncated, weir is started, and
#                once /metrics answers (+ SETTLE_S) SRC is appended to FILE in
#                one go; time and CPU are counted from the append.
#
# Options:
#   --append SRC --log FILE   catch-up mode (FILE is created/truncated!)
#   --expected JSON           compare the final /metrics with expected-counts.py
#                             output (strict: weir must bin request_time=0 into
#                             every bucket); without it, only N is checked
#   --port P                  default: a free port chosen by the kernel
#   --out DIR                 where logs/exposition/summary go (default mktemp)
#   --timeout S               default 120
#   --state-dir DIR           weir --state-dir (checkpoints, compiled plugins);
#                             default OUT/state, fresh per run, so no stored
#                             offset or plugin cache carries over between runs
# Env: POLL_S (0.1), SETTLE_S (1), WEIR_ARGS (extra args appended to `weir run`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2; }

SRC= FILE= EXPECTED= PORT= OUT= TIMEOUT_S=120 STATE_DIR=
POLL_S=${POLL_S:-0.1}
SETTLE_S=${SETTLE_S:-1}
ARGS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --append) SRC=$(realpath "$2"); shift 2 ;;
    --log) FILE=$(realpath -m "$2"); shift 2 ;;
    --expected) EXPECTED=$(realpath "$2"); shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --timeout) TIMEOUT_S=$2; shift 2 ;;
    --state-dir) STATE_DIR=$2; shift 2 ;;
    -h|--help) usage ;;
    --) shift; ARGS+=("$@"); break ;;
    -*) die "unknown option $1" ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
[[ ${#ARGS[@]} -eq 3 ]] || usage
WEIR=$(realpath "${ARGS[0]}")
CONFIG_DIR=$(realpath "${ARGS[1]}")
N=${ARGS[2]}
[[ -x $WEIR ]] || die "$WEIR is not executable"
[[ -d $CONFIG_DIR ]] || die "$CONFIG_DIR is not a directory"
[[ $N =~ ^[0-9]+$ ]] || die "N must be an integer"
if [[ -n $SRC || -n $FILE ]]; then
  [[ -n $SRC && -n $FILE ]] || die "--append and --log go together"
  [[ -r $SRC ]] || die "cannot read $SRC"
  [[ $SRC != "$FILE" ]] || die "--log must differ from --append source"
  MODE=catch-up
else
  MODE=from-start
fi
OUT=${OUT:-$(mktemp -d /tmp/weir-bench-weir.XXXXXX)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
machine_info >"$OUT/machine.txt"
PORT=${PORT:-$(free_port)}
STATE_DIR=${STATE_DIR:-$OUT/state}
mkdir -p "$STATE_DIR"
URL=http://127.0.0.1:$PORT/metrics

if [[ $MODE == catch-up ]]; then
  cat "$SRC" >/dev/null            # page cache warm, as for mtail
  : >"$FILE"
fi

WEIR_PID=
cleanup() {
  if [[ -n $WEIR_PID ]]; then stop_pid "$WEIR_PID"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting weir ($MODE) on 127.0.0.1:$PORT, config $CONFIG_DIR"
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
BUSY0=$(sys_busy_ticks); STEAL0=$(sys_steal_ticks)
T_START=$(now)
# shellcheck disable=SC2086
"$WEIR" run --config-dir "$CONFIG_DIR" --listen "127.0.0.1:$PORT" --state-dir "$STATE_DIR" ${WEIR_ARGS:-} \
  >"$OUT/weir.stdout" 2>"$OUT/weir.stderr" &
WEIR_PID=$!
wait_http "$URL" "$WEIR_PID" 60 || { tail -20 "$OUT/weir.stderr" >&2; exit 1; }
READY_S=$(fsub "$(now)" "$T_START")

if [[ $MODE == catch-up ]]; then
  sleep "$SETTLE_S"
  CPU0=$(proc_cpu_ticks "$WEIR_PID")
  BUSY0=$(sys_busy_ticks); STEAL0=$(sys_steal_ticks)
  T0=$(now)
  cat "$SRC" >>"$FILE"
else
  CPU0=0                           # count from process start, startup included
  T0=$T_START
fi

set +e
RES=$(wait_metric_sum "$URL" http_requests_total "$N" "$WEIR_PID" "$TIMEOUT_S" "$POLL_S")
RC=$?
set -e
T1=$(now)
CPU1=$(proc_cpu_ticks "$WEIR_PID" || echo "$CPU0")
BUSY1=$(sys_busy_ticks); STEAL1=$(sys_steal_ticks)
RSS=$(proc_peak_rss_kb "$WEIR_PID")
read -r _ LAST POLLS <<<"$RES"
ELAPSED=$(fsub "$T1" "$T0")
CPU_S=$(ticks_to_s $((CPU1 - CPU0)))
OTHER=$(other_cpu_s "$BUSY0" "$BUSY1" "$CPU_S")
STEAL=$(ticks_to_s $((STEAL1 - STEAL0)))

curl -s --max-time 5 "$URL" >"$OUT/final.prom" || true
VERDICT="not checked (no --expected)"
CMP=0
if [[ -n $EXPECTED ]]; then
  set +e
  python3 "$BENCH_DIR/compare-exposition.py" "$OUT/final.prom" "$EXPECTED" >"$OUT/compare.txt"
  CMP=$?
  set -e
  if (( CMP == 0 )); then VERDICT="exact match"; else VERDICT="MISMATCH (see $OUT/compare.txt)"; fi
fi

cat <<EOT | tee "$OUT/summary.txt"
== weir $MODE summary
weir:             $WEIR
config_dir:       $CONFIG_DIR
lines:            $N$([[ $MODE == catch-up ]] && echo " (appended from $SRC to $FILE)")
ready_s:          $READY_S   (start -> /metrics answers)
reached:          $([[ $RC == 0 ]] && echo yes || echo NO) ($LAST of $N after $POLLS polls, poll ${POLL_S}s, timeout ${TIMEOUT_S}s)
elapsed_s:        $ELAPSED   ($([[ $MODE == catch-up ]] && echo "append start" || echo "process start") -> counter total reached, +-${POLL_S}s)
cpu_s:            $CPU_S   (weir utime+stime$([[ $MODE == catch-up ]] && echo " delta over the catch-up" || echo " since start"))
peak_rss_kb:      $RSS
lines_per_cpu_s:  $(fdiv "$N" "$CPU_S")
lines_per_wall_s: $(fdiv "$N" "$ELAPSED")
other_cpu_s:      $OTHER   (CPU used by everything else, incl. this script's polling; ~0 = clean run)
steal_s:          $STEAL   (hypervisor steal; load1 at start $LOAD0)
counts:           $VERDICT
outputs:          $OUT
EOT
(( RC == 0 && CMP == 0 ))
