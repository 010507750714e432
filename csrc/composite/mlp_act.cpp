// One collector step of the default MLP actor-critic with a Gaussian head (algorithms/policies.py): the
// sampled action (or the mean), its log-prob and the value, for a batch of observations, without gradient.
//
// This file is the device-independent version (CompositeExplicitAutograd): it runs exactly the ops of the
// distribution path (nn.Linear, the activation, Normal.sample, Independent(Normal).log_prob), so its results
// are bit-identical to it. On the CPU the op runs csrc/cpu/mlp_act.cpp instead (plain loops, float32), which
// falls back to this composition for other dtypes.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

namespace rlarena {
namespace {

// math.log(math.sqrt(2 * math.pi)), as torch.distributions.Normal.log_prob writes it.
const double kLogSqrt2Pi = std::log(std::sqrt(2 * M_PI));

enum class Activation { kTanh, kRelu, kElu };

Activation parse_activation(c10::string_view name) {
  if (name == "tanh") return Activation::kTanh;
  if (name == "relu") return Activation::kRelu;
  TORCH_CHECK_VALUE(name == "elu", "rlarena.mlp_gaussian: activation must be tanh, relu or elu, got ", name);
  return Activation::kElu;
}

at::Tensor activate(const at::Tensor& z, Activation act) {
  switch (act) {
    case Activation::kTanh:
      return at::tanh(z);
    case Activation::kRelu:
      return at::relu(z);
    case Activation::kElu:
      return at::elu(z);
  }
  return z;
}

void check_mlp(at::TensorList params, const char* which) {
  TORCH_CHECK_VALUE(!params.empty() && params.size() % 2 == 0, "rlarena.mlp_gaussian: ", which,
                    " must be [weight, bias] pairs, got ", params.size(), " tensors");
}

// An MLP's output: linear layers with the activation between them (as nn.Sequential runs them).
at::Tensor mlp_forward(const at::Tensor& x, at::TensorList params, Activation act) {
  at::Tensor h = x;
  const size_t layers = params.size() / 2;
  for (size_t l = 0; l < layers; ++l) {
    h = at::linear(h, params[2 * l], params[2 * l + 1]);
    if (l + 1 < layers) h = activate(h, act);
  }
  return h;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_gaussian_act_composite(const at::Tensor& obs, at::TensorList actor,
                                                                          at::TensorList critic,
                                                                          const at::Tensor& log_std,
                                                                          c10::string_view activation,
                                                                          bool deterministic) {
  check_mlp(actor, "actor");
  check_mlp(critic, "critic");
  const Activation act = parse_activation(activation);
  const at::Tensor mean = mlp_forward(obs, actor, act);
  const at::Tensor value = mlp_forward(obs, critic, act).squeeze(-1);
  const at::Tensor scale = log_std.exp().expand_as(mean);
  // Normal.sample: torch.normal(loc, scale); the mode: the mean itself
  const at::Tensor action = deterministic ? mean.clone() : at::normal(mean, scale);
  const at::Tensor var = scale.pow(2);
  const at::Tensor logp =
      (action.sub(mean).pow(2).neg().div(var.mul(2)).sub(scale.log()).sub(kLogSqrt2Pi)).sum(-1);
  return {action, logp, value};
}

}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CompositeExplicitAutograd, m) {
  m.impl("mlp_gaussian_act", &rlarena::mlp_gaussian_act_composite);
}
