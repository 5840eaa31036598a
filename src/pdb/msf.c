/* msf.c: reads the MSF 7.0 container. Every block number is checked against the file, every
 * size against what the blocks can hold, so a hostile file cannot make us read outside it or
 * allocate more than it could describe. */
#include "msf.h"

#include "kdh/pdb.h"

#include <stdlib.h>
#include <string.h>

static const char MSF_MAGIC[32] = "Microsoft C/C++ MSF 7.00\r\n\x1a" "DS\0\0\0";
static const char JG_MAGIC[] = "Microsoft C/C++ program database 2.00";

static uint32_t blocks_for(uint32_t size, uint32_t bs)
{
    return (uint32_t)(((uint64_t)size + bs - 1) / bs);
}

static int check_block(const msf_t *m, uint32_t b, const char *what, kdh_err_t *err)
{
    if (b >= m->nblocks || b == 0)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: %s names block %u (the file has %u blocks)",
                           what, b, m->nblocks);
    return KDH_OK;
}

/* Gathers n bytes from the listed blocks into out. */
static int gather(const msf_t *m, const uint32_t *list, uint32_t n, uint8_t *out,
                  const char *what, kdh_err_t *err)
{
    for (uint32_t done = 0, i = 0; done < n; i++) {
        int rc = check_block(m, list[i], what, err);
        if (rc)
            return rc;
        uint32_t chunk = n - done < m->bs ? n - done : m->bs;
        memcpy(out + done, m->buf + (size_t)list[i] * m->bs, chunk);
        done += chunk;
    }
    return KDH_OK;
}

int msf_open(msf_t *m, const uint8_t *buf, size_t len, kdh_err_t *err)
{
    memset(m, 0, sizeof *m);
    if (len >= sizeof JG_MAGIC - 1 && memcmp(buf, JG_MAGIC, sizeof JG_MAGIC - 1) == 0)
        return kdh_err_set(err, KDH_EUNSUPPORTED, "PDB: a PDB 2.00 (JG) file; only MSF 7.00 "
                           "PDBs are supported");
    if (len < 56 || memcmp(buf, MSF_MAGIC, sizeof MSF_MAGIC) != 0)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: no MSF 7.00 signature (not a PDB, or an "
                           "HTML error page saved as one?)");
    m->buf = buf;
    m->len = len;
    m->bs = kdh_get_u32(buf + 32);
    m->nblocks = kdh_get_u32(buf + 40);
    uint32_t dir_bytes = kdh_get_u32(buf + 44);
    if (m->bs < 512 || m->bs > 32768 || (m->bs & (m->bs - 1)))
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: block size %u is not a power of two in "
                           "512..32768", m->bs);
    if (m->nblocks < 3 || (uint64_t)m->nblocks * m->bs > len)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: %u blocks of %u bytes do not fit the "
                           "%zu-byte file (truncated?)", m->nblocks, m->bs, len);
    if (dir_bytes < 4 || dir_bytes > (uint64_t)m->nblocks * m->bs)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: stream directory size %u is impossible",
                           dir_bytes);
    /* The directory's block list lives in block-map blocks, whose numbers start at offset 52
     * of the superblock and continue at 56, 60... when one block-map block is not enough. */
    uint32_t ndir = blocks_for(dir_bytes, m->bs);
    uint32_t nmap = blocks_for(ndir * 4, m->bs);
    if (52 + 4ull * nmap > m->bs)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: %u block-map blocks do not fit the "
                           "superblock", nmap);
    uint32_t *dirlist = malloc(sizeof *dirlist * (size_t)nmap * (m->bs / 4));
    uint8_t *dir = malloc(dir_bytes);
    int rc = KDH_OK;
    if (!dirlist || !dir) {
        rc = kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for the stream directory");
        goto out;
    }
    for (uint32_t i = 0; i < nmap && rc == KDH_OK; i++) {
        uint32_t mb = kdh_get_u32(buf + 52 + (size_t)4 * i);
        if ((rc = check_block(m, mb, "the block map", err)))
            break;
        const uint8_t *p = buf + (size_t)mb * m->bs;
        for (uint32_t j = 0; j < m->bs / 4; j++)
            dirlist[(size_t)i * (m->bs / 4) + j] = kdh_get_u32(p + (size_t)4 * j);
    }
    if (rc || (rc = gather(m, dirlist, dir_bytes, dir, "the stream directory", err)))
        goto out;
    /* Directory: NumStreams, sizes, then each stream's block numbers. */
    uint32_t ns = kdh_get_u32(dir);
    if (ns == 0 || ns > KDH_PDB_MAX_STREAMS || (uint64_t)ns * 4 > dir_bytes - 4) {
        rc = kdh_err_set(err, KDH_ECORRUPT, "PDB: %u streams do not fit the %u-byte directory",
                         ns, dir_bytes);
        goto out;
    }
    m->nstreams = ns;
    m->sizes = calloc(ns, sizeof *m->sizes);
    m->first = calloc(ns, sizeof *m->first);
    if (!m->sizes || !m->first) {
        rc = kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for %u streams", ns);
        goto out;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t sz = kdh_get_u32(dir + 4 + (size_t)4 * i);
        if (sz == MSF_NIL_SIZE)
            sz = 0; /* a deleted stream: no blocks */
        if (sz > (uint64_t)m->nblocks * m->bs) {
            rc = kdh_err_set(err, KDH_ECORRUPT, "PDB: stream %u claims %u bytes, more than the "
                             "file holds", i, sz);
            goto out;
        }
        m->sizes[i] = sz;
        m->first[i] = (uint32_t)total;
        total += blocks_for(sz, m->bs);
    }
    uint64_t list_at = 4 + 4ull * ns;
    if (total * 4 > dir_bytes - list_at) {
        rc = kdh_err_set(err, KDH_ECORRUPT, "PDB: the directory lists %llu stream blocks but "
                         "holds room for %llu", (unsigned long long)total,
                         (unsigned long long)((dir_bytes - list_at) / 4));
        goto out;
    }
    m->blocks = malloc(sizeof *m->blocks * (total ? total : 1));
    if (!m->blocks) {
        rc = kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for the block lists");
        goto out;
    }
    for (uint64_t i = 0; i < total; i++) {
        m->blocks[i] = kdh_get_u32(dir + list_at + 4 * i);
        if ((rc = check_block(m, m->blocks[i], "a stream", err)))
            goto out;
    }
out:
    free(dirlist);
    free(dir);
    if (rc)
        msf_close(m);
    return rc;
}

void msf_close(msf_t *m)
{
    free(m->sizes);
    free(m->first);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}

int msf_read_stream(const msf_t *m, uint32_t idx, uint8_t **data, uint32_t *len, kdh_err_t *err)
{
    *data = NULL;
    *len = 0;
    if (idx >= m->nstreams)
        return kdh_err_set(err, KDH_ECORRUPT, "PDB: stream %u does not exist (%u streams)", idx,
                           m->nstreams);
    uint32_t sz = m->sizes[idx];
    if (sz == 0)
        return KDH_OK;
    uint8_t *d = malloc(sz);
    if (!d)
        return kdh_err_set(err, KDH_ENOMEM, "PDB: out of memory for a %u-byte stream", sz);
    int rc = gather(m, m->blocks + m->first[idx], sz, d, "a stream", err);
    if (rc) {
        free(d);
        return rc;
    }
    *data = d;
    *len = sz;
    return KDH_OK;
}
