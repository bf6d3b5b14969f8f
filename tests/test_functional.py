"""Every op's gradient against central finite differences in float64, plus values and errors.

Convolutions and pooling live in tests/test_conv.py.
"""

import operator
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minifb as mf
from minifb import functional as F
from minifb.testing import gradcheck

from strategies import broadcastable_pair, floats64, seeds, shapes


def t64(array, requires_grad=True):
    return mf.tensor(array, dtype="float64", requires_grad=requires_grad)


# ---- elementwise: gradients with broadcasting (hypothesis over shapes) ------------------
BINARY = {
    "add": F.add, "sub": F.sub, "mul": F.mul,
    "div": lambda a, b: F.div(a, b * b + 1.0),
    "pow": lambda a, b: F.pow(a * a + 0.5, b),
    "maximum": F.maximum, "minimum": F.minimum,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=15, deadline=None)
@given(pair=broadcastable_pair(), seed=seeds)
def test_binary_op_gradients_with_broadcasting(name, pair, seed):
    a = t64(floats64(pair[0], seed))
    b = t64(floats64(pair[1], seed + 1))
    gradcheck(BINARY[name], a, b)


@settings(max_examples=20, deadline=None)
@given(pair=broadcastable_pair(), seed=seeds)
def test_broadcast_result_shape_matches_numpy(pair, seed):
    a, b = floats64(pair[0], seed), floats64(pair[1], seed + 1)
    ta, tb = t64(a), t64(b)
    out = ta * tb
    assert out.shape == (a * b).shape
    np.testing.assert_allclose(out.numpy(), a * b, rtol=1e-15)
    g = floats64(out.shape, seed + 2)
    out.backward(g)
    # each operand's gradient is the product rule's, summed back over the axes broadcasting stretched
    for t, own, other in ((ta, a, b), (tb, b, a)):
        full = np.broadcast_to(g * other, out.shape)
        lead = full.ndim - own.ndim
        summed = full.sum(axis=tuple(range(lead))) if lead else full
        stretched = tuple(i for i, n in enumerate(own.shape) if n == 1 and summed.shape[i] != 1)
        expected = summed.sum(axis=stretched, keepdims=True) if stretched else summed
        assert t.grad.shape == own.shape
        np.testing.assert_allclose(t.grad, expected, rtol=1e-12, atol=1e-12)


UNARY = {
    "neg": F.neg, "exp": F.exp, "log": lambda x: F.log(x * x + 0.1), "sqrt": lambda x: F.sqrt(x * x + 0.1),
    "abs": F.abs, "pow_scalar": lambda x: x ** 3, "relu": F.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "sigmoid": F.sigmoid, "tanh": F.tanh, "softplus": F.softplus, "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "clip": lambda x: F.clip(x, -0.5, 0.7),
    "softmax": lambda x: F.softmax(x, axis=0), "log_softmax": F.log_softmax,
}


@pytest.mark.parametrize("name", sorted(UNARY))
@settings(max_examples=10, deadline=None)
@given(shape=shapes(), seed=seeds)
def test_unary_op_gradients(name, shape, seed):
    x = floats64(shape, seed)
    x[np.abs(x) < 1e-3] += 0.01  # keep away from kinks where the derivative jumps
    gradcheck(UNARY[name], t64(x))


KINKS = np.array([-1.5, -0.0, 0.0, 2.0])


def test_gradients_exactly_at_zero():
    """The derivative chosen at the kink x = 0 (test_unary_op_gradients keeps away from it):
    relu'(0) = 0 (PyTorch's threshold_backward passes the gradient only where x > 0),
    abs'(0) = sign(0) = 0 (PyTorch's sgn(0) = 0), and for leaky_relu the slope (PyTorch's
    leaky_relu_backward takes the identity branch only where x > 0; its value at 0 is checked against
    PyTorch itself in test_gradients_exactly_at_zero_match_pytorch)."""
    g = np.array([0.7, -1.3, 2.1, 0.5])
    for fn, want in [(F.relu, [0.0, 0.0, 0.0, 1.0]), (mf.relu, [0.0, 0.0, 0.0, 1.0]),
                     (F.abs, [-1.0, 0.0, 0.0, 1.0]), (abs, [-1.0, 0.0, 0.0, 1.0]),
                     (lambda t: F.leaky_relu(t, 0.2), [0.2, 0.2, 0.2, 1.0])]:
        x = t64(KINKS)
        fn(x).backward(g)
        np.testing.assert_array_equal(x.grad, g * np.array(want))


@pytest.mark.parametrize("name", ["relu", "abs", "leaky_relu", "leaky_relu_default"])
def test_gradients_exactly_at_zero_match_pytorch(name):
    torch = pytest.importorskip("torch")
    ours = {"relu": F.relu, "abs": F.abs, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
            "leaky_relu_default": F.leaky_relu}[name]
    theirs = {"relu": torch.relu, "abs": torch.abs,
              "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.2),
              "leaky_relu_default": torch.nn.functional.leaky_relu}[name]
    g = np.array([0.7, -1.3, 2.1, 0.5])
    x = t64(KINKS)
    ours(x).backward(g)
    xt = torch.tensor(KINKS, dtype=torch.float64, requires_grad=True)
    theirs(xt).backward(torch.tensor(g))
    np.testing.assert_array_equal(x.grad, xt.grad.numpy())


