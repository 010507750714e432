// Run-time choices of the CPU kernels: the SIMD variant and two thresholds.
//
// torch.ops.rlarena._config(key, value=-1) -> previous value (value -1 only reads). Keys:
//   "isa"           0 = baseline x86-64 / portable, 1 = AVX2+FMA, 2 = AVX-512 (clamped to what the CPU has)
//   "gae_scan_min"  GAE switches to the blocked scan over time when T*N is at least this and N is too narrow
//                   to split over the threads
//   "parallel_min"  below this many elements the kernels run on the calling thread only
// Meant for tests and benchmarks; the defaults are the tuned values.
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "simd.h"

namespace rlarena {
namespace cpu {
namespace {

int detect_isa() {
#if RLARENA_X86_DISPATCH
  __builtin_cpu_init();
  int best = kBase;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = kAvx2;
  if (best == kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = kAvx512;
  return best;
#else
  return kBase;
#endif
}

int max_isa() {
  static const int best = detect_isa();
  return best;
}

int64_t initial_isa() {
  int want = max_isa();
  if (const char* env = std::getenv("RLARENA_CPU_ISA")) {
    if (std::strcmp(env, "base") == 0) want = kBase;
    if (std::strcmp(env, "avx2") == 0) want = kAvx2;
    if (std::strcmp(env, "avx512") == 0) want = kAvx512;
  }
  return want < max_isa() ? want : max_isa();
}

std::atomic<int64_t>* values() {
  static std::atomic<int64_t> v[kNumKeys] = {{initial_isa()}, {int64_t(1) << 17}, {int64_t(1) << 15}};
  return v;
}

int key_index(const std::string& key) {
  if (key == "isa") return kIsa;
  if (key == "gae_scan_min") return kGaeScanMin;
  if (key == "parallel_min") return kParallelMin;
  TORCH_CHECK(false, "rlarena._config: unknown key '", key, "' (known: isa, gae_scan_min, parallel_min)");
  return -1;
}

int64_t config_op(std::string key, int64_t value) {
  const int k = key_index(key);
  if (value < 0) return values()[k].load();
  if (k == kIsa) value = value < max_isa() ? value : max_isa();
  return values()[k].exchange(value);
}

}  // namespace

int isa() { return static_cast<int>(values()[kIsa].load(std::memory_order_relaxed)); }
int64_t config_value(int key) { return values()[key].load(std::memory_order_relaxed); }

}  // namespace cpu
}  // namespace rlarena

TORCH_LIBRARY_FRAGMENT(rlarena, m) { m.def("_config(str key, int value=-1) -> int", &rlarena::cpu::config_op); }
