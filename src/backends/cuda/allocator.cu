// cuda/allocator.cu: the CUDA backend's caching allocator, so a steady training loop never calls
// cudaMalloc or cudaFree (both synchronize the device).
//
// Sizes are rounded up to a size class: 512 bytes, then 8 classes per power of two (at most
// 12.5% slack). Each class has a free list; a released block goes back to its class's list and
// the next request of that class takes it. A pointer -> block hash finds a block on release.
// When cudaMalloc fails, every cached free block goes back to the driver and cudaMalloc is tried
// once more. All blocks are used by one stream, so reuse needs no events: whatever the next
// owner queues runs after the previous owner's work.
#include <mutex>
#include <new>

#include "common.cuh"

#define POOL_MIN_BYTES ((size_t)512)
#define POOL_CLASSES 512
#define POOL_HASH 4096 // buckets of the live-block table (chained, so any count fits)

struct pool_block {
    void *ptr;
    size_t bytes; // the class size
    int cls;
    pool_block *next; // in a free list or a hash chain
};

struct kiln_cuda_pool {
    int device;
    mutable std::mutex lock;
    pool_block *free_list[POOL_CLASSES];
    pool_block *live[POOL_HASH];
    size_t bytes_reserved, bytes_in_use;
    uint64_t system_allocs;
};

static int log2_floor(size_t v) { return 63 - __builtin_clzll((unsigned long long)v); }

// The class of a request and the class's size; -1 when the size cannot be represented.
static int size_class(size_t n, size_t *bytes) {
    if (n <= POOL_MIN_BYTES) {
        *bytes = POOL_MIN_BYTES;
        return 0;
    }
    if (n > ((size_t)1 << 62)) return -1;
    int k = log2_floor(n - 1); // 2^k < n <= 2^(k+1), k >= 9
    size_t step = (size_t)1 << (k - 3);
    size_t rounded = (n + step - 1) / step * step; // 2^k + j*step, j in 1..8
    *bytes = rounded;
    return (k - 9) * 8 + (int)((rounded - ((size_t)1 << k)) / step);
}

static size_t hash_ptr(const void *p) { return ((uintptr_t)p >> 9) % POOL_HASH; }

extern "C" kiln_status kiln_cuda_pool_new(int device, kiln_cuda_pool **out) {
    kiln_cuda_pool *p = new (std::nothrow) kiln_cuda_pool();
    if (!p) return kiln_error(KILN_ERR_OOM, "cuda: out of host memory creating the memory pool");
    p->device = device;
    *out = p;
    return KILN_OK;
}

// Every cached free block back to the driver (lock held).
static void release_cached(kiln_cuda_pool *p) {
    for (int c = 0; c < POOL_CLASSES; c++) {
        while (pool_block *b = p->free_list[c]) {
            p->free_list[c] = b->next;
            (void)cudaFree(b->ptr);
            p->bytes_reserved -= b->bytes;
            delete b;
        }
    }
}

extern "C" kiln_status kiln_cuda_pool_alloc(kiln_cuda_pool *p, size_t nbytes, void **out) {
    size_t bytes = 0;
    int cls = size_class(nbytes, &bytes);
    if (cls < 0)
        return kiln_error(KILN_ERR_OOM, "cuda:%d: cannot allocate %zu bytes", p->device, nbytes);
    std::lock_guard<std::mutex> guard(p->lock);
    pool_block *b = p->free_list[cls];
    if (b) {
        p->free_list[cls] = b->next;
    } else {
        b = new (std::nothrow) pool_block();
        if (!b) return kiln_error(KILN_ERR_OOM, "cuda: out of host memory for a pool block");
        cudaError_t e = cudaMalloc(&b->ptr, bytes);
        if (e == cudaErrorMemoryAllocation) { // free the cache and try once more
            (void)cudaGetLastError();
            release_cached(p);
            e = cudaMalloc(&b->ptr, bytes);
        }
        if (e != cudaSuccess) {
            delete b;
            (void)cudaGetLastError();
            kiln_status code = e == cudaErrorMemoryAllocation ? KILN_ERR_OOM : KILN_ERR_DEVICE;
            return kiln_error(code,
                              "cuda:%d: cudaMalloc of %zu bytes failed (%zu reserved, %zu in use): %s",
                              p->device, bytes, p->bytes_reserved, p->bytes_in_use,
                              cudaGetErrorString(e));
        }
        b->bytes = bytes;
        b->cls = cls;
        p->bytes_reserved += bytes;
        p->system_allocs++;
    }
    size_t h = hash_ptr(b->ptr);
    b->next = p->live[h];
    p->live[h] = b;
    p->bytes_in_use += b->bytes;
    *out = b->ptr;
    return KILN_OK;
}

extern "C" void kiln_cuda_pool_release(kiln_cuda_pool *p, void *ptr) {
    if (!ptr) return;
    std::lock_guard<std::mutex> guard(p->lock);
    pool_block **link = &p->live[hash_ptr(ptr)];
    while (*link && (*link)->ptr != ptr) link = &(*link)->next;
    pool_block *b = *link;
    if (!b) return; // not ours: ignore rather than corrupt the lists
    *link = b->next;
    p->bytes_in_use -= b->bytes;
    b->next = p->free_list[b->cls];
    p->free_list[b->cls] = b;
}

extern "C" void kiln_cuda_pool_stats(const kiln_cuda_pool *p, kiln_memory_stats *out) {
    std::lock_guard<std::mutex> guard(p->lock);
    out->bytes_reserved = p->bytes_reserved;
    out->bytes_in_use = p->bytes_in_use;
    out->system_allocs = p->system_allocs;
}

extern "C" void kiln_cuda_pool_free(kiln_cuda_pool *p) {
    if (!p) return;
    {
        std::lock_guard<std::mutex> guard(p->lock);
        for (int h = 0; h < POOL_HASH; h++) { // blocks still live go to the free lists first
            while (pool_block *b = p->live[h]) {
                p->live[h] = b->next;
                p->bytes_in_use -= b->bytes;
                b->next = p->free_list[b->cls];
                p->free_list[b->cls] = b;
            }
        }
        release_cached(p);
    }
    delete p;
}
