"""minifb's fused CUDA kernels: finding, compiling, launching them, on a GPU or in the CPU emulation.

The kernels live as plain ``.cu`` files in the top-level ``kernels/`` folder, shipped inside the installed
package as ``minifb.kernels_src``. Each one is used two ways:

* **cuda**: on CuPy arrays, compiled by CuPy (NVRTC) with :class:`cupy.RawModule` and launched on the GPU.
* **emulate**: on NumPy float32 arrays, the *same source* is compiled by g++ against ``kernels/cuda_emu.h``
  into a shared library (cached on disk) and launched over the real grid through ctypes (see the header's
  comment for how blocks, barriers and warp shuffles are emulated). This runs the exact GPU dispatch code
  on machines without a GPU, so it is what the tests exercise.

Which path the ops take is :func:`mode`: ``"off"`` (array-module code only), ``"emulate"`` or ``"cuda"``.
The environment variable ``MINIFB_KERNELS`` (``off``/``emulate``/``cuda``/``auto``) sets the default, read
at call time; ``with kernels.use("emulate"): ...`` overrides it within a block. Ops ask
:func:`should_use` with every float operand of the kernel; it says no unless all are float32.

A launch goes through :func:`launch`, which mirrors CuPy's ``RawKernel.__call__(grid, block, args)``.
Integers and floats must be passed as ``np.int32`` / ``np.int64`` / ``np.float32`` exactly as the kernel's
signature says (CuPy does no argument checking; the emulated launcher checks every argument against the
signature parsed from the source, so a wrong type fails here rather than corrupting memory on a GPU).

The high-level functions at the end (``bias_act``, ``im2col``, ``softmax_xent``, ...) take raw arrays,
allocate the outputs, pick the launch configuration and launch. Each agrees with the function of the same
name plus ``_ref`` in :mod:`minifb.kernel_refs`.

Environment variables (all read when first needed, never at import):

* ``MINIFB_KERNELS``: default mode.
* ``MINIFB_KERNEL_CACHE``: folder for the emulation's compiled libraries (default
  ``~/.cache/minifb/kernels``, or the temp dir when that is not writable). A library already there is
  loaded from a read-only folder too; only a build needs to write.
* ``MINIFB_KERNELS_ASAN``: a boolean (``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``/empty,
  any case): build the emulation with ``-fsanitize=address``. The process must then run with libasan
  preloaded (``LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0``); without it,
  loading such a library raises a RuntimeError instead of letting ASan abort the process.
* ``CXX``: the C++ compiler (default ``g++``); it must compile and link C++ (``gcc`` does not link it).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import hashlib
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import backend, checks
from .kernel_refs import (  # noqa: F401 - re-exported helpers
    ACTIVATIONS,
    act_code,
    channel_layout,
    conv_output_size,
    pool_output_size,
    resolve_layout,
)
from .kernel_refs import _conv_geometry, _pair, _pool_geometry

MODES = ("off", "emulate", "cuda")
BLOCK = 256          # threads per block for the 1-D kernels
MAX_BLOCKS = 8192    # grid-stride loops cover the rest

_override: contextvars.ContextVar = contextvars.ContextVar("minifb_kernels_mode", default=None)


# ------------------------------------------------------------------------------------------------ mode
def mode() -> str:
    """The kernel mode in effect: ``"off"``, ``"emulate"`` or ``"cuda"``.

    A :func:`use` block wins; otherwise ``MINIFB_KERNELS`` (read now). ``auto`` or unset means ``"cuda"``
    when CuPy and a GPU are present, else ``"off"``.
    """
    m = _override.get()   # use() has checked it
    if m is None:
        m = checks.env_choice("MINIFB_KERNELS", MODES + ("auto",))
        if m == "auto":
            m = "cuda" if backend.cuda_available() else "off"
    return m


@contextlib.contextmanager
def use(m: str):
    """Within the block, kernels are used per ``m``: the modes ``MINIFB_KERNELS`` takes.

    Args:
        m: ``"off"``, ``"emulate"``, ``"cuda"`` or ``"auto"`` (any case); ``"auto"`` is what an unset
            ``MINIFB_KERNELS`` means, ``"cuda"`` with CuPy and a GPU, else ``"off"``, so that a block can
            go back to the default inside another block.

    Raises:
        TypeError: ``m`` is not a str.
        ValueError: ``m`` is not one of those modes.

    Example:
        >>> from minifb import kernels
        >>> with kernels.use("off"):
        ...     kernels.mode()
        'off'
    """
    if not isinstance(m, str):
        raise TypeError(f"kernels.use: mode must be a str (one of off, emulate, cuda, auto), got {m!r}")
    m = m.lower()
    if m == "auto":
        m = "cuda" if backend.cuda_available() else "off"
    if m not in MODES:
        raise ValueError(f"kernels.use({m!r}): expected one of off, emulate, cuda, auto")
    token = _override.set(m)
    try:
        yield
    finally:
        _override.reset(token)


def _is_cupy(a) -> bool:
    return type(a).__module__.startswith("cupy")


#: The kernels index with 32-bit ints: an array of this many elements or more goes to the array path.
_INT32_LIMIT = 2 ** 31


def should_use(*arrays) -> bool:
    """Whether an op should call the fused kernel for these operand arrays.

    The kernels are float32 only, so every array must be float32 (a dtype comparison each, no pass over
    the data): an integer, boolean or other float operand sends the op to its array-module path, and so
    does an array of 2**31 elements or more (the kernels' indices are 32-bit). Then True
    on CuPy arrays unless the mode is ``"off"``, and on NumPy arrays only in ``"emulate"`` mode. ``None``
    entries are ignored. Pass every float operand the kernel reads; an integer argument that the kernel
    converts itself (class labels, a saved argmax) is left out.
    """
    arrays = [a for a in arrays if a is not None]
    if not arrays:
        return False
    m = mode()
    if m == "off" or any(a.dtype != np.float32 or a.size >= _INT32_LIMIT for a in arrays):
        return False
    if all(_is_cupy(a) for a in arrays):
        return True
    return m == "emulate" and all(isinstance(a, np.ndarray) for a in arrays)


# ------------------------------------------------------------------------------------------------ sources
def source_dir() -> Path:
    """The folder holding the .cu files: the checkout's ``kernels/`` beside this package when there is one
    (so a checkout always compiles its own kernels, even when another minifb is installed in editable mode),
    else the installed ``minifb.kernels_src``."""
    checkout = Path(__file__).resolve().parent.parent / "kernels"
    if (checkout / "cuda_emu.h").is_file():
        return checkout
    try:
        from importlib.resources import files

        p = Path(str(files("minifb.kernels_src")))
        if (p / "cuda_emu.h").is_file():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return checkout


def kernel_files() -> list[Path]:
    """Every kernel source, sorted."""
    return sorted(source_dir().glob("*.cu"))


def _resolve(file) -> Path:
    """The kernel source that ``file`` names: a bare name (``"optim"`` or ``"optim.cu"``) in
    :func:`source_dir` only, never in the current directory; a path (absolute, or with a separator, such as
    ``"tests/probe.cu"``) as given. ``.cu`` is added when missing."""
    text = str(file)
    p = Path(file)
    if not (p.is_absolute() or os.sep in text or (os.altsep and os.altsep in text)):
        p = source_dir() / p
    if p.suffix != ".cu":
        p = p.with_suffix(".cu")
    if not p.is_file():
        raise FileNotFoundError(f"kernel source {file!r} not found (looked for {p})")
    return p.resolve()


# a local include, with or without a comment after it on the line
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*(?://.*|/\*.*?\*/\s*)?$', re.M)


def expanded_source(path: Path, _seen=None) -> str:
    """The source with its local ``#include "..."`` files pasted in (cuda_emu.h excepted).

    CuPy caches compiled modules by source text, so pasting headers in makes a header edit a cache miss.
    """
    seen = set() if _seen is None else _seen
    text = path.read_text()

    def sub(m):
        name = m.group(1)
        if name == "cuda_emu.h":
            return m.group(0)  # inside #ifndef __CUDACC__: never seen by NVRTC
        inc = (path.parent / name) if (path.parent / name).is_file() else source_dir() / name
        if inc in seen:
            return ""
        seen.add(inc)
        return expanded_source(inc, seen)

    return _INCLUDE.sub(sub, text)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: its base C type, whether it is a pointer (and to const), and its name."""
    ctype: str
    pointer: bool
    const: bool
    name: str


_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
                     r'(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)', re.S)
