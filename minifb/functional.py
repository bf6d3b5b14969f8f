"""The differentiable functions users call, as ``import minifb.functional as F``.

Each is a thin wrapper over an op in :mod:`minifb.ops`: it turns Python
numbers into tensors, checks arguments (raising errors that name the function,
the argument and the shapes) and calls ``Op.apply``.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import backend, checks
from .ops import activation, dropout as dropout_ops, elementwise as ew, fused, loss, matmul as mm
from .ops import movement, recurrent, reduce, softmax as sm
from .ops.conv import avg_pool2d, conv2d, conv_transpose2d, max_pool2d  # noqa: F401  (re-exported)
from .tensor import Tensor, check_tensor as _check_tensor

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "maximum", "minimum", "where",
    "clip", "sum", "mean", "max", "min", "matmul", "reshape", "transpose", "flatten", "getitem", "concat",
    "stack", "pad", "broadcast_to", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "gelu", "softmax",
    "log_softmax", "cross_entropy", "mse_loss", "binary_cross_entropy_with_logits", "dropout", "linear",
    "bias_act", "merge_act", "lstm_pointwise", "gru_pointwise", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d",
]


# ---- helpers ----------------------------------------------------------------
_cast = movement.cast  # ``x`` as ``dtype`` (differentiably), or ``x`` itself when it already has it


def _operand(name, value):
    """A value usable in :func:`backend.result_type`: Tensors, numbers and arrays as they are, a list or
    tuple as a NumPy array whose floats are float32 (as :func:`minifb.tensor` makes them)."""
    if isinstance(value, (Tensor, numbers.Number)) or (hasattr(value, "dtype") and hasattr(value, "ndim")):
        return value
    if isinstance(value, (list, tuple)):
        array = _list_array(name, value)
        return array.astype(backend.DEFAULT_DTYPE) if array.dtype.kind == "f" else array
    raise TypeError(f"{name}: expected Tensors, numbers or arrays, got {type(value).__name__}")


def _list_array(name, value):
    """``np.asarray(value)`` for a (nested) list or tuple, refusing a ragged one with :func:`minifb.tensor`'s
    message (where the rows differ in length) under ``name`` instead of NumPy's "setting an array element
    with a sequence"."""
    try:
        return np.asarray(value)
    except ValueError:
        from .creation import tensor  # noqa: PLC0415 - on the error path only; creation builds on tensor.py
        try:
            tensor(value)
        except ValueError as err:   # tensor's ragged-list message, said by the function the user called
            raise ValueError(f"{name}: {str(err).removeprefix('tensor: ')}") from None
        raise


def _float_dtype_of(values):
    """``(dtype, numbers_too)``: the dtype of ``values`` when they are floating tensors of that one dtype and
    Python ints or floats (which :func:`backend.result_type` would give too), else None; and whether there
    are numbers among them.  This check runs on every op, so it is kept to a few attribute reads."""
    dtype, numbers_too = None, False
    for v in values:
        if isinstance(v, Tensor):
            if dtype is None:
                dtype = v.data.dtype
            elif v.data.dtype != dtype:
                return None, False
        elif type(v) is float or type(v) is int:
            numbers_too = True
        else:
            return None, False
    return (dtype, numbers_too) if dtype is not None and dtype.kind == "f" else (None, False)


def _promote(name, *values, floating=False, device=None) -> list:
    """The operands of an elementwise op as Tensors of one dtype, on one device.

    This is the one place where minifb applies type promotion: the dtype is
    :func:`backend.result_type`'s (PyTorch's rules with float32 as the default
    float), Tensors of another dtype are cast to it, and numbers, lists and
    arrays become tensors of it on the device of the first Tensor (else
    ``device``, else the CPU).

    Args:
        name: the calling function, for error messages.
        *values: Tensors, Python numbers, (nested) lists or arrays.
        floating: the op gives a floating result (true division, ``exp``, ...).
        device: where to put the operands when none of them is a Tensor.
    """
    dtype, numbers_too = _float_dtype_of(values)
    if dtype is not None:  # the common case, float tensors of one dtype with Python numbers: no casts
        if not numbers_too:
            return list(values)
        xp = backend.array_module(next(v.data for v in values if isinstance(v, Tensor)))
        return [v if isinstance(v, Tensor) else Tensor(xp.asarray(v, dtype=dtype)) for v in values]
    values = [_operand(name, v) for v in values]
    try:
        dtype = backend.result_type(*values, floating=floating)
    except TypeError as err:   # an object or string array ("unsupported dtype object"): say which op met it
        raise TypeError(f"{name}: {err}") from None
    device = next((v.device for v in values if isinstance(v, Tensor)), device or "cpu")
    out = []
    for v in values:
        if isinstance(v, Tensor):
            try:
                out.append(_cast(v, dtype))
            except TypeError as err:   # a tensor requiring grad promoted to complex: say which op did it
                raise TypeError(f"{name}: {err}") from None
        elif isinstance(v, numbers.Number):
            out.append(Tensor(backend.xp_for(device).asarray(_number_as(name, v, dtype), dtype=dtype)))
        else:
            out.append(Tensor(backend.to_device(v, device).astype(dtype, copy=False)))
    return out


def _number_as(name, v, dtype):
    """A Python number as a NumPy scalar of ``dtype``; an integer outside an integer dtype's range wraps
    around as in C and PyTorch (``uint8 - 3`` after ``uint8 + (-3)``), where NumPy 2 would raise.

    Raises:
        OverflowError: an integer that fits neither int64 nor uint64 (PyTorch refuses it too): wrapping
            it modulo 2**64 would silently drop its high bits.
    """
    if dtype.kind in "iu" and isinstance(v, numbers.Integral) and not isinstance(v, bool):
        info = np.iinfo(dtype)
        if not info.min <= v <= info.max:
            if not -(1 << 63) <= v < (1 << 64):
                raise OverflowError(f"{name}: the integer {int(v)} is out of range for 64-bit integers (int64 "
                                    f"and uint64), with a tensor of dtype {dtype}; write it as a float for a "
                                    f"floating-point result")
            return np.array(int(v) % (1 << info.bits), dtype=np.uint64).astype(dtype)
    return v


