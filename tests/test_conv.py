"""Tests of minifb.ops.conv: conv2d, conv_transpose2d, max_pool2d, avg_pool2d.

Shown seven ways: forward against naive loops written here; float64
directional gradchecks; the adjoint identity <conv(x, w), g> = <x, conv_T(g, w)>;
hypothesis over random shapes; PyTorch as an oracle (skipped when absent);
error messages; non-contiguous inputs; batch blocks and the channels-last
memory layout of the results.

Every test runs twice on the CPU: on the compiled direct convolution (minifb.cpu_conv, skipped where it
cannot be built) and on the NumPy im2col path, its reference.
"""

import itertools
import os
import shutil

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from minifb import cpu_conv
from minifb.ops.conv import Conv2d, ConvTranspose2d, avg_pool2d, conv2d, conv_transpose2d, max_pool2d
from minifb.tensor import Tensor
from minifb.testing import gradcheck


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _arr(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _t(a, grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def conv_path(request):
    """Run each test on both CPU convolution paths (every test here is on the CPU)."""
    compiled = request.param == "compiled"
    if compiled and not cpu_conv.enabled():
        pytest.skip("the compiled CPU convolution is unavailable")
    with cpu_conv.use(compiled):
        yield request.param


# ---------------------------------------------------------------- references
def _conv_pads(padding, kernel, dilation):
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        th, tw = (d * (k - 1) for d, k in zip(dilation, kernel))
        return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
    ph, pw = _pair(padding)
    return (ph, ph, pw, pw)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct definition: y[n,k,oh,ow] = sum w[k,c,i,j] x[n, gC+c, oh*s - p + i*d, ...]."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    pt, pb, pl, pr = _conv_pads(padding, (kh, kw), (dh, dw))
    oh_n = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow_n = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    kg = k // groups
    y = np.zeros((n, k, oh_n, ow_n))
    for oh, ow, i, j in itertools.product(range(oh_n), range(ow_n), range(kh), range(kw)):
        r, q = oh * sh - pt + i * dh, ow * sw - pl + j * dw
        if 0 <= r < h and 0 <= q < wd:
            for g in range(groups):
                xs, ws = x[:, g * cg:(g + 1) * cg, r, q], w[g * kg:(g + 1) * kg, :, i, j]
                y[:, g * kg:(g + 1) * kg, oh, ow] += xs @ ws.T
    if b is not None:
        y += b[None, :, None, None]
    return y


def ref_conv2d_grad_weight(x, gy, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """Direct definition of conv2d's weight gradient:
    gw[k,c,i,j] = sum over n, oh, ow of gy[n,k,oh,ow] x[n, gC+c, oh*s - p + i*d, ...]."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    n, c, h, wd = x.shape
    k, cg, kh, kw = w_shape
    pt, pb, pl, pr = _conv_pads(padding, (kh, kw), (dh, dw))
    kg = k // groups
    gw = np.zeros(w_shape)
    for oh, ow, i, j in itertools.product(range(gy.shape[2]), range(gy.shape[3]), range(kh), range(kw)):
        r, q = oh * sh - pt + i * dh, ow * sw - pl + j * dw
        if 0 <= r < h and 0 <= q < wd:
            for g in range(groups):
                xs, gs = x[:, g * cg:(g + 1) * cg, r, q], gy[:, g * kg:(g + 1) * kg, oh, ow]
                gw[g * kg:(g + 1) * kg, :, i, j] += gs.T @ xs
    return gw


def ref_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """Direct definition: each input pixel scatters x[n,c,ih,iw] * w[c,o,i,j] to (ih*s - p + i*d, ...)."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = map(_pair, (stride, padding, output_padding, dilation))
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cig = cin // groups
    oh_n = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow_n = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    y = np.zeros((n, cog * groups, oh_n, ow_n))
    for ih, iw, i, j in itertools.product(range(h), range(wd), range(kh), range(kw)):
        r, q = ih * sh - ph + i * dh, iw * sw - pw + j * dw
        if 0 <= r < oh_n and 0 <= q < ow_n:
            for g in range(groups):
                xs, ws = x[:, g * cig:(g + 1) * cig, ih, iw], w[g * cig:(g + 1) * cig, :, i, j]
                y[:, g * cog:(g + 1) * cog, r, q] += xs @ ws
    if b is not None:
        y += b[None, :, None, None]
    return y


def ref_pool(x, kernel_size, stride=None, padding=0, kind="max"):
    (kh, kw) = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh_n = (xp.shape[2] - kh) // sh + 1
    ow_n = (xp.shape[3] - kw) // sw + 1
    y = np.zeros(x.shape[:2] + (oh_n, ow_n))
    for oh, ow in itertools.product(range(oh_n), range(ow_n)):
        win = xp[:, :, oh * sh:oh * sh + kh, ow * sw:ow * sw + kw]
        y[:, :, oh, ow] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return y


# ---------------------------------------------------------------- grids
CONV_GRID = [
    dict(stride=s, padding=p, dilation=d, groups=g)
    for s, p, d, g in itertools.product([1, (2, 3)], [0, 1, (2, 1), 3, "same", "valid"], [1, 2, (1, 2)], [1, 2])
    if not (p == "same" and s != 1)
]
TRANSPOSE_GRID = [
    dict(stride=s, padding=p, output_padding=op, dilation=d, groups=g)
    for s, p, d, g, op in itertools.product([1, (2, 3), (1, 2)], [0, 1, (2, 1)], [1, 2, (1, 2)], [1, 2], [0, 1])
    if all(op < max(si, di) for si, di in zip(_pair(s), _pair(d)))   # PyTorch's rule, per axis
]
POOL_GRID = [
    dict(kernel_size=k, stride=s, padding=p)
    for k, s, p in [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0)), (3, 1, 0), (2, 1, 1)]
]


def _conv_inputs(groups, seed=0):
    # x (2, 4, 7, 8); w (6, 4/groups, 3, 2): non-square kernel, odd sizes
    return _arr(2, 4, 7, 8, seed=seed), _arr(6, 4 // groups, 3, 2, seed=seed + 1), _arr(6, seed=seed + 2)


def _transpose_inputs(groups, seed=0):
    # x (2, 4, 4, 5); w (4, 6/groups, 3, 2) -> 6 output channels
    return _arr(2, 4, 4, 5, seed=seed), _arr(4, 6 // groups, 3, 2, seed=seed + 1), _arr(6, seed=seed + 2)


def _label(params):
    return ",".join(f"{k}={v}" for k, v in params.items())


# ---------------------------------------------------------------- (1) forward vs loops
@pytest.mark.parametrize("params", CONV_GRID, ids=_label)
def test_conv2d_forward_matches_loops(params):
    x, w, b = _conv_inputs(params["groups"])
    y = conv2d(_t(x, False), _t(w, False), _t(b, False), **params)
    np.testing.assert_allclose(y.data, ref_conv2d(x, w, b, **params), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("params", TRANSPOSE_GRID, ids=_label)
def test_conv_transpose2d_forward_matches_loops(params):
    x, w, b = _transpose_inputs(params["groups"])
    y = conv_transpose2d(_t(x, False), _t(w, False), _t(b, False), **params)
    np.testing.assert_allclose(y.data, ref_conv_transpose2d(x, w, b, **params), rtol=1e-12, atol=1e-12)


SUB_PIXEL_GRID = [
    dict(stride=s, padding=p, groups=g)
    for s, p, g in itertools.product([2, (2, 1), (1, 2), (4, 2)], [0, 1, (2, 3)], [1, 2])
]


@pytest.mark.parametrize("params", SUB_PIXEL_GRID, ids=_label)
def test_kernels_a_whole_number_of_strides_long(params):
    """Kernel (4, 2) with strides dividing it: the input gradient is one sub-pixel convolution plus a
    depth-to-space copy.  Checked as a transposed convolution's forward (against the loops) and as
    both ops' gradients (finite differences)."""
    g = params["groups"]
    x, w, b = _arr(2, 4, 5, 6, seed=61), _arr(4, 6 // g, 4, 2, seed=62), _arr(6, seed=63)
    for op in (0, 1):                             # output_padding 1 along the strided axes
        kwargs = dict(params, output_padding=tuple(min(op, s - 1) for s in _pair(params["stride"])))
        y = conv_transpose2d(_t(x, False), _t(w, False), _t(b, False), **kwargs)
        np.testing.assert_allclose(y.data, ref_conv_transpose2d(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
        assert gradcheck(lambda x, w: conv_transpose2d(x, w, **kwargs), _t(x), _t(w), directions=2)
    xc, wc = _arr(2, 4, 9, 8, seed=64), _arr(6, 4 // g, 4, 2, seed=65)
    assert gradcheck(lambda x, w: conv2d(x, w, **params), _t(xc), _t(wc), directions=2)


@pytest.mark.parametrize("params", [dict(padding=1), dict(padding="same", dilation=2),
                                    dict(stride=(1, 2), padding=(0, 2)), dict(stride=2, padding=1)], ids=_label)
def test_single_channel_input(params):
    """One input channel (a grayscale image) takes a tap-major gather; also a transposed convolution
    with one output channel, whose stride-1 input gradient gathers a one-channel gradient."""
    x, w, b = _arr(3, 1, 9, 11, seed=51), _arr(5, 1, 3, 3, seed=52), _arr(5, seed=53)
    y = conv2d(_t(x, False), _t(w, False), _t(b, False), **params)
    np.testing.assert_allclose(y.data, ref_conv2d(x, w, b, **params), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda x, w, b: conv2d(x, w, b, **params), _t(x), _t(w), _t(b), directions=2)
    z, wt = _arr(3, 4, 6, 7, seed=54), _arr(4, 1, 3, 3, seed=55)
    assert gradcheck(lambda z, wt: conv_transpose2d(z, wt, padding=1), _t(z), _t(wt), directions=2)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("params", POOL_GRID, ids=_label)
def test_pool_forward_matches_loops(params, kind):
    x = _arr(2, 3, 7, 6)
    fn = max_pool2d if kind == "max" else avg_pool2d
    np.testing.assert_allclose(fn(_t(x, False), **params).data, ref_pool(x, kind=kind, **params), rtol=1e-12)


# ---------------------------------------------------------------- (2) gradchecks
@pytest.mark.parametrize("params", CONV_GRID, ids=_label)
def test_conv2d_gradcheck(params):
    x, w, b = _conv_inputs(params["groups"], seed=3)
    assert gradcheck(lambda x, w, b: conv2d(x, w, b, **params), _t(x), _t(w), _t(b), directions=2)


@pytest.mark.parametrize("params", TRANSPOSE_GRID, ids=_label)
def test_conv_transpose2d_gradcheck(params):
    x, w, b = _transpose_inputs(params["groups"], seed=5)
    assert gradcheck(lambda x, w, b: conv_transpose2d(x, w, b, **params), _t(x), _t(w), _t(b), directions=2)


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d])
@pytest.mark.parametrize("params", POOL_GRID, ids=_label)
def test_pool_gradcheck(params, fn):
    x = _t(_arr(2, 3, 7, 6, seed=7))
    assert gradcheck(lambda x: fn(x, **params), x)


def test_gradients_only_for_inputs_that_need_them():
    x, w, b = _conv_inputs(1)
    tx, tw = _t(x, False), _t(w)
    y = conv2d(tx, tw, _t(b, False), padding=1)
    op = y._ctx
    assert hasattr(op, "x") and not hasattr(op, "w")  # only x is needed for the weight gradient
    saved = [v for v in vars(op).values() if isinstance(v, np.ndarray)]
    assert all(a.size <= x.size for a in saved)          # no column matrix kept for backward
    y.backward(np.ones(y.shape))
    assert tx.grad is None and tw.grad is not None


# ---------------------------------------------------------------- (3) adjoint identity
def _matching_output_padding(x_shape, w_shape, params):
    """The output_padding that makes conv_transpose2d return x's spatial size (H, W)."""
    strides, pads, dils = (_pair(params[k]) for k in ("stride", "padding", "dilation"))
    return tuple((n + 2 * p - d * (k - 1) - 1) % s
                 for n, k, s, p, d in zip(x_shape[2:], w_shape[2:], strides, pads, dils))


@pytest.mark.parametrize("params", [p for p in CONV_GRID if not isinstance(p["padding"], str)], ids=_label)
def test_conv_transpose_is_adjoint_of_conv(params):
    x, w, _ = _conv_inputs(params["groups"], seed=11)
    y = conv2d(_t(x, False), _t(w, False), **params).data
    g = _arr(*y.shape, seed=12)
    op = _matching_output_padding(x.shape, w.shape, params)
    xt = conv_transpose2d(_t(g, False), _t(w, False), output_padding=op, **params).data
    assert xt.shape == x.shape
    lhs, rhs = float((y * g).sum()), float((x * xt).sum())
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


# ---------------------------------------------------------------- (4) hypothesis
@st.composite
def conv_cases(draw, string_padding=False):
    """Random conv2d shapes and parameters; with ``string_padding`` the padding is also drawn as
    ``"same"`` (with stride 1, which it requires) or ``"valid"``."""
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    padding = (ph, pw)
    if string_padding:
        padding = draw(st.sampled_from([padding, padding, "same", "valid"]))
        if padding == "same":
            sh = sw = 1
    pt, pb, pl, pr = _conv_pads(padding, (kh, kw), (dh, dw))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + pt + pb >= dh * (kh - 1) + 1 and w + pl + pr >= dw * (kw - 1) + 1)
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(x=(n, cg * groups, h, w), w=(kg * groups, cg, kh, kw), seed=seed,
                params=dict(stride=(sh, sw), padding=padding, dilation=(dh, dw), groups=groups))


@settings(max_examples=25, deadline=None)
@given(conv_cases(string_padding=True))
def test_conv_random_shapes(case):
    """Forward against the direct definition, input gradient against conv_transpose, and a gradcheck of
    the input, the weight and the bias (padding numeric, ``"same"`` or ``"valid"``)."""
    p = case["params"]
    x, w = _arr(*case["x"], seed=case["seed"]), _arr(*case["w"], seed=case["seed"] + 1)
    b = _arr(case["w"][0], seed=case["seed"] + 3)
    tx, tw, tb = _t(x), _t(w), _t(b)
    y = conv2d(tx, tw, tb, **p)
    np.testing.assert_allclose(y.data, ref_conv2d(x, w, b, **p), rtol=1e-10, atol=1e-10)
    g = _arr(*y.shape, seed=case["seed"] + 2)
    y.backward(g)
    np.testing.assert_allclose(tb.grad, g.sum(axis=(0, 2, 3)), rtol=1e-10, atol=1e-10)
    # exactly, since a stride-1 backward takes it from the output gradient's columns (_unflip_weight)
    np.testing.assert_allclose(tw.grad, ref_conv2d_grad_weight(x, g, w.shape, **p), rtol=1e-10, atol=1e-10)
    # the input gradient of conv is conv_transpose with the matching output_padding ("same" may pad
    # unevenly, which conv_transpose2d cannot express; "valid" is padding 0)
    if p["padding"] != "same":
        pn = dict(p, padding=(0, 0) if p["padding"] == "valid" else p["padding"])
        op = _matching_output_padding(x.shape, w.shape, pn)
        (sh, sw), (dh, dw) = p["stride"], p["dilation"]
        if op[0] < max(sh, dh) and op[1] < max(sw, dw):
            z = conv_transpose2d(_t(g, False), _t(w, False), output_padding=op, **pn).data
            np.testing.assert_allclose(tx.grad, z, rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(z, ref_conv_transpose2d(g, w, output_padding=op, **pn), rtol=1e-10,
                                       atol=1e-10)
    assert gradcheck(lambda a, c, d: conv2d(a, c, d, **p), _t(x), _t(w), _t(b), directions=1)


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(0, 2))
def test_conv_transpose_random_shapes(case, op_extra):
    p = dict(case["params"])
    (sh, sw), (dh, dw) = p["stride"], p["dilation"]
    p["output_padding"] = (min(op_extra, max(sh, dh) - 1), min(op_extra, max(sw, dw) - 1))
    cin = case["w"][0]
    x = _arr(case["x"][0], cin, *case["x"][2:], seed=case["seed"])
    w = _arr(cin, *case["w"][1:], seed=case["seed"] + 1)
    (ph, pw), (kh, kw) = p["padding"], w.shape[2:]
    assume((x.shape[2] - 1) * sh - 2 * ph + dh * (kh - 1) + p["output_padding"][0] >= 0)
    assume((x.shape[3] - 1) * sw - 2 * pw + dw * (kw - 1) + p["output_padding"][1] >= 0)
    y = conv_transpose2d(_t(x, False), _t(w, False), **p)
    np.testing.assert_allclose(y.data, ref_conv_transpose2d(x, w, **p), rtol=1e-10, atol=1e-10)
    assert gradcheck(lambda a, b: conv_transpose2d(a, b, **p), _t(x), _t(w), directions=1)


# ---------------------------------------------------------------- (5) PyTorch oracle
TORCH_CONV = [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2), groups=2),
    dict(stride=1, padding="same", dilation=1, groups=1),    # even kernel width: asymmetric split
    dict(stride=1, padding="same", dilation=(2, 3), groups=2),
    dict(stride=3, padding="valid", dilation=1, groups=1),
]
TORCH_TRANSPOSE = [
    dict(stride=2, padding=1, output_padding=1, dilation=1, groups=1),
    dict(stride=(1, 3), padding=(2, 0), output_padding=(1, 2), dilation=(2, 1), groups=2),
    dict(stride=1, padding=0, output_padding=0, dilation=3, groups=1),
]


def _torch_compare(torch, fn, tfn, arrays, params, dtype=np.float64, tol=1e-10):
    ours = [Tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.astype(dtype), requires_grad=True) for a in arrays]
    y, ty = fn(*ours, **params), tfn(*theirs, **params)
    assert y.dtype == dtype and y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=tol, atol=tol)
    g = _arr(*y.shape, seed=99).astype(dtype)
    y.backward(g)
    ty.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        assert a.grad.dtype == dtype
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # PyTorch's own note on even kernels
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params", TORCH_CONV, ids=_label)
def test_conv2d_matches_torch(params, dtype):
    torch = pytest.importorskip("torch")
    g = params["groups"]
    arrays = [_arr(3, 4, 9, 8, seed=1), _arr(6, 4 // g, 3, 4, seed=2), _arr(6, seed=3)]
    tol = 1e-10 if dtype == np.float64 else 1e-4
    _torch_compare(torch, conv2d, torch.nn.functional.conv2d, arrays, params, dtype, tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("params", TORCH_TRANSPOSE, ids=_label)
def test_conv_transpose2d_matches_torch(params, dtype):
    torch = pytest.importorskip("torch")
    g = params["groups"]
    arrays = [_arr(3, 4, 5, 6, seed=1), _arr(4, 6 // g, 3, 2, seed=2), _arr(6, seed=3)]
    tol = 1e-10 if dtype == np.float64 else 1e-4
    _torch_compare(torch, conv_transpose2d, torch.nn.functional.conv_transpose2d, arrays, params, dtype, tol)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("params", POOL_GRID, ids=_label)
def test_pools_match_torch(params, name):
    torch = pytest.importorskip("torch")
    fn = max_pool2d if name == "max_pool2d" else avg_pool2d
    _torch_compare(torch, fn, getattr(torch.nn.functional, name), [_arr(2, 3, 7, 6, seed=4)], params)


# ---------------------------------------------------------------- (6) errors
def _raises(fn, *args, match, error=ValueError, **kwargs):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_conv2d_channel_mismatch_message():
    x, w = _t(np.zeros((2, 4, 5, 5)), False), _t(np.zeros((8, 3, 3, 3)), False)
    msg = (r"conv2d: weight expects 3 input channels per group \(shape \(8, 3, 3, 3\)\) "
           r"but input has 4 channels \(shape \(2, 4, 5, 5\)\)")
    _raises(conv2d, x, w, match=msg)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((2, 4, 5, 5), (8, 2, 3, 3), dict(groups=3), r"conv2d: .*groups=3"),
    ((2, 4, 5, 5), (6, 2, 3, 3), dict(groups=4), r"groups=4 does not divide the 6 output channels"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(groups=0), r"conv2d: groups must be a positive int"),
    ((2, 4, 3, 3), (6, 4, 5, 5), {}, r"conv2d: kernel .* larger than the padded input \(3, 3\)"),
    ((2, 4, 3, 3), (6, 4, 3, 3), dict(dilation=2), r"conv2d: kernel of dilated size \(5, 5\)"),
    ((4, 5, 5), (6, 4, 3, 3), {}, r"conv2d: input must be 4-D \(N, C, H, W\), got shape \(4, 5, 5\)"),
    ((2, 4, 5, 5), (6, 4, 3), {}, r"conv2d: weight must be 4-D .* got shape \(6, 4, 3\)"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(stride=1.5), r"conv2d: stride must be a positive int or a pair of them, got 1.5"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(stride=0), r"conv2d: stride must be a positive int or a pair"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(padding=(1, 2, 3)), r"conv2d: padding must be an int >= 0 or a pair"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(padding=-1), r"conv2d: padding must be an int >= 0 or a pair of them, got -1"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(padding="full"), r"conv2d: padding must be .*'same' or 'valid'"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(padding="same", stride=2), r"conv2d: padding='same' needs stride 1"),
    ((2, 4, 5, 5), (6, 4, 3, 3), dict(dilation=(1, True)), r"conv2d: dilation must be a positive int or a pair"),
    ((2, 4, 5, 5), (6, 4, 0, 3), {}, r"conv2d: weight shape \(6, 4, 0, 3\) .* has an empty dimension"),
    ((2, 0, 5, 5), (6, 0, 3, 3), {}, r"conv2d: weight shape \(6, 0, 3, 3\) .* has an empty dimension"),
    ((2, 4, 5, 5), (0, 4, 3, 3), {}, r"conv2d: weight shape \(0, 4, 3, 3\) .* has an empty dimension"),
])
def test_conv2d_errors(x_shape, w_shape, kwargs, match):
    _raises(conv2d, _t(np.zeros(x_shape), False), _t(np.zeros(w_shape), False), match=match, **kwargs)


def test_conv2d_bias_shape_error():
    x, w, b = _t(np.zeros((2, 4, 5, 5)), False), _t(np.zeros((6, 4, 3, 3)), False), _t(np.zeros(4), False)
    _raises(conv2d, x, w, b, match=r"conv2d: bias must have shape \(6,\) .*\(6, 4, 3, 3\), got shape \(4,\)")


@pytest.mark.parametrize("fn, w_shape, bias_size", [(conv2d, (3, 2, 3, 3), 3), (conv_transpose2d, (2, 3, 3, 3), 3)])
def test_a_float64_bias_widens_the_convolution_like_linear(fn, w_shape, bias_size):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((1, 2, 5, 5)).astype(np.float32), requires_grad=True)
    w = Tensor(rng.standard_normal(w_shape).astype(np.float32), requires_grad=True)
    b = _t(np.array([0.1, 0.2, 1e-9])[:bias_size])                   # float64: 1e-9 is below float32's resolution
    y = fn(x, w, b)
    assert y.dtype == np.float64
    y64 = fn(_t(x.numpy()), _t(w.numpy()), b)
    np.testing.assert_allclose(y.numpy(), y64.numpy(), rtol=1e-12)
    y.sum().backward()
    assert x.grad.dtype == w.grad.dtype == np.float32 and b.grad.dtype == np.float64
    assert fn(x, w, Tensor(np.zeros(bias_size, np.float32))).dtype == np.float32


def test_conv2d_rejects_integer_input_and_non_tensor():
    x, w = Tensor(np.zeros((2, 4, 5, 5), dtype=np.int64)), _t(np.zeros((6, 4, 3, 3)), False)
    _raises(conv2d, x, w, match=r"conv2d: input must be floating point, got dtype int64", error=TypeError)
    _raises(conv2d, [[1.0]], w, match=r"conv2d: input must be a Tensor, got list", error=TypeError)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, match", [
    ((2, 5, 4, 4), (4, 3, 3, 3), {}, r"conv_transpose2d: weight expects 4 input channels \(shape \(4, 3, 3, 3\)\) "
                                    r"but input has 5 channels \(shape \(2, 5, 4, 4\)\)"),
    ((2, 4, 4, 4), (4, 3, 3, 3), dict(groups=3), r"conv_transpose2d: groups=3 does not divide the 4 input channels"),
    ((2, 4, 4, 4), (4, 3, 3, 3), dict(stride=2, output_padding=2),
     r"conv_transpose2d: output_padding=2 must be smaller than stride=\(2, 2\) or dilation=\(1, 1\) "
     r"\(input shape \(2, 4, 4, 4\), weight shape \(4, 3, 3, 3\)\)"),
    ((2, 4, 4, 4), (4, 0, 3, 3), {}, r"conv_transpose2d: weight shape \(4, 0, 3, 3\) .* has an empty dimension"),
    ((2, 4, 4, 4), (4, 3, 3, 0), {}, r"conv_transpose2d: weight shape \(4, 3, 3, 0\) .* has an empty dimension"),
    ((2, 4, 4, 4), (4, 3, 3, 3), dict(output_padding=1), r"output_padding=1 must be smaller"),
    ((2, 4, 1, 1), (4, 3, 1, 1), dict(padding=1), r"conv_transpose2d: output size \(-1, -1\) is not positive"),
    ((2, 4, 4, 4), (4, 3, 3, 3), dict(padding="same"), r"conv_transpose2d: padding must be an int or a pair"),
    ((2, 4, 4, 4), (4, 3, 3, 3), dict(stride=(1, 2.0)), r"conv_transpose2d: stride must be a positive int or a pair"),
])
def test_conv_transpose2d_errors(x_shape, w_shape, kwargs, match):
    _raises(conv_transpose2d, _t(np.zeros(x_shape), False), _t(np.zeros(w_shape), False), match=match, **kwargs)


@pytest.mark.parametrize("params", [dict(kernel_size=2, stride=2, padding=1), dict(kernel_size=3, stride=1, padding=1)])
def test_max_pool_of_all_minus_inf_windows_routes_gradient_to_real_cells(params):
    # the -inf padding ties with the window's -inf values; no upstream gradient may be dropped
    x = _t(np.full((1, 2, 3, 3), -np.inf))
    y = max_pool2d(x, **params)
    y.backward(np.ones(y.shape))
    assert x.grad.sum() == y.data.size
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x.data, requires_grad=True)
    torch.nn.functional.max_pool2d(tx, **params).sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d])
