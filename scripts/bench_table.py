#!/usr/bin/env python3
"""bench_table.py BENCH_TXT: the one table of `make bench`, read from what each benchmark printed
(scripts/bench keeps their output in BUILD/bench.txt). Every row pairs a figure with the baseline
the same benchmark measured in the same run, and with the issue's target where there is one.
A benchmark that did not run, or printed something this reader does not know, gives "not found"."""
import re
import sys


def section(text, name):
    m = re.search(r"^== %s\n(.*?)(?=^== |\Z)" % re.escape(name), text, re.S | re.M)
    return m.group(1) if m else ""


def num(pattern, text, group=1, conv=float):
    m = re.search(pattern, text, re.M)
    return conv(m.group(group)) if m else None


def not_found(name):
    return (name, "not found", "", "", "", "")


def met(ok):
    return "-" if ok is None else ("met" if ok else "NOT met")


def link_rows(s):
    row = r"^%s +(\d+) +(\d+) +([\d.]+) +(\d+) +(\d+) +([\d.]+) +(\d+) +(\d+)"
    fast = re.search(row % "fast", s, re.M)
    samp = re.search(row % r"fast --sample 4", s, re.M)
    naive = re.search(row % "naive", s, re.M)
    if not (fast and naive):
        return [not_found("link")]
    f_rate, f_bytes, f_lb, f_ratio, f_rt = (float(fast.group(3)), int(fast.group(4)), int(fast.group(5)),
                                            float(fast.group(6)), int(fast.group(7)))
    n_rate, n_bytes = float(naive.group(3)), int(naive.group(4))
    count_rt = int(samp.group(8)) if samp else None
    rows = [
        ("link: bytes per captured hit (median)", "%d B" % f_bytes, "lower bound %d B" % f_lb, "%.2fx" % f_ratio,
         "<= 1.15x", met(f_ratio <= 1.15)),
        ("link: round trips per captured / count-only hit", "%d / %s" % (f_rt, count_rt if count_rt is not None else "?"),
         "", "", "<= 5 / <= 3", met(f_rt <= 5 and (count_rt is None or count_rt <= 3))),
        ("link: captured hits/s", "%.2f" % f_rate, "naive %.2f (%d B/hit)" % (n_rate, n_bytes),
         "%.2fx" % (f_rate / n_rate if n_rate else 0), ">= 4x", met(n_rate and f_rate / n_rate >= 4)),
    ]
    return rows


def modes_rows(s):
    base = num(r"^hittag \(baseline\) +([\d.]+)", s)
    if base is None:
        return [not_found("modes")]
    rows = []
    for name in ("hittag --pair", "specialpool --pair", "entry", "entry --pair"):
        label = "modes: %s captured hits/s (B, rt per hit)" % name
        # a phase that captured nothing prints "-" for its medians: its row says so, it is not dropped
        m = re.search(r"^%s +([\d.]+) \| +(?:(\d+) +(\d+) |- )" % re.escape(name), s, re.M)
        if not m:
            rows.append(not_found(label))
            continue
        rate = float(m.group(1))
        cost = "%s B, %s" % (m.group(2), m.group(3)) if m.group(2) else "no captured hit"
        rows.append((label, "%.1f (%s)" % (rate, cost), "hittag %.1f" % base,
                     "%.2fx" % (rate / base if base else 0), "", "-"))
    return rows


def daemon_rows(s):
    m = re.search(r"^sum +([\d.]+) +([\d.]+) +([\d.]+)", s, re.M)
    if not m:
        return [not_found("daemon")]
    return [("daemon: 3 targets on one loop, captured hits/s", m.group(2), "each alone, summed %s" % m.group(1),
             "%sx" % m.group(3), "", "-")]


def report_rows(s):
    t = re.search(r"^report text: +([\d.]+) s .*peak RSS +(\d+) KiB", s, re.M)
    f = num(r"^report folded: +([\d.]+) s", s)
    su = num(r"^sort \| uniq -c: +([\d.]+) s", s)
    if not t:
        return [not_found("report")]
    secs, kib = float(t.group(1)), int(t.group(2))
    rows = [("report: 10 M events, text", "%.1f s, %d MiB" % (secs, kib // 1024), "", "",
             "< 10 s, < 1 GiB", met(secs < 10 and kib < 1024 * 1024))]
    if f is not None and su:
        rows.append(("report: folded stacks", "%.1f s" % f, "sort \\| uniq -c %.1f s" % su, "%.2fx time" % (f / su),
                     "", "-"))
    else:
        rows.append(not_found("report: folded stacks"))
    return rows


def ingest_rows(s):
    rows = []
    for prefix, what in (("", "1 GiB kd log"), ("mixed ", "1 GiB kd log with poolmon screens")):
        p = re.escape(prefix)
        cmd = num(r"^%skdharvest ingest +[\d.]+ +([\d.]+)" % p, s)
        ing = num(r"^%singest to run +[\d.]+ +([\d.]+)" % p, s)
        parse = num(r"^%sparse only +[\d.]+ +([\d.]+)" % p, s)
        g1 = num(r"^%sgrep -c #1 +[\d.]+ +([\d.]+)" % p, s)
        g2 = num(r"^%sgrep -c #2 +[\d.]+ +([\d.]+)" % p, s)
        r1 = num(r"^%sratio to grep #1 .* command ([\d.]+)" % p, s)
        r2 = num(r"^%sratio to grep #2 .* command ([\d.]+)" % p, s)
        if cmd is None or not g1 or not g2 or r1 is None or r2 is None:
            rows.append(not_found("ingest: " + what))
            continue
        lo, hi = sorted((r1, r2))
        rows.append(("ingest: %s, CPU MB/s of `kdharvest ingest`" % what,
                     "%.0f (in-process %s, parse alone %s)" % (cmd, "%.0f" % ing if ing is not None else "not found",
                                                               "%.0f" % parse if parse is not None else "not found"),
                     "grep -c %.0f / %.0f" % (g1, g2), "%.2f-%.2f" % (lo, hi), ">= 0.5", met(lo >= 0.5)))
    rss = num(r"^peak RSS +ingest (\d+) KiB", s, conv=int)
    if rss is not None:
        rows.append(("ingest: peak memory", "%.1f MiB" % (rss / 1024), "", "", "independent of file size", "-"))
    else:
        rows.append(not_found("ingest: peak memory"))
    return rows


def main():
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    head = text.splitlines()[0] if text else ""
    rows = (link_rows(section(text, "bench-link")) + modes_rows(section(text, "bench-modes")) +
            daemon_rows(section(text, "bench-daemon")) + report_rows(section(text, "bench-report")) +
            ingest_rows(section(text, "bench-ingest")))
    print("\nkdharvest benchmarks (%s)\n" % head)
    print("| benchmark | measured | baseline, same run | ratio | target | |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
