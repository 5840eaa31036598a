#!/bin/sh
# cli_check.sh KDHARVEST WORKDIR: `kdharvest report` on bad input, as the user meets it. Each damaged
# line, unreadable run and unknown schema is named (file and line); what can be read is still
# reported; the exit status is non-zero only when nothing was readable. Also: the options hold in
# every format, and the note folded output gives on stderr when allocations have no size.
set -u
kdh=$1 work=$2
rm -rf "$work" && mkdir -p "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# run "good": two allocations of 100 bytes, tag Leak, from a1 (LeakDrv); one of 10 bytes, tag Othr,
# from b2 (Good).
mkrun() { # dir
    mkdir -p "$1"
    printf '{"schema":"kdharvest-run/1","target":"t","tag":"Leak"}\n' >"$1/meta.json"
    printf '{"sid":"00000000000000a1","frames":[{"sym":"nt!ExAllocatePoolWithTag+0x34"},{"sym":"LeakDrv!Path+0x19"}]}\n' >"$1/stacks.jsonl"
    printf '{"sid":"00000000000000b2","frames":[{"sym":"nt!ExAllocatePoolWithTag+0x34"},{"sym":"Good!Work+0x20"}]}\n' >>"$1/stacks.jsonl"
    {
        printf '{"seq":1,"t":1000,"boot":1,"kind":"alloc","tag":"Leak","size":100,"addr":"0x1000","sid":"00000000000000a1"}\n'
        printf '{"seq":2,"t":1010,"boot":1,"kind":"alloc","tag":"Leak","size":100,"addr":"0x2000","sid":"00000000000000a1"}\n'
        printf '{"seq":3,"t":1020,"boot":1,"kind":"alloc","tag":"Othr","size":10,"addr":"0x3000","sid":"00000000000000b2"}\n'
    } >"$1/events.jsonl"
}
good=$work/good
mkrun "$good"
# not a run: an empty folder
mkdir -p "$work/empty"
# unknown schema: a newer writer's run
mkrun "$work/newer"
printf '{"schema":"kdharvest-run/9"}\n' >"$work/newer/meta.json"
# truncated last line (a write cut short) and a garbage line in the middle
mkrun "$work/damaged"
{
    printf '{"seq":1,"t":1000,"boot":1,"kind":"alloc","tag":"Leak","size":100,"addr":"0x1000","sid":"00000000000000a1"}\n'
    printf 'garbage here\n'
    printf '{"seq":3,"t":1020,"boot":1,"kind":"alloc","tag":"Leak","size":100,"addr":"0x3000","sid":"00000000000000a1"}\n'
    printf '{"seq":4,"t":1030,"boot":1,"kind":"al'
} >"$work/damaged/events.jsonl"
# missing stacks table
mkrun "$work/nostacks"
rm "$work/nostacks/stacks.jsonl"
# nothing readable: every event line damaged
mkrun "$work/allbad"
printf 'not json\n{"seq":2,"t":' >"$work/allbad/events.jsonl"

report() { # expected-status args...: runs report, stdout to $work/out, stderr to $work/err
    want=$1
    shift
    "$kdh" report "$@" >"$work/out" 2>"$work/err"
    got=$?
    [ "$got" = "$want" ] || fail "report $*: exit $got, expected $want; stderr: $(cat "$work/err")"
}

# A folder that is not a run, next to a good run: named, the good run reported, exit 0.
report 0 "$good" "$work/empty"
grep -q "empty is not a run directory" "$work/err" || fail "not-a-run folder not named: $(cat "$work/err")"
grep -q "^  1. LeakDrv  outstanding 2 (200 bytes)" "$work/out" || fail "good run not reported next to a non-run"
# Unknown schema next to a good run: named (file), the good run reported, exit 0.
report 0 --format json "$work/newer" "$good"
grep -q 'newer/meta.json: schema "kdharvest-run/9"' "$work/err" || fail "unknown schema not named: $(cat "$work/err")"
grep -q '"sid": "00000000000000a1"' "$work/out" || fail "json report missing next to an unknown schema"
# Truncated last line and a garbage line: both named with file and line; the rest counted.
report 0 "$work/damaged"
grep -q "damaged/events.jsonl:2: not JSON" "$work/out" || fail "garbage line not named: $(cat "$work/out")"
grep -q "damaged/events.jsonl:4: torn last line" "$work/out" || fail "torn last line not named: $(cat "$work/out")"
grep -q "^  1. LeakDrv  outstanding 2 (200 bytes)" "$work/out" || fail "damaged run's whole lines not reported"
# ... and on stderr for a machine-readable format, whose output stays clean.
report 0 --format csv "$work/damaged"
grep -q "skipped .*damaged/events.jsonl:2: not JSON" "$work/err" || fail "csv: skipped line not on stderr"
grep -q "not JSON" "$work/out" && fail "csv output carries the skip notes"
# Missing stacks table: named as stacks.jsonl:0, events reported by stack id.
report 0 "$work/nostacks"
grep -q "nostacks/stacks.jsonl:0: missing" "$work/out" || fail "missing stacks table not named: $(cat "$work/out")"
grep -q "stack 00000000000000a1 is not described in stacks.jsonl" "$work/out" || fail "events of the undescribed stack not reported"
# Nothing readable: exit 1 with the reason.
report 1 "$work/empty"
grep -q "not a run directory" "$work/err" || fail "lone non-run not named"
report 1 "$work/newer"
report 1 "$work/allbad"
grep -q "allbad/events.jsonl:1: not JSON" "$work/err" || fail "all-bad run: lines not named: $(cat "$work/err")"
grep -q "nothing readable" "$work/err" || fail "all-bad run: no 'nothing readable'"
report 1 /nonexistent/run/dir

