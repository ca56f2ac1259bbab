/* cpu/memory.c: how much host memory the CPU backend can still allocate: the kernel's
 * estimate of memory available without swapping (MemAvailable in /proc/meminfo), and no more
 * than the address space RLIMIT_AS leaves to this process (the limit less its current size,
 * /proc/self/statm). SIZE_MAX when neither is known (not Linux, no limit). */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cpu.h"

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
