// PPO clipped surrogate loss on the GPU, forward and d loss / d logp fused. Plain CUDA C++ (see kernels.h).
//
// Pass 1: a grid-stride loop computes each element's gradient and accumulates the three sums (surrogate,
// clipped count, KL terms) in double; warp shuffles and shared memory reduce them per block. With a single
// block (small n) that block writes the results directly; otherwise pass 2 (one block) adds the per-block
// partial sums in a fixed order (reduce.cuh). No atomics: the result is deterministic.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.h"
#include "reduce.cuh"

namespace rlarena {
namespace cuda {
namespace {

using reduce::kMaxBlocks;
using reduce::kThreads;
using Sums = reduce::Sums<3>;  // surrogate, clipped count, KL terms

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }

template <typename T>
__device__ __forceinline__ void write_results(const Sums& s, int64_t n, T* loss, T* clip_fraction, T* approx_kl) {
  const double dn = static_cast<double>(n);
  *loss = static_cast<T>(-s.v[0] / dn);
  *clip_fraction = static_cast<T>(s.v[1] / dn);
  *approx_kl = static_cast<T>(s.v[2] / dn);
}

template <typename T>
__global__ void loss_pass1_kernel(const T* __restrict__ logp, const T* __restrict__ old_logp,
                                  const T* __restrict__ adv, T* __restrict__ grad, int64_t n, T lo, T hi, T clip,
                                  T neg_inv_n, double* __restrict__ partials, T* loss, T* clip_fraction,
                                  T* approx_kl) {
  Sums s = reduce::zero<3>();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T log_ratio = logp[i] - old_logp[i];
    const T ratio = exp_t(log_ratio);
    const T A = adv[i];
    const T s1 = ratio * A;
    const T s2 = ratio < lo ? lo * A : (ratio > hi ? hi * A : s1);  // clamp(ratio, lo, hi) * A
    // min(s1, s2) has the gradient of s1 unless the clipped term is strictly smaller (ratio outside
    // [lo, hi]: gradient 0).
    const bool unclipped = s1 <= s2;
    grad[i] = unclipped ? neg_inv_n * s1 : T(0);
    s.v[0] += static_cast<double>(unclipped ? s1 : s2);
    const T dev = ratio - T(1);
    s.v[1] += fabs(static_cast<double>(dev)) > static_cast<double>(clip) ? 1.0 : 0.0;
    s.v[2] += static_cast<double>(dev - log_ratio);
  }
  s = reduce::block_sum<3>(s);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) {
      write_results<T>(s, n, loss, clip_fraction, approx_kl);
    } else {
      reduce::store_partials<3>(s, partials);
    }
  }
}

template <typename T>
__global__ void loss_pass2_kernel(const double* __restrict__ partials, int nparts, int64_t n, T* loss,
                                  T* clip_fraction, T* approx_kl) {
  const Sums s = reduce::sum_partials<3>(partials, nparts);
  if (threadIdx.x == 0) write_results<T>(s, n, loss, clip_fraction, approx_kl);
}

}  // namespace

int64_t loss_workspace_elems() { return 3 * kMaxBlocks; }

template <typename scalar_t>
cudaError_t clipped_surrogate_loss(const scalar_t* logp, const scalar_t* old_logp, const scalar_t* advantages,
                                   scalar_t* grad_logp, scalar_t* loss, scalar_t* clip_fraction,
                                   scalar_t* approx_kl, int64_t n, double clip_coef, double* workspace,
                                   cudaStream_t stream) {
  const int64_t blocks = reduce::num_blocks(n);
  const double inv_n = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
  loss_pass1_kernel<scalar_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
      logp, old_logp, advantages, grad_logp, n, static_cast<scalar_t>(1.0 - clip_coef),
      static_cast<scalar_t>(1.0 + clip_coef), static_cast<scalar_t>(clip_coef), static_cast<scalar_t>(-inv_n),
      workspace, loss, clip_fraction, approx_kl);
  if (blocks > 1) {
    loss_pass2_kernel<scalar_t><<<1, kThreads, 0, stream>>>(workspace, static_cast<int>(blocks), n, loss,
                                                            clip_fraction, approx_kl);
  }
  return cudaGetLastError();
}

template cudaError_t clipped_surrogate_loss<float>(const float*, const float*, const float*, float*, float*, float*,
                                                   float*, int64_t, double, double*, cudaStream_t);
template cudaError_t clipped_surrogate_loss<double>(const double*, const double*, const double*, double*, double*,
                                                    double*, double*, int64_t, double, double*, cudaStream_t);

}  // namespace cuda
}  // namespace rlarena
