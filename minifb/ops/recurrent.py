"""Fused pointwise parts of the LSTM and GRU cells.

A recurrent cell is two matrix products (``gi = x W_ih^T + b_ih``, ``gh = h W_hh^T + b_hh``) followed by
about fifteen small elementwise steps (gate activations, products, sums).  Here those steps are *one* op
each, so the tape holds one node per step instead of fifteen, the GPU runs them as one kernel
(``kernels/lstm_cell.cu``, ``kernels/gru_cell.cu``) and the CPU runs them as a few vectorised array
expressions with much less Python overhead.  On NumPy arrays the array-module code below runs; it agrees
with :mod:`minifb.kernel_refs` and is the reference the kernels are tested against.

Both ops take gate matrices with any leading shape ``(..., G·H)`` (``(B, G·H)`` for a batch, ``(G·H,)``
for one sample); the leading shapes of the inputs broadcast against each other, and each gradient is
reduced back to its input's shape by :meth:`~minifb.tensor.Tensor.backward` (from the shape that
:meth:`~minifb.tensor.Function.apply` recorded).
"""

from __future__ import annotations

import numpy as np

from .. import cpu_conv, kernels
from ..backend import array_module
from ..tensor import Function


def _sigmoid(xp, a):
    """Logistic function ``1 / (1 + exp(-a))`` in four in-place passes, as the kernels compute it.

    ``exp(-a)`` overflows to inf below a ≈ -88 (float32), where the quotient is the right 0. The shorter
    ``0.5 + 0.5·tanh(a/2)`` (about 30% faster) was used before, but it cancels: a small gate keeps only the
    absolute precision of 0.5, so sigmoid(-12) came out 0.08% off and sigmoid(-20) as 0, errors a cell
    state of 1e3 or more then multiplies.
    """
    s = xp.negative(a, dtype=a.dtype if a.dtype.kind == "f" else np.float64)  # integer gates: as a * 0.5 did
    with np.errstate(over="ignore"):
        xp.exp(s, out=s)
    s += 1
    xp.reciprocal(s, out=s)
    return s


def _as_rows(name, gi, gh, state, G):
    """Check the shapes and view the three inputs as 2-D rows of one common batch shape.

    Returns (lead shape, H, gi (N, G·H), gh (N, G·H), state (N, H)).
    """
    H = state.shape[-1] if state.ndim else 0
    if (gi.ndim < 1 or gh.ndim < 1 or state.ndim < 1 or gi.shape[-1] != G * H or gh.shape[-1] != G * H):
        raise ValueError(f"{name}: gate pre-activations gi {tuple(gi.shape)} and gh {tuple(gh.shape)} must be "
                         f"(..., {G}*H) with H = {H} from the state of shape {tuple(state.shape)}")
    try:
        lead = np.broadcast_shapes(gi.shape[:-1], gh.shape[:-1], state.shape[:-1])
    except ValueError:
        raise ValueError(f"{name}: batch shapes of gi {tuple(gi.shape)}, gh {tuple(gh.shape)} and state "
                         f"{tuple(state.shape)} do not broadcast") from None
    xp = array_module(gi, gh, state)

    def rows(a, width):
        if a.shape[:-1] != lead:
            a = xp.broadcast_to(a, lead + (width,))
        return a.reshape(-1, width)

    return lead, H, rows(gi, G * H), rows(gh, G * H), rows(state, H)


