/* cli_run.c: runs a program with fork and execv, its stdout and stderr captured in temporary
 * files (no pipe can fill up and block it), for the tests of the `kiln` command; or kills it
 * with SIGKILL after a given time. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli_run.h"

static int temp_file(void) {
    char name[] = "/tmp/kiln-run-XXXXXX";
    int fd = mkstemp(name);
    if (fd >= 0) unlink(name);
    return fd;
}

static char *slurp(int fd) {
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = malloc((size_t)(len > 0 ? len : 0) + 1);
    size_t got = 0;
    if (buf && len > 0 && lseek(fd, 0, SEEK_SET) == 0)
        for (ssize_t k; got < (size_t)len && (k = read(fd, buf + got, (size_t)len - got)) > 0;) got += (size_t)k;
    if (buf) buf[got] = '\0';
    close(fd);
    return buf;
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* waits for pid; with `when`, polls it every 100 us while pid runs and kills pid (SIGKILL) once it
 * says so */
static int wait_or_kill(pid_t pid, kt_kill_when when, void *ctx) {
    int st = 0;
    for (;;) {
        pid_t w = waitpid(pid, &st, when ? WNOHANG : 0);
        if (w == pid) return st;
        if (w < 0) return -1;
        if (when(ctx)) {
            kill(pid, SIGKILL);
            when = NULL;
            continue;
        }
        struct timespec t = {0, 100000};
        nanosleep(&t, NULL);
    }
}

/* runs exe with the arguments of line (split at spaces), killed when `when` (NULL: never) says */
static kt_run run_line(const char *exe, char *line, kt_kill_when when, void *ctx) {
    kt_run r = {-1, false, NULL, NULL};
    char *argv[256];
    int argc = 0;
    argv[argc++] = (char *)exe;
    for (char *save = NULL, *a = strtok_r(line, " ", &save); a && argc < 255; a = strtok_r(NULL, " ", &save)) argv[argc++] = a;
    argv[argc] = NULL;
    int out = temp_file(), err = temp_file();
    fflush(NULL);
    pid_t pid = out >= 0 && err >= 0 ? fork() : -1;
    if (pid == 0) {
        dup2(out, 1);
        dup2(err, 2);
        execv(exe, argv);
        _exit(127);
    }
    int st = pid > 0 ? wait_or_kill(pid, when, ctx) : -1;
    if (st != -1) {
        r.signaled = WIFSIGNALED(st);
        r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    r.out = out >= 0 ? slurp(out) : NULL;
    r.err = err >= 0 ? slurp(err) : NULL;
    return r;
}

kt_run kt_run_program(const char *exe, const char *args, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, args);
    vsnprintf(line, sizeof line, args, ap);
    va_end(ap);
    return run_line(exe, line, NULL, NULL);
}

static bool past(void *deadline) { return seconds() >= *(double *)deadline; }

kt_run kt_run_killed(const char *exe, long kill_after_us, const char *args, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, args);
    vsnprintf(line, sizeof line, args, ap);
    va_end(ap);
    double deadline = seconds() + 1e-6 * (double)kill_after_us;
    return run_line(exe, line, past, &deadline);
}

kt_run kt_run_killed_when(const char *exe, kt_kill_when when, void *ctx, const char *args, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, args);
    vsnprintf(line, sizeof line, args, ap);
    va_end(ap);
    return run_line(exe, line, when, ctx);
}

void kt_run_free(kt_run *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

void kt_expect_ok(const kt_run *r, const char *what) {
    cr_assert_eq(r->status, 0, "%s: exit %d, stderr: %s", what, r->status, r->err);
    cr_expect_str_empty(r->err, "%s: stderr: %s", what, r->err);
}
