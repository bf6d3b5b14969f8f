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
