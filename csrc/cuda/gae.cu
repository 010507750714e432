// GAE on the GPU. Plain CUDA C++ (see kernels.h).
//
// Wide batches (N large enough to fill the GPU): one thread per env column walks the rows backwards; the
// threads of a warp read consecutive columns of a row, so every load and store is coalesced.
//
// Narrow batches (N small, T long, e.g. 8192x64): the rows are cut into C chunks of L steps and the linear
// recurrence A_t = delta_t + c_t A_{t+1} is solved as a scan:
//   1. summarize: thread (column j, chunk k) computes the chunk's map A_{t0} = a + p * A_{t1} (a: the
//      chunk's result for A_{t1} = 0, p: the product of the c_t);
//   2. scan: one block per column composes the maps from the last chunk backwards (Hillis-Steele in shared
//      memory) and writes the carry A_{t1} into every chunk;
//   3. finish: thread (j, k) walks its chunk again from its carry and writes advantages and returns.
// Threads are numbered column-fastest, so a warp reads consecutive columns whenever N >= 32.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.h"

namespace rlarena {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kTargetThreads = 32768;  // enough chunk-threads to keep a GPU busy
constexpr int kMaxChunks = 1024;           // one scan block per column: at most 1024 chunks
constexpr int64_t kMinChunkRows = 4;

struct GaePlan {
  int64_t chunks;  // C
  int64_t rows;    // L: rows per chunk (the last chunk may be shorter)
};

GaePlan plan_gae(int64_t T, int64_t N) {
  if (T <= 0 || N <= 0) return {1, T > 0 ? T : 1};
  int64_t C = (kTargetThreads + N - 1) / N;
  const int64_t max_by_rows = (T + kMinChunkRows - 1) / kMinChunkRows;
  if (C > max_by_rows) C = max_by_rows;
  if (C > kMaxChunks) C = kMaxChunks;
  if (C < 1) C = 1;
  const int64_t L = (T + C - 1) / C;
  C = (T + L - 1) / L;
  return {C, L};
}

// Walks rows [t0, t1) of column j backwards from A_{t1} = carry; writes the outputs (if `adv` is set) and
// returns A_{t0} and the product of the coefficients (for the summary pass).
template <typename T>
__device__ __forceinline__ void walk(const T* __restrict__ r, const T* __restrict__ v, const T* __restrict__ d,
                                     const T* __restrict__ last_value, T* __restrict__ adv, T* __restrict__ ret,
                                     int64_t Trows, int64_t N, int64_t j, int64_t t0, int64_t t1, T gamma, T gl,
                                     T carry, T* out_a, T* out_p) {
  T next_v = t1 == Trows ? last_value[j] : v[t1 * N + j];
  T next_a = carry;
  T prod = T(1);
  for (int64_t t = t1 - 1; t >= t0; --t) {
    const int64_t i = t * N + j;
    const T nd = T(1) - d[i];
    const T vt = v[i];
    const T c = gl * nd;
    next_a = r[i] + gamma * nd * next_v - vt + c * next_a;
    prod *= c;
    if (adv != nullptr) {
      adv[i] = next_a;
      ret[i] = next_a + vt;
    }
    next_v = vt;
  }
  *out_a = next_a;
  *out_p = prod;
}

template <typename T>
__global__ void gae_summarize_kernel(const T* __restrict__ r, const T* __restrict__ v, const T* __restrict__ d,
                                     const T* __restrict__ last_value, int64_t Trows, int64_t N, int64_t C,
                                     int64_t L, T gamma, T gl, T* __restrict__ sum_a, T* __restrict__ sum_p) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= C * N) return;
  const int64_t j = idx % N;
  const int64_t k = idx / N;
  const int64_t t0 = k * L;
  const int64_t t1 = t0 + L < Trows ? t0 + L : Trows;
  T a, p;
  walk<T>(r, v, d, last_value, nullptr, nullptr, Trows, N, j, t0, t1, gamma, gl, T(0), &a, &p);
  sum_a[idx] = a;
  sum_p[idx] = p;
}

