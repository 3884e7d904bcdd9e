/* The nine summary reductions of one tensor, as every native kernel computes
 * them: the summary pass outside the optimizer (summaries.c) and the traced
 * optimizer steps (steps.c) share this file, so where they see the same
 * values they return the same bits.
 *
 *   theta_sq, delta_sq, delta_abs_max, g_dot_delta, g_sq,
 *   previous_dot_delta, previous_sq, v_sq, s_sq
 *
 * (tracer/summaries/__init__.py declares them, in this order: the enum below), with delta = theta_before -
 * theta_after (one float32 subtraction) and g = grad + g_theta * theta_before
 * (g_theta folds weight decay in).
 *
 * How, and why the sums come out the same on every machine and thread count:
 *  - a tensor is cut into blocks of a fixed BLOCK elements, a block into
 *    chunks of CHUNK; within a chunk element j goes to lane j % LANES and
 *    each lane sums its products in float32, in index order (16 terms: a
 *    relative error below 1e-6 at most, below torch's float32 sums);
 *    at the end of each chunk the lanes are added into float64 lanes, at the
 *    end of the block those are added in lane order, and the blocks in block
 *    order. Threads only decide who computes which block.
 *  - every operation is one IEEE rounding: each product is added by fmaf
 *    (one rounding by definition: a hardware FMA where the CPU has one, an
 *    exact software fmaf where not), the build forbids contracting any other
 *    multiply and add (-ffp-contract=off) and allows no reassociation, so
 *    any CPU, vector width and compiler that honours IEEE arithmetic
 *    computes the same bits;
 *  - float32 lanes, not float64: a float32 vector holds twice the lanes
 *    and needs no conversions, and the pass is as much arithmetic as memory.
 * The largest |delta| is exact. A NaN anywhere in delta makes delta_sq NaN,
 * and then delta_abs_max is NaN too (as torch's max propagates it).
 */

#ifndef TRACER_REDUCTIONS_H
#define TRACER_REDUCTIONS_H

#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>

#define LANES 16
#define BLOCK 65536
#define CHUNK 256 /* a multiple of LANES: elements updated, then reduced while in the L1 cache (256 measured fastest of 64-4096) */
#define REDUCTIONS 9

enum { THETA_SQ, DELTA_SQ, DELTA_ABS_MAX, G_DOT_DELTA, G_SQ, PREVIOUS_DOT_DELTA, PREVIOUS_SQ, V_SQ, S_SQ };

/* Which inputs a block reads: compile-time constants at every call site, so
 * each combination gets its own vectorised loop reading only what it needs. */
enum { HAS_GRAD = 1, HAS_V = 2, HAS_S = 4, HAS_PREVIOUS = 8, HAS_G_THETA = 16 };

#define SUMS 8 /* the reductions that are sums: all but DELTA_ABS_MAX */
enum { SUM_THETA, SUM_DELTA, SUM_G_DELTA, SUM_G, SUM_PREVIOUS_DELTA, SUM_PREVIOUS, SUM_V, SUM_S };

/* Per lane: the block's float64 sums and the largest |delta|. */
typedef struct {
    double block[SUMS][LANES];
    float abs_max[LANES];
} lanes_t;

/* n elements of the arrays (a chunk starting at a multiple of LANES from its
 * block's start: element j goes to lane j % LANES) into float32 lanes, which
 * are then added into the block's float64 lanes. A kernel first computes a
 * chunk's theta_before and delta, then calls this while they are in the
 * cache: two simple loops vectorise where one fused loop does not. The
 * chunk's sums are locals, not acc's, so that they stay in registers. Arrays
 * a flag leaves out are not read. */
