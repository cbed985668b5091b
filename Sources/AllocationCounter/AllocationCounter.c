// Counts heap allocations for tests that prove a steady-state step allocates nothing.
//
// Linked only into the RuntimeTests executable, these definitions take precedence over
// glibc's for the whole process (the Swift runtime and Dispatch included) and forward to
// glibc's internal entry points, so nothing else changes. free is not counted.
#include <errno.h>
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

void *malloc(size_t size) { count(); return __libc_malloc(size); }
void *calloc(size_t count_, size_t size) { count(); return __libc_calloc(count_, size); }
void *realloc(void *pointer, size_t size) { count(); return __libc_realloc(pointer, size); }
void free(void *pointer) { __libc_free(pointer); }
void *memalign(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count(); return __libc_memalign(alignment, size); }

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    count();
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}
