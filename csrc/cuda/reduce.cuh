// Deterministic block reductions shared by the fused-loss kernels (plain CUDA C++, header-only).
//
// Each block reduces K double sums with warp shuffles and shared memory; a second one-block pass adds the
// per-block partials in a fixed order. No atomics: results do not depend on scheduling.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace rlarena {
namespace cuda {
namespace reduce {

constexpr int kThreads = 256;     // threads per block of every fused-loss kernel
constexpr int kMaxBlocks = 1024;  // pass 2 reduces at most this many partials with one block

template <int K>
struct Sums {
  double v[K];
};

template <int K>
__device__ __forceinline__ Sums<K> zero() {
  Sums<K> s;
#pragma unroll
  for (int k = 0; k < K; ++k) s.v[k] = 0.0;
  return s;
}

template <int K>
__device__ __forceinline__ Sums<K> warp_sum(Sums<K> s) {
  for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
    for (int k = 0; k < K; ++k) s.v[k] += __shfl_down_sync(0xffffffffu, s.v[k], off);
  }
  return s;
}

// Sum over the block; the result is valid in thread 0. blockDim.x must be a multiple of 32 (<= 1024).
template <int K>
__device__ __forceinline__ Sums<K> block_sum(Sums<K> s) {
  __shared__ Sums<K> warps[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  s = warp_sum<K>(s);
  if (lane == 0) warps[warp] = s;
  __syncthreads();
  const int nwarps = blockDim.x >> 5;
  if (warp == 0) {
    s = lane < nwarps ? warps[lane] : zero<K>();
    s = warp_sum<K>(s);
  }
  return s;
}

// Thread 0 of block b stores its block's sums as partials[K * b + k].
template <int K>
__device__ __forceinline__ void store_partials(const Sums<K>& s, double* partials) {
#pragma unroll
  for (int k = 0; k < K; ++k) partials[K * blockIdx.x + k] = s.v[k];
}

// Pass 2 (one block): the sum of `nparts` blocks' partials, valid in thread 0.
template <int K>
__device__ __forceinline__ Sums<K> sum_partials(const double* __restrict__ partials, int nparts) {
  Sums<K> s = zero<K>();
  for (int b = threadIdx.x; b < nparts; b += blockDim.x) {
#pragma unroll
    for (int k = 0; k < K; ++k) s.v[k] += partials[K * b + k];
  }
  return block_sum<K>(s);
}

// Blocks for n elements: one per kThreads elements, at most 4 per SM (each thread then loops) and kMaxBlocks.
inline int64_t num_blocks(int64_t n) {
  static const int max_blocks = [] {
    int device = 0, sms = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0)
      sms = 80;
    return 4 * sms < kMaxBlocks ? 4 * sms : kMaxBlocks;
  }();
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > max_blocks) blocks = max_blocks;
  return blocks < 1 ? 1 : blocks;
}

}  // namespace reduce
}  // namespace cuda
}  // namespace rlarena
