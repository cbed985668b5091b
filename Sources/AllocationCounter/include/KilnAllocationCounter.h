#ifndef KILN_ALLOCATION_COUNTER_H
#define KILN_ALLOCATION_COUNTER_H

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made by
/// every thread of the process since it started.
long kiln_allocation_count(void);

/// Heap allocations made by the calling thread since it started.
long kiln_thread_allocation_count(void);

/// Starts counting heap bytes (off by default): every block allocated from now on is added at
/// its usable size, and subtracted when freed.
void kiln_track_bytes(void);

/// Heap bytes allocated since kiln_track_bytes() and not yet freed (blocks from before it that
/// are freed since lower it: it is a lower bound then).
long kiln_live_bytes(void);

/// The largest kiln_live_bytes() since the last kiln_reset_peak_bytes().
long kiln_peak_bytes(void);

/// Sets the peak to the current live bytes.
void kiln_reset_peak_bytes(void);

#endif
