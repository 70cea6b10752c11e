/* Shared by the layout and elementwise kernels: the AVX-512 target attribute and the ISA a request runs at. */
#ifndef FPN_ISA_DISPATCH_H
#define FPN_ISA_DISPATCH_H

#include "ckernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#endif

/* The ISA a kernel runs for a requested fpn_isa value: one the CPU lacks is lowered to fpn_best_isa(). */
static inline int resolve(int isa) { return isa > fpn_best_isa() ? fpn_best_isa() : isa; }

#endif /* FPN_ISA_DISPATCH_H */
