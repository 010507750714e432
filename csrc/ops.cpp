// rlarena ops: schemas (TORCH_LIBRARY) and the device-independent autograd kernels.
// Kernels: csrc/cpu/*.cpp (CPU), csrc/cuda/bind.cpp + csrc/cuda/*.cu (CUDA). Python side: rlarena/ops.py
// (fake kernels for torch.compile, the fallback to the pure-torch references).
//
// The autograd of the loss is registered here in C++ rather than with torch.library.register_autograd:
// measured on the 2-core dev machine at n = 64, forward + backward took 68 us with the Python glue and 25 us
// with the C++ node below (the fused op itself: ~5 us), so the glue would eat the speed-up.
#include <Python.h>
#include "cpu/collector.h"
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/library.h>

#include <mutex>
#include <string>
#include <tuple>
#include <vector>

// `import rlarena._C` loads the library (the ops register themselves); its only Python functions are the
// collector's per-step entry points (csrc/cpu/collector.h), which skip the op call's argument parsing.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "rlarena compiled ops (torch.ops.rlarena)",
                                          -1, rlarena::cpu::collector_python_methods()};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(rlarena, m) {
  // Generalized advantage estimation, time-major: rewards, values, dones [T, N], last_value [N].
  m.def(
      "gae(Tensor rewards, Tensor values, Tensor dones, Tensor last_value, float gamma, float lam)"
      " -> (Tensor advantages, Tensor returns)");
  // PPO clipped surrogate loss, forward and backward fused: the last output is d loss / d logp.
  m.def(
      "clipped_surrogate_loss(Tensor logp, Tensor old_logp, Tensor advantages, float clip_coef)"
      " -> (Tensor loss, Tensor clip_fraction, Tensor approx_kl, Tensor grad_logp)");
  // PPO clipped value loss, forward and backward fused: the last output is d loss / d value.
  m.def(
      "clipped_value_loss(Tensor value, Tensor old_value, Tensor returns, float clip_coef)"
      " -> (Tensor loss, Tensor grad_value)");
  // One collector step of the default MLP actor-critic with a Gaussian head (csrc/composite/mlp_act.cpp):
  // actor and critic are [weight, bias] per layer; activation is tanh, relu or elu. No gradient.
  // deterministic: the action is the mean (no draw), as evaluation acts.
  m.def(
      "mlp_gaussian_act(Tensor obs, Tensor[] actor, Tensor[] critic, Tensor log_std, str activation,"
      " bool deterministic=False) -> (Tensor action, Tensor logp, Tensor value)",
      {at::Tag::nondeterministic_seeded});
  // The same actor-critic on a batch of rows with gradient (csrc/cpu/gaussian_mlp.cpp): the log-prob of
  // `actions`, the entropy and the value per row; `saved` holds the activations for the backward below.
  m.def(
      "gaussian_mlp_evaluate(Tensor obs, Tensor actions, Tensor[] actor, Tensor[] critic, Tensor log_std,"
      " str activation) -> (Tensor logp, Tensor entropy, Tensor value, Tensor saved)");
  // Its backward from the upstream gradients of logp, entropy and value (None: zero): every parameter's
  // gradient (actor..., critic..., log_std) and, with input_grads, those of obs and actions (else [0, ...]).
  m.def(
      "gaussian_mlp_evaluate_backward(Tensor? grad_logp, Tensor? grad_entropy, Tensor? grad_value, Tensor obs,"
      " Tensor actions, Tensor[] actor, Tensor[] critic, Tensor log_std, str activation, Tensor saved,"
      " bool input_grads) -> (Tensor[] grads, Tensor grad_obs, Tensor grad_actions)");
  // The update's generic blocks (csrc/cpu/blocks.cpp): sums in one order on every CPU. mean's last output is
  // d mean / d x (the autograd node below scales it); normalize is data (no gradient).
  m.def("mean(Tensor x) -> (Tensor mean, Tensor grad_x)");
  m.def("normalize(Tensor x, float eps) -> Tensor");
  // The gradients' total norm (float64) before clipping them in place to max_norm (<= 0: not clipped).
  m.def("clip_grad_norm_(Tensor(a!)[] grads, float max_norm) -> Tensor");
  // One Adam step in place on the parameters and their state (rlarena.optim.Adam).
  m.def(
      "adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq,"
      " Tensor(d!)[] step, float lr, float beta1, float beta2, float eps, float weight_decay) -> ()");
  // One PPO epoch of that actor-critic (csrc/cpu/ppo_epoch.cpp; algorithms/ppo.py): for each minibatch of
  // `perm` split as torch.tensor_split does, the losses, their gradient, gradient-norm clipping and an Adam
  // step, in place on the parameters and on their Adam state (rlarena.optim.Adam's, torch.optim.Adam's layout) (one exp_avg, exp_avg_sq and step per
  // parameter, in the order actor..., critic..., log_std). Returns [num_minibatches, 6] float64 statistics:
  // policy loss, value loss, entropy, clip fraction, approx KL, gradient norm (before clipping); a
  // non-finite norm stops the epoch before that step (the rows after it are NaN).
  m.def(
      "ppo_gaussian_mlp_epoch_(Tensor obs, Tensor actions, Tensor old_logp, Tensor advantages, Tensor returns,"
      " Tensor old_values, Tensor perm, int num_minibatches, Tensor(a!)[] actor, Tensor(b!)[] critic,"
      " Tensor(c!) log_std, Tensor(d!)[] exp_avg, Tensor(e!)[] exp_avg_sq, Tensor(f!)[] step, str activation,"
      " float clip_coef, float value_clip, float ent_coef, float vf_coef, bool normalize_advantages,"
      " float max_grad_norm, float lr, float beta1, float beta2, float eps) -> Tensor");
  // The gymnasium collector's per-step bookkeeping (csrc/cpu/collector.cpp; envs/gym_env.py), in place on
  // rollout buffers [T, N, ...] at row t and on the running statistics (float64 mean, var, count).
  m.def(
      "observe_(Tensor obs, int t, Tensor(a!) raw_buf, Tensor(b!) obs_buf, Tensor(c!) mean, Tensor(d!) var,"
      " Tensor(e!) count, bool normalize, float clip) -> ()");
  // observe_, mlp_gaussian_act on the normalized row, record_action_: one collector step before the simulator's.
  m.def(
      "gaussian_policy_step_(Tensor obs, int t, Tensor(a!) raw_buf, Tensor(b!) obs_buf, Tensor(c!) mean,"
      " Tensor(d!) var, Tensor(e!) count, bool normalize, float clip, Tensor[] actor, Tensor[] critic,"
      " Tensor log_std, str activation, Tensor(f!) actions, Tensor(g!) logp_buf, Tensor(h!) value_buf,"
      " Tensor(i!) env_actions, Tensor low, Tensor high, bool clip_actions) -> ()",
      {at::Tag::nondeterministic_seeded});
  m.def(
      "record_action_(Tensor action, Tensor logp, Tensor value, int t, Tensor(a!) actions, Tensor(b!) logp_buf,"
      " Tensor(c!) value_buf, Tensor(d!) env_actions, Tensor low, Tensor high, bool clip) -> ()");
  // Returns flags: 1 non-finite next_obs or reward (nothing stored), 2 an episode ended, 4 one was truncated.
  m.def(
      "record_reward_(Tensor next_obs, Tensor reward, Tensor terminated, Tensor truncated, int t,"
      " Tensor(a!) raw_rewards,"
      " Tensor(b!) rewards, Tensor(c!) dones, Tensor(d!) terminated_buf, Tensor(e!) discounted,"
      " Tensor(f!) ret_mean, Tensor(g!) ret_var, Tensor(h!) ret_count, bool normalize, float gamma, float clip,"
      " Tensor(i!) episode_return, Tensor(j!) episode_length) -> int");
}

