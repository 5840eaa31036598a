#!/bin/sh
# pool_cli_check.sh KDHARVEST KDSIM FIXTURE_DIR WORKDIR: kdharvest pool and owner end to end against
# kdsim (x64 and x86). Checks, each against something other than the code under test:
#  - every sample of a sampled `pool` run (per-tag allocs, frees and bytes; the !vm totals) equals
#    the fixture kernel's own counters at that stop, from kdsim's ground truth
#    (pool_truth_check.py), and so do the table and !vm lines of a single `pool`;
#  - sampled `pool` over the "leak" workload flags 'Leak' as steady growth and the balanced,
#    high-rate busydrv tag 'Bsy0' not, and `kdharvest report` on the same run shows the same;
#  - pool's growth table and `kdharvest report` give every tag the same trend, on those runs, on a
#    run too short for a shape (fewer than 3 samples) and on a run across a reboot;
#  - with kdsim rebooting the (x86) target during sampling, the samples go on into a second boot,
#    still equal kdsim's truth of their boot, and 'Leak' is still flagged and 'Bsy0' not; a reboot
#    that lands inside a sample (before the new boot has a tracker) skips that sample only;
#  - `owner Leak` (live) names leakdrv.sys first and `owner None` names olddrv.sys (which imports
#    the untagged ExAllocatePool, per llvm-readobj-14) first;
#  - `owner --scan` over the fixture folder gives the same code/import owners and hits as the live
#    search, and its immediate hits are exactly the instructions llvm-objdump-14 shows with the
#    tag as an immediate (addresses minus the image base).
set -u
KDH=$1 SIM=$2 FIX=$3 WORK=$4
[ -f "$FIX/x64/ntoskrnl.exe" ] && [ -f "$FIX/x86/ntoskrnl.exe" ] || { echo "fixtures missing: skipped"; exit 77; }
command -v llvm-objdump-14 >/dev/null && command -v llvm-readobj-14 >/dev/null || { echo "llvm-14 tools missing: skipped"; exit 77; }
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
fail() { echo "FAIL: $*"; [ -n "${SIMPID:-}" ] && kill "$SIMPID" 2>/dev/null; exit 1; }

CHECK="$(dirname "$0")/pool_truth_check.py"
command -v python3 >/dev/null || { echo "python3 missing: skipped"; exit 77; }

start_sim() { # arch name [kdsim options...]
    A=$1 N=$2
    shift 2
    "$SIM" --tcp 0 --arch "$A" --fixtures "$FIX/$A" --baud 0 --workload leak --truth "$WORK/truth-$N.jsonl" "$@" \
        >"$WORK/sim-$N.out" 2>"$WORK/sim-$N.err" &
    SIMPID=$!
    i=0
    while ! grep -q "serving on tcp:" "$WORK/sim-$N.out" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt 100 ] && fail "kdsim did not start: $(cat "$WORK/sim-$N.err")"
        sleep 0.1
    done
    PORT="tcp://$(sed -n 's/^kdsim: serving on tcp:\(.*\)$/\1/p' "$WORK/sim-$N.out")"
}

# owners with code or import hits, in rank order, from an owner listing
code_owners() { sed -n 's/^  [0-9]*\. \([^ ]*\) *\([0-9]*\) immediate, \([0-9]*\) other code, [0-9]* data\(.*\)$/\1 \2 \3\4/p' "$1" | awk '$2 > 0 || $3 > 0 || /imports/'; }
code_hits() { grep -E '^  [^ ]+ +[^ ]+ +0x[0-9a-f]+ (immediate|code|import)' "$1"; }

# pool_with_faults NAME DURATION FAULTS: `pool` sampling every 500 ms for DURATION against a kdsim
# of $ARCH with --faults FAULTS, into run-NAME and pool-NAME.txt (kdsim's truth in truth-NAME.jsonl)
pool_with_faults() {
    start_sim $ARCH "$1" --faults "$3"
    "$KDH" pool "$PORT" --symbols "$FIX/$ARCH" --every 500ms --duration "$2" --out "$WORK/run-$1" --top 0 \
        >"$WORK/pool-$1.txt" 2>&1 || fail "$ARCH pool with --faults $3: $(cat "$WORK/pool-$1.txt")"
    kill "$SIMPID"; wait "$SIMPID" 2>/dev/null; SIMPID=
}