@pytest.mark.parametrize("fn,a_wins", [(F.maximum, np.greater), (F.minimum, np.less)])
def test_maximum_minimum_ties_split_the_gradient_equally(fn, a_wins):
    """At a tie each side gets half the gradient (PyTorch's convention); elsewhere the winner gets all."""
    a = np.array([1.0, 2.0, 3.0, -1.0, 0.0, 5.0])
    b = np.array([1.0, 1.0, 4.0, -1.0, 0.5, 5.0])
    g = np.array([0.3, -1.2, 2.0, 0.7, -0.4, 1.5])
    ta, tb = t64(a), t64(b)
    out = fn(ta, tb)
    out.backward(g)
    wa = np.where(a == b, 0.5, a_wins(a, b).astype(float))
    np.testing.assert_array_equal(ta.grad, g * wa)
    np.testing.assert_array_equal(tb.grad, g * (1 - wa))
    np.testing.assert_array_equal(ta.grad + tb.grad, g)  # the gradient is split, never duplicated


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_ties_match_pytorch(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    a = rng.integers(-2, 3, (4, 5)).astype(np.float64)        # small integers: many ties
    b = rng.integers(-2, 3, (5,)).astype(np.float64)           # broadcast: ties sum over the batch axis
    g = rng.standard_normal((4, 5))
    ta, tb = t64(a), t64(b)
    getattr(F, name)(ta, tb).backward(g)
    pa, pb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    getattr(torch, name)(pa, pb).backward(torch.tensor(g))
    assert (a == b).any()
    np.testing.assert_allclose(ta.grad, pa.grad.numpy(), rtol=1e-15, atol=0)
    np.testing.assert_allclose(tb.grad, pb.grad.numpy(), rtol=1e-15, atol=0)



def test_division_by_a_subnormal_gives_a_zero_numerator_a_zero_gradient():
    # d(a/b)/db = -(a/b)/b: formed as (grad/b)·(a/b) it was inf·0 = NaN at a = 0 (PyTorch: 0)
    a = mf.tensor([0.0, 1.0], dtype="float32", requires_grad=True)
    b = mf.tensor([1e-40, 2.0], dtype="float32", requires_grad=True)
    with np.errstate(over="ignore"):
        (a / b).backward(np.ones(2, np.float32))
    np.testing.assert_array_equal(b.grad, [0.0, -0.25])

@pytest.mark.parametrize("fn", [F.maximum, F.minimum])
def test_maximum_minimum_pass_the_gradient_to_both_sides_of_a_nan(fn):
    # the result is NaN, so neither side "lost": both get the gradient, whatever the argument order (PyTorch's
    # rule); before, b took all of it, so swapping the arguments moved the gradient
    for a, b in (([np.nan, 1.0], [0.0, np.nan]), ([0.0, np.nan], [np.nan, 1.0])):
        ta, tb = t64(np.array(a)), t64(np.array(b))
        fn(ta, tb).backward(np.array([2.0, 3.0]))
        np.testing.assert_array_equal(ta.grad, [2.0, 3.0])
        np.testing.assert_array_equal(tb.grad, [2.0, 3.0])

@pytest.mark.parametrize("low,high", [(-0.5, 0.7), (-0.5, None), (None, 0.7)])
def test_clip_gradient_passes_at_the_bounds(low, high):
    """A value exactly on a bound is not clipped: its gradient passes (PyTorch's clamp convention)."""
    x = np.array([-1.0, -0.5, 0.0, 0.7, 1.0, -0.5, 0.7])
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    t = t64(x)
    F.clip(t, low, high).backward(g)
    inside = np.ones_like(x, dtype=bool)
    if low is not None:
        inside &= x >= low
    if high is not None:
        inside &= x <= high
    np.testing.assert_array_equal(t.grad, g * inside)
    torch = pytest.importorskip("torch")
    p = torch.tensor(x, requires_grad=True)
    torch.clamp(p, low, high).backward(torch.tensor(g))
    np.testing.assert_array_equal(t.grad, p.grad.numpy())


@settings(max_examples=25, deadline=None)
@given(pair=broadcastable_pair(), seed=seeds)
def test_broadcast_to_values_and_gradients(pair, seed):
    shape, other = pair
    target = np.broadcast_shapes(shape, other)
    x = t64(floats64(other, seed))
    y = F.broadcast_to(x, target)
    assert y.shape == tuple(target)
    np.testing.assert_array_equal(y.numpy(), np.broadcast_to(x.numpy(), target))
    gradcheck(lambda t: F.broadcast_to(t, target), x)


def test_non_contiguous_inputs(rand64):
    x = rand64(4, 6)
    gradcheck(lambda t: F.tanh(t.T[::2]) * t.T[1::2], x)
    gradcheck(lambda t: (t.transpose(1, 0) @ t[:, ::-1]).sum(axis=0), x)


def test_activation_values():
    x = np.linspace(-40, 40, 81)
    t = t64(x, requires_grad=False)
    np.testing.assert_allclose(F.sigmoid(t).numpy(), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(F.softplus(t).numpy(), np.logaddexp(0, x))
    assert np.isfinite(F.sigmoid(t64(np.array([-1e4, 1e4]), False)).numpy()).all()
    from math import erf, sqrt

    expected = np.array([v * 0.5 * (1 + erf(v / sqrt(2))) for v in x])
    np.testing.assert_allclose(F.gelu(t).numpy(), expected, atol=1e-6)


def test_gelu_tanh_gradient_of_large_float16_inputs_is_finite():
    # half is computed in float32, as PyTorch does: 1 + 3c x^2 overflows float16 past |x| ~ 700 where 1 - t^2 is
    # 0, and 0 * inf was NaN. The gradient there is gelu's slope: 1 far right, 0 far left.
    x = mf.tensor(np.array([300, 1000, -300, -1000, 0.5], np.float16), dtype="float16", requires_grad=True)
    F.gelu(x, approximate="tanh").sum().backward()
    assert x.grad.dtype == np.float16
    x64 = mf.tensor(x.numpy(), dtype="float64", requires_grad=True)   # float64 does not overflow here
    F.gelu(x64, approximate="tanh").sum().backward()
    np.testing.assert_allclose(x.grad.astype(np.float64), x64.grad, rtol=1e-3)


# ---- reductions -----------------------------------------------------------------
def axis_tuples(ndim):
    """Tuples of distinct axes in any order, each written non-negative or negative (the empty tuple too)."""
    return st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim).flatmap(
        lambda axes: st.tuples(*[st.sampled_from([a, a - ndim]) for a in axes]))


@settings(max_examples=40, deadline=None)
@given(shape=shapes(max_dims=4), seed=seeds, keepdims=st.booleans(), data=st.data())
def test_reductions(shape, seed, keepdims, data):
    n = len(shape)
    axis = data.draw(st.one_of(st.none(), st.integers(-n, n - 1), axis_tuples(n)), label="axis")
    x = floats64(shape, seed)
    for name in ("sum", "mean", "max", "min"):
        out = getattr(F, name)(t64(x), axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(out.numpy(), getattr(np, name)(x, axis=axis, keepdims=keepdims))
        gradcheck(lambda t, n=name: getattr(F, n)(t, axis=axis, keepdims=keepdims), t64(x))


@settings(max_examples=30, deadline=None)
@given(shape=shapes(min_dims=2, max_dims=4, max_side=4), seed=seeds, keepdims=st.booleans(), data=st.data())
def test_reductions_over_tuples_of_axes(shape, seed, keepdims, data):
    """Random shapes, always a tuple of axes (negative ones, any order, some or all axes)."""
    axis = data.draw(axis_tuples(len(shape)).filter(lambda a: len(a) >= 2), label="axis")
    x = floats64(shape, seed)
    for name in ("sum", "mean", "max", "min"):
        out = getattr(F, name)(t64(x), axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(out.numpy(), getattr(np, name)(x, axis=axis, keepdims=keepdims), rtol=1e-12)
        gradcheck(lambda t, n=name: getattr(F, n)(t, axis=axis, keepdims=keepdims), t64(x))


@pytest.mark.parametrize("axis", [(0, 2), (2, 0), (-1, 1), (-3, -1), (0, -1), (1, 2), (-4, -2), (1, 3, 0),
                                  [3, -3]])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reductions_over_tuples_of_some_axes(name, keepdims, axis):
    """Reducing over several but not all axes (not only the trailing ones): the backward must re-insert
    exactly the reduced axes; NumPy gives the values, central differences the gradient."""
    x = floats64((2, 3, 4, 5), 7)
    want = getattr(np, name)(x, axis=tuple(axis), keepdims=keepdims)
    for fn in (lambda t: getattr(F, name)(t, axis=axis, keepdims=keepdims),
               lambda t: getattr(t, name)(axis=axis, keepdims=keepdims)):
        out = fn(t64(x))
        assert out.shape == want.shape
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-12)
        gradcheck(fn, t64(x))


def test_max_ties_share_the_gradient():
    x = t64(np.array([1.0, 3.0, 3.0]))
    x.max().backward()
    np.testing.assert_allclose(x.grad, [0, 0.5, 0.5])


def test_reduction_axis_errors(rand64):
    with pytest.raises(ValueError, match="out of range"):
        rand64(2, 3).sum(axis=2)
    with pytest.raises(ValueError, match="repeats"):
        rand64(2, 3).sum(axis=(0, 0))


# ---- matmul -----------------------------------------------------------------------
@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,)),
                                   ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5))])
def test_matmul_gradients(sa, sb, rand64):
    a, b = rand64(*sa), rand64(*sb)
    np.testing.assert_allclose((a @ b).numpy(), a.numpy() @ b.numpy())
    gradcheck(lambda x, y: x @ y, a, b)


def test_matmul_shape_error(rand64):
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ: \(2, 3\) @ \(4, 5\)"):
        rand64(2, 3) @ rand64(4, 5)


def test_linear_matches_formula_and_checks_shapes(rand64):
    x, w, b = rand64(5, 3), rand64(4, 3), rand64(4)
    np.testing.assert_allclose(F.linear(x, w, b).numpy(), x.numpy() @ w.numpy().T + b.numpy())
    gradcheck(F.linear, x, w, b)
    gradcheck(F.linear, rand64(2, 5, 3), w, None)
    with pytest.raises(ValueError, match=r"linear: weight of shape \(4, 3\).*input of shape \(5, 2\)"):
        F.linear(rand64(5, 2), w, b)


# ---- movement ----------------------------------------------------------------------
def test_reshape_transpose_and_errors(rand64):
    x = rand64(2, 3, 4)
    gradcheck(lambda t: t.reshape(4, 6).transpose() * 2, x)
    gradcheck(lambda t: t.transpose((2, 0, 1)).reshape(-1), x)
    assert x.reshape((6, 4)).shape == (6, 4)
    with pytest.raises(ValueError, match=r"cannot reshape tensor of shape \(2, 3, 4\) into \(5, 5\)"):
        x.reshape(5, 5)
    with pytest.raises(ValueError, match="not a permutation"):
        x.transpose(0, 0, 1)


@pytest.mark.parametrize("index", [
    (slice(None), 1), (Ellipsis, slice(1, None, 2)), (None, 0), ([0, 0, 2],), ([0, 2], [1, 1]),
    (np.array([[1, 1], [0, 2]]),), (slice(None), [3, 0, 3]),
])
def test_indexing_gradients(index, rand64):
    x = rand64(3, 4)
    np.testing.assert_array_equal(x[index].numpy(), x.numpy()[index])
    gradcheck(lambda t: t[index], x)


def test_boolean_mask_indexing(rand64):
    x = rand64(3, 4)
    mask = x.numpy() > 0
    gradcheck(lambda t: t[mask] * 3, x)
    gradcheck(lambda t: t[x > 0], x)


def test_repeated_integer_index_accumulates():
    x = t64(np.zeros(3))
    x[[1, 1, 1, 2]].sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 3, 1])


def test_concat_stack_pad(rand64):
    a, b = rand64(2, 3), rand64(2, 5)
    gradcheck(lambda x, y: F.concat([x, y], axis=1), a, b)
    gradcheck(lambda x, y: F.stack([x, y[:, :3]], axis=-1), a, b)
    gradcheck(lambda x: F.pad(x, ((1, 2), (0, 3)), value=1.5), a)
    np.testing.assert_array_equal(F.pad(a, ((1, 0), (0, 0))).numpy()[0], 0)
    with pytest.raises(ValueError, match="concat: shapes"):
        F.concat([a, rand64(3, 3)], axis=1)
    with pytest.raises(ValueError, match="stack: all shapes must be equal"):
        F.stack([a, b])
    with pytest.raises(ValueError, match="pad: pad_width"):
        F.pad(a, ((1, 1),))


def test_where_and_comparisons(rand64):
    a, b = rand64(3, 4), rand64(4)
    gradcheck(lambda x, y: F.where(x > 0, x, y), a, b)
    c = a > b
    assert c.dtype == bool and not c.requires_grad
    np.testing.assert_array_equal(c.numpy(), a.numpy() > b.numpy())


# ---- softmax and losses -----------------------------------------------------------------
def test_softmax_is_stable_and_normalised():
    x = t64(np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]]), requires_grad=False)
    s = F.softmax(x, axis=-1).numpy()
    assert np.isfinite(s).all()
    np.testing.assert_allclose(s.sum(axis=-1), 1)
    np.testing.assert_allclose(F.log_softmax(x).numpy(), np.log(s))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction, rand64):
    logits = rand64(6, 5)
    labels = mf.tensor([0, 4, 2, 2, 1, 3])
    gradcheck(lambda z: F.cross_entropy(z, labels, reduction=reduction), logits)
    z = logits.numpy()
    per = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(6), labels.numpy()]
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(F.cross_entropy(logits, labels, reduction=reduction).numpy(), expected)


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_softmax_and_log_softmax_along_every_axis(fn, axis):
    rng = np.random.default_rng(axis + 7)
    x = t64(rng.standard_normal((2, 3, 4)))
    gradcheck(lambda t: fn(t, axis=axis), x)
    e = np.exp(x.numpy() - x.numpy().max(axis=axis, keepdims=True))
    s = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(fn(x, axis=axis).numpy(), s if fn is F.softmax else np.log(s), rtol=1e-12)


def test_cross_entropy_spatial(rand64):
    labels = mf.tensor(np.random.default_rng(0).integers(0, 3, size=(2, 4, 5)))
    gradcheck(lambda z: F.cross_entropy(z, labels), rand64(2, 3, 4, 5))


