// Batched building blocks of the default MLP actor-critic on B rows at once, for the kernels that run it
// with gradient (gaussian_mlp.cpp: the policy op; ppo_epoch.cpp: PPO's compiled epoch): forward with every
// layer's activations kept, backward to every weight and bias. Every sum runs in one fixed order (mlp.h),
// so a row gives the collector's bits and the ISA variants agree.
#pragma once

#include "mlp.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace rlarena {
namespace cpu {
namespace mlp {

template <typename S>
struct Net {
  std::vector<LayerOf<S>> layers;
  int64_t width = 0;  // sum of the layers' outputs: one row's share of z (and of h)
};

// y rows = bias + x rows @ W.T for B rows, each output's sum over the inputs in order (linear_row's
// order, so a row gives the collector's bits), through W transposed into `wt`.
template <typename S>
RLARENA_INLINE void linear_rows(const LayerOf<S>& l, const S* __restrict__ x, int64_t B, S* __restrict__ y,
                                S* __restrict__ wt) {
  const int64_t n_in = l.in, n_out = l.out;
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t i = 0; i < n_in; ++i) wt[i * n_out + o] = l.weight[o * n_in + i];
  for (int64_t b = 0; b < B; ++b) std::copy(l.bias, l.bias + n_out, y + b * n_out);
  matmul_acc(B, n_out, n_in, x, n_in, wt, n_out, y, n_out);
}

// Every layer's [B, out] block of pre-activations z and outputs h, one after the other (the last layer's h
// is its z).
template <typename S>
RLARENA_INLINE void forward_rows(const Net<S>& net, int act, const S* x, int64_t B, S* z, S* h, S* wt) {
  const S* input = x;
  const int64_t n_layers = static_cast<int64_t>(net.layers.size());
  for (int64_t l = 0; l < n_layers; ++l) {
    const int64_t n = net.layers[l].out * B;
    linear_rows(net.layers[l], input, B, z, wt);
    activate_layer(z, h, n, l + 1 == n_layers, act);
    input = h;
    z += n;
    h += n;
  }
}

// From g = d loss / d (last layer's output) [B, out]: each weight and bias gradient into `grads` (one
// pointer pair per layer; sums over the rows in row order) and, when g_input is set, d loss / d x added
// onto it. g and g_prev are scratch of the widest layer's size.
template <typename S>
RLARENA_INLINE void backward_rows(const Net<S>& net, int act, const S* x, int64_t B, const S* z, const S* h, S* g,
                                  S* g_prev, S* g_t, S* const* grads, S* g_input) {
  const int64_t n_layers = static_cast<int64_t>(net.layers.size());
  std::vector<int64_t> offset(n_layers + 1, 0);
  for (int64_t l = 0; l < n_layers; ++l) offset[l + 1] = offset[l] + net.layers[l].out * B;
  for (int64_t l = n_layers - 1; l >= 0; --l) {
    const LayerOf<S>& layer = net.layers[l];
    const int64_t n_in = layer.in, n_out = layer.out;
    const S* __restrict__ input = l == 0 ? x : h + offset[l - 1];
    S* __restrict__ gw = grads[2 * l];
    S* __restrict__ gb = grads[2 * l + 1];
    // d W = g.T @ input (sums over the rows in row order), through g transposed; d b = row sums of g.
    for (int64_t b = 0; b < B; ++b)
      for (int64_t o = 0; o < n_out; ++o) g_t[o * B + b] = g[b * n_out + o];
    std::fill(gw, gw + n_out * n_in, S(0));
    matmul_acc(n_out, n_in, B, g_t, B, input, n_in, gw, n_in);
    std::fill(gb, gb + n_out, S(0));
    for (int64_t b = 0; b < B; ++b) {
      const S* __restrict__ gr = g + b * n_out;
#pragma omp simd
      for (int64_t o = 0; o < n_out; ++o) gb[o] = gb[o] + gr[o];
    }
    if (l == 0) {
      if (g_input != nullptr) matmul_acc(B, n_in, n_out, g, n_out, layer.weight, n_in, g_input, n_in);
      break;
    }
    // d input = g @ W (sums over the outputs in order), then through the activation.
    std::fill(g_prev, g_prev + B * n_in, S(0));
    matmul_acc(B, n_in, n_out, g, n_out, layer.weight, n_in, g_prev, n_in);
    const S* __restrict__ zp = z + offset[l - 1];
    const S* __restrict__ hp = h + offset[l - 1];
#pragma omp simd
    for (int64_t j = 0; j < B * n_in; ++j) g_prev[j] = activation_grad(g_prev[j], zp[j], hp[j], act);
    std::swap(g, g_prev);
  }
}

}  // namespace mlp
}  // namespace cpu
}  // namespace rlarena
