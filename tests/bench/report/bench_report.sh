#!/bin/sh
# bench_report.sh: times `kdharvest report` over a generated run and compares folded output with
# `sort | uniq -c` over the same allocations. Also checks that both count every stack the same.
# usage: bench_report.sh KDHARVEST GEN_RUN RUNSTAT WORKDIR EVENTS STACKS
set -eu
kdh=$1 gen=$2 runstat=$3 work=$4 events=$5 stacks=$6
rm -rf "$work"
mkdir -p "$work"
run="$work/run"
echo "generating $events events over $stacks stacks in $run"
"$gen" "$run" "$events" "$stacks" "$work/per-alloc.folded"

measure() { # label, command...: prints label, seconds, peak RSS, CPU seconds
    label=$1
    shift
    "$runstat" "$@" 2>"$work/stat" >/dev/null || { echo "$label failed"; cat "$work/stat"; exit 1; }
    set -- $(tail -n 1 "$work/stat")
    echo "$label $1 $2 $3"
}

# Elapsed time on a shared machine measures the neighbours too: print the load next to the figures.
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')
set -- $(measure text "$kdh" report --format text "$run")
text_s=$2 text_rss=$3 text_cpu=$4
set -- $(measure folded "$kdh" report --format folded --value count "$run")
fold_s=$2 fold_rss=$3 fold_cpu=$4
set -- $(measure uniq sh -c "LC_ALL=C sort '$work/per-alloc.folded' | uniq -c > '$work/uniq.out'")
uniq_s=$2 uniq_rss=$3 uniq_cpu=$4
eps=$(awk -v n="$events" -v s="$text_s" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
echo "load average (1/5/15 min): $load_before before, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?') after, on $(nproc 2>/dev/null || echo '?') CPUs"
printf 'report text:    %8.3f s (cpu %8.3f s)  peak RSS %8d KiB  %s events/s\n' "$text_s" "$text_cpu" "$text_rss" "$eps"
printf 'report folded:  %8.3f s (cpu %8.3f s)  peak RSS %8d KiB\n' "$fold_s" "$fold_cpu" "$fold_rss"
printf 'sort | uniq -c: %8.3f s (cpu %8.3f s)  peak RSS %8d KiB (over %s per-allocation lines)\n' "$uniq_s" "$uniq_cpu" "$uniq_rss" \
    "$(wc -l < "$work/per-alloc.folded")"

# Same numbers both ways: uniq -c's "COUNT TEXT" against the report's "TEXT COUNT".
"$kdh" report --format folded --value count "$run" | LC_ALL=C sort > "$work/report.out"
awk '{ c = $1; sub(/^ *[0-9]+ /, ""); print $0 " " c }' "$work/uniq.out" | LC_ALL=C sort > "$work/uniq.norm"
if ! cmp -s "$work/report.out" "$work/uniq.norm"; then
    echo "MISMATCH between report --format folded and sort | uniq -c:"
    diff "$work/report.out" "$work/uniq.norm" | head -5
    exit 1
fi
echo "folded counts agree with sort | uniq -c ($(wc -l < "$work/report.out") stacks)"
# Targets for 10 million events: text report under 10 s, peak RSS under 1 GiB (reported, not enforced:
# elapsed time depends on the machine's load).
[ "$events" -lt 10000000 ] || awk -v s="$text_s" -v r="$text_rss" 'BEGIN { printf "targets (10M events): elapsed < 10 s: %s, peak RSS < 1 GiB: %s\n",
    (s < 10 ? "met" : "NOT met"), (r < 1048576 ? "met" : "NOT met") }'
