"""Hand-differentiated time loops for the LSTM and GRU cells: the loop path's fast step.

The reference loop (:func:`rnnkit.layers.recurrent.run_cell` with ``reference=True``) calls
``cell.recur`` once per step and lets autograd record every operation: about a dozen small ops per
step forward, twice that backward, each with its autograd bookkeeping, and ``T`` small matmuls for
the gradient of ``weight_hh``. For :class:`~rnnkit.cells.LSTMCell` (without projection) and
:class:`~rnnkit.cells.LayerNormLSTMCell`, :class:`LSTMLoop` runs the same equations as one autograd
node instead:

* forward without autograd: ``addmm`` for the hidden product, the activations in place on the gate
  tensor, ``torch.native_layer_norm`` for the norms (about 9 ops per step);
* backward written out step by step (the LSTM adjoint; ``native_layer_norm_backward`` for the
  norms, which also gives their gains' and shifts' gradients), and ``dW_hh = dG^T H`` as one large
  matmul over all steps instead of ``T`` small ones.

What it does not remove is the per-op cost of ~9 small kernels per step forward and ~15 backward,
where torch's fused kernel runs one. So on the CPU, in float32/float64 and without zoneout, the same
forward and backward run as one C++ loop (:mod:`rnnkit.layers.native`, built on first use): one matmul
and one pass over the rows per step; for :class:`~rnnkit.cells.LayerNormLSTMCell` that pass also normalises the
input side (``LN_ih(W_ih x)``, which the Python loop takes precomputed over all steps), so its LayerNorm over all
``B x T x 4H`` values, forward and backward, costs no extra sweeps of memory. :data:`BACKEND` picks
(``"auto"``: native when it built, ``"python"``: always this module's loop); :data:`last_backend` says which
ran.

The hooks the layer's regularisers need are built in: ``weight_hh`` (weight drop: any tensor,
gradients flow back to it), ``h_mask`` (recurrent dropout), zoneout (training: the per-step masks
are drawn with ``torch.rand_like`` in the reference's order, so a seeded run draws the same masks;
evaluation: the expectation) and the padding mask. Results equal the reference loop up to rounding
(tests compare them in float64, gradients included); ``bias_hh`` is added to the hoisted input
projection instead of at every step.

Second-order gradients: the hand-written backward is first-order only. When a backward runs with
``create_graph=True`` (``torch.autograd.grad(..., create_graph=True)``, gradient penalties,
Hessian-vector products), :func:`_recompute_grads` instead re-runs the same steps with plain autograd ops
(:func:`autograd_loop`) from the saved inputs and differentiates that, so the gradients it returns are
themselves differentiable; a plain backward keeps the fast path. The forward keeps references to its
inputs (``xp``, ``h0``, ``c0``) for this.

The GRU cells (:class:`~rnnkit.cells.GRUCell`, :class:`~rnnkit.cells.LayerNormGRUCell`: ``fast_loop = "gru"``)
have the C++ loop only (:func:`run_gru`, ``csrc/gru_loop.cpp``): one matmul per step, the bias, the norm and the
gates in one pass over the rows, the GRU adjoint written out, ``dW_hh`` and ``db_hh`` as one matmul and one sum
over all steps. Where it does not serve (zoneout, autocast, another device or dtype, no compiler,
``BACKEND = "python"``) they run ``cell.recur`` per step, as before. Second-order gradients recompute through
:func:`autograd_gru_loop`, as for the LSTM.

Shape legend: ``B`` batch, ``T`` time, ``H`` hidden, ``G = 4H`` (LSTM) or ``3H`` (GRU).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import LayerNormGRUCell, LayerNormLSTMCell, LSTMCell, RecurrentCell, State
from .regularisation import StepHooks

BACKEND = "auto"  # "auto": the C++ loop where it serves (CPU, float32/64, no zoneout) and built; "python"
last_backend: str | None = None  # "native" or "python": what the last run_lstm / run_gru call ran

_ln = torch.native_layer_norm
_ln_backward = torch.ops.aten.native_layer_norm_backward


class LoopRun(NamedTuple):
    """The loop's inputs that take no gradient: ``h_mask`` (B, H) or None, ``mask`` (B, T) bool or None, the
    zoneout probability, the mode, and the layer norms' ``eps`` (0 for the plain LSTM and GRU)."""

    h_mask: Tensor | None
    mask: Tensor | None
    zoneout: float
    training: bool
    eps: float


