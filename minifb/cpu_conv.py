"""The compiled CPU convolution: ``kernels/conv_cpu.cpp``, built once per machine and called through ctypes.

On NumPy the array path of :mod:`minifb.ops.conv` convolves with im2col and one BLAS product, and half of a
convolution step goes into writing and reading the column matrices (benchmarks/NOTES.md, "Session 11").
``conv_cpu.cpp`` convolves directly instead: output tiles are summed in vector registers straight from the
padded channels-last input, with no column matrix, on all cores (:func:`set_num_threads`). This module finds a C++ compiler,
builds the library (cached on disk beside the kernel emulation's, keyed by the source, the flags, the
compiler and the CPU, since it is built for this machine's instruction set), and exposes the three
primitives on raw channels-last NumPy arrays. :mod:`minifb.ops.conv` does the layout work around them and
keeps its NumPy path as the reference they are tested against, and as the path taken where no compiler is
present.

Whether the compiled path is used is :func:`enabled`: ``MINIFB_CPU_CONV`` (read at call time) is ``auto``
(the default: when the library builds), ``on`` (the library must build: an error says why it does not) or
``off``; ``with cpu_conv.use(False): ...`` overrides it within a block (the benchmarks and tests compare
the two paths that way).

Only float32 and float64 arrays take this path; other dtypes, and arrays of other modules (CuPy), use the
array path.

The same library also computes small, narrow matrix products (:func:`matmul`, chosen by :func:`product`,
which the matrix-product ops call instead of ``@``, and used for large bias-gradient sums): NumPy's BLAS
runs those on all its threads, which then spin and take the cores the convolution's threads need (see
:func:`matmul`). And the LSTM's pointwise step in float32 (:func:`lstm_forward`, :func:`lstm_backward`),
one pass where NumPy makes about twenty small calls, and the SGD optimiser's step (:func:`sgd_step`), one
pass where NumPy makes two to five. All of it follows the same switches.

``MINIFB_KERNELS_ASAN=1`` builds the library with AddressSanitizer, as it does the emulated kernels (see
:mod:`minifb.kernels`).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import hashlib
import os
import platform
import sys
import threading
import warnings

import numpy as np

from . import checks, kernels

_FLAGS = ["-x", "c++", "-std=c++17", "-O3", "-march=native", "-pthread", "-fPIC", "-shared"]
if platform.machine().lower() in ("x86_64", "amd64"):
    # the loops the compiler vectorises itself (the LSTM step) in whole AVX-512 registers where there are
    # any; the convolution and product tiles choose their 64-byte vectors explicitly
    _FLAGS.append("-mprefer-vector-width=512")
_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_CHOICES = ("auto", "on", "off")

_override: contextvars.ContextVar = contextvars.ContextVar("minifb_cpu_conv", default=None)
_lock = threading.Lock()


@contextlib.contextmanager
def use(on: bool):
    """Within the block, take the compiled convolution (``True``, when it builds) or not (``False``).

    Raises:
        TypeError: ``on`` is not a bool.

    Example:
        >>> from minifb import cpu_conv
        >>> with cpu_conv.use(False):
        ...     cpu_conv.enabled()
        False
    """
    if not isinstance(on, bool):
        raise TypeError(f"cpu_conv.use: on must be True or False, got {on!r}")
    token = _override.set(on)
    try:
        yield
    finally:
        _override.reset(token)


def enabled(dtype="float32") -> bool:
    """Whether NumPy convolutions of ``dtype`` (float32 or float64) take the compiled path now, building
    that dtype's library on first need.

    A :func:`use` block wins; otherwise ``MINIFB_CPU_CONV``: ``off`` is False, ``auto`` is whether the
    library builds and loads (a warning says once why not, when it does not), ``on`` is True or raises.

    Raises:
        ValueError: ``MINIFB_CPU_CONV`` is not auto, on or off (any case).
        RuntimeError: ``MINIFB_CPU_CONV=on`` and the library cannot be built or loaded.
    """
    override = _override.get()
    choice = checks.env_choice("MINIFB_CPU_CONV", _CHOICES) if override is None else ("auto" if override else "off")
    if choice == "off":
        return False
    lib, why = _library(_DTYPES[np.dtype(dtype)])
    if lib is None and choice == "on":
        raise RuntimeError(f"MINIFB_CPU_CONV=on, but the compiled convolution is unavailable: {why}")
    return lib is not None


def applies(*arrays) -> bool:
    """Whether a convolution on these arrays (``None`` entries ignored) takes the compiled path: all NumPy
    arrays of one dtype, float32 or float64, and :func:`enabled`."""
    arrays = [a for a in arrays if a is not None]
    if not arrays or not all(type(a) is np.ndarray for a in arrays):
        return False
    dtype = arrays[0].dtype
    if dtype not in _DTYPES or any(a.dtype != dtype for a in arrays):
        return False
    return enabled(dtype)


def _cpu_id() -> str:
    """What the library's ``-march=native`` code depends on: the CPU's model and feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.machine() + platform.processor()


