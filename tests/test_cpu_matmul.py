"""Tests of the compiled small matrix products: ``cpu_conv.matmul`` (kernels/conv_cpu.cpp) and the rule by
which ``cpu_conv.product`` sends products to it from the matrix-product ops.

The reference is NumPy's product in float64. The kernel has three ways through a product (b's rows read
as vectors, b's columns copied into rows, dot products for fewer columns than a vector) and a partial
last vector of columns; hypothesis draws shapes and memory layouts that reach each of them, in both
dtypes. The gradients of the ops that use ``product`` are checked against finite differences with every
product sent to the kernel.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minifb as mf
import minifb.functional as F
from minifb import cpu_conv, nn
from minifb.ops import reduce as R
from minifb.testing import gradcheck

pytestmark = pytest.mark.skipif(not cpu_conv.enabled(), reason="the compiled CPU library is unavailable "
                                "(no C++ compiler, or MINIFB_CPU_CONV=off)")


def _layout(a, kind):
    """``a``'s values in another memory layout: C order, Fortran order (a transpose's view), every other
    row and column of a larger array, or reversed rows."""
    if kind == "C":
        return np.ascontiguousarray(a)
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":
        big = np.zeros((2 * a.shape[0] + 1, 2 * a.shape[1] + 1), a.dtype)
        big[1::2, 1::2] = a
        return big[1::2, 1::2]
    return np.ascontiguousarray(a[::-1])[::-1]    # kind == "reversed": negative row stride


def _check(c, a, b):
    expected = a.astype(np.float64) @ b.astype(np.float64)
    assert c.shape == expected.shape and c.dtype == a.dtype and c.flags.c_contiguous
    tol = 1e-12 if a.dtype == np.float64 else 1e-5
    scale = max(1.0, float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[1])
    np.testing.assert_allclose(c, expected, rtol=0, atol=tol * scale)


LAYOUTS = ["C", "F", "strided", "reversed"]


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(0, 70), n=st.integers(1, 70),
       dtype=st.sampled_from([np.float32, np.float64]), a_layout=st.sampled_from(LAYOUTS),
       b_layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 10**6))
def test_matmul_matches_numpy(m, k, n, dtype, a_layout, b_layout, seed):
    rng = np.random.default_rng(seed)
    a = _layout(rng.standard_normal((m, k)).astype(dtype), a_layout)
    b = _layout(rng.standard_normal((k, n)).astype(dtype), b_layout)
    _check(cpu_conv.matmul(a, b), a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(32, 3136, 10), (32, 10, 3136), (10, 32, 3136), (7, 300, 1), (1, 1, 1),
                                     (33, 65, 17), (5, 8, 129)])
@pytest.mark.parametrize("b_is_transposed", [False, True])
def test_every_way_through_the_kernel(m, k, n, dtype, b_is_transposed):
    """b's rows as vectors (with a partial last vector when n is not a multiple), b = w.T with fewer
    columns than a vector (dot products) or more (copied into rows), at the sizes of a classifier head."""
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((n, k)).astype(dtype).T if b_is_transposed else rng.standard_normal((k, n)).astype(dtype)
    _check(cpu_conv.matmul(a, b), a, b)


@pytest.mark.parametrize("m, k, n", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)])
def test_empty_products(m, k, n):
    a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
    c = cpu_conv.matmul(a, b)
    assert c.shape == (m, n) and c.dtype == np.float32
    assert not c.any()      # an empty sum is zero


@pytest.mark.parametrize("a, b, match", [
    (np.ones((2, 3, 4), np.float32), np.ones((4, 2), np.float32), "2-D"),
    (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), r"\(2, 3\) and \(4, 2\)"),
    (np.ones((2, 3), np.float32), np.ones((3, 2), np.float64), "float32 and float64"),
    (np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), "int64"),
])
def test_matmul_refuses_bad_arrays(a, b, match):
    with pytest.raises(ValueError, match=match):
        cpu_conv.matmul(a, b)


@pytest.fixture
def spy(monkeypatch):
    """The shapes of the products ``cpu_conv.matmul`` was called with."""
    calls, real = [], cpu_conv.matmul

    def counting(a, b):
        calls.append((a.shape, b.shape))
        return real(a, b)

    monkeypatch.setattr(cpu_conv, "matmul", counting)
    return calls


def test_product_sends_only_small_narrow_products(spy):
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)   # noqa: E731
    cases = {
        "head": ((32, 3136), (3136, 10), True),        # 1.0M multiply-adds, 10 columns
        "head input grad": ((32, 10), (10, 3136), True),
        "tiny": ((64, 128), (128, 10), False),          # 82K: BLAS runs it on one thread anyway
        "wide": ((32, 256), (256, 64), False),          # no dimension of 16 or less
        "large": ((64, 3136), (3136, 16), False),       # 3.2M: two threads pay off
        "batched": ((2, 32, 3136), (3136, 10), False),  # not 2-D
    }
    for name, (sa, sb, taken) in cases.items():
        spy.clear()
        a, b = f32(*sa), f32(*sb)
        np.testing.assert_allclose(cpu_conv.product(a, b), a @ b, rtol=1e-4, atol=1e-3)
        assert (len(spy) == 1) == taken, name
    spy.clear()
    a, b = f32(32, 3136), f32(3136, 10)
    cpu_conv.product(a, b.astype(np.float64))          # mixed dtypes: NumPy's product
    with cpu_conv.use(False):                           # the library switched off
        cpu_conv.product(a, b)
    cpu_conv.product(a.astype(np.float16), b.astype(np.float16))
    assert spy == []


def test_the_ops_use_it(spy):
    """A Dense layer after convolutions (W2's head) sends its forward and both gradient products."""
    dense = nn.Dense(3136, 10)
    x = mf.tensor(np.random.default_rng(1).standard_normal((32, 3136)).astype(np.float32), requires_grad=True)
    dense(x).sum().backward()
    assert sorted(spy) == sorted([((32, 3136), (3136, 10)), ((32, 10), (10, 3136)), ((10, 32), (32, 3136))])
    spy.clear()
    F.matmul(x, dense.weight.T).sum().backward()
    assert len(spy) == 3


@pytest.fixture
def every_product(monkeypatch):
    """Every 2-D product goes to the kernel (so that the small shapes of gradchecks reach it)."""
    monkeypatch.setattr(cpu_conv, "SMALL_PRODUCT", (-1, 1 << 62))
    monkeypatch.setattr(cpu_conv, "NARROW", 1 << 62)


def _t64(rng, *shape):
    return mf.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=True)


