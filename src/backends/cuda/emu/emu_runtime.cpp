// emu/emu_runtime.cpp: the CUDA emulator's runtime (kiln_cuda_emu.cuh declares it):
//  - the emulated device (properties set by tests: kiln_cuda_emu.h) and its runtime calls;
//  - device memory: one reserved address range, allocations 256-aligned with a gap after each,
//    a table of live and freed allocations, so an access from a kernel outside every live
//    allocation is reported (bounds and use after free, in every build);
//  - the execution model: each emulated thread a fiber (a small x86-64 stack switch; ucontext
//    elsewhere) switched only at __syncthreads, a shuffle and a grid sync, in thread order;
//  - the checks: the kernel files are compiled with -fsanitize=thread, whose calls on every load
//    and store (__tsan_read4 ...) land here, not in a TSan runtime: shared-memory races (a byte
//    written by one thread and read or written by another with no barrier between) and accesses
//    outside the device allocations; both fail the launch with a report naming the kernel, the
//    two threads and the offset;
//  - cuBLAS's SGEMM on the host BLAS (column-major), and the cuDNN handle calls (unsupported).
// This file is compiled without those hooks (it is the checker) and without ASan.
#include <cblas.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "include/cublas_v2.h"
#include "include/cudnn.h"
#include "kiln_cuda_emu.cuh"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace kiln_emu {

// ---- the device ---------------------------------------------------------------------------------

static kiln_emu_device g_dev = kiln_emu_device_default();
static std::mutex g_lock; // allocations, attributes, the log

thread_local uint3 t_thread, t_block;
thread_local dim3 t_block_dim, t_grid_dim;

static thread_local cudaError_t tl_last = cudaSuccess;
static thread_local std::string tl_err_text; // the report behind the last failed launch
static std::string g_report;
static kiln_emu_stats g_stats;

static cudaError_t fail(cudaError_t e) {
    tl_last = e;
    return e;
}

// ---- device memory --------------------------------------------------------------------------------

struct alloc_info {
    size_t size;
    bool live;
};
static char *g_region;
static size_t g_region_size, g_region_used, g_live_bytes;
static std::map<uintptr_t, alloc_info> g_allocs; // start -> allocation
static const size_t kGap = 4096;                  // after each allocation: a tail access lands here

static bool region_init() {
    if (g_region) return true;
    for (int shift = 36; shift >= 30; shift -= 2) {
        void *p = mmap(NULL, (size_t)1 << shift, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            g_region = (char *)p;
            g_region_size = (size_t)1 << shift;
            return true;
        }
    }
    return false;
}

// What [a, a + n) is, relative to the allocations: NULL when inside a live one, else why not.
static const char *classify(uintptr_t a, size_t n, char *buf, size_t bufsz) {
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return "before every device allocation";
    --it;
    const uintptr_t lo = it->first, hi = lo + it->second.size;
    if (a >= lo && a + n <= hi) {
        if (it->second.live) return NULL;
        snprintf(buf, bufsz, "inside a freed %zu-byte allocation (offset %zu)", it->second.size,
                 (size_t)(a - lo));
        return buf;
    }
    snprintf(buf, bufsz, "%zu bytes past the end of a %zu-byte allocation", (size_t)(a + n - hi),
             it->second.size);
    return buf;
}

static bool in_region(const void *p) {
    return g_region && (uintptr_t)p - (uintptr_t)g_region < g_region_size;
}

// A host-side range (copies, memset): in a live allocation when it is device memory at all.
static cudaError_t check_range(const void *p, size_t n, const char *call) {
    if (!n || !in_region(p)) return cudaSuccess;
    std::lock_guard<std::mutex> g(g_lock);
    char buf[160];
    const char *why = classify((uintptr_t)p, n, buf, sizeof buf);
    if (!why) return cudaSuccess;
    char m[320];
    snprintf(m, sizeof m, "%s: %zu bytes at device address 0x%llx are %s", call, n,
             (unsigned long long)(uintptr_t)p, why);
    tl_err_text = m;
    g_report = tl_err_text;
    return cudaErrorInvalidValue;
}

// ---- fibers ------------------------------------------------------------------------------------------

static const size_t kStack = 16 * 1024; // kernel frames are small; fewer pages touched per switch
static const int kChunk = 256; // fibers per mmap

struct ethread;
struct fiber {
    void *sp;
    char *stack;
    bool fresh;   // sp must be set up before the next switch in
    ethread *thr; // the thread it runs
    fiber *next;
#if !defined(__x86_64__)
    ucontext_t uc;
#endif
};

static thread_local void *tl_sched_sp; // the scheduler's stack while a fiber runs
#if !defined(__x86_64__)
static thread_local ucontext_t tl_sched_uc;
#endif
static thread_local fiber *tl_free;
struct chunk { // kChunk fiber stacks (only the emulator's own types in std containers: their
    char *mem;   // instantiations stay hidden in libkiln.so)
    fiber *fs;
};
struct chunk_list : std::vector<chunk> { // the OS thread's stacks, returned when it ends
    ~chunk_list() {
        for (chunk &c : *this) {
            munmap(c.mem, kStack * kChunk);
            delete[] c.fs;
        }
    }
};
static thread_local chunk_list tl_chunks;

