#ifndef KILN_ALLOCATION_COUNTER_H
#define KILN_ALLOCATION_COUNTER_H

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made by
/// every thread of the process since it started.
long kiln_allocation_count(void);

/// Heap allocations made by the calling thread since it started.
long kiln_thread_allocation_count(void);

#endif
