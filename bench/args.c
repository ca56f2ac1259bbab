/* bench/args.c: the option parsing kiln-bench's subcommands share (bn_bench.c, train_bench.c),
 * apart from main.c so that the subcommands and the entry point do not call each other. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

bool bench_parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
    char *end = NULL;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "kiln-bench: %s wants an integer in [%d, %d], not '%s'\n", opt, lo, hi, v);
        return false;
    }
    *out = (int)x;
    return true;
}
