// rnnkit's native LSTM time loop: the forward and the hand-written backward of rnnkit.layers.fastloop
// (LSTMCell without projection, LayerNormLSTMCell) with the whole loop in C++.
//
// Per step the forward runs one matmul through ATen (addmm, or mm then the norms) and one pass of plain
// C++ over the batch rows for the activations, the cell update, the norms and the padding mask; the
// backward one pass over the rows (the LSTM adjoint, LayerNorm backward) and one matmul for dh. The
// gradient of W_hh is one large matmul over all steps at the end. This removes the ~9 forward and ~15
// backward small-op dispatches per step of the Python loop, which dominate at small sizes.
//
// Built on first use by rnnkit.layers.native (torch.utils.cpp_extension) and registered as
// torch.ops.rnnkit_native.lstm_forward / lstm_backward. Zoneout and reduced precision stay on the
// Python loop. Layouts: xp (B, T, 4H), W_ih x + b_ih + b_hh without norms, W_ih x alone with them; W_hh
// (4H, H); mask (B, T) bool.
//
// With norms (LayerNormLSTMCell) the input side runs here too: xp is W_ih x alone, and the step's pass over the
// rows forms LN(xp) * g_ih + bias + LN(hp) * g_hh in one sweep after the two rows' statistics (bias = b_ih +
// b_hh); the backward takes both norms' gradients in two sweeps of the row. This replaces a LayerNorm over all
// B x T x 4H values outside the loop, forward and backward, and the bias add. The backward recomputes LN(xp)
// from the saved mean and rstd instead of keeping it.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "loop_common.h"

