/* Adam's, SGD's and RMSprop's updates of many float32 tensors in one pass over memory,
 * and, when traced, the summary reductions of that update in the same pass.
 *
 * Adam, per element, in float32, the operations and order of torch's
 * for-loop Adam (tracer/optim/adam.py says what each line means):
 *
 *   g = sign * grad                                   (sign = -1 to maximize)
 *   theta = theta * decay                             (decay = 1 - lr * wd, decoupled; else 1)
 *   g = g + wd * theta                                (L2 weight decay only)
 *   v = w < 0.5 ? v + w * (g - v) : g - (g - v) * (1 - w)   (torch's lerp, w = 1 - b1)
 *   s = s * b2;  s = s + ((1 - b2) * g) * g
 *   s_max = max(s_max, s)                             (amsgrad: the denominator's s)
 *   denom = sqrt(s) / sqrt(1 - b2^t) + eps
 *   theta = theta + (-lr / (1 - b1^t) * v) / denom
 *
 * SGD (tracer/optim/sgd.py), likewise:
 *
 *   g = sign * grad;  g = g + wd * theta              (L2 weight decay only)
 *   v = g  (its first step)  or  v = v * momentum + (1 - dampening) * g
 *   d = nesterov ? g + momentum * v : v               (d = g without momentum)
 *   theta = theta + (-lr) * d
 *
 * RMSprop (tracer/optim/rmsprop.py), likewise:
 *
 *   g = sign * grad;  g = g + wd * theta              (L2 weight decay only)
 *   s = s * alpha + ((1 - alpha) * g) * g
 *   centered: m = lerp(m, g, 1 - alpha);  avg = sqrt(s + (-m) * m)   else avg = sqrt(s)
 *   avg = avg + eps
 *   momentum: b = b * momentum + g / avg;  theta = theta + (-lr) * b
 *   else:     theta = theta + ((-lr) * g) / avg
 *
 * Every operation is one IEEE rounding (no contraction into FMAs:
 * -ffp-contract=off), so the result is the same on every machine; torch's
 * vectorised kernels may fuse some of these (its lerp does on AVX2), so the
 * two differ by a few ulps (tests/test_native_steps.py measures it).
 *
 * Traced (the item's results is not NULL): also delta = theta_before -
 * theta_after, written to `delta`, and the nine reductions of reductions.h
 * over theta_before, delta, grad (g_theta: the recorder's convention), v, s
 * and the previous delta: the numbers the summary pass outside the optimizer
 * would compute from the same values, bit for bit, without the snapshot
 * before the step and the second pass after it.
 */

#include <string.h>

#include "reductions.h"

/* Every step item's fields for the summaries computed in its pass (tracer/native/__init__.py's _TRACED_FIELDS). */
#define TRACED_FIELDS                                                                                      \
    float *delta;          /* traced: delta out (may be `previous`: overwritten in place); else NULL */     \
    const float *previous; /* traced: the previous delta */                                                \
    double *results;       /* traced: REDUCTIONS doubles out; else NULL */                                 \
    double g_theta;        /* traced: g = grad + g_theta * theta in the reductions */

typedef struct {
    int64_t length;
    float *param, *exp_avg, *exp_avg_sq, *max_exp_avg_sq; /* max_exp_avg_sq: amsgrad only, else NULL */
    const float *grad;
    TRACED_FIELDS
    float sign, decay, weight_decay, lerp_weight, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
} adam_item_t;

/* More flags, beside reductions.h's (8: HAS_PREVIOUS, 16: HAS_G_THETA). */
enum { L2 = 32, AMSGRAD = 64, TRACED = 128, MOMENTUM = 256, CENTERED = 512 };

/* Every variant of a flag set: untraced, and traced with or without g_theta (a traced item always has a
 * previous delta: the recorder's buffer, zeros before the first). Few variants: each is a loop compiled
 * apart, and the build's time grows with their number. */
#define TRACED_CASES(base) CASE(base) CASE((base) | TRACED) CASE((base) | TRACED | HAS_G_THETA)
#define L2_CASES(base) TRACED_CASES(base) TRACED_CASES((base) | L2)

