/* Compiled kernels for core.units.reduce (see core/units/fused.py): plain C99 + OpenMP, no Python headers, loaded
 * with ctypes. They compute exactly what the torch path computes (tests/core/units/test_fused.py):
 *
 *   nb_scan       one pass over a layer's (n, d) activations, rows split over threads: histogram counts, the
 *                 top-K candidates (a >= the unit's K-th kept value) and the exact reservoir candidates (a > 0 and
 *                 priority <= its bin's limit)
 *   nb_merge_top  candidates into each unit's top-K list, ordered by (value desc, token asc) as order_keys orders
 *                 them, moving the stored contexts of the first Kc ranks along; units split over threads
 *   nb_merge_res  candidates into each (unit, positive bin) reservoir: the S' lowest priorities; units split over
 *                 threads
 *
 * Float arithmetic matches torch's: bin = ceilf(a * scale[u]) with scale a power of two (an exact product), IEEE
 * comparisons; compile without fast-math and with -ffp-contract=off.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static void span(int64_t len, int64_t *lo, int64_t *hi)
{
    int t = 0, T = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    T = omp_get_num_threads();
#endif
    *lo = len * t / T;
    *hi = len * (t + 1) / T;
}

static int thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int nb_scan(const float *acts, int64_t n, int64_t d,           /* (n, d) row-major */
            const int32_t *thash, const int32_t *uhash,         /* (n,), (d,): priority = thash ^ uhash */
            const float *scale, int64_t F,                       /* (d,) F / 2^e per unit; F bins each side */
            int64_t *hist,                                       /* (d, 2F) counts, accumulated */
            const float *top_thr,                                /* (d,) the K-th kept value (-inf: not full) */
            const int32_t *tau,                                  /* (d*F,) each positive bin's reservoir limit */
            int nthreads, int64_t cap, int64_t rcap,             /* candidate capacities per thread */
            int64_t *top_idx, int64_t *top_cnt,                  /* (nthreads*cap,), (nthreads,): flat i*d+u */
            int64_t *res_idx, int32_t *res_prio, int64_t *res_grp, int64_t *res_cnt)
{
    int bad = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|:bad)
    {
        int64_t i0, i1;
        span(n, &i0, &i1);
        int64_t nt = 0, nr = 0, base = (int64_t)thread_id() * cap, rbase = (int64_t)thread_id() * rcap;
        /* this thread's counts as (2F, d): neighbouring units mostly fall in the same few bins near zero, so one
           row's increments land on neighbouring addresses */
        int32_t *loc = calloc((size_t)(2 * F * d), sizeof(int32_t));
        if (loc == NULL) {
            bad |= 2;
            i1 = i0;
        }
        for (int64_t i = i0; i < i1; i++) {
            const float *row = acts + i * d;
            int32_t th = thash[i];
            for (int64_t u = 0; u < d; u++) {
                float a = row[u];
                bad |= (a != a);
                int64_t b = (int64_t)ceilf(a * scale[u]);               /* in [-F+1, F] */
                b = b < -F + 1 ? -F + 1 : (b > F ? F : b);              /* (only NaN falls outside) */
                loc[(b + F - 1) * d + u] += 1;
                if (a >= top_thr[u]) {                                  /* rare once the top-K fills */
                    if (nt < cap) top_idx[base + nt] = i * d + u;
                    nt++;
                }
                int64_t g = u * F + (b > 0 ? b : 1) - 1;                  /* group: unit * F + positive bin */
                int32_t p = th ^ uhash[u];
                if ((a > 0.0f) & (p <= tau[g])) {                       /* no branch on the sign itself */
                    if (nr < rcap) {
                        res_idx[rbase + nr] = i * d + u;
                        res_prio[rbase + nr] = p;
                        res_grp[rbase + nr] = g;
                    }
                    nr++;
                }
            }
        }
        if (loc != NULL) {
            #pragma omp critical
            for (int64_t u = 0; u < d; u++)
                for (int64_t k = 0; k < 2 * F; k++)
                    hist[u * 2 * F + k] += loc[k * d + u];
            free(loc);
        }
        top_cnt[thread_id()] = nt;
        res_cnt[thread_id()] = nr;
    }
    return bad;
}