static inline __attribute__((always_inline)) void accumulate_chunk(
    lanes_t *restrict acc, int flags, int64_t n, const float *restrict theta, const float *restrict delta,
    const float *restrict grad, float g_theta, const float *restrict v, const float *restrict s,
    const float *restrict previous)
{
    float sum[SUMS][LANES] = {{0}};
    float abs_max[LANES];
    for (int k = 0; k < LANES; k++) abs_max[k] = acc->abs_max[k];
#define ELEMENT(j, k)                                                                                       \
    {                                                                                                       \
        const float t = theta[j], d = delta[j];                                                             \
        sum[SUM_THETA][k] = fmaf(t, t, sum[SUM_THETA][k]);                                                  \
        sum[SUM_DELTA][k] = fmaf(d, d, sum[SUM_DELTA][k]);                                                  \
        const float a = fabsf(d);                                                                           \
        abs_max[k] = a > abs_max[k] ? a : abs_max[k];                                                       \
        if (flags & HAS_GRAD) {                                                                             \
            const float g = (flags & HAS_G_THETA) ? grad[j] + g_theta * t : grad[j];                        \
            sum[SUM_G_DELTA][k] = fmaf(g, d, sum[SUM_G_DELTA][k]);                                          \
            sum[SUM_G][k] = fmaf(g, g, sum[SUM_G][k]);                                                      \
        }                                                                                                   \
        if (flags & HAS_PREVIOUS) {                                                                         \
            const float p = previous[j];                                                                    \
            sum[SUM_PREVIOUS_DELTA][k] = fmaf(p, d, sum[SUM_PREVIOUS_DELTA][k]);                            \
            sum[SUM_PREVIOUS][k] = fmaf(p, p, sum[SUM_PREVIOUS][k]);                                        \
        }                                                                                                   \
        if (flags & HAS_V) sum[SUM_V][k] = fmaf(v[j], v[j], sum[SUM_V][k]);                                 \
        if (flags & HAS_S) sum[SUM_S][k] = fmaf(s[j], s[j], sum[SUM_S][k]);                                 \
    }
    int64_t j = 0;
    for (; j <= n - LANES; j += LANES) {
        for (int k = 0; k < LANES; k++) ELEMENT(j + k, k)
    }
    for (int k = 0; j < n; j++, k++) ELEMENT(j, k)
#undef ELEMENT
    for (int r = 0; r < SUMS; r++)
        for (int k = 0; k < LANES; k++) acc->block[r][k] += sum[r][k];
    for (int k = 0; k < LANES; k++) acc->abs_max[k] = abs_max[k];
}

/* A block's lanes added in lane order into its nine partial reductions. */
static inline void finish_block(const lanes_t *acc, double *out)
{
    static const int reduction_of[SUMS] = {THETA_SQ, DELTA_SQ, G_DOT_DELTA, G_SQ, PREVIOUS_DOT_DELTA, PREVIOUS_SQ, V_SQ, S_SQ};
    for (int r = 0; r < SUMS; r++) {
        double total = 0.0;
        for (int k = 0; k < LANES; k++) total += acc->block[r][k];
        out[reduction_of[r]] = total;
    }
    float largest = 0.0f;
    for (int k = 0; k < LANES; k++) largest = acc->abs_max[k] > largest ? acc->abs_max[k] : largest;
    out[DELTA_ABS_MAX] = largest;
}

/* Work on block [begin, end) of item `item`, its partial reductions (if any) into `partial`. */
typedef void (*block_fn)(const void *items, int64_t item, int64_t begin, int64_t end, double *partial);

typedef struct {
    const void *items;
    block_fn fn;
    const int64_t *task_item, *task_begin, *lengths;
    int64_t tasks;
    double *partials;
    int thread, threads;
} work_t;

static void *run_tasks(void *argument)
{
    const work_t *work = argument;
    /* A contiguous share of the blocks per thread: each thread streams through its own stretch of
     * memory (10% faster here than blocks dealt out in turn). Blocks are equal but the last of each
     * tensor, so the shares balance. */
    const int64_t first = work->tasks * work->thread / work->threads, last = work->tasks * (work->thread + 1) / work->threads;
    for (int64_t t = first; t < last; t++) {
        const int64_t item = work->task_item[t], begin = work->task_begin[t];
        const int64_t end = begin + BLOCK < work->lengths[item] ? begin + BLOCK : work->lengths[item];
        work->fn(work->items, item, begin, end, &work->partials[t * REDUCTIONS]);
    }
    return NULL;
}

/* Every thread's share of `base`'s tasks, on up to `threads` threads, the caller's included.
 * Returns 0, or -1 when memory could not be had (before any task ran). */
