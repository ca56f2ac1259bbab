/* main.c: the `kiln` command: picks the command (train, evaluate, predict, summary),
 * parses its flags (src/cli/args.c), runs it, and turns the outcome into the exit status:
 * 0 on success, 1 on an error, 2 on a bad command line, with the reason as one line on stderr
 * ("kiln: <message>"). The only place that exits. docs/cli.md documents the command. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int fail(int code, const char *msg) {
    fputs("kiln: ", stderr);
    for (const char *p = msg && *msg ? msg : "failed (no message)"; *p; p++) fputc(*p == '\n' ? ' ' : *p, stderr);
    fputc('\n', stderr);
    return code;
}

int main(int argc, char **argv) {
    static const char *const names[KILN_CLI_COMMAND_COUNT] = {"train", "evaluate", "predict", "summary"};
    static kiln_status (*const run[KILN_CLI_COMMAND_COUNT])(const kiln_cli_options *) = {
        kiln_cli_train, kiln_cli_evaluate, kiln_cli_predict, kiln_cli_summary};
    /* a file over `ulimit -f` is then a write error (EFBIG) with its message, the temporary file
     * of an atomic write removed, instead of a kill that leaves both behind */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        fputs(kiln_cli_usage, stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(kiln_cli_usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kiln %s\n", KILN_VERSION);
        return 0;
    }
    int cmd = 0;
    while (cmd < KILN_CLI_COMMAND_COUNT && strcmp(argv[1], names[cmd])) cmd++;
    if (cmd == KILN_CLI_COMMAND_COUNT) {
        char msg[256];
        snprintf(msg, sizeof msg, "unknown command '%.100s' (train, evaluate, predict, summary; kiln --help)", argv[1]);
        return fail(2, msg);
    }
    kiln_cli_options o;
    if (kiln_cli_args_parse((kiln_cli_command)cmd, argc - 2, argv + 2, &o) != KILN_OK) return fail(2, kiln_last_error());
    if (o.help) {
        fputs(kiln_cli_usage, stdout);
        return 0;
    }
    if (o.threads && kiln_threads_set(o.threads) != KILN_OK) return fail(2, kiln_last_error());
    if (run[cmd](&o) != KILN_OK) return fail(kiln_cli_usage_fault ? 2 : 1, kiln_last_error());
    if (fflush(stdout) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "writing to stdout failed: %s", strerror(errno));
        return fail(1, msg);
    }
    return 0;
}
