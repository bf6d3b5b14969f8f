"""Creating tensors: from data, filled with constants, or random."""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from . import backend, checks
from .tensor import Tensor, check_tensor

_NUMERIC_KINDS = "biufc"  # bool, integer, unsigned, floating, complex: what a tensor may hold


def _shape(fn, shape):
    """``shape`` (separate sizes or one tuple/list) as a tuple of ints; a bool or a float is no size."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(backend.is_int(n) and n >= 0 for n in shape):
        raise ValueError(f"{fn}: shape must be non-negative integers, got {shape}")
    return tuple(int(n) for n in shape)


def _dtype(fn, dtype):
    """``dtype`` as a NumPy dtype (float32 for None), refusing names NumPy does not know and non-numeric
    dtypes (object, strings)."""
    if dtype is None:
        return np.dtype(backend.DEFAULT_DTYPE)
    out = None
    if isinstance(dtype, (str, np.dtype, type)):   # not a value: np.dtype(np.int64(3)) would take its dtype
        try:
            out = np.dtype(dtype)
        except TypeError:
            pass
    if out is None or out.kind not in _NUMERIC_KINDS:
        raise TypeError(f"{fn}: dtype must be a numeric NumPy dtype (e.g. 'float32', 'int64', 'bool'), "
                        f"got {dtype!r}")
    return out


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


def _leaves(data):
    """The non-list leaves of a nested list, in order (only on the error path: it walks everything)."""
    if isinstance(data, (list, tuple)):
        for d in data:
            yield from _leaves(d)
    else:
        yield data


def _ragged(data) -> str | None:
    """Where a nested list is ragged (the first depth whose rows differ in length, and those lengths), or None."""
    level, depth = [data], 0
    while level:
        lengths = [len(x) if isinstance(x, (list, tuple)) or getattr(x, "ndim", 0) else None for x in level]
        if len(set(lengths)) > 1:
            shown = ", ".join("a number" if n is None else str(n) for n in lengths[:8])
            return f"at depth {depth} the lengths are [{shown}{', ...' if len(lengths) > 8 else ''}]"
        if lengths[0] is None:
            break
        level, depth = [y for x in level for y in x], depth + 1
    return None


def _from_python(data):
    """Python data (numbers, nested lists) as a new NumPy array, refusing ragged lists with a clear error."""
    try:
        with warnings.catch_warnings():  # NumPy < 1.24 makes an object array of a ragged list, with a warning
            warnings.simplefilter("ignore", getattr(np, "exceptions", np).VisibleDeprecationWarning)
            array = np.array(data)
    except ValueError as err:
        if "inhomogeneous" not in str(err) and "sequence" not in str(err):
            raise
        array = None
    if array is None or (array.dtype == object and isinstance(data, (list, tuple))):
        where = _ragged(data)
        if where is not None or array is None:
            raise ValueError(f"tensor: the nested list is ragged (its rows differ in length): "
                             f"{where or 'the rows differ in length'}") from None
    return array


def _check_numeric(original, array):
    """Refuse data that is not numbers or booleans (None, strings, dicts, object arrays), or integers past 64 bits."""
    if array.dtype.kind in _NUMERIC_KINDS:
        return
    big = next((v for v in _leaves(original) if isinstance(v, numbers.Integral) and not -(1 << 63) <= v < (1 << 64)),
               None) if not hasattr(original, "shape") else None
    if big is not None:   # NumPy makes an object array of it
        raise OverflowError(f"tensor: the integer {int(big)} does not fit in int64 (nor uint64); write it as "
                            f"a float for a floating-point tensor")
    if hasattr(original, "shape"):
        got = f"an array of dtype {array.dtype}"
    elif isinstance(original, (list, tuple)):
        odd = next((v for v in _leaves(original) if not isinstance(v, (numbers.Number, np.generic))), None)
        got = f"{type(original).__name__} of {type(odd).__name__} (NumPy dtype {array.dtype})"
    else:
        got = type(original).__name__
    raise TypeError(f"tensor: cannot make a tensor from {got}: the data must be numbers or booleans "
                    f"(a number, a nested list or an array of them)")


def tensor(data, requires_grad: bool = False, device: str | None = None, dtype=None) -> Tensor:
    """Make a tensor from array-like data (lists, NumPy/CuPy arrays, numbers, Tensors, lists of Tensors).

    Floating-point data becomes float32 unless ``dtype`` says otherwise;
    integer and boolean data keep their kind (for labels and masks).  A
    (nested) list of Tensors is stacked into one new tensor, on the CPU unless
    ``device`` says otherwise.  The values are always copied: the new tensor
    shares no memory with ``data`` and is a leaf, cut from any graph ``data``
    belongs to.

    Args:
        data: a number, a (nested) list or tuple of numbers or of Tensors, a
            NumPy/CuPy array or a Tensor, of any shape ``S``.
        requires_grad: whether gradients flow into the new tensor (a bool,
            default ``False``; floating dtypes only).
        device: ``"cpu"`` or ``"cuda"``; ``None`` (default) keeps an array's or
            a Tensor's device and puts Python data on the CPU.
        dtype: a numeric NumPy dtype or its name (``"float32"``, ``"int64"``,
            ``"bool"``); ``None`` (default) infers it as described above.

    Returns:
        A new Tensor of shape ``S`` on ``device``: float32 for floating-point
        data, int64 for Python ints, bool for booleans, the array's own dtype
        for integer arrays; ``dtype`` when given.

    Raises:
        TypeError: ``data`` is not numbers or booleans (None, a string, a dict, an object array);
            ``dtype`` is not a numeric NumPy dtype; ``requires_grad`` is not a bool, or is ``True``
            for non-floating data.
        ValueError: ``data`` is a ragged nested list (its rows differ in length), or ``device`` is
            neither ``"cpu"`` nor ``"cuda"``.
        OverflowError: ``data`` holds a Python int past 64 bits (``2 ** 70``), which NumPy keeps only
            as an object.
        RuntimeError: ``device="cuda"`` without CuPy and a GPU.

    Example:
        >>> mf.tensor([[1, 2], [3, 4]], dtype="float32", requires_grad=True)
        tensor([[1., 2.],
                [3., 4.]], requires_grad=True)
        >>> mf.tensor([1, 2]).dtype, mf.tensor([0.5]).dtype
        (dtype('int64'), dtype('float32'))
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
    if dtype is not None:
        dtype = _dtype("tensor", dtype)
    if not hasattr(data, "shape"):
        array = _from_python(data)  # a new array: no copy needed on the CPU
        _check_numeric(data, array)
        if device != "cpu":
            array = backend.to_device(array, "cuda")
    else:
        _check_numeric(data, data)  # before any copy: CuPy would refuse an object array with a ValueError
        array = np.array(backend.to_numpy(data)) if device == "cpu" else backend.to_device(data, "cuda").copy()
    if dtype is not None:
        array = array.astype(dtype, copy=False)
    elif array.dtype.kind == "f" and array.dtype != backend.DEFAULT_DTYPE:
        array = array.astype(backend.DEFAULT_DTYPE)
    return Tensor(array, requires_grad=requires_grad)