def _floating(name, x, arg="x") -> Tensor:
    """The input of a float-valued function (``exp``, ``sigmoid``, ...): a boolean or integer tensor
    becomes float32."""
    _check_tensor(name, arg, x)
    return x if x.dtype.kind == "f" else _cast(x, backend.result_type(x, floating=True))


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Return ``value`` as a Tensor, with the dtype type promotion gives it beside ``like``.

    Lists of floats become float32, as in :func:`minifb.tensor`; a Python
    number takes the dtype of ``like`` when that is of the same or a higher
    category (a float next to an integer tensor gives float32).

    Args:
        value: a Tensor (returned as it is, whatever ``like`` is), a Python number, a (nested) list or an array.
        like: a Tensor beside which ``value`` is promoted: the result has the dtype that an elementwise op of
            ``like`` and ``value`` would give, on ``like``'s device; or ``None`` (default) for ``value``'s own
            dtype, on the CPU.

    Returns:
        A Tensor of ``value``'s shape (0-d for a number), on ``like``'s device when it is given.

    Raises:
        TypeError: ``value`` is not a Tensor, number, list or array (None, a string).
        ValueError: ``value`` is a ragged nested list (its rows differ in length).

    Example:
        >>> F.as_tensor(2, like=mf.tensor([1, 2])).dtype, F.as_tensor(2.5, like=mf.tensor([1, 2])).dtype
        (dtype('int64'), dtype('float32'))
        >>> F.as_tensor([1.0, 2.0])
        tensor([1., 2.])
    """
    if isinstance(value, Tensor):
        return value
    if like is None:
        return _promote("as_tensor", value)[0]
    return _promote("as_tensor", like, value)[1]


def _check_broadcast(name, *shapes):
    if backend.broadcast_shape(*shapes) is None:
        raise ValueError(f"{name}: shapes {', '.join(str(tuple(s)) for s in shapes)} cannot be broadcast "
                         f"together")


def _elementwise(name, op, a, b, floating=False, **options) -> Tensor:
    """Promote ``a`` and ``b`` and apply a broadcasting binary op, naming both shapes in a broadcast error."""
    a, b = _promote(name, a, b, floating=floating)
    try:
        return op.apply(a, b, **options)
    except ValueError:
        _check_broadcast(name, a.shape, b.shape)
        raise


# ---- elementwise arithmetic -----------------------------------------------------
def add(a, b) -> Tensor:
    """Elementwise ``a + b`` with broadcasting.

    Either operand may be a Python number, a list or an array; the result's
    dtype follows PyTorch's type promotion (see :func:`minifb.backend.result_type`).

    Args:
        a: a Tensor, Python number, (nested) list or array.
        b: the same kinds, broadcastable with ``a`` (NumPy's rules).

    Returns:
        ``out[i] = a[i] + b[i]``, of the broadcast shape of ``a`` and ``b`` and the promoted dtype.

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string).
        ValueError: the shapes of ``a`` and ``b`` do not broadcast together.

    Example:
        >>> F.add(mf.tensor([[1.0, 2.0]]), mf.tensor([[10.0], [20.0]]))
        tensor([[11., 12.],
                [21., 22.]])
    """
    return _elementwise("add", ew.Add, a, b)


def sub(a, b) -> Tensor:
    """Elementwise ``a - b`` with broadcasting.

    Operands and dtypes are as in :func:`add`.

    Args:
        a: a Tensor, Python number, (nested) list or array.
        b: the same kinds, broadcastable with ``a`` (NumPy's rules).

    Returns:
        ``out[i] = a[i] - b[i]``, of the broadcast shape of ``a`` and ``b`` and the promoted dtype.

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string);
            both are boolean (NumPy has no boolean subtraction).
        ValueError: the shapes of ``a`` and ``b`` do not broadcast together.

    Example:
        >>> F.sub(mf.tensor([3.0, 5.0]), 1.0)
        tensor([2., 4.])
    """
    return _elementwise("sub", ew.Sub, a, b)


def mul(a, b) -> Tensor:
    """Elementwise ``a * b`` with broadcasting.

    Operands and dtypes are as in :func:`add`.

    Args:
        a: a Tensor, Python number, (nested) list or array.
        b: the same kinds, broadcastable with ``a`` (NumPy's rules).

    Returns:
        ``out[i] = a[i] · b[i]``, of the broadcast shape of ``a`` and ``b`` and the promoted dtype.

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string).
        ValueError: the shapes of ``a`` and ``b`` do not broadcast together.

    Example:
        >>> F.mul(mf.tensor([[1.0, 2.0]]), mf.tensor([[3.0], [-1.0]]))
        tensor([[ 3.,  6.],
                [-1., -2.]])
    """
    return _elementwise("mul", ew.Mul, a, b)


def div(a, b) -> Tensor:
    """Elementwise true division ``a / b`` with broadcasting; integers give float32.

    Division by zero gives ``inf`` or ``nan``, as in NumPy.

    Args:
        a: a Tensor, Python number, (nested) list or array.
        b: the same kinds, broadcastable with ``a`` (NumPy's rules).

    Returns:
        ``out[i] = a[i] / b[i]``, of the broadcast shape and the promoted floating dtype (boolean and integer
        operands alone give float32).

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string).
        ValueError: the shapes of ``a`` and ``b`` do not broadcast together.

    Example:
        >>> F.div(mf.tensor([1, 2, 3]), 2)
        tensor([0.5, 1. , 1.5])
    """
    return _elementwise("div", ew.Div, a, b, floating=True)


def neg(a) -> Tensor:
    """Elementwise ``-a``.

    Args:
        a: a Tensor of any shape.

    Returns:
        ``-a``, of ``a``'s shape and dtype.

    Raises:
        TypeError: ``a`` is not a Tensor, or is boolean (NumPy has no boolean negative; use ``~``).

    Example:
        >>> F.neg(mf.tensor([1.0, -2.0]))
        tensor([-1.,  2.])
    """
    _check_tensor("neg", "a", a)
    try:
        return ew.Neg.apply(a)
    except TypeError:   # NumPy's "The numpy boolean negative ... is not supported"
        if a.dtype.kind == "b":
            raise TypeError(f"neg: a boolean tensor (shape {a.shape}) has no negative, as in PyTorch; use ~x for "
                            f"logical not, or cast it first for arithmetic") from None
        raise


def pow(a, b) -> Tensor:  # noqa: A001 - mirrors the operator's name
    """Elementwise ``a ** b``; ``b`` may be a Python number or a tensor.

    Gradients follow PyTorch where the formulas are singular: zero for an
    exponent of 0; with respect to a tensor exponent, zero at base 0 for
    exponents >= 0 and NaN for a negative base.

    Args:
        a: the base: a Tensor, Python number, (nested) list or array.
        b: the exponent: a Python number, or a Tensor, list or array broadcastable with ``a``.

    Returns:
        ``out[i] = a[i] ** b[i]``, of the broadcast shape and the promoted dtype (an integer tensor to a
        float power gives float32).

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string).
        ValueError: the shapes do not broadcast together; an integer tensor to a negative integer power.

    Example:
        >>> F.pow(mf.tensor([1.0, 2.0, 3.0]), 2)
        tensor([1., 4., 9.])
        >>> F.pow(mf.tensor([2.0, 2.0]), mf.tensor([0.5, 3.0]))
        tensor([1.4142, 8.    ])
    """
    try:
        if isinstance(a, Tensor) and isinstance(b, numbers.Number):
            # a NumPy scalar as its Python number: NumPy (NEP 50) would let np.float64(2) widen float32 to float64
            exponent = b.item() if isinstance(b, np.generic) else b
            return ew.PowScalar.apply(_cast(a, backend.result_type(a, b)), exponent=exponent)
        return _elementwise("pow", ew.Pow, a, b)
    except ValueError as e:
        if "negative integer powers" not in str(e):
            raise
        raise ValueError("pow: an integer tensor to a negative integer power is not allowed (NumPy and PyTorch "
                         "refuse it too); make the base or the exponent a float") from None


def exp(x) -> Tensor:
    """Elementwise ``e ** x``.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.

    Returns:
        ``out[i] = e ** x[i]``, of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``x`` is not a Tensor (wrap arrays with :func:`minifb.tensor`).

    Example:
        >>> F.exp(mf.tensor([0.0, 1.0]))
        tensor([1.    , 2.7183])
    """
    return ew.Exp.apply(_floating("exp", x))


def log(x) -> Tensor:
    """Elementwise natural logarithm.

    As in NumPy, ``log(0)`` is ``-inf`` and a negative input gives ``nan``.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.

    Returns:
        ``out[i] = ln(x[i])``, of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``x`` is not a Tensor (wrap arrays with :func:`minifb.tensor`).

    Example:
        >>> F.log(mf.tensor([1.0, 4.0]))
        tensor([0.    , 1.3863])
    """
    return ew.Log.apply(_floating("log", x))


def sqrt(x) -> Tensor:
    """Elementwise square root.

    As in NumPy, a negative input gives ``nan``.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.

    Returns:
        ``out[i] = √x[i]``, of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``x`` is not a Tensor (wrap arrays with :func:`minifb.tensor`).

    Example:
        >>> F.sqrt(mf.tensor([4.0, 9.0]))
        tensor([2., 3.])
    """
    return ew.Sqrt.apply(_floating("sqrt", x))


def abs(x) -> Tensor:  # noqa: A001
    """Elementwise absolute value.

    The gradient is ``sign(x)``, 0 at 0.

    Args:
        x: a Tensor of any shape.

    Returns:
        ``out[i] = |x[i]|``, of ``x``'s shape and dtype.

    Raises:
        TypeError: ``x`` is not a Tensor.

    Example:
        >>> F.abs(mf.tensor([-1.5, 0.0, 2.0]))
        tensor([1.5, 0. , 2. ])
    """
    _check_tensor("abs", "x", x)
    return ew.Abs.apply(x)


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (ties split the gradient).

    Operands and dtypes are as in :func:`add`; at a NaN both sides get the whole gradient, as in PyTorch.

    Args:
        a: a Tensor, Python number, (nested) list or array.
        b: the same kinds, broadcastable with ``a`` (NumPy's rules).

    Returns:
        ``out[i] = max(a[i], b[i])``, of the broadcast shape and the promoted dtype.

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string).
        ValueError: the shapes of ``a`` and ``b`` do not broadcast together.

    Example:
        >>> F.maximum(mf.tensor([1.0, 5.0]), 3.0)
        tensor([3., 5.])
    """
    return _elementwise("maximum", ew.Maximum, a, b)


