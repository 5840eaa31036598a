#!/bin/sh
# report_html_check.sh: renders the HTML report of a small hand-made run in headless Chromium and checks
# what the browser made of it: the DOM after the script ran (flame graph boxes, chart lines, data-ok set
# by the page only when its script finished without an exception) and a screenshot (PNG parsed by
# png_check: flame graph and chart pixels present). Skipped (77) when chromium is not installed.
# usage: report_html_check.sh KDHARVEST PNG_CHECK WORKDIR
set -eu
kdh=$1 png=$2 work=$3
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chrome" ] || { echo "chromium not installed: skipped"; exit 77; }
rm -rf "$work"
mkdir -p "$work/run"
run="$work/run"

# The run, by hand. Stacks (innermost first):
#   a1: nt!ExAllocatePoolWithTag+0x34 <- LeakDrv!LeakPathA+0x19 <- LeakDrv!DriverEntry+0x10
#   b2: nt!ExAllocatePoolWithTag+0x34 <- Good!Work+0x20
# Events: 'Leak' allocates 100 bytes from a1 at t=0,10,20,30 (never freed: 400 outstanding) and
# 50 bytes from b2 at t=5,15 (the first freed at t=16: 50 outstanding); 'Othr' allocates 30 bytes from
# b2 at t=8 (freed at t=9). Outstanding: a1 400, b2 50 -> flame graph total 450.
cat > "$run/meta.json" <<'J'
{"schema":"kdharvest-run/1","run_id":"html","target":"test","source":"live","tag":"Leak","started":"2026-11-21T00:00:00Z","updated":"2026-11-21T00:01:00Z"}
J
cat > "$run/modules.jsonl" <<'J'
{"key":"ntoskrnl.exe/A30A731A4000","name":"nt","file":"ntoskrnl.exe","boot":1}
{"key":"LeakDrv.sys/5E2A11004000","name":"LeakDrv","file":"LeakDrv.sys","boot":1}
{"key":"Good.sys/5E2A11003000","name":"Good","file":"Good.sys","boot":1}
J
cat > "$run/stacks.jsonl" <<'J'
{"sid":"00000000000000a1","frames":[{"mod":"ntoskrnl.exe/A30A731A4000","rva":4660,"sym":"nt!ExAllocatePoolWithTag+0x34"},{"mod":"LeakDrv.sys/5E2A11004000","rva":4201,"sym":"LeakDrv!LeakPathA+0x19"},{"mod":"LeakDrv.sys/5E2A11004000","rva":4112,"sym":"LeakDrv!DriverEntry+0x10"}]}
{"sid":"00000000000000b2","frames":[{"mod":"ntoskrnl.exe/A30A731A4000","rva":4660,"sym":"nt!ExAllocatePoolWithTag+0x34"},{"mod":"Good.sys/5E2A11003000","rva":4128,"sym":"Good!Work+0x20"}]}
J
t0=1795478400
ev() { # seq dt kind tag size addr sid
    printf '{"seq":%s,"t":%s,"boot":1,"kind":"%s","tag":"%s","size":%s,"addr":"%s"%s}\n' "$1" $((t0 + $2)) "$3" "$4" "$5" "$6" \
        "$( [ -n "$7" ] && printf ',"sid":"%s"' "$7" )"
}
{
    ev 1 0 alloc Leak 100 0xffffc00100001000 00000000000000a1
    ev 2 5 alloc Leak 50 0xffffc00100002000 00000000000000b2
    ev 3 8 alloc Othr 30 0xffffc00100003000 00000000000000b2
    ev 4 9 free Othr 30 0xffffc00100003000 ""
    ev 5 10 alloc Leak 100 0xffffc00100004000 00000000000000a1
    ev 6 15 alloc Leak 50 0xffffc00100005000 00000000000000b2
    ev 7 16 free Leak 50 0xffffc00100002000 ""
    ev 8 20 alloc Leak 100 0xffffc00100006000 00000000000000a1
    ev 9 30 alloc Leak 100 0xffffc00100007000 00000000000000a1
} > "$run/events.jsonl"

"$kdh" report --format html "$run" > "$work/page.html"
url="file://$work/page.html"
flags="--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking --disable-component-update --disable-sync"
# shellcheck disable=SC2086 # flags are words
timeout 120 "$chrome" $flags --user-data-dir="$(mktemp -d "$work/prof.XXXXXX")" --dump-dom "$url" > "$work/dom.html" 2>"$work/chrome-dom.log"
# shellcheck disable=SC2086
timeout 120 "$chrome" $flags --user-data-dir="$(mktemp -d "$work/prof.XXXXXX")" --screenshot="$work/out.png" \
    --window-size=1200,900 "$url" > "$work/chrome-shot.log" 2>&1

fail() { echo "FAIL: $*"; exit 1; }
grep -q 'id="status"[^>]*data-ok="1"' "$work/dom.html" || fail "the page's script did not finish (no data-ok on #status)"
! grep -q 'data-error=' "$work/dom.html" || fail "script error: $(grep -o 'data-error="[^"]*"' "$work/dom.html")"
# Flame graph boxes: all, nt (x2), LeakPathA, DriverEntry, Work: 6 rects, each with a title.
fg=$(sed -n 's/.*<svg id="fg"[^>]*>\(.*\)<\/svg>.*/\1/p' "$work/dom.html" | sed 's/<\/svg>.*//')
nrect=$(printf '%s' "$fg" | grep -o '<rect' | wc -l)
[ "$nrect" -eq 6 ] || fail "flame graph has $nrect boxes, expected 6"
printf '%s' "$fg" | grep -q '<title>all  450 (100.00%)</title>' || fail "flame graph root is not 450 bytes"
printf '%s' "$fg" | grep -q '<title>LeakDrv!DriverEntry+0x10  400 (88.89%)</title>' || fail "LeakDrv root frame"
printf '%s' "$fg" | grep -q '<title>Good!Work+0x20  50 (11.11%)</title>' || fail "Good root frame"
npl=$(grep -o '<polyline' "$work/dom.html" | wc -l)
[ "$npl" -eq 2 ] || fail "growth chart has $npl lines, expected 2 (Leak, Othr)"
grep -q 'Leak (steady growth)' "$work/dom.html" || fail "chart legend for Leak"
# The screenshot: 1200x900, flame-graph boxes (6 rows of up to 1150 px x 17 px, at least the full-width
# root row) and the chart's #c00 line.
"$png" "$work/out.png" 1200 900 15000 200
echo "report HTML renders in $("$chrome" --version 2>/dev/null | head -n 1)"
