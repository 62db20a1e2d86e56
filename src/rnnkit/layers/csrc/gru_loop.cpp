// rnnkit's native GRU time loop: the forward and the hand-written backward of GRUCell and LayerNormGRUCell
// (PyTorch's GRU variant: the reset gate multiplies the hidden product's n part, bias included) with the whole
// loop in C++, in the manner of lstm_loop.cpp.
//
//   hp = W_hh h_in            (h_in = h * h_mask with recurrent dropout, else h)
//   hp = LN(hp) * g_hh + b_hh (LayerNormGRUCell; its norm has no shift: b_hh is the shift)  or  hp + b_hh
//   r = sigmoid(x_r + hp_r), z = sigmoid(x_z + hp_z), n = tanh(x_n + r * hp_n), h' = n + z * (h - n)
//
// Per step the forward runs one matmul through ATen and one pass of plain C++ over the batch rows (the bias,
// the norm, the activations, the interpolation and the padding mask); the backward one pass over the rows (the
// GRU adjoint, the LayerNorm backward) and one matmul for dh. dW_hh is one matmul over all steps at the end, and
// so is b_hh's gradient without the norm. Registered as torch.ops.rnnkit_native.gru_forward / gru_backward
// (a fragment of lstm_loop.cpp's library). Layouts: xp (B, T, 3H) = the cell's project_input (b_ih included,
// b_hh not); W_hh (3H, H); mask (B, T) bool.

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

// -> [out (B,T,H), h_T, acts (T,B,3H) = (r, z, n), hns (T,B,H) = hp_n, hins (B,T,H),
//     hprevs (B,T,H) (empty without h_mask: then h_in is h), xhat (T,B,3H), rstd (T,B) (both empty without the norm)]
std::vector<Tensor> gru_forward(const Tensor& xp_in, const Tensor& h0, const Tensor& w,
                                const std::optional<Tensor>& b_hh_in, const std::optional<Tensor>& g_hh_in,
                                const std::optional<Tensor>& h_mask_in, const std::optional<Tensor>& mask_in,
                                double eps) {
  TORCH_CHECK(xp_in.dim() == 3 && xp_in.device().is_cpu(), "gru_forward: xp must be a (B, T, 3H) CPU tensor");
  const Tensor xp = xp_in.contiguous();
  const int64_t B = xp.size(0), T = xp.size(1), G = xp.size(2), H = G / 3;
  TORCH_CHECK(G == 3 * H && w.size(0) == G && w.size(1) == H, "gru_forward: W_hh must be (3H, H)");
  const bool ln = g_hh_in.has_value() && g_hh_in->defined();
  const auto opts = xp.options();
  const Tensor b_hh = opt_or_empty(b_hh_in, xp), g_hh = opt_or_empty(g_hh_in, xp), hm = opt_or_empty(h_mask_in, xp);
  const Tensor mk = mask_in.has_value() && mask_in->defined() ? mask_in->to(at::kBool).contiguous() : Tensor();
  const bool has_hm = hm.numel() > 0, has_b = b_hh.numel() > 0;
  Tensor out = at::empty({B, T, H}, opts), acts = pooled({T, B, G}, opts), hns = pooled({T, B, H}, opts);
  Tensor hins = pooled({B, T, H}, opts), hprevs = pooled({has_hm ? B : 0, T, H}, opts);
  Tensor xhat = pooled({ln ? T : 0, B, G}, opts), rstd = at::empty({ln ? T : 0, B}, opts);
  Tensor hp = at::empty({B, G}, opts);
  Tensor h = h0.contiguous().clone();
  const Tensor wt = w.t();

  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_forward", [&] {
    using T_ = scalar_t;
    const T_* xpd = xp.data_ptr<T_>();
    T_* outd = out.data_ptr<T_>();
    T_* actd = acts.data_ptr<T_>();
    T_* hnd = hns.data_ptr<T_>();
    T_* hind = hins.data_ptr<T_>();
    T_* hprd = has_hm ? hprevs.data_ptr<T_>() : nullptr;
    T_* hd = h.data_ptr<T_>();
    T_* hpd = hp.data_ptr<T_>();
    const T_* bias = has_b ? b_hh.data_ptr<T_>() : nullptr;
    const T_* gain = ln ? g_hh.data_ptr<T_>() : nullptr;
    T_* xhd = ln ? xhat.data_ptr<T_>() : nullptr;
    T_* rsd = ln ? rstd.data_ptr<T_>() : nullptr;
    const T_* hmd = has_hm ? hm.data_ptr<T_>() : nullptr;
    const bool* mkd = mk.defined() ? mk.data_ptr<bool>() : nullptr;
    for (int64_t t = 0; t < T; ++t) {
      // h as it enters the hidden product (recurrent dropout's mask applied), kept for dW_hh; with a mask the
      // state itself too (the interpolation and its gradient use the unmasked h)
      for (int64_t b = 0; b < B; ++b) {
        T_* hin = hind + (b * T + t) * H;
        const T_* hb = hd + b * H;
        if (hmd) {
          const T_* m = hmd + b * H;
          T_* hpr = hprd + (b * T + t) * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            hin[j] = hb[j] * m[j];
            hpr[j] = hb[j];
          }
        } else {
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) hin[j] = hb[j];
        }
      }
      at::mm_out(hp, hins.select(1, t), wt);
      at::parallel_for(0, B, grain(G), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T_* raw = hpd + b * G;
          if (ln) {  // hp = LN(W_hh h_in) * g_hh + b_hh
            T_* xh = xhd + (t * B + b) * G;
            row_norm(raw, xh, G, eps, rsd + t * B + b);
            if (bias) {
              _Pragma("omp simd")
              for (int64_t j = 0; j < G; ++j) raw[j] = xh[j] * gain[j] + bias[j];
            } else {
              _Pragma("omp simd")
              for (int64_t j = 0; j < G; ++j) raw[j] = xh[j] * gain[j];
            }
          } else if (bias) {
            _Pragma("omp simd")
            for (int64_t j = 0; j < G; ++j) raw[j] += bias[j];
          }
          const T_* x = xpd + (b * T + t) * G;
          T_* a = actd + (t * B + b) * G;
          _Pragma("omp simd")
          for (int64_t j = 0; j < 2 * H; ++j) a[j] = x[j] + raw[j];
          sigmoid_inplace(a, 2 * H);  // r, z
          T_* hn = hnd + (t * B + b) * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {
            hn[j] = raw[2 * H + j];
            a[2 * H + j] = x[2 * H + j] + a[j] * raw[2 * H + j];
          }
          tanh_inplace(a + 2 * H, H);  // n
          const bool valid = mkd == nullptr || mkd[b * T + t];
          T_* y = outd + (b * T + t) * H;
          if (valid) {
            T_* hb = hd + b * H;
            const T_* z = a + H;
            const T_* n = a + 2 * H;
            _Pragma("omp simd")
            for (int64_t j = 0; j < H; ++j) {
              const T_ hv = n[j] + z[j] * (hb[j] - n[j]);
              y[j] = hv;
              hb[j] = hv;
            }
          } else {  // padding: the state passes through, the output is zero
            for (int64_t j = 0; j < H; ++j) y[j] = T_(0);
          }
        }
      });
    }
  });
  return {out, h, acts, hns, hins, hprevs, xhat, rstd};
}

