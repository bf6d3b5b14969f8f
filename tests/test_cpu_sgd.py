"""Tests of the compiled SGD step (``cpu_conv.sgd_step``, in kernels/conv_cpu.cpp) and of its use by
``optim.SGD`` on NumPy arrays.

The reference is ``optim.SGD`` itself with the compiled library switched off (``cpu_conv.use(False)``),
NumPy's arithmetic: the compiled step rounds every operation as NumPy does, so the two must agree to
the bit, over random sizes, dtypes, hyperparameters and steps with missing gradients (hypothesis).
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minifb import cpu_conv, optim
from minifb.tensor import Tensor

pytestmark = pytest.mark.skipif(not cpu_conv.enabled(), reason="the compiled CPU library is unavailable "
                                "(no C++ compiler, or MINIFB_CPU_CONV=off)")

HYPER = st.fixed_dictionaries({
    "lr": st.sampled_from([0.1, 0.01, 1e-3]),
    "momentum": st.sampled_from([0.0, 0.5, 0.9]),
    "dampening": st.sampled_from([0.0, 0.3]),
    "weight_decay": st.sampled_from([0.0, 1e-2]),
    "nesterov": st.booleans(),
})


def _train(sizes, dtype, hyper, grads, compiled):
    """Parameters after SGD steps with the given gradients (None: no gradient that step)."""
    ps = [Tensor(np.linspace(-1, 1, n).astype(dtype), requires_grad=True) for n in sizes]
    opt = optim.SGD(ps, **hyper)
    with cpu_conv.use(compiled):
        for step in grads:
            for p, g in zip(ps, step):
                p.grad = None if g is None else g.astype(dtype)
            opt.step()
    return [p.data for p in ps], [s.get("momentum_buffer") for s in opt.state]


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 700), min_size=1, max_size=3), dtype=st.sampled_from([np.float32, np.float64]),
       hyper=HYPER, steps=st.integers(1, 4), seed=st.integers(0, 2**16), data=st.data())
def test_the_compiled_step_equals_numpys_to_the_bit(sizes, dtype, hyper, steps, seed, data):
    if hyper["nesterov"] and (hyper["momentum"] == 0 or hyper["dampening"] != 0):
        hyper = dict(hyper, nesterov=False)
    rng = np.random.default_rng(seed)
    grads = [[None if data.draw(st.integers(0, 4)) == 0 else rng.standard_normal(n) for n in sizes]
             for _ in range(steps)]
    ours, our_bufs = _train(sizes, dtype, hyper, grads, compiled=True)
    ref, ref_bufs = _train(sizes, dtype, hyper, grads, compiled=False)
    for a, b in zip(ours, ref):
        assert a.dtype == dtype
        np.testing.assert_array_equal(a, b)
    for a, b in zip(our_bufs, ref_bufs):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_sgd_takes_the_compiled_step_only_where_it_applies(monkeypatch):
    calls = []
    real = cpu_conv.sgd_step
    monkeypatch.setattr(cpu_conv, "sgd_step", lambda *a, **k: (calls.append(a[0].shape), real(*a, **k))[1])
    w = Tensor(np.ones((3, 4), np.float32), requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    w.grad = np.ones((3, 4), np.float32)
    opt.step()
    assert calls == [(3, 4)]
    w.grad = np.asfortranarray(np.ones((3, 4), np.float32))   # not C-contiguous: NumPy's path
    opt.step()
    with cpu_conv.use(False):
        w.grad = np.ones((3, 4), np.float32)
        opt.step()
    half = Tensor(np.ones(5, np.float16), requires_grad=True)   # not float32 or float64: NumPy's path
    half.grad = np.ones(5, np.float16)
    optim.SGD([half], lr=0.1).step()
    assert calls == [(3, 4)]
    # the three steps (momentum 0.9, gradient 1): buf 1, 1.9, 2.71; w = 1 - 0.1 * (1 + 1.9 + 2.71)
    np.testing.assert_allclose(w.data, np.full((3, 4), 1 - 0.561), rtol=1e-6)
    np.testing.assert_allclose(half.data, np.full(5, 0.9), rtol=1e-3)


def test_sgd_applies():
    f = np.zeros(4, np.float32)
    assert cpu_conv.sgd_applies(f, f.copy()) and cpu_conv.sgd_applies(f, f.copy(), f.copy())
    assert not cpu_conv.sgd_applies(f, f.astype(np.float64))          # dtypes differ
    assert not cpu_conv.sgd_applies(f, np.zeros(5, np.float32))       # sizes differ
    assert not cpu_conv.sgd_applies(f, f.copy(), np.zeros(4))         # the buffer's dtype differs
    assert not cpu_conv.sgd_applies(np.zeros((4, 4), np.float32)[:, 0], f)   # not contiguous
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    assert not cpu_conv.sgd_applies(ro, f)
    assert not cpu_conv.sgd_applies(f.astype(np.float16), f.astype(np.float16))
    assert not cpu_conv.sgd_applies(f, [0.0] * 4)
    assert not cpu_conv.sgd_applies(f, f)                             # p.grad = p.data: NumPy's path
    two = np.zeros(8, np.float32)
    assert cpu_conv.sgd_applies(two[:4], f.copy(), two[4:])          # halves of one array: apart
    assert not cpu_conv.sgd_applies(two[:4], f.copy(), two[2:6])     # overlapping
    g = f.copy()
    assert not cpu_conv.sgd_applies(f, g, g)                          # the buffer is the gradient
    with cpu_conv.use(False):
        assert not cpu_conv.sgd_applies(f, f.copy())


def test_a_gradient_that_is_the_parameter_itself_updates_as_numpy_does():
    for compiled in (True, False):
        w = Tensor(np.array([1.0, -2.0, 4.0], np.float32), requires_grad=True)
        w.grad = w.data   # the same array: the compiled loop is not used
        with cpu_conv.use(compiled):
            optim.SGD([w], lr=0.5).step()
        np.testing.assert_array_equal(w.data, [0.5, -1.0, 2.0])


def test_sgd_step_refuses_what_it_cannot_take():
    f = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="one size"):
        cpu_conv.sgd_step(f, np.zeros(3, np.float32), None, 0.1)
    with pytest.raises(ValueError, match="momentum needs a buffer"):
        cpu_conv.sgd_step(f, f.copy(), None, 0.1, momentum=0.9)
