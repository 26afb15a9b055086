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

void nb_merge_top(int64_t m, const int64_t *cand, const float *acts, const int64_t *tok, int64_t d,
                  int64_t K, float *top_val, int64_t *top_tok,    /* (K, d) each, sorted by key per unit */
                  int64_t Kc, int64_t W2, float *top_ctx,         /* (Kc, d, W2) contexts of the first Kc ranks */
                  const float *full, const int64_t *ctx_rows,     /* (rows, d), (n, W2): -1 outside the window */
                  int nthreads)
{
    #pragma omp parallel num_threads(nthreads)
    {
        int64_t u0, u1;
        span(d, &u0, &u1);
        for (int64_t j = 0; j < m; j++) {
            int64_t i = cand[j] / d, u = cand[j] % d;
            if (u < u0 || u >= u1) continue;
            float v = acts[cand[j]];
            int64_t key = order_key(v, tok[i]);
            /* the last kept entry: empty slots (token -1) rank below everything */
            int64_t last = top_tok[(K - 1) * d + u] < 0 ? INT64_MIN : order_key(top_val[(K - 1) * d + u],
                                                                               top_tok[(K - 1) * d + u]);
            if (key <= last) continue;
            int64_t r = K - 1;                                          /* the new entry's rank */
            while (r > 0) {
                int64_t pt = top_tok[(r - 1) * d + u];
                int64_t pk = pt < 0 ? INT64_MIN : order_key(top_val[(r - 1) * d + u], pt);
                if (pk >= key) break;
                top_val[r * d + u] = top_val[(r - 1) * d + u];
                top_tok[r * d + u] = pt;
                r--;
            }
            top_val[r * d + u] = v;
            top_tok[r * d + u] = tok[i];
            if (r < Kc) {
                for (int64_t q = Kc - 1; q > r; q--)
                    memcpy(top_ctx + (q * d + u) * W2, top_ctx + ((q - 1) * d + u) * W2, W2 * sizeof(float));
                float *dst = top_ctx + (r * d + u) * W2;
                for (int64_t w = 0; w < W2; w++) {
                    int64_t row = ctx_rows == NULL ? -1 : ctx_rows[i * W2 + w];
                    dst[w] = row < 0 ? NAN : full[row * d + u];
                }
            }
        }
    }
}

void nb_merge_res(int64_t m, const int64_t *grp, const int32_t *prio, const int32_t *tok, const float *val,
                  int64_t F, int64_t S2, int32_t *res_prio, int32_t *res_tok, float *res_val, /* (d*F, S2) */
                  int64_t d, int nthreads)
{
    #pragma omp parallel num_threads(nthreads)
    {
        int64_t u0, u1;
        span(d, &u0, &u1);
        for (int64_t j = 0; j < m; j++) {
            int64_t g = grp[j], u = g / F;
            if (u < u0 || u >= u1) continue;
            int32_t *rp = res_prio + g * S2;
            int32_t *rt = res_tok + g * S2;
            float *rv = res_val + g * S2;
            int32_t p = prio[j];
            /* empty slots (token -1) come last; priorities within a group are distinct */
            if (rt[S2 - 1] >= 0 && rp[S2 - 1] <= p) continue;
            int64_t r = S2 - 1;
            while (r > 0 && (rt[r - 1] < 0 || rp[r - 1] > p)) {
                rp[r] = rp[r - 1];
                rt[r] = rt[r - 1];
                rv[r] = rv[r - 1];
                r--;
            }
            rp[r] = p;
            rt[r] = tok[j];
            rv[r] = val[j];
        }
    }
}
