"""Saving and loading a module's parameters and buffers as a NumPy ``.npz`` file.

The file is what ``numpy.savez`` writes for ``module.state_dict()`` converted
to NumPy arrays: a zip archive with one ``.npy`` entry per dotted name
(``layers.0.weight.npy``, ...).  Any NumPy program can read it
(``numpy.load(path)``), and nothing in it is pickled.

:func:`load` is strict: it refuses a file that does not fit the module, and the
error lists every missing name, every unexpected name and every shape that
differs, so a wrong architecture or a wrong argument (``classes=7`` against a
10-class checkpoint) is seen at once.  Values are loaded onto the module's
current device and converted to its parameters' dtype.

Example:
    >>> import tempfile
    >>> import minifb as mf
    >>> from minifb import nn
    >>> net = nn.Dense(3, 2)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = mf.save(net, f"{folder}/dense.npz")       # returns the path it wrote
    ...     copy = mf.load(nn.Dense(3, 2), path)            # same values, on the module's device
    >>> path.endswith("dense.npz"), bool((copy.weight.numpy() == net.weight.numpy()).all())
    (True, True)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
import zlib

import numpy as np

from . import backend
from .nn.module import Module, missing_state_names

__all__ = ["save", "load"]


def _check_module(fn: str, module) -> None:
    if not isinstance(module, Module):   # an optimiser has state_dict() too, of other things than arrays
        hint = "; keep an optimiser's state with pickle.dump(opt.state_dict(), f)" if hasattr(module, "step") else ""
        raise TypeError(f"{fn}: expected an nn.Module, got {type(module).__name__}{hint}")


def _check_path(fn: str, path) -> str:
    """``path`` (a str, bytes or os.PathLike) as a str when it names no directory, else a TypeError /
    IsADirectoryError naming ``fn``."""
    try:
        path = os.fsdecode(os.fspath(path))   # a bytes path as str, so that suffixes can be appended
    except TypeError:
        raise TypeError(f"{fn}: path must be a str, bytes or an os.PathLike, got {type(path).__name__}") from None
    if os.path.isdir(path):
        raise IsADirectoryError(f"{fn}: path {path!r} is a directory, not a weights file (an .npz archive)")
    return path


def save(module, path) -> str:
    """Write ``module.state_dict()`` to ``path`` as an uncompressed ``.npz`` file.

    The file is written at exactly ``path`` (no suffix is added), so
    ``load(module, path)`` reads it back with the same name; ``.npz`` is the
    conventional suffix.

    Args:
        module: an :class:`~minifb.nn.Module`.
        path: a file name (``str``, ``bytes`` or ``os.PathLike``).

    Returns:
        ``path`` as a ``str``.

    Raises:
        TypeError: ``module`` is not a Module, or ``path`` not a str, bytes or os.PathLike.
        IsADirectoryError: ``path`` is a directory.
        FileNotFoundError: the folder of ``path`` does not exist.
        PermissionError: the folder of ``path`` cannot be written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     mf.save(nn.Dense(3, 2), f"{folder}/checkpoint.npz").endswith("/checkpoint.npz")
        True
    """
    _check_module("save", module)
    path = _check_path("save", path)
    arrays = {name: backend.to_numpy(getattr(value, "data", value)) for name, value in module.state_dict().items()}
    with written_whole("save", path) as tmp:
        # numpy.savez's own layout, written entry by entry: passing the names as keyword arguments
        # (savez(f, **arrays)) would collide with its parameters `file` and `allow_pickle`
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, array in arrays.items():
                with archive.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)
    return path


@contextlib.contextmanager
def written_whole(owner: str, path: str):
    """Write ``path`` whole or not at all: yield a temporary path to write, which replaces ``path`` when the
    block ends without an error.

    The temporary sits in a folder of its own beside ``path``: a failed write leaves an earlier file at
    ``path`` intact, and no file of the user's (such as ``path + ".tmp"``) is touched, nor that of another
    write to ``path`` running at the same time. Created afresh there, the file gets the usual mode (0o666
    less the umask), not ``mkstemp``'s 0o600.

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist (named with ``owner``).
        PermissionError: the folder of ``path`` cannot be written.
    """
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{owner}: the folder {folder!r} of {path!r} does not exist")
    try:
        workdir = tempfile.TemporaryDirectory(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    except PermissionError as e:
        raise PermissionError(f"{owner}: cannot write in the folder {folder!r} ({e.strerror})") from None
    with workdir as tmp_folder:
        tmp = os.path.join(tmp_folder, os.path.basename(path))
        yield tmp
        os.replace(tmp, path)


def _state_items(module) -> list:
    """``(dotted_name, tensor)`` of everything ``state_dict`` holds, without copying the values."""
    if hasattr(module, "_state_items"):
        return module._state_items()
    return list(module.state_dict().items())


def load(module, path):
    """Load a file written by :func:`save` into ``module``, refusing any mismatch.

    Args:
        module: the :class:`~minifb.nn.Module` to fill; its parameter objects
            are kept (an optimiser built on them keeps working) and their
            values replaced, on the module's current device and dtype.
        path: the ``.npz`` file.

    Returns:
        ``module``.

    Raises:
        ValueError: the file's names or shapes differ from the module's; the
            message lists the missing names, the unexpected names and each
            shape difference; or a value cannot be read (an object array) or
            converted to the parameter's dtype, named with the file; or the
            file is not an ``.npz`` archive, or a damaged one (a bad checksum
            or entry header).  Nothing is changed in that case.
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory.
        TypeError: ``path`` is not a str, bytes or os.PathLike.

    Example:
        >>> import tempfile
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = mf.save(nn.Dense(3, 2), f"{folder.name}/dense.npz")
        >>> net = mf.load(nn.Dense(3, 2), path)          # a fresh Dense with the saved values
        >>> mf.load(nn.Dense(3, 4), path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: load: '.../dense.npz' does not match Dense
          shape differences: weight: file (2, 3) vs module (4, 3); bias: file (2,) vs module (4,)
        >>> folder.cleanup()
    """
    _check_module("load", module)
    path = _check_path("load", path)
    not_weights = f"load: {path!r} is not a minifb weights file (an .npz archive written by minifb.save)"
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile):  # neither .npz nor .npy: NumPy would try to unpickle it
        raise ValueError(not_weights) from None
    if not hasattr(npz, "files"):  # a single .npy array
        raise ValueError(not_weights)
    with npz as f:
        arrays, unreadable = {}, []
        for name in f.files:
            try:
                arrays[name] = f[name]
            except ValueError as error:  # an object array (only readable by unpickling) or a damaged entry
                unreadable.append(f"{name}: " + _unreadable_reason(error))
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:   # a bad CRC or local header
                unreadable.append(f"{name}: the archive is damaged ({error})")
    if unreadable:
        raise ValueError(f"load: {path!r} has values that cannot be read: " + "; ".join(unreadable))
    items = _state_items(module)
    expected = {name: tuple(t.shape) for name, t in items}
    missing = missing_state_names(items, arrays)
    unexpected = [n for n in arrays if n not in expected]
    differ = [f"{n}: file {tuple(arrays[n].shape)} vs module {expected[n]}"
              for n in expected if n in arrays and tuple(arrays[n].shape) != expected[n]]
    if missing or unexpected or differ:
        lines = [f"load: {path!r} does not match {type(module).__name__}"]
        if missing:
            lines.append("  missing names (in the module, not in the file): " + ", ".join(missing))
        if unexpected:
            lines.append("  unexpected names (in the file, not in the module): " + ", ".join(unexpected))
        if differ:
            lines.append("  shape differences: " + "; ".join(differ))
        raise ValueError("\n".join(lines))
    try:
        module.load_state_dict(arrays)
    except ValueError as error:  # a value that cannot be converted to the parameter's dtype
        raise ValueError(f"load: {path!r} does not fit {type(module).__name__}: {error}") from None
    return module


def _unreadable_reason(error: ValueError) -> str:
    """Why ``numpy.load`` could not read one entry, in minifb's terms."""
    if "allow_pickle" in str(error):
        return "it holds Python objects (an object array), which minifb never unpickles"
    return str(error)