/* core.units.reduce.order_keys: value bits made monotone, token complemented; larger = ranks first */
static int64_t order_key(float v, int64_t tok)
{
    int32_t bits;
    memcpy(&bits, &v, sizeof bits);
    int64_t b = bits;
    int64_t mono = b < 0 ? -(b & 0x7FFFFFFF) - 1 : b;
    int64_t t = tok < 0 ? 0 : tok;
    return (int64_t)((uint64_t)mono << 32) | (int64_t)(0xFFFFFFFFLL - t);
}

/* this thread's candidates grouped by key (unit or group) in [k0, k1): a counting sort of the positions j < m with
   key_of(j) in range; returns the positions in `out` (caller frees) and the offsets in `start` (k1 - k0 + 1) */
static int64_t *group_by(int64_t m, const int64_t *keys, int64_t div, int64_t k0, int64_t k1, int64_t **start)
{
    int64_t nk = k1 - k0;
    int64_t *st = calloc((size_t)(nk + 1), sizeof(int64_t));
    if (st == NULL) return NULL;
    for (int64_t j = 0; j < m; j++) {
        int64_t k = keys[j] / div;
        if (k >= k0 && k < k1) st[k - k0 + 1]++;
    }
    for (int64_t k = 0; k < nk; k++) st[k + 1] += st[k];
    int64_t *out = malloc((size_t)(st[nk] > 0 ? st[nk] : 1) * sizeof(int64_t));
    int64_t *fill = malloc((size_t)(nk > 0 ? nk : 1) * sizeof(int64_t));
    if (out == NULL || fill == NULL) { free(st); free(out); free(fill); return NULL; }
    memcpy(fill, st, (size_t)nk * sizeof(int64_t));
    for (int64_t j = 0; j < m; j++) {
        int64_t k = keys[j] / div;
        if (k >= k0 && k < k1) out[fill[k - k0]++] = j;
    }
    free(fill);
    *start = st;
    return out;
}