static void fiber_main(fiber *f);

} // namespace kiln_emu

#if defined(__x86_64__)
// kiln_emu_switch(save, to): saves the callee-saved registers and the stack pointer at *save,
// and resumes the stack `to` (saved the same way). The SSE and x87 control words are not
// switched: kernels never change the rounding mode.
extern "C" void kiln_emu_switch(void **save, void *to);
extern "C" void kiln_emu_trampoline(void);
asm(R"(
    .text
    .globl kiln_emu_switch
    .hidden kiln_emu_switch
    .type kiln_emu_switch, @function
kiln_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size kiln_emu_switch, .-kiln_emu_switch
    .globl kiln_emu_trampoline
    .hidden kiln_emu_trampoline
    .type kiln_emu_trampoline, @function
kiln_emu_trampoline:
    movq %r12, %rdi
    andq $-16, %rsp
    callq *%r13
    ud2
    .size kiln_emu_trampoline, .-kiln_emu_trampoline
)");
#endif

namespace kiln_emu {

static void fiber_setup(fiber *f) {
    f->fresh = false;
#if defined(__x86_64__)
    uint64_t *top = (uint64_t *)(((uintptr_t)(f->stack + kStack)) & ~(uintptr_t)15);
    uint64_t *sp = top - 8;
    sp[0] = 0;                                 // r15
    sp[1] = 0;                                 // r14
    sp[2] = (uint64_t)(uintptr_t)&fiber_main;  // r13: the function
    sp[3] = (uint64_t)(uintptr_t)f;            // r12: its argument
    sp[4] = 0;                                 // rbx
    sp[5] = 0;                                 // rbp
    sp[6] = (uint64_t)(uintptr_t)&kiln_emu_trampoline;
    sp[7] = 0;
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = kStack;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, (void (*)())fiber_main, 1, f);
#endif
}

static fiber *fiber_get() {
    if (!tl_free) {
        char *mem = (char *)mmap(NULL, kStack * kChunk, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mem == MAP_FAILED) return NULL;
        fiber *fs = new fiber[kChunk];
        tl_chunks.push_back(chunk{mem, fs});
        for (int i = kChunk - 1; i >= 0; i--) {
            fs[i].stack = mem + (size_t)i * kStack;
            fs[i].fresh = true;
            fs[i].next = tl_free;
            tl_free = &fs[i];
        }
    }
    fiber *f = tl_free;
    tl_free = f->next;
    return f;
}

static void fiber_put(fiber *f) {
    f->next = tl_free;
    tl_free = f;
}

// Beyond 96 chunks (24K fibers: the largest cooperative grid of the default device), the
// stacks go back to the system.
static void fibers_trim() {
    if (tl_chunks.size() <= 96) return;
    for (chunk &c : tl_chunks) {
        munmap(c.mem, kStack * kChunk);
        delete[] c.fs;
    }
    tl_chunks.clear();
    tl_free = NULL;
}

static void switch_in(fiber *f) {
    if (f->fresh) fiber_setup(f);
#if defined(__x86_64__)
    kiln_emu_switch(&tl_sched_sp, f->sp);
#else
    swapcontext(&tl_sched_uc, &f->uc);
#endif
}

static void switch_out(fiber *f) {
#if defined(__x86_64__)
    kiln_emu_switch(&f->sp, tl_sched_sp);
#else
    swapcontext(&f->uc, &tl_sched_uc);
#endif
}

// ---- the launch -------------------------------------------------------------------------------------

enum tstate : uint8_t { T_NEW, T_READY, T_BARRIER, T_SHFL, T_GRID, T_DONE };

struct ethread {
    uint3 idx;
    int block, lin;
    tstate st;
    fiber *f;
    unsigned mask;
    uint64_t val, res;
    int mode, arg, width;
};

struct shadow_t { // per 2 bytes of shared memory: the last writer, the readers, in which epoch
    uint32_t w_ep, r_ep; // epochs are unique per (block, barrier interval): no clearing needed
    uint16_t w_tid, r_tid;
};
static const uint16_t kMany = 0xffff;

struct eblock {
    uint3 idx;
    int first, n, live, at_barrier;
    int warp_arrived[32];
    char *arena;
    size_t static_used, arena_size;
    const void *keys[16];
    size_t key_off[16];
    int nkeys;
    uint32_t epoch;
    shadow_t *sh;
};

struct launch_t {
    const char *name;
    const void *fn;
    void (*body)(void *);
    void *ctx;
    bool coop, failed, raced, bad;
    dim3 grid, block;
    size_t dyn;
    std::vector<eblock> blocks;
    std::vector<ethread> threads;
    int live, at_grid;
    std::string report;
};

static const size_t kStaticMax = 48 * 1024;
static thread_local launch_t *L;
static thread_local ethread *cur;
static thread_local eblock *cur_b;
static thread_local uintptr_t tl_arena, tl_arena_size;

