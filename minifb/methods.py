"""Tensor's operators and methods, bound explicitly to :mod:`minifb.functional`.

Kept apart from :mod:`minifb.tensor` so the tape machinery knows no particular
op (except :meth:`Tensor.to`'s ``ToDevice`` and the two deferred gradients,
``ProductSum`` from :class:`~minifb.ops.matmul.Linear` and ``SliceSum`` from
:class:`~minifb.ops.movement.GetItem`; see :mod:`minifb.tensor`).
Comparisons return boolean tensors, and the bitwise operators ``& | ^ ~``
work on boolean and integer tensors; neither is ever differentiated.  The
in-place operators ``+= -= *= /= **= &= |= ^=`` write into the tensor's own
array and record nothing (a manual optimiser step under ``mf.no_grad()``);
while the tape records, with a tensor that requires grad, they record the
out-of-place op instead, and refuse a parameter as PyTorch does.
"""

import numbers
import operator

import numpy as np

from . import backend
from . import functional as F
from .tensor import Tensor, data_of, is_grad_enabled, no_grad


def _reflected(fn, symbol, name):
    """The reflected operator ``other <symbol> self``, for a left operand that is not a Tensor."""
    def reflected(self, other):
        return fn(other, self)

    reflected.__name__ = reflected.__qualname__ = name
    reflected.__doc__ = (f"``other {symbol} self``: Python calls this when the left operand (a number, "
                         f"list or array) does not handle ``{symbol}`` with a Tensor; see "
                         f":func:`minifb.functional.{fn.__name__}`.")
    return reflected


def _compare(name, symbol):
    fn = getattr(operator, name.strip("_"))

    def compare(self, other):
        raw = _raw_operand(other, self.device, symbol)
        if raw is None:
            return NotImplemented
        return Tensor(_broadcasting(symbol, fn, self.data, raw))

    compare.__name__ = name
    compare.__doc__ = (f"Elementwise comparison ``self {symbol} other`` (boolean result, no gradient).\n\n"
                       f"Raises:\n    ValueError: the shapes do not broadcast together.")
    return compare


def _broadcasting(symbol, fn, a, b):
    """``fn(a, b)`` on arrays or numbers, with a broadcast error that names ``symbol`` and both shapes, as
    arithmetic's does, instead of NumPy's bare message."""
    try:
        return fn(a, b)
    except ValueError:
        F._check_broadcast(symbol, np.shape(a), np.shape(b))
        raise


