"""Argument checks shared by the public API.

A bad argument is refused where it is passed, with a message that names the function (or layer), the
argument and the value it got. Nothing is truncated (``2.5`` channels are not 2), read by truthiness
(``training="no"`` is not True) or left to fail later inside NumPy.

Example:
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

import numbers
import operator

import numpy as np


def scalar(value):
    """A 0-d array or Tensor (what minifb's own reductions give: ``x.max().data``) as its Python number;
    anything else as it is."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def integer(fn: str, name: str, value, minimum: int = 1) -> int:
    """``value`` as an int when it is an integer (Python or NumPy, a 0-d array of one; not a bool) of at
    least ``minimum``.

    Raises:
        ValueError: anything else, a float with an integral value included.
    """
    v = scalar(value)
    try:
        n = None if isinstance(v, (bool, np.bool_)) else operator.index(v)
    except TypeError:
        n = None
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


def number(fn: str, name: str, value, *, above=None, at_least=None, at_most=None, below=None) -> float:
    """``value`` as a float when it is a real number inside the given bounds.

    Python and NumPy numbers, ``Fraction`` and ``Decimal``, and 0-d arrays of them are numbers; bools
    and complex numbers are not.

    Args:
        fn, name: the function (or layer) and argument, for the message.
        value: what the caller passed.
        above, at_least, at_most, below: the bounds, ``above < value``, ``at_least <= value``,
            ``value <= at_most``, ``value < below``; None for no bound. A NaN is never inside a bound.

    Raises:
        TypeError: ``value`` is not a real number (None, a string, a bool, an array with dimensions).
        ValueError: ``value`` is outside a bound.
    """
    v = scalar(value)
    real = isinstance(v, numbers.Real) or (isinstance(v, numbers.Number) and not isinstance(v, numbers.Complex))
    if isinstance(v, (bool, np.bool_)) or not real:
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}")
    v = float(v)
    bounds = [(above, ">", lambda b: v > b), (at_least, ">=", lambda b: v >= b),
              (at_most, "<=", lambda b: v <= b), (below, "<", lambda b: v < b)]
    wanted = [f"{op} {b:g}" for b, op, _ in bounds if b is not None]
    if not all(inside(b) for b, _, inside in bounds if b is not None):
        raise ValueError(f"{fn}: {name} must be a number {' and '.join(wanted)}, got {v!r}")
    return v