def lstm_pointwise_array(gi, gh, c, out=None):
    """Array-module LSTM pointwise step on rows: the math of :func:`kernels.lstm_cell_forward`.

    Args:
        gi, gh: (N, 4H) gate pre-activations (order i, f, g, o). c: (N, H) previous cell state.
        out: optional (N, 2H) array; h_new and c_new are then written into its two halves (no copies).

    Returns:
        h_new (N, H), c_new (N, H), gates (N, 4H) = activated [i | f | g | o].

    Example:
        >>> from minifb.ops.recurrent import lstm_pointwise_array
        >>> z = np.zeros((1, 4))
        >>> lstm_pointwise_array(z, z, np.ones((1, 1)))[1]      # c' = 0.5·1 + 0.5·tanh(0)
        array([[0.5]])
    """
    xp = array_module(gi, gh, c)
    N, H = c.shape
    if out is None:
        out = xp.empty((N, 2 * H), dtype=np.result_type(gi.dtype, gh.dtype, c.dtype))
    pre = gi + gh
    gates = _sigmoid(xp, pre)                               # i, f and o; g is overwritten next
    gates[:, 2 * H:3 * H] = xp.tanh(pre[:, 2 * H:3 * H])
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    h_new, c_new = out[:, :H], out[:, H:]
    xp.multiply(f, c, out=c_new)
    c_new += i * g
    xp.tanh(c_new, out=h_new)
    h_new *= o
    return h_new, c_new, gates