# Options in every format (csv as its stack table): --tag and --since keep Othr's stack alone,
# --min-count 2 hides it (one allocation), --top 1 keeps the first stack only.
for f in text json csv html folded; do
    report 0 --format $f --tag Othr "$good"
    grep -q "LeakDrv" "$work/out" && fail "$f --tag Othr still shows LeakDrv's stack"
    grep -q "Good!Work" "$work/out" || fail "$f --tag Othr lost Othr's stack"
    report 0 --format $f --since 1015 "$good"
    grep -q "LeakDrv" "$work/out" && fail "$f --since 1015 still shows LeakDrv's stack"
    grep -q "Good!Work" "$work/out" || fail "$f --since 1015 lost Othr's stack"
    report 0 --format $f --min-count 2 "$good"
    grep -q "Good!Work" "$work/out" && fail "$f --min-count 2 still shows the 1-allocation stack"
    grep -q "LeakDrv!Path" "$work/out" || fail "$f --min-count 2 lost the 2-allocation stack"
    [ $f = folded ] && continue # folded lists every stack
    report 0 --format $f --top 1 "$good"
    if [ $f = html ]; then # the flame graph keeps every stack; the list stops at one
        grep -q "<p>2\. " "$work/out" && fail "html --top 1 still lists a second stack"
    else
        grep -q "Good!Work" "$work/out" && fail "$f --top 1 still shows the second stack"
    fi
done
report 0 --format folded --since 1015 "$good"
[ "$(cat "$work/out")" = "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 10" ] || fail "folded --since: $(cat "$work/out")"
# --since/--until also take ISO 8601 UTC: 1015 s after the epoch is 1970-01-01T00:16:55Z.
report 0 --format folded --since 1970-01-01T00:16:55Z "$good"
[ "$(cat "$work/out")" = "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 10" ] || fail "folded --since ISO: $(cat "$work/out")"
report 0 --format folded --until 1970-01-01T00:16:55Z "$good"
[ "$(cat "$work/out")" = "LeakDrv!Path+0x19;nt!ExAllocatePoolWithTag+0x34 200" ] || fail "folded --until ISO: $(cat "$work/out")"
report 2 --format folded --by driver "$good"
grep -q "folded lists stacks" "$work/err" || fail "folded --by driver not refused clearly"
# Folded output has no heading: when values are counts because a side has no sizes, stderr says
# so with that side's own counts. Run "nosize": two Leak allocations from a1 without a size.
mkrun "$work/nosize"
{
    printf '{"seq":1,"t":1000,"boot":1,"kind":"alloc","tag":"Leak","addr":"0x1000","sid":"00000000000000a1"}\n'
    printf '{"seq":2,"t":1010,"boot":1,"kind":"alloc","tag":"Leak","addr":"0x2000","sid":"00000000000000a1"}\n'
} >"$work/nosize/events.jsonl"
report 0 --format folded "$good"
grep -q "have no size" "$work/err" && fail "folded: sizes note on a run with every size: $(cat "$work/err")"
report 0 --format folded "$work/nosize"
[ "$(cat "$work/err")" = "kdharvest: report: 2 of 2 allocations have no size: values are outstanding allocations, not bytes" ] \
    || fail "folded without sizes: $(cat "$work/err")"
report 0 --format folded --diff "$work/nosize" "$good"
[ "$(cat "$work/err")" = "kdharvest: report: base: 2 of 2 allocations have no size: values are outstanding allocations, not bytes" ] \
    || fail "folded diff, base without sizes: $(cat "$work/err")"
grep -qx "LeakDrv!Path+0x19;nt!ExAllocatePoolWithTag+0x34 2 2" "$work/out" || fail "folded diff not by count: $(cat "$work/out")"
report 0 --format folded --diff "$good" "$work/nosize"
[ "$(cat "$work/err")" = "kdharvest: report: new: 2 of 2 allocations have no size: values are outstanding allocations, not bytes" ] \
    || fail "folded diff, new without sizes: $(cat "$work/err")"
# Run "nearly": run "good" and one more Othr allocation from b2 without a size (as a --pair run
# that detached before the return): 1 unsized of 4 still ranks by bytes, and stderr says how many
# add no bytes; in a diff against a side without sizes both are counts and only that side is named.
mkrun "$work/nearly"
printf '{"seq":4,"t":1030,"boot":1,"kind":"alloc","tag":"Othr","addr":"0x4000","sid":"00000000000000b2"}\n' >>"$work/nearly/events.jsonl"
report 0 --format folded "$work/nearly"
[ "$(cat "$work/err")" = "kdharvest: report: 1 of 4 allocations have no size and add no bytes" ] \
    || fail "folded, nearly every size: $(cat "$work/err")"
grep -qx "LeakDrv!Path+0x19;nt!ExAllocatePoolWithTag+0x34 200" "$work/out" || fail "folded, nearly every size, not by bytes: $(cat "$work/out")"
grep -qx "Good!Work+0x20;nt!ExAllocatePoolWithTag+0x34 10" "$work/out" || fail "folded, the unsized allocation added bytes: $(cat "$work/out")"
report 0 --format folded --diff "$work/nosize" "$work/nearly"
[ "$(cat "$work/err")" = "kdharvest: report: base: 2 of 2 allocations have no size: values are outstanding allocations, not bytes" ] \
    || fail "folded diff, base without sizes, new nearly sized: $(cat "$work/err")"
echo "report cli: all bad-input and option cases hold"
