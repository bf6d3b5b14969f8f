"""Layers: Dense, Conv, ConvTranspose, pooling, Flatten, Dropout, BatchNorm, LRN, Lambda.

Weights are initialised as PyTorch's layers are: Kaiming-uniform with
``a = sqrt(5)``, which is ``uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and
the bias uniform in the same interval.  The initial weights are drawn from
``minifb.backend.rng("cpu")`` (on the CPU, whatever device the model later
moves to), and :class:`Dropout`'s masks from the generator of its input's
device, ``minifb.backend.rng(device)``; ``mf.manual_seed(s)`` seeds both, so
it makes models reproducible.  Move a model to the GPU with
``model.to("cuda")``.

Layers take an activation as any callable (``mf.relu``, ``mf.tanh``,
``lambda x: ...``).  When it is ``None``, ``mf.relu``, ``mf.sigmoid`` or
``mf.tanh`` and the layer has a bias, the bias and the activation run as one
fused op (:func:`minifb.functional.bias_act`, a single kernel on the GPU).
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend, checks
from .. import functional as F
from ..tensor import Tensor
from .module import Buffer, Module, Parameter, describe, error_from

__all__ = [
    "Dense", "Conv", "ConvTranspose", "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool", "Flatten",
    "Dropout", "BatchNorm", "LRN", "Lambda",
]


# ---- initialisation ----------------------------------------------------------------
def uniform_parameter(shape, bound: float) -> Parameter:
    """A float32 parameter drawn from ``uniform(-bound, bound)`` with minifb's CPU generator."""
    values = backend.rng("cpu").uniform(-bound, bound, size=tuple(shape))
    return Parameter(values.astype(backend.DEFAULT_DTYPE))


def kaiming_uniform_bound(fan_in: int) -> float:
    """PyTorch's default bound ``gain * sqrt(3 / fan_in)`` with ``a = sqrt(5)``: ``1 / sqrt(fan_in)``."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def check_activation(layer: str, activation):
    """Return ``activation`` when it is ``None`` or callable, else raise a TypeError naming ``layer``.

    Every constructor taking an ``activation`` calls this, so that a mistake such as ``"relu"`` is reported
    when the layer is built, not as ``'str' object is not callable`` on its first call.
    """
    if activation is not None and not callable(activation):
        raise TypeError(f"{layer}: activation must be a callable such as mf.relu or None, got {activation!r}")
    return activation


def _show(value):
    """A kernel-size-like argument as printed: ``3`` for ``(3, 3)``."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return repr(value[0])
    return repr(value)


# ---- affine layers: weight, optional bias, activation ---------------------------------
class AffineLayer(Module):
    """Base class of Dense, Conv and ConvTranspose: ``activation(linear(x) + bias)``.

    Subclasses implement :meth:`pre_activation`, the linear part without the
    bias.  The split lets a :class:`~minifb.nn.Merger` fuse its feedback
    epilogue (``x + act(W s + b)``) into one op.

    Attributes:
        weight: Parameter.
        bias: Parameter of shape (out,), or ``None``.
        activation: a callable or ``None``.
    """

    activation = None
    bias = None

    def pre_activation(self, x: Tensor):  # pragma: no cover - interface
        """Return ``(y, axis)``: the linear part of the layer on ``x`` and the channel axis of ``y``."""
        raise NotImplementedError

    def finish(self, y: Tensor, axis: int) -> Tensor:
        """Add the bias along ``axis`` and apply the activation (fused where possible)."""
        if self.bias is not None:
            act = F.activation_name(self.activation)
            if act is not None:
                return F.bias_act(y, self.bias, act, axis)
            y = F.bias_act(y, self.bias, "identity", axis)
        return y if self.activation is None else self.activation(y)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``activation(linear(x) + bias)``; the shapes are the subclass's (see its Shapes)."""
        y, axis = self.pre_activation(x)
        return self.finish(y, axis)

    def _tail_args(self) -> list:
        out = []
        if self.activation is not None:
            out.append(describe(self.activation))
        return out