def test_pool_errors(fn):
    name = fn.__name__
    x = _t(np.zeros((2, 3, 4, 4)), False)
    _raises(fn, x, 3, padding=2, match=rf"{name}: padding=2 must be at most half the kernel size \(3, 3\)")
    _raises(fn, x, 6, match=rf"{name}: kernel \(6, 6\) is larger than the padded input \(4, 4\)")
    _raises(fn, _t(np.zeros((3, 4, 4)), False), 2, match=rf"{name}: input must be 4-D")
    _raises(fn, x, 2, stride=0, match=rf"{name}: stride must be a positive int or a pair")


# ---------------------------------------------------------------- (7) non-contiguous inputs, dtype
def test_non_contiguous_inputs():
    big = _arr(2, 4, 14, 9, seed=21)
    x_nc = big[:, :, ::2, :8]                                # strided view
    w_nc = _arr(6, 3, 4, 2, seed=22).transpose(0, 3, 2, 1)   # (6, 2, 4, 3), transposed view
    b = _arr(6, seed=23)
    assert not x_nc.flags.c_contiguous and not w_nc.flags.c_contiguous
    params = dict(stride=(2, 1), padding=1, groups=2)
    y = conv2d(Tensor(x_nc), Tensor(w_nc), Tensor(b), **params).data
    np.testing.assert_allclose(y, ref_conv2d(np.ascontiguousarray(x_nc), np.ascontiguousarray(w_nc), b, **params),
                               rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, c: conv2d(a, c, **params), Tensor(x_nc, requires_grad=True),
                     Tensor(w_nc, requires_grad=True))
    z_nc = _arr(2, 6, 9, 5, seed=24).transpose(0, 1, 3, 2)   # (2, 6, 5, 9)
    wt = _arr(6, 2, 3, 3, seed=25)
    tp = dict(stride=2, padding=1, output_padding=1, groups=2)
    zt = conv_transpose2d(Tensor(z_nc), Tensor(wt), **tp).data
    np.testing.assert_allclose(zt, ref_conv_transpose2d(np.ascontiguousarray(z_nc), wt, **tp), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, c: conv_transpose2d(a, c, **tp), Tensor(z_nc, requires_grad=True),
                     Tensor(wt, requires_grad=True))
    p_nc = big.transpose(0, 1, 3, 2)
    for fn in (max_pool2d, avg_pool2d):
        kind = "max" if fn is max_pool2d else "avg"
        np.testing.assert_allclose(fn(Tensor(p_nc), 3, 2, 1).data, ref_pool(p_nc, 3, 2, 1, kind), rtol=1e-12)
        assert gradcheck(lambda a: fn(a, 3, 2, 1), Tensor(p_nc, requires_grad=True))


