// The gymnasium collector's per-step bookkeeping (envs/gym_env.py), as two CPU ops:
//
//   observe_        store the simulator's observation row t (raw, float32), update the running observation
//                   statistics with it and store its normalized, clipped float32 copy (the policy's input);
//   record_reward_  store row t's raw reward, done and termination flags, the running return statistics'
//                   update and the normalized, clipped reward, and advance the episode counters.
//
//   record_action_  store the policy's action, log-prob and value at row t and the action clipped to the
//                   action space (what the simulator gets).
//
//   gaussian_policy_step_  observe_, the default policy's step (mlp_gaussian_act) and record_action_ in one.
//
// They replace about thirty numpy calls a step (each ~1 us of Python around ~10 ns of arithmetic) with two
// calls. The arithmetic is rlarena/normalize.py's (Chan et al.'s parallel update, in float64, term by term in
// the same order; sums over the sub-environments in index order), written without FMA contraction: the same
// bits on every CPU, and the same as the numpy code for one sub-environment (tests/test_collector.py).

#include <Python.h>  // first, as Python asks: the fast entry points (end of file)

#include "collector.h"
#include "mlp_act.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/custom_class.h>

#include <cmath>
#include <cstring>
#include <cstdint>
#include <string>
#include <utility>
#include <tuple>
#include <vector>

namespace rlarena {
namespace cpu {
namespace {

// RunningMeanStd.update on `n` rows of `d` values (row-major, float64), in place.
void running_update(const double* x, int64_t n, int64_t d, double* mean, double* var, double* count) {
  if (n == 0) return;
  const double total = *count + static_cast<double>(n);
  const double nd = static_cast<double>(n);
  for (int64_t j = 0; j < d; ++j) {
    double batch_mean = 0.0;
    double batch_var = 0.0;
    if (n == 1) {
      batch_mean = x[j];  // one row: its mean is the row, its variance 0 (normalize.py's shortcut)
    } else {
      double sum = x[j];
      for (int64_t i = 1; i < n; ++i) sum = sum + x[i * d + j];
      batch_mean = sum / nd;
      double sq = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double c = x[i * d + j] - batch_mean;
        sq = sq + c * c;
      }
      batch_var = sq / nd;
    }
    const double delta = batch_mean - mean[j];
    mean[j] = mean[j] + delta * nd / total;
    const double m2 = (var[j] * *count + batch_var * nd) + delta * delta * *count * nd / total;
    var[j] = m2 / total;
  }
  *count = total;
}

template <typename T>
T* ptr(const at::Tensor& t, at::ScalarType type, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == type, "rlarena collector op: '", name, "' must be ", type, ", got ",
                   t.scalar_type());
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "rlarena collector op: '", name,
              "' must be a contiguous CPU tensor");
  return static_cast<T*>(t.data_ptr());
}

// observe_ on `n` rows of `d` float64 values at `x` (shape already checked against the buffers).
void observe_rows(const double* x, int64_t n, int64_t d, int64_t t, const at::Tensor& raw_buf,
                  const at::Tensor& obs_buf, const at::Tensor& mean, const at::Tensor& var, const at::Tensor& count,
                  bool normalize, double clip) {
  float* raw = ptr<float>(raw_buf, at::kFloat, "raw_buf") + t * n * d;
  float* out = ptr<float>(obs_buf, at::kFloat, "obs_buf") + t * n * d;
  for (int64_t i = 0; i < n * d; ++i) raw[i] = static_cast<float>(x[i]);
  if (!normalize) {
    for (int64_t i = 0; i < n * d; ++i) out[i] = static_cast<float>(x[i]);
    return;
  }
  TORCH_CHECK_VALUE(mean.numel() == d && var.numel() == d && count.numel() == 1,
                    "rlarena.observe_: statistics of ", mean.numel(), " values for observations of ", d);
  double* m = ptr<double>(mean, at::kDouble, "mean");
  double* v = ptr<double>(var, at::kDouble, "var");
  running_update(x, n, d, m, v, ptr<double>(count, at::kDouble, "count"));
  for (int64_t j = 0; j < d; ++j) {
    const double std = std::sqrt(v[j] + 1e-8);
    for (int64_t i = 0; i < n; ++i) {
      double z = (x[i * d + j] - m[j]) / std;
      z = z > -clip ? z : -clip;  // np.maximum / np.minimum: NaN is caught before (the finiteness check)
      z = z < clip ? z : clip;
      out[i * d + j] = static_cast<float>(z);
    }
  }
}

