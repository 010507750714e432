// Plain-loop building blocks for the small MLPs of the default actor-critic (algorithms/policies.py):
// a linear layer and its activation, on float32 rows.
//
// Why plain loops: at these sizes (tens of inputs, 64 hidden units, a handful of rows) every ATen call costs
// 2-5 us of dispatch, far more than its arithmetic; one kernel written as loops does a whole policy step in a
// few microseconds.
//
// Why the loops are shaped as they are: every sum runs over its terms in one fixed order; only independent
// sums run side by side (in vector lanes or interleaved chains), never pieces of one sum. With floating-point
// contraction off (setup.py builds with -ffp-contract=off: no FMA), the baseline, AVX2 and AVX-512 variants of
// a kernel therefore give the same bits on every x86-64 CPU; tests/test_collector.py checks that. (MKL's matrix products, which nn.Linear uses, pick their blocking and their FMA use per CPU.)
#pragma once

#include <cmath>
#include <cstdint>

#include "simd.h"

namespace rlarena {
namespace cpu {
namespace mlp {

enum Activation : int { kTanh = 0, kRelu = 1, kElu = 2 };

// The code of an activation's name (tanh, relu, elu), or -1 for any other name.
inline int activation_code(const char* name, size_t size) {
  const auto is = [&](const char* want, size_t n) { return size == n && __builtin_memcmp(name, want, n) == 0; };
  return is("tanh", 4) ? kTanh : is("relu", 4) ? kRelu : is("elu", 3) ? kElu : -1;
}

// One nn.Linear: weight [out, in] row-major (as torch stores it), bias [out]. Float32 everywhere the policy
// runs; float64 only for the policy op's gradient checks (gaussian_mlp.cpp).
template <typename S>
struct LayerOf {
  const S* weight;
  const S* bias;
  int64_t in;
  int64_t out;
};
using Layer = LayerOf<float>;

// tanh without libm (vectorizes, same bits on every ISA): an odd Taylor polynomial near 0, where
// 1 - 2 / (e^{2|x|} + 1) would cancel, and that formula elsewhere (tests/test_collector.py compares the
// policy step with torch's tanh).
RLARENA_INLINE float vtanh(float x) {
  const float a = x < 0.0f ? -x : x;
  const float x2 = x * x;
  // x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835: truncation below 1e-9 relative for |x| < 0.125.
  float p = 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = x + x * (p * x2);
  const float e = vexp(a + a);
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0.0f ? -big : big;
  return a < 0.125f ? small : big;
}

// float64 (gradient checks only): libm's tanh; its bits may differ by CPU, which a check does not mind.
inline double vtanh(double x) { return std::tanh(x); }

template <typename S>
RLARENA_INLINE S activate(S z, int act) {
  if (act == kTanh) return vtanh(z);
  if (act == kRelu) return z > S(0) ? z : S(0);
  return z > S(0) ? z : vexp(z) - S(1);  // elu, alpha 1
}

// d output / d pre-activation times g, as torch's backward of each activation computes it: tanh from its
// output h (1 - h^2), relu from z > 0, elu (alpha 1) from z (exp(z) where z <= 0).
template <typename S>
RLARENA_INLINE S activation_grad(S g, S z, S h, int act) {
  if (act == kTanh) return g * (S(1) - h * h);
  if (act == kRelu) return z > S(0) ? g : S(0);
  return z > S(0) ? g : g * vexp(z);
}

// y[out] = bias + x[in] @ weight.T, each output's sum over the inputs in order. Eight outputs at a time
// (eight independent chains for the CPU to overlap), reading the weight rows as torch stores them: no
// transposed copy to write, which matters more than vector lanes when the collector calls this between
// simulator steps with cold caches.
RLARENA_INLINE void linear_row(const Layer& l, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t n_in = l.in, n_out = l.out;
  const float* __restrict__ w = l.weight;
  int64_t j = 0;
  for (; j + 8 <= n_out; j += 8) {
    float acc[8];
    for (int k = 0; k < 8; ++k) acc[k] = l.bias[j + k];
    for (int64_t i = 0; i < n_in; ++i) {
      const float xi = x[i];
      for (int k = 0; k < 8; ++k) acc[k] = acc[k] + xi * w[(j + k) * n_in + i];
    }
    for (int k = 0; k < 8; ++k) y[j + k] = acc[k];
  }
  for (; j < n_out; ++j) {
    float acc = l.bias[j];
    for (int64_t i = 0; i < n_in; ++i) acc = acc + x[i] * w[j * n_in + i];
    y[j] = acc;
  }
}

// C[m, n] = C[m, n] + sum_k A[m, k] B[k, n] for m < M, n < N (row-major, row strides lda, ldb, ldc): each
// sum runs over k in order, term by term onto C's value, as linear_row's (so C holding the bias rows gives
// linear_row's bits). Blocks of 8 rows x 16 columns are summed side by side in registers (independent sums
// only: the vector width changes which sums share a register, never a sum's order).
template <typename S>
RLARENA_INLINE void matmul_acc(int64_t M, int64_t N, int64_t K, const S* __restrict__ A, int64_t lda,
                               const S* __restrict__ B, int64_t ldb, S* __restrict__ C, int64_t ldc) {
  constexpr int64_t R = 8, W = 16;
  for (int64_t m0 = 0; m0 < M; m0 += R) {
    const int64_t rows = M - m0 < R ? M - m0 : R;
    for (int64_t n0 = 0; n0 < N; n0 += W) {
      const int64_t cols = N - n0 < W ? N - n0 : W;
      S acc[R][W];
      if (rows == R && cols == W) {
#pragma GCC unroll 8
        for (int64_t r = 0; r < R; ++r)
#pragma omp simd
          for (int64_t j = 0; j < W; ++j) acc[r][j] = C[(m0 + r) * ldc + n0 + j];
        for (int64_t k = 0; k < K; ++k) {
          const S* __restrict__ b = B + k * ldb + n0;
#pragma GCC unroll 8
          for (int64_t r = 0; r < R; ++r) {
            const S a = A[(m0 + r) * lda + k];
#pragma omp simd
            for (int64_t j = 0; j < W; ++j) acc[r][j] = acc[r][j] + a * b[j];
          }
        }
#pragma GCC unroll 8
        for (int64_t r = 0; r < R; ++r)
#pragma omp simd
          for (int64_t j = 0; j < W; ++j) C[(m0 + r) * ldc + n0 + j] = acc[r][j];
      } else {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < cols; ++j) acc[r][j] = C[(m0 + r) * ldc + n0 + j];
        for (int64_t k = 0; k < K; ++k) {
          const S* __restrict__ b = B + k * ldb + n0;
          for (int64_t r = 0; r < rows; ++r) {
            const S a = A[(m0 + r) * lda + k];
            for (int64_t j = 0; j < cols; ++j) acc[r][j] = acc[r][j] + a * b[j];
          }
        }
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < cols; ++j) C[(m0 + r) * ldc + n0 + j] = acc[r][j];
      }
    }
  }
}

// h[0..n) = activation(z) for a hidden layer, z itself for the last (output) layer.
template <typename S>
RLARENA_INLINE void activate_layer(const S* __restrict__ z, S* __restrict__ h, int64_t n, bool last,
                                   int act) {
  if (!last) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) h[j] = activate(z[j], act);
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) h[j] = z[j];
  }
}

// An MLP on one row: pre-activations z_l and outputs h_l of every layer written into `z` and `h` (layer l at
// offset sum of the earlier layers' widths); the last layer has no activation (h = z there).
RLARENA_INLINE void forward_row(const Layer* layers, int64_t n_layers, int act, const float* x, float* z,
                                float* h) {
  const float* input = x;
  for (int64_t l = 0; l < n_layers; ++l) {
    linear_row(layers[l], input, z);
    const int64_t n = layers[l].out;
    activate_layer(z, h, n, l + 1 == n_layers, act);
    input = h;
    z += n;
    h += n;
  }
}

// Total width of an MLP's layers (the size of forward_row's z and h).
template <typename S>
inline int64_t total_width(const LayerOf<S>* layers, int64_t n_layers) {
  int64_t w = 0;
  for (int64_t l = 0; l < n_layers; ++l) w += layers[l].out;
  return w;
}

}  // namespace mlp
}  // namespace cpu
}  // namespace rlarena