class Dense(AffineLayer):
    """A fully connected layer: ``y = activation(x @ weight.T + bias)``.

    Args:
        in_features: size of the last axis of the input.
        out_features: size of the last axis of the output.
        activation: a callable applied to the result, or ``None``.
        bias: whether to learn a bias.

    Shapes:
        input ``(..., in_features)`` (1-D or any leading batch axes),
        output ``(..., out_features)``; ``weight`` is (out, in), ``bias`` (out,).

    Example:
        >>> layer = nn.Dense(5, 10, mf.relu)
        >>> layer(mf.randn(5)).shape, layer(mf.randn(2, 3, 5)).shape
        ((10,), (2, 3, 10))
    """

    def __init__(self, in_features: int, out_features: int, activation=None, bias: bool = True):
        check_activation("Dense", activation)
        in_features = checks.integer("Dense", "in_features", in_features)
        out_features = checks.integer("Dense", "out_features", out_features)
        bias = checks.flag("Dense", "bias", bias)
        self.in_features, self.out_features = in_features, out_features
        bound = kaiming_uniform_bound(in_features)
        self.weight = uniform_parameter((out_features, in_features), bound)
        self.bias = uniform_parameter((out_features,), bound) if bias else None
        self.activation = activation

    def pre_activation(self, x):
        """Return ``(x @ weight.T, last axis)``: ``(..., in_features) -> (..., out_features)``, no bias."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r}: input must be a Tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{self!r}: expected input of shape (..., {self.in_features}), got {tuple(x.shape)}")
        y = F.linear(x, self.weight)
        return y, y.ndim - 1

    def _repr_args(self):
        args = [str(self.in_features), str(self.out_features)] + self._tail_args()
        if self.bias is None:
            args.append("bias=False")
        return args


class _ConvBase(AffineLayer):
    """Shared checks of Conv and ConvTranspose (NCHW input, or CHW without a batch axis)."""

    _defaults: dict = {}

    def _check_groups(self, name, in_channels, out_channels, groups):
        """``(in_channels, out_channels, groups)`` as ints, each a positive integer, ``groups`` dividing both."""
        in_channels = checks.integer(name, "in_channels", in_channels)
        out_channels = checks.integer(name, "out_channels", out_channels)
        groups = checks.integer(name, "groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        return in_channels, out_channels, groups

    def _check_geometry(self, name, stride, padding, dilation, output_padding=None):
        """Check stride, padding, dilation (and output_padding) at construction, naming the layer.

        Returns them as plain Python values (see :func:`minifb.checks.int_or_pair`; ``"same"`` and ``"valid"`` as they
        are): ``(stride, padding, dilation, output_padding)``, the last ``None`` when not given.
        """
        stride = checks.int_or_pair(name, "stride", stride)
        dilation = checks.int_or_pair(name, "dilation", dilation)
        if isinstance(padding, str) and output_padding is None:
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, a pair of ints, 'same' or 'valid', "
                                 f"got {padding!r}")
            if padding == "same" and checks.pair(name, "stride", stride) != (1, 1):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride={stride}")
        else:
            padding = checks.int_or_pair(name, "padding", padding, minimum=0)
        if output_padding is not None:
            output_padding = checks.int_or_pair(name, "output_padding", output_padding, minimum=0)
            for op, st, d in zip(checks.pair(name, "output_padding", output_padding, minimum=0),
                                 checks.pair(name, "stride", stride), checks.pair(name, "dilation", dilation)):
                if op >= max(st, d):
                    raise ValueError(f"{name}: output_padding={output_padding!r} must be smaller than "
                                     f"stride={stride} or dilation={dilation}")
        return stride, padding, dilation, output_padding

    def pre_activation(self, x):
        """Return ``(conv(x, weight), channel axis)``: ``([N,] C_in, H, W) -> ([N,] C_out, OH, OW)``, no bias."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r}: input must be a Tensor, got {type(x).__name__}")
        if x.ndim not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.in_channels}, H, W) "
                             f"or ({self.in_channels}, H, W), got {tuple(x.shape)}")
        batched = x.ndim == 4
        if not batched:  # one image: add a batch axis and take it away again
            x = F.reshape(x, (1,) + tuple(x.shape))
        try:
            y = self._convolve(x)
        except (ValueError, TypeError) as e:  # e.g. an input smaller than the kernel, or integer: say which layer
            raise error_from(repr(self), e) from e
        return (y, 1) if batched else (F.reshape(y, y.shape[1:]), 0)

    def _repr_args(self):
        args = [str(self.in_channels), str(self.out_channels), _show(self.kernel_size)] + self._tail_args()
        for key, default in self._defaults.items():
            value = getattr(self, key)
            if value != default:
                args.append(f"{key}={value!r}")
        if self.bias is None:
            args.append("bias=False")
        return args


