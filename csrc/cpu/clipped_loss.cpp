// PPO clipped surrogate loss on the CPU, forward and backward fused in one pass: the loss, the clip
// fraction, the approximate KL and d loss / d logp (kept for the backward pass, which only scales it).
//
// Sums are taken per fixed block of elements (in double) and the block sums added in order, so the result
// does not depend on the number of threads (blocked_sum.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "../common.h"
#include "blocked_sum.h"
#include "simd.h"

namespace rlarena {
namespace cpu {
namespace {

template <typename T>
struct LossArgs {
  const T* logp;
  const T* old_logp;
  const T* adv;
  T* grad;
  T lo;         // 1 - clip_coef
  T hi;         // 1 + clip_coef
  T clip;       // clip_coef
  T neg_inv_n;  // -1 / n
};

// Elements [i0, i1): writes grad, adds sum(surrogate), count(clipped), sum(kl terms) into out[0..2].
template <typename T>
RLARENA_INLINE void loss_block_impl(const LossArgs<T>* a, int64_t i0, int64_t i1, double* out) {
  const T* __restrict__ lp = a->logp;
  const T* __restrict__ olp = a->old_logp;
  const T* __restrict__ adv = a->adv;
  T* __restrict__ grad = a->grad;
  const T lo = a->lo;
  const T hi = a->hi;
  const T clip = a->clip;
  const T neg_inv_n = a->neg_inv_n;
  // Each chunk's sums run in T in kLanes interleaved partial sums (element i into sum i % kLanes, whatever
  // the ISA's vector width: one AVX-512 register, two AVX2 ones), added in order, then in double. An `omp
  // simd reduction` would split the sums by the vector width, and so round differently per ISA.
  constexpr int64_t kChunk = 512;
  constexpr int64_t kLanes = 16;
  double s_surr = 0.0;
  double s_clip = 0.0;
  double s_kl = 0.0;
  T t_surr[kChunk], t_clip[kChunk], t_kl[kChunk];  // one chunk's terms of the three sums
  for (int64_t c0 = i0; c0 < i1; c0 += kChunk) {
    const int64_t c1 = std::min(c0 + kChunk, i1);
#pragma omp simd
    for (int64_t i = c0; i < c1; ++i) {
      const T log_ratio = lp[i] - olp[i];
      const T ratio = vexp(log_ratio);
      const T A = adv[i];
      const T s1 = ratio * A;
      // s2 = clamp(ratio, lo, hi) * A, written as selects GCC can vectorize for every ISA (a chained clamp
      // gets turned into branches). Inside [lo, hi] it is s1 exactly; NaN propagates.
      const T lim = ratio < lo ? lo : hi;
      const T s2 = (ratio < lo) | (ratio > hi) ? lim * A : s1;
      // min(s1, s2) has the gradient of s1 (d ratio / d logp = ratio) unless the clipped term is strictly
      // smaller, in which case ratio is outside [lo, hi] and the gradient is 0. At ratio exactly lo or hi
      // (a tie) this takes the unclipped gradient, bounds included.
      // (No bool temporaries in this loop: GCC then sizes the vectors for 1-byte lanes and gives up.)
      grad[i] = s1 <= s2 ? neg_inv_n * s1 : T(0);
      t_surr[i - c0] = s1 <= s2 ? s1 : s2;
      const T dev = ratio - T(1);
      t_clip[i - c0] = std::abs(dev) > clip ? T(1) : T(0);
      t_kl[i - c0] = dev - log_ratio;
    }
    T p_surr[kLanes] = {}, p_clip[kLanes] = {}, p_kl[kLanes] = {};
    lane_sums<T, kLanes>(t_surr, c1 - c0, p_surr);
    lane_sums<T, kLanes>(t_clip, c1 - c0, p_clip);
    lane_sums<T, kLanes>(t_kl, c1 - c0, p_kl);
    T c_surr = T(0), c_clip = T(0), c_kl = T(0);
    for (int64_t l = 0; l < kLanes; ++l) {
      c_surr = c_surr + p_surr[l];
      c_clip = c_clip + p_clip[l];
      c_kl = c_kl + p_kl[l];
    }
    s_surr += static_cast<double>(c_surr);
    s_clip += static_cast<double>(c_clip);
    s_kl += static_cast<double>(c_kl);
  }
  out[0] = s_surr;
  out[1] = s_clip;
  out[2] = s_kl;
}

RLARENA_ISA_DISPATCH(loss_block, loss_block_impl)

template <typename T>
void loss_run(const LossArgs<T>& a, int64_t n, T* loss, T* clip_fraction, T* approx_kl) {
  const auto s = blocked_sums<3>(n, [&](int64_t i0, int64_t i1, double* out) { loss_block<T>(&a, i0, i1, out); });
  const double dn = static_cast<double>(n);
  *loss = static_cast<T>(-s[0] / dn);
  *clip_fraction = static_cast<T>(s[1] / dn);
  *approx_kl = static_cast<T>(s[2] / dn);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> clipped_surrogate_loss_cpu(const at::Tensor& logp,
                                                                                      const at::Tensor& old_logp,
                                                                                      const at::Tensor& advantages,
                                                                                      double clip_coef) {
  const FusedLossIO io = prepare_surrogate_loss(logp, old_logp, advantages, clip_coef, c10::DeviceType::CPU);
  const at::Tensor &lp = io.input, &olp = io.second, &adv = io.third, &grad = io.grad;
  at::Tensor loss = io.scalar(), clip_fraction = io.scalar(), approx_kl = io.scalar();
  const int64_t n = lp.numel();
  if (lp.scalar_type() == at::kFloat) {
    const LossArgs<float> a{lp.data_ptr<float>(),
                            olp.data_ptr<float>(),
                            adv.data_ptr<float>(),
                            grad.data_ptr<float>(),
                            static_cast<float>(1.0 - clip_coef),
                            static_cast<float>(1.0 + clip_coef),
                            static_cast<float>(clip_coef),
                            static_cast<float>(-1.0 / static_cast<double>(n))};
    loss_run(a, n, loss.data_ptr<float>(), clip_fraction.data_ptr<float>(), approx_kl.data_ptr<float>());
  } else {
    const LossArgs<double> a{lp.data_ptr<double>(),
                             olp.data_ptr<double>(),
                             adv.data_ptr<double>(),
                             grad.data_ptr<double>(),
                             1.0 - clip_coef,
                             1.0 + clip_coef,
                             clip_coef,
                             -1.0 / static_cast<double>(n)};
    loss_run(a, n, loss.data_ptr<double>(), clip_fraction.data_ptr<double>(), approx_kl.data_ptr<double>());
  }
  return {loss, clip_fraction, approx_kl, grad};
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) { m.impl("clipped_surrogate_loss", &rlarena::cpu::clipped_surrogate_loss_cpu); }