namespace {

using at::Tensor;
using namespace rnnkit_native;

// gates = LN(u) * g_ih + bias + LN(hp) * g_hh for one row (the bias with kBias, decided at compile time so the
// sweep stays one vectorised loop); keeps LN(hp) in xh_hh and the statistics the backward needs.
template <typename T_, bool kBias>
void gates_forward(const T_* __restrict u, const T_* __restrict hp, const T_* __restrict g_ih,
                   const T_* __restrict bias, const T_* __restrict g_hh, int64_t G, double eps, T_* __restrict gates,
                   T_* __restrict xh_hh, T_* mu_ih, T_* rs_ih, T_* rs_hh) {
  T_ mh, rh, mi, ri;
  row_stats2(hp, u, G, eps, &mh, &rh, &mi, &ri);
  _Pragma("omp simd")
  for (int64_t j = 0; j < G; ++j) {
    const T_ xh = (hp[j] - mh) * rh;
    xh_hh[j] = xh;
    T_ g = (u[j] - mi) * ri * g_ih[j] + xh * g_hh[j];
    if constexpr (kBias) g += bias[j];
    gates[j] = g;
  }
  *mu_ih = mi;
  *rs_ih = ri;
  *rs_hh = rh;
}

// gates_forward's backward for one row: ds (the gates' gradient) -> the gradient of hp in d_hp and that of u in
// ds itself; adds to the gains' and the bias' gradients (d_bias: the sum of ds, also when the bias is absent).
// LayerNorm's backward (row_norm_backward) for both norms, sharing the sweeps over ds.
template <typename T_>
void gates_backward(T_* ds, const T_* __restrict u, T_ mi, T_ ri, const T_* __restrict xh_hh, T_ rh,
                    const T_* __restrict g_ih, const T_* __restrict g_hh, int64_t G, T_* __restrict d_hp,
                    T_* __restrict d_gih, T_* __restrict d_ghh, T_* __restrict d_bias) {
  T_ h1 = 0, h2 = 0, i1 = 0, i2 = 0;
  _Pragma("omp simd reduction(+ : h1, h2, i1, i2)")
  for (int64_t j = 0; j < G; ++j) {
    const T_ d = ds[j], xi = (u[j] - mi) * ri, xh = xh_hh[j];
    const T_ dh = d * g_hh[j], di = d * g_ih[j];
    h1 += dh;
    h2 += dh * xh;
    i1 += di;
    i2 += di * xi;
    d_ghh[j] += d * xh;
    d_gih[j] += d * xi;
    d_bias[j] += d;
  }
  h1 /= T_(G);
  h2 /= T_(G);
  i1 /= T_(G);
  i2 /= T_(G);
  _Pragma("omp simd")
  for (int64_t j = 0; j < G; ++j) {
    const T_ d = ds[j], xi = (u[j] - mi) * ri;
    d_hp[j] = rh * (d * g_hh[j] - h1 - xh_hh[j] * h2);
    ds[j] = ri * (d * g_ih[j] - i1 - xi * i2);
  }
}

// -> [out (B,T,H), h_T, c_T, acts (T,B,4H), hins (B,T,H), cs (T,B,H), tcs (T,B,H),
//     xhat_hh (T,B,4H), rstd_hh (T,B), xhat_c (T,B,H), rstd_c (T,B),   (these four empty without norms)
//     mean_ih (T,B), rstd_ih (T,B)]                                    (empty without norms)
std::vector<Tensor> lstm_forward(const Tensor& xp_in, const Tensor& h0, const Tensor& c0, const Tensor& w,
                                 const std::optional<Tensor>& g_hh_in, const std::optional<Tensor>& g_c_in,
                                 const std::optional<Tensor>& b_c_in, const std::optional<Tensor>& g_ih_in,
                                 const std::optional<Tensor>& bias_in, const std::optional<Tensor>& h_mask_in,
                                 const std::optional<Tensor>& mask_in, double eps) {
  TORCH_CHECK(xp_in.dim() == 3 && xp_in.device().is_cpu(), "lstm_forward: xp must be a (B, T, 4H) CPU tensor");
  const Tensor xp = xp_in.contiguous();
  const int64_t B = xp.size(0), T = xp.size(1), G = xp.size(2), H = G / 4;
  TORCH_CHECK(G == 4 * H && w.size(0) == G && w.size(1) == H, "lstm_forward: W_hh must be (4H, H)");
  const bool ln = g_hh_in.has_value() && g_hh_in->defined();
  const auto opts = xp.options();
  const Tensor g_hh = opt_or_empty(g_hh_in, xp), g_c = opt_or_empty(g_c_in, xp), b_c = opt_or_empty(b_c_in, xp);
  const Tensor g_ih = opt_or_empty(g_ih_in, xp), bias = opt_or_empty(bias_in, xp);
  TORCH_CHECK(ln == (g_ih.numel() > 0), "lstm_forward: the norms come together: g_ih with g_hh");
  TORCH_CHECK((!ln || (g_ih.numel() == G && g_hh.numel() == G)) && (bias.numel() == 0 || (ln && bias.numel() == G)),
              "lstm_forward: g_ih, g_hh and bias must have 4H values, and bias comes with the norms");
  const Tensor hm = opt_or_empty(h_mask_in, xp);
  const Tensor mk = mask_in.has_value() && mask_in->defined() ? mask_in->to(at::kBool).contiguous() : Tensor();
  Tensor out = at::empty({B, T, H}, opts), acts = pooled({T, B, G}, opts);
  Tensor mu_ih = at::empty({ln ? T : 0, B}, opts), rs_ih = at::empty({ln ? T : 0, B}, opts);
  Tensor hins = pooled({B, T, H}, opts), cs = pooled({T, B, H}, opts), tcs = pooled({T, B, H}, opts);
  Tensor xh_hh = pooled({ln ? T : 0, B, G}, opts), rs_hh = at::empty({ln ? T : 0, B}, opts);
  Tensor xh_c = pooled({ln ? T : 0, B, H}, opts), rs_c = at::empty({ln ? T : 0, B}, opts);
  Tensor hp = at::empty({ln ? B : 0, G}, opts), cn_buf = at::empty({B, H}, opts);
  Tensor h = h0.contiguous().clone(), c = c0.contiguous().clone();
  const Tensor wt = w.t();
  const bool has_hm = hm.numel() > 0, has_bc = b_c.numel() > 0;

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "lstm_forward", [&] {
    using T_ = scalar_t;
    const T_* xpd = xp.data_ptr<T_>();
    T_* outd = out.data_ptr<T_>();
    T_* actd = acts.data_ptr<T_>();
    T_* hind = hins.data_ptr<T_>();
    T_* csd = cs.data_ptr<T_>();
    T_* tcd = tcs.data_ptr<T_>();
    T_* hd = h.data_ptr<T_>();
    T_* cd = c.data_ptr<T_>();
    T_* cnd = cn_buf.data_ptr<T_>();
    const T_* hmd = has_hm ? hm.data_ptr<T_>() : nullptr;
    const bool* mkd = mk.defined() ? mk.data_ptr<bool>() : nullptr;
    const T_* ghh = ln ? g_hh.data_ptr<T_>() : nullptr;
    const T_* gc = ln ? g_c.data_ptr<T_>() : nullptr;
    const T_* bc = ln && has_bc ? b_c.data_ptr<T_>() : nullptr;
    const T_* gih = ln ? g_ih.data_ptr<T_>() : nullptr;
    const T_* bsd = bias.numel() > 0 ? bias.data_ptr<T_>() : nullptr;
    // the norms' buffers (null without norms): data_ptr() checks the tensor at each call, so once here
    T_* xhhd = ln ? xh_hh.data_ptr<T_>() : nullptr;
    T_* rshd = ln ? rs_hh.data_ptr<T_>() : nullptr;
    T_* muid = ln ? mu_ih.data_ptr<T_>() : nullptr;
    T_* rsid = ln ? rs_ih.data_ptr<T_>() : nullptr;
    T_* xhcd = ln ? xh_c.data_ptr<T_>() : nullptr;
    T_* rscd = ln ? rs_c.data_ptr<T_>() : nullptr;
    T_* hpd = ln ? hp.data_ptr<T_>() : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      // h as it enters the hidden product (recurrent dropout's mask applied), kept for dW_hh
      for (int64_t b = 0; b < B; ++b) {
        T_* hin = hind + (b * T + t) * H;
        const T_* hb = hd + b * H;
        if (hmd) {
          const T_* m = hmd + b * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) hin[j] = hb[j] * m[j];
        } else {
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) hin[j] = hb[j];
        }
      }
      Tensor gates = acts.select(0, t);
      Tensor hin_t = hins.select(1, t);
      if (ln) {
        at::mm_out(hp, hin_t, wt);
      } else {
        at::addmm_out(gates, xp.select(1, t), hin_t, wt);
      }
      at::parallel_for(0, B, grain(G), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T_* a = actd + (t * B + b) * G;
          if (ln) {  // gates = LN(xp) * g_ih + bias + LN(hp) * g_hh
            const int64_t k = t * B + b;
            auto row = bsd ? gates_forward<T_, true> : gates_forward<T_, false>;
            row(xpd + (b * T + t) * G, hpd + b * G, gih, bsd, ghh, G, eps, a, xhhd + k * G, muid + k, rsid + k,
                rshd + k);
          }
          sigmoid_inplace(a, 2 * H);  // i, f
          tanh_inplace(a + 2 * H, H);  // g
          sigmoid_inplace(a + 3 * H, H);  // o
          T_* cprev = cd + b * H;
          T_* csave = csd + (t * B + b) * H;
          T_* cn = cnd + b * H;
          const T_* i = a;
          const T_* f = a + H;
          const T_* g = a + 2 * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            csave[j] = cprev[j];
            cn[j] = f[j] * cprev[j] + i[j] * g[j];
          }
          T_* tc = tcd + (t * B + b) * H;
          if (ln) {  // tc = tanh(LN(cn) * g_c + b_c)
            T_* xh = xhcd + (t * B + b) * H;
            row_norm(cn, xh, H, eps, rscd + t * B + b);
            _Pragma("omp simd")
            for (int64_t j = 0; j < H; ++j) tc[j] = xh[j] * gc[j];
            if (bc)
              _Pragma("omp simd")
              for (int64_t j = 0; j < H; ++j) tc[j] += bc[j];
          } else {
            _Pragma("omp simd")
            for (int64_t j = 0; j < H; ++j) tc[j] = cn[j];
          }
          tanh_inplace(tc, H);
          const bool valid = mkd == nullptr || mkd[b * T + t];
          T_* y = outd + (b * T + t) * H;
          T_* hb = hd + b * H;
          if (valid) {
            _Pragma("omp simd")
            for (int64_t j = 0; j < H; ++j) {
              const T_ hn = a[3 * H + j] * tc[j];
              y[j] = hn;
              hb[j] = hn;
              cprev[j] = cn[j];
            }
          } else {  // padding: the state passes through, the output is zero
            for (int64_t j = 0; j < H; ++j) y[j] = T_(0);
          }
        }
      });
    }
  });
  return {out, h, c, acts, hins, cs, tcs, xh_hh, rs_hh, xh_c, rs_c, mu_ih, rs_ih};
}

