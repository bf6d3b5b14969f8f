"""Array-module reference implementations of minifb's fused CUDA kernels.

Each ``*_ref`` function here computes, with plain vectorised NumPy/CuPy code (``xp`` is the inputs' array
module), the same values that the function of the same name without ``_ref`` in :mod:`minifb.kernels`
computes in one kernel launch (up to floating-point rounding). They are the "array-module path": the
definition every kernel is tested against, on the CPU emulation and on a GPU. Shapes and conventions are
documented on the kernel-side functions in :mod:`minifb.kernels`, with these differences in how the values
are passed:

* the LSTM references take and return ``h`` and ``c`` separately where the kernels use one ``[h | c]``
  buffer: :func:`lstm_cell_forward_ref` returns ``(h_new, c_new, gates)`` where the kernel returns
  ``(hc, gates)``, and :func:`lstm_cell_backward_ref` takes ``(dh, dc, gates, c, c_new)`` (``dh`` or ``dc``
  may be None for zero) where the kernel takes ``(dhc, gates, c, hc)``;
* :func:`im2col_ref` and :func:`col2im_ref` have no ``out_hw`` argument: symmetric padding only;
* the references take any floating dtype, where the kernels take float32 only.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend

ACTIVATIONS = {None: 0, "identity": 0, "relu": 1, "sigmoid": 2, "tanh": 3}


def act_code(act) -> int:
    """Activation name (or code 0-3) -> the integer code the kernels use."""
    if isinstance(act, (int, np.integer)) and 0 <= int(act) <= 3:
        return int(act)
    try:
        return ACTIVATIONS[act]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {act!r}; expected one of identity, relu, sigmoid, tanh") from None


def channel_layout(shape, axis=None):
    """(outer, C, inner) view of ``shape`` around the channel ``axis``.

    ``axis=None`` means 1 for arrays of 2 or more dimensions (Dense (B, F), Conv NCHW) and 0 for 1-D.
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        return 1, 1, 1
    if axis is None:
        axis = 1 if len(shape) >= 2 else 0
    axis = axis % len(shape)
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def resolve_layout(shape, layout=None):
    """(outer, C, inner) from ``layout``: None (default axis), an int channel axis, or the triple itself."""
    if layout is None or isinstance(layout, (int, np.integer)):
        return channel_layout(shape, layout)
    outer, C, inner = (int(v) for v in layout)
    if outer * C * inner != math.prod(int(s) for s in shape):
        raise ValueError(f"layout {(outer, C, inner)} does not cover an array of shape {tuple(shape)}")
    return outer, C, inner


def _apply(xp, act, v):
    a = act_code(act)
    if a == 1:
        return xp.maximum(v, 0)
    if a == 2:
        return 1 / (1 + xp.exp(-v))
    if a == 3:
        return xp.tanh(v)
    return v


def _grad_from_output(act, y):
    a = act_code(act)
    if a == 1:
        return (y > 0).astype(y.dtype)
    if a == 2:
        return y * (1 - y)
    if a == 3:
        return 1 - y * y
    return 1


def bias_act_ref(x, bias, act, layout=None):
    """y = act(x + bias), bias (C,) broadcast along the channel of ``layout`` (see resolve_layout)."""
    xp = backend.array_module(x, bias)
    if bias is None:
        return _apply(xp, act, x)
    outer, C, inner = resolve_layout(x.shape, layout)
    return _apply(xp, act, x.reshape(outer, C, inner) + bias.reshape(1, C, 1)).reshape(x.shape)


def bias_act_backward_ref(g, y, act, layout=None, need_bias=True):
    """(dx, dbias): dx = g * act'(y), dbias (C,) = dx summed over everything but the channel."""
    dx = g * _grad_from_output(act, y)
    if not need_bias:
        return dx, None
    return dx, dx.reshape(resolve_layout(g.shape, layout)).sum(axis=(0, 2))


def merger_forward_ref(x, fb, bias, act, layout=None):
    """(y, a): a = act(fb + bias), y = x + a."""
    a = bias_act_ref(fb, bias, act, layout)
    return x + a, a


def merger_backward_ref(g, a, act, layout=None, need_bias=True):
    """(dfb, dbias) of y = x + act(fb + bias), from the saved a = act(fb + bias); dx is g itself."""
    return bias_act_backward_ref(g, a, act, layout, need_bias)


def _sigmoid(xp, v):
    return 1 / (1 + xp.exp(-v))


def lstm_cell_forward_ref(gi, gh, c):
    """(h_new, c_new, gates) of an LSTM step; gates = activated [i | f | g | o], (B, 4H)."""
    xp = backend.array_module(gi, gh, c)
    pre = gi + gh
    H = c.shape[1]
    i = _sigmoid(xp, pre[:, :H])
    f = _sigmoid(xp, pre[:, H:2 * H])
    g = xp.tanh(pre[:, 2 * H:3 * H])
    o = _sigmoid(xp, pre[:, 3 * H:])
    c_new = f * c + i * g
    h_new = o * xp.tanh(c_new)
    return h_new, c_new, xp.concatenate([i, f, g, o], axis=1)