void check_observation_rows(int64_t n, int64_t d, int64_t t, const at::Tensor& raw_buf, const at::Tensor& obs_buf) {
  TORCH_CHECK_VALUE(raw_buf.dim() == 3 && obs_buf.sizes() == raw_buf.sizes() && raw_buf.size(1) == n &&
                        raw_buf.size(2) == d && t >= 0 && t < raw_buf.size(0),
                    "rlarena.observe_: observations [", n, ", ", d, "] do not fit row ", t, " of buffers ",
                    raw_buf.sizes());
}

void observe_cpu(const at::Tensor& obs, int64_t t, const at::Tensor& raw_buf, const at::Tensor& obs_buf,
                 const at::Tensor& mean, const at::Tensor& var, const at::Tensor& count, bool normalize,
                 double clip) {
  TORCH_CHECK_VALUE(obs.dim() == 2, "rlarena.observe_: obs must be [N, obs_dim], got ", obs.sizes());
  const int64_t n = obs.size(0), d = obs.size(1);
  check_observation_rows(n, d, t, raw_buf, obs_buf);
  observe_rows(ptr<double>(obs, at::kDouble, "obs"), n, d, t, raw_buf, obs_buf, mean, var, count, normalize, clip);
}

void record_action_cpu(const at::Tensor& action, const at::Tensor& logp, const at::Tensor& value, int64_t t,
                       const at::Tensor& actions, const at::Tensor& logp_buf, const at::Tensor& value_buf,
                       const at::Tensor& env_actions, const at::Tensor& low, const at::Tensor& high, bool clip) {
  TORCH_CHECK_VALUE(t >= 0 && t < actions.size(0) && actions.select(0, t).sizes() == action.sizes(),
                    "rlarena.record_action_: action ", action.sizes(), " does not fit row ", t, " of ",
                    actions.sizes());
  logp_buf.select(0, t).copy_(logp);
  value_buf.select(0, t).copy_(value);
  const bool plain = action.scalar_type() == at::kFloat && actions.scalar_type() == at::kFloat &&
                     env_actions.scalar_type() == at::kFloat && action.is_contiguous() && actions.is_contiguous() &&
                     env_actions.is_contiguous() && action.device().is_cpu();
  if (!plain || !clip) {  // discrete actions (or other dtypes): as the simulator takes them
    actions.select(0, t).copy_(action);
    env_actions.select(0, t).copy_(clip ? at::clamp(action, low, high) : action);
    return;
  }
  const int64_t n = action.numel(), a = low.numel();
  const float* x = action.data_ptr<float>();
  const float* lo = ptr<float>(low, at::kFloat, "low");
  const float* hi = ptr<float>(high, at::kFloat, "high");
  float* out = actions.data_ptr<float>() + t * n;
  float* env_out = env_actions.data_ptr<float>() + t * n;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = x[i];
    const float v = x[i] > lo[i % a] ? x[i] : lo[i % a];  // np.maximum then np.minimum
    env_out[i] = v < hi[i % a] ? v : hi[i % a];
  }
}

// Flags record_reward_ returns: what the collector must look at in Python (rarely set).
constexpr int64_t kNonFinite = 1;  // the next observation or the reward has a NaN or an infinity
constexpr int64_t kEnded = 2;      // some episode ended (terminated or truncated)
constexpr int64_t kCut = 4;        // some episode was truncated without terminating (bootstrap it)