int nb_merge_top(int64_t m, const int64_t *cand, const float *acts, const int64_t *tok, int64_t d,
                 int64_t K, float *top_val, int64_t *top_tok,     /* (K, d) each, sorted by key per unit */
                 int64_t Kc, int64_t W2, float *top_ctx,          /* (Kc, d, W2) contexts of the first Kc ranks */
                 const float *full, const int64_t *ctx_rows,      /* (rows, d), (n, W2): -1 outside the window */
                 int nthreads)
{
    int bad = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|:bad)
    {
        int64_t u0, u1;
        span(d, &u0, &u1);
        /* candidates of this thread's units, by unit: flat index % d is the unit */
        int64_t nk = u1 - u0, *cnt = calloc((size_t)(nk + 1), sizeof(int64_t)), *order = NULL;
        if (cnt != NULL) {
            for (int64_t j = 0; j < m; j++) { int64_t u = cand[j] % d; if (u >= u0 && u < u1) cnt[u - u0 + 1]++; }
            for (int64_t k = 0; k < nk; k++) cnt[k + 1] += cnt[k];
            order = malloc((size_t)(cnt[nk] > 0 ? cnt[nk] : 1) * sizeof(int64_t));
        }
        int64_t *fill = malloc((size_t)(nk > 0 ? nk : 1) * sizeof(int64_t));
        int64_t *nkey = malloc((size_t)(K + (cnt ? cnt[nk] : 0) + 1) * sizeof(int64_t));
        int64_t *nsrc = malloc((size_t)(K + (cnt ? cnt[nk] : 0) + 1) * sizeof(int64_t));
        float *vbuf = malloc((size_t)K * sizeof(float));
        int64_t *tbuf = malloc((size_t)K * sizeof(int64_t)), *sbuf = malloc((size_t)K * sizeof(int64_t));
        float *cbuf = malloc((size_t)((Kc > 0 ? Kc : 1) * (W2 > 0 ? W2 : 1)) * sizeof(float));
        if (!cnt || !order || !fill || !nkey || !nsrc || !vbuf || !tbuf || !sbuf || !cbuf) {
            bad |= 2;
        } else {
            memcpy(fill, cnt, (size_t)nk * sizeof(int64_t));
            for (int64_t j = 0; j < m; j++) { int64_t u = cand[j] % d; if (u >= u0 && u < u1) order[fill[u - u0]++] = j; }
            for (int64_t u = u0; u < u1; u++) {
                int64_t a = cnt[u - u0], b = cnt[u - u0 + 1], nn = 0;
                if (a == b) continue;
                /* the unit's new candidates, sorted by key desc (insertion sort: few per unit) */
                for (int64_t q = a; q < b; q++) {
                    int64_t j = order[q], i = cand[j] / d;
                    int64_t key = order_key(acts[cand[j]], tok[i]);
                    int64_t r = nn++;
                    while (r > 0 && nkey[r - 1] < key) { nkey[r] = nkey[r - 1]; nsrc[r] = nsrc[r - 1]; r--; }
                    nkey[r] = key;
                    nsrc[r] = cand[j];
                }
                /* merge with the kept list (sorted desc; empty slots last) into the first K */
                int64_t io = 0, in = 0;
                for (int64_t r = 0; r < K; r++) {
                    int64_t ot = io < K ? top_tok[io * d + u] : -1;
                    int64_t ok = (io < K && ot >= 0) ? order_key(top_val[io * d + u], ot) : INT64_MIN;
                    if (in < nn && (nkey[in] > ok)) {
                        int64_t c = nsrc[in++], i = c / d;
                        vbuf[r] = acts[c]; tbuf[r] = tok[i]; sbuf[r] = -1 - i;   /* < 0: from the batch, row i */
                    } else {
                        vbuf[r] = top_val[io * d + u]; tbuf[r] = ot; sbuf[r] = io++;  /* >= 0: old rank */
                    }
                }
                /* contexts of the first Kc ranks: old ones move to their new rank, new ones come from the batch;
                   ranks only grow, so an old context comes from a rank >= its new one (read before written) */
                for (int64_t r = 0; r < Kc; r++) {
                    float *dst = cbuf + r * W2;
                    if (sbuf[r] >= 0) {
                        if (sbuf[r] < Kc) memcpy(dst, top_ctx + (sbuf[r] * d + u) * W2, (size_t)W2 * sizeof(float));
                        else for (int64_t w = 0; w < W2; w++) dst[w] = NAN;
                    } else {
                        int64_t i = -1 - sbuf[r];
                        for (int64_t w = 0; w < W2; w++) {
                            int64_t row = ctx_rows == NULL ? -1 : ctx_rows[i * W2 + w];
                            dst[w] = row < 0 ? NAN : full[row * d + u];
                        }
                    }
                }
                for (int64_t r = 0; r < K; r++) { top_val[r * d + u] = vbuf[r]; top_tok[r * d + u] = tbuf[r]; }
                for (int64_t r = 0; r < Kc; r++)
                    memcpy(top_ctx + (r * d + u) * W2, cbuf + r * W2, (size_t)W2 * sizeof(float));
            }
        }
        free(cnt); free(order); free(fill); free(nkey); free(nsrc); free(vbuf); free(tbuf); free(sbuf); free(cbuf);
    }
    return bad;
}

int nb_merge_res(int64_t m, const int64_t *grp, const int32_t *prio, const int32_t *tok, const float *val,
                 int64_t F, int64_t S2, int32_t *res_prio, int32_t *res_tok, float *res_val, /* (d*F, S2) */
                 int64_t d, int nthreads)
{
    int bad = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|:bad)
    {
        int64_t u0, u1, *start = NULL;
        span(d, &u0, &u1);
        /* this thread's candidates by group, so each group's slots are touched once, in memory order */
        int64_t *pos = group_by(m, grp, 1, u0 * F, u1 * F, &start);
        if (pos == NULL) {
            bad |= 2;
        } else {
            for (int64_t g = u0 * F; g < u1 * F; g++) {
                int64_t a = start[g - u0 * F], b = start[g - u0 * F + 1];
                int32_t *rp = res_prio + g * S2, *rt = res_tok + g * S2;
                float *rv = res_val + g * S2;
                for (int64_t q = a; q < b; q++) {
                    int64_t j = pos[q];
                    int32_t p = prio[j];
                    /* empty slots (token -1) come last; priorities within a group are distinct */
                    if (rt[S2 - 1] >= 0 && rp[S2 - 1] <= p) continue;
                    int64_t r = S2 - 1;
                    while (r > 0 && (rt[r - 1] < 0 || rp[r - 1] > p)) {
                        rp[r] = rp[r - 1]; rt[r] = rt[r - 1]; rv[r] = rv[r - 1];
                        r--;
                    }
                    rp[r] = p; rt[r] = tok[j]; rv[r] = val[j];
                }
            }
            free(pos);
            free(start);
        }
    }
    return bad;
}