def supports(cell: RecurrentCell) -> bool:
    """Whether :func:`run_lstm` can run this cell: one that declares ``fast_loop = "lstm"`` (the LSTM cells:
    :class:`~rnnkit.cells.LSTMCell` without projection, :class:`~rnnkit.cells.LayerNormLSTMCell`)."""
    return cell.fast_loop == "lstm" and getattr(cell, "weight_hr", None) is None


def native_supports(cell: RecurrentCell) -> bool:
    """Whether a C++ loop can run this cell: the cells :func:`supports` accepts, and those that declare
    ``fast_loop = "gru"`` (:class:`~rnnkit.cells.GRUCell`, :class:`~rnnkit.cells.LayerNormGRUCell`; :func:`run_gru`)."""
    return cell.fast_loop == "gru" or supports(cell)


def why_not(cell: RecurrentCell, x: Tensor, native: bool = False) -> str | None:
    """Why :func:`run_lstm` (``native``: :func:`run_lstm` or :func:`run_gru` on the C++ loop) does not run this
    cell on ``x`` (None if it does): an unsupported cell, or autocast (under autocast the per-step loop runs,
    with autocast's per-op precision choices)."""
    if not (native_supports(cell) if native else supports(cell)):
        return f"{type(cell).__name__} has no {'native' if native else 'Python'} fast loop"
    if torch.is_autocast_enabled(x.device.type):
        return "autocast runs the per-step loop"
    return None


def _biases(cell: RecurrentCell) -> Tensor | None:
    """``bias_ih + bias_hh`` (the reference adds ``bias_hh`` at every step; the loops add both once), or the one
    there is, or None."""
    if cell.bias_ih is None or cell.bias_hh is None:
        return cell.bias_ih if cell.bias_hh is None else cell.bias_hh
    return cell.bias_ih + cell.bias_hh


def project_input(cell: RecurrentCell, x: Tensor) -> Tensor:
    """``cell.project_input(x) + bias_hh`` in one pass (the reference adds ``bias_hh`` at every step)."""
    if type(cell) is LSTMCell:
        return F.linear(x, cell.weight_ih, _biases(cell))
    xp = cell.ln_ih(F.linear(x, cell.weight_ih))
    bias = _biases(cell)
    return xp if bias is None else xp + bias


def run_lstm(
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    mask: Tensor | None,
    hooks: StepHooks | None = None,
    *,
    native: bool | None = None,
) -> tuple[Tensor, State]:
    """:func:`~rnnkit.layers.paths.run_cell`'s contract for the cells :func:`supports` accepts: the input ``x``
    (B, T, I), ``state`` ``(h0, c0)``, ``mask`` (B, T) bool or None, the regularisers' ``hooks`` -> outputs
    (B, T, H), ``(h_T, c_T)``. ``native``: run the C++ loop (True), the Python one (False), or whichever
    :func:`native_reason` allows (None). The input projection runs here over all steps at once
    (:func:`project_input`), except ``LayerNormLSTMCell``'s input norm on the C++ loop, which normalises each
    row of ``W_ih x`` inside the loop."""
    hooks = StepHooks() if hooks is None else hooks
    w = cell.weight_hh if hooks.weight_hh is None else hooks.weight_hh
    ln = type(cell) is LayerNormLSTMCell
    g_hh = cell.ln_hh.weight if ln else None
    g_c = cell.ln_c.weight if ln else None
    b_c = cell.ln_c.bias if ln else None
    h0, c0 = state
    h_mask = hooks.h_mask.detach() if hooks.h_mask is not None else None
    run = LoopRun(h_mask, mask, float(hooks.zoneout), bool(hooks.training), cell.eps if ln else 0.0)
    global last_backend
    if native is None:
        native = native_reason(x, hooks.zoneout) is None
    if native:
        last_backend = "native"
        if ln:  # LN_ih(W_ih x) * g_ih + bias row by row in the loop
            u, g_ih, bias = F.linear(x, cell.weight_ih), cell.ln_ih.weight, _biases(cell)
        else:
            u, g_ih, bias = project_input(cell, x), None, None
        out, h, c = NativeLSTMLoop.apply(u, h0, c0, w, g_hh, g_c, b_c, g_ih, bias, run)
        return out, (h, c)
    last_backend = "python"
    out, h, c = LSTMLoop.apply(project_input(cell, x), h0, c0, w, g_hh, g_c, b_c, run)
    return out, (h, c)


