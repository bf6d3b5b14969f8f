"""The differentiable functions users call, as ``import minifb.functional as F``.

Each is a thin wrapper over an op in :mod:`minifb.ops`: it turns Python
numbers into tensors, checks arguments (raising errors that name the function,
the argument and the shapes) and calls ``Op.apply``.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import backend
from .ops import activation, dropout as dropout_ops, elementwise as ew, fused, loss, matmul as mm
from .ops import movement, recurrent, reduce, softmax as sm
from .ops.conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d  # noqa: F401  (re-exported)
from .tensor import Tensor

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "maximum", "minimum", "where",
    "clip", "sum", "mean", "max", "min", "matmul", "reshape", "transpose", "flatten", "getitem", "concat",
    "stack", "pad", "broadcast_to", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu", "softmax",
    "log_softmax", "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits", "dropout", "linear",
    "bias_act", "merge_act", "lstm_pointwise", "gru_pointwise", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
]


# ---- helpers ----------------------------------------------------------------
def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Return ``value`` as a Tensor; Python numbers take the dtype and device of ``like``."""
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, numbers.Number):
        xp = backend.array_module(like.data)
        dtype = like.dtype if like.dtype.kind == "f" or isinstance(value, numbers.Integral) else backend.DEFAULT_DTYPE
        return Tensor(xp.asarray(value, dtype=dtype))
    if like is not None:
        return Tensor(backend.to_device(np.asarray(value) if not hasattr(value, "shape") else value, like.device))
    return Tensor(np.asarray(value))


def _pair(a, b):
    if not isinstance(a, Tensor):
        a = as_tensor(a, like=b)
    if not isinstance(b, Tensor):
        b = as_tensor(b, like=a)
    return a, b


def _check_tensor(name, arg, value):
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: argument {arg!r} must be a minifb Tensor, got {type(value).__name__}")


# ---- elementwise arithmetic -----------------------------------------------------
def add(a, b) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    return ew.Add.apply(*_pair(a, b))


def sub(a, b) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    return ew.Sub.apply(*_pair(a, b))


def mul(a, b) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    return ew.Mul.apply(*_pair(a, b))


def div(a, b) -> Tensor:
    """Elementwise ``a / b`` with broadcasting."""
    return ew.Div.apply(*_pair(a, b))


def neg(a) -> Tensor:
    """Elementwise ``-a``."""
    return ew.Neg.apply(a)


def pow(a, b) -> Tensor:  # noqa: A001 - mirrors the operator's name
    """Elementwise ``a ** b``; ``b`` may be a Python number or a tensor."""
    if isinstance(a, Tensor) and isinstance(b, numbers.Number):
        return ew.PowScalar.apply(a, exponent=b)
    return ew.Pow.apply(*_pair(a, b))


def exp(x) -> Tensor:
    """Elementwise ``e ** x``."""
    return ew.Exp.apply(x)


def log(x) -> Tensor:
    """Elementwise natural logarithm."""
    return ew.Log.apply(x)


def sqrt(x) -> Tensor:
    """Elementwise square root."""
    return ew.Sqrt.apply(x)


def abs(x) -> Tensor:  # noqa: A001
    """Elementwise absolute value."""
    return ew.Abs.apply(x)


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (ties split the gradient)."""
    return ew.Maximum.apply(*_pair(a, b))


def minimum(a, b) -> Tensor:
    """Elementwise minimum of two tensors (ties split the gradient)."""
    return ew.Minimum.apply(*_pair(a, b))


def where(condition, a, b) -> Tensor:
    """Pick ``a`` where ``condition`` holds, else ``b`` (``condition`` is not differentiated)."""
    cond = condition.data if isinstance(condition, Tensor) else condition
    a, b = _pair(a, b)
    return ew.Where.apply(a, b, condition=cond)


def clip(x, low=None, high=None) -> Tensor:
    """Clamp values to ``[low, high]`` (either bound may be ``None``)."""
    return ew.Clip.apply(x, low=low, high=high)


# ---- reductions --------------------------------------------------------------
def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (an int, a tuple, or ``None`` for all axes)."""
    return reduce.Sum.apply(x, axis=reduce.normalize_axis(axis, x.ndim), keepdims=keepdims)


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Arithmetic mean over ``axis``."""
    return reduce.Mean.apply(x, axis=reduce.normalize_axis(axis, x.ndim), keepdims=keepdims)


def max(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient equally."""
    return reduce.Max.apply(x, axis=reduce.normalize_axis(axis, x.ndim), keepdims=keepdims)


def min(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Minimum over ``axis``; tied minima share the gradient equally."""
    return reduce.Max.apply(x, axis=reduce.normalize_axis(axis, x.ndim), keepdims=keepdims, minimum=True)


# ---- linear algebra ------------------------------------------------------------
def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's ``@`` rules (batch axes broadcast).

    Shapes: (..., m, k) @ (..., k, n) -> (..., m, n); 1-D operands as in NumPy.
    """
    _check_tensor("matmul", "a", a)
    _check_tensor("matmul", "b", b)
    return mm.MatMul.apply(a, b)


def linear(x, w, b=None) -> Tensor:
    """Affine map ``x @ w.T + b``.

    Args:
        x: (..., in) input.
        w: (out, in) weight.
        b: (out,) bias or ``None``.

    Returns:
        (..., out).
    """
    _check_tensor("linear", "x", x)
    if w.ndim != 2 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: weight of shape {w.shape} expects inputs with last dimension "
                         f"{w.shape[1] if w.ndim == 2 else '?'}, got input of shape {x.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias of shape {b.shape} does not match weight of shape {w.shape}")
    return mm.Linear.apply(x, w) if b is None else mm.Linear.apply(x, w, b)


