// Shared input validation for the rlarena ops (used by the CPU and the CUDA bindings). Errors surface in
// Python as TypeError (dtype), ValueError (shape, gamma, lam, clip_coef) and RuntimeError (device).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

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

// logp, old_logp, advantages: same shape (treated as flat), one floating dtype, one device.
inline void check_loss_inputs(const at::Tensor& logp, const at::Tensor& old_logp, const at::Tensor& advantages,
                              double clip_coef) {
  constexpr const char* op = "clipped_surrogate_loss";
  check_floating(logp, op, "logp");
  check_same(logp, "logp", old_logp, "old_logp", op);
  check_same(logp, "logp", advantages, "advantages", op);
  TORCH_CHECK_VALUE(old_logp.sizes() == logp.sizes(), "rlarena.clipped_surrogate_loss: old_logp has shape ",
              old_logp.sizes(), " but logp has shape ", logp.sizes(), "; all three inputs must have one shape");
  TORCH_CHECK_VALUE(advantages.sizes() == logp.sizes(), "rlarena.clipped_surrogate_loss: advantages has shape ",
              advantages.sizes(), " but logp has shape ", logp.sizes(), "; all three inputs must have one shape");
  TORCH_CHECK_VALUE(clip_coef > 0.0, "rlarena.clipped_surrogate_loss: clip_coef must be > 0, got ", clip_coef);
}

}  // namespace rlarena