/* The traced part of a chunk: delta and theta before were kept by the update loop in the block's own
 * arrays; delta is stored only once the chunk's previous delta has been read, so the two may be one
 * buffer (the recorder's: overwriting the previous delta in place saves the memory traffic of a
 * fresh destination, which is read into the cache before it is written). moments: which of HAS_V and
 * HAS_S the algorithm has (a compile-time constant, so each variant reads only those). */
#define REDUCE_CHUNK(v, s, moments)                                                                        \
    if (flags & TRACED) {                                                                                   \
        accumulate_chunk(&acc, (flags & HAS_G_THETA) | HAS_GRAD | HAS_PREVIOUS | (moments), n, theta_before, \
                         delta, grad, (float)item->g_theta, v, s, item->previous + first);                  \
        memcpy(item->delta + first, delta, sizeof(float) * n); /* after the previous delta was read */      \
    }

static inline __attribute__((always_inline)) void adam_block(
    const adam_item_t *item, int64_t begin, int64_t end, int flags, double *out)
{
    lanes_t acc = {0}; /* chunk sums are zeroed by accumulate_chunk */
    float theta_before[CHUNK], delta[CHUNK];
    const float sign = item->sign, decay = item->decay, weight_decay = item->weight_decay;
    const float w = item->lerp_weight, one_minus_w = 1.0f - w, beta2 = item->beta2, one_minus_beta2 = item->one_minus_beta2;
    const float bias_correction2_sqrt = item->bias_correction2_sqrt, eps = item->eps, neg_step_size = item->neg_step_size;
    const int small_weight = w < 0.5f;
    for (int64_t first = begin; first < end; first += CHUNK) {
        const int64_t n = end - first < CHUNK ? end - first : CHUNK;
        float *param = item->param + first, *exp_avg = item->exp_avg + first, *exp_avg_sq = item->exp_avg_sq + first;
        float *max_exp_avg_sq = item->max_exp_avg_sq ? item->max_exp_avg_sq + first : 0;
        const float *grad = item->grad + first;
        for (int64_t j = 0; j < n; j++) {
            const float before = param[j];
            float g = sign * grad[j];
            float theta = before * decay;
            if (flags & L2) g = g + weight_decay * theta;
            const float difference = g - exp_avg[j];
            const float v = small_weight ? exp_avg[j] + w * difference : g - difference * one_minus_w;
            const float s = exp_avg_sq[j] * beta2 + (one_minus_beta2 * g) * g;
            float s_denominator = s;
            if (flags & AMSGRAD) {
                const float largest = max_exp_avg_sq[j];
                s_denominator = (largest > s || isnan(largest)) ? largest : s;
                max_exp_avg_sq[j] = s_denominator;
            }
            const float denominator = sqrtf(s_denominator) / bias_correction2_sqrt + eps;
            theta = theta + (neg_step_size * v) / denominator;
            param[j] = theta;
            exp_avg[j] = v;
            exp_avg_sq[j] = s;
            if (flags & TRACED) {
                theta_before[j] = before;
                delta[j] = before - theta;
            }
        }
        REDUCE_CHUNK(exp_avg, exp_avg_sq, HAS_V | HAS_S)
    }
    if (flags & TRACED) finish_block(&acc, out);
}

#define CASE(f) case f: adam_block(item, begin, end, f, partial); break;

static void adam_any_block(const void *items, int64_t index, int64_t begin, int64_t end, double *partial)
{
    const adam_item_t *item = (const adam_item_t *)items + index;
    int flags = (item->weight_decay != 0.0f ? L2 : 0) | (item->max_exp_avg_sq ? AMSGRAD : 0);
    if (item->results) {
        flags |= TRACED | (item->g_theta != 0.0 ? HAS_G_THETA : 0);
    }
    switch (flags) {
        L2_CASES(0) L2_CASES(AMSGRAD)
    }
}

#undef CASE

/* Block functions over items whose first field is the length and whose
 * results pointer is `results`: run them, then copy each traced item's reductions. */