# ---------------------------------------------------------------- (8) batch blocks, memory layout
def _forward_and_grads(fn, x, w, b, g, **kwargs):
    ts = [_t(a) for a in (x, w, b)]
    y = fn(*ts, **kwargs)
    y.backward(g)
    return [y.data] + [t.grad for t in ts]


@pytest.mark.parametrize("fn, make, params", [
    (conv2d, _conv_inputs, dict(stride=1, padding=1, groups=2)),
    (conv2d, _conv_inputs, dict(stride=(2, 3), padding=(2, 1), dilation=2)),
    (conv_transpose2d, _transpose_inputs, dict(stride=1, padding=1, groups=2)),
    (conv_transpose2d, _transpose_inputs, dict(stride=(2, 3), padding=1, output_padding=1)),
], ids=lambda v: _label(v) if isinstance(v, dict) else getattr(v, "__name__", ""))
def test_batch_blocks_give_the_unblocked_result(monkeypatch, fn, make, params):
    """On NumPy the primitives walk the batch in blocks; one sample per block must change nothing."""
    import minifb.ops.conv as conv_module

    x, w, b = make(params.get("groups", 1), seed=31)
    x = np.concatenate([x, x[::-1] * 0.5, x + 1.0])                # batch of 6
    with_y = fn(_t(x, False), _t(w, False), _t(b, False), **params).data
    g = _arr(*with_y.shape, seed=32)
    whole = _forward_and_grads(fn, x, w, b, g, **params)
    monkeypatch.setattr(conv_module, "_BLOCK_BYTES", 1)               # one sample per block
    blocked = _forward_and_grads(fn, x, w, b, g, **params)
    for got, want in zip(blocked, whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_channels_last_results_feed_the_next_layer():
    """Results come back as NCHW-shaped views of channels-last memory; chaining them (and mixing them
    with ordinary C-contiguous gradients) gives what contiguous copies of the same values give."""
    x, w1, w2, wt = _arr(3, 4, 6, 6, seed=41), _arr(5, 4, 3, 3, seed=42), _arr(6, 5, 3, 3, seed=43), \
        _arr(6, 5, 4, 4, seed=44)

    def net(x, w1, w2, wt):
        a = conv2d(x, w1, padding=1).relu()
        s = conv2d(a, w2, stride=2, padding=1)
        return a * conv_transpose2d(s, wt, stride=2, padding=1)

    y = conv2d(_t(x), _t(w1), padding=1)
    assert y.shape == (3, 5, 6, 6) and y.data.transpose(0, 2, 3, 1).flags.c_contiguous
    out = net(*[_t(a) for a in (x, w1, w2, wt)]).data
    a = np.maximum(ref_conv2d(x, w1, padding=1), 0)
    s = ref_conv2d(a, w2, stride=2, padding=1)
    np.testing.assert_allclose(out, a * ref_conv_transpose2d(s, wt, stride=2, padding=1), rtol=1e-10, atol=1e-10)
    assert gradcheck(net, *[_t(v) for v in (x, w1, w2, wt)])


@pytest.mark.parametrize("fn, w_shape, kwargs", [
    (conv2d, (6, 4, 3, 3), dict(padding=1)),
    (conv_transpose2d, (4, 6, 4, 4), dict(stride=2, padding=1)),
])
def test_float32_stays_float32(fn, w_shape, kwargs):
    x = Tensor(_arr(2, 4, 6, 6).astype(np.float32), requires_grad=True)
    w = Tensor(_arr(*w_shape).astype(np.float32), requires_grad=True)
    b = Tensor(_arr(6).astype(np.float32), requires_grad=True)
    y = fn(x, w, b, **kwargs)
    assert y.dtype == np.float32
    y.backward(np.ones(y.shape, dtype=np.float32))
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32
    for pool in (max_pool2d, avg_pool2d):
        assert pool(x, 2).dtype == np.float32


def test_ops_are_usable_directly_and_release_saved_state():
    x, w = _t(_arr(1, 2, 5, 5)), _t(_arr(3, 2, 3, 3))
    y = Conv2d.apply(x, w, padding="same")
    assert y.shape == (1, 3, 5, 5)
    z = ConvTranspose2d.apply(y, _t(_arr(3, 2, 3, 3)), padding=1)
    assert z.shape == (1, 2, 5, 5)
    z.backward(np.ones(z.shape))
    assert y._ctx.parents is None  # saved arrays were released after backward


def test_empty_batch():
    x, w = _t(np.zeros((0, 4, 5, 5))), _t(_arr(6, 4, 3, 3))
    y = conv2d(x, w, padding=1)
    assert y.shape == (0, 6, 5, 5)
    y.backward(np.zeros(y.shape))
    assert x.grad.shape == x.shape and np.all(w.grad == 0)
    assert conv_transpose2d(_t(np.zeros((0, 6, 3, 3))), w, stride=2).shape == (0, 4, 7, 7)


# ---------------------------------------------------------------- (9) the fused kernels against the array path
def _run_mode(fn, arrays, g, mode, **kwargs):
    """Output and all input gradients of ``fn`` on float32 ``arrays`` with kernels in ``mode``."""
    from minifb import kernels

    ts = [Tensor(a.astype(np.float32), requires_grad=True) for a in arrays]
    with kernels.use(mode):
        y = fn(*ts, **kwargs)
        y.backward(g.astype(np.float32))
    return [np.asarray(y.data)] + [t.grad for t in ts]


FUSED_CONV = [
    (conv2d, _conv_inputs, dict(stride=1, padding=1, groups=2)),
    (conv2d, _conv_inputs, dict(stride=1, padding=2, dilation=2, groups=2)),
    (conv2d, _conv_inputs, dict(stride=(2, 3), padding=(2, 1), dilation=(2, 1), groups=2)),
    (conv2d, _conv_inputs, dict(stride=2, padding=1, dilation=2, groups=1)),
    (conv_transpose2d, _transpose_inputs, dict(stride=1, padding=1, groups=2)),
    (conv_transpose2d, _transpose_inputs, dict(stride=2, padding=1, output_padding=1, dilation=2, groups=2)),
    (conv_transpose2d, _transpose_inputs, dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2), groups=2)),
]


