// PPO's clipped value loss on the CPU, forward and backward fused in one pass: the loss and
// d loss / d value (kept for the backward pass, which only scales it). With v_c = old + clamp(v - old, -c, c):
//   loss = 0.5 * mean(max((v - R)^2, (v_c - R)^2)).
// clip_coef = inf gives the unclipped loss 0.5 * mean((v - R)^2).
//
// Sums are taken per fixed block of elements (in double) and the block sums added in order, so the result
// does not depend on the number of threads (blocked_sum.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../common.h"
#include "blocked_sum.h"
#include "simd.h"

namespace rlarena {
namespace cpu {
namespace {

template <typename T>
struct ValueLossArgs {
  const T* value;
  const T* old_value;
  const T* returns;
  T* grad;
  T clip;   // clip_coef (may be inf)
  T inv_n;  // 1 / n
};

// Elements [i0, i1): writes grad, stores sum(max(u, w)) into out[0].
template <typename T>
RLARENA_INLINE void value_block_impl(const ValueLossArgs<T>* a, int64_t i0, int64_t i1, double* out) {
  const T* __restrict__ value = a->value;
  const T* __restrict__ old_value = a->old_value;
  const T* __restrict__ returns = a->returns;
  T* __restrict__ grad = a->grad;
  const T clip = a->clip;
  const T inv_n = a->inv_n;
  // Sums in T over short chunks, each in kLanes interleaved partial sums added in order (the same on every
  // ISA; see clipped_loss.cpp), chunk sums in double.
  constexpr int64_t kChunk = 512;
  constexpr int64_t kLanes = 16;
  double total = 0.0;
  T terms[kChunk];
  for (int64_t c0 = i0; c0 < i1; c0 += kChunk) {
    const int64_t c1 = std::min(c0 + kChunk, i1);
#pragma omp simd
    for (int64_t i = c0; i < c1; ++i) {
      const T v = value[i];
      const T old = old_value[i];
      const T step = v - old;
      // clamp(step, -clip, clip) as selects (vectorizable); NaN propagates.
      const T clamped = step < -clip ? -clip : (step > clip ? clip : step);
      const T err = v - returns[i];
      const T err_clipped = (old + clamped) - returns[i];
      const T u = err * err;
      const T w = err_clipped * err_clipped;
      // max(u, w) has the gradient of u unless w is strictly larger; then that of w, whose clamp passes the
      // gradient only inside [-clip, clip] (bounds included, as torch.clamp).
      grad[i] = u >= w ? err * inv_n : ((step < -clip) | (step > clip) ? T(0) : err_clipped * inv_n);
      terms[i - c0] = u >= w ? u : w;
    }
    T part[kLanes] = {};
    lane_sums<T, kLanes>(terms, c1 - c0, part);
    T chunk = T(0);
    for (int64_t l = 0; l < kLanes; ++l) chunk = chunk + part[l];
    total += static_cast<double>(chunk);
  }
  out[0] = total;
}

RLARENA_ISA_DISPATCH(value_block, value_block_impl)

template <typename T>
T value_loss_run(const ValueLossArgs<T>& a, int64_t n) {
  const auto s = blocked_sums<1>(n, [&](int64_t i0, int64_t i1, double* out) { value_block<T>(&a, i0, i1, out); });
  return static_cast<T>(0.5 * s[0] / static_cast<double>(n));
}

template <typename T>
void value_loss_typed(const at::Tensor& v, const at::Tensor& old, const at::Tensor& ret, at::Tensor& grad,
                      at::Tensor& loss, double clip_coef) {
  const int64_t n = v.numel();
  const ValueLossArgs<T> a{v.data_ptr<T>(),           old.data_ptr<T>(),
                           ret.data_ptr<T>(),         grad.data_ptr<T>(),
                           static_cast<T>(clip_coef), static_cast<T>(1.0 / static_cast<double>(n))};
  *loss.data_ptr<T>() = value_loss_run(a, n);
}

std::tuple<at::Tensor, at::Tensor> clipped_value_loss_cpu(const at::Tensor& value, const at::Tensor& old_value,
                                                          const at::Tensor& returns, double clip_coef) {
  const FusedLossIO io = prepare_value_loss(value, old_value, returns, clip_coef, c10::DeviceType::CPU);
  const at::Tensor &v = io.input, &old = io.second, &ret = io.third;
  at::Tensor grad = io.grad, loss = io.scalar();
  if (v.scalar_type() == at::kFloat) {
    value_loss_typed<float>(v, old, ret, grad, loss, clip_coef);
  } else {
    value_loss_typed<double>(v, old, ret, grad, loss, clip_coef);
  }
  return {loss, grad};
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) { m.impl("clipped_value_loss", &rlarena::cpu::clipped_value_loss_cpu); }