// record_reward_ on `n` rewards at `r` and flags at `term`, `trunc`, the next observations' `obs_numel`
// values at `o` (only checked for finiteness here).
int64_t record_reward_rows(const double* o, int64_t obs_numel, const double* r, const bool* term,
                           const bool* trunc, int64_t n, int64_t t, const at::Tensor& raw_rewards,
                           const at::Tensor& rewards, const at::Tensor& dones, const at::Tensor& terminated_buf,
                           const at::Tensor& discounted, const at::Tensor& ret_mean, const at::Tensor& ret_var,
                           const at::Tensor& ret_count, bool normalize, double gamma, double clip,
                           const at::Tensor& episode_return, const at::Tensor& episode_length) {
  int64_t flags = 0;
  for (int64_t i = 0; i < obs_numel; ++i)
    if (!std::isfinite(o[i])) flags |= kNonFinite;
  TORCH_CHECK_VALUE(rewards.dim() == 2 && rewards.size(1) == n && t >= 0 && t < rewards.size(0),
                    "rlarena.record_reward_: ", n, " rewards do not fit row ", t, " of ", rewards.sizes());
  float* raw_out = ptr<float>(raw_rewards, at::kFloat, "raw_rewards") + t * n;
  float* out = ptr<float>(rewards, at::kFloat, "rewards") + t * n;
  float* done_out = ptr<float>(dones, at::kFloat, "dones") + t * n;
  bool* term_out = ptr<bool>(terminated_buf, at::kBool, "terminated_buf") + t * n;
  double* ep_return = ptr<double>(episode_return, at::kDouble, "episode_return");
  int64_t* ep_length = ptr<int64_t>(episode_length, at::kLong, "episode_length");
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(r[i])) flags |= kNonFinite;
    if (term[i] || trunc[i]) flags |= kEnded;
    if (trunc[i] && !term[i]) flags |= kCut;
  }
  if (flags & kNonFinite) return flags;  // nothing stored: the collector raises, naming the value
  for (int64_t i = 0; i < n; ++i) {
    raw_out[i] = static_cast<float>(r[i]);
    done_out[i] = (term[i] || trunc[i]) ? 1.0f : 0.0f;
    term_out[i] = term[i];
    ep_return[i] = ep_return[i] + r[i];
    ep_length[i] += 1;
  }
  if (!normalize) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(r[i]);
    return flags;
  }
  // Scale by the std of the discounted return, not of the reward (SB3's VecNormalize); reset it at a done.
  double* g = ptr<double>(discounted, at::kDouble, "discounted");
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] * gamma + r[i];
  double* m = ptr<double>(ret_mean, at::kDouble, "ret_mean");
  double* v = ptr<double>(ret_var, at::kDouble, "ret_var");
  running_update(g, n, 1, m, v, ptr<double>(ret_count, at::kDouble, "ret_count"));
  const double std = std::sqrt(*v + 1e-8);
  for (int64_t i = 0; i < n; ++i) {
    if (term[i] || trunc[i]) g[i] = 0.0;
    double z = r[i] / std;
    z = z > -clip ? z : -clip;
    z = z < clip ? z : clip;
    out[i] = static_cast<float>(z);
  }
  return flags;
}

int64_t record_reward_cpu(const at::Tensor& next_obs, const at::Tensor& reward, const at::Tensor& terminated,
                          const at::Tensor& truncated, int64_t t, const at::Tensor& raw_rewards,
                          const at::Tensor& rewards, const at::Tensor& dones, const at::Tensor& terminated_buf,
                          const at::Tensor& discounted, const at::Tensor& ret_mean, const at::Tensor& ret_var,
                          const at::Tensor& ret_count, bool normalize, double gamma, double clip,
                          const at::Tensor& episode_return, const at::Tensor& episode_length) {
  const int64_t n = reward.numel();
  TORCH_CHECK_VALUE(terminated.numel() == n && truncated.numel() == n, "rlarena.record_reward_: ", n,
                    " rewards but ", terminated.numel(), " terminated and ", truncated.numel(), " truncated flags");
  return record_reward_rows(ptr<double>(next_obs, at::kDouble, "next_obs"), next_obs.numel(),
                            ptr<double>(reward, at::kDouble, "reward"), ptr<bool>(terminated, at::kBool, "terminated"),
                            ptr<bool>(truncated, at::kBool, "truncated"), n, t, raw_rewards, rewards, dones,
                            terminated_buf, discounted, ret_mean, ret_var, ret_count, normalize, gamma, clip,
                            episode_return, episode_length);
}

using ActFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, at::TensorList, at::TensorList,
                                                             const at::Tensor&, c10::string_view, bool);

bool plain_row_buffer(const at::Tensor& buf, int64_t t, int64_t row_numel) {
  return buf.scalar_type() == at::kFloat && buf.device().is_cpu() && buf.is_contiguous() && buf.dim() >= 1 &&
         t >= 0 && t < buf.size(0) && buf.numel() == buf.size(0) * row_numel;
}

// gaussian_policy_step_ with its buffers, statistics and policy bound once per rollout (a custom class:
// torch.classes.rlarena.GaussianPolicyStep; rlarena.ops.bind_gaussian_rollout). The op call parses every
// argument against its schema from Python, ~0.25 us each, and checks and views the policy's twelve
// parameter tensors: at one environment that cost more than the policy's arithmetic. step(obs, t) takes only
// what changes. The op itself is this class, built for one call: one implementation, the same bits.
// defer_values: step() leaves value_buf alone and values(rows) fills it after the rollout, row by row the
// same numbers (the critic's weights then stay out of the cache between simulator steps).
struct GaussianPolicyStep : torch::CustomClassHolder {
  GaussianPolicyStep(at::Tensor raw_buf, at::Tensor obs_buf, at::Tensor mean, at::Tensor var, at::Tensor count,
                     bool normalize, double clip, std::vector<at::Tensor> actor, std::vector<at::Tensor> critic,
                     at::Tensor log_std, const std::string& activation, at::Tensor actions, at::Tensor logp_buf,
                     at::Tensor value_buf, at::Tensor env_actions, at::Tensor low, at::Tensor high, bool clip_actions,
                     bool defer_values)
      : raw_buf(std::move(raw_buf)),
        obs_buf(std::move(obs_buf)),
        mean(std::move(mean)),
        var(std::move(var)),
        count(std::move(count)),
        normalize(normalize),
        clip(clip),
        actor(std::move(actor)),
        critic(std::move(critic)),
        log_std(std::move(log_std)),
        activation(activation),
        actions(std::move(actions)),
        logp_buf(std::move(logp_buf)),
        value_buf(std::move(value_buf)),
        env_actions(std::move(env_actions)),
        low(std::move(low)),
        high(std::move(high)),
        clip_actions(clip_actions),
        net(this->obs_buf.dim() == 3 ? this->obs_buf.size(2) : 0, this->actor, this->critic, this->log_std,
            activation) {
    const int64_t rows = this->obs_buf.dim() == 3 ? this->obs_buf.size(1) : 0, a = net.act_dim;
    // The whole row written in place: float32 buffers (the MuJoCo case) and a Box action space.
    fast = net.plain && clip_actions && plain_row_buffer(this->actions, 0, rows * a) &&
           plain_row_buffer(this->env_actions, 0, rows * a) && plain_row_buffer(this->logp_buf, 0, rows) &&
           plain_row_buffer(this->value_buf, 0, rows) && this->low.numel() == a && this->high.numel() == a &&
           this->low.scalar_type() == at::kFloat && this->high.scalar_type() == at::kFloat &&
           this->low.is_contiguous() && this->high.is_contiguous();
    if (fast) {
      noise = at::empty({rows, a}, this->actions.options());
      scratch.resize(net.scratch_size());
    }
    deferred = fast && defer_values;
  }

  // observe_ of `obs` at row t, the policy's step on the normalized row, record_action_ of its outputs.
  void step(const at::Tensor& obs, int64_t t) const {
    TORCH_CHECK_VALUE(obs.dim() == 2, "GaussianPolicyStep.step: obs must be [N, obs_dim], got ", obs.sizes());
    step_rows(ptr<double>(obs, at::kDouble, "obs"), obs.size(0), obs.size(1), t);
  }

