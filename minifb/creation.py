"""Creating tensors: from data, filled with constants, or random."""

from __future__ import annotations

import numpy as np

from . import backend
from .tensor import Tensor


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape):
        raise ValueError(f"shape must be non-negative integers, got {shape}")
    return tuple(int(n) for n in shape)


def _dtype(dtype):
    return np.dtype(backend.DEFAULT_DTYPE if dtype is None else dtype)


def _first_leaf(data):
    while isinstance(data, (list, tuple)) and data:
        data = data[0]
    return data


def _to_host(data):
    """``data`` with every Tensor in a (nested) list replaced by a NumPy array of its values."""
    if isinstance(data, Tensor):
        return backend.to_numpy(data.data)
    if isinstance(data, (list, tuple)):
        return [_to_host(d) for d in data]
    return data


def tensor(data, requires_grad: bool = False, device: str | None = None, dtype=None) -> Tensor:
    """Make a tensor from array-like data (lists, NumPy/CuPy arrays, numbers, Tensors, lists of Tensors).

    Floating-point data becomes float32 unless ``dtype`` says otherwise;
    integer and boolean data keep their kind (for labels and masks).  A
    (nested) list of Tensors is stacked into one new tensor, on the CPU unless
    ``device`` says otherwise.

    Example:
        >>> mf.tensor([[1, 2], [3, 4]], dtype="float32", requires_grad=True)
        tensor([[1., 2.],
                [3., 4.]], requires_grad=True)
        >>> mf.tensor([mf.tensor(1.0), mf.tensor(2.0)]).shape
        (2,)
    """
    if isinstance(data, Tensor):
        data = data.data
    elif isinstance(data, (list, tuple)) and isinstance(_first_leaf(data), Tensor):
        data = _to_host(data)  # also for CUDA tensors, which refuse NumPy's implicit conversion
    if device is None:
        device = backend.device_of(data) if hasattr(data, "shape") else "cpu"
    device = backend.check_device(device)
    if device == "cpu":
        array = np.array(backend.to_numpy(data) if hasattr(data, "shape") else data)
    else:
        array = backend.to_device(np.asarray(data) if not hasattr(data, "shape") else data, "cuda").copy()
    if dtype is not None:
        array = array.astype(np.dtype(dtype), copy=False)
    elif array.dtype.kind == "f" and array.dtype != backend.DEFAULT_DTYPE:
        array = array.astype(backend.DEFAULT_DTYPE)
    return Tensor(array, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of zeros, e.g. ``mf.zeros(2, 3)`` or ``mf.zeros((2, 3))``."""
    xp = backend.xp_for(device or "cpu")
    return Tensor(xp.zeros(_shape(shape), dtype=_dtype(dtype)), requires_grad=requires_grad)


def ones(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of ones."""
    xp = backend.xp_for(device or "cpu")
    return Tensor(xp.ones(_shape(shape), dtype=_dtype(dtype)), requires_grad=requires_grad)


def full(shape, value, device=None, dtype=None, requires_grad=False) -> Tensor:
    """A tensor filled with ``value``."""
    xp = backend.xp_for(device or "cpu")
    return Tensor(xp.full(_shape((shape,)), value, dtype=_dtype(dtype)), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None) -> Tensor:
    """Zeros with the shape, device and (by default) dtype of ``t``."""
    xp = backend.array_module(t.data)
    return Tensor(xp.zeros(t.shape, dtype=dtype or t.dtype))


def ones_like(t: Tensor, dtype=None) -> Tensor:
    """Ones with the shape, device and (by default) dtype of ``t``."""
    xp = backend.array_module(t.data)
    return Tensor(xp.ones(t.shape, dtype=dtype or t.dtype))


def arange(start, stop=None, step=1, device=None, dtype=None) -> Tensor:
    """Evenly spaced values as ``numpy.arange``: int64 for integer arguments, else float32.

    Example:
        >>> mf.arange(0.0, 1.0, 0.25)
        tensor([0.  , 0.25, 0.5 , 0.75])
    """
    xp = backend.xp_for(device or "cpu")
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = backend.result_type(start, stop, step)
    return Tensor(xp.arange(start, stop, step, dtype=np.dtype(dtype)))


def _random_dtypes(fn, dtype):
    """``(dtype, draw_dtype)`` for a random creation function: the requested floating dtype, and the
    one to draw in, since NumPy's and CuPy's generators draw only float32 and float64."""
    dtype = _dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{fn}: dtype must be a floating-point dtype (float16, float32 or float64), got {dtype}")
    if dtype in (np.float32, np.float64):
        return dtype, dtype
    return dtype, np.dtype(np.float32 if dtype.itemsize < 4 else np.float64)


def randn(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """Standard normal samples from minifb's seeded generator (see :func:`manual_seed`).

    Args:
        *shape: the shape, as separate ints or one tuple.
        device: ``"cpu"`` (default) or ``"cuda"``.
        dtype: a floating-point dtype (float32 by default); float16 is drawn
            in float32 and rounded.
        requires_grad: whether the tensor records gradients.

    Raises:
        TypeError: ``dtype`` is not a floating-point dtype.

    Example:
        >>> mf.randn(2, 3, dtype="float16").dtype
        dtype('float16')
    """
    device = backend.check_device(device)
    dtype, draw = _random_dtypes("randn", dtype)
    data = backend.rng(device).standard_normal(_shape(shape), dtype=draw).astype(dtype, copy=False)
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) from minifb's seeded generator (see :func:`manual_seed`).

    Args:
        *shape: the shape, as separate ints or one tuple.
        device: ``"cpu"`` (default) or ``"cuda"``.
        dtype: a floating-point dtype (float32 by default); float16 is drawn
            in float32 and rounded, a draw that rounds up to 1 becoming the
            largest value below 1.
        requires_grad: whether the tensor records gradients.

    Raises:
        TypeError: ``dtype`` is not a floating-point dtype.

    Example:
        >>> float(mf.rand(1000, dtype="float16").max()) < 1
        True
    """
    device = backend.check_device(device)
    dtype, draw = _random_dtypes("rand", dtype)
    data = backend.rng(device).random(_shape(shape), dtype=draw)
    if draw != dtype:
        below_one = np.nextafter(dtype.type(1), dtype.type(0))
        data = backend.array_module(data).minimum(data.astype(dtype), below_one)
    return Tensor(data, requires_grad=requires_grad)
