// The CPU kernel of rlarena::mlp_gaussian_act: one collector step of the default MLP actor-critic with a
// Gaussian head (sampled action, its log-prob, the value) for a batch of observations, without gradient.
//
// Plain loops (csrc/cpu/mlp.h): the same bits on every x86-64 CPU, within float32 rounding of the
// distribution path (csrc/composite/mlp_act.cpp, the reference; tests/test_collector.py). The noise is drawn
// exactly as torch.normal(mean, std) draws it (a standard normal tensor of the action's shape from the
// default generator, then noise * std + mean), so the random stream is the reference's.
#include "mlp_act.h"
#include "mlp.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace rlarena {

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_gaussian_act_composite(const at::Tensor& obs, at::TensorList actor,
                                                                          at::TensorList critic,
                                                                          const at::Tensor& log_std,
                                                                          c10::string_view activation,
                                                                          bool deterministic);

namespace cpu {
namespace {

// math.log(math.sqrt(2 * math.pi)) in float32, as the reference subtracts it.
constexpr float kLogSqrt2Pi = 0.918938533204672742f;

struct GaussianActArgs {
  const float* obs;
  int64_t rows;
  int64_t obs_dim;
  const mlp::Layer* actor;
  int64_t actor_layers;
  const mlp::Layer* critic;
  int64_t critic_layers;
  int activation;
  const float* log_std;
  const float* noise;  // [rows, act_dim] standard normal (may alias action: read first, then overwritten);
                      // null: the action is the mean
  int64_t act_dim;
  float* action;
  float* logp;
  float* value;
  float* z;  // scratch: pre-activations of the wider MLP
  float* h;  // scratch: outputs
};

template <typename T>
RLARENA_INLINE void gaussian_act_impl(const GaussianActArgs* a) {
  const int64_t actor_width = mlp::total_width(a->actor, a->actor_layers);
  const int64_t critic_width = mlp::total_width(a->critic, a->critic_layers);
  const int64_t A = a->act_dim;
  for (int64_t r = 0; r < a->rows; ++r) {
    const float* x = a->obs + r * a->obs_dim;
    if (a->action != nullptr) {  // null: the values only
      mlp::forward_row(a->actor, a->actor_layers, a->activation, x, a->z, a->h);
      const float* mean = a->h + actor_width - A;
      float* action = a->action + r * A;
      const float* noise = a->noise == nullptr ? nullptr : a->noise + r * A;  // no __restrict__: may alias action
      float logp = 0.0f;
      for (int64_t k = 0; k < A; ++k) {  // in order: the sum over action dimensions has one order
        const float std = vexp(a->log_std[k]);
        float sample = mean[k];
        if (noise != nullptr) {
          sample = noise[k] * std;  // torch.normal: output.normal_(0, 1).mul_(std).add_(mean)
          sample = sample + mean[k];
        }
        action[k] = sample;
        const float d = sample - mean[k];
        logp = logp + ((-(d * d) / (2.0f * (std * std)) - a->log_std[k]) - kLogSqrt2Pi);
      }
      a->logp[r] = logp;
    }
    if (a->value != nullptr) {  // null: the actions only (the values come later, row by row the same)
      mlp::forward_row(a->critic, a->critic_layers, a->activation, x, a->z, a->h);
      a->value[r] = a->h[critic_width - 1];
    }
  }
}

RLARENA_ISA_DISPATCH(gaussian_act, gaussian_act_impl)

int parse_activation(c10::string_view name) {
  const int code = mlp::activation_code(name.data(), name.size());
  TORCH_CHECK_VALUE(code >= 0, "rlarena.mlp_gaussian_act: activation must be tanh, relu or elu, got ", name);
  return code;
}

bool plain_float(const at::Tensor& t) { return t.scalar_type() == at::kFloat && t.device().is_cpu(); }

// [weight, bias] pairs as Layers chained from `in` inputs (checked); `keep` holds contiguous copies alive.
std::vector<mlp::Layer> layers_of(at::TensorList params, int64_t in, const char* which,
                                  std::vector<at::Tensor>& keep) {
  TORCH_CHECK_VALUE(!params.empty() && params.size() % 2 == 0, "rlarena.mlp_gaussian_act: ", which,
                    " must be [weight, bias] pairs, got ", params.size(), " tensors");
  std::vector<mlp::Layer> layers;
  for (size_t l = 0; l < params.size() / 2; ++l) {
    const at::Tensor w = params[2 * l].contiguous();
    const at::Tensor b = params[2 * l + 1].contiguous();
    TORCH_CHECK_VALUE(w.dim() == 2 && w.size(1) == in && b.dim() == 1 && b.size(0) == w.size(0),
                      "rlarena.mlp_gaussian_act: ", which, " layer ", l, " has weight ", w.sizes(), " and bias ",
                      b.sizes(), " but its input has ", in, " features");
    keep.push_back(w);
    keep.push_back(b);
    layers.push_back({w.data_ptr<float>(), b.data_ptr<float>(), w.size(1), w.size(0)});
    in = w.size(0);
  }
  return layers;
}

}  // namespace

GaussianMLPView::GaussianMLPView(int64_t obs_dim, at::TensorList actor, at::TensorList critic,
                                 const at::Tensor& log_std, c10::string_view activation) {
  plain = plain_float(log_std);
  for (const auto& p : actor) plain = plain && plain_float(p);
  for (const auto& p : critic) plain = plain && plain_float(p);
  if (!plain) return;
  activation_code = parse_activation(activation);
  log_std_ = log_std.contiguous();
  actor_layers = layers_of(actor, obs_dim, "actor", keep);
  critic_layers = layers_of(critic, obs_dim, "critic", keep);
  this->obs_dim = obs_dim;
  act_dim = actor_layers.back().out;
  TORCH_CHECK_VALUE(log_std_.dim() == 1 && log_std_.size(0) == act_dim, "rlarena.mlp_gaussian_act: log_std has shape ",
                    log_std_.sizes(), " but the actor has ", act_dim, " outputs");
  TORCH_CHECK_VALUE(critic_layers.back().out == 1, "rlarena.mlp_gaussian_act: the critic must have one output, got ",
                    critic_layers.back().out);
}

int64_t GaussianMLPView::scratch_size() const {
  return 2 * std::max(mlp::total_width(actor_layers.data(), actor_layers.size()),
                      mlp::total_width(critic_layers.data(), critic_layers.size()));
}

void GaussianMLPView::act(const float* obs, int64_t rows, const float* noise, float* action, float* logp,
                          float* value, float* scratch) const {
  const int64_t width = scratch_size() / 2;
  const GaussianActArgs args{obs,
                             rows,
                             obs_dim,
                             actor_layers.data(),
                             static_cast<int64_t>(actor_layers.size()),
                             critic_layers.data(),
                             static_cast<int64_t>(critic_layers.size()),
                             activation_code,
                             log_std_.data_ptr<float>(),
                             noise,
                             act_dim,
                             action,
                             logp,
                             value,
                             scratch,
                             scratch + width};
  gaussian_act<float>(&args);
}

void GaussianMLPView::act(const float* obs, int64_t rows, bool deterministic, float* action, float* logp,
                          float* value) const {
  if (!deterministic) {
    // The reference's draw: torch.normal fills a fresh [rows, act_dim] tensor; filling the caller's memory
    // through a view of that shape draws the same numbers (read before each entry is overwritten).
    at::from_blob(action, {rows, act_dim}, log_std_.options()).normal_();
  }
  std::vector<float> scratch(scratch_size());
  act(obs, rows, deterministic ? nullptr : action, action, logp, value, scratch.data());
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_gaussian_act_cpu(const at::Tensor& obs, at::TensorList actor,
                                                                    at::TensorList critic, const at::Tensor& log_std,
                                                                    c10::string_view activation, bool deterministic) {
  if (plain_float(obs) && obs.dim() == 2) {
    const GaussianMLPView net(obs.size(1), actor, critic, log_std, activation);
    if (net.plain) {
      const at::Tensor x = obs.contiguous();
      const int64_t rows = x.size(0);
      at::Tensor action = at::empty({rows, net.act_dim}, x.options());
      at::Tensor logp = at::empty({rows}, x.options());
      at::Tensor value = at::empty({rows}, x.options());
      net.act(x.data_ptr<float>(), rows, deterministic, action.data_ptr<float>(), logp.data_ptr<float>(),
              value.data_ptr<float>());
      return {action, logp, value};
    }
  }
  return mlp_gaussian_act_composite(obs, actor, critic, log_std, activation, deterministic);
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) { m.impl("mlp_gaussian_act", &rlarena::cpu::mlp_gaussian_act_cpu); }