def minimum(a, b) -> Tensor:
    """Elementwise minimum of two tensors (ties split the gradient).

    Operands and dtypes are as in :func:`add`; at a NaN both sides get the whole gradient, as in PyTorch.

    Args:
        a: a Tensor, Python number, (nested) list or array.
        b: the same kinds, broadcastable with ``a`` (NumPy's rules).

    Returns:
        ``out[i] = min(a[i], b[i])``, of the broadcast shape and the promoted dtype.

    Raises:
        TypeError: an operand is not a Tensor, number, list or array (None, a string).
        ValueError: the shapes of ``a`` and ``b`` do not broadcast together.

    Example:
        >>> F.minimum(mf.tensor([1.0, 5.0]), 3.0)
        tensor([1., 3.])
    """
    return _elementwise("minimum", ew.Minimum, a, b)


def where(condition, a, b) -> Tensor:
    """Pick ``a`` where ``condition`` holds, else ``b`` (``condition`` is not differentiated).

    ``a`` and ``b`` may be numbers: ``where(x > 0, 1.0, 0.0)``.

    Args:
        condition: a boolean Tensor, array, (nested) list or bool, broadcastable with ``a`` and ``b``.
        a, b: Tensors, numbers, lists or arrays.

    Returns:
        ``out[i] = a[i] if condition[i] else b[i]``, of the broadcast shape of the three and the promoted
        dtype of ``a`` and ``b``.

    Raises:
        TypeError: ``condition`` is not boolean (None, a string, a float or integer tensor), as in PyTorch;
            ``a`` or ``b`` is not a Tensor, number, list or array.
        ValueError: the three shapes do not broadcast together.

    Example:
        >>> x = mf.tensor([-1.0, 2.0, -3.0])
        >>> F.where(x > 0, x, 0.0)
        tensor([0., 2., 0.])
    """
    cond = condition.data if isinstance(condition, Tensor) else condition
    if not hasattr(cond, "shape"):
        cond = (_list_array("where", cond) if isinstance(cond, (list, tuple))
                else np.asarray(cond) if isinstance(cond, (bool, np.bool_)) else None)
    if cond is None or cond.dtype.kind != "b":
        got = f"dtype {cond.dtype}" if cond is not None else type(condition).__name__
        raise TypeError(f"where: condition must be boolean (a mask such as x > 0), got {got}")
    a, b = _promote("where", a, b, device=backend.device_of(cond))
    cond = backend.to_device(cond, a.device)
    try:
        return ew.Where.apply(a, b, condition=cond)
    except ValueError:
        _check_broadcast("where", cond.shape, a.shape, b.shape)
        raise


def clip(x, low=None, high=None) -> Tensor:
    """Clamp values to ``[low, high]``.

    Args:
        x: the tensor.
        low, high: the bounds: numbers, tensors (e.g. 0-d) broadcastable to
            ``x``'s shape, or ``None`` for no bound.  Bounds are constants:
            no gradient flows into them.

    Returns:
        ``out[i] = min(max(x[i], low), high)`` (so ``high`` wins where ``low > high``, as in NumPy), of
        ``x``'s shape and the promoted dtype of ``x`` and the bounds (an integer ``x`` with a float bound
        gives float32).

    Raises:
        TypeError: ``x`` is not a Tensor, or a bound is not a number, Tensor, list or array.
        ValueError: a bound's shape does not broadcast to ``x``'s shape.

    Example:
        >>> F.clip(mf.tensor([-1.0, 0.5, 2.0]), 0.0, 1.0)
        tensor([0. , 0.5, 1. ])
        >>> F.clip(mf.tensor([-1.0, 0.5, 2.0]), high=0.0)
        tensor([-1.,  0.,  0.])
    """
    _check_tensor("clip", "x", x)
    low, high = (v if v is None or isinstance(v, Tensor) else _operand("clip", v) for v in (low, high))
    try:
        dtype = backend.result_type(x, *[v for v in (low, high) if v is not None])
    except TypeError as err:   # an object or string array bound ("unsupported dtype object")
        raise TypeError(f"clip: {err}") from None
    x = _cast(x, dtype)

    def raw(bound):
        if bound is None or isinstance(bound, numbers.Number):
            return bound.item() if isinstance(bound, np.generic) else bound   # as pow's exponent above
        array = backend.to_device(bound.data if isinstance(bound, Tensor) else bound, x.device)
        if backend.broadcast_shape(array.shape, x.shape) != x.shape:
            raise ValueError(f"clip: bound of shape {tuple(array.shape)} does not broadcast to the input's "
                             f"shape {x.shape}")
        return array.astype(dtype, copy=False)

    return ew.Clip.apply(x, low=raw(low), high=raw(high))


# ---- reductions --------------------------------------------------------------
def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (an int, a tuple, or ``None`` for all axes); ``keepdims`` True or False.

    :meth:`Tensor.sum` is this function: ``x.sum(1)`` is ``F.sum(x, 1)``.

    Args:
        x: a Tensor of any shape.
        axis: the axis to reduce over: an int, a tuple or list of distinct ints (negative counts from the
            end), or ``None`` (default) for all axes; ``()`` reduces over none.
        keepdims: True keeps each reduced axis with size 1 (so the result broadcasts against ``x``);
            False (default) drops it.

    Returns:
        ``out = Σ x[..., i, ...]`` over the reduced axes: ``x``'s shape without them (with them as size 1
        when ``keepdims``); 0-d for ``axis=None`` without ``keepdims``. A floating tensor keeps its dtype;
        a boolean or integer one sums as int64, as in PyTorch.

    Raises:
        TypeError: ``x`` is not a Tensor; ``axis`` is not an int, a tuple of ints or None; ``keepdims`` is
            not True or False.
        ValueError: an axis is out of range or repeated.

    Example:
        >>> x = mf.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> F.sum(x), F.sum(x, axis=0), x.sum(1, keepdims=True).shape
        (tensor(10.), tensor([4., 6.]), (2, 1))
    """
    _check_tensor("sum", "x", x)
    return reduce.Sum.apply(x, axis=reduce.normalize_axis(axis, x.ndim, fn="sum"),
                            keepdims=checks.flag("sum", "keepdims", keepdims))


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Arithmetic mean over ``axis``; a boolean or integer tensor gives float32.

    :meth:`Tensor.mean` is this function: ``x.mean(1)`` is ``F.mean(x, 1)``.

    Args:
        x: a Tensor of any shape.
        axis: the axis to reduce over: an int, a tuple or list of distinct ints (negative counts from the
            end), or ``None`` (default) for all axes; ``()`` reduces over none.
        keepdims: True keeps each reduced axis with size 1 (so the result broadcasts against ``x``);
            False (default) drops it.

    Returns:
        ``out = Σ x[..., i, ...] / n`` over the reduced axes, ``n`` the number of elements reduced: ``x``'s
        shape without them (with them as size 1 when ``keepdims``), in ``x``'s floating dtype (float32 for a
        boolean or integer ``x``). An empty reduction gives ``nan``, as in NumPy.

    Raises:
        TypeError: ``x`` is not a Tensor; ``axis`` is not an int, a tuple of ints or None; ``keepdims`` is
            not True or False.
        ValueError: an axis is out of range or repeated.

    Example:
        >>> x = mf.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> F.mean(x), F.mean(x, axis=1), F.mean(mf.tensor([1, 2, 4]))
        (tensor(2.5), tensor([1.5, 3.5]), tensor(2.3333))
    """
    x = _floating("mean", x)
    return reduce.Mean.apply(x, axis=reduce.normalize_axis(axis, x.ndim, fn="mean"),
                             keepdims=checks.flag("mean", "keepdims", keepdims))