namespace rlarena {
namespace {

using GaeFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                 const at::Tensor&, double, double);

// GAE works on rollout data: its outputs never carry a gradient (as if computed under torch.no_grad()),
// whatever the inputs. Registering that explicitly keeps autograd (and opcheck) from warning.
std::tuple<at::Tensor, at::Tensor> gae_no_grad(const at::Tensor& rewards, const at::Tensor& values,
                                               const at::Tensor& dones, const at::Tensor& last_value, double gamma,
                                               double lam) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("rlarena::gae", "").typed<GaeFn>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(rewards, values, dones, last_value, gamma, lam);
}

using LossFn = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                             const at::Tensor&, double);

// True for an ordinary CPU scalar tensor holding 1 (the gradient of a loss that is summed into the total):
// then the saved gradient needs no scaling. Never true while tracing (fake or functional tensors, dispatch
// modes), where the value must not be read.
bool is_plain_cpu_one(const at::Tensor& g) {
  if (!g.is_cpu() || g.dim() != 0 || g.layout() != at::kStrided) return false;
  const c10::DispatchKeySet ks = g.key_set();
  if (ks.has(c10::DispatchKey::Python) || ks.has(c10::DispatchKey::Functionalize) ||
      ks.has(c10::DispatchKey::ZeroTensor) || ks.has(c10::DispatchKey::Negative) ||
      ks.has(c10::DispatchKey::Conjugate) || c10::impl::TorchDispatchModeTLS::any_modes_set())
    return false;
  if (!g.has_storage() || g.storage().data() == nullptr) return false;
  const double v = g.scalar_type() == at::kFloat ? static_cast<double>(*g.const_data_ptr<float>())
                   : g.scalar_type() == at::kDouble ? *g.const_data_ptr<double>()
                                                    : 0.0;
  return v == 1.0;
}

