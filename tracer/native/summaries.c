/* The summary reductions of many float32 tensors in one pass over memory,
 * outside the optimizer.
 *
 * For each tensor (an "item") the pass reads theta before the update (the
 * recorder's snapshot), theta after it, the gradient, v, s and the previous
 * delta once, writes delta = theta_before - theta_after over the snapshot,
 * and returns the nine reductions of reductions.h (which says why they are
 * the same on every machine and thread count). delta equals torch's
 * subtraction bit for bit.
 */

#include "reductions.h"

/* The inputs of one tensor; grad, v, s and previous may be NULL (absent). */
typedef struct {
    int64_t length;
    float *snapshot; /* theta before the update in, delta out */
    const float *after, *grad, *v, *s, *previous;
    double g_theta;
} item_t;

static inline __attribute__((always_inline)) void reduce_block(
    const item_t *item, int64_t begin, int64_t end, int flags, double *out)
{
    lanes_t acc = {0}; /* chunk sums are zeroed by accumulate_chunk */
    float theta[CHUNK];
    for (int64_t first = begin; first < end; first += CHUNK) {
        const int64_t n = end - first < CHUNK ? end - first : CHUNK;
        float *delta = item->snapshot + first; /* theta before the update in, delta out */
        const float *after = item->after + first;
        for (int64_t j = 0; j < n; j++) {
            theta[j] = delta[j];
            delta[j] = theta[j] - after[j];
        }
        accumulate_chunk(&acc, flags, n, theta, delta, item->grad ? item->grad + first : 0, (float)item->g_theta,
                         item->v ? item->v + first : 0, item->s ? item->s + first : 0,
                         item->previous ? item->previous + first : 0);
    }
    finish_block(&acc, out);
}

#define CASE(f) case f: reduce_block(item, begin, end, f, partial); break;

static void summary_block(const void *items, int64_t index, int64_t begin, int64_t end, double *partial)
{
    const item_t *item = (const item_t *)items + index;
    int flags = 0;
    if (item->grad) {
        flags |= HAS_GRAD | (item->g_theta != 0.0 ? HAS_G_THETA : 0);
        flags |= (item->v ? HAS_V : 0) | (item->s ? HAS_S : 0) | (item->previous ? HAS_PREVIOUS : 0);
    }
    switch (flags) {
        CASE(0)
        CASE(1) CASE(3) CASE(5) CASE(7) CASE(9) CASE(11) CASE(13) CASE(15)
        CASE(17) CASE(19) CASE(21) CASE(23) CASE(25) CASE(27) CASE(29) CASE(31)
    }
}

/* The reductions of items[0..count) into out[count][REDUCTIONS], on up to
 * `threads` threads. Returns 0, or -1 when memory could not be had (nothing
 * was read or written then). */
int tracer_summaries_f32(const item_t *items, int64_t count, double *out, int threads)
{
    return run_items(items, sizeof(item_t), count, summary_block, out, threads);
}


/* The snapshot of theta before a step: destination = source, float32, for items[0..count), on up to
 * `threads` threads. With streaming stores where the CPU has them (x86's SSE and AVX): the snapshot
 * is read only after the step, so its cache lines need not be fetched before they are overwritten,
 * which a plain store does; a third less memory traffic (benchmarks/bench_recorder.py, case 4, says
 * how much time). Bits are moved, not computed: the copy is exact. Returns 0, or -1 when memory
 * could not be had (nothing was copied then). */
#if defined(__AVX__)
#include <immintrin.h>
#define STREAM_FLOATS 8
#define STREAM(to, from) _mm256_stream_ps((to), _mm256_loadu_ps(from))
#elif defined(__SSE__)
#include <xmmintrin.h>
#define STREAM_FLOATS 4
#define STREAM(to, from) _mm_stream_ps((to), _mm_loadu_ps(from))
#endif

typedef struct {
    int64_t length;
    float *destination;
    const float *source;
} copy_item_t;

static void copy_block(const void *items, int64_t index, int64_t begin, int64_t end, double *partial)
{
    (void)partial;
    const copy_item_t *item = (const copy_item_t *)items + index;
    float *restrict to = item->destination;
    const float *restrict from = item->source;
    int64_t j = begin;
#ifdef STREAM_FLOATS
    /* a streaming store needs an aligned destination: the elements before the first aligned one, plainly */
    for (; j < end && (uintptr_t)(to + j) % (STREAM_FLOATS * sizeof(float)) != 0; j++) to[j] = from[j];
    for (; j + STREAM_FLOATS <= end; j += STREAM_FLOATS) STREAM(to + j, from + j);
    _mm_sfence(); /* streamed stores are weakly ordered: done before the block is */
#endif
    for (; j < end; j++) to[j] = from[j];
}

int tracer_copy_f32(const copy_item_t *items, int64_t count, int threads)
{
    return run_items(items, sizeof(copy_item_t), count, copy_block, NULL, threads);
}