static void fault(const std::string &msg) {
    if (!L->failed) L->report = "kernel " + std::string(L->name) + ": " + msg;
    L->failed = true;
}

static std::string who(const ethread *t) {
    const eblock &b = L->blocks[t->block];
    char s[96];
    snprintf(s, sizeof s, "thread (%u,%u,%u) of block (%u,%u,%u)", t->idx.x, t->idx.y, t->idx.z,
             b.idx.x, b.idx.y, b.idx.z);
    return s;
}

static void fiber_main(fiber *f) {
    for (;;) {
        ethread *t = f->thr;
        L->body(L->ctx);
        t->st = T_DONE;
        switch_out(f);
    }
}

static void yield() { switch_out(cur->f); }

static thread_local uint32_t tl_epoch;
// Per block slot, kept from launch to launch: the shared memory and its shadow.
struct slot_mem {
    char *arena;
    size_t size;
    shadow_t *sh;
};
struct slot_list : std::vector<slot_mem> { // freed when the OS thread ends
    ~slot_list() {
        for (slot_mem &m : *this) {
            free(m.arena);
            free(m.sh);
        }
    }
};
static thread_local slot_list tl_slots;

static void block_new_epoch(eblock &b) {
    if (++tl_epoch == 0) { // wrapped (after 2^32 intervals): forget every shadow
        for (slot_mem &m : tl_slots)
            if (m.sh) memset(m.sh, 0, m.size / 2 * sizeof(shadow_t));
        tl_epoch = 1;
    }
    b.epoch = tl_epoch;
}

// The barrier completes when every thread of the block still running has arrived.
static void barrier_check(eblock &b) {
    if (b.at_barrier == 0 || b.at_barrier < b.live) return;
    for (int i = 0; i < b.n; i++) {
        ethread &t = L->threads[(size_t)(b.first + i)];
        if (t.st == T_BARRIER) t.st = T_READY;
    }
    b.at_barrier = 0;
    block_new_epoch(b);
}

static void grid_check() {
    if (L->at_grid == 0 || L->at_grid < L->live) return;
    for (ethread &t : L->threads)
        if (t.st == T_GRID) t.st = T_READY;
    L->at_grid = 0;
    for (eblock &b : L->blocks) block_new_epoch(b);
}

void syncthreads() {
    if (!cur) return;
    cur->st = T_BARRIER;
    cur_b->at_barrier++;
    barrier_check(*cur_b);
    if (cur->st == T_BARRIER) yield();
}

void grid_sync() {
    if (!cur) return;
    if (!L->coop) {
        fault(who(cur) + " calls this_grid().sync() outside a cooperative launch");
        cur->st = T_GRID; // never released: the scheduler stops the launch
        yield();
        return;
    }
    cur->st = T_GRID;
    L->at_grid++;
    grid_check();
    if (cur->st == T_GRID) yield();
}

static int src_lane(int lane, int mode, int arg, int width) {
    const int base = lane & ~(width - 1);
    switch (mode) {
    case SHFL_IDX: return base + (arg & (width - 1));
    case SHFL_UP: return lane - arg < base ? lane : lane - arg;
    case SHFL_DOWN: return lane + arg >= base + width ? lane : lane + arg;
    default: {
        const int s = lane ^ arg;
        return s >= base + width ? lane : s;
    }
    }
}

// All lanes of the mask have arrived: each takes its source lane's value.
static void shfl_complete(eblock &b, int warp, unsigned mask) {
    ethread *w = &L->threads[(size_t)(b.first + warp * 32)];
    for (int l = 0; l < 32; l++) {
        if (!(mask >> l & 1u)) continue;
        ethread &t = w[l];
        if (t.mask != mask) {
            fault(who(&t) + ": the lanes of a shuffle name different masks");
            continue;
        }
        const int s = src_lane(l, t.mode, t.arg, t.width);
        if (!(mask >> s & 1u)) {
            char m[128];
            snprintf(m, sizeof m, ": a shuffle reads lane %d, outside its mask 0x%08x (undefined on a GPU)", s, mask);
            fault(who(&t) + m);
            t.res = t.val;
        } else {
            t.res = w[s].val;
        }
        if (&t != cur) t.st = T_READY;
    }
    b.warp_arrived[warp] -= __builtin_popcount(mask);
}

uint64_t shfl(unsigned mask, uint64_t v, shfl_mode mode, int arg, int width) {
    if (!cur) return v;
    eblock &b = *cur_b;
    const int lane = cur->lin & 31, warp = cur->lin >> 5;
    const int lanes = b.n - warp * 32 < 32 ? b.n - warp * 32 : 32;
    if (width < 1 || width > 32 || (width & (width - 1))) {
        fault(who(cur) + ": shuffle width is not a power of two up to 32");
        return v;
    }
    if (!(mask >> lane & 1u)) {
        fault(who(cur) + ": a shuffle whose mask does not name the calling lane");
        return v;
    }
    if (lanes < 32 && (mask >> lanes)) {
        char m[128];
        snprintf(m, sizeof m, ": shuffle mask 0x%08x names lanes past this partial warp of %d", mask, lanes);
        fault(who(cur) + m);
        return v;
    }
    cur->mask = mask;
    cur->val = v;
    cur->mode = mode;
    cur->arg = arg;
    cur->width = width;
    cur->st = T_SHFL;
    if (++b.warp_arrived[warp] == __builtin_popcount(mask)) {
        shfl_complete(b, warp, mask);
        cur->st = T_READY;
    } else {
        yield();
    }
    return cur->res;
}