def lstm_cell_backward_ref(dh, dc, gates, c, c_new):
    """(dgates, dc_prev): gradient of the gate pre-activations (= d gi = d gh) and the pointwise dc."""
    xp = backend.array_module(gates, c)
    H = c.shape[1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    dh = xp.zeros_like(c) if dh is None else dh
    dc = xp.zeros_like(c) if dc is None else dc
    tc = xp.tanh(c_new)
    dct = dc + dh * o * (1 - tc * tc)
    dgates = xp.concatenate(
        [dct * g * i * (1 - i), dct * c * f * (1 - f), dct * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
    return dgates, dct * f


def gru_cell_forward_ref(gi, gh, h):
    """(h_new, saved) of a GRU step; saved = [r | z | n | gh_n], (B, 4H)."""
    xp = backend.array_module(gi, gh, h)
    H = h.shape[1]
    r = _sigmoid(xp, gi[:, :H] + gh[:, :H])
    z = _sigmoid(xp, gi[:, H:2 * H] + gh[:, H:2 * H])
    ghn = gh[:, 2 * H:]
    n = xp.tanh(gi[:, 2 * H:] + r * ghn)
    h_new = (1 - z) * n + z * h
    return h_new, xp.concatenate([r, z, n, ghn], axis=1)


def gru_cell_backward_ref(dh, saved, h):
    """(dgi, dgh, dh_prev): gradients of gi, gh (B, 3H) and the pointwise part of dh_prev (B, H)."""
    xp = backend.array_module(saved, h)
    H = h.shape[1]
    r, z, n, ghn = saved[:, :H], saved[:, H:2 * H], saved[:, 2 * H:3 * H], saved[:, 3 * H:]
    dn_pre = dh * (1 - z) * (1 - n * n)
    dz_pre = dh * (h - n) * z * (1 - z)
    dr_pre = dn_pre * ghn * r * (1 - r)
    dgi = xp.concatenate([dr_pre, dz_pre, dn_pre], axis=1)
    dgh = xp.concatenate([dr_pre, dz_pre, dn_pre * r], axis=1)
    return dgi, dgh, dh * z


def _pair(v):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv_output_size(size, k, stride, padding, dilation):
    """PyTorch's output size (floor): (size + 2 p - d (k - 1) - 1) // s + 1."""
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def _conv_geometry(x_shape, kh, kw, stride, padding, dilation):
    N, C, H, W = (int(s) for s in x_shape)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    OH = conv_output_size(H, kh, sh, ph, dh)
    OW = conv_output_size(W, kw, sw, pw, dw)
    if OH <= 0 or OW <= 0:
        raise ValueError(f"input {tuple(x_shape)} is too small for kernel ({kh}, {kw}) with stride {(sh, sw)}, "
                         f"padding {(ph, pw)}, dilation {(dh, dw)}")
    return N, C, H, W, sh, sw, ph, pw, dh, dw, OH, OW


def im2col_ref(x, kh, kw, stride=1, padding=0, dilation=1):
    """cols (C*kh*kw, N*OH*OW), rows (c, i, j), columns (n, oh, ow) with ow innermost."""
    xp = backend.array_module(x)
    N, C, H, W, sh, sw, ph, pw, dh, dw, OH, OW = _conv_geometry(x.shape, kh, kw, stride, padding, dilation)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((C, kh, kw, N, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            win = xpad[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw]
            cols[:, i, j] = win.transpose(1, 0, 2, 3)
    return cols.reshape(C * kh * kw, N * OH * OW)


def col2im_ref(cols, x_shape, kh, kw, stride=1, padding=0, dilation=1):
    """Adjoint of im2col: (N, C, H, W), each pixel the sum of the entries of cols that came from it."""
    xp = backend.array_module(cols)
    N, C, H, W, sh, sw, ph, pw, dh, dw, OH, OW = _conv_geometry(x_shape, kh, kw, stride, padding, dilation)
    c6 = cols.reshape(C, kh, kw, N, OH, OW)
    out = xp.zeros((N, C, H + 2 * ph + sh, W + 2 * pw + sw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw] += \
                c6[:, i, j].transpose(1, 0, 2, 3)
    return out[:, :, ph: ph + H, pw: pw + W]


def softmax_xent_ref(logits, labels, scale=1.0, grad=True):
    """(loss (B,), grad (B, K) or None): per-row cross-entropy and (softmax - onehot) * scale.

    A label outside [0, K) marks an ignored row (loss 0, zero gradient row).
    """
    xp = backend.array_module(logits)
    B, K = logits.shape
    labels = labels.astype(xp.int64)
    valid = (labels >= 0) & (labels < K)
    safe = xp.where(valid, labels, 0)
    m = logits.max(axis=1, keepdims=True) if K else xp.zeros((B, 1), logits.dtype)
    e = xp.exp(logits - m)
    s = e.sum(axis=1, keepdims=True)
    picked = logits[xp.arange(B), safe] if K else xp.zeros(B, logits.dtype)
    loss = xp.where(valid, xp.log(s[:, 0]) - (picked - m[:, 0]), 0).astype(logits.dtype)  # as the kernel
    if not grad:
        return loss, None
    g = e / s
    if K:
        g[xp.arange(B), safe] -= 1
    g = xp.where(valid[:, None], g * scale, 0).astype(logits.dtype)
    return loss, g


def pool_output_size(size, k, stride, padding):
    """PyTorch's max_pool2d output size, floor mode: (size + 2 p - k) // s + 1."""
    return (size + 2 * padding - k) // stride + 1


def _pool_geometry(x_shape, kernel_size, stride, padding):
    N, C, H, W = (int(s) for s in x_shape)
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"max_pool2d: padding {(ph, pw)} must be at most half the kernel size {(kh, kw)}")
    OH, OW = pool_output_size(H, kh, sh, ph), pool_output_size(W, kw, sw, pw)
    if OH <= 0 or OW <= 0:
        raise ValueError(f"max_pool2d: input {tuple(x_shape)} is smaller than the kernel {(kh, kw)}")
    return N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW


def maxpool_forward_ref(x, kernel_size, stride=None, padding=0):
    """(y (N, C, OH, OW), argmax (N, C, OH, OW) int32 = h * W + w of the first maximum in the plane)."""
    xp = backend.array_module(x)
    N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW = _pool_geometry(x.shape, kernel_size, stride, padding)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    wins = xp.stack([xpad[:, :, i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw]
                     for i in range(kh) for j in range(kw)])
    k = wins.argmax(axis=0)
    y = xp.take_along_axis(wins, k[None], axis=0)[0]
    # an all -inf window ties with its padding: name its first real cell, as the kernel (and PyTorch) do
    inside = xp.pad(xp.ones((H, W), dtype=bool), ((ph, ph), (pw, pw)))
    first_inside = xp.stack([inside[i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw]
                             for i in range(kh) for j in range(kw)]).argmax(axis=0)
    k = xp.where(y == -np.inf, first_inside, k)
    oh = xp.arange(OH).reshape(OH, 1)
    ow = xp.arange(OW).reshape(1, OW)
    h = oh * sh - ph + k // kw
    w = ow * sw - pw + k % kw
    return y, (h * W + w).astype(xp.int32)


def maxpool_backward_ref(g, argmax, x_shape, kernel_size, stride=None, padding=0):
    """dx (N, C, H, W): each output's gradient added to the input pixel its argmax names."""
    xp = backend.array_module(g)
    N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW = _pool_geometry(x_shape, kernel_size, stride, padding)
    oh = xp.arange(OH).reshape(OH, 1)
    ow = xp.arange(OW).reshape(1, OW)
    k = (argmax // W - (oh * sh - ph)) * kw + (argmax % W - (ow * sw - pw))
    out = xp.zeros((N, C, H + 2 * ph + sh, W + 2 * pw + sw), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw] += xp.where(
                k == i * kw + j, g, 0)
    return out[:, :, ph: ph + H, pw: pw + W]


def sgd_update_ref(p, g, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                   first_step=False):
    """In place, PyTorch's SGD: p -= lr * d with momentum buffer ``buf`` (see optim.cu).

    ``1 - dampening`` is taken in float64, as the kernel receives it."""
    d = g + weight_decay * p if weight_decay else g.copy()
    if momentum:
        if first_step:
            buf[...] = d
        else:
            buf *= momentum
            buf += (1.0 - float(dampening)) * d
        d = d + momentum * buf if nesterov else buf
    p -= lr * d


def adam_update_ref(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """In place, PyTorch's Adam (no amsgrad) at 1-based ``step`` (the first step is 1).

    ``1 - beta`` and the bias corrections are taken in float64, as the kernel receives them.
    """
    if step < 1:
        raise ValueError(f"adam_update: step must be >= 1 (the first step is 1), got {step}")
    xp = backend.array_module(p)
    beta1, beta2 = float(beta1), float(beta2)
    d = g + weight_decay * p if weight_decay else g
    m *= beta1
    m += (1.0 - beta1) * d
    v *= beta2
    v += (1.0 - beta2) * d * d
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    p -= (lr / bc1) * m / (xp.sqrt(v) / math.sqrt(bc2) + eps)
