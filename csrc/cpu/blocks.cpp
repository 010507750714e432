// The CPU kernels of the update's generic building blocks (rlarena/blocks.py, rlarena/optim.py): a mean and
// an advantage normalization with one summation order, the gradient norm and its clipping, and an Adam step.
// Any algorithm can call them; together with the policy op (gaussian_mlp.cpp) and the fused losses they make
// an update that gives the same bits on every x86-64 CPU.
//
// Why not ATen's: its reductions (sum, mean, std, vector_norm) add in vector lanes whose width is the ISA's
// (8 floats with AVX2, 16 with AVX-512), so the same update rounded differently on different CPUs. Here every
// sum runs in double in index order (blocked_sums for the long ones: fixed blocks, added in block order),
// elementwise work is plain IEEE arithmetic with FMA contraction off, and powers are repeated squaring.
#include "blocked_sum.h"
#include "simd.h"

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

namespace rlarena {
namespace cpu {
namespace {

void check_float_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "rlarena.", op, ": '", name,
                   "' must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.device().is_cpu(), "rlarena.", op, ": '", name, "' must be on the CPU, got ", t.device());
}

// Sum and sum of squared deviations from `mean` of a contiguous array, in double, in a fixed order.
template <typename S>
double sum_of(const S* x, int64_t n) {
  return blocked_sums<1>(n, [&](int64_t i0, int64_t i1, double* out) {
    double s = 0.0;
    for (int64_t i = i0; i < i1; ++i) s += static_cast<double>(x[i]);
    out[0] = s;
  })[0];
}

template <typename S>
double squared_deviations(const S* x, int64_t n, double mean) {
  return blocked_sums<1>(n, [&](int64_t i0, int64_t i1, double* out) {
    double s = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      const double d = static_cast<double>(x[i]) - mean;
      s += d * d;
    }
    out[0] = s;
  })[0];
}

// mean(x) and its gradient d mean / d x = 1/n (for the autograd node in ops.cpp, which scales it).
std::tuple<at::Tensor, at::Tensor> mean_cpu(const at::Tensor& x_in) {
  check_float_cpu(x_in, "mean", "x");
  TORCH_CHECK_VALUE(x_in.numel() > 0, "rlarena.mean: x is empty");
  const at::Tensor x = x_in.contiguous();
  const int64_t n = x.numel();
  double sum = 0.0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rlarena_mean", [&] { sum = sum_of(x.data_ptr<scalar_t>(), n); });
  const double inv_n = 1.0 / static_cast<double>(n);
  return {at::scalar_tensor(sum * inv_n, x.options()), at::full(x.sizes(), inv_n, x.options())};
}

// (x - mean) / (std + eps) with the unbiased std, as algorithms/base.py's reference; x - mean for n < 2. The
// statistics in double, the arithmetic per element in x's dtype. Data, no gradient.
at::Tensor normalize_cpu(const at::Tensor& x_in, double eps) {
  check_float_cpu(x_in, "normalize", "x");
  TORCH_CHECK_VALUE(x_in.numel() > 0, "rlarena.normalize: x is empty");
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t n = x.numel();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rlarena_normalize", [&] {
    const scalar_t* p = x.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const double mean = sum_of(p, n) / static_cast<double>(n);
    const auto m = static_cast<scalar_t>(mean);
    if (n < 2) {
      for (int64_t i = 0; i < n; ++i) o[i] = p[i] - m;
      return;
    }
    const auto denom = static_cast<scalar_t>(std::sqrt(squared_deviations(p, n, mean) / static_cast<double>(n - 1))) +
                       static_cast<scalar_t>(eps);
    for (int64_t i = 0; i < n; ++i) o[i] = (p[i] - m) / denom;
  });
  return out;
}

// sqrt(sum of squares) of every tensor in `grads` (in list order, each in index order; in double: eight
// interleaved partial sums, element i of the concatenation into sum i % 8, added in order). With max_norm
// > 0, the gradients are scaled in place by max_norm / (norm + 1e-6) when that is below 1, as
// torch.nn.utils.clip_grad_norm_ does. Returns the norm before clipping (float64, 0-dim).
at::Tensor clip_grad_norm_cpu(at::TensorList grads, double max_norm) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t pos = 0;
  for (const at::Tensor& g : grads) {
    check_float_cpu(g, "clip_grad_norm_", "grads");
    TORCH_CHECK_VALUE(g.is_contiguous(), "rlarena.clip_grad_norm_: gradients must be contiguous");
    AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "rlarena_grad_norm", [&] {
      const scalar_t* p = g.data_ptr<scalar_t>();
      for (int64_t i = 0; i < g.numel(); ++i, ++pos) {
        const double v = static_cast<double>(p[i]);
        acc[pos & 7] += v * v;
      }
    });
  }
  double total = 0.0;
  for (double a : acc) total += a;
  const double norm = std::sqrt(total);
  if (max_norm > 0 && std::isfinite(norm)) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
      for (const at::Tensor& g : grads)
        AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "rlarena_clip_grad", [&] {
          auto* p = const_cast<at::Tensor&>(g).data_ptr<scalar_t>();
          const auto c = static_cast<scalar_t>(coef);
          for (int64_t i = 0; i < g.numel(); ++i) p[i] = p[i] * c;
        });
  }
  return at::scalar_tensor(norm, at::TensorOptions().dtype(at::kDouble));
}