/* Candidates straight from the activations, for batches with too many to list (a run's first batches): a pass
   over units in blocks of UB (their lists and reservoirs stay in cache while every row streams past), inserting in
   place. do_top: every activation is offered to its unit's top-K (with its context); do_res: every positive one
   to its bin's reservoir. The same insertion rules as nb_merge_top / nb_merge_res, so the same state. Each block
   keeps its top-K lists as contiguous (key, value, token, source) rows and its reservoirs' limits in a small
   array, and writes the lists and the first Kc contexts back at the end. */
#define UB 16
int nb_insert(const float *acts, int64_t n, int64_t d, const int64_t *tok, const int32_t *thash,
              const int32_t *uhash, const float *scale, int64_t F,
              int do_top, int64_t K, float *top_val, int64_t *top_tok, int64_t Kc, int64_t W2, float *top_ctx,
              const float *full, const int64_t *ctx_rows,
              int do_res, int64_t S2, int32_t *res_prio, int32_t *res_tok, float *res_val, int nthreads)
{
    int bad = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|:bad)
    {
        int64_t u0, u1;
        span(d, &u0, &u1);
        int64_t KK = do_top ? K : 1, CC = do_top && Kc > 0 ? Kc : 1, WW = W2 > 0 ? W2 : 1;
        int64_t *key = malloc((size_t)(UB * KK) * sizeof(int64_t)), *src = malloc((size_t)(UB * KK) * sizeof(int64_t));
        int64_t *tk = malloc((size_t)(UB * KK) * sizeof(int64_t));
        float *val = malloc((size_t)(UB * KK) * sizeof(float)), *old = malloc((size_t)(CC * WW) * sizeof(float));
        int32_t *tau = malloc((size_t)(UB * (do_res ? F : 1)) * sizeof(int32_t));
        if (!key || !src || !tk || !val || !old || !tau) { bad |= 2; u1 = u0; }
        for (int64_t ub = u0; ub < u1; ub += UB) {
            int64_t ue = ub + UB < u1 ? ub + UB : u1;
            for (int64_t u = ub; u < ue; u++) {
                for (int64_t r = 0; do_top && r < K; r++) {
                    int64_t j = (u - ub) * K + r, t0 = top_tok[r * d + u];
                    val[j] = top_val[r * d + u];
                    tk[j] = t0;
                    key[j] = t0 < 0 ? INT64_MIN : order_key(val[j], t0);
                    src[j] = r;                                             /* >= 0: its old rank */
                }
                for (int64_t b = 0; do_res && b < F; b++) {
                    int64_t g = u * F + b;
                    tau[(u - ub) * F + b] = res_tok[g * S2 + S2 - 1] < 0 ? INT32_MAX : res_prio[g * S2 + S2 - 1];
                }
            }
            for (int64_t i = 0; i < n; i++) {
                const float *row = acts + i * d;
                for (int64_t u = ub; u < ue; u++) {
                    float a = row[u];
                    if (a != a) { bad |= 1; continue; }
                    int64_t o = (u - ub) * KK;
                    if (do_top && a >= val[o + K - 1]) {                    /* ties go on to the key */
                        int64_t kk = order_key(a, tok[i]);
                        if (kk > key[o + K - 1]) {
                            int64_t r = K - 1;
                            while (r > 0 && key[o + r - 1] < kk) {
                                key[o + r] = key[o + r - 1]; val[o + r] = val[o + r - 1];
                                tk[o + r] = tk[o + r - 1]; src[o + r] = src[o + r - 1];
                                r--;
                            }
                            key[o + r] = kk; val[o + r] = a; tk[o + r] = tok[i]; src[o + r] = -1 - i;
                        }
                    }
                    if (do_res && a > 0.0f) {
                        int64_t b = (int64_t)ceilf(a * scale[u]);
                        b = b > F ? F : b;
                        int32_t p = thash[i] ^ uhash[u];
                        int32_t *lim = tau + (u - ub) * F + b - 1;
                        if (p > *lim) continue;                             /* full, and p ranks below all */
                        int64_t g = u * F + b - 1;
                        int32_t *rp = res_prio + g * S2, *rt = res_tok + g * S2;
                        float *rv = res_val + g * S2;
                        if (rt[S2 - 1] >= 0 && rp[S2 - 1] <= p) continue;
                        int64_t r = S2 - 1;
                        while (r > 0 && (rt[r - 1] < 0 || rp[r - 1] > p)) {
                            rp[r] = rp[r - 1]; rt[r] = rt[r - 1]; rv[r] = rv[r - 1];
                            r--;
                        }
                        rp[r] = p; rt[r] = (int32_t)tok[i]; rv[r] = a;
                        *lim = rt[S2 - 1] < 0 ? INT32_MAX : rp[S2 - 1];
                    }
                }
            }
            for (int64_t u = ub; u < ue && do_top; u++) {
                int64_t o = (u - ub) * K;
                for (int64_t r = 0; r < Kc; r++)                            /* old contexts, before overwriting */
                    memcpy(old + r * W2, top_ctx + (r * d + u) * W2, (size_t)W2 * sizeof(float));
                for (int64_t r = 0; r < K; r++) {
                    top_val[r * d + u] = val[o + r];
                    top_tok[r * d + u] = tk[o + r];
                }
                for (int64_t r = 0; r < Kc; r++) {
                    float *dst = top_ctx + (r * d + u) * W2;
                    int64_t s = src[o + r];
                    for (int64_t w = 0; w < W2; w++) {
                        if (s >= 0) {
                            dst[w] = s < Kc ? old[s * W2 + w] : NAN;
                        } else {
                            int64_t rw = ctx_rows == NULL ? -1 : ctx_rows[(-1 - s) * W2 + w];
                            dst[w] = rw < 0 ? NAN : full[rw * d + u];
                        }
                    }
                }
            }
        }
        free(key); free(src); free(tk); free(val); free(old); free(tau);
    }
    return bad;
}

