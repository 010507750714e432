// PPO's clipped value loss on the GPU, forward and d loss / d value fused. Plain CUDA C++ (see kernels.h).
// With v_c = old + clamp(v - old, -c, c): loss = 0.5 * mean(max((v - R)^2, (v_c - R)^2)); c = inf gives the
// unclipped loss. Same two-pass deterministic reduction as clipped_loss.cu (reduce.cuh), and the same
// per-element math as the CPU kernel (csrc/cpu/value_loss.cpp).
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.h"
#include "reduce.cuh"

namespace rlarena {
namespace cuda {
namespace {

using Sums = reduce::Sums<1>;  // sum of max(u, w)

template <typename T>
__global__ void value_pass1_kernel(const T* __restrict__ value, const T* __restrict__ old_value,
                                   const T* __restrict__ returns, T* __restrict__ grad, int64_t n, T clip, T inv_n,
                                   double* __restrict__ partials, T* loss) {
  Sums s = reduce::zero<1>();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const T v = value[i];
    const T old = old_value[i];
    const T step = v - old;
    const T clamped = step < -clip ? -clip : (step > clip ? clip : step);  // NaN propagates
    const T err = v - returns[i];
    const T err_clipped = (old + clamped) - returns[i];
    const T u = err * err;
    const T w = err_clipped * err_clipped;
    // max(u, w) has the gradient of u unless w is strictly larger; then that of w, whose clamp passes the
    // gradient only inside [-clip, clip] (bounds included, as torch.clamp).
    grad[i] = u >= w ? err * inv_n : ((step < -clip) || (step > clip) ? T(0) : err_clipped * inv_n);
    s.v[0] += static_cast<double>(u >= w ? u : w);
  }
  s = reduce::block_sum<1>(s);
  if (threadIdx.x == 0) {
    if (gridDim.x == 1) {
      *loss = static_cast<T>(0.5 * s.v[0] / static_cast<double>(n));
    } else {
      reduce::store_partials<1>(s, partials);
    }
  }
}

template <typename T>
__global__ void value_pass2_kernel(const double* __restrict__ partials, int nparts, int64_t n, T* loss) {
  const Sums s = reduce::sum_partials<1>(partials, nparts);
  if (threadIdx.x == 0) *loss = static_cast<T>(0.5 * s.v[0] / static_cast<double>(n));
}

}  // namespace

int64_t value_loss_workspace_elems() { return reduce::kMaxBlocks; }

template <typename scalar_t>
cudaError_t clipped_value_loss(const scalar_t* value, const scalar_t* old_value, const scalar_t* returns,
                               scalar_t* grad_value, scalar_t* loss, int64_t n, double clip_coef, double* workspace,
                               cudaStream_t stream) {
  const int64_t blocks = reduce::num_blocks(n);
  const double inv_n = n > 0 ? 1.0 / static_cast<double>(n) : 0.0;
  value_pass1_kernel<scalar_t><<<static_cast<unsigned int>(blocks), reduce::kThreads, 0, stream>>>(
      value, old_value, returns, grad_value, n, static_cast<scalar_t>(clip_coef), static_cast<scalar_t>(inv_n),
      workspace, loss);
  if (blocks > 1) {
    value_pass2_kernel<scalar_t><<<1, reduce::kThreads, 0, stream>>>(workspace, static_cast<int>(blocks), n, loss);
  }
  return cudaGetLastError();
}

template cudaError_t clipped_value_loss<float>(const float*, const float*, const float*, float*, float*, int64_t,
                                               double, double*, cudaStream_t);
template cudaError_t clipped_value_loss<double>(const double*, const double*, const double*, double*, double*,
                                                int64_t, double, double*, cudaStream_t);

}  // namespace cuda
}  // namespace rlarena
