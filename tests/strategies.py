"""Hypothesis strategies and float64 helpers shared by the test suite."""

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


def shapes(min_dims=1, max_dims=3, min_side=1, max_side=5):
    """Array shapes with small sides."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@st.composite
def broadcastable_pair(draw, max_dims=3):
    """Two shapes that broadcast together (NumPy rules)."""
    shape = draw(shapes(max_dims=max_dims))
    other = draw(hnp.broadcastable_shapes(shape, min_dims=0, max_dims=max_dims, max_side=5))
    return shape, other


def floats64(shape, seed):
    """A reproducible float64 array of standard normal values."""
    return np.random.default_rng(seed).standard_normal(shape)


seeds = st.integers(0, 2**31 - 1)


def to64(module):
    """Convert a module's parameters and buffers to float64 in place (for finite differences)."""
    for t in module.parameters() + module.buffers():
        t.data = t.data.astype(np.float64)
    return module


def t64(array, requires_grad=False):
    """A float64 tensor of ``array``."""
    import minifb as mf

    return mf.tensor(np.asarray(array, dtype=np.float64), dtype="float64", requires_grad=requires_grad)


def mutually_broadcastable(num_shapes, max_dims=3, max_side=4):
    """A tuple of ``num_shapes`` shapes (each 0 to ``max_dims`` axes) that broadcast together."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=0, max_dims=max_dims,
                                             max_side=max_side).map(lambda r: r.input_shapes)


@st.composite
def shapes_broadcasting_to(draw, shape):
    """A shape that broadcasts *to* ``shape`` without enlarging it: a suffix of ``shape`` with some sides 1."""
    suffix = shape[len(shape) - draw(st.integers(0, len(shape))):]
    return tuple(1 if n == 1 or draw(st.booleans()) else n for n in suffix)


@st.composite
def matmul_shapes(draw, max_batch_dims=2, max_side=4):
    """Operand shapes of ``a @ b``: each 1-D or (batch..., rows, cols), the batch axes broadcasting."""
    m, k, n = (draw(st.integers(1, max_side)) for _ in range(3))
    batch_a, batch_b = draw(mutually_broadcastable(2, max_dims=max_batch_dims, max_side=3))
    a = (k,) if draw(st.booleans()) else batch_a + (m, k)
    b = (k,) if draw(st.booleans()) else batch_b + (k, n)
    return a, b


def distinct64(shape, seed, gap=0.5):
    """A reproducible float64 array whose values are distinct and at least ``gap`` apart (no ties to break)."""
    size = int(np.prod(shape, dtype=np.int64))
    values = (np.random.default_rng(seed).permutation(size) - size / 2) * gap
    return values.reshape(shape)
