/* test_report_symbols.c: `report --symbols` names frames from the fixture images' own PDBs, found by
 * module identity. The run is written here with module keys built from the real images (identity read
 * with kdh_pe) and frames at RVAs taken from llvm-pdbutil-14's dump of the PDB's publics (section
 * headers + section:offset), so the expected names come from a tool independent of kdh_pdb. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kdh/pe.h"
#include "kdh/report.h"
#include "kdh/store.h"
#include "kdh/symstore.h"

typedef struct pub {
    char name[128];
    uint32_t rva;
    uint32_t size; /* code size of a procedure record, 0 for a public */
} pub_t;

typedef struct pubs {
    pub_t v[512];
    size_t n;
} pubs_t;

/* Parses `llvm-pdbutil-14 dump -publics -symbols -section-headers` text: S_PUB32, S_GPROC32 and
 * S_LPROC32 records ("`Name`", then "addr = SSSS:OOOO" with a decimal offset into 1-based section
 * SSSS, and for procedures ", code size = N"); "SECTION HEADER #N" then "<hex> virtual address".
 * Procedures matter: kdh_pdb names addresses by them (static functions too) when the PDB has them. */
static int load_pubs(const char *path, pubs_t *p)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512], name[128] = "";
    uint32_t secva[64] = {0}, cursec = 0;
    struct {
        char name[128];
        unsigned sec, off, size;
    } raw[512];
    size_t nraw = 0;
    while (fgets(line, sizeof line, f)) {
        char *q, *bt;
        unsigned a, b;
        if (((q = strstr(line, "S_PUB32")) || (q = strstr(line, "S_GPROC32")) || (q = strstr(line, "S_LPROC32"))) &&
            (bt = strchr(q, '`'))) {
            char *e = strchr(bt + 1, '`');
            if (e && (size_t)(e - bt - 1) < sizeof name) {
                memcpy(name, bt + 1, (size_t)(e - bt - 1));
                name[e - bt - 1] = 0;
            }
        } else if ((q = strstr(line, "addr = ")) && sscanf(q, "addr = %u:%u", &a, &b) == 2 && name[0] &&
                   nraw < 512) {
            memcpy(raw[nraw].name, name, sizeof raw[nraw].name);
            raw[nraw].sec = a;
            raw[nraw].off = b;
            char *cs = strstr(q, "code size = ");
            raw[nraw].size = cs ? (unsigned)strtoul(cs + 12, NULL, 10) : 0;
            nraw++;
            name[0] = 0;
        } else if (sscanf(line, " SECTION HEADER #%u", &a) == 1) {
            cursec = a < 64 ? a : 0;
        } else if (strstr(line, "virtual address") && cursec && sscanf(line, " %x", &a) == 1) {
            secva[cursec] = a;
        }
    }
    fclose(f);
    p->n = 0;
    for (size_t i = 0; i < nraw; i++) {
        if (raw[i].sec == 0 || raw[i].sec >= 64 || !secva[raw[i].sec])
            continue;
        memcpy(p->v[p->n].name, raw[i].name, sizeof p->v[p->n].name); /* same size, terminated */
        p->v[p->n].rva = secva[raw[i].sec] + raw[i].off;
        p->v[p->n].size = raw[i].size;
        p->n++;
    }
    return p->n ? 0 : -1;
}

static const pub_t *find_pub(const pubs_t *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return &p->v[i];
    return NULL;
}

/* An offset into x no greater than want that stays inside x: below the next symbol of either kind
 * and below the code size of x's procedure record, if it has one. */
static uint32_t inside(const pubs_t *p, const pub_t *x, uint32_t want)
{
    uint32_t room = UINT32_MAX;
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].rva > x->rva && p->v[i].rva - x->rva < room)
            room = p->v[i].rva - x->rva;
        if (p->v[i].rva == x->rva && p->v[i].size && p->v[i].size < room)
            room = p->v[i].size;
    }
    return want < room ? want : room - 1;
}