// Backward node of a fused loss. The fused forward already returned d loss / d input (its last output); the
// node keeps it and scales it by the incoming gradient (returned as is when that is the usual 1.0 of a CPU
// scalar loss). Only the first input gets a gradient: the others are data, and the other outputs are
// statistics without history. First-order only (no double backward).
//
// A hand-written node rather than torch::autograd::Function: Function::apply's generic bookkeeping costs
// about as much as the whole fused kernel at n = 64.
struct SavedGradBackward : public torch::autograd::Node {
  explicit SavedGradBackward(const char* name) : name_(name) {}

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    const at::Tensor& g = grads[0];
    if (!g.defined()) return {at::Tensor()};
    at::Tensor saved = grad_.unpack();
    if (is_plain_cpu_one(g)) return {saved};
    return {saved.mul(g)};
  }

  std::string name() const override { return name_; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    grad_.reset_data();
  }

  torch::autograd::SavedVariable grad_;
  const char* name_;
};

// Calls the op below autograd; when `input` requires grad, attaches a SavedGradBackward to the loss (the
// first output) holding the gradient (the last output).
template <typename Op, typename... Args>
auto call_with_saved_grad(const Op& op, const char* node_name, const at::Tensor& input, const Args&... args) {
  decltype(op.call(input, args...)) out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = op.call(input, args...);
  }
  if (torch::autograd::compute_requires_grad(input)) {
    constexpr size_t last = std::tuple_size<decltype(out)>::value - 1;
    auto node = c10::make_intrusive<SavedGradBackward>(node_name);
    node->set_next_edges(torch::autograd::collect_next_edges(input));
    node->grad_ = torch::autograd::SavedVariable(std::get<last>(out), /*is_output=*/false);
    torch::autograd::set_history(std::get<0>(out), node);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> clipped_surrogate_loss_autograd(
    const at::Tensor& logp, const at::Tensor& old_logp, const at::Tensor& advantages, double clip_coef) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("rlarena::clipped_surrogate_loss", "").typed<LossFn>();
  return call_with_saved_grad(op, "ClippedSurrogateLossBackward", logp, old_logp, advantages, clip_coef);
}

using ValueLossFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                       double);

std::tuple<at::Tensor, at::Tensor> clipped_value_loss_autograd(const at::Tensor& value, const at::Tensor& old_value,
                                                               const at::Tensor& returns, double clip_coef) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("rlarena::clipped_value_loss", "").typed<ValueLossFn>();
  return call_with_saved_grad(op, "ClippedValueLossBackward", value, old_value, returns, clip_coef);
}

using MeanFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&);

std::tuple<at::Tensor, at::Tensor> mean_autograd(const at::Tensor& x) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("rlarena::mean", "").typed<MeanFn>();
  return call_with_saved_grad(op, "MeanBackward", x);
}

// ---- the default actor-critic's evaluation (csrc/cpu/gaussian_mlp.cpp) ----------------------------------

using EvaluateFn = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                              at::TensorList, at::TensorList,
                                                                              const at::Tensor&, c10::string_view);
using EvaluateBackwardFn = std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor>(
    const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&,
    const at::Tensor&, const at::Tensor&, at::TensorList, at::TensorList, const at::Tensor&, c10::string_view,
    const at::Tensor&, bool);

