// Counts heap allocations for the checks that prove a steady-state step allocates nothing
// (RuntimeTests, allocation-check) and tracks heap bytes for the fuzzer (`kiln fuzz`).
//
// Linked into the RuntimeTests, allocation-check and `kiln` executables, these definitions take precedence over
// glibc's for the whole process (the Swift runtime and Dispatch included) and forward to
// glibc's internal entry points, so nothing else changes. free is not counted.
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdatomic.h>
#include "KilnAllocationCounter.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void __libc_free(void *pointer);
extern void *__libc_memalign(size_t alignment, size_t size);

static atomic_long total;
// initial-exec: reading the counter must not itself allocate (no lazy TLS block).
static __thread long perThread __attribute__((tls_model("initial-exec")));

static inline void count(void) {
    atomic_fetch_add_explicit(&total, 1, memory_order_relaxed);
    perThread += 1;
}

long kiln_allocation_count(void) { return atomic_load_explicit(&total, memory_order_relaxed); }
long kiln_thread_allocation_count(void) { return perThread; }

// Byte accounting, off until kiln_track_bytes() (the fuzzer's workers): live heap bytes (usable
// sizes of the blocks allocated since then and not yet freed) and their peak.
static atomic_int tracking;
static atomic_long liveBytes, peakBytes;

static inline void added(void *pointer) {
    if (pointer == NULL || !atomic_load_explicit(&tracking, memory_order_relaxed)) return;
    long live = atomic_fetch_add_explicit(&liveBytes, (long)malloc_usable_size(pointer), memory_order_relaxed)
        + (long)malloc_usable_size(pointer);
    long peak = atomic_load_explicit(&peakBytes, memory_order_relaxed);
    while (live > peak && !atomic_compare_exchange_weak_explicit(&peakBytes, &peak, live, memory_order_relaxed, memory_order_relaxed)) {}
}

static inline void removed(void *pointer) {
    if (pointer == NULL || !atomic_load_explicit(&tracking, memory_order_relaxed)) return;
    atomic_fetch_sub_explicit(&liveBytes, (long)malloc_usable_size(pointer), memory_order_relaxed);
}

void kiln_track_bytes(void) { atomic_store(&tracking, 1); }
long kiln_live_bytes(void) { return atomic_load_explicit(&liveBytes, memory_order_relaxed); }
long kiln_peak_bytes(void) { return atomic_load_explicit(&peakBytes, memory_order_relaxed); }
void kiln_reset_peak_bytes(void) { atomic_store(&peakBytes, atomic_load(&liveBytes)); }

void *malloc(size_t size) { count(); void *p = __libc_malloc(size); added(p); return p; }
void *calloc(size_t count_, size_t size) { count(); void *p = __libc_calloc(count_, size); added(p); return p; }
void *realloc(void *pointer, size_t size) {
    count();
    removed(pointer);
    void *p = __libc_realloc(pointer, size);
    // A failed realloc leaves the old block in place (a zero size frees it).
    if (p == NULL && size != 0) added(pointer); else added(p);
    return p;
}
void free(void *pointer) { removed(pointer); __libc_free(pointer); }
void *memalign(size_t alignment, size_t size) { count(); void *p = __libc_memalign(alignment, size); added(p); return p; }
void *aligned_alloc(size_t alignment, size_t size) { count(); void *p = __libc_memalign(alignment, size); added(p); return p; }

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    count();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    added(pointer);
    *result = pointer;
    return 0;
}
