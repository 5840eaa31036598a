#!/usr/bin/env python3
"""soak.py: reliability scenarios for `kdharvest run` against kdsim's fault injection, checked
against kdsim's ground truth (--truth): every true alloc/free is either logged once or fell inside
stated downtime (a gap in gaps.jsonl, or a time the daemon was down on purpose); no event twice;
how late the host logged a hit after the target reported it (desync).

usage: soak.py KDSIM KDHARVEST FIXTURES [--full] [--only SCENARIO,...] [--case CASE,...] [--seed N]
               [--table FILE]
scenarios: noise (cases corrupt-1e-4 corrupt-1e-3 drop-bytes dup+drop-packet stall-5s), cable (pull
reset hangup), reboot (reboot reboot-late reboot-in-request), kill9, sigterm, hostile (ldr-cycle ldr-wild name-long
name-long-drv kdbg-tag kdbg-size stack-garbage).
exit 0 when every scenario run passed, 1 when one failed, 77 when the fixtures are absent."""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DOWN_MARGIN = 0.5  # s either side of a downtime: a hit reported just before a kill may be lost


class Fail(Exception):
    pass


class Truth:
    """Tails kdsim's truth file and stamps each line with the wall time it appeared (kdsim flushes
    every line), so truth hits can be put on the daemon's clock (events `t`, gaps t0/t1)."""

    def __init__(self, path):
        self.path, self.lines, self.stop = path, [], False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        buf = b""
        f = None
        while not self.stop:
            if f is None:
                try:
                    f = open(self.path, "rb")
                except OSError:
                    time.sleep(0.02)
                    continue
            chunk = f.read()
            if chunk:
                now = time.time()
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    o = json.loads(line)
                    o["_wall"] = now
                    self.lines.append(o)
            else:
                time.sleep(0.02)

    def count(self):
        return len(self.lines)

    def close(self):
        time.sleep(0.1)
        self.stop = True
        self.th.join()

    def hits(self):
        return [o for o in self.lines if o.get("kind") in ("alloc", "free")]


class Sim:
    def __init__(self, ctx, name, faults=None, hostile=None, tcp=False, seed=1, arch="x64", pty_link=None):
        self.ctx = ctx
        self.dir = os.path.join(ctx.tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.truth_path = os.path.join(self.dir, "truth.jsonl")
        out = open(os.path.join(self.dir, "kdsim.out"), "w")
        err = open(os.path.join(self.dir, "kdsim.err"), "w")
        argv = [ctx.kdsim, "--tcp", "0"] if tcp else [ctx.kdsim, "--pty-link", pty_link] if pty_link else [ctx.kdsim, "--pty"]
        argv += ["--fixtures", os.path.join(ctx.fixtures, arch), "--arch", arch, "--baud", "0",
                 "--truth", self.truth_path, "--workload", "leak", "--seed", str(seed)]
        if faults:
            argv += ["--faults", faults]
        if hostile:
            argv += ["--hostile", hostile]
        self.p = subprocess.Popen(argv, stdout=out, stderr=err)
        ctx.procs.append(self.p)
        self.port = None
        for _ in range(200):
            with open(os.path.join(self.dir, "kdsim.out")) as f:
                for line in f:
                    if line.startswith("kdsim: serving on "):
                        self.port = line.split()[3]
            if self.port:
                break
            if self.p.poll() is not None:
                raise Fail("kdsim exited at start: " + open(os.path.join(self.dir, "kdsim.err")).read())
            time.sleep(0.05)
        if not self.port:
            raise Fail("kdsim did not print its address")
        if tcp:  # printed as tcp:HOST:PORT; kdharvest takes tcp://HOST:PORT
            self.port = "tcp://" + self.port.split(":", 1)[1].lstrip("/")
        self.truth = Truth(self.truth_path)

    def stop(self):
        self.truth.close()
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


class Harvest:
    def __init__(self, ctx, port, out, *extra):
        self.errpath = out.rstrip("/") + ".%d.err" % len(ctx.procs)
        argv = [ctx.kdh, "run", "--port", port, "--tag", "Leak", "--out", out, "--symbols",
                os.path.join(ctx.fixtures, "x64"), "--quiet"] + list(extra)
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(self.errpath, "w"))
        ctx.procs.append(self.p)

    def wait(self, timeout):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise Fail("kdharvest still running after %.0f s (stderr: %s)" % (timeout, self.stderr()))

    def stderr(self, tail=400):
        """kdharvest's stderr: its last tail characters (tail None: all of it)."""
        try:
            text = open(self.errpath).read().strip()
        except OSError:
            return ""
        return text[-tail:] if tail else text