// Backward node of gaussian_mlp_evaluate: the upstream gradients of (logp, entropy, value) in, the
// gradients of (obs, actions, actor..., critic..., log_std) out, through gaussian_mlp_evaluate_backward.
// First-order only. In C++ rather than torch.library.register_autograd: measured here at 64 rows, the
// Python glue (setup_context, pytree over the parameter lists, backward) cost more than both kernels.
struct GaussianMLPEvaluateBackward : public torch::autograd::Node {
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("rlarena::gaussian_mlp_evaluate_backward", "")
                               .typed<EvaluateBackwardFn>();
    std::vector<at::Tensor> inputs;
    for (auto& v : saved_) inputs.push_back(v.unpack());
    const at::Tensor saved = saved_out_.unpack();
    const auto upstream = [&](size_t i) -> c10::optional<at::Tensor> {
      if (i < grads.size() && grads[i].defined()) return grads[i];
      return c10::nullopt;
    };
    const bool input_grads = should_compute_output(0) || should_compute_output(1);
    const at::TensorList params(inputs.data() + 2, inputs.size() - 3);
    std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> out;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      out = op.call(upstream(0), upstream(1), upstream(2), inputs[0], inputs[1], params.slice(0, n_actor_),
                    params.slice(n_actor_), inputs.back(), activation_, saved, input_grads);
    }
    torch::autograd::variable_list result;
    result.push_back(input_grads && should_compute_output(0) ? std::get<1>(out) : at::Tensor());
    result.push_back(input_grads && should_compute_output(1) ? std::get<2>(out) : at::Tensor());
    // No gradient (not zeros) for a network no upstream gradient reached, as autograd gives: an optimizer
    // then leaves those parameters alone.
    const bool actor = upstream(0).has_value() || upstream(1).has_value(), critic = upstream(2).has_value();
    auto& grads_out = std::get<0>(out);
    for (size_t i = 0; i < grads_out.size(); ++i) {
      const bool reached = i + 1 == grads_out.size() ? actor : (i < n_actor_ ? actor : critic);
      result.push_back(reached ? std::move(grads_out[i]) : at::Tensor());
    }
    return result;
  }

  std::string name() const override { return "GaussianMLPEvaluateBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& v : saved_) v.reset_data();
    saved_out_.reset_data();
  }

  std::vector<torch::autograd::SavedVariable> saved_;  // obs, actions, actor..., critic..., log_std
  torch::autograd::SavedVariable saved_out_;
  size_t n_actor_ = 0;
  std::string activation_;
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gaussian_mlp_evaluate_autograd(
    const at::Tensor& obs, const at::Tensor& actions, at::TensorList actor, at::TensorList critic,
    const at::Tensor& log_std, c10::string_view activation) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("rlarena::gaussian_mlp_evaluate", "").typed<EvaluateFn>();
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    out = op.call(obs, actions, actor, critic, log_std, activation);
  }
  std::vector<at::Tensor> inputs{obs, actions};
  inputs.insert(inputs.end(), actor.begin(), actor.end());
  inputs.insert(inputs.end(), critic.begin(), critic.end());
  inputs.push_back(log_std);
  if (torch::autograd::compute_requires_grad(inputs)) {
    auto node = c10::make_intrusive<GaussianMLPEvaluateBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(inputs));
    for (const auto& t : inputs) node->saved_.emplace_back(t, /*is_output=*/false);
    node->saved_out_ = torch::autograd::SavedVariable(std::get<3>(out), /*is_output=*/false);
    node->n_actor_ = actor.size();
    node->activation_ = std::string(activation);
    std::vector<at::Tensor> differentiable{std::get<0>(out), std::get<1>(out), std::get<2>(out)};
    torch::autograd::set_history(differentiable, node);
  }
  return out;
}

}  // namespace
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, Autograd, m) {
  m.impl("gaussian_mlp_evaluate", &rlarena::gaussian_mlp_evaluate_autograd);
  m.impl("mean", &rlarena::mean_autograd);
  m.impl("gae", &rlarena::gae_no_grad);
  m.impl("clipped_surrogate_loss", &rlarena::clipped_surrogate_loss_autograd);
  m.impl("clipped_value_loss", &rlarena::clipped_value_loss_autograd);
}