typedef struct image {
    char key[256];
    char pdb[64], guid[40];
    uint32_t age;
} image_t;

static int image_identity(const char *path, const char *file, image_t *im)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    static uint8_t buf[8 << 20];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    kdh_pe_t pe;
    kdh_pe_codeview_t cv;
    kdh_err_t err = {0};
    if (kdh_pe_open_buffer(&pe, buf, len, &err) != KDH_OK || kdh_pe_codeview(&pe, &cv, &err) != KDH_OK)
        return -1;
    char imgkey[128], pdbid[41];
    assert_int_equal(kdh_pe_image_key(file, pe.timestamp, pe.size_of_image, imgkey, sizeof imgkey), KDH_OK);
    kdh_pe_pdb_id(cv.guid, cv.age, pdbid);
    snprintf(im->key, sizeof im->key, "%s/%s", imgkey, pdbid);
    if (strlen(cv.pdb_name) >= sizeof im->pdb)
        return -1;
    memcpy(im->pdb, cv.pdb_name, strlen(cv.pdb_name) + 1);
    /* modules.jsonl's guid: the id without its age digits */
    char agehex[16];
    snprintf(agehex, sizeof agehex, "%X", cv.age);
    snprintf(im->guid, sizeof im->guid, "%.*s", (int)(strlen(pdbid) - strlen(agehex)), pdbid);
    im->age = cv.age;
    return 0;
}