def read_jsonl(path, strict):
    """Every line of a JSON Lines file; strict: a line that does not parse is a failure."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                out.append(json.loads(line))
            except ValueError:
                if strict:
                    raise Fail("%s:%d does not parse: %r" % (path, n, line[:80]))
    return out


def read_run(d, strict=True):
    run = {"events": read_jsonl(os.path.join(d, "events.jsonl"), strict),
           "gaps": read_jsonl(os.path.join(d, "gaps.jsonl"), strict),
           "journal": read_jsonl(os.path.join(d, "journal.jsonl"), strict), "stacks": {}}
    read_jsonl(os.path.join(d, "modules.jsonl"), strict)
    for s in read_jsonl(os.path.join(d, "stacks.jsonl"), strict):
        if s["sid"] in run["stacks"]:
            raise Fail("stacks.jsonl: sid %s written twice" % s["sid"])
        run["stacks"][s["sid"]] = [frame_text(f.get("mod", "").split("/")[0], f.get("rva"), f.get("addr"))
                                   for f in s["frames"]]
    return run


def frame_text(mod, rva, addr):
    if mod and rva is not None:
        return "%s+%x" % (mod.lower(), rva)
    return "?+%s" % addr


def truth_stack(o):
    return [frame_text(f.get("module") or "", f.get("rva"), f.get("addr")) for f in o.get("stack", [])]


def compare(truth, run, downtime, max_ahead=64):
    """Aligns the run's events with the true hits in order (kind, thread and, when captured, the
    stack frame for frame). Returns the figures of a results row; raises nothing."""
    ev = run["events"]
    seqs = [e.get("seq") for e in ev]
    dup_seq = len(seqs) - len(set(seqs))
    backwards = sum(1 for a, b in zip(seqs, seqs[1:]) if b <= a)

    def match(e, t):
        if e.get("kind") != t["kind"] or e.get("thread") != t.get("thread"):
            return False
        sid = e.get("sid")
        if sid is not None and run["stacks"].get(sid) != truth_stack(t):
            return False
        return abs(e.get("t", 0) - t["_wall"]) < 60

    intervals = [(g["t0"], g["t1"]) for g in run["gaps"]] + list(downtime)

    def down(w):
        return any(a - DOWN_MARGIN <= w <= b + DOWN_MARGIN for a, b in intervals)

    def run_ok(i, j, n=4):  # the next n hits line up from (i, j)
        return all(i + k >= len(truth) or j + k >= len(ev) or match(ev[j + k], truth[i + k]) for k in range(n))

    i, j, lost, extra, desync, pairs, boot_bad, desync_at = 0, 0, [], 0, 0.0, 0, 0, None
    while i < len(truth):
        t = truth[i]
        if j < len(ev) and match(ev[j], t):
            e = ev[j]
            pairs += 1
            if not down(t["_wall"]) and e["t"] - t["_wall"] > desync:
                # a hit held while the daemon was down on purpose is not desync
                desync, desync_at = e["t"] - t["_wall"], t
            boot_bad += e.get("boot") != t.get("boot")
            i += 1
            j += 1
            continue
        # out of step: the fewest lost hits (truth skipped) or extra events (events skipped) after
        # which the two line up again for a few hits
        for d in range(1, max_ahead + 1):
            if i + d <= len(truth) and (j >= len(ev) or run_ok(i + d, j)):
                lost += truth[i:i + d]
                i += d
                break
            if j + d < len(ev) and run_ok(i, j + d):
                extra += d
                j += d
                break
        else:
            lost.append(t)
            i += 1
    extra += len(ev) - j
    lost_out = [t for t in lost if not down(t["_wall"])]
    return {"logged": len(ev), "truth": len(truth), "matched": pairs, "lost": len(lost),
            "lost_outside": len(lost_out), "dups": dup_seq + backwards + extra, "desync": desync,
            "boot_mismatch": boot_bad, "gaps": len(run["gaps"]), "desync_at": desync_at,
            "first_lost": lost_out[0] if lost_out else None}


def journal_last(run):
    return run["journal"][-1].get("op") if run["journal"] else None


def quiet_for(sim, secs):
    """True when the target logged no break for secs although its workload keeps allocating
    with the tag: PoolHitTag is no longer armed and no breakpoint is left."""
    time.sleep(0.3)  # the tailer polls every 20 ms: let it catch up with hits from before the detach
    n = len(sim.truth.hits())
    time.sleep(secs)
    return len(sim.truth.hits()) == n and sim.p.poll() is None


def probe_hittag(ctx, port, tries=3):
    """PoolHitTag's value through `kdharvest probe`; a target that just started may still be busy
    sending its boot-time packets to nobody, so a timed-out probe is tried again."""
    for _ in range(tries - 1):
        try:
            return probe_once(ctx, port)
        except Fail:
            time.sleep(2)
    return probe_once(ctx, port)


def probe_once(ctx, port):
    r = subprocess.run([ctx.kdh, "probe", port, "--symbols", os.path.join(ctx.fixtures, "x64")],
                       capture_output=True, text=True, timeout=60)
    for line in r.stdout.splitlines():
        if line.startswith("PoolHitTag value: "):
            return int(line.split()[2], 16)
    raise Fail("kdharvest probe gave no PoolHitTag value (rc %d): %s" % (r.returncode, r.stderr.strip()[-300:]))


# ---- scenarios: each returns a list of result rows; a row with "fail" failed ----

def row(name, iters, c, fail=None):
    r = {"scenario": name, "iterations": iters, **c}
    if fail:
        r["fail"] = fail
    return r


def check_common(name, iters, c, max_desync):
    why = []
    if c["lost_outside"]:
        ft = c["first_lost"]
        why.append("%d hits lost outside downtime (first: truth seq %s at %.3f)" %
                   (c["lost_outside"], ft.get("seq"), ft["_wall"]))
    if c["dups"]:
        why.append("%d duplicated or out-of-order events" % c["dups"])
    if c["desync"] > max_desync:
        why.append("desync %.1f s > %.1f s (truth seq %s at %.3f)" %
                   (c["desync"], max_desync, c["desync_at"].get("seq"), c["desync_at"]["_wall"]))
    if c["logged"] == 0:
        why.append("nothing logged")
    return row(name, iters, c, "; ".join(why) or None)


def sc_noise(ctx):
    secs = 45 if ctx.full else 12
    specs = [("corrupt-1e-4", "corrupt=0.0001", 3), ("corrupt-1e-3", "corrupt=0.001", 3),
             ("drop-bytes", "drop=0.0005", 3), ("dup+drop-packet", "drop-packet=0.01,dup-packet=0.01", 3),
             ("stall-5s", "stall=5s/%ds" % (20 if ctx.full else 8), 5 + 3)]
    rows = []
    for name, spec, max_desync in ctx.pick(specs):
        sim = Sim(ctx, "noise-" + name, faults=spec, seed=ctx.seed)
        d = os.path.join(sim.dir, "run")
        h = Harvest(ctx, sim.port, d, "--duration", str(secs))
        rc = h.wait(secs + 60)
        time.sleep(0.5)
        sim.stop()
        c = compare(sim.truth.hits(), read_run(d), [])
        r = check_common("noise " + name, 1, c, max_desync)
        if rc != 0:
            r["fail"] = (r.get("fail") or "") + " exit %d: %s" % (rc, h.stderr())
        rows.append(r)
    return rows


class Proxy:
    """A TCP relay between kdharvest and kdsim that can pull the cable: `blackhole` drops every
    byte both ways for a while (a serial cable pulled and put back), `reset` closes the daemon's
    connection (a terminal server restarting) and accepts the next one to the same kdsim link."""

    def __init__(self, upstream):
        host, port = upstream[len("tcp://"):].rsplit(":", 1)
        self.addr, self.up = (host, int(port)), None
        self.up_ready = threading.Event()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.port = "tcp://127.0.0.1:%d" % self.ls.getsockname()[1]
        self.down, self.hole, self.stop, self.resets = None, False, False, 0
        self.accepts = 0
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._up_to_down, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.accepts += 1
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.up is None:  # the target's line comes up with the first host, as direct
                self.up = socket.create_connection(self.addr)
                self.up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.up_ready.set()
            self.down = c
            threading.Thread(target=self._down_to_up, args=(c,), daemon=True).start()

    def _down_to_up(self, c):
        while True:
            try:
                b = c.recv(65536)
            except OSError:
                return
            if not b:
                return
            if not self.hole:
                self.up.sendall(b)

    def _up_to_down(self):
        self.up_ready.wait()
        while not self.stop:
            try:
                b = self.up.recv(65536)
            except OSError:
                return
            if not b:
                return
            c = self.down
            if c is not None and not self.hole:
                try:
                    c.sendall(b)
                except OSError:
                    pass

    def reset(self):
        c, self.down = self.down, None
        if c:
            c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.resets += 1

    def close(self):
        self.stop = True
        self.ls.close()
        if self.up:
            self.up.close()
        if self.down:
            self.down.close()


class LinkWatch:
    """Records when a pty's link path is missing (kdsim --pty-link with fault hangup removes it
    while the pty is unplugged): the wall-clock intervals the cable was out."""

    def __init__(self, path):
        self.path, self.down, self.stop = path, [], False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self):
        t0 = None
        while not self.stop:
            gone = not os.path.lexists(self.path)
            now = time.time()
            if gone and t0 is None:
                t0 = now
            elif not gone and t0 is not None:
                self.down.append((t0, now))
                t0 = None
            time.sleep(0.01)
        if t0 is not None:
            self.down.append((t0, time.time()))

    def close(self):
        self.stop = True
        self.th.join()


def check_line_gaps(run, down, t_exit, back_slack):
    """Each time the line was out (down: wall-clock intervals seen from outside the daemon) that
    ended while the daemon ran must be in gaps.jsonl as one "line-down" gap: starting within a
    moment of the outage and ending after it, within back_slack seconds (the reopen's backoff).
    Returns the reasons it is not so."""
    gaps = [g for g in run["gaps"] if g.get("reason") == "line-down"]
    why = []
    ended = [w for w in down if w[1] < t_exit - 0.5]
    for a, b in ended:
        if not [g for g in gaps if a - 0.5 <= g["t0"] <= a + 1.5 and b - 0.5 <= g["t1"] <= b + back_slack]:
            why.append("no line-down gap for the outage %.1f..%.1f (gaps: %s)" %
                       (a, b, ", ".join("%.1f..%.1f" % (g["t0"], g["t1"]) for g in gaps) or "none"))
    outside = [g for g in gaps if not [w for w in down if w[0] - 0.5 <= g["t0"] <= w[0] + 1.5]]
    if outside:
        why.append("%d line-down gap(s) at no outage (first %.1f..%.1f)" %
                   (len(outside), outside[0]["t0"], outside[0]["t1"]))
    return why


def sc_cable_hangup(ctx, iters):
    """A serial adapter unplugged and plugged back: kdsim closes its pty for 5 s of every 14 (the
    daemon's side hangs up) and opens a new one behind the same link path."""
    link = os.path.join(ctx.tmp, "cable-hangup.tty")
    sim = Sim(ctx, "cable-hangup", faults="hangup=5s/14s", seed=ctx.seed, pty_link=link)
    watch = LinkWatch(link)
    d = os.path.join(sim.dir, "run")
    secs = 8 + iters * 14
    h = Harvest(ctx, link, d, "--duration", str(secs))
    why = []
    try:
        h.wait(secs + 60)
    except Fail as e:
        why.append(str(e))
    t_exit = time.time()
    time.sleep(0.5)
    watch.close()  # before kdsim exits and takes the link with it
    sim.stop()
    rc = h.p.returncode
    err = h.stderr()
    if rc != 0:
        why.append("kdharvest exited %d after the pty hung up instead of reopening it: %s" % (rc, err))
    # hangups the daemon was there for (the pty may be unplugged again after its run ended)
    hangups = len([w for w in watch.down if w[0] < t_exit - 0.5])
    replugged = len([w for w in watch.down if w[1] < t_exit - 0.5])
    if hangups < iters:
        why.append("only %d hangups in the run, %d planned" % (hangups, iters))
    notes = open(h.errpath).read()
    if notes.count("hung up") < hangups or notes.count("port is back") < replugged:
        why.append("the daemon did not report each hangup and return: %r" % notes[-300:])
    run = read_run(d)
    c = compare(sim.truth.hits(), run, watch.down)
    r = check_common("cable hangup (pty)", hangups, c, 5 + 3)
    why += check_line_gaps(run, watch.down, t_exit, 3.0)
    if why:
        r["fail"] = "; ".join(why + ([r["fail"]] if r.get("fail") else []))
    return r


def sc_cable(ctx):
    rows = []
    iters = 4 if ctx.full else 1
    for mode in ctx.pick(("pull", "reset", "hangup")):
        if mode == "hangup":
            rows.append(sc_cable_hangup(ctx, iters))
            continue
        sim = Sim(ctx, "cable-" + mode, tcp=True, seed=ctx.seed)
        px = Proxy(sim.port)
        d = os.path.join(sim.dir, "run")
        secs = 8 + iters * 14
        h = Harvest(ctx, px.port, d, "--duration", str(secs))
        down = []
        why = []
        time.sleep(4)
        for _ in range(iters):
            t0 = time.time()
            if mode == "pull":
                px.hole = True
                time.sleep(5)
                px.hole = False
            else:
                px.reset()
            down.append((t0, time.time() + (0 if mode == "pull" else 5)))
            time.sleep(9)
            if h.p.poll() is not None:
                why.append("kdharvest exited %d after the cable %s instead of reconnecting: %s" %
                           (h.p.returncode, "was pulled" if mode == "pull" else "connection was reset",
                            h.stderr()))
                break
        try:
            h.wait(secs + 60)
        except Fail as e:
            why.append(str(e))
        t_exit = time.time()
        time.sleep(0.5)
        sim.stop()
        px.close()
        run = read_run(d)
        c = compare(sim.truth.hits(), run, down)
        r = check_common("cable " + mode, iters, c, 5 + 3)
        if mode == "reset":  # the connection is closed and made again at once; a pulled cable only goes quiet
            why += check_line_gaps(run, [(a, a) for a, _ in down], t_exit, 3.0)
        if why:
            r["fail"] = "; ".join(why + ([r["fail"]] if r.get("fail") else []))
        rows.append(r)
    return rows


def sc_reboot(ctx):
    rows = []
    # reboot-in-request: the target reboots with a request of a hit on the wire (the 400th host
    # request, a few seconds in), which it never acknowledges or answers
    for name, faults, label in ctx.pick((("reboot", "reboot=4s", "reboot at 4s"),
                                         ("reboot-late", "reboot=9s", "reboot at 9s"),
                                         ("reboot-in-request", "reboot-in-request=400", "reboot in request 400"))):
        sim = Sim(ctx, "reboot-" + name, faults=faults, seed=ctx.seed)
        d = os.path.join(sim.dir, "run")
        secs = 40 if ctx.full else 24
        h = Harvest(ctx, sim.port, d, "--duration", str(secs))
        rc = h.wait(secs + 60)
        time.sleep(0.5)
        sim.stop()
        truth = sim.truth.hits()
        run = read_run(d)
        c = compare(truth, run, [])
        r = check_common(label, 1, c, 3 + 10)
        why = [r["fail"]] if r.get("fail") else []
        if rc != 0:
            why.append("exit %d: %s" % (rc, h.stderr()))
        if not any(t.get("boot") == 2 for t in truth):
            why.append("kdsim did not reboot")
        if not any(e.get("boot") == 2 for e in run["events"]):
            why.append("no event of boot 2")
        if c["boot_mismatch"]:
            why.append("%d events tagged with the wrong boot" % c["boot_mismatch"])
        if not any(g.get("reason") == "reboot" for g in run["gaps"]):
            why.append("no reboot gap")
        if journal_last(run) != "disarm":
            why.append("journal ends with %s, not disarm" % journal_last(run))
        r.pop("fail", None)
        rows.append(row(r["scenario"], 1, {k: v for k, v in r.items() if k not in ("scenario", "iterations")},
                        "; ".join(why) or None))
    return rows


def sc_kill9(ctx):
    iters = 100 if ctx.full else 10
    rng = random.Random(ctx.seed)
    sim = Sim(ctx, "kill9", seed=ctx.seed)
    d = os.path.join(sim.dir, "run")
    down, why, failed = [], [], []
    t_restart = None
    for i in range(iters):
        h = Harvest(ctx, sim.port, d)
        if t_restart is not None and (not down or down[-1][1] is not None):
            down.append((t_restart, None))  # closed at the first event of a start that works
        # wait for the run to be armed (at least one new event), then kill at a random point
        n0 = len(read_jsonl(os.path.join(d, "events.jsonl"), False))
        for _ in range(300):
            if len(read_jsonl(os.path.join(d, "events.jsonl"), False)) > n0 or h.p.poll() is not None:
                break
            time.sleep(0.05)
        if h.p.poll() is not None:  # counted, and the next start tries again
            failed.append("start %d exited %d: %s" % (i + 1, h.p.returncode, h.stderr()))
            continue
        if down and down[-1][1] is None:
            evs = read_jsonl(os.path.join(d, "events.jsonl"), False)
            down[-1] = (down[-1][0], evs[n0]["t"] if len(evs) > n0 else time.time())
        time.sleep(rng.uniform(0.0, 1.5))
        t_restart = time.time()
        h.p.send_signal(signal.SIGKILL)
        h.p.wait()
    down = [(a, b if b is not None else time.time()) for a, b in down]
    if failed:
        why.append("%d of %d restarts failed, first: %s" % (len(failed), iters, failed[0]))
    # a last clean start and stop: the target must end unarmed
    h = Harvest(ctx, sim.port, d)
    time.sleep(4)
    h.p.send_signal(signal.SIGTERM)
    rc = h.wait(30)
    if t_restart is not None:
        evs = read_jsonl(os.path.join(d, "events.jsonl"), False)
        later = [e["t"] for e in evs if e.get("t", 0) > t_restart]
        down.append((t_restart, later[0] if later else time.time()))
    if rc != 0:
        why.append("final SIGTERM: exit %d: %s" % (rc, h.stderr()))
    if not quiet_for(sim, 2.5):
        why.append("the target still breaks after the final detach")
    sim.stop()
    try:
        run = read_run(d)
        c = compare(sim.truth.hits(), run, down)
        if journal_last(run) != "disarm":
            why.append("journal ends with %s, not disarm" % journal_last(run))
    except Fail as e:
        return [row("kill -9", iters, {}, str(e))]
    r = check_common("kill -9", iters, c, 3)
    if why:
        r["fail"] = "; ".join(why + ([r["fail"]] if r.get("fail") else []))
    r["downtime_s"] = sum(b - a for a, b in down)
    return [r]


def sc_sigterm(ctx):
    iters = 20 if ctx.full else 3
    rng = random.Random(ctx.seed + 5)
    sim = Sim(ctx, "sigterm", seed=ctx.seed)
    why = []
    try:
        orig = probe_hittag(ctx, sim.port)
    except Fail as e:
        sim.stop()
        return [row("SIGTERM in a hit", 0, {}, str(e))]
    totals = {"logged": 0, "truth": 0, "lost_outside": 0, "dups": 0, "desync": 0.0}
    for i in range(iters):
        d = os.path.join(sim.dir, "run%d" % i)
        n0 = sim.truth.count()
        h = Harvest(ctx, sim.port, d)
        want = n0 + rng.randint(5, 200)
        for _ in range(600):
            if sim.truth.count() >= want or h.p.poll() is not None:
                break
            time.sleep(0.005)
        h.p.send_signal(signal.SIGTERM)
        rc = h.wait(30)
        if rc != 0:
            why.append("iteration %d: exit %d: %s" % (i + 1, rc, h.stderr()))
        if not quiet_for(sim, 2):
            why.append("iteration %d: the target breaks after the detach" % (i + 1))
        now = probe_hittag(ctx, sim.port)
        if now != orig:
            why.append("iteration %d: PoolHitTag 0x%08x after the detach, was 0x%08x" % (i + 1, now, orig))
        run = read_run(d)
        if journal_last(run) != "disarm":
            why.append("iteration %d: journal ends with %s" % (i + 1, journal_last(run)))
        c = compare(sim.truth.hits()[len([t for t in sim.truth.lines[:n0] if t.get("kind") in ("alloc", "free")]):],
                    run, [])
        for k in ("logged", "truth", "lost_outside", "dups"):
            totals[k] += c[k]
        totals["desync"] = max(totals["desync"], c["desync"])
    sim.stop()
    return [row("SIGTERM in a hit", iters, totals, "; ".join(why) or None)]


# Hostile options that leave every stack resolvable: the daemon must log the damage and capture
# exactly the truth. (ldr-* cut the module list short and stack-garbage breaks the walk, so there
# only a clean exit or a one-line error is asked.)
TRUTH_INTACT = ("name-long", "name-long-drv", "kdbg-tag", "kdbg-size")


def sc_hostile(ctx):
    rows = []
    for opt in ctx.pick(("ldr-cycle", "ldr-wild", "name-long", "name-long-drv", "kdbg-tag", "kdbg-size",
                         "stack-garbage")):
        sim = Sim(ctx, "hostile-" + opt, hostile=opt, seed=ctx.seed)
        d = os.path.join(sim.dir, "run")
        secs = 10 if ctx.full else 4
        h = Harvest(ctx, sim.port, d, "--duration", str(secs))
        rc = h.wait(secs + 60)
        time.sleep(0.3)
        alive = sim.p.poll() is None
        sim.stop()
        why = []
        if rc < 0 or rc >= 128:
            why.append("kdharvest died with signal %d" % (-rc if rc < 0 else rc - 128))
        try:
            run = read_run(d)
        except Fail as e:
            run = {"events": [], "gaps": [], "stacks": {}, "journal": []}
            why.append(str(e))
        n = len(run["events"])
        err = h.stderr()
        if rc == 0 and n == 0:
            why.append("exit 0 but nothing logged")
        if rc not in (0,) and (not err or "\n" in err.strip()):
            why.append("exit %d without a one-line error: %r" % (rc, err))
        if rc == 0 and journal_last(run) != "disarm":
            why.append("journal ends with %s" % journal_last(run))
        if not alive:
            why.append("kdsim itself exited")
        c = {"logged": n, "truth": len(sim.truth.hits()), "lost_outside": "-", "dups": "-", "desync": 0.0,
             "note": ("exit %d: %s" % (rc, err.splitlines()[-1] if err else "")) if rc else "kept going"}
        if opt in TRUTH_INTACT:
            # only the kernel's name or its debugger data block lie: every hit, frame for frame
            if rc != 0:
                why.append("exit %d instead of going on: %s" % (rc, err.strip()))
            full = compare(sim.truth.hits(), run, [])
            c.update({k: full[k] for k in ("lost_outside", "dups")})
            if opt == "name-long-drv":
                why += busydrv_skipped(sim, d, h.stderr(None))
            if full["lost_outside"] or full["dups"] or full["matched"] != n:
                why.append("events differ from the truth: %d of %d matched, %d lost, %d extra" %
                           (full["matched"], n, full["lost_outside"], full["dups"]))
        rows.append(row("hostile " + opt, 1, c, "; ".join(why) or None))
    return rows


def busydrv_skipped(sim, d, err):
    """name-long-drv damages the BaseDllName of the fourth of kdsim's six loaded modules, busydrv.sys:
    its name is what cannot be read, so the daemon's one 'skipped' line names it by base. It is
    busydrv's when kdsim loaded six modules, the run kept the other five by name, and the skipped
    base is none of theirs."""
    why = []
    said = [ln for ln in err.splitlines() if re.search(r" at 0x[0-9a-f]+ skipped ", ln)]
    if len(said) != 1:
        return ["%d stderr lines say a module was skipped, not 1: %r" % (len(said), err[-400:])]
    base = re.search(r" at (0x[0-9a-f]+) skipped ", said[0]).group(1)
    loaded = re.search(r", (\d+) modules,", open(os.path.join(sim.dir, "kdsim.out")).read())
    if not loaded or loaded.group(1) != "6":
        why.append("kdsim did not say it loaded 6 modules")
    kept = {m.get("file", "").lower(): m.get("base") for m in read_jsonl(os.path.join(d, "modules.jsonl"), True)}
    if sorted(kept) != ["framedrv.sys", "hal.dll", "leakdrv.sys", "ntoskrnl.exe", "olddrv.sys"]:
        why.append("modules kept: %s, not every loaded one but busydrv.sys" % ", ".join(sorted(kept)))
    if base in kept.values():
        why.append("the skipped base %s is a kept module's" % base)
    return why


SCENARIOS = {"noise": sc_noise, "cable": sc_cable, "reboot": sc_reboot, "kill9": sc_kill9,
             "sigterm": sc_sigterm, "hostile": sc_hostile}


def fmt_table(rows):
    hdr = ["scenario", "iters", "logged", "truth", "lost outside downtime", "dups", "max desync s", "result"]
    lines = [hdr]
    for r in rows:
        lines.append([r["scenario"], str(r["iterations"]), str(r.get("logged", "-")), str(r.get("truth", "-")),
                      str(r.get("lost_outside", "-")), str(r.get("dups", "-")),
                      "%.2f" % r["desync"] if isinstance(r.get("desync"), float) else "-",
                      "FAIL: " + r["fail"] if r.get("fail") else ("ok (%s)" % r["note"] if r.get("note") else "ok")])
    w = [max(len(x[i]) for x in lines) for i in range(len(hdr) - 1)]
    return "\n".join("  ".join(x[i].ljust(w[i]) for i in range(len(hdr) - 1)) + "  " + x[-1] for x in lines)


class Ctx:
    def pick(self, cases):
        """The cases of a scenario named by --case (all when none is given)."""
        name = lambda c: c[0] if isinstance(c, tuple) else c
        return [c for c in cases if not self.cases or name(c) in self.cases]


def main():
    a = sys.argv[1:]
    if len(a) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    ctx = Ctx()
    ctx.kdsim, ctx.kdh, ctx.fixtures = a[:3]
    ctx.full = "--full" in a
    only = a[a.index("--only") + 1].split(",") if "--only" in a else list(SCENARIOS)
    table = a[a.index("--table") + 1] if "--table" in a else None
    ctx.cases = a[a.index("--case") + 1].split(",") if "--case" in a else []
    ctx.seed = int(a[a.index("--seed") + 1]) if "--seed" in a else 1
    if not os.access(os.path.join(ctx.fixtures, "x64", "ntoskrnl.exe"), os.R_OK):
        return 77
    ctx.tmp = tempfile.mkdtemp(prefix="kdh-soak-")
    ctx.procs = []
    rows = []
    try:
        for name in only:
            t0 = time.time()
            try:
                got = SCENARIOS[name](ctx)
            except Fail as e:
                got = [row(name, 0, {}, str(e))]
            for r in got:
                r["secs"] = time.time() - t0
            rows += got
            print(fmt_table(got).split("\n", 1)[1], flush=True)
    finally:
        for p in ctx.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    text = fmt_table(rows)
    print("\n" + text)
    if table:
        with open(table, "w") as f:
            f.write(text + "\n")
    bad = [r for r in rows if r.get("fail")]
    if bad:
        print("\n%d of %d scenario runs failed; their files are in %s" % (len(bad), len(rows), ctx.tmp))
        return 1
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
