// GAE on the CPU: one pass over [T, N], vectorized over the env columns and parallel over column blocks;
// for narrow batches (fewer column blocks than threads) and long T, a blocked scan over time.
//
// The recurrence A_t = delta_t + c_t A_{t+1} (c_t = gamma lam (1 - d_t)) is linear, so a block of rows
// [t0, t1) can be solved without knowing A_{t1}: A_t = L_t + Q_t A_{t1}, with L the block's own result for
// A_{t1} = 0 and Q_t = c_t c_{t+1} ... c_{t1-1}. The scan runs the blocks in parallel (writing L into the
// advantages and Q into the returns buffer), chains the carries A_{t1} from the last block backwards, then
// fixes every row up in a parallel elementwise pass.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../common.h"
#include "simd.h"

namespace rlarena {
namespace cpu {
namespace {

template <typename T>
struct GaeArgs {
  const T* r;
  const T* v;
  const T* d;
  const T* last_value;
  T* adv;
  T* ret;
  int64_t rows;
  int64_t cols;
  T gamma;
  T gl;  // gamma * lam
};

// Columns are processed in tiles so that the rows touched twice (t and t + 1) stay in L1.
constexpr int64_t kTileBytes = 4096;
constexpr int64_t kMinScanRows = 64;

// Rows [t0, t1), backwards, columns [c0, c1). Row t1 is final already (or t1 == T: bootstrap from
// last_value). Writes the final advantages and returns.
template <typename T>
RLARENA_INLINE void gae_final_impl(const GaeArgs<T>* a, int64_t t0, int64_t t1, int64_t c0, int64_t c1) {
  constexpr int64_t tile = kTileBytes / sizeof(T);
  const int64_t N = a->cols;
  const T gamma = a->gamma;
  const T gl = a->gl;
  for (int64_t j0 = c0; j0 < c1; j0 += tile) {
    const int64_t w = std::min(tile, c1 - j0);
    int64_t t = t1 - 1;
    if (t1 == a->rows && t >= t0) {
      const int64_t o = t * N + j0;
      const T* __restrict__ r = a->r + o;
      const T* __restrict__ v = a->v + o;
      const T* __restrict__ d = a->d + o;
      const T* __restrict__ lv = a->last_value + j0;
      T* __restrict__ A = a->adv + o;
      T* __restrict__ R = a->ret + o;
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) {
        const T nd = T(1) - d[j];
        const T delta = r[j] + gamma * nd * lv[j] - v[j];
        A[j] = delta;
        R[j] = delta + v[j];
      }
      --t;
    }
    for (; t >= t0; --t) {
      const int64_t o = t * N + j0;
      const T* __restrict__ r = a->r + o;
      const T* __restrict__ v = a->v + o;
      const T* __restrict__ d = a->d + o;
      const T* __restrict__ vn = a->v + o + N;
      const T* __restrict__ An = a->adv + o + N;
      T* __restrict__ A = a->adv + o;
      T* __restrict__ R = a->ret + o;
#pragma omp simd
      for (int64_t j = 0; j < w; ++j) {
        const T nd = T(1) - d[j];
        const T delta = r[j] + gamma * nd * vn[j] - v[j];
        const T adv = delta + gl * nd * An[j];
        A[j] = adv;
        R[j] = adv + v[j];
      }
    }
  }
}

// One column j, all rows, as a scalar chain: for very narrow batches (N = 1, 2, 3) the row loop above would
// spend more on its per-row setup than on the arithmetic.
template <typename T>
RLARENA_INLINE void gae_column_impl(const GaeArgs<T>* a, int64_t t0, int64_t t1, int64_t j) {
  const int64_t N = a->cols;
  const T gamma = a->gamma;
  const T gl = a->gl;
  const T* __restrict__ r = a->r;
  const T* __restrict__ v = a->v;
  const T* __restrict__ d = a->d;
  T* __restrict__ A = a->adv;
  T* __restrict__ R = a->ret;
  T next_v = t1 == a->rows ? a->last_value[j] : v[t1 * N + j];
  T next_a = t1 == a->rows ? T(0) : A[t1 * N + j];
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t i = t * N + j;
    const T nd = T(1) - d[i];
    const T vt = v[i];
    const T delta = r[i] + gamma * nd * next_v - vt;
    next_a = delta + gl * nd * next_a;
    A[i] = next_a;
    R[i] = next_a + vt;
    next_v = vt;
  }
}

// Scan pass 1 for rows [t0, t1) with t1 < T, all columns: the block's own advantages L (as if A_{t1} = 0)
// into adv, the coefficient products Q into ret.
template <typename T>
RLARENA_INLINE void gae_local_impl(const GaeArgs<T>* a, int64_t t0, int64_t t1) {
  const int64_t N = a->cols;
  const T gamma = a->gamma;
  const T gl = a->gl;
  {
    const int64_t o = (t1 - 1) * N;
    const T* __restrict__ r = a->r + o;
    const T* __restrict__ v = a->v + o;
    const T* __restrict__ d = a->d + o;
    const T* __restrict__ vn = a->v + o + N;
    T* __restrict__ A = a->adv + o;
    T* __restrict__ Q = a->ret + o;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T nd = T(1) - d[j];
      A[j] = r[j] + gamma * nd * vn[j] - v[j];
      Q[j] = gl * nd;
    }
  }
  for (int64_t t = t1 - 2; t >= t0; --t) {
    const int64_t o = t * N;
    const T* __restrict__ r = a->r + o;
    const T* __restrict__ v = a->v + o;
    const T* __restrict__ d = a->d + o;
    const T* __restrict__ vn = a->v + o + N;
    const T* __restrict__ An = a->adv + o + N;
    const T* __restrict__ Qn = a->ret + o + N;
    T* __restrict__ A = a->adv + o;
    T* __restrict__ Q = a->ret + o;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j) {
      const T nd = T(1) - d[j];
      const T c = gl * nd;
      const T delta = r[j] + gamma * nd * vn[j] - v[j];
      A[j] = delta + c * An[j];
      Q[j] = c * Qn[j];
    }
  }
}