_SCALAR_DTYPES = {"float": np.float32, "int": np.int32, "long long": np.int64, "unsigned": np.uint32,
                  "unsigned int": np.uint32}


def parse_kernels(source: str) -> dict[str, tuple[Param, ...]]:
    """``{kernel name: parameters}`` for every ``extern "C" __global__`` function in ``source``."""
    out = {}
    for m in _KERNEL.finditer(source):
        params = []
        for raw in m.group(2).split(","):
            raw = " ".join(raw.replace("*", " * ").split())
            if not raw:
                continue
            words = raw.split(" ")
            name = words[-1]
            const = "const" in words
            pointer = "*" in words
            base = " ".join(w for w in words[:-1] if w not in ("const", "*", "__restrict__"))
            if base not in _SCALAR_DTYPES:
                raise ValueError(f"kernel {m.group(1)}: unsupported parameter type in {raw!r}")
            params.append(Param(base, pointer, const, name))
        out[m.group(1)] = tuple(params)
    return out


_BOUNDS = re.compile(r'__launch_bounds__\s*\(\s*(\d+)')

#: What a GPU allows any launch: threads per block, and the grid's y and z extents.
MAX_THREADS, MAX_GRID_YZ = 1024, 65535


def launch_bounds(source: str) -> dict[str, int]:
    """``{kernel name: most threads per block}`` for the kernels (as :func:`parse_kernels` finds them) declared
    with ``__launch_bounds__(n)``, ``n`` a number (a macro is not evaluated: such a kernel is left out)."""
    out = {}
    for m in _KERNEL.finditer(source):
        bound = _BOUNDS.search(m.group(0))
        if bound:
            out[m.group(1)] = int(bound.group(1))
    return out


# ------------------------------------------------------------------------------------------------ emulation
def _cache_candidates() -> list[Path]:
    """The folders the emulation's libraries may be in: ``MINIFB_KERNEL_CACHE`` alone when it is set."""
    env = os.environ.get("MINIFB_KERNEL_CACHE")
    if env:
        return [Path(env)]
    return [Path.home() / ".cache" / "minifb" / "kernels", Path(tempfile.gettempdir()) / "minifb-kernels"]


def cache_dir() -> Path:
    """The folder where emulation libraries are built: the first writable one of ``MINIFB_KERNEL_CACHE``
    or, when that is unset, ``~/.cache/minifb/kernels`` and then the temp dir's ``minifb-kernels``
    (created on demand).

    Raises:
        OSError: no candidate can be written, with the reason for each (not a folder, not writable).
    """
    reasons = []
    for d in _cache_candidates():
        try:
            d.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            reasons.append(f"{str(d)!r} is not a folder")
            continue
        except OSError as e:
            reasons.append(f"{str(d)!r} cannot be created ({e.strerror or e})")
            continue
        if os.access(d, os.W_OK | os.X_OK):
            return d
        reasons.append(f"{str(d)!r} is not writable")
    if os.environ.get("MINIFB_KERNEL_CACHE"):
        raise OSError(f"kernel emulation: a library must be built, but MINIFB_KERNEL_CACHE={reasons[0]}")
    raise OSError(f"kernel emulation: a library must be built, but no default cache folder is usable "
                  f"({'; '.join(reasons)}): set MINIFB_KERNEL_CACHE to a writable folder")


def _cached_library(name: str) -> Path | None:
    """The built library ``name`` in a cache folder, or None: loading needs no write access."""
    for d in _cache_candidates():
        if (d / name).is_file():
            return d / name
    return None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def asan_enabled() -> bool:
    """Whether emulated kernels are built with AddressSanitizer: ``MINIFB_KERNELS_ASAN`` (read now).

    Raises:
        ValueError: the variable is not one of 1/true/yes/on, 0/false/no/off or empty (any case).
    """
    value = os.environ.get("MINIFB_KERNELS_ASAN", "")
    flag = value.strip().lower()
    if flag not in _TRUE + _FALSE:
        raise ValueError(f"MINIFB_KERNELS_ASAN={value!r}: expected 1/true/yes/on or 0/false/no/off")
    return flag in _TRUE


