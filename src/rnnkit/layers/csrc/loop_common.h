// Helpers shared by rnnkit's native loops (lstm_loop.cpp, gru_loop.cpp): the vectorisable activations, the
// LayerNorm row statistics and backward, and the pool the saved buffers come from. Header-only, in a named
// namespace, so both translation units share one BufferPool (a function-local static of an inline function).

#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <new>
#include <optional>
#include <unordered_map>
#include <vector>

namespace rnnkit_native {

using at::Tensor;

// The activations. double: the C library's. float: tanh as a rational function of x (Eigen's
// generic_fast_tanh_float: odd degree-13 numerator, even degree-6 denominator on [-7.9053, 7.9053],
// x itself below 4e-4; within a few ulp of tanhf) and sigmoid(x) = (1 + tanh(x / 2)) / 2. Written as
// plain arithmetic so that the compiler vectorises the loops that call them (a call to the C library's
// expf/tanhf per element costs more than the whole step's matmul at small sizes). NaN propagates.
inline double tanh_act(double x) { return std::tanh(x); }
inline double sigmoid_act(double x) { return 1.0 / (1.0 + std::exp(-x)); }

inline float tanh_act(float a) {
  const float c = 7.90531110763549805f;
  float x = a > c ? c : a;  // a NaN passes both comparisons unchanged
  x = x < -c ? -c : x;
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = x2 * p + -8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  p = x * p;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  const float r = p / q;
  return std::fabs(a) < 0.0004f ? a : r;
}
inline float sigmoid_act(float x) { return 0.5f + 0.5f * tanh_act(0.5f * x); }

// In place over n contiguous values: simple loops, vectorised (built with -fopenmp-simd and
// -fno-trapping-math, without which GCC keeps the selects as branches).
template <typename T>
void sigmoid_inplace(T* __restrict a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) a[j] = sigmoid_act(a[j]);
}
template <typename T>
void tanh_inplace(T* __restrict a, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) a[j] = tanh_act(a[j]);
}

// LayerNorm statistics of one row as torch.native_layer_norm computes them: the mean, and rstd =
// 1 / sqrt(var + eps) with the biased variance, accumulated in T (as torch does on the CPU for float);
// two passes, vectorised reductions.
template <typename T>
inline void row_stats(const T* __restrict x, int64_t n, double eps, T* mean_out, T* rstd_out) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += x[j];
  const T mean = s / T(n);
  T v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < n; ++j) v += (x[j] - mean) * (x[j] - mean);
  *mean_out = mean;
  *rstd_out = T(1) / std::sqrt(v / T(n) + T(eps));
}

// row_stats of two rows of n values at once: the same sums, two of them in flight at a time (each sum is a
// chain of dependent vector additions, so one row alone leaves the adder idle most of the time).
template <typename T>
inline void row_stats2(const T* __restrict x, const T* __restrict y, int64_t n, double eps, T* mean_x, T* rstd_x,
                       T* mean_y, T* rstd_y) {
  T sx = 0, sy = 0;
#pragma omp simd reduction(+ : sx, sy)
  for (int64_t j = 0; j < n; ++j) {
    sx += x[j];
    sy += y[j];
  }
  const T mx = sx / T(n), my = sy / T(n);
  T vx = 0, vy = 0;
#pragma omp simd reduction(+ : vx, vy)
  for (int64_t j = 0; j < n; ++j) {
    vx += (x[j] - mx) * (x[j] - mx);
    vy += (y[j] - my) * (y[j] - my);
  }
  *mean_x = mx;
  *mean_y = my;
  *rstd_x = T(1) / std::sqrt(vx / T(n) + T(eps));
  *rstd_y = T(1) / std::sqrt(vy / T(n) + T(eps));
}

// row_stats, then the normalised row xhat = (x - mean) * rstd.
template <typename T>
inline void row_norm(const T* __restrict x, T* __restrict xhat, int64_t n, double eps, T* rstd_out) {
  T mean, rstd;
  row_stats(x, n, eps, &mean, &rstd);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) xhat[j] = (x[j] - mean) * rstd;
  *rstd_out = rstd;
}

// LayerNorm backward for one row, given the normalised input xhat and rstd: dy (the gradient of the
// norm's output) -> dx in `out` (which may be dy itself); adds dy * xhat to the gain's gradient (and
// dy to the shift's).
template <typename T>
inline void row_norm_backward(const T* dy, const T* __restrict xhat, const T* __restrict gain, T rstd, int64_t n,
                              T* out, T* __restrict d_gain, T* __restrict d_shift) {
  T m1 = 0, m2 = 0;  // the sums, and the parameters' gradients in the same sweep
  if (d_shift) {
#pragma omp simd reduction(+ : m1, m2)
    for (int64_t j = 0; j < n; ++j) {
      const T dxh = dy[j] * gain[j];
      m1 += dxh;
      m2 += dxh * xhat[j];
      d_gain[j] += dy[j] * xhat[j];
      d_shift[j] += dy[j];
    }
  } else {
#pragma omp simd reduction(+ : m1, m2)
    for (int64_t j = 0; j < n; ++j) {
      const T dxh = dy[j] * gain[j];
      m1 += dxh;
      m2 += dxh * xhat[j];
      d_gain[j] += dy[j] * xhat[j];
    }
  }
  m1 /= T(n);
  m2 /= T(n);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = rstd * (dy[j] * gain[j] - m1 - xhat[j] * m2);
}

inline int64_t grain(int64_t row_size) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_size));
}

// The buffers the forward saves for the backward are large (the gates of every step) and freed after
// each backward; fresh from the system every step, their first touch costs a page fault per 4 KiB,
// which measured at a quarter of the loop's time. They come from this pool instead: freed blocks are
// kept by size (at most RNNKIT_NATIVE_POOL_MB, default 512 MiB, in all) and reused by the next step.
class BufferPool {
 public:
  static BufferPool& get() {
    static BufferPool* pool = new BufferPool();  // never destroyed: tensors may be freed at exit
    return *pool;
  }

  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    int64_t n = 1;
    for (int64_t s : sizes) n *= s;
    const size_t bytes = static_cast<size_t>(n) * opts.dtype().itemsize();
    if (bytes < (size_t(1) << 20) || limit_ == 0) return at::empty(sizes, opts);
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = take(rounded);
    if (p == nullptr) p = std::aligned_alloc(64, rounded);
    if (p == nullptr) throw std::bad_alloc();
    return at::from_blob(p, sizes, [this, rounded](void* q) { give(q, rounded); }, opts);
  }

 private:
  BufferPool() {
    const char* env = std::getenv("RNNKIT_NATIVE_POOL_MB");
    limit_ = (env != nullptr ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) : size_t(512)) << 20;
  }
  void* take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= bytes;
    return p;
  }
  void give(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= limit_) {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0, limit_ = 0;
};

inline Tensor pooled(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  return BufferPool::get().empty(sizes, opts);
}

inline Tensor opt_or_empty(const std::optional<Tensor>& t, const Tensor& like) {
  return t.has_value() && t->defined() ? t->contiguous() : at::empty({0}, like.options());
}

}  // namespace rnnkit_native