class LSTMLoop(torch.autograd.Function):
    """``(xp + b_hh, h0, c0, W_hh, [ln gains]) -> (outputs, h_T, c_T)`` over all steps; see the module.

    Per-step tensors are small separate allocations kept in lists, not slices of large preallocated
    buffers: a fresh multi-megabyte buffer per call costs a page fault per 4 KiB page on first touch,
    which measured slower than the whole step on the machines we time on; small blocks are reused
    from the allocator's free lists.
    """

    @staticmethod
    def forward(ctx, xp, h0, c0, w, g_hh, g_c, b_c, run: LoopRun):
        h_mask, mask, p, training, eps = run
        B, T, G = xp.shape
        H = G // 4
        ln = g_hh is not None
        zone_train = p > 0 and training
        zone_eval = p > 0 and not training
        xs = xp.unbind(1)
        wt = w.t()
        steps = mask.unsqueeze(-1).unbind(1) if mask is not None else None
        hs, cs = [h0], [c0]  # the states entering each step (and the last)
        hins, acts, tcs, cns, ys = [], [], [], [], []
        hps, stats_hh, stats_c, masks_h, masks_c = [], [], [], [], []
        h, c = h0, c0
        for t in range(T):
            hin = h if h_mask is None else h * h_mask  # h as it enters the hidden product
            if ln:
                hp = torch.mm(hin, wt)
                hpn, mean, rstd = _ln(hp, (G,), g_hh, None, eps)
                hps.append(hp)
                stats_hh.append((mean, rstd))
                gates = xs[t] + hpn
            else:
                gates = torch.addmm(xs[t], hin, wt)
            i, f, g, o = gates.split(H, 1)
            gates[:, : 2 * H].sigmoid_()
            g.tanh_()
            o.sigmoid_()  # gates now holds the activations: sigmoid, tanh in the g slot
            cn = torch.addcmul(f * c, i, g)
            if ln:
                c_norm, mean_c, rstd_c = _ln(cn, (H,), g_c, b_c, eps)
                stats_c.append((mean_c, rstd_c))
                tc = torch.tanh(c_norm)
            else:
                tc = torch.tanh(cn)
            hn = o * tc
            hins.append(hin)
            acts.append(gates)
            tcs.append(tc)
            cns.append(cn)
            hz, cz = hn, cn
            if zone_train:
                kh, kc = torch.rand_like(hz) < p, torch.rand_like(cz) < p
                masks_h.append(kh)
                masks_c.append(kc)
                hz, cz = torch.where(kh, h, hz), torch.where(kc, c, cz)
            elif zone_eval:
                hz, cz = p * h + (1 - p) * hz, p * c + (1 - p) * cz
            if steps is not None:
                m = steps[t]
                ys.append(hz * m.to(hz.dtype))
                h, c = torch.where(m, hz, h), torch.where(m, cz, c)
            else:
                ys.append(hz)
                h, c = hz, cz
            hs.append(h)
            cs.append(c)
        out = torch.stack(ys, 1)
        ctx.p, ctx.training, ctx.ln, ctx.eps = p, training, ln, eps
        ctx.lists = (hs, cs, hins, acts, tcs, cns, hps, stats_hh, stats_c, masks_h, masks_c)
        ctx.zone_masks = (masks_h, masks_c)
        ctx.save_for_backward(w, h_mask, mask, g_hh, g_c, b_c, xp, h0, c0)
        return out, h.clone(), c.clone()

    @staticmethod
    def backward(ctx, d_out, d_hT, d_cT):
        w, h_mask, mask, g_hh, g_c, b_c, xp, h0, c0 = ctx.saved_tensors
        lists = ctx.lists
        ctx.lists = None  # freed now: the graph's output tensors keep ctx alive after the backward
        if lists is None or torch.is_grad_enabled():
            # create_graph=True (differentiable gradients), or a second backward through a retained graph (a
            # double backward passes here again): recompute through plain autograd ops
            inputs = (xp, h0, c0, w, g_hh, g_c, b_c)
            run = LoopRun(h_mask, mask, ctx.p, ctx.training, ctx.eps)
            grads = _recompute_grads(ctx.needs_input_grad, inputs, run, (d_out, d_hT, d_cT), ctx.zone_masks)
            return (*grads, None)
        hs, cs, hins, acts, tcs, cns, hps, stats_hh, stats_c, masks_h, masks_c = lists
        p, training, ln = ctx.p, ctx.training, ctx.ln
        zone_train, zone_eval = p > 0 and training, p > 0 and not training
        T = len(acts)
        B, G = acts[0].shape
        H = G // 4
        one = torch.ones((), dtype=w.dtype, device=w.device)
        d_ghh = d_gc = d_bc = None
        if ln:  # the norms' parameter gradients, summed over the steps
            d_ghh = torch.zeros_like(g_hh)
            d_gc = torch.zeros_like(g_c)
            d_bc = torch.zeros_like(b_c) if b_c is not None else None
        dy = d_out.unbind(1) if d_out is not None else None  # T x (B, H)
        dh = d_hT if d_hT is not None else hs[0].new_zeros(B, H)
        dc = d_cT if d_cT is not None else cs[0].new_zeros(B, H)
        mf = mask.to(w.dtype).unsqueeze(-1).unbind(1) if mask is not None else None  # T x (B, 1)
        d_gates, d_hps = [None] * T, [None] * T
        for t in range(T - 1, -1, -1):
            # padding, then zoneout: the gradients of the new state (hn, cn) and of the old one
            if mf is not None:
                m = mf[t]
                dhz = dh * m if dy is None else (dy[t] + dh) * m
                dh_old, dcz, dc_old = dh - dh * m, dc * m, dc - dc * m
            else:
                dhz = dh if dy is None else dy[t] + dh
                dcz, dh_old, dc_old = dc, None, None
            if zone_train:
                kh, kc = masks_h[t].to(w.dtype), masks_c[t].to(w.dtype)
                dhn, dcn = dhz - dhz * kh, dcz - dcz * kc
                dh_old = dhz * kh if dh_old is None else dh_old + dhz * kh
                dc_old = dcz * kc if dc_old is None else dc_old + dcz * kc
            elif zone_eval:
                dhn, dcn = dhz * (1 - p), dcz * (1 - p)
                dh_old = dhz * p if dh_old is None else dh_old + dhz * p
                dc_old = dcz * p if dc_old is None else dc_old + dcz * p
            else:
                dhn, dcn = dhz, dcz
            # the cell: h = o * tanh(N(c)), c = f * c_old + i * g
            s, tc = acts[t], tcs[t]
            i, f, g, o = s.split(H, 1)
            ds = torch.empty_like(s)  # first the gradients of the gate outputs, then through them
            d_i, d_f, d_g, d_o = ds.split(H, 1)
            torch.mul(dhn, tc, out=d_o)
            dtc = dhn * o
            dtc = torch.addcmul(dtc, dtc * tc, tc, value=-1)  # through tanh
            if ln:
                mean_c, rstd_c = stats_c[t]
                dtc, dgc, dbc = _ln_backward(dtc, cns[t], (H,), mean_c, rstd_c, g_c, b_c, (True, True, b_c is not None))
                d_gc += dgc
                if b_c is not None:
                    d_bc += dbc
            dct = dcn + dtc
            torch.mul(dct, g, out=d_i)
            torch.mul(dct, cs[t], out=d_f)
            dc_prev = dct * f
            ds.mul_(torch.addcmul(s, s, s, value=-1))  # sigmoid' = s (1 - s), right for i, f, o
            torch.mul(dct, i, out=d_g)  # and tanh' = 1 - g^2 for g
            d_g.mul_(torch.addcmul(one, g, g, value=-1))
            d_gates[t] = ds
            if ln:
                mean, rstd = stats_hh[t]
                dhp, dghh, _ = _ln_backward(ds, hps[t], (G,), mean, rstd, g_hh, None, (True, True, False))
                d_ghh += dghh
                d_hps[t] = dhp
            else:
                dhp = ds
            dh_prev = torch.mm(dhp, w)
            if h_mask is not None:
                dh_prev = dh_prev * h_mask
            dh = dh_prev if dh_old is None else dh_prev + dh_old
            dc = dc_prev if dc_old is None else dc_prev + dc_old
        d_xp = torch.stack(d_gates, 1)  # (B, T, G)
        d_hp = torch.stack(d_hps, 1) if ln else d_xp
        d_w = torch.mm(d_hp.view(B * T, G).t(), torch.stack(hins, 1).view(B * T, H))
        return d_xp, dh, dc, d_w, d_ghh, d_gc, d_bc, None


