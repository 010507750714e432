// The CPU kernel of rlarena::ppo_gaussian_mlp_epoch_: one PPO epoch of the default MLP actor-critic with a
// Gaussian head (algorithms/policies.py) in one call. For each minibatch of a given permutation of the
// rollout: the forward pass of actor and critic, the clipped surrogate, clipped value and entropy losses,
// their gradient written out by hand, gradient-norm clipping and an Adam step, in place on the parameters
// and on torch.optim.Adam's state tensors. algorithms/ppo.py's minibatch loop (autograd, torch's losses,
// clip_grad_norm_, torch.optim.Adam) is the definition; tests/test_ppo_epoch.py compares the two.
//
// Why: at PPO's minibatch sizes (64 rows, 64 hidden units) the arithmetic of a step is tens of
// microseconds, and the ~100 torch calls of the autograd path cost ~1.5 ms of dispatch and Python.
//
// Every sum runs in one fixed order (mlp.h), with FMA contraction off and no libm call (vexp; Adam's
// beta^step by repeated squaring): the same bits on every x86-64 CPU, whatever ISA variant runs.
#include "mlp_rows.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace rlarena {
namespace cpu {
namespace {

constexpr float kLogSqrt2Pi = 0.918938533204672742f;  // as the collector's kernel (mlp_act.cpp)
constexpr int kStats = 6;  // policy_loss, value_loss, entropy, clip_fraction, approx_kl, grad_norm

// One MLP (its layers point into the parameters, updated in place by Adam) and where each layer's weight
// and bias gradients sit in the flat gradient buffer.
struct Net : mlp::Net<float> {
  std::vector<int64_t> grad_weight;  // offsets into EpochArgs::grads
  std::vector<int64_t> grad_bias;
};

struct EpochArgs {
  const float* obs;  // [rows, obs_dim]
  int64_t obs_dim;
  const float* actions;  // [rows, act_dim]
  int64_t act_dim;
  const float* old_logp;
  const float* advantages;
  const float* returns;
  const float* old_values;
  const Net* actor;
  const Net* critic;
  float* log_std;  // [act_dim], a parameter (updated by Adam)
  int64_t log_std_grad;  // offset of its gradient in grads
  int act;
  float clip;
  float value_clip;  // inf: unclipped
  float ent_coef;
  float vf_coef;
  bool normalize_advantages;
  // scratch, sized for the largest minibatch
  float* x;       // [B, obs_dim] the minibatch's observations
  float* wt;      // one transposed weight matrix
  float* z_actor; // per layer l: [B, out_l] blocks, one after the other
  float* h_actor;
  float* z_critic;
  float* h_critic;
  float* g;       // [B, widest layer] gradient w.r.t. a layer's pre-activations
  float* g_prev;
  float* g_t;     // g transposed
  float* adv;     // [B] the minibatch's (normalized) advantages
  float* g_value; // [B] d loss / d value
  float* grads;   // flat gradient of every parameter (slot order)
};

// mlp::backward_rows into the flat gradient buffer.
RLARENA_INLINE void backward_into(const Net& net, int act, const float* x, int64_t B, const float* z, const float* h,
                                  float* g, float* g_prev, float* g_t, float* grads) {
  std::vector<float*> ptrs;
  for (size_t l = 0; l < net.layers.size(); ++l) {
    ptrs.push_back(grads + net.grad_weight[l]);
    ptrs.push_back(grads + net.grad_bias[l]);
  }
  mlp::backward_rows(net, act, x, B, z, h, g, g_prev, g_t, ptrs.data(), static_cast<float*>(nullptr));
}

// Forward, losses and gradient of one minibatch (rows of the rollout); writes grads and the minibatch's
// statistics (stats[0..4]: policy loss, value loss, entropy, clip fraction, approx KL).
template <typename T>
RLARENA_INLINE void minibatch_grad_impl(const EpochArgs* a, const int64_t* rows, int64_t B, double* stats) {
  const int64_t D = a->obs_dim, A = a->act_dim;
  for (int64_t b = 0; b < B; ++b) std::copy(a->obs + rows[b] * D, a->obs + rows[b] * D + D, a->x + b * D);

  // Advantages, normalized per minibatch as algorithms/base.py's normalize: (A - mean) / (std + 1e-8), with
  // the unbiased std; mean and variance summed in double, in row order.
  double mean = 0.0;
  for (int64_t b = 0; b < B; ++b) mean += static_cast<double>(a->advantages[rows[b]]);
  mean /= static_cast<double>(B);
  double var = 0.0;
  for (int64_t b = 0; b < B; ++b) {
    const double d = static_cast<double>(a->advantages[rows[b]]) - mean;
    var += d * d;
  }
  const float fmean = static_cast<float>(mean);
  const float fstd = B > 1 ? static_cast<float>(std::sqrt(var / static_cast<double>(B - 1))) : 0.0f;
  for (int64_t b = 0; b < B; ++b) {
    const float adv = a->advantages[rows[b]];
    a->adv[b] = !a->normalize_advantages ? adv : B > 1 ? (adv - fmean) / (fstd + 1e-8f) : adv - fmean;
  }

  mlp::forward_rows(*a->actor, a->act, a->x, B, a->z_actor, a->h_actor, a->wt);
  mlp::forward_rows(*a->critic, a->act, a->x, B, a->z_critic, a->h_critic, a->wt);
  const float* means = a->h_actor + (a->actor->width - A) * B;   // last layer's block [B, A]
  const float* values = a->h_critic + (a->critic->width - 1) * B;  // [B, 1]

  // Per row: log-prob (the collector's expression), the surrogate's and the value loss's gradients.
  const float neg_inv_n = static_cast<float>(-1.0 / static_cast<double>(B));
  const float inv_n = static_cast<float>(1.0 / static_cast<double>(B));
  const float lo = 1.0f - a->clip, hi = 1.0f + a->clip;
  double s_surr = 0.0, s_clip = 0.0, s_kl = 0.0, s_value = 0.0;
  float* g_mean = a->g;  // [B, A]
  float* g_logstd = a->grads + a->log_std_grad;
  for (int64_t k = 0; k < A; ++k) g_logstd[k] = 0.0f;
  float* g_value = a->g_value;
  for (int64_t b = 0; b < B; ++b) {
    const float* mu = means + b * A;
    const float* action = a->actions + rows[b] * A;
    float logp = 0.0f;
    for (int64_t k = 0; k < A; ++k) {
      const float std = vexp(a->log_std[k]);
      const float d = action[k] - mu[k];
      logp = logp + ((-(d * d) / (2.0f * (std * std)) - a->log_std[k]) - kLogSqrt2Pi);
    }
    // Clipped surrogate (clipped_loss.cpp's expressions and tie rule).
    const float log_ratio = logp - a->old_logp[rows[b]];
    const float ratio = vexp(log_ratio);
    const float adv = a->adv[b];
    const float s1 = ratio * adv;
    const float lim = ratio < lo ? lo : hi;
    const float s2 = (ratio < lo) | (ratio > hi) ? lim * adv : s1;
    const float g_logp = s1 <= s2 ? neg_inv_n * s1 : 0.0f;
    s_surr += static_cast<double>(s1 <= s2 ? s1 : s2);
    const float dev = ratio - 1.0f;
    s_clip += std::abs(dev) > a->clip ? 1.0 : 0.0;
    s_kl += static_cast<double>(dev - log_ratio);
    // d logp / d mean_k = (a_k - mean_k) / std_k^2;  d logp / d log_std_k = (a_k - mean_k)^2 / std_k^2 - 1.
    for (int64_t k = 0; k < A; ++k) {
      const float std = vexp(a->log_std[k]);
      const float var_k = std * std;
      const float d = action[k] - mu[k];
      g_mean[b * A + k] = g_logp * (d / var_k);
      g_logstd[k] = g_logstd[k] + g_logp * ((d * d) / var_k - 1.0f);
    }
    // Clipped value loss (value_loss.cpp's expressions and tie rule), times vf_coef.
    const float v = values[b], old = a->old_values[rows[b]], ret = a->returns[rows[b]];
    const float step = v - old;
    const float clamped = step < -a->value_clip ? -a->value_clip : (step > a->value_clip ? a->value_clip : step);
    const float err = v - ret;
    const float err_clipped = (old + clamped) - ret;
    const float u = err * err, w = err_clipped * err_clipped;
    const float gv = u >= w ? err * inv_n
                            : ((step < -a->value_clip) | (step > a->value_clip) ? 0.0f : err_clipped * inv_n);
    g_value[b] = a->vf_coef * gv;
    s_value += static_cast<double>(u >= w ? u : w);
  }
  // Entropy of the diagonal Gaussian (the same for every row): sum_k 0.5 + log sqrt(2 pi) + log_std_k. Its
  // mean enters the loss as -ent_coef * entropy: d / d log_std_k = -ent_coef.
  double entropy = 0.0;
  for (int64_t k = 0; k < A; ++k) {
    entropy += 0.5 + static_cast<double>(kLogSqrt2Pi) + static_cast<double>(a->log_std[k]);
    g_logstd[k] = g_logstd[k] - a->ent_coef;
  }

  backward_into(*a->actor, a->act, a->x, B, a->z_actor, a->h_actor, a->g, a->g_prev, a->g_t, a->grads);
  std::copy(g_value, g_value + B, a->g);
  backward_into(*a->critic, a->act, a->x, B, a->z_critic, a->h_critic, a->g, a->g_prev, a->g_t, a->grads);

  const double n = static_cast<double>(B);
  stats[0] = -s_surr / n;
  stats[1] = 0.5 * s_value / n;
  stats[2] = entropy;
  stats[3] = s_clip / n;
  stats[4] = s_kl / n;
}

RLARENA_ISA_DISPATCH(minibatch_grad, minibatch_grad_impl)

// sqrt(sum of squares) of the flat gradient in double: eight interleaved partial sums in a fixed pattern
// (element i goes to sum i % 8), added in order; the same on every ISA.
double grad_norm(const float* g, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(g[i + k]) * static_cast<double>(g[i + k]);
  for (int k = 0; i < n; ++i, ++k) acc[k] += static_cast<double>(g[i]) * static_cast<double>(g[i]);
  double total = 0.0;
  for (int k = 0; k < 8; ++k) total += acc[k];
  return std::sqrt(total);
}


// One parameter's optimizer view: torch.optim.Adam's state tensors for it.
struct Slot {
  float* param;
  float* exp_avg;
  float* exp_avg_sq;
  float* step;  // float32 scalar, torch's fused Adam's step counter
  int64_t numel;
  int64_t grad;  // offset into the flat gradient
};

struct AdamArgs {
  float lr;
  double beta1;
  double beta2;
  float eps;
};

// torch's Adam (fused=True, no weight decay, no amsgrad): m = lerp(m, g, 1 - b1), v = b2 v + (1 - b2) g^2,
// p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
template <typename T>
RLARENA_INLINE void adam_slot_impl(const Slot* s, const float* __restrict__ grad, const AdamArgs* a) {
  const double t = static_cast<double>(*s->step);
  const float step_size = static_cast<float>(static_cast<double>(a->lr) / (1.0 - whole_power(a->beta1, t)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - whole_power(a->beta2, t)));
  const float w1 = static_cast<float>(1.0 - a->beta1);
  const float b2 = static_cast<float>(a->beta2);
  const float w2 = static_cast<float>(1.0 - a->beta2);
  const float eps = a->eps;
  float* __restrict__ p = s->param;
  float* __restrict__ m = s->exp_avg;
  float* __restrict__ v = s->exp_avg_sq;
#pragma omp simd
  for (int64_t i = 0; i < s->numel; ++i) {
    const float g = grad[i];
    m[i] = m[i] + w1 * (g - m[i]);
    v[i] = v[i] * b2 + w2 * (g * g);
    const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
    p[i] = p[i] - (step_size * m[i]) / denom;
  }
}

RLARENA_ISA_DISPATCH(adam_slot, adam_slot_impl)

bool plain_float(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat && t.device().is_cpu() && t.is_contiguous();
}

void check_plain(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(plain_float(t), "rlarena.ppo_gaussian_mlp_epoch_: '", name,
                    "' must be a contiguous float32 CPU tensor, got ", t.scalar_type(), " on ", t.device(),
                    t.is_contiguous() ? "" : " (not contiguous)");
}

// Layers of [weight, bias] pairs chained from `in` inputs (checked), their gradient offsets from `next`.
Net net_of(at::TensorList params, int64_t in, const char* which, int64_t& next) {
  TORCH_CHECK_VALUE(!params.empty() && params.size() % 2 == 0, "rlarena.ppo_gaussian_mlp_epoch_: ", which,
                    " must be [weight, bias] pairs, got ", params.size(), " tensors");
  Net net;
  for (size_t l = 0; l < params.size() / 2; ++l) {
    const at::Tensor& w = params[2 * l];
    const at::Tensor& b = params[2 * l + 1];
    check_plain(w, which);
    check_plain(b, which);
    TORCH_CHECK_VALUE(w.dim() == 2 && w.size(1) == in && b.dim() == 1 && b.size(0) == w.size(0),
                      "rlarena.ppo_gaussian_mlp_epoch_: ", which, " layer ", l, " has weight ", w.sizes(),
                      " and bias ", b.sizes(), " but its input has ", in, " features");
    net.layers.push_back({w.data_ptr<float>(), b.data_ptr<float>(), w.size(1), w.size(0)});
    net.grad_weight.push_back(next);
    next += w.numel();
    net.grad_bias.push_back(next);
    next += b.numel();
    net.width += w.size(0);
    in = w.size(0);
  }
  return net;
}

at::Tensor ppo_gaussian_mlp_epoch_cpu(const at::Tensor& obs, const at::Tensor& actions, const at::Tensor& old_logp,
                                      const at::Tensor& advantages, const at::Tensor& returns,
                                      const at::Tensor& old_values, const at::Tensor& perm, int64_t num_minibatches,
                                      at::TensorList actor, at::TensorList critic, const at::Tensor& log_std,
                                      at::TensorList exp_avg, at::TensorList exp_avg_sq, at::TensorList step,
                                      c10::string_view activation, double clip_coef, double value_clip,
                                      double ent_coef, double vf_coef, bool normalize_advantages,
                                      double max_grad_norm, double lr, double beta1, double beta2, double eps) {
  constexpr const char* op = "rlarena.ppo_gaussian_mlp_epoch_";
  for (const auto& [t, name] : {std::pair{&obs, "obs"}, {&actions, "actions"}, {&old_logp, "old_logp"},
                                {&advantages, "advantages"}, {&returns, "returns"}, {&old_values, "old_values"},
                                {&log_std, "log_std"}})
    check_plain(*t, name);
  TORCH_CHECK_VALUE(obs.dim() == 2 && actions.dim() == 2 && actions.size(0) == obs.size(0), op,
                    ": obs must be [rows, obs_dim] and actions [rows, act_dim], got ", obs.sizes(), " and ",
                    actions.sizes());
  const int64_t rows = obs.size(0);
  for (const auto& [t, name] : {std::pair{&old_logp, "old_logp"}, {&advantages, "advantages"},
                                {&returns, "returns"}, {&old_values, "old_values"}})
    TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == rows, op, ": '", name, "' must be [", rows, "], got ",
                      t->sizes());
  TORCH_CHECK_VALUE(perm.scalar_type() == at::kLong && perm.dim() == 1 && perm.size(0) == rows &&
                        perm.device().is_cpu() && perm.is_contiguous(),
                    op, ": perm must be a contiguous int64 CPU permutation of the ", rows, " rows, got ",
                    perm.scalar_type(), " of shape ", perm.sizes());
  TORCH_CHECK_VALUE(1 <= num_minibatches && num_minibatches <= rows, op, ": num_minibatches must be in [1, ", rows,
                    "], got ", num_minibatches);
  const int act = mlp::activation_code(activation.data(), activation.size());
  TORCH_CHECK_VALUE(act >= 0, op, ": activation must be tanh, relu or elu, got ", activation);
  TORCH_CHECK_VALUE(clip_coef > 0 && value_clip > 0 && ent_coef >= 0 && vf_coef >= 0 && lr >= 0 && eps > 0 &&
                        0 <= beta1 && beta1 < 1 && 0 <= beta2 && beta2 < 1,
                    op, ": out-of-range hyperparameter");

