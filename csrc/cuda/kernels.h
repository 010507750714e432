// Plain CUDA C++ kernels of the rlarena ops: raw pointers and a stream, no ATen, so that each .cu compiles
// alone with `nvcc -c`. Bound to torch in bind.cpp (built only when torch has CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace rlarena {
namespace cuda {

// GAE over time-major [T, N] arrays (contiguous). Wide batches run one thread per env column; narrow ones
// a three-kernel scan over time chunks, which needs `gae_workspace_elems(T, N)` elements of scratch of the
// same dtype (0 when no scan is needed; then `workspace` may be null).
int64_t gae_workspace_elems(int64_t T, int64_t N);

template <typename scalar_t>
cudaError_t gae(const scalar_t* rewards, const scalar_t* values, const scalar_t* dones,
                const scalar_t* last_value, scalar_t* advantages, scalar_t* returns, int64_t T, int64_t N,
                double gamma, double lam, scalar_t* workspace, cudaStream_t stream);

// PPO clipped surrogate loss over n elements, forward and d loss / d logp fused; the three statistics are
// written to device scalars. Needs `loss_workspace_elems()` doubles of scratch (per-block partial sums).
int64_t loss_workspace_elems();

template <typename scalar_t>
cudaError_t clipped_surrogate_loss(const scalar_t* logp, const scalar_t* old_logp, const scalar_t* advantages,
                                   scalar_t* grad_logp, scalar_t* loss, scalar_t* clip_fraction,
                                   scalar_t* approx_kl, int64_t n, double clip_coef, double* workspace,
                                   cudaStream_t stream);

// PPO's clipped value loss over n elements, forward and d loss / d value fused; the loss is written to a device
// scalar. Needs `value_loss_workspace_elems()` doubles of scratch. clip_coef may be inf (no clipping).
int64_t value_loss_workspace_elems();

template <typename scalar_t>
cudaError_t clipped_value_loss(const scalar_t* value, const scalar_t* old_value, const scalar_t* returns,
                               scalar_t* grad_value, scalar_t* loss, int64_t n, double clip_coef, double* workspace,
                               cudaStream_t stream);

}  // namespace cuda
}  // namespace rlarena