def _check_asan_runtime(cxx: str) -> None:
    """Refuse to load an ASan build unless libasan is in the process: without it ASan aborts the
    process at load ("ASan runtime does not come first")."""
    if not hasattr(ctypes.CDLL(None), "__asan_init"):
        raise RuntimeError(
            "MINIFB_KERNELS_ASAN is on but libasan is not loaded in this process: run Python with "
            f"LD_PRELOAD=$({cxx} -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0, "
            "or unset MINIFB_KERNELS_ASAN")


#: Flags added to a build with AddressSanitizer (the emulated kernels', and minifb.cpu_conv's library).
ASAN_FLAGS = ("-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1")


def emu_flags(asan: bool = False) -> list[str]:
    """g++ flags of the emulation build."""
    flags = ["-x", "c++", "-std=c++17", "-O2", "-fopenmp", "-fPIC", "-shared"]
    if asan:
        flags += ASAN_FLAGS
    return flags


def _compiler_env() -> dict:
    """The environment for compiler subprocesses: without LD_PRELOAD (an ASan run preloads libasan)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


@functools.lru_cache(maxsize=None)
def _compiler_id(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True,
                              env=_compiler_env()).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"kernel emulation needs a C++ compiler ({cxx!r} not usable: {e})") from None


class EmuKernel:
    """One emulated kernel; called like CuPy's RawKernel: ``k(grid, block, args)``."""

    _ERRLEN = 1024

    def __init__(self, lib, name: str, params: tuple[Param, ...], max_threads: int = MAX_THREADS):
        self.name, self.params, self.max_threads = name, params, max_threads
        fn = getattr(lib, f"minifb_launch_{name}")
        fn.argtypes = [ctypes.c_uint] * 6 + [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_int]
        fn.restype = ctypes.c_int
        self._fn = fn
        # made once: ctypes holds array types only weakly, and each is a reference cycle, so a type made
        # per launch was rebuilt after every garbage collection
        self._argv_type = ctypes.c_void_p * max(1, len(params))

    def _convert(self, p: Param, a):
        if p.pointer:
            want = np.dtype(_SCALAR_DTYPES[p.ctype])
            if not isinstance(a, np.ndarray):
                raise TypeError(f"kernel {self.name}: argument {p.name} must be a NumPy array, got {type(a).__name__}")
            if a.dtype != want:
                raise TypeError(f"kernel {self.name}: argument {p.name} must be {want}, got {a.dtype}")
            if not a.flags.c_contiguous:
                raise ValueError(f"kernel {self.name}: argument {p.name} must be C-contiguous")
            if not p.const and not a.flags.writeable:
                raise ValueError(f"kernel {self.name}: argument {p.name} is written but the array is read-only")
            return ctypes.c_void_p(a.ctypes.data)
        want = _SCALAR_DTYPES[p.ctype]
        if type(a) is not want:
            raise TypeError(f"kernel {self.name}: argument {p.name} must be np.{want.__name__} "
                            f"(CuPy would not convert it), got {type(a).__name__}")
        return np.ctypeslib.as_ctypes_type(want)(a)

    def __call__(self, grid, block, args):
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        threads = block[0] * block[1] * block[2]
        # what a GPU refuses, refused here too (the emulator itself runs any shape)
        if threads > self.max_threads or min(grid + block) < 1 or max(grid[1:]) > MAX_GRID_YZ:
            raise RuntimeError(f"emulated kernel {self.name}: invalid launch configuration grid {grid}, block "
                               f"{block}: a block may have at most {self.max_threads} threads (its "
                               f"__launch_bounds__ or the GPU's {MAX_THREADS}), every extent must be >= 1 and "
                               f"the grid's y and z at most {MAX_GRID_YZ}")
        if len(args) != len(self.params):
            raise TypeError(f"kernel {self.name} takes {len(self.params)} arguments, got {len(args)}")
        holders = [self._convert(p, a) for p, a in zip(self.params, args)]
        argv = self._argv_type(*[ctypes.addressof(h) for h in holders])
        err = _ERROR_BUFFER()
        rc = self._fn(*(int(v) for v in grid), *(int(v) for v in block), argv, err, self._ERRLEN)
        if rc != 0:
            raise RuntimeError(f"emulated kernel {self.name} failed: {err.value.decode(errors='replace')}")


_ERROR_BUFFER = ctypes.c_char * EmuKernel._ERRLEN   # the type of a launch's error message buffer, made once
_BUILD_LOCK = threading.Lock()  # held while an emulation library is built and loaded (a one-time cost)


def build_library(cxx: str, flags: list[str], source: str, so: Path, purpose: str) -> None:
    """Compile the C++ ``source`` text with ``cxx`` and ``flags`` into the shared library ``so``.

    The library is built in a folder of its own (unique across threads and processes) and moved into place
    atomically, so processes building the same library race harmlessly. The linker creates it afresh, so it
    gets the mode of any new file (0o777 less the umask): another user sharing the cache can load it (a
    file made by mkstemp first would stay 0o600 plus the execute bits).

    Raises:
        RuntimeError: the compiler fails (its output is in the message), or the library does not load
            (e.g. ``CXX=gcc``, a C compiler, left C++ symbols unresolved). ``purpose`` says what the library
            is for, in the message.
    """
    with tempfile.TemporaryDirectory(prefix=f"{so.name}.", suffix=".tmp", dir=so.parent) as tmp:
        src, built = Path(tmp) / "wrapper.cpp", Path(tmp) / so.name
        src.write_text(source)
        r = subprocess.run([cxx, *flags, str(src), "-o", str(built)], capture_output=True, text=True,
                           env=_compiler_env())
        if r.returncode != 0:
            raise RuntimeError(f"compiling {so.stem} {purpose} with CXX={cxx!r} failed:\n{r.stderr}")
        try:
            ctypes.CDLL(str(built))
        except OSError as e:
            raise RuntimeError(f"the library {so.stem} {purpose} built with CXX={cxx!r} does not load "
                               f"({e}); CXX must be a C++ compiler that links C++ (such as g++)"
                               + (f"; compiler output:\n{r.stderr}" if r.stderr.strip() else "")) from None
        os.replace(built, so)


