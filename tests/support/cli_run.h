/* cli_run.h: running a program (the built `kiln` command) from a test: its arguments, exit
 * status, and what it wrote to stdout and stderr, or killing it at a chosen instant; for
 * tests/test_cli*.c. */
#ifndef KILN_TEST_CLI_RUN_H
#define KILN_TEST_CLI_RUN_H

#include <stdbool.h>

typedef struct kt_run {
    int status;     /* the exit status, or 128 + the signal that ended it */
    bool signaled;  /* ended by a signal (a crash) */
    char *out, *err;/* what it wrote (NUL-terminated, malloc'ed) */
} kt_run;

/* Runs `exe` with the arguments of `args`, split at spaces (so no argument may contain one),
 * and waits for it. `args` is a printf format. */
kt_run kt_run_program(const char *exe, const char *args, ...) __attribute__((format(printf, 2, 3)));
/* The same, killed with SIGKILL kill_after_us microseconds after it started (when it is still
 * running then: status 128 + 9, signaled). */
kt_run kt_run_killed(const char *exe, long kill_after_us, const char *args, ...) __attribute__((format(printf, 3, 4)));
/* The same, killed once when(ctx) returns true (asked every 100 us while the program runs). */
typedef bool (*kt_kill_when)(void *ctx);
kt_run kt_run_killed_when(const char *exe, kt_kill_when when, void *ctx, const char *args, ...)
    __attribute__((format(printf, 4, 5)));
void kt_run_free(kt_run *r);
/* r exited 0 with nothing on stderr (`what` names the run in the failure) */
void kt_expect_ok(const kt_run *r, const char *what);

#endif
