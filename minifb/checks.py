"""Argument checks shared by the public API.

A bad argument is refused where it is passed, with a message that names the function (or layer), the
argument and the value it got. Nothing is truncated (``2.5`` channels are not 2), read by truthiness
(``training="no"`` is not True) or left to fail later inside NumPy.

Example:
    >>> from minifb.checks import integer, number
    >>> integer("LRN", "size", 5)
    5
    >>> integer("LRN", "size", 2.5)
    Traceback (most recent call last):
        ...
    ValueError: LRN: size must be a positive integer, got 2.5
    >>> number("BatchNorm", "eps", 0.0, above=0)
    Traceback (most recent call last):
        ...
    ValueError: BatchNorm: eps must be a number > 0, got 0.0
"""

from __future__ import annotations

import math
import numbers
import operator
import os

import numpy as np


def scalar(value):
    """A 0-d array or Tensor (what minifb's own reductions give: ``x.max().data``) as its Python number;
    anything else as it is."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def _as_int(value):
    """``value`` as a Python int when it is an integer (Python or NumPy, a 0-d array or Tensor of one; not a
    bool), else None."""
    v = scalar(value)
    try:
        return None if isinstance(v, (bool, np.bool_)) else operator.index(v)
    except TypeError:
        return None


def integer(fn: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer (Python or NumPy, a 0-d array of one; not a bool) of at
    least ``minimum``.

    Raises:
        ValueError: anything else, a float with an integral value included.
    """
    n = _as_int(value)
    if n is None or n < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{fn}: {name} must be {what}, got {value!r}")
    return n


def flag(fn: str, name: str, value) -> bool:
    """``value`` as a bool when it is one (Python or NumPy, or a 0-d boolean array).

    Raises:
        TypeError: anything else (a string, a number, None), which truthiness would misread.
    """
    v = scalar(value)
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")
    return bool(v)


def choice(fn: str, name: str, value, choices: tuple) -> str:
    """``value`` when it is one of the strings ``choices`` (a reduction, an activation's name).

    A non-string is refused before ``in`` is asked: ``in`` compares with ``==``, which an array answers
    elementwise ("the truth value of an array ... is ambiguous") instead of saying no.

    Example:
        >>> from minifb.checks import choice
        >>> choice("mse_loss", "reduction", "sum", ("mean", "sum", "none"))
        'sum'

    Raises:
        ValueError: anything else, a non-string included.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {choices}, got {value!r}")
    return value


def env_choice(var: str, choices: tuple, default: str = "auto") -> str:
    """The environment variable ``var`` (read now) as one of the lower-case strings ``choices``: surrounding
    space and case are ignored, and unset or empty means ``default``. The switches ``MINIFB_KERNELS`` and
    ``MINIFB_CPU_CONV`` are read this way.

    Raises:
        ValueError: anything else, with the variable, its value and the choices named.
    """
    value = os.environ.get(var, default)
    choice = value.strip().lower() or default
    if choice not in choices:
        raise ValueError(f"{var}={value!r}: expected one of {', '.join(choices)}")
    return choice


def number(fn: str, name: str, value, *, above=None, at_least=None, at_most=None, below=None,
           finite: bool = False) -> float:
    """``value`` as a float when it is a real number inside the given bounds.

    Python and NumPy numbers, ``Fraction`` and ``Decimal``, and 0-d arrays of them are numbers; bools
    and complex numbers are not.

    Args:
        fn, name: the function (or layer) and argument, for the message.
        value: what the caller passed.
        above, at_least, at_most, below: the bounds, ``above < value``, ``at_least <= value``,
            ``value <= at_most``, ``value < below``; None for no bound. A NaN is never inside a bound.
        finite: also refuse NaN and infinities (a learning rate of ``inf`` has no lower bound to fail).

    Raises:
        TypeError: ``value`` is not a real number (None, a string, a bool, an array with dimensions).
        ValueError: ``value`` is outside a bound.
    """
    v = scalar(value)
    real = isinstance(v, numbers.Real) or (isinstance(v, numbers.Number) and not isinstance(v, numbers.Complex))
    if isinstance(v, (bool, np.bool_)) or not real:
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}")
    try:
        v = float(v)
    except OverflowError:   # an int past float's range (10 ** 400): outside any bound a float can state
        raise ValueError(f"{fn}: {name} must be a number within float's range, got {value!r}") from None
    bounds = [(above, ">", lambda b: v > b), (at_least, ">=", lambda b: v >= b),
              (at_most, "<=", lambda b: v <= b), (below, "<", lambda b: v < b)]
    wanted = [f"{op} {b:g}" for b, op, _ in bounds if b is not None]
    if not all(inside(b) for b, _, inside in bounds if b is not None) or (finite and not math.isfinite(v)):
        what = "a finite number" if finite else "a number"
        raise ValueError(f"{fn}: {name} must be {what} {' and '.join(wanted)}".rstrip() + f", got {v!r}")
    return v


def pair(fn: str, name: str, value, minimum: int = 1) -> tuple:
    """``value`` as a pair ``(h, w)`` of ints when it is an int, or a pair (tuple, list or 1-d array) of ints,
    each at least ``minimum``: the rule for kernel sizes, strides, paddings and image sizes.

    Example:
        >>> from minifb.checks import pair
        >>> pair("Conv", "stride", 2)
        (2, 2)
        >>> pair("Conv", "padding", (1, -1), minimum=0)
        Traceback (most recent call last):
            ...
        ValueError: Conv: padding must be an int >= 0 or a pair of them, got (1, -1)

    Raises:
        ValueError: anything else: a float, a bool, a pair of the wrong length, a value under ``minimum``.
    """
    items = [_as_int(v) for v in value] if _is_pair(value) else [_as_int(value)] * 2
    if len(items) != 2 or any(v is None or v < minimum for v in items):
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{fn}: {name} must be {what} or a pair of them, got {value!r}")
    return items[0], items[1]


def int_or_pair(fn: str, name: str, value, minimum: int = 1):
    """``value`` checked by :func:`pair` and kept in the form it was given: a number as an int, a pair (tuple,
    list, 1-d array or Tensor) as a tuple of two ints.  So a layer's stored size argument compares, prints
    and pickles as the user meant (``stride=np.array([1, 2])`` is kept as ``(1, 2)``, ``np.int64(2)`` as ``2``).

    Raises:
        ValueError: as :func:`pair`.
    """
    h, w = pair(fn, name, value, minimum)
    return (h, w) if _is_pair(value) else h


def _is_pair(value) -> bool:
    """Whether a size argument is given as a pair (a tuple, list or 1-d array) rather than one number."""
    return isinstance(value, (tuple, list)) or getattr(value, "ndim", None) == 1