def _raw_operand(value, device, symbol):
    """``value`` as a raw operand of a comparison or bitwise operator on ``device``, or None when it is
    not one (no Tensor, array, list or number): the caller then returns NotImplemented so that Python
    raises its usual TypeError.  Lists and arrays are put on the device as arithmetic's operands are
    (CuPy's operators take neither a list nor a NumPy array); a ragged list is refused with a ValueError
    that names the operator ``symbol``."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, (list, tuple)):
        return backend.to_device(F._list_array(symbol, value), device)
    if isinstance(value, numbers.Number):
        return value
    if hasattr(value, "dtype") and hasattr(value, "ndim"):
        return backend.to_device(value, device)   # 0-d too: a NumPy 0-d array meets a CUDA tensor's array
    return None


def _check_bitwise(symbol, *operands):
    """Raise TypeError unless every operand (an array or a Python number) is boolean or integer."""
    integral = [np.dtype(v.dtype).kind in "biu" if hasattr(v, "dtype") else isinstance(v, numbers.Integral)
                for v in operands]
    if not all(integral):
        names = [str(v.dtype) if hasattr(v, "dtype") else type(v).__name__ for v in operands]
        example = "~(x > 0)" if symbol == "~" else f"(x > 0) {symbol} (x < 1)"
        raise TypeError(f"{symbol}: only boolean and integer tensors are supported, got {' and '.join(names)}; "
                        f"for a mask, compare first, e.g. {example}")


def _bitwise(fn, symbol, name, reflected=False):
    """The operator ``self <symbol> other`` (``other <symbol> self`` when ``reflected``), without gradient."""
    def bitwise(self, other):
        other = _raw_operand(other, self.device, symbol)
        if other is None:
            return NotImplemented
        a, b = (other, self.data) if reflected else (self.data, other)
        _check_bitwise(symbol, a, b)
        backend.array_module(a, b)  # a clear error for operands on different devices
        dtype = backend.result_type(a, b)  # promoted as arithmetic is (int32 & a 0-d int64 -> int32)
        out = _broadcasting(symbol, fn, *[v.astype(dtype, copy=False) if hasattr(v, "dtype") else v for v in (a, b)])
        # NumPy 1.x's value-based casting widens a 0-d array with a Python int; the rule above decides
        return Tensor(out if out.dtype == dtype else out.astype(dtype))

    bitwise.__name__ = bitwise.__qualname__ = name
    order = f"other {symbol} self" if reflected else f"self {symbol} other"
    bitwise.__doc__ = (f"``{order}``: elementwise bitwise {fn.__name__.rstrip('_')} of boolean or integer "
                       f"tensors (logical for booleans), broadcast and promoted as arithmetic is; no gradient.")
    return bitwise


def _invert(self):
    """``~self``: logical not of a boolean tensor, bitwise not of an integer one; no gradient.

    Raises:
        TypeError: the tensor is floating-point (as in NumPy and PyTorch).
    """
    _check_bitwise("~", self.data)
    return Tensor(~self.data)


def _inplace(out_of_place, symbol, name):
    """The in-place operator ``self <symbol>= other``, which writes ``self <symbol> other`` into ``self.data``."""
    def inplace(self, other):
        if is_grad_enabled() and (self.requires_grad or (isinstance(other, Tensor) and other.requires_grad)):
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(
                    f"{symbol}=: a leaf tensor that requires grad (a parameter) updated in place while the tape "
                    f"is recording, as PyTorch refuses too; update it under `with mf.no_grad():` as an optimiser "
                    f"does, or write y = x {symbol} other for a new, recorded tensor")
            # The tape records no in-place ops: record the out-of-place one and let Python bind its result to the
            # name (``loss += step_loss`` in a BPTT loop). Other references keep the old tensor, whose values the
            # ops that saved them still need.
            return out_of_place(self, other)
        if not backend.is_writable(self.data):
            raise ValueError(f"{symbol}=: the tensor of shape {self.shape} is a read-only array (a broadcast view, "
                             f"say); use x = x {symbol} y, or make it writable with mf.tensor(x) (a copy)")
        with no_grad():
            out = out_of_place(self, other)
        if out is NotImplemented:   # an operand the operator does not take: Python raises its TypeError
            return NotImplemented
        if out.shape != self.shape:
            raise ValueError(f"{symbol}=: the result's broadcast shape {out.shape} differs from the shape "
                             f"{self.shape} of the tensor updated in place (other operand of shape "
                             f"{np.shape(data_of(other))}); write x = x {symbol} y for a new tensor")
        if not np.can_cast(out.dtype, self.dtype, "same_kind"):
            raise TypeError(f"{symbol}=: the result's dtype {out.dtype} cannot be cast to the dtype {self.dtype} "
                            f"of the tensor updated in place; write x = x {symbol} y for a new tensor")
        self.data[...] = out.data
        self._version += 1   # graphs recorded before this update can no longer backward
        return self

    inplace.__name__ = inplace.__qualname__ = name
    inplace.__doc__ = f"""``self {symbol}= other``: update ``self.data`` in place with ``self {symbol} other``.

    ``self {symbol} other`` is computed as the operator does (broadcasting, type promotion), then written
    into ``self``'s array, cast to its dtype; views of that array see the update, as in NumPy and PyTorch.
    No op is recorded, so it is for updates outside the tape, the manual SGD step::

        with mf.no_grad():
            for p in params:
                p -= lr * p.grad

    The update increases the tensor's version, so backward through a graph recorded before it is refused.

    While the tape is recording and ``self`` or ``other`` requires grad, the tape records no in-place op:
    ``x {symbol}= other`` then records ``x {symbol} other`` and binds the new tensor to the name, so that
    ``loss += step_loss`` accumulates a recorded sum; other references to the old tensor keep its values.

    Args:
        other: a Tensor, Python number, (nested) list or array, broadcastable to ``self``'s shape.

    Returns:
        ``self``, updated.

    Raises:
        RuntimeError: ``self`` is a leaf that requires grad (a parameter) and the tape is recording (not
            under :class:`minifb.no_grad`), as in PyTorch.
        ValueError: ``self``'s array is read-only; the broadcast shape is not ``self``'s shape.
        TypeError: the result's dtype cannot be cast to ``self``'s under NumPy's ``same_kind`` rule
            (a floating-point result into an integer tensor).

    Example:
        >>> p = mf.tensor([1.0, 2.0], requires_grad=True)
        >>> with mf.no_grad():
        ...     p -= 0.5 * mf.tensor([2.0, 2.0])
        >>> p
        tensor([0., 1.], requires_grad=True)
    """
    return inplace


def _imatmul(self, other):
    """``self @= other``: refused, as in PyTorch (a product has its own shape, so it cannot be written into
    ``self``'s array, and a silent rebinding would leave ``self`` unchanged where the name is a loop variable).

    Raises:
        TypeError: always; write ``x = x @ y``.
    """
    raise TypeError("@=: in-place matmul is not supported, as in PyTorch; write x = x @ y")


def _flatten(self, start_axis=0, end_axis=-1):
    """Merge axes ``start_axis..end_axis`` into one; by default everything, as ``ndarray.flatten``.

    See :func:`minifb.functional.flatten` (whose ``start_axis`` defaults to 1).
    """
    return F.flatten(self, start_axis, end_axis)


def _T(self):
    """The tensor with its axes reversed (a matrix transposed)."""
    return F.transpose(self)


Tensor.__add__ = F.add
Tensor.__radd__ = _reflected(F.add, "+", "__radd__")
Tensor.__sub__ = F.sub
Tensor.__rsub__ = _reflected(F.sub, "-", "__rsub__")
Tensor.__mul__ = F.mul
Tensor.__rmul__ = _reflected(F.mul, "*", "__rmul__")
Tensor.__truediv__ = F.div
Tensor.__rtruediv__ = _reflected(F.div, "/", "__rtruediv__")
Tensor.__pow__ = F.pow
Tensor.__rpow__ = _reflected(F.pow, "**", "__rpow__")
Tensor.__matmul__ = F.matmul
Tensor.__rmatmul__ = _reflected(F.matmul, "@", "__rmatmul__")
Tensor.__rmatmul__.__doc__ = ("``other @ self`` for a left operand that is not a Tensor: always refused, with "
                              ":func:`minifb.functional.matmul`'s TypeError, since matmul takes Tensors only "
                              "(wrap an array with ``mf.tensor``), as PyTorch's does.")
Tensor.__neg__ = F.neg


def _positive(x):
    """``+x``: ``x`` itself, as in PyTorch (no op is recorded)."""
    return x


Tensor.__pos__ = _positive
Tensor.__abs__ = F.abs
Tensor.__getitem__ = F.getitem
for _name, _symbol in (("__lt__", "<"), ("__le__", "<="), ("__gt__", ">"), ("__ge__", ">="), ("__eq__", "=="),
                       ("__ne__", "!=")):
    setattr(Tensor, _name, _compare(_name, _symbol))

for _fn, _symbol, _name in ((operator.and_, "&", "and"), (operator.or_, "|", "or"), (operator.xor, "^", "xor")):
    setattr(Tensor, f"__{_name}__", _bitwise(_fn, _symbol, f"__{_name}__"))
    setattr(Tensor, f"__r{_name}__", _bitwise(_fn, _symbol, f"__r{_name}__", reflected=True))
Tensor.__invert__ = _invert
for _fn, _symbol, _name in ((F.add, "+", "add"), (F.sub, "-", "sub"), (F.mul, "*", "mul"),
                            (F.div, "/", "truediv"), (F.pow, "**", "pow"), (Tensor.__and__, "&", "and"),
                            (Tensor.__or__, "|", "or"), (Tensor.__xor__, "^", "xor")):
    setattr(Tensor, f"__i{_name}__", _inplace(_fn, _symbol, f"__i{_name}__"))
Tensor.__imatmul__ = _imatmul

Tensor.sum = F.sum
Tensor.mean = F.mean
Tensor.max = F.max
Tensor.min = F.min
Tensor.reshape = F.reshape
Tensor.transpose = F.transpose
Tensor.T = property(_T)
Tensor.flatten = _flatten
Tensor.exp = F.exp
Tensor.log = F.log
Tensor.sqrt = F.sqrt
Tensor.abs = F.abs
Tensor.tanh = F.tanh
Tensor.sigmoid = F.sigmoid
Tensor.relu = F.relu
Tensor.softmax = F.softmax
Tensor.log_softmax = F.log_softmax
Tensor.clip = F.clip
Tensor.matmul = F.matmul
