// What every device's wrapper of an rlarena op does before its kernel runs (used by the CPU and the CUDA
// bindings): check the inputs, make them contiguous once, allocate the outputs. Errors surface in Python as
// TypeError (dtype), ValueError (shape, gamma, lam, clip_coef) and RuntimeError (device).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>

#include <utility>

namespace rlarena {

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "rlarena.", op, ": '", name,
              "' must be float32 or float64, got ", t.scalar_type(), " (convert it with .float() or .double())");
}

inline void check_same(const at::Tensor& ref, const char* ref_name, const at::Tensor& t, const char* name,
                       const char* op) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "rlarena.", op, ": all inputs must have the same dtype, but '",
              ref_name, "' is ", ref.scalar_type(), " and '", name, "' is ", t.scalar_type(), " (convert it with .to(",
                   ref_name, ".dtype))");
  TORCH_CHECK(t.device() == ref.device(), "rlarena.", op, ": all inputs must be on the same device, but '",
              ref_name, "' is on ", ref.device(), " and '", name, "' is on ", t.device());
}

// rewards, values, dones: [T, N]; last_value: [N]; one floating dtype, one device.
inline void check_gae_inputs(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& dones,
                             const at::Tensor& last_value, double gamma, double lam) {
  constexpr const char* op = "gae";
  check_floating(rewards, op, "rewards");
  check_same(rewards, "rewards", values, "values", op);
  check_same(rewards, "rewards", dones, "dones", op);
  check_same(rewards, "rewards", last_value, "last_value", op);
  TORCH_CHECK_VALUE(rewards.dim() == 2, "rlarena.gae: rewards must be time-major [T, N], got shape ", rewards.sizes());
  TORCH_CHECK_VALUE(values.sizes() == rewards.sizes(), "rlarena.gae: values has shape ", values.sizes(),
              " but rewards has shape ", rewards.sizes(), "; rewards, values and dones must all be [T, N]");
  TORCH_CHECK_VALUE(dones.sizes() == rewards.sizes(), "rlarena.gae: dones has shape ", dones.sizes(),
              " but rewards has shape ", rewards.sizes(), "; rewards, values and dones must all be [T, N]");
  TORCH_CHECK_VALUE(last_value.dim() == 1 && last_value.size(0) == rewards.size(1),
              "rlarena.gae: last_value must be [N] = [", rewards.size(1), "], got shape ", last_value.sizes());
  TORCH_CHECK_VALUE(gamma >= 0.0 && gamma <= 1.0, "rlarena.gae: gamma must be in [0, 1], got ", gamma);
  TORCH_CHECK_VALUE(lam >= 0.0 && lam <= 1.0, "rlarena.gae: lam must be in [0, 1], got ", lam);
}

// A fused loss's three inputs: one shape (treated as flat), one floating dtype, one device; clip_coef > 0.
inline void check_fused_loss_inputs(const char* op, const at::Tensor& first, const char* first_name,
                                    const at::Tensor& second, const char* second_name, const at::Tensor& third,
                                    const char* third_name, double clip_coef, const char* clip_hint = "") {
  check_floating(first, op, first_name);
  check_same(first, first_name, second, second_name, op);
  check_same(first, first_name, third, third_name, op);
  for (const auto& [t, name] : {std::pair<const at::Tensor&, const char*>{second, second_name}, {third, third_name}}) {
    TORCH_CHECK_VALUE(t.sizes() == first.sizes(), "rlarena.", op, ": ", name, " has shape ", t.sizes(), " but ",
                      first_name, " has shape ", first.sizes(), "; all three inputs must have one shape");
  }
  TORCH_CHECK_VALUE(clip_coef > 0.0, "rlarena.", op, ": clip_coef must be > 0", clip_hint, ", got ", clip_coef);
}

inline void check_loss_inputs(const at::Tensor& logp, const at::Tensor& old_logp, const at::Tensor& advantages,
                              double clip_coef) {
  check_fused_loss_inputs("clipped_surrogate_loss", logp, "logp", old_logp, "old_logp", advantages, "advantages",
                          clip_coef);
}

inline void check_value_loss_inputs(const at::Tensor& value, const at::Tensor& old_value, const at::Tensor& returns,
                                    double clip_coef) {
  check_fused_loss_inputs("clipped_value_loss", value, "value", old_value, "old_value", returns, "returns",
                          clip_coef, " (inf: no clipping)");
}

// A kernel registered for one device type was handed a tensor on another (a dispatcher bug, not a user's).
inline void check_kernel_device(const at::Tensor& t, c10::DeviceType device, const char* op) {
  TORCH_CHECK(t.device().type() == device, "rlarena.", op, ": ", c10::DeviceTypeName(device),
              " kernel called with a tensor on ", t.device());
}

// GAE's inputs, checked and contiguous, with its two outputs allocated.
struct GaeIO {
  at::Tensor rewards, values, dones, last_value;  // inputs [T, N] and [N]
  at::Tensor advantages, returns;                 // outputs [T, N]
};

inline GaeIO prepare_gae(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& dones,
                         const at::Tensor& last_value, double gamma, double lam, c10::DeviceType device) {
  check_gae_inputs(rewards, values, dones, last_value, gamma, lam);
  check_kernel_device(rewards, device, "gae");
  GaeIO io{rewards.contiguous(), values.contiguous(), dones.contiguous(), last_value.contiguous(), {}, {}};
  io.advantages = at::empty(io.rewards.sizes(), io.rewards.options());
  io.returns = at::empty(io.rewards.sizes(), io.rewards.options());
  return io;
}

// A fused loss's three inputs, checked and contiguous, with d loss / d input allocated; `scalar()` makes a
// 0-dim output of the inputs' dtype and device.
struct FusedLossIO {
  at::Tensor input, second, third;  // input: the tensor the gradient is for (logp, value)
  at::Tensor grad;                  // d loss / d input, shaped like input
  at::Tensor scalar() const { return at::empty({}, input.options()); }
};

inline FusedLossIO prepare_fused_loss(const at::Tensor& input, const at::Tensor& second, const at::Tensor& third,
                                      c10::DeviceType device, const char* op) {
  check_kernel_device(input, device, op);
  FusedLossIO io{input.contiguous(), second.contiguous(), third.contiguous(), {}};
  io.grad = at::empty(io.input.sizes(), io.input.options());
  return io;
}

inline FusedLossIO prepare_surrogate_loss(const at::Tensor& logp, const at::Tensor& old_logp,
                                          const at::Tensor& advantages, double clip_coef, c10::DeviceType device) {
  check_loss_inputs(logp, old_logp, advantages, clip_coef);
  return prepare_fused_loss(logp, old_logp, advantages, device, "clipped_surrogate_loss");
}

inline FusedLossIO prepare_value_loss(const at::Tensor& value, const at::Tensor& old_value, const at::Tensor& returns,
                                      double clip_coef, c10::DeviceType device) {
  check_value_loss_inputs(value, old_value, returns, clip_coef);
  return prepare_fused_loss(value, old_value, returns, device, "clipped_value_loss");
}

}  // namespace rlarena