  // step() on `n` observations of `d` float64 values at `x`.
  void step_rows(const double* x, int64_t n, int64_t d, int64_t t) const {
    check_observation_rows(n, d, t, raw_buf, obs_buf);
    observe_rows(x, n, d, t, raw_buf, obs_buf, mean, var, count, normalize, clip);
    if (fast && d == net.obs_dim) {
      const int64_t a = net.act_dim;
      float* action = actions.data_ptr<float>() + t * n * a;
      noise.normal_();  // torch.normal's draw: a standard normal [n, a] tensor (mlp_gaussian_act's)
      net.act(obs_buf.data_ptr<float>() + t * n * d, n, noise.data_ptr<float>(), action,
              logp_buf.data_ptr<float>() + t * n, deferred ? nullptr : value_buf.data_ptr<float>() + t * n,
              scratch.data());
      const float* lo = low.data_ptr<float>();
      const float* hi = high.data_ptr<float>();
      float* env_out = env_actions.data_ptr<float>() + t * n * a;
      for (int64_t i = 0; i < n * a; ++i) {  // record_action_'s clip: np.maximum then np.minimum
        const float v = action[i] > lo[i % a] ? action[i] : lo[i % a];
        env_out[i] = v < hi[i % a] ? v : hi[i % a];
      }
      return;
    }
    static const auto act =
        c10::Dispatcher::singleton().findSchemaOrThrow("rlarena::mlp_gaussian_act", "").typed<ActFn>();
    const auto [action, logp, value] = act.call(obs_buf.select(0, t), actor, critic, log_std, activation, false);
    record_action_cpu(action, logp, value, t, actions, logp_buf, value_buf, env_actions, low, high, clip_actions);
  }

  // The deferred values of rows [0, rows) (nothing to do unless deferred).
  void values(int64_t rows) const {
    if (!deferred) return;
    TORCH_CHECK_VALUE(rows >= 0 && rows <= obs_buf.size(0), "GaussianPolicyStep.values: ", rows, " rows of ",
                      obs_buf.size(0));
    const int64_t n = obs_buf.size(1);
    net.act(obs_buf.data_ptr<float>(), rows * n, nullptr, nullptr, nullptr, value_buf.data_ptr<float>(),
            scratch.data());
  }

  at::Tensor raw_buf, obs_buf, mean, var, count;
  bool normalize;
  double clip;
  std::vector<at::Tensor> actor, critic;
  at::Tensor log_std;
  std::string activation;
  at::Tensor actions, logp_buf, value_buf, env_actions, low, high;
  bool clip_actions;
  GaussianMLPView net;
  bool fast = false;
  bool deferred = false;
  at::Tensor noise;                     // the step's draw, [N, act_dim]
  mutable std::vector<float> scratch;  // the MLP's activations
};

void gaussian_policy_step_cpu(const at::Tensor& obs, int64_t t, const at::Tensor& raw_buf, const at::Tensor& obs_buf,
                              const at::Tensor& mean, const at::Tensor& var, const at::Tensor& count, bool normalize,
                              double clip, at::TensorList actor, at::TensorList critic, const at::Tensor& log_std,
                              c10::string_view activation, const at::Tensor& actions, const at::Tensor& logp_buf,
                              const at::Tensor& value_buf, const at::Tensor& env_actions, const at::Tensor& low,
                              const at::Tensor& high, bool clip_actions) {
  GaussianPolicyStep(raw_buf, obs_buf, mean, var, count, normalize, clip, actor.vec(), critic.vec(), log_std,
                     std::string(activation), actions, logp_buf, value_buf, env_actions, low, high, clip_actions,
                     /*defer_values=*/false)
      .step(obs, t);
}

// record_reward_ bound once per rollout (torch.classes.rlarena.RewardRecorder;
// rlarena.ops.bind_record_reward): record(next_obs, reward, terminated, truncated, t) -> flags.
struct RewardRecorder : torch::CustomClassHolder {
  RewardRecorder(at::Tensor raw_rewards, at::Tensor rewards, at::Tensor dones, at::Tensor terminated_buf,
                 at::Tensor discounted, at::Tensor ret_mean, at::Tensor ret_var, at::Tensor ret_count, bool normalize,
                 double gamma, double clip, at::Tensor episode_return, at::Tensor episode_length)
      : raw_rewards(std::move(raw_rewards)),
        rewards(std::move(rewards)),
        dones(std::move(dones)),
        terminated_buf(std::move(terminated_buf)),
        discounted(std::move(discounted)),
        ret_mean(std::move(ret_mean)),
        ret_var(std::move(ret_var)),
        ret_count(std::move(ret_count)),
        normalize(normalize),
        gamma(gamma),
        clip(clip),
        episode_return(std::move(episode_return)),
        episode_length(std::move(episode_length)) {}

