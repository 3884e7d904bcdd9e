/* What the memory traffic alone costs, roughly: plain loops that read and
 * write exactly the arrays of the toolkit's native kernels (tracer/native)
 * with next to no arithmetic, blocked and threaded by the same run_blocked.
 * A reference, not a lower bound: one plain loop over six or seven arrays
 * can be slower than a kernel that works chunk by chunk (measured here on
 * one thread), so compare on the benchmark's two threads and read the ratio
 * of a kernel to its plain loop as "about this much beyond its traffic".
 * Benchmark-only: bench_recorder.py (case 4) compiles and loads it.
 *
 * An item's arrays, by kernel (all float32, `length` elements each):
 *   plain_copy:         a = b                          (the snapshot copy: 1 read, 1 write)
 *   plain_adam:         reads a..d, writes a, b, c     (an Adam step: p, v, s, g)
 *   plain_adam_traced:  reads a..e, writes a, b, c, e  (Adam traced in its pass: + the previous delta, delta written over it)
 *   plain_summaries:    reads a..f, writes a           (the summary pass: snapshot, after, g, v, s, previous)
 * The arithmetic only makes every value read reach a value written, so that
 * no read can be optimised away.
 */

#include "../tracer/native/reductions.h"

typedef struct {
    int64_t length;
    float *a, *b, *c, *d, *e, *f;
} plain_item_t;

#define PLAIN_LOOP(name, body)                                                                    \
    static void name##_block(const void *items, int64_t index, int64_t begin, int64_t end, double *partial) \
    {                                                                                               \
        const plain_item_t *it = (const plain_item_t *)items + index;                               \
        float *restrict a = it->a, *restrict b = it->b, *restrict c = it->c;                        \
        float *restrict d = it->d, *restrict e = it->e, *restrict f = it->f;                        \
        (void)partial; (void)a; (void)b; (void)c; (void)d; (void)e; (void)f;                        \
        for (int64_t j = begin; j < end; j++) { body }                                              \
    }                                                                                               \
    int name(const plain_item_t *items, int64_t count, int threads)                                 \
    {                                                                                               \
        return run_items(items, sizeof(plain_item_t), count, name##_block, NULL, threads);          \
    }

PLAIN_LOOP(plain_copy, a[j] = b[j];)
PLAIN_LOOP(plain_adam, {
    const float g = d[j];
    b[j] += g;
    c[j] += g;
    a[j] += b[j] + c[j];
})
PLAIN_LOOP(plain_adam_traced, {
    const float g = d[j];
    b[j] += g;
    c[j] += g;
    const float before = a[j];
    a[j] = before + b[j] + c[j];
    e[j] = (before - a[j]) + e[j];
})
PLAIN_LOOP(plain_summaries, a[j] = (a[j] - b[j]) + (c[j] + d[j]) + (e[j] + f[j]);)
