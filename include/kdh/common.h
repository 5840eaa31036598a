/* kdh/common.h: what every module shares: error codes with a message the user can act on,
 * and explicit little-endian field access (wire structures and PE/PDB files are always read
 * and written through these, never by casting packed structs over buffers). */
#ifndef KDH_COMMON_H
#define KDH_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    KDH_OK = 0,
    KDH_EINVAL = -1,       /* bad argument or option */
    KDH_ENOMEM = -2,
    KDH_EIO = -3,          /* an OS call failed (errno in the message) */
    KDH_ETIMEDOUT = -4,
    KDH_EPROTO = -5,       /* the peer broke the protocol */
    KDH_ECORRUPT = -6,     /* malformed input: file, image, packet, memory from the target */
    KDH_ENOTFOUND = -7,
    KDH_ENOTCACHED = -8,   /* a memory view lacks bytes; the caller fetches them and retries */
    KDH_ERANGE = -9,       /* a value or count is outside its bounds */
    KDH_EUNSUPPORTED = -10,
    KDH_EHANGUP = -11,     /* the port or connection went away */
    KDH_ECANCELED = -12,
    KDH_EBUSY = -13,
    KDH_ETARGET = -14      /* the target answered with a failure status */
};

typedef struct kdh_err {
    int code;
    char msg[256];
} kdh_err_t;

/* Records code and a formatted one-line message in err (which may be NULL) and returns code,
 * so that error paths read `return kdh_err_set(err, KDH_ECORRUPT, "...", ...);`. */
int kdh_err_set(kdh_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#ifdef __clang_analyzer__
/* The static analyzer sees only the declaration and would otherwise follow error paths as if
 * kdh_err_set could return KDH_OK; this lets it see that the result is the code passed in. */
#define kdh_err_set(err, code, ...) (kdh_err_set((err), (code), __VA_ARGS__), (code))
#endif
void kdh_err_clear(kdh_err_t *err);
const char *kdh_strerror(int code);

#define KDH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static inline uint16_t kdh_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t kdh_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t kdh_get_u64(const uint8_t *p)
{
    return (uint64_t)kdh_get_u32(p) | ((uint64_t)kdh_get_u32(p + 4) << 32);
}
static inline void kdh_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void kdh_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void kdh_put_u64(uint8_t *p, uint64_t v)
{
    kdh_put_u32(p, (uint32_t)v);
    kdh_put_u32(p + 4, (uint32_t)(v >> 32));
}

/* 1 when [off, off+len) lies inside a buffer of size total, without overflow. */
static inline int kdh_in_bounds(uint64_t off, uint64_t len, uint64_t total)
{
    return off <= total && len <= total - off;
}

/* x86 targets report pointers sign-extended to 64 bits (0x8xxxxxxx -> 0xFFFFFFFF8xxxxxxx). */
static inline uint64_t kdh_sign_extend32(uint32_t v)
{
    return (uint64_t)(int64_t)(int32_t)v;
}

#endif
