// Deterministic parallel sums for the fused losses: the n elements are cut into fixed blocks of kSumBlock,
// `block(i0, i1, out)` stores the K sums of one block (in double) into out[0..K), and the block sums are
// added in block order. The result does not depend on the number of threads.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "simd.h"

namespace rlarena {
namespace cpu {

constexpr int64_t kSumBlock = 8192;

template <int K, typename BlockFn>
std::array<double, K> blocked_sums(int64_t n, const BlockFn& block) {
  const int64_t nb = (n + kSumBlock - 1) / kSumBlock;
  double stack[K * 16];
  std::vector<double> heap;
  double* part = stack;
  if (nb > 16) {
    heap.resize(K * nb);
    part = heap.data();
  }
  const int64_t grain = std::max<int64_t>(1, config_value(kParallelMin) / kSumBlock);
  at::parallel_for(0, nb, grain, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) block(k * kSumBlock, std::min(n, (k + 1) * kSumBlock), part + K * k);
  });
  std::array<double, K> sums{};
  for (int64_t k = 0; k < nb; ++k)
    for (int q = 0; q < K; ++q) sums[q] += part[K * k + q];
  return sums;
}

}  // namespace cpu
}  // namespace rlarena