void *shared_static(const void *key, size_t size, size_t align) {
    if (!cur) return NULL;
    eblock &b = *cur_b;
    for (int i = 0; i < b.nkeys; i++)
        if (b.keys[i] == key) return b.arena + b.key_off[i];
    size_t off = (b.static_used + align - 1) / align * align;
    if (b.nkeys == 16 || off + size > kStaticMax) {
        fault("more than 48 KiB (or 16 arrays) of static shared memory");
        off = 0;
    } else {
        b.keys[b.nkeys] = key;
        b.key_off[b.nkeys++] = off;
        b.static_used = off + size;
        memset(b.arena + off, 0xff, size); // uninitialised: NaN for floats
    }
    return b.arena + off;
}

void *shared_dynamic() { return cur ? cur_b->arena + kStaticMax : NULL; }

// Runs the blocks [b0, b1) together until each thread ends (or the launch deadlocks).
static void run_blocks(size_t b0, size_t b1) {
    const size_t t0 = (size_t)L->blocks[b0].first;
    const size_t t1 = b1 < L->blocks.size() ? (size_t)L->blocks[b1].first : L->threads.size();
    size_t done = 0;
    while (done < t1 - t0) {
        bool progress = false;
        for (size_t i = t0; i < t1; i++) {
            ethread &t = L->threads[i];
            if (t.st != T_NEW && t.st != T_READY) continue;
            progress = true;
            eblock &b = L->blocks[(size_t)t.block];
            if (!t.f) {
                t.f = fiber_get();
                if (!t.f) {
                    fault("out of memory for fiber stacks");
                    return;
                }
                t.f->thr = &t;
            }
            t.st = T_READY;
            t_thread = t.idx;
            t_block = b.idx;
            cur = &t;
            cur_b = &b;
            tl_arena = (uintptr_t)b.arena;
            tl_arena_size = b.arena_size;
            switch_in(t.f);
            cur = NULL;
            cur_b = NULL;
            if (t.st == T_DONE) {
                fiber_put(t.f);
                t.f = NULL;
                done++;
                b.live--;
                L->live--;
                barrier_check(b);
                grid_check();
            }
        }
        if (!progress) {
            std::string m = "deadlock: threads wait at";
            int kinds[6] = {0};
            for (size_t i = t0; i < t1; i++) kinds[L->threads[i].st]++;
            char s[160];
            snprintf(s, sizeof s, " a barrier (%d), a shuffle (%d), a grid sync (%d) that cannot complete",
                     kinds[T_BARRIER], kinds[T_SHFL], kinds[T_GRID]);
            fault(m + s);
            for (size_t i = t0; i < t1; i++) { // abandon the blocked fibers' stacks
                ethread &t = L->threads[i];
                if (t.f) {
                    t.f->fresh = true;
                    fiber_put(t.f);
                    t.f = NULL;
                }
            }
            return;
        }
    }
}

// ---- function attributes and occupancy -----------------------------------------------------------

struct func_info {
    int max_dyn;
    size_t static_seen;
};
static std::map<const void *, func_info> g_funcs;

static size_t static_smem_of(const void *fn) {
    auto it = g_funcs.find(fn);
    if (it != g_funcs.end() && it->second.static_seen) return it->second.static_seen;
    return g_dev.func_static_smem;
}

static int occupancy(const void *fn, int threads, size_t dyn) {
    if (threads <= 0) return 0;
    const int warps = (threads + 31) / 32 * 32;
    int n = g_dev.max_threads_per_sm / warps;
    if (g_dev.max_blocks_per_sm < n) n = g_dev.max_blocks_per_sm;
    const long regs = (long)g_dev.regs_per_thread * warps;
    if (regs > 0 && g_dev.regs_per_sm / regs < n) n = (int)(g_dev.regs_per_sm / regs);
    const size_t smem = static_smem_of(fn) + dyn + 1024; // 1 KiB per block reserved
    if (smem > 0 && (int)(g_dev.smem_per_sm / smem) < n) n = (int)(g_dev.smem_per_sm / smem);
    return n < 0 ? 0 : n;
}

// ---- statistics and the log ------------------------------------------------------------------------

struct name_count {
    const char *name;
    uint64_t n;
};
static std::vector<name_count> g_names; // launches per kernel name since the last flush
static uint64_t g_unflushed;

static void count_launch(const char *name) {
    for (name_count &c : g_names)
        if (!strcmp(c.name, name)) {
            c.n++;
            return;
        }
    g_names.push_back(name_count{name, 1});
}