// Scan pass 1 for one column j (narrow batches): as gae_local_impl, as a scalar chain.
template <typename T>
RLARENA_INLINE void gae_local_column_impl(const GaeArgs<T>* a, int64_t t0, int64_t t1, int64_t j) {
  const int64_t N = a->cols;
  const T gamma = a->gamma;
  const T gl = a->gl;
  const T* __restrict__ r = a->r;
  const T* __restrict__ v = a->v;
  const T* __restrict__ d = a->d;
  T* __restrict__ A = a->adv;
  T* __restrict__ Q = a->ret;
  T next_v = v[t1 * N + j];
  T next_a = T(0);
  T next_q = T(1);
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t i = t * N + j;
    const T nd = T(1) - d[i];
    const T c = gl * nd;
    const T vt = v[i];
    next_a = r[i] + gamma * nd * next_v - vt + c * next_a;
    next_q = c * next_q;
    A[i] = next_a;
    Q[i] = next_q;
    next_v = vt;
  }
}

// Scan pass 2: rows [t0, t1) of one block, elementwise over the flat range. `carry` holds the block's
// carry row repeated `period / N` times, so the inner loop stays long even for N = 1.
template <typename T>
RLARENA_INLINE void gae_fixup_impl(const GaeArgs<T>* a, const T* carry, int64_t period, int64_t t0, int64_t t1) {
  const int64_t end = t1 * a->cols;
  for (int64_t e0 = t0 * a->cols; e0 < end; e0 += period) {
    const int64_t w = std::min(period, end - e0);
    const T* __restrict__ v = a->v + e0;
    const T* __restrict__ c = carry;
    T* __restrict__ A = a->adv + e0;
    T* __restrict__ R = a->ret + e0;
#pragma omp simd
    for (int64_t i = 0; i < w; ++i) {
      const T adv = A[i] + R[i] * c[i];
      A[i] = adv;
      R[i] = adv + v[i];
    }
  }
}

RLARENA_ISA_DISPATCH(gae_final, gae_final_impl)
RLARENA_ISA_DISPATCH(gae_column, gae_column_impl)
RLARENA_ISA_DISPATCH(gae_local_column, gae_local_column_impl)
RLARENA_ISA_DISPATCH(gae_local, gae_local_impl)
RLARENA_ISA_DISPATCH(gae_fixup, gae_fixup_impl)

constexpr int64_t kNarrow = 4;  // below this many columns, one scalar chain per column

// Rows [t0, t1) of all columns, final values.
template <typename T>
void gae_block_final(const GaeArgs<T>& a, int64_t t0, int64_t t1) {
  if (a.cols < kNarrow) {
    for (int64_t j = 0; j < a.cols; ++j) gae_column<T>(&a, t0, t1, j);
  } else {
    gae_final<T>(&a, t0, t1, int64_t(0), a.cols);
  }
}

