/* The summary reductions of many float32 tensors in one pass over memory.
 *
 * For each tensor (an "item") the pass reads theta before the update (the
 * recorder's snapshot), theta after it, the gradient, v, s and the previous
 * delta once, writes delta = theta_before - theta_after over the snapshot,
 * and returns the nine REDUCTIONS of tracer/summary_kernels.py:
 *
 *   theta_sq, delta_sq, delta_abs_max, g_dot_delta, g_sq,
 *   previous_dot_delta, previous_sq, v_sq, s_sq
 *
 * with g = grad + g_theta * theta_before (g_theta folds weight decay in).
 *
 * Why the sums come out the same on every machine and thread count:
 *  - every product is formed in double from float32 operands, and a product
 *    of two float32 values is exact in double (24 + 24 bits < 53), so a
 *    fused multiply-add gives the same sum as a multiply and an add;
 *    g = grad + g_theta * theta is the one inexact product, and the build
 *    forbids contracting it (-ffp-contract=off);
 *  - a tensor is cut into blocks of a fixed BLOCK elements; within a block
 *    element i goes to accumulator lane i % LANES, each lane sums in index
 *    order, and the lanes are added 0..LANES-1; the blocks' partial sums are
 *    added in block order. Threads only decide who computes which block.
 * delta is one float32 subtraction and the largest |delta| is exact, so both
 * equal torch's bit for bit. A NaN anywhere in delta makes delta_sq NaN, and
 * then delta_abs_max is NaN too (as torch's max propagates it).
 */

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#define LANES 8
#define BLOCK 65536
#define REDUCTIONS 9

enum { THETA_SQ, DELTA_SQ, DELTA_ABS_MAX, G_DOT_DELTA, G_SQ, PREVIOUS_DOT_DELTA, PREVIOUS_SQ, V_SQ, S_SQ };

/* The inputs of one tensor; grad, v, s and previous may be NULL (absent). */
typedef struct {
    int64_t length;
    float *snapshot; /* theta before the update in, delta out */
    const float *after, *grad, *v, *s, *previous;
    double g_theta;
} item_t;

enum { HAS_GRAD = 1, HAS_V = 2, HAS_S = 4, HAS_PREVIOUS = 8, HAS_G_THETA = 16 };

/* Per accumulator lane, the running sums of one block. */
typedef struct {
    double theta_sq[LANES], delta_sq[LANES], g_dot_delta[LANES], g_sq[LANES];
    double previous_dot_delta[LANES], previous_sq[LANES], v_sq[LANES], s_sq[LANES];
    float abs_max[LANES];
} lanes_t;

/* Element i of an item into lane k: delta written over the snapshot, every product added. */
static inline __attribute__((always_inline)) void accumulate(
    const item_t *item, int64_t i, int k, int flags, lanes_t *acc)
{
    const float theta = item->snapshot[i];
    const float delta = theta - item->after[i];
    item->snapshot[i] = delta;
    const double t = theta, d = delta;
    acc->theta_sq[k] += t * t;
    acc->delta_sq[k] += d * d;
    const float a = fabsf(delta);
    acc->abs_max[k] = a > acc->abs_max[k] ? a : acc->abs_max[k];
    if (flags & HAS_GRAD) {
        const double g = (flags & HAS_G_THETA) ? (double)item->grad[i] + item->g_theta * t : (double)item->grad[i];
        acc->g_dot_delta[k] += g * d;
        acc->g_sq[k] += g * g;
    }
    if (flags & HAS_PREVIOUS) {
        const double p = item->previous[i];
        acc->previous_dot_delta[k] += p * d;
        acc->previous_sq[k] += p * p;
    }
    if (flags & HAS_V) { const double x = item->v[i]; acc->v_sq[k] += x * x; }
    if (flags & HAS_S) { const double x = item->s[i]; acc->s_sq[k] += x * x; }
}

/* One block of one item: its nine partial reductions into out. The flags are
 * compile-time constants at every call site, so each combination gets its own
 * vectorised loop reading only the arrays it needs. */
static inline __attribute__((always_inline)) void reduce_block(
    const item_t *item, int64_t begin, int64_t end, int flags, double *out)
{
    lanes_t acc = {0};
    int64_t i = begin;
    /* whole rows of LANES elements, then the tail: lane = (index - begin) % LANES either way */
    for (; i <= end - LANES; i += LANES) {
        for (int k = 0; k < LANES; k++) accumulate(item, i + k, k, flags, &acc);
    }
    for (int k = 0; i < end; i++, k++) accumulate(item, i, k, flags, &acc);
    for (int r = 0; r < REDUCTIONS; r++) out[r] = 0.0;
    float largest = 0.0f;
    for (int k = 0; k < LANES; k++) {
        out[THETA_SQ] += acc.theta_sq[k];
        out[DELTA_SQ] += acc.delta_sq[k];
        out[G_DOT_DELTA] += acc.g_dot_delta[k];
        out[G_SQ] += acc.g_sq[k];
        out[PREVIOUS_DOT_DELTA] += acc.previous_dot_delta[k];
        out[PREVIOUS_SQ] += acc.previous_sq[k];
        out[V_SQ] += acc.v_sq[k];
        out[S_SQ] += acc.s_sq[k];
        largest = acc.abs_max[k] > largest ? acc.abs_max[k] : largest;
    }
    out[DELTA_ABS_MAX] = largest;
}

