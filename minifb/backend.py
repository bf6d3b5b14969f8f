"""Where arrays live: NumPy on the CPU, CuPy on an NVIDIA GPU.

Every op in minifb is written once against an *array module* ``xp`` (either
``numpy`` or ``cupy``), found from its inputs with :func:`array_module`.  This
module is the only place that imports ``cupy``; it imports it lazily so that
minifb works with CuPy absent, and also with CuPy installed on a machine that
has no GPU.  Elsewhere CuPy shows up in a few places only: the rest of
minifb tells a backend array by :func:`is_array` (a CuPy array is recognised
by its type's module name, without importing anything), and
:mod:`minifb.kernels` compiles its CUDA kernels with the ``cupy`` module that
:func:`cupy_or_none` hands it, and its GPU compile check imports NVRTC from
CuPy's ``cupy_backends`` package.

The random generator is an explicit object per device, seeded with
:func:`manual_seed`.
"""

from __future__ import annotations

import decimal
import numbers

import numpy as np

from . import checks

DEFAULT_DTYPE = np.float32

_CATEGORIES = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}  # bool < integer < floating < complex


def _category(dtype) -> int:
    kind = np.dtype(dtype).kind
    if kind not in _CATEGORIES:
        raise TypeError(f"unsupported dtype {np.dtype(dtype)}: expected a boolean, integer or floating dtype")
    return _CATEGORIES[kind]


def promote_types(a, b) -> np.dtype:
    """PyTorch's ``promote_types``: the higher category wins, so an integer with a float gives the float.

    Within a category NumPy's rules apply (``float32`` with ``float64`` gives ``float64``), and so they do
    for a float with a complex, whose precision the complex keeps (``float64`` with ``complex64`` gives
    ``complex128``, as in PyTorch).
    """
    ca, cb = _category(a), _category(b)
    if ca != cb and {ca, cb} != {2, 3}:
        return np.dtype(a if ca > cb else b)
    return np.promote_types(a, b)


def _number_dtype(value) -> np.dtype:
    if isinstance(value, bool):
        return np.dtype(bool)
    if isinstance(value, numbers.Integral):
        return np.dtype(np.int64)
    if isinstance(value, (numbers.Real, decimal.Decimal)):   # a Decimal is a Number but not registered as Real
        return np.dtype(DEFAULT_DTYPE)
    return np.result_type(DEFAULT_DTYPE, np.complex64)


def result_type(*values, floating: bool = False) -> np.dtype:
    """The dtype of an elementwise op on ``values``: PyTorch's type promotion, float32 the default float.

    ``values`` are arrays or tensors (anything with ``dtype`` and ``ndim``) and Python numbers. They
    rank in three tiers: those with at least one dimension, 0-d ones, numbers. A lower tier decides
    the dtype only when it is of a higher category (bool < integer < floating), and a Python float
    then counts as float32.

    Args:
        *values: the operands.
        floating: the op always gives a floating result (true division, ``exp``, ``sigmoid``, ...):
            a boolean or integer result becomes float32.

    Example:
        >>> from minifb.backend import result_type
        >>> result_type(np.ones(2, np.int64), np.ones(2, np.float32))     # int with float: the float
        dtype('float32')
        >>> result_type(np.ones(2, np.float32), np.float64(1).reshape(()))  # a 0-d operand: same category
        dtype('float32')
        >>> result_type(np.ones(2, np.uint8), 255), result_type(np.ones(2, np.uint8), 0.5)
        (dtype('uint8'), dtype('float32'))
    """
    tiers = [None, None, None]
    for v in values:
        if isinstance(v, numbers.Number):
            tier, dtype = 2, _number_dtype(v)
        else:
            tier, dtype = (0 if v.ndim else 1), np.dtype(v.dtype)
        tiers[tier] = dtype if tiers[tier] is None else promote_types(tiers[tier], dtype)
    result = None
    for dtype in reversed(tiers):  # from numbers up to tensors with dimensions
        if dtype is not None and (result is None or _category(dtype) >= _category(result)):
            result = dtype
        elif dtype is not None and result.kind == "c" and dtype.kind == "f":
            result = np.promote_types(result, dtype)   # a complex number keeps a float64 tensor's precision
    if result is None:
        raise ValueError("result_type: needs at least one operand")
    if floating and _category(result) < 2:
        result = np.dtype(DEFAULT_DTYPE)
    return result


def sum_array(a, axis=None, keepdims=False):
    """``a.sum(axis, keepdims)`` with PyTorch's accumulators: int64 for bool and integer input, float32 for float16.

    NumPy would keep a bool or unsigned sum in a narrow type, and adds a float16 axis that is not the
    innermost in float16, one row at a time (5000 rows drift by a fifth). A float16 sum is cast back to
    float16, as PyTorch returns it.

    Example:
        >>> from minifb.backend import sum_array
        >>> int(sum_array(np.full(300, 255, np.uint8)))
        76500
        >>> a = np.full((5000, 2), 0.1, np.float16)
        >>> a.sum(axis=0), sum_array(a, axis=0)       # NumPy's float16 running sum stalls at 256
        (array([256., 256.], dtype=float16), array([500., 500.], dtype=float16))
    """
    if a.dtype.kind in "bu":
        return a.sum(axis=axis, keepdims=keepdims, dtype=np.int64)
    if a.dtype == np.float16:
        return a.sum(axis=axis, keepdims=keepdims, dtype=np.float32).astype(np.float16)
    return a.sum(axis=axis, keepdims=keepdims)