def max(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Maximum over ``axis``; tied maxima share the gradient equally.

    :meth:`Tensor.max` is this function: ``x.max(1)`` is ``F.max(x, 1)``. It returns the values only (no
    indices, unlike ``torch.max``); for the elementwise maximum of two tensors see :func:`maximum`.

    Args:
        x: a Tensor of any shape.
        axis: the axis to reduce over: an int, a tuple or list of distinct ints (negative counts from the
            end), or ``None`` (default) for all axes; ``()`` reduces over none.
        keepdims: True keeps each reduced axis with size 1 (so the result broadcasts against ``x``);
            False (default) drops it.

    Returns:
        ``out = max x[..., i, ...]`` over the reduced axes: ``x``'s shape without them (with them as size 1
        when ``keepdims``), in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a Tensor; ``axis`` is not an int, a tuple of ints or None; ``keepdims`` is
            not True or False.
        ValueError: an axis is out of range or repeated, or a reduced axis has length 0 (the result would be undefined).

    Example:
        >>> x = mf.tensor([[1.0, 5.0], [3.0, 4.0]])
        >>> F.max(x), F.max(x, axis=0), x.max(1, keepdims=True).shape
        (tensor(5.), tensor([3., 5.]), (2, 1))
    """
    _check_tensor("max", "x", x)
    return reduce.Max.apply(x, axis=reduce.normalize_axis(axis, x.ndim, fn="max"),
                            keepdims=checks.flag("max", "keepdims", keepdims))


def min(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Minimum over ``axis``; tied minima share the gradient equally.

    :meth:`Tensor.min` is this function: ``x.min(1)`` is ``F.min(x, 1)``. It returns the values only (no
    indices, unlike ``torch.min``); for the elementwise minimum of two tensors see :func:`minimum`.

    Args:
        x: a Tensor of any shape.
        axis: the axis to reduce over: an int, a tuple or list of distinct ints (negative counts from the
            end), or ``None`` (default) for all axes; ``()`` reduces over none.
        keepdims: True keeps each reduced axis with size 1 (so the result broadcasts against ``x``);
            False (default) drops it.

    Returns:
        ``out = min x[..., i, ...]`` over the reduced axes: ``x``'s shape without them (with them as size 1
        when ``keepdims``), in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a Tensor; ``axis`` is not an int, a tuple of ints or None; ``keepdims`` is
            not True or False.
        ValueError: an axis is out of range or repeated, or a reduced axis has length 0 (the result would be undefined).

    Example:
        >>> x = mf.tensor([[1.0, 5.0], [3.0, 4.0]])
        >>> F.min(x), F.min(x, axis=0), x.min(1, keepdims=True).shape
        (tensor(1.), tensor([1., 4.]), (2, 1))
    """
    _check_tensor("min", "x", x)
    return reduce.Max.apply(x, axis=reduce.normalize_axis(axis, x.ndim, fn="min"),
                            keepdims=checks.flag("min", "keepdims", keepdims), minimum=True)


# ---- linear algebra ------------------------------------------------------------
def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's ``@`` rules (batch axes broadcast).

    Shapes: (..., m, k) @ (..., k, n) -> (..., m, n); 1-D operands as in NumPy.

    Args:
        a: (..., m, k), or (k,) (treated as one row, whose axis is then dropped).
        b: (..., k, n), or (k,) (treated as one column, whose axis is then dropped).

    Returns:
        (..., m, n) with ``out[..., i, j] = Σ_k a[..., i, k] · b[..., k, j]``, the batch axes ``...``
        broadcast; 0-d for two 1-D operands (their dot product). The dtype is the promoted one.

    Raises:
        TypeError: ``a`` or ``b`` is not a Tensor.
        ValueError: an operand is 0-d, the inner dimensions differ, or the batch axes do not broadcast.

    Example:
        >>> F.matmul(mf.ones(2, 3), mf.ones(3, 4)).shape, F.matmul(mf.ones(5, 2, 3), mf.ones(3)).shape
        ((2, 4), (5, 2))
        >>> F.matmul(mf.tensor([1.0, 2.0]), mf.tensor([3.0, 4.0]))
        tensor(11.)
    """
    _check_tensor("matmul", "a", a)
    _check_tensor("matmul", "b", b)
    return mm.MatMul.apply(*_promote("matmul", a, b))


def linear(x, w, b=None) -> Tensor:
    """Affine map ``x @ w.T + b``.

    Args:
        x: (..., in) input.
        w: (out, in) weight.
        b: (out,) bias or ``None`` (default: no bias).

    Returns:
        (..., out) with ``y[..., o] = Σ_i x[..., i] · w[o, i] + b[o]``, in the promoted dtype of the
        operands (an integer ``x`` with a float32 weight gives float32).

    Raises:
        TypeError: ``x``, ``w`` or ``b`` is not a Tensor.
        ValueError: ``w`` is not 2-D, ``x`` is 0-d or its last dimension is not ``in``, or ``b`` is not (out,).

    Example:
        >>> x = mf.tensor([[1.0, 2.0]])
        >>> w = mf.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
        >>> F.linear(x, w, mf.tensor([0.5, 0.5, 0.5]))
        tensor([[ 1.5,  3.5, -1.5]])
    """
    _check_tensor("linear", "x", x)
    _check_tensor("linear", "w", w)
    if b is not None:
        _check_tensor("linear", "b", b)
    if w.ndim != 2:
        raise ValueError(f"linear: the weight must be 2-D, of shape (out, in), got shape {w.shape}")
    if x.ndim == 0 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: weight of shape {w.shape} expects inputs with last dimension "
                         f"{w.shape[1]}, got input of shape {x.shape}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias of shape {b.shape} does not match weight of shape {w.shape}")
    return mm.Linear.apply(*_promote("linear", x, w, *([] if b is None else [b])))


# ---- movement -------------------------------------------------------------------
def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def reshape(x, *shape) -> Tensor:
    """``x`` with a new shape: a view when the memory allows, else a copy.

    The shape is given as separate ints or one tuple, with one ``-1`` allowed.

    The elements keep their row-major (C) order. :meth:`Tensor.reshape` calls this function.

    Args:
        x: a Tensor.
        *shape: the new sizes, as separate ints (``reshape(x, 2, 3)``) or one tuple or list
            (``reshape(x, (2, 3))``); one of them may be -1, inferred from ``x``'s size and the others.

    Returns:
        ``x``'s elements with shape ``shape``, in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a Tensor, or a size is not an int (a float, a bool, None, a string).
        ValueError: the sizes do not hold ``x``'s elements (or more than one is -1).

    Example:
        >>> x = mf.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
        >>> F.reshape(x, 3, 2).shape, F.reshape(x, (-1,)).shape, x.reshape(1, -1).shape
        ((3, 2), (6,), (1, 6))
    """
    _check_tensor("reshape", "x", x)
    shape = _shape_args(shape)
    if not all(backend.is_int(n) for n in shape):
        raise TypeError(f"reshape: shape must be integers (one may be -1), got {shape}")
    try:
        return movement.Reshape.apply(x, shape=shape)
    except ValueError as err:
        raise ValueError(f"reshape: cannot reshape tensor of shape {x.shape} into {shape}") from err


def transpose(x, *axes) -> Tensor:
    """Permute axes; with no axes, reverse them (so a matrix is transposed).

    :meth:`Tensor.transpose` calls this function, and ``x.T`` is ``transpose(x)``.

    Args:
        x: a Tensor.
        *axes: a permutation of ``x``'s axes, as separate ints or one tuple or list (negative counts from
            the end); none given reverses the axes.

    Returns:
        ``x`` with its axes permuted: ``out.shape[i] == x.shape[axes[i]]``, in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a Tensor, or an axis is not an int.
        ValueError: ``axes`` is not a permutation of ``x``'s axes (too few or too many, a repeat, or out of
            range).

    Example:
        >>> x = mf.ones(2, 3, 4)
        >>> F.transpose(x).shape, F.transpose(x, 0, 2, 1).shape, x.transpose((1, 0, 2)).shape
        ((4, 3, 2), (2, 4, 3), (3, 2, 4))
    """
    _check_tensor("transpose", "x", x)
    axes = _shape_args(axes) if axes else tuple(reversed(range(x.ndim)))
    bad = [a for a in axes if not backend.is_int(a)]
    if bad:   # the type first: a string is no axis, whatever the count
        raise TypeError(f"transpose: axes must be ints, got {bad[0]!r} in {axes}")
    normalized = tuple(reduce.check_axis(a, x.ndim, fn="transpose") for a in axes) if len(axes) == x.ndim else None
    if normalized is None or sorted(normalized) != list(range(x.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {x.ndim} axes of shape {x.shape}")
    return movement.Transpose.apply(x, axes=normalized)


def flatten(x, start_axis=1, end_axis=-1) -> Tensor:
    """Merge axes ``start_axis..end_axis`` into one: (N, C, H, W) -> (N, C·H·W).

    Never adds an axis: both axes must exist (a 1-D or 0-d input with the
    default ``start_axis=1`` is an error, as in PyTorch).  The one exception,
    as in ``torch.flatten`` and ``ndarray.flatten``, is a 0-d tensor with
    ``start_axis`` and ``end_axis`` each 0 or -1, which becomes shape (1,).
    :meth:`Tensor.flatten` defaults to ``start_axis=0`` (everything into one
    axis), so ``t.flatten()`` of a 0-d ``t`` has shape (1,).

    Args:
        x: the tensor.
        start_axis: first axis to merge (default 1: keep the batch axis).
        end_axis: last axis to merge, inclusive (default -1: the last).

    Returns:
        ``x.shape[:start] + (x.shape[start] · ... · x.shape[end],) + x.shape[end + 1:]``, in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a Tensor, or an axis is not an int.
        ValueError: an axis is out of range, or ``start_axis`` comes after ``end_axis``.

    Example:
        >>> F.flatten(mf.ones(2, 3, 4, 5)).shape, F.flatten(mf.ones(2, 3, 4, 5), 1, 2).shape
        ((2, 60), (2, 12, 5))
    """
    _check_tensor("flatten", "x", x)
    start = reduce.check_axis(start_axis, x.ndim, "start_axis", fn="flatten")
    end = reduce.check_axis(end_axis, x.ndim, "end_axis", fn="flatten")
    if x.ndim == 0:
        return reshape(x, 1)
    if start > end:
        raise ValueError(f"flatten: start_axis={start_axis} comes after end_axis={end_axis} "
                         f"for a tensor of shape {x.shape}")
    merged = 1
    for n in x.shape[start:end + 1]:
        merged *= n
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1:])


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy's basic and integer/boolean-array indexing.

    ``Tensor.__getitem__`` is this function. Backward adds the gradient into the picked positions (summed
    where an integer array picks one element several times).

    Args:
        x: a Tensor.
        index: what NumPy accepts: ints, slices, ``None``, ``...``, integer or boolean arrays or Tensors,
            or a tuple of them.

    Returns:
        The shape NumPy gives ``x.numpy()[index]``, in ``x``'s dtype.

    Raises:
        IndexError: an index is out of bounds or of a kind NumPy does not take (the message names ``x``'s shape).
            On a GPU, CuPy wraps an out-of-bounds *integer-array* index around instead (CuPy's documented
            difference from NumPy); slices and plain integers are checked there too.

    Example:
        >>> x = mf.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> F.getitem(x, 0), x[:, 1], x[mf.tensor([1, 1, 0])].shape
        (tensor([1., 2.]), tensor([2., 4.]), (3, 2))
    """
    _check_tensor("getitem", "x", x)
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    try:
        return movement.GetItem.apply(x, index=index)
    except ValueError:   # a ragged list index: NumPy's "setting an array element with a sequence"
        for part in (index if isinstance(index, tuple) else (index,)):
            if isinstance(part, list):
                _list_array("getitem", part)
        raise


