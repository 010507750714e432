// The CPU kernels of rlarena::gaussian_mlp_evaluate and its backward: the default actor-critic
// (algorithms/policies.py's MLPActorCritic with separate MLPs and a Gaussian head) on a batch of rows,
// forward to (log-prob, entropy, value), backward from any upstream gradient of the three to every
// parameter (and, when asked, to the observations and actions). Any algorithm that calls
// policy.evaluate(...) on the default policy runs this, with its own loss in Python and loss.backward().
//
// Why: at the minibatch sizes of on-policy updates (64-2048 rows, 64 hidden units) the autograd path's ~40
// ATen calls cost more in dispatch than their arithmetic, and MKL's matrix products pick their blocking and
// their FMA use per CPU. Here every sum runs in one fixed order (mlp.h: matmul_acc, row sums in row order),
// with FMA contraction off and no libm call in float32: the same bits on every x86-64 CPU, whatever ISA
// variant runs. The float64 instantiation exists for gradcheck (it uses libm's tanh).
#include "mlp_rows.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

namespace rlarena {
namespace cpu {
namespace {

constexpr const char* kOp = "rlarena.gaussian_mlp_evaluate";
// log(sqrt(2 pi)), as the collector's kernel (mlp_act.cpp) subtracts it.
constexpr double kLogSqrt2Pi = 0.918938533204672742;

template <typename S>
void zero_grads(const mlp::Net<S>& net, S* const* grads) {
  for (size_t l = 0; l < net.layers.size(); ++l) {
    std::fill(grads[2 * l], grads[2 * l] + net.layers[l].in * net.layers[l].out, S(0));
    std::fill(grads[2 * l + 1], grads[2 * l + 1] + net.layers[l].out, S(0));
  }
}

// Where the saved activations of B rows sit in the `saved` output: z and h of the actor, then of the critic.
template <typename S>
struct Saved {
  Saved(S* base, int64_t B, int64_t actor_width, int64_t critic_width)
      : z_actor(base),
        h_actor(base + B * actor_width),
        z_critic(base + 2 * B * actor_width),
        h_critic(base + 2 * B * actor_width + B * critic_width) {}
  S* z_actor;
  S* h_actor;
  S* z_critic;
  S* h_critic;
};

// The rows and the actor-critic both kernels read.
template <typename S>
struct Rows {
  const S* obs;  // [B, D]
  const S* actions;  // [B, A]
  int64_t B;
  int64_t A;
  const mlp::Net<S>* actor;
  const mlp::Net<S>* critic;
  const S* log_std;
  int act;
};

template <typename S>
struct ForwardArgs : Rows<S> {
  S* logp;
  S* entropy;
  S* value;
  S* saved;
  S* wt;  // scratch: the largest weight matrix
};

template <typename T>
RLARENA_INLINE void forward_impl(const ForwardArgs<T>* a) {
  using S = T;
  const int64_t B = a->B, A = a->A;
  Saved<S> sv(a->saved, B, a->actor->width, a->critic->width);
  mlp::forward_rows(*a->actor, a->act, a->obs, B, sv.z_actor, sv.h_actor, a->wt);
  mlp::forward_rows(*a->critic, a->act, a->obs, B, sv.z_critic, sv.h_critic, a->wt);
  const S* means = sv.h_actor + (a->actor->width - A) * B;  // the last layer's block [B, A]
  const S* values = sv.h_critic + (a->critic->width - 1) * B;  // [B, 1]
  const S log_sqrt_2pi = static_cast<S>(kLogSqrt2Pi);
  // The diagonal Gaussian's entropy, the same for every row: sum_k 0.5 + log sqrt(2 pi) + log_std_k.
  S entropy = S(0);
  for (int64_t k = 0; k < A; ++k) entropy = entropy + ((S(0.5) + log_sqrt_2pi) + a->log_std[k]);
  for (int64_t b = 0; b < B; ++b) {
    const S* mu = means + b * A;
    const S* action = a->actions + b * A;
    S logp = S(0);
    for (int64_t k = 0; k < A; ++k) {  // the collector's expression, in order over the action dimensions
      const S std = vexp(a->log_std[k]);
      const S d = action[k] - mu[k];
      logp = logp + ((-(d * d) / (S(2) * (std * std)) - a->log_std[k]) - log_sqrt_2pi);
    }
    a->logp[b] = logp;
    a->entropy[b] = entropy;
    a->value[b] = values[b];
  }
}

RLARENA_ISA_DISPATCH(forward, forward_impl)

template <typename S>
struct BackwardArgs : Rows<S> {
  const S* g_logp;  // [B] or null (zero)
  const S* g_entropy;  // [B] or null
  const S* g_value;  // [B] or null
  const S* saved;
  S* const* actor_grads;  // per layer: weight, bias
  S* const* critic_grads;
  S* log_std_grad;
  S* obs_grad;  // [B, D] or null
  S* actions_grad;  // [B, A] or null
  S* g;  // scratch [B, widest]
  S* g_prev;
  S* g_t;
};

template <typename T>
RLARENA_INLINE void backward_impl(const BackwardArgs<T>* a) {
  using S = T;
  const int64_t B = a->B, A = a->A;
  Saved<S> sv(const_cast<S*>(a->saved), B, a->actor->width, a->critic->width);
  const S* means = sv.h_actor + (a->actor->width - A) * B;
  // d logp / d mean_k = (a_k - mean_k) / std_k^2; d logp / d log_std_k = (a_k - mean_k)^2 / std_k^2 - 1;
  // d entropy / d log_std_k = 1. The log-std gradient sums over the rows in row order.
  S* g_mean = a->g;  // [B, A]
  for (int64_t k = 0; k < A; ++k) a->log_std_grad[k] = S(0);
  for (int64_t b = 0; b < B; ++b) {
    const S g_logp = a->g_logp == nullptr ? S(0) : a->g_logp[b];
    const S g_ent = a->g_entropy == nullptr ? S(0) : a->g_entropy[b];
    const S* mu = means + b * A;
    const S* action = a->actions + b * A;
    for (int64_t k = 0; k < A; ++k) {
      const S std = vexp(a->log_std[k]);
      const S var = std * std;
      const S d = action[k] - mu[k];
      g_mean[b * A + k] = g_logp * (d / var);
      a->log_std_grad[k] = (a->log_std_grad[k] + g_logp * ((d * d) / var - S(1))) + g_ent;
      if (a->actions_grad != nullptr) a->actions_grad[b * A + k] = -g_mean[b * A + k];
    }
  }
  const int64_t D = a->actor->layers.front().in;
  if (a->obs_grad != nullptr) std::fill(a->obs_grad, a->obs_grad + B * D, S(0));
  // A network no upstream gradient reaches (the actor when only the value has one: a critic's own loss) is
  // not run backward: its gradients are zero.
  if (a->g_logp != nullptr || a->g_entropy != nullptr)
    mlp::backward_rows(*a->actor, a->act, a->obs, B, sv.z_actor, sv.h_actor, a->g, a->g_prev, a->g_t, a->actor_grads,
                  a->obs_grad);
  else
    zero_grads(*a->actor, a->actor_grads);
  if (a->g_value != nullptr) {
    std::copy(a->g_value, a->g_value + B, a->g);
    mlp::backward_rows(*a->critic, a->act, a->obs, B, sv.z_critic, sv.h_critic, a->g, a->g_prev, a->g_t,
                  a->critic_grads, a->obs_grad);
  } else {
    zero_grads(*a->critic, a->critic_grads);
  }
}

RLARENA_ISA_DISPATCH(backward, backward_impl)

// ---- checks and views ----------------------------------------------------------------------------------

void check_tensor(const at::Tensor& t, const at::Tensor& obs, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == obs.scalar_type(), kOp, ": '", name, "' is ", t.scalar_type(),
                   " but obs is ", obs.scalar_type(), " (all float32, or all float64)");
  TORCH_CHECK(t.device().is_cpu(), kOp, ": '", name, "' must be on the CPU, got ", t.device());
}

template <typename S>
mlp::Net<S> net_of(at::TensorList params, int64_t in, const at::Tensor& obs, const char* which,
              std::vector<at::Tensor>& keep) {
  TORCH_CHECK_VALUE(!params.empty() && params.size() % 2 == 0, kOp, ": ", which,
                    " must be [weight, bias] pairs, got ", params.size(), " tensors");
  mlp::Net<S> net;
  for (size_t l = 0; l < params.size() / 2; ++l) {
    check_tensor(params[2 * l], obs, which);
    check_tensor(params[2 * l + 1], obs, which);
    const at::Tensor w = params[2 * l].contiguous();
    const at::Tensor b = params[2 * l + 1].contiguous();
    TORCH_CHECK_VALUE(w.dim() == 2 && w.size(1) == in && b.dim() == 1 && b.size(0) == w.size(0), kOp, ": ", which,
                      " layer ", l, " has weight ", w.sizes(), " and bias ", b.sizes(), " but its input has ", in,
                      " features");
    keep.push_back(w);
    keep.push_back(b);
    net.layers.push_back({w.data_ptr<S>(), b.data_ptr<S>(), w.size(1), w.size(0)});
    net.width += w.size(0);
    in = w.size(0);
  }
  return net;
}

// The inputs of both kernels, checked and viewed as plain arrays.
template <typename S>
struct Inputs {
  Inputs(const at::Tensor& obs_in, const at::Tensor& actions_in, at::TensorList actor_params,
         at::TensorList critic_params, const at::Tensor& log_std_in, c10::string_view activation) {
    TORCH_CHECK(obs_in.device().is_cpu(), kOp, ": obs must be on the CPU, got ", obs_in.device());
    TORCH_CHECK_VALUE(obs_in.dim() == 2 && actions_in.dim() == 2 && actions_in.size(0) == obs_in.size(0), kOp,
                      ": obs must be [rows, obs_dim] and actions [rows, act_dim], got ", obs_in.sizes(), " and ",
                      actions_in.sizes());
    check_tensor(actions_in, obs_in, "actions");
    check_tensor(log_std_in, obs_in, "log_std");
    act = mlp::activation_code(activation.data(), activation.size());
    TORCH_CHECK_VALUE(act >= 0, kOp, ": activation must be tanh, relu or elu, got ", activation);
    obs = obs_in.contiguous();
    actions = actions_in.contiguous();
    log_std = log_std_in.contiguous();
    actor = net_of<S>(actor_params, obs.size(1), obs, "actor", keep);
    critic = net_of<S>(critic_params, obs.size(1), obs, "critic", keep);
    A = actor.layers.back().out;
    TORCH_CHECK_VALUE(actions.size(1) == A && log_std.dim() == 1 && log_std.size(0) == A, kOp, ": the actor has ",
                      A, " outputs but actions are ", actions.sizes(), " and log_std ", log_std.sizes());
    TORCH_CHECK_VALUE(critic.layers.back().out == 1, kOp, ": the critic must have one output, got ",
                      critic.layers.back().out);
    for (const mlp::Net<S>* net : {&actor, &critic})
      for (const auto& l : net->layers) {
        widest = std::max(widest, std::max(l.in, l.out));
        biggest = std::max(biggest, l.in * l.out);
      }
  }
  int64_t rows() const { return obs.size(0); }
  Rows<S> view() const {
    return {obs.template data_ptr<S>(), actions.template data_ptr<S>(), rows(), A, &actor, &critic,
            log_std.template data_ptr<S>(), act};
  }
  int64_t saved_size() const { return 2 * rows() * (actor.width + critic.width); }