def test_cross_entropy_errors(rand64):
    logits = rand64(4, 3)
    with pytest.raises(ValueError, match=r"cross_entropy: logits of shape \(4, 3\) need labels of shape \(4,\)"):
        F.cross_entropy(logits, mf.tensor([0, 1]))
    with pytest.raises(TypeError, match="labels must be integers"):
        F.cross_entropy(logits, mf.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        F.cross_entropy(logits, mf.tensor([0, 1, 3, 1]))


def test_mse_and_bce(rand64):
    a, b = rand64(3, 4), rand64(3, 4)
    gradcheck(F.mse_loss, a, b)
    gradcheck(lambda x, y: F.mse_loss(x, y, reduction="sum"), a, b)
    y = mf.tensor((np.random.default_rng(1).random((3, 4)) > 0.5).astype(np.float64), dtype="float64")
    gradcheck(lambda x: F.binary_cross_entropy_with_logits(x, y), a)
    z = a.numpy()
    expected = np.mean(-(y.numpy() * np.log(1 / (1 + np.exp(-z))) + (1 - y.numpy()) * np.log(1 - 1 / (1 + np.exp(-z)))))
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(a, y).item(), expected)
    with pytest.raises(ValueError, match=r"mse_loss: prediction shape \(3, 4\) and target shape \(4,\)"):
        F.mse_loss(a, rand64(4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_and_mse_gradients_for_both_arguments(reduction):
    rng = np.random.default_rng(21)
    z, y = t64(rng.standard_normal((3, 4))), t64(rng.random((3, 4)))   # soft targets in [0, 1)
    gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), z, y)
    p, q = t64(rng.standard_normal((3, 4))), t64(rng.standard_normal((3, 4)))
    gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), p, q)
    zn, yn = z.numpy(), y.numpy()
    bce = -(yn * np.log(1 / (1 + np.exp(-zn))) + (1 - yn) * np.log(1 - 1 / (1 + np.exp(-zn))))
    sq = (p.numpy() - q.numpy()) ** 2
    reduce = {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction]
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(z, y, reduction=reduction).numpy(), reduce(bce),
                               rtol=1e-12)
    np.testing.assert_allclose(F.mse_loss(p, q, reduction=reduction).numpy(), reduce(sq), rtol=1e-12)


def test_losses_match_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z = rng.standard_normal((7, 10)).astype(np.float32)
    y = rng.integers(0, 10, 7)
    zt = torch.tensor(z, requires_grad=True)
    torch.nn.functional.cross_entropy(zt, torch.tensor(y)).backward()
    zm = mf.tensor(z, requires_grad=True)
    loss = F.cross_entropy(zm, mf.tensor(y))
    loss.backward()
    np.testing.assert_allclose(loss.item(), torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y)).item(),
                               rtol=1e-5)
    np.testing.assert_allclose(zm.grad, zt.grad.numpy(), atol=1e-6)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(F.gelu(mf.tensor(x)).numpy(), torch.nn.functional.gelu(torch.tensor(x)).numpy(),
                               atol=1e-6)


# ---- fused epilogues -----------------------------------------------------------------------
@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape,axis", [((5, 3), 1), ((2, 3, 4, 4), 1), ((2, 5, 3), -1)])
def test_bias_act_and_merge_act(act, shape, axis, rand64):
    x, fb = rand64(*shape), rand64(*shape)
    b = rand64(shape[axis])
    gradcheck(lambda u, c: F.bias_act(u, c, act, axis=axis), x, b)
    gradcheck(lambda u, v, c: F.merge_act(u, v, c, act, axis=axis), x, fb, b)
    bshape = [1] * len(shape)
    bshape[axis] = shape[axis]
    pre = fb.numpy() + b.numpy().reshape(bshape)
    ref = {"identity": pre, "relu": np.maximum(pre, 0), "sigmoid": 1 / (1 + np.exp(-pre)), "tanh": np.tanh(pre)}
    np.testing.assert_allclose(F.merge_act(x, fb, b, act, axis=axis).numpy(), x.numpy() + ref[act], rtol=1e-12)


def _run_fused(fn, arrays, grad, mode):
    """Value and input gradients of ``fn`` on float32 tensors of ``arrays``, with kernels in ``mode``."""
    from minifb import kernels

    ts = [mf.tensor(a, requires_grad=True) for a in arrays]
    with kernels.use(mode):
        out = fn(*ts)
        out.backward(grad)
    return [out.numpy()] + [t.grad for t in ts]


# channel axes other than 1, including shapes whose axis-1 size equals the channel count (so a kernel
# that read the channel from axis 1 would not fail on the bias size but give wrong values)
FUSED_CASES = [((2, 3, 3, 4), 2), ((2, 3, 4, 3), -1), ((3, 2, 5), 0), ((4, 5, 3), 2), ((2, 3, 4), 1)]


@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("shape,axis", FUSED_CASES)
def test_bias_act_and_merge_act_kernels_match_array_path(act, shape, axis, emulated_kernel_launches):
    rng = np.random.default_rng(len(shape) * 10 + axis)
    x, fb, g = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    b = rng.standard_normal(shape[axis]).astype(np.float32)
    for fn, arrays in ((lambda u, c: F.bias_act(u, c, act, axis=axis), (x, b)),
                       (lambda u, v, c: F.merge_act(u, v, c, act, axis=axis), (x, fb, b))):
        want = _run_fused(fn, arrays, g, "off")
        got = _run_fused(fn, arrays, g, "emulate")
        for a, e in zip(got, want):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
    assert {"bias_act_fwd", "merger_fwd"} <= set(emulated_kernel_launches)
    if act != "identity":  # the identity's backward needs no kernel
        assert {"bias_act_bwd", "merger_bwd"} <= set(emulated_kernel_launches), sorted(set(emulated_kernel_launches))


def test_a_frozen_bias_runs_only_the_elementwise_backward_kernels(emulated_kernel_launches):
    # with the bias needing no gradient, the per-channel reduction kernels ran and their sums were dropped
    from minifb import kernels

    rng = np.random.default_rng(0)
    x, fb, g = (rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3))
    b = mf.tensor(rng.standard_normal(3).astype(np.float32))          # frozen: requires_grad False
    with kernels.use("emulate"):
        u, v = mf.tensor(x, requires_grad=True), mf.tensor(fb, requires_grad=True)
        F.bias_act(u, b, "tanh").backward(g)
        F.merge_act(u, v, b, "tanh").backward(g)
    launched = set(emulated_kernel_launches)
    assert emulated_kernel_launches.count("bias_act_bwd_dx") == 2, emulated_kernel_launches   # one each
    assert not {"bias_act_bwd", "merger_bwd"} & launched, sorted(launched)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_kernel_matches_array_path(reduction, emulated_kernel_launches):
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal((6, 7)) * 3).astype(np.float32)
    labels = mf.tensor(rng.integers(0, 7, 6))
    g = np.float32(1.7) if reduction != "none" else rng.standard_normal(6).astype(np.float32)
    fn = lambda z: F.cross_entropy(z, labels, reduction=reduction)  # noqa: E731
    want = _run_fused(fn, [logits], g, "off")
    got = _run_fused(fn, [logits], g, "emulate")
    assert "softmax_xent" in emulated_kernel_launches
    assert got[0].shape == want[0].shape == ((6,) if reduction == "none" else ())
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


# The fused epilogues against the same expressions written with plain minifb ops: same dtype (PyTorch's
# promotion), same values, and each input's gradient in its own dtype, with kernels off and on.
_PLAIN_ACT = {"identity": lambda t: t, "relu": F.relu, "sigmoid": F.sigmoid, "tanh": F.tanh}
MIXED_BIAS_ACT = [("float32", "float64"), ("float64", "float32"), ("int64", "float32"), ("float32", "int64"),
                  ("uint8", "float64"), ("int64", "int64"), ("int32", "int64")]
MIXED_MERGE_ACT = [("float32", "float64", "float32"), ("float32", "float32", "float64"),
                   ("float64", "float32", "float32"), ("int64", "float32", "float32"),
                   ("float32", "int64", "float32"), ("int64", "int64", "int64"), ("uint8", "int64", "float64")]


def _typed_inputs(shape, axis, dtypes, seed):
    """Tensors of ``dtypes`` (the last one the bias (C,) along ``axis``); floats require gradients."""
    rng = np.random.default_rng(seed)
    out = []
    for i, dtype in enumerate(dtypes):
        s = (shape[axis],) if i == len(dtypes) - 1 else shape
        values = rng.standard_normal(s) * 3
        if np.dtype(dtype).kind in "iu":
            values = np.abs(values) if np.dtype(dtype).kind == "u" else values
            values = np.round(values)
        out.append(mf.tensor(values.astype(dtype), dtype=dtype, requires_grad=np.dtype(dtype).kind == "f"))
    return out


def _value_and_grads(fn, ts, seed):
    for t in ts:
        t.grad = None
    y = fn(*ts)
    if y.requires_grad:
        g = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
        y.backward(g)
    return y, [t.grad for t in ts]


def _check_fused_against_plain(fused_fn, plain_fn, ts, mode, seed):
    from minifb import kernels

    with kernels.use(mode):
        got, got_grads = _value_and_grads(fused_fn, ts, seed)
        want, want_grads = _value_and_grads(plain_fn, ts, seed)
    assert got.dtype == want.dtype, ([t.dtype for t in ts], got.dtype, want.dtype)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6, atol=1e-6)
    for t, a, e in zip(ts, got_grads, want_grads):
        assert (a is None) == (e is None) == (not t.requires_grad)
        if a is not None:
            assert a.dtype == t.dtype, (t.dtype, a.dtype)
            np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["off", "emulate"])
@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtypes", MIXED_BIAS_ACT)
def test_bias_act_promotes_its_operands_like_the_plain_ops(dtypes, act, mode):
    shape, axis = (2, 3, 4), 1
    ts = _typed_inputs(shape, axis, dtypes, seed=len(act))
    _check_fused_against_plain(lambda x, b: F.bias_act(x, b, act, axis=axis),
                               lambda x, b: _PLAIN_ACT[act](x + F.reshape(b, (3, 1))), ts, mode, seed=1)