static void log_flush() {
    const char *path = getenv("KILN_EMU_LOG");
    if (!path || !*path || !g_unflushed) {
        g_unflushed = 0;
        return;
    }
    std::string out;
    for (name_count &c : g_names) {
        char line[256];
        snprintf(line, sizeof line, "kernel %llu %s\n", (unsigned long long)c.n, c.name);
        out += line;
    }
    g_names.clear();
    g_unflushed = 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t w = write(fd, out.data(), out.size());
    (void)w;
    close(fd);
}

// ---- launch --------------------------------------------------------------------------------------

static cudaError_t check_config(const void *fn, dim3 g, dim3 b, size_t dyn, size_t *arena) {
    const uint64_t threads = (uint64_t)b.x * b.y * b.z;
    if (!threads || threads > 1024 || b.z > 64 || !g.x || !g.y || !g.z || g.y > 65535 || g.z > 65535 ||
        g.x > 0x7fffffffu) {
        tl_err_text = "invalid launch configuration";
        return cudaErrorInvalidConfiguration;
    }
    auto it = g_funcs.find(fn);
    const size_t allowed = dyn > g_dev.smem_per_block && it != g_funcs.end() && it->second.max_dyn > 0
                               ? (size_t)it->second.max_dyn
                               : g_dev.smem_per_block;
    if (dyn > allowed || dyn > g_dev.smem_per_block_optin) {
        char m[160];
        snprintf(m, sizeof m, "launch asks for %zu bytes of dynamic shared memory, more than the kernel's limit %zu",
                 dyn, allowed);
        tl_err_text = m;
        return cudaErrorInvalidValue;
    }
    *arena = kStaticMax + (dyn + 15) / 16 * 16;
    return cudaSuccess;
}

static void prepare_block(size_t slot, eblock &b, size_t arena_size) {
    b.live = b.n;
    b.at_barrier = 0;
    memset(b.warp_arrived, 0, sizeof b.warp_arrived);
    b.static_used = 0;
    b.nkeys = 0;
    if (tl_slots.size() <= slot) tl_slots.resize(slot + 1, slot_mem{NULL, 0, NULL});
    slot_mem &m = tl_slots[slot];
    if (m.size < arena_size) {
        free(m.arena);
        free(m.sh);
        m = slot_mem{(char *)malloc(arena_size), arena_size, (shadow_t *)calloc(arena_size / 2, sizeof(shadow_t))};
    }
    b.arena = m.arena;
    b.sh = m.sh;
    b.arena_size = arena_size;
    if (L->dyn) memset(b.arena + kStaticMax, 0xff, L->dyn); // uninitialised: NaN for floats
    block_new_epoch(b);
}

static void set_threads(size_t bi, dim3 grid, dim3 block, int *first) {
    eblock &b = L->blocks[bi];
    const unsigned bx = (unsigned)(bi % grid.x), by = (unsigned)(bi / grid.x % grid.y),
                   bz = (unsigned)(bi / ((size_t)grid.x * grid.y));
    b.idx = uint3{bx, by, bz};
    b.first = *first;
    b.n = (int)(block.x * block.y * block.z);
    for (int i = 0; i < b.n; i++) {
        ethread &t = L->threads[(size_t)(*first + i)];
        t = ethread();
        t.idx = uint3{(unsigned)i % block.x, (unsigned)i / block.x % block.y, (unsigned)i / (block.x * block.y)};
        t.block = (int)bi;
        t.lin = i;
        t.st = T_NEW;
    }
    *first += b.n;
}

