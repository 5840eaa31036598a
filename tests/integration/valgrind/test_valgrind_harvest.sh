#!/bin/sh
# usage: test_valgrind_harvest.sh KDSIM KDHARVEST FIXTURES WORKDIR
# Runs `kdharvest run` under valgrind memcheck against kdsim (x64, workload leak) for 20 hits and
# fails on any memcheck error or leak, on a non-zero exit, on a break after the detach, or when the
# logged events differ from kdsim's truth (the same hits: kind, thread and every frame, in order).
# Exit 77 when valgrind or the fixtures are missing.
set -u
kdsim=$1 kdh=$2 fixtures=$3 work=$4
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not found: skipped"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipped"; exit 77; }
[ -r "$fixtures/x64/ntoskrnl.exe" ] || { echo "fixtures not built: skipped"; exit 77; }
rm -rf "$work"
mkdir -p "$work"
"$kdsim" --pty --fixtures "$fixtures/x64" --arch x64 --baud 0 --truth "$work/truth.jsonl" \
    --workload leak --seed 3 >"$work/kdsim.out" 2>"$work/kdsim.err" &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null' EXIT
port=
for _ in $(seq 100); do
    port=$(awk '/^kdsim: serving on /{print $4}' "$work/kdsim.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { echo "kdsim did not start: $(cat "$work/kdsim.err")"; exit 1; }

valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
    --errors-for-leak-kinds=definite,indirect,possible --log-file="$work/memcheck.txt" \
    "$kdh" run --port "$port" --tag Leak --out "$work/run" --symbols "$fixtures/x64" --quiet \
    --max-hits 20 >"$work/run.out" 2>"$work/run.err"
rc=$?
if [ $rc -eq 99 ]; then
    echo "valgrind memcheck found errors or leaks:"
    grep -v '^==[0-9]*== *$' "$work/memcheck.txt" | head -60
    exit 1
fi
[ $rc -eq 0 ] || { echo "kdharvest exited $rc under valgrind: $(cat "$work/run.err")"; exit 1; }
grep -q "ERROR SUMMARY: 0 errors" "$work/memcheck.txt" || { echo "no clean memcheck summary"; cat "$work/memcheck.txt"; exit 1; }
grep -q "All heap blocks were freed\|definitely lost: 0 bytes" "$work/memcheck.txt" ||
    { echo "leak summary missing"; cat "$work/memcheck.txt"; exit 1; }

# kdsim records a hit only at the int 3 its kernel runs for a tag equal to PoolHitTag, and the
# detach writes PoolHitTag's old value back: the target must run on without one more line.
lines=$(wc -l <"$work/truth.jsonl")
sleep 1
[ "$(wc -l <"$work/truth.jsonl")" -eq "$lines" ] || { echo "the target broke after the detach"; exit 1; }

# The events against kdsim's truth: every hit, in order, frame for frame.
python3 - "$work/run" "$work/truth.jsonl" <<'PY'
import json, sys
run, truth_path = sys.argv[1], sys.argv[2]
events = [json.loads(l) for l in open(run + "/events.jsonl")]
stacks = {}
for l in open(run + "/stacks.jsonl"):
    s = json.loads(l)
    stacks[s["sid"]] = [(f["mod"].split("/")[0].lower(), f.get("rva")) for f in s["frames"]]
truth = [o for o in map(json.loads, open(truth_path)) if o.get("kind") in ("alloc", "free")]
if len(events) < 20:
    sys.exit("only %d events logged, 20 hits asked" % len(events))
if len(truth) != len(events):
    sys.exit("%d events logged, kdsim's truth has %d hits" % (len(events), len(truth)))
for i, (e, t) in enumerate(zip(events, truth)):
    want = [((f.get("module") or "").lower(), f.get("rva")) for f in t["stack"]]
    if e["kind"] != t["kind"] or e["thread"] != t["thread"] or stacks.get(e["sid"]) != want:
        sys.exit("event %d (seq %s) differs from truth hit %s: %s %s vs %s %s" %
                 (i, e.get("seq"), t.get("seq"), e["kind"], e["thread"], t["kind"], t["thread"]))
print("valgrind: 0 errors, 0 leaks; %d events equal kdsim's truth" % len(events))
PY
