/* http.c: downloads from a symbol server with libcurl. The body goes to a temporary file beside
 * its destination and is renamed only once it is complete and starts with the expected magic,
 * so an HTML error page, a 404 or a dropped connection never leaves a file in the cache. */
#include "symstore_internal.h"
#include "kdh/task.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char MSF_MAGIC[] = "Microsoft C/C++ MSF 7.00\r\n";

/* Inside a daemon task the transfer must not hold the shared loop: a PDB from a symbol server
 * can take minutes, and every other target stopped at a hit meanwhile would stay stopped. So
 * there the transfer runs on a multi handle, driven in 5 ms naps (kdh_task_sleep) that let
 * the other targets' tasks run; each curl_multi_perform reads all the socket holds, so the
 * naps cost little throughput. Outside a task (one-target tools) it is curl_easy_perform. */
static CURLcode perform(CURL *c)
{
    if (!kdh_task_self())
        return curl_easy_perform(c);
    CURLM *m = curl_multi_init();
    if (!m)
        return CURLE_OUT_OF_MEMORY;
    if (curl_multi_add_handle(m, c) != CURLM_OK) {
        curl_multi_cleanup(m);
        return CURLE_FAILED_INIT;
    }
    CURLcode result = CURLE_OK;
    int running = 1;
    while (running) {
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            result = CURLE_FAILED_INIT;
            break;
        }
        if (running)
            kdh_task_sleep(5);
    }
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == c)
            result = msg->data.result;
    curl_multi_remove_handle(m, c);
    curl_multi_cleanup(m);
    return result;
}

typedef struct dl {
    FILE *f;
    uint8_t head[32];
    size_t headn;
    uint64_t bytes;
    int write_failed;
} dl_t;

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    dl_t *d = ud;
    size_t n = size * nmemb;
    if (d->headn < sizeof d->head) {
        size_t k = sizeof d->head - d->headn < n ? sizeof d->head - d->headn : n;
        memcpy(d->head + d->headn, p, k);
        d->headn += k;
    }
    if (fwrite(p, 1, n, d->f) != n) {
        d->write_failed = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    d->bytes += n;
    return n;
}

/* Removes the folders a failed download created, if they are empty (rmdir refuses otherwise). */
static void prune_dirs(const char *dest)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dest);
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
            return;
        *slash = '\0';
        if (rmdir(p) != 0)
            return;
    }
}

/* Printable excerpt of what came back, for the error message. */
static void excerpt(const dl_t *d, char *out, size_t cap)
{
    size_t n = d->headn < cap - 1 ? d->headn : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (d->head[i] >= 0x20 && d->head[i] < 0x7F) ? (char)d->head[i] : '.';
    out[n] = '\0';
}

static int map_error(CURLcode cc, long status, const char *url, const dl_t *d, const char *ebuf,
                     kdh_err_t *err)
{
    const char *why = ebuf[0] ? ebuf : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_HTTP_RETURNED_ERROR:
        if (status == 404)
            return kdh_err_set(err, KDH_ENOTFOUND, "%s: not on the server (HTTP 404)", url);
        return kdh_err_set(err, KDH_EIO, "%s: the server answered HTTP %ld", url, status);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return kdh_err_set(err, KDH_EIO, "%s: cannot connect (%s); check the URL and the network",
                           url, why);
    case CURLE_OPERATION_TIMEDOUT:
        return kdh_err_set(err, KDH_ETIMEDOUT, "%s: timed out after %llu bytes (%s)", url,
                           (unsigned long long)d->bytes, why);
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
        return kdh_err_set(err, KDH_EIO, "%s: the connection dropped after %llu bytes (%s)", url,
                           (unsigned long long)d->bytes, why);
    case CURLE_WRITE_ERROR:
        return kdh_err_set(err, KDH_EIO, "%s: writing the download to the cache failed", url);
    default:
        return kdh_err_set(err, KDH_EIO, "%s: download failed: %s", url, why);
    }
}

int kdh_symstore_download(kdh_symstore_t *s, const char *url, const char *dest, int want_pdb,
                          kdh_err_t *err)
{
    int rc = ss_mkdirs_for(dest, err);
    if (rc)
        return rc;
    char tmp[4096];
    const char *slash = strrchr(dest, '/');
    int n = slash ? snprintf(tmp, sizeof tmp, "%.*s/.%s.XXXXXX", (int)(slash - dest), dest, slash + 1)
                  : snprintf(tmp, sizeof tmp, ".%s.XXXXXX", dest);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return kdh_err_set(err, KDH_ERANGE, "symbol store: path too long: %s", dest);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = kdh_err_set(err, KDH_EIO, "symbol store: cannot create a file in the cache beside "
                         "%s: %s", dest, strerror(errno));
        prune_dirs(dest);
        return rc;
    }
    (void)fchmod(fd, 0644); /* a cache is shared like any symbol store; mkstemp made it 0600 */
    dl_t d = {0};
    d.f = fdopen(fd, "wb");
    CURL *c = curl_easy_init();
    if (!d.f || !c) {
        if (d.f)
            fclose(d.f);
        else
            close(fd);
        if (c)
            curl_easy_cleanup(c);
        unlink(tmp);
        prune_dirs(dest);
        return kdh_err_set(err, KDH_ENOMEM, "symbol store: cannot start a download");
    }
    char ebuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L); /* msdl answers with redirects */
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* msdl serves gzip-encoded bodies */
    curl_easy_setopt(c, CURLOPT_USERAGENT, "Microsoft-Symbol-Server/10.0.0.0 kdharvest/" KDH_VERSION);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->connect_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->total_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, s->stall_s);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    CURLcode cc = perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    int close_failed = fclose(d.f) != 0;
    if (cc != CURLE_OK) {
        rc = map_error(cc, status, url, &d, ebuf, err);
    } else if (close_failed) {
        rc = kdh_err_set(err, KDH_EIO, "symbol store: writing %s failed", tmp);
    } else if (want_pdb ? (d.headn < sizeof MSF_MAGIC - 1 ||
                           memcmp(d.head, MSF_MAGIC, sizeof MSF_MAGIC - 1) != 0)
                        : (d.headn < 2 || d.head[0] != 'M' || d.head[1] != 'Z')) {
        char ex[33];
        excerpt(&d, ex, sizeof ex);
        rc = kdh_err_set(err, KDH_ECORRUPT, "%s: the server answered with something that is not "
                         "a %s (starts with \"%s\"); a proxy or error page?", url,
                         want_pdb ? "PDB" : "PE image", ex);
    } else if (rename(tmp, dest) != 0) {
        rc = kdh_err_set(err, KDH_EIO, "symbol store: cannot rename %s to %s: %s", tmp, dest,
                         strerror(errno));
    }
    if (rc) {
        unlink(tmp);
        prune_dirs(dest);
    }
    return rc;
}