template <typename T>
void gae_scan(const GaeArgs<T>& a, int nthreads) {
  const int64_t rows = a.rows;
  const int64_t N = a.cols;
  const int64_t K = std::min<int64_t>(nthreads, rows / kMinScanRows);
  std::vector<int64_t> tb(K + 1);
  for (int64_t k = 0; k <= K; ++k) tb[k] = rows * k / K;
  // Pass 1: the last block is solved outright, the others locally.
  at::parallel_for(0, K, 1, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      if (k == K - 1)
        gae_block_final(a, tb[k], tb[k + 1]);
      else if (N < kNarrow)
        for (int64_t j = 0; j < N; ++j) gae_local_column<T>(&a, tb[k], tb[k + 1], j);
      else
        gae_local<T>(&a, tb[k], tb[k + 1]);
    }
  });
  // Carries: carry[k] = A at row tb[k + 1] (the first row after block k), for k = 0 .. K-2.
  std::vector<T> carry((K - 1) * N);
  std::copy(a.adv + tb[K - 1] * N, a.adv + tb[K - 1] * N + N, carry.begin() + (K - 2) * N);
  for (int64_t k = K - 2; k >= 1; --k) {
    const T* L = a.adv + tb[k] * N;
    const T* Q = a.ret + tb[k] * N;
    const T* cin = carry.data() + k * N;
    T* cout = carry.data() + (k - 1) * N;
    for (int64_t j = 0; j < N; ++j) cout[j] = L[j] + Q[j] * cin[j];
  }
  // Pass 2: fix up rows [0, tb[K-1]) in parallel, elementwise. Each carry row is repeated to >= 256 values.
  const int64_t reps = (256 + N - 1) / N;
  const int64_t period = reps * N;
  std::vector<T> expanded((K - 1) * period);
  for (int64_t k = 0; k < K - 1; ++k)
    for (int64_t i = 0; i < period; ++i) expanded[k * period + i] = carry[k * N + i % N];
  const int64_t fix_rows = tb[K - 1];
  const int64_t grain = std::max<int64_t>(1, config_value(kParallelMin) / N / 4);
  at::parallel_for(0, fix_rows, grain, [&](int64_t b, int64_t e) {
    for (int64_t k = 0; k < K - 1; ++k) {
      const int64_t lo = std::max(b, tb[k]);
      const int64_t hi = std::min(e, tb[k + 1]);
      if (lo < hi) gae_fixup<T>(&a, static_cast<const T*>(expanded.data() + k * period), period, lo, hi);
    }
  });
}

template <typename T>
void gae_dispatch(const GaeArgs<T>& a) {
  const int64_t rows = a.rows;
  const int64_t N = a.cols;
  if (rows == 0 || N == 0) return;
  const int64_t total = rows * N;
  const int nthreads = at::in_parallel_region() ? 1 : at::get_num_threads();
  constexpr int64_t cb = 64 / sizeof(T);  // one cache line of columns per block: no false sharing
  const int64_t nblocks = (N + cb - 1) / cb;
  if (nthreads > 1 && nblocks < nthreads && total >= config_value(kGaeScanMin) && rows >= 2 * kMinScanRows) {
    gae_scan(a, nthreads);
    return;
  }
  if (N < kNarrow) {
    gae_block_final(a, 0, rows);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, config_value(kParallelMin) / (rows * cb));
  at::parallel_for(0, nblocks, grain, [&](int64_t b, int64_t e) {
    gae_final<T>(&a, int64_t(0), rows, b * cb, std::min(e * cb, N));
  });
}

std::tuple<at::Tensor, at::Tensor> gae_cpu(const at::Tensor& rewards, const at::Tensor& values,
                                           const at::Tensor& dones, const at::Tensor& last_value, double gamma,
                                           double lam) {
  const GaeIO io = prepare_gae(rewards, values, dones, last_value, gamma, lam, c10::DeviceType::CPU);
  const at::Tensor &r = io.rewards, &v = io.values, &d = io.dones, &lv = io.last_value;
  const at::Tensor &adv = io.advantages, &ret = io.returns;
  if (r.scalar_type() == at::kFloat) {
    const GaeArgs<float> a{r.data_ptr<float>(), v.data_ptr<float>(), d.data_ptr<float>(),
                           lv.data_ptr<float>(), adv.data_ptr<float>(), ret.data_ptr<float>(),
                           r.size(0), r.size(1), static_cast<float>(gamma), static_cast<float>(gamma * lam)};
    gae_dispatch(a);
  } else {
    const GaeArgs<double> a{r.data_ptr<double>(), v.data_ptr<double>(), d.data_ptr<double>(),
                            lv.data_ptr<double>(), adv.data_ptr<double>(), ret.data_ptr<double>(),
                            r.size(0), r.size(1), gamma, gamma * lam};
    gae_dispatch(a);
  }
  return {adv, ret};
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) { m.impl("gae", &rlarena::cpu::gae_cpu); }