def zeros(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of zeros, e.g. ``mf.zeros(2, 3)`` or ``mf.zeros((2, 3))``.

    Args:
        *shape: the shape ``S``, as separate non-negative ints or one tuple or
            list; no sizes at all gives a 0-d tensor.
        device: ``"cpu"`` (``None``, the default) or ``"cuda"``.
        dtype: a numeric NumPy dtype or its name; ``None`` (default) means float32.
        requires_grad: whether gradients flow into the tensor (a bool, default
            ``False``; floating dtypes only).

    Returns:
        A Tensor of shape ``S`` and dtype ``dtype`` (float32 by default) on
        ``device``, every element 0.

    Raises:
        ValueError: a size is not a non-negative int (``True`` and ``2.0`` are not sizes), or
            ``device`` is neither ``"cpu"`` nor ``"cuda"``.
        TypeError: ``dtype`` is not a numeric NumPy dtype; ``requires_grad`` is not a bool, or is
            ``True`` with a non-floating ``dtype``.
        RuntimeError: ``device="cuda"`` without CuPy and a GPU.

    Example:
        >>> mf.zeros(2, 3)
        tensor([[0., 0., 0.],
                [0., 0., 0.]])
        >>> mf.zeros((2,), dtype="int64")
        tensor([0, 0], dtype=int64)
    """
    xp = backend.xp_for(device)
    return Tensor(xp.zeros(_shape("zeros", shape), dtype=_dtype("zeros", dtype)), requires_grad=requires_grad)


def ones(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of ones; the shape and the errors as :func:`zeros`.

    Args:
        *shape: the shape ``S``, as separate non-negative ints or one tuple or list.
        device: ``"cpu"`` (``None``, the default) or ``"cuda"``.
        dtype: a numeric NumPy dtype or its name; ``None`` (default) means float32.
        requires_grad: whether gradients flow into the tensor (a bool, default
            ``False``; floating dtypes only).

    Returns:
        A Tensor of shape ``S`` and dtype ``dtype`` (float32 by default) on
        ``device``, every element 1.

    Raises:
        ValueError, TypeError, RuntimeError: as :func:`zeros`.

    Example:
        >>> mf.ones(2, 2)
        tensor([[1., 1.],
                [1., 1.]])
        >>> mf.ones(3, dtype="bool")
        tensor([ True,  True,  True], dtype=bool)
    """
    xp = backend.xp_for(device)
    return Tensor(xp.ones(_shape("ones", shape), dtype=_dtype("ones", dtype)), requires_grad=requires_grad)


def full(shape, value, device=None, dtype=None, requires_grad=False) -> Tensor:
    """A tensor of shape ``shape`` (an int or a tuple) filled with ``value``, a number or a bool.

    Args:
        shape: the shape ``S``, one non-negative int (a 1-D tensor) or a tuple
            or list of them.
        value: the fill value, a real number or a bool.
        device: ``"cpu"`` (``None``, the default) or ``"cuda"``.
        dtype: a numeric NumPy dtype or its name; ``None`` (default) means
            float32, whatever the type of ``value`` (``full(2, 3)`` is float32).
        requires_grad: whether gradients flow into the tensor (a bool, default
            ``False``; floating dtypes only).

    Returns:
        A Tensor of shape ``S`` and dtype ``dtype`` (float32 by default) on
        ``device``, every element ``value``.

    Raises:
        ValueError: a size is not a non-negative int, or ``device`` is neither ``"cpu"`` nor ``"cuda"``.
        TypeError: ``value`` is not a number (None, a string); ``dtype`` is not a numeric NumPy dtype;
            ``requires_grad`` is not a bool, or is ``True`` with a non-floating ``dtype``.
        RuntimeError: ``device="cuda"`` without CuPy and a GPU.

    Example:
        >>> mf.full((2, 2), 0.5)
        tensor([[0.5, 0.5],
                [0.5, 0.5]])
        >>> mf.full(3, 7, dtype="int64")
        tensor([7, 7, 7], dtype=int64)
    """
    value = checks.scalar(value)                  # a 0-d Tensor or array: its number
    if not isinstance(value, (bool, np.bool_)):
        checks.number("full", "value", value)  # checked only: an int fill stays exact
    xp = backend.xp_for(device)
    return Tensor(xp.full(_shape("full", (shape,)), value, dtype=_dtype("full", dtype)), requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None) -> Tensor:
    """Zeros with the shape, device and (by default) dtype of the Tensor ``t``.

    Args:
        t: a Tensor of shape ``S`` (only its shape, device and dtype are used).
        dtype: a numeric NumPy dtype or its name; ``None`` (default) means ``t.dtype``.

    Returns:
        A new Tensor of shape ``S`` on ``t``'s device, every element 0; it does
        not require gradients.

    Raises:
        TypeError: ``t`` is not a Tensor (a NumPy array included), or ``dtype`` is not a numeric NumPy dtype.

    Example:
        >>> mf.zeros_like(mf.tensor([1, 2, 3]))
        tensor([0, 0, 0], dtype=int64)
        >>> mf.zeros_like(mf.ones(2, 3), dtype="float64").dtype
        dtype('float64')
    """
    check_tensor("zeros_like", "t", t)
    xp = backend.array_module(t.data)
    return Tensor(xp.zeros(t.shape, dtype=t.dtype if dtype is None else _dtype("zeros_like", dtype)))


def ones_like(t: Tensor, dtype=None) -> Tensor:
    """Ones with the shape, device and (by default) dtype of the Tensor ``t``.

    Args:
        t: a Tensor of shape ``S`` (only its shape, device and dtype are used).
        dtype: a numeric NumPy dtype or its name; ``None`` (default) means ``t.dtype``.

    Returns:
        A new Tensor of shape ``S`` on ``t``'s device, every element 1; it does
        not require gradients.

    Raises:
        TypeError: ``t`` is not a Tensor (a NumPy array included), or ``dtype`` is not a numeric NumPy dtype.

    Example:
        >>> mf.ones_like(mf.zeros(2, 2))
        tensor([[1., 1.],
                [1., 1.]])
    """
    check_tensor("ones_like", "t", t)
    xp = backend.array_module(t.data)
    return Tensor(xp.ones(t.shape, dtype=t.dtype if dtype is None else _dtype("ones_like", dtype)))


def arange(start, stop=None, step=1, device=None, dtype=None) -> Tensor:
    """Evenly spaced values as ``numpy.arange``: int64 for integer arguments, else float32.

    ``out[i] = start + i * step`` for ``0 <= i < ceil((stop - start) / step)``;
    ``stop`` itself is excluded.  ``arange(n)`` is ``arange(0, n, 1)``.

    Args:
        start: the first value (a real number, not a bool), or ``stop`` when
            ``stop`` is omitted (then the values start at 0).
        stop: the end, excluded; ``None`` (default) means ``start`` is the end.
        step: the spacing, non-zero, negative to count down (default 1).
        device: ``"cpu"`` (``None``, the default) or ``"cuda"``.
        dtype: a numeric NumPy dtype or its name; ``None`` (default) gives int64
            when ``start``, ``stop`` and ``step`` are all integers, else float32.

    Returns:
        A 1-D Tensor of shape ``(ceil((stop - start) / step),)`` (``(0,)`` when
        that is not positive) on ``device``.

    Raises:
        TypeError: ``start``, ``stop`` or ``step`` is not a number; ``dtype`` is not a numeric NumPy dtype.
        ValueError: one of them is infinite or NaN, or ``step`` is 0; ``device`` is neither ``"cpu"``
            nor ``"cuda"``.
        RuntimeError: ``device="cuda"`` without CuPy and a GPU.

    Example:
        >>> mf.arange(0.0, 1.0, 0.25)
        tensor([0.  , 0.25, 0.5 , 0.75])
        >>> mf.arange(4)
        tensor([0, 1, 2, 3], dtype=int64)
    """
    xp = backend.xp_for(device)
    if stop is None:
        start, stop = 0, start
    start, stop, step = (checks.scalar(v) for v in (start, stop, step))   # a 0-d array or Tensor: its number
    values = [checks.number("arange", name, v) for name, v in (("start", start), ("stop", stop), ("step", step))]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"arange: start, stop and step must be finite, got ({start!r}, {stop!r}, {step!r})")
    if values[2] == 0:
        raise ValueError(f"arange: step must not be 0, got {step!r}")
    dtype = backend.result_type(start, stop, step) if dtype is None else _dtype("arange", dtype)
    if all(backend.is_int(v) for v in (start, stop, step)):
        return Tensor(xp.arange(start, stop, step, dtype=dtype))   # exact, whatever the size
    # NumPy fills a float32 (or integer) range by repeated steps in that dtype, so 1e6 + 0.01 * i stays 1e6;
    # like PyTorch, compute start + i * step in float64 and round once
    n = max(0, math.ceil((values[1] - values[0]) / values[2]))
    return Tensor((values[0] + xp.arange(n, dtype=np.float64) * values[2]).astype(dtype, copy=False))