def _tensor_list(name, xs) -> list:
    if not isinstance(xs, (list, tuple)):  # a single Tensor would be iterated row by row
        raise TypeError(f"{name}: xs must be a list/tuple of Tensors, got {type(xs).__name__}")
    if not xs:
        raise ValueError(f"{name}: needs at least one tensor")
    for i, t in enumerate(xs):
        _check_tensor(name, f"xs[{i}]", t)
    return _promote(name, *xs)


def concat(xs, axis=0) -> Tensor:
    """Join a list or tuple of tensors along an existing axis; all other dimensions must agree.

    Args:
        xs: a non-empty list or tuple of Tensors of one rank (at least 1), promoted to one dtype.
        axis: the axis to join along (default 0; negative counts from the end).

    Returns:
        ``xs[0]``'s shape with ``axis`` of size ``Σ_t xs[t].shape[axis]``; the tensors follow each other in
        order along ``axis``. The dtype is the promoted one.

    Raises:
        TypeError: ``xs`` is not a list or tuple, an element is not a Tensor, or ``axis`` is not an int.
        ValueError: ``xs`` is empty, the tensors are 0-d, their shapes differ outside ``axis``, or ``axis``
            is out of range.

    Example:
        >>> a, b = mf.tensor([[1.0, 2.0]]), mf.tensor([[3.0, 4.0]])
        >>> F.concat([a, b]).shape, F.concat([a, b], axis=1)
        ((2, 2), tensor([[1., 2., 3., 4.]]))
    """
    xs = _tensor_list("concat", xs)
    ndim = xs[0].ndim
    if ndim == 0:
        raise ValueError("concat: 0-d tensors cannot be concatenated (use stack)")
    axis = reduce.check_axis(axis, ndim, fn="concat")
    for t in xs[1:]:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, xs[0].shape)) if i != axis):
            raise ValueError(f"concat: shapes {[tuple(t.shape) for t in xs]} differ outside axis {axis}")
    return movement.Concat.apply(*xs, axis=axis)


def stack(xs, axis=0) -> Tensor:
    """Join a list or tuple of equal-shaped tensors along a new axis (``axis`` in ``[-ndim - 1, ndim]``).

    Args:
        xs: a non-empty list or tuple of Tensors of one shape S, promoted to one dtype.
        axis: where the new axis goes in the result (default 0; negative counts from the end of the
            result's ``ndim + 1`` axes).

    Returns:
        S with ``len(xs)`` inserted at ``axis``: ``out[..., t, ...] = xs[t]``. The dtype is the promoted one.

    Raises:
        TypeError: ``xs`` is not a list or tuple, or an element is not a Tensor.
        ValueError: ``xs`` is empty, the shapes differ, or ``axis`` is not an int in range (a non-int
            ``axis`` is a ValueError here).

    Example:
        >>> a, b = mf.tensor([1.0, 2.0]), mf.tensor([3.0, 4.0])
        >>> F.stack([a, b]).shape
        (2, 2)
        >>> F.stack([a, b], axis=1)
        tensor([[1., 3.],
                [2., 4.]])
    """
    xs = _tensor_list("stack", xs)
    if any(t.shape != xs[0].shape for t in xs):
        raise ValueError(f"stack: all shapes must be equal, got {[tuple(t.shape) for t in xs]}")
    n = xs[0].ndim + 1
    if not backend.is_int(axis) or not -n <= axis < n:
        raise ValueError(f"stack: axis={axis!r} is out of range for stacking {n - 1}-d tensors "
                         f"(expected an int in [{-n}, {n - 1}])")
    axis = int(axis) % n
    return movement.Stack.apply(*xs, axis=axis)


def pad(x, pad_width, value=0.0) -> Tensor:
    """Constant padding with ``value``; ``pad_width`` is ``((before, after), ...)``, one pair per axis.

    Args:
        x: the tensor.
        pad_width: one ``(before, after)`` pair of non-negative ints per axis of ``x``.
        value: the fill, a number (or a bool); default 0.0.

    Returns:
        ``x`` with ``before`` copies of ``value`` ahead of it and ``after`` behind it on each axis: shape
        ``(n + before + after)`` per axis of size ``n``, in ``x``'s dtype (the fill is converted to it).

    Raises:
        TypeError: ``x`` is not a Tensor; ``pad_width`` is not a sequence of (before, after) pairs;
            ``value`` is not a number.
        ValueError: there is not one pair per axis; a width is negative or not an int (``1.5`` is not 1).

    Example:
        >>> F.pad(mf.tensor([[1.0, 2.0]]), ((0, 1), (1, 0)))
        tensor([[0., 1., 2.],
                [0., 0., 0.]])
    """
    _check_tensor("pad", "x", x)
    if getattr(pad_width, "ndim", None) == 2 and hasattr(pad_width, "tolist"):   # an array, numpy.pad's form
        pad_width = pad_width.tolist()
    if not isinstance(pad_width, (tuple, list)) or not all(isinstance(p, (tuple, list)) and len(p) == 2
                                                           for p in pad_width):
        raise TypeError(f"pad: pad_width must be one (before, after) pair per axis of shape {x.shape}, "
                        f"got {pad_width!r}")
    if len(pad_width) != x.ndim:
        raise ValueError(f"pad: pad_width must be one (before, after) pair per axis of shape {x.shape}, "
                         f"got {len(pad_width)} pairs: {pad_width!r}")
    pad_width = tuple((checks.integer("pad", f"pad_width[{i}][0]", a, minimum=0),
                       checks.integer("pad", f"pad_width[{i}][1]", b, minimum=0)) for i, (a, b) in enumerate(pad_width))
    value = checks.scalar(value)                  # a 0-d Tensor or array: its number
    if not isinstance(value, (bool, np.bool_)):
        checks.number("pad", "value", value)  # checked only: an int fill stays exact
    return movement.Pad.apply(x, pad_width=pad_width, value=value)