cudaError_t launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t dyn, cudaStream_t,
                   bool coop, void (*body)(void *), void *ctx) {
    if (L) return fail(cudaErrorNotSupported); // no launches from inside a kernel
    size_t arena = 0;
    cudaError_t e = check_config(fn, grid, block, dyn, &arena);
    if (e != cudaSuccess) return fail(e);
    const size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    const int per_block = (int)(block.x * block.y * block.z);
    if (coop) {
        if (!g_dev.coop_launch) {
            g_stats.coop_refused++;
            return fail(cudaErrorNotSupported);
        }
        const size_t most = (size_t)occupancy(fn, per_block, dyn) * (size_t)g_dev.sm_count;
        if (nblocks > most || (g_dev.coop_max_blocks > 0 && nblocks > (size_t)g_dev.coop_max_blocks)) {
            const size_t cap = g_dev.coop_max_blocks > 0 && (size_t)g_dev.coop_max_blocks < most
                                   ? (size_t)g_dev.coop_max_blocks : most;
            char m[160];
            snprintf(m, sizeof m, "cooperative launch of %zu blocks: at most %zu can be resident on the "
                     "emulated device", nblocks, cap);
            tl_err_text = m;
            g_stats.coop_refused++;
            return fail(cudaErrorCooperativeLaunchTooLarge);
        }
    }
    launch_t l;
    l.name = name;
    l.fn = fn;
    l.body = body;
    l.ctx = ctx;
    l.coop = coop;
    l.failed = l.raced = l.bad = false;
    l.grid = grid;
    l.block = block;
    l.dyn = dyn;
    const size_t resident = coop ? nblocks : 1;
    l.blocks.resize(coop ? nblocks : 1);
    for (eblock &b : l.blocks) b = eblock();
    l.threads.resize(resident * (size_t)per_block);
    l.at_grid = 0;
    L = &l;
    t_block_dim = block;
    t_grid_dim = grid;
    if (coop) {
        int first = 0;
        for (size_t bi = 0; bi < nblocks; bi++) set_threads(bi, grid, block, &first);
        for (size_t bi = 0; bi < nblocks; bi++) prepare_block(bi, l.blocks[bi], arena);
        l.live = (int)l.threads.size();
        run_blocks(0, nblocks);
    } else {
        for (size_t bi = 0; bi < nblocks && !l.failed; bi++) {
            int first = 0;
            set_threads(0, grid, block, &first);
            const unsigned bx = (unsigned)(bi % grid.x), by = (unsigned)(bi / grid.x % grid.y),
                           bz = (unsigned)(bi / ((size_t)grid.x * grid.y));
            l.blocks[0].idx = uint3{bx, by, bz};
            prepare_block(0, l.blocks[0], arena);
            l.live = per_block;
            run_blocks(0, 1);
        }
    }
    size_t used = 0;
    for (eblock &b : l.blocks) used = b.static_used > used ? b.static_used : used;
    L = NULL;
    if (coop) {
        fibers_trim();
        for (size_t i = 96; i < tl_slots.size(); i++) {
            free(tl_slots[i].arena);
            free(tl_slots[i].sh);
        }
        if (tl_slots.size() > 96) tl_slots.resize(96);
    }
    std::lock_guard<std::mutex> g(g_lock);
    func_info &fi = g_funcs[fn];
    if (used > fi.static_seen) fi.static_seen = used;
    g_stats.launches++;
    g_stats.threads += (uint64_t)nblocks * (uint64_t)per_block;
    count_launch(name);
    g_unflushed++;
    if (l.failed) {
        g_stats.faults++;
        g_report = l.report;
        tl_err_text = l.report;
        return fail(l.bad ? cudaErrorIllegalAddress : cudaErrorLaunchFailure);
    }
    return cudaSuccess;
}

// ---- the checks on every load and store of the kernel files ------------------------------------------

static void race(const ethread *t, const char *what, uint16_t other, size_t off, size_t n) {
    L->raced = true;
    g_stats.races++;
    if (L->failed) return;
    const eblock &b = L->blocks[(size_t)t->block];
    char m[256];
    if (other == kMany)
        snprintf(m, sizeof m, "shared-memory race: %s %s %zu bytes at shared offset %zu, which other "
                 "threads read since the last barrier", who(t).c_str(), what, n, off);
    else
        snprintf(m, sizeof m, "shared-memory race: %s %s %zu bytes at shared offset %zu, which thread "
                 "(%u,%u,%u) %s since the last barrier", who(t).c_str(), what, n, off,
                 L->threads[(size_t)(b.first + other)].idx.x, L->threads[(size_t)(b.first + other)].idx.y,
                 L->threads[(size_t)(b.first + other)].idx.z, what[0] == 'r' ? "wrote" : "accessed");
    fault(m);
}

static void shared_access(uintptr_t off, size_t n, bool write) {
    eblock &b = *cur_b;
    if (!b.sh) return;
    const uint16_t tid = (uint16_t)cur->lin;
    const uint32_t ep = b.epoch;
    for (uintptr_t g = off / 2; g <= (off + n - 1) / 2 && g < b.arena_size / 2; g++) {
        shadow_t &s = b.sh[g];
        if (s.w_ep == ep && s.w_tid != tid) {
            race(cur, write ? "writes" : "reads", s.w_tid, (size_t)off, n);
            return;
        }
        if (write) {
            if (s.r_ep == ep && s.r_tid != tid) {
                race(cur, "writes", s.r_tid, (size_t)off, n);
                return;
            }
            s.w_ep = ep;
            s.w_tid = tid;
        } else if (s.r_ep == ep && s.r_tid != tid) {
            s.r_tid = kMany;
        } else if (s.r_ep != ep) {
            s.r_ep = ep;
            s.r_tid = tid;
        }
    }
}

static thread_local uintptr_t tl_ok_lo, tl_ok_hi; // the last allocation found

static void device_access(uintptr_t a, size_t n, bool write) {
    if (a >= tl_ok_lo && a + n <= tl_ok_hi) return;
    std::lock_guard<std::mutex> g(g_lock);
    char buf[160];
    const char *why = classify(a, n, buf, sizeof buf);
    if (!why) {
        auto it = --g_allocs.upper_bound(a);
        tl_ok_lo = it->first;
        tl_ok_hi = it->first + it->second.size;
        return;
    }
    g_stats.bad_accesses++;
    L->bad = true;
    char m[320];
    snprintf(m, sizeof m, "%s %s %zu bytes at device address 0x%llx: %s", who(cur).c_str(),
             write ? "writes" : "reads", n, (unsigned long long)a, why);
    fault(m);
}

