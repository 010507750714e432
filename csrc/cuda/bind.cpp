// CUDA implementations of the rlarena ops: checks, allocation and launch of the plain CUDA kernels
// (csrc/cuda/*.cu) on the current stream. Built only when torch has CUDA (see setup.py).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../common.h"
#include "kernels.h"

namespace rlarena {
namespace {

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "rlarena.", op, " (CUDA): ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> gae_cuda(const at::Tensor& rewards, const at::Tensor& values,
                                            const at::Tensor& dones, const at::Tensor& last_value, double gamma,
                                            double lam) {
  const GaeIO io = prepare_gae(rewards, values, dones, last_value, gamma, lam, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(io.rewards.device());  // after the checks: they name a wrong device
  const at::Tensor &r = io.rewards, &v = io.values, &d = io.dones, &lv = io.last_value;
  const at::Tensor &adv = io.advantages, &ret = io.returns;
  const int64_t T = r.size(0);
  const int64_t N = r.size(1);
  const int64_t ws = cuda::gae_workspace_elems(T, N);
  at::Tensor workspace = at::empty({ws}, r.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  cudaError_t err;
  if (r.scalar_type() == at::kFloat) {
    err = cuda::gae<float>(r.data_ptr<float>(), v.data_ptr<float>(), d.data_ptr<float>(), lv.data_ptr<float>(),
                           adv.data_ptr<float>(), ret.data_ptr<float>(), T, N, gamma, lam,
                           ws > 0 ? workspace.data_ptr<float>() : nullptr, stream);
  } else {
    err = cuda::gae<double>(r.data_ptr<double>(), v.data_ptr<double>(), d.data_ptr<double>(),
                            lv.data_ptr<double>(), adv.data_ptr<double>(), ret.data_ptr<double>(), T, N, gamma, lam,
                            ws > 0 ? workspace.data_ptr<double>() : nullptr, stream);
  }
  check_launch(err, "gae");
  return {adv, ret};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> clipped_surrogate_loss_cuda(const at::Tensor& logp,
                                                                                       const at::Tensor& old_logp,
                                                                                       const at::Tensor& advantages,
                                                                                       double clip_coef) {
  const FusedLossIO io = prepare_surrogate_loss(logp, old_logp, advantages, clip_coef, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(io.input.device());  // after the checks: they name a wrong device
  const at::Tensor &lp = io.input, &olp = io.second, &adv = io.third, &grad = io.grad;
  at::Tensor loss = io.scalar(), clip_fraction = io.scalar(), approx_kl = io.scalar();
  const auto opts = lp.options();
  at::Tensor workspace = at::empty({cuda::loss_workspace_elems()}, opts.dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t n = lp.numel();
  cudaError_t err;
  if (lp.scalar_type() == at::kFloat) {
    err = cuda::clipped_surrogate_loss<float>(lp.data_ptr<float>(), olp.data_ptr<float>(), adv.data_ptr<float>(),
                                              grad.data_ptr<float>(), loss.data_ptr<float>(),
                                              clip_fraction.data_ptr<float>(), approx_kl.data_ptr<float>(), n,
                                              clip_coef, workspace.data_ptr<double>(), stream);
  } else {
    err = cuda::clipped_surrogate_loss<double>(
        lp.data_ptr<double>(), olp.data_ptr<double>(), adv.data_ptr<double>(), grad.data_ptr<double>(),
        loss.data_ptr<double>(), clip_fraction.data_ptr<double>(), approx_kl.data_ptr<double>(), n, clip_coef,
        workspace.data_ptr<double>(), stream);
  }
  check_launch(err, "clipped_surrogate_loss");
  return {loss, clip_fraction, approx_kl, grad};
}

std::tuple<at::Tensor, at::Tensor> clipped_value_loss_cuda(const at::Tensor& value, const at::Tensor& old_value,
                                                           const at::Tensor& returns, double clip_coef) {
  const FusedLossIO io = prepare_value_loss(value, old_value, returns, clip_coef, c10::DeviceType::CUDA);
  const c10::cuda::CUDAGuard guard(io.input.device());  // after the checks: they name a wrong device
  const at::Tensor &v = io.input, &old = io.second, &ret = io.third, &grad = io.grad;
  at::Tensor loss = io.scalar();
  at::Tensor workspace = at::empty({cuda::value_loss_workspace_elems()}, v.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const int64_t n = v.numel();
  cudaError_t err;
  if (v.scalar_type() == at::kFloat) {
    err = cuda::clipped_value_loss<float>(v.data_ptr<float>(), old.data_ptr<float>(), ret.data_ptr<float>(),
                                          grad.data_ptr<float>(), loss.data_ptr<float>(), n, clip_coef,
                                          workspace.data_ptr<double>(), stream);
  } else {
    err = cuda::clipped_value_loss<double>(v.data_ptr<double>(), old.data_ptr<double>(), ret.data_ptr<double>(),
                                           grad.data_ptr<double>(), loss.data_ptr<double>(), n, clip_coef,
                                           workspace.data_ptr<double>(), stream);
  }
  check_launch(err, "clipped_value_loss");
  return {loss, grad};
}

}  // namespace
}  // namespace rlarena

TORCH_LIBRARY_IMPL(rlarena, CUDA, m) {
  m.impl("gae", &rlarena::gae_cuda);
  m.impl("clipped_surrogate_loss", &rlarena::clipped_surrogate_loss_cuda);
  m.impl("clipped_value_loss", &rlarena::clipped_value_loss_cuda);
}
