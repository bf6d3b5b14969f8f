"""Tests of minifb.ops.reduce helpers on raw arrays (the differentiable reductions are tested through
``Tensor`` methods in test_tensor.py and test_functional.py)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from minifb.ops.reduce import channel_sum

from strategies import floats64, seeds, shapes


@settings(max_examples=60, deadline=None)
@given(shape=shapes(min_dims=1, max_dims=4), seed=seeds, data=st.data())
def test_channel_sum_matches_numpy_in_every_memory_order(shape, seed, data):
    """The bias-gradient reduction: the sum over every axis but one, whatever the memory order
    (C order, the channel axis moved innermost as in channels-last images, or a strided view)."""
    a = floats64(shape, seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    want = a.sum(axis=tuple(i for i in range(a.ndim) if i != axis % a.ndim))
    channels_last = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, axis, -1)), -1, axis)
    strided = np.repeat(a, 2, axis=0)[::2]
    for layout in (a, channels_last, strided, a.astype(np.float32)):
        got = channel_sum(layout, axis)
        assert got.shape == (shape[axis],) and got.dtype == layout.dtype
        tol = 1e-4 if layout.dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, np.abs(a).sum()))
