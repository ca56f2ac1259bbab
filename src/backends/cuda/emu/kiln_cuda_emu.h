/* emu/kiln_cuda_emu.h: the control side of the CUDA emulator (C, for tests and the registry's
 * users): the emulated device's properties, which a test sets to drive every path choice of the
 * kernels (SM count, shared memory per SM and per block, registers, cooperative launch and its
 * limit), and the emulator's counters and last report (a shared-memory race, an access outside
 * every device allocation, a deadlock at a barrier or shuffle).
 *
 * The emulator itself (kiln_cuda_emu.cuh, emu_runtime.cpp) runs kiln's CUDA kernel source on the
 * host; docs/testing.md ("CUDA emulation") explains it and what it cannot show. */
#ifndef KILN_CUDA_EMU_CTL_H
#define KILN_CUDA_EMU_CTL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_emu_device {
    int sm_count;
    int max_threads_per_sm, max_blocks_per_sm;
    size_t smem_per_sm;          /* cudaDevAttrMaxSharedMemoryPerMultiprocessor */
    size_t smem_per_block;       /* without opting in (48 KiB on every GPU since Volta) */
    size_t smem_per_block_optin; /* cudaDevAttrMaxSharedMemoryPerBlockOptin */
    int regs_per_sm, regs_per_thread; /* every kernel is taken to use regs_per_thread */
    size_t func_static_smem;     /* cudaFuncGetAttributes' sharedSizeBytes (checked at launch) */
    size_t l2_bytes, total_mem;
    int coop_launch;             /* cudaDevAttrCooperativeLaunch */
    int coop_max_blocks;         /* > 0: a cooperative launch of more blocks is refused with
                                    cudaErrorCooperativeLaunchTooLarge whatever the occupancy
                                    says (MPS, a sanitizer): the fallback's test */
} kiln_emu_device;

/* The device the emulator starts with (a small GPU whose cooperative kernels stay cheap). */
kiln_emu_device kiln_emu_device_default(void);
/* The emulated device now, and a new one (takes effect for backends opened afterwards: a
 * backend reads the attributes once). */
kiln_emu_device kiln_emu_device_get(void);
void kiln_emu_device_set(const kiln_emu_device *d);

typedef struct kiln_emu_stats {
    uint64_t launches;      /* kernels executed (every launch, in this process) */
    uint64_t threads;       /* emulated threads run */
    uint64_t races;         /* shared-memory races reported */
    uint64_t bad_accesses;  /* accesses outside every live device allocation */
    uint64_t faults;        /* launches that failed (race, bad access, deadlock, bad config) */
    uint64_t coop_refused;  /* cooperative launches refused (too large, or not supported) */
} kiln_emu_stats;

kiln_emu_stats kiln_emu_stats_get(void);
/* The last report (race, bad access, deadlock): "" when none. */
const char *kiln_emu_last_report(void);
void kiln_emu_clear_report(void);

/* A line for scripts/test.sh's summary, appended to the file named by $KILN_EMU_LOG (nothing
 * when unset): "row pass|fail|skip NAME" from the tests, "kernels N" from the emulator at exit. */
void kiln_emu_log(const char *fmt, ...);

#ifdef __cplusplus
}
#endif
#endif