#define CASE(f) case f: reduce_block(item, begin, end, f, out); break;

static void reduce_block_any(const item_t *item, int64_t begin, int64_t end, double *out)
{
    int flags = 0;
    if (item->grad) flags |= HAS_GRAD | (item->g_theta != 0.0 ? HAS_G_THETA : 0);
    if (item->grad && item->v) flags |= HAS_V;
    if (item->grad && item->s) flags |= HAS_S;
    if (item->grad && item->previous) flags |= HAS_PREVIOUS;
    switch (flags) {
        CASE(0)
        CASE(1) CASE(3) CASE(5) CASE(7) CASE(9) CASE(11) CASE(13) CASE(15)
        CASE(17) CASE(19) CASE(21) CASE(23) CASE(25) CASE(27) CASE(29) CASE(31)
    }
}

typedef struct {
    const item_t *items;
    const int64_t *task_item, *task_begin;
    int64_t tasks;
    double *partials;
    int thread, threads;
} work_t;

static void *run_tasks(void *argument)
{
    const work_t *work = argument;
    /* interleaved: blocks are equal in size but the last of each tensor, so this balances */
    for (int64_t t = work->thread; t < work->tasks; t += work->threads) {
        const item_t *item = &work->items[work->task_item[t]];
        int64_t end = work->task_begin[t] + BLOCK;
        if (end > item->length) end = item->length;
        reduce_block_any(item, work->task_begin[t], end, &work->partials[t * REDUCTIONS]);
    }
    return NULL;
}

/* The REDUCTIONS of items[0..count) into out[count][REDUCTIONS], on up to
 * `threads` threads (the caller's included). Returns 0, or -1 when memory or
 * a thread could not be had (out is then untouched; nothing was written to
 * any snapshot only if memory failed, so the caller must not retry). */
int tracer_summaries_f32(const item_t *items, int64_t count, double *out, int threads)
{
    int64_t tasks = 0;
    for (int64_t n = 0; n < count; n++) tasks += items[n].length > 0 ? (items[n].length + BLOCK - 1) / BLOCK : 1;
    int64_t *task_item = malloc(sizeof(int64_t) * tasks * 2);
    double *partials = malloc(sizeof(double) * tasks * REDUCTIONS);
    work_t *works = malloc(sizeof(work_t) * (threads > 0 ? threads : 1));
    pthread_t *ids = malloc(sizeof(pthread_t) * (threads > 0 ? threads : 1));
    if (!task_item || !partials || !works || !ids) {
        free(task_item); free(partials); free(works); free(ids);
        return -1;
    }
    int64_t *task_begin = task_item + tasks;
    int64_t t = 0;
    for (int64_t n = 0; n < count; n++) {
        int64_t begin = 0;
        do { task_item[t] = n; task_begin[t] = begin; t++; begin += BLOCK; } while (begin < items[n].length);
    }
    if (threads < 1) threads = 1;
    if (threads > tasks) threads = (int)tasks;
    int started = 1;
    for (int k = 0; k < threads; k++) {
        works[k] = (work_t){items, task_item, task_begin, tasks, partials, k, threads};
    }
    for (int k = 1; k < threads; k++, started++) {
        if (pthread_create(&ids[k], NULL, run_tasks, &works[k]) != 0) break;
    }
    if (started < threads) { /* fewer threads than asked: the caller's thread does the rest */
        for (int k = started; k < threads; k++) run_tasks(&works[k]);
    }
    run_tasks(&works[0]);
    for (int k = 1; k < started; k++) pthread_join(ids[k], NULL);
    for (int64_t n = 0, first = 0; n < count; n++) {
        double *row = &out[n * REDUCTIONS];
        for (int r = 0; r < REDUCTIONS; r++) row[r] = 0.0;
        while (first < tasks && task_item[first] == n) {
            const double *p = &partials[first * REDUCTIONS];
            for (int r = 0; r < REDUCTIONS; r++) {
                if (r == DELTA_ABS_MAX) row[r] = p[r] > row[r] ? p[r] : row[r];
                else row[r] += p[r];
            }
            first++;
        }
        if (isnan(row[DELTA_SQ])) row[DELTA_ABS_MAX] = NAN;
    }
    free(task_item); free(partials); free(works); free(ids);
    return 0;
}