  at::Tensor obs, actions, log_std;
  mlp::Net<S> actor, critic;
  int act = 0;
  int64_t A = 0, widest = 1, biggest = 1;
  std::vector<at::Tensor> keep;
};

template <typename S>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward_typed(const at::Tensor& obs,
                                                                         const at::Tensor& actions,
                                                                         at::TensorList actor, at::TensorList critic,
                                                                         const at::Tensor& log_std,
                                                                         c10::string_view activation) {
  const Inputs<S> in(obs, actions, actor, critic, log_std, activation);
  const int64_t B = in.rows();
  at::Tensor logp = at::empty({B}, in.obs.options());
  at::Tensor entropy = at::empty({B}, in.obs.options());
  at::Tensor value = at::empty({B}, in.obs.options());
  at::Tensor saved = at::empty({in.saved_size()}, in.obs.options());
  std::vector<S> wt(static_cast<size_t>(in.biggest));
  const ForwardArgs<S> args{in.view(), logp.data_ptr<S>(), entropy.data_ptr<S>(), value.data_ptr<S>(),
                            saved.data_ptr<S>(), wt.data()};
  forward<S>(&args);
  return {logp, entropy, value, saved};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gaussian_mlp_evaluate_cpu(
    const at::Tensor& obs, const at::Tensor& actions, at::TensorList actor, at::TensorList critic,
    const at::Tensor& log_std, c10::string_view activation) {
  TORCH_CHECK_TYPE(obs.scalar_type() == at::kFloat || obs.scalar_type() == at::kDouble, kOp,
                   ": obs must be float32 or float64, got ", obs.scalar_type());
  if (obs.scalar_type() == at::kDouble) return forward_typed<double>(obs, actions, actor, critic, log_std, activation);
  return forward_typed<float>(obs, actions, actor, critic, log_std, activation);
}

// A [B] upstream gradient as a contiguous array, or null for an undefined (zero) one.
template <typename S>
const S* upstream(const c10::optional<at::Tensor>& g, int64_t B, const at::Tensor& obs, const char* name,
                  std::vector<at::Tensor>& keep) {
  if (!g.has_value() || !g->defined()) return nullptr;
  check_tensor(*g, obs, name);
  TORCH_CHECK_VALUE(g->numel() == B, kOp, ": the gradient of ", name, " has shape ", g->sizes(), ", expected [", B,
                    "]");
  keep.push_back(g->contiguous());
  return keep.back().template data_ptr<S>();
}

template <typename S>
std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> backward_typed(
    const c10::optional<at::Tensor>& grad_logp, const c10::optional<at::Tensor>& grad_entropy,
    const c10::optional<at::Tensor>& grad_value, const at::Tensor& obs, const at::Tensor& actions,
    at::TensorList actor, at::TensorList critic, const at::Tensor& log_std, c10::string_view activation,
    const at::Tensor& saved_in, bool input_grads) {
  const Inputs<S> in(obs, actions, actor, critic, log_std, activation);
  const int64_t B = in.rows();
  check_tensor(saved_in, in.obs, "saved");
  TORCH_CHECK_VALUE(saved_in.numel() == in.saved_size(), kOp, ": 'saved' has ", saved_in.numel(),
                    " elements, expected ", in.saved_size(), " (the forward's fourth output for these inputs)");
  const at::Tensor saved = saved_in.contiguous();
  std::vector<at::Tensor> keep;
  const S* g_logp = upstream<S>(grad_logp, B, in.obs, "logp", keep);
  const S* g_entropy = upstream<S>(grad_entropy, B, in.obs, "entropy", keep);
  const S* g_value = upstream<S>(grad_value, B, in.obs, "value", keep);

  std::vector<at::Tensor> grads;  // actor..., critic..., log_std: each parameter's gradient
  std::vector<S*> actor_ptrs, critic_ptrs;
  for (const auto& [params, ptrs] : {std::pair{actor, &actor_ptrs}, {critic, &critic_ptrs}})
    for (const auto& p : params) {
      grads.push_back(at::empty(p.sizes(), in.obs.options()));
      ptrs->push_back(grads.back().data_ptr<S>());
    }
  grads.push_back(at::empty({in.A}, in.obs.options()));
  at::Tensor obs_grad = at::empty({input_grads ? B : 0, in.obs.size(1)}, in.obs.options());
  at::Tensor actions_grad = at::empty({input_grads ? B : 0, in.A}, in.obs.options());
  std::vector<S> scratch(static_cast<size_t>(3 * B * in.widest));
  const BackwardArgs<S> args{in.view(),
                             g_logp,
                             g_entropy,
                             g_value,
                             saved.data_ptr<S>(),
                             actor_ptrs.data(),
                             critic_ptrs.data(),
                             grads.back().data_ptr<S>(),
                             input_grads ? obs_grad.data_ptr<S>() : nullptr,
                             input_grads ? actions_grad.data_ptr<S>() : nullptr,
                             scratch.data(),
                             scratch.data() + B * in.widest,
                             scratch.data() + 2 * B * in.widest};
  backward<S>(&args);
  return {grads, obs_grad, actions_grad};
}

std::tuple<std::vector<at::Tensor>, at::Tensor, at::Tensor> gaussian_mlp_evaluate_backward_cpu(
    const c10::optional<at::Tensor>& grad_logp, const c10::optional<at::Tensor>& grad_entropy,
    const c10::optional<at::Tensor>& grad_value, const at::Tensor& obs, const at::Tensor& actions,
    at::TensorList actor, at::TensorList critic, const at::Tensor& log_std, c10::string_view activation,
    const at::Tensor& saved, bool input_grads) {
  TORCH_CHECK_TYPE(obs.scalar_type() == at::kFloat || obs.scalar_type() == at::kDouble, kOp,
                   ": obs must be float32 or float64, got ", obs.scalar_type());
  if (obs.scalar_type() == at::kDouble)
    return backward_typed<double>(grad_logp, grad_entropy, grad_value, obs, actions, actor, critic, log_std,
                                  activation, saved, input_grads);
  return backward_typed<float>(grad_logp, grad_entropy, grad_value, obs, actions, actor, critic, log_std,
                               activation, saved, input_grads);
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) {
  m.impl("gaussian_mlp_evaluate", &rlarena::cpu::gaussian_mlp_evaluate_cpu);
  m.impl("gaussian_mlp_evaluate_backward", &rlarena::cpu::gaussian_mlp_evaluate_backward_cpu);
}