# ---- movement -------------------------------------------------------------------
def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(x, *shape) -> Tensor:
    """View ``x`` with a new shape (one ``-1`` allowed); shape as separate ints or one tuple."""
    shape = _shape_args(shape)
    try:
        return movement.Reshape.apply(x, shape=shape)
    except ValueError as err:
        raise ValueError(f"reshape: cannot reshape tensor of shape {x.shape} into {shape}") from err


def transpose(x, *axes) -> Tensor:
    """Permute axes; with no axes, reverse them (so a matrix is transposed)."""
    axes = _shape_args(axes) if axes else tuple(reversed(range(x.ndim)))
    if sorted(a % x.ndim for a in axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    return movement.Transpose.apply(x, axes=tuple(a % x.ndim for a in axes))


def flatten(x, start_axis=1) -> Tensor:
    """Merge axes ``start_axis..`` into one: (N, C, H, W) -> (N, C·H·W)."""
    return reshape(x, x.shape[:start_axis] + (-1,))


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy's basic and integer/boolean-array indexing."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return movement.GetItem.apply(x, index=index)


def concat(xs, axis=0) -> Tensor:
    """Join tensors along an existing axis; all other dimensions must agree."""
    xs = list(xs)
    if not xs:
        raise ValueError("concat: needs at least one tensor")
    ndim = xs[0].ndim
    axis = reduce.normalize_axis(axis, ndim)[0]
    for t in xs[1:]:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, xs[0].shape)) if i != axis):
            raise ValueError(f"concat: shapes {[tuple(t.shape) for t in xs]} differ outside axis {axis}")
    return movement.Concat.apply(*xs, axis=axis)


def stack(xs, axis=0) -> Tensor:
    """Join equal-shaped tensors along a new axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack: needs at least one tensor")
    if any(t.shape != xs[0].shape for t in xs):
        raise ValueError(f"stack: all shapes must be equal, got {[tuple(t.shape) for t in xs]}")
    axis = axis % (xs[0].ndim + 1)
    return movement.Stack.apply(*xs, axis=axis)


def pad(x, pad_width, value=0.0) -> Tensor:
    """Constant padding; ``pad_width`` is ``((before, after), ...)`` per axis as in ``numpy.pad``."""
    pad_width = tuple((int(a), int(b)) for a, b in pad_width)
    if len(pad_width) != x.ndim or any(a < 0 or b < 0 for a, b in pad_width):
        raise ValueError(f"pad: pad_width {pad_width} must give one non-negative (before, after) pair "
                         f"per axis of shape {x.shape}")
    return movement.Pad.apply(x, pad_width=pad_width, value=value)


def broadcast_to(x, shape) -> Tensor:
    """Broadcast ``x`` to ``shape`` (NumPy rules); backward sums over broadcast axes."""
    return movement.BroadcastTo.apply(x, shape=tuple(shape))


# ---- activations ------------------------------------------------------------------
def relu(x) -> Tensor:
    """Rectified linear unit ``max(x, 0)``."""
    return activation.ReLU.apply(x)


def leaky_relu(x, negative_slope=0.01) -> Tensor:
    """``x`` for positive inputs, ``negative_slope·x`` otherwise."""
    return activation.LeakyReLU.apply(x, negative_slope=negative_slope)


def sigmoid(x) -> Tensor:
    """Logistic function ``1 / (1 + e^-x)``, stable for large ``|x|``."""
    return activation.Sigmoid.apply(x)


def tanh(x) -> Tensor:
    """Hyperbolic tangent."""
    return activation.Tanh.apply(x)


def softplus(x) -> Tensor:
    """``log(1 + e^x)``, stable for large ``|x|``."""
    return activation.Softplus.apply(x)


def gelu(x, approximate="none") -> Tensor:
    """Gaussian error linear unit ``x·Φ(x)``; ``approximate="tanh"`` uses the tanh formula."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return activation.GELU.apply(x, approximate=approximate)


