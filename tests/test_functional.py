"""Every op's gradient against central finite differences in float64, plus values and errors.

Convolutions and pooling live in tests/test_conv.py.
"""

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
    a, b = floats64(pair[0], seed), floats64(pair[1], seed)
    assert (t64(a) * t64(b)).shape == (a * b).shape
    assert (t64(a) + t64(b)).grad is None


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


# ---- reductions -----------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(shape=shapes(max_dims=4), seed=seeds, keepdims=st.booleans(), data=st.data())
def test_reductions(shape, seed, keepdims, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    x = floats64(shape, seed)
    for name in ("sum", "mean", "max", "min"):
        out = getattr(F, name)(t64(x), axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(out.numpy(), getattr(np, name)(x, axis=axis, keepdims=keepdims))
        gradcheck(lambda t, n=name: getattr(F, n)(t, axis=axis, keepdims=keepdims), t64(x))


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
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\)"):
        F.dropout(x, 1.0)