def native_reason(x: Tensor, zoneout: float) -> str | None:
    """Why the C++ loop does not serve a run on ``x`` (None if it does): :data:`BACKEND`, zoneout, the device,
    the dtype, or a build that failed (the build runs here, the first time every other condition holds)."""
    from . import native  # imported here: `python -m rnnkit.layers.native` builds it without a double import

    if BACKEND not in ("auto", "python"):
        raise ValueError(f"fastloop.BACKEND must be 'auto' or 'python', got {BACKEND!r}")
    if BACKEND != "auto":
        return "fastloop.BACKEND is 'python'"
    if zoneout != 0:
        return "zoneout runs the Python loop"
    if x.device.type != "cpu":
        return f"the native loop runs on the CPU, not {x.device.type}"
    if x.dtype not in (torch.float32, torch.float64):
        return f"the native loop runs float32 and float64, not {x.dtype}"
    if not native.available():
        return "the native loop did not build"
    return None


class NativeLSTMLoop(torch.autograd.Function):
    """:class:`LSTMLoop`'s contract (without zoneout) on the C++ loop of ``csrc/lstm_loop.cpp``, plus the input
    norm: with ``g_ih`` (the norms' case only), ``xp`` is ``W_ih x`` and the loop takes
    ``LN(xp) * g_ih + bias`` in its place (:func:`autograd_native_lstm_loop` in autograd ops)."""

    @staticmethod
    def forward(ctx, xp, h0, c0, w, g_hh, g_c, b_c, g_ih, bias, run: LoopRun):
        from . import native

        h_mask, mask, eps = run.h_mask, run.mask, run.eps
        dtype = xp.dtype
        h0_in, c0_in, w_in = h0, c0, w
        h0, c0, w = h0.to(dtype), c0.to(dtype), w.to(dtype)
        res = native.ops().lstm_forward(xp, h0, c0, w, g_hh, g_c, b_c, g_ih, bias, h_mask, mask, float(eps))
        out, h, c, saved = res[0], res[1], res[2], res[3:]
        ctx.save_for_backward(xp, h0_in, c0_in, w_in, w, g_hh, g_c, b_c, g_ih, bias, h_mask, mask, *saved)
        ctx.eps = eps
        return out, h, c

    @staticmethod
    def backward(ctx, d_out, d_hT, d_cT):
        from . import native

        xp, h0, c0, w_in, w, g_hh, g_c, b_c, g_ih, bias, h_mask, mask, *saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients, by recomputation
            inputs = (xp, h0, c0, w_in, g_hh, g_c, b_c, g_ih, bias)
            run = LoopRun(h_mask, mask, 0.0, False, ctx.eps)
            grads = _recompute_grads(
                ctx.needs_input_grad, inputs, run, (d_out, d_hT, d_cT), loop=autograd_native_lstm_loop
            )
            return (*grads, None)
        grads = native.ops().lstm_backward(d_out, d_hT, d_cT, w, g_hh, g_c, b_c, g_ih, bias, xp, h_mask, mask, *saved)
        # the optional parameters' gradients come back empty where the parameter is None
        params = (g_hh, g_c, b_c, g_ih, bias)
        return (*grads[:4], *(g if p is not None else None for g, p in zip(grads[4:], params, strict=True)), None)


