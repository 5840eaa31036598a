/* kdsim_spawn.h: starts the kdsim executable for an end-to-end test and reads the two lines it
 * prints at start-up (where it serves, and its own facts: arch, build, kernel base, module
 * count), so tests can compare the host's view with the simulator's. Header-only, test use. */
#ifndef KDSIM_SPAWN_H
#define KDSIM_SPAWN_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct kdsim_proc {
    pid_t pid;
    char address[256];      /* "/dev/pts/N" or "tcp:127.0.0.1:PORT" as printed */
    char port_spec[256];    /* what kdharvest takes: the pty path or tcp://127.0.0.1:PORT */
    char info[512];         /* the second line */
    unsigned long long kern_base;
    int modules;
    unsigned build;
} kdsim_proc_t;

/* argv: NULL-terminated, argv[0] = the kdsim path; errpath (may be NULL) receives kdsim's
 * stderr (its --status lines). 0 on success. */
static inline int kdsim_start(kdsim_proc_t *p, char *const argv[], const char *errpath)
{
    int fds[2];
    memset(p, 0, sizeof *p);
    if (pipe(fds) != 0)
        return -1;
    p->pid = fork();
    if (p->pid < 0)
        return -1;
    if (p->pid == 0) {
        dup2(fds[1], 1);
        if (errpath) {
            FILE *e = fopen(errpath, "w");
            if (e)
                dup2(fileno(e), 2);
        }
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[512];
    int got = 0;
    while (got < 2 && f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "kdsim: serving on ", 18) == 0) {
            snprintf(p->address, sizeof p->address, "%.200s", line + 18);
            if (strncmp(p->address, "tcp:", 4) == 0)
                snprintf(p->port_spec, sizeof p->port_spec, "tcp://%.200s", p->address + 4);
            else
                snprintf(p->port_spec, sizeof p->port_spec, "%.200s", p->address);
            got++;
        } else if (strncmp(line, "kdsim: ", 7) == 0 && got == 1) {
            snprintf(p->info, sizeof p->info, "%.500s", line);
            const char *kb = strstr(line, "kernel base 0x");
            const char *b = strstr(line, " build ");
            if (kb)
                p->kern_base = strtoull(kb + 12, NULL, 16);
            if (b)
                p->build = (unsigned)strtoul(b + 7, NULL, 10);
            const char *mods = strstr(line, " modules");
            if (mods) {
                const char *q = mods;
                while (q > line && q[-1] >= '0' && q[-1] <= '9')
                    q--;
                p->modules = atoi(q);
            }
            got++;
        }
    }
    if (f)
        fclose(f);
    return got == 2 ? 0 : -1;
}

/* 1 while the process runs. */
static inline int kdsim_alive(const kdsim_proc_t *p)
{
    int st;
    return p->pid > 0 && waitpid(p->pid, &st, WNOHANG) == 0;
}

static inline void kdsim_stop(kdsim_proc_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        int st;
        for (int i = 0; i < 100 && waitpid(p->pid, &st, WNOHANG) == 0; i++)
            usleep(20000);
        if (waitpid(p->pid, &st, WNOHANG) == 0) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
        }
        p->pid = 0;
    }
}

#endif