@pytest.mark.parametrize("shapes", [((5, 7), (7, 3)), ((4, 20), (20, 17)), ((1, 9), (9, 1))])
def test_matmul_gradients_through_the_kernel(every_product, spy, shapes):
    rng = np.random.default_rng(len(shapes[0]) + shapes[1][1])
    a, b = _t64(rng, *shapes[0]), _t64(rng, *shapes[1])
    gradcheck(F.matmul, a, b)
    gradcheck(lambda a, b: F.matmul(a.T, b.T), _t64(rng, *shapes[0][::-1]), _t64(rng, *shapes[1][::-1]))
    assert spy


def test_dense_gradients_through_the_kernel(every_product, spy):
    """``F.linear`` (a Dense layer's op) with and without bias, and one weight used twice, whose two weight
    gradients ``ProductSum`` stacks into one product."""
    rng = np.random.default_rng(2)
    w, b = _t64(rng, 19, 6), _t64(rng, 19)
    gradcheck(lambda x, w, b: F.linear(x, w, b), _t64(rng, 4, 6), w, b)
    gradcheck(lambda x1, x2, w: F.linear(F.tanh(F.linear(x1, w)[:, :6]), w[:6]) + F.linear(x2, w)[:, :6],
              _t64(rng, 3, 6), _t64(rng, 3, 6), w)
    assert spy


