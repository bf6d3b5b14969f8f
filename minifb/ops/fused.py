"""Fused epilogues: the elementwise tails of Dense/Conv layers and of a Merger.

``act(x + bias)`` and ``x + act(fb + bias)`` are each a single op, so the GPU
runs them as one kernel (see ``kernels/bias_act.cu`` and ``kernels/merger.cu``)
instead of three or four separate passes over memory.  On NumPy arrays the
array-module code below runs; it is also the reference the kernels are tested
against.

``bias`` has one entry per channel, and the channel is axis ``axis`` of ``x``.
Viewing ``x`` as (outer, C, inner) covers both Dense outputs (N, C) and
images (N, C, H, W).

The operands of each op share one floating dtype: :func:`minifb.functional.bias_act`
and :func:`~minifb.functional.merge_act` promote them first, by the rules of the
unfused expressions.  The kernels run only when every operand is float32
(:func:`minifb.kernels.should_use`).
"""

from .. import kernels
from ..backend import array_module
from ..tensor import Function
from .activation import sigmoid_array
from .reduce import channel_sum

ACTIVATIONS = ("identity", "relu", "sigmoid", "tanh")


def activate(a, act, in_place=False):
    """Apply a named activation to a raw array; ``in_place=True`` may overwrite ``a`` (a temporary)
    instead of allocating the result, saving one pass over memory for relu and tanh."""
    out = a if in_place else None
    if act == "relu":
        return array_module(a).maximum(a, 0, out=out)
    if act == "sigmoid":
        return sigmoid_array(a)
    if act == "tanh":
        return array_module(a).tanh(a, out=out)
    return a


def activation_grad(grad, y, act):
    """Gradient through a named activation, written in terms of its output ``y``."""
    if act == "relu":
        return grad * (y > 0)
    if act == "sigmoid":
        return grad * y * (1 - y)
    if act == "tanh":
        return grad * (1 - y * y)
    return grad


def _bias_shape(ndim, axis, channels):
    return (channels,) + (1,) * (ndim - axis - 1)


class BiasAct(Function):
    """``y = act(x + bias)`` with ``bias`` (C,) broadcast along channel axis ``axis``."""

    saved_output = "y"   # backward reads the output (not for the identity): apply() records its version

    def forward(self, x, bias, *, act, axis):
        self.act, self.axis = act, axis
        if kernels.should_use(x, bias):
            y = kernels.bias_act(x, bias, act, axis)
        else:
            y = activate(x + bias.reshape(_bias_shape(x.ndim, axis, bias.shape[0])), act, in_place=True)
        # the identity's backward needs nothing; the others are written in terms of the output
        self.y = y if act != "identity" else None
        return y

    def backward(self, grad):
        if self.act == "identity":
            gb = None
            if self.needs[1]:
                gb = channel_sum(grad, self.axis)
            return grad, gb
        if kernels.should_use(grad, self.y):
            gx, gb = kernels.bias_act_backward(grad, self.y, self.act, self.axis,
                                               need_bias=self.needs[1])
            return gx, gb
        gx = activation_grad(grad, self.y, self.act)
        gb = None
        if self.needs[1]:
            gb = channel_sum(gx, self.axis)
        return gx, gb


class MergeAct(Function):
    """``y = x + act(fb + bias)``: a feedback path's epilogue fused with an additive Merger."""

    def forward(self, x, fb, bias, *, act, axis):
        self.act, self.axis = act, axis
        if x.shape != fb.shape:
            raise ValueError(f"merge_act: stream shape {x.shape} and feedback shape {fb.shape} differ")
        kernel = kernels.should_use(x, fb, bias)
        if kernel:
            y, a = kernels.merger_forward(x, fb, bias, act, axis)
        else:
            a = activate(fb + bias.reshape(_bias_shape(fb.ndim, axis, bias.shape[0])), act, in_place=True)
            y = x + a
        # Keep only what backward reads: nothing for the identity, a 1-byte mask for relu on the
        # array path (a is an intermediate no other op keeps, so this is 4x less BPTT memory).
        if act == "identity":
            self.a = None
        elif act == "relu" and not kernel:
            self.a = a > 0
        else:
            self.a = a
        return y

    def backward(self, grad):
        if self.act == "identity" or self.a.dtype == bool:
            gfb = grad if self.act == "identity" else grad * self.a
            gb = channel_sum(gfb, self.axis) if self.needs[2] else None
            return grad, gfb, gb
        if kernels.should_use(grad, self.a):
            gfb, gb = kernels.merger_backward(grad, self.a, self.act, self.axis,
                                              need_bias=self.needs[2])
        else:
            gfb = activation_grad(grad, self.a, self.act)
            gb = channel_sum(gfb, self.axis) if self.needs[2] else None
        return grad, gfb, (gb if self.needs[2] else None)