  int64_t n_grads = 0;
  const Net actor_net = net_of(actor, obs.size(1), "actor", n_grads);
  const Net critic_net = net_of(critic, obs.size(1), "critic", n_grads);
  const int64_t act_dim = actor_net.layers.back().out;
  TORCH_CHECK_VALUE(actions.size(1) == act_dim && log_std.dim() == 1 && log_std.size(0) == act_dim, op,
                    ": the actor has ", act_dim, " outputs but actions are ", actions.sizes(), " and log_std ",
                    log_std.sizes());
  TORCH_CHECK_VALUE(critic_net.layers.back().out == 1, op, ": the critic must have one output");
  const int64_t log_std_grad = n_grads;
  n_grads += act_dim;

  // Adam slots, in the order actor..., critic..., log_std; the state lists follow that order.
  std::vector<at::Tensor> params(actor.begin(), actor.end());
  params.insert(params.end(), critic.begin(), critic.end());
  params.push_back(log_std);
  const size_t n_params = params.size();
  TORCH_CHECK_VALUE(exp_avg.size() == n_params && exp_avg_sq.size() == n_params && step.size() == n_params, op,
                    ": exp_avg, exp_avg_sq and step need one tensor per parameter (", n_params, ")");
  std::vector<Slot> slots;
  int64_t offset = 0;
  for (size_t i = 0; i < n_params; ++i) {
    check_plain(exp_avg[i], "exp_avg");
    check_plain(exp_avg_sq[i], "exp_avg_sq");
    check_plain(step[i], "step");
    TORCH_CHECK_VALUE(exp_avg[i].sizes() == params[i].sizes() && exp_avg_sq[i].sizes() == params[i].sizes() &&
                          step[i].numel() == 1,
                      op, ": the optimizer state of parameter ", i, " does not match its shape ", params[i].sizes());
    slots.push_back({params[i].data_ptr<float>(), exp_avg[i].data_ptr<float>(), exp_avg_sq[i].data_ptr<float>(),
                     step[i].data_ptr<float>(), params[i].numel(), offset});
    offset += params[i].numel();
  }