  int64_t record(const at::Tensor& next_obs, const at::Tensor& reward, const at::Tensor& terminated,
                 const at::Tensor& truncated, int64_t t) const {
    return record_reward_cpu(next_obs, reward, terminated, truncated, t, raw_rewards, rewards, dones, terminated_buf,
                             discounted, ret_mean, ret_var, ret_count, normalize, gamma, clip, episode_return,
                             episode_length);
  }

  int64_t record_rows(const double* o, int64_t obs_numel, const double* r, const bool* term, const bool* trunc,
                      int64_t n, int64_t t) const {
    return record_reward_rows(o, obs_numel, r, term, trunc, n, t, raw_rewards, rewards, dones, terminated_buf,
                              discounted, ret_mean, ret_var, ret_count, normalize, gamma, clip, episode_return,
                              episode_length);
  }

  at::Tensor raw_rewards, rewards, dones, terminated_buf, discounted, ret_mean, ret_var, ret_count;
  bool normalize;
  double gamma, clip;
  at::Tensor episode_return, episode_length;
};

constexpr int64_t kActed = 8;  // GaussianRollout.record also observed and acted on the next row

// The default policy's whole rollout bookkeeping (torch.classes.rlarena.GaussianRollout;
// rlarena.ops.bind_gaussian_rollout): one call per simulator step. record(...) stores row t's reward and,
// when nothing needs Python's attention (no flag) and a row follows, observes the next observation and acts
// on it as GaussianPolicyStep.step(next_obs, t + 1) would (returning kActed): the policy's step then costs no
// second call from Python, whose cold path after a simulator step costs more than the kernels. Otherwise
// Python handles the flags and calls act(obs, t + 1) itself: the same calls in the same order, the same bits.
struct GaussianRollout : torch::CustomClassHolder {
  GaussianRollout(c10::intrusive_ptr<GaussianPolicyStep> policy, c10::intrusive_ptr<RewardRecorder> recorder)
      : policy(std::move(policy)), recorder(std::move(recorder)) {}

  void act(const at::Tensor& obs, int64_t t) const { policy->step(obs, t); }

  int64_t record(const at::Tensor& next_obs, const at::Tensor& reward, const at::Tensor& terminated,
                 const at::Tensor& truncated, int64_t t) const {
    const int64_t flags = recorder->record(next_obs, reward, terminated, truncated, t);
    if (flags != 0 || t + 1 >= policy->obs_buf.size(0)) return flags;
    policy->step(next_obs, t + 1);
    return kActed;
  }

  // record() on raw rows: `n` observations of `d` float64 values at `o`, `n` rewards and flags.
  int64_t record_rows(const double* o, int64_t n, int64_t d, const double* r, const bool* term, const bool* trunc,
                      int64_t t) const {
    const int64_t flags = recorder->record_rows(o, n * d, r, term, trunc, n, t);
    if (flags != 0 || t + 1 >= policy->obs_buf.size(0)) return flags;
    policy->step_rows(o, n, d, t + 1);
    return kActed;
  }

  void finish(int64_t rows) const { policy->values(rows); }

  c10::intrusive_ptr<GaussianPolicyStep> policy;
  c10::intrusive_ptr<RewardRecorder> recorder;
};

// ---- The per-step entry points from Python ----------------------------------------------------------------
// A torch.classes method call from Python costs ~3 us (pybind11 and IValue conversion of every argument, a
// Python-level export check), and the gymnasium arrays must first become tensors (torch.from_numpy, ~0.7 us
// each). At one environment that is more than the step's arithmetic. These take the vector env's numpy arrays
// through the buffer protocol (no copy, no tensor) and the rollout through a capsule that owns a reference
// to it: rlarena.ops.bind_gaussian_rollout uses them; the torch.classes methods stay the reference.