def test_a_conv_network_trains_the_same_with_and_without_the_kernel(monkeypatch):
    """W2's shape in small: convolutions, then a Dense head of 10 classes, three SGD steps; the losses
    with the head's products on the kernel equal those on BLAS."""
    def train():
        mf.manual_seed(0)
        net = nn.Chain(nn.Conv(1, 8, 3, F.relu, padding=1), nn.Flatten(), nn.Dense(8 * 32 * 32, 10))
        opt = mf.optim.SGD(net.parameters(), lr=0.05)
        rng = np.random.default_rng(0)
        x = mf.tensor(rng.standard_normal((16, 1, 32, 32)).astype(np.float32))
        y = mf.tensor(rng.integers(0, 10, 16))
        losses = []
        for _ in range(3):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    calls = []
    real = cpu_conv.matmul
    monkeypatch.setattr(cpu_conv, "matmul", lambda a, b: calls.append(1) or real(a, b))
    with_kernel = train()
    assert calls, "the head's products should have gone to the kernel"
    monkeypatch.setattr(cpu_conv, "SMALL_PRODUCT", (0, 0))
    np.testing.assert_allclose(with_kernel, train(), rtol=1e-5)


# ---------------------------------------------------------------------------------- bias gradients
# ops/reduce.channel_sum (the bias gradient of Conv, Dense and Merger layers) sums a channels-last array
# as ones @ rows; from reduce.COLUMN_SUM_MIN numbers on it does so with cpu_conv.matmul, since BLAS runs
# that matrix-vector product on all its threads.

@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 9), min_size=2, max_size=4), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 10**6), data=st.data())
def test_channel_sum_through_the_kernel(shape, dtype, seed, data):
    a = np.random.default_rng(seed).standard_normal(shape)
    axis = data.draw(st.integers(0, len(shape) - 1), label="axis")
    channels_last = np.moveaxis(np.ascontiguousarray(np.moveaxis(a, axis, -1)), -1, axis).astype(dtype)
    calls, real = [], cpu_conv.matmul
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(R, "COLUMN_SUM_MIN", 0)
        patch.setattr(cpu_conv, "matmul", lambda a, b: calls.append(1) or real(a, b))
        got = R.channel_sum(channels_last, axis)
    want = a.sum(axis=tuple(i for i in range(a.ndim) if i != axis))
    assert got.shape == (shape[axis],) and got.dtype == dtype and calls
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(a).sum()))


def test_a_conv_layers_bias_gradient_takes_the_kernel(spy):
    """At a convolution's size (W2's first layer: 32 x 32 x 28 x 28) without any setting changed."""
    x = np.random.default_rng(4).standard_normal((32, 28, 28, 32)).astype(np.float32).transpose(0, 3, 1, 2)
    got = R.channel_sum(x, 1)
    assert spy == [((1, 32 * 28 * 28), (32 * 28 * 28, 32))]
    np.testing.assert_allclose(got, x.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-4, atol=1e-2)
    spy.clear()
    R.channel_sum(np.ones((64, 512), np.float32), 1)    # a Dense layer's: below COLUMN_SUM_MIN, to BLAS
    assert spy == []


def test_bias_act_gradients_through_the_kernel(monkeypatch, spy):
    """Between two convolutions both the output and its gradient are channels-last views, so the bias
    gradient is a column sum."""
    monkeypatch.setattr(R, "COLUMN_SUM_MIN", 0)
    rng = np.random.default_rng(5)
    w2 = mf.tensor(rng.standard_normal((2, 6, 3, 3)), dtype=np.float64)
    gradcheck(lambda x, w, b: F.conv2d(F.bias_act(F.conv2d(x, w, padding=1), b, "tanh", 1), w2),
              _t64(rng, 2, 3, 4, 5), _t64(rng, 6, 3, 3, 3), _t64(rng, 6))
    assert ((1, 2 * 4 * 5), (2 * 4 * 5, 6)) in spy
