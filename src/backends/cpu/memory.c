/* cpu/memory.c: how much host memory the CPU backend can still allocate: the kernel's
 * estimate of memory available without swapping (MemAvailable in /proc/meminfo), and no more
 * than the address space RLIMIT_AS leaves to this process (the limit less its current size,
 * /proc/self/statm). SIZE_MAX when neither is known (not Linux, no limit). And the scratch
 * slots: grow-only buffers the ops reuse (cpu.h), so steady training steps allocate nothing. */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cpu.h"
#include "error.h"

/* MemAvailable in bytes, or SIZE_MAX when /proc/meminfo does not say */
static size_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return SIZE_MAX;
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
    fclose(f);
    if (!found || kib > SIZE_MAX / 1024) return SIZE_MAX;
    return (size_t)kib * 1024;
}

/* what RLIMIT_AS leaves of the address space, or SIZE_MAX without a limit */
static size_t address_space_left(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    bool known = f && fscanf(f, "%llu", &pages) == 1;
    if (f) fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long used = known && page > 0 ? pages * (unsigned long long)page : 0;
    unsigned long long limit = (unsigned long long)rl.rlim_cur;
    unsigned long long left = limit > used ? limit - used : 0;
    return left < SIZE_MAX ? (size_t)left : SIZE_MAX;
}

kiln_status kiln_cpu_memory_available(const kiln_backend *be, size_t *out) {
    (void)be;
    size_t a = mem_available(), b = address_space_left();
    *out = a < b ? a : b;
    return KILN_OK;
}

kiln_status kiln_cpu_scratch(kiln_backend *be, int slot, size_t bytes, void **out) {
    kiln_cpu_ctx *c = be->ctx;
    if (bytes <= c->scratch_bytes[slot]) {
        *out = c->scratch[slot];
        return KILN_OK;
    }
    size_t total = (bytes + 63) / 64 * 64;
    if (total < bytes) return kiln_error(KILN_ERR_OOM, "cpu: a scratch buffer of %zu bytes overflows", bytes);
    free(c->scratch[slot]);
    c->scratch_bytes[slot] = 0;
    c->scratch[slot] = aligned_alloc(64, total);
    if (!c->scratch[slot])
        return kiln_error(KILN_ERR_OOM, "cpu: out of host memory for a %zu-byte scratch buffer", bytes);
    c->scratch_bytes[slot] = total;
    c->system_allocs++;
    *out = c->scratch[slot];
    return KILN_OK;
}

size_t kiln_cpu_scratch_held(const kiln_cpu_ctx *c) {
    size_t n = 0;
    for (int i = 0; i < KILN_CPU_SCRATCH_SLOTS; i++) n += c->scratch_bytes[i];
    return n;
}

void kiln_cpu_scratch_free(kiln_cpu_ctx *c) {
    for (int i = 0; i < KILN_CPU_SCRATCH_SLOTS; i++) {
        free(c->scratch[i]);
        c->scratch[i] = NULL;
        c->scratch_bytes[i] = 0;
    }
}