@pytest.mark.parametrize("fn, make, params", FUSED_CONV,
                         ids=lambda v: _label(v) if isinstance(v, dict) else getattr(v, "__name__", ""))
def test_fused_conv_kernels_match_array_path(fn, make, params, emulated_kernel_launches):
    """Under kernels.use("emulate") the im2col/col2im path gives the array path's values and gradients
    (input, weight and bias), grouped and dilated included."""
    x, w, b = make(params.get("groups", 1), seed=51)
    y = fn(_t(x, False), _t(w, False), _t(b, False), **params).data
    g = _arr(*y.shape, seed=52)
    want = _run_mode(fn, (x, w, b), g, "off", **params)
    got = _run_mode(fn, (x, w, b), g, "emulate", **params)
    assert {"im2col", "col2im"} <= set(emulated_kernel_launches), sorted(set(emulated_kernel_launches))
    for name, a, e in zip(["y", "dx", "dw", "db"], got, want):
        assert a.dtype == np.float32 and a.shape == e.shape, name
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("params", POOL_GRID + [
    dict(kernel_size=3, stride=1, padding=(1, 0)),
    dict(kernel_size=3, stride=1, padding=(0, 1)),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1)),
], ids=_label)
def test_max_pool_kernels_match_array_path(params, emulated_kernel_launches):
    x = _arr(2, 3, 7, 6, seed=61)
    y = max_pool2d(_t(x, False), **params).data
    g = _arr(*y.shape, seed=62)
    want = _run_mode(max_pool2d, (x,), g, "off", **params)
    got = _run_mode(max_pool2d, (x,), g, "emulate", **params)
    assert {"maxpool_fwd", "maxpool_bwd"} <= set(emulated_kernel_launches)
    np.testing.assert_array_equal(got[0], want[0])              # a pure selection: exact
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-6)


