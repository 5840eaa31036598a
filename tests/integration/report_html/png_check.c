/* png_check.c: checks a headless-browser screenshot of the HTML report. Parses the PNG itself
 * (signature, chunk CRCs, IHDR, zlib-compressed IDAT, the five scanline filters) and counts pixels
 * by colour: the flame graph's boxes are warm, saturated hues (hsl 10..50, 80% saturation), the
 * growth chart's first line is #c00. Prints the counts and fails when either is missing.
 * usage: png_check FILE.png WIDTH HEIGHT MIN_FLAME_PIXELS MIN_CHART_PIXELS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int fail(const char *why)
{
    fprintf(stderr, "png_check: %s\n", why);
    return 1;
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        return fail("usage: png_check FILE.png WIDTH HEIGHT MIN_FLAME_PIXELS MIN_CHART_PIXELS");
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return fail("cannot open the screenshot");
    static uint8_t file[32 << 20];
    size_t len = fread(file, 1, sizeof file, f);
    fclose(f);
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len < 8 || memcmp(file, sig, 8) != 0)
        return fail("not a PNG (signature)");
    uint32_t w = 0, h = 0;
    int depth = 0, ctype = -1, seen_end = 0;
    uint8_t *idat = NULL;
    size_t nidat = 0;
    for (size_t off = 8; off + 12 <= len;) {
        uint32_t n = be32(file + off);
        if (n > len - off - 12)
            return fail("chunk runs past the end of the file");
        const uint8_t *type = file + off + 4, *data = file + off + 8;
        if (crc32(crc32(0, NULL, 0), type, n + 4) != be32(data + n))
            return fail("chunk CRC mismatch");
        if (memcmp(type, "IHDR", 4) == 0 && n == 13) {
            w = be32(data);
            h = be32(data + 4);
            depth = data[8];
            ctype = data[9];
            if (data[12] != 0)
                return fail("interlaced PNG not expected from a screenshot");
        } else if (memcmp(type, "IDAT", 4) == 0) {
            uint8_t *g = realloc(idat, nidat + n);
            if (!g)
                return fail("out of memory");
            idat = g;
            memcpy(idat + nidat, data, n);
            nidat += n;
        } else if (memcmp(type, "IEND", 4) == 0) {
            seen_end = 1;
            break;
        }
        off += 12 + (size_t)n;
    }
    if (!seen_end || !w || !h || !nidat)
        return fail("missing IHDR, IDAT or IEND");
    if ((long)w != atol(argv[2]) || (long)h != atol(argv[3])) {
        fprintf(stderr, "png_check: size %ux%u, expected %sx%s\n", w, h, argv[2], argv[3]);
        return 1;
    }
    if (depth != 8 || (ctype != 2 && ctype != 6))
        return fail("expected 8-bit RGB or RGBA");
    size_t bpp = ctype == 6 ? 4 : 3, stride = (size_t)w * bpp;
    size_t rawlen = (stride + 1) * h;
    uint8_t *raw = malloc(rawlen), *img = malloc(stride * h);
    if (!raw || !img)
        return fail("out of memory");
    uLongf got = (uLongf)rawlen;
    if (uncompress(raw, &got, idat, (uLong)nidat) != Z_OK || got != rawlen)
        return fail("IDAT does not inflate to the image size");
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *in = raw + y * (stride + 1) + 1;
        uint8_t *out = img + y * stride, *up = y ? out - stride : NULL;
        int ft = in[-1];
        for (size_t x = 0; x < stride; x++) {
            int a = x >= bpp ? out[x - bpp] : 0, b = up ? up[x] : 0, c = (up && x >= bpp) ? up[x - bpp] : 0;
            int v = in[x];
            switch (ft) {
            case 0: break;
            case 1: v += a; break;
            case 2: v += b; break;
            case 3: v += (a + b) / 2; break;
            case 4: v += paeth(a, b, c); break;
            default: return fail("unknown scanline filter");
            }
            out[x] = (uint8_t)v;
        }
    }
    long flame = 0, chart = 0, nonwhite = 0;
    long top = -1, bottom = -1; /* rows holding flame-graph colours */
    for (uint32_t y = 0; y < h; y++) {
        long row = 0;
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = img + y * stride + x * bpp;
            int r = p[0], g = p[1], b = p[2];
            if (r < 245 || g < 245 || b < 245)
                nonwhite++;
            if (r >= 190 && r <= 204 && g <= 12 && b <= 12)
                chart++; /* #c00 (anti-aliasing aside) */
            /* hsl(10..50, 80%, 55..75%): red is the largest, blue the smallest by far, green between */
            if (r >= 225 && b <= 175 && r - b >= 90 && g > b + 15 && g < r)
                row++;
        }
        flame += row;
        if (row > 50) {
            if (top < 0)
                top = y;
            bottom = y;
        }
    }
    printf("png_check: %ux%u, %ld non-white pixels, %ld flame-graph pixels in rows %ld..%ld, %ld chart-line pixels\n",
           w, h, nonwhite, flame, top, bottom, chart);
    if (flame < atol(argv[4]))
        return fail("too few flame-graph pixels: the flame graph was not drawn");
    if (chart < atol(argv[5]))
        return fail("too few chart-line pixels: the growth chart was not drawn");
    free(raw);
    free(img);
    free(idat);
    return 0;
}
