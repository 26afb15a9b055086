/* One pass over a layer's activations for core.units.reduce: the exact histogram and the exact candidate lists
 * of the top-K and of the interval reservoirs (see core/units/fused.py). Plain C99 + OpenMP, no Python headers:
 * loaded with ctypes. Threads split the units (columns), so no two threads touch the same histogram row.
 *
 * Float arithmetic matches torch's exactly: bin = ceilf(a * scale[u]) (scale a power of two, so the product is
 * exact) and the comparisons are IEEE; compile without fast-math and with -ffp-contract=off.
 */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int nb_fused(const float *acts, int64_t n, int64_t d,          /* (n, d) row-major */
             const int32_t *thash, const int32_t *uhash,        /* (n,), (d,) priority = thash ^ uhash */
             const float *scale, int64_t F,                      /* (d,) F / 2^e per unit; F bins each side */
             int64_t *hist,                                      /* (d, 2F) counts, accumulated */
             const float *top_thr,                               /* (d,) the K-th kept value (-inf: not full) */
             const int32_t *tau,                                 /* (d*F,) each positive bin's reservoir limit */
             int nthreads, int64_t cap,                          /* candidate capacity per thread */
             int64_t *top_idx, int64_t *top_cnt,                 /* (nthreads*cap,), (nthreads,) flat i*d+u */
             int64_t *res_idx, int32_t *res_prio, int64_t *res_grp, int64_t *res_cnt)
{
    int bad = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|:bad)
    {
        int t = 0, T = 1;
#ifdef _OPENMP
        t = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        int64_t u0 = d * t / T, u1 = d * (t + 1) / T;
        int64_t nt = 0, nr = 0, base = (int64_t)t * cap;
        for (int64_t i = 0; i < n; i++) {
            const float *row = acts + i * d;
            int32_t th = thash[i];
            for (int64_t u = u0; u < u1; u++) {
                float a = row[u];
                if (a != a) { bad |= 1; continue; }
                int64_t b = (int64_t)ceilf(a * scale[u]);           /* in [-F+1, F] */
                hist[u * 2 * F + b + F - 1] += 1;
                if (a >= top_thr[u]) {
                    if (nt < cap) top_idx[base + nt] = i * d + u;
                    nt++;
                }
                if (a > 0.0f) {
                    int64_t g = u * F + b - 1;                        /* group: unit * F + positive bin */
                    int32_t p = th ^ uhash[u];
                    if (p <= tau[g]) {
                        if (nr < cap) { res_idx[base + nr] = i * d + u; res_prio[base + nr] = p; res_grp[base + nr] = g; }
                        nr++;
                    }
                }
            }
        }
        top_cnt[t] = nt;
        res_cnt[t] = nr;
    }
    return bad;
}