class EmuModule:
    """A .cu file compiled by the C++ compiler against cuda_emu.h, loaded with ctypes."""

    def __init__(self, path: Path, defines: tuple[str, ...] = (), asan: bool = False):
        self.path = path
        source = path.read_text()
        self.kernels = parse_kernels(source)
        self.bounds = launch_bounds(source)
        cxx = os.environ.get("CXX", "g++")
        if asan:
            _check_asan_runtime(cxx)
        wrapper = f'#include "{path}"\n' + "".join(f"MINIFB_EMU_EXPORT({k})\n" for k in self.kernels)
        flags = emu_flags(asan) + [f"-I{source_dir()}", f"-I{path.parent}"] + [f"-D{d}" for d in defines]
        key = hashlib.sha256()
        for part in [wrapper, expanded_source(path), (source_dir() / "cuda_emu.h").read_text(),
                     " ".join(flags), _compiler_id(cxx)]:
            key.update(part.encode())
        name = f"{path.stem}-{key.hexdigest()[:20]}.so"
        with _BUILD_LOCK:  # threads wanting the same library: one builds it, the others then load it
            so = _cached_library(name)
            if so is None:
                so = cache_dir() / name
                build_library(cxx, flags, wrapper, so, "for the CPU emulation")
            self.lib = ctypes.CDLL(str(so))
        self._functions: dict[str, EmuKernel] = {}

    def get_function(self, name: str) -> EmuKernel:
        """The kernel ``name`` of this file as a launchable :class:`EmuKernel`, made once (as CuPy's
        ``RawModule.get_function``); AttributeError when the file has no such kernel."""
        if name not in self._functions:
            if name not in self.kernels:
                raise AttributeError(f"{self.path.name} has no kernel {name!r} (has {sorted(self.kernels)})")
            self._functions[name] = EmuKernel(self.lib, name, self.kernels[name],
                                              self.bounds.get(name, MAX_THREADS))
        return self._functions[name]


# ------------------------------------------------------------------------------------------------ loader
@functools.lru_cache(maxsize=None)
def load_module(file, device: str, defines: tuple[str, ...] = ()):
    """The compiled module of ``file`` for ``device`` (``"emulate"``, ``"emulate+asan"`` or ``"cuda:N"``).

    Cached per (file, device, defines) for the life of the process.
    """
    path = _resolve(file)
    if device.startswith("emulate"):
        return EmuModule(path, defines, asan=device.endswith("+asan"))
    cupy = backend.cupy_or_none()
    if cupy is None:
        raise RuntimeError("CUDA kernels need CuPy and a GPU")
    options = ("--std=c++17",) + tuple(f"-D{d}" for d in defines)
    return cupy.RawModule(code=expanded_source(path), options=options)


def _device_of(args) -> str:
    for a in args:
        if _is_cupy(a):
            return f"cuda:{a.device.id}"
    return "emulate+asan" if asan_enabled() else "emulate"


def launch(file, name: str, grid, block, args, defines: tuple[str, ...] = ()):
    """Launch kernel ``name`` of ``file`` on the device its array arguments live on.

    Args:
        file: a .cu name in the kernels folder (``"bias_act"``) or a path.
        name: the ``extern "C"`` kernel name.
        grid, block: tuples of up to 3 ints.
        args: the arguments, arrays and np.int32 / np.int64 / np.float32 scalars, as the signature says.
        defines: preprocessor macros for the compilation, each ``"NAME"`` or ``"NAME=VALUE"`` (passed as
            ``-DNAME[=VALUE]``); each distinct tuple compiles and caches a module of its own.
    """
    _function(str(file), name, _device_of(args), tuple(defines))(tuple(grid), tuple(block), tuple(args))


@functools.lru_cache(maxsize=None)
def _function(file: str, name: str, device: str, defines: tuple[str, ...]):
    """The launchable kernel ``name`` of ``file`` on ``device``, looked up once (on an H200 the lookup
    was 1 µs of the 11 µs of host work in a launch)."""
    return load_module(file, device, defines).get_function(name)