@pytest.mark.parametrize("mode", ["off", "emulate"])
@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("dtypes", MIXED_MERGE_ACT)
def test_merge_act_promotes_its_operands_like_the_plain_ops(dtypes, act, mode):
    shape, axis = (2, 3, 4), 1
    ts = _typed_inputs(shape, axis, dtypes, seed=len(act))
    _check_fused_against_plain(lambda x, fb, b: F.merge_act(x, fb, b, act, axis=axis),
                               lambda x, fb, b: x + _PLAIN_ACT[act](fb + F.reshape(b, (3, 1))), ts, mode, seed=2)


def test_fused_epilogues_use_kernels_only_for_float32_operands(emulated_kernel_launches):
    from minifb import kernels

    x32, b32 = mf.randn(2, 3), mf.randn(3)
    x64, b64 = mf.randn(2, 3, dtype="float64"), mf.randn(3, dtype="float64")
    with kernels.use("emulate"):
        F.bias_act(x32, b64, "relu")                       # promoted to float64: the array path
        F.merge_act(x32, x32, b64, "relu")
        F.bias_act(mf.tensor([[1, 2, 3]]), mf.tensor([1, 2, 3]), "relu")   # integers: the array path
        assert emulated_kernel_launches == []
        F.bias_act(x32, b32, "relu")
        F.merge_act(x64, x32, b32, "relu")                 # act(x32 + b32) is float32: its kernel runs
    assert emulated_kernel_launches == ["bias_act_fwd", "bias_act_fwd"]


def test_fused_epilogues_audit_examples():
    from minifb import kernels

    for mode in ("off", "emulate"):
        with kernels.use(mode):
            assert F.bias_act(mf.randn(4, 3), mf.zeros(3, dtype="float64"), "relu").dtype == np.float64
            assert F.merge_act(mf.randn(2, 3), mf.zeros(2, 3, dtype="float64"), mf.zeros(3), "relu").dtype \
                == np.float64
            assert F.merge_act(mf.tensor([[1, 2, 3], [4, 5, 6]]), mf.randn(2, 3), mf.randn(3), "relu").dtype \
                == np.float32


def test_bias_act_errors(rand64):
    with pytest.raises(ValueError, match=r"bias_act: bias of shape \(4,\) does not match 3 channels"):
        F.bias_act(rand64(2, 3), rand64(4), "relu")
    with pytest.raises(ValueError, match="act must be one of"):
        F.bias_act(rand64(2, 3), rand64(3), "swish")


# ---- dropout -----------------------------------------------------------------------------
def test_dropout_scales_and_masks():
    mf.manual_seed(0)
    x = mf.ones(10000, requires_grad=True)
    y = F.dropout(x, p=0.25)
    values = np.unique(y.numpy())
    np.testing.assert_allclose(values, [0, 1 / 0.75], rtol=1e-6)
    assert abs((y.numpy() == 0).mean() - 0.25) < 0.02
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.numpy())
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(ValueError, match=r"dropout: p must be a number >= 0 and <= 1, got 1.5"):
        F.dropout(x, 1.5)
    x = mf.ones(10, requires_grad=True)
    all_dropped = F.dropout(x, 1.0)                       # as PyTorch: zeros, and a zero gradient
    all_dropped.sum().backward()
    assert not all_dropped.numpy().any() and x.grad is not None and not x.grad.any()


@settings(max_examples=20, deadline=None)
@given(shape=shapes(max_dims=4), seed=seeds, p=st.floats(0.05, 0.95))
def test_dropout_gradients(shape, seed, p):
    """Reseeding inside the function makes every evaluation (the taped one and gradcheck's finite
    differences) draw the same mask, so dropout is a fixed linear map x -> x * mask / (1 - p)."""
    def fixed_mask_dropout(t):
        mf.manual_seed(seed)
        return F.dropout(t, p)

    x = t64(floats64(shape, seed) + 3.0)         # nonzero, so a zero output means a dropped element
    gradcheck(fixed_mask_dropout, x)

    g = np.random.default_rng(seed + 1).standard_normal(shape)
    x.grad = None
    y = fixed_mask_dropout(x)
    y.backward(g)
    keep = (y.numpy() != 0).astype(np.float64)
    np.testing.assert_allclose(y.numpy(), x.numpy() * keep / (1 - p), rtol=1e-12)
    np.testing.assert_allclose(x.grad, g * keep / (1 - p), rtol=1e-12, atol=0)


# ---- axis checks (audit defects 1, 2, 3) --------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shape=shapes(min_dims=1, max_dims=4), data=st.data())
def test_out_of_range_axes_raise_instead_of_wrapping(shape, data):
    x = mf.ones(*shape)
    n = len(shape)
    bad = data.draw(st.one_of(st.integers(n, n + 4), st.integers(-n - 4, -n - 1)), label="bad axis")
    with pytest.raises(ValueError, match="transpose: axis.*out of range"):
        x.transpose(*([bad] + list(range(1, n))))
    bad_stack = data.draw(st.one_of(st.integers(n + 1, n + 5), st.integers(-n - 5, -n - 2)), label="bad stack")
    with pytest.raises(ValueError, match="stack: axis.*out of range"):
        F.stack([x, x], axis=bad_stack)
    with pytest.raises(ValueError, match="concat: axis.*out of range"):
        F.concat([x, x], axis=bad)
    good = data.draw(st.integers(-n - 1, n), label="stack axis")
    assert F.stack([x, x], axis=good).shape == np.stack([x.numpy()] * 2, axis=good).shape


def test_transpose_and_stack_examples_from_the_audit():
    with pytest.raises(ValueError, match=r"transpose: axis=5 is out of range for a 2-d tensor"):
        mf.ones(2, 3).transpose(0, 5)
    with pytest.raises(ValueError, match=r"stack: axis=5 is out of range for stacking 1-d tensors"):
        F.stack([mf.ones(3)] * 2, axis=5)
    with pytest.raises(ValueError, match="concat: 0-d tensors"):
        F.concat([mf.tensor(1.0), mf.tensor(2.0)])


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("axis", [None, (1, 0), (1,), [0], 1.0])
def test_softmax_needs_one_int_axis(fn, axis):
    with pytest.raises(TypeError, match=f"{fn.__name__}: axis must be one int"):
        fn(mf.randn(2, 3), axis=axis)


def test_softmax_of_0d_tensor_and_numpy_int_axis():
    np.testing.assert_allclose(F.softmax(mf.tensor(3.0), axis=0).numpy(), 1.0)
    np.testing.assert_allclose(F.log_softmax(mf.tensor(3.0), axis=-1).numpy(), 0.0)
    x = t64(np.random.default_rng(0).standard_normal((2, 3)))
    gradcheck(lambda t: F.softmax(t, axis=np.int64(0)), x)


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("shape, axis", [((2, 0), 1), ((0, 3), 0), ((0, 3), 1), ((2, 0, 3), -1)])
def test_softmax_of_an_empty_tensor_is_empty(fn, shape, axis):
    x = mf.zeros(*shape, dtype="float64", requires_grad=True)
    y = fn(x, axis=axis)
    assert y.shape == shape and y.dtype == np.float64
    y.sum().backward()
    assert x.grad.shape == shape


@settings(max_examples=40, deadline=None)
@given(shape=shapes(min_dims=0, max_dims=4), data=st.data())
def test_flatten_never_adds_an_axis(shape, data):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x = mf.tensor(a)
    assert x.flatten().shape == a.flatten().shape            # the method merges everything, like ndarray
    np.testing.assert_array_equal(x.flatten().numpy(), a.flatten())
    if len(shape) >= 2:
        assert F.flatten(x).shape == (shape[0], int(np.prod(shape[1:])))   # what nn.Flatten relies on
        start = data.draw(st.integers(0, len(shape) - 1), label="start")
        end = data.draw(st.integers(start, len(shape) - 1), label="end")
        want = shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
        assert F.flatten(x, start, end).shape == want
        assert F.flatten(x, start - len(shape), end - len(shape)).shape == want
    else:
        with pytest.raises(ValueError, match="flatten: start_axis=1 is out of range"):
            F.flatten(x)
    assert F.flatten(x, 0).ndim == 1


def test_flatten_of_empty_batch_and_bad_order():
    assert F.flatten(mf.zeros(0, 3, 4)).shape == (0, 12)
    assert mf.ones(5).flatten().shape == (5,)
    with pytest.raises(ValueError, match="start_axis=2 comes after end_axis=1"):
        F.flatten(mf.ones(2, 3, 4), 2, 1)
    gradcheck(lambda t: F.flatten(t, 0, 1) * 2, t64(np.random.default_rng(1).standard_normal((2, 3, 4))))


# ---- pow gradients at singular points (defect 4) -------------------------------------------
def test_pow_gradient_is_zero_for_a_zero_exponent():
    for exponent in (0, 0.0, mf.tensor(0.0), mf.tensor([0.0, 0.0])):
        x = mf.tensor([0.0, 1.0], requires_grad=True)
        (x ** exponent).sum().backward()
        np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_pow_gradients_match_pytorch_at_singular_points():
    torch = pytest.importorskip("torch")
    base = np.array([-2.0, 0.0, 0.0, 3.0, 0.0, 0.0, -1.5, 0.0, 2.0])
    expo = np.array([0.5, 0.0, 1.0, -1.0, -1.0, 2.0, 0.0, 0.5, 0.0])
    a, b = t64(base), t64(expo)
    with np.errstate(all="ignore"):
        (a ** b).sum().backward()
    at = torch.tensor(base, requires_grad=True)
    bt = torch.tensor(expo, requires_grad=True)
    (at ** bt).sum().backward()
    np.testing.assert_allclose(a.grad, at.grad.numpy(), equal_nan=True)
    np.testing.assert_allclose(b.grad, bt.grad.numpy(), equal_nan=True)
    for p in (0, 2, 0.5, -1.0):
        x = t64(np.array([0.0, 1.0, 2.5]))
        xt = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
        with np.errstate(all="ignore"):
            (x ** p).sum().backward()
        (xt ** p).sum().backward()
        np.testing.assert_allclose(x.grad, xt.grad.numpy(), equal_nan=True)


