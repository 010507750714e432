// The default Gaussian MLP actor-critic's step (rlarena::mlp_gaussian_act's kernel) on caller-owned memory:
// for the collector's fused step, which writes action, log-prob and value straight into its row buffers
// (no output tensors, no copies: at these sizes each ATen call costs more than the arithmetic).
#pragma once

#include "mlp.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace rlarena {
namespace cpu {

// The policy's parameters, checked and viewed as plain layers. `plain` is false (and nothing else is set)
// when a parameter is not a float32 CPU tensor: callers then take the composite path.
struct GaussianMLPView {
  GaussianMLPView(int64_t obs_dim, at::TensorList actor, at::TensorList critic, const at::Tensor& log_std,
                  c10::string_view activation);

  // action, logp, value for `rows` observations ([rows, obs_dim] row-major) into [rows, act_dim], [rows],
  // [rows]. Sampled: a standard normal draw of shape [rows, act_dim] from the default generator, exactly as
  // torch.normal(mean, std) draws it.
  void act(const float* obs, int64_t rows, bool deterministic, float* action, float* logp, float* value) const;

  // The same with the caller's standard normal draw `noise` ([rows, act_dim]; may alias `action`; null: the
  // mean) and scratch memory of scratch_size() floats. action null: the values only; value null: no values
  // (each row's value is the same whenever it is computed).
  void act(const float* obs, int64_t rows, const float* noise, float* action, float* logp, float* value,
           float* scratch) const;
  int64_t scratch_size() const;

  bool plain = false;
  int activation_code = 0;
  int64_t obs_dim = 0;
  int64_t act_dim = 0;
  std::vector<mlp::Layer> actor_layers;
  std::vector<mlp::Layer> critic_layers;

 private:
  at::Tensor log_std_;
  std::vector<at::Tensor> keep;  // contiguous copies the layers point into
};

}  // namespace cpu
}  // namespace rlarena