def test_avg_pool_of_float16_sums_its_window_in_float32():
    # a 2x2 window of 30000s sums past float16's 65504, though its mean does not
    x = np.full((1, 1, 4, 4), 30000, np.float16)
    x[0, 0, 0, 1] = -20000
    y = avg_pool2d(Tensor(x), 2)
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y.numpy()[0, 0], np.array([[17500, 30000], [30000, 30000]], np.float16))


# ---------------------------------------------------------------- found by mutation testing (session 13)
# Each test below failed on a mutant of ops/conv.py that the tests above let through: a batch split whose
# last block is short, the gradient of x alone or w alone (frozen weights, a first layer), the fused weight
# gradient alone with groups, a max-pool window of more than 127 taps, one-sided pool padding, and the
# error checks of the second spatial axis.


# ---------------------------------------------------------------- batch blocks that do not divide the batch,
# and every subset of inputs requiring a gradient (frozen weights, a first layer whose input needs no grad)
def _sub_pixel_inputs(groups, seed=0):
    # kernel (4, 2): stride 2 divides it, so the input gradient is a sub-pixel convolution
    return _arr(2, 4, 9, 8, seed=seed), _arr(6, 4 // groups, 4, 2, seed=seed + 1), _arr(6, seed=seed + 2)


UNEVEN_BLOCK_CASES = [
    (conv2d, _conv_inputs, dict(stride=(2, 3), padding=(2, 1), dilation=2)),          # col2im
    (conv2d, _conv_inputs, dict(stride=1, padding=1, dilation=(1, 2), groups=2)),      # full correlation
    (conv2d, _sub_pixel_inputs, dict(stride=2, padding=1, groups=2)),                  # sub-pixel
    (conv_transpose2d, _transpose_inputs, dict(stride=(2, 3), padding=1, output_padding=1)),
    (conv_transpose2d, _transpose_inputs, dict(stride=1, padding=1, groups=2)),
]


def _per_sample_column_bytes(fn, x, w, params):
    """Bytes of one sample's column matrix in the conv that ``fn`` is (or is the adjoint of)."""
    (sh, sw), (dh, dw), (ph, pw) = (_pair(params.get(k, d)) for k, d in
                                    (("stride", 1), ("dilation", 1), ("padding", 0)))
    kh, kw = w.shape[2:]
    if fn is conv2d:
        c, oh, ow = x.shape[1], (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1, \
            (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    else:                                        # the conv's output is the transposed conv's input
        c, oh, ow = w.shape[1] * params.get("groups", 1), x.shape[2], x.shape[3]
    return c * kh * kw * oh * ow * 8


@pytest.mark.parametrize("per_block", [2, 3])
@pytest.mark.parametrize("needs", [(True, True), (True, False), (False, True)], ids=["x+w", "x", "w"])
@pytest.mark.parametrize("fn, make, params", UNEVEN_BLOCK_CASES,
                         ids=lambda v: _label(v) if isinstance(v, dict) else getattr(v, "__name__", ""))
def test_uneven_batch_blocks_and_partial_gradients(monkeypatch, fn, make, params, needs, per_block):
    """A batch of 5 in blocks of 2 or 3 samples (the last block shorter), with only x, only w, or both
    requiring a gradient, gives the one-block, both-gradients result (itself checked elsewhere)."""
    import minifb.ops.conv as conv_module

    x, w, b = make(params.get("groups", 1), seed=71)
    x = np.concatenate([x, x[::-1] * 0.5, x[:1] + 1.0])               # batch of 5
    y0 = fn(_t(x, False), _t(w, False), _t(b, False), **params).data
    g = _arr(*y0.shape, seed=72)

    def run(req_x, req_w):
        tx, tw, tb = _t(x, req_x), _t(w, req_w), _t(b, False)
        y = fn(tx, tw, tb, **params)
        y.backward(g)
        return y.data, tx.grad, tw.grad

    want = run(True, True)
    monkeypatch.setattr(conv_module, "_BLOCK_BYTES", per_block * _per_sample_column_bytes(fn, x, w, params))
    got = run(*needs)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    for name, need, a, e in zip(["dx", "dw"], needs, got[1:], want[1:]):
        if need:
            assert a is not None, f"{name} missing"
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            assert a is None, name


def test_frozen_weight_input_gradient_against_the_definition():
    """Only x requires a gradient (frozen weights): x's gradient is still the transposed convolution,
    for a non-square input and both ops."""
    x, w, b = _conv_inputs(2, seed=81)
    params = dict(stride=(2, 3), padding=(2, 1), dilation=2, groups=2)
    tx = _t(x)
    y = conv2d(tx, _t(w, False), _t(b, False), **params)
    g = _arr(*y.shape, seed=82)
    y.backward(g)
    op = tuple((n + 2 * p - d * (k - 1) - 1) % s for n, k, s, p, d in
               zip(x.shape[2:], w.shape[2:], (2, 3), (2, 1), (2, 2)))
    np.testing.assert_allclose(tx.grad, ref_conv_transpose2d(g, w, output_padding=op, **params),
                               rtol=1e-10, atol=1e-10)
    # conv_transpose2d: x only, then w only, against conv2d (its adjoint) and the direct weight gradient
    z, wt, _ = _transpose_inputs(2, seed=83)
    tp = dict(stride=(2, 3), padding=1, output_padding=1, groups=2)
    tz = _t(z)
    yt = conv_transpose2d(tz, _t(wt, False), **tp)
    gt = _arr(*yt.shape, seed=84)
    yt.backward(gt)
    cp = dict(stride=(2, 3), padding=1, groups=2)
    np.testing.assert_allclose(tz.grad, ref_conv2d(gt, wt, **cp), rtol=1e-10, atol=1e-10)
    twt = _t(wt)
    conv_transpose2d(_t(z, False), twt, **tp).backward(gt)
    # w of a transposed conv is w of the conv from gt to z: gw[c, o] = sum z[c] * gt_window[o]
    np.testing.assert_allclose(twt.grad, ref_conv2d_grad_weight(gt, z, wt.shape, **cp), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- fused kernels: weight gradient only
@pytest.mark.parametrize("fn, make, params", [
    (conv2d, _conv_inputs, dict(stride=1, padding=1, groups=2)),
    (conv2d, _conv_inputs, dict(stride=(2, 3), padding=(2, 1), dilation=(2, 1), groups=2)),
    (conv_transpose2d, _transpose_inputs, dict(stride=2, padding=1, output_padding=1, groups=2)),
], ids=lambda v: _label(v) if isinstance(v, dict) else getattr(v, "__name__", ""))
def test_fused_weight_gradient_alone_matches_array_path(fn, make, params):
    """A first layer: x needs no gradient, so backward computes the weight gradient alone
    (_fused_conv_grad_weight), grouped included."""
    from minifb import kernels

    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("kernel emulation needs a C++ compiler")
    x, w, _ = make(params["groups"], seed=91)
    y0 = fn(_t(x, False), _t(w, False), **params).data
    g = _arr(*y0.shape, seed=92).astype(np.float32)
    grads = {}
    for mode in ("off", "emulate"):
        tw = Tensor(w.astype(np.float32), requires_grad=True)
        with kernels.use(mode):
            fn(Tensor(x.astype(np.float32)), tw, **params).backward(g)
        grads[mode] = tw.grad
    assert grads["emulate"].shape == w.shape
    np.testing.assert_allclose(grads["emulate"], grads["off"], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- max pooling with many taps / one-sided padding
@pytest.mark.parametrize("kernel_size", [12, 16, (1, 257)])
def test_max_pool_gradient_reaches_a_late_tap_of_a_large_window(kernel_size):
    """The saved argmax of a window with 144, 256 or 257 taps: the maximum in the last tap still gets
    the gradient (a signed or too-narrow index type would drop it)."""
    kh, kw = _pair(kernel_size)
    x = _t(np.arange(2 * kh * kw, dtype=np.float64).reshape(1, 2, kh, kw))
    y = max_pool2d(x, kernel_size)
    y.backward(np.ones(y.shape))
    want = np.zeros(x.shape)
    want[:, :, -1, -1] = 1.0
    np.testing.assert_array_equal(x.grad, want)


@pytest.mark.parametrize("padding", [(0, 1), (1, 0)])
def test_max_pool_all_minus_inf_windows_with_one_sided_padding(padding):
    x = _t(np.full((1, 2, 4, 4), -np.inf))
    y = max_pool2d(x, kernel_size=2, stride=2, padding=padding)
    y.backward(np.ones(y.shape))
    assert x.grad.sum() == y.data.size


# ---------------------------------------------------------------- argument checks, per axis
def test_conv_transpose2d_output_padding_checked_on_both_axes():
    x, w = _t(np.zeros((2, 4, 4, 4)), False), _t(np.zeros((4, 3, 3, 3)), False)
    for op in [(0, 2), (2, 0)]:
        _raises(conv_transpose2d, x, w, stride=2, output_padding=op,
                match=rf"conv_transpose2d: output_padding=\({op[0]}, {op[1]}\) must be smaller")


def test_conv2d_kernel_wider_than_input_raises():
    x, w = _t(np.zeros((2, 4, 8, 3)), False), _t(np.zeros((6, 4, 3, 5)), False)
    _raises(conv2d, x, w, match=r"conv2d: kernel of dilated size \(3, 5\)")
    x, w = _t(np.zeros((2, 4, 3, 8)), False), _t(np.zeros((6, 4, 5, 3)), False)
    _raises(conv2d, x, w, match=r"conv2d: kernel of dilated size \(5, 3\)")


# ---------------------------------------------------------------- audit 14b: None operands, impossible sizes
@pytest.mark.parametrize("fn, call", [
    ("conv2d", lambda x, w: conv2d(x, w)), ("conv_transpose2d", lambda x, w: conv_transpose2d(x, w)),
])
def test_a_none_input_or_weight_is_refused_naming_the_argument(fn, call):
    # only the bias may be None; None elsewhere failed with "'NoneType' object has no attribute '_requires_grad'"
    x, w = _t(np.zeros((1, 3, 5, 5)), False), _t(np.zeros((3, 3, 3, 3)), False)
    _raises(call, None, w, match=rf"^{fn}: input must be a Tensor, got NoneType$", error=TypeError)
    _raises(call, x, None, match=rf"^{fn}: weight must be a Tensor, got NoneType$", error=TypeError)
    assert call(x, w).shape[:2] == (1, 3)


@pytest.mark.parametrize("fn", [max_pool2d, avg_pool2d])
def test_pooling_a_none_input_names_the_function(fn):
    _raises(fn, None, 2, match=rf"^{fn.__name__}: input must be a Tensor, got NoneType$", error=TypeError)


def test_sizes_no_array_could_hold_are_refused_before_numpy_is_asked():
    # NumPy said only "Maximum allowed dimension exceeded"
    x, w = _t(np.zeros((1, 3, 5, 5)), False), _t(np.zeros((4, 3, 3, 3)), False)
    big = 10 ** 30
    _raises(conv2d, x, w, padding=big,
            match=rf"^conv2d: the padded input would have shape \(1, 3, {2 * big + 5}, {2 * big + 5}\), too large "
                  rf"for any array \(padding={big}, input shape \(1, 3, 5, 5\), weight shape \(4, 3, 3, 3\)\)$")
    _raises(conv2d, x, w, padding=(0, 10 ** 17), match=r"^conv2d: the padded input would have shape "
                                                     r"\(1, 3, 5, 200000000000000005\), too large")  # > 2**63 bytes
    z, wt = _t(np.zeros((1, 4, 5, 5)), False), _t(np.zeros((4, 3, 3, 3)), False)
    _raises(conv_transpose2d, z, wt, stride=big,
            match=rf"^conv_transpose2d: the output would have shape \(1, 3, {4 * big + 3}, {4 * big + 3}\), too "
                  rf"large for any array \(stride=\({big}, {big}\), padding=0, dilation=\(1, 1\), output_padding=0, "
                  rf"input shape \(1, 4, 5, 5\), weight shape \(4, 3, 3, 3\)\)$")
    _raises(conv_transpose2d, z, wt, dilation=(1, big), match=r"^conv_transpose2d: the output would have shape "
                                                              rf"\(1, 3, 7, {2 * big + 5}\), too large")
    _raises(conv_transpose2d, z, wt, stride=big, padding=1, match=r"^conv_transpose2d: the output padded by "
                                                                  r"padding would have shape")
    assert conv2d(x, w, padding=50).shape == (1, 4, 103, 103)          # a possible size is computed