static inline void access(const void *p, size_t n, bool write) {
    if (!cur) return;
    const uintptr_t a = (uintptr_t)p;
    if (a - tl_arena < tl_arena_size) shared_access(a - tl_arena, n, write);
    else if (a - (uintptr_t)g_region < g_region_size) device_access(a, n, write);
}

static void forget_cache() { tl_ok_lo = tl_ok_hi = 0; }

} // namespace kiln_emu

using namespace kiln_emu;

// GCC's -fsanitize=thread instrumentation calls these; the emulator is their only runtime.
#define KILN_EMU_HOOKS(n)                                                                      \
    extern "C" void __tsan_read##n(void *p) { access(p, n, false); }                            \
    extern "C" void __tsan_write##n(void *p) { access(p, n, true); }                            \
    extern "C" void __tsan_unaligned_read##n(void *p) { access(p, n, false); }                  \
    extern "C" void __tsan_unaligned_write##n(void *p) { access(p, n, true); }                  \
    extern "C" void __tsan_volatile_read##n(void *p) { access(p, n, false); }                   \
    extern "C" void __tsan_volatile_write##n(void *p) { access(p, n, true); }
KILN_EMU_HOOKS(1)
KILN_EMU_HOOKS(2)
KILN_EMU_HOOKS(4)
KILN_EMU_HOOKS(8)
KILN_EMU_HOOKS(16)
extern "C" void __tsan_read_range(void *p, unsigned long n) { access(p, n, false); }
extern "C" void __tsan_write_range(void *p, unsigned long n) { access(p, n, true); }
extern "C" void __tsan_init(void) {}
extern "C" void __tsan_func_entry(void *) {}
extern "C" void __tsan_func_exit(void) {}
extern "C" void __tsan_vptr_update(void **, void *) {}
extern "C" void __tsan_vptr_read(void **) {}

// ---- the control API (kiln_cuda_emu.h) ------------------------------------------------------------

extern "C" kiln_emu_device kiln_emu_device_default(void) {
    kiln_emu_device d;
    memset(&d, 0, sizeof d);
    d.sm_count = 12; // 96 blocks of 256 threads resident: every forced cooperative test fits
    d.max_threads_per_sm = 2048;
    d.max_blocks_per_sm = 32;
    d.smem_per_sm = (size_t)4 << 20; // more than a GPU: the forced cooperative rows fit on 8 SMs
    d.smem_per_block = 48 * 1024;
    d.smem_per_block_optin = (size_t)2 << 20;
    d.regs_per_sm = 65536;
    d.regs_per_thread = 32;
    d.func_static_smem = 48 * 1024; // the most a kernel can declare: plans stay within the limits
    d.l2_bytes = (size_t)50 << 20;
    d.total_mem = (size_t)16 << 30;
    d.coop_launch = 1;
    d.coop_max_blocks = 0;
    return d;
}
extern "C" kiln_emu_device kiln_emu_device_get(void) { return g_dev; }
extern "C" void kiln_emu_device_set(const kiln_emu_device *d) {
    std::lock_guard<std::mutex> g(g_lock);
    g_dev = *d;
}
extern "C" kiln_emu_stats kiln_emu_stats_get(void) { return g_stats; }
extern "C" const char *kiln_emu_last_report(void) { return g_report.c_str(); }
extern "C" void kiln_emu_clear_report(void) { g_report.clear(); }
extern "C" void kiln_emu_log(const char *fmt, ...) {
    const char *path = getenv("KILN_EMU_LOG");
    if (!path || !*path) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t w = write(fd, line, strlen(line));
    (void)w;
    close(fd);
}

// ---- the runtime calls ----------------------------------------------------------------------------

