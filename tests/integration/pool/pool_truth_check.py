#!/usr/bin/env python3
"""pool_truth_check.py: kdharvest pool's readings against kdsim's ground truth.

kdsim writes one truth line per break; a break-in (kind "break") carries the fixture kernel's own
pool tracker counters per tag ("tracker": [NonPagedAllocs, NonPagedFrees, NonPagedBytes,
PagedAllocs, PagedFrees, PagedBytes]) and its memory manager counters ("mm", each variable in its
own unit), read by the machine straight from nt's variables at that stop.

  pool_truth_check.py run RUN_DIR TRUTH [--boots N]
      Every sample of RUN_DIR (pool.jsonl + pool_totals.jsonl) must equal one break-in of TRUTH,
      in order: every tag and pool type with allocations (allocs, frees, bytes), the totals in Kb,
      and the boot number; with --boots N the samples must span exactly N boots. The one stop
      without a truth line, a new boot's start-up report, must show an empty pool (boot_start).
  pool_truth_check.py text OUTPUT TRUTH
      The !poolused table and !vm lines `pool` printed must equal the last break-in of TRUTH.
Exit 0 when they agree, 1 with the first difference otherwise."""
import json
import re
import sys

PAGE_KB = 4  # both x86 and x64 use 4 KiB pages
# pool_totals.jsonl key -> (nt variable, Kb per unit)
TOTALS = {
    "nonpaged_usage_kb": ("MmAllocatedNonPagedPool", "pages"),
    "nonpaged_max_kb": ("MmMaximumNonPagedPoolInBytes", "bytes"),
    "paged_commit_kb": ("MmPagedPoolCommit", "pages"),
    "paged_max_kb": ("MmSizeOfPagedPoolInBytes", "bytes"),
    "committed_kb": ("MmTotalCommittedPages", "pages"),
    "commit_limit_kb": ("MmTotalCommitLimit", "pages"),
}
LABELS = {
    "NonPagedPool Usage": "MmAllocatedNonPagedPool",
    "NonPagedPool Max": "MmMaximumNonPagedPoolInBytes",
    "PagedPool Commit": "MmPagedPoolCommit",
    "PagedPool Maximum": "MmSizeOfPagedPoolInBytes",
    "Committed pages": "MmTotalCommittedPages",
    "Commit limit": "MmTotalCommitLimit",
}


def kb(var, value):
    unit = dict(TOTALS.values())[var]
    return value // 1024 if unit == "bytes" else value * PAGE_KB


def pages(var, value):
    unit = dict(TOTALS.values())[var]
    return value // 4096 if unit == "bytes" else value


def breakins(path):
    out = []
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if j.get("kind") == "break" and "tracker" in j and "mm" in j:
                out.append(j)
    return out


def expected_rows(truth):
    rows = {}
    for tag, v in truth["tracker"].items():
        if v[0] or v[1]:
            rows[(tag, "nonpaged")] = (v[0], v[1], v[2])
        if v[3] or v[4]:
            rows[(tag, "paged")] = (v[3], v[4], v[5])
    return rows


def expected_totals(truth):
    return {key: kb(var, truth["mm"][var]) for key, (var, _) in TOTALS.items() if var in truth["mm"]}


def boot_start(sample, totals, later):
    """A sample taken at a new boot's start-up report (the stop a reconnect after a reboot gets;
    kdsim writes truth lines for breaks only): before any pool use, so no tracker rows and no pool
    pages in use, with the limits of that boot's later break-ins."""
    if sample["rows"] or not later:
        return False
    want = expected_totals(later[0])
    for key in ("nonpaged_usage_kb", "paged_commit_kb", "committed_kb"):
        if key in want:
            want[key] = 0
    return totals == want


def check_run(run_dir, truth_path, boots):
    # every sample has a totals line; a sample taken before any allocation has no pool.jsonl line
    samples, totals = {}, {}
    with open(run_dir + "/pool_totals.jsonl") as f:
        for line in f:
            j = json.loads(line)
            totals[j["t"]] = ({k: v for k, v in j.items() if k not in ("t", "boot")}, j["boot"])
            samples[j["t"]] = {"boot": j["boot"], "rows": {}}
    with open(run_dir + "/pool.jsonl") as f:
        for line in f:
            j = json.loads(line)
            if j["t"] not in samples:
                return "pool.jsonl has a sample at t %s that pool_totals.jsonl has not" % j["t"]
            samples[j["t"]]["rows"][(j["tag"], j["pool"])] = (j["allocs"], j["frees"], j["bytes"])
            if j["boot"] != samples[j["t"]]["boot"]:
                return "t %s: boot %d in pool.jsonl, %d in pool_totals.jsonl" % (j["t"], j["boot"], samples[j["t"]]["boot"])
    if not samples:
        return "no samples in " + run_dir
    truth = breakins(truth_path)
    k = 0
    for n, t in enumerate(sorted(samples), 1):
        s = samples[t]
        if boot_start(s, totals[t][0], [tr for tr in truth[k:] if tr["boot"] == s["boot"]]):
            continue
        while k < len(truth):
            tr = truth[k]
            k += 1
            if expected_rows(tr) == s["rows"] and expected_totals(tr) == totals[t][0] and tr["boot"] == s["boot"]:
                break
        else:
            last = truth[-1] if truth else {}
            return "sample %d (t %s, boot %d) matches no break-in of the truth in order; sample %s totals %s; last truth %s" % (
                n, t, s["boot"], sorted(s["rows"].items()), totals[t][0],
                json.dumps({x: last.get(x) for x in ("boot", "tracker", "mm")}))
    seen = sorted({s["boot"] for s in samples.values()})
    if boots and len(seen) != boots:
        return "samples span boots %s, expected %d boots" % (seen, boots)
    return None


def check_text(out_path, truth_path):
    truth = breakins(truth_path)
    if not truth:
        return "no break-in in the truth"
    tr = truth[-1]
    text = open(out_path).read()
    got = {}
    for m in re.finditer(r"^ (\S.{3})\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\t", text, re.M):
        got[m.group(1).rstrip()] = tuple(int(m.group(i)) for i in range(2, 6))
    want = {}
    for tag, v in tr["tracker"].items():
        want[tag.rstrip()] = (v[0] - v[1], v[2], v[3] - v[4], v[5])
    if got != want:
        return "table %s, truth %s" % (sorted(got.items()), sorted(want.items()))
    lines = dict(re.findall(r"^\t([A-Za-z ]+):\s+(\d+) \(\s*\d+ Kb\)$", text, re.M))
    kbs = dict(re.findall(r"^\t([A-Za-z ]+):\s+\d+ \(\s*(\d+) Kb\)$", text, re.M))
    want_labels = {label for label, var in LABELS.items() if var in tr["mm"]}
    if set(lines) != want_labels:
        return "!vm lines %s, truth gives %s" % (sorted(lines), sorted(want_labels))
    for label, var in LABELS.items():
        if label in lines:
            v = tr["mm"][var]
            if int(lines[label]) != pages(var, v) or int(kbs[label]) != kb(var, v):
                return "%s: %s pages (%s Kb), truth %s = %d" % (label, lines[label], kbs[label], var, v)
    return None


def main(argv):
    if len(argv) >= 4 and argv[1] == "run":
        boots = int(argv[5]) if len(argv) >= 6 and argv[4] == "--boots" else 0
        why = check_run(argv[2], argv[3], boots)
    elif len(argv) == 4 and argv[1] == "text":
        why = check_text(argv[2], argv[3])
    else:
        print(__doc__)
        return 2
    if why:
        print("pool_truth_check: " + why)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
