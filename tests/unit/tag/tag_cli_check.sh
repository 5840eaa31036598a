#!/bin/sh
# tag_cli_check.sh: `kdharvest tag` end to end: DWORD and commands on stdout, exit 2 with one line
# on stderr for a bad tag, owner from the real pooltag.txt when the shared samples are present.
# usage: tag_cli_check.sh KDHARVEST SAMPLES_DIR
set -u
kdh=$1 samples=$2
fail() { echo "FAIL: $*"; exit 1; }
out=$("$kdh" tag Ddk) || fail "tag Ddk exited $?"
echo "$out" | grep -q "^dword        0x206b6444 " || fail "Ddk DWORD: $out"
echo "$out" | grep -qF 'ed nt!PoolHitTag 0x206b6444' || fail "PoolHitTag command"
echo "$out" | grep -qF '/v PoolTag /t REG_DWORD /d 0x206b6444 /f' || fail "registry command"
"$kdh" tag Leak | grep -q "0x6b61654c" || fail "Leak DWORD"
for bad in "" "Leaks" "$(printf 'L\001')" "    "; do
    err=$("$kdh" tag "$bad" 2>&1 >/dev/null)
    rc=$?
    [ "$rc" -eq 2 ] || fail "tag '$bad' exited $rc, want 2"
    echo "$err" | head -n 1 | grep -q "^kdharvest: pool tag" || fail "tag '$bad' message: $err"
done
"$kdh" tag >/dev/null 2>&1
[ $? -eq 2 ] || fail "no tag: want exit 2"
pt="$samples/pooltag_txt_ws2003_rktools_01.txt"
if [ -r "$pt" ]; then
    "$kdh" tag Ddk --pooltag "$pt" | grep -q "^owner        <unknown> - Default for driver allocated memory" ||
        fail "owner of Ddk from pooltag.txt"
    "$kdh" tag AfdZ --pooltag "$pt" | grep -q "^owner        afd.sys - AFD objects .*entry 'Afd?'" ||
        fail "wildcard owner of AfdZ"
fi
echo "kdharvest tag ok"