class Conv(_ConvBase):
    """2-D convolution layer: ``y = activation(conv2d(x, weight) + bias)``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: int or ``(kh, kw)``.
        activation: a callable applied to the result, or ``None``.
        stride, padding, dilation, groups: as :func:`minifb.functional.conv2d`
            (``padding="same"`` keeps the size at stride 1).
        bias: whether to learn a bias.

    Shapes:
        input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output ``(N, C_out, OH, OW)``,
        or ``(C_out, OH, OW)`` for an unbatched input,
        with ``OH = floor((H + 2p - d(k - 1) - 1) / s) + 1``; ``weight`` is
        ``(C_out, C_in / groups, kh, kw)``, ``bias`` ``(C_out,)``.

    Example:
        >>> conv = nn.Conv(3, 8, 3, mf.relu, padding=1)
        >>> conv(mf.randn(2, 3, 16, 16)).shape
        (2, 8, 16, 16)
    """

    _defaults = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}

    def __init__(self, in_channels: int, out_channels: int, kernel_size, activation=None, *,
                 stride=1, padding=0, dilation=1, groups: int = 1, bias: bool = True):
        check_activation("Conv", activation)
        in_channels, out_channels, groups = self._check_groups("Conv", in_channels, out_channels, groups)
        bias = checks.flag("Conv", "bias", bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = checks.pair("Conv", "kernel_size", kernel_size)
        stride, padding, dilation, _ = self._check_geometry("Conv", stride, padding, dilation)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = kaiming_uniform_bound(fan_in)
        self.weight = uniform_parameter((out_channels, in_channels // groups) + self.kernel_size, bound)
        self.bias = uniform_parameter((out_channels,), bound) if bias else None
        self.activation = activation

    def _convolve(self, x):
        return F.conv2d(x, self.weight, None, stride=self.stride, padding=self.padding,
                        dilation=self.dilation, groups=self.groups)


class ConvTranspose(_ConvBase):
    """2-D transposed convolution layer (upsampling): ``y = activation(conv_transpose2d(x, weight) + bias)``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: int or ``(kh, kw)``.
        activation: a callable applied to the result, or ``None``.
        stride, padding, output_padding, dilation, groups: as
            :func:`minifb.functional.conv_transpose2d`.
        bias: whether to learn a bias.

    Shapes:
        input ``(N, C_in, H, W)`` or ``(C_in, H, W)``; output ``(N, C_out, OH, OW)``,
        or ``(C_out, OH, OW)`` for an unbatched input, with
        ``OH = (H - 1) s - 2p + d(k - 1) + output_padding + 1``; ``weight`` is
        ``(C_in, C_out / groups, kh, kw)`` (PyTorch's layout), ``bias`` ``(C_out,)``.

    Example:
        >>> up = nn.ConvTranspose(8, 3, 4, stride=2, padding=1)
        >>> up(mf.randn(2, 8, 7, 7)).shape
        (2, 3, 14, 14)
    """

    _defaults = {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1}

    def __init__(self, in_channels: int, out_channels: int, kernel_size, activation=None, *,
                 stride=1, padding=0, output_padding=0, dilation=1, groups: int = 1, bias: bool = True):
        check_activation("ConvTranspose", activation)
        in_channels, out_channels, groups = self._check_groups("ConvTranspose", in_channels, out_channels, groups)
        bias = checks.flag("ConvTranspose", "bias", bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = checks.pair("ConvTranspose", "kernel_size", kernel_size)
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose: padding must be an int or a pair of ints, got {padding!r}")
        stride, padding, dilation, output_padding = self._check_geometry("ConvTranspose", stride, padding,
                                                                         dilation, output_padding)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding
        self.dilation, self.groups = dilation, groups
        # PyTorch computes the fan-in of a transposed convolution from weight.shape[1]
        fan_in = out_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = kaiming_uniform_bound(fan_in)
        self.weight = uniform_parameter((in_channels, out_channels // groups) + self.kernel_size, bound)
        self.bias = uniform_parameter((out_channels,), bound) if bias else None
        self.activation = activation

    def _convolve(self, x):
        return F.conv_transpose2d(x, self.weight, None, stride=self.stride, padding=self.padding,
                                  output_padding=self.output_padding, dilation=self.dilation,
                                  groups=self.groups)


# ---- pooling and reshaping ------------------------------------------------------------
class _Pool(Module):
    """Shared code of MaxPool and MeanPool: the geometry is checked at construction, with the rules of
    :func:`minifb.functional.max_pool2d` (a kernel and stride of positive ints, a padding of ints >= 0 and
    at most half the kernel), and kept as plain Python values."""

    _fn = None

    def __init__(self, kernel_size, stride=None, padding=0):
        layer = type(self).__name__
        self.kernel_size = checks.int_or_pair(layer, "kernel_size", kernel_size)
        self.stride = None if stride is None else checks.int_or_pair(layer, "stride", stride)
        self.padding = checks.int_or_pair(layer, "padding", padding, minimum=0)
        kernel = checks.pair(layer, "kernel_size", self.kernel_size)
        ph, pw = checks.pair(layer, "padding", self.padding, minimum=0)
        if ph > kernel[0] // 2 or pw > kernel[1] // 2:
            raise ValueError(f"{layer}: padding={self.padding!r} must be at most half the kernel size {kernel}")

    def forward(self, x):
        """Pool each channel: ``(N, C, H, W) -> (N, C, OH, OW)``."""
        _check_images(self, x)
        try:
            return type(self)._fn(x, self.kernel_size, stride=self.stride, padding=self.padding)
        except (ValueError, TypeError) as e:  # e.g. a window larger than the input, or integer: say which layer
            raise error_from(repr(self), e) from e

    def _repr_args(self):
        args = [repr(self.kernel_size)]
        if self.stride is not None:
            args.append(f"stride={self.stride!r}")
        if self.padding != 0:
            args.append(f"padding={self.padding!r}")
        return args


def _check_images(layer, x):
    """Refuse, naming ``layer``, an ``x`` that is not a Tensor (TypeError, as Conv and Dense) or not 4-D."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer!r}: input must be a Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{layer!r}: expected an image batch of shape (N, C, H, W), got {tuple(x.shape)}")


class MaxPool(_Pool):
    """2-D max pooling (:func:`minifb.functional.max_pool2d`; stride defaults to the kernel size).

    ``y[n, c, i, j] = max_{a < kh, b < kw} x_pad[n, c, i*sh + a, j*sw + b]``,
    with ``-inf`` padding (PyTorch's ``MaxPool2d``, floor mode); the gradient
    goes to the first maximum of each window.  No parameters.  The arguments
    are checked at construction, with the rules of
    :func:`~minifb.functional.max_pool2d`, and kept as ints or pairs of ints.

    Args:
        kernel_size: int or ``(kh, kw)``, each >= 1.
        stride: int or ``(sh, sw)``; ``None`` (default) means ``kernel_size``.
        padding: int or ``(ph, pw)`` of implicit ``-inf`` padding, at most half
            the kernel (default 0).

    Shapes:
        input ``(N, C, H, W)`` (a batch: a single ``(C, H, W)`` image is
        refused), output ``(N, C, OH, OW)`` with
        ``OH = floor((H + 2 ph - kh) / sh) + 1`` (``OW`` likewise).

    Raises:
        ValueError: (at construction) ``kernel_size`` or ``stride`` is not a
            positive int or a pair of them, or ``padding`` is not an int >= 0
            or a pair of them, or is more than half the kernel.
        TypeError: (on a call) the input is not a floating-point Tensor.
        ValueError: (on a call) the input is not 4-D, or the kernel is larger
            than the padded input.

    Example:
        >>> nn.MaxPool(2)(mf.randn(1, 3, 8, 8)).shape
        (1, 3, 4, 4)
        >>> nn.MaxPool(2)(mf.tensor([[[[1.0, 2.0], [4.0, 3.0]]]])).tolist()
        [[[[4.0]]]]
    """

    _fn = staticmethod(F.max_pool2d)


class MeanPool(_Pool):
    """2-D average pooling (:func:`minifb.functional.avg_pool2d`; zero padding counts).

    ``y[n, c, i, j] = (1 / (kh kw)) sum_{a < kh, b < kw} x_pad[n, c, i*sh + a, j*sw + b]``
    with zero padding that counts in the average (PyTorch's ``AvgPool2d``
    with ``count_include_pad=True``, floor mode).  No parameters.  The
    arguments are checked at construction, with the rules of
    :func:`~minifb.functional.avg_pool2d`, and kept as ints or pairs of ints.

    Args:
        kernel_size: int or ``(kh, kw)``, each >= 1.
        stride: int or ``(sh, sw)``; ``None`` (default) means ``kernel_size``.
        padding: int or ``(ph, pw)`` of zero padding, at most half the kernel
            (default 0).

    Shapes:
        input ``(N, C, H, W)`` (a batch: a single ``(C, H, W)`` image is
        refused), output ``(N, C, OH, OW)`` with
        ``OH = floor((H + 2 ph - kh) / sh) + 1`` (``OW`` likewise).

    Raises:
        ValueError: (at construction) ``kernel_size`` or ``stride`` is not a
            positive int or a pair of them, or ``padding`` is not an int >= 0
            or a pair of them, or is more than half the kernel.
        TypeError: (on a call) the input is not a floating-point Tensor.
        ValueError: (on a call) the input is not 4-D, or the kernel is larger
            than the padded input.

    Example:
        >>> nn.MeanPool(2)(mf.randn(1, 3, 8, 8)).shape
        (1, 3, 4, 4)
        >>> nn.MeanPool(2)(mf.tensor([[[[1.0, 2.0], [4.0, 3.0]]]])).tolist()
        [[[[2.5]]]]
    """

    _fn = staticmethod(F.avg_pool2d)


class GlobalMaxPool(Module):
    """Maximum over all pixels of each channel: ``(N, C, H, W) -> (N, C, 1, 1)``.

    The values are those of Flux's ``GlobalMaxPool`` and PyTorch's
    ``AdaptiveMaxPool2d(1)``.  The gradient is :func:`minifb.functional.max`'s:
    where several pixels of a channel tie for the maximum it is split evenly
    among them (as ``torch.amax``), whereas ``AdaptiveMaxPool2d(1)`` and
    ``nn.MaxPool((H, W))`` give it all to the first maximum.

    Follow it with :class:`Flatten` to get ``(N, C)``.

    Raises:
        TypeError: (on a call) the input is not a Tensor.
        ValueError: (on a call) it is not 4-D, or has no pixels (``H`` or ``W`` is 0).

    Example:
        >>> nn.GlobalMaxPool()(mf.randn(2, 3, 5, 5)).shape
        (2, 3, 1, 1)
    """

    def forward(self, x):
        """Return the maximum of each channel: ``(N, C, H, W) -> (N, C, 1, 1)``."""
        _check_images(self, x)
        try:
            return F.max(x, axis=(2, 3), keepdims=True)
        except ValueError as e:  # an empty image: say which layer
            raise error_from(repr(self), e) from e

    def _repr_args(self):
        return []


class GlobalMeanPool(Module):
    """Mean over all pixels of each channel: ``(N, C, H, W) -> (N, C, 1, 1)``.

    Raises:
        TypeError: (on a call) the input is not a Tensor.
        ValueError: (on a call) it is not 4-D.

    Example:
        >>> nn.GlobalMeanPool()(mf.randn(2, 3, 5, 5)).shape
        (2, 3, 1, 1)
    """

    def forward(self, x):
        """Return the mean of each channel: ``(N, C, H, W) -> (N, C, 1, 1)``."""
        _check_images(self, x)
        return F.mean(x, axis=(2, 3), keepdims=True)

    def _repr_args(self):
        return []


class Flatten(Module):
    """Merge all axes after the first: ``(N, d1, d2, ...) -> (N, d1·d2·...)``.

    ``y[n] = x[n].reshape(-1)`` (:func:`minifb.functional.flatten` with
    ``start_axis=1``), in C order; no parameters.

    Args:
        none: ``Flatten()`` takes no arguments.

    Shapes:
        input ``(N, d1, d2, ...)`` with at least 2 axes; output ``(N, d1·d2·...)``
        (a 2-D input is returned with its shape unchanged).

    Raises:
        TypeError: (on a call) the input is not a Tensor.
        ValueError: (on a call) the input has fewer than 2 axes.

    Example:
        >>> nn.Flatten()(mf.randn(2, 3, 4, 4)).shape
        (2, 48)
        >>> nn.Flatten()(mf.arange(8.0).reshape(2, 2, 2)).tolist()
        [[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]
    """

    def forward(self, x):
        """Flatten all axes after the first: ``(N, d1, d2, ...) -> (N, d1·d2·...)``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"{self!r}: input must be a Tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(f"Flatten: expected a batch of at least 2 dimensions, got shape {tuple(x.shape)}")
        return F.flatten(x, 1)

    def _repr_args(self):
        return []


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode (scaling the rest by ``1/(1-p)``).

    In evaluation mode (``model.eval()``) it is the identity.

    Args:
        p: drop probability in ``[0, 1]``; with ``p = 1`` training mode gives
            all zeros (as PyTorch: ``x * 0``).

    Example:
        >>> drop = nn.Dropout(0.5)
        >>> drop.eval()(mf.ones(4)).tolist()
        [1.0, 1.0, 1.0, 1.0]
        >>> nn.Dropout(1.0)(mf.ones(3)).tolist()
        [0.0, 0.0, 0.0]
    """

    def __init__(self, p: float = 0.5):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be a number in [0, 1], got {p!r}")
        self.p = float(p)

    def forward(self, x):
        """Drop elements in training mode (identity in evaluation mode); the shape is unchanged."""
        if not self.training:
            return x
        return F.dropout(x, self.p)

    def _repr_args(self):
        return [repr(self.p)]


# ---- normalisation -------------------------------------------------------------------
class BatchNorm(Module):
    """Batch normalisation over the channel axis 1, with running statistics (as PyTorch's BatchNorm).

    Training mode: ``y = activation(gamma * (x - mean) / sqrt(var + eps) + beta)``
    with the batch's mean and (biased) variance over every axis but 1, and
    ``running = (1 - momentum) * running + momentum * batch_stat`` (the running
    variance uses the unbiased batch variance).  With ``momentum=None`` the
    running statistics are the plain average over all batches seen (PyTorch's
    cumulative moving average): ``momentum = 1 / num_batches_tracked``.
    Evaluation mode uses the running statistics.  An integer or boolean
    input is normalised as float32 in both modes (PyTorch refuses it); a
    complex one is refused.

    Args:
        num_features: the number of channels C.
        activation: a callable applied to the result, or ``None`` (Flux's argument).
        eps: added to the variance, a finite number >= 0.
        momentum: weight of the new batch in the running statistics, in
            ``[0, 1]``, or ``None`` for the cumulative average. It may be changed
            between steps, to or from ``None``: the buffer ``num_batches_tracked``
            (a 0-d int64 count of the training batches seen) is always kept, as in PyTorch.
        affine: learn ``weight`` (gamma, ones) and ``bias`` (beta, zeros).

    Shapes:
        ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, unchanged.  Buffers
        ``running_mean`` and ``running_var`` (C,), updated in place, and
        ``num_batches_tracked`` () are in ``state_dict()``.

    Raises:
        ValueError: (at construction) ``num_features`` is not a positive int,
            ``eps`` not finite and >= 0, ``momentum`` not in ``[0, 1]``;
            (on a call) the input is not of shape ``(N, C, ...)`` with 2 to
            4 axes, or in training mode has one value per channel.
        TypeError: (at construction) ``activation`` is not callable, ``eps``
            or ``momentum`` not a number, ``affine`` not a bool; (on a call)
            the input is not a Tensor, or is complex.

    Example:
        >>> bn = nn.BatchNorm(3)
        >>> bn(mf.randn(8, 3, 4, 4)).shape
        (8, 3, 4, 4)
    """

    def __init__(self, num_features: int, activation=None, *, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True):
        check_activation("BatchNorm", activation)
        num_features = checks.integer("BatchNorm", "num_features", num_features)
        eps = checks.number("BatchNorm", "eps", eps, at_least=0, finite=True)   # 0 allowed, as in PyTorch
        if momentum is not None:
            momentum = checks.number("BatchNorm", "momentum", momentum, at_least=0, at_most=1)
        affine = checks.flag("BatchNorm", "affine", affine)
        self.num_features = num_features
        self.activation = activation
        self.eps, self.momentum = eps, momentum
        dtype = backend.DEFAULT_DTYPE
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        self.running_mean = Buffer(np.zeros(num_features, dtype))
        self.running_var = Buffer(np.ones(num_features, dtype))
        self.num_batches_tracked = Buffer(np.zeros((), np.int64))

    def forward(self, x):
        """Normalise each channel: ``(N, C)``, ``(N, C, L)`` or ``(N, C, H, W)``, shape unchanged."""
        if not isinstance(x, Tensor):   # a TypeError, as every layer gives for a non-Tensor
            raise TypeError(f"{self!r}: input must be a Tensor, got {type(x).__name__}")
        if x.ndim not in (2, 3, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.num_features}, ...) with 2 to 4 "
                             f"dimensions, got {tuple(x.shape)}")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{self!r}: input must be real (floating point, integer or boolean), "
                            f"got dtype {x.dtype}")
        if x.dtype.kind != "f":   # integers and bools are normalised as float32, in both modes
            x = Tensor(x.data.astype(backend.result_type(x, floating=True)))
        axes = (0,) + tuple(range(2, x.ndim))
        stat_shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if self.training:
            count = x.size // self.num_features
            if count < 2:
                raise ValueError(f"{self!r}: training needs more than one value per channel, "
                                 f"got input of shape {tuple(x.shape)}")
            mean = F.mean(x, axis=axes, keepdims=True)
            centred = x - mean
            var = F.mean(centred * centred, axis=axes, keepdims=True)
            self._update_running(mean, var, count)
        else:
            mean = F.reshape(Tensor(self.running_mean.data.astype(x.dtype, copy=False)), stat_shape)
            var = F.reshape(Tensor(self.running_var.data.astype(x.dtype, copy=False)), stat_shape)
            centred = x - mean
        y = centred / F.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * F.reshape(self.weight, stat_shape)
        act = F.activation_name(self.activation)
        if self.bias is not None and act is not None:
            return F.bias_act(y, self.bias, act, 1)
        if self.bias is not None:
            y = F.bias_act(y, self.bias, "identity", 1)
        return y if self.activation is None else self.activation(y)

    def _update_running(self, mean, var, count):
        self.num_batches_tracked.data += 1  # in place: a 0-d array stays an array
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked.data)
        batch_mean = mean.data.reshape(-1)   # raw arrays: nothing here is recorded
        batch_var = var.data.reshape(-1) * (count / (count - 1))
        # in place, as Buffer promises: an array taken from ``running_mean.data`` follows the updates
        for running, batch in ((self.running_mean, batch_mean), (self.running_var, batch_var)):
            running.data[...] = (1 - m) * running.data + m * batch

    def _repr_args(self):
        args = [str(self.num_features)]
        if self.activation is not None:
            args.append(describe(self.activation))
        if self.eps != 1e-5:
            args.append(f"eps={self.eps!r}")
        if self.momentum != 0.1:
            args.append(f"momentum={self.momentum!r}")
        if self.weight is None:
            args.append("affine=False")
        return args


class LRN(Module):
    """Local response normalisation across channels (as PyTorch's ``LocalResponseNorm``).

    ``y[c] = x[c] / (k + alpha / size * sum_{c' in window(c)} x[c']^2) ** beta``,
    where the window covers channels ``c - size//2 .. c + (size-1)//2``
    (missing channels count as zero, so a window wider than the input is
    allowed).  Used by the Spoerer et al. models.

    Args:
        size: number of neighbouring channels in the window, a positive int
            (PyTorch's rule; at most float's range, as ``alpha / size`` is a float).
        alpha: finite, >= 0 (default ``1e-4``).
        beta: finite, >= 0 (default ``0.75``).
        k: finite, > 0 (default ``1``), so that the base ``k + ...`` is
            positive and the output finite for every ``beta``.

    Raises:
        ValueError: (at construction) an argument outside those bounds;
            (on a call) the input is not a Tensor with at least 2 axes.
        TypeError: (at construction) ``alpha``, ``beta`` or ``k`` is not a number.

    Shapes:
        ``(N, C, ...)``, unchanged.

    Example:
        >>> nn.LRN(5)(mf.randn(2, 8, 4, 4)).shape
        (2, 8, 4, 4)
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        self.size = checks.integer("LRN", "size", size)
        checks.number("LRN", "size", self.size, finite=True)   # alpha / size must be a float
        self.alpha = checks.number("LRN", "alpha", alpha, at_least=0, finite=True)
        self.beta = checks.number("LRN", "beta", beta, at_least=0, finite=True)
        self.k = checks.number("LRN", "k", k, above=0, finite=True)

    def forward(self, x):
        """Normalise across neighbouring channels: ``(N, C, ...)``, shape unchanged."""
        if not isinstance(x, Tensor) or x.ndim < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{self!r}: expected input of shape (N, C, ...), got {shape}")
        channels = x.shape[1]
        # padding past channels - 1 on a side only adds zeros to every window: a window wider than the
        # input (any size, 10**30 included) sums the same over at most 2 * channels - 1 slices
        edge = max(channels - 1, 0)
        before, after = min(self.size // 2, edge), min((self.size - 1) // 2, edge)
        squares = F.pad(x * x, ((0, 0), (before, after)) + ((0, 0),) * (x.ndim - 2))
        # the window sum as shifted slices along the channel axis
        total = squares[:, 0:channels]
        for j in range(1, before + after + 1):
            total = total + squares[:, j:j + channels]
        denominator = (total * (self.alpha / self.size) + self.k) ** self.beta
        return x / denominator

    def _repr_args(self):
        return [str(self.size), f"alpha={self.alpha!r}", f"beta={self.beta!r}", f"k={self.k!r}"]


class Lambda(Module):
    """Wrap a function of one tensor as a layer (no parameters).

    Args:
        fn: any callable, e.g. ``lambda x: x * 2`` or ``mf.relu``.

    Example:
        >>> nn.Lambda(mf.relu)(mf.tensor([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"Lambda: fn must be callable, got {fn!r}")
        self.fn = fn

    def forward(self, x):
        """Return ``fn(x)``; the shapes are ``fn``'s."""
        return self.fn(x)

    def _repr_args(self):
        return [describe(self.fn)]
