"""Ops that move values around without arithmetic: reshape, transpose,
indexing, concatenation, stacking, padding, changing the dtype and moving between devices.

Each backward is the inverse movement of the gradient.
"""

import copy

import numpy as np

from .. import backend
from ..backend import array_module
from ..tensor import Function, SliceSum


class Reshape(Function):
    """View the values with a new shape; backward reshapes back."""

    def forward(self, x, *, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return (grad.reshape(self.shape),)


class Transpose(Function):
    """Permute the axes (``axes`` a full permutation); backward applies the inverse permutation."""

    def forward(self, x, *, axes):
        self.inverse = tuple(sorted(range(len(axes)), key=lambda i: axes[i]))
        return x.transpose(axes)

    def backward(self, grad):
        return (grad.transpose(self.inverse),)


def _is_basic_index(index) -> bool:
    """True for indices made only of integers (Python, NumPy, or 0-d integer arrays), slices, ``None`` and
    ``...``: NumPy's "basic" indexing, which picks each element at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice, np.integer))
               or (getattr(p, "ndim", None) == 0 and p.dtype.kind in "iu") for p in parts)


def _own_copy(index):
    """``index`` with its lists and arrays copied (ints, slices, None and ``...`` are immutable)."""
    if isinstance(index, tuple):
        return tuple(_own_copy(part) for part in index)
    if isinstance(index, list):
        return copy.deepcopy(index)
    return index.copy() if hasattr(index, "copy") and hasattr(index, "shape") else index


class GetItem(Function):
    """``x[index]`` with basic or integer/boolean-array indices.

    Basic indexing selects each element at most once, so backward returns the
    gradient as a :class:`~minifb.tensor.SliceSum`, written into a zero array
    of the input's shape only when the whole gradient is needed.  Integer-array indexing may select an element
    several times; backward then sums with ``bincount`` over flat positions
    (one vectorised pass; no ``add.at``).
    """

    def forward(self, x, *, index):
        if self.needs[0]:
            index = _own_copy(index)   # backward reads the index again: a list or array changed since must not count
        self.shape, self.index = x.shape, index
        try:
            return x[index]
        except IndexError as e:  # NumPy's message, with the shape it was about
            raise IndexError(f"getitem: indexing a tensor of shape {tuple(x.shape)}: {e}") from None

    def backward(self, grad):
        xp = array_module(grad)
        if _is_basic_index(self.index):   # zero outside the slice: written when the whole gradient is needed
            return (SliceSum(self.shape, self.index, grad),)
        size = 1
        for n in self.shape:
            size *= n
        if grad.size == 0:  # nothing was picked (CuPy's bincount cannot take an empty input)
            return (xp.zeros(self.shape, dtype=grad.dtype),)
        positions = xp.arange(size).reshape(self.shape)[self.index]
        summed = xp.bincount(positions.ravel(), weights=grad.ravel(), minlength=size)
        return (summed.astype(grad.dtype).reshape(self.shape),)


class Concat(Function):
    """Join arrays along an existing axis; backward splits the gradient at the same places."""

    def forward(self, *xs, axis):
        xp = array_module(*xs)
        self.axis = axis
        self.sizes = [x.shape[axis] for x in xs]
        return xp.concatenate(xs, axis=axis)

    def backward(self, grad):
        grads, start = [], 0
        index = [slice(None)] * grad.ndim
        for n, need in zip(self.sizes, self.needs):
            index[self.axis] = slice(start, start + n)
            grads.append(grad[tuple(index)] if need else None)
            start += n
        return tuple(grads)


class Stack(Function):
    """Join equal-shaped arrays along a new axis; backward takes the slices back out."""

    def forward(self, *xs, axis):
        self.axis = axis
        return array_module(*xs).stack(xs, axis=axis)

    def backward(self, grad):
        # views, not xp.take: take copies a non-contiguous gradient (a broadcast one, from .sum()) whole
        # for every slice, T^2 work for T stacked tensors
        before = (slice(None),) * (self.axis % grad.ndim)
        return tuple(grad[before + (i,)] if need else None for i, need in enumerate(self.needs))


class Pad(Function):
    """Constant padding (``pad_width`` as in ``numpy.pad``); backward crops the gradient."""

    def forward(self, x, *, pad_width, value):
        self.crop = tuple(slice(before, before + n) for (before, _), n in zip(pad_width, x.shape))
        return array_module(x).pad(x, pad_width, mode="constant", constant_values=value)

    def backward(self, grad):
        return (grad[self.crop],)


class BroadcastTo(Function):
    """Broadcast to a larger shape; the gradient is summed back by ``unbroadcast`` in ``Tensor.backward``."""

    def forward(self, x, *, shape):
        return array_module(x).broadcast_to(x, shape)

    def backward(self, grad):
        return (grad,)


class ToDevice(Function):
    """Copy to another device; the gradient is copied back."""

    def forward(self, x, *, device):
        self.source = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, grad):
        return (backend.to_device(grad, self.source),)


class Cast(Function):
    """Convert to another dtype (type promotion); the gradient is converted back by ``Tensor.backward``."""

    def forward(self, x, *, dtype):
        return x.astype(dtype)

    def backward(self, grad):
        return (grad,)


def cast(x, dtype):
    """``x`` converted to ``dtype`` (differentiably), or ``x`` itself when it already has it."""
    return x if x.dtype == dtype else Cast.apply(x, dtype=dtype)
