/* fault.c: deterministic line faults for kdsim (see fault.h). splitmix64 keeps the sequence of
 * decisions a function of the seed and the traffic only. */
#include "fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static uint64_t next_u64(sim_faults_t *f)
{
    uint64_t z = (f->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double next_unit(sim_faults_t *f)
{
    return (double)(next_u64(f) >> 11) * (1.0 / 9007199254740992.0);
}

static int chance(sim_faults_t *f, double p)
{
    return p > 0 && next_unit(f) < p;
}

/* "250ms", "2s", "1.5" (seconds) -> ns */
static int parse_duration(const char *s, const char *end, uint64_t *ns)
{
    char tmp[32];
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *e;
    errno = 0;
    double v = strtod(tmp, &e);
    double mult = 1e9;
    if (strcmp(e, "ms") == 0)
        mult = 1e6;
    else if (strcmp(e, "us") == 0)
        mult = 1e3;
    else if (strcmp(e, "s") != 0 && *e != 0)
        return -1;
    if (errno || e == tmp || v < 0 || v > 1e6)
        return -1;
    *ns = (uint64_t)(v * mult);
    return 0;
}

static int parse_prob(const char *s, double *p)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e != 0 || v < 0 || v > 1)
        return -1;
    *p = v;
    return 0;
}

/* Decimal digits at s into *n; *end after them. -1 when there are none. */
static int parse_uint(const char *s, const char **end, uint64_t *n)
{
    char *e;
    errno = 0;
    *n = strtoull(s, &e, 10);
    *end = e;
    return e == s || errno || *s == '-' || *s == '+' ? -1 : 0;
}

/* A count from 1 that is the whole value ("reboot-in-request=400"). */
static int parse_count(const char *v, uint64_t *n)
{
    const char *end;
    return parse_uint(v, &end, n) || *end || *n == 0 ? -1 : 0;
}

int sim_faults_parse(sim_faults_t *f, const char *spec, uint64_t seed, kdh_err_t *err)
{
    memset(f, 0, sizeof *f);
    f->rng = seed ^ 0x6B64736D6C696E65ull; /* "kdsmline": other seed users get other streams */
    if (!spec || !*spec)
        return KDH_OK;
    char buf[512];
    if (strlen(spec) >= sizeof buf)
        return kdh_err_set(err, KDH_EINVAL, "--faults: spec longer than %zu characters", sizeof buf - 1);
    memcpy(buf, spec, strlen(spec) + 1); /* fits: length checked above */
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq)
            return kdh_err_set(err, KDH_EINVAL, "--faults: '%s' is not key=value", item);
        *eq = 0;
        const char *k = item, *v = eq + 1;
        int bad = 0;
        if (strcmp(k, "corrupt") == 0)
            bad = parse_prob(v, &f->corrupt);
        else if (strcmp(k, "drop") == 0)
            bad = parse_prob(v, &f->drop);
        else if (strcmp(k, "drop-packet") == 0)
            bad = parse_prob(v, &f->drop_packet);
        else if (strcmp(k, "dup-packet") == 0)
            bad = parse_prob(v, &f->dup_packet);
        else if (strcmp(k, "stall") == 0) {
            const char *slash = strchr(v, '/');
            bad = !slash || parse_duration(v, slash, &f->stall_ns) ||
                  parse_duration(slash + 1, v + strlen(v), &f->stall_period_ns) ||
                  f->stall_period_ns <= f->stall_ns;
        } else if (strcmp(k, "hangup") == 0) {
            const char *slash = strchr(v, '/');
            bad = !slash || parse_duration(v, slash, &f->hangup_ns) ||
                  parse_duration(slash + 1, v + strlen(v), &f->hangup_period_ns) ||
                  f->hangup_period_ns <= f->hangup_ns || f->hangup_ns == 0;
        } else if (strcmp(k, "reboot-in-request") == 0) {
            bad = parse_count(v, &f->reboot_request_at);
        } else if (strcmp(k, "reboot") == 0) {
            bad = parse_duration(v, v + strlen(v), &f->reboot_at_ns) || f->reboot_at_ns == 0;
        } else if (strcmp(k, "lose-request") == 0) { /* N or N@K */
            const char *end;
            bad = parse_uint(v, &end, &f->lose_request_at) || f->lose_request_at == 0;
            if (!bad && *end == '@')
                bad = parse_uint(end + 1, &end, &f->lose_after_continue);
            bad = bad || *end;
        } else if (strcmp(k, "mangle-stop") == 0) {
            bad = parse_count(v, &f->mangle_stop_at);
        } else if (strcmp(k, "mangle-thread") == 0) {
            bad = parse_count(v, &f->mangle_thread_at);
        } else if (strcmp(k, "mangle-write") == 0) {
            bad = parse_count(v, &f->mangle_write_at);
        } else if (strcmp(k, "mangle-continue") == 0) {
            bad = parse_count(v, &f->mangle_continue_at);
        } else
            return kdh_err_set(err, KDH_EINVAL,
                               "--faults: unknown fault '%s' (corrupt, drop, drop-packet, dup-packet, "
                               "stall, hangup, reboot, reboot-in-request, mangle-continue, lose-request, "
                               "mangle-write, mangle-stop, mangle-thread)", k);
        if (bad)
            return kdh_err_set(err, KDH_EINVAL,
                               "--faults: bad value '%s' for %s (probability 0..1, stall=DUR/PERIOD "
                               "and hangup=DUR/PERIOD with DUR < PERIOD, durations like 500ms or "
                               "2s, counts from 1, lose-request=N or N@K)", v, k);
    }
    return KDH_OK;
}