def run_gru(
    cell: RecurrentCell, xp: Tensor, state: State, mask: Tensor | None, hooks: StepHooks | None = None
) -> tuple[Tensor, State]:
    """:func:`~rnnkit.layers.paths.run_cell`'s contract on the C++ GRU loop, for the cells that declare
    ``fast_loop = "gru"`` (check :func:`native_reason` first): ``xp`` (B, T, 3H) from ``cell.project_input``,
    ``state`` ``(h0,)`` (B, H), ``mask`` (B, T) bool or None, the regularisers' ``hooks`` (weight drop's
    ``weight_hh``, recurrent dropout's ``h_mask``; no zoneout) -> outputs (B, T, H), ``(h_T,)``."""
    hooks = StepHooks() if hooks is None else hooks
    if hooks.zoneout:
        raise ValueError("run_gru: zoneout runs the per-step loop, not the native GRU loop")
    w = cell.weight_hh if hooks.weight_hh is None else hooks.weight_hh
    ln = isinstance(cell, LayerNormGRUCell)
    g_hh = cell.ln_hh.weight if ln else None
    h_mask = hooks.h_mask.detach() if hooks.h_mask is not None else None
    run = LoopRun(h_mask, mask, 0.0, bool(hooks.training), float(cell.ln_hh.eps) if ln else 0.0)
    global last_backend
    last_backend = "native"
    out, h = NativeGRULoop.apply(xp, state[0], w, cell.bias_hh, g_hh, run)
    return out, (h,)


