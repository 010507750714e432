// Portable SIMD helpers for the CPU kernels.
//
// The extension is built without -march=native, so the hot loops are written as plain C++ under
// `#pragma omp simd` and compiled several times: once for the baseline ISA and once each under
// `__attribute__((target(...)))` for AVX2+FMA and AVX-512. The best variant the CPU supports is picked at
// run time (override with the environment variable RLARENA_CPU_ISA=base|avx2|avx512, or from Python with
// torch.ops.rlarena._config("isa", k)).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__GNUC__)
#define RLARENA_INLINE inline __attribute__((always_inline))
#else
#define RLARENA_INLINE inline
#endif

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RLARENA_X86_DISPATCH 1
#define RLARENA_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define RLARENA_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#else
#define RLARENA_X86_DISPATCH 0
#define RLARENA_TARGET_AVX2
#define RLARENA_TARGET_AVX512
#endif

namespace rlarena {
namespace cpu {

enum Isa : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

// The ISA the kernels run with (detected once; see simd.cpp).
int isa();
// Tuning knobs shared by the kernels (see simd.cpp); settable from Python through rlarena::_config.
int64_t config_value(int key);
enum ConfigKey : int { kIsa = 0, kGaeScanMin = 1, kParallelMin = 2, kNumKeys = 3 };

template <typename To, typename From>
RLARENA_INLINE To bits(From x) {
  static_assert(sizeof(To) == sizeof(From), "size mismatch");
  To y;
  std::memcpy(&y, &x, sizeof(To));
  return y;
}

// exp(x) that vectorizes under `omp simd` (no libm call): Cody-Waite reduction x = n ln2 + r with
// |r| <= ln2/2, a Taylor polynomial (degree 7 for float, 13 for double: truncation error below half an
// ulp), 2^n applied in two halves (so results down into the subnormals are right), and the out-of-range
// inputs (overflow to inf, underflow to 0) selected at the end: no clamp before the arithmetic, since GCC
// threads such clamps into branches and then refuses to vectorize. NaN propagates. About 1-2 ulp.
RLARENA_INLINE float vexp(float x) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer kept in the low bits
  const float k = x * 1.44269504088896341f + shifter;
  const uint32_t n = bits<uint32_t>(k) - bits<uint32_t>(shifter);
  const float nf = k - shifter;
  float r = x - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t n1 = static_cast<uint32_t>(static_cast<int32_t>(n) >> 1);
  const uint32_t n2 = n - n1;
  const float s1 = bits<float>((n1 + 127u) << 23);
  const float s2 = bits<float>((n2 + 127u) << 23);
  float y = p * s1 * s2;
  y = x > 88.72283935f ? __builtin_inff() : y;
  y = x < -103.98f ? 0.0f : y;
  return y;
}

RLARENA_INLINE double vexp(double x) {
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double k = x * 1.4426950408889634074 + shifter;
  const uint64_t n = bits<uint64_t>(k) - bits<uint64_t>(shifter);
  const double nf = k - shifter;
  double r = x - nf * 6.93147180369123816490e-01;
  r = r - nf * 1.90821492927058770002e-10;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const uint64_t n1 = static_cast<uint64_t>(static_cast<int64_t>(n) >> 1);
  const uint64_t n2 = n - n1;
  const double s1 = bits<double>((n1 + 1023u) << 52);
  const double s2 = bits<double>((n2 + 1023u) << 52);
  double y = p * s1 * s2;
  y = x > 709.782712893384 ? __builtin_inf() : y;
  y = x < -745.2 ? 0.0 : y;
  return y;
}

// beta^step for a whole number step, by repeated squaring (no libm: pow's result may differ by CPU).
inline double whole_power(double beta, double step) {
  double result = 1.0;
  auto e = static_cast<uint64_t>(step);
  while (e > 0) {
    if (e & 1u) result *= beta;
    beta *= beta;
    e >>= 1u;
  }
  return result;
}

// part[l] += x[i] for every i = l (mod L), in index order: L interleaved partial sums whose layout does not
// depend on the ISA's vector width (an `omp simd reduction` splits a sum by that width, and so rounds
// differently on AVX2 and AVX-512). The caller adds part[0..L) in order.
template <typename T, int64_t L>
RLARENA_INLINE void lane_sums(const T* __restrict__ x, int64_t n, T* __restrict__ part) {
  int64_t i = 0;
  for (; i + L <= n; i += L) {
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) part[l] = part[l] + x[i + l];
  }
  for (int64_t l = 0; i < n; ++i, ++l) part[l] = part[l] + x[i];
}

}  // namespace cpu
}  // namespace rlarena

// RLARENA_ISA_DISPATCH(NAME, IMPL) defines `NAME<T>(args...)`, which calls the always-inline template
// `IMPL<T>(args...)` compiled for the ISA chosen by rlarena::cpu::isa().
#if RLARENA_X86_DISPATCH
#define RLARENA_ISA_DISPATCH(NAME, IMPL)                                 \
  template <typename T, typename... Args>                                \
  void NAME##_base(Args... args) {                                       \
    IMPL<T>(args...);                                                    \
  }                                                                      \
  template <typename T, typename... Args>                                \
  RLARENA_TARGET_AVX2 void NAME##_avx2(Args... args) {                   \
    IMPL<T>(args...);                                                    \
  }                                                                      \
  template <typename T, typename... Args>                                \
  RLARENA_TARGET_AVX512 void NAME##_avx512(Args... args) {               \
    IMPL<T>(args...);                                                    \
  }                                                                      \
  template <typename T, typename... Args>                                \
  void NAME(Args... args) {                                              \
    switch (::rlarena::cpu::isa()) {                                    \
      case ::rlarena::cpu::kAvx512:                                      \
        NAME##_avx512<T>(args...);                                       \
        break;                                                           \
      case ::rlarena::cpu::kAvx2:                                        \
        NAME##_avx2<T>(args...);                                         \
        break;                                                           \
      default:                                                           \
        NAME##_base<T>(args...);                                         \
    }                                                                    \
  }
#else
#define RLARENA_ISA_DISPATCH(NAME, IMPL) \
  template <typename T, typename... Args> \
  void NAME(Args... args) {               \
    IMPL<T>(args...);                     \
  }
#endif
