"""Checking gradients numerically, for minifb's own tests and for users' ops.

:func:`gradcheck` compares the autodiff gradient with a central finite
difference in float64 along random directions: for a direction ``v``,
``⟨∇f(x), v⟩ ≈ (f(x + εv) - f(x - εv)) / 2ε``.  One directional check per
input costs two forward passes, however large the input, yet catches any
wrong entry of the gradient with probability one.
"""

from __future__ import annotations

import numpy as np

from . import backend, checks
from .tensor import Tensor, no_grad


def _output(fn, inputs) -> Tensor:
    """``fn(*inputs)``, refusing anything but one Tensor."""
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return one Tensor, got {type(out).__name__} "
                        "(reduce a tuple of outputs to one, e.g. their weighted sum)")
    return out


def _scalar(out: Tensor, weights) -> float:
    return float((backend.to_numpy(out.data).astype(np.float64) * weights).sum())


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4,
              directions: int = 3, seed: int = 0) -> bool:
    """Check the gradients of ``fn`` at ``inputs`` against central differences.

    The output of ``fn`` is reduced to a scalar with fixed random weights, so
    every output element matters.  Inputs that are tensors with
    ``requires_grad=True`` are checked; they must be float64 leaves (made by
    the user, not computed by an op: the check perturbs their ``.data``).

    Args:
        fn: maps the input tensors to one output tensor.
        *inputs: Tensors (or other arguments, passed through unchanged).
        eps: finite-difference step, a number > 0.
        atol, rtol: tolerance on each directional derivative, numbers >= 0.
        directions: random directions tried per input, an integer >= 1.
        seed: seed for the weights and directions.

    Returns:
        True; raises AssertionError naming the input and both values otherwise.

    Raises:
        TypeError: ``fn`` does not return one Tensor; an input with
            ``requires_grad=True`` is not float64 (finite differences in a
            narrower dtype are too inaccurate to compare); ``eps``, ``atol``
            or ``rtol`` is not a number.
        ValueError: an input with ``requires_grad=True`` is not a leaf; no
            input requires grad; ``eps``, ``atol``, ``rtol`` or
            ``directions`` is out of range.
        AssertionError: a directional derivative from autodiff differs from the
            central difference by more than ``atol + rtol * |central|``.

    Example:
        >>> from minifb.testing import gradcheck
        >>> x = mf.tensor(np.random.randn(3, 4), dtype="float64", requires_grad=True)
        >>> gradcheck(lambda t: (t * t).sum(axis=1), x)
        True
    """
    eps = checks.number("gradcheck", "eps", eps, above=0, finite=True)
    atol = checks.number("gradcheck", "atol", atol, at_least=0)
    rtol = checks.number("gradcheck", "rtol", rtol, at_least=0)
    directions = checks.integer("gradcheck", "directions", directions)
    checked = [(index, t) for index, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input is a Tensor with requires_grad=True, so there is nothing to check")
    for index, t in checked:
        if t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {index} has dtype {t.dtype}; use float64 for finite differences")
        if not t.is_leaf:   # its gradient goes to the leaves it was computed from, never to t.grad
            raise ValueError(f"gradcheck: input {index} requires grad but is not a leaf (it was computed by "
                             f"{type(t._ctx).__name__}); pass a leaf, e.g. t.detach().requires_grad_()")

    rng = np.random.default_rng(seed)
    out = _output(fn, inputs)
    weights = rng.standard_normal(out.shape)
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    out.backward(backend.to_device(weights.astype(out.dtype), out.device))

    for index, t in checked:
        analytic = np.zeros(t.shape) if t.grad is None else backend.to_numpy(t.grad).astype(np.float64)
        original = t.data.copy()
        for _ in range(directions):
            v = rng.standard_normal(t.shape)
            v_dev = backend.to_device(v, t.device)
            try:
                with no_grad():
                    t.data = original + eps * v_dev
                    plus = _scalar(_output(fn, inputs), weights)
                    t.data = original - eps * v_dev
                    minus = _scalar(_output(fn, inputs), weights)
            finally:   # fn may raise at a perturbed point: the input is put back all the same
                t.data = original
            numeric = (plus - minus) / (2 * eps)
            predicted = float((analytic * v).sum())
            if not abs(numeric - predicted) <= atol + rtol * abs(numeric):
                raise AssertionError(
                    f"gradcheck: input {index} (shape {t.shape}): autodiff gives directional derivative "
                    f"{predicted:.8g}, central difference gives {numeric:.8g}")
    return True
