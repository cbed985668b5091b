#ifndef KILN_CPLATFORM_H
#define KILN_CPLATFORM_H

/// The few operating-system calls Kiln's runtime makes that the Swift C-library overlays do not
/// expose (GNU extensions on Linux), so that the runtime needs no Foundation, and the one
/// compiler builtin Swift has no spelling for.

/// The number of processors in this process's affinity mask, or 0 where it cannot be read.
int kiln_affinity_processor_count(void);

/// Names the calling thread (at most 15 bytes are kept on Linux); does nothing where unsupported.
void kiln_name_current_thread(const char *name);

/// Asks for the cache line at `address` to be brought into the outer caches (L2 on x86-64:
/// `prefetcht1`) for a read soon; a hint only, it never faults. Inlined into Swift callers.
static inline void kiln_prefetch_l2(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 2);
#endif
}

#endif