def is_array(value) -> bool:
    """Whether ``value`` is a backend array: a NumPy ``ndarray`` or a CuPy one, recognised by its type's
    module name so that CuPy need not be imported."""
    return isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy")


def is_writable(array) -> bool:
    """Whether ``array`` may be written in place: NumPy's ``writeable`` flag (False for a broadcast view or a
    read-only memory map). A CuPy array has no such flag and CuPy lets every view be written, a broadcast one
    too, where several elements share one address and the result of a write is undefined; so a CuPy array with
    a zero stride on an axis longer than 1 counts as not writable, as NumPy's broadcast views are."""
    writeable = getattr(array.flags, "writeable", None)
    if writeable is not None:
        return bool(writeable)
    return not any(stride == 0 and n > 1 for stride, n in zip(array.strides, array.shape))


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool: the check for axes, sizes and counts."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def broadcast_shape(*shapes) -> tuple | None:
    """The shape NumPy's broadcasting gives ``shapes`` together, or ``None`` when they do not broadcast."""
    try:
        return tuple(np.broadcast_shapes(*(tuple(s) for s in shapes)))
    except ValueError:
        return None


_cupy = None          # the cupy module once it has been found usable
_cupy_checked = False  # whether we have looked for it yet


def cupy_or_none():
    """Return the ``cupy`` module if it is installed and a GPU is present, else ``None``.

    The probe runs once, on first use (never at import time).
    """
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: PLC0415 - optional dependency

            if cupy.cuda.runtime.getDeviceCount() > 0:
                _cupy = cupy
        except Exception:  # ImportError, or CUDA driver/runtime errors without a GPU
            _cupy = None
    return _cupy


def cuda_available() -> bool:
    """Whether tensors can be placed on ``"cuda"`` (CuPy installed and a GPU present).

    Example:
        >>> device = "cuda" if mf.cuda_available() else "cpu"
        >>> mf.zeros(2, device=device).device == device
        True
    """
    return cupy_or_none() is not None


def array_module(*arrays):
    """Return ``numpy`` or ``cupy``: the module that owns the given arrays.

    Non-array arguments (Python numbers, ``None``) are ignored.  Mixing CPU and
    GPU arrays is an error.
    """
    on_cpu = on_gpu = False
    for a in arrays:  # one pass, no generator: ops call this several times each
        if isinstance(a, np.ndarray):
            on_cpu = True
        elif type(a).__module__.startswith("cupy"):
            on_gpu = True
    if not on_gpu:
        return np
    if on_cpu:
        raise ValueError("arrays live on different devices (cpu and cuda); move them with .to(device)")
    return cupy_or_none()


def device_of(array) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cuda" if array_module(array) is not np else "cpu"


def check_device(device) -> str:
    """Normalise a device name and check that it is usable.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:0"`` (minifb uses one GPU, the first), or ``None`` for
            ``"cpu"``; anything else is refused, ``"cuda:1"``, ``""`` and ``0`` included.

    Returns:
        ``"cpu"`` or ``"cuda"``.

    Raises:
        ValueError: ``device`` is not one of those names.
        RuntimeError: a cuda device without CuPy and a GPU.
    """
    if device is None:
        return "cpu"
    name = str(device)   # a torch.device("cpu") reads as "cpu"
    if name in ("cuda", "cuda:0"):
        if not cuda_available():
            raise RuntimeError("device 'cuda' requested but CuPy with a GPU is not available "
                               "(install minifb[cuda12] or minifb[cuda13] on a machine with an NVIDIA GPU)")
        return "cuda"
    if name != "cpu":
        raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:0'")
    return name


def xp_for(device: str):
    """The array module for a device name."""
    return cupy_or_none() if check_device(device) == "cuda" else np


def to_device(array, device: str):
    """Return ``array`` on ``device``, copying between host and GPU only when needed."""
    device = check_device(device)
    if device == "cuda":
        return cupy_or_none().asarray(array)
    if device_of(array) == "cuda":
        return array.get()
    return np.asarray(array)


def to_numpy(array) -> np.ndarray:
    """A NumPy copy-or-view of any backend array."""
    return to_device(array, "cpu")


class _Random:
    """Per-device random generators, created on first use and reset by :func:`manual_seed`."""

    def __init__(self):
        self.seed = None
        self.generators = {}

    def generator(self, device: str):
        gen = self.generators.get(device)
        if gen is None:
            if device == "cuda":
                gen = cupy_or_none().random.default_rng(self.seed)
            else:
                gen = np.random.default_rng(self.seed)
            self.generators[device] = gen
        return gen


_random = _Random()


def manual_seed(seed: int) -> None:
    """Seed minifb's random generators (parameter initialisation, ``randn``, dropout, ...).

    Every device's generator restarts from ``seed``: the CPU one (which also
    draws the initial weights of every layer, whatever device the model moves
    to) and, when used, the GPU one.  Until it is called, the generators are
    seeded from the operating system's entropy.

    Args:
        seed: an integer >= 0 (Python or NumPy, not a bool).

    Returns:
        None.

    Raises:
        ValueError: ``seed`` is not an integer >= 0 (``1.0`` and ``True`` included).

    Example:
        >>> mf.manual_seed(42)
        >>> a = mf.randn(3)
        >>> mf.manual_seed(42)
        >>> np.array_equal(mf.randn(3).numpy(), a.numpy())
        True
    """
    _random.seed = checks.integer("manual_seed", "seed", seed, minimum=0)
    _random.generators.clear()


def rng(device: str = "cpu"):
    """The random generator (a NumPy/CuPy ``Generator``) for ``device``."""
    return _random.generator(check_device(device))