class NativeGRULoop(torch.autograd.Function):
    """``(xp, h0, W_hh, b_hh, g_hh) -> (outputs, h_T)`` over all steps on the C++ loop of ``csrc/gru_loop.cpp``
    (``b_hh`` and the norm's gain ``g_hh`` may be None); :func:`autograd_gru_loop` is the same in autograd ops."""

    @staticmethod
    def forward(ctx, xp, h0, w, b_hh, g_hh, run: LoopRun):
        from . import native

        dtype = xp.dtype
        h0_in, w_in = h0, w
        h0, w = h0.to(dtype), w.to(dtype)
        res = native.ops().gru_forward(xp, h0, w, b_hh, g_hh, run.h_mask, run.mask, float(run.eps))
        out, h, saved = res[0], res[1], res[2:]
        ctx.save_for_backward(xp, h0_in, w_in, w, b_hh, g_hh, run.h_mask, run.mask, *saved)
        ctx.eps = run.eps
        return out, h

    @staticmethod
    def backward(ctx, d_out, d_hT):
        from . import native

        xp, h0, w_in, w, b_hh, g_hh, h_mask, mask, *saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: differentiable gradients, by recomputation
            inputs = (xp, h0, w_in, b_hh, g_hh)
            run = LoopRun(h_mask, mask, 0.0, False, ctx.eps)
            grads = _recompute_grads(ctx.needs_input_grad, inputs, run, (d_out, d_hT), loop=autograd_gru_loop)
            return (*grads, None)
        d_xp, dh, d_w, d_b, d_g = native.ops().gru_backward(d_out, d_hT, w, b_hh, g_hh, h_mask, mask, *saved)
        return d_xp, dh, d_w, d_b if b_hh is not None else None, d_g if g_hh is not None else None, None


