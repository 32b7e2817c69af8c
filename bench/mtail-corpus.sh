#!/usr/bin/env bash
# mtail's example corpus through `weir import mtail`.
#
#   bench/mtail-corpus.sh MTAIL_CHECKOUT WEIR_BINARY
#
# MTAIL_CHECKOUT is a checkout (or an extracted archive) of
# github.com/google/mtail with examples/ and internal/mtail/testdata/.
# Nothing of it is copied into this repository: the translated files and
# outputs go to a temporary directory (kept with KEEP=1).
#
# For every examples/*.mtail: import it, count it as translated fully
# (exit 0), partly (exit 2, at least one rule written) or not at all, and
# run `weir check` on the result. Where mtail's integration test pairs the
# program with a test log and a golden file, run the translated pipeline
# on the log with `weir test` and compare every golden counter and gauge
# value with weir's (a counter named without _total is exposed with it).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 MTAIL_CHECKOUT WEIR_BINARY" >&2
    exit 64
fi
M=$(cd "$1" && pwd)
WEIR=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
[ -d "$M/examples" ] || { echo "$M/examples: not found" >&2; exit 66; }
[ -x "$WEIR" ] || { echo "$WEIR: not executable" >&2; exit 66; }
command -v python3 >/dev/null || { echo "python3 is needed to compare values" >&2; exit 69; }

OUT=$(mktemp -d)
[ "${KEEP:-}" = 1 ] && echo "outputs in $OUT" >&2 || trap 'rm -rf "$OUT"' EXIT