def softmax(x, axis=-1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis`` (stable)."""
    return sm.Softmax.apply(x, axis=reduce.normalize_axis(axis, x.ndim)[0])


def log_softmax(x, axis=-1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis`` (stable)."""
    return sm.LogSoftmax.apply(x, axis=reduce.normalize_axis(axis, x.ndim)[0])


def activation_name(fn):
    """The fused-kernel name of an activation callable (``None``, ``relu``, ``sigmoid``, ``tanh``), else ``None``."""
    if fn is None:
        return "identity"
    return {relu: "relu", sigmoid: "sigmoid", tanh: "tanh"}.get(fn)


def _check_bias(name, x, bias, axis):
    if bias.ndim != 1 or bias.shape[0] != x.shape[axis]:
        raise ValueError(f"{name}: bias of shape {bias.shape} does not match {x.shape[axis]} channels "
                         f"on axis {axis} of input shape {x.shape}")


def bias_act(x, bias, act="identity", axis=1) -> Tensor:
    """Fused ``act(x + bias)`` with ``bias`` (C,) along channel axis ``axis`` (one GPU kernel).

    Args:
        x: (..., C, ...) input, channel on ``axis``.
        bias: (C,).
        act: ``"identity"``, ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
    """
    if act not in fused.ACTIVATIONS:
        raise ValueError(f"bias_act: act must be one of {fused.ACTIVATIONS}, got {act!r}")
    axis = reduce.normalize_axis(axis, x.ndim)[0]
    _check_bias("bias_act", x, bias, axis)
    return fused.BiasAct.apply(x, bias, act=act, axis=axis)


def merge_act(x, fb, bias, act="identity", axis=1) -> Tensor:
    """Fused Merger epilogue ``x + act(fb + bias)`` (one GPU kernel).

    Args:
        x: the forward stream, shape S.
        fb: the feedback pre-activation, shape S.
        bias: (C,) along channel axis ``axis``.
    """
    if act not in fused.ACTIVATIONS:
        raise ValueError(f"merge_act: act must be one of {fused.ACTIVATIONS}, got {act!r}")
    if x.shape != fb.shape:
        raise ValueError(f"merge_act: stream shape {x.shape} and feedback shape {fb.shape} differ")
    axis = reduce.normalize_axis(axis, x.ndim)[0]
    _check_bias("merge_act", x, bias, axis)
    return fused.MergeAct.apply(x, fb, bias, act=act, axis=axis)


def lstm_pointwise(gi, gh, c) -> Tensor:
    """The elementwise part of an LSTM step, fused into one op (one GPU kernel).

    Args:
        gi: (B, 4H) input pre-activations ``x @ W_ih.T + b_ih``, gates in PyTorch's order i, f, g, o.
        gh: (B, 4H) hidden pre-activations ``h @ W_hh.T + b_hh``.
        c: (B, H) previous cell state.

    Returns:
        (B, 2H): ``[h' | c']`` with ``c' = f·c + i·g`` and ``h' = o·tanh(c')``.
    """
    return recurrent.LSTMPointwise.apply(gi, gh, c)


def gru_pointwise(gi, gh, h) -> Tensor:
    """The elementwise part of a GRU step, fused into one op (one GPU kernel).

    Args:
        gi: (B, 3H) input pre-activations, gates in PyTorch's order r, z, n.
        gh: (B, 3H) hidden pre-activations.
        h: (B, H) previous hidden state.

    Returns:
        (B, H): ``h' = (1 - z)·n + z·h`` with ``n = tanh(gi_n + r·gh_n)``.
    """
    return recurrent.GRUPointwise.apply(gi, gh, h)


# ---- losses -------------------------------------------------------------------------
_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits, labels, reduction="mean") -> Tensor:
    """Softmax cross-entropy against integer class labels.

    Args:
        logits: (N, C) or (N, C, d...) unnormalised scores.
        labels: (N,) or (N, d...) integers in ``[0, C)``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or per-sample losses for ``"none"``.

    Example:
        >>> F.cross_entropy(mf.randn(4, 10, requires_grad=True), mf.tensor([1, 0, 9, 3]))
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    labels_data = labels.data if isinstance(labels, Tensor) else backend.to_device(np.asarray(labels), logits.device)
    if labels_data.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels_data.dtype}")
    if logits.ndim < 2 or labels_data.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need labels of shape "
                         f"{logits.shape[:1] + logits.shape[2:]}, got {labels_data.shape}")
    if labels_data.size and (int(labels_data.min()) < 0 or int(labels_data.max()) >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), "
                         f"got range [{int(labels_data.min())}, {int(labels_data.max())}]")
    return loss.CrossEntropy.apply(logits, labels=labels_data, reduction=reduction)


def mse_loss(pred, target, reduction="mean") -> Tensor:
    """Squared error ``(pred - target)²``, averaged (default) or summed; shapes must match exactly."""
    pred, target = _pair(pred, target)
    if pred.shape != target.shape:
        raise ValueError(f"mse_loss: prediction shape {pred.shape} and target shape {target.shape} differ")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return loss.MSE.apply(pred, target, reduction=reduction)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean") -> Tensor:
    """Sigmoid cross-entropy ``-[y·log σ(z) + (1-y)·log(1-σ(z))]``, computed stably from logits."""
    logits, targets = _pair(logits, targets)
    if logits.shape != targets.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: logits shape {logits.shape} and "
                         f"targets shape {targets.shape} differ")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"binary_cross_entropy_with_logits: reduction must be one of {_REDUCTIONS}")
    return loss.BCEWithLogits.apply(logits, targets, reduction=reduction)


def dropout(x, p=0.5, training=True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (identity when not training)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return dropout_ops.Dropout.apply(x, p=p)
