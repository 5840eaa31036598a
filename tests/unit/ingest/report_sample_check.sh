#!/bin/sh
# report_sample_check.sh: a kd log through `kdharvest ingest` and `kdharvest report`, as a user takes
# it. kd_verifier_bugcheck_x86_kb_01.txt (shared samples) holds a PoolHitTag break whose `kvn` (10
# frames) shows nt!ExAllocatePoolWithTag on top with the size and tag in its arguments (00000070,
# 64636261 = 'abcd'), the bugcheck's `kb` (0x2e = 46 frames) and a `!verifier 3` row of the same tag
# (1 frame). Counted by hand from the file: 3 stacks, 57 frames, 2 allocations of tag abcd of 0x70
# bytes each, 1 break of no tag. The report, filtered to
# the tag, must list the PoolHitTag stack as an allocation with nt!ExAllocatePoolWithTag+0x881 on top.
# usage: report_sample_check.sh KDHARVEST PYTHON SAMPLES_DIR WORKDIR   (77 without the sample)
set -u
kdh=$1 py=$2 samples=$3 work=$4
log=$samples/kd_verifier_bugcheck_x86_kb_01.txt
[ -r "$log" ] || { echo "sample absent: skipped"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" || exit 1
"$kdh" ingest --out "$work/run" "$log" >"$work/ingest.out" 2>&1 || fail "ingest exited $?: $(cat "$work/ingest.out")"
grep -q ": 3 stacks, 57 frames, 3 events," "$work/ingest.out" || fail "ingest counts: $(cat "$work/ingest.out")"
"$kdh" report --format json --tag abcd "$work/run" >"$work/report.json" 2>"$work/report.err" ||
    fail "report exited $?: $(cat "$work/report.err")"
"$py" - "$work/report.json" <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1]))
tags = {t["tag"]: t for t in r["tags"]}
def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)
if "abcd" not in tags:
    fail("no tag abcd in %s" % sorted(tags))
t = tags["abcd"]
if (t["allocs"], t["frees"], t["alloc_bytes"]) != (2, 0, 0xE0):
    fail("tag abcd: %d allocs, %d frees, %d bytes" % (t["allocs"], t["frees"], t["alloc_bytes"]))
top = [s for s in r["stacks"] if s["frames"] and s["frames"][0] == "nt!ExAllocatePoolWithTag+0x881"]
if len(top) != 1 or top[0]["allocs"] != 1 or top[0]["hits"] != 0 or top[0]["alloc_bytes"] != 0x70:
    fail("the PoolHitTag allocation stack: %s" % json.dumps(top)[:500])
if len(top[0]["frames"]) != 10:
    fail("%d frames in the kvn stack, 10 in the log" % len(top[0]["frames"]))
print("kd log to report ok: tag abcd, 2 allocations, nt!ExAllocatePoolWithTag+0x881 on top")
PY