def _random_dtypes(fn, dtype):
    """``(dtype, draw_dtype)`` for a random creation function: the requested floating dtype, and the
    one to draw in, since NumPy's and CuPy's generators draw only float32 and float64."""
    dtype = _dtype(fn, dtype)
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
        requires_grad: whether the tensor records gradients (a bool, default ``False``).

    Returns:
        A Tensor of shape ``shape`` and dtype ``dtype`` (float32 by default) on
        ``device``, each element drawn independently, ``x ~ N(0, 1)``.

    Raises:
        TypeError: ``dtype`` is not a floating-point dtype; ``requires_grad`` is not a bool.
        ValueError: a size is not a non-negative int, or ``device`` is neither ``"cpu"`` nor ``"cuda"``.
        RuntimeError: ``device="cuda"`` without CuPy and a GPU.

    Example:
        >>> mf.randn(2, 3).shape, mf.randn(2, 3).dtype
        ((2, 3), dtype('float32'))
        >>> mf.randn(2, 3, dtype="float16").dtype
        dtype('float16')
    """
    device = backend.check_device(device)
    dtype, draw = _random_dtypes("randn", dtype)
    data = backend.rng(device).standard_normal(_shape("randn", shape), dtype=draw).astype(dtype, copy=False)
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape, device=None, dtype=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1) from minifb's seeded generator (see :func:`manual_seed`).

    Args:
        *shape: the shape, as separate ints or one tuple.
        device: ``"cpu"`` (default) or ``"cuda"``.
        dtype: a floating-point dtype (float32 by default); float16 is drawn
            in float32 and rounded, a draw that rounds up to 1 becoming the
            largest value below 1.
        requires_grad: whether the tensor records gradients (a bool, default ``False``).

    Returns:
        A Tensor of shape ``shape`` and dtype ``dtype`` (float32 by default) on
        ``device``, each element drawn independently, ``x ~ U[0, 1)``.

    Raises:
        TypeError: ``dtype`` is not a floating-point dtype; ``requires_grad`` is not a bool.
        ValueError: a size is not a non-negative int, or ``device`` is neither ``"cpu"`` nor ``"cuda"``.
        RuntimeError: ``device="cuda"`` without CuPy and a GPU.

    Example:
        >>> mf.rand(2, 3).shape, mf.rand(2, 3).dtype
        ((2, 3), dtype('float32'))
        >>> float(mf.rand(1000, dtype="float16").max()) < 1
        True
    """
    device = backend.check_device(device)
    dtype, draw = _random_dtypes("rand", dtype)
    data = backend.rng(device).random(_shape("rand", shape), dtype=draw)
    if draw != dtype or device == "cuda":   # CuPy draws float64 and rounds: float32 may reach 1.0 too
        below_one = np.nextafter(dtype.type(1), dtype.type(0))
        data = backend.array_module(data).minimum(data.astype(dtype, copy=False), below_one)
    return Tensor(data, requires_grad=requires_grad)
