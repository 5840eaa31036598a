/* sid.c: stack identity. A stack id is XXH3-64 over the canonical text of the frames
 * (docs/run-format.md "Stacks"), so the same stack gets the same id in every run, boot and
 * machine, and absolute addresses never take part. */
#include <string.h>

#include <xxhash.h>

#include "store_int.h"

/* Appends text to buf without overrunning it; always counts the full length. */
static void put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len < cap) {
        size_t room = cap - *len;
        memcpy(buf + *len, s, n < room ? n : room);
    }
    *len += n;
}

/* ":hex" or "?:hex" (lower case, no leading zeros) into tmp; returns its length. */
static size_t hex_item(char tmp[40], const char *prefix, uint64_t v)
{
    size_t n = 0;
    for (; prefix[n]; n++) /* a byte loop: the item is not a C string (no NUL is written) */
        tmp[n] = prefix[n];
    return n + kdh_store_hex(tmp + n, v, 0);
}

int kdh_store_canonical(const kdh_store_frame_t *frames, size_t n, char *buf, size_t cap)
{
    size_t len = 0;
    char tmp[40];
    if (n && !frames)
        return KDH_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const kdh_store_frame_t *f = &frames[i];
        if (i)
            put(buf, cap, &len, ";", 1);
        if (f->mod && f->has_rva) {
            put(buf, cap, &len, f->mod, strlen(f->mod));
            put(buf, cap, &len, tmp, hex_item(tmp, ":", f->rva));
        } else if (f->sym && f->sym[0]) {
            put(buf, cap, &len, f->sym, strlen(f->sym));
        } else if (f->has_addr) {
            put(buf, cap, &len, tmp, hex_item(tmp, "?:", f->addr));
        } else {
            put(buf, cap, &len, "?", 1);
        }
    }
    if (cap)
        buf[len < cap ? len : cap - 1] = '\0';
    if (len > (size_t)INT32_MAX)
        return KDH_ERANGE;
    return (int)len;
}

uint64_t kdh_store_stack_id(const kdh_store_frame_t *frames, size_t n)
{
    char small[1024];
    int len = kdh_store_canonical(frames, n, small, sizeof small);
    if (len < 0)
        return 0;
    if ((size_t)len < sizeof small)
        return XXH3_64bits(small, (size_t)len);
    /* Deep or long-named stacks: hash in pieces rather than allocate. */
    XXH3_state_t *s = XXH3_createState();
    if (!s)
        return 0;
    XXH3_64bits_reset(s);
    for (size_t i = 0; i < n; i++) {
        char one[1024];
        if (i)
            XXH3_64bits_update(s, ";", 1);
        int k = kdh_store_canonical(&frames[i], 1, one, sizeof one);
        if (k < 0)
            continue;
        if ((size_t)k < sizeof one) {
            XXH3_64bits_update(s, one, (size_t)k);
        } else {
            /* A single frame longer than 1 KiB: only a very long key or symbol text. */
            const kdh_store_frame_t *f = &frames[i];
            if (f->mod && f->has_rva) {
                char tail[40];
                XXH3_64bits_update(s, f->mod, strlen(f->mod));
                XXH3_64bits_update(s, tail, hex_item(tail, ":", f->rva));
            } else {
                XXH3_64bits_update(s, f->sym, strlen(f->sym));
            }
        }
    }
    uint64_t h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return h;
}

/* "00" to "ff", for the 16 digits of an id a byte at a time (every event line has one) */
static const char hex_pairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
    "303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f"
    "909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
    "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void kdh_store_sid_format(uint64_t sid, char out[17])
{
    for (int i = 0; i < 8; i++)
        memcpy(out + 2 * i, hex_pairs + 2 * ((sid >> (56 - 8 * i)) & 0xff), 2);
    out[16] = '\0';
}

int kdh_store_sid_parse(const char *s, uint64_t *sid)
{
    uint64_t v = 0;
    if (!s)
        return KDH_EINVAL;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return KDH_ECORRUPT;
        v = (v << 4) | d;
    }
    if (s[16] != '\0')
        return KDH_ECORRUPT;
    *sid = v;
    return KDH_OK;
}