# ---- type promotion (defects 5, 7, 8) --------------------------------------------------------
DTYPES = ["bool", "uint8", "int32", "int64", "float32", "float64"]
MASK = [True, False]


def _operand_values(dtype, ndim, rng):
    values = rng.integers(1, 4, size=(2,) * ndim)
    return np.asarray(values.astype(dtype) if dtype != "bool" else values > 1)


def _torch_op(torch, op, a, b):
    if op == "where":
        return torch.where(torch.tensor(MASK), a, b)
    if op == "maximum" and not isinstance(b, torch.Tensor):   # torch.maximum takes tensors only
        b = torch.tensor(b, dtype=torch.result_type(a, b))
    return getattr(torch, op)(a, b)


def _mf_op(op, a, b):
    return F.where(mf.tensor(MASK), a, b) if op == "where" else getattr(F, op)(a, b)


@settings(max_examples=150, deadline=None)
@given(op=st.sampled_from(["add", "mul", "div", "maximum", "where"]), da=st.sampled_from(DTYPES),
       db=st.sampled_from(DTYPES + ["int", "float", "bool_scalar"]), nda=st.integers(0, 1), ndb=st.integers(0, 1),
       seed=seeds)
def test_type_promotion_matches_pytorch(op, da, db, nda, ndb, seed):
    """Result dtypes of tensors with tensors (of any rank, 0-d included) and with Python numbers."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    a = _operand_values(da, nda, rng)
    b = {"int": 3, "float": 2.5, "bool_scalar": True}.get(db)
    if b is None:
        b = _operand_values(db, ndb, rng)
    want = _torch_op(torch, op, torch.from_numpy(a), torch.from_numpy(b) if isinstance(b, np.ndarray) else b)
    with np.errstate(divide="ignore", invalid="ignore"):   # a False divisor gives inf, as in PyTorch
        got = _mf_op(op, mf.tensor(a, dtype=a.dtype), mf.tensor(b, dtype=b.dtype) if isinstance(b, np.ndarray) else b)
    assert got.dtype == np.dtype(str(want.dtype).replace("torch.", "")), (a.dtype, b, got.dtype, want.dtype)
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.numpy().astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sigmoid", "tanh", "softplus", "gelu", "softmax",
                                  "log_softmax", "leaky_relu", "mean"])
@pytest.mark.parametrize("dtype", ["bool", "uint8", "int64"])
def test_float_valued_functions_of_integer_tensors_give_float32(name, dtype):
    x = mf.tensor(np.array([1, 2, 3]).astype(dtype))
    out = getattr(F, name)(x)
    assert out.dtype == np.float32
    expected = getattr(F, name)(mf.tensor(np.array([1, 2, 3]).astype(dtype).astype(np.float64), dtype="float64"))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-6)


def test_promotion_examples_from_the_audit():
    assert mf.sigmoid(mf.tensor([1, 2])).dtype == np.float32
    np.testing.assert_allclose(mf.sigmoid(mf.tensor([1, 2])).numpy(), 1 / (1 + np.exp(-np.array([1.0, 2.0]))),
                               rtol=1e-6)
    assert (mf.tensor([1, 2]) + mf.ones(2)).dtype == np.float32
    assert (mf.tensor([1, 2]) * 0.5).dtype == np.float32 and (0.5 * mf.tensor([1, 2])).dtype == np.float32
    img = mf.tensor(np.array([0, 51, 255], dtype=np.uint8))
    assert (img / 255).dtype == np.float32 and (img + 1).dtype == np.uint8
    assert (mf.tensor([3, 4]) / mf.tensor([2, 2])).dtype == np.float32
    assert (mf.tensor([1, 2]) @ mf.ones(2)).dtype == np.float32
    assert F.concat([mf.tensor([1, 2]), mf.ones(2)]).dtype == np.float32
    assert (mf.ones(2) * mf.tensor(2.0, dtype="float64")).dtype == np.float32   # a 0-d operand does not widen
    assert (mf.ones(2) * mf.ones(2, dtype="float64")).dtype == np.float64


@pytest.mark.parametrize("dtype, op, number, want", [
    ("uint8", operator.add, -3, [254, 255]), ("uint8", operator.add, 300, [45, 46]),
    ("int8", operator.mul, 200, [-56, -112]), ("uint8", operator.sub, 3, [254, 255]),
    ("int16", operator.add, 1 << 40, [1, 2]), ("uint8", operator.add, 3, [4, 5]),
])
def test_a_python_int_outside_an_integer_dtype_wraps_as_in_pytorch(dtype, op, number, want):
    y = op(mf.tensor(np.array([1, 2], dtype=dtype)), number)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y.numpy(), np.array(want, dtype=dtype))


def test_promoted_float_operands_get_gradients_of_their_own_dtype():
    x = mf.randn(3, requires_grad=True)
    s = mf.tensor(2.0, dtype="float64", requires_grad=True)
    y = x * s
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32 and s.grad.dtype == np.float64
    np.testing.assert_allclose(s.grad, x.numpy().sum(), rtol=1e-6)
    gradcheck(lambda a, b: a * b, t64(np.ones(3)), t64(np.array(2.0)))


def test_dropout_of_a_float16_tensor_stays_float16():
    # NumPy's Generator draws no float16 ("Unsupported dtype float16 for random"): the mask is drawn in float32
    mf.manual_seed(0)
    x = mf.ones(10000, dtype="float16", requires_grad=True)
    y = F.dropout(x, p=0.25)
    assert y.dtype == np.float16
    values = y.numpy()
    np.testing.assert_array_equal(np.unique(values), np.array([0, 1 / 0.75], dtype=np.float16))
    assert abs((values == 0).mean() - 0.25) < 0.02
    y.sum().backward()
    assert x.grad.dtype == np.float16
    np.testing.assert_array_equal(x.grad, values)


def test_dropout_of_an_integer_tensor_gives_float32():
    mf.manual_seed(0)
    y = F.dropout(mf.tensor([1, 2, 3, 4]), 0.5)
    assert y.dtype == np.float32
    assert set(np.unique(y.numpy())) <= {0.0, 2.0, 4.0, 6.0, 8.0}
    assert F.dropout(mf.tensor([1, 2]), 0.5, training=False).dtype == np.float32


def test_lists_take_the_default_float_dtype():
    x = mf.ones(2)
    assert (x + [1.0, 2.0]).dtype == np.float32
    assert ([1.0, 2.0] - x).dtype == np.float32
    assert (x * (1, 2)).dtype == np.float32
    assert (mf.tensor([1, 2]) + [1, 2]).dtype == np.int64
    np.testing.assert_array_equal((x + [1.0, 2.0]).numpy(), [2.0, 3.0])


def test_two_non_tensor_operands_make_tensors():
    mask = mf.tensor([True, False, True])
    out = F.where(mask, 1.0, 2.0)
    assert out.dtype == np.float32 and out.shape == (3,)
    np.testing.assert_array_equal(out.numpy(), [1.0, 2.0, 1.0])
    assert F.where(mask.numpy(), 1, 0).dtype == np.int64
    total = F.add(1.0, 2.0)
    assert isinstance(total, mf.Tensor) and total.dtype == np.float32 and total.item() == 3.0
    assert F.mul(2, 3).item() == 6 and F.div(1, 4).dtype == np.float32


# ---- clear errors (defect 11) ------------------------------------------------------------------
def test_cross_entropy_says_which_logit_shapes_are_accepted():
    with pytest.raises(ValueError, match=r"cross_entropy: logits must have shape \(N, C\) or \(N, C, d1, \.\.\.\), "
                                         r"got shape \(3,\)"):
        F.cross_entropy(mf.randn(3), 1)


@pytest.mark.parametrize("call,match", [
    (lambda: F.cross_entropy(np.ones((2, 3)), [0, 1]), "cross_entropy: argument 'logits' must be a minifb Tensor"),
    (lambda: F.linear(mf.ones(2, 3), np.ones((4, 3))), "linear: argument 'w' must be a minifb Tensor, got ndarray"),
    (lambda: F.linear(mf.ones(2, 3), mf.ones(4, 3), np.ones(4)), "linear: argument 'b' must be a minifb Tensor"),
    (lambda: F.linear(np.ones((2, 3)), mf.ones(4, 3)), "linear: argument 'x' must be a minifb Tensor"),
    (lambda: F.softmax(np.ones(3)), "softmax: argument 'x' must be a minifb Tensor"),
    (lambda: F.sum(np.ones(3)), "sum: argument 'x' must be a minifb Tensor"),
    (lambda: F.stack([mf.ones(2), np.ones(2)]), r"stack: argument 'xs\[1\]' must be a minifb Tensor"),
])
def test_numpy_arrays_where_tensors_are_expected_raise_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@settings(max_examples=30, deadline=None)
@given(shape=shapes(min_dims=1, max_dims=3, min_side=2), data=st.data(), name=st.sampled_from(
    ["add", "sub", "mul", "div", "pow", "maximum", "minimum"]))
def test_broadcast_errors_name_the_op_and_both_shapes(shape, data, name):
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    other = list(shape)
    other[axis] += 1
    a, b = mf.ones(*shape), mf.ones(*other)
    with pytest.raises(ValueError, match=rf"{name}: shapes {re.escape(str(tuple(shape)))}, "
                                         rf"{re.escape(str(tuple(other)))} cannot be broadcast together"):
        getattr(F, name)(a, b)


def test_broadcast_errors_of_operators_where_and_batched_matmul():
    with pytest.raises(ValueError, match=r"add: shapes \(3,\), \(4,\) cannot be broadcast"):
        mf.randn(3) + mf.randn(4)
    with pytest.raises(ValueError, match=r"where: shapes \(2,\), \(3,\), \(3,\) cannot be broadcast"):
        F.where(mf.tensor([True, False]), mf.ones(3), mf.zeros(3))
    with pytest.raises(ValueError, match=r"matmul: batch dimensions \(2,\) and \(3,\) cannot be broadcast together: "
                                         r"\(2, 2, 3\) @ \(3, 3, 5\)"):
        mf.randn(2, 2, 3) @ mf.randn(3, 3, 5)


def test_clip_accepts_tensor_bounds():
    x = t64(np.array([-1.0, 0.2, 0.7, 0.4]))
    y = x.clip(mf.tensor(0.0), mf.tensor(0.5))
    np.testing.assert_allclose(y.numpy(), [0.0, 0.2, 0.5, 0.4])
    assert y.dtype == np.float64
    gradcheck(lambda t: F.clip(t, mf.tensor(-0.5, dtype="float64"), mf.tensor([0.1, 0.3, 0.5, 0.6])), x)
    assert F.clip(mf.tensor([1, 2, 3]), 1.5).dtype == np.float32
    with pytest.raises(ValueError, match=r"clip: bound of shape \(3,\) does not broadcast to the input's shape \(4,\)"):
        F.clip(x, mf.zeros(3))


def test_cross_entropy_takes_labels_as_tensor_list_or_array():
    logits = mf.randn(3, 4, requires_grad=True)
    losses = [F.cross_entropy(logits, labels).item()
              for labels in (mf.tensor([1, 0, 3]), [1, 0, 3], np.array([1, 0, 3]), (1, 0, 3))]
    assert losses[0] == losses[1] == losses[2] == losses[3]
    with pytest.raises(ValueError, match=r"cross_entropy: labels must lie in \[0, 4\), got range \[0, 4\]"):
        F.cross_entropy(logits, [1, 0, 4])


# ---- bad arguments refused where they are passed (audit of silent and unclear errors) -----------------
@pytest.mark.parametrize("slope, error", [(None, TypeError), ("a", TypeError), ([0.1], TypeError), (True, TypeError)])
def test_leaky_relu_needs_a_number_slope(slope, error):
    with pytest.raises(error, match=r"leaky_relu: negative_slope must be a number, got"):
        F.leaky_relu(mf.tensor([-1.0, 2.0]), slope)
    np.testing.assert_allclose(F.leaky_relu(mf.tensor([-1.0, 2.0]), np.float32(0.5)).numpy(), [-0.5, 2.0])
    np.testing.assert_allclose(F.leaky_relu(mf.tensor([-1.0, 2.0]), 1).numpy(), [-1.0, 2.0])


@pytest.mark.parametrize("condition, match", [
    (None, "got NoneType"), ("abc", "got str"), (mf.ones(2, 3), "got dtype float32"),
    (np.ones((2, 3), dtype=np.int64), "got dtype int64"), ([1, 0, 1], "got dtype int64"),
])
def test_where_needs_a_boolean_condition(condition, match):
    with pytest.raises(TypeError, match=rf"where: condition must be boolean .*{match}"):
        F.where(condition, mf.ones(2, 3), mf.zeros(2, 3))
    assert F.where(True, mf.ones(2), mf.zeros(2)).numpy().tolist() == [1.0, 1.0]
    assert F.where([True, False], 1.0, 0.0).numpy().tolist() == [1.0, 0.0]


@pytest.mark.parametrize("pad_width, error, match", [
    (((1.5, 1), (0, 0)), ValueError, r"pad: pad_width\[0\]\[0\] must be an integer >= 0, got 1.5"),
    (((True, 1), (0, 0)), ValueError, r"pad: pad_width\[0\]\[0\] must be an integer >= 0, got True"),
    (((1, 1), (0, -1)), ValueError, r"pad: pad_width\[1\]\[1\] must be an integer >= 0, got -1"),
    (1, TypeError, r"pad: pad_width must be one \(before, after\) pair per axis of shape \(2, 3\), got 1"),
    (((1, 1, 1), (0, 0)), TypeError, r"pad: pad_width must be one \(before, after\) pair per axis"),
    (((1, 1),), ValueError, r"pad: pad_width must be one \(before, after\) pair per axis of shape \(2, 3\), "
                            r"got 1 pairs"),
    (None, TypeError, r"pad: pad_width must be one \(before, after\) pair per axis"),
])
def test_pad_refuses_bad_widths(pad_width, error, match):
    with pytest.raises(error, match=match):
        F.pad(mf.ones(2, 3), pad_width)


@pytest.mark.parametrize("value", [None, "a", [1.0], mf.tensor([1.0])])
def test_pad_refuses_a_value_that_is_not_a_number(value):
    with pytest.raises(TypeError, match=r"pad: value must be a number, got"):
        F.pad(mf.ones(2, 3), ((1, 0), (0, 0)), value)
    out = F.pad(mf.ones(2, 3), [[1, 0], [0, 2]], np.float64(2.0))
    assert out.shape == (3, 5) and out.numpy()[0, 0] == 2.0
    assert F.pad(mf.ones(1), ((1, 0),), mf.tensor(3.0)).numpy().tolist() == [3.0, 1.0]   # a 0-d Tensor
    assert F.pad(mf.tensor([True]), ((1, 0),), True).numpy().tolist() == [True, True]
    big = 2 ** 60 + 1
    assert F.pad(mf.tensor([1]), ((1, 0),), big).numpy().tolist() == [big, 1]   # no trip through float


@pytest.mark.parametrize("fn", [F.concat, F.stack])
@pytest.mark.parametrize("xs, got", [(mf.randn(2, 3), "Tensor"), (None, "NoneType"), (np.ones((2, 3)), "ndarray"),
                                     (iter([mf.ones(2)]), "list_iterator")])
def test_concat_and_stack_need_a_list_of_tensors(fn, xs, got):
    with pytest.raises(TypeError, match=rf"{fn.__name__}: xs must be a list/tuple of Tensors, got {got}"):
        fn(xs)
    assert fn((mf.ones(2), mf.ones(2))).shape in ((4,), (2, 2))


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@pytest.mark.parametrize("axis", [3, 1, -2, -7])
def test_softmax_of_0d_tensor_checks_the_axis(fn, axis):
    with pytest.raises(ValueError, match=rf"{fn.__name__}: axis={axis} is out of range for a 0-d tensor "
                                         r"\(expected an int in \[-1, 0\]\)"):
        fn(mf.tensor(3.0), axis=axis)


@pytest.mark.parametrize("p, error, match", [
    ("a", TypeError, r"dropout: p must be a number, got 'a'"),
    (None, TypeError, r"dropout: p must be a number, got None"),
    (1.5, ValueError, r"dropout: p must be a number >= 0 and <= 1, got 1.5"),
    (-0.1, ValueError, r"dropout: p must be a number >= 0 and <= 1, got -0.1"),
    (float("nan"), ValueError, r"dropout: p must be a number >= 0 and <= 1, got nan"),
])
def test_dropout_needs_a_probability(p, error, match):
    with pytest.raises(error, match=match):
        F.dropout(mf.ones(2, 3), p)


@pytest.mark.parametrize("training", ["no", 0, 1, None, "False"])
def test_dropout_training_must_be_a_bool(training):
    with pytest.raises(TypeError, match=rf"dropout: training must be True or False, got {re.escape(repr(training))}"):
        F.dropout(mf.ones(2, 3), 0.5, training=training)
    x = mf.ones(2, 3)
    assert F.dropout(x, 0.5, training=np.bool_(False)) is x


def test_linear_of_a_0d_input_names_the_shapes():
    with pytest.raises(ValueError, match=r"linear: weight of shape \(4, 3\) expects inputs with last dimension 3, "
                                         r"got input of shape \(\)"):
        F.linear(mf.tensor(1.0), mf.ones(4, 3))


@pytest.mark.parametrize("shape, got", [((3.0, 2.0), r"\(3.0, 2.0\)"), (("a",), r"\('a',\)"), ((None,), r"\(None,\)"),
                                        ((True, 6), r"\(True, 6\)"), (((2, 3), 1), r"\(\(2, 3\), 1\)")])
def test_reshape_needs_integer_sizes(shape, got):
    with pytest.raises(TypeError, match=rf"reshape: shape must be integers \(one may be -1\), got {got}"):
        F.reshape(mf.ones(2, 3), *shape)
    with pytest.raises(TypeError, match=r"reshape: shape must be integers"):
        mf.ones(2, 3).reshape(shape)
    assert mf.ones(2, 3).reshape(np.int64(3), -1).shape == (3, 2)


@pytest.mark.parametrize("shape, error", [((3, 3), ValueError), ((3,), ValueError), ((2, -3), ValueError),
                                          (None, TypeError), ((2.0, 3), TypeError), (3, TypeError)])
def test_broadcast_to_names_both_shapes(shape, error):
    with pytest.raises(error, match=rf"broadcast_to: .*{re.escape(repr(shape))}"):
        F.broadcast_to(mf.ones(2, 3), shape)
    assert F.broadcast_to(mf.ones(1, 3), [4, 2, 3]).shape == (4, 2, 3)


@pytest.mark.parametrize("fn", [F.sum, F.mean, F.max, F.min])
@pytest.mark.parametrize("keepdims", ["x", None, 1])
def test_reductions_need_a_bool_keepdims(fn, keepdims):
    with pytest.raises(TypeError, match=rf"{fn.__name__}: keepdims must be True or False, got"):
        fn(mf.ones(2, 3), axis=1, keepdims=keepdims)
    assert fn(mf.ones(2, 3), axis=1, keepdims=np.bool_(True)).shape == (2, 1)


@pytest.mark.parametrize("fn, state", [(F.lstm_pointwise, 4), (F.gru_pointwise, 3)])
def test_fused_cell_steps_need_tensors(fn, state):
    gi, gh, h = mf.zeros(2, state * 3), mf.zeros(2, state * 3), mf.ones(2, 3)
    for i, arg in enumerate(["gi", "gh", "c" if state == 4 else "h"]):
        args = [gi, gh, h]
        args[i] = args[i].numpy()
        with pytest.raises(TypeError, match=rf"{fn.__name__}: argument '{arg}' must be a minifb Tensor, got ndarray"):
            fn(*args)
    as_int = fn(mf.zeros(2, state * 3, dtype="int64"), gh, mf.ones(2, 3, dtype="int64"))   # as sigmoid: float32
    np.testing.assert_allclose(as_int.numpy(), fn(gi, gh, h).numpy())


def test_losses_of_integer_tensors_are_float32_and_getitem_names_a_non_tensor():
    a, b = mf.tensor([1, 2, 3]), mf.tensor([1, 0, 3])
    assert F.mse_loss(a, b).dtype == np.float32                     # as mean(); it was float64
    np.testing.assert_allclose(F.mse_loss(a, b).item(), 4 / 3, rtol=1e-6)
    assert F.binary_cross_entropy_with_logits(a, mf.tensor([1, 0, 1])).dtype == np.float32
    with pytest.raises(ValueError, match=r"reduction must be one of .*, got 'avg'"):
        F.binary_cross_entropy_with_logits(a, b, reduction="avg")
    with pytest.raises(TypeError, match=r"^getitem: argument 'x' must be a minifb Tensor"):
        F.getitem(np.ones(3), 0)


def test_pad_and_broadcast_to_take_their_shapes_as_numpy_arrays_too():
    x = mf.ones(2, 2)
    assert F.pad(x, np.array([[0, 0], [1, 1]])).shape == (2, 4)
    assert F.broadcast_to(x, np.array([3, 2, 2])).shape == (3, 2, 2)


# ---- float16 sums in float32, NumPy scalars as weak operands, float16 dropout (session 12 audit) ------------
def test_float16_gradients_and_softmax_accumulate_in_float32():
    rng = np.random.default_rng(0)
    x = mf.ones(100000, dtype="float16", requires_grad=True)
    x.mean().backward()                                   # float16(100000) is inf; 1 / 100000 is not
    np.testing.assert_array_equal(x.grad, np.float16(1e-5))   # 1e-5 rounded once (a subnormal float16)

    b = mf.zeros(2, dtype="float16", requires_grad=True)  # Linear's bias gradient: a sum over 5000 rows
    F.linear(mf.ones(5000, 3, dtype="float16"), mf.ones(2, 3, dtype="float16"), b).sum().backward()
    np.testing.assert_array_equal(b.grad, [5000, 5000])

    cb = mf.zeros(2, dtype="float16", requires_grad=True)  # a bias gradient from an NCHW (not channels-last) array
    y = F.conv2d(mf.ones(512, 2, 8, 8, dtype="float16"), mf.full((2, 2, 1, 1), 0.5, dtype="float16"), cb)
    (F.flatten(y) * 0.1).sum().backward()
    np.testing.assert_allclose(cb.grad.astype(np.float64), 512 * 64 * np.float64(np.float16(0.1)), rtol=1e-3)

    logits = (rng.random((5000, 2)) * 0.1).astype(np.float16)
    exact = np.exp(logits.astype(np.float64)) / np.exp(logits.astype(np.float64)).sum(axis=0)
    np.testing.assert_allclose(F.softmax(mf.tensor(logits), axis=0).numpy().astype(np.float64), exact,
                               rtol=5e-3)
    np.testing.assert_allclose(F.log_softmax(mf.tensor(logits), axis=0).numpy().astype(np.float64),
                               np.log(exact), rtol=2e-3)


def test_numpy_scalars_are_weak_operands_of_pow_and_clip_as_of_the_operators():
    x = mf.tensor([0.5, 1.5], requires_grad=True)
    for s in (np.float64(2.0), np.float32(2.0), np.int64(2)):
        assert (x ** s).dtype == (x * s).dtype == np.float32
        assert F.clip(x, s, None).dtype == F.clip(x, None, s).dtype == np.float32
    assert (mf.tensor(np.array([1, 2], np.int32)) ** np.int64(2)).dtype == np.int32
    assert (mf.ones(2, dtype="float16") ** np.float32(2)).dtype == np.float16
    (x ** np.float64(3.0)).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 3 * np.array([0.5, 1.5]) ** 2, rtol=1e-6)


def test_float16_dropout_with_a_scale_past_float16s_range_drops_to_zero_not_nan():
    y = F.dropout(mf.ones(1000, dtype="float16"), 0.99999)   # 1 / (1 - p) = 1e5 > 65504
    values = y.numpy()
    assert not np.isnan(values).any() and set(np.unique(values)) <= {0.0, np.inf}



def test_bias_act_of_a_0d_input_and_transpose_of_a_non_int_axis_say_so():
    with pytest.raises(ValueError, match=r"^bias_act: x must have a channel axis, got a 0-d tensor"):
        F.bias_act(mf.tensor(1.0), mf.zeros(1), axis=0)
    with pytest.raises(ValueError, match=r"^merge_act: x must have a channel axis, got a 0-d tensor"):
        F.merge_act(mf.tensor(1.0), mf.tensor(1.0), mf.zeros(1), axis=-1)
    with pytest.raises(TypeError, match=r"^transpose: axes must be ints, got 'a'"):
        F.transpose(mf.ones(2, 3, 4), "a")


def test_conv_transpose2d_is_the_adjoint_of_conv2d_with_the_documented_output_padding():
    rng = np.random.default_rng(5)
    for k, s, p, h in ((1, 2, 0, 6), (3, 2, 1, 7), (3, 3, 1, 8), (2, 2, 0, 5)):
        x = rng.standard_normal((2, 3, h, h))
        w = rng.standard_normal((4, 3, k, k))
        y = F.conv2d(t64(x, False), t64(w, False), stride=s, padding=p).numpy()
        g = rng.standard_normal(y.shape)
        op = (h + 2 * p - (k - 1) - 1) % s
        back = F.conv_transpose2d(t64(g, False), t64(w, False), stride=s, padding=p, output_padding=op).numpy()
        assert back.shape == x.shape
        np.testing.assert_allclose((y * g).sum(), (x * back).sum(), rtol=1e-10)


# ---------------------------------------------------------------- found by mutation testing (session 13)
def test_clip_without_bounds_is_a_copy_not_a_view():
    """Kills: ops/elementwise.py Clip.forward `return a.copy()` -> `return a` (output aliases the input)."""
    x = t64(np.array([-1.0, 0.5, 2.0]))
    y = F.clip(x)
    assert not np.shares_memory(y.numpy(), x.numpy())
    x.data -= 1.0             # an in-place update of x (as an optimiser step makes) must not reach y
    np.testing.assert_array_equal(y.numpy(), [-1.0, 0.5, 2.0])
    y.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softplus_is_stable_for_large_inputs(dtype):
    """Kills: ops/activation.py Softplus.forward `max(x,0) + log1p(exp(-|x|))` -> `log1p(exp(x))` (inf for x > ~88/709)."""
    values = np.array([-1000.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    x = mf.tensor(values, dtype=dtype, requires_grad=True)
    y = F.softplus(x)
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y.numpy(), np.logaddexp(0.0, values), rtol=1e-6, atol=1e-30)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, np.exp(-np.logaddexp(0.0, -values)), rtol=1e-6, atol=1e-30)   # sigmoid


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_of_an_empty_batch_backpropagate_an_empty_gradient(loss, reduction):
    """Kills: ops/loss.py `_reduction_scale` `1.0 / max(count, 1)` -> `1.0 / count` (ZeroDivisionError in backward).

    As in PyTorch, a mean over no samples is NaN, a sum 0, and the gradient is empty."""
    z = t64(np.zeros((0, 3)))
    if loss == "cross_entropy":
        fn = lambda: F.cross_entropy(z, mf.tensor(np.zeros(0, dtype=np.int64)), reduction=reduction)  # noqa: E731
    elif loss == "mse":
        fn = lambda: F.mse_loss(z, t64(np.zeros((0, 3)), requires_grad=False), reduction=reduction)  # noqa: E731
    else:
        fn = lambda: F.binary_cross_entropy_with_logits(z, t64(np.zeros((0, 3)), requires_grad=False),  # noqa: E731
                                                        reduction=reduction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # NumPy's "mean of empty slice"
        out = fn()
        if reduction == "mean":
            assert out.shape == () and np.isnan(out.item())
        elif reduction == "sum":
            assert out.shape == () and out.item() == 0
        out.sum().backward()
    assert z.grad.shape == (0, 3)


def test_clip_rejects_a_bound_that_would_enlarge_the_input():
    """Kills: functional.clip `broadcast_shape(bound, x) != x.shape` -> `is None` (the output grew to (2, 3))."""
    x = t64(np.array([-1.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match=r"clip: bound of shape \(2, 3\) does not broadcast to the input's "
                                         r"shape \(3,\)"):
        F.clip(x, mf.zeros(2, 3))
    with pytest.raises(ValueError, match=r"clip: bound of shape \(3, 1\) does not broadcast to the input's "
                                         r"shape \(3,\)"):
        F.clip(x, high=np.ones((3, 1)))


def test_cross_entropy_rejects_negative_labels(rand64):
    """Kills: functional.cross_entropy's range check without `labels < 0` (-1 then silently picks the last class)."""
    with pytest.raises(ValueError, match=r"cross_entropy: labels must lie in \[0, 3\), got range \[-1, 2\]"):
        F.cross_entropy(rand64(4, 3), mf.tensor([0, -1, 2, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must lie in \[0, 3\), got range \[-3, 0\]"):
        F.cross_entropy(rand64(2, 3, 2), np.array([[0, 0], [-3, 0]]))


def test_cross_entropy_rejects_an_unknown_reduction(rand64):
    """Kills: functional.cross_entropy without its reduction check ('avg' then returned the unreduced losses)."""
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be one of \('mean', 'sum', 'none'\), "
                                         r"got 'avg'"):
        F.cross_entropy(rand64(4, 3), mf.tensor([0, 1, 2, 1]), reduction="avg")


@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_cross_entropy_spatial_values_and_label_shaped_losses(reduction, rand64):
    """Kills: ops/loss.py CrossEntropy `_reduce(losses.reshape(labels.shape), ...)` -> `_reduce(losses, ...)`
    (per-position losses came back flat, (40,) instead of (2, 4, 5))."""
    labels = np.random.default_rng(0).integers(0, 3, size=(2, 4, 5))
    logits = rand64(2, 3, 4, 5)
    z = logits.numpy()
    logp = z - z.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    expected = -np.take_along_axis(logp, labels[:, None], axis=1)[:, 0]          # (2, 4, 5)
    out = F.cross_entropy(logits, mf.tensor(labels), reduction=reduction)
    if reduction == "none":
        assert out.shape == labels.shape
        np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    else:
        np.testing.assert_allclose(out.item(), expected.sum(), rtol=1e-12)
    gradcheck(lambda t: F.cross_entropy(t, mf.tensor(labels), reduction=reduction), logits)


def test_bce_with_logits_is_stable_for_large_logits():
    """Kills: ops/loss.py BCEWithLogits `max(z,0) - z·y + log1p(exp(-|z|))` -> `log1p(exp(-z)) + z - z·y`
    (inf at z = -1000)."""
    z = mf.tensor([-1000.0, -1000.0, 1000.0, 1000.0, -100.0], requires_grad=True)
    y = mf.tensor([0.0, 1.0, 0.0, 1.0, 0.0])
    losses = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    np.testing.assert_allclose(losses.numpy(), [0.0, 1000.0, 1000.0, 0.0, 0.0], atol=1e-30)
    losses.sum().backward()
    np.testing.assert_allclose(z.grad, [0.0, -1.0, 1.0, 0.0, 0.0], atol=1e-30)


def test_dropout_with_p_zero_is_the_identity_and_draws_nothing():
    """Kills: functional.dropout without `or p == 0` (p = 0 then ran the op: a new tensor, and random draws
    that moved the generator)."""
    x = mf.ones(5, requires_grad=True)
    assert F.dropout(x, 0.0) is x and F.dropout(x, 0) is x
    mf.manual_seed(0)
    a = F.dropout(mf.ones(1000), 0.5).numpy()
    mf.manual_seed(0)
    F.dropout(mf.ones(1000), 0.0)
    b = F.dropout(mf.ones(1000), 0.5).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("exponent", [-1, np.int64(-2), mf.tensor([-1, 1])], ids=["int", "numpy-int", "tensor"])
def test_an_integer_tensor_to_a_negative_integer_power_is_refused_by_name(exponent):
    with pytest.raises(ValueError, match=r"^pow: an integer tensor to a negative integer power is not allowed"):
        mf.tensor([1, 2]) ** exponent
    np.testing.assert_allclose((mf.tensor([1, 2]) ** -1.0).numpy(), [1.0, 0.5])   # a float exponent is fine


# ---------------------------------------------------------------- audit 14
@pytest.mark.parametrize("name, op", [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                                      ("add", lambda t, n: n + t), ("sub", lambda t, n: n - t)])
@pytest.mark.parametrize("number", [2 ** 70, -(2 ** 63) - 1, 2 ** 64])
def test_a_python_int_past_64_bits_is_refused_not_wrapped(name, op, number):
    # wrapping it modulo 2**64 would silently drop its high bits (2**70 + [1, 2] gave [1, 2]); PyTorch refuses
    for dtype in ("int64", "uint8"):
        with pytest.raises(OverflowError, match=rf"^{name}: the integer {number} is out of range for 64-bit "
                                                rf"integers .*dtype {dtype}"):
            op(mf.tensor(np.array([1, 2], dtype=dtype)), number)
    assert op(mf.tensor([1.0, 2.0]), number).dtype == np.float32          # a float tensor takes it as a float
    y = mf.tensor([1, 2]) + (2 ** 64 - 1)                                   # fits uint64: wraps, as in C
    assert y.dtype == np.int64 and y.numpy().tolist() == [0, 1]


def test_linear_with_a_weight_that_is_not_2d_says_so():
    for w in (mf.ones(3), mf.ones(2, 3, 4)):
        with pytest.raises(ValueError, match=rf"^linear: the weight must be 2-D, of shape \(out, in\), got shape "
                                             rf"{re.escape(str(w.shape))}$"):
            F.linear(mf.ones(2, 3), w)


def test_promoting_a_tensor_that_requires_grad_to_complex_names_the_op():
    x = mf.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"^add: only floating-point tensors can require gradients, got dtype "
                                        r"complex64"):
        x + 1j
    with pytest.raises(TypeError, match=r"^mul: only floating-point"):
        1j * x
    with mf.no_grad():
        assert (x + 1j).dtype == np.complex64      # nothing is recorded: no gradient, no refusal


# ---------------------------------------------------------------- audit 14b: fuzzed operands and choices
_RAGGED = [[1.0], [2.0, 3.0]]
_RAGGED_MESSAGE = r"the nested list is ragged \(its rows differ in length\): at depth 1 the lengths are \[1, 2\]"


@pytest.mark.parametrize("name, call", [
    ("add", lambda x: x + _RAGGED), ("add", lambda x: _RAGGED + x), ("mul", lambda x: F.mul(x, _RAGGED)),
    ("==", lambda x: x == _RAGGED), ("<", lambda x: x < _RAGGED),
    ("&", lambda x: (x > 0) & [[True], [False, True]]),
    ("mse_loss", lambda x: F.mse_loss(x, _RAGGED)), ("mse_loss", lambda x: F.mse_loss(_RAGGED, x)),
    ("where", lambda x: F.where([[True], [False, True]], x, 0.0)), ("where", lambda x: F.where(x > 0, _RAGGED, x)),
    ("clip", lambda x: F.clip(x, _RAGGED)), ("clip", lambda x: F.clip(x, None, _RAGGED)),
    ("maximum", lambda x: F.maximum(x, _RAGGED)), ("pow", lambda x: F.pow(x, _RAGGED)),
    ("pow", lambda x: F.pow(_RAGGED, x)), ("getitem", lambda x: F.getitem(x, [[0], [0, 1]])),
    ("getitem", lambda x: x[0, [[0], [0, 1]]]),
    ("binary_cross_entropy_with_logits", lambda x: F.binary_cross_entropy_with_logits(x, _RAGGED)),
    ("cross_entropy", lambda x: F.cross_entropy(x, [[0], [1, 0]])),
    ("as_tensor", lambda x: F.as_tensor(_RAGGED)), ("as_tensor", lambda x: F.as_tensor(_RAGGED, like=x)),
])
def test_a_ragged_list_operand_is_refused_naming_the_function(name, call):
    # NumPy's "setting an array element with a sequence" named nothing; mf.tensor's message, said by the caller
    with pytest.raises(ValueError, match=rf"^{re.escape(name)}: {_RAGGED_MESSAGE}$"):
        call(mf.ones(2, 2))


@pytest.mark.parametrize("fn, arg, call", [
    ("cross_entropy", "reduction", lambda v: F.cross_entropy(mf.zeros(2, 3), [0, 1], reduction=v)),
    ("mse_loss", "reduction", lambda v: F.mse_loss(mf.zeros(2), mf.zeros(2), reduction=v)),
    ("binary_cross_entropy_with_logits", "reduction",
     lambda v: F.binary_cross_entropy_with_logits(mf.zeros(2), mf.zeros(2), reduction=v)),
    ("gelu", "approximate", lambda v: F.gelu(mf.zeros(2), approximate=v)),
    ("bias_act", "act", lambda v: F.bias_act(mf.zeros(2, 3), mf.zeros(3), act=v)),
    ("merge_act", "act", lambda v: F.merge_act(mf.zeros(2, 3), mf.zeros(2, 3), mf.zeros(3), act=v)),
])
def test_a_string_choice_given_an_array_or_other_non_string_is_refused_clearly(fn, arg, call):
    # `value not in choices` compared an array elementwise: "truth value of an array ... is ambiguous"
    for bad in (np.array(["mean", "sum"]), np.array(["none", "tanh"]), mf.tensor([1.0, 2.0]), None, 1):
        with pytest.raises(ValueError, match=rf"^{fn}: {arg} must be .*, got "):
            call(bad)
    assert call(np.str_({"reduction": "sum", "approximate": "tanh", "act": "relu"}[arg])).shape is not None


def test_neg_of_a_boolean_tensor_names_neg_and_suggests_invert():
    with pytest.raises(TypeError, match=r"^neg: a boolean tensor \(shape \(2,\)\) has no negative, as in PyTorch; "
                                        r"use ~x for logical not"):
        -mf.tensor([True, False])
    with pytest.raises(TypeError, match=r"^neg: a boolean"):
        F.neg(mf.tensor(True))
    assert (-mf.tensor([1, 2])).numpy().tolist() == [-1, -2]


@pytest.mark.parametrize("name, call", [
    ("add", lambda x, a: x + a), ("add", lambda x, a: a + x), ("mul", lambda x, a: F.mul(x, a)),
    ("maximum", lambda x, a: F.maximum(x, a)), ("where", lambda x, a: F.where(x > 0, x, a)),
    ("clip", lambda x, a: F.clip(x, a)), ("mse_loss", lambda x, a: F.mse_loss(x, a)),
])
@pytest.mark.parametrize("array", [np.array([None, None]), np.array(["a", "b"])])
def test_an_object_or_string_array_operand_names_the_op(name, call, array):
    with pytest.raises(TypeError, match=rf"^{name}: unsupported dtype (object|<U1): expected a boolean, integer or "
                                        rf"floating dtype"):
        call(mf.ones(2), array)
