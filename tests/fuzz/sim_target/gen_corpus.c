/* gen_corpus.c: writes the seed corpus of fuzz_sim_target (in its operation format, see the
 * harness): a host session that boots through both load-symbols, breaks in, asks for the
 * version, memory, context and a breakpoint, and continues; on x64 and x86; plus noise.
 *   gen_corpus <folder> */
#include <stdio.h>
#include <string.h>

#include "kdh/wire.h"

typedef struct seed {
    uint8_t b[8192];
    size_t n;
    kdh_wire_arch_t arch;
    unsigned id;  /* low bit of the host's next packet id */
} seed_t;

static void put(seed_t *s, const void *p, size_t n)
{
    if (s->n + n <= sizeof s->b) {
        memcpy(s->b + s->n, p, n);
        s->n += n;
    }
}

static void op(seed_t *s, unsigned code, unsigned a)
{
    uint8_t h = (uint8_t)(code << 5 | (a & 31));
    put(s, &h, 1);
}

static void tick(seed_t *s) { op(s, 4, 5); }
static void ack(seed_t *s) { op(s, 5, 0); }

/* A manipulate request: header, data, framed by the harness with the host's next id. */
static void manip(seed_t *s, const kdh_wire_manip_t *m, const uint8_t *data, size_t dlen)
{
    uint8_t hdr[KDH_WIRE_MANIP_SIZE];
    kdh_wire_manip_encode(m, s->arch, hdr);
    size_t len = sizeof hdr + dlen;
    uint8_t h[3] = {(uint8_t)s->id, (uint8_t)len, (uint8_t)(len >> 8)};
    op(s, 6, KDH_WIRE_TYPE_STATE_MANIPULATE);
    put(s, h, 3);
    put(s, hdr, sizeof hdr);
    if (dlen)
        put(s, data, dlen);
    s->id ^= 1;
    tick(s);
    ack(s);  /* the reply */
}

static void cont(seed_t *s)
{
    kdh_wire_manip_t c = {.api = KDH_WIRE_API_CONTINUE2};
    c.u.cont2.status = KDH_WIRE_DBG_CONTINUE;
    manip(s, &c, NULL, 0);
}

static void session(seed_t *s, uint8_t cfg, uint64_t va)
{
    memset(s, 0, sizeof *s);
    s->arch = (cfg & 1) ? KDH_WIRE_ARCH_X86 : KDH_WIRE_ARCH_AMD64;
    put(s, &cfg, 1);
    for (int k = 0; k < 2; k++) {  /* the two boot load-symbols state changes */
        tick(s);
        ack(s);
        cont(s);
    }
    tick(s);
    op(s, 7, 0);  /* break-in */
    tick(s);
    ack(s);
    kdh_wire_manip_t m = {.api = KDH_WIRE_API_GET_VERSION};
    manip(s, &m, NULL, 0);
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_READ_VIRTUAL_MEMORY;
    m.u.mem.address = va;
    m.u.mem.transfer_count = 0x100;
    manip(s, &m, NULL, 0);
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_GET_CONTEXT;
    manip(s, &m, NULL, 0);
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_READ_CONTROL_SPACE;
    m.u.mem.transfer_count = 8;
    manip(s, &m, NULL, 0);
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_WRITE_BREAKPOINT;
    m.u.write_bp.address = va + 0x1000;
    manip(s, &m, NULL, 0);
    memset(&m, 0, sizeof m);
    m.api = KDH_WIRE_API_WRITE_VIRTUAL_MEMORY;
    m.u.mem.address = va + 0x3000;
    m.u.mem.transfer_count = 4;
    manip(s, &m, (const uint8_t *)"Leak", 4);
    cont(s);
    tick(s);
}

static int save(const char *dir, const char *name, const seed_t *s)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(s->b, 1, s->n, f) != s->n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus-folder>\n", argv[0]);
        return 2;
    }
    static seed_t s;
    int bad = 0;
    session(&s, 0x00, 0xfffff80000000000ull);
    bad |= save(argv[1], "session_x64", &s);
    session(&s, 0x03, 0xffffffff80000000ull);
    bad |= save(argv[1], "session_x86_2cpu", &s);
    session(&s, 0x08, 0xfffff80000000000ull);
    bad |= save(argv[1], "session_x64_no_context_ex", &s);

    /* Noise: partial leaders, a RESET, a lone ACK, time passing, break-ins while sending. */
    memset(&s, 0, sizeof s);
    uint8_t cfg = 0;
    put(&s, &cfg, 1);
    static const uint8_t noise[] = {0x30, 0x30, 0x30, 0x69, 0x69, 0x69, 0x69, 0x04, 0x00, 0x00, 0x00,
                                    0x00, 0x00, 0x80, 0x80, 0x30, 0x30, 0x30, 0x30, 0xAA, 0x62};
    op(&s, 0, sizeof noise - 1);
    put(&s, noise, sizeof noise);
    op(&s, 7, 1);  /* RESET */
    tick(&s);
    op(&s, 7, 0);
    ack(&s);
    op(&s, 5, 1);  /* ACK with the wrong id */
    tick(&s);
    bad |= save(argv[1], "noise", &s);
    return bad;
}