struct AdamArgs {
  double lr;
  double beta1;
  double beta2;
  double eps;
  double weight_decay;
};

// torch.optim.Adam's update (no amsgrad, not maximizing), its fused kernel's expressions:
// g += wd p; m = m + (1 - b1) (g - m); v = b2 v + (1 - b2) g^2;
// p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps), t the step after incrementing.
template <typename T>
RLARENA_INLINE void adam_impl(T* __restrict__ p, const T* __restrict__ grad, T* __restrict__ m, T* __restrict__ v,
                              int64_t n, double t, const AdamArgs* a) {
  const auto step_size = static_cast<T>(a->lr / (1.0 - whole_power(a->beta1, t)));
  const auto bc2_sqrt = static_cast<T>(std::sqrt(1.0 - whole_power(a->beta2, t)));
  const auto w1 = static_cast<T>(1.0 - a->beta1);
  const auto b2 = static_cast<T>(a->beta2);
  const auto w2 = static_cast<T>(1.0 - a->beta2);
  const auto eps = static_cast<T>(a->eps);
  const auto wd = static_cast<T>(a->weight_decay);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T g = wd != T(0) ? grad[i] + wd * p[i] : grad[i];
    m[i] = m[i] + w1 * (g - m[i]);
    v[i] = v[i] * b2 + w2 * (g * g);
    const T denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] = p[i] - (step_size * m[i]) / denom;
  }
}

RLARENA_ISA_DISPATCH(adam, adam_impl)

// One Adam step over every parameter, in place on the parameters and their state (rlarena.optim.Adam).
// step holds each parameter's step count (float32 0-dim, as torch.optim.Adam keeps it): incremented here.
void adam_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avg, at::TensorList exp_avg_sq,
                   at::TensorList step, double lr, double beta1, double beta2, double eps, double weight_decay) {
  constexpr const char* op = "rlarena.adam_step_";
  const size_t n = params.size();
  TORCH_CHECK_VALUE(grads.size() == n && exp_avg.size() == n && exp_avg_sq.size() == n && step.size() == n, op,
                    ": params, grads, exp_avg, exp_avg_sq and step must have one entry per parameter");
  TORCH_CHECK_VALUE(lr >= 0 && eps > 0 && 0 <= beta1 && beta1 < 1 && 0 <= beta2 && beta2 < 1 && weight_decay >= 0,
                    op, ": out-of-range hyperparameter (lr ", lr, ", betas (", beta1, ", ", beta2, "), eps ", eps,
                    ", weight_decay ", weight_decay, ")");
  const AdamArgs args{lr, beta1, beta2, eps, weight_decay};
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = params[i];
    check_float_cpu(p, "adam_step_", "params");
    for (const at::Tensor* t : {&grads[i], &exp_avg[i], &exp_avg_sq[i]}) {
      TORCH_CHECK_VALUE(t->scalar_type() == p.scalar_type() && t->sizes() == p.sizes() && t->is_contiguous() &&
                            t->device().is_cpu(),
                        op, ": the gradient and state of parameter ", i, " must be contiguous CPU tensors of its ",
                        "dtype and shape ", p.sizes());
    }
    TORCH_CHECK_VALUE(p.is_contiguous(), op, ": parameter ", i, " is not contiguous");
    TORCH_CHECK_VALUE(step[i].numel() == 1 && step[i].scalar_type() == at::kFloat && step[i].device().is_cpu(), op,
                      ": step ", i, " must be a float32 CPU scalar");
    float* t = step[i].data_ptr<float>();
    *t = *t + 1.0f;
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "rlarena_adam", [&] {
      adam<scalar_t>(const_cast<at::Tensor&>(p).data_ptr<scalar_t>(), grads[i].data_ptr<scalar_t>(),
                     const_cast<at::Tensor&>(exp_avg[i]).data_ptr<scalar_t>(),
                     const_cast<at::Tensor&>(exp_avg_sq[i]).data_ptr<scalar_t>(), p.numel(), static_cast<double>(*t),
                     &args);
    });
  }
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) {
  m.impl("mean", &rlarena::cpu::mean_cpu);
  m.impl("normalize", &rlarena::cpu::normalize_cpu);
  m.impl("clip_grad_norm_", &rlarena::cpu::clip_grad_norm_cpu);
  m.impl("adam_step_", &rlarena::cpu::adam_step_cpu);
}
