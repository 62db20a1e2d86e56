// Helpers shared by rnnkit's native loops (lstm_loop.cpp, gru_loop.cpp): the vectorisable activations, the
// LayerNorm row statistics and backward, and the pool the saved buffers come from. Header-only, in a named
// namespace, so both translation units share one BufferPool (a function-local static of an inline function).

#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <list>
#include <mutex>
#include <new>
#include <optional>
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

// row_norm_backward's first sweep: the two sums it needs, and the parameters' gradients on the way (the shift's
// only with kShift, decided at compile time so the loop stays one vectorised body).
template <typename T, bool kShift>
inline void norm_backward_sums(const T* dy, const T* __restrict xhat, const T* __restrict gain, int64_t n,
                               T* __restrict d_gain, T* __restrict d_shift, T* m1_out, T* m2_out) {
  T m1 = 0, m2 = 0;
#pragma omp simd reduction(+ : m1, m2)
  for (int64_t j = 0; j < n; ++j) {
    const T dxh = dy[j] * gain[j];
    m1 += dxh;
    m2 += dxh * xhat[j];
    d_gain[j] += dy[j] * xhat[j];
    if constexpr (kShift) d_shift[j] += dy[j];
  }
  *m1_out = m1 / T(n);
  *m2_out = m2 / T(n);
}

// LayerNorm backward for one row, given the normalised input xhat and rstd: dy (the gradient of the
// norm's output) -> dx in `out` (which may be dy itself); adds dy * xhat to the gain's gradient (and
// dy to the shift's).
template <typename T>
inline void row_norm_backward(const T* dy, const T* __restrict xhat, const T* __restrict gain, T rstd, int64_t n,
                              T* out, T* __restrict d_gain, T* __restrict d_shift) {
  T m1, m2;
  if (d_shift)
    norm_backward_sums<T, true>(dy, xhat, gain, n, d_gain, d_shift, &m1, &m2);
  else
    norm_backward_sums<T, false>(dy, xhat, gain, n, d_gain, d_shift, &m1, &m2);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = rstd * (dy[j] * gain[j] - m1 - xhat[j] * m2);
}

inline int64_t grain(int64_t row_size) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_size));
}

// The buffers the forward saves for the backward are large (the gates of every step) and freed after
// each backward; fresh from the system every step, their first touch costs a page fault per 4 KiB,
// which measured at a quarter of the loop's time. They come from this pool instead. Blocks are sized in
// classes (the size rounded up to a sixteenth of the power of two above it, so at most 1/8 is spare), so
// batches whose lengths differ a little share blocks; freed blocks are kept, newest last, up to
// RNNKIT_NATIVE_POOL_MB (default 512 MiB) in all, and past that the oldest go back to the system, so the
// pool follows the sizes in use instead of filling with those of an earlier model or length.
class BufferPool {
 public:
  static BufferPool& get() {
    static BufferPool* pool = new BufferPool();  // never destroyed: tensors may be freed at exit
    return *pool;
  }

  static size_t size_class(size_t bytes) {
    size_t p = 4096;
    while (p < bytes) p <<= 1;
    const size_t step = std::max<size_t>(p / 16, 4096);
    return (bytes + step - 1) / step * step;
  }

  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    int64_t n = 1;
    for (int64_t s : sizes) n *= s;
    const size_t bytes = static_cast<size_t>(n) * opts.dtype().itemsize();
    if (bytes < (size_t(1) << 20) || limit_ == 0) return at::empty(sizes, opts);
    const size_t block = size_class(bytes);
    void* p = take(block);
    if (p == nullptr) p = std::aligned_alloc(64, block);
    if (p == nullptr) throw std::bad_alloc();
    return at::from_blob(p, sizes, [this, block](void* q) { give(q, block); }, opts);
  }

  // [bytes kept, blocks kept, blocks reused, blocks allocated]: what the pool holds and has done
  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {static_cast<int64_t>(cached_), static_cast<int64_t>(kept_.size()), hits_, misses_};
  }

 private:
  BufferPool() {
    const char* env = std::getenv("RNNKIT_NATIVE_POOL_MB");
    limit_ = (env != nullptr ? static_cast<size_t>(std::strtoull(env, nullptr, 10)) : size_t(512)) << 20;
  }
  void* take(size_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = kept_.rbegin(); it != kept_.rend(); ++it) {  // the newest block of this class
      if (it->first != block) continue;
      void* p = it->second;
      kept_.erase(std::next(it).base());
      cached_ -= block;
      ++hits_;
      return p;
    }
    ++misses_;
    return nullptr;
  }
  void give(void* p, size_t block) {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      kept_.emplace_back(block, p);
      cached_ += block;
      while (cached_ > limit_) {  // the oldest first (the one just given last of all)
        cached_ -= kept_.front().first;
        drop.push_back(kept_.front().second);
        kept_.pop_front();
      }
    }
    for (void* q : drop) std::free(q);
  }
  std::mutex mutex_;
  std::list<std::pair<size_t, void*>> kept_;  // (class, block), oldest first
  size_t cached_ = 0, limit_ = 0;
  int64_t hits_ = 0, misses_ = 0;
};

inline Tensor pooled(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  return BufferPool::get().empty(sizes, opts);
}

inline Tensor opt_or_empty(const std::optional<Tensor>& t, const Tensor& like) {
  return t.has_value() && t->defined() ? t->contiguous() : at::empty({0}, like.options());
}

}  // namespace rnnkit_native