def autograd_gru_loop(xp, h0, w, b_hh, g_hh, run: LoopRun):
    """:class:`NativeGRULoop`'s equations with plain autograd ops (twice differentiable): ``xp`` (B, T, 3H),
    ``h0`` (B, H) -> outputs (B, T, H), ``h_T``."""
    h_mask, mask, _, _, eps = run
    G = xp.shape[-1]
    steps = mask.unsqueeze(-1).unbind(1) if mask is not None else None
    h, ys = h0, []
    for t, x_t in enumerate(xp.unbind(1)):
        hp = F.linear(h if h_mask is None else h * h_mask, w)
        if g_hh is not None:
            hp = F.layer_norm(hp, (G,), g_hh, None, eps)
        if b_hh is not None:
            hp = hp + b_hh
        xr, xz, xn = x_t.chunk(3, 1)
        hr, hz, hn = hp.chunk(3, 1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        hv = n + z * (h - n)
        if steps is not None:
            m = steps[t]
            ys.append(hv * m.to(hv.dtype))
            h = torch.where(m, hv, h)
        else:
            ys.append(hv)
            h = hv
    return torch.stack(ys, 1), h


def autograd_native_lstm_loop(xp, h0, c0, w, g_hh, g_c, b_c, g_ih, bias, run: LoopRun):
    """:class:`NativeLSTMLoop`'s equations with plain autograd ops: the input norm (with ``g_ih``), then
    :func:`autograd_loop`."""
    if g_ih is not None:
        xp = F.layer_norm(xp, (xp.shape[-1],), g_ih, None, run.eps)
        if bias is not None:
            xp = xp + bias
    return autograd_loop(xp, h0, c0, w, g_hh, g_c, b_c, run)


def autograd_loop(xp, h0, c0, w, g_hh, g_c, b_c, run: LoopRun, zone_masks=(None, None)):
    """:class:`LSTMLoop`'s equations with plain autograd ops (twice differentiable): ``zone_masks`` are the
    zoneout masks (for ``h`` and ``c``) the forward drew (training), so a recomputation takes the same steps."""
    h_mask, mask, p, training, eps = run
    masks_h, masks_c = zone_masks
    G = xp.shape[-1]
    H = G // 4
    ln = g_hh is not None
    steps = mask.unsqueeze(-1).unbind(1) if mask is not None else None
    h, c, ys = h0, c0, []
    for t, x_t in enumerate(xp.unbind(1)):
        hp = F.linear(h if h_mask is None else h * h_mask, w)
        if ln:
            hp = F.layer_norm(hp, (G,), g_hh, None, eps)
        i, f, g, o = (x_t + hp).chunk(4, 1)
        cz = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        hz = torch.sigmoid(o) * torch.tanh(F.layer_norm(cz, (H,), g_c, b_c, eps) if ln else cz)
        if p > 0 and training:
            hz, cz = torch.where(masks_h[t], h, hz), torch.where(masks_c[t], c, cz)
        elif p > 0:
            hz, cz = p * h + (1 - p) * hz, p * c + (1 - p) * cz
        if steps is not None:
            m = steps[t]
            ys.append(hz * m.to(hz.dtype))
            h, c = torch.where(m, hz, h), torch.where(m, cz, c)
        else:
            ys.append(hz)
            h, c = hz, cz
    return torch.stack(ys, 1), h, c


def _recompute_grads(needs, inputs, run: LoopRun, grad_outputs, zone_masks=(None, None), loop=None):
    """The gradients of :func:`autograd_loop` (or ``loop(*inputs, run)``: :func:`autograd_gru_loop`) re-run on
    the forward's own ``inputs``: under ``create_graph=True`` (grad mode on in a backward) they are
    differentiable, so second-order gradients flow through them."""
    wrt = [k for k, (t, need) in enumerate(zip(inputs, needs, strict=False)) if need and t is not None]
    result = [None] * len(inputs)
    if not wrt:
        return result
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        outs = autograd_loop(*inputs, run, zone_masks) if loop is None else loop(*inputs, run)
    pairs = [(o, g) for o, g in zip(outs, grad_outputs, strict=True) if g is not None]
    grads = torch.autograd.grad(
        [o for o, _ in pairs],
        [inputs[k] for k in wrt],
        [g for _, g in pairs],
        create_graph=create_graph,
        allow_unused=True,
    )
    for k, g in zip(wrt, grads, strict=True):
        result[k] = g if g is not None else torch.zeros_like(inputs[k])
    return result