/* Per-unit max and min of a layer's (n, d) activations, rows split over threads (torch's amax(0)/amin(0) are
   exact too: max and min do not depend on the order). NaN: reported, as in nb_scan. */
int nb_minmax(const float *acts, int64_t n, int64_t d, float *mx, float *mn, int nthreads)
{
    int bad = 0;
    for (int64_t u = 0; u < d; u++) { mx[u] = -INFINITY; mn[u] = INFINITY; }
    #pragma omp parallel num_threads(nthreads) reduction(|:bad)
    {
        int64_t i0, i1;
        span(n, &i0, &i1);
        float *lmx = malloc((size_t)d * sizeof(float)), *lmn = malloc((size_t)d * sizeof(float));
        if (!lmx || !lmn) {
            bad |= 2;
        } else {
            for (int64_t u = 0; u < d; u++) { lmx[u] = -INFINITY; lmn[u] = INFINITY; }
            for (int64_t i = i0; i < i1; i++) {
                const float *row = acts + i * d;
                for (int64_t u = 0; u < d; u++) {
                    float a = row[u];
                    bad |= (a != a);
                    lmx[u] = a > lmx[u] ? a : lmx[u];
                    lmn[u] = a < lmn[u] ? a : lmn[u];
                }
            }
            #pragma omp critical
            for (int64_t u = 0; u < d; u++) {
                mx[u] = lmx[u] > mx[u] ? lmx[u] : mx[u];
                mn[u] = lmn[u] < mn[u] ? lmn[u] : mn[u];
            }
        }
        free(lmx);
        free(lmn);
    }
    return bad;
}