static int run_threads(work_t base, int threads)
{
#ifdef _OPENMP
    /* Built with OpenMP: the process's OpenMP threads, which in a torch process are torch's own
     * intra-op pool (the library binds to the libgomp torch loaded). Threads of our own compete for
     * the cores with that pool's workers, which spin for a while after each torch kernel: on two
     * cores, right after torch's fused Adam, a second pthread gained nothing (the traced Adam kernel
     * took 10.8-11.8 ms on pthreads, 7.9-8.5 ms on torch's threads). */
#pragma omp parallel num_threads(threads)
    {
        work_t work = base;
        work.thread = omp_get_thread_num();
        work.threads = omp_get_num_threads();
        run_tasks(&work);
    }
    return 0;
#else
    work_t *works = malloc(sizeof(work_t) * threads);
    pthread_t *ids = malloc(sizeof(pthread_t) * threads);
    if (!works || !ids) {
        free(works); free(ids);
        return -1;
    }
    for (int k = 0; k < threads; k++) {
        works[k] = base;
        works[k].thread = k;
        works[k].threads = threads;
    }
    int started = 1;
    while (started < threads && pthread_create(&ids[started], NULL, run_tasks, &works[started]) == 0) started++;
    for (int k = started; k < threads; k++) run_tasks(&works[k]); /* threads that could not start: done here */
    run_tasks(&works[0]);
    for (int k = 1; k < started; k++) pthread_join(ids[k], NULL);
    free(works); free(ids);
    return 0;
#endif
}

/* fn over every block of items[0..count) (of lengths[n] elements) on up to
 * `threads` threads, the caller's included; then, where out is not NULL, the
 * blocks' partial reductions added in block order into out[count][REDUCTIONS].
 * Returns 0, or -1 when memory could not be had (before any block ran). */
static int run_blocked(const void *items, const int64_t *lengths, int64_t count, block_fn fn, double *out, int threads)
{
    int64_t tasks = 0;
    for (int64_t n = 0; n < count; n++) tasks += lengths[n] > 0 ? (lengths[n] + BLOCK - 1) / BLOCK : 1;
    if (threads < 1) threads = 1;
    if (threads > tasks) threads = tasks > 0 ? (int)tasks : 1;
    int64_t *task_item = malloc(sizeof(int64_t) * (tasks * 2 + 1));
    double *partials = malloc(sizeof(double) * (tasks * REDUCTIONS + 1));
    if (!task_item || !partials) {
        free(task_item); free(partials);
        return -1;
    }
    int64_t *task_begin = task_item + tasks;
    for (int64_t n = 0, t = 0; n < count; n++) {
        int64_t begin = 0;
        do { task_item[t] = n; task_begin[t] = begin; t++; begin += BLOCK; } while (begin < lengths[n]);
    }
    if (run_threads((work_t){items, fn, task_item, task_begin, lengths, tasks, partials, 0, 1}, threads) != 0) {
        free(task_item); free(partials);
        return -1;
    }
    if (out) {
        for (int64_t n = 0, first = 0; n < count; n++) {
            double *row = &out[n * REDUCTIONS];
            for (int r = 0; r < REDUCTIONS; r++) row[r] = 0.0;
            for (; first < tasks && task_item[first] == n; first++) {
                const double *p = &partials[first * REDUCTIONS];
                for (int r = 0; r < REDUCTIONS; r++) row[r] = r == DELTA_ABS_MAX ? (p[r] > row[r] ? p[r] : row[r]) : row[r] + p[r];
            }
            if (isnan(row[DELTA_SQ])) row[DELTA_ABS_MAX] = NAN;
        }
    }
    free(task_item); free(partials);
    return 0;
}

/* run_blocked over items of `size` bytes each whose first field is their int64 length. */
static int run_items(const void *items, size_t size, int64_t count, block_fn fn, double *out, int threads)
{
    int64_t *lengths = malloc(sizeof(int64_t) * (count + 1));
    if (!lengths) return -1;
    for (int64_t n = 0; n < count; n++) lengths[n] = *(const int64_t *)((const char *)items + n * size);
    const int status = run_blocked(items, lengths, count, fn, out, threads);
    free(lengths);
    return status;
}

#endif