fully=0 partly=0 only_times=0 none=0 checked_ok=0 checked_bad=0 reports=0
for prog in "$M"/examples/*.mtail; do
    name=$(basename "$prog" .mtail)
    d="$OUT/$name"
    mkdir -p "$d"
    set +e
    "$WEIR" import mtail "$prog" -o "$d/$name.toml" 2>"$d/import.err"
    rc=$?
    set -e
    n=$(grep -c ': not translated: ' "$d/import.err" || true)
    reports=$((reports + n))
    if grep -q '^\[pipeline\.' "$d/$name.toml" 2>/dev/null; then
        rules=$(grep -c '^\[\[pipeline\..*\.config\.rules\]\]' "$d/$name.toml" || true)
    else
        rules=0
    fi
    if [ "$rc" = 0 ]; then
        state=fully
        fully=$((fully + 1))
    elif [ "$rc" = 2 ] && [ "$rules" -gt 0 ]; then
        state=partly
        partly=$((partly + 1))
        # Left out only times from the log (strptime and the like)?
        others=$(grep ': not translated: ' "$d/import.err" | grep -cv 'times from the log' || true)
        if [ "$others" = 0 ]; then
            state=partly-t
            only_times=$((only_times + 1))
        fi
    else
        state=none
        none=$((none + 1))
    fi
    check=-
    if [ "$rules" -gt 0 ]; then
        if "$WEIR" check --config-dir "$d" >"$d/check.out" 2>&1; then
            check=ok
            checked_ok=$((checked_ok + 1))
        else
            check=FAILED
            checked_bad=$((checked_bad + 1))
            sed 's/^/    /' "$d/check.out" | head -5
        fi
    fi
    printf '%-22s %-7s rules=%-3s reports=%-3s check=%s\n' "$name" "$state" "$rules" "$n" "$check"
done
echo "programs: $((fully + partly + none)); fully: $fully; partly: $partly ($only_times of them (partly-t) leave out only times from the log); not at all: $none; reports: $reports; weir check: $checked_ok ok, $checked_bad failed"

# Pairs from mtail's internal/mtail/examples_integration_test.go.
pairs="rsyncd:rsyncd.log:rsyncd.golden
sftp:sftp_chroot.log:sftp_chroot.golden
dhcpd:anonymised_dhcpd_log:anonymised_dhcpd_log.golden
ntpd:ntp4:ntp4.golden
ntpd_peerstats:xntp3_peerstats:xntp3_peerstats.golden
apache_combined:apache-combined.log:apache-combined.golden
apache_common:apache-common.log:apache-common.golden
vsftpd:vsftpd_log:vsftpd_log.golden
vsftpd:vsftpd_xferlog:vsftpd_xferlog.golden
lighttpd:lighttpd_access.log:lighttpd_accesslog.golden
mysql_slowqueries:mysql_slowqueries.log:mysql_slowqueries.golden"

T="$M/internal/mtail/testdata"
total_same=0 total_diff=0 total_missing=0 total_skipped=0
for p in $pairs; do
    IFS=: read -r name log golden <<<"$p"
    d="$OUT/$name"
    if [ ! -s "$T/$log" ] || [ ! -s "$T/$golden" ]; then
        echo "$name on $log: test log or golden file absent"
        continue
    fi
    if ! grep -q '^\[pipeline\.' "$d/$name.toml" 2>/dev/null; then
        echo "$name on $log: no pipeline written"
        continue
    fi
    if ! "$WEIR" test --config-dir "$d" --pipeline "$name" --input "$T/$log" >"$d/$log.prom" 2>"$d/$log.err"; then
        echo "$name on $log: weir test failed: $(head -1 "$d/$log.err")"
        continue
    fi
    line=$(python3 - "$T/$golden" "$d/$log.prom" "$d/$name.toml" <<'EOF'
import re, sys, tomllib
golden, prom, conf = sys.argv[1], sys.argv[2], sys.argv[3]
# Families some rule updates; a golden value of any other family is one
# whose updates were all reported as not translated.
emitted = set()
for p in tomllib.load(open(conf, 'rb')).get('pipeline', {}).values():
    for r in p.get('config', {}).get('rules', []):
        for e in r.get('emit', []):
            emitted.add(e['metric'])
            emitted.add(e['metric'] + '_total')
have = {}
for l in open(prom):
    if l.startswith('#') or not l.strip():
        continue
    m = re.match(r'^([^{\s]+)(\{(.*)\})?\s+(\S+)$', l.strip())
    if not m:
        continue
    labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or '')))
    have[(m.group(1), labels)] = float(m.group(4))
same = diff = missing = skipped = 0
details = []
for l in open(golden):
    parts = l.split()
    if len(parts) < 2 or parts[0] not in ('counter', 'gauge'):
        continue
    kind, name, rest = parts[0], parts[1], parts[2:]
    labels = ()
    if rest and rest[0].startswith('{'):
        body = rest[0][1:-1] if rest[0].endswith('}') else rest[0][1:]
        labels = tuple(sorted(tuple(kv.split('=', 1)) for kv in body.split(',') if '=' in kv))
        rest = rest[1:]
    if not rest:
        continue   # declared, never set: no value to compare
    want = float(rest[0])
    names = [re.sub(r'[^A-Za-z0-9_:]', '_', name)]
    if kind == 'counter' and not names[0].endswith('_total'):
        names.insert(0, names[0] + '_total')
    # weir drops labels whose value is empty; mtail keeps them.
    key_labels = tuple(kv for kv in labels if kv[1] != '')
    if not any(n in emitted for n in names):
        skipped += 1
        continue
    got = None
    for n in names:
        if (n, key_labels) in have:
            got = have[(n, key_labels)]
            break
    if got is None:
        missing += 1
        details.append(f"missing {kind} {name}{dict(labels)} = {want:g}")
    elif abs(got - want) <= 1e-9 * max(1.0, abs(want)):
        same += 1
    else:
        diff += 1
        details.append(f"differs {kind} {name}{dict(labels)}: mtail {want:g}, weir {got:g}")
print(f"{same} {diff} {missing} {skipped}")
for d in details[:8]:
    print("    " + d)
if len(details) > 8:
    print(f"    ... {len(details) - 8} more")
EOF
)
    read -r s df ms sk <<<"$(head -1 <<<"$line")"
    total_same=$((total_same + s)) total_diff=$((total_diff + df)) total_missing=$((total_missing + ms))
    total_skipped=$((total_skipped + sk))
    echo "$name on $log: $s same, $df differ, $ms missing; $sk values of families not translated"
    tail -n +2 <<<"$line"
done
echo "golden values of translated families: $total_same same, $total_diff differ, $total_missing missing; $total_skipped values of families whose updates were all reported"
