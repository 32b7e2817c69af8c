#!/usr/bin/env bash
# What multi-line framing and container-log decoding cost next to plain
# lines (issue 15: at most 20% more), measured side by side in one run with
# the nginx benchmark's pipeline (examples/nginx/nginx.toml, regex-log).
#
#   bench/framing-cost.sh [WEIR_BIN] [N] [ROUNDS]
#
# WEIR_BIN defaults to target/release/weir, N to 1000000 lines, ROUNDS to 2.
# Four variants of the same N nginx lines, each run with bench/run-weir.sh
# --append (catch-up: time and CPU from the append until /metrics counts N):
#
#   plain       the lines as nginx writes them
#   multiline   the same with multiline = { start = '^\d+\.\d+\.\d+\.\d+ ' }
#               (every line starts a record: the rule runs on every line)
#   cri         the lines in CRI format (TIMESTAMP stdout F LINE), format = "cri"
#   cri+multi   both
#
# The variants alternate within each round, so drift in the machine's load
# touches all of them alike. Prints CPU seconds per variant and the ratio
# to plain; check that other_cpu_s is about 0 in each summary.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
WEIR=${1:-$ROOT/target/release/weir}
N=${2:-1000000}
ROUNDS=${3:-2}
OUT=$(mktemp -d /tmp/weir-framing.XXXXXX)
echo "== output in $OUT"
python3 "$HERE/gen-nginx-log.py" "$N" "$OUT/plain.log"
# CRI: the runtime's prefix on every line.
sed 's/^/2026-12-03T10:00:00.123456789Z stdout F /' "$OUT/plain.log" >"$OUT/cri.log"

variant() { # NAME SOURCE_EXTRA MULTILINE
  local dir=$OUT/conf-$1
  mkdir -p "$dir"
  # The example's pipeline, reading the file run-weir.sh appends to.
  python3 - "$ROOT/examples/nginx/nginx.toml" "$dir/nginx.toml" "$OUT/tail-$1.log" "$2" "$3" <<'PY'
import sys
src, dst, log, extra, multiline = sys.argv[1:]
text = open(src).read()
text = text.replace('[server]\nlisten = "127.0.0.1:9731"\n', "")
old = 'source = { type = "file", paths = ["sample/access.log"], start_at = "beginning" }'
assert old in text, "could not adapt examples/nginx/nginx.toml"
new = f'source = {{ type = "file", paths = ["{log}"], start_at = "beginning"{extra} }}'
if multiline:
    new += "\nmultiline = { start = '^\\d+\\.\\d+\\.\\d+\\.\\d+ ' }"
open(dst, "w").write(text.replace(old, new))
PY
}
variant plain "" ""
variant multiline "" yes
variant cri ', format = "cri"' ""
variant cri-multi ', format = "cri"' yes

declare -A CPU
for r in $(seq 1 "$ROUNDS"); do
  for v in plain multiline cri cri-multi; do
    src=$OUT/plain.log
    [[ $v == cri* ]] && src=$OUT/cri.log
    "$HERE/run-weir.sh" --append "$src" --log "$OUT/tail-$v.log" --out "$OUT/run-$v-$r" \
      "$WEIR" "$OUT/conf-$v" "$N" >/dev/null
    cpu=$(awk '/^cpu_s:/ {print $2}' "$OUT/run-$v-$r/summary.txt")
    other=$(awk '/^other_cpu_s:/ {print $2}' "$OUT/run-$v-$r/summary.txt")
    echo "round $r $v: cpu_s $cpu (other_cpu_s $other)"
    CPU[$v]="${CPU[$v]:-} $cpu"
  done
done
echo
echo "| variant | CPU-s per round | best | best / plain |"
echo "|---|---|---|---|"
best() { tr ' ' '\n' <<<"$1" | grep . | sort -g | head -1; }
base=$(best "${CPU[plain]}")
for v in plain multiline cri cri-multi; do
  b=$(best "${CPU[$v]}")
  echo "| $v |${CPU[$v]} | $b | $(awk -v a="$b" -v p="$base" 'BEGIN { printf "%.2f", a / p }') |"
done