// -> [d_xp (B,T,4H), d_h0, d_c0, d_W_hh, d_g_hh, d_g_c, d_b_c, d_g_ih, d_bias]   (the last five empty without
//     norms; d_b_c without b_c)
std::vector<Tensor> lstm_backward(const std::optional<Tensor>& d_out_in, const std::optional<Tensor>& d_hT,
                                  const std::optional<Tensor>& d_cT, const Tensor& w,
                                  const std::optional<Tensor>& g_hh_in, const std::optional<Tensor>& g_c_in,
                                  const std::optional<Tensor>& b_c_in, const std::optional<Tensor>& g_ih_in,
                                  const std::optional<Tensor>& bias_in, const std::optional<Tensor>& xp_in,
                                  const std::optional<Tensor>& h_mask_in, const std::optional<Tensor>& mask_in,
                                  const Tensor& acts, const Tensor& hins, const Tensor& cs, const Tensor& tcs,
                                  const Tensor& xh_hh, const Tensor& rs_hh, const Tensor& xh_c, const Tensor& rs_c,
                                  const Tensor& mu_ih, const Tensor& rs_ih) {
  const int64_t T = acts.size(0), B = acts.size(1), G = acts.size(2), H = G / 4;
  const auto opts = acts.options();
  const bool ln = g_hh_in.has_value() && g_hh_in->defined();
  const Tensor g_hh = opt_or_empty(g_hh_in, acts), g_c = opt_or_empty(g_c_in, acts), b_c = opt_or_empty(b_c_in, acts);
  const Tensor g_ih = opt_or_empty(g_ih_in, acts), bias = opt_or_empty(bias_in, acts);
  const Tensor xp = ln ? opt_or_empty(xp_in, acts) : Tensor();
  TORCH_CHECK(!ln || (g_ih.numel() == G && xp.numel() == B * T * G && mu_ih.numel() == T * B),
              "lstm_backward: the norms need g_ih, the forward's xp and its statistics");
  Tensor d_gih = at::zeros({ln ? G : 0}, opts), d_bias = at::zeros({ln ? G : 0}, opts);
  const Tensor hm = opt_or_empty(h_mask_in, acts);
  const Tensor mk = mask_in.has_value() && mask_in->defined() ? mask_in->to(at::kBool).contiguous() : Tensor();
  const Tensor d_out = d_out_in.has_value() && d_out_in->defined() ? d_out_in->contiguous() : Tensor();
  Tensor dh = d_hT.has_value() && d_hT->defined() ? d_hT->contiguous().clone() : at::zeros({B, H}, opts);
  Tensor dc = d_cT.has_value() && d_cT->defined() ? d_cT->contiguous().clone() : at::zeros({B, H}, opts);
  Tensor d_xp = pooled({B, T, G}, opts);
  Tensor d_hp = ln ? pooled({B, T, G}, opts) : d_xp;
  Tensor d_ghh = at::zeros({ln ? G : 0}, opts), d_gc = at::zeros({ln ? H : 0}, opts);
  Tensor d_bc = at::zeros({ln && b_c.numel() > 0 ? H : 0}, opts);
  Tensor dh_prev = at::empty({B, H}, opts), dtc_buf = at::empty({B, H}, opts);
  const bool has_hm = hm.numel() > 0;

  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
    using T_ = scalar_t;
    const T_* actd = acts.data_ptr<T_>();
    const T_* csd = cs.data_ptr<T_>();
    const T_* tcd = tcs.data_ptr<T_>();
    const T_* dyd = d_out.defined() ? d_out.data_ptr<T_>() : nullptr;
    const T_* hmd = has_hm ? hm.data_ptr<T_>() : nullptr;
    const bool* mkd = mk.defined() ? mk.data_ptr<bool>() : nullptr;
    T_* dhd = dh.data_ptr<T_>();
    T_* dcd = dc.data_ptr<T_>();
    T_* dxd = d_xp.data_ptr<T_>();
    T_* dhpd = d_hp.data_ptr<T_>();
    T_* dpd = dh_prev.data_ptr<T_>();
    T_* dtcd = dtc_buf.data_ptr<T_>();
    // the norms' inputs and gradients (null without norms), out of the loops: data_ptr() checks at each call
    const T_* xpn = ln ? xp.data_ptr<T_>() : nullptr;
    const T_* muid = ln ? mu_ih.data_ptr<T_>() : nullptr;
    const T_* rsid = ln ? rs_ih.data_ptr<T_>() : nullptr;
    const T_* xhhd = ln ? xh_hh.data_ptr<T_>() : nullptr;
    const T_* rshd = ln ? rs_hh.data_ptr<T_>() : nullptr;
    const T_* xhcd = ln ? xh_c.data_ptr<T_>() : nullptr;
    const T_* rscd = ln ? rs_c.data_ptr<T_>() : nullptr;
    const T_* gih = ln ? g_ih.data_ptr<T_>() : nullptr;
    const T_* ghh = ln ? g_hh.data_ptr<T_>() : nullptr;
    const T_* gc = ln ? g_c.data_ptr<T_>() : nullptr;
    T_* d_gihd = ln ? d_gih.data_ptr<T_>() : nullptr;
    T_* d_ghhd = ln ? d_ghh.data_ptr<T_>() : nullptr;
    T_* d_biasd = ln ? d_bias.data_ptr<T_>() : nullptr;
    T_* d_gcd = ln ? d_gc.data_ptr<T_>() : nullptr;
    T_* d_bcd = d_bc.numel() > 0 ? d_bc.data_ptr<T_>() : nullptr;
    // With norms the rows share the gains' gradient accumulators: run them in order (a parallel
    // version would need per-thread partial sums); without norms the rows are independent.
    const int64_t row_grain = ln ? B : grain(G);
    for (int64_t t = T - 1; t >= 0; --t) {
      at::parallel_for(0, B, row_grain, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T_* ds = dxd + (b * T + t) * G;
          T_* dhp = dhpd + (b * T + t) * G;
          const bool valid = mkd == nullptr || mkd[b * T + t];
          if (!valid) {  // padding: no gradient enters this step; dh, dc pass through unchanged
            for (int64_t j = 0; j < G; ++j) ds[j] = T_(0);
            if (ln)
              for (int64_t j = 0; j < G; ++j) dhp[j] = T_(0);
            continue;
          }
          const T_* a = actd + (t * B + b) * G;
          const T_* tc = tcd + (t * B + b) * H;
          const T_* cp = csd + (t * B + b) * H;
          const T_* dy = dyd ? dyd + (b * T + t) * H : nullptr;
          T_* dhb = dhd + b * H;
          T_* dcb = dcd + b * H;
          T_* dtc = dtcd + b * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {  // h = o * tc: into o's pre-activation and through tanh
            const T_ dhn = dy ? dhb[j] + dy[j] : dhb[j];
            const T_ o = a[3 * H + j];
            ds[3 * H + j] = dhn * tc[j] * o * (T_(1) - o);
            dtc[j] = dhn * o * (T_(1) - tc[j] * tc[j]);
          }
          if (ln) row_norm_backward(dtc, xhcd + (t * B + b) * H, gc, rscd[t * B + b], H, dtc, d_gcd, d_bcd);
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {  // c = f * c_old + i * g
            const T_ i = a[j], f = a[H + j], g = a[2 * H + j];
            const T_ dct = dcb[j] + dtc[j];
            ds[j] = dct * g * i * (T_(1) - i);
            ds[H + j] = dct * cp[j] * f * (T_(1) - f);
            ds[2 * H + j] = dct * i * (T_(1) - g * g);
            dcb[j] = dct * f;
          }
          if (ln) {  // gates = LN(xp) * g_ih + bias + LN(hp) * g_hh: ds becomes the gradient of xp
            const int64_t k = t * B + b;
            gates_backward(ds, xpn + (b * T + t) * G, muid[k], rsid[k], xhhd + k * G, rshd[k], gih, ghh, G, dhp,
                           d_gihd, d_ghhd, d_biasd);
          }
        }
      });
      at::mm_out(dh_prev, d_hp.select(1, t), w);
      for (int64_t b = 0; b < B; ++b) {
        if (mkd != nullptr && !mkd[b * T + t]) continue;  // the zero row added nothing
        T_* dhb = dhd + b * H;
        const T_* dp = dpd + b * H;
        if (hmd) {
          const T_* m = hmd + b * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) dhb[j] = dp[j] * m[j];
        } else {
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) dhb[j] = dp[j];
        }
      }
    }
  });
  Tensor d_w = at::mm(d_hp.view({B * T, G}).t(), hins.view({B * T, H}));
  return {d_xp, dh, dc, d_w, d_ghh, d_gc, d_bc, d_gih, d_bias};
}

// The buffer pool's [bytes kept, blocks kept, blocks reused, blocks allocated] (loop_common.h), for tests and
// for looking at what a workload does with it.
std::vector<int64_t> pool_stats() { return BufferPool::get().stats(); }

}  // namespace

TORCH_LIBRARY(rnnkit_native, m) {
  m.def("pool_stats() -> int[]", &pool_stats);
  m.def(
      "lstm_forward(Tensor xp, Tensor h0, Tensor c0, Tensor w, Tensor? g_hh, Tensor? g_c, Tensor? b_c, "
      "Tensor? g_ih, Tensor? bias, Tensor? h_mask, Tensor? mask, float eps) -> Tensor[]");
  m.def(
      "lstm_backward(Tensor? d_out, Tensor? d_hT, Tensor? d_cT, Tensor w, Tensor? g_hh, Tensor? g_c, Tensor? b_c, "
      "Tensor? g_ih, Tensor? bias, Tensor? xp, Tensor? h_mask, Tensor? mask, Tensor acts, Tensor hins, Tensor cs, "
      "Tensor tcs, Tensor xh_hh, Tensor rs_hh, Tensor xh_c, Tensor rs_c, Tensor mu_ih, Tensor rs_ih) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_native, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