int sim_faults_packet(sim_faults_t *f)
{
    if (chance(f, f->drop_packet)) {
        f->st.dropped_packets++;
        return SIM_FAULT_DROP;
    }
    if (chance(f, f->dup_packet)) {
        f->st.duplicated_packets++;
        return SIM_FAULT_DUP;
    }
    return SIM_FAULT_SEND;
}

size_t sim_faults_bytes(sim_faults_t *f, uint8_t *buf, size_t len)
{
    if (f->corrupt <= 0 && f->drop <= 0)
        return len;
    size_t out = 0;
    for (size_t i = 0; i < len; i++) {
        if (chance(f, f->drop)) {
            f->st.dropped_bytes++;
            continue;
        }
        uint8_t b = buf[i];
        if (chance(f, f->corrupt)) {
            b ^= (uint8_t)(1u << (next_u64(f) & 7));
            f->st.corrupted++;
        }
        buf[out++] = b;
    }
    return out;
}

int sim_faults_stalled(sim_faults_t *f, uint64_t since_start_ns)
{
    if (!f->stall_period_ns)
        return 0;
    /* the stall occupies the last stall_ns of every period */
    int s = since_start_ns % f->stall_period_ns >= f->stall_period_ns - f->stall_ns;
    if (s && !f->in_stall)
        f->st.stalls++;
    f->in_stall = s;
    return s;
}

int sim_faults_hung_up(sim_faults_t *f, uint64_t since_start_ns)
{
    if (!f->hangup_period_ns)
        return 0;
    int h = since_start_ns % f->hangup_period_ns >= f->hangup_period_ns - f->hangup_ns;
    if (h && !f->in_hangup)
        f->st.hangups++;
    f->in_hangup = h;
    return h;
}

int sim_faults_reboot_due(sim_faults_t *f, uint64_t since_start_ns)
{
    if (f->reboot_request_due) {
        f->reboot_request_due = 0;
        f->st.reboots++;
        return 1;
    }
    if (!f->reboot_at_ns || f->reboot_done || since_start_ns < f->reboot_at_ns)
        return 0;
    f->reboot_done = 1;
    f->st.reboots++;
    return 1;
}

static size_t split_flush(sim_splitter_t *sp, uint8_t *out)
{
    size_t n = sp->len;
    memcpy(out, sp->buf, n);
    sp->len = sp->need = 0;
    return n;
}