// -> [d_xp (B,T,3H), d_h0, d_W_hh, d_b_hh, d_g_hh]   (d_b_hh empty without a bias, d_g_hh without the norm)
std::vector<Tensor> gru_backward(const std::optional<Tensor>& d_out_in, const std::optional<Tensor>& d_hT,
                                 const Tensor& w, const std::optional<Tensor>& b_hh_in,
                                 const std::optional<Tensor>& g_hh_in, const std::optional<Tensor>& h_mask_in,
                                 const std::optional<Tensor>& mask_in, const Tensor& acts, const Tensor& hns,
                                 const Tensor& hins, const Tensor& hprevs, const Tensor& xhat, const Tensor& rstd) {
  const int64_t T = acts.size(0), B = acts.size(1), G = acts.size(2), H = G / 3;
  const auto opts = acts.options();
  const bool ln = g_hh_in.has_value() && g_hh_in->defined();
  const bool has_b = b_hh_in.has_value() && b_hh_in->defined();
  const Tensor g_hh = opt_or_empty(g_hh_in, acts), hm = opt_or_empty(h_mask_in, acts);
  const Tensor mk = mask_in.has_value() && mask_in->defined() ? mask_in->to(at::kBool).contiguous() : Tensor();
  const Tensor d_out = d_out_in.has_value() && d_out_in->defined() ? d_out_in->contiguous() : Tensor();
  Tensor dh = d_hT.has_value() && d_hT->defined() ? d_hT->contiguous().clone() : at::zeros({B, H}, opts);
  Tensor d_xp = pooled({B, T, G}, opts), d_hp = pooled({B, T, G}, opts);
  Tensor d_g = at::zeros({ln ? G : 0}, opts), d_b = at::zeros({ln && has_b ? G : 0}, opts);
  Tensor dh_prev = at::empty({B, H}, opts);
  const bool has_hm = hm.numel() > 0;

  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_backward", [&] {
    using T_ = scalar_t;
    const T_* actd = acts.data_ptr<T_>();
    const T_* hnd = hns.data_ptr<T_>();
    const T_* hprd = has_hm ? hprevs.data_ptr<T_>() : hins.data_ptr<T_>();  // the state entering each step
    const T_* dyd = d_out.defined() ? d_out.data_ptr<T_>() : nullptr;
    const T_* hmd = has_hm ? hm.data_ptr<T_>() : nullptr;
    const T_* gain = ln ? g_hh.data_ptr<T_>() : nullptr;
    const T_* xhd = ln ? xhat.data_ptr<T_>() : nullptr;
    const T_* rsd = ln ? rstd.data_ptr<T_>() : nullptr;
    T_* d_gd = ln ? d_g.data_ptr<T_>() : nullptr;
    T_* d_bd = ln && has_b ? d_b.data_ptr<T_>() : nullptr;
    const bool* mkd = mk.defined() ? mk.data_ptr<bool>() : nullptr;
    T_* dhd = dh.data_ptr<T_>();
    T_* dxd = d_xp.data_ptr<T_>();
    T_* dhpd = d_hp.data_ptr<T_>();
    const T_* dpd = dh_prev.data_ptr<T_>();
    // With the norm the rows share the gain's (and the bias's) gradient accumulators: run them in order;
    // without it the rows are independent.
    const int64_t row_grain = ln ? B : grain(G);
    for (int64_t t = T - 1; t >= 0; --t) {
      at::parallel_for(0, B, row_grain, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T_* ds = dxd + (b * T + t) * G;
          T_* dhp = dhpd + (b * T + t) * G;
          if (mkd != nullptr && !mkd[b * T + t]) {  // padding: no gradient enters this step; dh passes through
            for (int64_t j = 0; j < G; ++j) {
              ds[j] = T_(0);
              dhp[j] = T_(0);
            }
            continue;
          }
          const T_* a = actd + (t * B + b) * G;
          const T_* hn = hnd + (t * B + b) * H;
          const T_* hpr = hprd + (b * T + t) * H;
          const T_* dy = dyd ? dyd + (b * T + t) * H : nullptr;
          T_* dhb = dhd + b * H;
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) {  // h' = n + z (h - n), n = tanh(x_n + r hp_n)
            const T_ dhv = dy ? dhb[j] + dy[j] : dhb[j];
            const T_ r = a[j], z = a[H + j], n = a[2 * H + j];
            const T_ dn = dhv * (T_(1) - z) * (T_(1) - n * n);
            const T_ dz = dhv * (hpr[j] - n) * z * (T_(1) - z);
            const T_ dr = dn * hn[j] * r * (T_(1) - r);
            ds[j] = dr;
            ds[H + j] = dz;
            ds[2 * H + j] = dn;
            dhp[j] = dr;
            dhp[H + j] = dz;
            dhp[2 * H + j] = dn * r;
            dhb[j] = dhv * z;  // the direct path; the hidden product's part is added after the matmul
          }
          if (ln)  // through hp = LN(W_hh h_in) * g_hh + b_hh, in place
            row_norm_backward(dhp, xhd + (t * B + b) * G, gain, rsd[t * B + b], G, dhp, d_gd, d_bd);
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
          for (int64_t j = 0; j < H; ++j) dhb[j] += dp[j] * m[j];
        } else {
          _Pragma("omp simd")
          for (int64_t j = 0; j < H; ++j) dhb[j] += dp[j];
        }
      }
    }
  });
  const Tensor d_hp2 = d_hp.view({B * T, G});
  Tensor d_w = at::mm(d_hp2.t(), hins.view({B * T, H}));
  if (has_b && !ln) d_b = d_hp2.sum(0);
  return {d_xp, dh, d_w, d_b, d_g};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(rnnkit_native, m) {
  m.def(
      "gru_forward(Tensor xp, Tensor h0, Tensor w, Tensor? b_hh, Tensor? g_hh, Tensor? h_mask, Tensor? mask, "
      "float eps) -> Tensor[]");
  m.def(
      "gru_backward(Tensor? d_out, Tensor? d_hT, Tensor w, Tensor? b_hh, Tensor? g_hh, Tensor? h_mask, "
      "Tensor? mask, Tensor acts, Tensor hns, Tensor hins, Tensor hprevs, Tensor xhat, Tensor rstd) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(rnnkit_native, CPU, m) {
  m.impl("gru_forward", &gru_forward);
  m.impl("gru_backward", &gru_backward);
}