  const int64_t B_max = (rows + num_minibatches - 1) / num_minibatches;
  int64_t widest = obs.size(1), biggest = 0;
  for (const Net* net : {&actor_net, &critic_net})
    for (const auto& l : net->layers) {
      widest = std::max(widest, l.out);
      biggest = std::max(biggest, l.in * l.out);
    }
  std::vector<float> scratch(static_cast<size_t>(
      B_max * obs.size(1) + biggest + 2 * B_max * actor_net.width + 2 * B_max * critic_net.width +
      3 * B_max * widest + 2 * B_max + n_grads));
  float* next = scratch.data();
  auto take = [&](int64_t n) {
    float* p = next;
    next += n;
    return p;
  };
  EpochArgs args{obs.data_ptr<float>(), obs.size(1), actions.data_ptr<float>(), act_dim,
                 old_logp.data_ptr<float>(), advantages.data_ptr<float>(), returns.data_ptr<float>(),
                 old_values.data_ptr<float>(), &actor_net, &critic_net, log_std.data_ptr<float>(), log_std_grad, act,
                 static_cast<float>(clip_coef),
                 std::isinf(value_clip) ? std::numeric_limits<float>::infinity() : static_cast<float>(value_clip),
                 static_cast<float>(ent_coef), static_cast<float>(vf_coef), normalize_advantages,
                 take(B_max * obs.size(1)), take(biggest), take(B_max * actor_net.width),
                 take(B_max * actor_net.width), take(B_max * critic_net.width), take(B_max * critic_net.width),
                 take(B_max * widest), take(B_max * widest), take(B_max * widest), take(B_max), take(B_max),
                 take(n_grads)};
  const AdamArgs adam{static_cast<float>(lr), beta1, beta2, static_cast<float>(eps)};

