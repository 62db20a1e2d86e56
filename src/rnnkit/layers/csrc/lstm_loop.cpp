// rnnkit's native LSTM time loop: the forward and the hand-written backward of rnnkit.layers.fastloop
// (LSTMCell without projection, LayerNormLSTMCell) with the whole loop in C++.
//
// Per step the forward runs one matmul through ATen (addmm, or mm then the norm) and one pass of plain
// C++ over the batch rows for the activations, the cell update, the norms and the padding mask; the
// backward one pass over the rows (the LSTM adjoint, LayerNorm backward) and one matmul for dh. The
// gradient of W_hh is one large matmul over all steps at the end. This removes the ~9 forward and ~15
// backward small-op dispatches per step of the Python loop, which dominate at small sizes.
//
// Built on first use by rnnkit.layers.native (torch.utils.cpp_extension) and registered as
// torch.ops.rnnkit_native.lstm_forward / lstm_backward. Zoneout and reduced precision stay on the
// Python loop. Layouts: xp (B, T, 4H) with b_hh already added; W_hh (4H, H); mask (B, T) bool.

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

// -> [out (B,T,H), h_T, c_T, acts (T,B,4H), hins (B,T,H), cs (T,B,H), tcs (T,B,H),
//     xhat_hh (T,B,4H), rstd_hh (T,B), xhat_c (T,B,H), rstd_c (T,B)]   (the last four empty without norms)
std::vector<Tensor> lstm_forward(const Tensor& xp_in, const Tensor& h0, const Tensor& c0, const Tensor& w,
                                 const std::optional<Tensor>& g_hh_in, const std::optional<Tensor>& g_c_in,
                                 const std::optional<Tensor>& b_c_in, const std::optional<Tensor>& h_mask_in,
                                 const std::optional<Tensor>& mask_in, double eps) {
  TORCH_CHECK(xp_in.dim() == 3 && xp_in.device().is_cpu(), "lstm_forward: xp must be a (B, T, 4H) CPU tensor");
  const Tensor xp = xp_in.contiguous();
  const int64_t B = xp.size(0), T = xp.size(1), G = xp.size(2), H = G / 4;
  TORCH_CHECK(G == 4 * H && w.size(0) == G && w.size(1) == H, "lstm_forward: W_hh must be (4H, H)");
  const bool ln = g_hh_in.has_value() && g_hh_in->defined();
  const auto opts = xp.options();
  const Tensor g_hh = opt_or_empty(g_hh_in, xp), g_c = opt_or_empty(g_c_in, xp), b_c = opt_or_empty(b_c_in, xp);
  const Tensor hm = opt_or_empty(h_mask_in, xp);
  const Tensor mk = mask_in.has_value() && mask_in->defined() ? mask_in->to(at::kBool).contiguous() : Tensor();
  Tensor out = at::empty({B, T, H}, opts), acts = pooled({T, B, G}, opts);
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
      T_* hpd = ln ? hp.data_ptr<T_>() : nullptr;
      at::parallel_for(0, B, grain(G), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T_* a = actd + (t * B + b) * G;
          if (ln) {  // gates = xp + LN(hp) * g_hh
            T_* xh = xh_hh.data_ptr<T_>() + (t * B + b) * G;
            row_norm(hpd + b * G, xh, G, eps, rs_hh.data_ptr<T_>() + t * B + b);
            const T_* x = xpd + (b * T + t) * G;
            _Pragma("omp simd")
            for (int64_t j = 0; j < G; ++j) a[j] = x[j] + xh[j] * ghh[j];
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
            T_* xh = xh_c.data_ptr<T_>() + (t * B + b) * H;
            row_norm(cn, xh, H, eps, rs_c.data_ptr<T_>() + t * B + b);
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
  return {out, h, c, acts, hins, cs, tcs, xh_hh, rs_hh, xh_c, rs_c};
}

// -> [d_xp (B,T,4H), d_h0, d_c0, d_W_hh, d_g_hh, d_g_c, d_b_c]   (the last three empty without norms)
std::vector<Tensor> lstm_backward(const std::optional<Tensor>& d_out_in, const std::optional<Tensor>& d_hT,
                                  const std::optional<Tensor>& d_cT, const Tensor& w,
                                  const std::optional<Tensor>& g_hh_in, const std::optional<Tensor>& g_c_in,
                                  const std::optional<Tensor>& b_c_in, const std::optional<Tensor>& h_mask_in,
                                  const std::optional<Tensor>& mask_in, const Tensor& acts, const Tensor& hins,
                                  const Tensor& cs, const Tensor& tcs, const Tensor& xh_hh, const Tensor& rs_hh,
                                  const Tensor& xh_c, const Tensor& rs_c) {
  const int64_t T = acts.size(0), B = acts.size(1), G = acts.size(2), H = G / 4;
  const auto opts = acts.options();
  const bool ln = g_hh_in.has_value() && g_hh_in->defined();
  const Tensor g_hh = opt_or_empty(g_hh_in, acts), g_c = opt_or_empty(g_c_in, acts), b_c = opt_or_empty(b_c_in, acts);
  const Tensor hm = opt_or_empty(h_mask_in, acts);
  const Tensor mk = mask_in.has_value() && mask_in->defined() ? mask_in->to(at::kBool).contiguous() : Tensor();
  const Tensor d_out = d_out_in.has_value() && d_out_in->defined() ? d_out_in->contiguous() : Tensor();
  Tensor dh = d_hT.has_value() && d_hT->defined() ? d_hT->contiguous().clone() : at::zeros({B, H}, opts);
  Tensor dc = d_cT.has_value() && d_cT->defined() ? d_cT->contiguous().clone() : at::zeros({B, H}, opts);
  Tensor d_xp = at::empty({B, T, G}, opts);
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
          if (ln) {
            T_* d_shift = b_c.numel() > 0 ? d_bc.data_ptr<T_>() : nullptr;
            row_norm_backward(dtc, xh_c.data_ptr<T_>() + (t * B + b) * H, g_c.data_ptr<T_>(),
                              rs_c.data_ptr<T_>()[t * B + b], H, dtc, d_gc.data_ptr<T_>(), d_shift);
          }
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {  // c = f * c_old + i * g
            const T_ i = a[j], f = a[H + j], g = a[2 * H + j];
            const T_ dct = dcb[j] + dtc[j];
            ds[j] = dct * g * i * (T_(1) - i);
            ds[H + j] = dct * cp[j] * f * (T_(1) - f);
            ds[2 * H + j] = dct * i * (T_(1) - g * g);
            dcb[j] = dct * f;
          }
          if (ln)  // gates = xp + LN(hp) * g_hh
            row_norm_backward(ds, xh_hh.data_ptr<T_>() + (t * B + b) * G, g_hh.data_ptr<T_>(),
                              rs_hh.data_ptr<T_>()[t * B + b], G, dhp, d_ghh.data_ptr<T_>(), static_cast<T_*>(nullptr));
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
  return {d_xp, dh, dc, d_w, d_ghh, d_gc, d_bc};
}

}  // namespace

TORCH_LIBRARY(rnnkit_native, m) {
  m.def(
      "lstm_forward(Tensor xp, Tensor h0, Tensor c0, Tensor w, Tensor? g_hh, Tensor? g_c, Tensor? b_c, "
      "Tensor? h_mask, Tensor? mask, float eps) -> Tensor[]");
  m.def(
      "lstm_backward(Tensor? d_out, Tensor? d_hT, Tensor? d_cT, Tensor w, Tensor? g_hh, Tensor? g_c, Tensor? b_c, "
      "Tensor? h_mask, Tensor? mask, Tensor acts, Tensor hins, Tensor cs, Tensor tcs, Tensor xh_hh, Tensor rs_hh, "
      "Tensor xh_c, Tensor rs_c) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_native, CPU, m) {
  m.impl("lstm_forward", &lstm_forward);
  m.impl("lstm_backward", &lstm_backward);
}
