"""2-D convolution, transposed convolution and pooling on NCHW images.

Everything here follows PyTorch's semantics: images are ``(N, C, H, W)``; a
convolution weight is ``(C_out, C_in / groups, kh, kw)`` and a transposed
convolution weight is ``(C_in, C_out / groups, kh, kw)``; stride, padding,
dilation and output_padding are ints or ``(h, w)`` pairs.

Three primitives do all the convolution work, and both ops are built from them:

* :func:`_conv_forward` -- im2col + one matrix product (per group, batched):
  ``y = cols(x) @ W``, one row per output pixel.
* :func:`_conv_grad_input` -- the adjoint of that in ``x``.  When, along each
  axis, the stride is 1 (any dilation) or divides the kernel size with no
  dilation, it is itself a convolution of the padded output gradient with the
  flipped kernel, whose output channels are then moved back into pixels
  (:func:`_sub_pixel`, :func:`_depth_to_space`).  Otherwise
  ``cols = g @ W`` per kernel tap, then col2im, which adds each of the
  ``kh * kw`` taps back into the image, one strided stride phase at a time.
* :func:`_conv_grad_weight` -- the adjoint in ``W``: ``gW = g^T @ cols(x)``,
  with the column matrix *recomputed* rather than kept from the forward pass,
  so that what a recorded convolution holds on to is only its input and weight
  (under backprop-through-time every retained array is multiplied by T).

A transposed convolution *is* the adjoint of a convolution, so
:class:`ConvTranspose2d` uses the same three functions with the roles swapped:
its forward is ``_conv_grad_input``, its input gradient is ``_conv_forward`` and
its weight gradient is ``_conv_grad_weight`` with input and output exchanged.

On the array path (NumPy, or CuPy without the fused kernels) the primitives
work in channels-last memory, ``(N, H, W, C)``, as PyTorch's ``channels_last``
format does: the column matrix ``(N * OH * OW, G, kh * kw * C/G)`` is gathered
from a read-only ``sliding_window_view`` of the padded channels-last input with
one copy whose contiguous runs are ``kw * C`` numbers long at any stride, and
the results are handed out as NCHW-shaped views of channels-last memory
(:func:`_nchw_view`); shapes and values are those of any NCHW array.  On NumPy
each primitive builds its columns for a block of a few batch elements at a time
in buffers reused across blocks (see ``_BLOCK_BYTES``).  The fused CUDA kernels
keep their own channels-first column matrix (the ``_fused_*`` functions).
No ``np.add.at`` and no Python loop over batch elements or pixels: the only
Python loops run over the kernel taps, the stride phases and a few batch blocks.

On NumPy float32/float64 arrays, when a C++ compiler is present, the three primitives run compiled
instead (``kernels/conv_cpu.cpp`` through :mod:`minifb.cpu_conv`, the ``_compiled_*`` functions): a direct
convolution that sums each output tile in vector registers straight from the channels-last image and never
writes a column matrix, which is where the array path's time goes (benchmarks/NOTES.md, "Session 11" and
"Session 15"). The array path stays as their reference (tests/test_conv.py runs on both) and as the path
taken without a compiler or under ``MINIFB_CPU_CONV=off``.

``# KERNEL HOOK`` comments mark where fused GPU kernels may take over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backend, checks, cpu_conv, kernels
from ..tensor import Function, Tensor
from .movement import cast
from .reduce import channel_sum

__all__ = [
    "Conv2d",
    "ConvTranspose2d",
    "MaxPool2d",
    "AvgPool2d",
    "conv2d",
    "conv_transpose2d",
    "max_pool2d",
    "avg_pool2d",
]


# --------------------------------------------------------------------------
# Geometry and argument checking
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    """Where the kernel taps of a convolution (or pooling) land in the input.

    Attributes:
        kernel: ``(kh, kw)``.
        stride: ``(sh, sw)``.
        dilation: ``(dh, dw)``.
        pad: ``(top, bottom, left, right)`` zero rows/columns around the input.
        groups: number of channel groups.
    """

    kernel: tuple
    stride: tuple
    dilation: tuple
    pad: tuple
    groups: int = 1

    def span(self):
        """Extent ``(d * (k - 1) + 1)`` of the dilated kernel along H and W."""
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel))

    def out_size(self, in_hw):
        """Output ``(OH, OW)`` of a convolution over an input of size ``in_hw``:
        ``floor((H + pad_top + pad_bottom - d * (k - 1) - 1) / s) + 1``."""
        pt, pb, pl, pr = self.pad
        padded = (in_hw[0] + pt + pb, in_hw[1] + pl + pr)
        return tuple((p - e) // s + 1 for p, e, s in zip(padded, self.span(), self.stride))


def _check_4d(fn, name, array, layout):
    if array.ndim != 4:
        raise ValueError(f"{fn}: {name} must be 4-D {layout}, got shape {tuple(array.shape)}")
    if np.dtype(array.dtype).kind != "f":
        raise TypeError(f"{fn}: {name} must be floating point, got dtype {array.dtype} "
                        f"(shape {tuple(array.shape)})")


def _check_weight(fn, w, layout):
    _check_4d(fn, "weight", w, layout)
    if min(w.shape) < 1:
        raise ValueError(f"{fn}: weight shape {tuple(w.shape)} {layout} has an empty dimension; "
                         f"each must be at least 1")


def _check_bias(fn, b, channels, w_shape):
    if b is None:
        return
    if tuple(b.shape) != (channels,):
        raise ValueError(f"{fn}: bias must have shape ({channels},) to match weight shape "
                         f"{tuple(w_shape)}, got shape {tuple(b.shape)}")


_MAX_BYTES = int(np.iinfo(np.intp).max)   # no array can hold more (NumPy's "Maximum allowed size exceeded")


def _check_allocatable(fn, what, shape, dtype, why):
    """Refuse ``shape`` when no array of ``dtype`` could have it (NumPy would say only "Maximum allowed
    dimension exceeded"): a huge padding, stride or dilation.  A few integer products per call."""
    n = 1
    for d in shape:
        n *= d
    if n * np.dtype(dtype).itemsize > _MAX_BYTES or max(shape) > _MAX_BYTES:
        raise ValueError(f"{fn}: {what} would have shape {tuple(shape)}, too large for any array ({why})")


def _conv_geometry(fn, x, w, stride, padding, dilation, groups):
    """Check conv2d's arguments and return its geometry and output size."""
    _check_4d(fn, "input", x, "(N, C, H, W)")
    _check_weight(fn, w, "(C_out, C_in/groups, kh, kw)")
    groups = checks.integer(fn, "groups", groups)
    c_out, c_per_group, kh, kw = w.shape
    if c_out % groups:
        raise ValueError(f"{fn}: groups={groups} does not divide the {c_out} output channels "
                         f"of weight shape {tuple(w.shape)}")
    if x.shape[1] != c_per_group * groups:
        extra = f"; with groups={groups} the input needs {c_per_group * groups}" if groups > 1 else ""
        raise ValueError(f"{fn}: weight expects {c_per_group} input channels per group "
                         f"(shape {tuple(w.shape)}) but input has {x.shape[1]} channels "
                         f"(shape {tuple(x.shape)}){extra}")
    stride = checks.pair(fn, "stride", stride, 1)
    dilation = checks.pair(fn, "dilation", dilation, 1)
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0, 0, 0)
        elif padding == "same":
            if stride != (1, 1):
                raise ValueError(f"{fn}: padding='same' needs stride 1, got stride={stride}")
            # like PyTorch: total d*(k-1); the odd extra goes to the bottom/right
            th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
            pad = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"{fn}: padding must be an int, a pair of ints, 'same' or 'valid', "
                             f"got {padding!r}")
    else:
        ph, pw = checks.pair(fn, "padding", padding, 0)
        pad = (ph, ph, pw, pw)
    geom = _Geometry((kh, kw), stride, dilation, pad, groups)
    out_hw = geom.out_size(x.shape[2:])
    if any(pad):   # the padded input is allocated; the output is no larger (per channel)
        _check_allocatable(fn, "the padded input", x.shape[:2] + (x.shape[2] + pad[0] + pad[1],
                           x.shape[3] + pad[2] + pad[3]), x.dtype,
                           f"padding={padding!r}, input shape {tuple(x.shape)}, weight shape {tuple(w.shape)}")
    if min(out_hw) < 1:
        padded = (x.shape[2] + pad[0] + pad[1], x.shape[3] + pad[2] + pad[3])
        raise ValueError(f"{fn}: kernel of dilated size {geom.span()} (weight shape {tuple(w.shape)}, "
                         f"dilation={dilation}) is larger than the padded input {padded} "
                         f"(input shape {tuple(x.shape)}, padding={padding!r})")
    return geom, out_hw