// One block per column; thread k holds chunk k's map and composes it with the maps after it.
template <typename T>
__global__ void gae_scan_kernel(const T* __restrict__ sum_a, const T* __restrict__ sum_p, int64_t N, int64_t C,
                                T* __restrict__ carry) {
  extern __shared__ unsigned char smem_raw[];
  T* sa = reinterpret_cast<T*>(smem_raw);
  T* sp = sa + blockDim.x;
  const int64_t j = blockIdx.x;
  const int k = threadIdx.x;
  T a = T(0);
  T p = T(1);  // identity map for the padding threads
  if (k < C) {
    a = sum_a[k * N + j];
    p = sum_p[k * N + j];
  }
  sa[k] = a;
  sp[k] = p;
  __syncthreads();
  for (int off = 1; off < static_cast<int>(blockDim.x); off <<= 1) {
    T na = a;
    T np = p;
    if (k + off < static_cast<int>(blockDim.x)) {
      na = a + p * sa[k + off];
      np = p * sp[k + off];
    }
    __syncthreads();
    a = na;
    p = np;
    sa[k] = a;
    sp[k] = p;
    __syncthreads();
  }
  // sa[k] now maps A_{T} = 0 to A at the start of chunk k; chunk k's carry is the start of chunk k + 1.
  if (k < C) carry[k * N + j] = k + 1 < C ? sa[k + 1] : T(0);
}

template <typename T>
__global__ void gae_finish_kernel(const T* __restrict__ r, const T* __restrict__ v, const T* __restrict__ d,
                                  const T* __restrict__ last_value, T* __restrict__ adv, T* __restrict__ ret,
                                  int64_t Trows, int64_t N, int64_t C, int64_t L, T gamma, T gl,
                                  const T* __restrict__ carry) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= C * N) return;
  const int64_t j = idx % N;
  const int64_t k = idx / N;
  const int64_t t0 = k * L;
  const int64_t t1 = t0 + L < Trows ? t0 + L : Trows;
  T a, p;
  walk<T>(r, v, d, last_value, adv, ret, Trows, N, j, t0, t1, gamma, gl, carry != nullptr ? carry[idx] : T(0), &a,
          &p);
}

unsigned int blocks_for(int64_t threads) { return static_cast<unsigned int>((threads + kThreads - 1) / kThreads); }

unsigned int pow2_at_least(int64_t x) {
  unsigned int p = 32;
  while (static_cast<int64_t>(p) < x) p <<= 1;
  return p;
}

}  // namespace

int64_t gae_workspace_elems(int64_t T, int64_t N) {
  const GaePlan plan = plan_gae(T, N);
  return plan.chunks > 1 ? 3 * plan.chunks * N : 0;
}

template <typename scalar_t>
cudaError_t gae(const scalar_t* rewards, const scalar_t* values, const scalar_t* dones,
                const scalar_t* last_value, scalar_t* advantages, scalar_t* returns, int64_t T, int64_t N,
                double gamma, double lam, scalar_t* workspace, cudaStream_t stream) {
  if (T <= 0 || N <= 0) return cudaSuccess;
  const GaePlan plan = plan_gae(T, N);
  const scalar_t g = static_cast<scalar_t>(gamma);
  const scalar_t gl = static_cast<scalar_t>(gamma * lam);
  const int64_t work = plan.chunks * N;
  const scalar_t* carry = nullptr;
  if (plan.chunks > 1) {
    if (workspace == nullptr) return cudaErrorInvalidValue;
    scalar_t* sum_a = workspace;
    scalar_t* sum_p = workspace + work;
    scalar_t* carry_w = workspace + 2 * work;
    gae_summarize_kernel<scalar_t><<<blocks_for(work), kThreads, 0, stream>>>(
        rewards, values, dones, last_value, T, N, plan.chunks, plan.rows, g, gl, sum_a, sum_p);
    const unsigned int scan_threads = pow2_at_least(plan.chunks);
    gae_scan_kernel<scalar_t><<<static_cast<unsigned int>(N), scan_threads, 2 * scan_threads * sizeof(scalar_t),
                                stream>>>(sum_a, sum_p, N, plan.chunks, carry_w);
    carry = carry_w;
  }
  gae_finish_kernel<scalar_t><<<blocks_for(work), kThreads, 0, stream>>>(
      rewards, values, dones, last_value, advantages, returns, T, N, plan.chunks, plan.rows, g, gl, carry);
  return cudaGetLastError();
}

template cudaError_t gae<float>(const float*, const float*, const float*, const float*, float*, float*, int64_t,
                                int64_t, double, double, float*, cudaStream_t);
template cudaError_t gae<double>(const double*, const double*, const double*, const double*, double*, double*,
                                 int64_t, int64_t, double, double, double*, cudaStream_t);

}  // namespace cuda
}  // namespace rlarena
