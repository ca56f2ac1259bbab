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

/* runs exe with the arguments of line (split at spaces); kill_after_us >= 0: SIGKILL after it */
static kt_run run_line(const char *exe, char *line, long kill_after_us) {
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
    if (pid > 0 && kill_after_us >= 0) {
        struct timespec t = {kill_after_us / 1000000, kill_after_us % 1000000 * 1000};
        while (nanosleep(&t, &t) != 0) {}
        kill(pid, SIGKILL); /* a zombie already: no effect, its exit status stays */
    }
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid) {
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
    return run_line(exe, line, -1);
}

kt_run kt_run_killed(const char *exe, long kill_after_us, const char *args, ...) {
    char line[8192];
    va_list ap;
    va_start(ap, args);
    vsnprintf(line, sizeof line, args, ap);
    va_end(ap);
    return run_line(exe, line, kill_after_us);
}

void kt_run_free(kt_run *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}