_TYPES = {"f32": "float", "f64": "double"}


@functools.lru_cache(maxsize=None)
def _build(suffix: str) -> tuple[object, str]:
    """(the loaded library for dtype ``suffix`` ("f32" or "f64"), "") or (None, why not).

    One library per dtype, built on first need: each takes a C++ compiler about 20 s (once per machine,
    then cached), and float32 users never wait for the float64 one.
    """
    cxx = os.environ.get("CXX", "g++")
    flags = _FLAGS + [f"-DMINIFB_CONV_TYPE={_TYPES[suffix]}", f"-DMINIFB_CONV_SUFFIX={suffix}"]
    try:
        if kernels.asan_enabled():   # as the emulated kernels: CI checks both for out-of-bounds accesses
            kernels._check_asan_runtime(cxx)
            flags += kernels.ASAN_FLAGS
        text = (kernels.source_dir() / "conv_cpu.cpp").read_text()
        key = hashlib.sha256()
        for part in [text, " ".join(flags), kernels._compiler_id(cxx), _cpu_id()]:
            key.update(part.encode())
        name = f"conv_cpu_{suffix}-{key.hexdigest()[:20]}.so"
        so = kernels._cached_library(name)
        if so is None:
            so = kernels.cache_dir() / name
            print(f"minifb: compiling the CPU convolution ({suffix}) for this machine with {cxx}; once, "
                  f"about 20 s (cached in {so.parent})", file=sys.stderr, flush=True)
            kernels.build_library(cxx, flags, text, so, "(the compiled CPU convolution)")
        lib = ctypes.CDLL(str(so))
    except (OSError, RuntimeError) as e:
        return None, str(e)
    pointer, size = ctypes.c_void_p, ctypes.c_long
    for name, n_arrays in (("forward", 4), ("input_grad", 4), ("weight_grad", 3)):
        fn = getattr(lib, f"minifb_conv_{name}_{suffix}")
        fn.argtypes = [pointer] * n_arrays + [size] * 16
        fn.restype = None
    fn = getattr(lib, f"minifb_matmul_{suffix}")
    fn.argtypes = [pointer, size, size, pointer, size, size, pointer, size, size, size]
    fn.restype = None
    fn = getattr(lib, f"minifb_sgd_step_{suffix}")
    number = ctypes.c_float if suffix == "f32" else ctypes.c_double
    fn.argtypes = [pointer, pointer, pointer, size] + [number] * 4 + [size, size]
    fn.restype = None
    lib.minifb_lstm_forward_f32.argtypes = [pointer, size, pointer, size, pointer, size, pointer, pointer, size, size]
    lib.minifb_lstm_backward_f32.argtypes = [pointer, size, pointer, pointer, size, pointer, size, pointer, pointer,
                                             size, size]
    lib.minifb_lstm_forward_f32.restype = lib.minifb_lstm_backward_f32.restype = None
    lib.minifb_conv_set_threads.argtypes = [size]
    lib.minifb_conv_threads.restype = size
    lib.minifb_conv_set_threads(get_num_threads())
    return lib, ""


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_threads = None   # set by set_num_threads; None: _default_threads()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the compiled convolution (default: the CPUs this process may run on).

    Like ``torch.set_num_threads``, it sets the count for the whole process; the benchmarks set it with
    BLAS's.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n`` is below 1.
    """
    global _threads
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"cpu_conv.set_num_threads: n must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"cpu_conv.set_num_threads: n must be at least 1, got {n}")
    with _lock:
        _threads = int(n)
        for lib in _loaded.values():          # the libraries already loaded; later ones start with it
            lib.minifb_conv_set_threads(_threads)


def get_num_threads() -> int:
    """The threads the compiled convolution uses (see :func:`set_num_threads`)."""
    return _default_threads() if _threads is None else _threads


_loaded: dict = {}   # suffix -> the library, once built and loaded


def _library(suffix: str = "f32"):
    """(library, why not) for dtype ``suffix``; warns once when it cannot be built."""
    with _lock:
        lib, why = _build(suffix)
        if lib is not None:
            _loaded[suffix] = lib
    if lib is None and not _warned:
        _warn(why)
    return lib, why


_warned = False


def _warn(why: str) -> None:
    global _warned
    _warned = True
    warnings.warn(f"minifb: the compiled CPU convolution is unavailable, so convolutions on NumPy use the "
                  f"slower im2col path ({why.splitlines()[0] if why else 'no reason given'}); set "
                  f"MINIFB_CPU_CONV=off to choose that path and silence this warning", RuntimeWarning,
                  stacklevel=4)


def lanes(dtype) -> int:
    """Numbers per 64-byte vector of ``dtype``: the compiled kernels pad channel counts to a multiple."""
    return 64 // np.dtype(dtype).itemsize


def _call(name, arrays, geometry):
    suffix = _DTYPES[arrays[0].dtype]
    lib, _ = _library(suffix)
    fn = getattr(lib, f"minifb_conv_{name}_{suffix}")
    for a in arrays:
        if not a.flags.c_contiguous or a.dtype != arrays[0].dtype:
            raise ValueError(f"cpu_conv.{name}: every array must be C-contiguous {arrays[0].dtype}")
    fn(*[a.ctypes.data for a in arrays], *[int(v) for v in geometry])


def forward(x, w, b, y, geometry):
    """``y (N, OH, OW, K) = conv(x (N, H, W, C), w (G, kh, kw, Cg, Kgp)) + b (G, Kgp)``, written into ``y``.

    ``geometry`` is ``(N, H, W, C, K, G, kh, kw, sh, sw, dh, dw, OH, OW, pad_top, pad_left)``; the
    kernels read zeros for the padding without storing it. See ``kernels/conv_cpu.cpp``.
    """
    _call("forward", (x, w, b, y), geometry)


def input_grad(gy, wt, b, gx, geometry):
    """``gx (N, H, W, C)`` = ``b (C)`` + the input gradient of ``gy (N, OH, OW, K)`` through
    ``wt (G, kh, kw, Kg, Cgp)`` (``b`` zeros for a convolution, the bias for a transposed one);
    ``geometry`` as for :func:`forward`."""
    _call("input_grad", (gy, wt, b, gx), geometry)


def weight_grad(x, gy, gw, geometry):
    """``gw (G, kh, kw, Cg, Kgp)`` = the weight gradient from ``x (N, H, W, C)`` and
    ``gy (N, OH, OW, G * Kgp)`` (channels padded per group; ``geometry``'s K is ``G * Kgp``)."""
    _call("weight_grad", (x, gy, gw), geometry)


# ------------------------------------------------------------------------------------ small products
#: :func:`product` sends a 2-D NumPy product of more than ``SMALL_PRODUCT[0]`` and fewer than
#: ``SMALL_PRODUCT[1]`` multiply-adds with a dimension of at most ``NARROW`` to :func:`matmul`. Below the
#: lower bound BLAS runs a product on one thread (so none spin after it) and our call's few microseconds
#: would be most of the cost; above the upper one its threads pay off. Narrow products (a classifier head
#: of 10 classes and its gradients) are the ones BLAS runs far below its peak, and :func:`matmul` is the
#: faster there even single-threaded; for wider ones BLAS is, and they stay with it (benchmarks/NOTES.md,
#: "Session 16").
SMALL_PRODUCT = (1 << 18, 1 << 21)
NARROW = 16


def product(a, b):
    """``a @ b`` for any arrays; the matrix-product ops (``F.matmul``, ``F.linear`` and so Dense layers and
    recurrent cells, and the weight gradients they defer) call it instead of ``@``.

    Small, narrow 2-D products of NumPy float32 or float64 arrays (:data:`SMALL_PRODUCT`, :data:`NARROW`)
    are computed by :func:`matmul` when the compiled library is :func:`enabled`; everything else by
    ``a @ b``, so CuPy arrays, batched products and large ones go to BLAS as before.
    """
    if a.ndim == 2 and b.ndim == 2:   # the cheapest tests first: most products go to BLAS
        m, k = a.shape
        n = b.shape[1]
        if ((m <= NARROW or k <= NARROW or n <= NARROW) and SMALL_PRODUCT[0] < m * k * n < SMALL_PRODUCT[1]
                and k == b.shape[0] and applies(a, b)):
            return matmul(a, b)
    return a @ b


def matmul(a, b):
    """``a @ b`` for 2-D NumPy arrays of one dtype (float32 or float64, any strides), computed by the
    compiled library on the calling thread; returns a new C-contiguous array.

    Why minifb does some products itself: NumPy's OpenBLAS spreads a product of more than 2^18
    multiply-adds over its threads, and those threads then spin for about 0.1 s waiting for the next
    product. A classifier head's product (32 x 3136 x 10, a million multiply-adds) is done in tens of
    microseconds, so in a network that runs one between its convolutions at every timestep, the spinning
    threads took a core the convolution's threads (:func:`set_num_threads`) needed for most of a step
    (benchmarks/NOTES.md, "Session 16"). And BLAS runs such narrow products far below its peak: this
    kernel is faster at them on one thread than BLAS on two. :func:`product` decides which products come
    here.

    Raises:
        ValueError: the arrays are not 2-D, their inner sizes differ, or their dtypes differ or are not
            float32 or float64.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"cpu_conv.matmul: expected 2-D arrays (m, k) and (k, n), got {a.shape} and {b.shape}")
    if a.dtype != b.dtype or a.dtype not in _DTYPES:
        raise ValueError(f"cpu_conv.matmul: both arrays must be float32 or both float64, got {a.dtype} and {b.dtype}")
    (m, k), n = a.shape, b.shape[1]
    size = a.itemsize
    if a.strides[0] % size or a.strides[1] % size:
        a = np.ascontiguousarray(a)
    # the kernel reads b's rows as vectors, or b's columns when they are contiguous (a @ w.T); other
    # layouts are copied into rows first
    if not (b.strides[1] == size or (b.strides[0] == size and b.strides[1] % size == 0)):
        b = np.ascontiguousarray(b)
    c = np.empty((m, n), a.dtype)
    if m == 0 or n == 0:
        return c
    suffix = _DTYPES[a.dtype]
    lib, _ = _library(suffix)
    getattr(lib, f"minifb_matmul_{suffix}")(a.ctypes.data, a.strides[0] // size, a.strides[1] // size,
                                            b.ctypes.data, b.strides[0] // size, b.strides[1] // size,
                                            c.ctypes.data, m, n, k)
    return c


# ---------------------------------------------------------------------------- the LSTM's pointwise step
def lstm_applies(*arrays) -> bool:
    """Whether :func:`lstm_forward` / :func:`lstm_backward` take these arrays: 2-D NumPy float32 arrays
    whose rows are contiguous (any row stride, 0 for a broadcast row too), and the library
    :func:`enabled` for float32. The float32 CUDA kernels' condition, on the CPU; other dtypes take NumPy."""
    for a in arrays:
        if type(a) is not np.ndarray or a.dtype != np.float32 or a.ndim != 2 or a.strides[1] != 4:
            return False
    return enabled(np.float32)


def _row_stride(a):
    return a.strides[0] // 4 if a.shape[0] > 1 else 0


def lstm_forward(gi, gh, c):
    """The LSTM's pointwise step (``ops/recurrent.lstm_pointwise_array``'s math) on rows:
    ``gi``, ``gh`` (N, 4H) gate pre-activations in the order i, f, g, o, ``c`` (N, H) the cell state.

    Returns ``out`` (N, 2H) = ``[h' | c']`` and ``gates`` (N, 4H), the activated gates, as new arrays.
    exp and tanh are the library's own (vectorised): sigmoid and tanh come within 3 units in the last place
    of the exact values (NumPy's float32 ones within 2.7 and 1.3), and a gate of -inf gives about 6e-39
    rather than 0.
    """
    n, h = c.shape
    out = np.empty((n, 2 * h), np.float32)
    gates = np.empty((n, 4 * h), np.float32)
    lib, _ = _library("f32")
    lib.minifb_lstm_forward_f32(gi.ctypes.data, _row_stride(gi), gh.ctypes.data, _row_stride(gh), c.ctypes.data,
                                _row_stride(c), out.ctypes.data, gates.ctypes.data, n, h)
    return out, gates


def lstm_backward(grad, gates, c, c_new):
    """The backward of :func:`lstm_forward`: ``grad`` (N, 2H) = ``[dh' | dc']``, ``gates`` (N, 4H) and
    ``c``, ``c_new`` (N, H) from the forward. Returns ``dgates`` (N, 4H), the gradient of both ``gi``
    and ``gh``, and ``dc_prev`` (N, H)."""
    n, h = c.shape
    dgates = np.empty((n, 4 * h), np.float32)
    dc_prev = np.empty((n, h), np.float32)
    lib, _ = _library("f32")
    gates = np.ascontiguousarray(gates)    # its rows are read 4H apart
    lib.minifb_lstm_backward_f32(grad.ctypes.data, _row_stride(grad), gates.ctypes.data,
                                 c.ctypes.data, _row_stride(c), c_new.ctypes.data, _row_stride(c_new),
                                 dgates.ctypes.data, dc_prev.ctypes.data, n, h)
    return dgates, dc_prev


# ------------------------------------------------------------------------------ the optimiser's SGD step
def sgd_applies(p, g, buf=None) -> bool:
    """Whether :func:`sgd_step` takes these arrays: NumPy arrays of one dtype (float32 or float64), all
    C-contiguous and of one size, ``p`` (and ``buf``, when given) writable, no two of them sharing memory
    (the compiled loop reads each through its own pointer), and the library :func:`enabled` for that
    dtype. :class:`minifb.optim.SGD` takes NumPy's path otherwise."""
    arrays = (p, g) if buf is None else (p, g, buf)
    if not all(type(a) is np.ndarray and a.flags.c_contiguous for a in arrays):
        return False
    if p.dtype not in _DTYPES or g.dtype != p.dtype or g.size != p.size or not p.flags.writeable:
        return False
    if buf is not None and (buf.dtype != p.dtype or buf.size != p.size or not buf.flags.writeable
                            or np.may_share_memory(buf, p) or np.may_share_memory(buf, g)):
        return False
    return not np.may_share_memory(p, g) and enabled(p.dtype)


def sgd_step(p, g, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, first_step=False):
    """One SGD step on the arrays of one parameter, in place, in one pass (:class:`minifb.optim.SGD`'s
    rule, which is PyTorch's): with ``d = g + weight_decay * p``, when ``momentum`` is not 0
    ``buf = d`` (``first_step``) or ``momentum * buf + (1 - dampening) * d``, and ``d = d + momentum * buf``
    (``nesterov``) or ``buf``; then ``p -= lr * d``. Every operation rounds as NumPy's does.

    NumPy needs two passes and a temporary for plain SGD and up to five with momentum and weight decay,
    over parameters that are no longer in the cache when the step comes: on a dense network's step the
    update took 0.65 ms in NumPy and 0.39 here (benchmarks/NOTES.md, "Session 17").

    Args:
        p, g: the parameter (updated in place) and its gradient, as :func:`sgd_applies` says.
        buf: the momentum buffer (updated in place), or None when ``momentum`` is 0.
        lr, momentum, dampening, weight_decay, nesterov, first_step: as above.
    """
    if not sgd_applies(p, g, buf):
        raise ValueError("cpu_conv.sgd_step: p, g (and buf) must be C-contiguous NumPy arrays of one size and "
                         "one dtype, float32 or float64, with p and buf writable")
    if momentum and buf is None:
        raise ValueError("cpu_conv.sgd_step: momentum needs a buffer")
    suffix = _DTYPES[p.dtype]
    lib, _ = _library(suffix)
    getattr(lib, f"minifb_sgd_step_{suffix}")(p.ctypes.data, g.ctypes.data, None if buf is None else buf.ctypes.data,
                                              p.size, lr, momentum, 1.0 - dampening, weight_decay, int(nesterov),
                                              int(first_step))