struct HeldBuffer {
  Py_buffer view{};
  bool held = false;
  ~HeldBuffer() {
    if (held) PyBuffer_Release(&view);
  }
};

// Whether `format` is the struct code `code` (numpy writes native types without a byte-order prefix, but
// '<', '=' and '@' mean the same on x86-64).
bool format_is(const char* format, char code) {
  if (format == nullptr) return code == 'B';
  if (*format == '<' || *format == '=' || *format == '@') ++format;
  return format[0] == code && format[1] == '\0';
}

// A C-contiguous buffer of `ndim` dimensions of struct code `code` from `obj`; false with a TypeError set.
bool get_buffer(PyObject* obj, HeldBuffer& buffer, char code, int ndim, const char* name, const char* what) {
  if (PyObject_GetBuffer(obj, &buffer.view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "rlarena rollout: '%s' must be a C-contiguous %dD array of %s, got %s", name,
                 ndim, what, Py_TYPE(obj)->tp_name);
    return false;
  }
  buffer.held = true;
  if (!format_is(buffer.view.format, code) || buffer.view.ndim != ndim) {
    PyErr_Format(PyExc_TypeError, "rlarena rollout: '%s' must be a C-contiguous %dD array of %s, got format '%s' "
                 "with %d dimensions", name, ndim, what, buffer.view.format ? buffer.view.format : "B",
                 buffer.view.ndim);
    return false;
  }
  return true;
}

constexpr const char* kCapsuleName = "rlarena.GaussianRollout";

const GaussianRollout* rollout_from(PyObject* capsule) {
  return static_cast<const GaussianRollout*>(PyCapsule_GetPointer(capsule, kCapsuleName));
}

void release_rollout(PyObject* capsule) {
  auto* rollout = static_cast<GaussianRollout*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (rollout != nullptr) c10::intrusive_ptr<GaussianRollout>::reclaim(rollout);  // drops the reference
}

// Runs `body`, turning a C++ error into the Python exception the torch.classes method would raise.
template <typename F>
PyObject* translate_errors(F&& body) {
  try {
    return body();
  } catch (const c10::ValueError& e) {
    PyErr_SetString(PyExc_ValueError, e.what_without_backtrace());
  } catch (const c10::TypeError& e) {
    PyErr_SetString(PyExc_TypeError, e.what_without_backtrace());
  } catch (const c10::Error& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what_without_backtrace());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  }
  return nullptr;
}

// rollout_capsule(handle) -> capsule: takes over the reference GaussianRollout.retain() handed out.
PyObject* rollout_capsule(PyObject*, PyObject* handle) {
  void* pointer = PyLong_AsVoidPtr(handle);
  if (pointer == nullptr) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "rlarena rollout: null handle");
    return nullptr;
  }
  return PyCapsule_New(pointer, kCapsuleName, release_rollout);
}

// rollout_act(capsule, obs, t): GaussianRollout.act with obs a float64 [N, obs_dim] array.
PyObject* rollout_act(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 3) {
    PyErr_Format(PyExc_TypeError, "rollout_act(capsule, obs, t) takes 3 arguments, got %zd", nargs);
    return nullptr;
  }
  const GaussianRollout* rollout = rollout_from(args[0]);
  if (rollout == nullptr) return nullptr;
  HeldBuffer obs;
  if (!get_buffer(args[1], obs, 'd', 2, "obs", "float64")) return nullptr;
  const long long t = PyLong_AsLongLong(args[2]);
  if (t == -1 && PyErr_Occurred()) return nullptr;
  return translate_errors([&]() -> PyObject* {
    rollout->policy->step_rows(static_cast<const double*>(obs.view.buf), obs.view.shape[0], obs.view.shape[1], t);
    Py_RETURN_NONE;
  });
}