# same_trends POOL_OUT REPORT_OUT NAME: pool's growth table and the report's pool table give every
# tag the same trend (a tag is the first 6 characters, quotes included: it may hold spaces)
same_trends() {
    awk -v q="'" -v name="$3" 'function words(s, from, to,   f, n, i, o) { n = split(s, f, " "); o = ""
             for (i = from; i <= n + to; i++) o = o (o == "" ? "" : " ") f[i]; return o }
         $0 !~ "^" q "...." q " +(nonpaged|paged) " { next }
         { split(substr($0, 7), g, " "); k = substr($0, 1, 6) " " g[1] }
         NR == FNR { w = words(substr($0, 7), 7, 0); sub(/ \(over [0-9]+ boots\)$/, "", w)
                     sub(/^STEADY GROWTH \(leak\?\)$/, "STEADY GROWTH", w)
                     pool[k] = w; next }
         { if (!(k in pool)) next; n++
           w = words(substr($0, 7), 7, -1)
           if (pool[k] != w) { print name ": " k ": pool says trend \"" pool[k] "\", report says \"" w "\""; bad = 1 } }
         END { if (n < 3) { print name ": only " n " growth rows compared"; bad = 1 } exit bad }' \
        "$1" "$2" >"$WORK/trend-$3.txt" || fail "$(cat "$WORK/trend-$3.txt")"
}

