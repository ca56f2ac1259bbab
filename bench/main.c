/* bench/main.c: kiln-bench's entry point: picks the subcommand (bn: the BatchNorm
 * microbenchmarks; train: training steps per second of whole models). bench/gpu-check.sh runs both on the GPU machine; docs/performance.md
 * says what they measure. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln-bench bn [options]      BatchNorm kernels: kiln, its variants, cuDNN, CPU\n"
               "       kiln-bench train [options]   training steps per second (seed-cnn, resnet20)\n"
               "       kiln-bench SUBCOMMAND --help for the options\n"
               "Set KILN_COMMIT to the commit being measured; it goes into every result.\n");
}

int main(int argc, char **argv) {
    bench_set_command(argc, argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "bn")) return bench_bn_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return bench_train_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kiln-bench: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