/* A whole host packet: a manipulate data packet (type 2) whose API is Continue2 (0x313C). */
static void mangle_continue(sim_faults_t *f, uint8_t *pkt, size_t len)
{
    if (!f->mangle_continue_at || len < 16 + 4 || pkt[0] != 0x30 || kdh_get_u16(pkt + 4) != 2 ||
        kdh_get_u32(pkt + 16) != 0x313C)
        return;
    if (++f->continues_seen != f->mangle_continue_at)
        return;
    pkt[4] ^= 1; /* type 2 -> 3 (debug I/O): the target ACKs it and has no use for it */
    f->st.mangled++;
}

static void mangle_stop(sim_faults_t *f, uint8_t *buf, size_t pc1, size_t info)
{
    if (++f->stops_seen != f->mangle_stop_at)
        return;
    if (!(buf[pc1] & 0x10) || (buf[info] & 0x10)) {
        f->stops_seen--; /* these bits cannot cancel here: the next report instead */
        return;
    }
    buf[pc1] &= (uint8_t)~0x10u;
    buf[info] |= 0x10u;
    f->st.mangled++;
}

/* A set bit of one of the thread's middle bytes cleared (the address stays canonical on x64 and
 * names no thread; bytes 2, 1, 3, 4 and bits from 4 up are tried in turn), and the same bit set in
 * another byte of the exception record. */
static void mangle_thread(sim_faults_t *f, uint8_t *buf, size_t thread, size_t info)
{
    if (++f->threads_seen != f->mangle_thread_at)
        return;
    static const unsigned bytes[] = {2, 1, 3, 4};
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++)
        for (unsigned k = 0; k < 8; k++) {
            uint8_t bit = (uint8_t)(1u << ((4 + k) % 8)), *b = &buf[thread + bytes[i]];
            if ((*b & bit) && !(buf[info] & bit)) {
                *b &= (uint8_t)~bit;
                buf[info] |= bit;
                f->st.mangled++;
                return;
            }
        }
    f->threads_seen--; /* no pair of bits to cancel here: the next report instead */
}

void sim_faults_target_packet(sim_faults_t *f, uint8_t *buf, size_t len)
{
    /* DBGKD_WAIT_STATE_CHANGE64: NewState 0x3030 (exception) at 0, Thread at 0x10, ProgramCounter
     * at 0x18, the exception record from 0x20 (its ExceptionInformation[14] at 0x20 + 0x20 + 14 * 8) */
    const size_t p = 16, thread = p + 0x10, pc1 = p + 0x19, info = p + 0x20 + 0x20 + 14 * 8;
    if ((!f->mangle_stop_at && !f->mangle_thread_at) || len < info + 2 + 1 || buf[0] != 0x30 ||
        kdh_get_u16(buf + 4) != 7 || kdh_get_u32(buf + p) != 0x3030)
        return;
    uint64_t h = XXH3_64bits(buf + p, len - p - 1); /* a resend of the same report is not a new one */
    if (h == f->stop_last_hash)
        return;
    f->stop_last_hash = h;
    if (f->mangle_stop_at)
        mangle_stop(f, buf, pc1, info);
    if (f->mangle_thread_at)
        mangle_thread(f, buf, thread, info + 1);
}

/* A whole host packet: a WriteVirtualMemory (0x3131) with at least two data bytes after its 0x38
 * byte header. +1 on one byte and -1 on the next leave the byte sum, so the checksum passes;
 * bytes that would wrap are left alone (that write is not damaged, and not counted). */
static void mangle_write(sim_faults_t *f, uint8_t *pkt, size_t len)
{
    const size_t d = 16 + 0x38;
    if (!f->mangle_write_at || len < d + 2 + 1 || pkt[0] != 0x30 || kdh_get_u16(pkt + 4) != 2 ||
        kdh_get_u32(pkt + 16) != 0x3131 || pkt[d] == 0xFF || pkt[d + 1] == 0)
        return;
    if (++f->writes_seen != f->mangle_write_at)
        return;
    pkt[d]++;
    pkt[d + 1]--;
    f->st.mangled++;
}

/* A whole host packet: the Nth manipulate request other than Continue2 is swallowed and the
 * target reboots (a power cut with the request on the wire). Returns 1 when it is dropped. */