def broadcast_to(x, shape) -> Tensor:
    """Broadcast ``x`` to ``shape`` (NumPy rules); backward sums over broadcast axes.

    Args:
        x: a Tensor.
        shape: the target shape, a tuple or list of ints with at least ``x.ndim`` entries; each of ``x``'s
            sizes (aligned from the right) must equal the target's or be 1.

    Returns:
        ``x``'s values repeated to ``shape``, in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a Tensor, or ``shape`` is not a tuple or list of ints.
        ValueError: ``x``'s shape does not broadcast to ``shape``.

    Example:
        >>> F.broadcast_to(mf.tensor([1.0, 2.0]), (3, 2))
        tensor([[1., 2.],
                [1., 2.],
                [1., 2.]])
    """
    _check_tensor("broadcast_to", "x", x)
    if getattr(shape, "ndim", None) == 1 and hasattr(shape, "tolist"):   # a shape held in an array
        shape = shape.tolist()
    if not isinstance(shape, (tuple, list)) or not all(backend.is_int(n) for n in shape):
        raise TypeError(f"broadcast_to: shape must be a tuple of ints, got {shape!r}")
    shape = tuple(int(n) for n in shape)
    if len(shape) < x.ndim or backend.broadcast_shape(x.shape, shape) != shape:
        raise ValueError(f"broadcast_to: a tensor of shape {x.shape} cannot be broadcast to shape {shape!r}")
    return movement.BroadcastTo.apply(x, shape=shape)


# ---- activations ------------------------------------------------------------------
def relu(x) -> Tensor:
    """Rectified linear unit ``max(x, 0)``, elementwise.

    The gradient is 1 where ``x > 0``, else 0 (0 at 0, as in PyTorch).

    Args:
        x: a Tensor of any shape.

    Returns:
        ``out[i] = max(x[i], 0)``, of ``x``'s shape and, for a floating or integer ``x``, its dtype.

    Raises:
        TypeError: ``x`` is not a Tensor.

    Example:
        >>> F.relu(mf.tensor([[-1.0, 0.5, 2.0]]))
        tensor([[0. , 0.5, 2. ]])
    """
    _check_tensor("relu", "x", x)
    return activation.ReLU.apply(x)


def leaky_relu(x, negative_slope=0.01) -> Tensor:
    """``x`` for positive inputs, ``negative_slope·x`` otherwise.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.
        negative_slope: the slope for ``x <= 0``, a number (default 0.01).

    Returns:
        ``out[i] = x[i] if x[i] > 0 else negative_slope · x[i]``, of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``negative_slope`` is not a number (None, a string, a bool); ``x`` is not a Tensor.

    Example:
        >>> F.leaky_relu(mf.tensor([-2.0, 3.0]), negative_slope=0.1)
        tensor([-0.2,  3. ])
    """
    if type(negative_slope) is not float:  # the default and the usual case skip the check
        negative_slope = checks.number("leaky_relu", "negative_slope", negative_slope)
    return activation.LeakyReLU.apply(_floating("leaky_relu", x), negative_slope=negative_slope)


def sigmoid(x) -> Tensor:
    """Logistic function ``1 / (1 + e^-x)``, stable for large ``|x|``.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.

    Returns:
        ``out[i] = 1 / (1 + e^-x[i])``, in (0, 1), of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``x`` is not a Tensor (wrap arrays with :func:`minifb.tensor`).

    Example:
        >>> F.sigmoid(mf.tensor([0.0, 2.0]))
        tensor([0.5   , 0.8808])
    """
    return activation.Sigmoid.apply(_floating("sigmoid", x))


def tanh(x) -> Tensor:
    """Hyperbolic tangent.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.

    Returns:
        ``out[i] = (e^x[i] - e^-x[i]) / (e^x[i] + e^-x[i])``, in (-1, 1), of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``x`` is not a Tensor (wrap arrays with :func:`minifb.tensor`).

    Example:
        >>> F.tanh(mf.tensor([0.0, 1.0]))
        tensor([0.    , 0.7616])
    """
    return activation.Tanh.apply(_floating("tanh", x))


def softplus(x) -> Tensor:
    """``log(1 + e^x)``, stable for large ``|x|``.

    A smooth :func:`relu`; its derivative is :func:`sigmoid`.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.

    Returns:
        ``out[i] = log(1 + e^x[i])``, positive, of ``x``'s shape and floating dtype.

    Raises:
        TypeError: ``x`` is not a Tensor (wrap arrays with :func:`minifb.tensor`).

    Example:
        >>> F.softplus(mf.tensor([0.0, 1.0]))
        tensor([0.6931, 1.3133])
    """
    return activation.Softplus.apply(_floating("softplus", x))


def gelu(x, approximate="none") -> Tensor:
    """Gaussian error linear unit ``x·Φ(x)``; ``approximate="tanh"`` uses the tanh formula.

    The exact form evaluates ``Φ`` through an approximation of ``erf`` whose fractional error is below
    1.2e-7 (NumPy has no ``erf``; see ``ops.activation.erf_array``): exact to float32 precision in absolute
    terms (the relative error grows in the far negative tail, ~2e-4 at x = -8, where the values are
    ~1e-14), and within about 1e-8 of PyTorch's in float64, not to float64's last digit.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.
        approximate: ``"none"`` (default) for ``Φ(x) = (1 + erf(x/√2)) / 2``, the standard normal CDF, or
            ``"tanh"`` for ``x·Φ(x) ≈ x/2 · (1 + tanh(√(2/π) · (x + 0.044715·x³)))``.

    Returns:
        ``out[i] = x[i] · Φ(x[i])`` (or its tanh approximation), of ``x``'s shape and floating dtype.

    Raises:
        ValueError: ``approximate`` is neither ``"none"`` nor ``"tanh"``.
        TypeError: ``x`` is not a Tensor.

    Example:
        >>> F.gelu(mf.tensor([0.0, 1.0])), F.gelu(mf.tensor([0.0, 1.0]), approximate="tanh")
        (tensor([0.    , 0.8413]), tensor([0.    , 0.8412]))
    """
    checks.choice("gelu", "approximate", approximate, ("none", "tanh"))
    return activation.GELU.apply(_floating("gelu", x), approximate=approximate)


def _one_axis(fn, axis, ndim) -> tuple:
    """The single axis a softmax normalises over, as a tuple: ``(axis,)``, or ``()`` for a 0-d tensor."""
    if not backend.is_int(axis):
        raise TypeError(f"{fn}: axis must be one int (the axis to normalise over), got {axis!r}")
    axis = reduce.check_axis(axis, ndim, fn=fn)  # a 0-d tensor takes 0 or -1, as in PyTorch
    return (axis,) if ndim else ()


