"""Tests of minifb.ops.reduce helpers: axis normalisation and reductions on raw arrays (the
differentiable reductions are otherwise tested through ``Tensor`` methods in test_tensor.py and
test_functional.py)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minifb as mf
from minifb.ops.reduce import channel_sum, check_axis, normalize_axis

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


@settings(max_examples=80, deadline=None)
@given(ndim=st.integers(0, 4), data=st.data())
def test_normalize_axis_accepts_valid_ints_of_any_int_type(ndim, data):
    """Valid axes are ints in [-ndim, ndim) (a 0-d tensor takes 0 and -1, as in PyTorch), Python or NumPy."""
    n = max(ndim, 1)
    axis = data.draw(st.integers(-n, n - 1), label="axis")
    as_type = data.draw(st.sampled_from([int, np.int64, np.int32]), label="type")
    want = () if ndim == 0 else (axis % ndim,)
    assert normalize_axis(as_type(axis), ndim) == want
    assert normalize_axis((as_type(axis),), ndim) == want
    assert check_axis(as_type(axis), ndim) == axis % n
    bad = data.draw(st.one_of(st.integers(n, n + 5), st.integers(-n - 5, -n - 1)), label="bad")
    with pytest.raises(ValueError, match="out of range"):
        normalize_axis(bad, ndim)
    with pytest.raises(ValueError, match="out of range"):
        check_axis(as_type(bad), ndim)
    assert normalize_axis(None, ndim) == tuple(range(ndim))


def test_normalize_axis_rejects_non_ints():
    for bad in (1.0, "0", True):
        with pytest.raises(TypeError, match="axis must be an int"):
            normalize_axis(bad, 2)
    with pytest.raises(TypeError, match="sum: axis must be an int"):
        normalize_axis((0, 1.5), 2, fn="sum")
    with pytest.raises(ValueError, match="repeats"):
        normalize_axis((0, -2), 2)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reductions_of_0d_tensors_and_numpy_int_axes(name):
    x = mf.tensor(2.5, dtype="float64", requires_grad=True)
    for axis in (0, -1, (0,), np.int64(0)):
        for keepdims in (False, True):
            out = getattr(x, name)(axis=axis, keepdims=keepdims)
            assert out.shape == () and out.item() == 2.5
    getattr(x, name)(axis=0).backward()
    assert x.grad == 1.0
    with pytest.raises(ValueError, match=f"{name}: axis=1 is out of range for a 0-d tensor"):
        getattr(x, name)(axis=1)
    y = mf.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(getattr(y, name)(axis=np.int64(1)).numpy(),
                               getattr(np, name)(y.numpy(), axis=1))


@settings(max_examples=80, deadline=None)
@given(shape=shapes(min_dims=1, max_dims=3, min_side=0, max_side=3), data=st.data())
def test_max_and_min_of_empty_tensors_follow_numpy(shape, data):
    """Property: on a tensor with a zero-length axis, ``max``/``min`` give NumPy's shape when no reduced
    axis has length 0 (and an empty input gradient), and a ValueError naming the axis when one has."""
    name = data.draw(st.sampled_from(["max", "min"]), label="name")
    axis = data.draw(st.one_of(st.none(), st.integers(0, len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), unique=True).map(tuple)), label="axis")
    keepdims = data.draw(st.booleans(), label="keepdims")
    a = np.arange(float(np.prod(shape))).reshape(shape)
    x = mf.tensor(a, dtype="float64", requires_grad=True)
    try:
        want = getattr(np, name)(a, axis=axis, keepdims=keepdims)
    except ValueError:
        zero = next(i for i in (range(len(shape)) if axis is None else sorted(np.atleast_1d(axis))) if shape[i] == 0)
        with pytest.raises(ValueError, match=rf"{name}: cannot reduce over axis {zero} of length 0 "
                                             rf"\(a tensor of shape {re.escape(str(shape))}\)"):
            getattr(x, name)(axis=axis, keepdims=keepdims)
        return
    out = getattr(x, name)(axis=axis, keepdims=keepdims)
    assert out.shape == want.shape
    np.testing.assert_array_equal(out.numpy(), want)
    out.backward(np.ones(out.shape))
    assert x.grad.shape == shape and x.grad.dtype == np.float64


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_over_the_nonempty_axis_of_an_empty_tensor(name):
    x = mf.zeros(0, 3, requires_grad=True)
    out = getattr(x, name)(axis=1)
    assert out.shape == (0,) and out.dtype == np.float32 and out.requires_grad
    out.sum().backward()
    assert x.grad.shape == (0, 3) and x.grad.dtype == np.float32
    with pytest.raises(ValueError, match=rf"{name}: cannot reduce over axis 0 of length 0"):
        getattr(x, name)()


def test_a_nan_wins_max_and_min_and_takes_the_gradient():
    x = mf.tensor([1.0, np.nan, 3.0], dtype="float64", requires_grad=True)
    assert np.isnan(x.max().item())
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])          # as PyTorch's max()
    y = mf.tensor([[1.0, np.nan], [2.0, 3.0]], dtype="float64", requires_grad=True)
    y.min(axis=1).sum().backward()
    np.testing.assert_array_equal(y.grad, [[0.0, 1.0], [1.0, 0.0]])  # rows without a NaN as before


@pytest.mark.parametrize("dtype", ["bool", "uint8", "uint16", "uint32", "int8", "int32"])
def test_integer_sums_accumulate_in_int64_as_in_pytorch(dtype):
    a = np.array([[1, 0, 1], [1, 1, 0]], dtype=dtype)
    for axis in (None, 0, (0, 1)):
        y = mf.tensor(a).sum(axis=axis)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(y.numpy(), a.astype(np.int64).sum(axis=axis))
    assert mf.tensor(np.full(300, 255, dtype=np.uint8)).sum().item() == 300 * 255


def test_float16_sums_accumulate_in_float32_as_in_pytorch():
    # NumPy adds a strided axis in the input's dtype: 5000 float16 rows drifted 19% from the true column sums
    rng = np.random.default_rng(0)
    x = rng.random((5000, 4)).astype(np.float16)
    true = x.astype(np.float64).sum(axis=0)
    y = mf.tensor(x, dtype="float16").sum(axis=0)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.numpy().astype(np.float64), true, rtol=2e-3)
    b = mf.zeros(4, dtype="float16", requires_grad=True)   # a broadcast's gradient sums over the batch too
    (mf.zeros(5000, 4, dtype="float16") + b).backward(x)
    assert b.grad.dtype == np.float16
    np.testing.assert_allclose(b.grad.astype(np.float64), true, rtol=2e-3)


def test_channel_sum_of_zero_channels_is_empty():
    from minifb.ops.reduce import channel_sum

    for shape, axis in (((2, 0, 3, 3), 1), ((4, 0), 1), ((0, 5), 1)):
        out = channel_sum(np.zeros(shape, np.float32), axis)
        np.testing.assert_array_equal(out, np.zeros(shape[axis]))