  at::Tensor stats = at::empty({num_minibatches, kStats}, obs.options().dtype(at::kDouble));
  double* out = stats.data_ptr<double>();
  std::fill(out, out + num_minibatches * kStats, std::numeric_limits<double>::quiet_NaN());
  const int64_t* order = perm.data_ptr<int64_t>();
  // torch.tensor_split(perm, num_minibatches): the first rows % num_minibatches parts are one row longer.
  const int64_t base = rows / num_minibatches, extra = rows % num_minibatches;
  int64_t start = 0;
  for (int64_t mb = 0; mb < num_minibatches; ++mb) {
    const int64_t B = base + (mb < extra ? 1 : 0);
    for (int64_t b = 0; b < B; ++b)
      TORCH_CHECK_VALUE(0 <= order[start + b] && order[start + b] < rows, op, ": perm holds ", order[start + b],
                        ", outside [0, ", rows, ")");
    double* row_stats = out + mb * kStats;
    minibatch_grad<float>(&args, order + start, B, row_stats);
    const double norm = grad_norm(args.grads, n_grads);
    row_stats[5] = norm;
    if (!std::isfinite(norm)) break;  // the caller raises; this minibatch's step is not taken
    if (max_grad_norm > 0) {  // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when below 1
      const double coef = max_grad_norm / (norm + 1e-6);
      if (coef < 1.0) {
        const auto c = static_cast<float>(coef);
        for (int64_t i = 0; i < n_grads; ++i) args.grads[i] = args.grads[i] * c;
      }
    }
    for (const Slot& s : slots) {
      *s.step = *s.step + 1.0f;
      adam_slot<float>(&s, args.grads + s.grad, &adam);
    }
    start += B;
  }
  return stats;
}

}  // namespace
}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) { m.impl("ppo_gaussian_mlp_epoch_", &rlarena::cpu::ppo_gaussian_mlp_epoch_cpu); }
