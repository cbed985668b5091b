// Cache prefetch hints for the kernels (Swift has no prefetch of its own). Static inline: the
// Swift compiler imports these through clang and LLVM inlines them into the kernels' loops,
// where each becomes one prefetch instruction (x86-64: prefetcht0; arm64: prfm pldl1keep).
#ifndef KILN_PREFETCH_H
#define KILN_PREFETCH_H

/// Asks for the cache line holding `address` in L1 (read, high temporal locality). A hint:
/// it never faults, so an address past the end of a buffer is harmless.
static inline __attribute__((always_inline)) void kiln_prefetch_l1(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