def _conv_transpose_geometry(fn, x, w, stride, padding, output_padding, dilation, groups):
    """Check conv_transpose2d's arguments and return its geometry and output size."""
    _check_4d(fn, "input", x, "(N, C_in, H, W)")
    _check_weight(fn, w, "(C_in, C_out/groups, kh, kw)")
    groups = checks.integer(fn, "groups", groups)
    c_in, _, kh, kw = w.shape
    if c_in % groups:
        raise ValueError(f"{fn}: groups={groups} does not divide the {c_in} input channels "
                         f"of weight shape {tuple(w.shape)}")
    if x.shape[1] != c_in:
        raise ValueError(f"{fn}: weight expects {c_in} input channels (shape {tuple(w.shape)}) "
                         f"but input has {x.shape[1]} channels (shape {tuple(x.shape)})")
    if isinstance(padding, str):
        raise ValueError(f"{fn}: padding must be an int or a pair of ints "
                         f"(string padding is only for conv2d), got {padding!r}")
    stride = checks.pair(fn, "stride", stride, 1)
    dilation = checks.pair(fn, "dilation", dilation, 1)
    ph, pw = checks.pair(fn, "padding", padding, 0)
    oph, opw = checks.pair(fn, "output_padding", output_padding, 0)
    for op, s, d in ((oph, stride[0], dilation[0]), (opw, stride[1], dilation[1])):
        if op >= max(s, d):
            raise ValueError(f"{fn}: output_padding={output_padding!r} must be smaller than "
                             f"stride={stride} or dilation={dilation} (input shape {tuple(x.shape)}, "
                             f"weight shape {tuple(w.shape)})")
    geom = _Geometry((kh, kw), stride, dilation, (ph, ph, pw, pw), groups)
    span = geom.span()
    out_hw = tuple((n - 1) * s - 2 * p + e + op for n, s, p, e, op in
                   zip(x.shape[2:], stride, (ph, pw), span, (oph, opw)))
    if min(out_hw) < 1:
        raise ValueError(f"{fn}: output size {out_hw} is not positive (input shape {tuple(x.shape)}, "
                         f"weight shape {tuple(w.shape)}, stride={stride}, padding={padding!r}, "
                         f"dilation={dilation}); "
                         f"size = (H - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1")
    # the output, padded by ``padding`` on each side, is allocated (and is larger than the output)
    _check_allocatable(fn, "the output padded by padding" if ph or pw else "the output",
                       (x.shape[0], w.shape[1] * groups, out_hw[0] + 2 * ph, out_hw[1] + 2 * pw), x.dtype,
                       f"stride={stride}, padding={padding!r}, dilation={dilation}, "
                       f"output_padding={output_padding!r}, input shape {tuple(x.shape)}, "
                       f"weight shape {tuple(w.shape)}")
    return geom, out_hw


# --------------------------------------------------------------------------
# The three convolution primitives (raw arrays, NumPy or CuPy)
# --------------------------------------------------------------------------
def _padded(x, pad, fill=0.0):
    """``x`` (N, C, H, W) with ``pad = (top, bottom, left, right)`` rows/columns of ``fill``."""
    pt, pb, pl, pr = pad
    if not any(pad):
        return x
    xp = backend.array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + pt + pb, w + pl + pr), fill, dtype=x.dtype)
    out[:, :, pt:pt + h, pl:pl + w] = x
    return out


# Batch blocking (NumPy only).  A whole-batch column matrix is large (the conv2d micro-benchmark's
# (32*28*28, 576) float32 matrix is 58 MB) and was allocated fresh in every call: its first touch
# page-faults (measured: a third of a conv2d step) and it streams through memory twice, once written by
# the gather and once read by the product.  So on the CPU every primitive walks the batch in blocks of
# ~_BLOCK_BYTES of columns, reusing one set of buffers (allocated once per call, never kept) that stay
# in cache between the gather, the product and col2im; products write into their destination with
# ``out=``.  Measured (conv2d micro shapes, 1 / 2 threads): forward 36.9 -> 24.3 / 26.7 -> 19.3 ms,
# input gradient 36.8 -> 30.8 / 27.3 -> 26.3, weight gradient 33.5 -> 25.1 / 24.8 -> 20.4; the whole
# conv2d step 108 -> 84 ms at 1 thread (benchmarks/NOTES.md, P2).  16 MB blocks then beat 4 MB ones at
# 2 threads in two alternated runner pairs (conv2d 67.1/68.8 -> 59.8/58.1 ms, conv_transpose2d and W2
# unchanged; NOTES "Block size"), so 16 MB it is.  With the fused kernels the batch is one block.
_BLOCK_BYTES = 16 << 20


