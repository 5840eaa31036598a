#!/bin/sh
# html_check.sh: renders the hand-made run A of test_report as HTML and checks the page's script
# with node (skipped, exit 77, when node is not installed).
# usage: html_check.sh KDHARVEST TEST_REPORT NODE_OR_EMPTY CHECK_JS
set -eu
kdh=$1 tr=$2 node=$3 js=$4
[ -n "$node" ] && [ -x "$node" ] || { echo "node not found: skipped"; exit 77; }
d=$(KDH_KEEP_RUNS=1 "$tr")
trap 'rm -rf "$d"' EXIT
"$kdh" report --format html "$d/a" > "$d/page.html"
"$node" "$js" "$d/page.html"