#define RUN_STEP(item_type, block)                                                                          \
    double *out = malloc(sizeof(double) * (count * REDUCTIONS + 1));                                        \
    if (!out) return -1;                                                                                    \
    const int status = run_items(items, sizeof(item_type), count, block, out, threads);                     \
    for (int64_t n = 0; status == 0 && n < count; n++) {                                                     \
        if (items[n].results)                                                                               \
            for (int r = 0; r < REDUCTIONS; r++) items[n].results[r] = out[n * REDUCTIONS + r];             \
    }                                                                                                       \
    free(out);                                                                                              \
    return status;

/* Adam's update of items[0..count), on up to `threads` threads; each traced
 * item's reductions into its `results`. Returns 0, or -1 when memory could
 * not be had (nothing was updated then). */
int tracer_adam_f32(const adam_item_t *items, int64_t count, int threads) { RUN_STEP(adam_item_t, adam_any_block) }

typedef struct {
    int64_t length;
    float *param, *momentum_buffer; /* momentum_buffer: NULL without momentum */
    const float *grad;
    TRACED_FIELDS
    float sign, weight_decay, momentum, one_minus_dampening, neg_lr;
    int32_t first, nesterov; /* the buffer is new (it becomes g); Nesterov's d */
} sgd_item_t;

static inline __attribute__((always_inline)) void sgd_block(
    const sgd_item_t *item, int64_t begin, int64_t end, int flags, double *out)
{
    lanes_t acc = {0};
    float theta_before[CHUNK], delta[CHUNK];
    const float sign = item->sign, weight_decay = item->weight_decay, momentum = item->momentum;
    const float one_minus_dampening = item->one_minus_dampening, neg_lr = item->neg_lr;
    /* run-time choices, not compiled variants: a select per element costs little here */
    const int new_buffer = item->first, nesterov = item->nesterov;
    for (int64_t first = begin; first < end; first += CHUNK) {
        const int64_t n = end - first < CHUNK ? end - first : CHUNK;
        float *param = item->param + first, *buffer = (flags & MOMENTUM) ? item->momentum_buffer + first : 0;
        const float *grad = item->grad + first;
        for (int64_t j = 0; j < n; j++) {
            const float before = param[j];
            float g = sign * grad[j];
            if (flags & L2) g = g + weight_decay * before;
            float d = g;
            if (flags & MOMENTUM) {
                const float v = new_buffer ? g : buffer[j] * momentum + one_minus_dampening * g;
                buffer[j] = v;
                d = nesterov ? g + momentum * v : v;
            }
            const float theta = before + neg_lr * d;
            param[j] = theta;
            if (flags & TRACED) {
                theta_before[j] = before;
                delta[j] = before - theta;
            }
        }
        REDUCE_CHUNK(buffer, (const float *)0, (flags & MOMENTUM) ? HAS_V : 0)
    }
    if (flags & TRACED) finish_block(&acc, out);
}

#define CASE(f) case f: sgd_block(item, begin, end, f, partial); break;

static void sgd_any_block(const void *items, int64_t index, int64_t begin, int64_t end, double *partial)
{
    const sgd_item_t *item = (const sgd_item_t *)items + index;
    int flags = (item->weight_decay != 0.0f ? L2 : 0) | (item->momentum_buffer ? MOMENTUM : 0);
    if (item->results) flags |= TRACED | (item->g_theta != 0.0 ? HAS_G_THETA : 0);
    switch (flags) {
        L2_CASES(0) L2_CASES(MOMENTUM)
    }
}

#undef CASE

/* SGD's update of items[0..count), as tracer_adam_f32. */
int tracer_sgd_f32(const sgd_item_t *items, int64_t count, int threads) { RUN_STEP(sgd_item_t, sgd_any_block) }


typedef struct {
    int64_t length;
    float *param, *square_avg, *grad_avg, *momentum_buffer; /* grad_avg: centered only; momentum_buffer: momentum > 0 */
    const float *grad;
    TRACED_FIELDS
    float sign, weight_decay, alpha, one_minus_alpha, eps, momentum, neg_lr;
} rmsprop_item_t;