def _batch_blocks(x, bytes_per_sample):
    """``[(n0, n1), ...]`` covering ``x``'s batch in blocks of about ``_BLOCK_BYTES`` (one on a GPU)."""
    n = x.shape[0]
    if n == 0 or backend.array_module(x) is not np:
        return [(0, n)]
    nb = max(1, min(n, _BLOCK_BYTES // max(1, bytes_per_sample)))
    return [(n0, min(n0 + nb, n)) for n0 in range(0, n, nb)]


class _Scratch:
    """Buffers reused across the batch blocks of one call; ``get(name, shape, dtype)`` returns a view of
    the buffer called ``name``, (re)allocated only when it is too small.  Contents are not kept."""

    def __init__(self, xp):
        self.xp, self.flat = xp, {}

    def get(self, name, shape, dtype):
        size = int(np.prod(shape))
        buf = self.flat.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self.flat[name] = self.xp.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


def _nchw_view(a):
    """An ``(N, C, H, W)`` view of a contiguous ``(N, H, W, C)`` array: the layout the primitives return.

    The array path works in channels-last memory ("NHWC", PyTorch's ``channels_last``): there a
    kernel window's ``kw`` columns of all ``C`` channels lie side by side, so every gather copies runs
    of ``kw * C`` numbers whatever the stride, and each product writes one pixel's ``K`` channels as
    one row.  The results are handed out as NCHW-shaped views of that memory, the same shape and
    values as a contiguous array, without a transposing copy.  NumPy's elementwise operations keep an
    operand's memory order, so an activation's output stays channels-last too and the next
    convolution's layout copy (:func:`_channels_last`) is a plain block copy.  Measured:
    benchmarks/NOTES.md, P9 and P10.
    """
    return a.transpose(0, 3, 1, 2)


def _channels_last(x, pad, scratch):
    """``x`` (N, C, H, W) as a contiguous, zero-padded ``(N, H + pt + pb, W + pl + pr, C)`` array.

    One copy does both the padding and the move of C last (a view, no copy, when there is no
    padding and ``x`` is already channels-last memory).  A negative pad crops that many rows or
    columns instead.  The buffer comes from ``scratch``, so its border is zeroed here.
    """
    x = x[:, :, max(0, -pad[0]): x.shape[2] - max(0, -pad[1]), max(0, -pad[2]): x.shape[3] - max(0, -pad[3])]
    pt, pb, pl, pr = (max(0, p) for p in pad)
    n, c, h, w = x.shape
    nhwc = x.transpose(0, 2, 3, 1)
    if not (pt or pb or pl or pr) and nhwc.flags.c_contiguous:
        return nhwc
    out = scratch.get("padded", (n, h + pt + pb, w + pl + pr, c), x.dtype)
    out[:, :pt] = 0
    out[:, pt + h:] = 0
    out[:, :, :pl] = 0
    out[:, :, pl + w:] = 0
    out[:, pt:pt + h, pl:pl + w] = nhwc
    return out


def _windows(x, geom, out_hw, axes=(2, 3)):
    """Read-only view of the patch under each output pixel: ``x``'s axes with the two spatial ones
    (``axes``) cut down to ``(OH, OW)``, then ``(kh, kw)``.

    ``x`` is an already padded array: ``(N, C, Hp, Wp)`` for pooling (giving
    ``(N, C, OH, OW, kh, kw)``), ``(N, Hp, Wp, C)`` with ``axes=(1, 2)`` for :func:`_im2col`
    (giving ``(N, OH, OW, C, kh, kw)``), or ``(N, Hp, Wp)`` for its single-channel case.
    """
    xp = backend.array_module(x)
    (sh, sw), (dh, dw), (oh, ow) = geom.stride, geom.dilation, out_hw
    view = xp.lib.stride_tricks.sliding_window_view(x, geom.span(), axis=axes)
    index = [slice(None)] * x.ndim + [slice(None, None, dh), slice(None, None, dw)]
    index[axes[0]] = slice(None, sh * (oh - 1) + 1, sh)
    index[axes[1]] = slice(None, sw * (ow - 1) + 1, sw)
    return view[tuple(index)]


def _im2col(x, geom, out_hw, scratch):
    """Column matrix ``(N * OH * OW, G, kh * kw * C/G)`` of ``x`` (N, C, H, W), in a ``scratch`` buffer.

    ``cols[(n, oh, ow), g, (i, j, c)] = x_pad[n, g*C/G + c, oh*sh + i*dh, ow*sw + j*dw]``:
    one row per output pixel, a group's channels innermost (one copy from the channels-last input).
    A view of tap-major memory for a single-channel input (see below).
    """
    xp = backend.array_module(x)
    n, c = x.shape[:2]
    g, (kh, kw), (oh, ow) = geom.groups, geom.kernel, out_hw
    padded = _channels_last(x, geom.pad, scratch)
    if c == 1 and geom.stride[1] == 1 and ow > kw:
        # One input channel (a grayscale image): the gather below would copy runs of only kw numbers,
        # so gather tap-major instead, runs along the output width, and hand out the transposed view
        # (the products take either memory order).  W2's first layer: 0.46 -> 0.07 ms (NOTES, P15).
        win = _windows(padded[..., 0], geom, out_hw, axes=(1, 2))         # (N, OH, OW, kh, kw)
        cols = scratch.get("cols", (kh, kw, n, oh, ow), x.dtype)
        xp.copyto(cols, win.transpose(3, 4, 0, 1, 2))
        return cols.reshape(kh * kw, n * oh * ow).T[:, None, :]
    win = _windows(padded, geom, out_hw, axes=(1, 2))                      # (N, OH, OW, C, kh, kw)
    win = win.reshape(n, oh, ow, g, c // g, kh, kw)
    cols = scratch.get("cols", (n, oh, ow, g, kh, kw, c // g), x.dtype)
    xp.copyto(cols, win.transpose(0, 1, 2, 3, 5, 6, 4))                   # the one gather
    return cols.reshape(n * oh * ow, g, kh * kw * (c // g))


def _phase_span(p, s, pad, n):
    """``(r0, r1)``: the block rows ``r`` of stride phase ``p`` whose padded row ``p + s * r`` lies in
    the image, ``pad <= p + s * r < pad + n``."""
    return max(0, -(-(pad - p) // s)), -(-(pad + n - p) // s)


def _col2im(cols, n, c, in_hw, geom, out_hw, scratch, out):
    """Adjoint of :func:`_im2col`: add the columns back into ``out``, a contiguous ``(N, H, W, C)``
    (channels-last) array, which it overwrites and returns.  Used for the input gradients
    :func:`_sub_pixel` does not cover (a stride that does not divide the kernel, e.g. 3x3 stride 2,
    or a stride above 1 with a dilation above 1 on the same axis).
    ``cols`` is tap-major, ``(kh * kw, N * OH * OW, G, C/G)``: each tap's contribution is one
    contiguous block, so the additions below stream (the whole primitive measured 8-11% less time
    than with taps sliced out of im2col's order, e.g. 3.07 -> 2.73 ms; benchmarks/NOTES.md, P12).

    Phase decomposition: a tap at offset ``(i*dh, j*dw)`` only reaches the padded rows/columns
    congruent to it mod ``(sh, sw)``.  So each phase ``(py, px)`` sums its own taps, clipped to the
    part inside the padding, into a dense buffer with unit-stride additions (the first one an
    assignment when that tap covers the whole phase, else after a fill), and is written into its
    strided rows/columns of ``out`` by one copy: ``sh * sw`` strided writes instead of ``kh * kw``
    strided read-modify-writes, and no padded image (benchmarks/NOTES.md, P3).
    """
    g, (kh, kw), (sh, sw), (dh, dw), (oh, ow) = geom.groups, geom.kernel, geom.stride, geom.dilation, out_hw
    pt, pb, pl, pr = geom.pad
    h, w = in_hw
    cols = cols.reshape(kh, kw, n, oh, ow, g, c // g)
    out5 = out.reshape(n, h, w, g, c // g)
    for py in range(sh):
        a0, a1 = _phase_span(py, sh, pt, h)                                  # phase rows inside the crop
        for px in range(sw):
            b0, b1 = _phase_span(px, sw, pl, w)
            if a1 <= a0 or b1 <= b0:
                continue
            y0, x0 = py + sh * a0 - pt, px + sw * b0 - pl
            dst = out5[:, y0: y0 + sh * (a1 - a0 - 1) + 1: sh, x0: x0 + sw * (b1 - b0 - 1) + 1: sw]
            # (tap, first and last phase row and column it reaches), clipped to [a0, a1) x [b0, b1)
            taps = [(cols[i, j], max(a0, a), min(a1, a + oh), max(b0, b), min(b1, b + ow), a, b)
                    for i in range(kh) if (i * dh) % sh == py
                    for j in range(kw) if (j * dw) % sw == px
                    for a, b in [(i * dh // sh, j * dw // sw)]]
            taps = [t for t in taps if t[1] < t[2] and t[3] < t[4]]
            if not taps:
                dst[...] = 0
                continue
            phase = scratch.get("phase", dst.shape, cols.dtype)
            full = [k for k, t in enumerate(taps) if t[1:5] == (a0, a1, b0, b1)]
            if full:
                tap, r0, r1, q0, q1, a, b = taps.pop(full[0])
                phase[...] = tap[:, r0 - a: r1 - a, q0 - b: q1 - b]
            else:
                phase.fill(0)
            for tap, r0, r1, q0, q1, a, b in taps:
                phase[:, r0 - a0: r1 - a0, q0 - b0: q1 - b0] += tap[:, r0 - a: r1 - a, q0 - b: q1 - b]
            dst[...] = phase
    return out


def _rows(gy, groups, scratch):
    """``(N, K, OH, OW)`` -> ``(N * OH * OW, G, K/G)``, one row per output pixel: a view when ``gy`` is
    already channels-last memory (see :func:`_nchw_view`), else one copy into a ``scratch`` buffer."""
    n, k, oh, ow = gy.shape
    nhwc = gy.transpose(0, 2, 3, 1)
    if not nhwc.flags.c_contiguous:
        nhwc = scratch.get("rows", (n, oh, ow, k), gy.dtype)
        backend.array_module(gy).copyto(nhwc, gy.transpose(0, 2, 3, 1))
    return nhwc.reshape(n * oh * ow, groups, k // groups)


def _weight_matrix(w, groups):
    """A weight ``(K, C/G, kh, kw)`` as ``(G, K/G, kh * kw * C/G)``, columns in :func:`_im2col`'s
    ``(i, j, c)`` order (a small copy)."""
    k, cg, kh, kw = w.shape
    return w.reshape(groups, k // groups, cg, kh, kw).transpose(0, 1, 3, 4, 2).reshape(groups, k // groups, -1)


def _weight_from_matrix(gw, w_shape):
    """Inverse of :func:`_weight_matrix`: ``(G, K/G, kh * kw * C/G)`` -> a contiguous ``w_shape`` array."""
    k, cg, kh, kw = w_shape
    xp = backend.array_module(gw)
    return xp.ascontiguousarray(gw.reshape(k, kh, kw, cg).transpose(0, 3, 1, 2))


def _weight_product(rows, cols):
    """``rows (M, G, K/G)ᵀ @ cols (M, G, L)`` per group -> (G, K/G, L), the weight gradient of one block.

    The larger output dimension goes first: OpenBLAS runs the long-inner-dimension product with the
    smaller one first up to 20x slower (measured; benchmarks/NOTES.md, P1).
    """
    xp = backend.array_module(rows, cols)
    a, b = rows.transpose(1, 2, 0), cols.transpose(1, 0, 2)                 # (G, K/G, M), (G, M, L)
    if a.shape[1] >= b.shape[2]:
        return xp.matmul(a, b)
    return xp.matmul(b.transpose(0, 2, 1), a.transpose(0, 2, 1)).transpose(0, 2, 1)


def _conv_forward(x, w, geom, out_hw, b=None, weight_grad_for=None):
    """Convolution: ``x`` (N, C, H, W), ``w`` (K, C/G, kh, kw) -> (N, K, OH, OW).

    ``y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * x_pad[n, g(k)*C/G + c, oh*sh + i*dh, ow*sw + j*dw]``

    With ``weight_grad_for`` (an (N, K', OH, OW) array), returns ``(y, gw)``:
    ``gw = _conv_grad_weight(x, weight_grad_for, ...)``, shape (K', C/G, kh, kw), computed from the same
    column matrix of ``x`` instead of gathering it a second time (a transposed
    convolution's backward needs both; see :class:`ConvTranspose2d`).
    """
    xp = backend.array_module(x, w)
    # KERNEL HOOK: im2col
    if kernels.should_use(x, w, weight_grad_for):
        return _fused_conv_forward(x, w, geom, out_hw, b, weight_grad_for)
    if _compiled_applies(geom, x, w, b, weight_grad_for):
        xl = _nhwc(x)
        y = _compiled_forward(xl, w, geom, out_hw, b)
        if weight_grad_for is None:
            return y
        return y, _compiled_weight_grad(xl, _nhwc(weight_grad_for), geom, (weight_grad_for.shape[1],) + w.shape[1:])
    n, c = x.shape[:2]
    k, g = w.shape[0], geom.groups
    (oh, ow), (kh, kw) = out_hw, geom.kernel
    wm = _weight_matrix(w, g).transpose(0, 2, 1)                            # (G, L, K/G)
    y = xp.empty((n, oh, ow, k), dtype=xp.result_type(x, w))               # returned as an NCHW view
    gw = None
    if weight_grad_for is not None:
        gw = xp.zeros((g, weight_grad_for.shape[1] // g, wm.shape[1]),
                      dtype=xp.result_type(x, weight_grad_for))
    scratch = _Scratch(xp)
    for n0, n1 in _batch_blocks(x, c * kh * kw * oh * ow * x.dtype.itemsize):
        cols = _im2col(x[n0:n1], geom, out_hw, scratch)                    # (nb*OH*OW, G, L)
        xp.matmul(cols.transpose(1, 0, 2), wm, out=y[n0:n1].reshape(-1, g, k // g).transpose(1, 0, 2))
        if gw is not None:
            gw += _weight_product(_rows(weight_grad_for[n0:n1], g, scratch), cols)
    if b is not None:
        y += b
    y = _nchw_view(y)
    if gw is None:
        return y
    return y, _weight_from_matrix(gw, (weight_grad_for.shape[1], c // g, kh, kw))


def _conv_grad_input(gy, w, geom, in_hw, weight_grad_of=None, b=None):
    """Adjoint of :func:`_conv_forward` in ``x``: ``gy`` (N, K, OH, OW) -> (N, C, H, W).

    When :func:`_sub_pixel_applies` (along each axis stride 1, or a stride that divides the kernel with
    dilation 1), one stride-1 convolution of ``gy`` (:func:`_sub_pixel`); otherwise
    ``cols = gy_rows @ W`` per kernel tap, then col2im.  With ``weight_grad_of`` (the
    convolution's input ``x``), returns ``(gx, gw)`` with ``gw = _conv_grad_weight(x, gy, ...)``
    (``w``'s shape), in the col2im case and with stride 1 from the same pass over the batch (a
    convolution's backward needs both). With ``b`` (C,), adds it to ``gx``: a transposed convolution's
    bias, which the compiled kernel starts its sums from instead of a pass of its own.
    """
    xp = backend.array_module(gy, w)
    fused = kernels.should_use(gy, w, weight_grad_of)
    if not fused and _compiled_applies(geom, gy, w, weight_grad_of, b):
        gl = _nhwc(gy)
        gx = _compiled_input_grad(gl, w, geom, in_hw, b)
        return gx if weight_grad_of is None else (gx, _compiled_weight_grad(_nhwc(weight_grad_of), gl, geom, w.shape))
    if b is not None:
        out = _conv_grad_input(gy, w, geom, in_hw, weight_grad_of)
        (out if weight_grad_of is None else out[0])[...] += b.reshape(1, -1, 1, 1)
        return out
    # KERNEL HOOK: col2im
    if fused:
        return _fused_conv_grad_input(gy, w, geom, in_hw, weight_grad_of)
    if _sub_pixel_applies(geom):
        weight, sub_geom, blocks, offset = _sub_pixel(w, geom, in_hw, gy.shape[2:])
        if weight_grad_of is not None and geom.stride == (1, 1):
            # The full correlation's own weight gradient, taken against x, is w's gradient with the
            # flip and the channel swap undone: one gather of gy serves both gradients, and x's
            # column matrix is not rebuilt (see _unflip_weight).
            gx, gw_full = _conv_forward(gy, weight, sub_geom, blocks, weight_grad_for=weight_grad_of)
            return gx, _unflip_weight(gw_full, w.shape, geom.groups)
        gx = _conv_forward(gy, weight, sub_geom, blocks)
        if geom.stride != (1, 1):
            gx = _depth_to_space(gx, geom.stride, geom.groups, in_hw, offset)
        return gx if weight_grad_of is None else (gx, _conv_grad_weight(weight_grad_of, gy, geom, w.shape))
    n, k, oh, ow = gy.shape
    g = geom.groups
    c = w.shape[1] * g
    (kh, kw), cg = geom.kernel, w.shape[1]
    # per tap: (kh*kw, G, K/G, C/G), so that each tap's columns come out as one contiguous block
    wt = w.reshape(g, k // g, cg, kh, kw).transpose(3, 4, 0, 1, 2).reshape(kh * kw, g, k // g, cg)
    dtype = xp.result_type(gy, w)
    gx = xp.empty((n,) + tuple(in_hw) + (c,), dtype=dtype)                 # returned as an NCHW view
    x = weight_grad_of
    gw = None if x is None else xp.zeros((g, k // g, kh * kw * cg), dtype=xp.result_type(x, gy))
    scratch = _Scratch(xp)
    for n0, n1 in _batch_blocks(gy, kh * kw * c * oh * ow * gy.dtype.itemsize):
        rows = _rows(gy[n0:n1], g, scratch)                                # (nb*OH*OW, G, K/G)
        cols = scratch.get("cols", (kh * kw, rows.shape[0], g, cg), dtype)
        xp.matmul(rows.transpose(1, 0, 2), wt, out=cols.transpose(0, 2, 1, 3))
        _col2im(cols, n1 - n0, c, in_hw, geom, (oh, ow), scratch, out=gx[n0:n1])
        if gw is not None:                                                 # col2im is done with "cols"
            gw += _weight_product(rows, _im2col(x[n0:n1], geom, (oh, ow), scratch))
    gx = _nchw_view(gx)
    return gx if gw is None else (gx, _weight_from_matrix(gw, w.shape))


def _sub_pixel_applies(geom):
    """Whether :func:`_sub_pixel` covers ``geom``: along each axis stride 1 (any dilation), or a
    kernel that is a whole number of strides long with no dilation (every stride phase then has
    the same number of taps)."""
    return all(s == 1 or (k % s == 0 and d == 1) for k, s, d in zip(geom.kernel, geom.stride, geom.dilation))


def _sub_pixel(w, geom, in_hw, out_hw):
    """The stride-1 convolution of the output gradient that computes a convolution's input gradient.

    Split the padded input rows into blocks of ``s`` (stride) rows, ``y' = s * A + sy``.  A kernel of
    ``k = s * m`` taps reaches block ``A`` from the output rows ``A - m + 1 .. A`` only, tap
    ``i = s * (A - oh) + sy``.  So the whole gradient is one stride-1 convolution of ``gy`` with an
    ``m x m'`` kernel (flipped, as the taps run backwards) and ``G * s * s' * C/G`` output channels,
    one per ``(sy, sx, c)``: a "sub-pixel" convolution whose channels, moved back into the blocks
    (:func:`_depth_to_space`), are the image.  With stride 1 this is the familiar "full" correlation
    with the flipped kernel (dilation kept).  One gather and one product, instead of a product per
    tap and col2im's read-modify-write passes (measured: benchmarks/NOTES.md, P11 and P16).

    Returns:
        ``(weight (G*s*s'*C/G, K/G, m, m'), geometry, blocks (A, B), offset)``: run
        ``_conv_forward(gy, weight, geometry, blocks)``; image row ``y`` is block row
        ``y + offset[0]``.  A negative pad in the geometry crops.
    """
    k, cg, kh, kw = w.shape
    g, (sh, sw), (pt, _, pl, _) = geom.groups, geom.stride, geom.pad
    m, mw = kh // sh, kw // sw
    d = tuple(dd if ss == 1 else 1 for dd, ss in zip(geom.dilation, geom.stride))
    sub = w.reshape(g, k // g, cg, m, sh, mw, sw)[:, :, :, ::-1, :, ::-1, :]    # i = s * t + sy, t flipped
    weight = sub.transpose(0, 4, 6, 2, 1, 3, 5).reshape(g * sh * sw * cg, k // g, m, mw)
    a0, a1 = pt // sh, (pt + in_hw[0] - 1) // sh + 1                          # the blocks the image covers
    b0, b1 = pl // sw, (pl + in_hw[1] - 1) // sw + 1
    pad = (d[0] * (m - 1) - a0, a1 - out_hw[0], d[1] * (mw - 1) - b0, b1 - out_hw[1])
    return weight, _Geometry((m, mw), (1, 1), d, pad, g), (a1 - a0, b1 - b0), (pt - sh * a0, pl - sw * b0)


def _unflip_weight(gw_full, w_shape, groups):
    """A stride-1 convolution's weight gradient from that of its full correlation (:func:`_sub_pixel`).

    With stride 1 the input gradient is ``gx = conv(gy, W')``, ``W'[g, c, k, i, j] = w[g, k, c, kh-1-i,
    kw-1-j]`` (flipped, input and output channels swapped, per group).  Both sides of
    ``<conv(x, w), gy> = <x, conv(gy, W')>`` are the same function of ``w``, so ``w``'s gradient is
    ``W'``'s gradient taken against ``x`` -- ``gw_full`` (C, K/G, kh, kw), which
    ``_conv_forward(gy, W', ..., weight_grad_for=x)`` computes from ``gy``'s columns -- mapped back
    through that permutation.  Measured, conv2d micro shapes: the backward 25.5 -> 21.3 ms, x's
    column matrix no longer gathered a second time (benchmarks/NOTES.md, session 10).
    """
    k, cg, kh, kw = w_shape
    xp = backend.array_module(gw_full)
    per_group = gw_full.reshape(groups, cg, k // groups, kh, kw)[:, :, :, ::-1, ::-1]
    return xp.ascontiguousarray(per_group.transpose(0, 2, 1, 3, 4)).reshape(w_shape)


def _depth_to_space(y, stride, groups, in_hw, offset):
    """The sub-pixel result ``y`` (N, G*s*s'*C/G, A, B) (channels-last memory) moved back into image
    pixels: ``gx[n, y, x, (g, c)] = y[n, A, B, (g, sy, sx, c)]`` at ``y + offset = s * A + sy``, cropped
    to ``in_hw``.  One strided copy per ``(sy, sx)``; returns an NCHW view of ``(N, H, W, C)`` memory."""
    xp = backend.array_module(y)
    (sh, sw), (h, w), g = stride, in_hw, groups
    n, _, a, b = y.shape
    cg = y.shape[1] // (g * sh * sw)
    blocks = y.transpose(0, 2, 3, 1).reshape(n, a, b, g, sh, sw, cg)
    gx = xp.empty((n, h, w, g * cg), dtype=y.dtype)
    gx5 = gx.reshape(n, h, w, g, cg)
    for sy in range(sh):
        r0, r1 = _phase_span(sy, sh, offset[0], h)
        r1 = min(a, r1)
        for sx in range(sw):
            q0, q1 = _phase_span(sx, sw, offset[1], w)
            q1 = min(b, q1)
            if r1 > r0 and q1 > q0:
                y0, x0 = sh * r0 + sy - offset[0], sw * q0 + sx - offset[1]
                gx5[:, y0:: sh, x0:: sw][:, : r1 - r0, : q1 - q0] = blocks[:, r0:r1, q0:q1, :, sy, sx]
    return _nchw_view(gx)


def _conv_grad_weight(x, gy, geom, w_shape):
    """Adjoint of :func:`_conv_forward` in ``w``: -> (K, C/G, kh, kw).

    ``gw[k, c, i, j] = sum_{n, oh, ow} gy[n, k, oh, ow] * x_pad[n, g(k)*C/G + c, oh*sh + i*dh, ow*sw + j*dw]``
    """
    xp = backend.array_module(x, gy)
    if kernels.should_use(x, gy):
        return _fused_conv_grad_weight(x, gy, geom, w_shape)
    if _compiled_applies(geom, x, gy):
        return _compiled_weight_grad(_nhwc(x), _nhwc(gy), geom, w_shape)
    k, c, kh, kw = w_shape
    g = geom.groups
    oh, ow = gy.shape[2:]
    gw = xp.zeros((g, k // g, kh * kw * c), dtype=xp.result_type(x, gy))
    scratch = _Scratch(xp)
    for n0, n1 in _batch_blocks(x, x.shape[1] * kh * kw * oh * ow * x.dtype.itemsize):
        cols = _im2col(x[n0:n1], geom, (oh, ow), scratch)                  # recomputed, never kept
        gw += _weight_product(_rows(gy[n0:n1], g, scratch), cols)
    return _weight_from_matrix(gw, w_shape)


# The same three primitives compiled for the CPU (kernels/conv_cpu.cpp through minifb/cpu_conv.py): a
# direct convolution with no column matrix, on NumPy float32/float64 arrays when a C++ compiler is
# present. Here they only arrange the layouts: the images channels-last (a view when they already are, as
# the primitives' results are; the padding is never stored), the weight per tap with its vectorised channel
# axis last and padded to whole 64-byte vectors. Measured: benchmarks/NOTES.md, "Session 15".
def _compiled_applies(geom, *arrays):
    """Whether the compiled primitives take these arrays (see :func:`minifb.cpu_conv.applies`); they
    assume a padding of at least zero on every side, which every user-facing convolution has."""
    return min(geom.pad) >= 0 and cpu_conv.applies(*arrays)


def _padded_channels(a, axis_size, lanes):
    """``a`` with its last axis zero-padded from ``axis_size`` to a whole number of ``lanes``."""
    size = -(-axis_size // lanes) * lanes
    if size == axis_size:
        return np.ascontiguousarray(a)
    out = np.zeros(a.shape[:-1] + (size,), dtype=a.dtype)
    out[..., :axis_size] = a
    return out


def _compiled_geometry(image_nhwc, k, geom, out_hw):
    """The kernels' geometry arguments for an image of shape ``image_nhwc`` (N, H, W, C) and ``k`` output
    channels."""
    n, h, w, c = image_nhwc
    return (n, h, w, c, k, geom.groups, *geom.kernel, *geom.stride, *geom.dilation, *out_hw,
            geom.pad[0], geom.pad[2])


def _nhwc(a):
    """``a`` (N, C, H, W) as a contiguous (N, H, W, C) array: a view when it is channels-last memory
    already (as the primitives' results are), else one copy. The compiled primitives below take their
    images in this form, so that a convolution's backward copies its output gradient once for both
    gradients."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _compiled_forward(xl, w, geom, out_hw, b):
    """:func:`_conv_forward` of the channels-last image ``xl`` (N, H, W, C), without the weight gradient, on
    the compiled direct convolution."""
    k, cg, kh, kw = w.shape
    g, lanes = geom.groups, cpu_conv.lanes(xl.dtype)
    wp = _padded_channels(w.reshape(g, k // g, cg, kh, kw).transpose(0, 3, 4, 2, 1), k // g, lanes)
    bp = _padded_channels(np.zeros((g, k // g), xl.dtype) if b is None else b.reshape(g, k // g), k // g, lanes)
    y = np.empty((xl.shape[0],) + tuple(out_hw) + (k,), dtype=xl.dtype)
    cpu_conv.forward(xl, wp, bp, y, _compiled_geometry(xl.shape, k, geom, out_hw))
    return _nchw_view(y)


def _compiled_input_grad(gl, w, geom, in_hw, b=None):
    """:func:`_conv_grad_input` of the channels-last output gradient ``gl`` (N, OH, OW, K), without the
    weight gradient, plus ``b`` (C,) when given: the compiled kernel starts every input pixel from ``b`` (or
    zeros) and adds back the gradient of every output pixel whose taps read it (skipping the padding)."""
    n, oh, ow, k = gl.shape
    _, cg, kh, kw = w.shape
    g, lanes = geom.groups, cpu_conv.lanes(gl.dtype)
    wt = _padded_channels(w.reshape(g, k // g, cg, kh, kw).transpose(0, 3, 4, 1, 2), cg, lanes)
    gx = np.empty((n,) + tuple(in_hw) + (cg * g,), dtype=gl.dtype)
    start = np.zeros(cg * g, gl.dtype) if b is None else np.ascontiguousarray(b)
    cpu_conv.input_grad(gl, wt, start, gx, _compiled_geometry(gx.shape, k, geom, (oh, ow)))
    return _nchw_view(gx)


def _compiled_weight_grad(xl, gl, geom, w_shape):
    """:func:`_conv_grad_weight` of the channels-last image ``xl`` (N, H, W, C) and output gradient ``gl``
    (N, OH, OW, K), on the compiled direct convolution."""
    k, cg, kh, kw = w_shape
    n, oh, ow = gl.shape[:3]
    g, lanes = geom.groups, cpu_conv.lanes(xl.dtype)
    kgp = -(-(k // g) // lanes) * lanes
    rows = gl if kgp == k // g else _padded_channels(gl.reshape(n, oh, ow, g, k // g), k // g, lanes)
    gw = np.empty((g, kh, kw, cg, kgp), dtype=xl.dtype)
    cpu_conv.weight_grad(xl, rows, gw, _compiled_geometry(xl.shape, g * kgp, geom, (oh, ow)))
    return np.ascontiguousarray(gw[..., :k // g].transpose(0, 4, 3, 1, 2)).reshape(w_shape)


# The same three primitives on the fused kernels (kernels/im2col.cu), whose column matrix is
# ``(C * kh * kw, N * OH * OW)``: rows ``(c, i, j)``, one column per output pixel (a GPU thread per
# element, coalesced along the output width).  So the products run channels-first here and the
# results are plain contiguous NCHW arrays; the array path above is the reference they are tested
# against.
def _fused_columns(x, geom, out_hw):
    """The kernels' column matrix of ``x``, as ``(G, C/G * kh * kw, N * OH * OW)``."""
    n, c = x.shape[:2]
    (kh, kw), (pt, _, pl, _) = geom.kernel, geom.pad
    cols = kernels.im2col(x, kh, kw, geom.stride, (pt, pl), geom.dilation, out_hw=out_hw)
    return cols.reshape(geom.groups, c // geom.groups * kh * kw, n * out_hw[0] * out_hw[1])


def _fused_rows(gy, groups):
    """``gy`` (N, K, OH, OW) as ``(G, K/G, N * OH * OW)`` (one copy)."""
    xp = backend.array_module(gy)
    n, k, oh, ow = gy.shape
    return xp.ascontiguousarray(gy.transpose(1, 0, 2, 3)).reshape(groups, k // groups, n * oh * ow)


def _fused_conv_forward(x, w, geom, out_hw, b, weight_grad_for):
    """:func:`_conv_forward` on the fused im2col kernel."""
    xp = backend.array_module(x, w)
    n, k, g = x.shape[0], w.shape[0], geom.groups
    cols = _fused_columns(x, geom, out_hw)
    y = xp.matmul(w.reshape(g, k // g, -1), cols).reshape(k, n, *out_hw)
    y = xp.ascontiguousarray(y.transpose(1, 0, 2, 3))
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    if weight_grad_for is None:
        return y
    gw = xp.matmul(_fused_rows(weight_grad_for, g), cols.transpose(0, 2, 1))
    return y, gw.reshape((weight_grad_for.shape[1],) + w.shape[1:])


def _fused_conv_grad_input(gy, w, geom, in_hw, weight_grad_of):
    """:func:`_conv_grad_input` on the fused col2im kernel (a gather per input pixel, no atomics)."""
    xp = backend.array_module(gy, w)
    n, k, oh, ow = gy.shape
    g, (kh, kw), (pt, _, pl, _) = geom.groups, geom.kernel, geom.pad
    c = w.shape[1] * g
    rows = _fused_rows(gy, g)
    cols = xp.matmul(w.reshape(g, k // g, -1).transpose(0, 2, 1), rows)    # (G, C/G*kh*kw, N*OH*OW)
    gx = kernels.col2im(cols.reshape(c * kh * kw, n * oh * ow), (n, c) + tuple(in_hw), kh, kw,
                        geom.stride, (pt, pl), geom.dilation, out_hw=(oh, ow))
    if weight_grad_of is None:
        return gx
    gw = xp.matmul(rows, _fused_columns(weight_grad_of, geom, (oh, ow)).transpose(0, 2, 1))
    return gx, gw.reshape(w.shape)


def _fused_conv_grad_weight(x, gy, geom, w_shape):
    """:func:`_conv_grad_weight` on the fused im2col kernel."""
    xp = backend.array_module(x, gy)
    gw = xp.matmul(_fused_rows(gy, geom.groups), _fused_columns(x, geom, gy.shape[2:]).transpose(0, 2, 1))
    return gw.reshape(w_shape)


def _bias_grad(gy):
    return channel_sum(gy, 1)


# --------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------
class Conv2d(Function):
    """2-D convolution (cross-correlation, as in PyTorch) as a recorded op.

    ``Conv2d.apply(x, w[, b], stride=1, padding=0, dilation=1, groups=1)``; see
    :func:`conv2d` for shapes and the formula.
    """

    def forward(self, x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1):
        geom, out_hw = _conv_geometry("conv2d", x, w, stride, padding, dilation, groups)
        _check_bias("conv2d", b, w.shape[0], w.shape)
        self.geom, self.in_hw, self.w_shape = geom, x.shape[2:], w.shape
        if self.needs[0]:
            self.w = w
        if self.needs[1]:
            self.x = x
        return _conv_forward(x, w, geom, out_hw, b)

    def backward(self, grad):
        gx = gw = None
        # both: on the col2im path (and the fused kernels' path) one pass over the batch shares grad's
        # layout copy; with stride 1 one gather of grad serves both (_unflip_weight); on the other
        # sub-pixel paths the two gradients are computed one after the other
        if self.needs[0] and self.needs[1]:
            gx, gw = _conv_grad_input(grad, self.w, self.geom, self.in_hw, weight_grad_of=self.x)
        elif self.needs[0]:
            gx = _conv_grad_input(grad, self.w, self.geom, self.in_hw)
        elif self.needs[1]:
            gw = _conv_grad_weight(self.x, grad, self.geom, self.w_shape)
        if len(self.needs) == 2:
            return gx, gw
        return gx, gw, (_bias_grad(grad) if self.needs[2] else None)


class ConvTranspose2d(Function):
    """2-D transposed convolution: the adjoint of :class:`Conv2d` as a recorded op.

    ``ConvTranspose2d.apply(x, w[, b], stride=1, padding=0, output_padding=0,
    dilation=1, groups=1)``; see :func:`conv_transpose2d`.
    """

    def forward(self, x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
        fn = "conv_transpose2d"
        geom, out_hw = _conv_transpose_geometry(fn, x, w, stride, padding, output_padding,
                                                dilation, groups)
        _check_bias(fn, b, w.shape[1] * geom.groups, w.shape)
        self.geom, self.in_hw, self.w_shape = geom, x.shape[2:], w.shape
        if self.needs[0]:
            self.w = w
        if self.needs[1]:
            self.x = x
        # the conv whose adjoint this is maps (N, C_out, out_hw) -> x's shape with weight w
        return _conv_grad_input(x, w, geom, out_hw, b=b)

    def backward(self, grad):
        gx = gw = None
        if self.needs[0] and self.needs[1]:   # both: grad's column matrix is gathered once for the two
            gx, gw = _conv_forward(grad, self.w, self.geom, self.in_hw, weight_grad_for=self.x)
        elif self.needs[0]:
            gx = _conv_forward(grad, self.w, self.geom, self.in_hw)
        elif self.needs[1]:
            gw = _conv_grad_weight(grad, self.x, self.geom, self.w_shape)
        if len(self.needs) == 2:
            return gx, gw
        return gx, gw, (_bias_grad(grad) if self.needs[2] else None)


def _pool_geometry(fn, x, kernel_size, stride, padding):
    _check_4d(fn, "input", x, "(N, C, H, W)")
    kernel = checks.pair(fn, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else checks.pair(fn, "stride", stride, 1)
    ph, pw = checks.pair(fn, "padding", padding, 0)
    if ph > kernel[0] // 2 or pw > kernel[1] // 2:
        raise ValueError(f"{fn}: padding={padding!r} must be at most half the kernel size "
                         f"{kernel} (input shape {tuple(x.shape)})")
    geom = _Geometry(kernel, stride, (1, 1), (ph, ph, pw, pw))
    out_hw = geom.out_size(x.shape[2:])
    if min(out_hw) < 1:
        raise ValueError(f"{fn}: kernel {kernel} is larger than the padded input "
                         f"{(x.shape[2] + 2 * ph, x.shape[3] + 2 * pw)} (input shape {tuple(x.shape)}, "
                         f"padding={padding!r})")
    return geom, out_hw


def _scatter_taps(taps, n_c, in_hw, geom, out_hw, dtype, xp):
    """Add ``taps(i, j)`` (each (N, C, OH, OW)) into the padded input grid; return the unpadded image."""
    (kh, kw), (sh, sw), (oh, ow) = geom.kernel, geom.stride, out_hw
    pt, pb, pl, pr = geom.pad
    h, w = in_hw
    buf = xp.zeros(n_c + (h + pt + pb, w + pl + pr), dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            buf[:, :, i: i + sh * (oh - 1) + 1: sh, j: j + sw * (ow - 1) + 1: sw] += taps(i, j)
    return xp.ascontiguousarray(buf[:, :, pt:pt + h, pl:pl + w])


class MaxPool2d(Function):
    """2-D max pooling as a recorded op; see :func:`max_pool2d`."""

    def forward(self, x, *, kernel_size, stride=None, padding=0):
        xp = backend.array_module(x)
        geom, out_hw = _pool_geometry("max_pool2d", x, kernel_size, stride, padding)
        kh, kw = geom.kernel
        # KERNEL HOOK: max_pool forward
        self.arg = None
        if kernels.should_use(x):  # kernels/maxpool.cu; arg = h * W + w of the maximum in its plane
            out, arg = kernels.maxpool_forward(x, geom.kernel, geom.stride, (geom.pad[0], geom.pad[2]))
            if self.needs[0]:
                self.arg, self.in_shape, self.geom = arg, x.shape, geom
            return out
        win = _windows(_padded(x, geom.pad, -np.inf), geom, out_hw)   # (N, C, OH, OW, kh, kw)
        flat = win.reshape(x.shape[:2] + out_hw + (kh * kw,))         # one copy
        idx = flat.argmax(axis=-1)
        out = xp.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
        # With padding, a window whose real values are all -inf ties with its -inf padding, and argmax
        # may have picked a padding cell, whose gradient would be dropped.  Like PyTorch, route it to
        # the window's first real cell instead.
        lost = (out == -np.inf) if any(geom.pad) else None
        # (on CuPy, ``any()`` would wait for the device: take the cheap where unconditionally there)
        if lost is not None and (xp is not np or lost.any()):
            inside = _windows(_padded(xp.ones((1, 1) + x.shape[2:], dtype=x.dtype), geom.pad), geom, out_hw)
            first_inside = inside.reshape((1, 1) + out_hw + (kh * kw,)).argmax(axis=-1)
            idx = xp.where(lost, first_inside, idx)
        if self.needs[0]:
            small = np.uint8 if kh * kw <= 256 else np.int64
            self.idx, self.in_shape, self.geom = idx.astype(small), x.shape, geom
        return out

    def backward(self, grad):
        xp = backend.array_module(grad)
        # KERNEL HOOK: max_pool backward (one-hot mask of the argmax, scattered per tap)
        if self.arg is not None:  # the forward ran the kernel: gather, no atomics (kernels/maxpool.cu)
            geom = self.geom
            return (kernels.maxpool_backward(grad, self.arg, self.in_shape, geom.kernel, geom.stride,
                                             (geom.pad[0], geom.pad[2])),)
        idx, kw = self.idx, self.geom.kernel[1]
        gx = _scatter_taps(lambda i, j: xp.where(idx == i * kw + j, grad, 0), self.in_shape[:2],
                           self.in_shape[2:], self.geom, grad.shape[2:], grad.dtype, xp)
        return (gx,)


class AvgPool2d(Function):
    """2-D average pooling (zero padding counted) as a recorded op; see :func:`avg_pool2d`."""

    def forward(self, x, *, kernel_size, stride=None, padding=0):
        geom, out_hw = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding)
        if self.needs[0]:
            self.in_shape, self.geom = x.shape, geom
        acc = np.float32 if x.dtype == np.float16 else x.dtype  # a float16 window sum overflows at 65504
        return _windows(_padded(x, geom.pad), geom, out_hw).mean(axis=(-2, -1), dtype=acc).astype(x.dtype, copy=False)

    def backward(self, grad):
        xp = backend.array_module(grad)
        kh, kw = self.geom.kernel
        share = grad / (kh * kw)
        gx = _scatter_taps(lambda i, j: share, self.in_shape[:2], self.in_shape[2:], self.geom,
                           grad.shape[2:], grad.dtype, xp)
        return (gx,)


# --------------------------------------------------------------------------
# Functions on Tensors
# --------------------------------------------------------------------------
def _as_tensor(fn, name, value, optional=False):
    """``value`` as a Tensor (a NumPy or CuPy array is wrapped); None only where ``optional`` (the bias)."""
    if isinstance(value, Tensor) or (value is None and optional):
        return value
    if backend.is_array(value):
        return Tensor(value)
    raise TypeError(f"{fn}: {name} must be a Tensor, got {type(value).__name__}")


def _inputs(fn, x, w, b):
    x, w, b = _as_tensor(fn, "input", x), _as_tensor(fn, "weight", w), _as_tensor(fn, "bias", b, optional=True)
    if b is None:
        return x, w
    dtype = backend.result_type(x, w, b)
    if dtype != backend.result_type(x, w):
        # a wider bias (float64 with float32 data) widens the whole convolution, as ``x @ w.T + b`` does in
        # linear, instead of being rounded into the narrower result; the gradients are cast back
        x, w = cast(x, dtype), cast(w, dtype)
    return x, w, b


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution over an NCHW batch (PyTorch's ``conv2d``: a cross-correlation).

    Args:
        x: input, shape ``(N, C_in, H, W)``.
        w: weight, shape ``(C_out, C_in / groups, kh, kw)``.
        b: optional bias, shape ``(C_out,)``.
        stride: int or ``(sh, sw)``, >= 1.
        padding: int or ``(ph, pw)`` zeros on each side, or ``"valid"`` (none) or
            ``"same"`` (stride 1 only; output size = input size; when the total
            ``d * (k - 1)`` is odd the extra row/column goes to the bottom/right).
        dilation: int or ``(dh, dw)``, spacing between kernel taps, >= 1.
        groups: split the channels into this many independent convolutions.

    Returns:
        Tensor of shape ``(N, C_out, OH, OW)`` with
        ``OH = floor((H + 2 * ph - dh * (kh - 1) - 1) / sh) + 1`` (same for OW), and
        ``y[n, k, oh, ow] = b[k] + sum_{c, i, j} w[k, c, i, j] * x[n, g*C_in/groups + c,
        oh*sh - ph + i*dh, ow*sw - pw + j*dw]`` (``g`` the group of ``k``, zero outside ``x``).

    Raises:
        TypeError: ``x``, ``w`` or ``b`` is neither a Tensor nor a NumPy/CuPy
            array (arrays are wrapped), or ``x`` or ``w`` is not floating point
            (an integer or boolean input or weight).
        ValueError: on wrong ranks, channel counts, groups, bias shape, a kernel
            larger than the padded input, malformed stride/padding/dilation, or a padding so large
            that no array could hold the padded input.

    Example:
        >>> x = mf.randn(2, 3, 8, 8)
        >>> w = mf.randn(16, 3, 3, 3, requires_grad=True)
        >>> F.conv2d(x, w, padding=1).shape
        (2, 16, 8, 8)
    """
    return Conv2d.apply(*_inputs("conv2d", x, w, b), stride=stride, padding=padding,
                        dilation=dilation, groups=groups)


def conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> Tensor:
    """2-D transposed convolution (the adjoint of :func:`conv2d`), as PyTorch's ``conv_transpose2d``.

    Each input pixel scatters ``x[n, c] * w[c]`` into the output at stride
    ``stride``; ``padding`` crops that many rows/columns from each side and
    ``output_padding`` adds rows/columns at the bottom/right.

    Args:
        x: input, shape ``(N, C_in, H, W)``.
        w: weight, shape ``(C_in, C_out / groups, kh, kw)``.
        b: optional bias, shape ``(C_out,)``.
        stride: int or pair, >= 1.
        padding: int or pair, >= 0 (no string forms).
        output_padding: int or pair, each smaller than the stride or the dilation.
        dilation: int or pair, >= 1.
        groups: number of channel groups.

    Returns:
        Tensor of shape ``(N, C_out, OH, OW)`` with
        ``OH = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1`` and
        ``y[n, g*C_out/groups + o, ih*sh - ph + i*dh, iw*sw - pw + j*dw] += x[n, c, ih, iw] * w[c, o, i, j]``
        (``g = c // (C_in / groups)``, the group of input channel ``c``), plus ``b[k]`` at every output
        position of channel ``k``. It is the adjoint of :func:`conv2d`: for ``x`` of size (H, W) and the
        same stride, padding, dilation and groups, with ``output_padding = (H + 2 * ph - dh * (kh - 1) - 1)
        mod sh`` (likewise for W) so that the result has ``x``'s size,
        ``<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>`` without biases.

    Raises:
        TypeError: ``x``, ``w`` or ``b`` is neither a Tensor nor a NumPy/CuPy
            array (arrays are wrapped), or ``x`` or ``w`` is not floating point
            (an integer or boolean input or weight).
        ValueError: on wrong ranks, channel counts, groups, bias shape, a
            non-positive output size, an output_padding that is too large, or a
            stride/dilation/output_padding so large that no array could hold the output.

    Example:
        >>> z = mf.randn(2, 16, 7, 7)
        >>> w = mf.randn(16, 8, 4, 4)
        >>> F.conv_transpose2d(z, w, stride=2, padding=1).shape
        (2, 8, 14, 14)
    """
    return ConvTranspose2d.apply(*_inputs("conv_transpose2d", x, w, b), stride=stride, padding=padding,
                                 output_padding=output_padding, dilation=dilation, groups=groups)


def max_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """2-D max pooling over an NCHW batch (PyTorch's ``max_pool2d``, floor mode).

    Args:
        x: input, shape ``(N, C, H, W)``.
        kernel_size: int or ``(kh, kw)``.
        stride: int or pair; ``None`` (default) means ``kernel_size``.
        padding: int or pair of implicit ``-inf`` padding, at most half the kernel.

    Returns:
        Tensor of shape ``(N, C, OH, OW)``, ``OH = floor((H + 2 * ph - kh) / sh) + 1``,
        ``y[n, c, oh, ow] = max_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]``. The
        gradient goes to the first maximum of each window.

    Example:
        >>> F.max_pool2d(mf.randn(2, 3, 8, 8), 2).shape
        (2, 3, 4, 4)
    """
    return MaxPool2d.apply(_as_tensor("max_pool2d", "input", x), kernel_size=kernel_size,
                           stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0) -> Tensor:
    """2-D average pooling over an NCHW batch (PyTorch's ``avg_pool2d``, ``count_include_pad=True``).

    Args:
        x: input, shape ``(N, C, H, W)``.
        kernel_size: int or ``(kh, kw)``.
        stride: int or pair; ``None`` (default) means ``kernel_size``.
        padding: int or pair of zero padding, at most half the kernel; the
            zeros count in the average.

    Returns:
        Tensor of shape ``(N, C, OH, OW)``, ``OH = floor((H + 2 * ph - kh) / sh) + 1``,
        ``y[n, c, oh, ow] = (1 / (kh * kw)) * sum_{i, j} x_pad[n, c, oh*sh + i, ow*sw + j]``.

    Example:
        >>> F.avg_pool2d(mf.randn(2, 3, 8, 8), 2).shape
        (2, 3, 4, 4)
    """
    return AvgPool2d.apply(_as_tensor("avg_pool2d", "input", x), kernel_size=kernel_size,
                           stride=stride, padding=padding)