def _grid_1d(n: int) -> tuple[int]:
    return (max(1, min(MAX_BLOCKS, -(-n // BLOCK))),)


def _xp(*arrays):
    return backend.array_module(*arrays)


def _f32(a, what: str):
    """The array as C-contiguous float32 (no copy when it already is); other float dtypes are refused."""
    if a.dtype != np.float32:
        raise TypeError(f"kernels are float32 only: {what} is {a.dtype}")
    return a if a.flags.c_contiguous else _xp(a).ascontiguousarray(a)  # CuPy's call costs µs even when a no-op


def _bias_or_zero(bias, xp, layout):
    outer, C, inner = layout
    if bias is None:
        return xp.zeros(1, dtype=np.float32), (outer * C * inner, 1, 1)
    if bias.size != C:
        raise ValueError(f"bias of shape {tuple(bias.shape)} does not match {C} channels")
    return _f32(bias, "bias").reshape(-1), layout


# ------------------------------------------------------------------------------------------------ kernels
def bias_act(x, bias, act, layout=None):
    """Fused Dense/Conv epilogue ``y = act(x + bias)``, bias broadcast along the channel.

    Args:
        x: float32 array of any shape, e.g. (B, F) or (N, C, H, W).
        bias: (C,) or None.
        act: "identity" (or None), "relu", "sigmoid", "tanh".
        layout: how x is seen as (outer, C, inner): that triple, an int channel axis, or None for axis 1
            (0 for 1-D x). Dense (B, F): (B, F, 1); NCHW: (N, C, H*W).

    Returns:
        y, same shape as x. Reference: ``kernel_refs.bias_act_ref``.

    Example:
        >>> from minifb.kernels import bias_act, use
        >>> with use("emulate"):
        ...     bias_act(np.ones((2, 3), np.float32), np.array([-2, 0, 1], np.float32), "relu")
        array([[0., 1., 2.],
               [0., 1., 2.]], dtype=float32)
    """
    xp = _xp(x)
    x = _f32(x, "x")
    y = xp.empty_like(x)
    if x.size == 0:
        return y
    b, (outer, C, inner) = _bias_or_zero(bias, xp, resolve_layout(x.shape, layout))
    launch("bias_act", "bias_act_fwd", _grid_1d(x.size), (BLOCK,),
           (x, b, y, np.int64(x.size), np.int32(C), np.int32(inner), np.int32(act_code(act))))
    return y


def _reduce_block(count: int) -> int:
    """Threads for a one-block-per-channel/row reduction: a multiple of 32 covering count, at most 256."""
    return max(32, min(256, 32 * -(-count // 32)))


def bias_act_backward(g, y, act, layout=None, need_bias=True):
    """Backward of :func:`bias_act` from its output ``y``.

    Args:
        g: upstream gradient, shape of y. y: the forward output. act, layout: as in the forward.

    Returns:
        (dx, dbias): dx = g * act'(y) (shape of y); dbias (C,) = dx summed over everything but the channel,
        computed in the same pass (one block per channel), or None when ``need_bias`` is false (then only
        the element-wise kernel runs). Reference: ``kernel_refs.bias_act_backward_ref``.
    """
    return _act_backward("bias_act", "bias_act_bwd", g, y, act, layout, need_bias)


def _act_backward(file, kernel, g, y, act, layout, need_bias):
    xp = _xp(g, y)
    if g.shape != y.shape:
        raise ValueError(f"{kernel}: gradient {tuple(g.shape)} and saved output {tuple(y.shape)} differ")
    g, y = _f32(g, "g"), _f32(y, "y")
    dx = xp.empty_like(y)
    a = np.int32(act_code(act))
    outer, C, inner = resolve_layout(y.shape, layout)
    if not need_bias:
        if y.size:
            launch("bias_act", "bias_act_bwd_dx", _grid_1d(y.size), (BLOCK,), (g, y, dx, np.int64(y.size), a))
        return dx, None
    dbias = xp.zeros(C, dtype=np.float32)
    if y.size:
        launch(file, kernel, (C,), (_reduce_block(outer * inner),),
               (g, y, dx, dbias, np.int32(outer), np.int32(C), np.int32(inner), a))
    return dx, dbias


def merger_forward(x, fb, bias, act, layout=None):
    """Fused feedback combine ``y = x + act(fb + bias)``.

    Args:
        x: the forward stream; fb: the feedback op's output before its bias/activation, same shape.
        bias: (C,) or None. act, layout: as in :func:`bias_act`.

    Returns:
        (y, a) with a = act(fb + bias) kept for the backward. Reference: ``kernel_refs.merger_forward_ref``.
    """
    xp = _xp(x, fb)
    if x.shape != fb.shape:
        raise ValueError(f"merger: stream {tuple(x.shape)} and feedback {tuple(fb.shape)} differ in shape")
    x, fb = _f32(x, "x"), _f32(fb, "fb")
    y, a = xp.empty_like(x), xp.empty_like(x)
    if x.size == 0:
        return y, a
    b, (outer, C, inner) = _bias_or_zero(bias, xp, resolve_layout(x.shape, layout))
    launch("merger", "merger_fwd", _grid_1d(x.size), (BLOCK,),
           (x, fb, b, y, a, np.int64(x.size), np.int32(C), np.int32(inner), np.int32(act_code(act))))
    return y, a


def merger_backward(g, a, act, layout=None, need_bias=True):
    """Backward of :func:`merger_forward` from the saved ``a``.

    Returns:
        (dfb, dbias): dfb = g * act'(a); dbias (C,) summed in the same pass, or None without
        ``need_bias``. The stream's gradient is g itself. Reference: ``kernel_refs.merger_backward_ref``.
    """
    return _act_backward("merger", "merger_bwd", g, a, act, layout, need_bias)


def _check_shapes(what, state, **arrays):
    """Check that each array is (B, H) like ``state``, or (B, G*H) when given as ``(array, G)``: the
    kernels index them all from B and H alone, so a wrong shape would read or write out of bounds."""
    if state.ndim != 2:
        raise ValueError(f"{what}: state must be (B, H), got shape {tuple(state.shape)}")
    B, H = state.shape
    for name, a in arrays.items():
        a, g = a if isinstance(a, tuple) else (a, 1)
        if tuple(a.shape) != (B, g * H):
            raise ValueError(f"{what}: {name} must have shape {(B, g * H)} to match the state "
                             f"{(B, H)}, got {tuple(a.shape)}")


def _rows_of(a, what: str):
    """A (B, H) float32 array as (flat, ld): row b starts at ``flat[b * ld]``, elements contiguous.

    A view with unit column stride (such as the right half of a wider array) is passed as the span of
    memory it covers, without a copy; anything else is copied to C order (then ``ld == H``).
    """
    B, H = a.shape
    item = a.itemsize
    if (a.dtype == np.float32 and B and H and a.strides[1] == item and a.strides[0] % item == 0
            and a.strides[0] >= H * item):
        ld = a.strides[0] // item
        span = (B - 1) * ld + H
        return _xp(a).lib.stride_tricks.as_strided(a, shape=(span,), strides=(item,)), ld
    return _f32(a, what), H


def lstm_cell_forward(gi, gh, c):
    """One fused LSTM step after the matrix products.

    Args:
        gi: (B, 4H) = x @ W_ih.T + b_ih; gh: (B, 4H) = h @ W_hh.T + b_hh; c: (B, H) previous cell state
            (a view with row stride, such as the previous step's ``hc[:, H:]``, is read without a copy).

    Returns:
        (hc (B, 2H) = [h_new | c_new], gates (B, 4H) activated [i|f|g|o] for the backward).
        Reference: ``kernel_refs.lstm_cell_forward_ref``.
    """
    xp = _xp(gi, gh, c)
    _check_shapes("LSTMCell", c, gi=(gi, 4), gh=(gh, 4))
    gi, gh = _f32(gi, "gi"), _f32(gh, "gh")
    B, H = c.shape
    c, ldc = _rows_of(c, "c")
    hc, gates = xp.empty((B, 2 * H), dtype=np.float32), xp.empty_like(gi)
    if B * H:
        launch("lstm_cell", "lstm_cell_fwd", _grid_1d(B * H), (BLOCK,),
               (gi, gh, c, np.int32(ldc), hc, gates, np.int32(B), np.int32(H)))
    return hc, gates


def lstm_cell_backward(dhc, gates, c, hc):
    """Backward of :func:`lstm_cell_forward`.

    Args:
        dhc: (B, 2H) gradient of hc = [h_new | c_new]. gates, c, hc: the forward's gates, c and output.

    Returns:
        (dgates (B, 4H), dc_prev (B, H)); dgates is the gradient of both gi and gh.
        Reference: ``kernel_refs.lstm_cell_backward_ref``.
    """
    xp = _xp(gates, c)
    _check_shapes("LSTMCell backward", c, dhc=(dhc, 2), hc=(hc, 2), gates=(gates, 4))
    dhc, hc, gates = _f32(dhc, "dhc"), _f32(hc, "hc"), _f32(gates, "gates")
    B, H = c.shape
    c, ldc = _rows_of(c, "c")
    dgates, dc_prev = xp.empty_like(gates), xp.empty((B, H), dtype=np.float32)
    if B * H:
        launch("lstm_cell", "lstm_cell_bwd", _grid_1d(B * H), (BLOCK,),
               (dhc, gates, c, np.int32(ldc), hc, dgates, dc_prev, np.int32(B), np.int32(H)))
    return dgates, dc_prev


def gru_cell_forward(gi, gh, h):
    """One fused GRU step after the matrix products.

    Args:
        gi: (B, 3H) = x @ W_ih.T + b_ih; gh: (B, 3H) = h @ W_hh.T + b_hh; h: (B, H).

    Returns:
        (h_new (B, H), saved (B, 4H) = [r|z|n|gh_n] for the backward).
        Reference: ``kernel_refs.gru_cell_forward_ref``.
    """
    xp = _xp(gi, gh, h)
    _check_shapes("GRUCell", h, gi=(gi, 3), gh=(gh, 3))
    gi, gh, h = _f32(gi, "gi"), _f32(gh, "gh"), _f32(h, "h")
    B, H = h.shape
    h_new, saved = xp.empty_like(h), xp.empty((B, 4 * H), dtype=np.float32)
    if h.size:
        launch("gru_cell", "gru_cell_fwd", _grid_1d(h.size), (BLOCK,),
               (gi, gh, h, h_new, saved, np.int32(B), np.int32(H)))
    return h_new, saved


def gru_cell_backward(dh, saved, h):
    """Backward of :func:`gru_cell_forward`: (dgi (B, 3H), dgh (B, 3H), dh_prev pointwise part (B, H))."""
    xp = _xp(saved, h)
    dh, saved, h = _f32(dh, "dh"), _f32(saved, "saved"), _f32(h, "h")
    _check_shapes("GRUCell backward", h, dh=dh, saved=(saved, 4))
    B, H = h.shape
    dgi, dgh, dh_prev = (xp.empty((B, 3 * H), dtype=np.float32), xp.empty((B, 3 * H), dtype=np.float32),
                         xp.empty_like(h))
    if h.size:
        launch("gru_cell", "gru_cell_bwd", _grid_1d(h.size), (BLOCK,),
               (dh, saved, h, dgi, dgh, dh_prev, np.int32(B), np.int32(H)))
    return dgi, dgh, dh_prev


def _conv_args(x_shape, kh, kw, stride, padding, dilation, out_hw):
    if out_hw is None:
        N, C, H, W, sh, sw, ph, pw, dh, dw, OH, OW = _conv_geometry(x_shape, kh, kw, stride, padding, dilation)
    else:  # explicit output size: padding gives only the top/left offsets (asymmetric "same" padding)
        N, C, H, W = (int(v) for v in x_shape)
        (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
        OH, OW = (int(v) for v in out_hw)
        if min(sh, sw, dh, dw) < 1 or min(ph, pw, OH, OW) < 0:   # a 0 stride would divide by zero in the kernel
            raise ValueError(f"kernel geometry: stride {(sh, sw)} and dilation {(dh, dw)} must be >= 1, padding "
                             f"{(ph, pw)} and output size {(OH, OW)} >= 0")
    return (N, C, H, W, OH, OW), tuple(np.int32(v) for v in (N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, OH, OW))


def im2col(x, kh, kw, stride=1, padding=0, dilation=1, out_hw=None):
    """Column matrix of a 2-D convolution.

    Args:
        x: (N, C, H, W). kh, kw: kernel size. stride, padding, dilation: int or pair.
        out_hw: (OH, OW) when the caller pads asymmetrically; ``padding`` is then the (top, left) offset.
            By default PyTorch's output size for symmetric padding.

    Returns:
        cols (C*kh*kw, N*OH*OW): rows ordered (c, i, j), columns (n, oh, ow) with ow innermost, so that
        ``conv2d = W.reshape(C_out, -1) @ cols`` (with groups: reshape to (G, C/G*kh*kw, N*OH*OW)).
        Reference: ``kernel_refs.im2col_ref``.
    """
    xp = _xp(x)
    x = _f32(x, "x")
    (N, C, H, W, OH, OW), args = _conv_args(x.shape, kh, kw, stride, padding, dilation, out_hw)
    cols = xp.empty((C * kh * kw, N * OH * OW), dtype=np.float32)
    if cols.size:
        launch("im2col", "im2col", _grid_1d(cols.size), (BLOCK,), (x, cols) + args)
    return cols


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, dilation=1, out_hw=None):
    """Adjoint of :func:`im2col` as a gather (no atomics): (N, C, H, W) from cols (C*kh*kw, N*OH*OW).

    Arguments as in :func:`im2col`. Reference: ``kernel_refs.col2im_ref``.
    """
    xp = _xp(cols)
    cols = _f32(cols, "cols")
    (N, C, H, W, OH, OW), args = _conv_args(x_shape, kh, kw, stride, padding, dilation, out_hw)
    if tuple(cols.shape) != (C * kh * kw, N * OH * OW):
        raise ValueError(f"col2im: cols {tuple(cols.shape)} do not match input {tuple(x_shape)} "
                         f"(expected {(C * kh * kw, N * OH * OW)})")
    x = xp.empty((N, C, H, W), dtype=np.float32)
    if x.size:
        launch("im2col", "col2im", _grid_1d(x.size), (BLOCK,), (cols, x) + args)
    return x


def softmax_xent(logits, labels, scale=1.0, grad=True):
    """Row-wise softmax cross-entropy, loss and logits gradient in one launch.

    Args:
        logits: (B, K) float32. labels: (B,) integers; a label outside [0, K) marks an ignored row.
        scale: factor on the gradient (e.g. upstream / B for a mean). grad: whether to write the gradient.

    Returns:
        (loss (B,), grad (B, K) = (softmax - onehot) * scale, or None).
        Reference: ``kernel_refs.softmax_xent_ref``.
    """
    xp = _xp(logits)
    logits = _f32(logits, "logits")
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"softmax_xent: logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must be "
                         "(B, K) and (B,)")
    B, K = logits.shape
    labels = xp.ascontiguousarray(labels, dtype=np.int64)
    loss = xp.zeros(B, dtype=np.float32)
    g = xp.zeros((B, K), dtype=np.float32) if grad else None
    if B and K:
        launch("softmax_xent", "softmax_xent", (B,), (_reduce_block(K),),
               (logits, labels, loss, g if grad else loss, np.int32(K), np.float32(scale), np.int32(bool(grad))))
    return loss, g


def maxpool_forward(x, kernel_size, stride=None, padding=0):
    """2-D max pooling with argmax (PyTorch semantics, floor mode, padding as -inf).

    Args:
        x: (N, C, H, W). kernel_size, stride (default: kernel_size), padding: int or pair.

    Returns:
        (y (N, C, OH, OW), argmax (N, C, OH, OW) int32 = h * W + w within the plane).
        Reference: ``kernel_refs.maxpool_forward_ref``.
    """
    xp = _xp(x)
    x = _f32(x, "x")
    N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW = _pool_geometry(x.shape, kernel_size, stride, padding)
    y = xp.empty((N, C, OH, OW), dtype=np.float32)
    arg = xp.empty((N, C, OH, OW), dtype=np.int32)
    if y.size:
        launch("maxpool", "maxpool_fwd", _grid_1d(y.size), (BLOCK,),
               (x, y, arg) + tuple(np.int32(v) for v in (N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)))
    return y, arg


def maxpool_backward(g, argmax, x_shape, kernel_size, stride=None, padding=0):
    """Backward of :func:`maxpool_forward` as a gather: dx (N, C, H, W). Reference: ``maxpool_backward_ref``."""
    xp = _xp(g)
    g = _f32(g, "g")
    argmax = xp.ascontiguousarray(argmax, dtype=np.int32)
    N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW = _pool_geometry(x_shape, kernel_size, stride, padding)
    if g.shape != (N, C, OH, OW) or argmax.shape != g.shape:
        raise ValueError(f"maxpool_backward: gradient {tuple(g.shape)} / argmax {tuple(argmax.shape)} do not "
                         f"match the output {(N, C, OH, OW)}")
    dx = xp.empty((N, C, H, W), dtype=np.float32)
    if dx.size:
        launch("maxpool", "maxpool_bwd", _grid_1d(dx.size), (BLOCK,),
               (g, argmax, dx) + tuple(np.int32(v) for v in (N, C, H, W, kh, kw, sh, sw, ph, pw, OH, OW)))
    return dx


def _inplace_f32(a, what):
    if a.dtype != np.float32 or not a.flags.c_contiguous:
        raise TypeError(f"{what} must be a C-contiguous float32 array to be updated in place")
    return a


def sgd_update(p, g, buf, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, first_step=False):
    """In place SGD step over a flat (or any contiguous) float32 buffer, PyTorch's rule (see optim.cu).

    With ``d = g + weight_decay * p``: when momentum is not 0, ``buf = momentum * buf + (1 - dampening) * d``
    (``buf = d`` on the first step) and ``d = d + momentum * buf`` (Nesterov) or ``d = buf``; then
    ``p -= lr * d``.  ``1 - dampening`` is taken here in float64 and passed to the kernel (taken there
    from a float32 ``dampening`` it would lose a dampening close to 1 entirely).
    Reference: ``kernel_refs.sgd_update_ref``.

    Args:
        p: parameters, C-contiguous float32, updated in place.
        g: gradient, float32, same size.
        buf: momentum buffer, C-contiguous float32, same size, updated in place (ignored when momentum
            is 0; any float32 array then).
        lr: the learning rate.
        momentum: the momentum factor (0: plain SGD, ``buf`` untouched).
        dampening: damping of the new gradient in the momentum average (its weight is ``1 - dampening``).
        weight_decay: L2 penalty, added to the gradient as ``weight_decay * p``.
        nesterov: use Nesterov momentum, ``d + momentum * buf``, instead of ``buf``.
        first_step: ``buf = d`` instead of the running average.

    Raises:
        TypeError: ``p`` or ``buf`` is not C-contiguous float32, or ``g`` is not float32.
        ValueError: the sizes differ.
    """
    _inplace_f32(p, "p")
    _inplace_f32(buf, "buf")
    g = _f32(g, "g")
    if g.size != p.size or (momentum and buf.size != p.size):
        raise ValueError(f"sgd_update: sizes differ (p {p.size}, g {g.size}, buf {buf.size})")
    if p.size:
        launch("optim", "sgd_update", _grid_1d(p.size), (BLOCK,),
               (p, g, buf, np.int64(p.size), np.float32(lr), np.float32(momentum),
                np.float32(1.0 - float(dampening)), np.float32(weight_decay), np.int32(bool(nesterov)),
                np.int32(bool(first_step))))


def adam_update(p, g, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """In place Adam step (PyTorch's rule, 1-based ``step``: the first step is 1).

    ``1 - beta1``, ``1 - beta2`` and the bias corrections ``1 - beta**step`` are computed here in float64
    and passed to the kernel as floats (from a float32 beta close to 1, ``1 - beta`` would be 0).
    p, m, v updated in place. Reference: ``kernel_refs.adam_update_ref``.

    Raises:
        ValueError: ``step`` < 1, or the sizes differ.
    """
    if step < 1:
        raise ValueError(f"adam_update: step must be >= 1 (the first step is 1), got {step}")
    for a, what in ((p, "p"), (m, "m"), (v, "v")):
        _inplace_f32(a, what)
    g = _f32(g, "g")
    if not (g.size == p.size == m.size == v.size):
        raise ValueError(f"adam_update: sizes differ (p {p.size}, g {g.size}, m {m.size}, v {v.size})")
    if p.size:
        beta1, beta2 = float(beta1), float(beta2)
        bc1, bc2 = 1.0 - beta1 ** step, 1.0 - beta2 ** step
        launch("optim", "adam_update", _grid_1d(p.size), (BLOCK,),
               (p, g, m, v, np.int64(p.size), np.float32(lr), np.float32(beta1), np.float32(beta2),
                np.float32(1.0 - beta1), np.float32(1.0 - beta2), np.float32(eps), np.float32(weight_decay),
                np.float32(bc1), np.float32(bc2)))


__all__ = [
    "MODES", "mode", "use", "should_use", "launch", "load_module", "source_dir", "kernel_files",
    "parse_kernels", "expanded_source", "bias_act", "bias_act_backward", "merger_forward", "merger_backward",
    "lstm_cell_forward", "lstm_cell_backward", "gru_cell_forward", "gru_cell_backward", "im2col", "col2im",
    "softmax_xent", "maxpool_forward", "maxpool_backward", "sgd_update", "adam_update",
]


# ------------------------------------------------------------------------------------------------ GPU compile check
_PTXAS_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(sm_\d+)'")
_PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas(log: str) -> list[dict]:
    """Per-kernel records ``{kernel, arch, registers, stack, spill_stores, spill_loads, smem}`` from a
    ``ptxas -v`` log."""
    records, cur = [], None
    for line in log.splitlines():
        m = _PTXAS_ENTRY.search(line)
        if m:
            cur = {"kernel": m.group(1), "arch": m.group(2), "registers": 0, "stack": 0, "spill_stores": 0,
                   "spill_loads": 0, "smem": 0}
            records.append(cur)
            continue
        if cur is None:
            continue
        m = _PTXAS_FRAME.search(line)
        if m:
            cur["stack"], cur["spill_stores"], cur["spill_loads"] = (int(v) for v in m.groups())
        m = _PTXAS_USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            cur["smem"] = int(m.group(3) or 0)
    return records


def gpu_compiler() -> str | None:
    """``"nvcc"`` if nvcc is on PATH (or CUDA_HOME/bin), else ``"nvrtc"`` if NVRTC loads from PyPI, else None."""
    import shutil

    if shutil.which("nvcc") or (os.environ.get("CUDA_HOME") and
                                Path(os.environ["CUDA_HOME"], "bin", "nvcc").is_file()):
        return "nvcc"
    try:
        from cupy_backends.cuda.libs import nvrtc  # noqa: F401

        nvrtc.getVersion()
        return "nvrtc"
    except Exception:
        return None


def gpu_compile(path: Path, arch: str, compiler: str | None = None) -> tuple[int, str]:
    """Compile one .cu file for ``arch`` (e.g. ``"sm_80"``) with ptxas verbose output and warnings as errors.

    Needs no GPU. Returns (return code, log). ``compiler`` is ``"nvcc"`` or ``"nvrtc"`` (default: found).
    """
    compiler = compiler or gpu_compiler()
    path = _resolve(path)
    if compiler == "nvcc":
        import shutil

        nvcc = shutil.which("nvcc") or str(Path(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"))
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [nvcc, "-cubin", f"-arch={arch}", "-std=c++17", f"-I{source_dir()}",
                   "-Xptxas", "-v,-warn-spills,-warn-lmem-usage", "--Werror", "all-warnings",
                   "-o", str(Path(tmp) / "k.cubin"), str(path)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=_compiler_env())
        return r.returncode, r.stdout + r.stderr
    if compiler == "nvrtc":
        from cupy_backends.cuda.libs import nvrtc

        prog = nvrtc.createProgram(expanded_source(path), path.name, [], [])
        try:
            opts = [f"--gpu-architecture={arch}", "--std=c++17", "--ptxas-options=-v",
                    "--ptxas-options=-warn-spills", "--ptxas-options=-warn-lmem-usage"]
            try:
                nvrtc.compileProgram(prog, opts)
                rc = 0
            except nvrtc.NVRTCError:
                rc = 1
            log = nvrtc.getProgramLog(prog)
            # NVRTC has no -Werror: any warning in the log fails the check
            if re.search(r"\bwarning\b", log, re.I):
                rc = rc or 1
            return rc, log
        finally:
            nvrtc.destroyProgram(prog)
    raise RuntimeError("no CUDA compiler: install the CUDA toolkit (nvcc) or nvidia-cuda-nvrtc + cupy")


def gpu_compile_report(archs=("sm_80", "sm_90"), out: Path | None = None) -> tuple[list[dict], list[str]]:
    """Compile every kernel file for every arch; returns (records with a ``file`` key, error messages).

    When ``out`` is given, a readable register/spill table is written there (the benchmarks print it).
    """
    compiler = gpu_compiler()
    records, errors = [], []
    for path in kernel_files():
        for arch in archs:
            rc, log = gpu_compile(path, arch, compiler)
            if rc != 0:
                errors.append(f"{path.name} ({arch}, {compiler}):\n{log}")
                continue
            for rec in parse_ptxas(log):
                rec["file"] = path.name
                records.append(rec)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# minifb kernel register/spill report ({compiler}, {', '.join(archs)})",
                 f"{'file':<18}{'kernel':<20}{'arch':<7}{'regs':>5}{'stack':>7}{'spill st':>9}{'spill ld':>9}"
                 f"{'smem':>6}"]
        for r in records:
            lines.append(f"{r['file']:<18}{r['kernel']:<20}{r['arch']:<7}{r['registers']:>5}{r['stack']:>7}"
                         f"{r['spill_stores']:>9}{r['spill_loads']:>9}{r['smem']:>6}")
        lines += [f"ERROR {e}" for e in errors]
        out.write_text("\n".join(lines) + "\n")
    return records, errors
