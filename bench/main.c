/* bench/main.c: kiln-bench's entry point: picks the subcommand (bn: the BatchNorm
 * microbenchmarks; train: training steps per second of whole models). bench/gpu-check.sh runs both on the GPU machine; docs/performance.md
 * says what they measure. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static void usage(FILE *f) {
    fprintf(f, "usage: kiln-bench bn [options]      BatchNorm kernels: kiln, its variants, cuDNN, CPU\n"
               "       kiln-bench train [options]   training steps per second (seed-cnn, resnet20)\n"
               "       kiln-bench conv [options]    CPU Conv2D (oneDNN vs im2col) and GEMM (OpenBLAS vs oneDNN)\n"
               "       kiln-bench SUBCOMMAND --help for the options\n"
               "       --threads N (any subcommand): the CPU threads (OpenMP, OpenBLAS, oneDNN);\n"
               "       without it OMP_NUM_THREADS, else every core\n"
               "Set KILN_COMMIT to the commit being measured; it goes into every result.\n");
}

/* takes `--threads N` out of argv (any position) and sets it; false on a bad value */
static bool take_threads(int *argc, char **argv) {
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--threads")) continue;
        int n;
        if (i + 1 >= *argc || !bench_parse_int("--threads", argv[i + 1], 1, 4096, &n)) return false;
        if (kiln_threads_set(n) != KILN_OK) return false;
        memmove(argv + i, argv + i + 2, (size_t)(*argc - i - 2) * sizeof *argv);
        *argc -= 2;
        return true;
    }
    return true;
}

int main(int argc, char **argv) {
    bench_set_command(argc, argv);
    if (!take_threads(&argc, argv)) {
        fprintf(stderr, "kiln-bench: --threads needs an integer in [1, 4096]\n");
        return 2;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "bn")) return bench_bn_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "train")) return bench_train_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "conv")) return bench_conv_main(argc - 1, argv + 1);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "kiln-bench: unknown subcommand '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
