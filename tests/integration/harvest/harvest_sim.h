/* harvest_sim.h: helpers of the kdharvest-against-kdsim tests that check leak accounting and the
 * breakpoint modes: a kdsim child with its truth file, kdharvest runs, the run directory and the
 * truth read as JSON, stacks as comparable text, outstanding bytes per stack. */
#ifndef KDH_TEST_HARVEST_SIM_H
#define KDH_TEST_HARVEST_SIM_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

extern const char *g_kdsim, *g_kdh, *g_fixtures, *g_arch;
extern char g_tmp[256];

typedef struct sim {
    pid_t pid;
    char pty[128];
    char truth[512];
    char status[512]; /* kdsim's stderr (its --status lines) */
} sim_t;

/* Parses argv (KDSIM KDHARVEST FIXTURES [x64|x86]), makes g_tmp; 77 when the fixtures are
 * absent, 2 on bad arguments, else 0. */
int hs_init(int argc, char **argv, const char *tmp_prefix);
/* Removes g_tmp when rc is 0; returns rc (1 when the removal failed). */
int hs_finish(int rc);
/* kdsim --pty on the leak workload, --truth into g_tmp/<name>.truth.jsonl, extra args after
 * (NULL-terminated); name is a file prefix of its own, so no stale file of an earlier kdsim is
 * read for this one. */
void hs_sim_start(sim_t *s, const char *name, ...);
/* The same with another architecture (fixtures g_fixtures/arch) and workload. */
void hs_sim_start_on(sim_t *s, const char *name, const char *arch, const char *workload, ...);
void hs_sim_stop(sim_t *s);
/* kdsim's status line now (SIGUSR1; its last "kdsim: STATE boot=..." line once a new one came):
 * the target's state, the value in its nt!PoolHitTag, the requests lose-request dropped, the
 * longest stop the host left idle, the control space reads asked, and whether the simulated machine failed at any time.
 * Fails the test after 5 s, or when the line does not parse. */
typedef struct hs_sim_status {
    char state[32]; /* running, stopped, sending */
    char pending[32]; /* what a sending target sends: print, load-symbols, exception, reply; none */
    unsigned pool_hit_tag;
    unsigned long long lost_requests;
    int machine_failed; /* kdsim said "the simulated machine failed" (the simulated kernel faulted) */
    double host_wait_max_ms; /* the longest the target sat stopped with the line idle, waiting for us */
    unsigned long long control_reads; /* ReadControlSpace requests it was asked (refused ones too) */
} hs_sim_status_t;
void hs_sim_status(const sim_t *s, hs_sim_status_t *st);
/* The target was left running: "running", or "sending" a DbgPrint or load-symbols nobody answers
 * (it gives those up after its retries and runs on). Not "stopped", and not sending a stop report
 * or a reply, which it retries for as long as no host answers. */
int hs_sim_left_running(const hs_sim_status_t *st);
/* Children SIGKILLed at exit (kdsim processes are tracked by hs_sim_start); untrack after a
 * waitpid, so a reused pid is not hit. */
void hs_track_child(pid_t pid);
void hs_untrack_child(pid_t pid);
/* kdharvest run --port --tag Leak --out dir --quiet + args (NULL-terminated): its pid (wait 0) or
 * its exit code. */
int hs_harvest(const sim_t *s, const char *dir, int wait, ...);

/* argv[0] with its stdout into out_path: its exit code (128 + signal when killed). */
int hs_run(const char *out_path, const char *const *argv);

json_t *hs_load_lines(const char *path);
/* A truth file kdsim may still be writing: a last line without its newline is not read (stdio can
 * write a long line in more than one write, and kdsim goes on running after the harvest). */
json_t *hs_load_truth(const char *path);
size_t hs_count_lines(const char *path);
/* Lines of the truth file whose "kind" is kind. */
size_t hs_count_kind(const char *path, const char *kind);
const char *hs_str(json_t *o, const char *k);
/* Truth stack as "file+rva|file+rva|...", file lower case; our stacks.jsonl as sid -> same text. */
void hs_truth_stack(json_t *t, char *out, size_t len);
json_t *hs_load_stacks(const char *dir);
/* 1 when ours is the truth stack's outer part from frame 1 on (ours begins at a routine's entry,
 * the truth further in): our frames 1.. equal the truth's last n-1 frames. */
int hs_stack_suffix(const char *ours, const char *truth);

/* Outstanding bytes per stack text: an allocation adds its block, a free of a live address
 * takes it back. */
typedef struct hs_outstanding {
    json_t *live;  /* addr -> [stack, size] */
    json_t *bytes; /* stack -> bytes */
} hs_outstanding_t;
void hs_out_init(hs_outstanding_t *o);
void hs_out_alloc(hs_outstanding_t *o, const char *addr, const char *stack, json_int_t size);
void hs_out_free(hs_outstanding_t *o, const char *addr);
const char *hs_out_top(const hs_outstanding_t *o, json_int_t *best);
void hs_out_done(hs_outstanding_t *o);

/* The report's own pairing (`kdharvest report --format json` of DIR) leaves the truth's
 * outstanding bytes per stack text, ranks by outstanding bytes, and lists first the truth's
 * clear top stack, a leakdrv.sys allocation path. */
void hs_check_report_bytes(const char *dir, const hs_outstanding_t *truth);
/* The stack with the most outstanding bytes, which must lead every other by at least one byte
 * (else a ranking against it says nothing). */
const char *hs_out_clear_top(const hs_outstanding_t *o, json_int_t *best);

/* Public symbols of the kernel's PDB in g_fixtures/g_arch, read by llvm-pdbutil-14 (not by our
 * PDB reader): name -> RVA, x86 names without their '_' and '@N' decoration. NULL when
 * llvm-pdbutil-14 cannot dump it. */
json_t *hs_pdb_publics(void);

/* The run's events are the truth's hits (alloc and free lines): seq 1..n, the same number, and
 * in order the same kind, thread and stack frame for frame. Returns the event count. */
size_t hs_check_events(const char *dir, const char *truth_path);
/* The same with --stack-cap cap: the truth's hits past the first cap of their stack are left out
 * (they are counted, not logged); *capped gets how many. */
size_t hs_check_events_capped(const char *dir, const char *truth_path, unsigned cap, size_t *capped);
/* The op of the journal's last line ("" when it is empty). */
void hs_journal_last_op(const char *dir, char *buf, size_t len);

/* Journal: breakpoints set and not cleared, keyed by (kernel_base, handle) as the journal's
 * records are (a later bp_set of a handle replaces its earlier one); a bp_clear must name the
 * address of the open bp_set of its handle, and a record without a handle (1..0xffffffff),
 * kernel_base or addr fails the test. */
int hs_journal_open_bps(const char *dir);
/* meta.json counters.<group>.<name> (group NULL: counters.<name>); fails the test when absent. */
json_int_t hs_meta_counter(const char *dir, const char *group, const char *name);
/* The events summary.txt was made from (its first line: "kdharvest report: 1 run, N events read");
 * fails the test when the file is absent or the line does not parse. */
unsigned long long hs_summary_events(const char *dir);

#endif