static int reboot_in_request(sim_faults_t *f, const uint8_t *pkt, size_t len)
{
    if (!f->reboot_request_at || len < 16 + 4 || pkt[0] != 0x30 || kdh_get_u16(pkt + 4) != 2 ||
        kdh_get_u32(pkt + 16) == 0x313C)
        return 0;
    if (++f->requests_seen != f->reboot_request_at)
        return 0;
    f->reboot_request_due = 1;
    return 1;
}

/* A whole host packet. The lost request's retransmissions carry the same bytes (the id changes
 * only with a RESET), so every copy is dropped until the host's RESET passes; the target then
 * reports its stop again, and the request, sent once more with the new id, gets through.
 * Returns 1 when the packet is dropped. */
static int lose_request(sim_faults_t *f, const uint8_t *pkt, size_t len)
{
    if (!f->lose_request_at || f->lose_done)
        return 0;
    if (pkt[0] == 0x69 && len >= 16 && kdh_get_u16(pkt + 4) == 6) {
        if (f->lose_active) {
            f->lose_active = 0;
            f->lose_done = 1;
        }
        return 0;
    }
    if (f->lose_active) {
        if (len == f->lose_len && memcmp(pkt, f->lose_pkt, len) == 0) {
            f->st.lost_requests++;
            return 1;
        }
        return 0;
    }
    if (len < 16 + 4 || pkt[0] != 0x30 || kdh_get_u16(pkt + 4) != 2)
        return 0;
    uint64_t h = XXH3_64bits(pkt, len);
    if (h == f->lose_last_hash)
        return 0; /* a retransmission of the request counted last */
    f->lose_last_hash = h;
    int is_continue = kdh_get_u32(pkt + 16) == 0x313C;
    if (f->lose_continues < f->lose_after_continue) {
        f->lose_continues += is_continue;
        return 0;
    }
    if (++f->lose_requests != f->lose_request_at)
        return 0;
    memcpy(f->lose_pkt, pkt, len);
    f->lose_len = len;
    f->lose_active = 1;
    f->st.lost_requests++;
    return 1;
}

int sim_faults_host_packets(const sim_faults_t *f)
{
    return f->drop_packet > 0 || f->dup_packet > 0 || f->mangle_continue_at || f->reboot_request_at ||
           f->lose_request_at || f->mangle_write_at;
}

size_t sim_splitter_byte(sim_splitter_t *sp, sim_faults_t *f, uint8_t b, uint64_t now_ns, uint8_t *out)
{
    size_t n = 0;
    if (sp->len > 0 && sp->len < 4 && b != sp->buf[0])
        n = split_flush(sp, out); /* not a leader after all: those bytes were noise */
    if (sp->len == 0) {
        if (b != 0x30 && b != 0x69) {
            out[n] = b;
            return n + 1;
        }
        sp->since_ns = now_ns;
    }
    sp->buf[sp->len++] = b;
    if (sp->len == 16) {
        if (sp->buf[0] == 0x69) {
            sp->need = 16;
        } else {
            size_t count = kdh_get_u16(sp->buf + 6);
            if (count > 4000)
                return n + split_flush(sp, out + n); /* the receiver rejects it anyway */
            sp->need = 16 + count + 1;
        }
    }
    if (sp->need && sp->len == sp->need) {
        mangle_continue(f, sp->buf, sp->len);
        mangle_write(f, sp->buf, sp->len);
        int copies = reboot_in_request(f, sp->buf, sp->len) || lose_request(f, sp->buf, sp->len)
                         ? 0
                         : sim_faults_packet(f);
        for (int i = 0; i < copies; i++) {
            memcpy(out + n, sp->buf, sp->len);
            n += sp->len;
        }
        sp->len = sp->need = 0;
    }
    return n;
}

size_t sim_splitter_expire(sim_splitter_t *sp, uint64_t now_ns, uint64_t max_ns, uint8_t *out)
{
    if (sp->len == 0 || now_ns - sp->since_ns < max_ns)
        return 0;
    return split_flush(sp, out);
}
