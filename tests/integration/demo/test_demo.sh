#!/bin/sh
# test_demo.sh KDHARVEST OUTDIR: runs the demo for 6 s and checks what it prints and writes.
set -u
kdh=$1 out=$2
rm -rf "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "$kdh" demo --seconds 6 --out "$out" >"$log" 2>&1; then
  echo "FAIL: kdharvest demo exited non-zero"; cat "$log"; exit 1
fi
# The first stack listed by allocation count belongs to the leaking driver.
first=$(sed -n '/^Top stacks by allocation count/{n;p;q}' "$log")
case "$first" in
  *"1. leakdrv "*) ;;
  *) echo "FAIL: first stack by allocation count is not leakdrv's: '$first'"; cat "$log"; exit 1 ;;
esac
# The report's first list (outstanding blocks; by count, as the demo captures no sizes) also starts
# with the leaking driver.
out1=$(sed -n '/^Top stacks by outstanding/{n;p;q}' "$log")
case "$out1" in
  *"1. leakdrv "*) ;;
  *) echo "FAIL: first stack by outstanding allocations is not leakdrv's: '$out1'"; cat "$log"; exit 1 ;;
esac
# Its frames are symbolized down to the driver's own functions.
grep -q 'leakdrv!Leakp' "$log" || { echo "FAIL: no leakdrv!Leakp... frame in the report"; cat "$log"; exit 1; }
# The run directory holds whole JSON lines with consecutive sequence numbers.
[ -s "$out/events.jsonl" ] || { echo "FAIL: no events.jsonl in $out"; exit 1; }
n=$(wc -l <"$out/events.jsonl")
last=$(tail -n 1 "$out/events.jsonl" | sed 's/.*"seq":\([0-9]*\).*/\1/')
[ "$n" -ge 5 ] || { echo "FAIL: only $n events in 6 s"; exit 1; }
[ "$last" = "$n" ] || { echo "FAIL: $n event lines but the last seq is $last"; exit 1; }
echo "demo: $n events, first stack by allocation count: $first"