static void test_symbols_from_fixture_pdbs(void **state)
{
    (void)state;
    char p1[1024], p2[1024], p3[1024], p4[1024];
    snprintf(p1, sizeof p1, "%s/leakdrv.sys", KDH_FIXTURE_X64);
    snprintf(p2, sizeof p2, "%s/ntoskrnl.exe", KDH_FIXTURE_X64);
    snprintf(p3, sizeof p3, "%s/leakdrv.publics", KDH_PUBLICS_DIR);
    snprintf(p4, sizeof p4, "%s/ntkrnlmp.publics", KDH_PUBLICS_DIR);
    static pubs_t drv, nt;
    image_t di, ni;
    assert_int_equal(load_pubs(p3, &drv), 0);
    assert_int_equal(load_pubs(p4, &nt), 0);
    assert_int_equal(image_identity(p1, "leakdrv.sys", &di), 0);
    assert_int_equal(image_identity(p2, "ntoskrnl.exe", &ni), 0);
    const pub_t *alloc = find_pub(&nt, "ExAllocatePoolWithTag");
    const pub_t *wa = find_pub(&drv, "LeakDrvWorkA"), *wb = find_pub(&drv, "LeakDrvWorkB");
    const pub_t *de = find_pub(&drv, "DriverEntry");
    assert_non_null(alloc);
    assert_non_null(wa);
    assert_non_null(wb);
    assert_non_null(de);
    uint32_t offa = inside(&nt, alloc, 0x14), offb = inside(&drv, wb, 0x2b), offd = inside(&drv, de, 0x9);
    assert_true(offa > 0 && offb > 0 && offd > 0);

    char tmpl[] = "/tmp/kdh_repsym_XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    char run[1100];
    snprintf(run, sizeof run, "%s/run", dir);
    kdh_store_t *st;
    kdh_err_t err = {0};
    assert_int_equal(kdh_store_open(&st, run, NULL, &err), KDH_OK);
    kdh_store_module_t m1 = {.key = ni.key, .name = "nt", .file = "ntoskrnl.exe", .pdb = ni.pdb, .guid = ni.guid,
                             .age = ni.age, .boot = 1};
    /* The driver's line has no PDB fields: its identity must come from the key alone. */
    kdh_store_module_t m2 = {.key = di.key, .name = "leakdrv", .file = "leakdrv.sys", .boot = 1};
    assert_int_equal(kdh_store_add_module(st, &m1, &err), KDH_OK);
    assert_int_equal(kdh_store_add_module(st, &m2, &err), KDH_OK);
    /* Same image, another GUID: no PDB matches, so the recorded text stays. */
    const char *wrongkey = "leakdrv.sys/5E2A11004000/00000000000000000000000000000000A";
    kdh_store_frame_t fr[] = {
        {.mod = ni.key, .rva = alloc->rva + offa, .has_rva = 1, .sym = "nt!Recorded+0x1"},
        {.mod = di.key, .rva = wb->rva + offb, .has_rva = 1},
        {.mod = di.key, .rva = wa->rva, .has_rva = 1},
        {.mod = di.key, .rva = de->rva + offd, .has_rva = 1},
        {.mod = wrongkey, .rva = 0x1234, .has_rva = 1, .sym = "leakdrv!AsRecorded+0x4"},
        {.mod = wrongkey, .rva = 0x1238, .has_rva = 1},
    };
    uint64_t sid;
    assert_int_equal(kdh_store_intern_stack(st, fr, 6, &sid, &err), KDH_OK);
    kdh_store_event_t ev = {.t = 1795478400.0, .boot = 1, .cpu = 0, .kind = KDH_STORE_ALLOC, .tag = "Leak",
                            .size = 64, .has_size = 1, .sid = sid, .has_sid = 1};
    assert_int_equal(kdh_store_append_event(st, &ev, NULL, &err), KDH_OK);
    assert_int_equal(kdh_store_close(st, &err), KDH_OK);

    char want[6][200];
    snprintf(want[0], sizeof want[0], "nt!ExAllocatePoolWithTag+0x%x", offa);
    snprintf(want[1], sizeof want[1], "leakdrv!LeakDrvWorkB+0x%x", offb);
    snprintf(want[2], sizeof want[2], "leakdrv!LeakDrvWorkA");
    snprintf(want[3], sizeof want[3], "leakdrv!DriverEntry+0x%x", offd);
    snprintf(want[4], sizeof want[4], "leakdrv!AsRecorded+0x4");
    snprintf(want[5], sizeof want[5], "leakdrv+0x1238");

    kdh_symstore_t *ss;
    assert_int_equal(kdh_symstore_new(&ss, KDH_FIXTURE_X64, NULL, &err), KDH_OK);
    kdh_report_opts_t o = {.top = 10, .symbols = ss};
    kdh_report_t *r;
    assert_int_equal(kdh_report_new(&r, &o, &err), KDH_OK);
    assert_int_equal(kdh_report_add_run(r, run, &err), KDH_OK);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(kdh_report_stack_frame(r, sid, i), want[i]);
    /* The wrong-GUID module is named once, with the reason. */
    assert_int_equal(kdh_report_symbol_note_count(r), 1);
    assert_non_null(strstr(kdh_report_symbol_note(r, 0), wrongkey));
    kdh_report_free(r);

    /* Without --symbols: frames as recorded, module+0xRVA otherwise. */
    o.symbols = NULL;
    assert_int_equal(kdh_report_new(&r, &o, &err), KDH_OK);
    assert_int_equal(kdh_report_add_run(r, run, &err), KDH_OK);
    assert_string_equal(kdh_report_stack_frame(r, sid, 0), "nt!Recorded+0x1");
    char plain[64];
    snprintf(plain, sizeof plain, "leakdrv+0x%x", wb->rva + offb);
    assert_string_equal(kdh_report_stack_frame(r, sid, 1), plain);
    kdh_report_free(r);
    kdh_symstore_free(ss);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    char need[2][1024];
    snprintf(need[0], sizeof need[0], "%s/leakdrv.pdb", KDH_FIXTURE_X64);
    snprintf(need[1], sizeof need[1], "%s/leakdrv.publics", KDH_PUBLICS_DIR);
    for (int i = 0; i < 2; i++)
        if (access(need[i], R_OK) != 0) {
            fprintf(stderr, "skipped: %s missing (build the fixtures target; needs llvm-pdbutil-14)\n", need[i]);
            return 77;
        }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_symbols_from_fixture_pdbs)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
