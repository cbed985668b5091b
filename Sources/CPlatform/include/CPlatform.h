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

/// As `kiln_prefetch_l2`, into every level (`prefetcht0`). On AMD EPYC family 25 model 17 (Zen 4)
/// `prefetcht1` is documented to fill L2 but is at times dropped; where a pass's prefetches must
/// arrive (the shortcut filter gradient's), this one did (`ShortcutKernel.FilterPlan`).
static inline void kiln_prefetch_l1(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 3);
#endif
}

/// 16 floats, as Swift's SIMD16<Float>.
typedef float kiln_float16 __attribute__((ext_vector_type(16)));

/// Stores 16 floats at `address` (64-byte aligned) past the caches (a non-temporal store), where
/// the target has one; an ordinary store elsewhere. Order such stores with `kiln_store_fence`.
static inline void kiln_stream16(float *address, kiln_float16 value) {
    __builtin_nontemporal_store(value, (kiln_float16 *)address);
}

/// 8 floats, as Swift's SIMD8<Float>.
typedef float kiln_float8 __attribute__((ext_vector_type(8)));

/// `kiln_stream16` for 8 floats at `address` (32-byte aligned).
static inline void kiln_stream8(float *address, kiln_float8 value) {
    __builtin_nontemporal_store(value, (kiln_float8 *)address);
}

/// Orders the non-temporal stores before it ahead of every store after it (`sfence` on x86-64).
static inline void kiln_store_fence(void) {
#if defined(__x86_64__)
    __builtin_ia32_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

#endif