static inline __attribute__((always_inline)) void rmsprop_block(
    const rmsprop_item_t *item, int64_t begin, int64_t end, int flags, double *out)
{
    lanes_t acc = {0}; /* chunk sums are zeroed by accumulate_chunk */
    float theta_before[CHUNK], delta[CHUNK];
    const float sign = item->sign, weight_decay = item->weight_decay, alpha = item->alpha;
    const float w = item->one_minus_alpha, one_minus_w = 1.0f - w, eps = item->eps;
    const float momentum = item->momentum, neg_lr = item->neg_lr;
    const int small_weight = w < 0.5f;
    for (int64_t first = begin; first < end; first += CHUNK) {
        const int64_t n = end - first < CHUNK ? end - first : CHUNK;
        float *param = item->param + first, *square_avg = item->square_avg + first;
        float *grad_avg = (flags & CENTERED) ? item->grad_avg + first : 0;
        float *buffer = (flags & MOMENTUM) ? item->momentum_buffer + first : 0;
        const float *grad = item->grad + first;
        for (int64_t j = 0; j < n; j++) {
            const float before = param[j];
            float g = sign * grad[j];
            if (flags & L2) g = g + weight_decay * before;
            const float s = square_avg[j] * alpha + (w * g) * g;
            square_avg[j] = s;
            float avg;
            if (flags & CENTERED) {
                const float difference = g - grad_avg[j];
                const float m = small_weight ? grad_avg[j] + w * difference : g - difference * one_minus_w;
                grad_avg[j] = m;
                avg = sqrtf(s + (-m) * m);
            } else {
                avg = sqrtf(s);
            }
            avg = avg + eps;
            float theta;
            if (flags & MOMENTUM) {
                const float b = buffer[j] * momentum + g / avg;
                buffer[j] = b;
                theta = before + neg_lr * b;
            } else {
                theta = before + (neg_lr * g) / avg;
            }
            param[j] = theta;
            if (flags & TRACED) {
                theta_before[j] = before;
                delta[j] = before - theta;
            }
        }
        REDUCE_CHUNK(buffer, square_avg, ((flags & MOMENTUM) ? HAS_V : 0) | HAS_S)
    }
    if (flags & TRACED) finish_block(&acc, out);
}

#define CASE(f) case f: rmsprop_block(item, begin, end, f, partial); break;

static void rmsprop_any_block(const void *items, int64_t index, int64_t begin, int64_t end, double *partial)
{
    const rmsprop_item_t *item = (const rmsprop_item_t *)items + index;
    int flags = (item->weight_decay != 0.0f ? L2 : 0) | (item->momentum_buffer ? MOMENTUM : 0) | (item->grad_avg ? CENTERED : 0);
    if (item->results) flags |= TRACED | (item->g_theta != 0.0 ? HAS_G_THETA : 0);
    switch (flags) {
        L2_CASES(0) L2_CASES(MOMENTUM) L2_CASES(CENTERED) L2_CASES(CENTERED | MOMENTUM)
    }
}

#undef CASE

/* RMSprop's update of items[0..count), as tracer_adam_f32. */
int tracer_rmsprop_f32(const rmsprop_item_t *items, int64_t count, int threads) { RUN_STEP(rmsprop_item_t, rmsprop_any_block) }


/* The optimizers' `step` counters, +1 each, and their new values into values[0..count): what torch's
 * _foreach_add_(steps, 1) then step.item() per tensor do (one rounding in the counter's own dtype,
 * then exactly as a double), in one call instead of about 1.8 us per tensor. counters[i] is the
 * address of a float32 counter, or of a float64 one where is_double[i]. */
void tracer_count_steps(const uint64_t *counters, const uint8_t *is_double, int64_t count, double *values)
{
    for (int64_t i = 0; i < count; i++) {
        if (is_double[i]) {
            double *counter = (double *)(uintptr_t)counters[i];
            *counter = *counter + 1.0;
            values[i] = *counter;
        } else {
            float *counter = (float *)(uintptr_t)counters[i];
            *counter = *counter + 1.0f;
            values[i] = (double)*counter;
        }
    }
}