cudaError_t cudaGetLastError(void) {
    cudaError_t e = tl_last;
    tl_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return tl_last; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorCooperativeLaunchTooLarge: return "cudaErrorCooperativeLaunchTooLarge";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    if (e != cudaSuccess && !tl_err_text.empty()) return tl_err_text.c_str();
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory (emulated device)";
    case cudaErrorNotSupported: return "operation not supported (emulated device)";
    default: return cudaGetErrorName(e);
    }
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int device) {
    if (device != 0) return fail(cudaErrorInvalidDevice);
    switch (a) {
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)g_dev.smem_per_block; break;
    case cudaDevAttrMultiProcessorCount: *v = g_dev.sm_count; break;
    case cudaDevAttrL2CacheSize: *v = (int)g_dev.l2_bytes; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *v = g_dev.max_threads_per_sm; break;
    case cudaDevAttrCooperativeLaunch: *v = g_dev.coop_launch; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)g_dev.smem_per_block_optin; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = (int)g_dev.smem_per_sm; break;
    case cudaDevAttrMaxRegistersPerMultiprocessor: *v = g_dev.regs_per_sm; break;
    case cudaDevAttrMaxBlocksPerMultiprocessor: *v = g_dev.max_blocks_per_sm; break;
    default: return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaMalloc(void **p, size_t n) {
    std::lock_guard<std::mutex> g(g_lock);
    *p = NULL;
    const size_t size = n ? n : 1, span = (size + 255) / 256 * 256 + kGap;
    if (!region_init() || g_live_bytes + size > g_dev.total_mem || g_region_used + span > g_region_size)
        return fail(cudaErrorMemoryAllocation);
    char *a = g_region + g_region_used;
    g_region_used += span;
    g_allocs[(uintptr_t)a] = alloc_info{size, true};
    g_live_bytes += size;
    memset(a, 0xa5, size); // not zero: a kernel reading what no one wrote sees garbage
    *p = a;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    std::lock_guard<std::mutex> g(g_lock);
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || !it->second.live) return fail(cudaErrorInvalidValue);
    it->second.live = false;
    g_live_bytes -= it->second.size;
    const uintptr_t lo = ((uintptr_t)p + 4095) & ~(uintptr_t)4095, hi = ((uintptr_t)p + it->second.size) & ~(uintptr_t)4095;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    forget_cache();
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t n) {
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    *total = g_dev.total_mem;
    *free_bytes = g_dev.total_mem > g_live_bytes ? g_dev.total_mem - g_live_bytes : 0;
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) {
    cudaError_t e = check_range(dst, n, "cudaMemcpy (destination)");
    if (e == cudaSuccess) e = check_range(src, n, "cudaMemcpy (source)");
    if (e != cudaSuccess) return fail(e);
    if (n) memmove(dst, src, n);
    log_flush();
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t) {
    return cudaMemcpy(dst, src, n, k);
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    cudaError_t e = check_range(p, n, "cudaMemset");
    if (e != cudaSuccess) return fail(e);
    if (n) memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { return cudaMemset(p, v, n); }

struct kiln_emu_stream {
    unsigned flags;
};
struct kiln_emu_event {
    unsigned flags;
    bool recorded;
};

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new kiln_emu_stream{flags};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
    std::lock_guard<std::mutex> g(g_lock);
    log_flush();
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    *e = new kiln_emu_event{flags, false};
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    e->recorded = true; // the work before it is done: every call is synchronous
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t) {
    *ms = 0.0f; // no timing: the emulator shows none
    return cudaSuccess;
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *a, const void *fn) {
    std::lock_guard<std::mutex> g(g_lock);
    memset(a, 0, sizeof *a);
    a->sharedSizeBytes = static_smem_of(fn);
    a->maxThreadsPerBlock = 1024;
    a->numRegs = g_dev.regs_per_thread;
    auto it = g_funcs.find(fn);
    a->maxDynamicSharedSizeBytes = it != g_funcs.end() && it->second.max_dyn ? it->second.max_dyn
                                                                               : (int)g_dev.smem_per_block;
    return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *fn, cudaFuncAttribute a, int v) {
    std::lock_guard<std::mutex> g(g_lock);
    if (a != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaSuccess;
    if (v < 0 || (size_t)v + static_smem_of(fn) > g_dev.smem_per_block_optin) return fail(cudaErrorInvalidValue);
    g_funcs[fn].max_dyn = v;
    return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, const void *fn, int block, size_t dyn) {
    std::lock_guard<std::mutex> g(g_lock);
    *n = occupancy(fn, block, dyn);
    return cudaSuccess;
}

// ---- cuBLAS: SGEMM on the host BLAS ------------------------------------------------------------------

struct kiln_emu_cublas {
    cublasMath_t math;
};
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new kiln_emu_cublas{CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE";
}
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *a, int lda, const float *b, int ldb,
                           const float *beta, float *c, int ldc) {
    // the operands must be device memory the emulator handed out, each whole
    const size_t na = (size_t)lda * (size_t)(ta == CUBLAS_OP_N ? k : m);
    const size_t nb = (size_t)ldb * (size_t)(tb == CUBLAS_OP_N ? n : k);
    if (check_range(a, na * 4, "cublasSgemm (A)") || check_range(b, nb * 4, "cublasSgemm (B)") ||
        check_range(c, (size_t)ldc * (size_t)n * 4, "cublasSgemm (C)"))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (*beta == 0.0f) // cuBLAS does not read C then (a NaN there stays harmless)
        for (int j = 0; j < n; j++) memset(c + (size_t)j * ldc, 0, (size_t)m * sizeof(float));
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, a, lda, b, ldb, *beta, c, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

// ---- cuDNN: none ------------------------------------------------------------------------------------

cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
    *h = NULL;
    return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t) { return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetStream(cudnnHandle_t, cudaStream_t) { return CUDNN_STATUS_NOT_SUPPORTED; }
const char *cudnnGetErrorString(cudnnStatus_t s) {
    return s == CUDNN_STATUS_SUCCESS ? "CUDNN_STATUS_SUCCESS" : "CUDNN_STATUS_NOT_SUPPORTED (no cuDNN in the CUDA emulator)";
}
