#!/bin/sh
# usage: check_table.sh PYTHON BENCH_TABLE_PY DIR
# scripts/bench_table.py over benchmark output kept here, against tables written by hand:
#  - bench_full.txt: every benchmark printed its figures as in a `make bench` run; each ratio in
#    expected_full.md is worked from the printed figures (1892/1856 is printed 1.019 -> 1.02x;
#    5.94/2.64 = 2.25; 5.8/8.3 = 0.70, 4.2/8.3 = 0.51, 0.5/8.3 = 0.06, 0.4/8.3 = 0.05;
#    8.391/15.702 = 0.53; ingest: the command's ratios as printed (each the median of the rounds'
#    own ratios), 0.55 and 0.54 -> 0.54-0.55, with poolmon screens 0.48 and 0.45 -> 0.45-0.48;
#    278528 KiB = 272 MiB, 7000 KiB = 6.8 MiB);
#  - bench_partial.txt: benchmarks that did not run or stopped early, and a mode that captured no
#    hit: every missing figure is a "not found" row, none is dropped or read as another.
set -u
py=$1 table=$2 dir=$3
rc=0
for c in full partial; do
    "$py" "$table" "$dir/bench_$c.txt" >"bench_table_$c.out" 2>&1 || { echo "$c: bench_table.py failed"; cat "bench_table_$c.out"; rc=1; continue; }
    diff -u "$dir/expected_$c.md" "bench_table_$c.out" || { echo "$c: the table differs from expected_$c.md"; rc=1; }
done
[ $rc -eq 0 ] && echo "bench_table.py: both tables as expected"
exit $rc