// rollout_record(capsule, next_obs, reward, terminated, truncated, t) -> flags: GaussianRollout.record with
// the vector env's arrays (float64 [N, obs_dim] and [N], bool [N] and [N]).
PyObject* rollout_record(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 6) {
    PyErr_Format(PyExc_TypeError,
                 "rollout_record(capsule, next_obs, reward, terminated, truncated, t) takes 6 arguments, got %zd",
                 nargs);
    return nullptr;
  }
  const GaussianRollout* rollout = rollout_from(args[0]);
  if (rollout == nullptr) return nullptr;
  HeldBuffer obs, reward, terminated, truncated;
  if (!get_buffer(args[1], obs, 'd', 2, "next_obs", "float64") ||
      !get_buffer(args[2], reward, 'd', 1, "reward", "float64") ||
      !get_buffer(args[3], terminated, '?', 1, "terminated", "bool") ||
      !get_buffer(args[4], truncated, '?', 1, "truncated", "bool"))
    return nullptr;
  const Py_ssize_t n = obs.view.shape[0];
  if (reward.view.shape[0] != n || terminated.view.shape[0] != n || truncated.view.shape[0] != n) {
    PyErr_Format(PyExc_ValueError,
                 "rlarena rollout: %zd observations but %zd rewards, %zd terminated and %zd truncated flags", n,
                 reward.view.shape[0], terminated.view.shape[0], truncated.view.shape[0]);
    return nullptr;
  }
  const long long t = PyLong_AsLongLong(args[5]);
  if (t == -1 && PyErr_Occurred()) return nullptr;
  return translate_errors([&]() -> PyObject* {
    const int64_t flags = rollout->record_rows(
        static_cast<const double*>(obs.view.buf), n, obs.view.shape[1], static_cast<const double*>(reward.view.buf),
        static_cast<const bool*>(terminated.view.buf), static_cast<const bool*>(truncated.view.buf), t);
    return PyLong_FromLongLong(flags);
  });
}

}  // namespace

PyMethodDef* collector_python_methods() {
  static PyMethodDef methods[] = {
      {"rollout_capsule", reinterpret_cast<PyCFunction>(rollout_capsule), METH_O,
       "rollout_capsule(handle) -> capsule owning the GaussianRollout that retain() handed out"},
      {"rollout_act", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rollout_act)), METH_FASTCALL,
       "rollout_act(capsule, obs, t): GaussianRollout.act on a float64 numpy array"},
      {"rollout_record", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(rollout_record)),
       METH_FASTCALL,
       "rollout_record(capsule, next_obs, reward, terminated, truncated, t) -> flags: GaussianRollout.record "
       "on the vector env's numpy arrays"},
      {nullptr, nullptr, 0, nullptr}};
  return methods;
}

}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CPU, m) {
  m.impl("gaussian_policy_step_", &rlarena::cpu::gaussian_policy_step_cpu);
  m.impl("observe_", &rlarena::cpu::observe_cpu);
  m.impl("record_reward_", &rlarena::cpu::record_reward_cpu);
  m.impl("record_action_", &rlarena::cpu::record_action_cpu);
}

TORCH_LIBRARY_FRAGMENT(rlarena, m) {
  using rlarena::cpu::GaussianPolicyStep;
  using rlarena::cpu::RewardRecorder;
  using rlarena::cpu::GaussianRollout;
  m.class_<GaussianPolicyStep>("GaussianPolicyStep")
      .def(torch::init<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, bool, double,
                       std::vector<at::Tensor>, std::vector<at::Tensor>, at::Tensor, std::string, at::Tensor,
                       at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, bool, bool>())
      .def("step", &GaussianPolicyStep::step)
      .def("values", &GaussianPolicyStep::values);
  m.class_<RewardRecorder>("RewardRecorder")
      .def(torch::init<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                       at::Tensor, bool, double, double, at::Tensor, at::Tensor>())
      .def("record", &RewardRecorder::record);
  m.class_<GaussianRollout>("GaussianRollout")
      .def(torch::init<c10::intrusive_ptr<GaussianPolicyStep>, c10::intrusive_ptr<RewardRecorder>>())
      .def("act", &GaussianRollout::act)
      .def("record", &GaussianRollout::record)
      .def("finish", &GaussianRollout::finish)
      // A new reference to this rollout as an integer, for rlarena._C.rollout_capsule (which owns it).
      .def("retain", [](const c10::intrusive_ptr<GaussianRollout>& self) -> int64_t {
        return reinterpret_cast<int64_t>(c10::intrusive_ptr<GaussianRollout>(self).release());
      });
}