def softmax(x, axis=-1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along one axis ``axis`` (stable).

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.
        axis: the one axis to normalise over (default -1, the last; negative counts from the end). A 0-d
            tensor takes 0 or -1, as in PyTorch.

    Returns:
        ``x``'s shape and floating dtype, with ``out_i = exp(x_i - max) / Σ_j exp(x_j - max)`` along
        ``axis`` (``max`` the largest ``x_j`` there, subtracted so that no ``exp`` overflows): non-negative
        values that sum to 1 along ``axis``.

    Raises:
        TypeError: ``x`` is not a Tensor, or ``axis`` is not one int (a tuple included).
        ValueError: ``axis`` is out of range.

    Example:
        >>> p = F.softmax(mf.tensor([[1.0, 2.0, 3.0]]))
        >>> p, p.sum(axis=-1)
        (tensor([[0.09  , 0.2447, 0.6652]]), tensor([1.]))
    """
    x = _floating("softmax", x)
    return sm.Softmax.apply(x, axis=_one_axis("softmax", axis, x.ndim))


def log_softmax(x, axis=-1) -> Tensor:
    """``x - logsumexp(x)`` along one axis ``axis`` (stable).

    More accurate than ``log(softmax(x))`` where a probability underflows.

    Args:
        x: a Tensor of any shape; a boolean or integer tensor becomes float32.
        axis: the one axis to normalise over (default -1, the last; negative counts from the end). A 0-d
            tensor takes 0 or -1, as in PyTorch.

    Returns:
        ``x``'s shape and floating dtype, with ``out_i = x_i - max - log Σ_j exp(x_j - max)`` along ``axis``
        (``max`` the largest ``x_j`` there): ``log(softmax(x))``.

    Raises:
        TypeError: ``x`` is not a Tensor, or ``axis`` is not one int (a tuple included).
        ValueError: ``axis`` is out of range.

    Example:
        >>> F.log_softmax(mf.tensor([[0.0, 0.0], [0.0, 1.0]]))
        tensor([[-0.6931, -0.6931],
                [-1.3133, -0.3133]])
    """
    x = _floating("log_softmax", x)
    return sm.LogSoftmax.apply(x, axis=_one_axis("log_softmax", axis, x.ndim))


def activation_name(fn):
    """The fused-kernel name of an activation callable (``None``, ``relu``, ``sigmoid``, ``tanh``), else ``None``.

    Args:
        fn: an activation: ``None`` (none), or a callable such as :func:`relu`.

    Returns:
        ``"identity"`` for ``None``; ``"relu"``, ``"sigmoid"`` or ``"tanh"`` for exactly those functions of
        this module (which ``mf.relu`` etc. are); ``None`` for any other callable, which has no fused kernel.

    Example:
        >>> F.activation_name(F.relu), F.activation_name(None), F.activation_name(F.gelu)
        ('relu', 'identity', None)
    """
    if fn is None:
        return "identity"
    # by identity, not a dict lookup: an activation may be an unhashable callable (a dataclass instance)
    return "relu" if fn is relu else "sigmoid" if fn is sigmoid else "tanh" if fn is tanh else None


def _plain_act(act):
    """The unfused function of a fused activation name."""
    return {"identity": lambda t: t, "relu": relu, "sigmoid": sigmoid, "tanh": tanh}[act]


def _channel_bias(bias, ndim, axis):
    """``bias`` (C,) reshaped to broadcast along axis ``axis`` of an ``ndim``-d tensor."""
    return reshape(bias, (bias.shape[0],) + (1,) * (ndim - axis - 1))


def _check_bias(name, x, bias, axis):
    if x.ndim == 0:   # before the message below, which reads x.shape[axis]
        raise ValueError(f"{name}: x must have a channel axis, got a 0-d tensor")
    if bias.ndim != 1 or bias.shape[0] != x.shape[axis]:
        raise ValueError(f"{name}: bias of shape {bias.shape} does not match {x.shape[axis]} channels "
                         f"on axis {axis} of input shape {x.shape}")


def bias_act(x, bias, act="identity", axis=1) -> Tensor:
    """Fused ``act(x + bias)`` with ``bias`` (C,) along channel axis ``axis`` (one GPU kernel).

    The result has the dtype and values of the unfused expression (PyTorch's
    type promotion: a float64 bias gives float64, an integer input with a
    float32 bias float32); the kernel runs only when both operands are float32.

    Args:
        x: (..., C, ...) input, channel on ``axis``.
        bias: (C,).
        act: ``"identity"`` (default), ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
        axis: the channel axis of ``x`` that ``bias`` runs along (default 1,
            NCHW's channels; negative counts from the end).

    Returns:
        ``x``'s shape, with ``out[..., c, ...] = act(x[..., c, ...] + bias[c])`` (``c`` on ``axis``).

    Raises:
        TypeError: ``x`` or ``bias`` is not a Tensor, or ``axis`` is not an int.
        ValueError: ``act`` is not one of the four names; ``axis`` is out of range; ``x`` is 0-d or ``bias``
            is not (C,) for ``C = x.shape[axis]``.

    Example:
        >>> F.bias_act(mf.tensor([[1.0, -2.0]]), mf.tensor([0.5, 1.0]), "relu")
        tensor([[1.5, 0. ]])
        >>> F.bias_act(mf.ones(2, 3, 4, 4), mf.zeros(3), "sigmoid").shape
        (2, 3, 4, 4)
    """
    _check_tensor("bias_act", "x", x)
    _check_tensor("bias_act", "bias", bias)
    checks.choice("bias_act", "act", act, fused.ACTIVATIONS)
    axis = reduce.check_axis(axis, x.ndim, fn="bias_act")
    _check_bias("bias_act", x, bias, axis)
    dtype = x.dtype
    if bias.dtype != dtype or dtype.kind != "f":  # the rare case: promote as act(x + bias) would
        dtype = backend.result_type(x, bias)
        if dtype.kind != "f":  # an integer or boolean sum: exactly the unfused ops (no kernel is integer)
            return _plain_act(act)(add(x, _channel_bias(bias, x.ndim, axis)))
        x, bias = _cast(x, dtype), _cast(bias, dtype)
    return fused.BiasAct.apply(x, bias, act=act, axis=axis)


def merge_act(x, fb, bias, act="identity", axis=1) -> Tensor:
    """Fused Merger epilogue ``x + act(fb + bias)`` (one GPU kernel).

    The result has the dtype and values of the unfused expression, promoted
    step by step as written (an integer stream with a float32 feedback gives
    float32); the kernel runs only when all three operands are float32.

    Args:
        x: the forward stream, shape S.
        fb: the feedback pre-activation, shape S.
        bias: (C,) along channel axis ``axis``.
        act: the activation applied to ``fb + bias``: ``"identity"`` (default),
            ``"relu"``, ``"sigmoid"`` or ``"tanh"``.
        axis: the channel axis of S that ``bias`` runs along (default 1,
            NCHW's channels; negative counts from the end).

    Returns:
        shape S, with ``out[..., c, ...] = x[..., c, ...] + act(fb[..., c, ...] + bias[c])``.

    Raises:
        TypeError: ``x``, ``fb`` or ``bias`` is not a Tensor, or ``axis`` is not an int.
        ValueError: ``act`` is not one of the four names; ``x`` and ``fb`` differ in shape (no broadcasting);
            ``axis`` is out of range; ``bias`` is not (C,) for ``C = S[axis]``.

    Example:
        >>> F.merge_act(mf.ones(1, 2), mf.tensor([[-1.0, 2.0]]), mf.tensor([0.5, 0.5]), "relu")
        tensor([[1. , 3.5]])
    """
    _check_tensor("merge_act", "x", x)
    _check_tensor("merge_act", "fb", fb)
    _check_tensor("merge_act", "bias", bias)
    checks.choice("merge_act", "act", act, fused.ACTIVATIONS)
    if x.shape != fb.shape:
        raise ValueError(f"merge_act: stream shape {x.shape} and feedback shape {fb.shape} differ")
    axis = reduce.check_axis(axis, x.ndim, fn="merge_act")
    _check_bias("merge_act", x, bias, axis)
    dtype = x.dtype
    if fb.dtype != dtype or bias.dtype != dtype or dtype.kind != "f":  # the rare case: promote as the unfused ops
        inner = backend.result_type(fb, bias)                    # the dtype of fb + bias
        if inner.kind != "f" or backend.promote_types(x.dtype, inner) != inner:
            # fb + bias is not floating, or x widens it (so act(fb + bias) is computed in its own narrower
            # dtype before the add): run the two steps as written
            return add(x, bias_act(fb, bias, act, axis))
        x, fb, bias = _cast(x, inner), _cast(fb, inner), _cast(bias, inner)
    return fused.MergeAct.apply(x, fb, bias, act=act, axis=axis)


def lstm_pointwise(gi, gh, c) -> Tensor:
    """The elementwise part of an LSTM step, fused into one op (one GPU kernel).

    Args:
        gi: (B, 4H) input pre-activations ``x @ W_ih.T + b_ih``, gates in PyTorch's order i, f, g, o.
            Leading axes other than one B are allowed: (..., 4H).
        gh: (B, 4H) hidden pre-activations ``h @ W_hh.T + b_hh``.
        c: (B, H) previous cell state.

    Returns:
        (B, 2H): ``[h' | c']`` with ``c' = f·c + i·g`` and ``h' = o·tanh(c')``, where
        ``[i, f, g, o] = [σ, σ, tanh, σ](gi + gh)`` split into four H-wide chunks.

    Raises:
        TypeError: an argument is not a Tensor (boolean and integer tensors become float32).
        ValueError: the shapes do not fit together.

    Example:
        >>> hc = F.lstm_pointwise(mf.zeros(2, 12), mf.zeros(2, 12), mf.ones(2, 3))  # H = 3, every gate σ(0) = 0.5
        >>> hc.shape, hc[0]                                    # h' = 0.5·tanh(0.5), c' = 0.5·1 + 0.5·tanh(0)
        ((2, 6), tensor([0.2311, 0.2311, 0.2311, 0.5   , 0.5   , 0.5   ]))
    """
    return recurrent.LSTMPointwise.apply(_floating("lstm_pointwise", gi, "gi"), _floating("lstm_pointwise", gh, "gh"),
                                         _floating("lstm_pointwise", c, "c"))


def gru_pointwise(gi, gh, h) -> Tensor:
    """The elementwise part of a GRU step, fused into one op (one GPU kernel).

    Args:
        gi: (B, 3H) input pre-activations ``x @ W_ih.T + b_ih``, gates in PyTorch's order r, z, n.
            Leading axes other than one B are allowed: (..., 3H).
        gh: (B, 3H) hidden pre-activations ``h @ W_hh.T + b_hh``.
        h: (B, H) previous hidden state.

    Returns:
        (B, H): ``h' = (1 - z)·n + z·h`` with ``n = tanh(gi_n + r·gh_n)``,
        ``r = σ(gi_r + gh_r)`` and ``z = σ(gi_z + gh_z)``.

    Raises:
        TypeError: an argument is not a Tensor (boolean and integer tensors become float32).
        ValueError: the shapes do not fit together.

    Example:
        >>> h = F.gru_pointwise(mf.zeros(2, 9), mf.zeros(2, 9), mf.ones(2, 3))  # H = 3
        >>> h.shape, h[0]                                                      # z = 0.5, n = 0
        ((2, 3), tensor([0.5, 0.5, 0.5]))
    """
    return recurrent.GRUPointwise.apply(_floating("gru_pointwise", gi, "gi"), _floating("gru_pointwise", gh, "gh"),
                                        _floating("gru_pointwise", h, "h"))


# ---- losses -------------------------------------------------------------------------
_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits, labels, reduction="mean") -> Tensor:
    """Softmax cross-entropy against integer class labels.

    Args:
        logits: (N, C) or (N, C, d...) unnormalised scores; a boolean or integer tensor becomes float32.
        labels: (N,) or (N, d...) integers in ``[0, C)``: a Tensor, an array or a (nested) list.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or per-sample losses for ``"none"`` (of ``labels``' shape), in ``logits``' floating dtype.
        Sample ``n``'s loss is ``log Σ_c exp(logits[n, c]) - logits[n, labels[n]]``, i.e.
        ``-log_softmax(logits, axis=1)[n, labels[n]]`` (likewise at each position ``d...``); ``"mean"``
        averages over all of them.

    Raises:
        TypeError: ``logits`` is not a Tensor, or ``labels`` are not integers.
        ValueError: ``reduction`` is not one of the three; ``logits`` has fewer than 2 axes; ``labels`` has
            the wrong shape or a value outside ``[0, C)``.

    Example:
        >>> F.cross_entropy(mf.zeros(4, 10, requires_grad=True), mf.tensor([1, 0, 9, 3]))  # uniform: log 10
        tensor(2.3026, grad_fn=CrossEntropy)
    """
    checks.choice("cross_entropy", "reduction", reduction, _REDUCTIONS)
    logits = _floating("cross_entropy", logits, "logits")
    if logits.ndim < 2:
        raise ValueError(f"cross_entropy: logits must have shape (N, C) or (N, C, d1, ...), "
                         f"got shape {logits.shape}")
    labels_data = labels.data if isinstance(labels, Tensor) else labels
    if not hasattr(labels_data, "shape"):
        labels_data = _list_array("cross_entropy", labels_data) if isinstance(labels_data, (list, tuple)) \
            else np.asarray(labels_data)
    if labels_data.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels_data.dtype}")
    if labels_data.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"cross_entropy: logits of shape {logits.shape} need labels of shape "
                         f"{logits.shape[:1] + logits.shape[2:]}, got {labels_data.shape}")
    # one pass and one wait on a GPU (the range is only computed for the message)
    if labels_data.size and bool(((labels_data < 0) | (labels_data >= logits.shape[1])).any()):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), "
                         f"got range [{int(labels_data.min())}, {int(labels_data.max())}]")
    labels_data = backend.to_device(labels_data, logits.device)  # checked on the host when they came from there
    return loss.CrossEntropy.apply(logits, labels=labels_data, reduction=reduction)


def mse_loss(pred, target, reduction="mean") -> Tensor:
    """Squared error ``(pred - target)²``, averaged (default) or summed; shapes must match exactly.

    Args:
        pred: the prediction, a Tensor (or a number, list or array) of any shape.
        target: the target, of exactly ``pred``'s shape; promoted with ``pred`` to one dtype.
        reduction: ``"mean"`` (default) for ``mean((pred - target)²)`` over all elements, ``"sum"`` for
            ``Σ (pred - target)²``, or ``"none"`` for the elementwise ``(pred - target)²``.

    Returns:
        A 0-d tensor for ``"mean"`` and ``"sum"``, ``pred``'s shape for ``"none"``; floating inputs keep
        their (promoted) dtype.

    Raises:
        TypeError: ``pred`` or ``target`` is not a Tensor, number, list or array.
        ValueError: the shapes differ (there is no broadcasting), or ``reduction`` is not one of the three.

    Example:
        >>> pred, target = mf.tensor([1.0, 2.0]), mf.tensor([0.0, 0.0])
        >>> F.mse_loss(pred, target), F.mse_loss(pred, target, reduction="none")  # (1 + 4) / 2
        (tensor(2.5), tensor([1., 4.]))
    """
    pred, target = _promote("mse_loss", pred, target, floating=True)   # integer inputs: float32, as mean
    if pred.shape != target.shape:
        raise ValueError(f"mse_loss: prediction shape {pred.shape} and target shape {target.shape} differ")
    checks.choice("mse_loss", "reduction", reduction, _REDUCTIONS)
    return loss.MSE.apply(pred, target, reduction=reduction)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean") -> Tensor:
    """Sigmoid cross-entropy ``-[y·log σ(z) + (1-y)·log(1-σ(z))]``, computed stably from logits.

    Args:
        logits: ``z``, unnormalised scores, a Tensor (or a number, list or array) of any shape.
        targets: ``y``, of exactly ``logits``' shape, usually in [0, 1] (probabilities or 0/1 labels);
            promoted with ``logits`` to one dtype.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        A 0-d tensor for ``"mean"`` and ``"sum"``, the per-element losses (``logits``' shape) for ``"none"``.
        Each is computed as ``max(z, 0) - z·y + log(1 + exp(-|z|))``, equal to the formula above without
        overflow for large ``|z|``.

    Raises:
        TypeError: ``logits`` or ``targets`` is not a Tensor, number, list or array.
        ValueError: the shapes differ (there is no broadcasting), or ``reduction`` is not one of the three.

    Example:
        >>> z, y = mf.tensor([0.0, 0.0]), mf.tensor([0.0, 1.0])
        >>> F.binary_cross_entropy_with_logits(z, y)  # σ(0) = 0.5 for either label: log 2
        tensor(0.6931)
    """
    logits, targets = _promote("binary_cross_entropy_with_logits", logits, targets, floating=True)
    if logits.shape != targets.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: logits shape {logits.shape} and "
                         f"targets shape {targets.shape} differ")
    checks.choice("binary_cross_entropy_with_logits", "reduction", reduction, _REDUCTIONS)
    return loss.BCEWithLogits.apply(logits, targets, reduction=reduction)


def dropout(x, p=0.5, training=True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1/(1-p)`` (identity when not training).

    A boolean or integer input is first converted to float32. With ``p = 1``
    training gives zeros (as in PyTorch; there is nothing left to scale).

    Args:
        x: a Tensor of any shape.
        p: the probability of zeroing each element, a number in [0, 1] (default 0.5).
        training: True (default) to drop; False returns ``x`` unchanged.

    Returns:
        ``x``'s shape and floating dtype. In training ``x·mask/(1-p)``, with ``mask`` independent 0/1 draws
        that are 1 with probability ``1 - p`` (from the generator :func:`minifb.manual_seed` seeds), so the
        expected value is ``x``; backward multiplies by the same ``mask/(1-p)``. When not training, or for
        ``p = 0``, the identity: ``x`` itself (after the float conversion).

    Raises:
        TypeError: ``x`` is not a Tensor; ``p`` is not a number, or ``training`` is not True or False.
        ValueError: ``p`` is outside [0, 1].

    Example:
        >>> x = mf.tensor([[1.0, 2.0]])
        >>> F.dropout(x, p=0.5, training=False) is x
        True
        >>> F.dropout(mf.ones(3, 4), p=0.25).shape
        (3, 4)
    """
    x = _floating("dropout", x)
    p = checks.number("dropout", "p", p, at_least=0, at_most=1)
    if not checks.flag("dropout", "training", training) or p == 0:
        return x
    if p == 1:
        return x * 0.0
    return dropout_ops.Dropout.apply(x, p=p)