for ARCH in x64 x86; do
    start_sim $ARCH $ARCH
    # --- pool: sampled growth ---
    "$KDH" pool "$PORT" --symbols "$FIX/$ARCH" --every 1s --duration 7s --out "$WORK/run-$ARCH" --top 0 >"$WORK/pool-$ARCH.txt" 2>&1 \
        || fail "$ARCH pool: $(cat "$WORK/pool-$ARCH.txt")"
    grep -q "^'Leak' nonpaged .*STEADY GROWTH" "$WORK/pool-$ARCH.txt" || fail "$ARCH: Leak not flagged: $(cat "$WORK/pool-$ARCH.txt")"
    grep -q "^'Bsy0' nonpaged " "$WORK/pool-$ARCH.txt" || fail "$ARCH: no Bsy0 row"
    grep "^'Bsy0' " "$WORK/pool-$ARCH.txt" | grep -q "STEADY" && fail "$ARCH: Bsy0 flagged as growing"
    n=$(grep -c '^sample ' "$WORK/pool-$ARCH.txt")
    [ "$n" -ge 4 ] || fail "$ARCH: only $n samples"
    # busydrv allocates at a high rate: its counters must have moved between the first and last sample
    first=$(grep -m1 '"tag":"Bsy0"' "$WORK/run-$ARCH/pool.jsonl" | sed 's/.*"allocs":\([0-9]*\).*/\1/')
    last=$(grep '"tag":"Bsy0"' "$WORK/run-$ARCH/pool.jsonl" | tail -1 | sed 's/.*"allocs":\([0-9]*\).*/\1/')
    [ "$last" -gt "$first" ] || fail "$ARCH: Bsy0 allocs did not grow ($first -> $last)"
    grep -q "System pool information" "$WORK/run-$ARCH/poolmon.txt" || fail "$ARCH: no poolmon.txt blocks"
    # samples between full table reads fetch only the slots in use; the tracker's counters never go
    # down, so a wrong sparse read (a slot missed or misplaced) shows as a drop
    grep -q "table bytes read, slots in use" "$WORK/pool-$ARCH.txt" || fail "$ARCH: no sparse sample"
    for T in Leak Bsy0 None; do
        grep "\"tag\":\"$T\",\"pool\":\"nonpaged\"" "$WORK/run-$ARCH/pool.jsonl" | sed 's/.*"allocs":\([0-9]*\),"frees":\([0-9]*\).*/\1 \2/' |
            awk -v t=$T 'NR > 1 && ($1 < a || $2 < f || (t == "Leak" && $1 == a)) { print "drop " NR; exit 1 } { a = $1; f = $2 }' \
            || fail "$ARCH: $T counters not monotonic across samples"
    done
    python3 "$CHECK" run "$WORK/run-$ARCH" "$WORK/truth-$ARCH.jsonl" --boots 1 || fail "$ARCH: sampled pool differs from kdsim's truth"
    # --- pool: one reading, the !poolused table and the !vm lines against the truth of its stop ---
    "$KDH" pool "$PORT" --symbols "$FIX/$ARCH" --top 0 --sort tag >"$WORK/pool1-$ARCH.txt" 2>&1 \
        || fail "$ARCH pool: $(cat "$WORK/pool1-$ARCH.txt")"
    grep -q "^	NonPagedPool Usage: " "$WORK/pool1-$ARCH.txt" || fail "$ARCH: no !vm lines: $(cat "$WORK/pool1-$ARCH.txt")"
    python3 "$CHECK" text "$WORK/pool1-$ARCH.txt" "$WORK/truth-$ARCH.jsonl" || fail "$ARCH: pool output differs from kdsim's truth"
    "$KDH" report "$WORK/run-$ARCH" >"$WORK/report-$ARCH.txt" 2>&1 || fail "$ARCH report: $(cat "$WORK/report-$ARCH.txt")"
    grep -q "^'Leak' *nonpaged .*STEADY GROWTH" "$WORK/report-$ARCH.txt" || fail "$ARCH: report does not flag Leak"
    grep "^'Bsy0' " "$WORK/report-$ARCH.txt" | grep -q "STEADY" && fail "$ARCH: report flags Bsy0"
    same_trends "$WORK/pool-$ARCH.txt" "$WORK/report-$ARCH.txt" $ARCH
    # a run too short for a shape (fewer than 3 samples): both name it the same way too
    if [ $ARCH = x64 ]; then
        "$KDH" pool "$PORT" --symbols "$FIX/$ARCH" --every 500ms --duration 1s --out "$WORK/run-short-$ARCH" --top 0 \
            >"$WORK/pool-short-$ARCH.txt" 2>&1 || fail "$ARCH short pool: $(cat "$WORK/pool-short-$ARCH.txt")"
        "$KDH" report "$WORK/run-short-$ARCH" >"$WORK/report-short-$ARCH.txt" 2>&1 \
            || fail "$ARCH short report: $(cat "$WORK/report-short-$ARCH.txt")"
        same_trends "$WORK/pool-short-$ARCH.txt" "$WORK/report-short-$ARCH.txt" short-$ARCH
    fi

    # --- owner, live ---
    "$KDH" owner Leak "$PORT" --hits 0 >"$WORK/own-leak-live-$ARCH.txt" 2>&1 || fail "$ARCH owner Leak live"
    grep -q '^  1\. leakdrv.sys ' "$WORK/own-leak-live-$ARCH.txt" || fail "$ARCH: owner Leak: $(cat "$WORK/own-leak-live-$ARCH.txt")"
    "$KDH" owner None "$PORT" --hits 0 >"$WORK/own-none-live-$ARCH.txt" 2>&1 || fail "$ARCH owner None live"
    grep -q '^  1\. olddrv.sys .*imports untagged ExAllocatePool' "$WORK/own-none-live-$ARCH.txt" \
        || fail "$ARCH: owner None: $(cat "$WORK/own-none-live-$ARCH.txt")"
    llvm-readobj-14 --coff-imports "$FIX/$ARCH/olddrv.sys" | grep -q 'Symbol: ExAllocatePool (' \
        || fail "$ARCH: llvm-readobj shows no ExAllocatePool import in olddrv.sys"
    kill "$SIMPID"; wait "$SIMPID" 2>/dev/null; SIMPID=

    # --- pool across a reboot of the target, x86 only (the logic is the same for both; one run is
    # enough time): kdsim reboots it 2 s after the line comes up; the run goes on long enough that
    # the new boot outweighs the pause the reboot and the reconnect make in the series ---
    if [ $ARCH = x86 ]; then
        pool_with_faults reboot-$ARCH 16s reboot=2s
        grep -q "^the target rebooted (kernel at 0x[0-9a-f]*): boot 2, sampling goes on$" "$WORK/pool-reboot-$ARCH.txt" \
            || fail "$ARCH: reboot not seen: $(cat "$WORK/pool-reboot-$ARCH.txt")"
        grep -q '^sample [0-9]* (boot 2): ' "$WORK/pool-reboot-$ARCH.txt" || fail "$ARCH: no sample on boot 2"
        python3 "$CHECK" run "$WORK/run-reboot-$ARCH" "$WORK/truth-reboot-$ARCH.jsonl" --boots 2 \
            || fail "$ARCH: samples across the reboot differ from kdsim's truth"
        grep -q "^'Leak' nonpaged .*STEADY GROWTH (leak?)" "$WORK/pool-reboot-$ARCH.txt" \
            || fail "$ARCH: Leak not flagged across the reboot: $(cat "$WORK/pool-reboot-$ARCH.txt")"
        # on a slow machine the first boot may end before its first allocation was sampled
        if grep -q '"boot":1,"tag":"Leak","pool":"nonpaged"' "$WORK/run-reboot-$ARCH/pool.jsonl"; then
            grep -q "^'Leak' nonpaged .*STEADY GROWTH (leak?) (over 2 boots)" "$WORK/pool-reboot-$ARCH.txt" \
                || fail "$ARCH: Leak's series not joined across the reboot: $(cat "$WORK/pool-reboot-$ARCH.txt")"
        else
            echo "$ARCH: no Leak sample before the reboot; the join across boots is left to test_report"
        fi
        grep "^'Bsy0' " "$WORK/pool-reboot-$ARCH.txt" | grep -q "STEADY" && fail "$ARCH: Bsy0 flagged across the reboot"
        "$KDH" report "$WORK/run-reboot-$ARCH" >"$WORK/report-reboot-$ARCH.txt" 2>&1 \
            || fail "$ARCH report across a reboot: $(cat "$WORK/report-reboot-$ARCH.txt")"
        same_trends "$WORK/pool-reboot-$ARCH.txt" "$WORK/report-reboot-$ARCH.txt" reboot-$ARCH
        # --- a reboot inside a sample: kdsim loses the host's 150th request (a read of the tracker
        # table) in a reboot, and the new boot has no tracker yet. That sample is skipped, the next
        # one sees the new boot, and every sample written still equals kdsim's truth of its boot (14 s:
        # under ASan, 8 s ended before the new boot's first sample) ---
        pool_with_faults rir-$ARCH 14s reboot-in-request=150
        grep -q '^sample skipped (boot 1): .*not set up yet' "$WORK/pool-rir-$ARCH.txt" \
            || fail "$ARCH: no sample skipped at the reboot: $(cat "$WORK/pool-rir-$ARCH.txt")"
        grep -q '^sample [0-9]* (boot 2): ' "$WORK/pool-rir-$ARCH.txt" || fail "$ARCH: no sample on boot 2 after the reboot inside a sample"
        python3 "$CHECK" run "$WORK/run-rir-$ARCH" "$WORK/truth-rir-$ARCH.jsonl" --boots 2 \
            || fail "$ARCH: samples around the reboot inside a sample differ from kdsim's truth"
    fi

    # --- pooltag.txt owner line ---
    printf 'Leak - leakdrv.sys   - fixture leak\n' >"$WORK/pooltag.txt"
    "$KDH" owner Leak --scan "$FIX/$ARCH" --pooltag "$WORK/pooltag.txt" | grep -q '^pooltag.txt: leakdrv.sys - fixture leak$' \
        || fail "$ARCH: owner --pooltag line missing"
    # --- owner, offline: same owners and code hits as live ---
    for TAG in Leak None; do
        t=$(echo $TAG | tr A-Z a-z)
        "$KDH" owner $TAG --scan "$FIX/$ARCH" --hits 0 >"$WORK/own-$t-scan-$ARCH.txt" 2>&1 || fail "$ARCH owner $TAG --scan"
        code_owners "$WORK/own-$t-scan-$ARCH.txt" >"$WORK/a" ; code_owners "$WORK/own-$t-live-$ARCH.txt" >"$WORK/b"
        [ -s "$WORK/a" ] && cmp -s "$WORK/a" "$WORK/b" || fail "$ARCH $TAG: scan and live owners differ: $(diff "$WORK/a" "$WORK/b")"
        code_hits "$WORK/own-$t-scan-$ARCH.txt" >"$WORK/a" ; code_hits "$WORK/own-$t-live-$ARCH.txt" >"$WORK/b"
        cmp -s "$WORK/a" "$WORK/b" || fail "$ARCH $TAG: scan and live hits differ: $(diff "$WORK/a" "$WORK/b")"
    done
    # --- immediates against llvm-objdump ---
    for PAIR in leakdrv.sys:0x6B61654C ntoskrnl.exe:0x656E6F4E; do
        IMG=${PAIR%%:*} IMM=${PAIR#*:}
        base=$(llvm-readobj-14 --file-headers "$FIX/$ARCH/$IMG" | sed -n 's/^ *ImageBase: \(0x[0-9A-Fa-f]*\)$/\1/p')
        [ -n "$base" ] || fail "$ARCH: no ImageBase for $IMG"
        llvm-objdump-14 -d "$FIX/$ARCH/$IMG" | grep -i "imm = $IMM\$" | sed 's/^ *\([0-9a-f]*\):.*/\1/' |
            while read a; do printf '0x%08x\n' $((0x$a - base)); done | sort >"$WORK/want"
        [ -s "$WORK/want" ] || fail "$ARCH: llvm-objdump shows no $IMM immediate in $IMG"
        t=$([ "$IMM" = 0x6B61654C ] && echo leak || echo none)
        grep -E "^  $IMG +[^ ]+ +0x[0-9a-f]+ immediate" "$WORK/own-$t-scan-$ARCH.txt" |
            sed 's/.*(instruction at \(0x[0-9a-f]*\)).*/\1/' | sort >"$WORK/got"
        cmp -s "$WORK/want" "$WORK/got" || fail "$ARCH $IMG: immediates differ from llvm-objdump: $(diff "$WORK/want" "$WORK/got")"
    done
done
echo "pool/owner end to end: OK"
exit 0
