"""Matrix product with NumPy's ``@`` semantics, including batch broadcasting.

For ``C = A @ B`` the gradients are ``dA = dC @ Bᵀ`` and ``dB = Aᵀ @ dC``
(transposing the last two axes); broadcast batch axes are summed away by
``unbroadcast``.  1-D operands are promoted to matrices and the added axis is
removed again from the gradient.
"""

import math

import numpy as np

from ..backend import sum_array
from ..cpu_conv import product
from ..tensor import Function, ProductSum


def _swap_last(x):
    return x.swapaxes(-1, -2)


def _rows(x):
    """``x`` (..., k) as a matrix (rows, k); unlike ``reshape(-1, k)`` this also works when k is 0."""
    return x if x.ndim == 2 else x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


class MatMul(Function):
    """``a @ b`` for arrays of 1 or more dimensions."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: inner dimensions differ: {a.shape} @ {b.shape}")
        self.a = a if self.needs[1] else None
        self.a_ndim, self.b_ndim = a.ndim, b.ndim
        self.b = b if self.needs[0] else None
        try:
            return product(a, b)
        except ValueError:
            raise ValueError(f"matmul: batch dimensions {a.shape[:-2]} and {b.shape[:-2]} cannot be broadcast "
                             f"together: {a.shape} @ {b.shape}") from None

    def backward(self, grad):
        a, b = self.a, self.b  # a is kept only if b needs a gradient, and vice versa
        ga = gb = None
        if self.needs[0]:
            if grad.ndim == 0:                       # vector · vector
                ga = grad * b
            elif b.ndim == 1:                        # (..., m, k) @ (k,) -> (..., m)
                ga = grad[..., None] * b
            elif self.a_ndim == 1:                   # (k,) @ (..., k, n) -> (..., n)
                ga = (grad[..., None, :] @ _swap_last(b))[..., 0, :]
            else:
                ga = product(grad, _swap_last(b))
        if self.needs[1]:
            if grad.ndim == 0:
                gb = grad * a
            elif a.ndim == 1:
                gb = a[:, None] * grad[..., None, :]
            elif self.b_ndim == 1:
                gb = (_swap_last(a) @ grad[..., None])[..., 0]
            elif a.ndim > 2 and self.b_ndim == 2:    # fold the batch into one large product
                gb = _rows(a).T @ _rows(grad)
            else:
                gb = product(_swap_last(a), grad)
        return ga, gb


class Linear(Function):
    """``x @ w.T + b`` as one op: the affine map of Dense layers and recurrent cells.

    ``x`` (..., in), ``w`` (out, in), optional ``b`` (out,).  Gradients:
    ``dx = dy @ w``, ``dw = dyᵀ @ x`` (leading axes folded into one large
    product), ``db = Σ dy`` over the leading axes.  Written as one op rather
    than transpose + matmul + bias add, it records one node instead of three
    and adds the bias in place into the fresh product.  For a batched ``x``,
    ``backward`` returns ``dw`` not as an array but as a
    :class:`~minifb.tensor.ProductSum`, the deferred product ``dyᵀ @ x``:
    :meth:`Tensor.backward` merges a weight's per-timestep gradients into one
    such sum and evaluates it as a single stacked product, of shape (out, in),
    when the weight's gradient is used (for a 1-D ``x``, ``dw`` is the outer
    product, computed at once).
    """

    def forward(self, x, w, b=None):
        self.x = x if self.needs[1] else None
        self.w = w if self.needs[0] else None
        y = product(x, w.T)
        if b is not None:
            if np.result_type(y.dtype, b.dtype) == y.dtype:   # NumPy's, on dtypes: CuPy's costs ~5 µs
                y += b            # y is a fresh array: add in place
            else:
                y = y + b
        return y

    def backward(self, grad):
        gx = product(grad, self.w) if self.needs[0] else None
        gw = None
        if self.needs[1]:
            x = self.x
            if x.ndim == 1:
                gw = grad[:, None] * x[None, :]
            else:
                # kept as a product: backward stacks the T timesteps' products of one weight (ProductSum)
                gw = ProductSum(_rows(grad).T, _rows(x))
        if len(self.needs) == 2:
            return gx, gw
        gb = None
        if self.needs[2]:
            gb = grad if grad.ndim == 1 else sum_array(_rows(grad), axis=0)
        return gx, gw, gb