def lstm_pointwise_backward_array(dh, dc, gates, c, c_new):
    """Array-module backward of :func:`lstm_pointwise_array`: (dgates (N, 4H), dc_prev (N, H)).

    With ``tc = tanh(c_new)`` and ``dĉ = dc + dh·o·(1 - tc²)``:
    ``d[i|f|g|o] = [dĉ·g·i(1-i) | dĉ·c·f(1-f) | dĉ·i·(1-g²) | dh·tc·o(1-o)]``, ``dc_prev = dĉ·f``.

    Args:
        dh, dc: (N, H) gradients of h_new and c_new. gates (N, 4H), c, c_new (N, H): from the forward.

    Returns:
        dgates (N, 4H), the gradient of both gi and gh; dc_prev (N, H).

    Example:
        >>> from minifb.ops.recurrent import lstm_pointwise_array, lstm_pointwise_backward_array
        >>> z = np.zeros((1, 4)); c = np.ones((1, 1))
        >>> _, c_new, gates = lstm_pointwise_array(z, z, c)
        >>> lstm_pointwise_backward_array(np.zeros((1, 1)), np.ones((1, 1)), gates, c, c_new)[1]   # = f
        array([[0.5]])
    """
    xp = array_module(gates, c)
    H = c.shape[1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    tc = xp.tanh(c_new)
    dct = dh * o * (1 - tc * tc)
    dct += dc
    dgates = xp.empty_like(gates)
    dgates[:, :H] = dct * g * i * (1 - i)
    dgates[:, H:2 * H] = dct * c * f * (1 - f)
    dgates[:, 2 * H:3 * H] = dct * i * (1 - g * g)
    dgates[:, 3 * H:] = dh * tc * o * (1 - o)
    return dgates, dct * f


class LSTMPointwise(Function):
    """The elementwise part of an LSTM step, fused: ``(gi, gh, c) -> [h' | c']``.

    With ``[i, f, g, o] = [σ, σ, tanh, σ](gi + gh)`` (PyTorch's gate order):
    ``c' = f·c + i·g`` and ``h' = o·tanh(c')``.  The one output holds both: ``out[..., :H] = h'`` and
    ``out[..., H:] = c'``; the cell slices them apart.  The activated gates, ``c`` and ``c'`` are kept for
    the backward, whose gate gradient is the gradient of both ``gi`` and ``gh``.

    Inputs: gi, gh (..., 4H); c (..., H).  Output: (..., 2H).
    Kernels: ``kernels.lstm_cell_forward`` / ``lstm_cell_backward`` on CuPy (or emulated) float32;
    ``cpu_conv.lstm_forward`` / ``lstm_backward`` (compiled for the CPU) on NumPy float32.

    Example:
        >>> from minifb.ops.recurrent import LSTMPointwise
        >>> gi, gh, c = mf.zeros(2, 12), mf.zeros(2, 12), mf.ones(2, 3)
        >>> hc = LSTMPointwise.apply(gi, gh, c)
        >>> hc.shape, hc[:, 3:].numpy()[0]                       # c' = 0.5·1 + 0.5·tanh(0)
        ((2, 6), array([0.5, 0.5, 0.5], dtype=float32))
    """

    saved_output = "out"   # backward reads c' in the output: apply() records its version

    def forward(self, gi, gh, c):
        lead, H, gi2, gh2, c2 = _as_rows("lstm_pointwise", gi, gh, c, 4)
        xp = array_module(gi2, gh2, c2)
        if kernels.should_use(gi2, gh2, c2):
            out, gates = kernels.lstm_cell_forward(gi2, gh2, c2)   # c2 may be the previous out[:, H:]
        elif cpu_conv.lstm_applies(gi2, gh2, c2):
            out, gates = cpu_conv.lstm_forward(gi2, gh2, c2)
        else:
            out = xp.empty((c2.shape[0], 2 * H), dtype=np.result_type(gi2.dtype, gh2.dtype, c2.dtype))
            _, _, gates = lstm_pointwise_array(gi2, gh2, c2, out=out)
        if True in self.needs:  # the output holds c'; the cell's h' keeps it alive anyway
            self.lead, self.H = lead, H
            self.gates, self.c, self.out = gates, c2, out
        return out.reshape(lead + (2 * H,))

    def backward(self, grad):
        H = self.H
        grad = grad.reshape(-1, 2 * H)
        if kernels.should_use(grad, self.gates, self.c, self.out):
            dgates, dc_prev = kernels.lstm_cell_backward(grad, self.gates, self.c, self.out)
        elif cpu_conv.lstm_applies(grad, self.gates, self.c, self.out):
            dgates, dc_prev = cpu_conv.lstm_backward(grad, self.gates, self.c, self.out[:, H:])
        else:
            dgates, dc_prev = lstm_pointwise_backward_array(grad[:, :H], grad[:, H:], self.gates, self.c,
                                                            self.out[:, H:])
        dgates = dgates.reshape(self.lead + (4 * H,))
        return (dgates if self.needs[0] else None,
                dgates if self.needs[1] else None,    # the same array: Tensor.backward never writes into it
                dc_prev.reshape(self.lead + (H,)) if self.needs[2] else None)


def gru_pointwise_array(gi, gh, h):
    """Array-module GRU pointwise step on rows: (h_new, saved) as :func:`kernels.gru_cell_forward`.

    Args:
        gi, gh: (N, 3H) gate pre-activations (order r, z, n). h: (N, H) previous hidden state.

    Returns:
        h_new (N, H) and saved (N, 4H) = [r | z | n | gh_n] for the backward.

    Example:
        >>> from minifb.ops.recurrent import gru_pointwise_array
        >>> z = np.zeros((1, 3))
        >>> gru_pointwise_array(z, z, np.ones((1, 1)))[0]      # n = 0, z = 0.5: h' = 0.5·0 + 0.5·1
        array([[0.5]])
    """
    xp = array_module(gi, gh, h)
    H = h.shape[1]
    saved = xp.empty((h.shape[0], 4 * H), dtype=np.result_type(gi.dtype, gh.dtype, h.dtype))
    saved[:, :2 * H] = _sigmoid(xp, gi[:, :2 * H] + gh[:, :2 * H])
    r, z = saved[:, :H], saved[:, H:2 * H]
    saved[:, 3 * H:] = gh[:, 2 * H:]
    n = xp.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    saved[:, 2 * H:3 * H] = n
    h_new = h - n
    h_new *= z
    h_new += n                                               # (1 - z)·n + z·h
    return h_new, saved


def gru_pointwise_backward_array(dh, saved, h):
    """Array-module backward of :func:`gru_pointwise_array`: (dgi (N, 3H), dgh (N, 3H), dh_prev (N, H)).

    ``dn̂ = dh·(1-z)·(1-n²)``, ``dẑ = dh·(h-n)·z(1-z)``, ``dr̂ = dn̂·gh_n·r(1-r)``;
    ``dgi = [dr̂ | dẑ | dn̂]``, ``dgh = [dr̂ | dẑ | dn̂·r]``; the pointwise part of ``dh_prev`` is
    ``dh·z``.

    Args:
        dh: (N, H) gradient of h_new. saved (N, 4H), h (N, H): from the forward.

    Returns:
        dgi (N, 3H), dgh (N, 3H) and the pointwise part of dh_prev (N, H).

    Example:
        >>> from minifb.ops.recurrent import gru_pointwise_array, gru_pointwise_backward_array
        >>> z, h = np.zeros((1, 3)), np.ones((1, 1))
        >>> _, saved = gru_pointwise_array(z, z, h)
        >>> gru_pointwise_backward_array(np.ones((1, 1)), saved, h)[2]      # dh·z
        array([[0.5]])
    """
    xp = array_module(saved, h)
    H = h.shape[1]
    r, z, n, ghn = saved[:, :H], saved[:, H:2 * H], saved[:, 2 * H:3 * H], saved[:, 3 * H:]
    dgi = xp.empty((h.shape[0], 3 * H), dtype=saved.dtype)
    dn = dgi[:, 2 * H:]
    xp.multiply(dh * (1 - z), 1 - n * n, out=dn)
    dgi[:, H:2 * H] = dh * (h - n) * z * (1 - z)
    dgi[:, :H] = dn * ghn * r * (1 - r)
    dgh = dgi.copy()
    dgh[:, 2 * H:] *= r
    return dgi, dgh, dh * z


class GRUPointwise(Function):
    """The elementwise part of a GRU step, fused: ``(gi, gh, h) -> h'``.

    With ``r = σ(gi_r + gh_r)``, ``z = σ(gi_z + gh_z)``, ``n = tanh(gi_n + r·gh_n)`` (PyTorch's gate order
    r, z, n): ``h' = (1 - z)·n + z·h``.  ``[r | z | n | gh_n]`` and ``h`` are kept for the backward.

    Inputs: gi, gh (..., 3H); h (..., H).  Output: (..., H).  The gradient for ``h`` is only the pointwise
    part ``dh'·z``; the part through ``gh`` reaches ``h`` through the matrix product that made ``gh``.
    Kernels: ``kernels.gru_cell_forward`` / ``gru_cell_backward`` on CuPy (or emulated) float32.

    Example:
        >>> from minifb.ops.recurrent import GRUPointwise
        >>> h = GRUPointwise.apply(mf.zeros(2, 9), mf.zeros(2, 9), mf.ones(2, 3))
        >>> h.numpy()[0]                                          # z = 0.5, n = 0
        array([0.5, 0.5, 0.5], dtype=float32)
    """

    def forward(self, gi, gh, h):
        lead, H, gi2, gh2, h2 = _as_rows("gru_pointwise", gi, gh, h, 3)
        if kernels.should_use(gi2, gh2, h2):
            h_new, saved = kernels.gru_cell_forward(gi2, gh2, h2)
        else:
            h_new, saved = gru_pointwise_array(gi2, gh2, h2)
        if True in self.needs:
            self.lead, self.saved, self.h = lead, saved, h2
        return h_new.reshape(lead + (H,))

    def backward(self, grad):
        H = self.h.shape[1]
        grad = grad.reshape(-1, H)
        if kernels.should_use(grad, self.saved, self.h):
            dgi, dgh, dh_prev = kernels.gru_cell_backward(grad, self.saved, self.h)
        else:
            dgi, dgh, dh_prev = gru_pointwise_backward_array(grad, self.saved, self.h)
        return (dgi.reshape(self.lead + (3 * H,)) if self.needs[0] else None,
                dgh.reshape(self.lead + (3 * H,)) if self.needs[1] else None,
                dh_prev.reshape(self.lead + (H,)) if self.needs[2] else None)
